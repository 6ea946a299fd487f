//! Strategic merge patch (`application/strategic-merge-patch+json`), with the
//! semantics of apimachinery's `strategicpatch` as the API server applies it
//! (parallel directive lists merged, unmatched `null`s dropped).
//!
//! - maps merge recursively, `null` deletes a key;
//! - lists whose field has `patchStrategy: merge` merge: maps by `patchMergeKey`,
//!   primitives as a de-duplicated union; all other lists are replaced;
//! - directives: `$patch: replace | delete | merge` on a map, `$patch: delete |
//!   replace` as a list item, `$retainKeys`, `$setElementOrder/<field>`,
//!   `$deleteFromPrimitiveList/<field>`. No directive survives into the result.
//!
//! Ordering of merged lists follows upstream: the items named by the patch (or by
//! `$setElementOrder`) take the patch's order, and the items only the server has
//! are woven back in by their old positions (see [`order`]).

mod list;
mod order;

use serde_json::{Map, Value};

use crate::error::{invalid, Result, MAX_DEPTH};
use crate::schema::{FieldMeta, PatchSchema};

pub(crate) const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Applies a strategic merge patch to a copy of `doc`, looking field strategies
/// up in `schema`. The patch must be a JSON object.
pub fn strategic_merge_patch(
    doc: &Value,
    patch: &Value,
    schema: &dyn PatchSchema,
) -> Result<Value> {
    let Value::Object(patch) = patch else {
        return Err(invalid("strategic merge patch must be a JSON object"));
    };
    let original = match doc {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => {
            return Err(invalid(
                "strategic merge patch target must be a JSON object",
            ))
        }
    };
    let mut merger = Merger {
        schema,
        path: Vec::new(),
    };
    Ok(Value::Object(merger.merge_map(original, patch, 0)?))
}

/// How a field's list or map is patched, from its `patchStrategy`.
#[derive(Debug, Clone, Default)]
struct Strategy {
    merge: bool,
    replace: bool,
    merge_key: Option<String>,
}

impl Strategy {
    fn of(meta: Option<FieldMeta>) -> Result<Self> {
        let Some(meta) = meta else {
            return Ok(Self::default());
        };
        let mut s = Strategy {
            merge_key: meta.patch_merge_key,
            ..Self::default()
        };
        for part in meta.patch_strategy.as_deref().unwrap_or("").split(',') {
            match part.trim() {
                "merge" => s.merge = true,
                "replace" => s.replace = true,
                "retainKeys" | "" => {}
                other => return Err(invalid(format!("unknown patch strategy {other:?}"))),
            }
        }
        Ok(s)
    }
}

/// Walks a patch alongside the document, tracking the schema path.
struct Merger<'a> {
    schema: &'a dyn PatchSchema,
    /// Property names from the root; list items add nothing.
    path: Vec<String>,
}

impl Merger<'_> {
    fn strategy(&self, field: &str) -> Result<Strategy> {
        let mut path: Vec<&str> = self.path.iter().map(String::as_str).collect();
        path.push(field);
        Strategy::of(self.schema.field(&path))
    }

    /// Merges `patch` into `original` (the value of the current path).
    fn merge_map(
        &mut self,
        mut original: Map<String, Value>,
        patch: &Map<String, Value>,
        depth: usize,
    ) -> Result<Map<String, Value>> {
        if depth > MAX_DEPTH {
            return Err(invalid(format!(
                "patch nests deeper than {MAX_DEPTH} levels"
            )));
        }
        if let Some(directive) = patch.get(PATCH) {
            match directive.as_str() {
                Some("replace") => {
                    let rest: Map<String, Value> = patch
                        .iter()
                        .filter(|(k, _)| k.as_str() != PATCH)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    return self.merge_map(Map::new(), &rest, depth + 1);
                }
                Some("delete") => return Ok(Map::new()),
                // Upstream rejects an explicit `merge` on a map; it is the default
                // behaviour, so we accept it as a no-op.
                Some("merge") => {}
                _ => return Err(invalid(format!("unknown patch type {directive} in map"))),
            }
        }

        if let Some(keys) = patch.get(RETAIN_KEYS) {
            let keys = keys
                .as_array()
                .ok_or_else(|| invalid(format!("{RETAIN_KEYS} must be a list of strings")))?;
            let mut retain = Vec::with_capacity(keys.len());
            for k in keys {
                retain.push(
                    k.as_str().ok_or_else(|| {
                        invalid(format!("{RETAIN_KEYS} must be a list of strings"))
                    })?,
                );
            }
            original.retain(|k, _| retain.contains(&k.as_str()));
        }

        // `$setElementOrder/<field>` merges its list (from the patch, if any) and
        // then imposes the order; the list is not visited again below.
        let mut ordered: Vec<&str> = Vec::new();
        for (key, order) in patch {
            let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) else {
                continue;
            };
            if field.is_empty() {
                return Err(invalid(format!("{key}: directive names no field")));
            }
            if matches!(patch.get(field), Some(Value::Null)) {
                continue; // the field itself is being deleted
            }
            // Ordering only means something for merging lists; for others the
            // field (if patched) is replaced below and the directive is dropped.
            if let Some(merged) = self.set_element_order(&original, patch, field, order, depth)? {
                original.insert(field.to_string(), Value::Array(merged));
                ordered.push(field);
            }
        }

        for (key, value) in patch {
            if key == PATCH
                || key == RETAIN_KEYS
                || key.starts_with(SET_ELEMENT_ORDER)
                || ordered.contains(&key.as_str())
            {
                continue;
            }
            if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
                let doomed = value
                    .as_array()
                    .ok_or_else(|| invalid(format!("{key} must be a list")))?;
                if let Some(Value::Array(items)) = original.get_mut(field) {
                    items.retain(|item| !doomed.contains(item));
                }
                continue;
            }
            if value.is_null() {
                original.shift_remove(key);
                continue;
            }
            // Take the old value out in place so the key keeps its position.
            let merged = match original.get_mut(key).map(std::mem::take) {
                None if list::is_delete_directive(value) => continue,
                None => self.fresh(key, value, depth + 1)?,
                Some(Value::Object(old)) => match value {
                    Value::Object(p) if !self.strategy(key)?.replace => {
                        self.path.push(key.clone());
                        let r = self.merge_map(old, p, depth + 1);
                        self.path.pop();
                        Value::Object(r?)
                    }
                    _ => self.fresh(key, value, depth + 1)?,
                },
                Some(Value::Array(old)) => match value {
                    Value::Array(p) => {
                        Value::Array(self.merge_list_field(key, old, p, depth + 1)?)
                    }
                    _ => self.fresh(key, value, depth + 1)?,
                },
                Some(_) => self.fresh(key, value, depth + 1)?,
            };
            original.insert(key.clone(), merged);
        }
        Ok(original)
    }

    /// Handles `$setElementOrder/<field>`: merge the field's patch list (if any)
    /// into the original list, then order the result.
    fn set_element_order(
        &mut self,
        original: &Map<String, Value>,
        patch: &Map<String, Value>,
        field: &str,
        order: &Value,
        depth: usize,
    ) -> Result<Option<Vec<Value>>> {
        let order = order
            .as_array()
            .ok_or_else(|| invalid(format!("{SET_ELEMENT_ORDER}{field} must be a list")))?;
        let old = match original.get(field) {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        };
        let patch_list = match patch.get(field) {
            None => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(_) => {
                return Err(invalid(format!(
                    "{field}: expected a list next to its {SET_ELEMENT_ORDER}"
                )))
            }
        };
        let strategy = self.strategy(field)?;
        if !strategy.merge {
            return Ok(None);
        }
        let key = strategy.merge_key.as_deref();
        order::validate_against_patch(&patch_list, order, key)?;
        order::check_order_list(order, key)?;
        let merged = self.merge_list_field(field, old.clone(), &patch_list, depth + 1)?;
        let (named, server_only) = order::partition(merged, order, key);
        Ok(Some(order::normalize(named, server_only, order, &old, key)))
    }

    /// Merges or replaces the list in `field`, per its strategy.
    fn merge_list_field(
        &mut self,
        field: &str,
        old: Vec<Value>,
        patch: &[Value],
        depth: usize,
    ) -> Result<Vec<Value>> {
        let strategy = self.strategy(field)?;
        self.path.push(field.to_string());
        let r = if strategy.merge {
            self.merge_list(old, patch, strategy.merge_key.as_deref(), depth)
        } else {
            patch
                .iter()
                .map(|item| self.fresh_item(item, depth))
                .collect()
        };
        self.path.pop();
        r
    }

    /// The value a patch produces where the document has nothing: directives are
    /// resolved against an empty original so none of them leaks into the result.
    fn fresh(&mut self, field: &str, value: &Value, depth: usize) -> Result<Value> {
        match value {
            Value::Object(_) | Value::Array(_) => {
                let strategy = self.strategy(field)?;
                self.path.push(field.to_string());
                let r = match value {
                    Value::Array(items) if strategy.merge => self
                        .merge_list(Vec::new(), items, strategy.merge_key.as_deref(), depth)
                        .map(Value::Array),
                    _ => self.fresh_item(value, depth),
                };
                self.path.pop();
                r
            }
            _ => Ok(value.clone()),
        }
    }

    /// Like [`Self::fresh`] for a value at the current path (a list item).
    fn fresh_item(&mut self, value: &Value, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            return Err(invalid(format!(
                "patch nests deeper than {MAX_DEPTH} levels"
            )));
        }
        match value {
            Value::Object(m) => Ok(Value::Object(self.merge_map(Map::new(), m, depth + 1)?)),
            Value::Array(items) => Ok(Value::Array(
                items
                    .iter()
                    .map(|i| self.fresh_item(i, depth + 1))
                    .collect::<Result<_>>()?,
            )),
            _ => Ok(value.clone()),
        }
    }
}

#[cfg(test)]
mod tests;
