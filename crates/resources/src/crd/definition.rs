//! Validation of the CustomResourceDefinition object itself
//! (`apiextensions.k8s.io/v1`): names, group, scope, versions, schemas,
//! subresources and printer columns. `status` (including `storedVersions`) is
//! the API server's business.

use std::collections::HashSet;

use serde_json::Value;

use super::jsonpath::JsonPath;
use super::structural::validate_structural;
use crate::validation::names::{dns1035_label, dns1123_subdomain};
use crate::FieldError;

const SCOPES: &[&str] = &["Cluster", "Namespaced"];
const COLUMN_TYPES: &[&str] = &["integer", "number", "string", "boolean", "date"];
const COLUMN_FORMATS: &[&str] = &[
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "date",
    "date-time",
    "password",
];
const CONVERSION_STRATEGIES: &[&str] = &["None", "Webhook"];

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// Validate a CRD on create (`old == None`) or update. Paths are Kubernetes'
/// (`spec.versions[0].schema.openAPIV3Schema.properties[spec].type`).
pub fn validate_crd(crd: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let group = text(crd, "/spec/group").unwrap_or_default();
    let plural = text(crd, "/spec/names/plural").unwrap_or_default();

    let name = text(crd, "/metadata/name").unwrap_or_default();
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            Value::String(name.into()),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }

    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else {
        for msg in dns1123_subdomain(group) {
            errs.push(FieldError::invalid(
                "spec.group",
                Value::String(group.into()),
                msg,
            ));
        }
        if !group.contains('.') {
            errs.push(FieldError::invalid(
                "spec.group",
                Value::String(group.into()),
                "should be a domain with at least one dot",
            ));
        }
    }

    match crd.pointer("/spec/scope") {
        None => errs.push(FieldError::required("spec.scope", "")),
        Some(Value::String(s)) if SCOPES.contains(&s.as_str()) => {
            let old_scope = old.and_then(|o| text(o, "/spec/scope"));
            if old_scope.is_some_and(|o| o != s) {
                errs.push(FieldError::invalid(
                    "spec.scope",
                    Value::String(s.clone()),
                    "field is immutable",
                ));
            }
        }
        Some(other) => errs.push(FieldError::not_supported(
            "spec.scope",
            other.clone(),
            SCOPES,
        )),
    }

    validate_names(crd, &mut errs);
    validate_versions(crd, &mut errs);

    if crd
        .pointer("/spec/preserveUnknownFields")
        .and_then(Value::as_bool)
        == Some(true)
    {
        errs.push(FieldError::invalid(
            "spec.preserveUnknownFields",
            Value::Bool(true),
            "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
        ));
    }
    if let Some(strategy) = crd.pointer("/spec/conversion/strategy") {
        if !strategy
            .as_str()
            .is_some_and(|s| CONVERSION_STRATEGIES.contains(&s))
        {
            errs.push(FieldError::not_supported(
                "spec.conversion.strategy",
                strategy.clone(),
                CONVERSION_STRATEGIES,
            ));
        }
    }
    errs
}

fn validate_names(crd: &Value, errs: &mut Vec<FieldError>) {
    let label = |path: &str, v: &str, errs: &mut Vec<FieldError>| {
        for msg in dns1035_label(v) {
            errs.push(FieldError::invalid(path, Value::String(v.into()), msg));
        }
    };
    let required_label = |key: &str, errs: &mut Vec<FieldError>| {
        let path = format!("spec.names.{key}");
        match text(crd, &format!("/spec/names/{key}")).filter(|s| !s.is_empty()) {
            None => errs.push(FieldError::required(path, "")),
            Some(v) => label(&path, v, errs),
        }
    };
    required_label("plural", errs);
    if let Some(singular) = text(crd, "/spec/names/singular").filter(|s| !s.is_empty()) {
        label("spec.names.singular", singular, errs);
    }
    let mixed_case = |key: &str, errs: &mut Vec<FieldError>| -> Option<String> {
        let path = format!("spec.names.{key}");
        let Some(v) = text(crd, &format!("/spec/names/{key}")).filter(|s| !s.is_empty()) else {
            errs.push(FieldError::required(path, ""));
            return None;
        };
        let problems = dns1035_label(&v.to_lowercase());
        if !problems.is_empty() {
            let detail = format!(
                "may have mixed case, but should otherwise match: {}",
                problems.join(",")
            );
            errs.push(FieldError::invalid(path, Value::String(v.into()), detail));
        }
        Some(v.to_string())
    };
    let kind = mixed_case("kind", errs);
    if crd.pointer("/spec/names/listKind").is_some() {
        let list_kind = mixed_case("listKind", errs);
        if list_kind.is_some() && list_kind == kind {
            errs.push(FieldError::invalid(
                "spec.names.listKind",
                Value::String(list_kind.unwrap_or_default()),
                "kind and listKind may not be the same",
            ));
        }
    }
    for key in ["shortNames", "categories"] {
        let Some(list) = crd
            .pointer(&format!("/spec/names/{key}"))
            .and_then(Value::as_array)
        else {
            continue;
        };
        for (i, item) in list.iter().enumerate() {
            let path = format!("spec.names.{key}[{i}]");
            match item.as_str() {
                Some(s) => label(&path, s, errs),
                None => errs.push(FieldError::invalid(path, item.clone(), "must be a string")),
            }
        }
    }
}

fn validate_versions(crd: &Value, errs: &mut Vec<FieldError>) {
    let versions = match crd.pointer("/spec/versions").and_then(Value::as_array) {
        Some(v) if !v.is_empty() => v,
        _ => {
            errs.push(FieldError::required(
                "spec.versions",
                "must have at least one version",
            ));
            return;
        }
    };
    let names: Vec<Value> = versions
        .iter()
        .map(|v| v.get("name").cloned().unwrap_or(Value::Null))
        .collect();
    let storage = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if storage != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            Value::Array(names.clone()),
            "must have exactly one version marked as storage version",
        ));
    }
    if !versions
        .iter()
        .any(|v| v.get("served").and_then(Value::as_bool) == Some(true))
    {
        errs.push(FieldError::invalid(
            "spec.versions",
            Value::Array(names),
            "must have at least one version served",
        ));
    }
    let mut seen = HashSet::new();
    for (i, v) in versions.iter().enumerate() {
        let path = format!("spec.versions[{i}]");
        match v
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            None => errs.push(FieldError::required(format!("{path}.name"), "")),
            Some(name) => {
                for msg in dns1035_label(name) {
                    errs.push(FieldError::invalid(
                        format!("{path}.name"),
                        Value::String(name.into()),
                        msg,
                    ));
                }
                if !seen.insert(name) {
                    errs.push(FieldError::duplicate(
                        format!("{path}.name"),
                        Value::String(name.into()),
                    ));
                }
            }
        }
        for key in ["served", "storage"] {
            if v.get(key).is_some_and(|b| !b.is_boolean()) {
                errs.push(FieldError::invalid(
                    format!("{path}.{key}"),
                    v[key].clone(),
                    "must be a boolean",
                ));
            }
        }
        match v.pointer("/schema/openAPIV3Schema") {
            None => errs.push(FieldError::required(
                format!("{path}.schema.openAPIV3Schema"),
                "schemas are required",
            )),
            Some(s) => errs.extend(validate_structural(
                s,
                &format!("{path}.schema.openAPIV3Schema"),
            )),
        }
        if let Some(sub) = v.get("subresources") {
            validate_subresources(sub, &format!("{path}.subresources"), errs);
        }
        if let Some(cols) = v.get("additionalPrinterColumns") {
            validate_columns(cols, &format!("{path}.additionalPrinterColumns"), errs);
        }
    }
}

fn validate_subresources(sub: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(status) = sub.get("status") {
        if !status.is_object() {
            errs.push(FieldError::invalid(
                format!("{path}.status"),
                status.clone(),
                "must be an object",
            ));
        }
    }
    let Some(scale) = sub.get("scale") else {
        return;
    };
    let path = format!("{path}.scale");
    let check =
        |key: &str, prefixes: &[&str], detail: &str, required: bool, errs: &mut Vec<FieldError>| {
            let p = format!("{path}.{key}");
            match scale
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                None if required => errs.push(FieldError::required(p, "")),
                None => {}
                Some(s) => {
                    let under = prefixes.iter().any(|pre| {
                        s.strip_prefix(pre)
                            .is_some_and(|rest| rest.starts_with('.'))
                    });
                    if !under || JsonPath::parse(s).is_err() {
                        errs.push(FieldError::invalid(p, Value::String(s.into()), detail));
                    }
                }
            }
        };
    check(
        "specReplicasPath",
        &[".spec"],
        "should be a json path under .spec",
        true,
        errs,
    );
    check(
        "statusReplicasPath",
        &[".status"],
        "should be a json path under .status",
        true,
        errs,
    );
    check(
        "labelSelectorPath",
        &[".spec", ".status"],
        "should be a json path under either .spec or .status",
        false,
        errs,
    );
}

fn validate_columns(cols: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(cols) = cols.as_array() else {
        errs.push(FieldError::invalid(path, cols.clone(), "must be a list"));
        return;
    };
    for (i, c) in cols.iter().enumerate() {
        let at = |k: &str| format!("{path}[{i}].{k}");
        let field = |k: &str| c.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        if field("name").is_none() {
            errs.push(FieldError::required(at("name"), ""));
        }
        match c.get("type") {
            None => errs.push(FieldError::required(at("type"), "")),
            Some(t) if t.as_str().is_some_and(|t| COLUMN_TYPES.contains(&t)) => {}
            Some(t) => errs.push(FieldError::not_supported(
                at("type"),
                t.clone(),
                COLUMN_TYPES,
            )),
        }
        if let Some(f) = c.get("format").filter(|f| f.as_str() != Some("")) {
            if !f.as_str().is_some_and(|f| COLUMN_FORMATS.contains(&f)) {
                errs.push(FieldError::not_supported(
                    at("format"),
                    f.clone(),
                    COLUMN_FORMATS,
                ));
            }
        }
        if c.get("priority")
            .and_then(Value::as_i64)
            .is_some_and(|p| p < 0)
        {
            errs.push(FieldError::invalid(
                at("priority"),
                c["priority"].clone(),
                "must be greater than or equal to 0",
            ));
        }
        match field("jsonPath") {
            None => errs.push(FieldError::required(at("jsonPath"), "")),
            Some(p) => {
                if !p.starts_with('.') || JsonPath::parse(p).is_err() {
                    errs.push(FieldError::invalid(
                        at("jsonPath"),
                        Value::String(p.into()),
                        "must be a simple json path starting with .",
                    ));
                }
            }
        }
    }
}
