//! Validation shared by every kind: `metadata` (`ValidateObjectMeta`), labels,
//! annotations and label selectors.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde_json::Value;

use super::names::{
    dns1035_label, dns1123_label, dns1123_subdomain, label_value, path_segment_name, qualified_name,
};
use crate::{ErrorType, FieldError};

/// Upstream limit on the summed size of all annotation keys and values.
pub(crate) const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// How a kind validates `metadata.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameRule {
    /// DNS-1123 subdomain (most kinds).
    Subdomain,
    /// DNS-1123 subdomain of at most this many characters (CronJob: 52, so that
    /// generated Job names stay valid).
    SubdomainMax(usize),
    /// DNS-1123 label (Namespace).
    Label,
    /// RFC 1035 label (Service: its name becomes a DNS label and an env var prefix).
    Rfc1035Label,
    /// Any path segment (RBAC kinds).
    PathSegment,
}

impl NameRule {
    pub(crate) fn check(self, name: &str) -> Vec<String> {
        match self {
            NameRule::Subdomain => dns1123_subdomain(name),
            NameRule::SubdomainMax(max) => {
                let mut errs = dns1123_subdomain(name);
                if name.len() > max && name.len() <= 253 {
                    errs.insert(0, super::names::max_len_error(max));
                }
                errs
            }
            NameRule::Label => dns1123_label(name),
            NameRule::Rfc1035Label => dns1035_label(name),
            NameRule::PathSegment => path_segment_name(name),
        }
    }
}

/// `ValidateObjectMeta`: name, namespace syntax, labels, annotations, finalizers,
/// owner references.
pub(crate) fn validate_object_meta(meta: &ObjectMeta, rule: NameRule) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match meta.name.as_deref().filter(|n| !n.is_empty()) {
        None => errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        )),
        Some(name) => {
            for msg in rule.check(name) {
                errs.push(FieldError::invalid(
                    "metadata.name",
                    Value::String(name.into()),
                    msg,
                ));
            }
        }
    }
    if let Some(ns) = meta.namespace.as_deref().filter(|n| !n.is_empty()) {
        for msg in dns1123_label(ns) {
            errs.push(FieldError::invalid(
                "metadata.namespace",
                Value::String(ns.into()),
                msg,
            ));
        }
    }
    errs.extend(validate_labels(meta.labels.as_ref(), "metadata.labels"));
    errs.extend(validate_annotations(
        meta.annotations.as_ref(),
        "metadata.annotations",
    ));
    for (i, f) in meta.finalizers.iter().flatten().enumerate() {
        for msg in qualified_name(f) {
            errs.push(FieldError::invalid(
                format!("metadata.finalizers[{i}]"),
                Value::String(f.clone()),
                msg,
            ));
        }
    }
    for (i, o) in meta.owner_references.iter().flatten().enumerate() {
        let path = format!("metadata.ownerReferences[{i}]");
        if o.api_version.is_empty() {
            errs.push(FieldError::invalid(
                format!("{path}.apiVersion"),
                Value::String(String::new()),
                "version must not be empty",
            ));
        }
        if o.kind.is_empty() {
            errs.push(FieldError::invalid(
                format!("{path}.kind"),
                Value::String(String::new()),
                "kind must not be empty",
            ));
        }
        if o.name.is_empty() {
            errs.push(FieldError::invalid(
                format!("{path}.name"),
                Value::String(String::new()),
                "name must not be empty",
            ));
        }
        if o.uid.is_empty() {
            errs.push(FieldError::invalid(
                format!("{path}.uid"),
                Value::String(String::new()),
                "uid must not be empty",
            ));
        }
    }
    let controllers = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.controller == Some(true))
        .count();
    if controllers > 1 {
        errs.push(FieldError::invalid(
            "metadata.ownerReferences",
            Value::Null,
            "Only one reference can have Controller set to true",
        ));
    }
    errs
}

/// `ValidateLabels`: keys are qualified names, values label values; errors sit on the
/// map's path with the offending key or value.
pub(crate) fn validate_labels(
    labels: Option<&BTreeMap<String, String>>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels.into_iter().flatten() {
        for msg in qualified_name(k) {
            errs.push(FieldError::invalid(path, Value::String(k.clone()), msg));
        }
        for msg in label_value(v) {
            errs.push(FieldError::invalid(path, Value::String(v.clone()), msg));
        }
    }
    errs
}

/// `ValidateAnnotations`: keys are qualified names (checked lower-cased), and the
/// total size is bounded.
pub(crate) fn validate_annotations(
    annotations: Option<&BTreeMap<String, String>>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (k, v) in annotations.into_iter().flatten() {
        for msg in qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, Value::String(k.clone()), msg));
        }
        total = total.saturating_add(k.len()).saturating_add(v.len());
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::new(
            ErrorType::TooLong,
            path,
            None,
            format!("may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"),
        ));
    }
    errs
}

/// `ValidateLabelSelector`.
pub(crate) fn validate_label_selector(sel: &LabelSelector, path: &str) -> Vec<FieldError> {
    let mut errs = validate_labels(sel.match_labels.as_ref(), &format!("{path}.matchLabels"));
    for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        format!("{p}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        format!("{p}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                format!("{p}.operator"),
                Value::String(other.into()),
                "not a valid selector operator",
            )),
        }
        for msg in qualified_name(&e.key) {
            errs.push(FieldError::invalid(
                format!("{p}.key"),
                Value::String(e.key.clone()),
                msg,
            ));
        }
        for (j, v) in values.iter().enumerate() {
            for msg in label_value(v) {
                errs.push(FieldError::invalid(
                    format!("{p}.values[{j}]"),
                    Value::String(v.clone()),
                    msg,
                ));
            }
        }
    }
    errs
}

/// Does `labels` satisfy `sel`? Unknown operators never match.
pub(crate) fn selector_matches(
    sel: &LabelSelector,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k));
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => get(&e.key).is_some(),
            "DoesNotExist" => get(&e.key).is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// Is the selector empty (selects everything)?
pub(crate) fn selector_is_empty(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|m| m.is_empty())
}
