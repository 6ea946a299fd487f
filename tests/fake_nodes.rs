//! Fake nodes end to end: registration, the pod lifecycle the annotations
//! steer, deletion, and the node lifecycle controller on a node that stops
//! heartbeating. Pods are bound with `spec.nodeName` (no scheduler needed).

mod common;

use std::time::Duration;

use common::{wait_for, Server};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn start() -> Server {
    Server::start_with(&["--fake-nodes", "2", "--node-monitor-grace-seconds", "3"])
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a str> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?["status"]
        .as_str()
}

/// `kubectl get <kind> <name> -o json`, or an error text for wait_for.
fn get(s: &Server, kind: &str, name: &str) -> Result<Value, String> {
    let out = s.kubectl(&["get", kind, name, "-o", "json"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

fn pod_manifest(name: &str, node: &str, policy: &str, annotations: &[(&str, &str)]) -> String {
    let ann: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect();
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": ann},
        "spec": {
            "nodeName": node,
            "restartPolicy": policy,
            "containers": [{"name": "main", "image": "busybox:1.36"}],
        },
    })
    .to_string()
}

fn wait_phase(s: &Server, name: &str, phase: &str) -> Value {
    wait_for(WAIT, &format!("pod {name} {phase}"), || {
        let p = get(s, "pod", name)?;
        if p["status"]["phase"] == phase {
            Ok(p)
        } else {
            Err(p["status"].to_string())
        }
    })
}

fn wait_nodes_ready(s: &Server) {
    wait_for(WAIT, "both fake nodes Ready", || {
        let out = s.kubectl(&["get", "nodes", "--no-headers"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let ready = text
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count();
        if ready == 2 {
            Ok(())
        } else {
            Err(text)
        }
    });
}

#[test]
fn fake_nodes_register_and_run_pods_as_annotated() {
    let s = start();
    wait_nodes_ready(&s);
    let node = s.get_json(&["node", "fake-node-0"]);
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], "fake-node-0");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["node.skiff.dev/type"], "fake");
    assert!(labels["kubernetes.io/arch"].is_string());
    assert_eq!(node["status"]["capacity"]["pods"], "5000");
    assert_eq!(
        node["status"]["allocatable"]["memory"],
        (4u64 << 40).to_string()
    );
    for c in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert_eq!(condition(&node, c), Some("False"), "{c}");
    }
    let addresses = node["status"]["addresses"].to_string();
    assert!(
        addresses.contains("InternalIP") && addresses.contains("Hostname"),
        "{addresses}"
    );
    let lease = s.get_json(&["lease", "-n", "kube-node-lease", "fake-node-0"]);
    assert_eq!(lease["spec"]["holderIdentity"], "fake-node-0");

    // A long-running pod: Running and Ready with an address from the node's range.
    s.ok_stdin(
        &["create", "-f", "-"],
        &pod_manifest("web", "fake-node-0", "Always", &[]),
    );
    let web = wait_for(WAIT, "web Running and Ready", || {
        let p = get(&s, "pod", "web")?;
        if p["status"]["phase"] == "Running" && condition(&p, "Ready") == Some("True") {
            Ok(p)
        } else {
            Err(p["status"].to_string())
        }
    });
    let ip = web["status"]["podIP"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(ip.starts_with("10.128."), "podIP {ip}");
    assert_eq!(web["status"]["hostIP"], "172.30.0.2");
    let cs = &web["status"]["containerStatuses"][0];
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["started"], true);
    assert!(cs["containerID"]
        .as_str()
        .unwrap_or_default()
        .starts_with("fake://"));
    assert!(cs["state"]["running"]["startedAt"].is_string());
    for c in [
        "PodScheduled",
        "Initialized",
        "ContainersReady",
        "PodReadyToStartContainers",
    ] {
        assert_eq!(condition(&web, c), Some("True"), "{c}");
    }

    // Readiness follows the annotation, both ways.
    s.ok(&["annotate", "pod", "web", "fake.skiff.dev/ready=false"]);
    wait_for(WAIT, "web not ready", || {
        let p = get(&s, "pod", "web")?;
        match condition(&p, "Ready") {
            Some("False") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    s.ok(&["annotate", "pod", "web", "fake.skiff.dev/ready-"]);
    wait_for(WAIT, "web ready again", || {
        let p = get(&s, "pod", "web")?;
        match condition(&p, "Ready") {
            Some("True") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });

    // Run-once pods finish with their exit code.
    s.ok_stdin(
        &["create", "-f", "-"],
        &pod_manifest("done", "fake-node-1", "Never", &[]),
    );
    s.ok_stdin(
        &["create", "-f", "-"],
        &pod_manifest(
            "broken",
            "fake-node-1",
            "Never",
            &[("fake.skiff.dev/exit-code", "3")],
        ),
    );
    let done = wait_phase(&s, "done", "Succeeded");
    let t = &done["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["exitCode"], 0);
    assert_eq!(t["reason"], "Completed");
    let broken = wait_phase(&s, "broken", "Failed");
    let t = &broken["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["exitCode"], 3);
    assert_eq!(t["reason"], "Error");
    assert!(broken["status"]["podIP"]
        .as_str()
        .unwrap_or_default()
        .starts_with("10.129."));

    // OnFailure with a failing container restarts it.
    s.ok_stdin(
        &["create", "-f", "-"],
        &pod_manifest(
            "flaky",
            "fake-node-1",
            "OnFailure",
            &[
                ("fake.skiff.dev/exit-code", "1"),
                ("fake.skiff.dev/run-seconds", "0.2"),
            ],
        ),
    );
    wait_for(WAIT, "flaky restarted", || {
        let p = get(&s, "pod", "flaky")?;
        let restarts = p["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap_or(0);
        if restarts >= 1 && p["status"]["phase"] == "Running" {
            Ok(())
        } else {
            Err(p["status"].to_string())
        }
    });

    // The agent's events.
    wait_for(WAIT, "Started event for web", || {
        let out = s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=web",
            "-o",
            "json",
        ]);
        if out.contains("\"Started\"") && out.contains("\"Pulled\"") {
            Ok(())
        } else {
            Err(out)
        }
    });

    // Deletion: the agent stops the pod and removes it.
    s.ok(&["delete", "pod", "web", "--wait=false"]);
    wait_for(WAIT, "web gone", || match get(&s, "pod", "web") {
        Err(e) if e.contains("NotFound") => Ok(()),
        Err(e) => Err(e),
        Ok(p) => Err(p["metadata"].to_string()),
    });
}

#[test]
fn dead_node_goes_unknown_is_tainted_and_evicts() {
    let s = start();
    wait_nodes_ready(&s);
    let tolerating = |name: &str, seconds: Option<u32>| {
        let mut tol = serde_json::json!({
            "key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
        });
        if let Some(sec) = seconds {
            tol["tolerationSeconds"] = sec.into();
        }
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "nodeName": "fake-node-0",
                "tolerations": [tol],
                "containers": [{"name": "main", "image": "busybox:1.36"}],
            },
        })
        .to_string()
    };
    s.ok_stdin(&["create", "-f", "-"], &tolerating("short", Some(2)));
    s.ok_stdin(&["create", "-f", "-"], &tolerating("forever", None));
    for name in ["short", "forever"] {
        wait_phase(&s, name, "Running");
    }

    s.ok(&[
        "annotate",
        "node",
        "fake-node-0",
        "fake.skiff.dev/heartbeat=stopped",
    ]);
    let node = wait_for(WAIT, "fake-node-0 Ready=Unknown", || {
        let n = get(&s, "node", "fake-node-0")?;
        if condition(&n, "Ready") == Some("Unknown") {
            Ok(n)
        } else {
            Err(n["status"]["conditions"].to_string())
        }
    });
    let ready = node["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
        .unwrap_or_default();
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    let out = s.ok(&["get", "nodes", "fake-node-0", "--no-headers"]);
    assert!(out.contains("NotReady") || out.contains("Unknown"), "{out}");
    let taints = wait_for(WAIT, "unreachable taints", || {
        let n = get(&s, "node", "fake-node-0")?;
        let taints = n["spec"]["taints"].as_array().cloned().unwrap_or_default();
        let has = |effect: &str| {
            taints
                .iter()
                .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == effect)
        };
        if has("NoSchedule") && has("NoExecute") {
            Ok(taints)
        } else {
            Err(n["spec"].to_string())
        }
    });
    assert!(
        taints
            .iter()
            .any(|t| t["effect"] == "NoExecute" && t["timeAdded"].is_string()),
        "{taints:?}"
    );
    // The other node is unaffected.
    let other = s.get_json(&["node", "fake-node-1"]);
    assert_eq!(condition(&other, "Ready"), Some("True"));

    // The pod tolerating 2 s is evicted (marked for deletion; the dead node
    // cannot finish it); the one tolerating for ever stays, marked not ready.
    wait_for(WAIT, "short evicted", || {
        let p = get(&s, "pod", "short")?;
        if p["metadata"]["deletionTimestamp"].is_string() {
            Ok(())
        } else {
            Err(p["metadata"].to_string())
        }
    });
    wait_for(WAIT, "TaintManagerEviction event", || {
        let out = s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=short,reason=TaintManagerEviction",
            "-o",
            "json",
        ]);
        if out.contains("Marking for deletion Pod default/short") {
            Ok(())
        } else {
            Err(out)
        }
    });
    let forever = wait_for(WAIT, "forever marked not ready", || {
        let p = get(&s, "pod", "forever")?;
        if condition(&p, "Ready") == Some("False") {
            Ok(p)
        } else {
            Err(p["status"]["conditions"].to_string())
        }
    });
    assert!(forever["metadata"]["deletionTimestamp"].is_null());

    // Heartbeat back: Ready, no taints, the evicted pod finishes, the other is ready again.
    s.ok(&[
        "annotate",
        "node",
        "fake-node-0",
        "fake.skiff.dev/heartbeat-",
    ]);
    wait_for(WAIT, "fake-node-0 Ready and untainted", || {
        let n = get(&s, "node", "fake-node-0")?;
        let tainted = n["spec"]["taints"].as_array().is_some_and(|t| {
            t.iter()
                .any(|t| t["key"] == "node.kubernetes.io/unreachable")
        });
        if condition(&n, "Ready") == Some("True") && !tainted {
            Ok(())
        } else {
            Err(n.to_string())
        }
    });
    wait_for(WAIT, "short gone", || match get(&s, "pod", "short") {
        Err(e) if e.contains("NotFound") => Ok(()),
        Err(e) => Err(e),
        Ok(p) => Err(p["metadata"].to_string()),
    });
    wait_for(WAIT, "forever ready again", || {
        let p = get(&s, "pod", "forever")?;
        match condition(&p, "Ready") {
            Some("True") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}
