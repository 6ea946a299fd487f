//! Lookup of the built-in patch metadata table ([`crate::patch_meta_data`]) and its
//! translation to and from the `x-kubernetes-*` OpenAPI extensions.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};
use skiff_patch::FieldMeta;

use crate::patch_meta_data::{Row, ROWS};

pub(crate) const PATCH_STRATEGY: &str = "x-kubernetes-patch-strategy";
pub(crate) const PATCH_MERGE_KEY: &str = "x-kubernetes-patch-merge-key";
pub(crate) const LIST_TYPE: &str = "x-kubernetes-list-type";
pub(crate) const LIST_MAP_KEYS: &str = "x-kubernetes-list-map-keys";
pub(crate) const MAP_TYPE: &str = "x-kubernetes-map-type";

/// Patch metadata of one property of a built-in definition, straight from the
/// upstream Go markers; `property == ""` is the definition itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinFieldMeta {
    pub patch_strategy: Option<&'static str>,
    pub patch_merge_key: Option<&'static str>,
    pub list_type: Option<&'static str>,
    pub list_map_keys: &'static [&'static str],
    pub map_type: Option<&'static str>,
}

impl BuiltinFieldMeta {
    fn from_row(row: &Row) -> Self {
        let opt = |s: &'static str| (!s.is_empty()).then_some(s);
        BuiltinFieldMeta {
            patch_strategy: opt(row.2),
            patch_merge_key: opt(row.3),
            list_type: opt(row.4),
            list_map_keys: row.5,
            map_type: opt(row.6),
        }
    }

    /// The same facts as a [`FieldMeta`].
    pub fn to_field_meta(&self) -> FieldMeta {
        FieldMeta {
            patch_strategy: self.patch_strategy.map(str::to_owned),
            patch_merge_key: self.patch_merge_key.map(str::to_owned),
            list_type: self.list_type.map(str::to_owned),
            list_map_keys: self.list_map_keys.iter().map(|k| (*k).to_owned()).collect(),
            map_type: self.map_type.map(str::to_owned),
        }
    }

    /// Writes the facts as `x-kubernetes-*` extensions into a schema object,
    /// overwriting what was there.
    pub(crate) fn inject(&self, schema: &mut Map<String, Value>) {
        if let Some(s) = self.patch_strategy {
            schema.insert(PATCH_STRATEGY.into(), s.into());
        }
        if let Some(k) = self.patch_merge_key {
            schema.insert(PATCH_MERGE_KEY.into(), k.into());
        }
        if let Some(t) = self.list_type {
            schema.insert(LIST_TYPE.into(), t.into());
        }
        if !self.list_map_keys.is_empty() {
            let keys = self.list_map_keys.iter().map(|k| Value::from(*k)).collect();
            schema.insert(LIST_MAP_KEYS.into(), Value::Array(keys));
        }
        if let Some(t) = self.map_type {
            schema.insert(MAP_TYPE.into(), t.into());
        }
    }
}

type Table = HashMap<&'static str, HashMap<&'static str, BuiltinFieldMeta>>;

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = Table::new();
        for row in ROWS {
            table
                .entry(row.0)
                .or_default()
                .insert(row.1, BuiltinFieldMeta::from_row(row));
        }
        table
    })
}

/// Metadata of `property` of the built-in definition `definition` (e.g.
/// `io.k8s.api.core.v1.PodSpec`, `containers`). `property == ""` asks for the
/// definition's own metadata (`x-kubernetes-map-type: atomic` of atomic structs).
pub fn builtin_field_meta(definition: &str, property: &str) -> Option<BuiltinFieldMeta> {
    table().get(definition)?.get(property).copied()
}

/// All properties of `definition` that carry metadata.
pub(crate) fn builtin_definition_meta(
    definition: &str,
) -> Option<&'static HashMap<&'static str, BuiltinFieldMeta>> {
    table().get(definition)
}

/// Reads the `x-kubernetes-*` extensions of a schema object. `None` when it has none.
pub(crate) fn field_meta_of(schema: &Map<String, Value>) -> Option<FieldMeta> {
    let string = |key: &str| schema.get(key).and_then(Value::as_str).map(str::to_owned);
    let meta = FieldMeta {
        patch_strategy: string(PATCH_STRATEGY),
        patch_merge_key: string(PATCH_MERGE_KEY),
        list_type: string(LIST_TYPE),
        list_map_keys: schema
            .get(LIST_MAP_KEYS)
            .and_then(Value::as_array)
            .map(|keys| {
                keys.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        map_type: string(MAP_TYPE),
    };
    (meta != FieldMeta::default()).then_some(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_spec_containers_merge_by_name() {
        let m = builtin_field_meta("io.k8s.api.core.v1.PodSpec", "containers").unwrap();
        assert_eq!(m.patch_strategy, Some("merge"));
        assert_eq!(m.patch_merge_key, Some("name"));
        assert_eq!(m.list_type, Some("map"));
        assert_eq!(m.list_map_keys, &["name"]);
    }

    #[test]
    fn well_known_fields() {
        let ports = builtin_field_meta("io.k8s.api.core.v1.Container", "ports").unwrap();
        assert_eq!(ports.patch_merge_key, Some("containerPort"));
        assert_eq!(ports.list_map_keys, &["containerPort", "protocol"]);
        let env = builtin_field_meta("io.k8s.api.core.v1.Container", "env").unwrap();
        assert_eq!(
            (env.patch_strategy, env.patch_merge_key),
            (Some("merge"), Some("name"))
        );
        let volumes = builtin_field_meta("io.k8s.api.core.v1.PodSpec", "volumes").unwrap();
        assert_eq!(volumes.patch_strategy, Some("merge,retainKeys"));
        let owners = builtin_field_meta(
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "ownerReferences",
        )
        .unwrap();
        assert_eq!(owners.patch_merge_key, Some("uid"));
        let finalizers = builtin_field_meta(
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "finalizers",
        )
        .unwrap();
        assert_eq!(
            (finalizers.patch_strategy, finalizers.list_type),
            (Some("merge"), Some("set"))
        );
        let selector =
            builtin_field_meta("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", "").unwrap();
        assert_eq!(selector.map_type, Some("atomic"));
        assert!(builtin_field_meta("io.k8s.api.core.v1.PodSpec", "hostname").is_none());
    }

    #[test]
    fn extensions_round_trip() {
        let m = builtin_field_meta("io.k8s.api.core.v1.PodSpec", "volumes").unwrap();
        let mut schema = Map::new();
        m.inject(&mut schema);
        assert_eq!(field_meta_of(&schema), Some(m.to_field_meta()));
        assert_eq!(field_meta_of(&Map::new()), None);
    }
}
