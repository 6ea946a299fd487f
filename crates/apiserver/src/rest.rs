//! Generic REST semantics over the store: the same code serves every built-in kind
//! and every custom resource. HTTP handlers (`handlers.rs`) and in-process callers
//! (bootstrap, controllers) both go through here, so every write is validated,
//! defaulted and checked for `resourceVersion` conflicts in one place.

use std::sync::Arc;

use bytes::Bytes;
use rand::Rng;
use serde_json::{json, Value};
use skiff_store::{KeyValue, ListOptions, Revision, Store};

use crate::error::{ApiError, ApiResult, Details};
use crate::object::{self, meta_mut};
use crate::openapi::OpenApiDocs;
use crate::query::{ContinueToken, FieldValidation, ListParams, RvMatch, WriteOptions};
use crate::registry::{Registry, Resource};

/// The outcome of a write: the object and any warnings for the `Warning` header.
#[derive(Debug)]
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
    /// For update/patch: true when the object did not exist and was created.
    pub created: bool,
}

/// The outcome of a delete.
#[derive(Debug)]
pub enum Deleted {
    /// Removed from the store; the last state of the object.
    Gone(Value),
    /// Marked for deletion (finalizers or graceful termination pending).
    Pending(Value),
}

/// `DeleteOptions`.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub propagation: Option<Propagation>,
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

impl DeleteOptions {
    /// From a `DeleteOptions` JSON body (may be empty) and the query string.
    pub fn parse(body: Option<&Value>, q: &crate::query::Query) -> ApiResult<Self> {
        let mut o = DeleteOptions::default();
        let get_str = |k: &str| -> Option<String> {
            body.and_then(|b| b.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| q.get(k).map(str::to_string))
        };
        if let Some(p) = get_str("propagationPolicy") {
            o.propagation = Some(match p.as_str() {
                "Orphan" => Propagation::Orphan,
                "Background" => Propagation::Background,
                "Foreground" => Propagation::Foreground,
                other => {
                    return Err(ApiError::Invalid {
                        kind: "DeleteOptions".into(),
                        group: String::new(),
                        name: String::new(),
                        errors: vec![skiff_resources::FieldError::not_supported(
                            "propagationPolicy",
                            json!(other),
                            &["Foreground", "Background", "Orphan"],
                        )],
                    })
                }
            });
        } else if let Some(orphan) = body
            .and_then(|b| b.get("orphanDependents"))
            .and_then(Value::as_bool)
        {
            o.propagation = Some(if orphan {
                Propagation::Orphan
            } else {
                Propagation::Background
            });
        }
        o.grace_period_seconds = body
            .and_then(|b| b.get("gracePeriodSeconds"))
            .and_then(Value::as_i64)
            .or(q.int("gracePeriodSeconds")?);
        if let Some(pre) = body.and_then(|b| b.get("preconditions")) {
            o.precondition_uid = pre.get("uid").and_then(Value::as_str).map(str::to_string);
            o.precondition_rv = pre
                .get("resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        let body_dry = body
            .and_then(|b| b.get("dryRun"))
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
        o.dry_run = body_dry || q.get("dryRun") == Some("All");
        Ok(o)
    }
}

/// What the namespace cache knows of one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NsState {
    Active,
    Terminating,
    Gone,
}

/// Generic REST storage.
pub struct Rest {
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    /// Namespace state by name with the revision it was seen at. Written through
    /// by every namespace write of this process (newer revisions win), filled from
    /// the store on a miss, so creates need no store read for the common case.
    namespaces: std::sync::RwLock<std::collections::HashMap<String, (Revision, NsState)>>,
    openapi: std::sync::RwLock<Option<Arc<OpenApiDocs>>>,
}

const GENERATE_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn generate_suffix() -> String {
    let mut rng = rand::rng();
    (0..5)
        .map(|_| {
            let i = rng.random_range(0..GENERATE_CHARS.len());
            char::from(GENERATE_CHARS.get(i).copied().unwrap_or(b'x'))
        })
        .collect()
}

/// Kinds whose objects carry `metadata.generation` (spec/status kinds and all
/// custom resources).
fn tracks_generation(res: &Resource) -> bool {
    res.def.has_status || res.custom
}

/// Custom resources require `resourceVersion` on update; built-ins allow
/// unconditional updates, as in Kubernetes.
fn allows_unconditional_update(res: &Resource) -> bool {
    !res.custom
}

impl Rest {
    pub fn new(store: Arc<dyn Store>, registry: Arc<Registry>) -> Self {
        Rest {
            store,
            registry,
            namespaces: std::sync::RwLock::new(std::collections::HashMap::new()),
            openapi: std::sync::RwLock::new(None),
        }
    }

    /// The OpenAPI documents for the current registry generation (rebuilt lazily
    /// after CRD changes; the built-in part is reused).
    pub fn openapi(&self) -> Arc<OpenApiDocs> {
        let snap = self.registry.snapshot();
        let previous = self.openapi.read().ok().and_then(|g| g.clone());
        if let Some(docs) = previous
            .as_ref()
            .filter(|d| d.generation == snap.generation)
        {
            return docs.clone();
        }
        let docs = Arc::new(OpenApiDocs::build(
            &snap,
            previous.as_ref().map(|d| d.api()),
        ));
        if let Ok(mut guard) = self.openapi.write() {
            *guard = Some(docs.clone());
        }
        docs
    }

    /// Patch metadata for a kind (strategic merge patch, server-side apply,
    /// managedFields).
    pub fn patch_schema(&self, res: &Resource) -> Arc<dyn skiff_patch::PatchSchema> {
        self.openapi().patch_schema(res)
    }

    /// Decode a stored value for serving at `res`'s version.
    pub fn decode(res: &Resource, kv: &KeyValue) -> ApiResult<Value> {
        let mut v: Value = serde_json::from_slice(&kv.value)
            .map_err(|e| ApiError::internal(format!("corrupt object at {}: {e}", kv.key)))?;
        object::set_meta(
            &mut v,
            "resourceVersion",
            json!(kv.mod_revision.0.to_string()),
        );
        let av = res.def.api_version();
        let typed = v.get("apiVersion").and_then(Value::as_str) == Some(av.as_str())
            && v.get("kind").and_then(Value::as_str) == Some(res.def.kind.as_str());
        if !typed {
            object::set_type_meta(&mut v, &av, &res.def.kind);
        }
        Ok(v)
    }

    /// The stored form: `apiVersion`, `kind`, `metadata` first (the layout
    /// [`crate::raw`] relies on), no `resourceVersion`.
    fn encode(res: &Resource, obj: &Value) -> ApiResult<Bytes> {
        let storage_av = if res.def.group.is_empty() {
            res.storage_version.clone()
        } else {
            format!("{}/{}", res.def.group, res.storage_version)
        };
        let mut out = serde_json::Map::new();
        out.insert("apiVersion".into(), json!(storage_av));
        out.insert("kind".into(), json!(res.def.kind));
        let mut meta = object::meta(obj).cloned().unwrap_or_default();
        meta.remove("resourceVersion");
        out.insert("metadata".into(), Value::Object(meta));
        if let Value::Object(m) = obj {
            for (k, v) in m {
                if !matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        serde_json::to_vec(&out)
            .map(Bytes::from)
            .map_err(|e| ApiError::internal(e.to_string()))
    }

    /// A stored object as served JSON bytes: spliced without parsing when the
    /// stored layout allows, else decoded and re-encoded.
    pub fn raw(res: &Resource, kv: &KeyValue) -> ApiResult<Bytes> {
        if let Some(b) = crate::raw::with_resource_version(
            &kv.value,
            kv.mod_revision.0,
            &res.def.api_version(),
            &res.def.kind,
        ) {
            return Ok(b);
        }
        let v = Self::decode(res, kv)?;
        serde_json::to_vec(&v)
            .map(Bytes::from)
            .map_err(|e| ApiError::internal(e.to_string()))
    }

    fn ns_of<'a>(res: &Resource, namespace: Option<&'a str>) -> Option<&'a str> {
        if res.def.namespaced {
            namespace
        } else {
            None
        }
    }

    /// The stored key-value of one object (404 if absent).
    pub async fn get_kv(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> ApiResult<KeyValue> {
        let key = res.key(Self::ns_of(res, namespace), name);
        self.store
            .get(&key)
            .await?
            .ok_or_else(|| ApiError::not_found(&res.def.group, &res.def.plural, name))
    }

    pub async fn get(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> ApiResult<Value> {
        let key = res.key(Self::ns_of(res, namespace), name);
        match self.store.get(&key).await? {
            Some(kv) => Self::decode(res, &kv),
            None => Err(ApiError::not_found(&res.def.group, &res.def.plural, name)),
        }
    }

    /// List with selectors and pagination. Returns the items, the list's
    /// `resourceVersion`, the `continue` token and `remainingItemCount`.
    pub async fn list(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        p: &ListParams,
    ) -> ApiResult<ListPage> {
        let page = self.list_raw(res, namespace, p).await?;
        let items = page
            .items
            .into_iter()
            .map(|(kv, obj)| match obj {
                Some(o) => Ok(o),
                None => Self::decode(res, &kv),
            })
            .collect::<ApiResult<Vec<Value>>>()?;
        Ok(ListPage {
            items,
            resource_version: page.resource_version,
            continue_token: page.continue_token,
            remaining: page.remaining,
        })
    }

    /// [`Rest::list`] without decoding: the stored key-values, with the decoded
    /// object alongside only where selectors needed it.
    pub async fn list_raw(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        p: &ListParams,
    ) -> ApiResult<RawListPage> {
        let prefix = res.prefix(Self::ns_of(res, namespace));
        let (revision, mut start_after) = match &p.continue_token {
            Some(t) => (Some(t.revision), Some(t.start_after.clone())),
            None => {
                let rv = match (p.resource_version, p.rv_match) {
                    (Some(rv), Some(RvMatch::Exact)) if rv.0 > 0 => Some(rv),
                    (Some(rv), _) if rv.0 > 0 && p.limit.is_some() && p.rv_match.is_none() => {
                        Some(rv)
                    }
                    _ => None,
                };
                (rv, None)
            }
        };
        if let Some(s) = &start_after {
            if !s.starts_with(&prefix) {
                return Err(ApiError::bad_request(
                    "continue key is not valid: it does not belong to this list",
                ));
            }
        }
        let filtered = !p.labels.is_empty() || !p.fields.is_empty();
        let want = p.limit;
        let mut items = Vec::new();
        let mut read_rev: Option<Revision> = revision;
        let mut more = false;
        let mut remaining_reported: Option<u64> = None;
        loop {
            let batch = match want {
                Some(n) if !filtered => Some(n.saturating_sub(items.len()).max(1)),
                Some(n) => Some(n.max(64)),
                None => None,
            };
            let page = self
                .store
                .list(&prefix, ListOptions { revision: read_rev, start_after: start_after.clone(), limit: batch })
                .await
                .map_err(|e| match e {
                    skiff_store::Error::Compacted { .. } if p.continue_token.is_some() => ApiError::Gone {
                        message: "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.".into(),
                    },
                    other => other.into(),
                })?;
            read_rev = Some(page.revision);
            let n = page.items.len();
            for (i, kv) in page.items.iter().enumerate() {
                let obj = if filtered {
                    Some(Self::decode(res, kv)?)
                } else {
                    None
                };
                if obj.as_ref().is_none_or(|o| self.matches(res, o, p)) {
                    items.push((kv.clone(), obj));
                    if want.is_some_and(|w| items.len() >= w) {
                        let rest_in_page = (n - i - 1) as u64;
                        more = rest_in_page > 0 || page.remaining > 0;
                        if !filtered {
                            remaining_reported = Some(rest_in_page + page.remaining);
                        }
                        break;
                    }
                }
            }
            if want.is_some_and(|w| items.len() >= w) || page.remaining == 0 || n == 0 {
                break;
            }
            start_after = page.items.last().map(|kv| kv.key.clone());
        }
        let revision = read_rev.unwrap_or_default();
        let continue_token = if more {
            items.last().map(|(kv, _)| {
                ContinueToken {
                    revision,
                    start_after: kv.key.clone(),
                }
                .encode()
            })
        } else {
            None
        };
        Ok(RawListPage {
            items,
            resource_version: revision,
            continue_token,
            remaining: remaining_reported.filter(|n| *n > 0 && more),
        })
    }

    /// Does `obj` pass the label and field selectors of `p`?
    pub fn matches(&self, res: &Resource, obj: &Value, p: &ListParams) -> bool {
        if !p.labels.matches(object::labels(obj)) {
            return false;
        }
        if p.fields.is_empty() {
            return true;
        }
        p.fields.matches(|f| field_value(res, obj, f))
    }

    /// Reject field selectors on fields this kind does not support.
    pub fn check_field_selector(res: &Resource, p: &ListParams) -> ApiResult<()> {
        let probe = json!({});
        p.fields.check_fields(|f| {
            matches!(f, "metadata.name" | "metadata.namespace")
                || res.def.strategy.field_value(&probe, f).is_some()
        })
    }

    async fn check_namespace(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        name: &str,
        creating: bool,
    ) -> ApiResult<()> {
        if !res.def.namespaced {
            return Ok(());
        }
        let Some(ns) = namespace else {
            return Err(ApiError::bad_request(
                "the server could not find the requested resource: a namespace is required",
            ));
        };
        let cached = self
            .namespaces
            .read()
            .ok()
            .and_then(|m| m.get(ns).map(|(_, st)| *st));
        let state = match cached {
            Some(st @ (NsState::Active | NsState::Terminating)) => st,
            // Unknown here, or deleted: ask the store (it may have been created since).
            _ => {
                let snap = self.registry.snapshot();
                let Some(ns_res) = snap.get("", "v1", "namespaces") else {
                    return Ok(());
                };
                match self.store.get(&ns_res.key(None, ns)).await? {
                    None => NsState::Gone,
                    Some(kv) => {
                        let nsobj = Self::decode(&ns_res, &kv)?;
                        let st = namespace_state(&nsobj);
                        self.note_namespace(ns, kv.mod_revision, st);
                        st
                    }
                }
            }
        };
        if state == NsState::Gone {
            return Err(ApiError::not_found("", "namespaces", ns));
        }
        if creating && state == NsState::Terminating {
            return Err(ApiError::Forbidden {
                message: format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    crate::error::qualified(&res.def.group, &res.def.plural),
                ),
                details: Some(Details {
                    name: name.to_string(),
                    group: res.def.group.clone(),
                    kind: res.def.plural.clone(),
                    uid: None,
                }),
            });
        }
        Ok(())
    }

    /// Free what a deleted object held outside itself (a Service's cluster IP).
    async fn released(&self, res: &Resource, obj: &Value) {
        if res.is_core("services") {
            crate::cluster_ip::release(self.store.as_ref(), obj).await;
        }
    }

    /// Record a namespace's state as of `rev` (older news is ignored).
    fn note_namespace(&self, name: &str, rev: Revision, state: NsState) {
        if let Ok(mut m) = self.namespaces.write() {
            let newer = m.get(name).is_none_or(|(r, _)| *r < rev);
            if newer {
                m.insert(name.to_string(), (rev, state));
            }
        }
    }

    /// After a successful write of `obj` at `rev` (or its deletion), keep the
    /// namespace cache exact for this process's own writes.
    fn wrote(&self, res: &Resource, obj: &Value, rev: Revision, deleted: bool) {
        if res.is_core("namespaces") {
            let st = if deleted {
                NsState::Gone
            } else {
                namespace_state(obj)
            };
            self.note_namespace(object::name(obj), rev, st);
        }
    }

    /// Check `apiVersion`/`kind` of a body against the resource and fill them in.
    fn check_type_meta(res: &Resource, obj: &mut Value) -> ApiResult<()> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(format!(
                "the body of the request must be a {} object",
                res.def.kind
            )));
        }
        let av = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !kind.is_empty() && kind != res.def.kind {
            return Err(ApiError::bad_request(format!(
                "the kind of the object ({kind}) does not match the kind of the resource ({}); did you send it to the wrong URL?",
                res.def.kind
            )));
        }
        if !av.is_empty() && av != res.def.api_version() {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                res.def.api_version()
            )));
        }
        object::set_type_meta(obj, &res.def.api_version(), &res.def.kind);
        Ok(())
    }

    /// Unknown-field handling, then normalisation through the kind's schema.
    fn decode_error(res: &Resource, m: &str) -> ApiError {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {m}",
            res.def.kind, res.def.version, res.def.kind
        ))
    }

    /// Unknown fields: 400 under `Strict`, warnings under `Warn`.
    fn unknown_fields_outcome(
        unknown: Vec<String>,
        fv: FieldValidation,
        warnings: &mut Vec<String>,
    ) -> ApiResult<()> {
        if unknown.is_empty() {
            return Ok(());
        }
        let msgs: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field \"{}\"", f.trim_start_matches('.')))
            .collect();
        if fv == FieldValidation::Strict {
            return Err(ApiError::bad_request(format!(
                "strict decoding error: {}",
                msgs.join(", ")
            )));
        }
        warnings.extend(msgs);
        Ok(())
    }

    pub(crate) fn decode_fields(
        res: &Resource,
        obj: Value,
        fv: FieldValidation,
        warnings: &mut Vec<String>,
    ) -> ApiResult<Value> {
        let (obj, unknown) = res
            .def
            .strategy
            .normalize_checked(obj, fv != FieldValidation::Ignore)
            .map_err(|m| Self::decode_error(res, &m))?;
        Self::unknown_fields_outcome(unknown, fv, warnings)?;
        Ok(obj)
    }

    fn invalid(res: &Resource, name: &str, errors: Vec<skiff_resources::FieldError>) -> ApiError {
        ApiError::Invalid {
            kind: res.def.kind.clone(),
            group: res.def.group.clone(),
            name: name.to_string(),
            errors,
        }
    }

    /// Create an object. `obj` is the decoded request body.
    pub async fn create(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        obj: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let mut warnings = Vec::new();
        let mut obj = obj;
        Self::check_type_meta(res, &mut obj)?;
        // With well-formed identity metadata, decoding happens once, after the
        // system fields are set (`prepare_create`); otherwise decode first so a
        // malformed `metadata` is reported rather than repaired.
        let one_pass = simple_metadata(&obj);
        if !one_pass {
            obj = Self::decode_fields(res, obj, opts.field_validation, &mut warnings)?;
        }
        let namespace = Self::ns_of(res, namespace);
        // Namespace: URL wins; a different one in the body is an error.
        if res.def.namespaced {
            match (object::namespace(&obj), namespace) {
                (Some(b), Some(u)) if b != u => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                _ => {}
            }
            if let Some(ns) = namespace {
                object::set_meta(&mut obj, "namespace", json!(ns));
            }
        } else {
            object::remove_meta(&mut obj, "namespace");
        }
        self.check_namespace(res, namespace, object::name(&obj), true)
            .await?;
        if object::resource_version(&obj).is_some() {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let generate = object::name(&obj).is_empty()
            && object::meta_str(&obj, "generateName").is_some_and(|g| !g.is_empty());
        {
            let m = meta_mut(&mut obj);
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(object::now_rfc3339()));
            for f in [
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
            ] {
                m.remove(f);
            }
            if tracks_generation(res) {
                m.insert("generation".into(), json!(1));
            } else {
                m.remove("generation");
            }
        }
        if res.def.has_status {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        let generated_name = |obj: &Value| {
            let prefix = object::meta_str(obj, "generateName")
                .unwrap_or("")
                .to_string();
            let base: String = prefix.chars().take(58).collect();
            format!("{base}{}", generate_suffix())
        };
        if generate {
            let n = generated_name(&obj);
            object::set_meta(&mut obj, "name", json!(n));
        }
        let errors = if one_pass {
            let (prepared, unknown, errors) = res
                .def
                .strategy
                .prepare_create(obj, opts.field_validation != FieldValidation::Ignore)
                .map_err(|m| Self::decode_error(res, &m))?;
            Self::unknown_fields_outcome(unknown, opts.field_validation, &mut warnings)?;
            obj = prepared;
            errors
        } else {
            res.def.strategy.default_and_validate(&mut obj, None)
        };
        if !errors.is_empty() {
            return Err(Self::invalid(res, object::name(&obj), errors));
        }
        if object::name(&obj).is_empty() {
            return Err(Self::invalid(
                res,
                "",
                vec![skiff_resources::FieldError::required(
                    "metadata.name",
                    "name or generateName is required",
                )],
            ));
        }
        if !opts.applying {
            let schema = self.patch_schema(res);
            crate::managed::track(
                None,
                &mut obj,
                opts,
                None,
                schema.as_ref(),
                &res.def.api_version(),
            );
        }
        for attempt in 0..8 {
            if generate && attempt > 0 {
                // Same prefix and length as the validated name: only the suffix changes.
                let n = generated_name(&obj);
                object::set_meta(&mut obj, "name", json!(n));
            }
            let name = object::name(&obj).to_string();
            if opts.dry_run {
                if self.store.get(&res.key(namespace, &name)).await?.is_some() {
                    return Err(ApiError::already_exists(
                        &res.def.group,
                        &res.def.plural,
                        &name,
                    ));
                }
                return Ok(Written {
                    object: obj,
                    warnings,
                    created: true,
                });
            }
            let fresh_ip = res.is_core("services")
                && crate::cluster_ip::allocate(self.store.as_ref(), &mut obj).await?;
            let bytes = Self::encode(res, &obj)?;
            let result = self.store.create(&res.key(namespace, &name), bytes).await;
            if fresh_ip && result.is_err() {
                crate::cluster_ip::release(self.store.as_ref(), &obj).await;
            }
            match result {
                Ok(rev) => {
                    self.wrote(res, &obj, rev, false);
                    object::set_meta(&mut obj, "resourceVersion", json!(rev.0.to_string()));
                    return Ok(Written {
                        object: obj,
                        warnings,
                        created: true,
                    });
                }
                Err(skiff_store::Error::AlreadyExists { .. }) if generate && attempt < 7 => {
                    continue
                }
                Err(skiff_store::Error::AlreadyExists { .. }) => {
                    return Err(ApiError::already_exists(
                        &res.def.group,
                        &res.def.plural,
                        &name,
                    ))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::internal("could not generate a unique name"))
    }

    /// Replace an object (PUT), on the main resource or a subresource
    /// (`status`, `finalize`).
    pub async fn update(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        name: &str,
        obj: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let namespace = Self::ns_of(res, namespace);
        let key = res.key(namespace, name);
        let Some(kv) = self.store.get(&key).await? else {
            return Err(ApiError::not_found(&res.def.group, &res.def.plural, name));
        };
        let old = Self::decode(res, &kv)?;
        let mut warnings = Vec::new();
        let mut obj = obj;
        Self::check_type_meta(res, &mut obj)?;
        let body_name = object::name(&obj).to_string();
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        match object::resource_version(&obj) {
            Some(rv) if rv != kv.mod_revision.0.to_string() => {
                return Err(ApiError::conflict(&res.def.group, &res.def.plural, name))
            }
            None if !allows_unconditional_update(res) => {
                return Err(Self::invalid(
                    res,
                    name,
                    vec![skiff_resources::FieldError::new(
                        skiff_resources::ErrorType::Invalid,
                        "metadata.resourceVersion",
                        None,
                        // Go prints the unset uint64 as `0x0`, unquoted.
                        "0x0: must be specified for an update",
                    )],
                ));
            }
            _ => {}
        }
        let obj = Self::decode_fields(res, obj, opts.field_validation, &mut warnings)?;
        let written = self
            .write_update(res, namespace, name, &kv, old, obj, subresource, opts)
            .await?;
        Ok(Written {
            warnings,
            ..written
        })
    }

    /// The shared tail of update and patch: carry over system fields, separate
    /// status from spec, default, validate, bump generation, CAS-write.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn write_update(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        name: &str,
        kv: &KeyValue,
        old: Value,
        new: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        if let (Some(u), Some(o)) = (object::uid(&new), object::uid(&old)) {
            if u != o {
                return Err(ApiError::Conflict {
                    message: format!(
                        "Precondition failed: UID in precondition: {u}, UID in object meta: {o}"
                    ),
                    details: None,
                });
            }
        }
        let mut new = match subresource {
            Some("status") => {
                let mut merged = old.clone();
                if let (Some(m), Some(status)) = (merged.as_object_mut(), new.get("status")) {
                    m.insert("status".into(), status.clone());
                }
                merged
            }
            Some("finalize") => {
                // Only `spec.finalizers` of a Namespace changes through /finalize.
                let mut merged = old.clone();
                let fins = new
                    .pointer("/spec/finalizers")
                    .cloned()
                    .unwrap_or(json!([]));
                if let Some(spec) = merged.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.insert("finalizers".into(), fins);
                } else if let Some(m) = merged.as_object_mut() {
                    m.insert("spec".into(), json!({"finalizers": fins}));
                }
                merged
            }
            _ => {
                let mut n = new;
                if res.def.has_status {
                    if let Some(m) = n.as_object_mut() {
                        match old.get("status") {
                            Some(s) => m.insert("status".into(), s.clone()),
                            None => m.remove("status"),
                        };
                    }
                }
                n
            }
        };
        {
            let om = object::meta(&old).cloned().unwrap_or_default();
            let m = meta_mut(&mut new);
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
            ] {
                match om.get(f) {
                    Some(v) => m.insert(f.to_string(), v.clone()),
                    None => m.remove(f),
                };
            }
            m.insert(
                "resourceVersion".into(),
                json!(kv.mod_revision.0.to_string()),
            );
        }
        let is_namespace = res.is_core("namespaces");
        if is_namespace && subresource.is_none() {
            // A namespace's spec.finalizers change only through /finalize.
            match (
                old.pointer("/spec/finalizers"),
                new.get_mut("spec").and_then(Value::as_object_mut),
            ) {
                (Some(f), Some(spec)) => {
                    spec.insert("finalizers".into(), f.clone());
                }
                (None, Some(spec)) => {
                    spec.remove("finalizers");
                }
                _ => {}
            }
        }
        if res.is_core("services") {
            crate::cluster_ip::keep_on_update(&old, &mut new);
        }
        // /finalize may empty spec.finalizers, which defaulting would refill.
        let errors = if subresource == Some("finalize") {
            res.def.strategy.validate(&new, Some(&old))
        } else {
            res.def.strategy.default_and_validate(&mut new, Some(&old))
        };
        if !errors.is_empty() {
            return Err(Self::invalid(res, name, errors));
        }
        if tracks_generation(res) && object::spec_part(&new) != object::spec_part(&old) {
            let g = object::meta(&old)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            object::set_meta(&mut new, "generation", json!(g + 1));
        }
        // A deleting object may only lose finalizers, never gain new ones.
        if object::deletion_timestamp(&old).is_some() {
            let old_f = object::finalizers(&old);
            let added: Vec<String> = object::finalizers(&new)
                .into_iter()
                .filter(|f| !old_f.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(Self::invalid(
                    res,
                    name,
                    vec![skiff_resources::FieldError::forbidden(
                        "metadata.finalizers",
                        format!("no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"),
                    )],
                ));
            }
        }
        if !opts.applying {
            let schema = self.patch_schema(res);
            crate::managed::track(
                Some(&old),
                &mut new,
                opts,
                subresource,
                schema.as_ref(),
                &res.def.api_version(),
            );
        }
        if managed_equal(&new, &old) {
            // No-op: Kubernetes does not write (and does not bump resourceVersion).
            return Ok(Written {
                object: old,
                warnings: Vec::new(),
                created: false,
            });
        }
        if opts.dry_run {
            return Ok(Written {
                object: new,
                warnings: Vec::new(),
                created: false,
            });
        }
        let key = res.key(namespace, name);
        if finalizable_now(res, &new) {
            let (rev, _) = self
                .store
                .delete(&key, Some(kv.mod_revision))
                .await
                .map_err(|e| map_cas(e, res, name))?;
            self.wrote(res, &new, rev, true);
            self.released(res, &new).await;
            object::set_meta(&mut new, "resourceVersion", json!(rev.0.to_string()));
            return Ok(Written {
                object: new,
                warnings: Vec::new(),
                created: false,
            });
        }
        let bytes = Self::encode(res, &new)?;
        let rev = self
            .store
            .update(&key, bytes, kv.mod_revision)
            .await
            .map_err(|e| map_cas(e, res, name))?;
        self.wrote(res, &new, rev, false);
        object::set_meta(&mut new, "resourceVersion", json!(rev.0.to_string()));
        Ok(Written {
            object: new,
            warnings: Vec::new(),
            created: false,
        })
    }

    /// Delete one object, honouring preconditions, finalizers, propagation policy
    /// and (for scheduled pods) graceful termination.
    pub async fn delete(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        let namespace = Self::ns_of(res, namespace);
        let key = res.key(namespace, name);
        for _ in 0..16 {
            let Some(kv) = self.store.get(&key).await? else {
                return Err(ApiError::not_found(&res.def.group, &res.def.plural, name));
            };
            let cur = Self::decode(res, &kv)?;
            if let Some(uid) = &opts.precondition_uid {
                if object::uid(&cur) != Some(uid.as_str()) {
                    return Err(ApiError::Conflict {
                        message: format!(
                            "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                            crate::error::qualified(&res.def.group, &res.def.plural),
                            object::uid(&cur).unwrap_or("")
                        ),
                        details: None,
                    });
                }
            }
            if let Some(rv) = &opts.precondition_rv {
                if object::resource_version(&cur) != Some(rv.as_str()) {
                    return Err(ApiError::Conflict {
                        message: format!(
                            "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                            crate::error::qualified(&res.def.group, &res.def.plural),
                            object::resource_version(&cur).unwrap_or("")
                        ),
                        details: None,
                    });
                }
            }
            let mut next = cur.clone();
            let mut fins = object::finalizers(&cur);
            match opts.propagation {
                Some(Propagation::Orphan) if !fins.iter().any(|f| f == "orphan") => {
                    fins.push("orphan".into())
                }
                Some(Propagation::Foreground)
                    if !fins.iter().any(|f| f == "foregroundDeletion") =>
                {
                    fins.push("foregroundDeletion".into())
                }
                _ => {}
            }
            let is_namespace = res.is_core("namespaces");
            let graceful = graceful_seconds(res, &cur, opts.grace_period_seconds);
            let pending = !fins.is_empty() || is_namespace || graceful.is_some();
            if !pending {
                if opts.dry_run {
                    return Ok(Deleted::Gone(cur));
                }
                match self.store.delete(&key, Some(kv.mod_revision)).await {
                    Ok((rev, _)) => {
                        self.wrote(res, &cur, rev, true);
                        self.released(res, &cur).await;
                        let mut gone = cur;
                        object::set_meta(&mut gone, "resourceVersion", json!(rev.0.to_string()));
                        return Ok(Deleted::Gone(gone));
                    }
                    Err(skiff_store::Error::Conflict { .. }) => continue,
                    Err(skiff_store::Error::NotFound { .. }) => {
                        return Err(ApiError::not_found(&res.def.group, &res.def.plural, name))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if object::deletion_timestamp(&cur).is_none() {
                let secs = graceful.unwrap_or(0);
                let when = chrono::Utc::now() + chrono::Duration::seconds(secs);
                object::set_meta(
                    &mut next,
                    "deletionTimestamp",
                    json!(when.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
                );
                object::set_meta(&mut next, "deletionGracePeriodSeconds", json!(secs));
            }
            object::set_finalizers(&mut next, fins);
            if is_namespace {
                if let Some(m) = next.as_object_mut() {
                    let status = m.entry("status").or_insert_with(|| json!({}));
                    if let Some(s) = status.as_object_mut() {
                        s.insert("phase".into(), json!("Terminating"));
                    }
                }
            }
            if next == cur {
                return Ok(Deleted::Pending(cur));
            }
            if opts.dry_run {
                return Ok(Deleted::Pending(next));
            }
            let bytes = Self::encode(res, &next)?;
            match self.store.update(&key, bytes, kv.mod_revision).await {
                Ok(rev) => {
                    self.wrote(res, &next, rev, false);
                    object::set_meta(&mut next, "resourceVersion", json!(rev.0.to_string()));
                    return Ok(Deleted::Pending(next));
                }
                Err(skiff_store::Error::Conflict { .. }) => continue,
                Err(skiff_store::Error::NotFound { .. }) => {
                    return Err(ApiError::not_found(&res.def.group, &res.def.plural, name))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict(&res.def.group, &res.def.plural, name))
    }

    /// Delete every object matching `p` (deletecollection).
    pub async fn delete_collection(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        p: &ListParams,
        opts: &DeleteOptions,
    ) -> ApiResult<Vec<Value>> {
        let page = self
            .list(
                res,
                namespace,
                &ListParams {
                    limit: None,
                    continue_token: None,
                    ..p.clone()
                },
            )
            .await?;
        let mut out = Vec::new();
        for obj in page.items {
            let ns = object::namespace(&obj).map(str::to_string);
            match self
                .delete(res, ns.as_deref(), object::name(&obj), opts)
                .await
            {
                Ok(Deleted::Gone(o)) | Ok(Deleted::Pending(o)) => out.push(o),
                Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// One page of a list, undecoded.
#[derive(Debug)]
pub struct RawListPage {
    pub items: Vec<(KeyValue, Option<Value>)>,
    pub resource_version: Revision,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

/// One page of a list.
#[derive(Debug)]
pub struct ListPage {
    pub items: Vec<Value>,
    pub resource_version: Revision,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

fn map_cas(e: skiff_store::Error, res: &Resource, name: &str) -> ApiError {
    match e {
        skiff_store::Error::Conflict { .. } => {
            ApiError::conflict(&res.def.group, &res.def.plural, name)
        }
        skiff_store::Error::NotFound { .. } => {
            ApiError::not_found(&res.def.group, &res.def.plural, name)
        }
        other => other.into(),
    }
}

/// Equal apart from `managedFields` timestamps: such an update is a no-op.
fn managed_equal(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(entries) = v
            .pointer_mut("/metadata/managedFields")
            .and_then(Value::as_array_mut)
        {
            for e in entries.iter_mut() {
                if let Some(m) = e.as_object_mut() {
                    m.remove("time");
                }
            }
        }
        v
    };
    strip(a) == strip(b)
}

/// `metadata` is an object whose identity fields, where present, are strings:
/// the API server may then set its system fields before the kind decodes it.
fn simple_metadata(obj: &Value) -> bool {
    match obj.get("metadata") {
        None => true,
        Some(Value::Object(m)) => [
            "name",
            "generateName",
            "namespace",
            "resourceVersion",
            "uid",
        ]
        .iter()
        .all(|f| m.get(*f).is_none_or(Value::is_string)),
        Some(_) => false,
    }
}

fn namespace_state(ns: &Value) -> NsState {
    let terminating = object::deletion_timestamp(ns).is_some()
        || ns.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating");
    if terminating {
        NsState::Terminating
    } else {
        NsState::Active
    }
}

/// An object marked for deletion whose last finalizer is gone is deleted by the
/// update that removed it.
fn finalizable_now(res: &Resource, obj: &Value) -> bool {
    if object::deletion_timestamp(obj).is_none() || !object::finalizers(obj).is_empty() {
        return false;
    }
    if res.is_core("namespaces") {
        let spec_fins = obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .map(|a| a.len())
            .unwrap_or(0);
        return spec_fins == 0;
    }
    if res.is_core("pods") {
        // Graceful pod deletion ends with the node's delete (grace 0), not here.
        return object::meta(obj)
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
            == 0;
    }
    true
}

/// Pods bound to a node and still running get graceful termination: the node
/// agent finishes the delete once the containers have stopped.
fn graceful_seconds(res: &Resource, pod: &Value, requested: Option<i64>) -> Option<i64> {
    if !res.is_core("pods") {
        return None;
    }
    let bound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !bound || matches!(phase, "Succeeded" | "Failed") {
        return None;
    }
    let secs = requested
        .or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30);
    if secs <= 0 {
        None
    } else {
        Some(secs)
    }
}

/// The value of a field-selector field on an object.
pub fn field_value(res: &Resource, obj: &Value, field: &str) -> Option<String> {
    match field {
        "metadata.name" => Some(object::name(obj).to_string()),
        "metadata.namespace" => Some(object::namespace(obj).unwrap_or("").to_string()),
        other => res.def.strategy.field_value(obj, other),
    }
}
