//! Structural defaulting of custom resources.
//!
//! As Kubernetes does: a property with a `default` is set when it is missing (or
//! `null` while not `nullable`), then the walk continues into the value, so
//! defaults inside a freshly defaulted object apply too. Defaults of nested
//! properties only apply when their parent object exists. Before defaulting,
//! `null` values of non-nullable fields without a default are dropped, which is
//! what Kubernetes does so that `field: null` in a manifest means "unset".

use serde_json::{Map, Value};

use super::schema::Schema;

/// Apply the schema's defaults to a whole custom resource. The root `metadata`
/// is left to the API server.
pub(crate) fn apply_defaults(obj: &mut Value, schema: &Schema) {
    if let Value::Object(map) = obj {
        default_object(map, schema, true);
    }
}

fn default_value(v: &mut Value, schema: &Schema) {
    match v {
        Value::Object(map) => default_object(map, schema, false),
        Value::Array(items) => {
            let Some(item_schema) = &schema.items else {
                return;
            };
            for item in items.iter_mut() {
                if item.is_null() && !item_schema.nullable {
                    if let Some(d) = &item_schema.default {
                        *item = d.clone();
                    }
                }
                default_value(item, item_schema);
            }
        }
        _ => {}
    }
}

fn default_object(map: &mut Map<String, Value>, schema: &Schema, root: bool) {
    let skip = |key: &str| root && key == "metadata";
    map.retain(|key, value| {
        if skip(key) || !value.is_null() {
            return true;
        }
        match schema.property(key).or_else(|| schema.additional_schema()) {
            Some(s) => s.nullable || s.default.is_some(),
            None => true,
        }
    });
    for (key, prop) in &schema.properties {
        if skip(key) {
            continue;
        }
        let Some(default) = &prop.default else {
            continue;
        };
        let missing = match map.get(key) {
            None => true,
            Some(v) => v.is_null() && !prop.nullable,
        };
        if missing {
            map.insert(key.clone(), default.clone());
        }
    }
    for (key, value) in map.iter_mut() {
        if skip(key) {
            continue;
        }
        if let Some(prop) = schema.property(key) {
            default_value(value, prop);
        } else if let Some(additional) = schema.additional_schema() {
            if value.is_null() && !additional.nullable {
                if let Some(d) = &additional.default {
                    *value = d.clone();
                }
            }
            default_value(value, additional);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::parse(&json!({
            "type": "object",
            "properties": {
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "properties": {
                        "size": {"type": "integer", "default": 1},
                        "color": {"type": "string", "default": "red"},
                        "note": {"type": "string", "nullable": true, "default": "n"},
                        "plain": {"type": "string"},
                        "resources": {
                            "type": "object",
                            "default": {},
                            "properties": {"cpu": {"type": "string", "default": "100m"}}
                        },
                        "probe": {"type": "object", "properties": {"period": {"type": "integer", "default": 10}}},
                        "ports": {"type": "array", "items": {"type": "object", "properties": {"protocol": {"type": "string", "default": "TCP"}}}},
                        "env": {"type": "object", "additionalProperties": {"type": "string", "default": "unset"}},
                    }
                }
            }
        }))
    }

    #[test]
    fn fills_missing_fields_and_nested_defaults() {
        let mut obj = json!({"metadata": {"name": "w"}, "spec": {"size": 5, "ports": [{"protocol": "UDP"}, {}]}});
        apply_defaults(&mut obj, &schema());
        assert_eq!(
            obj,
            json!({"metadata": {"name": "w"}, "spec": {
                "size": 5,
                "ports": [{"protocol": "UDP"}, {"protocol": "TCP"}],
                "color": "red",
                "note": "n",
                "resources": {"cpu": "100m"},
            }})
        );
    }

    #[test]
    fn nested_defaults_need_their_parent() {
        let mut obj = json!({"spec": {}});
        apply_defaults(&mut obj, &schema());
        assert!(obj["spec"].get("probe").is_none());
        let mut obj = json!({"spec": {"probe": {}}});
        apply_defaults(&mut obj, &schema());
        assert_eq!(obj["spec"]["probe"], json!({"period": 10}));
        let mut obj = json!({});
        apply_defaults(&mut obj, &schema());
        assert_eq!(obj, json!({}));
    }

    #[test]
    fn nulls_are_defaulted_or_dropped() {
        let mut obj = json!({"spec": {"size": null, "note": null, "plain": null, "env": {"A": null, "B": "b"}}});
        apply_defaults(&mut obj, &schema());
        assert_eq!(obj["spec"]["size"], json!(1));
        assert_eq!(obj["spec"]["note"], Value::Null, "nullable keeps null");
        assert!(
            obj["spec"].get("plain").is_none(),
            "non-nullable null without default is dropped"
        );
        assert_eq!(obj["spec"]["env"], json!({"A": "unset", "B": "b"}));
    }

    #[test]
    fn idempotent() {
        let mut once = json!({"spec": {"ports": [{}]}});
        apply_defaults(&mut once, &schema());
        let mut twice = once.clone();
        apply_defaults(&mut twice, &schema());
        assert_eq!(once, twice);
    }
}
