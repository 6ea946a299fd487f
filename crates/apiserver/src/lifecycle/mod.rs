//! The API server's own lifecycle loops: garbage collection of dependents
//! (`ownerReferences` with Background, Foreground and Orphan propagation) and
//! namespace deletion (a Terminating namespace's contents are deleted, then the
//! namespace itself).
//!
//! Both run from one index of every object's identity, owners and deletion
//! state, fed by a single watch on the whole store. Reads come from that watch;
//! every write goes through [`Rest`], so it is validated and CAS-checked like any
//! client's. Decisions are level-triggered: an object is re-examined whenever it,
//! its owners or its dependents change, and periodically while work is pending.

mod index;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use serde_json::{json, Value};
use skiff_store::{EventKind, ListOptions};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::query::{ListParams, WriteOptions};
use crate::rest::{DeleteOptions, Propagation, Rest};
use index::{Index, Node};

const MANAGER: &str = "skiff-lifecycle";
const NAMESPACE_FINALIZER: &str = "kubernetes";

/// Start the lifecycle loop.
pub fn spawn(rest: Arc<Rest>, shutdown: CancellationToken, tasks: &TaskTracker) {
    tasks.spawn(async move {
        let mut backoff = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            match run(&rest, &shutdown).await {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(e) => {
                    tracing::warn!(error = %e, "lifecycle loop restarting");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    });
}

/// One list + watch session; returns when the watch ends (the caller relists).
async fn run(rest: &Rest, shutdown: &CancellationToken) -> ApiResult<()> {
    let page = rest
        .store
        .list("/registry/", ListOptions::default())
        .await?;
    let mut idx = Index::default();
    let snap = rest.registry.snapshot();
    for kv in &page.items {
        idx.put(&snap, kv);
    }
    let mut dirty: HashSet<String> = idx
        .nodes()
        .filter(|n| !n.owners.is_empty() || n.deleting)
        .map(|n| n.uid.clone())
        .collect();
    let mut stream = rest.store.watch("/registry/", page.revision).await?;
    tracing::debug!(
        objects = page.items.len(),
        revision = page.revision.0,
        "lifecycle index synced"
    );
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut pending: HashSet<String> = HashSet::new();
    loop {
        process(rest, &idx, &mut dirty, &mut pending).await;
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {
                dirty.extend(pending.drain());
            }
            ev = stream.next() => {
                let Some(ev) = ev else { return Ok(()) };
                let snap = rest.registry.snapshot();
                apply_event(&mut idx, &snap, ev?, &mut dirty);
                // Take whatever else is already queued before acting.
                while let Some(Some(ev)) = stream.next().now_or_never() {
                    apply_event(&mut idx, &snap, ev?, &mut dirty);
                }
            }
        }
    }
}

fn apply_event(
    idx: &mut Index,
    snap: &crate::registry::Snapshot,
    ev: skiff_store::Event,
    dirty: &mut HashSet<String>,
) {
    match ev.kind {
        EventKind::Put => {
            if let Some(uid) = idx.put(snap, &ev.kv) {
                dirty.insert(uid.clone());
                if let Some(n) = idx.get(&uid) {
                    dirty.extend(n.owners.iter().map(|o| o.uid.clone()));
                    if let Some(ns) = idx.namespace_uid(n.namespace.as_deref()) {
                        dirty.insert(ns);
                    }
                }
            }
        }
        EventKind::Delete => {
            if let Some(gone) = idx.remove(&ev.kv.key) {
                dirty.extend(idx.dependents(&gone.uid));
                dirty.extend(gone.owners.iter().map(|o| o.uid.clone()));
                if let Some(ns) = idx.namespace_uid(gone.namespace.as_deref()) {
                    dirty.insert(ns);
                }
            }
        }
    }
}

async fn process(
    rest: &Rest,
    idx: &Index,
    dirty: &mut HashSet<String>,
    pending: &mut HashSet<String>,
) {
    let work: Vec<String> = dirty.drain().collect();
    for uid in work {
        let Some(node) = idx.get(&uid) else { continue };
        let result = examine(rest, idx, node).await;
        tracing::debug!(object = %node.key, ?result, "lifecycle examined");
        match result {
            Ok(true) => {
                pending.insert(uid);
            }
            Ok(false) => {}
            Err(ApiError::Conflict { .. }) | Err(ApiError::NotFound { .. }) => {
                pending.insert(uid);
            }
            Err(e) => {
                tracing::info!(object = %node.key, error = %e, "lifecycle action failed; will retry");
                pending.insert(uid);
            }
        }
    }
}

/// Act on one object. `Ok(true)` = still waiting on something; look again later.
async fn examine(rest: &Rest, idx: &Index, node: &Node) -> ApiResult<bool> {
    // 1. Dependents whose owners are gone.
    if !node.owners.is_empty() && !node.deleting {
        let absent: Vec<&str> = node
            .owners
            .iter()
            .filter(|o| idx.get(&o.uid).is_none())
            .map(|o| o.uid.as_str())
            .collect();
        if absent.len() == node.owners.len() {
            let opts = DeleteOptions {
                propagation: Some(Propagation::Background),
                precondition_uid: Some(node.uid.clone()),
                ..Default::default()
            };
            return match rest
                .delete(&node.res, node.namespace.as_deref(), &node.name, &opts)
                .await
            {
                Ok(_) | Err(ApiError::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            };
        }
        if !absent.is_empty() {
            let absent: Vec<String> = absent.into_iter().map(str::to_string).collect();
            edit(rest, node, |obj| {
                if let Some(refs) = obj
                    .pointer_mut("/metadata/ownerReferences")
                    .and_then(Value::as_array_mut)
                {
                    refs.retain(|r| {
                        !r.get("uid")
                            .and_then(Value::as_str)
                            .is_some_and(|u| absent.iter().any(|a| a == u))
                    });
                }
            })
            .await?;
            return Ok(false);
        }
    }
    if !node.deleting {
        return Ok(false);
    }
    // 2. Orphan: release dependents, then drop the finalizer.
    if node.finalizers.iter().any(|f| f == "orphan") {
        for dep in idx.dependents(&node.uid) {
            let Some(d) = idx.get(&dep) else { continue };
            let owner = node.uid.clone();
            edit(rest, d, |obj| {
                if let Some(refs) = obj
                    .pointer_mut("/metadata/ownerReferences")
                    .and_then(Value::as_array_mut)
                {
                    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner.as_str()));
                }
                if obj
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(Vec::is_empty)
                {
                    object::remove_meta(obj, "ownerReferences");
                }
            })
            .await?;
        }
        remove_finalizer(rest, node, "orphan").await?;
        return Ok(false);
    }
    // 3. Foreground: delete dependents (in the foreground too); the owner goes
    //    once no dependent that blocks owner deletion is left.
    if node.finalizers.iter().any(|f| f == "foregroundDeletion") {
        let mut blocking = false;
        for dep in idx.dependents(&node.uid) {
            let Some(d) = idx.get(&dep) else { continue };
            if d.owners.iter().any(|o| o.uid == node.uid && o.block) {
                blocking = true;
            }
            if !d.deleting {
                let opts = DeleteOptions {
                    propagation: Some(Propagation::Foreground),
                    precondition_uid: Some(d.uid.clone()),
                    ..Default::default()
                };
                match rest
                    .delete(&d.res, d.namespace.as_deref(), &d.name, &opts)
                    .await
                {
                    Ok(_) | Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if blocking {
            return Ok(true);
        }
        remove_finalizer(rest, node, "foregroundDeletion").await?;
        return Ok(false);
    }
    // 4. Namespaces: delete the contents, then release the namespace.
    if node.is_namespace && node.namespace_finalizing {
        return finalize_namespace(rest, idx, node).await;
    }
    Ok(false)
}

async fn finalize_namespace(rest: &Rest, idx: &Index, node: &Node) -> ApiResult<bool> {
    let ns = node.name.clone();
    if idx.count_in_namespace(&ns) > 0 {
        let snap = rest.registry.snapshot();
        let mut seen = HashSet::new();
        let opts = DeleteOptions {
            propagation: Some(Propagation::Background),
            ..Default::default()
        };
        for res in snap.all() {
            if !res.def.namespaced
                || res.def.version != res.storage_version
                || !seen.insert((res.def.group.clone(), res.def.plural.clone()))
            {
                continue;
            }
            if !res.def.verbs.iter().any(|v| v == "delete") {
                continue;
            }
            match rest
                .delete_collection(&res, Some(&ns), &ListParams::default(), &opts)
                .await
            {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => {
                    tracing::debug!(namespace = %ns, resource = %res.def.plural, error = %e, "namespace cleanup")
                }
            }
        }
        return Ok(true);
    }
    let Some(res) = rest.registry.snapshot().get("", "v1", "namespaces") else {
        return Ok(false);
    };
    let mut obj = rest.get(&res, None, &ns).await?;
    let fins: Vec<Value> = obj
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|f| f.as_str() != Some(NAMESPACE_FINALIZER))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    obj["spec"]["finalizers"] = json!(fins);
    rest.update(
        &res,
        None,
        &ns,
        obj,
        Some("finalize"),
        &WriteOptions::internal(MANAGER),
    )
    .await?;
    Ok(false)
}

/// Read-modify-write one object with a resourceVersion precondition.
async fn edit(rest: &Rest, node: &Node, f: impl FnOnce(&mut Value)) -> ApiResult<()> {
    let mut obj = rest
        .get(&node.res, node.namespace.as_deref(), &node.name)
        .await?;
    if object::uid(&obj) != Some(node.uid.as_str()) {
        return Ok(());
    }
    f(&mut obj);
    rest.update(
        &node.res,
        node.namespace.as_deref(),
        &node.name,
        obj,
        None,
        &WriteOptions::internal(MANAGER),
    )
    .await?;
    Ok(())
}

async fn remove_finalizer(rest: &Rest, node: &Node, finalizer: &str) -> ApiResult<()> {
    edit(rest, node, |obj| {
        let fins: Vec<String> = object::finalizers(obj)
            .into_iter()
            .filter(|f| f != finalizer)
            .collect();
        object::set_finalizers(obj, fins);
    })
    .await
}
