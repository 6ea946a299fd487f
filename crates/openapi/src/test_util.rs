//! Test fixtures: a list of built-in resource definitions standing in for
//! `skiff_resources::builtin_resources()`, and a CRD version.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::autoscaling::v2 as autoscaling;
use k8s_openapi::api::{apps, batch, coordination, core, discovery, networking, node, rbac};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use serde_json::{json, Value};
use skiff_resources::{Column, FieldError, ResourceDef, Row, ScaleSubresource, SchemaFn, Strategy};

use crate::CrdEntry;

struct NoStrategy;

impl Strategy for NoStrategy {
    fn normalize(&self, obj: Value) -> Result<Value, String> {
        Ok(obj)
    }
    fn validate(&self, _obj: &Value, _old: Option<&Value>) -> Vec<FieldError> {
        Vec::new()
    }
    fn unknown_fields(&self, _obj: &Value) -> Vec<String> {
        Vec::new()
    }
    fn columns(&self) -> Vec<Column> {
        Vec::new()
    }
    fn row(&self, _obj: &Value, _now: DateTime<Utc>) -> Row {
        unimplemented!("not used by these tests")
    }
}

const ALL_VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

pub(crate) fn resource(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    schema: Option<SchemaFn>,
) -> ResourceDef {
    ResourceDef {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        short_names: Vec::new(),
        categories: Vec::new(),
        namespaced,
        verbs: ALL_VERBS.iter().map(|v| (*v).to_owned()).collect(),
        has_status: false,
        scale: None,
        extra_subresources: Vec::new(),
        schema,
        strategy: Arc::new(NoStrategy),
    }
}

fn with_status(mut def: ResourceDef) -> ResourceDef {
    def.has_status = true;
    def
}

fn with_scale(mut def: ResourceDef) -> ResourceDef {
    def.scale = Some(ScaleSubresource {
        spec_replicas_path: ".spec.replicas".into(),
        status_replicas_path: ".status.replicas".into(),
        label_selector_path: Some(".status.selector".into()),
    });
    def
}

macro_rules! schema {
    ($t:ty) => {
        Some(|g: &mut schemars::SchemaGenerator| g.subschema_for::<$t>())
    };
}

pub(crate) fn builtins() -> Vec<ResourceDef> {
    vec![
        with_status(resource(
            "",
            "v1",
            "Pod",
            "pods",
            true,
            schema!(core::v1::Pod),
        )),
        with_status(resource(
            "",
            "v1",
            "Service",
            "services",
            true,
            schema!(core::v1::Service),
        )),
        resource(
            "",
            "v1",
            "Endpoints",
            "endpoints",
            true,
            schema!(core::v1::Endpoints),
        ),
        resource(
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            true,
            schema!(core::v1::ConfigMap),
        ),
        resource(
            "",
            "v1",
            "Secret",
            "secrets",
            true,
            schema!(core::v1::Secret),
        ),
        resource(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            true,
            schema!(core::v1::ServiceAccount),
        ),
        resource("", "v1", "Event", "events", true, schema!(core::v1::Event)),
        with_status(resource(
            "",
            "v1",
            "Node",
            "nodes",
            false,
            schema!(core::v1::Node),
        )),
        with_status(resource(
            "",
            "v1",
            "Namespace",
            "namespaces",
            false,
            schema!(core::v1::Namespace),
        )),
        with_status(resource(
            "",
            "v1",
            "ResourceQuota",
            "resourcequotas",
            true,
            schema!(core::v1::ResourceQuota),
        )),
        resource(
            "",
            "v1",
            "LimitRange",
            "limitranges",
            true,
            schema!(core::v1::LimitRange),
        ),
        with_status(resource(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
            schema!(core::v1::PersistentVolumeClaim),
        )),
        with_scale(with_status(resource(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            true,
            schema!(apps::v1::Deployment),
        ))),
        with_scale(with_status(resource(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            true,
            schema!(apps::v1::ReplicaSet),
        ))),
        with_scale(with_status(resource(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            true,
            schema!(apps::v1::StatefulSet),
        ))),
        with_status(resource(
            "apps",
            "v1",
            "DaemonSet",
            "daemonsets",
            true,
            schema!(apps::v1::DaemonSet),
        )),
        resource(
            "apps",
            "v1",
            "ControllerRevision",
            "controllerrevisions",
            true,
            schema!(apps::v1::ControllerRevision),
        ),
        with_status(resource(
            "batch",
            "v1",
            "Job",
            "jobs",
            true,
            schema!(batch::v1::Job),
        )),
        with_status(resource(
            "batch",
            "v1",
            "CronJob",
            "cronjobs",
            true,
            schema!(batch::v1::CronJob),
        )),
        resource(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            true,
            schema!(discovery::v1::EndpointSlice),
        ),
        resource(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            true,
            schema!(coordination::v1::Lease),
        ),
        with_status(resource(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            true,
            schema!(autoscaling::HorizontalPodAutoscaler),
        )),
        with_status(resource(
            "networking.k8s.io",
            "v1",
            "Ingress",
            "ingresses",
            true,
            schema!(networking::v1::Ingress),
        )),
        resource(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
            true,
            schema!(networking::v1::NetworkPolicy),
        ),
        resource(
            "node.k8s.io",
            "v1",
            "RuntimeClass",
            "runtimeclasses",
            false,
            schema!(node::v1::RuntimeClass),
        ),
        resource(
            "rbac.authorization.k8s.io",
            "v1",
            "Role",
            "roles",
            true,
            schema!(rbac::v1::Role),
        ),
        resource(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
            schema!(rbac::v1::ClusterRole),
        ),
        resource(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
            schema!(rbac::v1::RoleBinding),
        ),
        with_status(resource(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            schema!(apiextensions::CustomResourceDefinition),
        )),
    ]
}

/// `example.com/v1` `Widget` with a status subresource and a list-map in its spec.
pub(crate) fn widget() -> CrdEntry {
    CrdEntry {
        resource: with_status(resource(
            "example.com",
            "v1",
            "Widget",
            "widgets",
            true,
            None,
        )),
        schema: json!({
            "type": "object",
            "description": "A widget.",
            "properties": {
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "description": "What the widget should be.",
                    "properties": {
                        "size": {"type": "integer", "description": "How big."},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "parts": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "items": {"type": "object", "properties": {"name": {"type": "string"}, "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}},
                        },
                    },
                },
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            },
        }),
    }
}
