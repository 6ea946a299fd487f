//! `pods/binding` (and the legacy `bindings` collection): assign a pending pod
//! to a node, as upstream's BindingREST does. The write sets `spec.nodeName`,
//! merges the Binding's annotations into the pod and sets the `PodScheduled`
//! condition to True in one compare-and-swap update; a pod that is already
//! assigned (or being deleted, or still gated) is a 409 Conflict on
//! `pods/binding`. Like upstream's storage-level update it records no
//! managedFields entry.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::{json, Map, Value};
use skiff_resources::FieldError;

use crate::content;
use crate::error::{ApiError, ApiResult, Details};
use crate::object;
use crate::query::{FieldValidation, Query, WriteOptions};
use crate::registry::Resource;
use crate::state::ApiState;

/// How many times a binding retries its compare-and-swap when another write
/// to the pod lands in between.
const CAS_ATTEMPTS: usize = 5;

/// `POST /api/v1/namespaces/{ns}/pods/{name}/binding`.
pub async fn create(
    state: &ApiState,
    pods: &Resource,
    namespace: Option<&str>,
    name: &str,
    headers: &HeaderMap,
    q: &Query,
    body: Body,
) -> ApiResult<Response> {
    let binding = read_binding(headers, body).await?;
    let body_name = object::name(&binding);
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Binding object",
        ));
    }
    bind(state, pods, namespace, name, &binding, q).await
}

/// `POST /api/v1/namespaces/{ns}/bindings`: the pod is named by the Binding.
pub async fn create_legacy(
    state: &ApiState,
    pods: &Resource,
    namespace: Option<&str>,
    headers: &HeaderMap,
    q: &Query,
    body: Body,
) -> ApiResult<Response> {
    let binding = read_binding(headers, body).await?;
    let name = object::name(&binding).to_string();
    if name.is_empty() {
        return Err(invalid(
            "",
            vec![FieldError::required(
                "metadata.name",
                "name or generateName is required",
            )],
        ));
    }
    bind(state, pods, namespace, &name, &binding, q).await
}

async fn read_binding(headers: &HeaderMap, body: Body) -> ApiResult<Value> {
    let bytes = crate::handlers::read_body(body).await?;
    let binding = content::decode_body(&content::content_type(headers), &bytes)?;
    if !binding.is_object() {
        return Err(ApiError::bad_request(
            "the body must be a v1 Binding object",
        ));
    }
    match binding.get("kind").and_then(Value::as_str) {
        None | Some("") | Some("Binding") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "the kind of the body must be Binding, got {other:?}"
            )))
        }
    }
    Ok(binding)
}

fn invalid(name: &str, errors: Vec<FieldError>) -> ApiError {
    ApiError::Invalid {
        kind: "Binding".into(),
        group: String::new(),
        name: name.into(),
        errors,
    }
}

/// A 409 on `pods/binding`, worded as upstream's `NewConflict`.
fn binding_conflict(name: &str, why: String) -> ApiError {
    ApiError::Conflict {
        message: format!("Operation cannot be fulfilled on pods/binding \"{name}\": {why}"),
        details: Some(Details {
            name: name.into(),
            group: String::new(),
            kind: "pods/binding".into(),
            uid: None,
        }),
    }
}

/// Upstream's ValidatePodBinding: `target.kind` empty or `Node`, `target.name` set.
fn validate(name: &str, binding: &Value) -> ApiResult<String> {
    let mut errors = Vec::new();
    let target = binding.get("target");
    let kind = target
        .and_then(|t| t.get("kind"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if !kind.is_empty() && kind != "Node" {
        errors.push(FieldError::not_supported(
            "target.kind",
            json!(kind),
            &["Node"],
        ));
    }
    let node = target
        .and_then(|t| t.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if node.is_empty() {
        errors.push(FieldError::required("target.name", ""));
    }
    if !errors.is_empty() {
        return Err(invalid(name, errors));
    }
    Ok(node.to_string())
}

async fn bind(
    state: &ApiState,
    pods: &Resource,
    namespace: Option<&str>,
    name: &str,
    binding: &Value,
    q: &Query,
) -> ApiResult<Response> {
    if let Some(ns) = object::namespace(binding).filter(|n| !n.is_empty()) {
        if Some(ns) != namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    let node = validate(name, binding)?;
    let uid_precondition = object::uid(binding).filter(|u| !u.is_empty());
    let annotations = object::meta(binding)
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut opts = WriteOptions::from_query(q)?;
    opts.field_validation = FieldValidation::Ignore;
    // Upstream binds with a storage-level update: no managedFields entry.
    opts.applying = true;
    let rest = &state.rest;
    for _ in 0..CAS_ATTEMPTS {
        let key = pods.key(namespace, name);
        let Some(kv) = rest.store.get(&key).await? else {
            return Err(ApiError::not_found("", "pods", name));
        };
        let current = crate::rest::Rest::decode(pods, &kv)?;
        if let Some(want) = uid_precondition {
            let have = object::uid(&current).unwrap_or("");
            if want != have {
                return Err(ApiError::Conflict {
                    message: format!(
                        "Precondition failed: UID in precondition: {want}, UID in object meta: {have}"
                    ),
                    details: None,
                });
            }
        }
        if object::deletion_timestamp(&current).is_some() {
            return Err(binding_conflict(
                name,
                format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        let assigned = current
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !assigned.is_empty() {
            return Err(binding_conflict(
                name,
                format!("pod {name} is already assigned to node \"{assigned}\""),
            ));
        }
        let gated = current
            .pointer("/spec/schedulingGates")
            .and_then(Value::as_array)
            .is_some_and(|g| !g.is_empty());
        if gated {
            return Err(binding_conflict(
                name,
                format!("pod {name} has non-empty .spec.schedulingGates"),
            ));
        }
        // The status is carried over from the "old" side of the update, so
        // the condition goes into both.
        let mut old = current.clone();
        set_scheduled(&mut old);
        let mut new = old.clone();
        if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("nodeName".into(), json!(node));
        } else if let Some(m) = new.as_object_mut() {
            m.insert("spec".into(), json!({"nodeName": node}));
        }
        if !annotations.is_empty() {
            let meta = object::meta_mut(&mut new);
            let entry = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Some(a) = entry.as_object_mut() {
                for (k, v) in &annotations {
                    a.insert(k.clone(), v.clone());
                }
            }
        }
        match rest
            .write_update(pods, namespace, name, &kv, old, new, None, &opts)
            .await
        {
            Ok(_) => return Ok(success()),
            // Another write landed first: look again (it may have bound the pod).
            Err(ApiError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict("", "pods", name))
}

/// Set `PodScheduled` to True as upstream's UpdatePodCondition does: the
/// transition time moves only when the status changes.
fn set_scheduled(pod: &mut Value) {
    let now = object::now_rfc3339();
    let Some(m) = pod.as_object_mut() else {
        return;
    };
    let status = m.entry("status").or_insert_with(|| json!({}));
    if !status.is_object() {
        *status = json!({});
    }
    let Some(status) = status.as_object_mut() else {
        return;
    };
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Some(list) = conditions.as_array_mut() else {
        return;
    };
    let fresh = json!({
        "type": "PodScheduled",
        "status": "True",
        "lastProbeTime": null,
        "lastTransitionTime": now,
    });
    match list
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"))
    {
        Some(c) => {
            let was_true = c.get("status").and_then(Value::as_str) == Some("True");
            let mut updated = fresh;
            if was_true {
                if let Some(t) = c.get("lastTransitionTime") {
                    updated["lastTransitionTime"] = t.clone();
                }
            }
            *c = updated;
        }
        None => list.push(fresh),
    }
}

/// The reply upstream gives: a Success Status carrying the 201.
fn success() -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": 201,
    });
    let mut r = (
        StatusCode::CREATED,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_follows_upstream() {
        let ok = json!({"target": {"kind": "Node", "name": "n1"}});
        assert_eq!(validate("p", &ok).ok().as_deref(), Some("n1"));
        let no_kind = json!({"target": {"name": "n1"}});
        assert!(validate("p", &no_kind).is_ok());
        let wrong = json!({"target": {"kind": "Pod", "name": ""}});
        match validate("p", &wrong) {
            Err(ApiError::Invalid { errors, .. }) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(fields, ["target.kind", "target.name"]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn scheduled_condition_keeps_transition_time_when_already_true() {
        let mut pod = json!({"status": {"conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "lastTransitionTime": "2020-01-01T00:00:00Z"}
        ]}});
        set_scheduled(&mut pod);
        let c = &pod["status"]["conditions"][0];
        assert_eq!(c["status"], "True");
        assert!(c.get("reason").is_none());
        assert_ne!(c["lastTransitionTime"], "2020-01-01T00:00:00Z");
        let mut again = json!({"status": {"conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}
        ]}});
        set_scheduled(&mut again);
        assert_eq!(
            again["status"]["conditions"][0]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        let mut empty = json!({});
        set_scheduled(&mut empty);
        assert_eq!(empty["status"]["conditions"][0]["type"], "PodScheduled");
    }
}
