//! Pod usage from cgroups through metrics.k8s.io: `kubectl top pod` and
//! `kubectl top node` over real runc pods (needs root), and over fake nodes.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::node::*;
use common::Server;

/// `250m` → 250, `1` → 1000.
fn millicores(q: &str) -> Option<u64> {
    match q.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => q.parse::<u64>().ok().map(|c| c * 1000),
    }
}

/// `35Mi` → bytes.
fn bytes(q: &str) -> Option<u64> {
    for (suffix, mult) in [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)] {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<u64>().ok().map(|n| n * mult);
        }
    }
    q.parse().ok()
}

/// `kubectl top ... --no-headers` rows: name → (millicores, bytes), keyed
/// by the first column.
fn top(s: &Server, args: &[&str]) -> Option<Vec<(String, u64, u64)>> {
    let mut full = vec!["top"];
    full.extend_from_slice(args);
    full.push("--no-headers");
    let out = s.kubectl(&full);
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            // `top pod`: NAME CPU MEM; `top node`: NAME CPU CPU% MEM MEM%.
            let (cpu, mem) = if cols.len() >= 5 {
                (cols[1], cols[3])
            } else {
                (*cols.get(1)?, *cols.get(2)?)
            };
            Some((cols.first()?.to_string(), millicores(cpu)?, bytes(mem)?))
        })
        .collect()
}

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: burn}
spec:
  restartPolicy: Never
  containers:
  - name: spin
    image: busybox:test
    command: ["sh", "-c", "while :; do :; done"]
    resources:
      limits: {cpu: 200m, memory: 64Mi}
---
apiVersion: v1
kind: Pod
metadata: {name: hold}
spec:
  restartPolicy: Never
  containers:
  - name: mem
    image: busybox:test
    command: ["sh", "-c", "x=$(head -c 40000000 /dev/zero | tr '\\0' a); echo held; while :; do sleep 3600; done"]
    resources:
      limits: {memory: 256Mi}
"#;

#[test]
fn kubectl_top_shows_cgroup_usage_of_real_pods() {
    let s = Server::start_node(&[]);
    s.import_image(&busybox_archive(s.dir.path()));
    s.ok_stdin(&["apply", "-f", "-"], PODS);
    until(
        Duration::from_secs(60),
        || {
            let out = s.kubectl(&["logs", "hold"]);
            String::from_utf8_lossy(&out.stdout)
                .contains("held")
                .then_some(())
        },
        || format!("{}\n{}", s.ok(&["get", "pods", "-o", "wide"]), s.log()),
    );

    // The spinning pod uses CPU, held to about its 200m limit; the other
    // holds its 40 MB string (the loop keeps the shell from exec'ing sleep).
    let last = std::cell::RefCell::new(Vec::new());
    let rows = until(
        Duration::from_secs(60),
        || {
            let rows = top(&s, &["pod"])?;
            *last.borrow_mut() = rows.clone();
            let burn = rows.iter().find(|r| r.0 == "burn")?;
            let hold = rows.iter().find(|r| r.0 == "hold")?;
            (burn.1 >= 50 && hold.2 >= 30 << 20).then_some(rows)
        },
        || format!("last rows: {:?}\n{}", last.borrow(), s.log()),
    );
    let burn = rows.iter().find(|r| r.0 == "burn").unwrap();
    let hold = rows.iter().find(|r| r.0 == "hold").unwrap();
    // Generous: CFS lets a short window see a little more than the quota;
    // unthrottled, the loop would take a whole CPU (1000m).
    assert!(burn.1 <= 400, "CPU well above the 200m limit: {burn:?}");
    // (kubectl shows whole Mi: a spinning shell is "0Mi".)
    assert!(burn.2 < 64 << 20, "{burn:?}");
    assert!(hold.1 < 200, "a sleeping shell: {hold:?}");
    assert!(hold.2 < 200 << 20, "{hold:?}");

    // Per container, under its name.
    let out = s.ok(&["top", "pod", "burn", "--containers", "--no-headers"]);
    assert!(out.split_whitespace().take(2).eq(["burn", "spin"]), "{out}");

    // The node's usage covers its pods'.
    let node = until(
        Duration::from_secs(30),
        || {
            let rows = top(&s, &["node"])?;
            rows.into_iter().find(|r| r.0 == "skiff-node" && r.1 >= 50)
        },
        || s.log(),
    );
    assert!(node.2 >= 30 << 20, "{node:?}");

    // The node keeps a ledger of each pod's usage for billing.
    let uid = s.ok(&["get", "pod", "burn", "-o", "jsonpath={.metadata.uid}"]);
    let ledger = s.dir.path().join("node").join("usage.json");
    let bill = until(
        Duration::from_secs(60),
        || {
            let l: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&ledger).ok()?).ok()?;
            let bill = l["pods"][&uid].clone();
            (bill["cpu_millicore_seconds"].as_f64()? > 0.0).then_some(bill)
        },
        || format!("{:?}", std::fs::read_to_string(&ledger)),
    );
    assert!(
        bill["memory_byte_seconds"].as_f64().unwrap() > 0.0,
        "{bill}"
    );
}

#[test]
fn kubectl_top_reads_fake_node_usage() {
    let s = Server::start_with(&["--fake-nodes", "1"]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: busy
  annotations: {fake.skiff.dev/cpu-usage: "250m", fake.skiff.dev/memory-usage: "64Mi"}
spec:
  containers: [{name: app, image: example}]
"#,
    );
    let rows = until(
        Duration::from_secs(60),
        || top(&s, &["pod"]).filter(|r| r.iter().any(|r| r.0 == "busy")),
        || s.log(),
    );
    assert_eq!(rows, vec![("busy".to_string(), 250, 64 << 20)]);
    let nodes = until(
        Duration::from_secs(30),
        || top(&s, &["node"]).filter(|r| !r.is_empty()),
        || s.log(),
    );
    assert_eq!(nodes, vec![("fake-node-0".to_string(), 250, 64 << 20)]);
}
