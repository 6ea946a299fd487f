//! The component schemas of the built-in kinds: generated from k8s-openapi's
//! schemars impls, then shaped the way the Kubernetes API server publishes them
//! (OpenAPI v3 references wrapped in `allOf`, the patch metadata table injected as
//! `x-kubernetes-*` extensions, `x-kubernetes-group-version-kind` on every kind,
//! synthesized `<Kind>List` schemas).

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use schemars::generate::SchemaSettings;
use schemars::SchemaGenerator;
use serde_json::{json, Value};
use skiff_resources::ResourceDef;

use crate::patch_meta::builtin_definition_meta;
use crate::walk;

/// Prefix of every reference in the canonical (OpenAPI v3) form.
pub(crate) const V3_REF_PREFIX: &str = "#/components/schemas/";

pub(crate) const GVK_EXTENSION: &str = "x-kubernetes-group-version-kind";

pub(crate) const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
pub(crate) const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
pub(crate) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(crate) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(crate) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub(crate) const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
pub(crate) const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// Schemas every group-version document carries, whatever its kinds.
pub(crate) const COMMON: [&str; 6] = [
    OBJECT_META,
    LIST_META,
    STATUS,
    DELETE_OPTIONS,
    PATCH,
    WATCH_EVENT,
];

/// Component schemas by name, in canonical v3 form.
pub(crate) type Schemas = BTreeMap<String, Value>;

/// Group, version and kind of one served type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Gvk {
    pub(crate) fn of(def: &ResourceDef) -> Self {
        Gvk {
            group: def.group.clone(),
            version: def.version.clone(),
            kind: def.kind.clone(),
        }
    }

    pub(crate) fn to_value(&self) -> Value {
        json!({"group": self.group, "version": self.version, "kind": self.kind})
    }
}

/// Built-in component schemas plus, per served kind, the names of its schema and
/// its list schema.
pub(crate) struct Builtins {
    pub schemas: Schemas,
    /// Kind → (schema name, list schema name).
    pub kinds: BTreeMap<Gvk, (String, String)>,
}

/// Generates every schema reachable from `defs` (those with a `schema`) and the
/// common meta types, in canonical v3 form.
pub(crate) fn builtins(defs: &[ResourceDef]) -> Builtins {
    let settings = SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = "/components/schemas".into();
        s.meta_schema = None;
        s.transforms.clear();
    });
    let mut generator = SchemaGenerator::new(settings);
    generator.subschema_for::<meta::ObjectMeta>();
    generator.subschema_for::<meta::ListMeta>();
    generator.subschema_for::<meta::Status>();
    generator.subschema_for::<meta::DeleteOptions>();
    generator.subschema_for::<meta::Patch>();
    generator.subschema_for::<meta::WatchEvent<RawExtension>>();
    generator.subschema_for::<Scale>();

    let mut roots = Vec::new();
    for def in defs {
        if let Some(schema_fn) = def.schema {
            roots.push((
                Gvk::of(def),
                def.list_kind.clone(),
                schema_fn(&mut generator).to_value(),
            ));
        }
    }
    let mut schemas: Schemas = generator.take_definitions(false).into_iter().collect();

    let mut kinds = BTreeMap::new();
    for (gvk, list_kind, root) in roots {
        let name = match walk::ref_of(&root).and_then(|r| r.strip_prefix(V3_REF_PREFIX)) {
            Some(name) => name.to_owned(),
            // An inline root schema (not a k8s-openapi type): give it a name of its own.
            None => {
                let name = format!(
                    "skiff.{}.{}.{}",
                    group_segment(&gvk.group),
                    gvk.version,
                    gvk.kind
                );
                schemas.insert(name.clone(), root);
                name
            }
        };
        let list_name = sibling_name(&name, &list_kind);
        kinds.insert(gvk, (name, list_name));
    }
    kinds.insert(
        Gvk {
            group: "autoscaling".into(),
            version: "v1".into(),
            kind: "Scale".into(),
        },
        (SCALE.to_owned(), String::new()),
    );

    for (name, schema) in schemas.iter_mut() {
        shape_definition(name, schema);
    }
    for (gvk, (name, list_name)) in &kinds {
        if let Some(Value::Object(obj)) = schemas.get_mut(name) {
            obj.insert(GVK_EXTENSION.into(), json!([gvk.to_value()]));
            // k8s-openapi marks `metadata` required; the API server does not
            // (explain would print `-required-` on every kind's metadata).
            if let Some(Value::Array(required)) = obj.get_mut("required") {
                required.retain(|r| r != "metadata");
                if required.is_empty() {
                    obj.shift_remove("required");
                }
            }
        }
        if !list_name.is_empty() && !schemas.contains_key(list_name) {
            let list_gvk = Gvk {
                kind: format!("{}List", gvk.kind),
                ..gvk.clone()
            };
            schemas.insert(list_name.clone(), list_schema(&list_gvk, name));
        }
    }
    Builtins { schemas, kinds }
}

/// `a.b.Kind` + `Other` → `a.b.Other`.
pub(crate) fn sibling_name(name: &str, kind: &str) -> String {
    match name.rsplit_once('.') {
        Some((prefix, _)) => format!("{prefix}.{kind}"),
        None => kind.to_owned(),
    }
}

/// `example.com` → `com.example` (the reversed-domain prefix Kubernetes uses for
/// schema names of custom groups).
pub(crate) fn group_segment(group: &str) -> String {
    if group.is_empty() {
        return "core".to_owned();
    }
    group.split('.').rev().collect::<Vec<_>>().join(".")
}

/// The schema of `<Kind>List`.
pub(crate) fn list_schema(list_gvk: &Gvk, item_schema: &str) -> Value {
    json!({
        "description": format!("{} is a list of {}.", list_gvk.kind, item_schema.rsplit('.').next().unwrap_or(item_schema)),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": "The group/version this list is written in."},
            "kind": {"type": "string", "description": "The kind of this list, in CamelCase."},
            "items": {
                "type": "array",
                "description": "The listed objects.",
                "items": {"$ref": format!("{V3_REF_PREFIX}{item_schema}")},
            },
            "metadata": {
                "allOf": [{"$ref": format!("{V3_REF_PREFIX}{LIST_META}")}],
                "description": "List metadata: resourceVersion and continue token.",
            },
        },
        GVK_EXTENSION: [list_gvk.to_value()],
    })
}

/// Puts one generated definition into the shape the Kubernetes API server serves.
fn shape_definition(name: &str, schema: &mut Value) {
    match name {
        // kube-openapi publishes these two as `oneOf` in v3; explain then prints
        // their names (`<IntOrString>`, `<Quantity>`) instead of `<Object>`.
        INT_OR_STRING => {
            let description = schema.get("description").cloned().unwrap_or(Value::Null);
            *schema = json!({
                "description": description,
                "format": "int-or-string",
                "oneOf": [{"type": "integer"}, {"type": "string"}],
            });
        }
        QUANTITY => {
            let description = schema.get("description").cloned().unwrap_or(Value::Null);
            *schema = json!({
                "description": description,
                "oneOf": [{"type": "string"}, {"type": "number"}],
            });
        }
        _ => {}
    }
    if let (Some(meta), Value::Object(obj)) = (builtin_definition_meta(name), &mut *schema) {
        for (property, field_meta) in meta {
            let target = if property.is_empty() {
                Some(&mut *obj)
            } else {
                obj.get_mut("properties")
                    .and_then(|p| p.get_mut(*property))
                    .and_then(Value::as_object_mut)
            };
            if let Some(target) = target {
                field_meta.inject(target);
            }
        }
    }
    walk::visit_mut(schema, &mut wrap_ref_with_siblings);
}

/// OpenAPI 3.0 ignores the siblings of `$ref`; Kubernetes keeps a field's own
/// description (and default) by moving the reference into a one-element `allOf`.
pub(crate) fn wrap_ref_with_siblings(schema: &mut Value) {
    let Value::Object(obj) = schema else {
        return;
    };
    if obj.len() < 2 {
        return;
    }
    let Some(Value::String(_)) = obj.get("$ref") else {
        return;
    };
    if let Some(reference) = obj.shift_remove("$ref") {
        obj.insert("allOf".into(), json!([{"$ref": reference}]));
    }
}

/// Names of every schema reachable from `roots` (including the roots), following
/// `$ref`s. Unknown names are skipped.
pub(crate) fn closure<'r, 'a>(
    roots: impl IntoIterator<Item = &'r str>,
    lookup: &dyn Fn(&str) -> Option<&'a Value>,
) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut stack: Vec<String> = roots.into_iter().map(str::to_owned).collect();
    while let Some(name) = stack.pop() {
        if seen.contains(&name) {
            continue;
        }
        let Some(schema) = lookup(&name) else {
            continue;
        };
        seen.insert(name);
        for r in walk::refs(schema) {
            if let Some(target) = r.strip_prefix(V3_REF_PREFIX) {
                if !seen.contains(target) {
                    stack.push(target.to_owned());
                }
            }
        }
    }
    seen
}
