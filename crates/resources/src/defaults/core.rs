//! Defaults of core/v1 kinds other than pods, and of small kinds elsewhere.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ClientIPConfig, Endpoints, Namespace, NamespaceSpec, NamespaceStatus, PersistentVolumeClaim,
    Secret, Service, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceConversion, CustomResourceDefinition,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;

use super::{or, or_str};

/// Label the namespace strategy sets so that selectors can pick namespaces by name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

pub(crate) fn namespace(ns: &mut Namespace) {
    if let Some(name) = ns.metadata.name.clone().filter(|n| !n.is_empty()) {
        ns.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(NAMESPACE_NAME_LABEL.into(), name);
    }
    let spec = ns.spec.get_or_insert_with(NamespaceSpec::default);
    if spec.finalizers.as_ref().is_none_or(Vec::is_empty) {
        spec.finalizers = Some(vec!["kubernetes".into()]);
    }
    let status = ns.status.get_or_insert_with(NamespaceStatus::default);
    or_str(&mut status.phase, "Active");
}

pub(crate) fn service(svc: &mut Service) {
    let Some(spec) = svc.spec.as_mut() else {
        return;
    };
    or_str(&mut spec.type_, "ClusterIP");
    or_str(&mut spec.session_affinity, "None");
    if spec.session_affinity.as_deref() == Some("ClientIP") {
        let cfg = spec
            .session_affinity_config
            .get_or_insert_with(SessionAffinityConfig::default);
        let client_ip = cfg.client_ip.get_or_insert_with(ClientIPConfig::default);
        or(&mut client_ip.timeout_seconds, 10800);
    }
    for p in spec.ports.iter_mut().flatten() {
        or_str(&mut p.protocol, "TCP");
        let unset = match &p.target_port {
            None => true,
            Some(IntOrString::Int(0)) => true,
            Some(IntOrString::String(s)) => s.is_empty(),
            Some(IntOrString::Int(_)) => false,
        };
        if unset {
            p.target_port = Some(IntOrString::Int(p.port));
        }
    }
    if let Some(ip) = spec.cluster_ip.clone().filter(|ip| !ip.is_empty()) {
        if spec.cluster_ips.as_ref().is_none_or(Vec::is_empty) {
            spec.cluster_ips = Some(vec![ip]);
        }
    }
    let type_ = spec.type_.clone().unwrap_or_default();
    if type_ != "ExternalName" {
        or_str(&mut spec.internal_traffic_policy, "Cluster");
        or_str(&mut spec.ip_family_policy, "SingleStack");
        if spec.ip_families.as_ref().is_none_or(Vec::is_empty) {
            spec.ip_families = Some(vec!["IPv4".into()]);
        }
    }
    if type_ == "NodePort" || type_ == "LoadBalancer" {
        or_str(&mut spec.external_traffic_policy, "Cluster");
    }
    if type_ == "LoadBalancer" {
        or(&mut spec.allocate_load_balancer_node_ports, true);
    }
}

/// Also folds the write-only `stringData` into `data`, as upstream's conversion does.
pub(crate) fn secret(s: &mut Secret) {
    or_str(&mut s.type_, "Opaque");
    if let Some(string_data) = s.string_data.take() {
        let data = s.data.get_or_insert_with(BTreeMap::new);
        for (k, v) in string_data {
            data.insert(k, ByteString(v.into_bytes()));
        }
    }
}

pub(crate) fn pvc(pvc: &mut PersistentVolumeClaim) {
    if let Some(spec) = pvc.spec.as_mut() {
        or_str(&mut spec.volume_mode, "Filesystem");
    }
}

pub(crate) fn endpoints(ep: &mut Endpoints) {
    for p in ep
        .subsets
        .iter_mut()
        .flatten()
        .flat_map(|s| s.ports.iter_mut().flatten())
    {
        or_str(&mut p.protocol, "TCP");
    }
}

pub(crate) fn endpoint_slice(s: &mut EndpointSlice) {
    for p in s.ports.iter_mut().flatten() {
        or_str(&mut p.protocol, "TCP");
        or(&mut p.name, String::new());
    }
}

/// `policyTypes` defaults to `Ingress`, plus `Egress` when egress rules are given.
pub(crate) fn network_policy(n: &mut NetworkPolicy) {
    let Some(spec) = n.spec.as_mut() else { return };
    for p in spec
        .ingress
        .iter_mut()
        .flatten()
        .flat_map(|r| r.ports.iter_mut().flatten())
    {
        or_str(&mut p.protocol, "TCP");
    }
    for p in spec
        .egress
        .iter_mut()
        .flatten()
        .flat_map(|r| r.ports.iter_mut().flatten())
    {
        or_str(&mut p.protocol, "TCP");
    }
    if spec.policy_types.as_ref().is_none_or(Vec::is_empty) {
        let mut types = vec!["Ingress".to_string()];
        if spec.egress.is_some() {
            types.push("Egress".into());
        }
        spec.policy_types = Some(types);
    }
}

/// `SetDefaults_CustomResourceDefinitionSpec`.
pub(crate) fn crd(c: &mut CustomResourceDefinition) {
    let names = &mut c.spec.names;
    if names.singular.as_deref().is_none_or(str::is_empty) && !names.kind.is_empty() {
        names.singular = Some(names.kind.to_lowercase());
    }
    if names.list_kind.as_deref().is_none_or(str::is_empty) && !names.kind.is_empty() {
        names.list_kind = Some(format!("{}List", names.kind));
    }
    let conversion = c
        .spec
        .conversion
        .get_or_insert_with(|| CustomResourceConversion {
            strategy: "None".into(),
            webhook: None,
        });
    if conversion.strategy.is_empty() {
        conversion.strategy = "None".into();
    }
    if let Some(svc) = conversion
        .webhook
        .as_mut()
        .and_then(|w| w.client_config.as_mut())
        .and_then(|c| c.service.as_mut())
    {
        or(&mut svc.port, 443);
    }
}
