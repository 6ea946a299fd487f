//! The scheduler and the `pods/binding` subresource, end to end with kubectl.
//! Nodes are registered by the tests themselves (a Node object plus its
//! status: allocatable and a Ready condition), so no node agent is involved.

mod common;

use std::time::Duration;

use common::{wait_for, Server};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// Register a Ready node with `labels`, `taints` and `cpu` allocatable.
fn add_node(s: &Server, name: &str, labels: Value, taints: Value, cpu: &str) {
    let mut labels = labels;
    labels["kubernetes.io/hostname"] = json!(name);
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
    });
    s.ok_stdin(&["create", "-f", "-"], &node.to_string());
    let resources =
        json!({"cpu": cpu, "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    let status = json!({"status": {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "test node is ready",
        }],
    }});
    s.ok(&[
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
}

/// Create a pod in `ns` with `spec` (a container is added if none is given).
fn add_pod(s: &Server, ns: &str, name: &str, labels: Value, spec: Value) {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "app", "image": "busybox"}]);
    }
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": spec,
    });
    s.ok_stdin(&["create", "-f", "-"], &pod.to_string());
}

fn pod_json(s: &Server, ns: &str, name: &str) -> Value {
    s.get_json(&["pod", name, "-n", ns])
}

/// Wait until the pod is bound; returns its node.
#[track_caller]
fn wait_scheduled(s: &Server, ns: &str, name: &str) -> String {
    wait_for(WAIT, &format!("pod {ns}/{name} to be scheduled"), || {
        let p = pod_json(s, ns, name);
        match p.pointer("/spec/nodeName").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => Ok(n.to_string()),
            _ => Err(p["status"].to_string()),
        }
    })
}

/// Wait until the pod says it is unschedulable; returns the message.
#[track_caller]
fn wait_unschedulable(s: &Server, ns: &str, name: &str) -> String {
    wait_for(
        WAIT,
        &format!("pod {ns}/{name} to be unschedulable"),
        || {
            let p = pod_json(s, ns, name);
            let cond = p
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled"))
                .cloned();
            match cond {
                Some(c) if c["status"] == "False" && c["reason"] == "Unschedulable" => {
                    Ok(c["message"].as_str().unwrap_or_default().to_string())
                }
                _ => Err(p.to_string()),
            }
        },
    )
}

/// The events about `name` in `ns` with `reason`.
fn events(s: &Server, ns: &str, name: &str, reason: &str) -> Vec<Value> {
    let list = s.get_json(&["events", "-n", ns]);
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["involvedObject"]["name"] == name && e["reason"] == reason)
        .collect()
}

#[test]
fn selectors_affinity_taints_and_tolerations() {
    let s = Server::start();
    add_node(
        &s,
        "n1",
        json!({"disk": "ssd", "zone": "a"}),
        json!([]),
        "4",
    );
    add_node(
        &s,
        "n2",
        json!({"zone": "b"}),
        json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
        "4",
    );
    add_node(&s, "n3", json!({"zone": "b"}), json!([]), "4");
    s.create_ns("sched");

    add_pod(
        &s,
        "sched",
        "ssd",
        json!({}),
        json!({"nodeSelector": {"disk": "ssd"}}),
    );
    add_pod(
        &s,
        "sched",
        "zone-b",
        json!({}),
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}]
        }}}}),
    );
    let tolerate =
        json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]);
    add_pod(
        &s,
        "sched",
        "prefers-n2",
        json!({}),
        json!({
            "tolerations": tolerate,
            "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}
                ]},
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 100, "preference": {"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}
                    ]}}
                ],
            }},
        }),
    );
    add_pod(
        &s,
        "sched",
        "no-toleration",
        json!({}),
        json!({"nodeSelector": {"kubernetes.io/hostname": "n2"}}),
    );
    add_pod(&s, "sched", "pinned", json!({}), json!({"nodeName": "n3"}));

    assert_eq!(wait_scheduled(&s, "sched", "ssd"), "n1");
    // The taint keeps it off n2 without a toleration.
    assert_eq!(wait_scheduled(&s, "sched", "zone-b"), "n3");
    assert_eq!(wait_scheduled(&s, "sched", "prefers-n2"), "n2");

    let p = pod_json(&s, "sched", "ssd");
    let scheduled = p["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled").cloned())
        .expect("PodScheduled condition");
    assert_eq!(scheduled["status"], "True");

    let msg = wait_unschedulable(&s, "sched", "no-toleration");
    assert!(
        msg.starts_with("0/3 nodes are available: ")
            && msg.contains("1 node(s) had untolerated taint {dedicated: gpu}")
            && msg.contains("2 node(s) didn't match Pod's node affinity/selector"),
        "{msg}"
    );
    let failed = wait_for(WAIT, "a FailedScheduling event", || {
        let ev = events(&s, "sched", "no-toleration", "FailedScheduling");
        ev.first().cloned().ok_or_else(|| "none yet".to_string())
    });
    assert_eq!(failed["type"], "Warning");
    assert_eq!(failed["source"]["component"], "default-scheduler");
    let describe = s.ok(&["describe", "pod", "no-toleration", "-n", "sched"]);
    assert!(
        describe.contains("FailedScheduling") && describe.contains("untolerated taint"),
        "{describe}"
    );
    let scheduled_events = wait_for(WAIT, "a Scheduled event", || {
        let ev = events(&s, "sched", "ssd", "Scheduled");
        ev.first().cloned().ok_or_else(|| "none yet".to_string())
    });
    assert_eq!(
        scheduled_events["message"],
        "Successfully assigned sched/ssd to n1"
    );

    // An explicit nodeName is left alone (no scheduling, no event).
    let pinned = pod_json(&s, "sched", "pinned");
    assert_eq!(pinned["spec"]["nodeName"], "n3");
    assert!(events(&s, "sched", "pinned", "Scheduled").is_empty());

    // Tolerating the taint later (tolerations may be added) lets it in.
    s.ok(&[
        "patch",
        "pod",
        "no-toleration",
        "-n",
        "sched",
        "--type=json",
        "-p",
        &json!([{"op": "add", "path": "/spec/tolerations", "value": tolerate}]).to_string(),
    ]);
    assert_eq!(wait_scheduled(&s, "sched", "no-toleration"), "n2");
}

#[test]
fn resources_anti_affinity_and_retry_on_new_nodes() {
    let s = Server::start();
    add_node(&s, "small-1", json!({}), json!([]), "2");
    add_node(&s, "small-2", json!({}), json!([]), "2");
    s.create_ns("res");

    let big = json!({"containers": [{"name": "app", "image": "busybox",
        "resources": {"requests": {"cpu": "3"}}}]});
    add_pod(&s, "res", "big", json!({}), big);
    let msg = wait_unschedulable(&s, "res", "big");
    assert!(
        msg.starts_with("0/2 nodes are available: 2 Insufficient cpu."),
        "{msg}"
    );
    assert!(s
        .ok(&["get", "pod", "big", "-n", "res"])
        .contains("Pending"));

    // Two replicas that must not share a node land on both.
    let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
    ]}}});
    add_pod(&s, "res", "web-1", json!({"app": "web"}), anti.clone());
    add_pod(&s, "res", "web-2", json!({"app": "web"}), anti.clone());
    let a = wait_scheduled(&s, "res", "web-1");
    let b = wait_scheduled(&s, "res", "web-2");
    assert_ne!(a, b);
    // A third has nowhere to go.
    add_pod(&s, "res", "web-3", json!({"app": "web"}), anti);
    let msg = wait_unschedulable(&s, "res", "web-3");
    assert!(
        msg.contains("2 node(s) didn't match pod anti-affinity rules"),
        "{msg}"
    );

    // A bigger node appears: the pending pods are retried and fit.
    add_node(&s, "large", json!({}), json!([]), "8");
    assert_eq!(wait_scheduled(&s, "res", "big"), "large");
    assert_eq!(wait_scheduled(&s, "res", "web-3"), "large");
}

#[test]
fn runtime_class_must_exist_and_steers_pods() {
    let s = Server::start();
    add_node(&s, "plain", json!({}), json!([]), "4");
    add_node(
        &s,
        "sandboxed",
        json!({"sandbox": "gvisor"}),
        json!([{"key": "sandbox", "value": "gvisor", "effect": "NoSchedule"}]),
        "4",
    );
    s.create_ns("rc");
    add_pod(
        &s,
        "rc",
        "p",
        json!({}),
        json!({"runtimeClassName": "gvisor"}),
    );
    let msg = wait_unschedulable(&s, "rc", "p");
    assert!(msg.contains("RuntimeClass \"gvisor\" not found"), "{msg}");

    let class = json!({
        "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
        "metadata": {"name": "gvisor"},
        "handler": "runsc",
        "scheduling": {
            "nodeSelector": {"sandbox": "gvisor"},
            "tolerations": [{"key": "sandbox", "operator": "Exists"}],
        },
    });
    s.ok_stdin(&["create", "-f", "-"], &class.to_string());
    assert_eq!(wait_scheduled(&s, "rc", "p"), "sandboxed");
}

#[test]
fn binding_subresource() {
    // No scheduler here: the test binds by hand.
    let s = Server::start_with(&["--no-controllers"]);
    add_node(&s, "n1", json!({}), json!([]), "4");
    s.create_ns("b");
    add_pod(&s, "b", "p", json!({}), json!({}));
    let uid = pod_json(&s, "b", "p")["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string();

    let path = "/api/v1/namespaces/b/pods/p/binding";
    let binding = |target: Value, uid: Option<&str>| {
        let mut meta = json!({"name": "p", "namespace": "b"});
        if let Some(u) = uid {
            meta["uid"] = json!(u);
        }
        json!({"apiVersion": "v1", "kind": "Binding", "metadata": meta, "target": target})
    };

    // A bad target: 422 naming the field.
    let (code, body) = s.curl_json(
        "POST",
        path,
        Some(&binding(json!({"kind": "Pod", "name": "n1"}), None)),
    );
    assert_eq!(code, 422, "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap_or_default()
        .contains("target.kind"));
    let (code, _) = s.curl_json("POST", path, Some(&binding(json!({"kind": "Node"}), None)));
    assert_eq!(code, 422);

    // A wrong uid precondition: 409.
    let (code, body) = s.curl_json(
        "POST",
        path,
        Some(&binding(
            json!({"kind": "Node", "name": "n1"}),
            Some("not-the-uid"),
        )),
    );
    assert_eq!(code, 409, "{body}");

    // Missing pod: 404.
    let (code, _) = s.curl_json(
        "POST",
        "/api/v1/namespaces/b/pods/nope/binding",
        Some(&json!({"metadata": {"name": "nope"}, "target": {"kind": "Node", "name": "n1"}})),
    );
    assert_eq!(code, 404);

    // The real thing: 201 with a Success Status.
    let (code, body) = s.curl_json(
        "POST",
        path,
        Some(&binding(json!({"kind": "Node", "name": "n1"}), Some(&uid))),
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["status"], "Success");
    let p = pod_json(&s, "b", "p");
    assert_eq!(p["spec"]["nodeName"], "n1");
    let cond = p["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled").cloned())
        .expect("PodScheduled");
    assert_eq!(cond["status"], "True");

    // Binding a bound pod: 409 that says where it is.
    let (code, body) = s.curl_json(
        "POST",
        path,
        Some(&binding(json!({"kind": "Node", "name": "n2"}), None)),
    );
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["reason"], "Conflict");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("pod p is already assigned to node \"n1\""),
        "{body}"
    );

    // The legacy collection names the pod in the Binding.
    add_pod(&s, "b", "q", json!({}), json!({}));
    let (code, body) = s.curl_json(
        "POST",
        "/api/v1/namespaces/b/bindings",
        Some(&json!({"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": "q"}, "target": {"kind": "Node", "name": "n1"}})),
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(pod_json(&s, "b", "q")["spec"]["nodeName"], "n1");
}
