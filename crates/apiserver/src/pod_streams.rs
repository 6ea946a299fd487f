//! `pods/log`, `pods/exec`, `pods/attach` and `pods/portforward`: the API
//! server checks the request against the pod (it exists, the container is
//! valid or can be defaulted, the pod is bound to a node) and hands it to that
//! node through a [`NodeConnector`], connection upgrade included, rewritten to
//! the node's kubelet-style path (`/containerLogs/{ns}/{pod}/{uid}/{container}`,
//! `/exec|attach/{ns}/{pod}/{uid}/{container}`, `/portForward/{ns}/{pod}/{uid}`).
//! The node speaks the stream protocols; its reply goes back unchanged.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{Method, Uri};
use k8s_openapi::api::core::v1::Pod;

use crate::error::{ApiError, ApiResult};
use crate::request_info::ResourceRequest;
use crate::state::ApiState;

/// The way from the API server to a node's endpoint. Upgrade requests carry
/// the client connection's pending upgrade in their extensions, so a node
/// served in process by an axum router can take the WebSocket (or SPDY)
/// upgrade itself.
#[async_trait::async_trait]
pub trait NodeConnector: Send + Sync {
    /// Send `req` (already rewritten to the node's path) to node `node`.
    /// `None` when the node cannot be reached.
    async fn forward(&self, node: &str, req: http::Request<Body>) -> Option<http::Response<Body>>;
}

/// The pod subresources served here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Log,
    Exec,
    Attach,
    PortForward,
}

impl Kind {
    fn of(r: &ResourceRequest) -> Option<Kind> {
        if !r.group.is_empty() || r.version != "v1" || r.resource != "pods" || r.name.is_none() {
            return None;
        }
        match r.subresource.as_deref()? {
            "log" => Some(Kind::Log),
            "exec" => Some(Kind::Exec),
            "attach" => Some(Kind::Attach),
            "portforward" => Some(Kind::PortForward),
            _ => None,
        }
    }
}

/// Whether `r` is one of the streaming pod subresources.
pub fn handles(r: &ResourceRequest) -> bool {
    Kind::of(r).is_some()
}

/// Serve a streaming pod subresource (see the module docs).
pub async fn serve(
    state: Arc<ApiState>,
    r: ResourceRequest,
    mut req: Request,
) -> ApiResult<Response> {
    let (Some(kind), Some(name), Some(ns)) =
        (Kind::of(&r), r.name.as_deref(), r.namespace.as_deref())
    else {
        return Err(ApiError::NotFound {
            message: "the server could not find the requested resource".into(),
            details: None,
        });
    };
    let allowed = match kind {
        Kind::Log => *req.method() == Method::GET,
        _ => matches!(*req.method(), Method::GET | Method::POST),
    };
    if !allowed {
        return Err(ApiError::MethodNotAllowed {
            message: format!(
                "the server does not allow this method on the requested resource (pods/{})",
                r.subresource.as_deref().unwrap_or_default()
            ),
        });
    }
    let snap = state.rest.registry.snapshot();
    let Some(pods) = snap.get("", "v1", "pods") else {
        return Err(ApiError::internal("the pods resource is not registered"));
    };
    let obj = state.rest.get(&pods, Some(ns), name).await?;
    let pod: Pod = serde_json::from_value(obj)
        .map_err(|e| ApiError::internal(format!("stored pod {ns}/{name} does not decode: {e}")))?;
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let container = match kind {
        Kind::PortForward => None,
        _ => {
            let asked = query
                .iter()
                .find(|(k, _)| k == "container")
                .map(|(_, v)| v.as_str())
                .unwrap_or("");
            Some(resolve_container(&pod, name, asked)?)
        }
    };
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("");
    if node.is_empty() {
        // kube-apiserver answers a log request for an unscheduled pod with an
        // empty body; we say why there is nothing, as it does for exec.
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    let path = match (kind, &container) {
        (Kind::Log, Some(c)) => format!("/containerLogs/{ns}/{name}/{uid}/{c}"),
        (Kind::Exec, Some(c)) => format!("/exec/{ns}/{name}/{uid}/{c}"),
        (Kind::Attach, Some(c)) => format!("/attach/{ns}/{name}/{uid}/{c}"),
        _ => format!("/portForward/{ns}/{name}/{uid}"),
    };
    // The serializer is not Send: keep it out of the awaits below.
    let node_query = {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &query {
            if k != "container" && k != "insecureSkipTLSVerifyBackend" {
                q.append_pair(k, v);
            }
        }
        q.finish()
    };
    let uri = if node_query.is_empty() {
        path
    } else {
        format!("{path}?{node_query}")
    };
    *req.uri_mut() = uri
        .parse::<Uri>()
        .map_err(|_| ApiError::bad_request(format!("pod {name}: names do not form a node path")))?;
    let Some(connector) = state.node_connector() else {
        return Err(unreachable_node(node));
    };
    connector
        .forward(node, req)
        .await
        .ok_or_else(|| unreachable_node(node))
}

fn unreachable_node(node: &str) -> ApiError {
    ApiError::bad_request(format!("node {node} is not reachable"))
}

/// The container a request is for: the one named, or the pod's only
/// container. Errors are worded as kube-apiserver words them.
fn resolve_container(pod: &Pod, name: &str, asked: &str) -> ApiResult<String> {
    let spec = pod.spec.as_ref();
    let containers: Vec<&str> = spec
        .map(|s| s.containers.iter().map(|c| c.name.as_str()).collect())
        .unwrap_or_default();
    let init: Vec<&str> = spec
        .and_then(|s| s.init_containers.as_ref())
        .map(|cs| cs.iter().map(|c| c.name.as_str()).collect())
        .unwrap_or_default();
    let ephemeral: Vec<&str> = spec
        .and_then(|s| s.ephemeral_containers.as_ref())
        .map(|cs| cs.iter().map(|c| c.name.as_str()).collect())
        .unwrap_or_default();
    if asked.is_empty() {
        return match containers.as_slice() {
            [only] => Ok((*only).to_string()),
            [] => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}"
            ))),
            many => {
                let mut message = format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    many.join(" ")
                );
                if !init.is_empty() {
                    message.push_str(&format!(
                        " or one of the init containers: [{}]",
                        init.join(" ")
                    ));
                }
                Err(ApiError::bad_request(message))
            }
        };
    }
    if containers
        .iter()
        .chain(&init)
        .chain(&ephemeral)
        .any(|c| *c == asked)
    {
        Ok(asked.to_string())
    } else {
        Err(ApiError::bad_request(format!(
            "container {asked} is not valid for pod {name}"
        )))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pod(containers: &[&str], init: &[&str]) -> Pod {
        let c = |n: &&str| serde_json::json!({"name": n, "image": "x"});
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": containers.iter().map(c).collect::<Vec<_>>(),
                "initContainers": init.iter().map(c).collect::<Vec<_>>(),
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_only_container_is_the_default() {
        assert_eq!(resolve_container(&pod(&["a"], &[]), "p", "").unwrap(), "a");
        assert_eq!(
            resolve_container(&pod(&["a", "b"], &["i"]), "p", "i").unwrap(),
            "i"
        );
    }

    #[test]
    fn container_errors_read_like_kube_apiserver() {
        let e = resolve_container(&pod(&["a", "b"], &["i"]), "p", "").unwrap_err();
        assert_eq!(
            e.to_string(),
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        let e = resolve_container(&pod(&["a", "b"], &[]), "p", "").unwrap_err();
        assert_eq!(
            e.to_string(),
            "a container name must be specified for pod p, choose one of: [a b]"
        );
        let e = resolve_container(&pod(&["a"], &[]), "p", "y").unwrap_err();
        assert_eq!(e.to_string(), "container y is not valid for pod p");
        assert_eq!(e.code(), http::StatusCode::BAD_REQUEST);
    }
}
