//! Two servers on one store: only the holder of the controller-manager Lease
//! runs controllers, and the other takes over when the holder dies.

mod common;

use std::time::Duration;

use common::{wait_for, Server};
use serde_json::Value;

fn holder(s: &Server) -> Option<String> {
    let out = s.kubectl(&[
        "get",
        "lease",
        "skiff-controller-manager",
        "-n",
        "kube-system",
        "-o",
        "json",
    ]);
    if !out.status.success() {
        return None;
    }
    let lease: Value = serde_json::from_slice(&out.stdout).ok()?;
    lease["spec"]["holderIdentity"].as_str().map(String::from)
}

fn pod_count(s: &Server, ns: &str) -> usize {
    let pods = s.get_json(&["pods", "-n", ns]);
    pods["items"].as_array().map_or(0, |items| {
        items
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .count()
    })
}

#[test]
fn only_the_lease_holder_runs_controllers_and_a_standby_takes_over() {
    let shared = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite:{}", shared.path().join("state.db").display());
    let mut a = Server::start_with(&["--store", &store, "--fake-nodes", "1"]);
    let first = wait_for(Duration::from_secs(30), "a lease holder", || {
        holder(&a).ok_or_else(|| "no lease".to_string())
    });
    let b = Server::start_with(&["--store", &store]);
    // B sees A's objects (one store) and A keeps the lease.
    assert_eq!(holder(&b).as_deref(), Some(first.as_str()));
    assert!(a.log().contains("became leader"), "{}", a.log());

    // A Deployment created through B is reconciled once (by A's controllers).
    b.create_ns("ha");
    b.ok_stdin(
        &["apply", "-n", "ha", "-f", "-"],
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: main, image: img}]}
"#,
    );
    wait_for(
        Duration::from_secs(60),
        "2 ready replicas seen through B",
        || {
            let d = b.get_json(&["deploy", "web", "-n", "ha"]);
            if d["status"]["readyReplicas"] == 2 {
                Ok(())
            } else {
                Err(d["status"].to_string())
            }
        },
    );
    assert_eq!(pod_count(&b, "ha"), 2, "controllers ran twice");
    assert!(
        !b.log().contains("became leader"),
        "the standby ran controllers:\n{}",
        b.log()
    );

    // A dies without releasing the lease; B takes over once it expires.
    a.kill9();
    wait_for(Duration::from_secs(60), "B to become leader", || {
        if b.log().contains("became leader") {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
    let second = holder(&b).expect("lease");
    assert_ne!(second, first);
    // B's controllers now do the work.
    b.ok(&["scale", "deploy/web", "-n", "ha", "--replicas=4"]);
    wait_for(
        Duration::from_secs(60),
        "B's controllers to create pods",
        || {
            let n = pod_count(&b, "ha");
            if n == 4 {
                Ok(())
            } else {
                Err(format!("{n} pods"))
            }
        },
    );
    let rs = b.get_json(&["rs", "-n", "ha"]);
    assert_eq!(rs["items"].as_array().map_or(0, Vec::len), 1);
}
