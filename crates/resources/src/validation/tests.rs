//! Validation through the public strategy, as the server runs it: normalize →
//! default → validate.

use serde_json::{json, Value};

use crate::{builtin_resources, ErrorType, FieldError};

fn prepared(plural: &str, obj: Value) -> (std::sync::Arc<dyn crate::Strategy>, Value) {
    let def = builtin_resources()
        .into_iter()
        .find(|d| d.plural == plural)
        .unwrap();
    let mut v = def.strategy.normalize(obj).unwrap();
    def.strategy.default(&mut v);
    (def.strategy, v)
}

fn errors(plural: &str, obj: Value) -> Vec<FieldError> {
    let (s, v) = prepared(plural, obj);
    s.validate(&v, None)
}

fn update_errors(plural: &str, old: Value, new: Value) -> Vec<FieldError> {
    let (s, old) = prepared(plural, old);
    let (_, new) = prepared(plural, new);
    s.validate(&new, Some(&old))
}

/// `(field, message)` pairs, to compare with what kubectl would print.
fn msgs(errs: &[FieldError]) -> Vec<(String, String)> {
    errs.iter()
        .map(|e| (e.field.clone(), e.message()))
        .collect()
}

fn has(errs: &[FieldError], field: &str, message: &str) -> bool {
    msgs(errs).iter().any(|(f, m)| f == field && m == message)
}

fn pod(spec: Value) -> Value {
    json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec})
}

fn deployment(spec: Value) -> Value {
    json!({"metadata": {"name": "d"}, "spec": spec})
}

fn template(labels: Value) -> Value {
    json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
}

#[test]
fn valid_objects_pass() {
    assert_eq!(
        msgs(&errors(
            "pods",
            pod(json!({"containers": [{"name": "a", "image": "nginx"}]}))
        )),
        vec![]
    );
    let d = deployment(
        json!({"selector": {"matchLabels": {"app": "x"}}, "template": template(json!({"app": "x"}))}),
    );
    assert_eq!(msgs(&errors("deployments", d)), vec![]);
    let svc = json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}], "selector": {"app": "x"}}});
    assert_eq!(msgs(&errors("services", svc)), vec![]);
    let cj = json!({"metadata": {"name": "c"}, "spec": {"schedule": "@daily", "timeZone": "Europe/Paris",
        "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}});
    assert_eq!(msgs(&errors("cronjobs", cj)), vec![]);
    let crd = json!({"metadata": {"name": "foos.example.com"}, "spec": {"group": "example.com", "scope": "Namespaced",
        "names": {"plural": "foos", "kind": "Foo"}, "versions": [{"name": "v1", "served": true, "storage": true,
            "schema": {"openAPIV3Schema": {"type": "object"}}}]}});
    assert_eq!(msgs(&errors("customresourcedefinitions", crd)), vec![]);
    for d in builtin_resources() {
        let v = d
            .strategy
            .normalize(json!({"metadata": {"name": "x"}}))
            .unwrap();
        let _ = d.strategy.validate(&v, Some(&v));
        let _ = d.strategy.validate(&json!([1]), None);
    }
}

#[test]
fn metadata_names_labels_annotations() {
    let errs = errors("configmaps", json!({"metadata": {"name": "Bad_Name"}}));
    assert_eq!(errs[0].field, "metadata.name");
    assert!(errs[0].message().starts_with(
        "Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of"
    ));
    let errs = errors("namespaces", json!({"metadata": {"name": "a.b"}}));
    assert!(errs[0]
        .message()
        .contains("a lowercase RFC 1123 label must consist"));
    let errs = errors(
        "services",
        json!({"metadata": {"name": "1web"}, "spec": {"ports": [{"port": 80}]}}),
    );
    assert!(errs[0].message().contains("a DNS-1035 label must consist"));
    let errs = errors("configmaps", json!({"metadata": {"name": "x".repeat(254)}}));
    assert!(has(
        &errs,
        "metadata.name",
        &format!(
            "Invalid value: \"{}\": must be no more than 253 characters",
            "x".repeat(254)
        )
    ));
    let errs = errors(
        "cronjobs",
        json!({"metadata": {"name": "c".repeat(53)}, "spec": {"schedule": "@daily", "jobTemplate": {}}}),
    );
    assert!(errs
        .iter()
        .any(|e| e.field == "metadata.name" && e.detail == "must be no more than 52 characters"));
    let errs = errors("roles", json!({"metadata": {"name": "a/b"}}));
    assert!(has(
        &errs,
        "metadata.name",
        "Invalid value: \"a/b\": may not contain '/'"
    ));
    assert!(errors("roles", json!({"metadata": {"name": "system:Admin"}})).is_empty());
    assert!(has(
        &errors("configmaps", json!({"metadata": {}})),
        "metadata.name",
        "Required value: name or generateName is required"
    ));

    let errs = errors(
        "configmaps",
        json!({"metadata": {"name": "c", "labels": {"bad key": "v", "ok": "bad value!"}}}),
    );
    assert_eq!(errs.len(), 2);
    assert!(errs[0]
        .message()
        .starts_with("Invalid value: \"bad key\": name part must consist of"));
    assert!(errs[1]
        .message()
        .starts_with("Invalid value: \"bad value!\": a valid label must be an empty string"));
    assert!(errs.iter().all(|e| e.field == "metadata.labels"));
    let big = "x".repeat(256 * 1024);
    let errs = errors(
        "configmaps",
        json!({"metadata": {"name": "c", "annotations": {"a": big}}}),
    );
    assert_eq!(
        msgs(&errs),
        vec![(
            "metadata.annotations".into(),
            "Too long: may not be more than 262144 bytes".into()
        )]
    );
    assert_eq!(errs[0].kind, ErrorType::TooLong);
}

#[test]
fn pod_spec_rules() {
    assert!(has(
        &errors("pods", pod(json!({}))),
        "spec.containers",
        "Required value"
    ));
    let errs = errors(
        "pods",
        pod(
            json!({"restartPolicy": "Sometimes", "volumes": [{"name": "v"}, {"name": "v"}], "containers": [
                {"name": "a", "image": "x", "ports": [{"containerPort": 70000}],
                 "volumeMounts": [{"name": "nope", "mountPath": "/x"}],
                 "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}},
                {"name": "a"},
                {"name": "c", "image": "x", "env": [{"name": "A=B"}], "livenessProbe": {"successThreshold": 2}, "ports": [{"containerPort": 80, "name": "80"}]}
            ]}),
        ),
    );
    for (field, message) in [
        ("spec.restartPolicy", "Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\", \"OnFailure\""),
        ("spec.volumes[1].name", "Duplicate value: \"v\""),
        ("spec.containers[0].ports[0].containerPort", "Invalid value: 70000: must be between 1 and 65535, inclusive"),
        ("spec.containers[0].volumeMounts[0].name", "Not found: \"nope\""),
        ("spec.containers[0].resources.requests[cpu]", "Invalid value: \"2\": must be less than or equal to cpu limit of 1"),
        ("spec.containers[1].name", "Duplicate value: \"a\""),
        ("spec.containers[1].image", "Required value"),
        ("spec.containers[2].env[0].name", "Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='"),
        ("spec.containers[2].livenessProbe", "Required value: must specify a handler type"),
        ("spec.containers[2].livenessProbe.successThreshold", "Invalid value: 2: must be 1"),
        ("spec.containers[2].ports[0].name", "Invalid value: \"80\": must contain at least one letter (a-z)"),
    ] {
        assert!(has(&errs, field, message), "missing {field}: {message} in {:#?}", msgs(&errs));
    }
}

#[test]
fn pod_tolerations_hostname_and_mounts() {
    let errs = errors(
        "pods",
        pod(json!({"hostname": "Bad_Host", "volumes": [{"name": "v"}],
            "tolerations": [{"operator": "Sometimes"}, {"key": "k", "operator": "Exists", "value": "x"},
                            {"operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}],
            "containers": [{"name": "a", "image": "x", "volumeMounts": [
                {"name": "v", "mountPath": "/d"}, {"name": "v", "mountPath": "/d"}]}]})),
    );
    for (field, message) in [
        ("spec.tolerations[0].operator", "Unsupported value: \"Sometimes\": supported values: \"Equal\", \"Exists\""),
        ("spec.tolerations[1].operator", "Invalid value: \"x\": value must be empty when `operator` is 'Exists'"),
        ("spec.tolerations[2].effect", "Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set"),
        ("spec.containers[0].volumeMounts[1].mountPath", "Invalid value: \"/d\": must be unique"),
    ] {
        assert!(has(&errs, field, message), "missing {field}: {message} in {:#?}", msgs(&errs));
    }
    assert!(errs.iter().any(|e| e.field == "spec.hostname"));
    let ok = pod(
        json!({"tolerations": [{"operator": "Exists"}, {"key": "k", "value": "v", "effect": "NoExecute", "tolerationSeconds": 3}],
        "containers": [{"name": "a", "image": "x"}]}),
    );
    assert_eq!(msgs(&errors("pods", ok)), vec![]);
}

#[test]
fn pod_updates_only_touch_mutable_fields() {
    let old = pod(json!({"containers": [{"name": "a", "image": "nginx:1"}]}));
    let new_image =
        pod(json!({"containers": [{"name": "a", "image": "nginx:2"}], "activeDeadlineSeconds": 5}));
    assert!(update_errors("pods", old.clone(), new_image).is_empty());
    let new_port = pod(
        json!({"containers": [{"name": "a", "image": "nginx:1", "ports": [{"containerPort": 80}]}]}),
    );
    let errs = update_errors("pods", old, new_port);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].field, "spec");
    assert!(errs[0].message().starts_with(
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`"
    ));
}

#[test]
fn workload_rules() {
    let errs = errors(
        "deployments",
        deployment(
            json!({"replicas": -1, "selector": {"matchLabels": {"app": "x"}}, "template": template(json!({"app": "y"})),
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}),
        ),
    );
    assert!(has(
        &errs,
        "spec.replicas",
        "Invalid value: -1: must be greater than or equal to 0"
    ));
    assert!(has(
        &errs,
        "spec.template.metadata.labels",
        "Invalid value: {\"app\":\"y\"}: `selector` does not match template `labels`"
    ));
    assert!(has(
        &errs,
        "spec.strategy.rollingUpdate.maxUnavailable",
        "Invalid value: 0: may not be 0 when `maxSurge` is 0"
    ));
    let errs = errors(
        "deployments",
        deployment(
            json!({"selector": {"matchLabels": {"app": "x"}}, "template": template(json!({"app": "x"})), "strategy": {"type": "Blue"}}),
        ),
    );
    assert!(has(
        &errs,
        "spec.strategy.type",
        "Unsupported value: \"Blue\": supported values: \"Recreate\", \"RollingUpdate\""
    ));
    let errs = errors(
        "deployments",
        deployment(
            json!({"selector": {"matchExpressions": [{"key": "a", "operator": "In"}, {"key": "b", "operator": "Near"}]}, "template": template(json!({"a": "1"}))}),
        ),
    );
    assert!(has(
        &errs,
        "spec.selector.matchExpressions[0].values",
        "Required value: must be specified when `operator` is 'In' or 'NotIn'"
    ));
    assert!(has(
        &errs,
        "spec.selector.matchExpressions[1].operator",
        "Invalid value: \"Near\": not a valid selector operator"
    ));
    let errs = errors(
        "deployments",
        deployment(json!({"template": template(json!({"a": "1"}))})),
    );
    assert!(has(&errs, "spec.selector", "Required value"));
    let errs = errors(
        "deployments",
        deployment(
            json!({"selector": {"matchLabels": {}}, "template": template(json!({"a": "1"}))}),
        ),
    );
    assert!(has(
        &errs,
        "spec.selector",
        "Invalid value: {\"matchLabels\":{}}: empty selector is invalid for deployment"
    ));
    let errs = errors(
        "deployments",
        deployment(
            json!({"selector": {"matchLabels": {"app": "x"}}, "template": template(json!({"app": "x"})), "strategy": {"rollingUpdate": {"maxUnavailable": "150%"}}}),
        ),
    );
    assert!(has(
        &errs,
        "spec.strategy.rollingUpdate.maxUnavailable",
        "Invalid value: \"150%\": must not be greater than 100%"
    ));

    let old = deployment(
        json!({"selector": {"matchLabels": {"app": "x"}}, "template": template(json!({"app": "x", "b": "c"}))}),
    );
    let new = deployment(
        json!({"selector": {"matchLabels": {"b": "c"}}, "template": template(json!({"app": "x", "b": "c"}))}),
    );
    assert!(has(
        &update_errors("deployments", old, new),
        "spec.selector",
        "Invalid value: {\"matchLabels\":{\"b\":\"c\"}}: field is immutable"
    ));

    let job = |spec: Value| json!({"metadata": {"name": "j", "uid": "u"}, "spec": spec});
    let mut tpl = template(json!({}));
    tpl["spec"]["restartPolicy"] = json!("Never");
    let errs = errors(
        "jobs",
        job(json!({"completions": -1, "parallelism": -2, "template": tpl.clone()})),
    );
    assert!(has(
        &errs,
        "spec.completions",
        "Invalid value: -1: must be greater than or equal to 0"
    ));
    assert!(has(
        &errs,
        "spec.parallelism",
        "Invalid value: -2: must be greater than or equal to 0"
    ));
    let errs = errors("jobs", job(json!({"template": template(json!({}))})));
    assert!(has(
        &errs,
        "spec.template.spec.restartPolicy",
        "Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
    ));
    let mut tpl2 = tpl.clone();
    tpl2["spec"]["containers"][0]["image"] = json!("other");
    let errs = update_errors(
        "jobs",
        job(json!({"template": tpl})),
        job(json!({"template": tpl2})),
    );
    assert!(errs
        .iter()
        .any(|e| e.field == "spec.template" && e.detail == "field is immutable"));
}

#[test]
fn cron_job_schedule_and_time_zone() {
    let cj = |schedule: &str, tz: Value| {
        json!({"metadata": {"name": "c"}, "spec": {"schedule": schedule, "timeZone": tz, "jobTemplate": {"spec": {"template": {
            "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "x"}]}}}}}})
    };
    let errs = errors("cronjobs", cj("bogus", Value::Null));
    assert_eq!(
        msgs(&errs),
        vec![(
            "spec.schedule".into(),
            "Invalid value: \"bogus\": expected exactly 5 fields, found 1: [bogus]".into()
        )]
    );
    let errs = errors("cronjobs", cj("TZ=UTC 0 * * * *", Value::Null));
    assert!(has(&errs, "spec.schedule", "Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"));
    let errs = errors("cronjobs", cj("0 * * * *", json!("Local")));
    assert_eq!(errs[0].field, "spec.timeZone");
}

#[test]
fn service_rules() {
    let svc = |spec: Value| json!({"metadata": {"name": "s"}, "spec": spec});
    assert!(has(
        &errors("services", svc(json!({}))),
        "spec.ports",
        "Required value"
    ));
    assert!(errors("services", svc(json!({"clusterIP": "None"}))).is_empty());
    assert!(errors(
        "services",
        svc(json!({"type": "ExternalName", "externalName": "example.com"}))
    )
    .is_empty());
    let errs = errors(
        "services",
        svc(json!({"type": "Magic", "ports": [{"port": 0, "protocol": "ICMP"}, {"port": 80}]})),
    );
    for (field, message) in [
        ("spec.type", "Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""),
        ("spec.ports[0].port", "Invalid value: 0: must be between 1 and 65535, inclusive"),
        ("spec.ports[0].protocol", "Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\""),
        ("spec.ports[0].name", "Required value"),
    ] {
        assert!(has(&errs, field, message), "missing {field}: {message} in {:#?}", msgs(&errs));
    }
    let old = svc(json!({"clusterIP": "10.0.0.1", "ports": [{"port": 80}]}));
    let new = svc(json!({"clusterIP": "10.0.0.2", "ports": [{"port": 80}]}));
    assert!(has(
        &update_errors("services", old.clone(), new),
        "spec.clusterIPs[0]",
        "Invalid value: \"10.0.0.2\": may not change once set"
    ));
    assert!(update_errors("services", old, svc(json!({"ports": [{"port": 80}]}))).is_empty());
}

#[test]
fn config_map_and_secret_rules() {
    let errs = errors(
        "configmaps",
        json!({"metadata": {"name": "c"}, "data": {"bad key": "v"}}),
    );
    assert_eq!(errs[0].field, "data[bad key]");
    assert!(errs[0].message().starts_with(
        "Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters"
    ));
    let errs = errors(
        "configmaps",
        json!({"metadata": {"name": "c"}, "data": {"k": "x".repeat(1024 * 1024)}}),
    );
    assert_eq!(
        msgs(&errs),
        vec![(
            "".into(),
            "Too long: may not be more than 1048576 bytes".into()
        )]
    );
    let old = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "1"}});
    let new = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "2"}});
    assert!(has(
        &update_errors("configmaps", old, new),
        "data",
        "Forbidden: field is immutable when `immutable` is set"
    ));
    let errs = errors(
        "secrets",
        json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "stringData": {"tls.crt": "x"}}),
    );
    assert_eq!(
        msgs(&errs),
        vec![("data[tls.key]".into(), "Required value".into())]
    );
    let old = json!({"metadata": {"name": "s"}, "immutable": true, "stringData": {"a": "1"}});
    let new = json!({"metadata": {"name": "s"}, "immutable": true, "stringData": {"a": "2"}});
    assert!(has(
        &update_errors("secrets", old, new),
        "data",
        "Forbidden: field is immutable when `immutable` is set"
    ));
}

#[test]
fn crd_rules() {
    let crd = |name: &str, versions: Value| {
        json!({"metadata": {"name": name}, "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "foos", "kind": "Foo"}, "versions": versions}})
    };
    let errs = errors(
        "customresourcedefinitions",
        crd("bars.example.com", json!([])),
    );
    assert!(has(
        &errs,
        "metadata.name",
        "Invalid value: \"bars.example.com\": must be spec.names.plural+\".\"+spec.group"
    ));
    assert!(errs.iter().any(|e| e.field == "spec.versions"));
    let schema = json!({"openAPIV3Schema": {"type": "object"}});
    let two = json!([{"name": "v1", "served": true, "storage": true, "schema": schema},
        {"name": "v2", "served": true, "storage": true, "schema": schema}]);
    let errs = errors("customresourcedefinitions", crd("foos.example.com", two));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(
        errs[0].detail,
        "must have exactly one version marked as storage version"
    );
    let errs = errors(
        "customresourcedefinitions",
        json!({"metadata": {"name": "x.y"}, "spec": {"group": "", "names": {}, "scope": "Namespaced", "versions": []}}),
    );
    assert!(has(&errs, "spec.group", "Required value"));
    assert!(has(&errs, "spec.names.plural", "Required value"));
    assert!(has(&errs, "spec.names.kind", "Required value"));
}

#[test]
fn rbac_bindings() {
    let rb = json!({"metadata": {"name": "b"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
        "subjects": [{"kind": "Robot", "name": "x"}]});
    let errs = errors("rolebindings", rb.clone());
    assert!(has(
        &errs,
        "subjects[0].kind",
        "Unsupported value: \"Robot\": supported values: \"Group\", \"ServiceAccount\", \"User\""
    ));
    let mut changed = rb.clone();
    changed["roleRef"]["name"] = json!("other");
    assert!(update_errors("rolebindings", rb, changed)
        .iter()
        .any(|e| e.field == "roleRef" && e.detail == "cannot change roleRef"));
}

#[test]
fn unknown_fields_and_normalize_errors() {
    let def = builtin_resources()
        .into_iter()
        .find(|d| d.plural == "deployments")
        .unwrap();
    let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "bogus": 1, "creationTimestamp": null},
        "spec": {"foo": true, "selector": {}, "template": {"spec": {"containers": [{"name": "c", "bogus": 1}]}}}});
    assert_eq!(
        def.strategy.unknown_fields(&obj),
        vec![
            ".metadata.bogus",
            ".spec.foo",
            ".spec.template.spec.containers[0].bogus"
        ]
    );
    let normalized = def.strategy.normalize(obj).unwrap();
    assert!(normalized["spec"].get("foo").is_none());
    let err = def
        .strategy
        .normalize(json!({"apiVersion": "apps/v1beta1", "kind": "Deployment"}))
        .unwrap_err();
    assert_eq!(err, "the API version in the data (apps/v1beta1) does not match the expected API version (apps/v1)");
    let err = def
        .strategy
        .normalize(json!({"spec": {"replicas": "3"}}))
        .unwrap_err();
    assert_eq!(err, "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32");
    assert!(def.strategy.normalize(json!("just a string")).is_err());
}

#[test]
fn field_selectors() {
    let strat = |p: &str| {
        builtin_resources()
            .into_iter()
            .find(|d| d.plural == p)
            .unwrap()
            .strategy
    };
    let p = json!({"spec": {"nodeName": "n1", "containers": []}, "status": {"phase": "Running"}});
    assert_eq!(
        strat("pods").field_value(&p, "spec.nodeName").as_deref(),
        Some("n1")
    );
    assert_eq!(
        strat("pods").field_value(&p, "status.phase").as_deref(),
        Some("Running")
    );
    assert_eq!(
        strat("pods").field_value(&p, "status.podIP").as_deref(),
        Some("")
    );
    assert_eq!(strat("pods").field_value(&p, "spec.bogus"), None);
    let svc = json!({"spec": {"type": "NodePort", "clusterIP": "10.0.0.1"}});
    assert_eq!(
        strat("services").field_value(&svc, "spec.type").as_deref(),
        Some("NodePort")
    );
    assert_eq!(
        strat("services")
            .field_value(&svc, "spec.clusterIP")
            .as_deref(),
        Some("10.0.0.1")
    );
    let ev = json!({"involvedObject": {"kind": "Pod", "name": "web"}, "reason": "Pulled", "metadata": {}});
    assert_eq!(
        strat("events")
            .field_value(&ev, "involvedObject.name")
            .as_deref(),
        Some("web")
    );
    assert_eq!(
        strat("secrets")
            .field_value(&json!({"type": "Opaque"}), "type")
            .as_deref(),
        Some("Opaque")
    );
    assert_eq!(
        strat("nodes")
            .field_value(&json!({}), "spec.unschedulable")
            .as_deref(),
        Some("false")
    );
    assert_eq!(
        strat("jobs")
            .field_value(&json!({"status": {"succeeded": 2}}), "status.successful")
            .as_deref(),
        Some("2")
    );
    assert_eq!(
        strat("namespaces")
            .field_value(&json!({"status": {"phase": "Active"}}), "status.phase")
            .as_deref(),
        Some("Active")
    );
}
