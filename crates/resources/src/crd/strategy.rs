//! [`CrdStrategy`]: the [`Strategy`] of one served CRD version.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use super::columns::{printer_columns, table_columns, table_row, PrinterColumn};
use super::default::apply_defaults;
use super::prune::prune;
use super::schema::Schema;
use super::validate::validate_value;
use crate::validation::meta::{validate_object_meta, NameRule};
use crate::{Column, FieldError, Row, Strategy};

/// Pruning, defaulting, validation and table printing for one CRD version, all
/// driven by that version's `schema.openAPIV3Schema` and
/// `additionalPrinterColumns`.
///
/// A version without a schema (not allowed in `apiextensions.k8s.io/v1`, but
/// possible in old stored CRDs) keeps and accepts every field.
#[derive(Debug, Clone)]
pub struct CrdStrategy {
    schema: Schema,
    columns: Vec<PrinterColumn>,
}

impl CrdStrategy {
    /// Build the strategy from one entry of `spec.versions`.
    pub fn from_version(version: &Value) -> CrdStrategy {
        let schema = match version.pointer("/schema/openAPIV3Schema") {
            Some(s) => Schema::parse(s),
            None => Schema {
                preserve_unknown_fields: true,
                ..Schema::default()
            },
        };
        CrdStrategy {
            schema,
            columns: printer_columns(version),
        }
    }
}

impl Strategy for CrdStrategy {
    fn normalize(&self, mut obj: Value) -> Result<Value, String> {
        if !obj.is_object() {
            return Err("the request body must be a JSON object".into());
        }
        prune(&mut obj, &self.schema);
        Ok(obj)
    }

    fn default(&self, obj: &mut Value) {
        apply_defaults(obj, &self.schema);
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<FieldError> {
        let mut errs = match obj.get("metadata") {
            None => vec![FieldError::required(
                "metadata.name",
                "name or generateName is required",
            )],
            Some(meta) => match serde_json::from_value::<ObjectMeta>(meta.clone()) {
                Ok(meta) => validate_object_meta(&meta, NameRule::Subdomain),
                Err(e) => vec![FieldError::invalid(
                    "metadata",
                    Value::Null,
                    format!("cannot decode metadata: {e}"),
                )],
            },
        };
        errs.extend(validate_value(obj, &self.schema, ""));
        errs
    }

    fn unknown_fields(&self, obj: &Value) -> Vec<String> {
        let mut copy = obj.clone();
        prune(&mut copy, &self.schema)
    }

    fn columns(&self) -> Vec<Column> {
        table_columns(&self.columns)
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Row {
        table_row(&self.columns, obj, now)
    }
}
