//! Merging one list whose field has `patchStrategy: merge`.

use serde_json::Value;

use super::{order, Merger, PATCH};
use crate::error::{invalid, Result, MAX_DEPTH};

/// `{"$patch": "delete", ...}`: a map the patch wants gone.
pub(super) fn is_delete_directive(v: &Value) -> bool {
    v.get(PATCH).and_then(Value::as_str) == Some("delete")
}

/// What the list items are, judged from the original and the patch together.
#[derive(Debug, PartialEq, Eq)]
enum Items {
    Maps,
    Primitives,
}

fn item_kind(old: &[Value], patch: &[Value]) -> Result<Items> {
    let mut kind = None;
    for item in old.iter().chain(patch) {
        let this = match item {
            Value::Null => continue,
            Value::Object(_) => Items::Maps,
            Value::Array(_) => return Err(invalid("cannot merge lists of lists")),
            _ => Items::Primitives,
        };
        match &kind {
            None => kind = Some(this),
            Some(k) if *k != this => {
                return Err(invalid(
                    "list items must all be maps or all be primitives to merge",
                ))
            }
            Some(_) => {}
        }
    }
    Ok(kind.unwrap_or(Items::Primitives))
}

impl Merger<'_> {
    /// Merges `patch` into `old` for a list with strategy `merge`; `key` is the
    /// field's `patchMergeKey` (needed when items are maps).
    pub(super) fn merge_list(
        &mut self,
        mut old: Vec<Value>,
        patch: &[Value],
        key: Option<&str>,
        depth: usize,
    ) -> Result<Vec<Value>> {
        if depth > MAX_DEPTH {
            return Err(invalid(format!(
                "patch nests deeper than {MAX_DEPTH} levels"
            )));
        }
        if old.is_empty() && patch.is_empty() {
            return Ok(old);
        }

        // Directive items: `$patch: delete` removes matching entries, `$patch:
        // replace` makes the remaining patch items the whole list.
        let mut items = Vec::with_capacity(patch.len());
        let mut replace = false;
        for item in patch {
            let Some(directive) = item.get(PATCH) else {
                items.push(item);
                continue;
            };
            match directive.as_str() {
                Some("delete") => {
                    let key = key.ok_or_else(|| {
                        invalid(format!(
                            "{}: $patch: delete needs a merge key",
                            self.path.join(".")
                        ))
                    })?;
                    let want = item.get(key).ok_or_else(|| {
                        invalid(format!(
                            "{}: $patch: delete item has no merge key {key:?}",
                            self.path.join(".")
                        ))
                    })?;
                    old.retain(|o| o.get(key) != Some(want));
                }
                Some("replace") => replace = true,
                Some("merge") => {
                    return Err(invalid(format!(
                        "{}: merging lists cannot yet be specified in the patch",
                        self.path.join(".")
                    )))
                }
                _ => {
                    return Err(invalid(format!(
                        "{}: unknown patch type {directive} in list item",
                        self.path.join(".")
                    )))
                }
            }
        }
        if replace {
            return items
                .iter()
                .map(|i| self.fresh_item(i, depth + 1))
                .collect();
        }

        let items: Vec<Value> = items.into_iter().cloned().collect();
        let server_order = old.clone();
        let merged = match item_kind(&old, &items)? {
            Items::Primitives => {
                let mut merged: Vec<Value> = Vec::with_capacity(old.len() + items.len());
                for v in old.into_iter().chain(items.iter().cloned()) {
                    if !merged.contains(&v) {
                        merged.push(v);
                    }
                }
                let (named, server_only) = order::partition(merged, &items, None);
                return Ok(order::normalize(
                    named,
                    server_only,
                    &items,
                    &server_order,
                    None,
                ));
            }
            Items::Maps => {
                let key = key.ok_or_else(|| {
                    invalid(format!(
                        "cannot merge lists without merge key for {}",
                        self.path.join(".")
                    ))
                })?;
                for item in &items {
                    let Value::Object(p) = item else {
                        continue; // a null item: nothing to merge
                    };
                    let want = p.get(key).ok_or_else(|| {
                        invalid(format!(
                            "{}: map item has no merge key {key:?}: {item}",
                            self.path.join(".")
                        ))
                    })?;
                    match old.iter().position(|o| o.get(key) == Some(want)) {
                        Some(i) => {
                            let current = std::mem::take(&mut old[i]);
                            let current = match current {
                                Value::Object(m) => m,
                                _ => serde_json::Map::new(),
                            };
                            old[i] = Value::Object(self.merge_map(current, p, depth + 1)?);
                        }
                        None => old.push(self.fresh_item(item, depth + 1)?),
                    }
                }
                old
            }
        };
        let key = key.map(str::to_string);
        let (named, server_only) = order::partition(merged, &items, key.as_deref());
        Ok(order::normalize(
            named,
            server_only,
            &items,
            &server_order,
            key.as_deref(),
        ))
    }
}
