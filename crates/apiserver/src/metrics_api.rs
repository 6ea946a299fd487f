//! The resource metrics API (`metrics.k8s.io/v1beta1`, what metrics-server
//! serves and `kubectl top` reads): PodMetrics and NodeMetrics, read-only,
//! built on request from a [`MetricsProvider`] (the nodes of this process).
//! Served only once a provider is set ([`crate::state::ApiState::set_metrics_provider`]);
//! until then the group is absent from discovery, as on a cluster without
//! metrics-server.
//!
//! A node's usage is the sum over the pods bound to it that report usage.

use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::query::{ListParams, Query};
use crate::request_info::{ResourceRequest, Verb};
use crate::state::ApiState;

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";

/// One container's usage.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerUsage {
    pub name: String,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

/// One pod's usage, per container.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSample {
    /// RFC 3339 time of the sample.
    pub timestamp: String,
    /// The window the CPU rate was measured over, in seconds.
    pub window_seconds: u64,
    pub containers: Vec<ContainerUsage>,
}

/// Where pod usage comes from.
#[async_trait::async_trait]
pub trait MetricsProvider: Send + Sync {
    /// The pod's current usage, or `None` if no node reports it.
    async fn pod(&self, namespace: &str, name: &str) -> Option<PodSample>;
}

/// Whether this request is for the metrics API.
pub fn handles(group: &str) -> bool {
    group == GROUP
}

fn resources() -> [(&'static str, &'static str, &'static str, bool); 2] {
    [
        ("nodes", "node", "NodeMetrics", false),
        ("pods", "pod", "PodMetrics", true),
    ]
}

/// `APIGroup` entry for `/apis` and `/apis/metrics.k8s.io`.
pub fn group_entry() -> Value {
    let v = json!({"groupVersion": format!("{GROUP}/{VERSION}"), "version": VERSION});
    json!({"name": GROUP, "versions": [v.clone()], "preferredVersion": v})
}

/// The `APIResourceList` of `/apis/metrics.k8s.io/v1beta1`.
pub fn resource_list() -> Value {
    let rs: Vec<Value> = resources()
        .iter()
        .map(|(plural, singular, kind, namespaced)| {
            json!({"name": plural, "singularName": singular, "namespaced": namespaced,
                   "kind": kind, "verbs": ["get", "list"]})
        })
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1",
           "groupVersion": format!("{GROUP}/{VERSION}"), "resources": rs})
}

/// The group's entry in aggregated discovery (`/apis`).
pub fn aggregated_entry() -> Value {
    let rs: Vec<Value> = resources()
        .iter()
        .map(|(plural, singular, kind, namespaced)| {
            json!({
                "resource": plural,
                "responseKind": {"group": GROUP, "version": VERSION, "kind": kind},
                "scope": if *namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": singular,
                "verbs": ["get", "list"],
            })
        })
        .collect();
    json!({"metadata": {"name": GROUP, "creationTimestamp": null},
           "versions": [{"version": VERSION, "resources": rs, "freshness": "Current"}]})
}

/// Kubernetes quantity for millicores (`"250m"`).
fn cpu_quantity(millis: u64) -> String {
    format!("{millis}m")
}

/// Kubernetes quantity for bytes (`"1234Ki"`, as metrics-server rounds).
fn memory_quantity(bytes: u64) -> String {
    if bytes.is_multiple_of(1024) {
        format!("{}Ki", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

fn usage(cpu_millis: u64, memory_bytes: u64) -> Value {
    json!({"cpu": cpu_quantity(cpu_millis), "memory": memory_quantity(memory_bytes)})
}

fn pod_metrics(pod: &Value, sample: &PodSample) -> Value {
    let meta = &pod["metadata"];
    let containers: Vec<Value> = sample
        .containers
        .iter()
        .map(|c| json!({"name": c.name, "usage": usage(c.cpu_millis, c.memory_bytes)}))
        .collect();
    json!({
        "kind": "PodMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": meta["labels"],
            "creationTimestamp": sample.timestamp,
        },
        "timestamp": sample.timestamp,
        "window": format!("{}s", sample.window_seconds),
        "containers": containers,
    })
}

fn node_metrics(node: &Value, samples: &[PodSample]) -> Value {
    let (cpu, mem) =
        samples
            .iter()
            .flat_map(|s| s.containers.iter())
            .fold((0u64, 0u64), |(c, m), u| {
                (
                    c.saturating_add(u.cpu_millis),
                    m.saturating_add(u.memory_bytes),
                )
            });
    let timestamp = samples
        .iter()
        .map(|s| s.timestamp.clone())
        .max()
        .unwrap_or_else(|| chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let window = samples.iter().map(|s| s.window_seconds).max().unwrap_or(10);
    json!({
        "kind": "NodeMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {
            "name": node["metadata"]["name"],
            "labels": node["metadata"]["labels"],
            "creationTimestamp": timestamp,
        },
        "timestamp": timestamp,
        "window": format!("{window}s"),
        "usage": usage(cpu, mem),
    })
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({
        "kind": kind,
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {},
        "items": items,
    })
}

fn not_found(resource: &str, name: &str) -> ApiError {
    ApiError::not_found(GROUP, resource, name)
}

async fn sample_of(provider: &dyn MetricsProvider, pod: &Value) -> Option<PodSample> {
    let ns = pod["metadata"]["namespace"].as_str()?;
    let name = pod["metadata"]["name"].as_str()?;
    provider.pod(ns, name).await
}

/// `GET` of `pods` or `nodes` (one or a list).
pub async fn serve(
    state: &ApiState,
    r: ResourceRequest,
    query: Option<&str>,
) -> ApiResult<Response> {
    let Some(provider) = state.metrics_provider() else {
        return Err(ApiError::NotFound {
            message: "the server could not find the requested resource".into(),
            details: None,
        });
    };
    if r.version != VERSION || r.subresource.is_some() {
        return Err(ApiError::NotFound {
            message: "the server could not find the requested resource".into(),
            details: None,
        });
    }
    if !matches!(r.verb, Verb::Get | Verb::List) {
        return Err(ApiError::MethodNotAllowed {
            message: format!(
                "the server does not allow this method on the requested resource ({})",
                r.resource
            ),
        });
    }
    let snap = state.rest.registry.snapshot();
    let (Some(pods), Some(nodes)) = (snap.get("", "v1", "pods"), snap.get("", "v1", "nodes"))
    else {
        return Err(ApiError::internal("pods and nodes are not registered"));
    };
    let q = Query::parse(query);
    let mut params = ListParams::from_query(&q)?;
    params.limit = None;
    params.continue_token = None;
    let body = match (r.resource.as_str(), r.name.as_deref()) {
        ("pods", Some(name)) => {
            let ns = r.namespace.as_deref().unwrap_or("default");
            let pod = state.rest.get(&pods, Some(ns), name).await?;
            let sample = sample_of(provider.as_ref(), &pod)
                .await
                .ok_or_else(|| not_found("pods", name))?;
            pod_metrics(&pod, &sample)
        }
        ("pods", None) => {
            let page = state
                .rest
                .list(&pods, r.namespace.as_deref(), &params)
                .await?;
            let mut items = Vec::new();
            for pod in &page.items {
                if let Some(sample) = sample_of(provider.as_ref(), pod).await {
                    items.push(pod_metrics(pod, &sample));
                }
            }
            list("PodMetricsList", items)
        }
        ("nodes", name) => {
            let node_list = match name {
                Some(n) => vec![state.rest.get(&nodes, None, n).await?],
                None => state.rest.list(&nodes, None, &params).await?.items,
            };
            let all_pods = state
                .rest
                .list(&pods, None, &ListParams::default())
                .await?
                .items;
            let mut items = Vec::new();
            for node in &node_list {
                let node_name = node["metadata"]["name"].as_str().unwrap_or_default();
                let mut samples = Vec::new();
                for pod in all_pods
                    .iter()
                    .filter(|p| p["spec"]["nodeName"].as_str() == Some(node_name))
                {
                    if let Some(s) = sample_of(provider.as_ref(), pod).await {
                        samples.push(s);
                    }
                }
                items.push(node_metrics(node, &samples));
            }
            match name {
                Some(n) => items.pop().ok_or_else(|| not_found("nodes", n))?,
                None => list("NodeMetricsList", items),
            }
        }
        (other, _) => return Err(not_found(other, r.name.as_deref().unwrap_or_default())),
    };
    let bytes = serde_json::to_vec(&body).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(cpu_quantity(250), "250m");
        assert_eq!(memory_quantity(2048), "2Ki");
        assert_eq!(memory_quantity(1000), "1000");
    }

    #[test]
    fn node_usage_sums_its_pods() {
        let s = |cpu, mem| PodSample {
            timestamp: "2026-01-01T00:00:00Z".into(),
            window_seconds: 5,
            containers: vec![ContainerUsage {
                name: "c".into(),
                cpu_millis: cpu,
                memory_bytes: mem,
            }],
        };
        let node = json!({"metadata": {"name": "n1"}});
        let m = node_metrics(&node, &[s(100, 1024), s(50, 2048)]);
        assert_eq!(m["usage"]["cpu"], "150m");
        assert_eq!(m["usage"]["memory"], "3Ki");
        assert_eq!(m["window"], "5s");
        assert_eq!(m["metadata"]["name"], "n1");
    }
}
