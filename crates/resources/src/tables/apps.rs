//! Tables of apps/v1 kinds.

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use serde_json::Value;

use super::{
    age_cell, col, containers_cols, int, int_col, name_cell, selector_cell, template_cells, text,
    NONE,
};
use crate::{Column, Row};

fn selector_col() -> Column {
    col("Selector", "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.").wide()
}

pub(crate) fn deployment_columns() -> Vec<Column> {
    let mut cols = vec![
        Column::name(),
        col("Ready", "Number of the pod with ready state"),
        int_col("Up-to-date", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
        int_col("Available", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
        Column::age(),
    ];
    cols.extend(containers_cols());
    cols.push(selector_col());
    cols
}

pub(crate) fn deployment_row(d: &Deployment, now: DateTime<Utc>) -> Row {
    let spec = d.spec.clone().unwrap_or_default();
    let status = d.status.clone().unwrap_or_default();
    let (containers, images) = template_cells(Some(&spec.template));
    vec![
        name_cell(&d.metadata),
        text(format!(
            "{}/{}",
            status.ready_replicas.unwrap_or(0),
            spec.replicas.unwrap_or(1)
        )),
        int(status.updated_replicas),
        int(status.available_replicas),
        age_cell(&d.metadata, now),
        containers,
        images,
        text(selector_cell(Some(&spec.selector))),
    ]
}

pub(crate) fn replica_set_columns() -> Vec<Column> {
    let mut cols = vec![
        Column::name(),
        int_col("Desired", "Replicas is the number of desired replicas."),
        int_col(
            "Current",
            "Replicas is the most recently observed number of replicas.",
        ),
        int_col(
            "Ready",
            "The number of ready replicas for this replica set.",
        ),
        Column::age(),
    ];
    cols.extend(containers_cols());
    cols.push(selector_col());
    cols
}

pub(crate) fn replica_set_row(rs: &ReplicaSet, now: DateTime<Utc>) -> Row {
    let spec = rs.spec.clone().unwrap_or_default();
    let status = rs.status.clone().unwrap_or_default();
    let (containers, images) = template_cells(spec.template.as_ref());
    vec![
        name_cell(&rs.metadata),
        Value::from(spec.replicas.unwrap_or(1)),
        Value::from(status.replicas),
        int(status.ready_replicas),
        age_cell(&rs.metadata, now),
        containers,
        images,
        text(selector_cell(Some(&spec.selector))),
    ]
}

pub(crate) fn stateful_set_columns() -> Vec<Column> {
    let mut cols = vec![
        Column::name(),
        col("Ready", "Number of the pod with ready state"),
        Column::age(),
    ];
    cols.extend(containers_cols());
    cols
}

pub(crate) fn stateful_set_row(s: &StatefulSet, now: DateTime<Utc>) -> Row {
    let spec = s.spec.clone().unwrap_or_default();
    let status = s.status.clone().unwrap_or_default();
    let (containers, images) = template_cells(Some(&spec.template));
    vec![
        name_cell(&s.metadata),
        text(format!(
            "{}/{}",
            status.ready_replicas.unwrap_or(0),
            spec.replicas.unwrap_or(1)
        )),
        age_cell(&s.metadata, now),
        containers,
        images,
    ]
}

pub(crate) fn daemon_set_columns() -> Vec<Column> {
    let mut cols = vec![
        Column::name(),
        int_col("Desired", "The total number of nodes that should be running the daemon pod."),
        int_col("Current", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
        int_col("Ready", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
        int_col("Up-to-date", "The total number of nodes that are running updated daemon pod"),
        int_col("Available", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available."),
        col("Node Selector", "NodeSelector is a selector which must be true for the pod to fit on a node."),
        Column::age(),
    ];
    cols.extend(containers_cols());
    cols.push(selector_col());
    cols
}

pub(crate) fn daemon_set_row(ds: &DaemonSet, now: DateTime<Utc>) -> Row {
    let spec = ds.spec.clone().unwrap_or_default();
    let status = ds.status.clone().unwrap_or_default();
    let (containers, images) = template_cells(Some(&spec.template));
    let node_selector = super::map_selector(
        spec.template
            .spec
            .as_ref()
            .and_then(|s| s.node_selector.as_ref()),
    );
    vec![
        name_cell(&ds.metadata),
        Value::from(status.desired_number_scheduled),
        Value::from(status.current_number_scheduled),
        Value::from(status.number_ready),
        int(status.updated_number_scheduled),
        int(status.number_available),
        text(node_selector),
        age_cell(&ds.metadata, now),
        containers,
        images,
        text(selector_cell(Some(&spec.selector))),
    ]
}

pub(crate) fn controller_revision_columns() -> Vec<Column> {
    vec![
        Column::name(),
        col("Controller", "Controller of the object"),
        int_col(
            "Revision",
            "Revision indicates the revision of the state represented by Data.",
        ),
        Column::age(),
    ]
}

pub(crate) fn controller_revision_row(cr: &ControllerRevision, now: DateTime<Utc>) -> Row {
    let controller = cr
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| {
            let group = o.api_version.split_once('/').map_or("", |(g, _)| g);
            let kind = if group.is_empty() {
                o.kind.to_lowercase()
            } else {
                format!("{}.{group}", o.kind.to_lowercase())
            };
            format!("{kind}/{}", o.name)
        })
        .unwrap_or_else(|| NONE.into());
    vec![
        name_cell(&cr.metadata),
        text(controller),
        Value::from(cr.revision),
        age_cell(&cr.metadata, now),
    ]
}
