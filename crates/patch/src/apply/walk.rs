//! Walking an object along its schema: which paths it sets, and what changed
//! between two versions of it.

use std::collections::BTreeMap;

use serde_json::Value;

use super::fieldset::{FieldPath, FieldSet, PathElement};
use crate::error::MAX_DEPTH;
use crate::schema::{FieldMeta, PatchSchema};

/// How a list field behaves for server-side apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// Replaced as a whole; owned as one leaf.
    Atomic,
    /// A set of scalars; items are `v:` elements.
    Set,
    /// Items identified by these key fields; items are `k:` elements.
    Map(Vec<String>),
}

impl ListKind {
    /// From `x-kubernetes-list-type` / `-list-map-keys`, falling back to the
    /// strategic-merge metadata (`patchStrategy: merge` with a merge key is a
    /// map, without one a set).
    pub(crate) fn of(meta: Option<&FieldMeta>) -> ListKind {
        let Some(meta) = meta else {
            return ListKind::Atomic;
        };
        let merge_key = || meta.patch_merge_key.iter().cloned().collect::<Vec<_>>();
        match meta.list_type.as_deref() {
            Some("map") => {
                let keys = if meta.list_map_keys.is_empty() {
                    merge_key()
                } else {
                    meta.list_map_keys.clone()
                };
                if keys.is_empty() {
                    ListKind::Atomic
                } else {
                    ListKind::Map(keys)
                }
            }
            Some("set") => ListKind::Set,
            Some(_) => ListKind::Atomic,
            None => {
                let merges = meta
                    .patch_strategy
                    .as_deref()
                    .is_some_and(|s| s.split(',').any(|p| p.trim() == "merge"));
                match (merges, meta.patch_merge_key.as_ref()) {
                    (false, _) => ListKind::Atomic,
                    (true, Some(k)) => ListKind::Map(vec![k.clone()]),
                    (true, None) => ListKind::Set,
                }
            }
        }
    }

    /// The path element naming `item`, the `index`th element of the list.
    pub(crate) fn element(&self, item: &Value, index: usize) -> PathElement {
        match self {
            ListKind::Atomic => PathElement::Index(index),
            ListKind::Set => PathElement::value(item),
            ListKind::Map(keys) => {
                let present = keys
                    .iter()
                    .filter(|k| item.get(k.as_str()).is_some())
                    .count();
                if present == 0 {
                    return PathElement::Index(index);
                }
                let values: Vec<(&str, Value)> = keys
                    .iter()
                    .filter_map(|k| key_field(item, k).map(|v| (k.as_str(), v)))
                    .collect();
                let fields: Vec<(&str, &Value)> = values.iter().map(|(k, v)| (*k, v)).collect();
                PathElement::key(&fields)
            }
        }
    }
}

/// Schema defaults of list-map key fields. Upstream fills these in from the
/// OpenAPI `default` before computing item identity, so a manifest that omits
/// `protocol` still names the server's (defaulted) `{containerPort, protocol:
/// TCP}` port. [`FieldMeta`] carries no defaults, so the one built-in case is
/// listed here.
const KEY_DEFAULTS: [(&str, &str); 1] = [("protocol", "TCP")];

/// The value of key field `field` of a list item, or its schema default.
pub(crate) fn key_field(item: &Value, field: &str) -> Option<Value> {
    match item.get(field) {
        Some(v) => Some(v.clone()),
        None => KEY_DEFAULTS
            .iter()
            .find(|(k, _)| *k == field)
            .map(|(_, d)| Value::from(*d)),
    }
}

/// A node of an object found by [`nodes`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Node<'a> {
    /// A scalar, atomic list/map or empty container: owned as a whole.
    Leaf(&'a Value),
    /// A list item with identity (its children are nodes too).
    Item,
}

/// Schema-aware walker.
pub(crate) struct Walker<'a> {
    pub(crate) schema: &'a dyn PatchSchema,
    /// Paths never tracked (server-owned metadata, reset fields).
    pub(crate) ignored: &'a dyn Fn(&[PathElement]) -> bool,
}

impl Walker<'_> {
    pub(crate) fn meta(&self, schema_path: &[String]) -> Option<FieldMeta> {
        let p: Vec<&str> = schema_path.iter().map(String::as_str).collect();
        self.schema.field(&p)
    }

    /// Every tracked node of `obj`: leaves and list items, by path.
    pub(crate) fn nodes<'v>(&self, obj: &'v Value) -> BTreeMap<FieldPath, Node<'v>> {
        let mut out = BTreeMap::new();
        if let Value::Object(m) = obj {
            let mut path = Vec::new();
            let mut schema_path = Vec::new();
            for (k, v) in m {
                self.field(k, v, &mut path, &mut schema_path, &mut out, 0);
            }
        }
        // `metadata` itself is never owned (an empty `metadata: {}` would be a leaf).
        out.remove([PathElement::Field("metadata".into())].as_slice());
        out
    }

    /// The set of fields `obj` sets (structured-merge-diff's `ToFieldSet`).
    pub(crate) fn field_set(&self, obj: &Value) -> FieldSet {
        self.nodes(obj).into_keys().collect()
    }

    fn field<'v>(
        &self,
        name: &str,
        v: &'v Value,
        path: &mut FieldPath,
        schema_path: &mut Vec<String>,
        out: &mut BTreeMap<FieldPath, Node<'v>>,
        depth: usize,
    ) {
        path.push(PathElement::Field(name.to_string()));
        schema_path.push(name.to_string());
        if !(self.ignored)(path) {
            self.value(v, path, schema_path, out, depth + 1);
        }
        schema_path.pop();
        path.pop();
    }

    fn value<'v>(
        &self,
        v: &'v Value,
        path: &mut FieldPath,
        schema_path: &mut Vec<String>,
        out: &mut BTreeMap<FieldPath, Node<'v>>,
        depth: usize,
    ) {
        if depth > MAX_DEPTH {
            out.insert(path.clone(), Node::Leaf(v));
            return;
        }
        match v {
            Value::Object(m) if !m.is_empty() => {
                let atomic = self
                    .meta(schema_path)
                    .is_some_and(|meta| meta.map_type.as_deref() == Some("atomic"));
                if atomic {
                    out.insert(path.clone(), Node::Leaf(v));
                    return;
                }
                for (k, child) in m {
                    self.field(k, child, path, schema_path, out, depth);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                let kind = ListKind::of(self.meta(schema_path).as_ref());
                if kind == ListKind::Atomic {
                    out.insert(path.clone(), Node::Leaf(v));
                    return;
                }
                for (i, item) in items.iter().enumerate() {
                    path.push(kind.element(item, i));
                    match (&kind, item) {
                        (ListKind::Map(_), Value::Object(m)) => {
                            out.insert(path.clone(), Node::Item);
                            for (k, child) in m {
                                self.field(k, child, path, schema_path, out, depth + 1);
                            }
                        }
                        _ => {
                            out.insert(path.clone(), Node::Leaf(item));
                        }
                    }
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone(), Node::Leaf(v));
            }
        }
    }

    /// What changed from `old` to `new`, in tracked paths.
    pub(crate) fn compare(&self, old: &Value, new: &Value) -> Comparison {
        let old = self.nodes(old);
        let new = self.nodes(new);
        let mut c = Comparison::default();
        for (path, node) in &new {
            match old.get(path) {
                None => c.added.insert(path.clone()),
                Some(before) if before != node => c.modified.insert(path.clone()),
                Some(_) => {}
            }
        }
        for path in old.keys() {
            if !new.contains_key(path) {
                c.removed.insert(path.clone());
            }
        }
        c
    }
}

/// Differences between two versions of an object.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    pub(crate) added: FieldSet,
    pub(crate) modified: FieldSet,
    pub(crate) removed: FieldSet,
}

impl Comparison {
    /// Added or modified: what the writer now sets.
    pub(crate) fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }

    pub(crate) fn is_same(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}
