//! Bodies built with prost-generated Kubernetes types (k8s-pb), independently of
//! our decoder, compared with the JSON a Go client would send for the same object.

use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::authorization::v1 as authz;
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{json, Value};

fn body(api_version: &str, kind: &str, object: &impl Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.to_owned()),
            kind: Some(kind.to_owned()),
        }),
        raw: Some(object.encode_to_vec()),
        // Go always writes these two, empty.
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = b"k8s\0".to_vec();
    unknown.encode(&mut out).expect("a Vec grows as needed");
    out
}

fn decode(api_version: &str, kind: &str, object: &impl Message) -> Value {
    skiff_protobuf::decode(&body(api_version, kind, object)).expect("decodes")
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

fn meta_named(name: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta {
        name: s(name),
        ..Default::default()
    })
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn quantity(v: &str) -> Quantity {
    Quantity { string: s(v) }
}

fn int_port(port: i32) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(0),
        int_val: Some(port),
        str_val: None,
    })
}

#[test]
fn namespace_like_kubectl_create_namespace() {
    let ns = core::Namespace {
        metadata: meta_named("x"),
        spec: Some(core::NamespaceSpec::default()),
        status: Some(core::NamespaceStatus::default()),
    };
    assert_eq!(
        decode("v1", "Namespace", &ns),
        json!({
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {"name": "x", "creationTimestamp": null},
            "spec": {},
            "status": {}
        })
    );
    // Absent non-pointer structs still appear, as Go writes them.
    let bare = core::Namespace {
        metadata: meta_named("x"),
        ..Default::default()
    };
    assert_eq!(
        decode("v1", "Namespace", &bare),
        decode("v1", "Namespace", &ns)
    );
}

#[test]
fn configmap_with_data_and_binary_data() {
    let cm = core::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            name: s("x"),
            namespace: s("default"),
            ..Default::default()
        }),
        data: labels(&[("a", "1"), ("b", "")]),
        binary_data: [("bin".to_owned(), vec![0u8, 1, 2, 255])].into(),
        immutable: Some(false),
    };
    assert_eq!(
        decode("v1", "ConfigMap", &cm),
        json!({
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {"name": "x", "namespace": "default", "creationTimestamp": null},
            "immutable": false,
            "data": {"a": "1", "b": ""},
            "binaryData": {"bin": "AAEC/w=="}
        })
    );
}

#[test]
fn secret_bytes_are_base64() {
    let secret = core::Secret {
        metadata: meta_named("creds"),
        data: [
            ("password".to_owned(), b"s3cr3t".to_vec()),
            ("empty".to_owned(), Vec::new()),
        ]
        .into(),
        r#type: s("Opaque"),
        ..Default::default()
    };
    assert_eq!(
        decode("v1", "Secret", &secret),
        json!({
            "kind": "Secret",
            "apiVersion": "v1",
            "metadata": {"name": "creds", "creationTimestamp": null},
            "data": {"password": "czNjcjN0", "empty": ""},
            "type": "Opaque"
        })
    );
}

#[test]
fn deployment_with_zero_replicas_probes_and_resources() {
    let container = core::Container {
        name: s("nginx"),
        image: s("nginx:1.27"),
        command: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
        ports: vec![core::ContainerPort {
            container_port: Some(80),
            protocol: s("TCP"),
            ..Default::default()
        }],
        env: vec![
            core::EnvVar {
                name: s("MODE"),
                value: s("prod"),
                value_from: None,
            },
            core::EnvVar {
                name: s("POD"),
                value: None,
                value_from: Some(core::EnvVarSource {
                    field_ref: Some(core::ObjectFieldSelector {
                        api_version: s("v1"),
                        field_path: s("metadata.name"),
                    }),
                    ..Default::default()
                }),
            },
        ],
        resources: Some(core::ResourceRequirements {
            limits: [("cpu".to_owned(), quantity("500m"))].into(),
            requests: [("memory".to_owned(), quantity("64Mi"))].into(),
            claims: vec![],
        }),
        readiness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    path: s("/healthz"),
                    port: int_port(8080),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            period_seconds: Some(5),
            initial_delay_seconds: Some(0),
            ..Default::default()
        }),
        security_context: Some(core::SecurityContext::default()),
        image_pull_policy: s("IfNotPresent"),
        ..Default::default()
    };
    let deployment = apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: s("web"),
            labels: labels(&[("app", "web")]),
            ..Default::default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: labels(&[("app", "web")]),
                match_expressions: vec![],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: labels(&[("app", "web")]),
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy::default()),
            revision_history_limit: Some(10),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus::default()),
    };
    assert_eq!(
        decode("apps/v1", "Deployment", &deployment),
        json!({
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {"name": "web", "creationTimestamp": null, "labels": {"app": "web"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "nginx",
                            "image": "nginx:1.27",
                            "command": ["nginx", "-g", "daemon off;"],
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [
                                {"name": "MODE", "value": "prod"},
                                {"name": "POD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}
                            ],
                            "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}},
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": 8080},
                                "periodSeconds": 5
                            },
                            "imagePullPolicy": "IfNotPresent",
                            "securityContext": {}
                        }]
                    }
                },
                "strategy": {},
                "revisionHistoryLimit": 10
            },
            "status": {}
        })
    );
}

#[test]
fn service_target_port_int_and_string() {
    let service = core::Service {
        metadata: meta_named("web"),
        spec: Some(core::ServiceSpec {
            ports: vec![
                core::ServicePort {
                    name: s("http"),
                    protocol: s("TCP"),
                    port: Some(80),
                    target_port: int_port(8080),
                    ..Default::default()
                },
                core::ServicePort {
                    name: s("metrics"),
                    port: Some(9090),
                    target_port: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: s("metrics"),
                    }),
                    ..Default::default()
                },
            ],
            selector: labels(&[("app", "web")]),
            r#type: s("ClusterIP"),
            ..Default::default()
        }),
        status: None,
    };
    assert_eq!(
        decode("v1", "Service", &service),
        json!({
            "kind": "Service",
            "apiVersion": "v1",
            "metadata": {"name": "web", "creationTimestamp": null},
            "spec": {
                "ports": [
                    {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                    {"name": "metrics", "port": 9090, "targetPort": "metrics"}
                ],
                "selector": {"app": "web"},
                "type": "ClusterIP"
            },
            "status": {"loadBalancer": {}}
        })
    );
}

fn job_template() -> core::PodTemplateSpec {
    core::PodTemplateSpec {
        metadata: Some(meta::ObjectMeta::default()),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: s("pi"),
                image: s("perl"),
                ..Default::default()
            }],
            restart_policy: s("Never"),
            ..Default::default()
        }),
    }
}

fn job_template_json() -> Value {
    json!({
        "metadata": {"creationTimestamp": null},
        "spec": {
            "containers": [{"name": "pi", "image": "perl", "resources": {}}],
            "restartPolicy": "Never"
        }
    })
}

#[test]
fn job_and_cronjob() {
    let job = batch::Job {
        metadata: meta_named("pi"),
        spec: Some(batch::JobSpec {
            template: Some(job_template()),
            backoff_limit: Some(0),
            suspend: Some(false),
            ..Default::default()
        }),
        status: None,
    };
    assert_eq!(
        decode("batch/v1", "Job", &job),
        json!({
            "kind": "Job",
            "apiVersion": "batch/v1",
            "metadata": {"name": "pi", "creationTimestamp": null},
            "spec": {"backoffLimit": 0, "template": job_template_json(), "suspend": false},
            "status": {}
        })
    );

    let cronjob = batch::CronJob {
        metadata: meta_named("nightly"),
        spec: Some(batch::CronJobSpec {
            schedule: s("0 3 * * *"),
            job_template: Some(batch::JobTemplateSpec {
                metadata: Some(meta::ObjectMeta::default()),
                spec: Some(batch::JobSpec {
                    template: Some(job_template()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    assert_eq!(
        decode("batch/v1", "CronJob", &cronjob),
        json!({
            "kind": "CronJob",
            "apiVersion": "batch/v1",
            "metadata": {"name": "nightly", "creationTimestamp": null},
            "spec": {
                "schedule": "0 3 * * *",
                "jobTemplate": {
                    "metadata": {"creationTimestamp": null},
                    "spec": {"template": job_template_json()}
                }
            },
            "status": {}
        })
    );
}

#[test]
fn rbac_role_and_binding() {
    let role = rbac::Role {
        metadata: Some(meta::ObjectMeta {
            name: s("reader"),
            namespace: s("dev"),
            ..Default::default()
        }),
        rules: vec![rbac::PolicyRule {
            verbs: vec!["get".into(), "list".into()],
            api_groups: vec![String::new()],
            resources: vec!["pods".into()],
            resource_names: vec![],
            non_resource_ur_ls: vec![],
        }],
    };
    assert_eq!(
        decode("rbac.authorization.k8s.io/v1", "Role", &role),
        json!({
            "kind": "Role",
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {"name": "reader", "namespace": "dev", "creationTimestamp": null},
            "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]
        })
    );

    let binding = rbac::RoleBinding {
        metadata: meta_named("read-pods"),
        subjects: vec![rbac::Subject {
            kind: s("User"),
            api_group: s("rbac.authorization.k8s.io"),
            name: s("jane"),
            namespace: None,
        }],
        role_ref: Some(rbac::RoleRef {
            api_group: s("rbac.authorization.k8s.io"),
            kind: s("Role"),
            name: s("reader"),
        }),
    };
    assert_eq!(
        decode("rbac.authorization.k8s.io/v1", "RoleBinding", &binding),
        json!({
            "kind": "RoleBinding",
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {"name": "read-pods", "creationTimestamp": null},
            "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "jane"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"}
        })
    );
}

#[test]
fn self_subject_access_review_like_kubectl_auth_can_i() {
    let review = authz::SelfSubjectAccessReview {
        metadata: Some(meta::ObjectMeta::default()),
        spec: Some(authz::SelfSubjectAccessReviewSpec {
            resource_attributes: Some(authz::ResourceAttributes {
                namespace: s("default"),
                verb: s("create"),
                group: s(""),
                resource: s("pods"),
                ..Default::default()
            }),
            non_resource_attributes: None,
        }),
        status: Some(authz::SubjectAccessReviewStatus {
            allowed: Some(false),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode(
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            &review
        ),
        json!({
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": {"resourceAttributes": {"namespace": "default", "verb": "create", "resource": "pods"}},
            "status": {"allowed": false}
        })
    );
}

#[test]
fn pod_times_and_negative_int32() {
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: s("p"),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_704_164_645),
                nanos: Some(0),
            }),
            deletion_timestamp: Some(meta::Time {
                seconds: Some(1_704_164_700),
                nanos: None,
            }),
            deletion_grace_period_seconds: Some(0),
            generation: Some(0),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: s("c"),
                image: s("busybox"),
                ..Default::default()
            }],
            priority: Some(-5),
            ..Default::default()
        }),
        status: Some(core::PodStatus {
            phase: s("Running"),
            conditions: vec![core::PodCondition {
                r#type: s("Ready"),
                status: s("True"),
                last_transition_time: Some(meta::Time {
                    seconds: Some(1_704_164_646),
                    nanos: None,
                }),
                ..Default::default()
            }],
            start_time: Some(meta::Time {
                seconds: Some(1_704_164_645),
                nanos: None,
            }),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode("v1", "Pod", &pod),
        json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": "p",
                "creationTimestamp": "2024-01-02T03:04:05Z",
                "deletionTimestamp": "2024-01-02T03:05:00Z",
                "deletionGracePeriodSeconds": 0
            },
            "spec": {
                "containers": [{"name": "c", "image": "busybox", "resources": {}}],
                "priority": -5
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2024-01-02T03:04:06Z"}],
                "startTime": "2024-01-02T03:04:05Z"
            }
        })
    );
}

#[test]
fn event_micro_time_and_controller_revision_raw_extension() {
    let event = k8s_pb::api::events::v1::Event {
        metadata: meta_named("e"),
        event_time: Some(meta::MicroTime {
            seconds: Some(1_704_164_645),
            nanos: Some(123_456_789),
        }),
        reporting_controller: s("skiff"),
        reason: s("Started"),
        ..Default::default()
    };
    let got = decode("events.k8s.io/v1", "Event", &event);
    assert_eq!(got["eventTime"], json!("2024-01-02T03:04:05.123456Z"));
    assert_eq!(got["deprecatedFirstTimestamp"], json!(null));
    assert_eq!(got["reportingController"], json!("skiff"));

    let revision = apps::ControllerRevision {
        metadata: meta_named("r1"),
        data: Some(RawExtension {
            raw: Some(br#"{"spec":{"template":{"x":[1,2]}}}"#.to_vec()),
        }),
        revision: Some(1),
    };
    assert_eq!(
        decode("apps/v1", "ControllerRevision", &revision),
        json!({
            "kind": "ControllerRevision",
            "apiVersion": "apps/v1",
            "metadata": {"name": "r1", "creationTimestamp": null},
            "data": {"spec": {"template": {"x": [1, 2]}}},
            "revision": 1
        })
    );
}

#[test]
fn inline_volume_source_and_delete_options() {
    let pod = core::Pod {
        metadata: meta_named("v"),
        spec: Some(core::PodSpec {
            volumes: vec![core::Volume {
                name: s("cache"),
                volume_source: Some(core::VolumeSource {
                    empty_dir: Some(core::EmptyDirVolumeSource {
                        medium: None,
                        size_limit: Some(quantity("1Gi")),
                    }),
                    ..Default::default()
                }),
            }],
            ..Default::default()
        }),
        status: None,
    };
    let got = decode("v1", "Pod", &pod);
    assert_eq!(
        got["spec"]["volumes"],
        json!([{"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}}])
    );

    let eviction = k8s_pb::api::policy::v1::Eviction {
        metadata: Some(meta::ObjectMeta {
            name: s("p"),
            namespace: s("default"),
            ..Default::default()
        }),
        delete_options: Some(meta::DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode("policy/v1", "Eviction", &eviction),
        json!({
            "kind": "Eviction",
            "apiVersion": "policy/v1",
            "metadata": {"name": "p", "namespace": "default", "creationTimestamp": null},
            "deleteOptions": {"gracePeriodSeconds": 0}
        })
    );
}

#[test]
fn token_request_and_self_subject_review() {
    let token = k8s_pb::api::authentication::v1::TokenRequest {
        metadata: meta_named("default"),
        spec: Some(k8s_pb::api::authentication::v1::TokenRequestSpec {
            audiences: vec!["api".into()],
            expiration_seconds: Some(3600),
            bound_object_ref: None,
        }),
        status: None,
    };
    assert_eq!(
        decode("authentication.k8s.io/v1", "TokenRequest", &token),
        json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": "default", "creationTimestamp": null},
            "spec": {"audiences": ["api"], "expirationSeconds": 3600},
            "status": {"token": "", "expirationTimestamp": null}
        })
    );

    let review = k8s_pb::api::authentication::v1::SelfSubjectReview {
        metadata: Some(meta::ObjectMeta::default()),
        status: None,
    };
    assert_eq!(
        decode("authentication.k8s.io/v1", "SelfSubjectReview", &review),
        json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": {}}
        })
    );
}
