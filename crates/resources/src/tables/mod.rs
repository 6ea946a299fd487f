//! Table columns and cells for `kubectl get`, following the upstream printers.
//!
//! Cells are JSON values: strings for text, numbers for counts, as kubectl expects
//! from a server-side `Table`.

mod age;
pub(crate) mod apps;
pub(crate) mod batch;
pub(crate) mod core;
pub(crate) mod other;
pub(crate) mod pod;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use serde_json::Value;

pub use age::human_duration;

use crate::Column;

pub(crate) const NONE: &str = "<none>";

pub(crate) fn text(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

pub(crate) fn name_cell(meta: &ObjectMeta) -> Value {
    text(meta.name.clone().unwrap_or_default())
}

pub(crate) fn age_cell(meta: &ObjectMeta, now: DateTime<Utc>) -> Value {
    text(since(meta.creation_timestamp.as_ref(), now))
}

/// A k8s-openapi timestamp as a chrono time (`None` if out of chrono's range).
pub(crate) fn chrono_of(t: &k8s_openapi::jiff::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(
        t.as_second(),
        u32::try_from(t.subsec_nanosecond()).unwrap_or(0),
    )
}

/// `translateTimestampSince`: the age of a timestamp, `<unknown>` when missing.
pub(crate) fn since(t: Option<&Time>, now: DateTime<Utc>) -> String {
    match t.and_then(|t| chrono_of(&t.0)) {
        Some(t) => human_duration(now.signed_duration_since(t)),
        None => "<unknown>".into(),
    }
}

/// A column of `type: string`.
pub(crate) fn col(name: &str, description: &str) -> Column {
    Column::new(name, "string", description)
}

/// A column of `type: integer`.
pub(crate) fn int_col(name: &str, description: &str) -> Column {
    Column::new(name, "integer", description)
}

/// The `Created At` column of kinds without a status (roles, CRDs ...).
pub(crate) fn created_at_col() -> Column {
    Column::new("Created At", "date", "CreationTimestamp is a timestamp representing the server time when this object was created.")
}

/// `Created At` cell: RFC 3339 timestamp, as upstream prints it.
pub(crate) fn created_at_cell(meta: &ObjectMeta) -> Value {
    match meta
        .creation_timestamp
        .as_ref()
        .and_then(|t| chrono_of(&t.0))
    {
        Some(t) => text(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        None => Value::Null,
    }
}

/// `key=value,...` for a plain label map, `<none>` when empty.
pub(crate) fn map_selector(labels: Option<&BTreeMap<String, String>>) -> String {
    match labels {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        _ => NONE.into(),
    }
}

/// A label selector in the string form kubectl shows, `<none>` when it selects nothing
/// in particular.
pub(crate) fn selector_cell(sel: Option<&LabelSelector>) -> String {
    let s = sel
        .map(crate::selector::label_selector_string)
        .unwrap_or_default();
    if s.is_empty() {
        NONE.into()
    } else {
        s
    }
}

/// The wide `Containers` and `Images` cells of a workload's pod template.
pub(crate) fn template_cells(template: Option<&PodTemplateSpec>) -> (Value, Value) {
    let containers = template
        .and_then(|t| t.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let images: Vec<&str> = containers
        .iter()
        .map(|c| c.image.as_deref().unwrap_or_default())
        .collect();
    (text(names.join(",")), text(images.join(",")))
}

pub(crate) fn containers_cols() -> [Column; 2] {
    [
        col("Containers", "Names of each container in the template.").wide(),
        col(
            "Images",
            "Images referenced by each container in the template.",
        )
        .wide(),
    ]
}

pub(crate) fn count(n: usize) -> Value {
    Value::from(n)
}

pub(crate) fn int(n: Option<i32>) -> Value {
    Value::from(n.unwrap_or(0))
}

#[cfg(test)]
mod tests;
