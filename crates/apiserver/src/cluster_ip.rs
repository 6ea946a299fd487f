//! ClusterIP allocation for Services from the service CIDR (10.96.0.0/12, as
//! kubeadm's default). Each allocated address is a key
//! `/skiff/ipallocations/<ip>` whose value is the owning `namespace/name`:
//! `create` on the store makes an address impossible to hand out twice, and the
//! key is deleted with its Service.

use std::net::Ipv4Addr;

use bytes::Bytes;
use serde_json::{json, Value};
use skiff_store::Store;

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
}
