//! Acknowledged writes survive `kill -9`: every object the API answered 2xx
//! for is there after a restart, with the resourceVersion it was acknowledged
//! with, and new writes continue above every acknowledged revision.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_for, Endpoint, Server};
use serde_json::{json, Value};

const NS: &str = "dur";
const INITIAL: usize = 200;
const THREADS: usize = 4;

fn cms() -> String {
    format!("/api/v1/namespaces/{NS}/configmaps")
}

/// What the API acknowledged: name -> resourceVersion of the last 2xx reply.
type Acked = Arc<Mutex<BTreeMap<String, u64>>>;

fn rv_of(reply: &Value) -> u64 {
    reply["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("reply without a numeric resourceVersion: {reply}"))
}

fn create(ep: &Endpoint, name: &str, value: &str) -> (u16, Value) {
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": value}});
    let r = ep.curl_full(
        "POST",
        &cms(),
        &[],
        Some("application/json"),
        Some(body.to_string().as_bytes()),
    );
    (r.code, r.json())
}

fn patch(ep: &Endpoint, name: &str, value: &str) -> (u16, Value) {
    let body = json!({"data": {"v": value}});
    let r = ep.curl_full(
        "PATCH",
        &format!("{}/{name}", cms()),
        &[],
        Some("application/merge-patch+json"),
        Some(body.to_string().as_bytes()),
    );
    (r.code, r.json())
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut s = Server::start();
    s.create_ns(NS);
    let ep = s.endpoint();
    let acked: Acked = Arc::default();

    // 1. INITIAL creates from a few parallel clients.
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (ep, acked) = (ep.clone(), acked.clone());
            scope.spawn(move || {
                for i in (t..INITIAL).step_by(THREADS) {
                    let name = format!("init-{i:03}");
                    let (code, reply) = create(&ep, &name, "0");
                    assert_eq!(code, 201, "create {name}: {reply}");
                    acked.lock().expect("acked").insert(name, rv_of(&reply));
                }
            });
        }
    });
    assert_eq!(acked.lock().expect("acked").len(), INITIAL);
    {
        let a = acked.lock().expect("acked");
        let mut rvs: Vec<u64> = a.values().copied().collect();
        rvs.sort_unstable();
        rvs.dedup();
        assert_eq!(rvs.len(), INITIAL, "every write gets its own revision");
    }

    // 2. A burst of creates and updates from background threads; kill -9 in the middle.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    // Names whose last request got no reply: it may or may not have committed.
    let uncertain: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut workers = Vec::new();
    for t in 0..2 {
        let (ep, acked, stop, done, uncertain) = (
            ep.clone(),
            acked.clone(),
            stop.clone(),
            done.clone(),
            uncertain.clone(),
        );
        workers.push(std::thread::spawn(move || {
            for i in 0..5_000usize {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                // Alternate: create a new object, update an initial one.
                let (name, (code, reply)) = if i % 2 == 0 {
                    let name = format!("burst-{t}-{i:04}");
                    let r = create(&ep, &name, "b");
                    (name, r)
                } else {
                    let name = format!("init-{:03}", (i * 7 + t) % INITIAL);
                    let r = patch(&ep, &name, &format!("u{i}"));
                    (name, r)
                };
                match code {
                    200 | 201 => {
                        acked.lock().expect("acked").insert(name, rv_of(&reply));
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    // No reply: the server is gone; stop after this one.
                    0 => {
                        uncertain.lock().expect("uncertain").push(name);
                        return;
                    }
                    other => panic!("unexpected {other} for {name}: {reply}"),
                }
            }
        }));
    }
    wait_for(
        Duration::from_secs(60),
        "some burst writes to be acknowledged",
        || {
            let n = done.load(Ordering::SeqCst);
            if n >= 40 {
                Ok(())
            } else {
                Err(format!("{n} acknowledged"))
            }
        },
    );
    s.kill9();
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().expect("burst worker panicked");
    }
    let acked = acked.lock().expect("acked").clone();
    let uncertain = uncertain.lock().expect("uncertain").clone();
    let max_acked = acked.values().copied().max().unwrap_or(0);

    // 3. Restart and compare.
    s.restart();
    let ep = s.endpoint();
    let r = ep.curl_full("GET", &cms(), &[], None, None);
    assert_eq!(r.code, 200, "list after restart: {}", r.body);
    let list = r.json();
    let live: BTreeMap<String, u64> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        // The root CA ConfigMap every namespace gets is not the test's.
        .filter(|i| i["metadata"]["name"] != "kube-root-ca.crt")
        .map(|i| {
            (
                i["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                rv_of(i),
            )
        })
        .collect();
    let mut lost = Vec::new();
    let mut changed = Vec::new();
    for (name, rv) in &acked {
        match live.get(name) {
            None => lost.push(name.clone()),
            Some(got) if got == rv => {}
            // An unanswered update may have committed after the last acknowledged one.
            Some(got) if uncertain.contains(name) && got > rv => {}
            Some(got) => changed.push(format!("{name}: acknowledged rv {rv}, found {got}")),
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged objects lost after kill -9: {lost:?}",
        lost.len()
    );
    assert!(
        changed.is_empty(),
        "resourceVersions differ after restart: {changed:?}"
    );
    let unexpected: Vec<&String> = live
        .keys()
        .filter(|n| !acked.contains_key(*n) && !uncertain.contains(n))
        .collect();
    assert!(
        unexpected.is_empty(),
        "objects nobody wrote: {unexpected:?}"
    );
    let list_rv: u64 = list["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(
        list_rv >= max_acked,
        "list resourceVersion {list_rv} is below an acknowledged write ({max_acked})"
    );

    // 4. The revision counter continues above everything acknowledged.
    let (code, reply) = create(&ep, "after-restart", "x");
    assert_eq!(code, 201, "{reply}");
    assert!(
        rv_of(&reply) > max_acked,
        "revision went backwards: {} <= {max_acked}",
        rv_of(&reply)
    );

    // 5. Reads by resourceVersion and a watch from before the crash still work.
    let some_rv = acked["init-000"];
    let r = ep.curl_full(
        "GET",
        &format!(
            "{}?watch=true&resourceVersion={}&timeoutSeconds=1",
            cms(),
            some_rv
        ),
        &[],
        None,
        None,
    );
    assert_eq!(r.code, 200, "watch from a pre-crash revision: {}", r.body);
    let events: Vec<Value> = r
        .body
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "ADDED" && e["object"]["metadata"]["name"] == "after-restart"),
        "watch replay lacks the post-restart create: {}",
        r.body
    );
}

#[test]
fn kubectl_sees_the_same_state_after_kill_9() {
    let mut s = Server::start();
    s.create_ns("k");
    let manifest = (0..10)
        .map(|i| format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}, namespace: k}}\ndata: {{i: \"{i}\"}}\n"))
        .collect::<Vec<_>>()
        .join("---\n");
    s.ok_stdin(&["apply", "-f", "-"], &manifest);
    s.ok(&["delete", "cm", "c3", "-n", "k"]);
    s.ok(&["label", "cm", "c4", "-n", "k", "kept=yes"]);
    let before = s.ok(&[
        "get",
        "cm",
        "-n",
        "k",
        "-o",
        "custom-columns=N:.metadata.name,RV:.metadata.resourceVersion,L:.metadata.labels.kept",
        "--no-headers",
    ]);
    s.kill9();
    s.restart();
    let after = s.ok(&[
        "get",
        "cm",
        "-n",
        "k",
        "-o",
        "custom-columns=N:.metadata.name,RV:.metadata.resourceVersion,L:.metadata.labels.kept",
        "--no-headers",
    ]);
    assert_eq!(after, before, "state differs after kill -9 and restart");
    assert!(!after.contains("c3 "), "deleted object came back:\n{after}");
    // Re-applying the same manifest is a no-op for the surviving objects.
    let out = s.ok_stdin(&["apply", "-f", "-"], &manifest);
    assert!(
        out.contains("configmap/c0 unchanged") && out.contains("configmap/c3 created"),
        "{out}"
    );
}
