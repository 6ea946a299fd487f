use serde_json::{json, Value};

use super::pod::image_pull_policy;
use crate::builtin_resources;

/// normalize → default, as the server runs them; also checks idempotency.
fn defaulted(plural: &str, obj: Value) -> Value {
    let def = builtin_resources()
        .into_iter()
        .find(|d| d.plural == plural)
        .unwrap();
    let mut v = def.strategy.normalize(obj).unwrap();
    def.strategy.default(&mut v);
    let mut again = v.clone();
    def.strategy.default(&mut again);
    assert_eq!(v, again, "{plural}: defaulting is idempotent");
    v
}

#[test]
fn image_pull_policy_follows_the_tag() {
    assert_eq!(image_pull_policy("nginx"), "Always");
    assert_eq!(image_pull_policy("nginx:latest"), "Always");
    assert_eq!(image_pull_policy("nginx:1.25"), "IfNotPresent");
    assert_eq!(image_pull_policy("localhost:5000/app"), "Always");
    assert_eq!(image_pull_policy("localhost:5000/app:v1"), "IfNotPresent");
    assert_eq!(image_pull_policy("nginx@sha256:abc"), "IfNotPresent");
}

#[test]
fn pod_defaults() {
    let pod = defaulted(
        "pods",
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{
            "name": "a", "image": "nginx",
            "ports": [{"containerPort": 80}],
            "readinessProbe": {"httpGet": {"port": 80}},
            "resources": {"limits": {"cpu": "1"}}
        }], "volumes": [{"name": "v"}, {"name": "s", "secret": {"secretName": "x"}}]}}),
    );
    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert_eq!(spec["schedulerName"], "default-scheduler");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(spec["securityContext"], json!({}));
    assert_eq!(spec["enableServiceLinks"], true);
    assert_eq!(spec["serviceAccountName"], "default");
    assert_eq!(spec["serviceAccount"], "default");
    let c = &spec["containers"][0];
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c["terminationMessagePolicy"], "File");
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(c["ports"][0]["protocol"], "TCP");
    assert_eq!(
        c["readinessProbe"],
        json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10,
               "successThreshold": 1, "failureThreshold": 3})
    );
    assert_eq!(c["resources"]["requests"]["cpu"], "1");
    assert_eq!(spec["volumes"][0]["emptyDir"], json!({}));
    assert_eq!(spec["volumes"][1]["secret"]["defaultMode"], 420);
    assert_eq!(
        pod["status"],
        json!({"phase": "Pending", "qosClass": "Burstable"})
    );
    let guaranteed = defaulted(
        "pods",
        json!({"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]},
               "status": {"phase": "Running"}}),
    );
    assert_eq!(
        guaranteed["status"],
        json!({"phase": "Running", "qosClass": "Guaranteed"})
    );
    let best_effort = defaulted("pods", json!({"spec": {"containers": [{"name": "a"}]}}));
    assert_eq!(best_effort["status"]["qosClass"], "BestEffort");
}

#[test]
fn deployment_defaults() {
    let d = defaulted(
        "deployments",
        json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}}),
    );
    let spec = &d["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(
        spec["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    );
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(spec["progressDeadlineSeconds"], 600);
    let tspec = &spec["template"]["spec"];
    assert_eq!(tspec["restartPolicy"], "Always");
    assert_eq!(tspec["containers"][0]["imagePullPolicy"], "IfNotPresent");
    assert!(
        tspec.get("serviceAccountName").is_none(),
        "templates get no service account"
    );
}

#[test]
fn other_workload_defaults() {
    let sts = defaulted(
        "statefulsets",
        json!({"spec": {"selector": {}, "serviceName": "s", "template": {}}}),
    );
    assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        sts["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    assert_eq!(
        sts["spec"]["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    let ds = defaulted(
        "daemonsets",
        json!({"spec": {"selector": {}, "template": {}}}),
    );
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}})
    );
    let rs = defaulted("replicasets", json!({"spec": {"selector": {}}}));
    assert_eq!(rs["spec"]["replicas"], 1);
    let job = defaulted(
        "jobs",
        json!({"metadata": {"name": "j", "uid": "u1"}, "spec": {"template": {"spec": {"containers": []}}}}),
    );
    let spec = &job["spec"];
    assert_eq!(
        (spec["completions"].clone(), spec["parallelism"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(spec["backoffLimit"], 6);
    assert_eq!(spec["completionMode"], "NonIndexed");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
    assert_eq!(
        spec["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}})
    );
    assert_eq!(spec["template"]["metadata"]["labels"]["job-name"], "j");
    let cj = defaulted(
        "cronjobs",
        json!({"spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": {}}}}}),
    );
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
    assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
    assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1);
    assert_eq!(cj["spec"]["suspend"], false);
    let hpa = defaulted(
        "horizontalpodautoscalers",
        json!({"spec": {"maxReplicas": 3, "scaleTargetRef": {"kind": "Deployment", "name": "d"}}}),
    );
    assert_eq!(hpa["spec"]["minReplicas"], 1);
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        80
    );
}

#[test]
fn service_namespace_secret_defaults() {
    let svc = defaulted(
        "services",
        json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}),
    );
    let spec = &svc["spec"];
    assert_eq!(spec["type"], "ClusterIP");
    assert_eq!(spec["sessionAffinity"], "None");
    assert_eq!(
        spec["ports"][0],
        json!({"port": 80, "protocol": "TCP", "targetPort": 80})
    );
    assert_eq!(spec["internalTrafficPolicy"], "Cluster");
    assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
    assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
    let headless = defaulted("services", json!({"spec": {"clusterIP": "None"}}));
    assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    let ext = defaulted(
        "services",
        json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}),
    );
    assert!(ext["spec"].get("ipFamilies").is_none());
    let ns = defaulted("namespaces", json!({"metadata": {"name": "team"}}));
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(ns["status"]["phase"], "Active");
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "team"
    );
    assert_eq!(defaulted("secrets", json!({}))["type"], "Opaque");
    let crd = defaulted(
        "customresourcedefinitions",
        json!({"spec": {"group": "e.com", "names": {"plural": "foos", "kind": "Foo"}, "scope": "Namespaced", "versions": []}}),
    );
    assert_eq!(crd["spec"]["names"]["singular"], "foo");
    assert_eq!(crd["spec"]["names"]["listKind"], "FooList");
    assert_eq!(crd["spec"]["conversion"], json!({"strategy": "None"}));
}
