use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{Column, FieldError, Row};

/// Per-kind behaviour plugged into the generic REST handlers.
///
/// Objects are passed as JSON (`serde_json::Value`) because the REST path is shared
/// with CRDs and patches; built-in strategies deserialize into k8s-openapi types
/// where they need structure. Every method must be total: no panics on any input.
pub trait Strategy: Send + Sync {
    /// Canonicalise an incoming object: decode it as this kind's schema and re-encode,
    /// dropping unknown fields (Kubernetes prunes them) and normalising values.
    /// `Err(message)` when a field has the wrong type (the API server answers 400
    /// BadRequest with that message, e.g. `json: cannot unmarshal string into Go struct
    /// field DeploymentSpec.spec.replicas of type int32`).
    fn normalize(&self, obj: serde_json::Value) -> Result<Value, String>;

    /// [`Strategy::normalize`] plus, when `report_unknown`, the
    /// [`Strategy::unknown_fields`] of the same input. Kinds that can do both in
    /// one pass override this.
    fn normalize_checked(
        &self,
        obj: Value,
        report_unknown: bool,
    ) -> Result<(Value, Vec<String>), String> {
        let unknown = if report_unknown {
            self.unknown_fields(&obj)
        } else {
            Vec::new()
        };
        Ok((self.normalize(obj)?, unknown))
    }

    /// Everything a create needs in one call: [`Strategy::normalize_checked`], then
    /// [`Strategy::default_and_validate`] without an old object. Returns the
    /// object, its unknown fields (when `report_unknown`) and validation errors;
    /// `Err` as for `normalize`. Kinds that can do it on one decoded value
    /// override this.
    fn prepare_create(
        &self,
        obj: Value,
        report_unknown: bool,
    ) -> Result<(Value, Vec<String>, Vec<FieldError>), String> {
        let (mut obj, unknown) = self.normalize_checked(obj, report_unknown)?;
        let errors = self.default_and_validate(&mut obj, None);
        Ok((obj, unknown, errors))
    }

    /// [`Strategy::default`] then [`Strategy::validate`] of the defaulted object.
    /// Kinds that can do both on one decoded value override this.
    fn default_and_validate(&self, obj: &mut Value, old: Option<&Value>) -> Vec<FieldError> {
        self.default(obj);
        self.validate(obj, old)
    }

    /// Fill in defaults (as the Kubernetes defaulters do) before validation, on
    /// create and on update. Must be idempotent.
    fn default(&self, _obj: &mut Value) {}

    /// Validate the whole object, including `metadata` (name rules for this kind,
    /// labels, annotations). `old` is `Some` on update (for immutable fields).
    /// Field paths are Kubernetes-style (`spec.template.spec.containers[0].name`).
    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError>;

    /// Paths of fields the schema does not know (for `fieldValidation=Strict|Warn`),
    /// formatted as Kubernetes does: `.spec.foo`, `.spec.containers[0].bar`.
    fn unknown_fields(&self, obj: &Value) -> Vec<String>;

    /// Table columns for `kubectl get` (the first is `Name`).
    fn columns(&self) -> Vec<Column>;

    /// Cells for one object, matching [`Strategy::columns`]. `now` is an input so
    /// ages are testable.
    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Row;

    /// Value of a kind-specific field selector field (`spec.nodeName`, `status.phase`,
    /// `type` for Secrets, `involvedObject.name` for Events ...). `metadata.name` and
    /// `metadata.namespace` are handled generically. `None` = field not supported.
    fn field_value(&self, _obj: &Value, _field: &str) -> Option<String> {
        None
    }
}
