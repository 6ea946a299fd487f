//! Test fixtures: the real built-in resource definitions and a CRD version built
//! the way the API server builds them.

use serde_json::{json, Value};
use skiff_resources::ResourceDef;

use crate::CrdEntry;

pub(crate) fn builtins() -> Vec<ResourceDef> {
    skiff_resources::builtin_resources()
}

/// `example.com/v1` `Widget` with a status subresource and a list-map in its spec.
pub(crate) fn widget() -> CrdEntry {
    let schema: Value = json!({
        "type": "object",
        "description": "A widget.",
        "properties": {
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "description": "What the widget should be.",
                "properties": {
                    "size": {"type": "integer", "description": "How big."},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "parts": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "properties": {"name": {"type": "string"}, "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}},
                    },
                },
            },
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        },
    });
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": schema.clone()}, "subresources": {"status": {}}}],
        },
    });
    let version = skiff_resources::crd_resource_defs(&crd)
        .expect("the fixture CRD is valid")
        .into_iter()
        .next()
        .expect("one served version");
    CrdEntry {
        resource: version.def,
        schema,
    }
}
