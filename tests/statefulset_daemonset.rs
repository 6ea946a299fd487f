//! StatefulSets and DaemonSets end to end on fake nodes: ordered and parallel
//! pod management, scale-down order, rolling updates with `kubectl rollout
//! status|history|undo`, one daemon pod per (selected) node.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{wait_for, Server};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);
const HOLD: &str = "fake.skiff.dev/ready";

fn sts(name: &str, policy: &str, replicas: u32, image: &str, unready: bool) -> String {
    let annotations = if unready {
        format!(r#","annotations":{{"{HOLD}":"false"}}"#)
    } else {
        String::new()
    };
    format!(
        r#"{{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{{"name":"{name}"}},
        "spec":{{"replicas":{replicas},"serviceName":"{name}","podManagementPolicy":"{policy}",
        "selector":{{"matchLabels":{{"app":"{name}"}}}},
        "template":{{"metadata":{{"labels":{{"app":"{name}"}}{annotations}}},
        "spec":{{"containers":[{{"name":"c","image":"{image}"}}]}}}}}}}}"#
    )
}

/// Names of the live pods with `app=<app>` (terminating ones excluded).
fn pods(s: &Server, app: &str) -> Vec<Value> {
    let list = s.get_json(&["pods", "-l", &format!("app={app}")]);
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

fn names(pods: &[Value]) -> BTreeSet<String> {
    pods.iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Release the readiness hold on one pod.
fn make_ready(s: &Server, pod: &str) {
    s.ok(&[
        "annotate",
        "pod",
        pod,
        &format!("{HOLD}=true"),
        "--overwrite",
    ]);
}

/// Wait until exactly `want` pods of `app` exist (not terminating).
#[track_caller]
fn wait_pods(s: &Server, app: &str, want: &[&str]) -> Vec<Value> {
    let want = set(want);
    wait_for(WAIT, &format!("pods {want:?}"), || {
        let p = pods(s, app);
        if names(&p) == want {
            Ok(p)
        } else {
            Err(format!("{:?}", names(&p)))
        }
    })
}

/// `kubectl get pods -w` on `app`, returned once its initial list (`count`
/// ADDED rows) is printed, so later changes are all in its output.
fn watch_pods(s: &Server, app: &str, count: usize) -> common::Background {
    let watch = s.spawn_kubectl(&[
        "get",
        "pods",
        "-l",
        &format!("app={app}"),
        "-w",
        "--output-watch-events",
        "--no-headers",
    ]);
    wait_for(WAIT, "the watch's initial list", || {
        let out = watch.stdout();
        if out.lines().filter(|l| l.starts_with("ADDED")).count() >= count {
            Ok(())
        } else {
            Err(out)
        }
    });
    watch
}

/// DELETED pod names, in order, from a `kubectl get pods -w --output-watch-events --no-headers` log.
fn deleted_order(watch_log: &str) -> Vec<String> {
    watch_log
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next() == Some("DELETED"))
                .then(|| parts.next())
                .flatten()
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn ordered_ready_creates_in_order_and_scales_down_from_the_top() {
    let s = Server::start_with(&["--fake-nodes", "2"]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &sts("web", "OrderedReady", 3, "nginx:1", true),
    );

    // web-0 runs but is held unready: web-1 must not be created.
    wait_for(WAIT, "web-0 running and unready", || {
        let p = pods(&s, "web");
        let st = s.get_json(&["sts", "web"]);
        match p.as_slice() {
            [p0] if p0["status"]["phase"] == "Running"
                && !ready(p0)
                && st["status"]["replicas"] == 1
                && st["status"]["observedGeneration"] == st["metadata"]["generation"] =>
            {
                Ok(())
            }
            _ => Err(format!("{:?} status {}", names(&p), st["status"])),
        }
    });
    let p = pods(&s, "web");
    assert_eq!(
        names(&p),
        set(&["web-0"]),
        "web-1 created before web-0 was ready"
    );
    let p0 = &p[0];
    assert_eq!(
        p0["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "web-0"
    );
    assert_eq!(
        p0["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
        "0"
    );
    assert_eq!(p0["spec"]["hostname"], "web-0");
    assert_eq!(p0["spec"]["subdomain"], "web");
    let rev = p0["metadata"]["labels"]["controller-revision-hash"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(rev.starts_with("web-"), "revision label {rev}");

    // Each release lets exactly the next ordinal in.
    make_ready(&s, "web-0");
    wait_pods(&s, "web", &["web-0", "web-1"]);
    make_ready(&s, "web-1");
    wait_pods(&s, "web", &["web-0", "web-1", "web-2"]);
    make_ready(&s, "web-2");
    wait_for(WAIT, "3 ready replicas", || {
        let st = s.get_json(&["sts", "web"]);
        if st["status"]["readyReplicas"] == 3 && st["status"]["currentRevision"] == rev.as_str() {
            Ok(())
        } else {
            Err(st["status"].to_string())
        }
    });

    // Scale down: web-2 goes before web-1.
    let mut watch = watch_pods(&s, "web", 3);
    s.ok(&["scale", "sts", "web", "--replicas=1"]);
    wait_for(WAIT, "only web-0 left", || {
        let p = names(&pods(&s, "web"));
        let order = deleted_order(&watch.stdout());
        if p == set(&["web-0"]) && order.len() >= 2 {
            Ok(())
        } else {
            Err(format!("{p:?} deleted {order:?}"))
        }
    });
    assert_eq!(deleted_order(&watch.stdout()), vec!["web-2", "web-1"]);
    let _ = watch.try_exit();
}

#[test]
fn parallel_creates_all_at_once() {
    let s = Server::start_with(&["--fake-nodes", "2"]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &sts("par", "Parallel", 3, "nginx:1", true),
    );
    // All three exist while none is ready.
    let p = wait_pods(&s, "par", &["par-0", "par-1", "par-2"]);
    assert!(p.iter().all(|p| !ready(p)));
    for n in ["par-0", "par-1", "par-2"] {
        make_ready(&s, n);
    }
    let out = s.ok(&["rollout", "status", "sts/par", "--timeout=120s"]);
    assert!(out.contains("roll out complete"), "{out}");

    // Orphaned pods are adopted by a new set of the same shape.
    let uids = |p: &[Value]| -> BTreeSet<String> {
        p.iter()
            .filter_map(|p| p["metadata"]["uid"].as_str().map(str::to_string))
            .collect()
    };
    let before = uids(&pods(&s, "par"));
    s.ok(&["delete", "sts", "par", "--cascade=orphan"]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &sts("par", "Parallel", 3, "nginx:1", true),
    );
    wait_for(WAIT, "pods adopted by the new set", || {
        let st = s.get_json(&["sts", "par"]);
        let uid = st["metadata"]["uid"].clone();
        let p = pods(&s, "par");
        let adopted = p
            .iter()
            .filter(|p| p["metadata"]["ownerReferences"][0]["uid"] == uid)
            .count();
        if adopted == 3 && st["status"]["readyReplicas"] == 3 {
            Ok(())
        } else {
            Err(format!("adopted {adopted}, status {}", st["status"]))
        }
    });
    assert_eq!(
        uids(&pods(&s, "par")),
        before,
        "pods were replaced, not adopted"
    );
}

#[test]
fn rolling_update_history_and_undo() {
    let s = Server::start_with(&["--fake-nodes", "2"]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &sts("db", "OrderedReady", 3, "nginx:1", false),
    );
    let out = s.ok(&["rollout", "status", "sts/db", "--timeout=120s"]);
    assert!(out.contains("roll out complete"), "{out}");
    let first = s.get_json(&["sts", "db"])["status"]["currentRevision"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    let mut watch = watch_pods(&s, "db", 3);
    s.ok(&["set", "image", "sts/db", "c=nginx:2"]);
    let out = s.ok(&["rollout", "status", "sts/db", "--timeout=120s"]);
    assert!(out.contains("roll out complete"), "{out}");
    // Highest ordinal first.
    wait_for(WAIT, "three replacements", || {
        let order = deleted_order(&watch.stdout());
        if order.len() >= 3 {
            Ok(order)
        } else {
            Err(format!("{order:?}"))
        }
    });
    assert_eq!(
        deleted_order(&watch.stdout())[..3],
        ["db-2", "db-1", "db-0"]
    );
    let _ = watch.try_exit();
    wait_for(WAIT, "status at the new revision", || {
        let st = s.get_json(&["sts", "db"]);
        let status = &st["status"];
        if status["updatedReplicas"] == 3
            && status["currentRevision"] == status["updateRevision"]
            && status["currentRevision"] != first.as_str()
        {
            Ok(())
        } else {
            Err(status.to_string())
        }
    });
    for p in pods(&s, "db") {
        assert_eq!(p["spec"]["containers"][0]["image"], "nginx:2");
    }

    let hist = s.ok(&["rollout", "history", "sts/db"]);
    assert!(hist.contains("REVISION"), "{hist}");
    let revs: Vec<&str> = hist
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revs, ["1", "2"], "{hist}");
    let one = s.ok(&["rollout", "history", "sts/db", "--revision=1"]);
    assert!(one.contains("nginx:1"), "{one}");

    let out = s.ok(&["rollout", "undo", "sts/db", "--to-revision=1"]);
    assert!(out.contains("rolled back"), "{out}");
    let out = s.ok(&["rollout", "status", "sts/db", "--timeout=120s"]);
    assert!(out.contains("roll out complete"), "{out}");
    wait_for(WAIT, "pods back on nginx:1", || {
        let p = pods(&s, "db");
        let images: Vec<String> = p
            .iter()
            .map(|p| {
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        if p.len() == 3 && images.iter().all(|i| i == "nginx:1") {
            Ok(())
        } else {
            Err(format!("{images:?}"))
        }
    });
    // The old revision was reused with a new number.
    let hist = s.ok(&["rollout", "history", "sts/db"]);
    let revs: Vec<&str> = hist
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revs, ["2", "3"], "{hist}");
    let crs = s.get_json(&["controllerrevisions", "-l", "app=db"]);
    assert_eq!(crs["items"].as_array().map(Vec::len), Some(2), "{crs}");
}

const DS: &str = r#"{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"NAME"},
"spec":{"selector":{"matchLabels":{"app":"NAME"}},
"template":{"metadata":{"labels":{"app":"NAME"}},
"spec":{SELECTOR"containers":[{"name":"c","image":"agent:1"}]}}}}"#;

fn ds(name: &str, node_selector: Option<&str>) -> String {
    let sel = node_selector
        .map(|s| format!(r#""nodeSelector":{s},"#))
        .unwrap_or_default();
    DS.replace("NAME", name).replace("SELECTOR", &sel)
}

fn node_names(s: &Server) -> Vec<String> {
    let nodes = s.get_json(&["nodes"]);
    nodes["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

/// Node of each live pod of `app` (bound ones only).
fn placement(s: &Server, app: &str) -> Vec<String> {
    let mut nodes: Vec<String> = pods(s, app)
        .iter()
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
        .collect();
    nodes.sort();
    nodes
}

#[test]
fn daemonset_one_pod_per_node_and_node_selector() {
    let s = Server::start_with(&["--fake-nodes", "3"]);
    let mut all = wait_for(WAIT, "3 nodes", || {
        let n = node_names(&s);
        if n.len() == 3 {
            Ok(n)
        } else {
            Err(format!("{n:?}"))
        }
    });
    all.sort();

    s.ok_stdin(&["apply", "-f", "-"], &ds("agent", None));
    wait_for(WAIT, "one agent per node", || {
        let p = placement(&s, "agent");
        if p == all {
            Ok(())
        } else {
            Err(format!("{p:?}"))
        }
    });
    let out = s.ok(&["rollout", "status", "ds/agent", "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let st = s.get_json(&["ds", "agent"])["status"].clone();
    assert_eq!(st["desiredNumberScheduled"], 3, "{st}");
    assert_eq!(st["numberReady"], 3, "{st}");
    // Pinned through node affinity, bound by the scheduler.
    for p in pods(&s, "agent") {
        let term = &p["spec"]["affinity"]["nodeAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0];
        assert_eq!(term["matchFields"][0]["key"], "metadata.name", "{p}");
        assert_eq!(
            term["matchFields"][0]["values"][0], p["spec"]["nodeName"],
            "{p}"
        );
    }

    // Rolling update and history.
    s.ok(&["set", "image", "ds/agent", "c=agent:2"]);
    let out = s.ok(&["rollout", "status", "ds/agent", "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    wait_for(WAIT, "agents on agent:2", || {
        let p = pods(&s, "agent");
        let images: Vec<&str> = p
            .iter()
            .map(|p| p["spec"]["containers"][0]["image"].as_str().unwrap_or(""))
            .collect();
        if p.len() == 3 && images.iter().all(|i| *i == "agent:2") {
            Ok(())
        } else {
            Err(format!("{images:?}"))
        }
    });
    let hist = s.ok(&["rollout", "history", "ds/agent"]);
    assert!(hist.contains('1') && hist.contains('2'), "{hist}");
    let out = s.ok(&["rollout", "undo", "ds/agent"]);
    assert!(out.contains("rolled back"), "{out}");
    s.ok(&["rollout", "status", "ds/agent", "--timeout=120s"]);

    // A node selector: no pods until a node carries the label; relabelling moves it.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &ds("edge", Some(r#"{"role":"edge"}"#)),
    );
    wait_for(WAIT, "edge ds observed", || {
        let st = s.get_json(&["ds", "edge"]);
        if st["status"]["observedGeneration"] == 1 && st["status"]["desiredNumberScheduled"] == 0 {
            Ok(())
        } else {
            Err(st["status"].to_string())
        }
    });
    assert!(pods(&s, "edge").is_empty());
    s.ok(&["label", "node", &all[1], "role=edge"]);
    wait_for(WAIT, "edge pod on the labelled node", || {
        let p = placement(&s, "edge");
        if p == [all[1].clone()] {
            Ok(())
        } else {
            Err(format!("{p:?}"))
        }
    });
    s.ok(&["label", "node", &all[1], "role-"]);
    s.ok(&["label", "node", &all[2], "role=edge"]);
    wait_for(WAIT, "edge pod follows the label", || {
        let p = placement(&s, "edge");
        if p == [all[2].clone()] {
            Ok(())
        } else {
            Err(format!("{p:?}"))
        }
    });
    let out = s.ok(&["rollout", "status", "ds/edge", "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
}
