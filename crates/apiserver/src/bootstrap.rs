//! Objects every cluster has: the system namespaces and the `kubernetes` Service.
//! Created through the normal REST path, so they are validated like user objects.

use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::query::WriteOptions;
use crate::rest::Rest;

const MANAGER: &str = "skiff-bootstrap";

async fn ensure(
    rest: &Rest,
    group: &str,
    version: &str,
    plural: &str,
    ns: Option<&str>,
    obj: serde_json::Value,
) -> ApiResult<()> {
    let snap = rest.registry.snapshot();
    let Some(res) = snap.get(group, version, plural) else {
        return Err(ApiError::internal(format!(
            "bootstrap: resource {plural} is not registered"
        )));
    };
    match rest
        .create(&res, ns, obj, &WriteOptions::internal(MANAGER))
        .await
    {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

pub async fn run(rest: &Rest) -> ApiResult<()> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure(
            rest,
            "",
            "v1",
            "namespaces",
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await?;
    }
    ensure(
        rest,
        "",
        "v1",
        "services",
        Some("default"),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"], "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}
        }),
    )
    .await
}
