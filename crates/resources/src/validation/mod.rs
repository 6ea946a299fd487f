//! Validation of built-in kinds: field paths and messages follow upstream
//! (`pkg/apis/*/validation`) so that `kubectl` shows familiar errors.

pub(crate) mod config;
pub(crate) mod crd;
pub(crate) mod cron;
pub(crate) mod meta;
pub(crate) mod names;
pub(crate) mod other;
pub(crate) mod pod;
pub(crate) mod quantity;
pub(crate) mod service;
pub(crate) mod workloads;

use serde::Serialize;
use serde_json::Value;

use crate::FieldError;

/// `IsValidPortNum`'s message.
pub(crate) const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";

/// `ValidateNonnegativeField`.
pub(crate) fn non_negative(errs: &mut Vec<FieldError>, path: &str, v: Option<impl Into<i64>>) {
    if let Some(v) = v.map(Into::into) {
        if v < 0 {
            errs.push(FieldError::invalid(
                path,
                Value::from(v),
                "must be greater than or equal to 0",
            ));
        }
    }
}

/// Ports 1..=65535.
pub(crate) fn port_number(errs: &mut Vec<FieldError>, path: &str, port: i32) {
    if !(1..=65535).contains(&port) {
        errs.push(FieldError::invalid(path, Value::from(port), PORT_RANGE));
    }
}

/// An enum field: `NotSupported` listing the allowed values (already sorted as
/// upstream lists them).
pub(crate) fn one_of(errs: &mut Vec<FieldError>, path: &str, v: Option<&str>, allowed: &[&str]) {
    if let Some(v) = v {
        if !allowed.contains(&v) {
            errs.push(FieldError::not_supported(
                path,
                Value::String(v.into()),
                allowed,
            ));
        }
    }
}

/// A JSON rendering of a typed value for error messages.
pub(crate) fn json_of<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// `field is immutable` on `path` when `new != old`.
pub(crate) fn immutable<T: Serialize + PartialEq>(
    errs: &mut Vec<FieldError>,
    path: &str,
    new: &T,
    old: &T,
) {
    if new != old {
        errs.push(FieldError::invalid(
            path,
            json_of(new),
            "field is immutable",
        ));
    }
}

#[cfg(test)]
mod tests;
