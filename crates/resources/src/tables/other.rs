//! Tables of kinds outside core, apps and batch.

use chrono::{DateTime, Utc};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

use super::{
    age_cell, col, created_at_cell, created_at_col, int_col, name_cell, selector_cell, text, NONE,
};
use crate::{Column, Row};

pub(crate) fn endpoint_slice_columns() -> Vec<Column> {
    vec![
        Column::name(),
        col("AddressType", "The IP protocol for this slice."),
        col("Ports", "The ports of this slice."),
        col("Endpoints", "The endpoints of this slice."),
        Column::age(),
    ]
}

pub(crate) fn endpoint_slice_row(s: &EndpointSlice, now: DateTime<Utc>) -> Row {
    let ports: Vec<String> = s
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.port)
        .map(|p| p.to_string())
        .collect();
    let ports = if ports.is_empty() {
        "<unset>".to_string()
    } else {
        ports.join(",")
    };
    let addrs: Vec<&String> = s
        .endpoints
        .iter()
        .flat_map(|e| e.addresses.iter())
        .collect();
    let endpoints = match addrs.len() {
        0 => "<unset>".to_string(),
        n if n > 3 => format!(
            "{} + {} more...",
            addrs[..3]
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(","),
            n - 3
        ),
        _ => addrs
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(","),
    };
    vec![
        name_cell(&s.metadata),
        text(s.address_type.clone()),
        text(ports),
        text(endpoints),
        age_cell(&s.metadata, now),
    ]
}

pub(crate) fn lease_columns() -> Vec<Column> {
    vec![
        Column::name(),
        col("Holder", "The holder of the lease."),
        Column::age(),
    ]
}

pub(crate) fn lease_row(l: &Lease, now: DateTime<Utc>) -> Row {
    let holder = l
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default();
    vec![
        name_cell(&l.metadata),
        text(holder),
        age_cell(&l.metadata, now),
    ]
}

pub(crate) fn hpa_columns() -> Vec<Column> {
    vec![
        Column::name(),
        col("Reference", "The reference to the autoscaled resource."),
        col("Targets", "The current and target metric values."),
        col(
            "MinPods",
            "Lower limit for the number of pods that can be set by the autoscaler.",
        ),
        int_col(
            "MaxPods",
            "Upper limit for the number of pods that can be set by the autoscaler.",
        ),
        int_col(
            "Replicas",
            "Current number of replicas of pods managed by this autoscaler.",
        ),
        Column::age(),
    ]
}

pub(crate) fn hpa_row(h: &HorizontalPodAutoscaler, now: DateTime<Utc>) -> Row {
    let spec = h.spec.clone().unwrap_or_default();
    let status = h.status.clone().unwrap_or_default();
    let r = &spec.scale_target_ref;
    let reference = format!("{}/{}", r.kind, r.name);
    let targets: Vec<String> = spec
        .metrics
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, m)| {
            let current = status.current_metrics.as_ref().and_then(|c| c.get(i));
            match (m.type_.as_str(), &m.resource) {
                ("Resource", Some(res)) => {
                    let cur = current
                        .and_then(|c| c.resource.as_ref())
                        .and_then(|c| c.current.average_utilization)
                        .map_or("<unknown>".to_string(), |u| format!("{u}%"));
                    match (&res.target.average_value, res.target.average_utilization) {
                        // An AverageValue target shows the current average value.
                        (Some(target), _) => {
                            let cur = current
                                .and_then(|c| c.resource.as_ref())
                                .and_then(|c| c.current.average_value.as_ref())
                                .map_or("<unknown>".to_string(), |q| q.0.clone());
                            format!("{}: {cur}/{}", res.name, target.0)
                        }
                        (None, Some(t)) => format!("{}: {cur}/{t}%", res.name),
                        (None, None) => format!("{}: {cur}/<auto>", res.name),
                    }
                }
                _ => "<unknown>/<unknown>".to_string(),
            }
        })
        .collect();
    let targets = if targets.is_empty() {
        "<none>".to_string()
    } else {
        targets.join(", ")
    };
    vec![
        name_cell(&h.metadata),
        text(reference),
        text(targets),
        text(
            spec.min_replicas
                .map_or("<unset>".to_string(), |m| m.to_string()),
        ),
        Value::from(spec.max_replicas),
        Value::from(status.current_replicas.unwrap_or(0)),
        age_cell(&h.metadata, now),
    ]
}

pub(crate) fn network_policy_columns() -> Vec<Column> {
    vec![
        Column::name(),
        col(
            "Pod-Selector",
            "Selects the pods to which this NetworkPolicy object applies.",
        ),
        Column::age(),
    ]
}

pub(crate) fn network_policy_row(n: &NetworkPolicy, now: DateTime<Utc>) -> Row {
    let cell = selector_cell(n.spec.as_ref().and_then(|s| s.pod_selector.as_ref()));
    vec![
        name_cell(&n.metadata),
        text(cell),
        age_cell(&n.metadata, now),
    ]
}

pub(crate) fn ingress_columns() -> Vec<Column> {
    vec![
        Column::name(),
        col(
            "Class",
            "The name of the IngressClass resource that should be used for ingress.",
        ),
        col(
            "Hosts",
            "Hosts that incoming requests are matched against before the ingress rule",
        ),
        col(
            "Address",
            "Address is a list containing ingress points for the load-balancer",
        ),
        col("Ports", "Ports of TLS configurations that open"),
        Column::age(),
    ]
}

pub(crate) fn ingress_row(i: &Ingress, now: DateTime<Utc>) -> Row {
    let spec = i.spec.clone().unwrap_or_default();
    let class = spec
        .ingress_class_name
        .clone()
        .unwrap_or_else(|| NONE.into());
    let hosts: Vec<String> = spec
        .rules
        .iter()
        .flatten()
        .filter_map(|r| r.host.clone())
        .collect();
    let hosts = if hosts.is_empty() {
        "*".to_string()
    } else {
        hosts.join(",")
    };
    let addrs: Vec<String> = i
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|x| x.ip.clone().or_else(|| x.hostname.clone()))
        .collect();
    let ports = if spec.tls.as_ref().is_some_and(|t| !t.is_empty()) {
        "80, 443"
    } else {
        "80"
    };
    vec![
        name_cell(&i.metadata),
        text(class),
        text(hosts),
        text(addrs.join(",")),
        text(ports),
        age_cell(&i.metadata, now),
    ]
}

pub(crate) fn runtime_class_columns() -> Vec<Column> {
    vec![Column::name(), col("Handler", "Handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class."), Column::age()]
}

pub(crate) fn runtime_class_row(r: &RuntimeClass, now: DateTime<Utc>) -> Row {
    vec![
        name_cell(&r.metadata),
        text(r.handler.clone()),
        age_cell(&r.metadata, now),
    ]
}

/// Roles, ClusterRoles and CRDs show only when they were created.
pub(crate) fn created_at_columns() -> Vec<Column> {
    vec![Column::name(), created_at_col()]
}

pub(crate) fn created_at_row(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Row {
    vec![name_cell(meta), created_at_cell(meta)]
}

pub(crate) fn binding_columns() -> Vec<Column> {
    vec![
        Column::name(),
        col(
            "Role",
            "Role is the name of the role this binding refers to.",
        ),
        Column::age(),
        col("Users", "Users in the binding").wide(),
        col("Groups", "Groups in the binding").wide(),
        col("ServiceAccounts", "ServiceAccounts in the binding").wide(),
    ]
}

fn binding_cells(role_ref: &RoleRef, subjects: Option<&Vec<Subject>>) -> [Value; 4] {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut sas = Vec::new();
    for s in subjects.into_iter().flatten() {
        match s.kind.as_str() {
            "User" => users.push(s.name.clone()),
            "Group" => groups.push(s.name.clone()),
            "ServiceAccount" => sas.push(format!(
                "{}/{}",
                s.namespace.clone().unwrap_or_default(),
                s.name
            )),
            _ => {}
        }
    }
    [
        text(format!("{}/{}", role_ref.kind, role_ref.name)),
        text(users.join(", ")),
        text(groups.join(", ")),
        text(sas.join(", ")),
    ]
}

pub(crate) fn role_binding_row(b: &RoleBinding, now: DateTime<Utc>) -> Row {
    let [role, users, groups, sas] = binding_cells(&b.role_ref, b.subjects.as_ref());
    vec![
        name_cell(&b.metadata),
        role,
        age_cell(&b.metadata, now),
        users,
        groups,
        sas,
    ]
}

pub(crate) fn cluster_role_binding_row(b: &ClusterRoleBinding, now: DateTime<Utc>) -> Row {
    let [role, users, groups, sas] = binding_cells(&b.role_ref, b.subjects.as_ref());
    vec![
        name_cell(&b.metadata),
        role,
        age_cell(&b.metadata, now),
        users,
        groups,
        sas,
    ]
}

pub(crate) fn crd_row(c: &CustomResourceDefinition) -> Row {
    created_at_row(&c.metadata)
}
