//! Self-reviews: `kubectl auth whoami` (SelfSubjectReview) and `kubectl auth can-i`
//! (SelfSubjectAccessReview, SelfSubjectRulesReview). They are create-only and never
//! stored; the answer comes from the request's authenticated user.

use serde_json::{json, Value};

use crate::auth::UserInfo;
use crate::error::{ApiError, ApiResult};

/// Which review a POST addresses, if any.
pub fn kind_of(group: &str, version: &str, resource: &str) -> Option<&'static str> {
    match (group, version, resource) {
        ("authentication.k8s.io", "v1", "selfsubjectreviews") => Some("SelfSubjectReview"),
        ("authorization.k8s.io", "v1", "selfsubjectaccessreviews") => {
            Some("SelfSubjectAccessReview")
        }
        ("authorization.k8s.io", "v1", "selfsubjectrulesreviews") => Some("SelfSubjectRulesReview"),
        _ => None,
    }
}

/// Whether `user` may do anything at all. Until RBAC lands every authenticated user
/// is an administrator (`system:masters`), as the admin kubeconfig is the only way in.
fn is_admin(user: &UserInfo) -> bool {
    user.groups.iter().any(|g| g == "system:masters")
}

pub fn answer(kind: &str, body: &Value, user: &UserInfo) -> ApiResult<Value> {
    let api_version = match kind {
        "SelfSubjectReview" => "authentication.k8s.io/v1",
        _ => "authorization.k8s.io/v1",
    };
    if let Some(k) = body.get("kind").and_then(Value::as_str) {
        if k != kind {
            return Err(ApiError::bad_request(format!("expected a {kind}, got {k}")));
        }
    }
    let mut out = json!({
        "kind": kind,
        "apiVersion": api_version,
        "metadata": {"creationTimestamp": null},
    });
    match kind {
        "SelfSubjectReview" => {
            out["status"] = json!({"userInfo": {"username": user.username, "uid": user.uid, "groups": user.groups}});
        }
        "SelfSubjectAccessReview" => {
            let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
            if spec.get("resourceAttributes").is_none()
                && spec.get("nonResourceAttributes").is_none()
            {
                return Err(ApiError::Invalid {
                    kind: kind.into(),
                    group: "authorization.k8s.io".into(),
                    name: String::new(),
                    errors: vec![skiff_resources::FieldError::invalid(
                        "spec.resourceAttributes",
                        json!(null),
                        "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                    )],
                });
            }
            let allowed = is_admin(user);
            out["spec"] = spec;
            out["status"] = if allowed {
                json!({"allowed": true, "reason": "skiff: the user is a cluster administrator"})
            } else {
                json!({"allowed": false})
            };
        }
        _ => {
            let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
            out["spec"] = spec;
            out["status"] = if is_admin(user) {
                json!({
                    "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                    "incomplete": false,
                })
            } else {
                json!({"resourceRules": [], "nonResourceRules": [], "incomplete": false})
            };
        }
    }
    Ok(out)
}
