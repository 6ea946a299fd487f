//! Kinds outside core, apps and batch.

use chrono::{DateTime, Utc};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use crate::tables::other as t;
use crate::typed::BuiltinKind;
use crate::validation::meta::NameRule;
use crate::{Column, Row};

impl BuiltinKind for EndpointSlice {
    schema!();
    fn validate_kind(&self, old: Option<&Self>) -> Vec<crate::FieldError> {
        crate::validation::other::endpoint_slice(self, old)
    }
    fn apply_defaults(&mut self) {
        crate::defaults::core::endpoint_slice(self);
    }
    table!(t::endpoint_slice_columns, t::endpoint_slice_row);
}

impl BuiltinKind for Lease {
    schema!();
    table!(t::lease_columns, t::lease_row);
}

impl BuiltinKind for HorizontalPodAutoscaler {
    schema!();
    fn validate_kind(&self, old: Option<&Self>) -> Vec<crate::FieldError> {
        crate::validation::workloads::hpa(self, old)
    }
    fn apply_defaults(&mut self) {
        crate::defaults::workloads::hpa(self);
    }
    table!(t::hpa_columns, t::hpa_row);
}

impl BuiltinKind for NetworkPolicy {
    schema!();
    fn validate_kind(&self, _old: Option<&Self>) -> Vec<crate::FieldError> {
        crate::validation::other::network_policy(self)
    }
    fn apply_defaults(&mut self) {
        crate::defaults::core::network_policy(self);
    }
    table!(t::network_policy_columns, t::network_policy_row);
}

impl BuiltinKind for Ingress {
    schema!();
    fn validate_kind(&self, _old: Option<&Self>) -> Vec<crate::FieldError> {
        crate::validation::other::ingress(self)
    }
    table!(t::ingress_columns, t::ingress_row);
}

impl BuiltinKind for RuntimeClass {
    schema!();
    fn validate_kind(&self, old: Option<&Self>) -> Vec<crate::FieldError> {
        crate::validation::other::runtime_class(self, old)
    }
    table!(t::runtime_class_columns, t::runtime_class_row);
}

impl BuiltinKind for Role {
    const NAME_RULE: NameRule = NameRule::PathSegment;
    schema!();
    fn columns() -> Vec<Column> {
        t::created_at_columns()
    }
    fn row(&self, _now: DateTime<Utc>) -> Row {
        t::created_at_row(&self.metadata)
    }
}

impl BuiltinKind for ClusterRole {
    const NAME_RULE: NameRule = NameRule::PathSegment;
    schema!();
    fn columns() -> Vec<Column> {
        t::created_at_columns()
    }
    fn row(&self, _now: DateTime<Utc>) -> Row {
        t::created_at_row(&self.metadata)
    }
}

impl BuiltinKind for RoleBinding {
    const NAME_RULE: NameRule = NameRule::PathSegment;
    schema!();
    fn validate_kind(&self, old: Option<&Self>) -> Vec<crate::FieldError> {
        crate::validation::other::binding(
            &self.role_ref,
            self.subjects.as_ref(),
            old.map(|o| &o.role_ref),
            false,
        )
    }
    table!(t::binding_columns, t::role_binding_row);
}

impl BuiltinKind for ClusterRoleBinding {
    const NAME_RULE: NameRule = NameRule::PathSegment;
    schema!();
    fn validate_kind(&self, old: Option<&Self>) -> Vec<crate::FieldError> {
        crate::validation::other::binding(
            &self.role_ref,
            self.subjects.as_ref(),
            old.map(|o| &o.role_ref),
            true,
        )
    }
    table!(t::binding_columns, t::cluster_role_binding_row);
}

impl BuiltinKind for CustomResourceDefinition {
    schema!();
    fn validate_kind(&self, old: Option<&Self>) -> Vec<crate::FieldError> {
        crate::validation::crd::crd(self, old)
    }
    fn apply_defaults(&mut self) {
        crate::defaults::core::crd(self);
    }
    fn columns() -> Vec<Column> {
        t::created_at_columns()
    }
    fn row(&self, _now: DateTime<Utc>) -> Row {
        t::crd_row(self)
    }
}
