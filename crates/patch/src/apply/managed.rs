//! `metadata.managedFields`: decoding, encoding and the entry identity rules.

use serde_json::{Map, Value};

use super::fieldset::FieldSet;

/// The operation a managedFields entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedFieldsEntry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    /// RFC 3339, as the server wrote it.
    pub time: Option<String>,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl ManagedFieldsEntry {
    /// Entries are one per manager identity: Apply entries by (manager,
    /// subresource), Update entries also by apiVersion, as upstream keys them.
    pub(crate) fn same_identity(&self, other: &ManagedFieldsEntry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == Operation::Apply || self.api_version == other.api_version)
    }

    fn decode(v: &Value) -> Option<ManagedFieldsEntry> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let operation = match v.get("operation").and_then(Value::as_str)? {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return None,
        };
        if let Some(t) = v.get("fieldsType").and_then(Value::as_str) {
            if t != "FieldsV1" {
                return None;
            }
        }
        Some(ManagedFieldsEntry {
            manager: s("manager").unwrap_or_default(),
            operation,
            api_version: s("apiVersion").unwrap_or_default(),
            time: s("time"),
            subresource: s("subresource").filter(|s| !s.is_empty()),
            fields: v
                .get("fieldsV1")
                .map(FieldSet::from_fields_v1)
                .unwrap_or_default(),
        })
    }

    /// The wire form, keys in the order Kubernetes writes them.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), self.manager.clone().into());
        m.insert("operation".into(), self.operation.as_str().into());
        m.insert("apiVersion".into(), self.api_version.clone().into());
        if let Some(t) = &self.time {
            m.insert("time".into(), t.clone().into());
        }
        m.insert("fieldsType".into(), "FieldsV1".into());
        m.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), s.clone().into());
        }
        Value::Object(m)
    }
}

/// Reads `metadata.managedFields`. Entries that do not decode are dropped (the
/// server resets what it cannot read rather than failing the write).
pub fn decode_managed_fields(obj: &Value) -> Vec<ManagedFieldsEntry> {
    let Some(Value::Array(items)) = obj.pointer("/metadata/managedFields") else {
        return Vec::new();
    };
    let mut out: Vec<ManagedFieldsEntry> = Vec::new();
    for e in items.iter().filter_map(ManagedFieldsEntry::decode) {
        match out.iter_mut().find(|o| o.same_identity(&e)) {
            Some(o) => o.fields = o.fields.union(&e.fields),
            None => out.push(e),
        }
    }
    out
}

/// Writes `entries` to `metadata.managedFields` after dropping empty ones and
/// sorting like upstream (operation, time, manager, apiVersion, subresource).
/// No entries: the field is removed.
pub fn encode_managed_fields(obj: &mut Value, mut entries: Vec<ManagedFieldsEntry>) {
    entries.retain(|e| !e.fields.is_empty());
    entries.sort_by(|a, b| {
        (
            a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let Some(Value::Object(meta)) = obj.get_mut("metadata") else {
        if entries.is_empty() {
            return;
        }
        if let Value::Object(root) = obj {
            root.insert("metadata".into(), Value::Object(Map::new()));
            return encode_managed_fields(obj, entries);
        }
        return;
    };
    if entries.is_empty() {
        meta.shift_remove("managedFields");
    } else {
        let list = entries.iter().map(ManagedFieldsEntry::to_json).collect();
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// Removes `metadata.managedFields` (the merge algorithms work without it).
pub(crate) fn strip_managed_fields(obj: &mut Value) {
    if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
        meta.shift_remove("managedFields");
    }
}
