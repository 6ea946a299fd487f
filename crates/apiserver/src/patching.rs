//! PATCH: JSON patch, merge patch, strategic merge patch and server-side apply,
//! all ending in the same update path as PUT.

use std::sync::Arc;

use serde_json::{json, Value};
use skiff_patch::PatchSchema;

use crate::error::{ApiError, ApiResult, Cause, Details};
use crate::object;
use crate::query::WriteOptions;
use crate::registry::Resource;
use crate::rest::{Rest, Written};

/// The patch flavour, from the request's Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_media(media: &str) -> ApiResult<Self> {
        match media {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
            other => Err(ApiError::UnsupportedMediaType {
                message: format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"
                ),
            }),
        }
    }
}

fn patch_error(e: skiff_patch::Error) -> ApiError {
    match e {
        skiff_patch::Error::InvalidPatch(m) => ApiError::bad_request(m),
        #[allow(unreachable_patterns)]
        other => ApiError::Invalid {
            kind: String::new(),
            group: String::new(),
            name: String::new(),
            errors: vec![skiff_resources::FieldError::invalid(
                "patch",
                json!(null),
                other.to_string(),
            )],
        },
    }
}

impl Rest {
    /// Apply a patch to an object, retrying on write conflicts unless the patch
    /// itself pins a `resourceVersion`.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        name: &str,
        ptype: PatchType,
        patch: &Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
        schema: Arc<dyn PatchSchema>,
    ) -> ApiResult<Written> {
        let ns = if res.def.namespaced { namespace } else { None };
        if ptype == PatchType::Strategic && res.custom {
            return Err(ApiError::UnsupportedMediaType {
                message: "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".to_string(),
            });
        }
        if ptype == PatchType::Apply && opts.field_manager.is_none() {
            return Err(ApiError::Invalid {
                kind: "PatchOptions".into(),
                group: "meta.k8s.io".into(),
                name: String::new(),
                errors: vec![skiff_resources::FieldError::required(
                    "fieldManager",
                    "is required for apply patch",
                )],
            });
        }
        let pins_rv = patch
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .is_some();
        let mut opts = opts.clone();
        opts.applying = ptype == PatchType::Apply;
        for _ in 0..5 {
            let key = res.key(ns, name);
            let current = self.store.get(&key).await?;
            let Some(kv) = current else {
                if ptype == PatchType::Apply && subresource.is_none() {
                    return self
                        .apply_create(res, ns, name, patch, &opts, schema.as_ref())
                        .await;
                }
                return Err(ApiError::not_found(&res.def.group, &res.def.plural, name));
            };
            let old = Rest::decode(res, &kv)?;
            let patched = match ptype {
                PatchType::Json => skiff_patch::json_patch(&old, patch).map_err(patch_error)?,
                PatchType::Merge => skiff_patch::merge_patch(&old, patch).map_err(patch_error)?,
                PatchType::Strategic => {
                    skiff_patch::strategic_merge_patch(&old, patch, schema.as_ref())
                        .map_err(patch_error)?
                }
                PatchType::Apply => {
                    let config = check_apply_config(res, name, patch)?;
                    crate::managed::apply(
                        Some(&old),
                        &config,
                        opts.field_manager.as_deref().unwrap_or(""),
                        opts.force,
                        schema.as_ref(),
                        &res.def.api_version(),
                    )
                    .map_err(|e| apply_error(res, name, e))?
                }
            };
            if let Some(rv) = object::resource_version(&patched) {
                if rv != kv.mod_revision.0.to_string() {
                    return Err(ApiError::conflict(&res.def.group, &res.def.plural, name));
                }
            }
            let mut warnings = Vec::new();
            let mut patched = patched;
            object::set_type_meta(&mut patched, &res.def.api_version(), &res.def.kind);
            if object::name(&patched) != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    object::name(&patched)
                )));
            }
            let patched = Rest::decode_fields(res, patched, opts.field_validation, &mut warnings)?;
            match self
                .write_update(res, ns, name, &kv, old, patched, subresource, &opts)
                .await
            {
                Ok(w) => return Ok(Written { warnings, ..w }),
                Err(ApiError::Conflict { .. }) if !pins_rv => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::conflict(&res.def.group, &res.def.plural, name))
    }

    async fn apply_create(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        patch: &Value,
        opts: &WriteOptions,
        schema: &dyn PatchSchema,
    ) -> ApiResult<Written> {
        let config = check_apply_config(res, name, patch)?;
        let created = crate::managed::apply(
            None,
            &config,
            opts.field_manager.as_deref().unwrap_or(""),
            opts.force,
            schema,
            &res.def.api_version(),
        )
        .map_err(|e| apply_error(res, name, e))?;
        self.create(res, ns, created, opts).await
    }
}

fn check_apply_config(res: &Resource, name: &str, patch: &Value) -> ApiResult<Value> {
    if !patch.is_object() {
        return Err(ApiError::bad_request("apply patch must be an object"));
    }
    let av = patch
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = patch.get("kind").and_then(Value::as_str).unwrap_or("");
    if av.is_empty() || kind.is_empty() {
        return Err(ApiError::bad_request(
            "invalid object type: apply patches must set apiVersion and kind",
        ));
    }
    if kind != res.def.kind || av != res.def.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version and kind in the data ({av}, Kind={kind}) do not match the resource ({}, Kind={})",
            res.def.api_version(),
            res.def.kind
        )));
    }
    let pname = object::name(patch);
    if !pname.is_empty() && pname != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({pname}) does not match the name on the URL ({name})"
        )));
    }
    let mut config = patch.clone();
    object::set_meta(&mut config, "name", json!(name));
    Ok(config)
}

fn apply_error(res: &Resource, name: &str, e: skiff_patch::apply::ApplyError) -> ApiError {
    match &e {
        skiff_patch::apply::ApplyError::Conflicts(_) => ApiError::ApplyConflict {
            message: e.message(),
            details: Details {
                name: name.into(),
                group: res.def.group.clone(),
                kind: res.def.plural.clone(),
                uid: None,
            },
            causes: e
                .causes()
                .into_iter()
                .map(|c| Cause {
                    reason: c.reason.to_string(),
                    message: c.message,
                    field: c.field,
                })
                .collect(),
        },
        skiff_patch::apply::ApplyError::Invalid(m) => ApiError::bad_request(m.clone()),
    }
}
