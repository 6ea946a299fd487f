//! Decoding an incoming JSON object into its k8s-openapi type, with the error
//! messages Go's `encoding/json` would give.
//!
//! Kubernetes decodes into Go structs, which differs from serde in two ways that
//! users can see, and which we paper over here:
//! - a missing non-`omitempty` field is simply its zero value in Go, while
//!   k8s-openapi rejects it (`missing field`). We insert the zero value (taken from
//!   the OpenAPI schema) and let validation report `Required value` as upstream does.
//! - `null` means "zero value" in Go; we drop `null` object members before decoding.

use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Upper bound on "insert the missing field and retry" rounds: a wildly broken
/// object must not make us loop for long.
const MAX_FILL_ROUNDS: usize = 64;

/// One step of a path into a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
}

/// Formats steps as Kubernetes prints field paths: `spec.containers[0].image`.
pub(crate) fn format_path(steps: &[Step]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The kind's schema with its definitions, resolved once per strategy.
pub(crate) type SchemaCache = OnceLock<Value>;

/// Decodes `obj` as `K`, after the Go-compatibility fixes described in the module docs.
/// `schema` generates the kind's OpenAPI schema (used for zero values and messages);
/// it is only built, once, when an object fails to decode as it is.
pub(crate) fn decode<K: DeserializeOwned>(
    mut obj: Value,
    kind: &str,
    schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    cache: &SchemaCache,
) -> Result<K, String> {
    strip_nulls(&mut obj);
    // The common case: a well-formed object decodes straight from the value
    // (no copy, no path tracking); only a failure pays for the diagnosis below.
    if let Ok(k) = K::deserialize(&obj) {
        return Ok(k);
    }
    let mut filled = false;
    for _ in 0..MAX_FILL_ROUNDS {
        let err = match serde_path_to_error::deserialize::<_, K>(obj.clone()) {
            Ok(k) => return Ok(k),
            Err(e) => e,
        };
        let steps: Vec<Step> = err
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => Some(Step::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(Step::Key(key.clone())),
                _ => None,
            })
            .collect();
        let inner = err.inner().to_string();
        let root = cache.get_or_init(|| root_schema(kind, schema));
        if let Some(field) = missing_field(&inner) {
            if !filled {
                // One pass fills every missing required field the schema knows of, so
                // an object with many of them does not cost one decode each.
                filled = true;
                if let Some(top) = root.get("top") {
                    fill_required(&mut obj, top, root, 0);
                }
                continue;
            }
            let mut field_steps = steps.clone();
            field_steps.push(Step::Key(field.to_string()));
            let zero = schema_at(root, &field_steps).map(|s| zero_value(root, s.schema));
            if let Some(zero) = zero {
                if insert_at(&mut obj, &steps, field, zero) {
                    continue;
                }
            }
        }
        return Err(go_message(&inner, &obj, &steps, root, kind));
    }
    Err(format!(
        "json: object {kind} has too many missing required fields"
    ))
}

/// Inserts the zero value of every required property missing from `v`, recursively.
fn fill_required(v: &mut Value, node: &Value, root: &Value, depth: usize) {
    if depth > MAX_FILL_ROUNDS {
        return;
    }
    let (node, _) = resolve(root, node);
    match v {
        Value::Object(map) => {
            if let Some(props) = node.get("properties").and_then(Value::as_object) {
                let required = node.get("required").and_then(Value::as_array);
                for r in required.into_iter().flatten().filter_map(Value::as_str) {
                    if let (false, Some(p)) = (map.contains_key(r), props.get(r)) {
                        map.insert(r.to_string(), zero_value(root, p));
                    }
                }
                for (k, child) in map.iter_mut() {
                    if let Some(p) = props.get(k) {
                        fill_required(child, p, root, depth + 1);
                    }
                }
            } else if let Some(ap) = node.get("additionalProperties").filter(|a| a.is_object()) {
                for child in map.values_mut() {
                    fill_required(child, ap, root, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = node.get("items") {
                for child in items {
                    fill_required(child, item, root, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// Removes `null` members of objects, recursively (Go treats them as absent).
pub(crate) fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn missing_field(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("missing field `")?;
    rest.split('`').next()
}

fn insert_at(obj: &mut Value, steps: &[Step], field: &str, zero: Value) -> bool {
    match lookup_mut(obj, steps) {
        Some(Value::Object(map)) if !map.contains_key(field) => {
            map.insert(field.to_string(), zero);
            true
        }
        _ => false,
    }
}

pub(crate) fn lookup<'a>(v: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    steps.iter().try_fold(v, |cur, step| match step {
        Step::Key(k) => cur.get(k.as_str()),
        Step::Index(i) => cur.get(*i),
    })
}

fn lookup_mut<'a>(v: &'a mut Value, steps: &[Step]) -> Option<&'a mut Value> {
    steps.iter().try_fold(v, |cur, step| match step {
        Step::Key(k) => cur.get_mut(k.as_str()),
        Step::Index(i) => cur.get_mut(*i),
    })
}

fn root_schema(
    kind: &str,
    schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
) -> Value {
    let mut generator = schemars::SchemaGenerator::default();
    let top = schema(&mut generator);
    let defs: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    let mut root = Map::new();
    root.insert("$defs".into(), Value::Object(defs));
    root.insert("top".into(), top.to_value());
    root.insert("kind".into(), Value::String(kind.to_string()));
    Value::Object(root)
}

/// A schema node reached by a path, with the name of the innermost Go struct.
struct Located<'a> {
    schema: &'a Value,
    struct_name: String,
    /// Name of the definition `schema` itself refers to, if any.
    own_name: Option<String>,
}

/// Follows `$ref`s; returns the resolved node and the definition name it came from.
fn resolve<'a>(root: &'a Value, node: &'a Value) -> (&'a Value, Option<String>) {
    let mut node = node;
    let mut name = None;
    for _ in 0..8 {
        let Some(r) = node.get("$ref").and_then(Value::as_str) else {
            break;
        };
        let def = r.rsplit('/').next().unwrap_or(r);
        match root.get("$defs").and_then(|d| d.get(def)) {
            Some(next) => {
                name = Some(def.to_string());
                node = next;
            }
            None => break,
        }
    }
    (node, name)
}

fn short_name(def: &str) -> String {
    def.rsplit('.').next().unwrap_or(def).to_string()
}

fn schema_at<'a>(root: &'a Value, steps: &[Step]) -> Option<Located<'a>> {
    let top = root.get("top")?;
    let (mut node, mut own) = resolve(root, top);
    let mut struct_name = root
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    for step in steps {
        if node.get("properties").is_some() {
            if let Some(n) = &own {
                struct_name = short_name(n);
            }
        }
        let next = match step {
            Step::Key(k) => node
                .get("properties")
                .and_then(|p| p.get(k.as_str()))
                .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()))?,
            Step::Index(_) => node.get("items")?,
        };
        (node, own) = resolve(root, next);
    }
    Some(Located {
        schema: node,
        struct_name,
        own_name: own,
    })
}

/// The Go zero value for a schema node: what a missing required field decodes to.
fn zero_value(root: &Value, node: &Value) -> Value {
    let (node, _) = resolve(root, node);
    match node.get("type").and_then(Value::as_str) {
        Some("array") => Value::Array(Vec::new()),
        Some("string") => Value::String(String::new()),
        Some("integer") | Some("number") => Value::from(0),
        Some("boolean") => Value::Bool(false),
        _ => Value::Object(Map::new()),
    }
}

/// The Go type name of a schema node, as `encoding/json` prints it.
fn go_type(root: &Value, located: &Located<'_>) -> String {
    fn name_of(root: &Value, node: &Value, own: Option<&str>) -> String {
        if node.get("x-kubernetes-int-or-string").is_some() {
            return "intstr.IntOrString".into();
        }
        match node.get("type").and_then(Value::as_str) {
            Some("integer") => match node.get("format").and_then(Value::as_str) {
                Some("int32") => "int32".into(),
                _ => "int64".into(),
            },
            Some("number") => "float64".into(),
            Some("boolean") => "bool".into(),
            Some("string") => match own {
                Some(def) => format!("v1.{}", short_name(def)),
                None => "string".into(),
            },
            Some("array") => match node.get("items") {
                Some(items) => {
                    let (item, item_name) = resolve(root, items);
                    format!("[]{}", name_of(root, item, item_name.as_deref()))
                }
                None => "[]interface {}".into(),
            },
            _ => match (own, node.get("additionalProperties")) {
                (Some(def), _) => format!("v1.{}", short_name(def)),
                (None, Some(ap)) if ap.is_object() => {
                    let (val, val_name) = resolve(root, ap);
                    format!("map[string]{}", name_of(root, val, val_name.as_deref()))
                }
                _ => "map[string]interface {}".into(),
            },
        }
    }
    name_of(root, located.schema, located.own_name.as_deref())
}

fn json_type(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(_)) => "string".into(),
        Some(Value::Number(n)) => format!("number {n}"),
        Some(Value::Bool(_)) => "bool".into(),
        Some(Value::Array(_)) => "array".into(),
        Some(Value::Object(_)) => "object".into(),
        Some(Value::Null) | None => "null".into(),
    }
}

/// Phrases a serde error the way Go's `encoding/json` would phrase it.
fn go_message(inner: &str, obj: &Value, steps: &[Step], root: &Value, kind: &str) -> String {
    let path = format_path(steps);
    let is_type_error = inner.starts_with("invalid type") || inner.starts_with("invalid value");
    if is_type_error {
        if let Some(located) = schema_at(root, steps) {
            let found = json_type(lookup(obj, steps));
            let ty = go_type(root, &located);
            if steps.is_empty() {
                return format!("json: cannot unmarshal {found} into Go value of type v1.{kind}");
            }
            return format!(
                "json: cannot unmarshal {found} into Go struct field {}.{path} of type {ty}",
                located.struct_name
            );
        }
    }
    if path.is_empty() {
        format!("json: {inner}")
    } else {
        format!("json: {inner} (field {path})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn deploy_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        g.subschema_for::<Deployment>()
    }
    fn pod_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        g.subschema_for::<Pod>()
    }

    #[test]
    fn wrong_type_names_go_struct_field() {
        let obj = json!({"metadata": {"name": "a"}, "spec": {"replicas": "three", "selector": {}, "template": {}}});
        let err = decode::<Deployment>(obj, "Deployment", deploy_schema, &SchemaCache::new())
            .unwrap_err();
        assert_eq!(err, "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32");
    }

    #[test]
    fn wrong_type_inside_arrays_and_objects() {
        let obj =
            json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": "80"}]}]}});
        let err = decode::<Pod>(obj, "Pod", pod_schema, &SchemaCache::new()).unwrap_err();
        assert_eq!(
            err,
            "json: cannot unmarshal string into Go struct field ContainerPort.spec.containers[0].ports[0].containerPort of type int32"
        );
        let err =
            decode::<Pod>(json!({"spec": []}), "Pod", pod_schema, &SchemaCache::new()).unwrap_err();
        assert_eq!(
            err,
            "json: cannot unmarshal array into Go struct field Pod.spec of type v1.PodSpec"
        );
        let err = decode::<Pod>(
            json!({"metadata": {"labels": {"a": 1}}}),
            "Pod",
            pod_schema,
            &SchemaCache::new(),
        )
        .unwrap_err();
        assert_eq!(err, "json: cannot unmarshal number 1 into Go struct field ObjectMeta.metadata.labels.a of type string");
        let err = decode::<Pod>(json!([1]), "Pod", pod_schema, &SchemaCache::new()).unwrap_err();
        assert_eq!(
            err,
            "json: cannot unmarshal array into Go value of type v1.Pod"
        );
    }

    #[test]
    fn many_missing_fields_are_filled_in_one_pass() {
        let containers: Vec<Value> = (0..200).map(|_| json!({"image": "x"})).collect();
        let pod: Pod = decode(
            json!({"spec": {"containers": containers}}),
            "Pod",
            pod_schema,
            &SchemaCache::new(),
        )
        .unwrap();
        assert_eq!(pod.spec.unwrap().containers.len(), 200);
    }

    #[test]
    fn huge_numbers_are_type_errors() {
        let obj = json!({"spec": {"replicas": 99_999_999_999_i64, "selector": {}, "template": {}}});
        let err = decode::<Deployment>(obj, "Deployment", deploy_schema, &SchemaCache::new())
            .unwrap_err();
        assert!(err.contains("number 99999999999"), "{err}");
        assert!(
            err.contains("DeploymentSpec.spec.replicas of type int32"),
            "{err}"
        );
    }

    #[test]
    fn missing_required_fields_become_zero_values_and_nulls_vanish() {
        let pod: Pod = decode(
            json!({"metadata": null, "spec": {"containers": [{"image": "x"}]}}),
            "Pod",
            pod_schema,
            &SchemaCache::new(),
        )
        .unwrap();
        let spec = pod.spec.unwrap();
        assert_eq!(spec.containers[0].name, "");
        let pod: Pod = decode(json!({"spec": {}}), "Pod", pod_schema, &SchemaCache::new()).unwrap();
        assert!(pod.spec.unwrap().containers.is_empty());
    }
}
