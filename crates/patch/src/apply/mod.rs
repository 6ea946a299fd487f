//! Server-side apply and field ownership (`metadata.managedFields`).
//!
//! [`apply`] merges an applied configuration into the live object on behalf of
//! one manager, prunes what that manager stopped applying, and reports
//! conflicts with other owners. [`track_update`] records ownership for every
//! other write (create, update, patch), so a later apply sees the right owners.
//!
//! Rules implemented (following structured-merge-diff as the API server uses it):
//! - Not tracked: `apiVersion`, `kind`, and the server-owned metadata `name`,
//!   `namespace`, `uid`, `resourceVersion`, `generation`, `creationTimestamp`,
//!   `deletionTimestamp`, `selfLink`, `managedFields` (labels, annotations,
//!   finalizers, ownerReferences and the rest of metadata are tracked).
//! - Reset fields: on the main resource `status` is never owned (the server
//!   resets it); on the `status` subresource `spec` is never owned.
//! - Ownership is recorded for leaves (scalars, atomic lists and maps, empty
//!   containers) and for items of lists of type map (`.`), not for the maps
//!   that contain them.
//! - Entries are keyed by (manager, operation, subresource), plus apiVersion for
//!   Update; entries whose set becomes empty are dropped.
//! - Not implemented: version conversion of field sets, the cap on the number of
//!   Update entries (upstream folds extras into `ancient-changes`).

mod conflict;
mod fieldset;
mod managed;
mod merge;
mod walk;

use serde_json::{Map, Value};

pub use conflict::{Conflict, ConflictCause};
pub use fieldset::{path_string, FieldPath, FieldSet, PathElement};
pub use managed::{decode_managed_fields, encode_managed_fields, ManagedFieldsEntry, Operation};

use crate::schema::PatchSchema;
use managed::strip_managed_fields;
use walk::Walker;

/// The manager that takes ownership of everything in an object that had no
/// managedFields when it was first applied to.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Why an apply failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Fields the configuration changes are owned by other managers (409).
    #[error("{}", conflict::message(.0))]
    Conflicts(Vec<Conflict>),
    /// The configuration itself is unusable (400/422).
    #[error("invalid apply configuration: {0}")]
    Invalid(String),
}

impl ApplyError {
    /// The Status `message`, e.g. `Apply failed with 1 conflict: conflict with
    /// "kubectl-client-side-apply" using v1: .data.a`.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// The Status `details.causes` (empty unless this is a conflict).
    pub fn causes(&self) -> Vec<ConflictCause> {
        match self {
            ApplyError::Conflicts(c) => conflict::causes(c),
            ApplyError::Invalid(_) => Vec::new(),
        }
    }
}

/// Is `path` exempt from ownership tracking for writes to `subresource`?
fn is_ignored(path: &[PathElement], subresource: Option<&str>) -> bool {
    const SERVER_METADATA: [&str; 10] = [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "selfLink",
        "managedFields",
        "clusterName",
    ];
    let field = |i: usize| match path.get(i) {
        Some(PathElement::Field(f)) => Some(f.as_str()),
        _ => None,
    };
    match (field(0), field(1)) {
        (Some("apiVersion" | "kind"), None) => true,
        (Some("metadata"), Some(f)) => SERVER_METADATA.contains(&f),
        (Some("status"), _) => subresource.is_none(),
        (Some("spec"), _) => subresource == Some("status"),
        _ => false,
    }
}

/// A key field of a list item (`...[name="web"].name`): it goes with its item,
/// never on its own, or the item would lose its identity.
fn is_key_field_of_kept_item(path: &[PathElement]) -> bool {
    let [.., PathElement::Key(key), PathElement::Field(f)] = path else {
        return false;
    };
    serde_json::from_str::<Value>(key).is_ok_and(|k| k.get(f).is_some())
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// Server-side apply of `config` by `manager` onto `live` (`None`: the object
/// does not exist yet and is created from `config`).
///
/// Returns the new object with `metadata.managedFields` updated. `now` is the
/// RFC 3339 timestamp for entries that change. Without `force`, changing a field
/// another manager owns is an [`ApplyError::Conflicts`]; with it, ownership of
/// those fields moves to `manager`.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    schema: &dyn PatchSchema,
    api_version: &str,
    now: &str,
) -> Result<Value, ApplyError> {
    if !config.is_object() {
        return Err(ApplyError::Invalid(
            "the configuration must be a JSON object".into(),
        ));
    }
    if config
        .pointer("/metadata/managedFields")
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApplyError::Invalid(
            "metadata.managedFields must be nil".into(),
        ));
    }
    let ignored = |p: &[PathElement]| is_ignored(p, None);
    let walker = Walker {
        schema,
        ignored: &ignored,
    };

    let mut entries = live.map(decode_managed_fields).unwrap_or_default();
    let mut old = live.cloned().unwrap_or_else(empty_object);
    strip_managed_fields(&mut old);
    if live.is_some() && entries.is_empty() {
        // An object written before anyone tracked it: its current fields belong
        // to a placeholder manager, so the first applier can conflict with them.
        entries.push(ManagedFieldsEntry {
            manager: BEFORE_FIRST_APPLY.into(),
            operation: Operation::Update,
            api_version: api_version.into(),
            time: Some(now.into()),
            subresource: None,
            fields: walker.field_set(&old),
        });
    }
    let mut config = config.clone();
    strip_managed_fields(&mut config);

    let mut merged = old.clone();
    merge::merge_config(&walker, &mut merged, &config);
    let applied = walker.field_set(&config);
    let me = ManagedFieldsEntry {
        manager: manager.into(),
        operation: Operation::Apply,
        api_version: api_version.into(),
        time: Some(now.into()),
        subresource: None,
        fields: applied.clone(),
    };
    let mine = entries.iter().position(|e| e.same_identity(&me));
    let previous = mine.and_then(|i| entries.get(i)).cloned();

    // Prune what this manager applied last time but not now, unless someone
    // else (or the new configuration, below that path) still owns it.
    if let Some(prev) = &previous {
        let owned = entries
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != mine)
            .fold(applied.clone(), |acc, (_, e)| acc.union(&e.fields));
        let stale = prev.fields.difference(&applied);
        // Parents sort before their children: once an item is gone, skip the
        // paths below it.
        let mut gone: Vec<&FieldPath> = Vec::new();
        for path in stale.iter() {
            if owned.covers_prefix(path)
                || is_key_field_of_kept_item(path)
                || gone.iter().any(|g| path.starts_with(g))
            {
                continue;
            }
            merge::remove_path(&mut merged, path);
            gone.push(path);
        }
    }

    let cmp = walker.compare(&old, &merged);
    let changed = cmp.changed();
    let mut conflicts = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if Some(i) == mine {
            continue;
        }
        for path in e.fields.intersection(&changed).iter() {
            conflicts.push(Conflict {
                manager: e.manager.clone(),
                operation: e.operation,
                api_version: e.api_version.clone(),
                subresource: e.subresource.clone(),
                field: path_string(path),
            });
        }
    }
    if !force && !conflicts.is_empty() {
        conflict::sort(&mut conflicts);
        return Err(ApplyError::Conflicts(conflicts));
    }

    let lost = changed.union(&cmp.removed);
    for (i, e) in entries.iter_mut().enumerate() {
        if Some(i) != mine {
            e.fields = e.fields.difference(&lost);
        }
    }
    let mut me = me;
    if let Some(prev) = previous {
        if prev.fields == me.fields && cmp.is_same() {
            me.time = prev.time; // a no-op apply leaves the entry as it was
        }
    }
    match mine.and_then(|i| entries.get_mut(i)) {
        Some(slot) => *slot = me,
        None => entries.push(me),
    }
    encode_managed_fields(&mut merged, entries);
    Ok(merged)
}

/// Records ownership for a non-apply write (create, update, patch) by `manager`:
/// the fields that changed from `old` to `new` (on create, `old` is `None` and
/// every field counts) move to the manager's `Update` entry for `api_version`
/// and `subresource`; removed fields leave every entry.
///
/// `new`'s own `managedFields` are kept when the client sent some (a deliberate
/// rewrite); otherwise `old`'s are carried over. Sending `[{}]` clears them.
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    schema: &dyn PatchSchema,
    api_version: &str,
    now: &str,
) {
    let ignored = |p: &[PathElement]| is_ignored(p, subresource);
    let walker = Walker {
        schema,
        ignored: &ignored,
    };
    let reset = matches!(
        new.pointer("/metadata/managedFields"),
        Some(Value::Array(a)) if a.len() == 1 && a.first().is_some_and(|e| e.as_object().is_some_and(Map::is_empty))
    );
    let mut entries = if reset {
        Vec::new()
    } else {
        let sent = decode_managed_fields(new);
        if sent.is_empty() {
            old.map(decode_managed_fields).unwrap_or_default()
        } else {
            sent
        }
    };
    let mut before = old.cloned().unwrap_or_else(empty_object);
    strip_managed_fields(&mut before);
    strip_managed_fields(new);

    let cmp = walker.compare(&before, new);
    let changed = cmp.changed();
    let lost = changed.union(&cmp.removed);
    let me = ManagedFieldsEntry {
        manager: manager.into(),
        operation: Operation::Update,
        api_version: api_version.into(),
        time: Some(now.into()),
        subresource: subresource.map(str::to_string),
        fields: changed.clone(),
    };
    let mut found = false;
    for e in &mut entries {
        if e.same_identity(&me) {
            found = true;
            e.fields = e.fields.difference(&cmp.removed).union(&changed);
            if !changed.is_empty() {
                e.time = me.time.clone();
            }
        } else {
            e.fields = e.fields.difference(&lost);
        }
    }
    if !found && !changed.is_empty() {
        entries.push(me);
    }
    encode_managed_fields(new, entries);
}

#[cfg(test)]
mod tests;
