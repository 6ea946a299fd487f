//! Garbage collection (Background, Foreground, Orphan), watch with initial
//! events, health and metrics endpoints, and the CLI, against a real server.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{wait_for, Server};
use serde_json::{json, Value};

/// Create a ConfigMap owned by `owner` (blocking owner deletion when asked).
fn create_dependent(s: &Server, ns: &str, name: &str, owner: &str, block: bool) {
    let uid = s.get_json(&["-n", ns, "cm", owner])["metadata"]["uid"]
        .as_str()
        .expect("owner uid")
        .to_string();
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": uid, "blockOwnerDeletion": block}
        ]},
    });
    s.ok_stdin(&["create", "-f", "-"], &cm.to_string());
}

fn names(s: &Server, ns: &str) -> Vec<String> {
    let list = s.get_json(&["-n", ns, "cm"]);
    list["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn garbage_collector_honours_every_propagation_policy() {
    let s = Server::start();
    s.create_ns("gc");

    // Background: the owner goes at once, the dependents follow.
    s.create_cm("gc", "bg-owner", &[]);
    create_dependent(&s, "gc", "bg-a", "bg-owner", false);
    create_dependent(&s, "gc", "bg-b", "bg-owner", false);
    s.ok(&["-n", "gc", "delete", "cm", "bg-owner"]);
    wait_for(
        Duration::from_secs(20),
        "background dependents deleted",
        || {
            let n = names(&s, "gc");
            if n.iter().any(|x| x.starts_with("bg-")) {
                Err(format!("{n:?}"))
            } else {
                Ok(())
            }
        },
    );

    // Foreground: kubectl waits until the owner is gone, which is only after the
    // blocking dependents are gone.
    s.create_cm("gc", "fg-owner", &[]);
    create_dependent(&s, "gc", "fg-a", "fg-owner", true);
    create_dependent(&s, "gc", "fg-b", "fg-owner", true);
    s.ok(&[
        "-n",
        "gc",
        "delete",
        "cm",
        "fg-owner",
        "--cascade=foreground",
        "--timeout=30s",
    ]);
    let left = names(&s, "gc");
    assert!(
        !left.iter().any(|x| x.starts_with("fg-")),
        "after a foreground delete returned: {left:?}"
    );

    // Orphan: dependents stay and lose the owner reference.
    s.create_cm("gc", "or-owner", &[]);
    create_dependent(&s, "gc", "or-a", "or-owner", true);
    s.ok(&[
        "-n",
        "gc",
        "delete",
        "cm",
        "or-owner",
        "--cascade=orphan",
        "--timeout=30s",
    ]);
    wait_for(
        Duration::from_secs(20),
        "orphaned dependent released",
        || {
            let dep = s.get_json(&["-n", "gc", "cm", "or-a"]);
            match dep["metadata"].get("ownerReferences") {
                None => Ok(()),
                Some(refs) => Err(refs.to_string()),
            }
        },
    );
    assert!(names(&s, "gc").contains(&"or-a".to_string()));
    let gone = s.fails(&["-n", "gc", "get", "cm", "or-owner"]);
    assert!(gone.contains("NotFound"), "{gone}");

    // A dependent whose owner never existed is collected too.
    let orphan = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "dangling", "namespace": "gc", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "00000000-0000-0000-0000-000000000000"}
        ]},
    });
    s.ok_stdin(&["create", "-f", "-"], &orphan.to_string());
    wait_for(
        Duration::from_secs(20),
        "dangling dependent deleted",
        || {
            let n = names(&s, "gc");
            if n.contains(&"dangling".to_string()) {
                Err(format!("{n:?}"))
            } else {
                Ok(())
            }
        },
    );
}

#[test]
fn watch_sends_initial_events_then_the_end_bookmark() {
    let s = Server::start();
    s.create_ns("w");
    s.create_cm("w", "one", &[("a", "1")]);
    s.create_cm("w", "two", &[("a", "2")]);
    let ep = s.endpoint();
    let out = Command::new("curl")
        .args(["-sS", "-N", "--max-time", "3", "--cacert"])
        .arg(&ep.ca)
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", ep.token))
        .arg(format!(
            "{}/api/v1/namespaces/w/configmaps?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan",
            ep.url
        ))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds, ["ADDED", "ADDED", "BOOKMARK"], "{text}");
    let names: Vec<&str> = events
        .iter()
        .take(2)
        .filter_map(|e| e["object"]["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["one", "two"]);
    let bookmark = &events[2]["object"];
    assert_eq!(
        bookmark["metadata"]["annotations"]["k8s.io/initial-events-end"], "true",
        "{bookmark}"
    );
    let rv: u64 = bookmark["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("bookmark rv");
    let newest: u64 = events[1]["object"]["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("rv");
    assert!(
        rv >= newest,
        "bookmark {rv} must not be older than the initial state {newest}"
    );
}

#[test]
fn health_and_metrics_endpoints() {
    let s = Server::start();
    s.create_cm("default", "m", &[]);
    for path in ["/healthz", "/livez", "/readyz"] {
        let (code, body) = s.curl("GET", path, None, None);
        assert_eq!((code, body.as_str()), (200, "ok"), "{path}");
    }
    // A short watch, so the watch families have a series.
    let ep = s.endpoint();
    let _ = Command::new("curl")
        .args(["-sS", "-N", "--max-time", "1", "--cacert"])
        .arg(&ep.ca)
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", ep.token))
        .arg(format!(
            "{}/api/v1/namespaces/default/configmaps?watch=1",
            ep.url
        ))
        .output()
        .expect("curl watch");
    let (code, metrics) = s.curl("GET", "/metrics", None, None);
    assert_eq!(code, 200);
    for family in [
        "skiff_apiserver_requests_total{verb=\"CREATE\",resource=\"configmaps\",code=\"201\"}",
        "skiff_apiserver_request_duration_seconds_bucket",
        "skiff_store_statement_duration_seconds_bucket{statement=\"commit\"",
        "skiff_apiserver_watches_started_total{resource=\"configmaps\"} 1",
        "skiff_apiserver_watches{resource=\"configmaps\"}",
    ] {
        assert!(
            metrics.contains(family),
            "/metrics lacks {family}:\n{metrics}"
        );
    }
    // /version is public, like Kubernetes' system:public-info-viewer.
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(s.ca_path())
        .arg(format!("{}/version", s.url))
        .output()
        .expect("curl");
    let v: Value = serde_json::from_slice(&out.stdout).expect("version JSON");
    assert_eq!(v["major"], "1");
    assert!(
        v["gitVersion"]
            .as_str()
            .is_some_and(|g| g.starts_with("v1.")),
        "{v}"
    );
}

#[test]
fn cli_version_and_help() {
    let bin = env!("CARGO_BIN_EXE_skiff");
    let out = Command::new(bin)
        .arg("version")
        .output()
        .expect("skiff version");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("skiff "), "{text}");
    assert!(text.contains("Kubernetes API v1."), "{text}");
    let out = Command::new(bin)
        .args(["server", "--help"])
        .output()
        .expect("skiff server --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--data-dir",
        "--store",
        "SKIFF_LISTEN",
        "SKIFF_DATA_DIR",
    ] {
        assert!(help.contains(flag), "help lacks {flag}:\n{help}");
    }
    let out = Command::new(bin)
        .args(["server", "--store", "postgres"])
        .output()
        .expect("bad store");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown store"));
}

#[test]
fn cluster_ips_are_unique_validated_and_released() {
    let s = Server::start();
    let svc = |name: &str, ip: Option<&str>| {
        let mut spec = json!({"selector": {"app": name}, "ports": [{"port": 80}]});
        if let Some(ip) = ip {
            spec["clusterIP"] = json!(ip);
        }
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
            .to_string()
    };
    let mut seen = std::collections::HashSet::new();
    for i in 0..5 {
        let name = format!("s{i}");
        s.ok_stdin(&["create", "-f", "-"], &svc(&name, None));
        let ip = s.get_json(&["svc", &name])["spec"]["clusterIP"]
            .as_str()
            .expect("clusterIP")
            .to_string();
        assert!(ip.starts_with("10."), "{ip}");
        assert!(seen.insert(ip.clone()), "{ip} handed out twice");
    }
    // An explicit address already in use is rejected, naming the field.
    let taken = s.get_json(&["svc", "s0"])["spec"]["clusterIP"]
        .as_str()
        .expect("ip")
        .to_string();
    let (code, body) = s.curl(
        "POST",
        "/api/v1/namespaces/default/services",
        Some("application/json"),
        Some(svc("dup", Some(&taken)).as_bytes()),
    );
    let st: Value = serde_json::from_str(&body).expect("Status");
    assert_eq!(code, 422, "{st}");
    assert_eq!(
        st["details"]["causes"][0]["field"], "spec.clusterIPs",
        "{st}"
    );
    assert!(
        st["message"]
            .as_str()
            .unwrap_or("")
            .contains("provided IP is already allocated"),
        "{st}"
    );
    // Outside the service CIDR.
    let (code, _) = s.curl(
        "POST",
        "/api/v1/namespaces/default/services",
        Some("application/json"),
        Some(svc("far", Some("192.168.0.10")).as_bytes()),
    );
    assert_eq!(code, 422);
    // Headless services get none.
    s.ok_stdin(&["create", "-f", "-"], &svc("headless", Some("None")));
    assert_eq!(
        s.get_json(&["svc", "headless"])["spec"]["clusterIP"],
        "None"
    );
    // Deleting a Service gives its address back.
    s.ok(&["delete", "svc", "s0"]);
    s.ok_stdin(&["create", "-f", "-"], &svc("again", Some(&taken)));
    assert_eq!(
        s.get_json(&["svc", "again"])["spec"]["clusterIP"],
        taken.as_str()
    );
    // The kubernetes Service keeps 10.96.0.1 across a restart.
    let mut s = s;
    s.restart();
    assert_eq!(
        s.get_json(&["-n", "default", "svc", "kubernetes"])["spec"]["clusterIP"],
        "10.96.0.1"
    );
}
