//! A parsed, read-only view of one version's `openAPIV3Schema`.
//!
//! The CRD's schema is parsed once per version when the CRD is served, so pruning,
//! defaulting and validation walk typed nodes instead of re-reading JSON. Parsing
//! never fails: anything malformed is ignored here (the CRD itself was checked by
//! [`super::validate_crd`]), and nesting is cut at [`MAX_DEPTH`] so a hostile CRD
//! cannot make the walkers recurse without bound.

use regex::Regex;
use serde_json::{Map, Value};

/// Deepest schema nesting we follow. Deeper nodes become "accept anything".
pub(crate) const MAX_DEPTH: usize = 64;

/// Upper bound on the compiled size of one `pattern`, so a pathological pattern
/// cannot eat the server's memory.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// `additionalProperties`: a schema for every extra key, or a bare boolean.
#[derive(Debug, Clone)]
pub(crate) enum Additional {
    Allowed(bool),
    Schema(Box<Schema>),
}

/// One schema node. Field names follow OpenAPI v3 / the Kubernetes extensions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Schema {
    pub type_: Option<String>,
    pub format: Option<String>,
    pub nullable: bool,
    /// In schema order (the workspace enables serde_json's `preserve_order`).
    pub properties: Vec<(String, Schema)>,
    pub additional_properties: Option<Additional>,
    pub items: Option<Box<Schema>>,
    pub required: Vec<String>,
    pub enum_: Option<Vec<Value>>,
    pub default: Option<Value>,
    pub maximum: Option<f64>,
    pub exclusive_maximum: bool,
    pub minimum: Option<f64>,
    pub exclusive_minimum: bool,
    pub multiple_of: Option<f64>,
    pub max_length: Option<u64>,
    pub min_length: Option<u64>,
    /// The pattern as written (for messages) and its compiled form (`None` when it
    /// does not compile; the CRD validation reports that).
    pub pattern: Option<(String, Option<Regex>)>,
    pub max_items: Option<u64>,
    pub min_items: Option<u64>,
    pub unique_items: bool,
    pub max_properties: Option<u64>,
    pub min_properties: Option<u64>,
    pub all_of: Vec<Schema>,
    pub any_of: Vec<Schema>,
    pub one_of: Vec<Schema>,
    pub not: Option<Box<Schema>>,
    pub preserve_unknown_fields: bool,
    pub int_or_string: bool,
    pub embedded_resource: bool,
    pub list_type: Option<String>,
    pub list_map_keys: Vec<String>,
}

impl Schema {
    /// Parse a schema node; never fails (see the module docs).
    pub(crate) fn parse(v: &Value) -> Schema {
        parse_node(v, 0)
    }

    /// The schema of a named property, if the node declares it.
    pub(crate) fn property(&self, name: &str) -> Option<&Schema> {
        self.properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, s)| s)
    }

    /// The schema for a key that is not a declared property: the
    /// `additionalProperties` schema, if any.
    pub(crate) fn additional_schema(&self) -> Option<&Schema> {
        match &self.additional_properties {
            Some(Additional::Schema(s)) => Some(s),
            _ => None,
        }
    }
}

fn parse_node(v: &Value, depth: usize) -> Schema {
    let Some(m) = v.as_object() else {
        return Schema::default();
    };
    if depth >= MAX_DEPTH {
        return Schema {
            preserve_unknown_fields: true,
            ..Schema::default()
        };
    }
    let child = |key: &str| m.get(key).map(|c| Box::new(parse_node(c, depth + 1)));
    let list = |key: &str| -> Vec<Schema> {
        m.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|c| parse_node(c, depth + 1)).collect())
            .unwrap_or_default()
    };
    let properties = m
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| {
            p.iter()
                .map(|(k, c)| (k.clone(), parse_node(c, depth + 1)))
                .collect()
        })
        .unwrap_or_default();
    let additional_properties = match m.get("additionalProperties") {
        Some(Value::Bool(b)) => Some(Additional::Allowed(*b)),
        Some(s @ Value::Object(_)) => Some(Additional::Schema(Box::new(parse_node(s, depth + 1)))),
        _ => None,
    };
    Schema {
        type_: string(m, "type"),
        format: string(m, "format"),
        nullable: flag(m, "nullable"),
        properties,
        additional_properties,
        items: child("items"),
        required: m
            .get("required")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        enum_: m.get("enum").and_then(Value::as_array).cloned(),
        default: m.get("default").cloned(),
        maximum: m.get("maximum").and_then(Value::as_f64),
        exclusive_maximum: flag(m, "exclusiveMaximum"),
        minimum: m.get("minimum").and_then(Value::as_f64),
        exclusive_minimum: flag(m, "exclusiveMinimum"),
        multiple_of: m.get("multipleOf").and_then(Value::as_f64),
        max_length: m.get("maxLength").and_then(Value::as_u64),
        min_length: m.get("minLength").and_then(Value::as_u64),
        pattern: string(m, "pattern").map(|p| {
            let re = compile_pattern(&p);
            (p, re)
        }),
        max_items: m.get("maxItems").and_then(Value::as_u64),
        min_items: m.get("minItems").and_then(Value::as_u64),
        unique_items: flag(m, "uniqueItems"),
        max_properties: m.get("maxProperties").and_then(Value::as_u64),
        min_properties: m.get("minProperties").and_then(Value::as_u64),
        all_of: list("allOf"),
        any_of: list("anyOf"),
        one_of: list("oneOf"),
        not: child("not"),
        preserve_unknown_fields: flag(m, "x-kubernetes-preserve-unknown-fields"),
        int_or_string: flag(m, "x-kubernetes-int-or-string"),
        embedded_resource: flag(m, "x-kubernetes-embedded-resource"),
        list_type: string(m, "x-kubernetes-list-type"),
        list_map_keys: m
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Compile an OpenAPI (ECMA-flavoured) pattern with Rust's regex engine, which
/// shares RE2's syntax for everything CRDs use in practice.
pub(crate) fn compile_pattern(p: &str) -> Option<Regex> {
    regex::RegexBuilder::new(p)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .ok()
}

fn string(m: &Map<String, Value>, key: &str) -> Option<String> {
    m.get(key).and_then(Value::as_str).map(str::to_string)
}

fn flag(m: &Map<String, Value>, key: &str) -> bool {
    m.get(key).and_then(Value::as_bool).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_nested_nodes_and_tolerates_junk() {
        let s = Schema::parse(&json!({
            "type": "object",
            "required": ["spec", 3],
            "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer", "minimum": 1}}}},
            "additionalProperties": "nonsense",
            "pattern": "(",
        }));
        assert_eq!(s.required, vec!["spec".to_string()]);
        let size = s.property("spec").and_then(|p| p.property("size")).unwrap();
        assert_eq!(size.minimum, Some(1.0));
        assert!(s.additional_properties.is_none());
        assert!(matches!(s.pattern, Some((_, None))));
        assert_eq!(Schema::parse(&json!([1, 2])).type_, None);
    }

    #[test]
    fn deep_nesting_is_cut() {
        let mut v = json!({"type": "string"});
        for _ in 0..200 {
            v = json!({"type": "object", "properties": {"a": v}});
        }
        let mut s = &Schema::parse(&v);
        let mut depth = 0;
        while let Some(next) = s.property("a") {
            s = next;
            depth += 1;
        }
        assert_eq!(depth, MAX_DEPTH);
        assert!(s.preserve_unknown_fields);
    }
}
