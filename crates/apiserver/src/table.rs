//! `meta.k8s.io/v1` Table and PartialObjectMetadata renderings.

use serde_json::{json, Value};

use crate::query::IncludeObject;
use crate::registry::Resource;

/// The PartialObjectMetadata form of an object.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

pub fn partial_metadata_list(items: &[Value], list_meta: Value) -> Value {
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "items": items.iter().map(partial_metadata).collect::<Vec<_>>(),
    })
}

fn column_defs(res: &Resource) -> Vec<Value> {
    res.def
        .strategy
        .columns()
        .into_iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.type_,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect()
}

fn row(
    res: &Resource,
    obj: &Value,
    include: IncludeObject,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let cells = res.def.strategy.row(obj, now);
    let mut r = json!({ "cells": cells });
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => r["object"] = partial_metadata(obj),
        IncludeObject::Object => r["object"] = obj.clone(),
    }
    r
}

/// A Table of `objs`. `list_meta` is the ListMeta (resourceVersion, continue, ...).
pub fn table(
    res: &Resource,
    objs: &[Value],
    include: IncludeObject,
    list_meta: Value,
    with_columns: bool,
) -> Value {
    let now = chrono::Utc::now();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": if with_columns { column_defs(res) } else { Vec::new() },
        "rows": objs.iter().map(|o| row(res, o, include, now)).collect::<Vec<_>>(),
    })
}
