//! Serving CustomResourceDefinitions: every stored CRD's served versions become
//! registry entries, its status says it is established, and deleting it first
//! deletes its custom objects (the `customresourcecleanup` finalizer).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use skiff_store::Revision;
use tokio_util::sync::CancellationToken;

use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::query::{ListParams, WriteOptions};
use crate::registry::Resource;
use crate::rest::{DeleteOptions, Propagation, Rest};

const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
const MANAGER: &str = "skiff-apiextensions";

fn crd_resource(rest: &Rest) -> ApiResult<Arc<Resource>> {
    rest.registry
        .snapshot()
        .get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .ok_or_else(|| ApiError::internal("customresourcedefinitions are not registered"))
}

async fn list_crds(rest: &Rest) -> ApiResult<(Vec<Value>, Revision)> {
    let res = crd_resource(rest)?;
    let page = rest.list(&res, None, &ListParams::default()).await?;
    Ok((page.items, page.resource_version))
}

/// Recompute the served custom resources from `crds` and swap them into the registry.
fn publish(rest: &Rest, crds: &[Value]) {
    let snap = rest.registry.snapshot();
    let mut custom = Vec::new();
    for crd in crds {
        let versions = match skiff_resources::crd_resource_defs(crd) {
            Ok(v) => v,
            Err(errors) => {
                tracing::warn!(
                    crd = object::name(crd),
                    ?errors,
                    "not serving an invalid CRD"
                );
                continue;
            }
        };
        let Some(storage) = versions.iter().find(|v| v.storage).map(|v| v.name.clone()) else {
            continue;
        };
        for v in versions {
            // A CRD may not shadow a built-in resource.
            let clash = snap
                .stored(&v.def.group, &v.def.plural)
                .is_some_and(|r| !r.custom);
            if clash {
                tracing::warn!(
                    crd = object::name(crd),
                    "CRD names clash with a built-in resource; not served"
                );
                break;
            }
            custom.push(Resource {
                def: v.def,
                storage_version: storage.clone(),
                custom: true,
                crd_schema: v.schema,
            });
        }
    }
    rest.registry.set_custom(custom);
}

/// Load every stored CRD into the registry (at start-up).
pub async fn load(rest: &Rest) -> ApiResult<()> {
    let (crds, _) = list_crds(rest).await?;
    publish(rest, &crds);
    Ok(())
}

fn desired_status(crd: &Value) -> Value {
    let mut status = crd.get("status").cloned().unwrap_or_else(|| json!({}));
    let now = object::now_rfc3339();
    let names = crd
        .pointer("/spec/names")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut accepted = names.clone();
    if accepted
        .get("singular")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        let kind = names
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_lowercase();
        accepted["singular"] = json!(kind);
    }
    if accepted
        .get("listKind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        let kind = names.get("kind").and_then(Value::as_str).unwrap_or("");
        accepted["listKind"] = json!(format!("{kind}List"));
    }
    status["acceptedNames"] = accepted;
    let old_conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let condition = |t: &str, reason: &str, message: &str| {
        let since = old_conditions
            .iter()
            .find(|c| {
                c.get("type").and_then(Value::as_str) == Some(t)
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now));
        json!({"type": t, "status": "True", "lastTransitionTime": since, "reason": reason, "message": message})
    };
    status["conditions"] = json!([
        condition("NamesAccepted", "NoConflicts", "no conflicts found"),
        condition(
            "Established",
            "InitialNamesAccepted",
            "the initial names have been accepted"
        ),
    ]);
    let mut stored: Vec<Value> = status
        .get("storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(versions) = crd.pointer("/spec/versions").and_then(Value::as_array) {
        for v in versions {
            if v.get("storage").and_then(Value::as_bool) == Some(true) {
                if let Some(name) = v.get("name") {
                    if !stored.contains(name) {
                        stored.push(name.clone());
                    }
                }
            }
        }
    }
    status["storedVersions"] = json!(stored);
    status
}

/// Bring one CRD's finalizer, status and (when deleting) its objects in line.
async fn reconcile(rest: &Rest, crd: &Value) -> ApiResult<()> {
    let res = crd_resource(rest)?;
    let name = object::name(crd).to_string();
    let opts = WriteOptions::internal(MANAGER);
    let mut finalizers = object::finalizers(crd);
    if object::deletion_timestamp(crd).is_some() {
        if !finalizers.iter().any(|f| f == CLEANUP_FINALIZER) {
            return Ok(());
        }
        let group = crd
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or("");
        let plural = crd
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or("");
        let snap = rest.registry.snapshot();
        if let Some(cr) = snap
            .all()
            .into_iter()
            .find(|r| r.custom && r.def.group == group && r.def.plural == plural)
        {
            let del = DeleteOptions {
                propagation: Some(Propagation::Background),
                ..Default::default()
            };
            let left = rest
                .delete_collection(&cr, None, &ListParams::default(), &del)
                .await?;
            if !left.is_empty() {
                let remaining = rest.list(&cr, None, &ListParams::default()).await?;
                if !remaining.items.is_empty() {
                    // Objects with finalizers of their own: try again later.
                    return Ok(());
                }
            }
        }
        finalizers.retain(|f| f != CLEANUP_FINALIZER);
        let mut next = crd.clone();
        object::set_finalizers(&mut next, finalizers);
        rest.update(&res, None, &name, next, None, &opts).await?;
        return Ok(());
    }
    let mut current = crd.clone();
    if !finalizers.iter().any(|f| f == CLEANUP_FINALIZER) {
        finalizers.push(CLEANUP_FINALIZER.into());
        let mut next = crd.clone();
        object::set_finalizers(&mut next, finalizers);
        current = rest
            .update(&res, None, &name, next, None, &opts)
            .await?
            .object;
    }
    let status = desired_status(&current);
    if current.get("status") != Some(&status) {
        let mut next = current.clone();
        next["status"] = status;
        rest.update(&res, None, &name, next, Some("status"), &opts)
            .await?;
    }
    Ok(())
}

async fn reconcile_all(rest: &Rest) -> ApiResult<Revision> {
    let (crds, rev) = list_crds(rest).await?;
    publish(rest, &crds);
    let mut retry = false;
    for crd in &crds {
        match reconcile(rest, crd).await {
            Ok(()) => {}
            Err(ApiError::Conflict { .. }) | Err(ApiError::NotFound { .. }) => retry = true,
            Err(e) => {
                tracing::warn!(crd = object::name(crd), error = %e, "CRD reconcile failed");
                retry = true;
            }
        }
    }
    if retry {
        return Err(ApiError::Conflict {
            message: "retry".into(),
            details: None,
        });
    }
    Ok(rev)
}

/// Watch CRDs and keep the registry and their status current. Level-triggered:
/// every change (and a periodic resync) reconciles every CRD.
pub fn spawn_controller(
    rest: Arc<Rest>,
    shutdown: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) {
    tasks.spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let from = match reconcile_all(&rest).await {
                Ok(rev) => {
                    backoff = Duration::from_millis(100);
                    rev
                }
                Err(_) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            let Ok(res) = crd_resource(&rest) else { return };
            let mut stream = match rest.store.watch(&res.collection_prefix(), from).await {
                Ok(s) => s,
                Err(_) => continue,
            };
            let resync = tokio::time::sleep(Duration::from_secs(30));
            tokio::pin!(resync);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = &mut resync => {}
                ev = stream.next() => { let _ = ev; } // any change: reconcile everything
            }
        }
    });
}
