//! Validation of the smaller kinds: PVCs, quotas, endpoint slices, network policies,
//! ingresses, runtime classes and RBAC.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, ResourceQuota};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::rbac::v1::{RoleRef, Subject};
use serde_json::Value;

use super::meta::validate_label_selector;
use super::names::dns1123_label;
use super::{immutable, json_of, one_of, quantity};
use crate::FieldError;

pub(crate) fn pvc(
    pvc: &PersistentVolumeClaim,
    _old: Option<&PersistentVolumeClaim>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(spec) = &pvc.spec else {
        return vec![FieldError::required(
            "spec.accessModes",
            "at least 1 access mode is required",
        )];
    };
    let modes = spec.access_modes.as_deref().unwrap_or_default();
    if modes.is_empty() {
        errs.push(FieldError::required(
            "spec.accessModes",
            "at least 1 access mode is required",
        ));
    }
    for m in modes {
        one_of(
            &mut errs,
            "spec.accessModes",
            Some(m),
            &[
                "ReadOnlyMany",
                "ReadWriteMany",
                "ReadWriteOnce",
                "ReadWriteOncePod",
            ],
        );
    }
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"));
    match storage {
        None => errs.push(FieldError::required("spec.resources[storage]", "")),
        Some(q) if quantity::parse(&q.0).is_none_or(|v| v <= 0.0) => {
            errs.push(FieldError::invalid(
                "spec.resources[storage]",
                Value::String(q.0.clone()),
                "must be greater than zero",
            ))
        }
        Some(_) => {}
    }
    one_of(
        &mut errs,
        "spec.volumeMode",
        spec.volume_mode.as_deref(),
        &["Block", "Filesystem"],
    );
    errs
}

pub(crate) fn quota(q: &ResourceQuota) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in q.spec.iter().flat_map(|s| s.hard.iter().flatten()) {
        if quantity::parse(&v.0).is_none_or(|n| n < 0.0) {
            errs.push(FieldError::invalid(
                format!("spec.hard[{k}]"),
                Value::String(v.0.clone()),
                "must be greater than or equal to 0",
            ));
        }
    }
    errs
}

pub(crate) fn endpoint_slice(s: &EndpointSlice, old: Option<&EndpointSlice>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    one_of(
        &mut errs,
        "addressType",
        Some(s.address_type.as_str()),
        &["FQDN", "IPv4", "IPv6"],
    );
    for (i, e) in s.endpoints.iter().enumerate() {
        if e.addresses.is_empty() {
            errs.push(FieldError::required(
                format!("endpoints[{i}].addresses"),
                "must contain at least 1 address",
            ));
        }
    }
    if let Some(old) = old {
        immutable(&mut errs, "addressType", &s.address_type, &old.address_type);
    }
    errs
}

pub(crate) fn network_policy(n: &NetworkPolicy) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(spec) = &n.spec else { return errs };
    if let Some(sel) = &spec.pod_selector {
        errs.extend(validate_label_selector(sel, "spec.podSelector"));
    }
    for (i, t) in spec.policy_types.iter().flatten().enumerate() {
        one_of(
            &mut errs,
            &format!("spec.policyTypes[{i}]"),
            Some(t),
            &["Egress", "Ingress"],
        );
    }
    errs
}

pub(crate) fn ingress(ing: &Ingress) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(spec) = &ing.spec else { return errs };
    if spec.default_backend.is_none() && spec.rules.as_ref().is_none_or(Vec::is_empty) {
        errs.push(FieldError::invalid(
            "spec.rules",
            Value::Array(Vec::new()),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    for (i, r) in spec.rules.iter().flatten().enumerate() {
        for (j, p) in r.http.iter().flat_map(|h| h.paths.iter()).enumerate() {
            let path = format!("spec.rules[{i}].http.paths[{j}]");
            if p.path_type.is_empty() {
                errs.push(FieldError::required(
                    format!("{path}.pathType"),
                    "pathType must be specified",
                ));
            } else {
                one_of(
                    &mut errs,
                    &format!("{path}.pathType"),
                    Some(&p.path_type),
                    &["Exact", "ImplementationSpecific", "Prefix"],
                );
            }
            if p.path_type != "ImplementationSpecific"
                && !p.path.as_deref().unwrap_or_default().starts_with('/')
            {
                errs.push(FieldError::invalid(
                    format!("{path}.path"),
                    Value::String(p.path.clone().unwrap_or_default()),
                    "must be an absolute path",
                ));
            }
        }
    }
    errs
}

pub(crate) fn runtime_class(r: &RuntimeClass, old: Option<&RuntimeClass>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if r.handler.is_empty() {
        errs.push(FieldError::required("handler", ""));
    }
    for msg in dns1123_label(&r.handler)
        .into_iter()
        .filter(|_| !r.handler.is_empty())
    {
        errs.push(FieldError::invalid(
            "handler",
            Value::String(r.handler.clone()),
            msg,
        ));
    }
    if let Some(old) = old {
        immutable(&mut errs, "handler", &r.handler, &old.handler);
    }
    errs
}

/// RoleBinding/ClusterRoleBinding: `roleRef` is required and fixed; subjects typed.
pub(crate) fn binding(
    role_ref: &RoleRef,
    subjects: Option<&Vec<Subject>>,
    old_ref: Option<&RoleRef>,
    cluster: bool,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if role_ref.name.is_empty() {
        errs.push(FieldError::required("roleRef.name", ""));
    }
    let kinds: &[&str] = if cluster {
        &["ClusterRole"]
    } else {
        &["ClusterRole", "Role"]
    };
    one_of(&mut errs, "roleRef.kind", Some(&role_ref.kind), kinds);
    one_of(
        &mut errs,
        "roleRef.apiGroup",
        Some(&role_ref.api_group),
        &["rbac.authorization.k8s.io"],
    );
    for (i, s) in subjects.into_iter().flatten().enumerate() {
        let p = format!("subjects[{i}]");
        if s.name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        }
        one_of(
            &mut errs,
            &format!("{p}.kind"),
            Some(&s.kind),
            &["Group", "ServiceAccount", "User"],
        );
        if s.kind == "ServiceAccount" && cluster && s.namespace.as_deref().is_none_or(str::is_empty)
        {
            errs.push(FieldError::required(format!("{p}.namespace"), ""));
        }
    }
    if let Some(old) = old_ref {
        if old != role_ref {
            errs.push(FieldError::invalid(
                "roleRef",
                json_of(role_ref),
                "cannot change roleRef",
            ));
        }
    }
    errs
}
