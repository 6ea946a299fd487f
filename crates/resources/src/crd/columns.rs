//! `kubectl get` tables for custom resources, from `additionalPrinterColumns`.
//!
//! Follows the Kubernetes CRD table convertor: `Name` first, then the declared
//! columns (or just `Age` when none are declared). A column shows the first value
//! its JSONPath selects, converted to the column's type; a value of the wrong type
//! shows as empty, and `date` columns render as an age such as `5m`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::jsonpath::JsonPath;
use crate::{Column, Row};

/// Description of `metadata.creationTimestamp`, shown for the default `Age` column.
const CREATION_TIMESTAMP_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// One declared printer column and its parsed path (`None` when the path does not
/// parse: such a column is always empty).
#[derive(Debug, Clone)]
pub(crate) struct PrinterColumn {
    pub column: Column,
    pub path: Option<JsonPath>,
}

/// The printer columns of one CRD version (`spec.versions[*]`), or the default
/// `Age` column when the version declares none.
pub(crate) fn printer_columns(version: &Value) -> Vec<PrinterColumn> {
    let declared: Vec<PrinterColumn> = version
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .map(|cols| cols.iter().filter_map(declared_column).collect())
        .unwrap_or_default();
    if !declared.is_empty() {
        return declared;
    }
    vec![PrinterColumn {
        column: Column::new("Age", "date", CREATION_TIMESTAMP_DESCRIPTION),
        path: JsonPath::parse(".metadata.creationTimestamp").ok(),
    }]
}

fn declared_column(c: &Value) -> Option<PrinterColumn> {
    let text = |k: &str| {
        c.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let name = text("name");
    if name.is_empty() {
        return None;
    }
    let json_path = text("jsonPath");
    let mut description = text("description");
    if description.is_empty() {
        description =
            format!("Custom resource definition column (in JSONPath format): {json_path}");
    }
    let priority = c
        .get("priority")
        .and_then(Value::as_i64)
        .and_then(|p| i32::try_from(p).ok())
        .unwrap_or(0);
    Some(PrinterColumn {
        column: Column {
            name,
            type_: text("type"),
            format: text("format"),
            description,
            priority,
        },
        path: JsonPath::parse(&json_path).ok(),
    })
}

/// The table header: `Name`, then the printer columns.
pub(crate) fn table_columns(cols: &[PrinterColumn]) -> Vec<Column> {
    std::iter::once(Column::name())
        .chain(cols.iter().map(|c| c.column.clone()))
        .collect()
}

/// The cells of one object.
pub(crate) fn table_row(cols: &[PrinterColumn], obj: &Value, now: DateTime<Utc>) -> Row {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut row = vec![Value::String(name.to_string())];
    for c in cols {
        let first = c.path.as_ref().and_then(|p| p.find(obj).into_iter().next());
        row.push(first.map_or(Value::Null, |v| cell(&c.column.type_, v, now)));
    }
    row
}

fn cell(column_type: &str, v: &Value, now: DateTime<Utc>) -> Value {
    match (column_type, v) {
        (_, Value::Null) => Value::Null,
        ("string", v) => Value::String(text(v)),
        ("integer", Value::Number(n)) => match n.as_i64() {
            Some(i) => Value::from(i),
            None => n
                .as_f64()
                .map_or(Value::Null, |f| Value::from(f.trunc() as i64)),
        },
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, Value::from),
        ("boolean", Value::Bool(b)) => Value::Bool(*b),
        ("date", Value::String(s)) => Value::String(match DateTime::parse_from_rfc3339(s) {
            Ok(t) => crate::human_duration(now.signed_duration_since(t.with_timezone(&Utc))),
            Err(_) => "<invalid>".into(),
        }),
        _ => Value::Null,
    }
}

/// How the JSONPath printer shows a value: strings bare, composites as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if !(n.is_i64() || n.is_u64()) && f.fract() == 0.0 && f.abs() < 1e15 => {
                format!("{}", f as i64)
            }
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-01-01T00:05:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn default_columns_are_name_and_age() {
        let cols = printer_columns(&json!({"name": "v1"}));
        let header = table_columns(&cols);
        assert_eq!(
            header.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            vec!["Name", "Age"]
        );
        assert_eq!(header[0].format, "name");
        assert_eq!(header[1].type_, "date");
        let row = table_row(
            &cols,
            &json!({"metadata": {"name": "w", "creationTimestamp": "2024-01-01T00:00:00Z"}}),
            now(),
        );
        assert_eq!(row, vec![json!("w"), json!("5m")]);
    }

    #[test]
    fn declared_columns_convert_types() {
        let version = json!({"additionalPrinterColumns": [
            {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
            {"name": "Color", "type": "string", "jsonPath": ".spec.color", "description": "the color"},
            {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
            {"name": "Names", "type": "string", "jsonPath": ".spec.list[*].name", "priority": 1},
            {"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio"},
            {"name": "On", "type": "boolean", "jsonPath": ".spec.size"},
            {"name": "Created", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            {"name": "Bad", "type": "date", "jsonPath": ".spec.color"},
            {"name": "Obj", "type": "string", "jsonPath": ".spec.list[0]"},
        ]});
        let cols = printer_columns(&version);
        let header = table_columns(&cols);
        assert_eq!(header.len(), 10);
        assert_eq!(
            header[1].description,
            "Custom resource definition column (in JSONPath format): .spec.size"
        );
        assert_eq!(header[2].description, "the color");
        assert_eq!(header[4].priority, 1);
        let obj = json!({
            "metadata": {"name": "w", "creationTimestamp": "2023-12-31T22:00:00Z"},
            "spec": {"size": 3, "color": "red", "ratio": 2, "list": [{"name": "a"}, {"name": "b"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        });
        assert_eq!(
            table_row(&cols, &obj, now()),
            vec![
                json!("w"),
                json!(3),
                json!("red"),
                json!("True"),
                json!("a"),
                json!(2.0),
                Value::Null,
                json!("125m"),
                json!("<invalid>"),
                json!("{\"name\":\"a\"}"),
            ]
        );
        let empty = table_row(&cols, &json!({}), now());
        assert_eq!(empty[0], json!(""));
        assert!(empty[1..].iter().all(Value::is_null));
    }
}
