//! ConfigMap and Secret validation: key syntax, size limit and `immutable`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::Value;

use super::names::config_map_key;
use crate::{ErrorType, FieldError};

/// Upstream's limit for the data of one ConfigMap or Secret (1 MiB).
pub(crate) const MAX_SIZE: usize = 1024 * 1024;

fn too_long(path: &str) -> FieldError {
    FieldError::new(
        ErrorType::TooLong,
        path,
        None,
        format!("may not be more than {MAX_SIZE} bytes"),
    )
}

fn keys<'a>(keys: impl Iterator<Item = &'a String>, field: &str, errs: &mut Vec<FieldError>) {
    for k in keys {
        for msg in config_map_key(k) {
            errs.push(FieldError::invalid(
                format!("{field}[{k}]"),
                Value::String(k.clone()),
                msg,
            ));
        }
    }
}

const IMMUTABLE: &str = "field is immutable when `immutable` is set";

pub(crate) fn config_map(cm: &ConfigMap, old: Option<&ConfigMap>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = BTreeMap::new();
    let data = cm.data.as_ref().unwrap_or(&empty);
    let binary = cm.binary_data.as_ref();
    keys(data.keys(), "data", &mut errs);
    keys(
        binary.into_iter().flat_map(|b| b.keys()),
        "binaryData",
        &mut errs,
    );
    let mut size = 0usize;
    for (k, v) in data {
        size = size.saturating_add(k.len()).saturating_add(v.len());
        if binary.is_some_and(|b| b.contains_key(k)) {
            errs.push(FieldError::invalid(
                format!("data[{k}]"),
                Value::String(k.clone()),
                "duplicate of key present in binaryData",
            ));
        }
    }
    for (k, v) in binary.into_iter().flatten() {
        size = size.saturating_add(k.len()).saturating_add(v.0.len());
    }
    if size > MAX_SIZE {
        errs.push(too_long(""));
    }
    if let Some(old) = old.filter(|o| o.immutable == Some(true)) {
        if cm.immutable != Some(true) {
            errs.push(FieldError::forbidden("immutable", IMMUTABLE));
        }
        if cm.data != old.data {
            errs.push(FieldError::forbidden("data", IMMUTABLE));
        }
        if cm.binary_data != old.binary_data {
            errs.push(FieldError::forbidden("binaryData", IMMUTABLE));
        }
    }
    errs
}

pub(crate) fn secret(s: &Secret, old: Option<&Secret>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let data = s.data.clone().unwrap_or_default();
    keys(data.keys(), "data", &mut errs);
    keys(
        s.string_data.iter().flat_map(|d| d.keys()),
        "stringData",
        &mut errs,
    );
    let size = data.iter().fold(0usize, |acc, (k, v)| {
        acc.saturating_add(k.len()).saturating_add(v.0.len())
    });
    if size > MAX_SIZE {
        errs.push(too_long("data"));
    }
    let has =
        |k: &str| data.contains_key(k) || s.string_data.as_ref().is_some_and(|d| d.contains_key(k));
    let required_keys: &[&str] = match s.type_.as_deref().unwrap_or("Opaque") {
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        _ => &[],
    };
    for k in required_keys {
        if !has(k) {
            errs.push(FieldError::required(format!("data[{k}]"), ""));
        }
    }
    if s.type_.as_deref() == Some("kubernetes.io/basic-auth")
        && !has("username")
        && !has("password")
    {
        errs.push(FieldError::required("data[username]", ""));
        errs.push(FieldError::required("data[password]", ""));
    }
    if s.type_.as_deref() == Some("kubernetes.io/service-account-token") {
        let annotated = s
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("kubernetes.io/service-account.name"))
            .is_some_and(|n| !n.is_empty());
        if !annotated {
            errs.push(FieldError::required(
                "metadata.annotations[kubernetes.io/service-account.name]",
                "",
            ));
        }
    }
    if let Some(old) = old {
        if s.type_ != old.type_ {
            errs.push(FieldError::invalid(
                "type",
                Value::String(s.type_.clone().unwrap_or_default()),
                "field is immutable",
            ));
        }
        if old.immutable == Some(true) {
            if s.immutable != Some(true) {
                errs.push(FieldError::forbidden("immutable", IMMUTABLE));
            }
            if s.data != old.data {
                errs.push(FieldError::forbidden("data", IMMUTABLE));
            }
        }
    }
    errs
}
