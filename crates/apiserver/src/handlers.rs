//! HTTP glue: one dispatcher that routes by [`RequestInfo`] to discovery, OpenAPI,
//! health, metrics and the generic REST verbs.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use crate::content::{self, Output, MAX_BODY};
use crate::discovery;
use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::patching::PatchType;
use crate::query::{ListParams, Query, WriteOptions};
use crate::registry::Resource;
use crate::request_info::{RequestInfo, ResourceRequest, Verb};
use crate::rest::{DeleteOptions, Deleted, Written};
use crate::state::ApiState;
use crate::table;

fn json_response(code: StatusCode, v: &Value, content_type: &'static str) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = (code, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn ok_json(v: &Value) -> Response {
    json_response(StatusCode::OK, v, "application/json")
}

fn with_warnings(mut r: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            r.headers_mut().append("Warning", v);
        }
    }
    r
}

pub(crate) async fn read_body(body: Body) -> ApiResult<Bytes> {
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::TooLarge { limit: MAX_BODY })
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "error reading request body: {e}"
        ))),
    }
}

/// The single entry point for every request after the middleware layers.
pub async fn dispatch(State(state): State<Arc<ApiState>>, req: Request) -> Response {
    let info = req
        .extensions()
        .get::<RequestInfo>()
        .cloned()
        .unwrap_or_else(|| {
            crate::request_info::resolve(req.method(), req.uri().path(), req.uri().query())
        });
    match route(state, info, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn route(state: Arc<ApiState>, info: RequestInfo, req: Request) -> ApiResult<Response> {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let snap = state.rest.registry.snapshot();
    match info {
        RequestInfo::CoreVersions => Ok(match discovery::wants_aggregated(&accept) {
            Some(v) => aggregated(&snap, true, v),
            None => ok_json(&discovery::api_versions(&state.server_address)),
        }),
        RequestInfo::Groups => {
            let metrics = state.metrics_provider().is_some();
            Ok(match discovery::wants_aggregated(&accept) {
                Some(v) if metrics => {
                    let mut doc = discovery::aggregated(&snap, false, v);
                    if let Some(items) = doc["items"].as_array_mut() {
                        items.push(crate::metrics_api::aggregated_entry());
                    }
                    let ct = if v == "v2" {
                        discovery::AGGREGATED_V2
                    } else {
                        discovery::AGGREGATED_V2BETA1
                    };
                    json_response(StatusCode::OK, &doc, ct)
                }
                Some(v) => aggregated(&snap, false, v),
                None => {
                    let mut doc = discovery::group_list(&snap);
                    if metrics {
                        if let Some(groups) = doc["groups"].as_array_mut() {
                            groups.push(crate::metrics_api::group_entry());
                        }
                    }
                    ok_json(&doc)
                }
            })
        }
        RequestInfo::Group { group }
            if crate::metrics_api::handles(&group) && state.metrics_provider().is_some() =>
        {
            let mut doc = crate::metrics_api::group_entry();
            doc["kind"] = json!("APIGroup");
            doc["apiVersion"] = json!("v1");
            Ok(ok_json(&doc))
        }
        RequestInfo::GroupVersion { group, version }
            if crate::metrics_api::handles(&group)
                && version == crate::metrics_api::VERSION
                && state.metrics_provider().is_some() =>
        {
            Ok(ok_json(&crate::metrics_api::resource_list()))
        }
        RequestInfo::Resource(r) if crate::metrics_api::handles(&r.group) => {
            crate::metrics_api::serve(&state, r, req.uri().query()).await
        }
        RequestInfo::Group { group } => discovery::group(&snap, &group)
            .map(|v| ok_json(&v))
            .ok_or_else(not_found_path),
        RequestInfo::GroupVersion { group, version } => {
            discovery::resource_list(&snap, &group, &version)
                .map(|v| ok_json(&v))
                .ok_or_else(not_found_path)
        }
        RequestInfo::NonResource { path } => non_resource(&state, &path, req).await,
        RequestInfo::Resource(r) if crate::pod_streams::handles(&r) => {
            crate::pod_streams::serve(state, r, req).await
        }
        RequestInfo::Resource(r) if r.verb == Verb::Create && r.name.is_none() => {
            if let Some(kind) = crate::reviews::kind_of(&r.group, &r.version, &r.resource) {
                let user = req
                    .extensions()
                    .get::<crate::auth::UserInfo>()
                    .cloned()
                    .unwrap_or_else(crate::auth::UserInfo::anonymous);
                let media = content::content_type(req.headers());
                let bytes = read_body(req.into_body()).await?;
                let body = content::decode_body(&media, &bytes)?;
                let reply = crate::reviews::answer(kind, &body, &user)?;
                return Ok(json_response(
                    StatusCode::CREATED,
                    &reply,
                    "application/json",
                ));
            }
            if r.group.is_empty() && r.version == "v1" && r.resource == "bindings" {
                let (Some(pods), Some(ns)) = (snap.get("", "v1", "pods"), r.namespace.as_deref())
                else {
                    return Err(not_found_path());
                };
                let (parts, body) = req.into_parts();
                let q = Query::parse(parts.uri.query());
                return crate::binding::create_legacy(
                    &state,
                    &pods,
                    Some(ns),
                    &parts.headers,
                    &q,
                    body,
                )
                .await;
            }
            let Some(res) = snap.get(&r.group, &r.version, &r.resource) else {
                return Err(not_found_path());
            };
            resource(state, res, r, req).await
        }
        RequestInfo::Resource(r) => {
            let Some(res) = snap.get(&r.group, &r.version, &r.resource) else {
                return Err(not_found_path());
            };
            resource(state, res, r, req).await
        }
    }
}

fn aggregated(snap: &crate::registry::Snapshot, core: bool, version: &'static str) -> Response {
    let ct = if version == "v2" {
        discovery::AGGREGATED_V2
    } else {
        discovery::AGGREGATED_V2BETA1
    };
    json_response(
        StatusCode::OK,
        &discovery::aggregated(snap, core, version),
        ct,
    )
}

fn not_found_path() -> ApiError {
    ApiError::NotFound {
        message: "the server could not find the requested resource".into(),
        details: None,
    }
}

async fn non_resource(state: &ApiState, path: &str, req: Request) -> ApiResult<Response> {
    let path = path.trim_end_matches('/');
    match path {
        "/version" => Ok(ok_json(&crate::version::info())),
        "/healthz" | "/livez" | "/readyz" | "/healthz/ping" | "/livez/ping" | "/readyz/ping" => {
            let ok = state.rest.store.current_revision().await.is_ok();
            if ok {
                Ok((
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    "ok",
                )
                    .into_response())
            } else {
                Ok((StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response())
            }
        }
        "/metrics" => Ok(state.metrics.render(state).await),
        "/openapi/v2" => {
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if accept.contains("protobuf") && !accept.contains("json") && !accept.contains("*/*") {
                return Err(ApiError::NotAcceptable {
                    message: "only application/json is supported for /openapi/v2".into(),
                });
            }
            let doc = state.openapi();
            Ok(bytes_json(doc.v2_bytes()))
        }
        "/openapi/v3" => {
            let doc = state.openapi();
            Ok(bytes_json(doc.v3_index_bytes()))
        }
        "/.well-known/openid-configuration" | "/openid/v1/jwks" => match state.token_signer() {
            Some(signer) if path == "/openid/v1/jwks" => Ok(json_response(
                StatusCode::OK,
                &signer.jwks(),
                "application/jwk-set+json",
            )),
            Some(signer) => Ok(ok_json(&signer.openid_configuration())),
            None => Err(not_found_path()),
        },
        p if p.starts_with("/openapi/v3/") => {
            let gv = p.trim_start_matches("/openapi/v3/");
            let doc = state.openapi();
            doc.v3_group_version_bytes(gv)
                .map(bytes_json)
                .ok_or_else(not_found_path)
        }
        _ => Err(not_found_path()),
    }
}

fn bytes_json(b: Bytes) -> Response {
    let mut r = (StatusCode::OK, b).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn list_meta(page_rv: u64, cont: Option<&str>, remaining: Option<u64>) -> Value {
    let mut m = json!({"resourceVersion": page_rv.to_string()});
    if let Some(c) = cont {
        m["continue"] = json!(c);
    }
    if let Some(n) = remaining {
        m["remainingItemCount"] = json!(n);
    }
    m
}

/// A `<Kind>List` assembled from stored bytes (see [`crate::raw`]).
fn raw_list(res: &Resource, page: crate::rest::RawListPage) -> ApiResult<Response> {
    let meta = list_meta(
        page.resource_version.0,
        page.continue_token.as_deref(),
        page.remaining,
    );
    let head =
        json!({"kind": res.def.list_kind, "apiVersion": res.def.api_version(), "metadata": meta});
    let head = serde_json::to_vec(&head).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut items = Vec::with_capacity(page.items.len());
    let mut size = head.len() + 16;
    for (kv, _) in &page.items {
        let b = crate::rest::Rest::raw(res, kv)?;
        size += b.len() + 1;
        items.push(b);
    }
    let mut out = Vec::with_capacity(size);
    // `head` is an object; reopen it to append `items`.
    out.extend_from_slice(head.get(..head.len().saturating_sub(1)).unwrap_or_default());
    out.extend_from_slice(b",\"items\":[");
    for (i, b) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b);
    }
    out.extend_from_slice(b"]}");
    Ok(bytes_json(Bytes::from(out)))
}

fn render_one(res: &Resource, obj: &Value, output: Output, params: &ListParams) -> Value {
    match output {
        Output::Object => obj.clone(),
        Output::PartialMetadata => table::partial_metadata(obj),
        Output::Table => table::table(
            res,
            std::slice::from_ref(obj),
            params.include_object,
            json!({"resourceVersion": object::resource_version(obj).unwrap_or("")}),
            true,
        ),
    }
}

fn output_content_type(output: Output) -> &'static str {
    match output {
        Output::Table => "application/json;as=Table;v=v1;g=meta.k8s.io",
        Output::PartialMetadata => "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io",
        Output::Object => "application/json",
    }
}

fn status_success(res: &Resource, obj: &Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": object::name(obj),
            "group": res.def.group,
            "kind": res.def.plural,
            "uid": object::uid(obj).unwrap_or(""),
        }
    })
}

async fn resource(
    state: Arc<ApiState>,
    res: Arc<Resource>,
    r: ResourceRequest,
    req: Request,
) -> ApiResult<Response> {
    let (parts, body) = req.into_parts();
    let q = Query::parse(parts.uri.query());
    let output = content::negotiate(&parts.headers);
    let ns = r.namespace.clone();
    if res.def.namespaced && ns.is_none() && !matches!(r.verb, Verb::List | Verb::Watch) {
        return Err(not_found_path());
    }
    if !res.def.namespaced && ns.is_some() {
        return Err(not_found_path());
    }
    let rest = state.rest.clone();
    match (&r.subresource, r.name.as_deref()) {
        (Some(sub), Some(name)) => {
            return subresource(
                state,
                res,
                &r,
                sub,
                name,
                &parts.method,
                &parts.headers,
                &q,
                body,
                output,
            )
            .await
        }
        (Some(_), None) => return Err(not_found_path()),
        _ => {}
    }
    let name = r.name.clone();
    if !res.def.verbs.iter().any(|v| v == r.verb.as_str()) {
        return Err(ApiError::MethodNotAllowed {
            message: "the server does not allow this method on the requested resource".to_string(),
        });
    }
    match r.verb {
        Verb::Get => {
            let name = name.unwrap_or_default();
            let params = ListParams::from_query(&q)?;
            if output == Output::Object {
                let kv = rest.get_kv(&res, ns.as_deref(), &name).await?;
                return Ok(bytes_json(crate::rest::Rest::raw(&res, &kv)?));
            }
            let obj = rest.get(&res, ns.as_deref(), &name).await?;
            Ok(json_response(
                StatusCode::OK,
                &render_one(&res, &obj, output, &params),
                output_content_type(output),
            ))
        }
        Verb::List => {
            let params = ListParams::from_query(&q)?;
            crate::rest::Rest::check_field_selector(&res, &params)?;
            if output == Output::Object {
                let page = rest.list_raw(&res, ns.as_deref(), &params).await?;
                return raw_list(&res, page);
            }
            let page = rest.list(&res, ns.as_deref(), &params).await?;
            let meta = list_meta(
                page.resource_version.0,
                page.continue_token.as_deref(),
                page.remaining,
            );
            let v = match output {
                Output::Object => json!({
                    "kind": res.def.list_kind,
                    "apiVersion": res.def.api_version(),
                    "metadata": meta,
                    "items": page.items,
                }),
                Output::PartialMetadata => table::partial_metadata_list(&page.items, meta),
                Output::Table => table::table(&res, &page.items, params.include_object, meta, true),
            };
            let ct = match output {
                Output::PartialMetadata => {
                    "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
                }
                other => output_content_type(other),
            };
            Ok(json_response(StatusCode::OK, &v, ct))
        }
        Verb::Watch => {
            let mut params = ListParams::from_query(&q)?;
            if let Some(n) = &name {
                params
                    .fields
                    .reqs
                    .push(("metadata.name".into(), true, n.clone()));
            }
            let lines = crate::watch::start(
                rest,
                res.clone(),
                ns,
                params,
                output,
                state.shutdown.clone(),
            )
            .await?;
            state.metrics.watch_started(&res.def.plural);
            let guard = state.metrics.watch_guard(&res.def.plural);
            let stream = lines.map(move |b| {
                let _keep = &guard;
                Ok::<_, Infallible>(b)
            });
            let mut resp = Response::new(Body::from_stream(stream));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(resp)
        }
        Verb::Create => {
            let bytes = read_body(body).await?;
            let media = content::content_type(&parts.headers);
            let obj = content::decode_body(&media, &bytes)?;
            let opts = WriteOptions::from_query(&q)?;
            let w = rest.create(&res, ns.as_deref(), obj, &opts).await?;
            Ok(written(w, StatusCode::CREATED, output))
        }
        Verb::Update => {
            let name = name.unwrap_or_default();
            let bytes = read_body(body).await?;
            let media = content::content_type(&parts.headers);
            let obj = content::decode_body(&media, &bytes)?;
            let opts = WriteOptions::from_query(&q)?;
            let w = rest
                .update(&res, ns.as_deref(), &name, obj, None, &opts)
                .await?;
            Ok(written(w, StatusCode::OK, output))
        }
        Verb::Patch => {
            let name = name.unwrap_or_default();
            let w = do_patch(
                &state,
                &res,
                ns.as_deref(),
                &name,
                None,
                &parts.headers,
                &q,
                body,
            )
            .await?;
            let code = if w.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(written(w, code, output))
        }
        Verb::Delete => {
            let name = name.unwrap_or_default();
            let opts = delete_options(&parts.headers, &q, body).await?;
            match rest.delete(&res, ns.as_deref(), &name, &opts).await? {
                Deleted::Gone(obj) => Ok(ok_json(&status_success(&res, &obj))),
                Deleted::Pending(obj) => {
                    Ok(json_response(StatusCode::OK, &obj, "application/json"))
                }
            }
        }
        Verb::DeleteCollection => {
            let params = ListParams::from_query(&q)?;
            crate::rest::Rest::check_field_selector(&res, &params)?;
            let opts = delete_options(&parts.headers, &q, body).await?;
            let items = rest
                .delete_collection(&res, ns.as_deref(), &params, &opts)
                .await?;
            Ok(ok_json(&json!({
                "kind": res.def.list_kind,
                "apiVersion": res.def.api_version(),
                "metadata": {},
                "items": items,
            })))
        }
    }
}

/// `DeleteOptions` from an optional body and the query string.
async fn delete_options(headers: &HeaderMap, q: &Query, body: Body) -> ApiResult<DeleteOptions> {
    let bytes = read_body(body).await?;
    let body_v = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(content::decode_body(
            &content::content_type(headers),
            &bytes,
        )?)
    };
    DeleteOptions::parse(body_v.as_ref(), q)
}

fn written(w: Written, code: StatusCode, output: Output) -> Response {
    let body = match output {
        Output::PartialMetadata => table::partial_metadata(&w.object),
        _ => w.object,
    };
    with_warnings(json_response(code, &body, "application/json"), &w.warnings)
}

#[allow(clippy::too_many_arguments)]
async fn do_patch(
    state: &ApiState,
    res: &Resource,
    ns: Option<&str>,
    name: &str,
    sub: Option<&str>,
    headers: &HeaderMap,
    q: &Query,
    body: Body,
) -> ApiResult<Written> {
    let media = content::content_type(headers);
    let ptype = PatchType::from_media(&media)?;
    let bytes = read_body(body).await?;
    let patch = content::decode_body(&media, &bytes)?;
    let opts = WriteOptions::from_query(q)?;
    let schema = state.patch_schema(res);
    state
        .rest
        .patch(res, ns, name, ptype, &patch, sub, &opts, schema)
        .await
}

#[allow(clippy::too_many_arguments)]
async fn subresource(
    state: Arc<ApiState>,
    res: Arc<Resource>,
    r: &ResourceRequest,
    sub: &str,
    name: &str,
    method: &Method,
    headers: &HeaderMap,
    q: &Query,
    body: Body,
    output: Output,
) -> ApiResult<Response> {
    let ns = r.namespace.as_deref();
    let rest = state.rest.clone();
    let is_ns_finalize = res.is_core("namespaces") && sub == "finalize";
    match sub {
        "status" | "finalize"
            if *method == Method::PUT
                && (res.def.has_status && sub == "status" || is_ns_finalize) =>
        {
            let bytes = read_body(body).await?;
            let obj = content::decode_body(&content::content_type(headers), &bytes)?;
            let opts = WriteOptions::from_query(q)?;
            let w = rest.update(&res, ns, name, obj, Some(sub), &opts).await?;
            Ok(written(w, StatusCode::OK, output))
        }
        "status" if res.def.has_status => match *method {
            Method::GET => Ok(ok_json(&rest.get(&res, ns, name).await?)),
            Method::PATCH => {
                let w = do_patch(&state, &res, ns, name, Some("status"), headers, q, body).await?;
                Ok(written(w, StatusCode::OK, output))
            }
            _ => Err(ApiError::MethodNotAllowed {
                message: "method not allowed on status".into(),
            }),
        },
        "binding" if res.is_core("pods") && *method == Method::POST => {
            crate::binding::create(&state, &res, ns, name, headers, q, body).await
        }
        "scale" if res.def.scale.is_some() => {
            crate::scale::handle(&state, &res, ns, name, method, headers, q, body).await
        }
        "token" if res.is_core("serviceaccounts") && *method == Method::POST => {
            match (state.token_signer(), ns) {
                (Some(signer), Some(ns)) => {
                    crate::sa_token::create(signer, &rest, ns, name, headers, body).await
                }
                _ => Err(not_found_path()),
            }
        }
        _ => Err(not_found_path()),
    }
}
