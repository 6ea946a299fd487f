//! The one mapping from failures to Kubernetes `Status` replies.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde_json::{json, Value};
use skiff_resources::FieldError;

/// A failed API request. Every handler returns `Result<_, ApiError>`; the response is
/// always a `metav1.Status` with the right code and reason.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { message: String },
    #[error("{message}")]
    Unauthorized { message: String },
    #[error("{message}")]
    Forbidden {
        message: String,
        details: Option<Details>,
    },
    #[error("{message}")]
    NotFound {
        message: String,
        details: Option<Details>,
    },
    #[error("{message}")]
    MethodNotAllowed { message: String },
    #[error("{message}")]
    NotAcceptable { message: String },
    #[error("{message}")]
    AlreadyExists { message: String, details: Details },
    #[error("{message}")]
    Conflict {
        message: String,
        details: Option<Details>,
    },
    /// Server-side apply conflicts: 409 with one cause per conflicting field.
    #[error("{message}")]
    ApplyConflict {
        message: String,
        details: Details,
        causes: Vec<Cause>,
    },
    #[error("{message}")]
    Gone { message: String },
    #[error("request entity too large")]
    TooLarge { limit: usize },
    #[error("{message}")]
    UnsupportedMediaType { message: String },
    /// 422 with one cause per invalid field.
    #[error("{kind} {name:?} is invalid")]
    Invalid {
        kind: String,
        group: String,
        name: String,
        errors: Vec<FieldError>,
    },
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    #[error("{message}")]
    Timeout { message: String },
    /// Anything unexpected: logged in full, answered with a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

/// `StatusDetails` without the causes.
#[derive(Debug, Clone, Default)]
pub struct Details {
    pub name: String,
    pub group: String,
    pub kind: String,
    pub uid: Option<String>,
}

/// One `StatusCause`.
#[derive(Debug, Clone)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
        }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::Internal(message.into())
    }
    /// `<resource>[.<group>] "<name>" not found`, as Kubernetes words it.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        ApiError::NotFound {
            message: format!("{} \"{name}\" not found", qualified(group, resource)),
            details: Some(Details {
                name: name.into(),
                group: group.into(),
                kind: resource.into(),
                uid: None,
            }),
        }
    }
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        ApiError::AlreadyExists {
            message: format!("{} \"{name}\" already exists", qualified(group, resource)),
            details: Details {
                name: name.into(),
                group: group.into(),
                kind: resource.into(),
                uid: None,
            },
        }
    }
    /// The optimistic-concurrency conflict.
    pub fn conflict(group: &str, resource: &str, name: &str) -> Self {
        ApiError::Conflict {
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(group, resource)
            ),
            details: Some(Details { name: name.into(), group: group.into(), kind: resource.into(), uid: None }),
        }
    }
    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable { .. } => StatusCode::NOT_ACCEPTABLE,
            ApiError::AlreadyExists { .. }
            | ApiError::Conflict { .. }
            | ApiError::ApplyConflict { .. } => StatusCode::CONFLICT,
            ApiError::Gone { .. } => StatusCode::GONE,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "BadRequest",
            ApiError::Unauthorized { .. } => "Unauthorized",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::NotFound { .. } => "NotFound",
            ApiError::MethodNotAllowed { .. } => "MethodNotAllowed",
            ApiError::NotAcceptable { .. } => "NotAcceptable",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Gone { .. } => "Expired",
            ApiError::TooLarge { .. } => "RequestEntityTooLarge",
            ApiError::UnsupportedMediaType { .. } => "UnsupportedMediaType",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
            ApiError::Timeout { .. } => "Timeout",
            ApiError::Internal(_) => "InternalError",
        }
    }

    /// The `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let code = self.code().as_u16();
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "reason": self.reason(),
            "code": code,
        });
        let (message, details): (String, Option<Value>) = match self {
            ApiError::Invalid {
                kind,
                group,
                name,
                errors,
            } => {
                let causes: Vec<Value> = errors
                    .iter()
                    .map(|e| json!({"reason": e.kind.reason(), "message": e.message(), "field": e.field}))
                    .collect();
                let summary: Vec<String> = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message()))
                    .collect();
                let list = if summary.len() == 1 {
                    summary.join("")
                } else {
                    format!("[{}]", summary.join(", "))
                };
                let mut d = json!({"name": name, "kind": kind, "causes": causes});
                if !group.is_empty() {
                    d["group"] = json!(group);
                }
                let qualified_kind = if group.is_empty() {
                    kind.clone()
                } else {
                    format!("{kind}.{group}")
                };
                (
                    format!("{qualified_kind} \"{name}\" is invalid: {list}"),
                    Some(d),
                )
            }
            ApiError::ApplyConflict {
                message,
                details,
                causes,
            } => {
                let mut d = details_json(details);
                d["causes"] = causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
                (message.clone(), Some(d))
            }
            ApiError::NotFound { message, details }
            | ApiError::Forbidden { message, details }
            | ApiError::Conflict { message, details } => {
                (message.clone(), details.as_ref().map(details_json))
            }
            ApiError::AlreadyExists { message, details } => {
                (message.clone(), Some(details_json(details)))
            }
            ApiError::TooLarge { .. } => {
                ("the server has received too large a request".into(), None)
            }
            ApiError::TooManyRequests {
                message,
                retry_after,
            } => (
                message.clone(),
                Some(json!({"retryAfterSeconds": retry_after})),
            ),
            ApiError::Internal(_) => (
                "an internal error occurred; see the server log".into(),
                None,
            ),
            other => (other.to_string(), None),
        };
        status["message"] = json!(message);
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

fn details_json(d: &Details) -> Value {
    let mut v = json!({"name": d.name, "kind": d.kind});
    if !d.group.is_empty() {
        v["group"] = json!(d.group);
    }
    if let Some(uid) = &d.uid {
        v["uid"] = json!(uid);
    }
    v
}

/// `resource.group` (core resources unqualified), as in Kubernetes messages.
pub fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "internal error");
        }
        let code = self.code();
        let retry = match &self {
            ApiError::TooManyRequests { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        let mut resp = (code, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = retry {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

impl From<skiff_store::Error> for ApiError {
    fn from(e: skiff_store::Error) -> Self {
        match e {
            skiff_store::Error::Compacted {
                requested,
                compacted,
            } => ApiError::Gone {
                message: format!("too old resource version: {requested} ({compacted})"),
            },
            skiff_store::Error::FutureRevision { requested, current } => ApiError::Timeout {
                message: format!(
                    "Too large resource version: {requested}, current resource version: {current}"
                ),
            },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_resources::FieldError;

    #[test]
    fn invalid_status_has_causes_and_kubernetes_message() {
        let e = ApiError::Invalid {
            kind: "Deployment".into(),
            group: "apps".into(),
            name: "web".into(),
            errors: vec![FieldError::invalid(
                "spec.replicas",
                json!(-1),
                "must be greater than or equal to 0",
            )],
        };
        let s = e.to_status();
        assert_eq!(s["code"], 422);
        assert_eq!(s["reason"], "Invalid");
        assert_eq!(
            s["message"],
            "Deployment.apps \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(s["details"]["causes"][0]["field"], "spec.replicas");
        assert_eq!(s["details"]["group"], "apps");
    }

    #[test]
    fn not_found_wording() {
        let s = ApiError::not_found("", "configmaps", "nope").to_status();
        assert_eq!(s["message"], "configmaps \"nope\" not found");
        assert_eq!(s["code"], 404);
        let s = ApiError::not_found("apps", "deployments", "x").to_status();
        assert_eq!(s["message"], "deployments.apps \"x\" not found");
    }
}
