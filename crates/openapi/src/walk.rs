//! Schema-aware traversal of JSON schemas.
//!
//! A generic walk over every JSON object would mistake property maps for schemas
//! (`JSONSchemaProps` has a property literally named `$ref`), so these helpers only
//! descend through the keywords that hold subschemas.

use serde_json::Value;

/// Keywords whose value is one subschema.
const SINGLE: [&str; 3] = ["items", "additionalProperties", "not"];
/// Keywords whose value is a list of subschemas.
const LISTS: [&str; 3] = ["allOf", "anyOf", "oneOf"];

/// Calls `f` on `schema` and then on every subschema below it (pre-order).
pub(crate) fn visit_mut(schema: &mut Value, f: &mut impl FnMut(&mut Value)) {
    f(schema);
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        for prop in props.values_mut() {
            visit_mut(prop, f);
        }
    }
    for key in SINGLE {
        match obj.get_mut(key) {
            Some(sub @ Value::Object(_)) => visit_mut(sub, f),
            Some(Value::Array(subs)) if key == "items" => {
                subs.iter_mut().for_each(|s| visit_mut(s, f));
            }
            _ => {}
        }
    }
    for key in LISTS {
        if let Some(Value::Array(subs)) = obj.get_mut(key) {
            subs.iter_mut().for_each(|s| visit_mut(s, f));
        }
    }
}

/// Calls `f` on `schema` and then on every subschema below it (pre-order).
pub(crate) fn visit(schema: &Value, f: &mut impl FnMut(&Value)) {
    f(schema);
    let Some(obj) = schema.as_object() else {
        return;
    };
    if let Some(Value::Object(props)) = obj.get("properties") {
        for prop in props.values() {
            visit(prop, f);
        }
    }
    for key in SINGLE {
        match obj.get(key) {
            Some(sub @ Value::Object(_)) => visit(sub, f),
            Some(Value::Array(subs)) if key == "items" => subs.iter().for_each(|s| visit(s, f)),
            _ => {}
        }
    }
    for key in LISTS {
        if let Some(Value::Array(subs)) = obj.get(key) {
            subs.iter().for_each(|s| visit(s, f));
        }
    }
}

/// The `$ref` string of a schema object, if it has one.
pub(crate) fn ref_of(schema: &Value) -> Option<&str> {
    schema.get("$ref").and_then(Value::as_str)
}

/// Every `$ref` below `schema`, in order of appearance.
pub(crate) fn refs(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    visit(schema, &mut |s| {
        if let Some(r) = ref_of(s) {
            out.push(r.to_owned());
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn property_named_ref_is_not_a_reference() {
        let schema = json!({
            "properties": {
                "$ref": {"type": "string"},
                "a": {"items": {"$ref": "#/x/A"}},
                "b": {"additionalProperties": {"allOf": [{"$ref": "#/x/B"}]}},
            }
        });
        assert_eq!(refs(&schema), vec!["#/x/A", "#/x/B"]);
    }
}
