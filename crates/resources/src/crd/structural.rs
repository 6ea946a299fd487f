//! Checks that a CRD version's `openAPIV3Schema` is a structural schema, as
//! Kubernetes requires for `apiextensions.k8s.io/v1`: every node has a `type`
//! (unless it preserves unknown fields or is int-or-string), the logical junctors
//! (`allOf`, `anyOf`, `oneOf`, `not`) only add value validations, `metadata` only
//! constrains `name` and `generateName`, and unsupported OpenAPI features are
//! rejected. Defaults are validated against their own schema.

use serde_json::{Map, Value};

use super::schema::{compile_pattern, Schema, MAX_DEPTH};
use super::validate::validate_value;
use crate::FieldError;

const TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];
const LIST_TYPES: &[&str] = &["atomic", "map", "set"];
const JUNCTORS: &[&str] = &["allOf", "anyOf", "oneOf"];
/// OpenAPI features a structural schema may not use.
const UNSUPPORTED: &[&str] = &[
    "$ref",
    "$schema",
    "id",
    "definitions",
    "dependencies",
    "patternProperties",
    "additionalItems",
];

#[derive(Clone, Copy)]
struct Ctx {
    depth: usize,
    /// Inside `allOf`/`anyOf`/`oneOf`/`not`: only value validations are allowed.
    in_junctor: bool,
    /// The node is the direct value of a `properties`, `items` or
    /// `additionalProperties` (it must declare a type).
    is_field: bool,
    /// Under an `x-kubernetes-int-or-string` node, whose junctors may name the
    /// `integer` and `string` types (the canonical IntOrString schema).
    int_or_string: bool,
}

/// Check one version's `openAPIV3Schema` found at `path`.
pub(crate) fn validate_structural(schema: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(root) = schema.as_object() else {
        errs.push(FieldError::invalid(
            path,
            schema.clone(),
            "must be an object",
        ));
        return errs;
    };
    match root.get("type").and_then(Value::as_str) {
        Some("object") => {}
        other => errs.push(FieldError::invalid(
            format!("{path}.type"),
            Value::String(other.unwrap_or_default().into()),
            "must be object at the root",
        )),
    }
    for key in [
        "nullable",
        "x-kubernetes-int-or-string",
        "x-kubernetes-embedded-resource",
    ] {
        if root.get(key).and_then(Value::as_bool) == Some(true) {
            errs.push(FieldError::forbidden(
                format!("{path}.{key}"),
                "must be false at the root",
            ));
        }
    }
    if let Some(meta) = root.get("properties").and_then(|p| p.get("metadata")) {
        check_metadata(meta, &format!("{path}.properties[metadata]"), &mut errs);
    }
    node(
        root,
        path,
        Ctx {
            depth: 0,
            in_junctor: false,
            is_field: false,
            int_or_string: false,
        },
        &mut errs,
    );
    errs
}

fn check_metadata(meta: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(m) = meta.as_object() else { return };
    let only_name = m
        .keys()
        .all(|k| matches!(k.as_str(), "type" | "description" | "properties"))
        && m.get("type")
            .and_then(Value::as_str)
            .is_none_or(|t| t == "object")
        && m.get("properties")
            .and_then(Value::as_object)
            .is_none_or(|p| {
                p.iter().all(|(k, v)| {
                    matches!(k.as_str(), "name" | "generateName")
                        && v.get("type")
                            .and_then(Value::as_str)
                            .is_none_or(|t| t == "string")
                })
            });
    if !only_name {
        errs.push(FieldError::forbidden(
            path,
            "must not specify anything other than name and generateName, but metadata is implicitly specified",
        ));
    }
}

fn node(m: &Map<String, Value>, path: &str, ctx: Ctx, errs: &mut Vec<FieldError>) {
    if ctx.depth >= MAX_DEPTH {
        errs.push(FieldError::forbidden(
            path,
            format!("must not be nested more than {MAX_DEPTH} levels deep"),
        ));
        return;
    }
    let at = |k: &str| format!("{path}.{k}");
    let flag = |k: &str| m.get(k).and_then(Value::as_bool);
    let preserve = flag("x-kubernetes-preserve-unknown-fields") == Some(true);
    let int_or_string = flag("x-kubernetes-int-or-string") == Some(true);
    let type_ = m.get("type").and_then(Value::as_str);

    for key in UNSUPPORTED {
        if m.contains_key(*key) {
            errs.push(FieldError::forbidden(
                at(key),
                format!("{key} is not supported in structural schemas"),
            ));
        }
    }
    if flag("uniqueItems") == Some(true) {
        errs.push(FieldError::forbidden(
            at("uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    if flag("x-kubernetes-preserve-unknown-fields") == Some(false) {
        errs.push(FieldError::invalid(
            at("x-kubernetes-preserve-unknown-fields"),
            Value::Bool(false),
            "must be true or undefined",
        ));
    }

    if ctx.in_junctor {
        let int_or_string_type =
            ctx.int_or_string && matches!(type_, Some("integer" | "string")) && m.len() == 1;
        if m.contains_key("type") && !int_or_string_type {
            errs.push(FieldError::forbidden(
                at("type"),
                "must be empty to be structural",
            ));
        }
        for key in [
            "nullable",
            "default",
            "additionalProperties",
            "x-kubernetes-preserve-unknown-fields",
            "x-kubernetes-embedded-resource",
            "x-kubernetes-int-or-string",
        ] {
            if m.contains_key(key) {
                errs.push(FieldError::forbidden(
                    at(key),
                    "must be empty to be structural",
                ));
            }
        }
    } else {
        match type_ {
            Some(t) if !TYPES.contains(&t) => errs.push(FieldError::not_supported(
                at("type"),
                Value::String(t.into()),
                TYPES,
            )),
            Some(t) if int_or_string => errs.push(FieldError::invalid(
                at("type"),
                Value::String(t.into()),
                "must be empty if x-kubernetes-int-or-string is true",
            )),
            None if ctx.is_field && !preserve && !int_or_string => {
                errs.push(FieldError::required(
                    at("type"),
                    "must not be empty for specified object fields",
                ));
            }
            _ => {}
        }
        if flag("x-kubernetes-embedded-resource") == Some(true) && type_ != Some("object") {
            errs.push(FieldError::invalid(
                at("type"),
                Value::String(type_.unwrap_or_default().into()),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        }
    }

    if let Some(p) = m.get("pattern").and_then(Value::as_str) {
        if compile_pattern(p).is_none() {
            errs.push(FieldError::invalid(
                at("pattern"),
                Value::String(p.into()),
                "must be a valid regular expression, but isn't",
            ));
        }
    }

    if m.contains_key("properties") && m.contains_key("additionalProperties") {
        errs.push(FieldError::forbidden(
            at("additionalProperties"),
            "additionalProperties and properties are mutual exclusive",
        ));
    }
    if m.get("additionalProperties") == Some(&Value::Bool(false)) {
        errs.push(FieldError::forbidden(
            at("additionalProperties"),
            "additionalProperties cannot be set to false",
        ));
    }

    check_list_type(m, path, type_, errs);

    let field = Ctx {
        depth: ctx.depth + 1,
        in_junctor: ctx.in_junctor,
        is_field: true,
        int_or_string: false,
    };
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            child(sub, &format!("{path}.properties[{name}]"), field, errs);
        }
    }
    if let Some(sub @ Value::Object(_)) = m.get("additionalProperties") {
        child(sub, &at("additionalProperties"), field, errs);
    }
    match m.get("items") {
        Some(Value::Array(_)) => {
            errs.push(FieldError::forbidden(
                at("items"),
                "items must be a schema object and not an array",
            ));
        }
        Some(sub) => child(sub, &at("items"), field, errs),
        None if type_ == Some("array") && !ctx.in_junctor => {
            errs.push(FieldError::required(at("items"), "must be specified"));
        }
        None => {}
    }
    let value_validation = Ctx {
        depth: ctx.depth + 1,
        in_junctor: true,
        is_field: false,
        int_or_string: int_or_string || ctx.int_or_string,
    };
    for j in JUNCTORS {
        if let Some(list) = m.get(*j).and_then(Value::as_array) {
            for (i, sub) in list.iter().enumerate() {
                child(sub, &format!("{path}.{j}[{i}]"), value_validation, errs);
            }
        }
    }
    if let Some(sub) = m.get("not") {
        child(sub, &at("not"), value_validation, errs);
    }

    if let Some(default) = m.get("default") {
        if !ctx.in_junctor {
            let schema = Schema::parse(&Value::Object(m.clone()));
            errs.extend(validate_value(default, &schema, &at("default")));
        }
    }
}

fn child(v: &Value, path: &str, ctx: Ctx, errs: &mut Vec<FieldError>) {
    match v.as_object() {
        Some(m) => node(m, path, ctx, errs),
        None => errs.push(FieldError::invalid(
            path,
            v.clone(),
            "must be a schema object",
        )),
    }
}

fn check_list_type(
    m: &Map<String, Value>,
    path: &str,
    type_: Option<&str>,
    errs: &mut Vec<FieldError>,
) {
    let Some(list_type) = m.get("x-kubernetes-list-type") else {
        return;
    };
    let at = |k: &str| format!("{path}.{k}");
    let Some(lt) = list_type.as_str().filter(|t| LIST_TYPES.contains(t)) else {
        errs.push(FieldError::not_supported(
            at("x-kubernetes-list-type"),
            list_type.clone(),
            LIST_TYPES,
        ));
        return;
    };
    if type_ != Some("array") {
        errs.push(FieldError::invalid(
            at("x-kubernetes-list-type"),
            Value::String(lt.into()),
            "must only be used on type array",
        ));
        return;
    }
    let keys: Vec<&str> = m
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if lt != "map" {
        if !keys.is_empty() {
            errs.push(FieldError::forbidden(
                at("x-kubernetes-list-map-keys"),
                "must not be set if x-kubernetes-list-type is not map",
            ));
        }
        return;
    }
    if keys.is_empty() {
        errs.push(FieldError::required(
            at("x-kubernetes-list-map-keys"),
            "must not be empty if x-kubernetes-list-type is map",
        ));
        return;
    }
    let items = m.get("items");
    if items.and_then(|i| i.get("type")).and_then(Value::as_str) != Some("object") {
        errs.push(FieldError::invalid(
            at("items.type"),
            items
                .and_then(|i| i.get("type"))
                .cloned()
                .unwrap_or(Value::Null),
            "must be object if parent array's x-kubernetes-list-type is map",
        ));
        return;
    }
    let props = items
        .and_then(|i| i.get("properties"))
        .and_then(Value::as_object);
    for (i, k) in keys.iter().enumerate() {
        if props.is_none_or(|p| !p.contains_key(*k)) {
            errs.push(FieldError::invalid(
                format!("{path}.x-kubernetes-list-map-keys[{i}]"),
                Value::String((*k).into()),
                "entries must all be names of item properties",
            ));
        }
    }
}
