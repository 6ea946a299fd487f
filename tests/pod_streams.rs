//! `kubectl logs`, `exec`, `attach` and `port-forward` end to end against fake
//! nodes: the API server's checks (pod, container, node), the hand-off to the
//! node's kubelet router, and the stream protocols kubectl speaks (WebSocket
//! channels, SPDY inside a WebSocket). Fake nodes run no processes, so exec,
//! attach and port-forward must fail with the runtime's message, promptly.

mod common;

use std::io::Read;
use std::time::Duration;

use common::{wait_for, Background, Server};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

fn start(ns: &str) -> Server {
    let s = Server::start_with(&["--fake-nodes", "1"]);
    s.create_ns(ns);
    s
}

fn pod(s: &Server, ns: &str, name: &str, containers: &[&str], extra: Value) {
    let mut spec = json!({
        "containers": containers
            .iter()
            .map(|c| json!({"name": c, "image": "busybox:1.36"}))
            .collect::<Vec<_>>(),
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.get("spec")) {
        for (k, v) in extra.as_object().into_iter().flatten() {
            spec.insert(k.clone(), v.clone());
        }
    }
    let manifest = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns,
            "annotations": extra.get("annotations").cloned().unwrap_or(json!({})),
        },
        "spec": spec,
    });
    s.ok_stdin(&["create", "-f", "-"], &manifest.to_string());
}

/// Bound straight to the fake node (no scheduler needed).
fn bound() -> Value {
    json!({"spec": {"nodeName": "fake-node-0"}})
}

fn wait_running(s: &Server, ns: &str, name: &str) -> Value {
    wait_for(WAIT, &format!("pod {name} Running"), || {
        let p = s.get_json(&["pod", name, "-n", ns]);
        if p["status"]["phase"] == "Running" {
            Ok(p)
        } else {
            Err(p["status"].to_string())
        }
    })
}

/// Run kubectl in the background and wait (bounded) for it to exit: a hang is
/// a failure with kubectl's output, not a stuck test.
fn run(s: &Server, args: &[&str]) -> (bool, String, String) {
    let mut bg = s.spawn_kubectl(args);
    let status = bg.wait_exit(WAIT);
    (status.success(), bg.stdout(), bg.stderr())
}

#[test]
fn kubectl_logs_reads_the_node_runtime() {
    let ns = "logs";
    let s = start(ns);
    pod(&s, ns, "one", &["main"], bound());
    pod(&s, ns, "two", &["a", "b"], bound());
    pod(
        &s,
        ns,
        "pending",
        &["main"],
        json!({"spec": {"nodeSelector": {"no-such": "node"}}}),
    );
    pod(
        &s,
        ns,
        "restarts",
        &["main"],
        json!({
            "spec": {"nodeName": "fake-node-0"},
            "annotations": {"fake.skiff.dev/run-seconds": "0.5"},
        }),
    );
    pod(
        &s,
        ns,
        "done",
        &["main"],
        json!({
            "spec": {"nodeName": "fake-node-0", "restartPolicy": "Never"},
            "annotations": {"fake.skiff.dev/run-seconds": "0.5"},
        }),
    );
    wait_running(&s, ns, "one");
    wait_running(&s, ns, "two");

    let out = s.ok(&["logs", "one", "-n", ns]);
    assert!(out.contains("fake container started"), "{out}");

    let out = s.ok(&["logs", "one", "-n", ns, "--timestamps"]);
    let first = out.lines().next().unwrap_or_default();
    let (stamp, rest) = first.split_once(' ').unwrap_or_default();
    assert!(
        stamp.contains('T') && stamp.ends_with('Z'),
        "RFC 3339 prefix: {first:?}"
    );
    assert_eq!(rest, "fake container started");

    // --tail: only the last line of a finished pod's (stable) log.
    let done = wait_for(WAIT, "pod done Succeeded", || {
        let p = s.get_json(&["pod", "done", "-n", ns]);
        if p["status"]["phase"] == "Succeeded" {
            Ok(s.ok(&["logs", "done", "-n", ns]))
        } else {
            Err(p["status"].to_string())
        }
    });
    assert_eq!(
        done,
        "fake container started\nfake container exited with code 0\n"
    );
    let tail = s.ok(&["logs", "done", "-n", ns, "--tail=1"]);
    assert_eq!(tail, "fake container exited with code 0\n");

    wait_for(WAIT, "restarts has logged a restart", || {
        let out = s.ok(&["logs", "restarts", "-n", ns]);
        if out.contains("restart") {
            Ok(())
        } else {
            Err(out)
        }
    });
    // -p: the run before the restart ended with the exit line.
    let prev = s.ok(&["logs", "restarts", "-n", ns, "-p"]);
    assert!(prev.contains("fake container exited with code 0"), "{prev}");
    let err = s.fails(&["logs", "one", "-n", ns, "-p"]);
    assert!(
        err.contains(
            "Error from server (BadRequest): previous terminated container \"main\" in pod \"one\" not found"
        ),
        "{err}"
    );

    // -f: the fake's log has no writer, so following ends with what there is.
    let (ok, out, err) = run(&s, &["logs", "-f", "one", "-n", ns]);
    assert!(ok, "{err}");
    assert!(out.contains("fake container started"), "{out}");

    // Several containers: kubectl picks the first (and says so), -c picks one,
    // --all-containers reads each.
    let (ok, out, err) = run(&s, &["logs", "two", "-n", ns]);
    assert!(ok, "{err}");
    assert!(out.contains("fake container started"), "{out}");
    assert!(
        err.contains("Defaulted container \"a\" out of: a, b"),
        "{err}"
    );
    let out = s.ok(&["logs", "two", "-c", "b", "-n", ns]);
    assert!(out.contains("fake container started"), "{out}");
    let out = s.ok(&["logs", "two", "--all-containers", "-n", ns]);
    assert_eq!(out.matches("fake container started").count(), 2, "{out}");

    let err = s.fails(&["logs", "two", "-c", "nope", "-n", ns]);
    assert!(
        err.contains("container nope is not valid for pod two"),
        "{err}"
    );
    let err = s.fails(&["logs", "missing", "-n", ns]);
    assert!(
        err.contains("pods \"missing\" not found in namespace \"logs\""),
        "{err}"
    );
    let err = s.fails(&["logs", "pending", "-n", ns]);
    assert!(
        err.contains("Error from server (BadRequest): pod pending does not have a host assigned"),
        "{err}"
    );

    // Bound to a node nobody serves.
    pod(
        &s,
        ns,
        "ghost",
        &["main"],
        json!({"spec": {"nodeName": "ghost-node"}}),
    );
    let err = s.fails(&["logs", "ghost", "-n", ns]);
    assert!(
        err.contains("Error from server (BadRequest): node ghost-node is not reachable"),
        "{err}"
    );

    // The API server's own checks, without kubectl's client-side defaulting.
    let ep = s.endpoint();
    let r = ep.curl_full(
        "GET",
        &format!("/api/v1/namespaces/{ns}/pods/two/log"),
        &[],
        None,
        None,
    );
    assert_eq!(r.code, 400, "{}", r.body);
    assert_eq!(r.json()["reason"], "BadRequest");
    assert_eq!(
        r.json()["message"],
        "a container name must be specified for pod two, choose one of: [a b]"
    );
    let r = ep.curl_full(
        "GET",
        &format!("/api/v1/namespaces/{ns}/pods/two/log?container=zzz"),
        &[],
        None,
        None,
    );
    assert_eq!(r.code, 400, "{}", r.body);
    assert_eq!(
        r.json()["message"],
        "container zzz is not valid for pod two"
    );
    let r = ep.curl_full(
        "GET",
        &format!("/api/v1/namespaces/{ns}/pods/one/log?tailLines=x"),
        &[],
        None,
        None,
    );
    assert_eq!(r.code, 400, "{}", r.body);
    assert_eq!(r.json()["reason"], "BadRequest");
    let r = ep.curl_full(
        "GET",
        &format!("/api/v1/namespaces/{ns}/pods/one/log?limitBytes=4"),
        &[],
        None,
        None,
    );
    assert_eq!((r.code, r.body.as_str()), (200, "fake"));
}

#[test]
fn kubectl_exec_and_attach_print_the_runtime_refusal() {
    let ns = "exec";
    let s = start(ns);
    pod(&s, ns, "one", &["main"], bound());
    pod(
        &s,
        ns,
        "pending",
        &["main"],
        json!({"spec": {"nodeSelector": {"no-such": "node"}}}),
    );
    wait_running(&s, ns, "one");

    let (ok, out, err) = run(&s, &["exec", "one", "-n", ns, "--", "echo", "hi"]);
    assert!(!ok, "exec must fail on a fake node: {out}");
    assert!(
        err.contains(
            "error executing command in container: fake nodes run no processes: exec is not available"
        ),
        "{err}"
    );

    let (ok, _, err) = run(&s, &["exec", "-i", "-t", "one", "-n", ns, "--", "sh"]);
    assert!(!ok);
    assert!(err.contains("exec is not available"), "{err}");

    let (ok, _, err) = run(&s, &["attach", "one", "-n", ns]);
    assert!(!ok);
    assert!(
        err.contains("error attaching to container: this runtime cannot attach to containers"),
        "{err}"
    );

    let (ok, _, err) = run(&s, &["exec", "one", "-c", "nope", "-n", ns, "--", "true"]);
    assert!(!ok);
    assert!(
        err.contains("container nope is not valid for pod one"),
        "{err}"
    );

    let (ok, _, err) = run(&s, &["exec", "pending", "-n", ns, "--", "true"]);
    assert!(!ok);
    assert!(
        err.contains("pod pending does not have a host assigned"),
        "{err}"
    );
}

#[test]
fn kubectl_port_forward_reports_the_runtime_refusal() {
    let ns = "pf";
    let s = start(ns);
    pod(&s, ns, "one", &["main"], bound());
    wait_running(&s, ns, "one");

    let pf: Background = s.spawn_kubectl(&["port-forward", "-n", ns, "pod/one", ":8080"]);
    let local = wait_for(WAIT, "kubectl port-forward listening", || {
        let out = pf.stdout();
        out.lines()
            .find_map(|l| {
                l.strip_prefix("Forwarding from 127.0.0.1:")
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|p| p.parse::<u16>().ok())
            })
            .ok_or(format!("stdout: {out}\nstderr: {}", pf.stderr()))
    });
    // One connection: the node opens the stream pair, the runtime refuses, and
    // the local connection is closed.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", local)).expect("connect");
    conn.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut buf = Vec::new();
    let _ = conn.read_to_end(&mut buf); // EOF or reset: either ends the connection
    assert!(buf.is_empty(), "no bytes from a refused forward: {buf:?}");
    let err = wait_for(WAIT, "kubectl reports the forwarding error", || {
        let err = pf.stderr();
        if err.contains("port-forward is not available") {
            Ok(err)
        } else {
            Err(err)
        }
    });
    assert!(
        err.contains(&format!("error forwarding port 8080 to pod {ns}/one")),
        "{err}"
    );
    assert!(
        err.contains("fake nodes run no processes: port-forward is not available"),
        "{err}"
    );
}
