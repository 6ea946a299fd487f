//! Query-string parameters of resource requests.

use std::collections::HashMap;

use base64::Engine;
use serde_json::json;
use skiff_store::Revision;

use crate::error::ApiError;
use crate::selectors::{FieldSelector, LabelSelector};

/// Raw query parameters (last value wins, as Go's `url.Values.Get` reads the first;
/// kubectl never repeats list parameters).
#[derive(Debug, Clone, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        let mut map = HashMap::new();
        if let Some(q) = q {
            for (k, v) in form_urlencoded::parse(q.as_bytes()) {
                map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
            }
        }
        Query(map)
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("1") | Some("true") | Some("True"))
    }
    pub fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value for {k}: {v:?} is not an integer"))
            }),
        }
    }
}

/// How to treat fields the schema does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

/// Options shared by create/update/patch.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub field_validation: FieldValidation,
    pub force: bool,
    /// Set for server-side apply, which records its own managedFields entry.
    pub applying: bool,
}

impl WriteOptions {
    pub fn from_query(q: &Query) -> Result<Self, ApiError> {
        let dry_run = match q.get("dryRun") {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "unsupported dry run mode {other:?}; supported values: \"All\""
                )))
            }
        };
        let field_validation = match q.get("fieldValidation") {
            None | Some("") | Some("Warn") => FieldValidation::Warn,
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
            )))
            }
        };
        let field_manager = q
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .map(str::to_string);
        if let Some(m) = &field_manager {
            if m.len() > 128 || m.chars().any(|c| c.is_control()) {
                return Err(ApiError::bad_request(
                    "fieldManager must be at most 128 printable characters",
                ));
            }
        }
        Ok(WriteOptions {
            dry_run,
            field_manager,
            field_validation,
            force: q.flag("force"),
            applying: false,
        })
    }

    pub fn internal(manager: &str) -> Self {
        WriteOptions {
            dry_run: false,
            field_manager: Some(manager.into()),
            field_validation: FieldValidation::Ignore,
            force: false,
            applying: false,
        }
    }
}

/// `resourceVersionMatch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RvMatch {
    NotOlderThan,
    Exact,
}

/// Options of list and watch.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<ContinueToken>,
    /// `resourceVersion` as given (`None` = unset, `Some(0)` = "0").
    pub resource_version: Option<Revision>,
    pub rv_match: Option<RvMatch>,
    pub allow_bookmarks: bool,
    pub send_initial_events: Option<bool>,
    pub timeout_seconds: Option<u64>,
    pub include_object: IncludeObject,
}

/// `includeObject` of Table requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

/// The decoded `continue` parameter: where the previous page stopped, and the
/// revision the whole list is read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinueToken {
    pub revision: Revision,
    pub start_after: String,
}

impl ContinueToken {
    pub fn encode(&self) -> String {
        let raw = json!({"v": "meta.k8s.io/v1", "rv": self.revision.0, "start": self.start_after})
            .to_string();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }
    pub fn decode(s: &str) -> Result<Self, ApiError> {
        let bad = || {
            ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
        };
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|_| bad())?;
        let v: serde_json::Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
        let rv = v
            .get("rv")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(bad)?;
        let start = v
            .get("start")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(bad)?;
        Ok(ContinueToken {
            revision: Revision(rv),
            start_after: start.to_string(),
        })
    }
}

pub fn parse_rv(s: &str) -> Result<Revision, ApiError> {
    s.parse::<u64>()
        .map(Revision)
        .map_err(|_| ApiError::bad_request(format!("invalid resource version {s:?}")))
}

impl ListParams {
    pub fn from_query(q: &Query) -> Result<Self, ApiError> {
        let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))?;
        let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or(""))?;
        let limit = match q.int("limit")? {
            Some(n) if n > 0 => Some(n as usize),
            _ => None,
        };
        let continue_token = match q.get("continue") {
            None | Some("") => None,
            Some(c) => Some(ContinueToken::decode(c)?),
        };
        let resource_version = match q.get("resourceVersion") {
            None | Some("") => None,
            Some(s) => Some(parse_rv(s)?),
        };
        let rv_match = match q.get("resourceVersionMatch") {
            None | Some("") => None,
            Some("NotOlderThan") => Some(RvMatch::NotOlderThan),
            Some("Exact") => Some(RvMatch::Exact),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
                )))
            }
        };
        let send_initial_events = q.get("sendInitialEvents").map(|v| v == "true" || v == "1");
        let timeout_seconds = q.int("timeoutSeconds")?.map(|n| n.max(0) as u64);
        let include_object = match q.get("includeObject") {
            None | Some("") | Some("Metadata") => IncludeObject::Metadata,
            Some("Object") => IncludeObject::Object,
            Some("None") => IncludeObject::None,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "includeObject: unsupported value {other:?}"
                )))
            }
        };
        Ok(ListParams {
            labels,
            fields,
            limit,
            continue_token,
            resource_version,
            rv_match,
            allow_bookmarks: q.flag("allowWatchBookmarks"),
            send_initial_events,
            timeout_seconds,
            include_object,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_round_trip_and_garbage() {
        let t = ContinueToken {
            revision: Revision(42),
            start_after: "/registry/core/pods/a/b".into(),
        };
        assert_eq!(ContinueToken::decode(&t.encode()).unwrap(), t);
        assert!(matches!(
            ContinueToken::decode("!!!"),
            Err(ApiError::BadRequest { .. })
        ));
    }

    #[test]
    fn write_options() {
        let q = Query::parse(Some(
            "fieldManager=kubectl&fieldValidation=Strict&dryRun=All",
        ));
        let o = WriteOptions::from_query(&q).unwrap();
        assert!(o.dry_run);
        assert_eq!(o.field_validation, FieldValidation::Strict);
        assert!(WriteOptions::from_query(&Query::parse(Some("fieldValidation=Loose"))).is_err());
    }
}
