//! Conversion of canonical (OpenAPI v3) schemas to Swagger 2.0 definitions.

use serde_json::{json, Value};

use crate::components::V3_REF_PREFIX;
use crate::walk;

const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// The Swagger 2.0 form of one definition: references point at `#/definitions/`,
/// a reference wrapped in a one-element `allOf` becomes a plain `$ref` with
/// siblings (as Kubernetes publishes v2), and keywords Swagger 2.0 lacks
/// (`oneOf`, `anyOf`, `not`, `nullable`) are dropped.
pub(crate) fn definition(name: &str, schema: &Value) -> Value {
    let description = schema.get("description").cloned().unwrap_or(Value::Null);
    match name {
        INT_OR_STRING => {
            return json!({"description": description, "type": "string", "format": "int-or-string"})
        }
        QUANTITY => return json!({"description": description, "type": "string"}),
        _ => {}
    }
    let mut out = schema.clone();
    walk::visit_mut(&mut out, &mut |s| {
        let Value::Object(obj) = s else { return };
        let single_ref = match obj.get("allOf") {
            Some(Value::Array(members)) if members.len() == 1 => {
                members.first().and_then(walk::ref_of).map(str::to_owned)
            }
            _ => None,
        };
        if let Some(reference) = single_ref {
            obj.shift_remove("allOf");
            obj.insert("$ref".into(), reference.into());
        }
        if let Some(Value::String(reference)) = obj.get_mut("$ref") {
            if let Some(target) = reference.strip_prefix(V3_REF_PREFIX) {
                *reference = format!("#/definitions/{target}");
            }
        }
        for key in ["oneOf", "anyOf", "not", "nullable"] {
            obj.shift_remove(key);
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwraps_all_of_and_rewrites_refs() {
        let v3 = json!({"properties": {"m": {"allOf": [{"$ref": "#/components/schemas/X"}], "description": "d"},
                                        "l": {"items": {"$ref": "#/components/schemas/Y"}}}});
        let v2 = definition("Z", &v3);
        assert_eq!(
            v2["properties"]["m"],
            json!({"description": "d", "$ref": "#/definitions/X"})
        );
        assert_eq!(v2["properties"]["l"]["items"]["$ref"], "#/definitions/Y");
        assert_eq!(
            definition(INT_OR_STRING, &json!({}))["format"],
            "int-or-string"
        );
    }
}
