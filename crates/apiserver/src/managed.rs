//! `metadata.managedFields` bookkeeping and server-side apply, delegated to
//! `skiff-patch`.

use serde_json::Value;
use skiff_patch::PatchSchema;

use crate::query::WriteOptions;

/// Record the fields changed by this write under the request's field manager
/// (`operation: Update`), as Kubernetes does for create/update/patch.
pub fn track(
    old: Option<&Value>,
    new: &mut Value,
    opts: &WriteOptions,
    subresource: Option<&str>,
    schema: &dyn PatchSchema,
    api_version: &str,
) {
    let manager = opts.field_manager.as_deref().unwrap_or("unknown");
    let now = crate::object::now_rfc3339();
    skiff_patch::apply::track_update(old, new, manager, subresource, schema, api_version, &now);
}

/// Server-side apply of `config` onto `live` (or a new object).
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    schema: &dyn PatchSchema,
    api_version: &str,
) -> Result<Value, skiff_patch::apply::ApplyError> {
    let now = crate::object::now_rfc3339();
    skiff_patch::apply::apply(live, config, manager, force, schema, api_version, &now)
}
