//! The generic [`Strategy`] for built-in kinds: one implementation, parameterised by
//! the k8s-openapi type, with per-kind hooks in [`BuiltinKind`].

use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::validation::meta::{validate_object_meta, NameRule};
use crate::{normalize, unknown_fields, Column, FieldError, Row, Strategy};

/// Per-kind knowledge of a built-in kind. Every hook has a neutral default, so a
/// kind only writes what differs.
pub(crate) trait BuiltinKind:
    k8s_openapi::Resource
    + k8s_openapi::Metadata<Ty = ObjectMeta>
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// How `metadata.name` is validated.
    const NAME_RULE: NameRule = NameRule::Subdomain;

    /// The OpenAPI schema of the kind.
    fn schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema;

    /// Upstream defaulters. Must be idempotent.
    fn apply_defaults(&mut self) {}

    /// Kind-specific validation (metadata is validated generically before this).
    fn validate_kind(&self, _old: Option<&Self>) -> Vec<FieldError> {
        Vec::new()
    }

    /// Table columns; the default is `Name`, `Age`.
    fn columns() -> Vec<Column> {
        vec![Column::name(), Column::age()]
    }

    /// Cells matching [`BuiltinKind::columns`].
    fn row(&self, now: DateTime<Utc>) -> Row {
        let meta = self.metadata();
        vec![
            crate::tables::name_cell(meta),
            crate::tables::age_cell(meta, now),
        ]
    }

    /// Kind-specific field selector fields.
    fn field_value(&self, _field: &str) -> Option<String> {
        None
    }
}

/// [`Strategy`] for the built-in kind `K`.
pub(crate) struct TypedStrategy<K> {
    schema: normalize::SchemaCache,
    kind: PhantomData<fn() -> K>,
}

impl<K> TypedStrategy<K> {
    pub(crate) fn new() -> Self {
        TypedStrategy {
            schema: normalize::SchemaCache::new(),
            kind: PhantomData,
        }
    }
}

impl<K: BuiltinKind> TypedStrategy<K> {
    fn decode(&self, obj: Value) -> Result<K, String> {
        normalize::decode::<K>(obj, K::KIND, K::schema, &self.schema)
    }

    /// Checks `apiVersion`/`kind` when present (k8s-openapi would otherwise reject a
    /// mismatch with a serde message) and fills them in when absent.
    fn check_type_meta(obj: &mut Value) -> Result<(), String> {
        let Some(map) = obj.as_object_mut() else {
            return Ok(());
        };
        match map.get("apiVersion") {
            Some(Value::String(v)) if v != K::API_VERSION => {
                return Err(format!(
                "the API version in the data ({v}) does not match the expected API version ({})",
                K::API_VERSION
            ))
            }
            Some(Value::String(_)) | Some(Value::Null) | None => {}
            Some(_) => return Err(
                "json: cannot unmarshal non-string into Go struct field .apiVersion of type string"
                    .into(),
            ),
        }
        match map.get("kind") {
            Some(Value::String(k)) if !k.is_empty() && k != K::KIND => {
                return Err(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    K::KIND
                ))
            }
            Some(Value::String(_)) | Some(Value::Null) | None => {}
            Some(_) => {
                return Err(
                    "json: cannot unmarshal non-string into Go struct field .kind of type string"
                        .into(),
                )
            }
        }
        map.insert("apiVersion".into(), Value::String(K::API_VERSION.into()));
        map.insert("kind".into(), Value::String(K::KIND.into()));
        Ok(())
    }

    fn round_trip(&self, mut obj: Value) -> Result<Value, String> {
        Self::check_type_meta(&mut obj)?;
        let typed = self.decode(obj)?;
        serde_json::to_value(&typed).map_err(|e| format!("json: {e}"))
    }
}

impl<K: BuiltinKind> Strategy for TypedStrategy<K> {
    fn normalize(&self, obj: Value) -> Result<Value, String> {
        self.round_trip(obj)
    }

    fn normalize_checked(
        &self,
        obj: Value,
        report_unknown: bool,
    ) -> Result<(Value, Vec<String>), String> {
        if !report_unknown {
            return Ok((self.round_trip(obj)?, Vec::new()));
        }
        // One decode serves both: what survives the round trip is the
        // normalized object, what does not is unknown.
        let mut input = obj;
        normalize::strip_nulls(&mut input);
        let known = self.round_trip(input.clone())?;
        let unknown = unknown_fields::diff(&input, &known);
        Ok((known, unknown))
    }

    fn default(&self, obj: &mut Value) {
        // The server normalizes first, so decoding cannot fail here; if it somehow
        // does, leaving the object untouched lets validation report the problem.
        let Ok(mut typed) = self.decode(obj.clone()) else {
            return;
        };
        typed.apply_defaults();
        if let Ok(v) = serde_json::to_value(&typed) {
            *obj = v;
        }
    }

    fn prepare_create(
        &self,
        obj: Value,
        report_unknown: bool,
    ) -> Result<(Value, Vec<String>, Vec<FieldError>), String> {
        let mut input = obj;
        normalize::strip_nulls(&mut input);
        Self::check_type_meta(&mut input)?;
        let mut typed = self.decode(input.clone())?;
        typed.apply_defaults();
        let out = serde_json::to_value(&typed).map_err(|e| format!("json: {e}"))?;
        // Defaults only add fields, so what the input has and the defaulted
        // output lacks is exactly what the schema does not know.
        let unknown = if report_unknown {
            unknown_fields::diff(&input, &out)
        } else {
            Vec::new()
        };
        let mut errs = validate_object_meta(typed.metadata(), K::NAME_RULE);
        errs.extend(typed.validate_kind(None));
        Ok((out, unknown, errs))
    }

    fn default_and_validate(&self, obj: &mut Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut typed = match self.decode(obj.clone()) {
            Ok(t) => t,
            Err(e) => return vec![FieldError::invalid("", Value::Null, e)],
        };
        typed.apply_defaults();
        if let Ok(v) = serde_json::to_value(&typed) {
            *obj = v;
        }
        let old = old.and_then(|o| self.decode(o.clone()).ok());
        let mut errs = validate_object_meta(typed.metadata(), K::NAME_RULE);
        errs.extend(typed.validate_kind(old.as_ref()));
        errs
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let typed = match self.decode(obj.clone()) {
            Ok(t) => t,
            Err(e) => return vec![FieldError::invalid("", Value::Null, e)],
        };
        let old = old.and_then(|o| self.decode(o.clone()).ok());
        let mut errs = validate_object_meta(typed.metadata(), K::NAME_RULE);
        errs.extend(typed.validate_kind(old.as_ref()));
        errs
    }

    fn unknown_fields(&self, obj: &Value) -> Vec<String> {
        let mut input = obj.clone();
        normalize::strip_nulls(&mut input);
        match self.round_trip(input.clone()) {
            Ok(known) => unknown_fields::diff(&input, &known),
            Err(_) => Vec::new(),
        }
    }

    fn columns(&self) -> Vec<Column> {
        K::columns()
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Row {
        match self.decode(obj.clone()) {
            Ok(typed) => typed.row(now),
            Err(_) => {
                // Stored objects always decode; an undecodable one still gets a row of
                // the right width so one bad object cannot break a whole listing.
                let name = obj
                    .pointer("/metadata/name")
                    .cloned()
                    .unwrap_or(Value::String(String::new()));
                let mut row = vec![name];
                row.resize(K::columns().len(), Value::String("<unknown>".into()));
                row
            }
        }
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        // Stored objects decode as they are; only odd input needs the
        // normalizing (copying) decode.
        match K::deserialize(obj) {
            Ok(k) => k.field_value(field),
            Err(_) => self.decode(obj.clone()).ok()?.field_value(field),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use crate::builtin_resources;

    /// The one-pass create preparation agrees with the step-by-step calls.
    #[test]
    fn prepare_create_matches_the_separate_steps() {
        let defs = builtin_resources();
        for (plural, obj) in [
            (
                "pods",
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "bogus": 1},
                "spec": {"containers": [{"name": "c", "image": "nginx", "extra": true}]}}),
            ),
            (
                "deployments",
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                "spec": {"replicas": -1, "selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "c"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}}),
            ),
            (
                "configmaps",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}, "data": {"a": "1"}}),
            ),
        ] {
            let d = defs.iter().find(|d| d.plural == plural).unwrap();
            let (one, unknown_one, errors_one) =
                d.strategy.prepare_create(obj.clone(), true).unwrap();
            let (mut two, unknown_two) = d.strategy.normalize_checked(obj, true).unwrap();
            let errors_two = d.strategy.default_and_validate(&mut two, None);
            assert_eq!(one, two, "{plural}");
            assert_eq!(unknown_one, unknown_two, "{plural}");
            assert_eq!(errors_one, errors_two, "{plural}");
        }
    }

    /// Every strategy method must be total: no panic on any JSON input.
    #[test]
    fn every_method_is_total_on_hostile_input() {
        let inputs = [
            json!(null),
            json!(1),
            json!("s"),
            json!([]),
            json!({"metadata": []}),
            json!({"metadata": {"name": 5, "labels": [1]}}),
            json!({"metadata": {"creationTimestamp": "yesterday"}}),
            json!({"spec": {"containers": "x", "replicas": 1e300}}),
            json!({"spec": {"replicas": 99_999_999_999_999_i64, "template": {"spec": {"containers": [[]]}}}}),
            json!({"spec": {"ports": [{"port": -1, "targetPort": "x".repeat(100)}], "selector": "a=b"}}),
            json!({"status": {"phase": {}}, "data": {"a": 1}, "type": 7}),
            json!({"kind": 3, "apiVersion": []}),
            json!({"spec": {"schedule": "* * * * * * * *", "timeZone": "/", "jobTemplate": []}}),
        ];
        let now = Utc::now();
        for def in builtin_resources() {
            let s = &def.strategy;
            for input in &inputs {
                let _ = s.unknown_fields(input);
                let _ = s.validate(input, Some(input));
                let _ = s.row(input, now);
                let _ = s.field_value(input, "status.phase");
                let mut v = input.clone();
                s.default(&mut v);
                if let Ok(mut n) = s.normalize(input.clone()) {
                    s.default(&mut n);
                    let _ = s.validate(&n, Some(&n));
                    assert_eq!(s.row(&n, now).len(), s.columns().len(), "{}", def.plural);
                }
            }
        }
    }
}
