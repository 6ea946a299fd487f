//! The `scale` subresource: an `autoscaling/v1` Scale view of `.spec.replicas`.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};
use skiff_resources::ScaleSubresource;

use crate::content;
use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::patching::PatchType;
use crate::query::{Query, WriteOptions};
use crate::registry::Resource;
use crate::state::ApiState;

/// `.spec.replicas` → `/spec/replicas`.
fn pointer(path: &str) -> String {
    path.trim_start_matches('.')
        .split('.')
        .fold(String::new(), |mut acc, seg| {
            acc.push('/');
            acc.push_str(seg);
            acc
        })
}

fn to_scale(res: &Resource, spec: &ScaleSubresource, obj: &Value) -> Value {
    let replicas = obj
        .pointer(&pointer(&spec.spec_replicas_path))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let status_replicas = obj
        .pointer(&pointer(&spec.status_replicas_path))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let selector = if res.custom {
        spec.label_selector_path
            .as_ref()
            .and_then(|p| obj.pointer(&pointer(p)))
            .and_then(Value::as_str)
            .map(str::to_string)
    } else {
        skiff_resources::scale_selector(obj)
    };
    let m = object::meta(obj).cloned().unwrap_or_default();
    let mut meta = json!({});
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = m.get(f) {
            meta[f] = v.clone();
        }
    }
    let mut status = json!({"replicas": status_replicas});
    if let Some(s) = selector.filter(|s| !s.is_empty()) {
        status["selector"] = json!(s);
    }
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta, "spec": {"replicas": replicas}, "status": status})
}

fn reply(v: &Value) -> Response {
    let mut r = (StatusCode::OK, serde_json::to_vec(v).unwrap_or_default()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[allow(clippy::too_many_arguments)]
pub async fn handle(
    state: &ApiState,
    res: &Resource,
    ns: Option<&str>,
    name: &str,
    method: &Method,
    headers: &HeaderMap,
    q: &Query,
    body: Body,
) -> ApiResult<Response> {
    let Some(spec) = res.def.scale.clone() else {
        return Err(ApiError::NotFound {
            message: "the server could not find the requested resource".into(),
            details: None,
        });
    };
    let rest = &state.rest;
    let ns = if res.def.namespaced { ns } else { None };
    // Read once: a PATCH that meets a concurrent write is retried on a fresh
    // read of the object, with the same body.
    let bytes = match *method {
        Method::PUT | Method::PATCH => crate::handlers::read_body(body).await?,
        _ => Default::default(),
    };
    for _ in 0..5 {
        let key = res.key(ns, name);
        let Some(kv) = rest.store.get(&key).await? else {
            return Err(ApiError::not_found(&res.def.group, &res.def.plural, name));
        };
        let obj = crate::rest::Rest::decode(res, &kv)?;
        let scale = to_scale(res, &spec, &obj);
        let new_scale = match *method {
            Method::GET => return Ok(reply(&scale)),
            Method::PUT => {
                let v = content::decode_body(&content::content_type(headers), &bytes)?;
                if let Some(rv) = v
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                {
                    if !rv.is_empty() && rv != kv.mod_revision.0.to_string() {
                        return Err(ApiError::conflict(&res.def.group, &res.def.plural, name));
                    }
                }
                v
            }
            Method::PATCH => {
                let media = content::content_type(headers);
                let patch = content::decode_body(&media, &bytes)?;
                let bad = |e: skiff_patch::Error| ApiError::bad_request(e.to_string());
                match PatchType::from_media(&media)? {
                    PatchType::Json => skiff_patch::json_patch(&scale, &patch).map_err(bad)?,
                    PatchType::Merge | PatchType::Apply => {
                        skiff_patch::merge_patch(&scale, &patch).map_err(bad)?
                    }
                    PatchType::Strategic => {
                        skiff_patch::strategic_merge_patch(&scale, &patch, &skiff_patch::NoSchema)
                            .map_err(bad)?
                    }
                }
            }
            _ => {
                return Err(ApiError::MethodNotAllowed {
                    message: "method not allowed on scale".into(),
                })
            }
        };
        // A Scale without `spec.replicas` means 0: Go clients omit the zero value.
        let replicas = match new_scale.pointer("/spec/replicas") {
            None | Some(Value::Null) => 0,
            Some(v) => v.as_i64().ok_or_else(|| ApiError::Invalid {
                kind: "Scale".into(),
                group: "autoscaling".into(),
                name: name.into(),
                errors: vec![skiff_resources::FieldError::invalid(
                    "spec.replicas",
                    v.clone(),
                    "must be an integer",
                )],
            })?,
        };
        if replicas < 0 {
            return Err(ApiError::Invalid {
                kind: "Scale".into(),
                group: "autoscaling".into(),
                name: name.into(),
                errors: vec![skiff_resources::FieldError::invalid(
                    "spec.replicas",
                    json!(replicas),
                    "must be greater than or equal to 0",
                )],
            });
        }
        let mut updated = obj.clone();
        let ptr = pointer(&spec.spec_replicas_path);
        set_pointer(&mut updated, &ptr, json!(replicas));
        let mut opts = WriteOptions::from_query(q)?;
        opts.field_validation = crate::query::FieldValidation::Ignore;
        match rest
            .write_update(res, ns, name, &kv, obj, updated, None, &opts)
            .await
        {
            Ok(w) => return Ok(reply(&to_scale(res, &spec, &w.object))),
            Err(ApiError::Conflict { .. }) if *method == Method::PATCH => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(&res.def.group, &res.def.plural, name))
}

fn set_pointer(obj: &mut Value, ptr: &str, value: Value) {
    let mut cur = obj;
    let segs: Vec<&str> = ptr.trim_start_matches('/').split('/').collect();
    for (i, seg) in segs.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        if i + 1 == segs.len() {
            map.insert((*seg).to_string(), value);
            return;
        }
        cur = map.entry((*seg).to_string()).or_insert_with(|| json!({}));
    }
}
