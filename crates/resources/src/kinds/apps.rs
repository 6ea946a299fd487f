//! apps/v1 kinds.

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};

use crate::tables::apps as t;
use crate::typed::BuiltinKind;
use crate::{Column, Row};

impl BuiltinKind for Deployment {
    schema!();
    fn validate_kind(&self, old: Option<&Self>) -> Vec<crate::FieldError> {
        crate::validation::workloads::deployment(self, old)
    }
    fn apply_defaults(&mut self) {
        crate::defaults::workloads::deployment(self);
    }
    table!(t::deployment_columns, t::deployment_row);
}

impl BuiltinKind for ReplicaSet {
    schema!();
    fn validate_kind(&self, old: Option<&Self>) -> Vec<crate::FieldError> {
        crate::validation::workloads::replica_set(self, old)
    }
    fn apply_defaults(&mut self) {
        crate::defaults::workloads::replica_set(self);
    }
    table!(t::replica_set_columns, t::replica_set_row);
    fn field_value(&self, field: &str) -> Option<String> {
        (field == "status.replicas")
            .then(|| self.status.as_ref().map_or(0, |s| s.replicas).to_string())
    }
}

impl BuiltinKind for StatefulSet {
    schema!();
    fn validate_kind(&self, old: Option<&Self>) -> Vec<crate::FieldError> {
        crate::validation::workloads::stateful_set(self, old)
    }
    fn apply_defaults(&mut self) {
        crate::defaults::workloads::stateful_set(self);
    }
    table!(t::stateful_set_columns, t::stateful_set_row);
}

impl BuiltinKind for DaemonSet {
    schema!();
    fn validate_kind(&self, old: Option<&Self>) -> Vec<crate::FieldError> {
        crate::validation::workloads::daemon_set(self, old)
    }
    fn apply_defaults(&mut self) {
        crate::defaults::workloads::daemon_set(self);
    }
    table!(t::daemon_set_columns, t::daemon_set_row);
}

impl BuiltinKind for ControllerRevision {
    schema!();
    table!(t::controller_revision_columns, t::controller_revision_row);
}
