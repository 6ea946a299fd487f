//! Component schemas of custom resources, built from a CRD version's
//! `openAPIV3Schema`.
//!
//! The schema is user input: it is taken as it comes (it already carries its own
//! `x-kubernetes-list-type` and friends) except that what would break the
//! published document is removed or replaced, and nothing here panics on it.

use serde_json::{json, Map, Value};
use skiff_resources::ResourceDef;

use crate::components::{
    group_segment, list_schema, Gvk, GVK_EXTENSION, OBJECT_META, V3_REF_PREFIX,
};
use crate::walk;

/// One served version of a custom resource.
#[derive(Debug, Clone)]
pub struct CrdEntry {
    /// Names, scope, verbs and subresources; `schema` is ignored.
    pub resource: ResourceDef,
    /// The version's `schema.openAPIV3Schema` (any JSON; a non-object is treated as
    /// an object schema that allows anything).
    pub schema: Value,
}

impl CrdEntry {
    /// Name of the component schema (`com.example.v1.Widget` for
    /// `example.com/v1` `Widget`, as Kubernetes names them).
    pub(crate) fn schema_name(&self) -> String {
        format!(
            "{}.{}.{}",
            group_segment(&self.resource.group),
            self.resource.version,
            self.resource.kind
        )
    }

    pub(crate) fn list_schema_name(&self) -> String {
        format!(
            "{}.{}.{}",
            group_segment(&self.resource.group),
            self.resource.version,
            self.resource.list_kind
        )
    }

    /// The kind's component schema and its list schema, in canonical v3 form.
    pub(crate) fn component_schemas(&self) -> [(String, Value); 2] {
        let gvk = Gvk::of(&self.resource);
        let mut schema = match &self.schema {
            Value::Object(obj) => Value::Object(obj.clone()),
            _ => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        };
        // CRD schemas may not use `$ref` (the API server rejects them); drop any
        // that slipped through so every reference in the document resolves.
        walk::visit_mut(&mut schema, &mut |s| {
            if let Value::Object(obj) = s {
                if matches!(obj.get("$ref"), Some(Value::String(_))) {
                    obj.shift_remove("$ref");
                }
            }
        });
        if let Value::Object(obj) = &mut schema {
            obj.entry("type").or_insert_with(|| "object".into());
            let props = obj
                .entry("properties")
                .or_insert_with(|| Value::Object(Map::new()));
            if !props.is_object() {
                *props = Value::Object(Map::new());
            }
            if let Value::Object(props) = props {
                insert_type_meta(props);
                props.insert(
                    "metadata".into(),
                    json!({
                        "allOf": [{"$ref": format!("{V3_REF_PREFIX}{OBJECT_META}")}],
                        "description": "Standard object metadata: name, namespace, labels, annotations, owners and the like.",
                    }),
                );
            }
            obj.insert(GVK_EXTENSION.into(), json!([gvk.to_value()]));
        }
        let name = self.schema_name();
        let list_gvk = Gvk {
            kind: self.resource.list_kind.clone(),
            ..gvk
        };
        let list = list_schema(&list_gvk, &name);
        [(name, schema), (self.list_schema_name(), list)]
    }
}

fn insert_type_meta(props: &mut Map<String, Value>) {
    props.insert(
        "apiVersion".into(),
        json!({"type": "string", "description": "The group/version this object is written in."}),
    );
    props.insert(
        "kind".into(),
        json!({"type": "string", "description": "The kind of this object, in CamelCase."}),
    );
}
