//! Served resources of a CRD: one [`ResourceDef`] per served version.

use std::sync::Arc;

use serde_json::Value;

use super::strategy::CrdStrategy;
use crate::{FieldError, ResourceDef, ScaleSubresource};

/// Verbs of every custom resource, in the order Kubernetes' discovery lists them.
const CRD_VERBS: &[&str] = &[
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "create",
    "update",
    "watch",
];

/// One served version of a CRD.
#[derive(Debug, Clone)]
pub struct CrdVersion {
    /// The version name (`v1`, `v1beta1`).
    pub name: String,
    /// Whether objects are persisted in this version (exactly one per valid CRD).
    pub storage: bool,
    /// `spec.versions[*].deprecated`.
    pub deprecated: bool,
    /// `spec.versions[*].deprecationWarning`, returned as a `Warning` header when set.
    pub deprecation_warning: Option<String>,
    /// The served resource, with a [`CrdStrategy`]; its `schema` is `None`.
    pub def: ResourceDef,
    /// The version's `schema.openAPIV3Schema`, for the OpenAPI document.
    pub schema: Option<Value>,
}

/// The resources a CRD serves: one [`CrdVersion`] for every version with
/// `served: true`, in `spec.versions` order.
///
/// Only the fields needed to serve are checked here (names, group, scope,
/// versions); full validation of the CRD object is [`super::validate_crd`], which
/// the API server runs on create and update.
///
/// # Errors
/// Field errors (Kubernetes paths, e.g. `spec.names.plural`) when a field needed to
/// serve the CRD is missing or of the wrong type.
pub fn crd_resource_defs(crd: &Value) -> Result<Vec<CrdVersion>, Vec<FieldError>> {
    let mut errs = Vec::new();
    let text = |path: &str, errs: &mut Vec<FieldError>| -> String {
        let pointer = format!("/{}", path.replace('.', "/"));
        match crd.pointer(&pointer).and_then(Value::as_str) {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => {
                errs.push(FieldError::required(path, ""));
                String::new()
            }
        }
    };
    let group = text("spec.group", &mut errs);
    let plural = text("spec.names.plural", &mut errs);
    let kind = text("spec.names.kind", &mut errs);
    let namespaced = match crd.pointer("/spec/scope").and_then(Value::as_str) {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        Some(other) => {
            errs.push(FieldError::not_supported(
                "spec.scope",
                Value::String(other.into()),
                &["Cluster", "Namespaced"],
            ));
            false
        }
        None => {
            errs.push(FieldError::required("spec.scope", ""));
            false
        }
    };
    let versions = match crd.pointer("/spec/versions").and_then(Value::as_array) {
        Some(v) if !v.is_empty() => v.as_slice(),
        _ => {
            errs.push(FieldError::required(
                "spec.versions",
                "must have at least one version",
            ));
            &[]
        }
    };
    if !errs.is_empty() {
        return Err(errs);
    }

    let names = crd.pointer("/spec/names").cloned().unwrap_or(Value::Null);
    let name_or = |key: &str, fallback: String| -> String {
        names
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map_or(fallback, str::to_string)
    };
    let string_list = |key: &str| -> Vec<String> {
        names
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let singular = name_or("singular", kind.to_lowercase());
    let list_kind = name_or("listKind", format!("{kind}List"));
    let short_names = string_list("shortNames");
    let categories = string_list("categories");

    let mut out = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        if !v.get("served").and_then(Value::as_bool).unwrap_or(false) {
            continue;
        }
        let Some(name) = v
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        else {
            errs.push(FieldError::required(format!("spec.versions[{i}].name"), ""));
            continue;
        };
        let subresources = v.get("subresources");
        let def = ResourceDef {
            group: group.clone(),
            version: name.to_string(),
            kind: kind.clone(),
            list_kind: list_kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            short_names: short_names.clone(),
            categories: categories.clone(),
            namespaced,
            verbs: CRD_VERBS.iter().map(|s| s.to_string()).collect(),
            has_status: subresources
                .and_then(|s| s.get("status"))
                .is_some_and(Value::is_object),
            scale: subresources
                .and_then(|s| s.get("scale"))
                .and_then(scale_subresource),
            extra_subresources: Vec::new(),
            schema: None,
            strategy: Arc::new(CrdStrategy::from_version(v)),
        };
        out.push(CrdVersion {
            name: name.to_string(),
            storage: v.get("storage").and_then(Value::as_bool).unwrap_or(false),
            deprecated: v
                .get("deprecated")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            deprecation_warning: v
                .get("deprecationWarning")
                .and_then(Value::as_str)
                .map(str::to_string),
            def,
            schema: v.pointer("/schema/openAPIV3Schema").cloned(),
        });
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

fn scale_subresource(scale: &Value) -> Option<ScaleSubresource> {
    let path = |k: &str| {
        scale
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    Some(ScaleSubresource {
        spec_replicas_path: path("specReplicasPath")?,
        status_replicas_path: path("statusReplicasPath")?,
        label_selector_path: path("labelSelectorPath"),
    })
}
