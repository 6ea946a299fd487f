//! OpenAPI v3 validation of custom resources against their structural schema.
//!
//! Paths and messages follow what Kubernetes returns for custom resources
//! (kube-openapi's validator mapped to field errors): the field path is the JSON
//! path of the value (`spec.items[0].name`), and the detail repeats it, e.g.
//! `spec.replicas in body must be of type integer: "string"`.
//!
//! `x-kubernetes-validations` (CEL rules) are not evaluated.

use std::collections::HashSet;

use serde_json::{json, Map, Value};

use super::format;
use super::schema::Schema;
use crate::{ErrorType, FieldError};

/// Cap on schema nodes visited per object: nested `anyOf`/`oneOf` re-validate
/// subtrees, so without a budget a hostile schema could make validation
/// exponential.
const VISIT_BUDGET: usize = 200_000;

/// Validate a whole object (or any value) against a schema node. `path` is the
/// field path of `v` (`""` for the resource root).
pub(crate) fn validate_value(v: &Value, schema: &Schema, path: &str) -> Vec<FieldError> {
    validate_with_budget(v, schema, path, VISIT_BUDGET)
}

fn validate_with_budget(v: &Value, schema: &Schema, path: &str, budget: usize) -> Vec<FieldError> {
    let mut w = Walker {
        errs: Vec::new(),
        budget,
    };
    w.node(v, schema, path);
    if w.budget == 0 {
        // Branch results are unreliable once the budget ran out, so the object is
        // rejected as a whole rather than risk accepting an invalid one.
        w.invalid(
            path,
            json!(""),
            "schema too complex to validate this object".to_string(),
        );
    }
    w.errs
}

struct Walker {
    errs: Vec<FieldError>,
    budget: usize,
}

pub(crate) fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The type name kube-openapi reports for a value.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(want: &str, v: &Value) -> bool {
    match (want, v) {
        ("object", Value::Object(_))
        | ("array", Value::Array(_))
        | ("string", Value::String(_)) => true,
        ("boolean", Value::Bool(_)) | ("number", Value::Number(_)) => true,
        // A float with an integral value passes as an integer, as in kube-openapi.
        ("integer", Value::Number(n)) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

/// Go's `%v` of a float64 bound, for the integral bounds CRDs use in practice.
fn go_number(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

fn in_body(path: &str) -> String {
    if path.is_empty() {
        "body".to_string()
    } else {
        format!("{path} in body")
    }
}

fn enum_literal(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Walker {
    fn invalid(&mut self, path: &str, value: Value, detail: String) {
        self.errs.push(FieldError::invalid(path, value, detail));
    }

    fn type_error(&mut self, path: &str, want: &str, v: &Value) {
        let got = type_name(v);
        self.invalid(
            path,
            json!(got),
            format!("{} must be of type {want}: \"{got}\"", in_body(path)),
        );
    }

    /// Validate `v` against `s` into a separate list (for `anyOf`/`oneOf`/`not`).
    fn branch(&mut self, v: &Value, s: &Schema, path: &str) -> Vec<FieldError> {
        let saved = std::mem::take(&mut self.errs);
        self.node(v, s, path);
        std::mem::replace(&mut self.errs, saved)
    }

    fn node(&mut self, v: &Value, s: &Schema, path: &str) {
        if self.budget == 0 {
            return;
        }
        self.budget -= 1;

        if v.is_null() {
            if !s.nullable {
                if let Some(t) = &s.type_ {
                    self.type_error(path, t, v);
                } else if s.int_or_string {
                    self.int_or_string_error(path, v);
                }
            }
            return;
        }
        if s.int_or_string {
            if !matches!(type_name(v), "integer" | "string") {
                self.int_or_string_error(path, v);
                return;
            }
        } else if let Some(t) = &s.type_ {
            if !type_matches(t, v) {
                self.type_error(path, t, v);
                return;
            }
        }

        if let Some(values) = &s.enum_ {
            if !values.contains(v) {
                let allowed: Vec<String> = values.iter().map(enum_literal).collect();
                let refs: Vec<&str> = allowed.iter().map(String::as_str).collect();
                self.errs
                    .push(FieldError::not_supported(path, v.clone(), &refs));
            }
        }

        match v {
            Value::Number(n) => {
                if let Some(f) = n.as_f64() {
                    self.number(v, f, s, path);
                }
            }
            Value::String(st) => self.string(st, s, path),
            Value::Array(items) => self.array(items, s, path),
            Value::Object(map) => self.object(map, s, path),
            _ => {}
        }

        self.junctors(v, s, path);
    }

    fn int_or_string_error(&mut self, path: &str, v: &Value) {
        self.type_error(path, "integer", v);
        self.type_error(path, "string", v);
        self.invalid(
            path,
            json!(""),
            format!("{path:?} must validate at least one schema (anyOf)"),
        );
    }

    fn number(&mut self, v: &Value, f: f64, s: &Schema, path: &str) {
        if let Some(max) = s.maximum {
            if f > max || (s.exclusive_maximum && f >= max) {
                let rel = if s.exclusive_maximum {
                    "less than"
                } else {
                    "less than or equal to"
                };
                self.invalid(
                    path,
                    v.clone(),
                    format!("{} should be {rel} {}", in_body(path), go_number(max)),
                );
            }
        }
        if let Some(min) = s.minimum {
            if f < min || (s.exclusive_minimum && f <= min) {
                let rel = if s.exclusive_minimum {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                self.invalid(
                    path,
                    v.clone(),
                    format!("{} should be {rel} {}", in_body(path), go_number(min)),
                );
            }
        }
        if let Some(m) = s.multiple_of {
            let q = f / m;
            if m > 0.0 && (q - q.round()).abs() > 1e-9 {
                self.invalid(
                    path,
                    v.clone(),
                    format!("{} should be a multiple of {}", in_body(path), go_number(m)),
                );
            }
        }
    }

    fn string(&mut self, st: &str, s: &Schema, path: &str) {
        let len = st.chars().count() as u64;
        if let Some(max) = s.max_length {
            if len > max {
                self.errs.push(FieldError::new(
                    ErrorType::TooLong,
                    path,
                    Some(json!(st)),
                    format!("may not be more than {max} bytes"),
                ));
            }
        }
        if let Some(min) = s.min_length {
            if len < min {
                self.invalid(
                    path,
                    json!(st),
                    format!("{} should be at least {min} chars long", in_body(path)),
                );
            }
        }
        if let Some((pattern, Some(re))) = &s.pattern {
            if !re.is_match(st) {
                self.invalid(
                    path,
                    json!(st),
                    format!("{} should match '{pattern}'", in_body(path)),
                );
            }
        }
        if let Some(f) = &s.format {
            if !format::matches(f, st) {
                self.invalid(
                    path,
                    json!(st),
                    format!("{} must be of type {f}: {st:?}", in_body(path)),
                );
            }
        }
    }

    fn array(&mut self, items: &[Value], s: &Schema, path: &str) {
        if let Some(item_schema) = &s.items {
            for (i, item) in items.iter().enumerate() {
                self.node(item, item_schema, &format!("{path}[{i}]"));
            }
        }
        let n = items.len() as u64;
        if let Some(min) = s.min_items {
            if n < min {
                self.invalid(
                    path,
                    json!(n),
                    format!("{} should have at least {min} items", in_body(path)),
                );
            }
        }
        if let Some(max) = s.max_items {
            if n > max {
                self.errs.push(FieldError::new(
                    ErrorType::TooMany,
                    path,
                    Some(json!(n)),
                    format!("must have at most {max} items"),
                ));
            }
        }
        if s.unique_items && has_duplicates(items) {
            self.invalid(
                path,
                json!(""),
                format!("{} shouldn't contain duplicates", in_body(path)),
            );
        }
        match s.list_type.as_deref() {
            Some("set") => {
                let mut seen: Vec<&Value> = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    if seen.contains(&item) {
                        self.errs
                            .push(FieldError::duplicate(format!("{path}[{i}]"), item.clone()));
                    } else {
                        seen.push(item);
                    }
                }
            }
            Some("map") if !s.list_map_keys.is_empty() => {
                let mut seen: HashSet<String> = HashSet::new();
                for (i, item) in items.iter().enumerate() {
                    let Value::Object(obj) = item else { continue };
                    let mut key = Map::new();
                    for k in &s.list_map_keys {
                        let kv = obj
                            .get(k)
                            .cloned()
                            .or_else(|| item_default(s, k))
                            .unwrap_or(Value::Null);
                        key.insert(k.clone(), kv);
                    }
                    let key = Value::Object(key);
                    if !seen.insert(key.to_string()) {
                        self.errs
                            .push(FieldError::duplicate(format!("{path}[{i}]"), key));
                    }
                }
            }
            _ => {}
        }
    }

    fn object(&mut self, map: &Map<String, Value>, s: &Schema, path: &str) {
        for req in &s.required {
            if !map.contains_key(req) {
                self.errs
                    .push(FieldError::required(child_path(path, req), ""));
            }
        }
        if s.embedded_resource {
            for key in ["apiVersion", "kind"] {
                if map
                    .get(key)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    self.errs.push(FieldError::required(
                        child_path(path, key),
                        "must not be empty",
                    ));
                }
            }
        }
        for (key, value) in map {
            let sub = s.property(key).or_else(|| s.additional_schema());
            if let Some(sub) = sub {
                self.node(value, sub, &child_path(path, key));
            }
        }
        let n = map.len() as u64;
        if let Some(min) = s.min_properties {
            if n < min {
                self.invalid(
                    path,
                    json!(n),
                    format!("{} should have at least {min} properties", in_body(path)),
                );
            }
        }
        if let Some(max) = s.max_properties {
            if n > max {
                self.errs.push(FieldError::new(
                    ErrorType::TooMany,
                    path,
                    Some(json!(n)),
                    format!("must have at most {max} items"),
                ));
            }
        }
    }

    fn junctors(&mut self, v: &Value, s: &Schema, path: &str) {
        for sub in &s.all_of {
            self.node(v, sub, path);
        }
        if !s.any_of.is_empty() {
            let mut best: Option<Vec<FieldError>> = None;
            let mut ok = false;
            for sub in &s.any_of {
                let errs = self.branch(v, sub, path);
                if errs.is_empty() {
                    ok = true;
                    break;
                }
                if best.as_ref().is_none_or(|b| errs.len() < b.len()) {
                    best = Some(errs);
                }
            }
            if !ok {
                self.invalid(
                    path,
                    json!(""),
                    format!("{path:?} must validate at least one schema (anyOf)"),
                );
                self.errs.extend(best.unwrap_or_default());
            }
        }
        if !s.one_of.is_empty() {
            let mut valid = 0;
            let mut best: Option<Vec<FieldError>> = None;
            for sub in &s.one_of {
                let errs = self.branch(v, sub, path);
                if errs.is_empty() {
                    valid += 1;
                } else if best.as_ref().is_none_or(|b| errs.len() < b.len()) {
                    best = Some(errs);
                }
            }
            if valid != 1 {
                let extra = if valid == 0 {
                    "Found none valid".to_string()
                } else {
                    format!("Found {valid} valid alternatives")
                };
                self.invalid(
                    path,
                    json!(""),
                    format!("{path:?} must validate one and only one schema (oneOf). {extra}"),
                );
                if valid == 0 {
                    self.errs.extend(best.unwrap_or_default());
                }
            }
        }
        if let Some(not) = &s.not {
            if self.branch(v, not, path).is_empty() {
                self.invalid(
                    path,
                    json!(""),
                    format!("{path:?} must not validate the schema (not)"),
                );
            }
        }
    }
}

/// The default of a list-map key field, which counts as its value when absent.
fn item_default(s: &Schema, key: &str) -> Option<Value> {
    s.items.as_ref()?.property(key)?.default.clone()
}

fn has_duplicates(items: &[Value]) -> bool {
    let mut seen = HashSet::new();
    items.iter().any(|v| !seen.insert(v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(schema: Value, v: Value) -> Vec<(String, String)> {
        validate_value(&v, &Schema::parse(&schema), "spec.f")
            .into_iter()
            .map(|e| (e.field.clone(), e.message()))
            .collect()
    }

    fn one(schema: Value, v: Value) -> (String, String) {
        let errs = check(schema, v);
        assert_eq!(errs.len(), 1, "{errs:?}");
        errs.into_iter().next().unwrap()
    }

    fn ok(schema: Value, v: Value) {
        assert_eq!(check(schema, v), vec![]);
    }

    #[test]
    fn type_errors_quote_the_actual_type() {
        let (f, m) = one(json!({"type": "integer"}), json!("3"));
        assert_eq!(f, "spec.f");
        assert_eq!(
            m,
            "Invalid value: \"string\": spec.f in body must be of type integer: \"string\""
        );
        assert_eq!(
            one(json!({"type": "integer"}), json!(1.5)).1,
            "Invalid value: \"number\": spec.f in body must be of type integer: \"number\""
        );
        ok(json!({"type": "integer"}), json!(2.0));
        ok(json!({"type": "number"}), json!(2));
        assert_eq!(
            one(json!({"type": "object"}), json!([1])).1,
            "Invalid value: \"array\": spec.f in body must be of type object: \"array\""
        );
        assert_eq!(
            one(json!({"type": "boolean"}), json!(null)).1,
            "Invalid value: \"null\": spec.f in body must be of type boolean: \"null\""
        );
        ok(json!({"type": "boolean", "nullable": true}), json!(null));
        ok(
            json!({"x-kubernetes-preserve-unknown-fields": true}),
            json!({"a": [1]}),
        );
    }

    #[test]
    fn int_or_string() {
        let s = json!({"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]});
        ok(s.clone(), json!(80));
        ok(s.clone(), json!("http"));
        let errs = check(s, json!(true));
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert_eq!(
            errs[2].1,
            "Invalid value: \"\": \"spec.f\" must validate at least one schema (anyOf)"
        );
    }

    #[test]
    fn required_and_nested_paths() {
        let s = json!({"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"},
            "items": {"type": "array", "items": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        }});
        let errs = check(
            s,
            json!({"items": [{"id": 1}, {"id": "x"}, {}], "labels": {"a": 1}}),
        );
        assert_eq!(
            errs,
            vec![
                ("spec.f.name".to_string(), "Required value".to_string()),
                (
                    "spec.f.items[1].id".to_string(),
                    "Invalid value: \"string\": spec.f.items[1].id in body must be of type integer: \"string\"".to_string()
                ),
                ("spec.f.items[2].id".to_string(), "Required value".to_string()),
                (
                    "spec.f.labels.a".to_string(),
                    "Invalid value: \"integer\": spec.f.labels.a in body must be of type string: \"integer\"".to_string()
                ),
            ]
        );
    }

    #[test]
    fn enum_lists_supported_values() {
        let (_, m) = one(
            json!({"type": "string", "enum": ["red", "green"]}),
            json!("blue"),
        );
        assert_eq!(
            m,
            "Unsupported value: \"blue\": supported values: \"red\", \"green\""
        );
        let (_, m) = one(json!({"type": "integer", "enum": [1, 2]}), json!(3));
        assert_eq!(m, "Unsupported value: 3: supported values: \"1\", \"2\"");
    }

    #[test]
    fn numeric_bounds() {
        let s = json!({"type": "integer", "minimum": 1, "maximum": 10});
        assert_eq!(
            one(s.clone(), json!(0)).1,
            "Invalid value: 0: spec.f in body should be greater than or equal to 1"
        );
        assert_eq!(
            one(s.clone(), json!(11)).1,
            "Invalid value: 11: spec.f in body should be less than or equal to 10"
        );
        ok(s, json!(10));
        let s = json!({"type": "number", "minimum": 1, "exclusiveMinimum": true, "maximum": 2.5, "exclusiveMaximum": true});
        assert_eq!(
            one(s.clone(), json!(1)).1,
            "Invalid value: 1: spec.f in body should be greater than 1"
        );
        assert_eq!(
            one(s.clone(), json!(2.5)).1,
            "Invalid value: 2.5: spec.f in body should be less than 2.5"
        );
        ok(s, json!(2));
        assert_eq!(
            one(json!({"type": "integer", "multipleOf": 5}), json!(7)).1,
            "Invalid value: 7: spec.f in body should be a multiple of 5"
        );
    }

    #[test]
    fn string_constraints() {
        let (_, m) = one(json!({"type": "string", "maxLength": 3}), json!("abcd"));
        assert_eq!(m, "Too long: may not be more than 3 bytes");
        assert_eq!(
            one(json!({"type": "string", "minLength": 2}), json!("a")).1,
            "Invalid value: \"a\": spec.f in body should be at least 2 chars long"
        );
        assert_eq!(
            one(
                json!({"type": "string", "pattern": "^[a-z]+$"}),
                json!("A1")
            )
            .1,
            "Invalid value: \"A1\": spec.f in body should match '^[a-z]+$'"
        );
        assert_eq!(
            one(
                json!({"type": "string", "format": "date-time"}),
                json!("noon")
            )
            .1,
            "Invalid value: \"noon\": spec.f in body must be of type date-time: \"noon\""
        );
        ok(json!({"type": "string", "maxLength": 2}), json!("éé"));
    }

    #[test]
    fn array_constraints() {
        let s = json!({"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string"}});
        assert_eq!(
            one(s.clone(), json!([])).1,
            "Invalid value: 0: spec.f in body should have at least 1 items"
        );
        let e = validate_value(&json!(["a", "b", "c"]), &Schema::parse(&s), "spec.f");
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].kind, e[0].value.clone(), e[0].detail.as_str()),
            (
                ErrorType::TooMany,
                Some(json!(3)),
                "must have at most 2 items"
            )
        );
        assert_eq!(
            one(json!({"type": "array", "uniqueItems": true}), json!([1, 1])).1,
            "Invalid value: \"\": spec.f in body shouldn't contain duplicates"
        );
    }

    #[test]
    fn list_types_report_duplicates() {
        let (f, m) = one(
            json!({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}),
            json!(["a", "b", "a"]),
        );
        assert_eq!(
            (f.as_str(), m.as_str()),
            ("spec.f[2]", "Duplicate value: \"a\"")
        );
        let s = json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"],
            "items": {"type": "object", "properties": {"port": {"type": "integer"}, "protocol": {"type": "string", "default": "TCP"}}}});
        let (f, m) = one(
            s.clone(),
            json!([{"port": 80}, {"port": 80, "protocol": "UDP"}, {"port": 80, "protocol": "TCP"}]),
        );
        assert_eq!(
            (f.as_str(), m.as_str()),
            (
                "spec.f[2]",
                "Duplicate value: {\"port\":80,\"protocol\":\"TCP\"}"
            )
        );
        ok(s, json!([{"port": 80}, {"port": 81}]));
    }

    #[test]
    fn property_counts() {
        let s = json!({"type": "object", "minProperties": 1, "maxProperties": 2, "additionalProperties": {"type": "integer"}});
        assert_eq!(
            one(s.clone(), json!({})).1,
            "Invalid value: 0: spec.f in body should have at least 1 properties"
        );
        let e = validate_value(
            &json!({"a": 1, "b": 2, "c": 3}),
            &Schema::parse(&s),
            "spec.f",
        );
        assert_eq!((e.len(), e[0].kind), (1, ErrorType::TooMany));
    }

    #[test]
    fn junctors() {
        let one_of = json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
            "oneOf": [{"required": ["a"]}, {"required": ["b"]}]});
        ok(one_of.clone(), json!({"a": "x"}));
        let errs = check(one_of.clone(), json!({"a": "x", "b": "y"}));
        assert_eq!(errs, vec![("spec.f".to_string(), "Invalid value: \"\": \"spec.f\" must validate one and only one schema (oneOf). Found 2 valid alternatives".to_string())]);
        let errs = check(one_of, json!({}));
        assert_eq!(errs[0].1, "Invalid value: \"\": \"spec.f\" must validate one and only one schema (oneOf). Found none valid");
        assert_eq!(
            errs[1],
            ("spec.f.a".to_string(), "Required value".to_string())
        );

        let any_of = json!({"type": "integer", "anyOf": [{"minimum": 10}, {"maximum": 0}]});
        ok(any_of.clone(), json!(-1));
        let errs = check(any_of, json!(5));
        assert_eq!(
            errs[0].1,
            "Invalid value: \"\": \"spec.f\" must validate at least one schema (anyOf)"
        );

        let all_of = json!({"type": "integer", "allOf": [{"minimum": 1}, {"maximum": 3}]});
        assert_eq!(
            one(all_of, json!(4)).1,
            "Invalid value: 4: spec.f in body should be less than or equal to 3"
        );

        let not = json!({"type": "string", "not": {"enum": ["forbidden"]}});
        ok(not.clone(), json!("fine"));
        assert_eq!(
            one(not, json!("forbidden")).1,
            "Invalid value: \"\": \"spec.f\" must not validate the schema (not)"
        );
    }

    #[test]
    fn embedded_resources_need_type_meta() {
        let s = json!({"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true});
        let errs = check(s.clone(), json!({"kind": ""}));
        assert_eq!(
            errs.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
            vec!["spec.f.apiVersion", "spec.f.kind"]
        );
        ok(s, json!({"apiVersion": "v1", "kind": "Pod"}));
    }

    #[test]
    fn exponential_schemas_are_bounded() {
        let mut s = json!({"type": "integer", "minimum": 100});
        for _ in 0..12 {
            s = json!({"anyOf": [s.clone(), s]});
        }
        let errs = validate_with_budget(&json!(1), &Schema::parse(&s), "spec.f", 1000);
        assert!(
            errs.iter()
                .any(|e| e.detail == "schema too complex to validate this object"),
            "{errs:?}"
        );
    }
}
