//! Merging an applied configuration into the live object, and pruning paths.

use serde_json::Value;

use super::fieldset::PathElement;
use super::walk::{ListKind, Walker};
use crate::error::MAX_DEPTH;

/// Merges `config` into `live`: maps recursively, lists of type map by key,
/// sets by union, everything else (atomic lists and maps, scalars) replaced.
/// New list items go after the live ones, in the configuration's order.
pub(crate) fn merge_config(walker: &Walker<'_>, live: &mut Value, config: &Value) {
    let mut schema_path = Vec::new();
    merge_value(walker, live, config, &mut schema_path, 0);
}

fn merge_value(
    walker: &Walker<'_>,
    live: &mut Value,
    config: &Value,
    schema_path: &mut Vec<String>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        *live = config.clone();
        return;
    }
    match (live, config) {
        (Value::Object(l), Value::Object(c))
            if schema_path.is_empty()
                || walker
                    .meta(schema_path)
                    .is_none_or(|m| m.map_type.as_deref() != Some("atomic")) =>
        {
            for (k, cv) in c {
                schema_path.push(k.clone());
                match l.get_mut(k) {
                    Some(lv) => merge_value(walker, lv, cv, schema_path, depth + 1),
                    None => {
                        l.insert(k.clone(), cv.clone());
                    }
                }
                schema_path.pop();
            }
        }
        (Value::Array(l), Value::Array(c)) => {
            let kind = ListKind::of(walker.meta(schema_path).as_ref());
            match kind {
                ListKind::Atomic => *l = c.clone(),
                ListKind::Set => {
                    for item in c {
                        if !l.contains(item) {
                            l.push(item.clone());
                        }
                    }
                }
                ListKind::Map(_) => {
                    for (i, item) in c.iter().enumerate() {
                        let pe = kind.element(item, i);
                        let found = l
                            .iter()
                            .enumerate()
                            .position(|(j, old)| kind.element(old, j) == pe);
                        match found.and_then(|j| l.get_mut(j)) {
                            Some(old) => merge_value(walker, old, item, schema_path, depth + 1),
                            None => l.push(item.clone()),
                        }
                    }
                }
            }
        }
        (live, config) => *live = config.clone(),
    }
}

/// Removes the node at `path` from `obj`, if it is there.
pub(crate) fn remove_path(obj: &mut Value, path: &[PathElement]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match first {
        PathElement::Field(f) => {
            let Value::Object(m) = obj else {
                return;
            };
            if rest.is_empty() {
                m.shift_remove(f);
            } else if let Some(child) = m.get_mut(f) {
                remove_path(child, rest);
            }
        }
        pe => {
            let Value::Array(items) = obj else {
                return;
            };
            let Some(idx) = items
                .iter()
                .enumerate()
                .position(|(i, item)| pe.matches_item(item, i))
            else {
                return;
            };
            if rest.is_empty() {
                items.remove(idx);
            } else if let Some(item) = items.get_mut(idx) {
                remove_path(item, rest);
            }
        }
    }
}
