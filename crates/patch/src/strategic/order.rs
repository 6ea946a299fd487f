//! Element order of merged lists, as apimachinery defines it.
//!
//! After a merge the items split into those the patch names ("named": present in
//! the patch list, or in `$setElementOrder`) and those only the server had. The
//! named items are sorted by the patch's order, the server-only ones by their old
//! order, and the two runs are then woven together: walking both, a server-only
//! item goes first only when both items had a position in the old list and the
//! server-only one came earlier. So a new item named by a plain patch (no
//! `$setElementOrder`) lands *before* the server's items, as upstream does.

use serde_json::Value;

use super::PATCH;
use crate::error::{invalid, Result};

/// What identifies an item: its merge key's value for maps, itself otherwise.
fn ident<'v>(item: &'v Value, key: Option<&str>) -> Option<&'v Value> {
    match key {
        Some(k) => item.get(k),
        None => Some(item),
    }
}

fn index_in(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    let id = ident(item, key)?;
    list.iter().position(|o| ident(o, key) == Some(id))
}

/// Splits `merged` into items named by `order` and the rest, keeping order.
pub(super) fn partition(
    merged: Vec<Value>,
    order: &[Value],
    key: Option<&str>,
) -> (Vec<Value>, Vec<Value>) {
    merged
        .into_iter()
        .partition(|item| index_in(order, item, key).is_some())
}

/// Stable sort by position in `order`; items it does not name go last.
fn sort_by(items: &mut [Value], order: &[Value], key: Option<&str>) {
    items.sort_by_key(|item| index_in(order, item, key).unwrap_or(usize::MAX));
}

/// Orders `named` by `patch_order` and `server_only` by `server_order`, then
/// weaves them together (see the module docs).
pub(super) fn normalize(
    mut named: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    sort_by(&mut named, patch_order, key);
    sort_by(&mut server_only, server_order, key);
    let mut out = Vec::with_capacity(named.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = named.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (index_in(server_order, l, key), index_in(server_order, r, key)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// Every `$setElementOrder` entry of a map list must carry the merge key.
pub(super) fn check_order_list(order: &[Value], key: Option<&str>) -> Result<()> {
    if let Some(k) = key {
        if let Some(bad) = order.iter().find(|o| o.get(k).is_none()) {
            return Err(invalid(format!(
                "$setElementOrder entry {bad} has no merge key {k:?}"
            )));
        }
    }
    Ok(())
}

/// The patch list must be a subsequence of `$setElementOrder` (deletions and
/// other directive items aside), as upstream's `validatePatchWithSetOrderList`
/// requires.
pub(super) fn validate_against_patch(
    patch_list: &[Value],
    order: &[Value],
    key: Option<&str>,
) -> Result<()> {
    if patch_list.is_empty() || order.is_empty() {
        return Ok(());
    }
    let items: Vec<&Value> = patch_list
        .iter()
        .filter(|i| i.get(PATCH).is_none())
        .collect();
    let mut at = 0;
    for o in order {
        let Some(item) = items.get(at) else {
            break;
        };
        if let Some(k) = key {
            if item.get(k).is_none() {
                return Err(invalid(format!(
                    "patch list item {item} has no merge key {k:?}"
                )));
            }
        }
        if ident(item, key).is_some() && ident(item, key) == ident(o, key) {
            at += 1;
        }
    }
    if at < items.len() {
        let list = Value::Array(patch_list.to_vec());
        let order = Value::Array(order.to_vec());
        return Err(invalid(format!(
            "the order in patch list {list} doesn't match $setElementOrder list {order}"
        )));
    }
    Ok(())
}
