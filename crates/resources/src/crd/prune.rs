//! Pruning: dropping fields the structural schema does not declare.
//!
//! Mirrors Kubernetes' pruning of custom resources: an object keeps only the
//! properties its schema lists, unless the node has
//! `x-kubernetes-preserve-unknown-fields: true`. At the resource root and in
//! `x-kubernetes-embedded-resource` objects, `apiVersion`, `kind` and `metadata`
//! always survive. Values of the wrong JSON type are left alone: validation reports
//! them.

use serde_json::{Map, Value};

use super::schema::Schema;

/// Fields of `ObjectMeta`. An embedded resource's `metadata` keeps only these, as
/// Kubernetes coerces embedded metadata to `ObjectMeta`.
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Remove undeclared fields from a whole custom resource. Returns the paths of
/// the removed fields, formatted like Kubernetes' strict-decoding errors
/// (`.spec.foo`, `.spec.items[0].bar`).
///
/// The root `metadata` is left untouched: the API server handles `ObjectMeta`.
pub(crate) fn prune(obj: &mut Value, schema: &Schema) -> Vec<String> {
    let mut pruned = Vec::new();
    if let Value::Object(map) = obj {
        prune_object(map, schema, "", true, &mut pruned);
    }
    pruned
}

fn prune_value(v: &mut Value, schema: &Schema, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => prune_object(map, schema, path, false, out),
        Value::Array(items) => {
            if let Some(item_schema) = &schema.items {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_value(item, item_schema, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn prune_object(
    map: &mut Map<String, Value>,
    schema: &Schema,
    path: &str,
    root: bool,
    out: &mut Vec<String>,
) {
    let keeps_type_meta = root || schema.embedded_resource;
    let additional = schema.additional_schema();
    let allows_any_key = schema.preserve_unknown_fields
        || matches!(
            schema.additional_properties,
            Some(super::schema::Additional::Allowed(true))
        );
    let mut drop = Vec::new();
    for (key, value) in map.iter_mut() {
        let child_path = format!("{path}.{key}");
        if keeps_type_meta && (key == "apiVersion" || key == "kind") {
            continue;
        }
        if keeps_type_meta && key == "metadata" {
            if !root {
                prune_embedded_metadata(value, &child_path, out);
            }
            continue;
        }
        if let Some(prop) = schema.property(key) {
            prune_value(value, prop, &child_path, out);
        } else if let Some(additional) = additional {
            prune_value(value, additional, &child_path, out);
        } else if !allows_any_key {
            drop.push(key.clone());
            out.push(child_path);
        }
    }
    for key in drop {
        map.remove(&key);
    }
}

fn prune_embedded_metadata(meta: &mut Value, path: &str, out: &mut Vec<String>) {
    let Value::Object(map) = meta else { return };
    map.retain(|key, _| {
        let known = OBJECT_META_FIELDS.contains(&key.as_str());
        if !known {
            out.push(format!("{path}.{key}"));
        }
        known
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::parse(&json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "size": {"type": "integer"},
                        "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
                        "labels": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "string"}}}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"known": {"type": "object"}}},
                        "template": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                        "empty": {"type": "object"},
                    }
                },
                "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
            }
        }))
    }

    #[test]
    fn drops_undeclared_fields_and_reports_paths() {
        let mut obj = json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "whatever": 1},
            "extra": true,
            "spec": {
                "size": 3, "bogus": 1,
                "items": [{"name": "a", "x": 1}, {"name": "b"}],
                "labels": {"k": {"v": "1", "w": "2"}},
                "free": {"anything": {"deep": 1}, "known": {"gone": 1}},
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "junk": 1}, "spec": {"x": 1}, "other": 1},
                "empty": {"a": 1},
            },
            "status": {"ready": true, "phase": "x"}
        });
        let pruned = prune(&mut obj, &schema());
        assert_eq!(
            pruned,
            vec![
                ".extra",
                ".spec.bogus",
                ".spec.items[0].x",
                ".spec.labels.k.w",
                ".spec.free.known.gone",
                ".spec.template.metadata.junk",
                ".spec.template.other",
                ".spec.empty.a",
                ".status.phase",
            ]
        );
        assert_eq!(
            obj,
            json!({
                "apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "w", "whatever": 1},
                "spec": {
                    "size": 3,
                    "items": [{"name": "a"}, {"name": "b"}],
                    "labels": {"k": {"v": "1"}},
                    "free": {"anything": {"deep": 1}, "known": {}},
                    "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": 1}},
                    "empty": {},
                },
                "status": {"ready": true}
            })
        );
    }

    #[test]
    fn wrong_types_are_left_for_validation() {
        let mut obj = json!({"spec": [1, 2], "status": "nope"});
        assert!(prune(&mut obj, &schema()).is_empty());
        assert_eq!(obj, json!({"spec": [1, 2], "status": "nope"}));
        let mut not_object = json!("x");
        assert!(prune(&mut not_object, &schema()).is_empty());
    }
}
