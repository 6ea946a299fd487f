//! core/v1 kinds.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, LimitRange, Namespace, Node, PersistentVolumeClaim, Pod,
    ResourceQuota, Secret, Service, ServiceAccount,
};

use crate::tables::{core as t, pod as pt};
use crate::typed::BuiltinKind;
use crate::validation::meta::NameRule;
use crate::{Column, Row};

fn nonempty(s: Option<&String>) -> String {
    s.cloned().unwrap_or_default()
}

impl BuiltinKind for Namespace {
    const NAME_RULE: NameRule = NameRule::Label;
    schema!();
    fn apply_defaults(&mut self) {
        crate::defaults::core::namespace(self);
    }
    table!(t::namespace_columns, t::namespace_row);
    fn field_value(&self, field: &str) -> Option<String> {
        match field {
            "status.phase" => Some(nonempty(
                self.status.as_ref().and_then(|s| s.phase.as_ref()),
            )),
            _ => None,
        }
    }
}

impl BuiltinKind for Pod {
    schema!();
    fn validate_kind(&self, old: Option<&Self>) -> Vec<crate::FieldError> {
        crate::validation::pod::pod(self, old)
    }
    fn apply_defaults(&mut self) {
        if let Some(spec) = self.spec.as_mut() {
            crate::defaults::pod::bare_pod_spec(spec);
        }
        crate::defaults::pod::pod_status(self);
    }
    table!(pt::columns, pt::row);
    fn field_value(&self, field: &str) -> Option<String> {
        let spec = self.spec.as_ref();
        let status = self.status.as_ref();
        Some(match field {
            "spec.nodeName" => nonempty(spec.and_then(|s| s.node_name.as_ref())),
            "spec.restartPolicy" => nonempty(spec.and_then(|s| s.restart_policy.as_ref())),
            "spec.schedulerName" => nonempty(spec.and_then(|s| s.scheduler_name.as_ref())),
            "spec.serviceAccountName" => {
                nonempty(spec.and_then(|s| s.service_account_name.as_ref()))
            }
            "spec.hostNetwork" => spec
                .and_then(|s| s.host_network)
                .unwrap_or(false)
                .to_string(),
            "status.phase" => nonempty(status.and_then(|s| s.phase.as_ref())),
            "status.podIP" => nonempty(status.and_then(|s| s.pod_ip.as_ref())),
            "status.nominatedNodeName" => {
                nonempty(status.and_then(|s| s.nominated_node_name.as_ref()))
            }
            _ => return None,
        })
    }
}

impl BuiltinKind for Service {
    const NAME_RULE: NameRule = NameRule::Rfc1035Label;
    schema!();
    fn validate_kind(&self, old: Option<&Self>) -> Vec<crate::FieldError> {
        crate::validation::service::service(self, old)
    }
    fn apply_defaults(&mut self) {
        crate::defaults::core::service(self);
    }
    fn field_value(&self, field: &str) -> Option<String> {
        let spec = self.spec.as_ref();
        Some(match field {
            "spec.clusterIP" => nonempty(spec.and_then(|s| s.cluster_ip.as_ref())),
            "spec.type" => nonempty(spec.and_then(|s| s.type_.as_ref())),
            _ => return None,
        })
    }
    table!(t::service_columns, t::service_row);
}

impl BuiltinKind for Endpoints {
    schema!();
    fn apply_defaults(&mut self) {
        crate::defaults::core::endpoints(self);
    }
    table!(t::endpoints_columns, t::endpoints_row);
}

impl BuiltinKind for ConfigMap {
    schema!();
    fn validate_kind(&self, old: Option<&Self>) -> Vec<crate::FieldError> {
        crate::validation::config::config_map(self, old)
    }
    table!(t::configmap_columns, t::configmap_row);
}

impl BuiltinKind for Secret {
    schema!();
    fn validate_kind(&self, old: Option<&Self>) -> Vec<crate::FieldError> {
        crate::validation::config::secret(self, old)
    }
    fn apply_defaults(&mut self) {
        crate::defaults::core::secret(self);
    }
    table!(t::secret_columns, t::secret_row);
    fn field_value(&self, field: &str) -> Option<String> {
        (field == "type").then(|| nonempty(self.type_.as_ref()))
    }
}

impl BuiltinKind for ServiceAccount {
    schema!();
    table!(t::service_account_columns, t::service_account_row);
}

impl BuiltinKind for Event {
    schema!();
    table!(t::event_columns, t::event_row);
    fn field_value(&self, field: &str) -> Option<String> {
        let o = &self.involved_object;
        Some(match field {
            "involvedObject.kind" => nonempty(o.kind.as_ref()),
            "involvedObject.namespace" => nonempty(o.namespace.as_ref()),
            "involvedObject.name" => nonempty(o.name.as_ref()),
            "involvedObject.uid" => nonempty(o.uid.as_ref()),
            "involvedObject.apiVersion" => nonempty(o.api_version.as_ref()),
            "involvedObject.resourceVersion" => nonempty(o.resource_version.as_ref()),
            "involvedObject.fieldPath" => nonempty(o.field_path.as_ref()),
            "reason" => nonempty(self.reason.as_ref()),
            "reportingComponent" => nonempty(self.reporting_component.as_ref()),
            "source" => nonempty(self.source.as_ref().and_then(|s| s.component.as_ref())),
            "type" => nonempty(self.type_.as_ref()),
            _ => return None,
        })
    }
}

impl BuiltinKind for Node {
    schema!();
    table!(t::node_columns, t::node_row);
    fn field_value(&self, field: &str) -> Option<String> {
        (field == "spec.unschedulable").then(|| {
            self.spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false)
                .to_string()
        })
    }
}

impl BuiltinKind for ResourceQuota {
    schema!();
    fn validate_kind(&self, _old: Option<&Self>) -> Vec<crate::FieldError> {
        crate::validation::other::quota(self)
    }
    table!(t::quota_columns, t::quota_row);
}

impl BuiltinKind for LimitRange {
    schema!();
    table!(t::limit_range_columns, t::limit_range_row);
}

impl BuiltinKind for PersistentVolumeClaim {
    schema!();
    fn validate_kind(&self, old: Option<&Self>) -> Vec<crate::FieldError> {
        crate::validation::other::pvc(self, old)
    }
    fn apply_defaults(&mut self) {
        crate::defaults::core::pvc(self);
    }
    table!(t::pvc_columns, t::pvc_row);
}
