//! ClusterIP allocation for Services from the service CIDR (10.96.0.0/12, as
//! kubeadm's default). Each allocated address is a key
//! `/skiff/ipallocations/<ip>` whose value is the owning `namespace/name`:
//! `create` on the store makes an address impossible to hand out twice, and the
//! key is deleted with its Service.
//!
//! A crash between a Service's delete and the release of its key would leak
//! the address, and a store restored from a backup may lack keys of existing
//! Services: [`spawn_repair`] runs upstream's repair loop (kube-apiserver's
//! ipallocator repair controller) at start and then every [`REPAIR_PERIOD`],
//! releasing keys no Service holds and registering the missing ones.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use skiff_store::{ListOptions, Revision, Store};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{ApiError, ApiResult};
use crate::object;

/// First address of the service CIDR.
const BASE: u32 = u32::from_be_bytes([10, 96, 0, 0]);
/// Prefix length of the service CIDR.
const PREFIX: u32 = 12;
const SIZE: u32 = 1 << (32 - PREFIX);
const KEY_PREFIX: &str = "/skiff/ipallocations/";

fn key(ip: Ipv4Addr) -> String {
    format!("{KEY_PREFIX}{ip}")
}

fn in_range(ip: Ipv4Addr) -> bool {
    let n = u32::from(ip);
    n > BASE && n < BASE + SIZE - 1
}

fn owner(obj: &Value) -> String {
    format!(
        "{}/{}",
        object::namespace(obj).unwrap_or(""),
        object::name(obj)
    )
}

/// Does this Service want a cluster IP (not headless, not ExternalName)?
fn wants_ip(svc: &Value) -> bool {
    let t = svc
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let ip = svc
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("");
    t != "ExternalName" && ip != "None"
}

fn invalid(svc: &Value, value: &str, detail: String) -> ApiError {
    ApiError::Invalid {
        kind: "Service".into(),
        group: String::new(),
        name: object::name(svc).to_string(),
        errors: vec![skiff_resources::FieldError::invalid(
            "spec.clusterIPs",
            json!([value]),
            detail,
        )],
    }
}

/// The outcome of trying to reserve one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reserved {
    /// Newly reserved by this call.
    Fresh,
    /// Already held by the same Service (a repeated create of it).
    Ours,
    /// Held by another Service.
    Taken,
}

async fn reserve(store: &dyn Store, ip: Ipv4Addr, who: &str) -> ApiResult<Reserved> {
    match store.create(&key(ip), Bytes::from(who.to_string())).await {
        Ok(_) => Ok(Reserved::Fresh),
        Err(skiff_store::Error::AlreadyExists { .. }) => {
            let held = store.get(&key(ip)).await?;
            Ok(
                if held.is_some_and(|kv| kv.value.as_ref() == who.as_bytes()) {
                    Reserved::Ours
                } else {
                    Reserved::Taken
                },
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// Give a new Service its cluster IP: the requested one if free, else a random
/// free address. Sets `spec.clusterIP` and `spec.clusterIPs`. Returns whether an
/// address was newly reserved (the caller releases it if the create fails).
pub async fn allocate(store: &dyn Store, svc: &mut Value) -> ApiResult<bool> {
    if !wants_ip(svc) {
        return Ok(false);
    }
    let who = owner(svc);
    let requested = svc
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let (ip, fresh) = if requested.is_empty() {
        let mut found = None;
        for _ in 0..64 {
            let offset = 2 + rand::random::<u32>() % (SIZE - 3);
            let ip = Ipv4Addr::from(BASE + offset);
            if reserve(store, ip, &who).await? == Reserved::Fresh {
                found = Some(ip);
                break;
            }
        }
        let ip = found.ok_or_else(|| ApiError::internal("no free cluster IP after 64 attempts"))?;
        (ip, true)
    } else {
        let ip: Ipv4Addr = requested
            .parse()
            .map_err(|_| invalid(svc, &requested, "must be a valid IP address".into()))?;
        if !in_range(ip) {
            return Err(invalid(
                svc,
                &requested,
                format!("failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is 10.96.0.0/12"),
            ));
        }
        match reserve(store, ip, &who).await? {
            Reserved::Taken => {
                return Err(invalid(
                    svc,
                    &requested,
                    format!("failed to allocate IP {ip}: provided IP is already allocated"),
                ))
            }
            Reserved::Fresh => (ip, true),
            Reserved::Ours => (ip, false),
        }
    };
    if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("clusterIP".into(), json!(ip.to_string()));
        spec.insert("clusterIPs".into(), json!([ip.to_string()]));
    }
    Ok(fresh)
}

/// Give back the address of a Service that is gone (or whose create failed).
pub async fn release(store: &dyn Store, svc: &Value) {
    let Some(ip) = svc
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Ipv4Addr>().ok())
    else {
        return;
    };
    let who = owner(svc);
    match store.get(&key(ip)).await {
        Ok(Some(kv)) if kv.value.as_ref() == who.as_bytes() => {
            if let Err(e) = store.delete(&key(ip), Some(kv.mod_revision)).await {
                tracing::warn!(%ip, error = %e, "releasing a cluster IP failed");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(%ip, error = %e, "releasing a cluster IP failed"),
    }
}

/// On update, an empty `clusterIP` keeps the allocated one (as Kubernetes does).
pub fn keep_on_update(old: &Value, new: &mut Value) {
    let empty = new
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if !empty {
        return;
    }
    if let (Some(ip), Some(spec)) = (
        old.pointer("/spec/clusterIP").cloned(),
        new.get_mut("spec").and_then(Value::as_object_mut),
    ) {
        spec.insert("clusterIP".into(), ip);
        if let Some(ips) = old.pointer("/spec/clusterIPs") {
            spec.insert("clusterIPs".into(), ips.clone());
        }
    }
}

/// How often the repair loop runs; a key is released only once it has been
/// without a Service for at least this long.
pub const REPAIR_PERIOD: Duration = Duration::from_secs(60);

/// Where Services are stored.
const SERVICES_PREFIX: &str = "/registry/core/services/";

/// What one repair pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repaired {
    /// The revision the allocations were read at (the next pass's `settled`).
    pub revision: Revision,
    /// Keys released because no Service holds their address.
    pub released: usize,
    /// Keys created for Services whose address had none.
    pub registered: usize,
}

/// Run [`repair`] now and every [`REPAIR_PERIOD`] until `shutdown`.
pub fn spawn_repair(store: Arc<dyn Store>, shutdown: CancellationToken, tasks: &TaskTracker) {
    tasks.spawn(async move {
        let mut settled: Option<Revision> = None;
        let mut tick = tokio::time::interval(REPAIR_PERIOD);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match repair(store.as_ref(), settled).await {
                Ok(r) => {
                    if r.released > 0 || r.registered > 0 {
                        tracing::info!(
                            released = r.released,
                            registered = r.registered,
                            "cluster IP repair"
                        );
                    }
                    settled = Some(r.revision);
                }
                Err(e) => tracing::warn!(error = %e, "cluster IP repair failed"),
            }
        }
    });
}

/// One repair pass. Allocation keys whose Service is gone (or holds another
/// address) are released, but only if they were written at or before
/// `settled` (the revision of the previous pass): a Service being created
/// right now reserves its address before it is stored, and must not lose it.
/// Services that hold an address without a key get one.
///
/// Allocations are read before Services: a Service deleted after the first
/// read is still seen with its key, so a key released by a concurrent delete
/// is never registered again.
pub async fn repair(store: &dyn Store, settled: Option<Revision>) -> ApiResult<Repaired> {
    let allocations = store.list(KEY_PREFIX, ListOptions::default()).await?;
    let services = store.list(SERVICES_PREFIX, ListOptions::default()).await?;
    // Address → owner, for every Service that holds one.
    let mut held: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    for kv in &services.items {
        let Ok(svc) = serde_json::from_slice::<Value>(&kv.value) else {
            tracing::warn!(key = %kv.key, "unreadable service in the store");
            continue;
        };
        if !wants_ip(&svc) {
            continue;
        }
        let Some(ip) = svc
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
            .filter(|ip| in_range(*ip))
        else {
            continue;
        };
        let who = owner(&svc);
        if let Some(other) = held.insert(ip, who.clone()) {
            tracing::warn!(%ip, first = %other, second = %who, "cluster IP held by two services; recreate one of them");
        }
    }
    let mut allocated: HashMap<Ipv4Addr, String> = HashMap::new();
    let mut released = 0;
    for kv in &allocations.items {
        let owner_now = String::from_utf8_lossy(&kv.value).into_owned();
        let ip = kv
            .key
            .strip_prefix(KEY_PREFIX)
            .and_then(|s| s.parse::<Ipv4Addr>().ok());
        if let Some(ip) = ip {
            if held.get(&ip) == Some(&owner_now) {
                allocated.insert(ip, owner_now);
                continue;
            }
        }
        let old_enough = settled.is_some_and(|s| kv.mod_revision <= s);
        if !old_enough {
            continue;
        }
        match store.delete(&kv.key, Some(kv.mod_revision)).await {
            Ok(_) => {
                tracing::info!(key = %kv.key, owner = %owner_now, "released a leaked cluster IP");
                released += 1;
            }
            // Changed or released meanwhile: the next pass looks again.
            Err(skiff_store::Error::NotFound { .. } | skiff_store::Error::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut registered = 0;
    for (ip, who) in &held {
        if allocated.contains_key(ip) {
            continue;
        }
        match store.create(&key(*ip), Bytes::from(who.clone())).await {
            Ok(_) => {
                tracing::info!(%ip, owner = %who, "registered a missing cluster IP allocation");
                registered += 1;
            }
            Err(skiff_store::Error::AlreadyExists { .. }) => {
                let current = store.get(&key(*ip)).await?;
                if current.is_some_and(|kv| kv.value.as_ref() != who.as_bytes()) {
                    tracing::warn!(%ip, owner = %who, "cluster IP of a service is allocated to another");
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Repaired {
        revision: allocations.revision,
        released,
        registered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_excludes_network_and_broadcast() {
        assert!(!in_range(Ipv4Addr::new(10, 96, 0, 0)));
        assert!(in_range(Ipv4Addr::new(10, 96, 0, 1)));
        assert!(in_range(Ipv4Addr::new(10, 111, 255, 254)));
        assert!(!in_range(Ipv4Addr::new(10, 111, 255, 255)));
        assert!(!in_range(Ipv4Addr::new(10, 112, 0, 1)));
    }

    #[test]
    fn headless_and_external_name_get_no_ip() {
        assert!(!wants_ip(&json!({"spec": {"clusterIP": "None"}})));
        assert!(!wants_ip(&json!({"spec": {"type": "ExternalName"}})));
        assert!(wants_ip(&json!({"spec": {"type": "NodePort"}})));
    }

    async fn put_service(store: &dyn Store, ns: &str, name: &str, ip: &str) {
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "clusterIPs": [ip], "type": "ClusterIP"},
        });
        store
            .create(
                &format!("{SERVICES_PREFIX}{ns}/{name}"),
                Bytes::from(svc.to_string()),
            )
            .await
            .expect("create service");
    }

    async fn owner_of(store: &dyn Store, ip: &str) -> Option<String> {
        store
            .get(&format!("{KEY_PREFIX}{ip}"))
            .await
            .expect("get")
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
    }

    #[tokio::test]
    async fn repair_releases_leaks_once_settled_and_registers_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = skiff_store::SqliteStore::open(
            &dir.path().join("state.db"),
            skiff_store::SqliteOptions::default(),
        )
        .expect("open store");
        let store: &dyn Store = &store;
        // A healthy Service with its key.
        let mut svc = json!({
            "metadata": {"name": "kept", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.5"},
        });
        allocate(store, &mut svc).await.expect("allocate");
        put_service(store, "default", "kept", "10.96.0.5").await;
        // A key whose Service is gone (the crash between delete and release).
        store
            .create(
                &key(Ipv4Addr::new(10, 96, 0, 7)),
                Bytes::from("default/gone"),
            )
            .await
            .expect("leak");
        // A key held for a Service that now has another address.
        store
            .create(
                &key(Ipv4Addr::new(10, 96, 0, 8)),
                Bytes::from("default/kept"),
            )
            .await
            .expect("stale");
        // A Service whose key is missing (e.g. restored from a backup).
        put_service(store, "default", "bare", "10.96.0.9").await;
        // A headless Service needs none.
        put_service(store, "default", "headless", "None").await;

        // First pass: nothing is old enough to release, the missing key is made.
        let first = repair(store, None).await.expect("repair");
        assert_eq!((first.released, first.registered), (0, 1));
        assert_eq!(
            owner_of(store, "10.96.0.7").await.as_deref(),
            Some("default/gone")
        );
        assert_eq!(
            owner_of(store, "10.96.0.9").await.as_deref(),
            Some("default/bare")
        );

        // A reservation made after the first pass (a create in flight) survives
        // the second pass; the settled leaks go.
        store
            .create(
                &key(Ipv4Addr::new(10, 96, 0, 11)),
                Bytes::from("default/creating"),
            )
            .await
            .expect("in flight");
        let second = repair(store, Some(first.revision)).await.expect("repair");
        assert_eq!((second.released, second.registered), (2, 0));
        assert_eq!(owner_of(store, "10.96.0.7").await, None);
        assert_eq!(owner_of(store, "10.96.0.8").await, None);
        assert_eq!(
            owner_of(store, "10.96.0.5").await.as_deref(),
            Some("default/kept")
        );
        assert_eq!(
            owner_of(store, "10.96.0.9").await.as_deref(),
            Some("default/bare")
        );
        assert_eq!(
            owner_of(store, "10.96.0.11").await.as_deref(),
            Some("default/creating")
        );
        // Still no Service after another period: released then.
        let third = repair(store, Some(second.revision)).await.expect("repair");
        assert_eq!(third.released, 1);
        assert_eq!(owner_of(store, "10.96.0.11").await, None);
        // And the address can be handed out again.
        let mut again = json!({
            "metadata": {"name": "new", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.7"},
        });
        assert!(allocate(store, &mut again).await.expect("allocate"));
    }
}
