//! Tables of core/v1 kinds other than pods.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, LimitRange, Namespace, Node, PersistentVolumeClaim, ResourceQuota,
    Secret, Service, ServiceAccount,
};
use serde_json::Value;

use super::{
    age_cell, col, count, created_at_cell, created_at_col, int_col, map_selector, name_cell, since,
    text, NONE,
};
use crate::{Column, Row};

pub(crate) fn service_columns() -> Vec<Column> {
    vec![
        Column::name(),
        col("Type", "The type of the service."),
        col("Cluster-IP", "The cluster IP of the service."),
        col("External-IP", "The external IP of the service."),
        col("Port(s)", "The ports of the service."),
        Column::age(),
        col(
            "Selector",
            "Route service traffic to pods with label keys and values matching this selector.",
        )
        .wide(),
    ]
}

pub(crate) fn service_row(svc: &Service, now: DateTime<Utc>) -> Row {
    let spec = svc.spec.clone().unwrap_or_default();
    let type_ = spec.type_.clone().unwrap_or_else(|| "ClusterIP".into());
    let cluster_ip = spec
        .cluster_ip
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| NONE.into());
    let external_ips = spec.external_ips.clone().unwrap_or_default();
    let external = match type_.as_str() {
        "ExternalName" => spec.external_name.clone().unwrap_or_default(),
        "LoadBalancer" => {
            let mut ips: Vec<String> = svc
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
                .collect();
            ips.extend(external_ips);
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        _ if external_ips.is_empty() => NONE.into(),
        _ => external_ips.join(","),
    };
    let ports: Vec<String> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| {
            let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            match p.node_port.filter(|n| *n != 0) {
                Some(np) => format!("{}:{np}/{proto}", p.port),
                None => format!("{}/{proto}", p.port),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        NONE.into()
    } else {
        ports.join(",")
    };
    vec![
        name_cell(&svc.metadata),
        text(type_),
        text(cluster_ip),
        text(external),
        text(ports),
        age_cell(&svc.metadata, now),
        text(map_selector(spec.selector.as_ref())),
    ]
}

pub(crate) fn endpoints_columns() -> Vec<Column> {
    vec![
        Column::name(),
        col("Endpoints", "Endpoints of the service."),
        Column::age(),
    ]
}

pub(crate) fn endpoints_row(ep: &Endpoints, now: DateTime<Utc>) -> Row {
    let mut all = Vec::new();
    for subset in ep.subsets.iter().flatten() {
        let addrs = subset.addresses.iter().flatten();
        for a in addrs {
            match subset.ports.as_ref().filter(|p| !p.is_empty()) {
                Some(ports) => all.extend(ports.iter().map(|p| format!("{}:{}", a.ip, p.port))),
                None => all.push(a.ip.clone()),
            }
        }
    }
    let cell = if all.is_empty() {
        NONE.to_string()
    } else if all.len() > 3 {
        format!("{} + {} more...", all[..3].join(","), all.len() - 3)
    } else {
        all.join(",")
    };
    vec![
        name_cell(&ep.metadata),
        text(cell),
        age_cell(&ep.metadata, now),
    ]
}

pub(crate) fn configmap_columns() -> Vec<Column> {
    vec![
        Column::name(),
        int_col("Data", "Number of data in configmap."),
        Column::age(),
    ]
}

pub(crate) fn configmap_row(cm: &ConfigMap, now: DateTime<Utc>) -> Row {
    let n =
        cm.data.as_ref().map_or(0, |d| d.len()) + cm.binary_data.as_ref().map_or(0, |d| d.len());
    vec![
        name_cell(&cm.metadata),
        count(n),
        age_cell(&cm.metadata, now),
    ]
}

pub(crate) fn secret_columns() -> Vec<Column> {
    vec![
        Column::name(),
        col("Type", "The type of the secret."),
        int_col("Data", "The number of data items in the secret."),
        Column::age(),
    ]
}

pub(crate) fn secret_row(s: &Secret, now: DateTime<Utc>) -> Row {
    let n = s.data.as_ref().map_or(0, |d| d.len()) + s.string_data.as_ref().map_or(0, |d| d.len());
    vec![
        name_cell(&s.metadata),
        text(s.type_.clone().unwrap_or_default()),
        count(n),
        age_cell(&s.metadata, now),
    ]
}

pub(crate) fn namespace_columns() -> Vec<Column> {
    vec![
        Column::name(),
        col("Status", "The status of the namespace."),
        Column::age(),
    ]
}

pub(crate) fn namespace_row(ns: &Namespace, now: DateTime<Utc>) -> Row {
    let phase = ns
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    vec![
        name_cell(&ns.metadata),
        text(phase),
        age_cell(&ns.metadata, now),
    ]
}

pub(crate) fn node_columns() -> Vec<Column> {
    vec![
        Column::name(),
        col("Status", "The status of the node."),
        col("Roles", "The roles of the node."),
        Column::age(),
        col("Version", "Kubelet Version reported by the node."),
        col("Internal-IP", "List of internal IPs assigned to the node.").wide(),
        col("External-IP", "List of external IPs assigned to the node.").wide(),
        col("OS-Image", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).").wide(),
        col("Kernel-Version", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).").wide(),
        col("Container-Runtime", "Container runtime version reported by the node.").wide(),
    ]
}

pub(crate) fn node_row(node: &Node, now: DateTime<Utc>) -> Row {
    let status = node.status.clone().unwrap_or_default();
    let mut conditions: Vec<String> = status
        .conditions
        .iter()
        .flatten()
        .filter(|c| c.type_ == "Ready")
        .map(|c| match c.status.as_str() {
            "True" => "Ready".to_string(),
            "False" => "NotReady".to_string(),
            _ => "Unknown".to_string(),
        })
        .collect();
    if conditions.is_empty() {
        conditions.push("Unknown".into());
    }
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        conditions.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> = Vec::new();
    for (k, v) in node.metadata.labels.iter().flatten() {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.push(role.to_string());
            }
        } else if k == "kubernetes.io/role" && !v.is_empty() {
            roles.push(v.clone());
        }
    }
    roles.sort();
    roles.dedup();
    let roles = if roles.is_empty() {
        NONE.to_string()
    } else {
        roles.join(",")
    };
    let addresses = |t: &str| -> String {
        let found: Vec<String> = status
            .addresses
            .iter()
            .flatten()
            .filter(|a| a.type_ == t)
            .map(|a| a.address.clone())
            .collect();
        if found.is_empty() {
            NONE.into()
        } else {
            found.join(",")
        }
    };
    let info = status.node_info.clone().unwrap_or_default();
    vec![
        name_cell(&node.metadata),
        text(conditions.join(",")),
        text(roles),
        age_cell(&node.metadata, now),
        text(info.kubelet_version.clone()),
        text(addresses("InternalIP")),
        text(addresses("ExternalIP")),
        text(or_unknown(info.os_image.clone())),
        text(or_unknown(info.kernel_version.clone())),
        text(or_unknown(info.container_runtime_version)),
    ]
}

/// Node info fields print `<unknown>` until the node reports them.
fn or_unknown(s: String) -> String {
    if s.is_empty() {
        "<unknown>".into()
    } else {
        s
    }
}

pub(crate) fn service_account_columns() -> Vec<Column> {
    vec![Column::name(), int_col("Secrets", "Secrets is the list of secrets allowed to be used by pods running using this ServiceAccount."), Column::age()]
}

pub(crate) fn service_account_row(sa: &ServiceAccount, now: DateTime<Utc>) -> Row {
    vec![
        name_cell(&sa.metadata),
        count(sa.secrets.as_ref().map_or(0, Vec::len)),
        age_cell(&sa.metadata, now),
    ]
}

/// Upstream's event table has no leading `Name` column: kubectl users know
/// `LAST SEEN TYPE REASON OBJECT MESSAGE`, with `Name` among the wide columns.
pub(crate) fn event_columns() -> Vec<Column> {
    vec![
        col("Last Seen", "The last time the event was seen."),
        col("Type", "Type of this event (Normal, Warning), new types could be added in the future."),
        col("Reason", "This should be a short, machine understandable string that gives the reason for this event being generated."),
        col("Object", "The object that this event is about."),
        col("Subobject", "The subobject that this event is about.").wide(),
        col("Source", "The component reporting this event.").wide(),
        col("Message", "A human-readable description of the status of this operation."),
        col("First Seen", "The first time the event was seen.").wide(),
        int_col("Count", "The number of times this event has occurred.").wide(),
        Column { format: "name".into(), ..col("Name", "Name must be unique within a namespace.").wide() },
    ]
}

pub(crate) fn event_row(ev: &Event, now: DateTime<Utc>) -> Row {
    let last = ev
        .last_timestamp
        .clone()
        .or_else(|| {
            ev.event_time
                .as_ref()
                .map(|t| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t.0))
        })
        .or_else(|| ev.metadata.creation_timestamp.clone());
    let first = ev.first_timestamp.clone().or_else(|| last.clone());
    let mut last_seen = since(last.as_ref(), now);
    if ev.count.unwrap_or(0) > 1 {
        last_seen = format!(
            "{last_seen} (x{} over {})",
            ev.count.unwrap_or(0),
            since(first.as_ref(), now)
        );
    }
    let obj = &ev.involved_object;
    let object = format!(
        "{}/{}",
        obj.kind.clone().unwrap_or_default().to_lowercase(),
        obj.name.clone().unwrap_or_default()
    );
    let source = ev.source.as_ref().map_or(String::new(), |s| {
        match (
            s.component.as_deref().unwrap_or_default(),
            s.host.as_deref().unwrap_or_default(),
        ) {
            (c, "") => c.to_string(),
            (c, h) => format!("{c}, {h}"),
        }
    });
    vec![
        text(last_seen),
        text(ev.type_.clone().unwrap_or_default()),
        text(ev.reason.clone().unwrap_or_default()),
        text(object),
        text(obj.field_path.clone().unwrap_or_default()),
        text(source),
        text(ev.message.clone().unwrap_or_default().trim()),
        text(since(first.as_ref(), now)),
        Value::from(ev.count.unwrap_or(1)),
        name_cell(&ev.metadata),
    ]
}

pub(crate) fn quota_columns() -> Vec<Column> {
    vec![
        Column::name(),
        Column::age(),
        col("Request", "Request represents a minimum amount of cpu/memory that a container may consume."),
        col("Limit", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
    ]
}

pub(crate) fn quota_row(q: &ResourceQuota, now: DateTime<Utc>) -> Row {
    let status = q.status.clone().unwrap_or_default();
    let hard = status.hard.unwrap_or_default();
    let used = status.used.unwrap_or_default();
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    for (k, h) in &hard {
        let u = used.get(k).map_or("0", |q| q.0.as_str());
        let cell = format!("{k}: {u}/{}", h.0);
        if k.starts_with("limits.") {
            limits.push(cell);
        } else {
            requests.push(cell);
        }
    }
    vec![
        name_cell(&q.metadata),
        age_cell(&q.metadata, now),
        text(requests.join(", ")),
        text(limits.join(", ")),
    ]
}

pub(crate) fn limit_range_columns() -> Vec<Column> {
    vec![Column::name(), created_at_col()]
}

pub(crate) fn limit_range_row(l: &LimitRange, _now: DateTime<Utc>) -> Row {
    vec![name_cell(&l.metadata), created_at_cell(&l.metadata)]
}

pub(crate) fn pvc_columns() -> Vec<Column> {
    vec![
        Column::name(),
        col("Status", "The phase of the claim."),
        col(
            "Volume",
            "The binding reference to the PersistentVolume backing this claim.",
        ),
        col("Capacity", "The actual resources of the underlying volume."),
        col("Access Modes", "The access modes the volume has."),
        col(
            "StorageClass",
            "Name of the StorageClass required by the claim.",
        ),
        col(
            "VolumeAttributesClass",
            "The VolumeAttributesClass the claim uses.",
        ),
        Column::age(),
        col(
            "VolumeMode",
            "What type of volume is required by the claim.",
        )
        .wide(),
    ]
}

pub(crate) fn pvc_row(pvc: &PersistentVolumeClaim, now: DateTime<Utc>) -> Row {
    let spec = pvc.spec.clone().unwrap_or_default();
    let status = pvc.status.clone().unwrap_or_default();
    let phase = if pvc.metadata.deletion_timestamp.is_some() {
        "Terminating".to_string()
    } else {
        status.phase.clone().unwrap_or_default()
    };
    let bound = !spec.volume_name.clone().unwrap_or_default().is_empty();
    let capacity = if bound {
        status
            .capacity
            .as_ref()
            .and_then(|c| c.get("storage"))
            .map(|q| q.0.clone())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let modes = if bound {
        access_modes(status.access_modes.as_deref().unwrap_or_default())
    } else {
        String::new()
    };
    vec![
        name_cell(&pvc.metadata),
        text(phase),
        text(spec.volume_name.unwrap_or_default()),
        text(capacity),
        text(modes),
        text(spec.storage_class_name.unwrap_or_else(|| NONE.into())),
        text(
            spec.volume_attributes_class_name
                .unwrap_or_else(|| NONE.into()),
        ),
        age_cell(&pvc.metadata, now),
        text(spec.volume_mode.unwrap_or_else(|| "Filesystem".into())),
    ]
}

fn access_modes(modes: &[String]) -> String {
    let short: Vec<&str> = modes
        .iter()
        .map(|m| match m.as_str() {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect();
    short.join(",")
}
