//! Basic CustomResourceDefinition validation: names, group, versions and the storage
//! version. Schema validation of the CRD's own `openAPIV3Schema` belongs to the CRD
//! serving code.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

use super::names::{dns1035_label, dns1123_subdomain};
use super::{immutable, one_of};
use crate::FieldError;

pub(crate) fn crd(
    c: &CustomResourceDefinition,
    old: Option<&CustomResourceDefinition>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = &c.spec;
    let names = &spec.names;
    if spec.group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else {
        for msg in dns1123_subdomain(&spec.group) {
            errs.push(FieldError::invalid(
                "spec.group",
                Value::String(spec.group.clone()),
                msg,
            ));
        }
        if spec.group.split('.').count() < 2 {
            errs.push(FieldError::invalid(
                "spec.group",
                Value::String(spec.group.clone()),
                "should be a domain with at least one dot",
            ));
        }
    }
    one_of(
        &mut errs,
        "spec.scope",
        Some(spec.scope.as_str()),
        &["Cluster", "Namespaced"],
    );
    if names.plural.is_empty() {
        errs.push(FieldError::required("spec.names.plural", ""));
    } else {
        for msg in dns1035_label(&names.plural) {
            errs.push(FieldError::invalid(
                "spec.names.plural",
                Value::String(names.plural.clone()),
                msg,
            ));
        }
    }
    if let Some(singular) = names.singular.as_deref().filter(|s| !s.is_empty()) {
        for msg in dns1035_label(singular) {
            errs.push(FieldError::invalid(
                "spec.names.singular",
                Value::String(singular.into()),
                msg,
            ));
        }
    }
    if names.kind.is_empty() {
        errs.push(FieldError::required("spec.names.kind", ""));
    }
    if let Some(list_kind) = names.list_kind.as_deref() {
        if !names.kind.is_empty() && list_kind == names.kind {
            errs.push(FieldError::invalid(
                "spec.names.listKind",
                Value::String(list_kind.into()),
                "kind and listKind may not be the same",
            ));
        }
    }
    for (i, s) in names.short_names.iter().flatten().enumerate() {
        for msg in dns1035_label(s) {
            errs.push(FieldError::invalid(
                format!("spec.names.shortNames[{i}]"),
                Value::String(s.clone()),
                msg,
            ));
        }
    }
    let expected = format!("{}.{}", names.plural, spec.group);
    let name = c.metadata.name.clone().unwrap_or_default();
    if !name.is_empty() && name != expected {
        errs.push(FieldError::invalid(
            "metadata.name",
            Value::String(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if spec.versions.is_empty() {
        errs.push(FieldError::invalid(
            "spec.versions",
            Value::Array(Vec::new()),
            "must have exactly one version marked as storage version",
        ));
    } else {
        let storage = spec.versions.iter().filter(|v| v.storage).count();
        if storage != 1 {
            errs.push(FieldError::invalid(
                "spec.versions",
                Value::from(storage),
                "must have exactly one version marked as storage version",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, v) in spec.versions.iter().enumerate() {
            for msg in dns1035_label(&v.name) {
                errs.push(FieldError::invalid(
                    format!("spec.versions[{i}].name"),
                    Value::String(v.name.clone()),
                    msg,
                ));
            }
            if !seen.insert(v.name.clone()) {
                errs.push(FieldError::duplicate(
                    format!("spec.versions[{i}].name"),
                    Value::String(v.name.clone()),
                ));
            }
        }
    }
    if let Some(old) = old {
        immutable(&mut errs, "spec.group", &spec.group, &old.spec.group);
        immutable(
            &mut errs,
            "spec.names.plural",
            &names.plural,
            &old.spec.names.plural,
        );
    }
    errs
}
