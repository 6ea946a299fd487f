//! The node's HTTP endpoint, kubelet-style: container logs, exec, attach and
//! port-forward for the pods a [`NodeRuntime`] runs.
//!
//! The API server resolves `pods/log|exec|attach|portforward` (pod lookup,
//! container defaulting and validation, the node the pod is bound to) and hands
//! the request, connection upgrade included, to the node through a
//! [`skiff_apiserver::NodeConnector`]; [`InProcessNodes`] is the connector for
//! nodes that live in the same process as the API server.
//!
//! Paths (the API server puts the pod uid in every path, so the node needs no
//! name-to-uid lookup):
//!
//! | path | protocol |
//! |---|---|
//! | `GET /containerLogs/{ns}/{pod}/{uid}/{container}` | plain HTTP body; `follow`, `tailLines`, `previous`, `timestamps`, `sinceSeconds`, `sinceTime`, `limitBytes` |
//! | `GET /exec/{ns}/{pod}/{uid}/{container}?command=..` | WebSocket `v5.channel.k8s.io` (or `v4.channel.k8s.io`) |
//! | `GET /attach/{ns}/{pod}/{uid}/{container}` | same as exec |
//! | `POST /exec|attach/…` | `Upgrade: SPDY/3.1`, `X-Stream-Protocol-Version: v5|v4.channel.k8s.io` (kubectl's fallback, older clients) |
//! | `GET /portForward/{ns}/{pod}/{uid}` | WebSocket `SPDY/3.1+portforward.k8s.io` (SPDY inside binary messages) |
//! | `POST /portForward/{ns}/{pod}/{uid}` | `Upgrade: SPDY/3.1`, `X-Stream-Protocol-Version: portforward.k8s.io` |
//! | `GET /portForward/{ns}/{pod}/{uid}?ports=..` | WebSocket `v4.channel.k8s.io` (kube-rs, the Python client): two channels per port |
//!
//! The upstream kubelet's log path has no uid segment; ours has one because the
//! runtime knows pods by uid only.
//!
//! Errors before an upgrade are `metav1.Status` bodies with the kubelet's
//! wording; after an upgrade they travel inside the stream protocol (the
//! status channel of exec, the error stream of port-forward).

mod connector;
mod logs;
mod portforward;
mod portforward_ws;
mod remotecommand;
mod remotecommand_spdy;
pub mod spdy;
mod ws_io;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{header, HeaderValue, StatusCode};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::runtime::{NodeRuntime, RuntimeError};

pub use connector::InProcessNodes;

/// What the handlers share.
struct Kubelet {
    runtime: Arc<dyn NodeRuntime>,
    /// Ends upgraded sessions (exec, attach, port-forward) when the node stops.
    shutdown: CancellationToken,
}

/// The node's HTTP API over `runtime` (see the module docs for the paths).
/// Upgraded sessions end when `shutdown` is cancelled or their connection
/// closes.
pub fn router(runtime: Arc<dyn NodeRuntime>, shutdown: CancellationToken) -> Router {
    let state = Arc::new(Kubelet { runtime, shutdown });
    Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{uid}/{container}",
            get(logs::serve),
        )
        .route(
            "/exec/{namespace}/{pod}/{uid}/{container}",
            get(remotecommand::exec).post(remotecommand::exec),
        )
        .route(
            "/attach/{namespace}/{pod}/{uid}/{container}",
            get(remotecommand::attach).post(remotecommand::attach),
        )
        .route(
            "/portForward/{namespace}/{pod}/{uid}",
            get(portforward::serve).post(portforward::serve),
        )
        .fallback(|| async {
            status_response(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the node has no such path",
            )
        })
        .with_state(state)
}

/// A `metav1.Status` failure reply.
fn status_response(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    let mut r = (code, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn bad_request(message: &str) -> Response {
    status_response(StatusCode::BAD_REQUEST, "BadRequest", message)
}

/// The reply for a runtime failure before any upgrade. Unknown pods and
/// containers are 404 like the kubelet's; what the runtime cannot do, or
/// refuses, is a 400 carrying its message (which kubectl prints).
fn runtime_error_response(err: &RuntimeError) -> Response {
    match err {
        RuntimeError::PodNotFound(_) | RuntimeError::ContainerNotFound { .. } => {
            status_response(StatusCode::NOT_FOUND, "NotFound", &err.to_string())
        }
        RuntimeError::Unsupported(_) | RuntimeError::Failed(_) => bad_request(&err.to_string()),
        RuntimeError::Io(e) => {
            tracing::warn!(error = %e, "node runtime I/O error");
            status_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                &format!("Internal error occurred: {err}"),
            )
        }
    }
}

/// Kubernetes boolean query values: `1` and `true` (kubectl sends `true`, the
/// upstream API server forwards `1`).
fn flag(v: &str) -> bool {
    matches!(v, "1" | "true" | "True" | "TRUE")
}
