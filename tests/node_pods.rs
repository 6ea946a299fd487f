//! The real node: pods as runc containers in their own network namespace,
//! driven with kubectl. Needs root (namespaces, mounts, cgroups).

mod common;

use std::path::Path;
use std::time::Duration;

use common::node::*;
use common::Server;

#[test]
fn a_pod_runs_as_a_real_container_with_its_own_address_and_logs() {
    let s = node_server();
    s.ok(&[
        "run", "hello", "--image=busybox:test", "--restart=Never", "--",
        "sh", "-c", "echo hello from $(hostname); cat /proc/1/cmdline | tr '\\0' ' '; echo; ip addr show eth0 | grep 'inet '; sleep 3600",
    ]);
    let pod = wait_phase(&s, "hello", "Running");
    let ip = pod["status"]["podIP"].as_str().expect("podIP").to_string();
    assert!(ip.starts_with("10.2"), "{pod}");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["ready"], true,
        "{pod}"
    );
    assert!(pod["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .is_some_and(|c| c.starts_with("runc://")));
    // The output is the container's: its hostname is the pod name, its pid 1
    // is the command, its eth0 has the pod's address.
    let logs = until(
        Duration::from_secs(20),
        || {
            let l = s.ok(&["logs", "hello"]);
            l.contains("inet ").then_some(l)
        },
        || s.log(),
    );
    assert!(logs.contains("hello from hello"), "{logs}");
    assert!(logs.contains("sh -c echo hello"), "{logs}");
    assert!(logs.contains(&format!("inet {ip}/")), "{logs}");
    // The host reaches the pod's address (the bridge routes it).
    let ping = std::process::Command::new("ping")
        .args(["-c1", "-W2", &ip])
        .output();
    if let Ok(out) = ping {
        assert!(
            out.status.success(),
            "ping {ip}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    let uid = pod["metadata"]["uid"].as_str().expect("uid").to_string();
    // One host mount per pod of one container: its network namespace. IPC
    // and UTS are the container's own, and its overlay rootfs is mounted
    // inside the container's mount namespace only.
    assert_eq!(
        mounts_of(&uid),
        1,
        "only the network namespace is a bind mount"
    );
    let parent = s.arg("--cgroup-parent").unwrap_or_default();
    let pod_cgroup = Path::new("/sys/fs/cgroup/memory")
        .join(&parent)
        .join(format!("pod{uid}"));
    assert!(
        pod_cgroup.is_dir(),
        "{} exists while the pod runs",
        pod_cgroup.display()
    );
    s.ok(&["delete", "pod", "hello", "--grace-period=1"]);
    until(
        Duration::from_secs(30),
        || {
            let out = s.kubectl(&["get", "pod", "hello"]);
            (!out.status.success()).then_some(())
        },
        || s.log(),
    );
    // Its namespaces (bind mounts) and root filesystem are gone with it,
    // its veth left the bridge, its cgroups are removed.
    assert_eq!(mounts_of(&uid), 0, "mounts of pod {uid} left behind");
    // What stays on the bridge are the node's warm sandboxes (4), no more.
    let bridge = s.arg("--node-bridge").unwrap_or_default();
    until(
        Duration::from_secs(30),
        || {
            let veths = std::process::Command::new("ip")
                .args(["-o", "link", "show", "master", &bridge])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            (veths.lines().count() == 4 && warm_count(&s) == 4).then_some(())
        },
        || format!("veths on {bridge} besides the 4 warm sandboxes"),
    );
    for hierarchy in ["memory", "cpu", "pids", "unified"] {
        let dir = Path::new("/sys/fs/cgroup")
            .join(hierarchy)
            .join(&parent)
            .join(format!("pod{uid}"));
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    let pods_dir = s.dir.path().join("node").join("pods");
    let left: Vec<_> = std::fs::read_dir(&pods_dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "pod state left behind: {left:?}");
}

#[test]
fn exit_codes_and_restart_policy_reach_the_status() {
    let s = node_server();
    s.ok(&[
        "run",
        "ok",
        "--image=busybox:test",
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "echo done",
    ]);
    s.ok(&[
        "run",
        "bad",
        "--image=busybox:test",
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "echo failing >&2; exit 3",
    ]);
    s.ok(&[
        "run",
        "nope",
        "--image=busybox:test",
        "--restart=Never",
        "--",
        "/no/such/binary",
    ]);
    let ok = wait_phase(&s, "ok", "Succeeded");
    let t = &ok["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["exitCode"], 0, "{ok}");
    assert_eq!(t["reason"], "Completed", "{ok}");
    assert_eq!(s.ok(&["logs", "ok"]), "done\n");

    let bad = wait_phase(&s, "bad", "Failed");
    let t = &bad["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["exitCode"], 3, "{bad}");
    assert_eq!(t["reason"], "Error", "{bad}");
    assert_eq!(s.ok(&["logs", "bad"]), "failing\n");

    let nope = wait_phase(&s, "nope", "Failed");
    let t = &nope["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["reason"], "StartError", "{nope}");
    assert!(
        t["message"]
            .as_str()
            .is_some_and(|m| m.contains("/no/such/binary")),
        "{nope}"
    );

    // restartPolicy Always: the container runs again, with lastState and a
    // growing restartCount, then backs off.
    s.ok(&[
        "run",
        "crash",
        "--image=busybox:test",
        "--",
        "sh",
        "-c",
        "echo run; exit 1",
    ]);
    let crash = until(
        Duration::from_secs(60),
        || {
            let p = pod_json(&s, "crash");
            let cs = &p["status"]["containerStatuses"][0];
            (cs["restartCount"].as_i64().unwrap_or(0) >= 1
                && cs["state"]["waiting"]["reason"] == "CrashLoopBackOff")
                .then_some(p)
        },
        || serde_json::to_string_pretty(&pod_json(&s, "crash")).unwrap_or_default(),
    );
    let cs = &crash["status"]["containerStatuses"][0];
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1, "{crash}");
    assert!(cs["state"]["waiting"]["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("back-off 10s restarting failed container=crash")));
    assert_eq!(s.ok(&["logs", "crash"]), "run\n");
    assert_eq!(s.ok(&["logs", "crash", "-p"]), "run\n");
}

#[test]
fn a_missing_image_waits_with_err_image_pull() {
    let s = node_server();
    s.ok(&[
        "run",
        "ghost",
        "--image=example.invalid/ghost:1",
        "--restart=Never",
    ]);
    let pod = until(
        Duration::from_secs(30),
        || {
            let p = pod_json(&s, "ghost");
            let reason = p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].clone();
            (reason == "ErrImagePull" || reason == "ImagePullBackOff").then_some(p)
        },
        || serde_json::to_string_pretty(&pod_json(&s, "ghost")).unwrap_or_default(),
    );
    assert_eq!(pod["status"]["phase"], "Pending", "{pod}");
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=ghost",
    ]);
    assert!(events.contains("example.invalid/ghost:1"), "{events}");
}

/// `(id, pid)` of the containers runc runs for this server's node.
fn runc_containers(s: &Server) -> Vec<(String, i64)> {
    let out = std::process::Command::new("runc")
        .arg("--root")
        .arg(s.dir.path().join("node").join("runc"))
        .args(["list", "--format", "json"])
        .output()
        .expect("runc list");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    list.as_array()
        .map(|a| {
            a.iter()
                .filter(|c| c["status"] == "running")
                .map(|c| {
                    (
                        c["id"].as_str().unwrap_or_default().to_string(),
                        c["pid"].as_i64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn running_pods_survive_a_server_kill_and_are_adopted() {
    let mut s = node_server();
    s.ok(&[
        "run",
        "ticker",
        "--image=busybox:test",
        "--",
        "sh",
        "-c",
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
    ]);
    wait_phase(&s, "ticker", "Running");
    let before = runc_containers(&s);
    assert_eq!(before.len(), 1, "{before:?}");
    s.restart(); // SIGKILL, then start again on the same data dir
                 // Same container process, still running, status unchanged.
    assert_eq!(runc_containers(&s), before);
    let pod = wait_phase(&s, "ticker", "Running");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["restartCount"], 0,
        "{pod}"
    );
    // Its output goes on being logged, and is read through the new server.
    let first = s.ok(&["logs", "ticker"]).lines().count();
    until(
        Duration::from_secs(20),
        || (s.ok(&["logs", "ticker"]).lines().count() > first + 3).then_some(()),
        || s.log(),
    );
    // An adopted pod is stopped like any other when deleted.
    let s2 = s;
    s2.ok(&["delete", "pod", "ticker", "--grace-period=0", "--force"]);
    until(
        Duration::from_secs(30),
        || runc_containers(&s2).is_empty().then_some(()),
        || format!("{:?}\n{}", runc_containers(&s2), s2.log()),
    );
}

#[test]
fn memory_limits_are_enforced_and_oom_kills_are_reported() {
    let s = node_server();
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: busybox:test
    command: ["sh", "-c", "echo start; tail /dev/zero"]
    resources:
      limits: {memory: 24Mi, cpu: 500m}
---
apiVersion: v1
kind: Pod
metadata: {name: limited}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox:test
    command: ["sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; echo done > /dev/termination-log"]
    securityContext: {allowPrivilegeEscalation: false}
    resources:
      limits: {memory: 64Mi}
"#,
    );
    let hog = wait_phase(&s, "hog", "Failed");
    let t = &hog["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{hog}");
    assert_eq!(t["exitCode"], 137, "{hog}");
    assert_eq!(hog["status"]["qosClass"], "Guaranteed", "{hog}");

    let limited = wait_phase(&s, "limited", "Succeeded");
    let t = &limited["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["message"], "done\n", "{limited}");
    let out = s.ok(&["logs", "limited"]);
    assert!(out.starts_with(&format!("{}\n", 64 * 1024 * 1024)), "{out}");
    // The default capability set (no SYS_ADMIN), no_new_privs, a seccomp filter.
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
}

#[test]
fn probes_gate_readiness_and_restart_unhealthy_containers() {
    let s = node_server();
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    image: busybox:test
    command: ["sh", "-c", "mkdir -p /www; httpd -p 8080 -h /www; sleep 4; echo ok > /www/ready; sleep 3600"]
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      httpGet: {path: /ready, port: http}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  containers:
  - name: live
    image: busybox:test
    command: ["sh", "-c", "touch /tmp/alive; sleep 2; rm /tmp/alive; sleep 3600"]
    livenessProbe:
      exec: {command: ["test", "-f", "/tmp/alive"]}
      periodSeconds: 1
      failureThreshold: 1
  terminationGracePeriodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {name: slow}
spec:
  containers:
  - name: slow
    image: busybox:test
    command: ["sleep", "3600"]
    startupProbe:
      tcpSocket: {port: 9999}
      periodSeconds: 1
      failureThreshold: 2
  terminationGracePeriodSeconds: 1
"#,
    );
    // Running but not ready until the file appears, then ready.
    until(
        Duration::from_secs(30),
        || {
            let c = container_status(&s, "web");
            (c["state"]["running"].is_object() && c["ready"] == false).then_some(())
        },
        || container_status(&s, "web").to_string(),
    );
    let pod = until(
        Duration::from_secs(30),
        || {
            let p = pod_json(&s, "web");
            (p["status"]["containerStatuses"][0]["ready"] == true).then_some(p)
        },
        || container_status(&s, "web").to_string(),
    );
    let ready = pod["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
        .unwrap_or_default();
    assert_eq!(ready["status"], "True", "{pod}");
    assert_eq!(container_status(&s, "web")["restartCount"], 0);

    // The liveness probe fails once the file is gone: restarted.
    until(
        Duration::from_secs(60),
        || {
            (container_status(&s, "live")["restartCount"]
                .as_i64()
                .unwrap_or(0)
                >= 1)
                .then_some(())
        },
        || container_status(&s, "live").to_string(),
    );
    // A startup probe that never passes: never started, restarted.
    let slow = until(
        Duration::from_secs(60),
        || {
            let c = container_status(&s, "slow");
            (c["restartCount"].as_i64().unwrap_or(0) >= 1).then_some(c)
        },
        || container_status(&s, "slow").to_string(),
    );
    // `sleep` as pid 1 ignores TERM: killed after the 1 s grace period.
    assert_eq!(slow["lastState"]["terminated"]["exitCode"], 137, "{slow}");
    let events = s.ok(&[
        "get",
        "events",
        "-o",
        "custom-columns=REASON:.reason,MSG:.message",
    ]);
    assert!(events.contains("Liveness probe failed"), "{events}");
    assert!(
        events.contains("Startup probe failed: dial tcp"),
        "{events}"
    );
    assert!(
        events.contains("Readiness probe failed: HTTP probe failed with statuscode: 404"),
        "{events}"
    );
    assert!(
        events.contains("Container live failed liveness probe, will be restarted"),
        "{events}"
    );
}

#[test]
fn exec_cp_and_port_forward_reach_the_container() {
    let s = node_server();
    s.ok(&[
        "run", "box", "--image=busybox:test", "--",
        "sh", "-c", "mkdir -p /www; echo page-from-$(hostname) > /www/index.html; httpd -f -p 127.0.0.1:8080 -h /www",
    ]);
    wait_phase(&s, "box", "Running");
    // exec without a terminal: stdout, stderr, exit code, stdin.
    let out = s.kubectl(&[
        "exec",
        "box",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err\n"));
    assert_eq!(
        s.ok_stdin(&["exec", "-i", "box", "--", "wc", "-c"], "12345")
            .trim(),
        "5"
    );
    // The same namespaces as the pod: hostname, address.
    assert_eq!(s.ok(&["exec", "box", "--", "hostname"]).trim(), "box");
    // A missing command is an error, not a hang.
    let out = s.kubectl(&["exec", "box", "--", "/no/such"]);
    assert!(!out.status.success());
    // With a terminal (kubectl needs one on its side too: `script` gives it).
    let tty = std::process::Command::new("script")
        .args(["-qc"])
        .arg(format!(
            "stty cols 91 rows 27; {} exec -it box -- sh -c 'tty; stty size; echo $TERM'",
            "kubectl"
        ))
        .arg("/dev/null")
        .env("KUBECONFIG", &s.kubeconfig)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script");
    let text = String::from_utf8_lossy(&tty.stdout);
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("27 91"), "{text}");
    assert!(text.contains("xterm"), "{text}");

    // cp both ways (tar through exec).
    let local = s.dir.path().join("copied.html");
    s.ok(&[
        "cp",
        "box:/www/index.html",
        local.to_str().unwrap_or_default(),
    ]);
    assert_eq!(
        std::fs::read_to_string(&local).unwrap_or_default(),
        "page-from-box\n"
    );
    let upload = s.dir.path().join("up.txt");
    std::fs::write(&upload, "uploaded\n").expect("write");
    s.ok(&["cp", upload.to_str().unwrap_or_default(), "box:/tmp/up.txt"]);
    assert_eq!(
        s.ok(&["exec", "box", "--", "cat", "/tmp/up.txt"]),
        "uploaded\n"
    );

    // port-forward to a server listening on the pod's own 127.0.0.1.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().map(|a| a.port()).unwrap_or(0)
    };
    let _pf = s.spawn_kubectl(&["port-forward", "pod/box", &format!("{port}:8080")]);
    let body = until(
        Duration::from_secs(20),
        || {
            let out = std::process::Command::new("curl")
                .args(["-s", "-m", "2", &format!("http://127.0.0.1:{port}/")])
                .output()
                .ok()?;
            let b = String::from_utf8_lossy(&out.stdout).into_owned();
            (!b.is_empty()).then_some(b)
        },
        || s.log(),
    );
    assert_eq!(body, "page-from-box\n");
}

#[test]
fn init_containers_run_in_order_before_the_app() {
    let s = node_server();
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: inits}
spec:
  initContainers:
  - {name: one, image: busybox:test, command: ["sh", "-c", "echo one; sleep 1"]}
  - {name: two, image: busybox:test, command: ["sh", "-c", "echo two"]}
  containers:
  - {name: app, image: busybox:test, command: ["sh", "-c", "echo app; sleep 3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: badinit}
spec:
  restartPolicy: Never
  initContainers:
  - {name: fail, image: busybox:test, command: ["sh", "-c", "exit 7"]}
  containers:
  - {name: app, image: busybox:test, command: ["sh", "-c", "echo never"]}
"#,
    );
    let pod = wait_phase(&s, "inits", "Running");
    let inits = pod["status"]["initContainerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(inits.len(), 2, "{pod}");
    for c in &inits {
        assert_eq!(c["state"]["terminated"]["reason"], "Completed", "{pod}");
    }
    // In order: one ended before two started, two before the app.
    let t = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    assert!(
        t(&inits[0]["state"]["terminated"]["finishedAt"])
            <= t(&inits[1]["state"]["terminated"]["startedAt"])
    );
    let app_started = t(&pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]);
    assert!(
        t(&inits[1]["state"]["terminated"]["finishedAt"]) <= app_started,
        "{pod}"
    );
    assert_eq!(s.ok(&["logs", "inits", "-c", "one"]), "one\n");
    assert_eq!(s.ok(&["logs", "inits", "-c", "two"]), "two\n");
    let all = s.ok(&["logs", "inits", "--all-containers", "--prefix"]);
    assert!(
        all.contains("[pod/inits/one] one") && all.contains("[pod/inits/app] app"),
        "{all}"
    );

    let bad = wait_phase(&s, "badinit", "Failed");
    assert_eq!(
        bad["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"], 7,
        "{bad}"
    );
    let app = &bad["status"]["containerStatuses"][0];
    assert!(
        app["state"]["waiting"].is_object(),
        "the app never ran: {bad}"
    );
}

#[test]
fn termination_runs_pre_stop_then_term_within_the_grace_period() {
    let s = node_server();
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: graceful}
spec:
  terminationGracePeriodSeconds: 20
  containers:
  - name: app
    image: busybox:test
    command: ["sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo up; while true; do sleep 0.1; done"]
    lifecycle:
      preStop:
        exec: {command: ["sh", "-c", "echo prestop > /proc/1/fd/1"]}
"#,
    );
    wait_phase(&s, "graceful", "Running");
    // Follow the log while the pod is deleted: the hook's line, then TERM's.
    let mut follow = s.spawn_kubectl(&["logs", "-f", "graceful"]);
    until(
        Duration::from_secs(10),
        || follow.stdout().contains("up").then_some(()),
        || follow.stdout(),
    );
    s.ok(&["delete", "pod", "graceful", "--wait=true"]);
    // The stream ends with the container.
    follow.wait_exit(Duration::from_secs(20));
    let text = follow.stdout();
    let (a, b) = (text.find("prestop"), text.find("got TERM"));
    assert!(a.is_some() && b.is_some() && a < b, "{text}");
}

#[test]
fn logs_options_tail_since_timestamps_previous_and_follow() {
    let s = node_server();
    s.ok(&[
        "run",
        "counter",
        "--image=busybox:test",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo line $i; done; sleep 1; echo later; sleep 3600",
    ]);
    wait_phase(&s, "counter", "Running");
    until(
        Duration::from_secs(20),
        || s.ok(&["logs", "counter"]).contains("later").then_some(()),
        || s.log(),
    );
    assert_eq!(s.ok(&["logs", "counter", "--tail=2"]), "line 5\nlater\n");
    let ts = s.ok(&["logs", "counter", "--timestamps", "--tail=1"]);
    let (stamp, rest) = ts.split_once(' ').unwrap_or_default();
    assert!(stamp.ends_with('Z') && stamp.contains('T'), "{ts}");
    assert_eq!(rest, "later\n");
    assert_eq!(s.ok(&["logs", "counter", "--since=1h"]).lines().count(), 6);
    assert_eq!(s.ok(&["logs", "counter", "--limit-bytes=7"]), "line 1\n");
    let out = s.kubectl(&["logs", "counter", "-p"]);
    assert!(!out.status.success(), "no previous run yet");
    // -f streams what comes after.
    s.ok(&[
        "exec",
        "counter",
        "--",
        "sh",
        "-c",
        "echo appended > /proc/1/fd/1",
    ]);
    let mut follow = s.spawn_kubectl(&["logs", "-f", "--tail=1", "counter"]);
    until(
        Duration::from_secs(10),
        || follow.stdout().contains("appended").then_some(()),
        || follow.stdout(),
    );
    s.ok(&[
        "exec",
        "counter",
        "--",
        "sh",
        "-c",
        "echo streamed > /proc/1/fd/1",
    ]);
    until(
        Duration::from_secs(10),
        || follow.stdout().contains("streamed").then_some(()),
        || follow.stdout(),
    );
    s.ok(&["delete", "pod", "counter", "--grace-period=1"]);
    follow.wait_exit(Duration::from_secs(20));
    let text = follow.stdout();
    assert!(text.starts_with("appended\n"), "{text}");
    assert!(text.contains("streamed\n"), "{text}");
}

#[test]
fn runtime_classes_pick_the_oci_runtime_or_keep_the_pod_pending() {
    let s = node_server();
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: plain}
handler: runc
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: exotic}
handler: nosuch
---
apiVersion: v1
kind: Pod
metadata: {name: plain}
spec:
  runtimeClassName: plain
  containers: [{name: c, image: busybox:test, command: ["sleep", "3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: exotic}
spec:
  runtimeClassName: exotic
  containers: [{name: c, image: busybox:test, command: ["sleep", "3600"]}]
"#,
    );
    wait_phase(&s, "plain", "Running");
    let events = until(
        Duration::from_secs(30),
        || {
            let e = s.ok(&[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=exotic",
            ]);
            e.contains("FailedCreatePodSandBox").then_some(e)
        },
        || s.ok(&["get", "events"]),
    );
    assert!(
        events.contains("no runtime for \"nosuch\" is configured"),
        "{events}"
    );
    assert_eq!(pod_json(&s, "exotic")["status"]["phase"], "Pending");
}

#[test]
fn bad_security_contexts_and_back_off_timing_show_in_the_status() {
    let s = node_server();
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: rootless}
spec:
  containers:
  - name: c
    image: busybox:test
    command: ["sleep", "3600"]
    securityContext: {runAsNonRoot: true}
---
apiVersion: v1
kind: Pod
metadata: {name: badcap}
spec:
  containers:
  - name: c
    image: busybox:test
    command: ["sleep", "3600"]
    securityContext: {capabilities: {add: ["NOT_A_CAP"]}}
---
apiVersion: v1
kind: Pod
metadata: {name: crashy}
spec:
  containers:
  - {name: c, image: busybox:test, command: ["sh", "-c", "exit 2"]}
"#,
    );
    let waiting = |name: &str, reason: &str| -> serde_json::Value {
        until(
            Duration::from_secs(30),
            || {
                let c = container_status(&s, name);
                (c["state"]["waiting"]["reason"] == reason).then_some(c)
            },
            || container_status(&s, name).to_string(),
        )
    };
    let c = waiting("rootless", "CreateContainerConfigError");
    assert!(
        c["state"]["waiting"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("runAsNonRoot and image will run as root")),
        "{c}"
    );
    let c = waiting("badcap", "CreateContainerConfigError");
    assert!(
        c["state"]["waiting"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("NOT_A_CAP")),
        "{c}"
    );
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=rootless",
    ]);
    assert!(events.contains("Failed"), "{events}");

    // Crash-loop back-off: the first restart is immediate, then 10 s, then
    // 20 s (the kubelet's doubling), seen in the start times of the runs.
    let starts = std::cell::RefCell::new(Vec::<String>::new());
    until(
        Duration::from_secs(90),
        || {
            let c = container_status(&s, "crashy");
            let t = c["lastState"]["terminated"]["startedAt"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let mut seen = starts.borrow_mut();
            if !t.is_empty() && !seen.contains(&t) {
                seen.push(t);
            }
            // Done once a gap of the second back-off (20 s) was seen.
            let secs: Vec<i64> = seen
                .iter()
                .map(|t| {
                    t.parse::<k8s_openapi::jiff::Timestamp>()
                        .map(|t| t.as_second())
                        .unwrap_or(0)
                })
                .collect();
            (secs.len() >= 3 && secs[secs.len() - 1] - secs[secs.len() - 2] >= 15).then_some(())
        },
        || format!("{:?} {}", starts.borrow(), container_status(&s, "crashy")),
    );
    let starts = starts.into_inner();
    let secs: Vec<i64> = starts
        .iter()
        .map(|t| {
            t.parse::<k8s_openapi::jiff::Timestamp>()
                .map(|t| t.as_second())
                .unwrap_or(0)
        })
        .collect();
    // (The immediate first restart often lands in the same second as the
    // first run, so it is not always a separate start time here.)
    let n = secs.len();
    let (gap1, gap2) = (secs[n - 2] - secs[n - 3], secs[n - 1] - secs[n - 2]);
    assert!((10..=14).contains(&gap1), "10 s of back-off: {starts:?}");
    assert!((20..=25).contains(&gap2), "then 20 s: {starts:?}");
}

#[test]
fn pods_the_api_lost_are_stopped_and_cleaned_after_a_restart() {
    let mut s = node_server();
    s.ok(&[
        "run",
        "orphan",
        "--image=busybox:test",
        "--",
        "sleep",
        "3600",
    ]);
    let pod = wait_phase(&s, "orphan", "Running");
    let uid = pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(runc_containers(&s).len(), 1);
    // The server dies and comes back with an empty store: the pod is gone
    // from the API, its container is not (yet).
    s.kill9();
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(s.dir.path().join(f));
    }
    s.restart();
    until(
        Duration::from_secs(60),
        || {
            (runc_containers(&s).is_empty()
                && mounts_of(&uid) == 0
                && !s.dir.path().join("node").join("pods").join(&uid).exists())
            .then_some(())
        },
        || {
            format!(
                "{:?} mounts {}\n{}",
                runc_containers(&s),
                mounts_of(&uid),
                s.log()
            )
        },
    );
}

#[test]
fn a_killed_supervisor_is_replaced_and_its_containers_restarted() {
    let s = node_server();
    s.ok(&[
        "run",
        "keep",
        "--image=busybox:test",
        "--",
        "sh",
        "-c",
        "echo started; sleep 3600",
    ]);
    wait_phase(&s, "keep", "Running");
    let pid_file = s.dir.path().join("node/supervisor/supervisor.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
    let _ = std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status();
    // A new supervisor comes up; the container it does not know is
    // replaced (restartPolicy Always), and logs work again.
    until(
        Duration::from_secs(60),
        || {
            let c = container_status(&s, "keep");
            (c["restartCount"].as_i64().unwrap_or(0) >= 1 && c["state"]["running"].is_object())
                .then_some(())
        },
        || format!("{}\n{}", container_status(&s, "keep"), s.log()),
    );
    let new_pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
    assert_ne!(new_pid.trim(), pid.trim());
    assert_eq!(runc_containers(&s).len(), 1, "the old container is gone");
    until(
        Duration::from_secs(20),
        || s.ok(&["logs", "keep"]).contains("started").then_some(()),
        || s.log(),
    );
}

#[test]
fn https_probes_skip_certificate_checks() {
    let s = node_server();
    // An HTTPS server on the host with a self-signed certificate; the probe
    // names it with `host`.
    let dir = s.dir.path();
    let (cert, key) = (dir.join("probe.crt"), dir.join("probe.key"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=probe",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl req");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().map(|a| a.port()).unwrap_or(0)
    };
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = KillOnDrop(
        std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &port.to_string()])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server"),
    );
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: tls}}
spec:
  containers:
  - name: c
    image: busybox:test
    command: ["sleep", "3600"]
    readinessProbe:
      httpGet: {{scheme: HTTPS, host: 127.0.0.1, port: {port}, path: /}}
      periodSeconds: 1
"#
        ),
    );
    until(
        Duration::from_secs(30),
        || (container_status(&s, "tls")["ready"] == true).then_some(()),
        || container_status(&s, "tls").to_string(),
    );
}

/// A gRPC health server (grpc.health.v1) listening on `port` inside the
/// network namespace at `netns`, answering SERVING while `serving` is set,
/// until `stop` is set.
fn grpc_health_server(
    netns: std::path::PathBuf,
    port: u16,
    serving: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&netns).expect("pod netns");
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let listener = std::net::TcpListener::bind(("0.0.0.0", port)).expect("bind in the pod");
        listener.set_nonblocking(true).expect("nonblocking");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            while !stop.load(Ordering::SeqCst) {
                let Ok(Ok((sock, _))) =
                    tokio::time::timeout(Duration::from_millis(200), listener.accept()).await
                else {
                    continue;
                };
                let serving = serving.clone();
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(sock).await else {
                        return;
                    };
                    while let Some(Ok((_req, mut respond))) = conn.accept().await {
                        let status = if serving.load(Ordering::SeqCst) { 1 } else { 2 };
                        let response = http::Response::builder()
                            .header("content-type", "application/grpc")
                            .body(())
                            .expect("response");
                        let Ok(mut send) = respond.send_response(response, false) else {
                            continue;
                        };
                        let _ = send.send_data(
                            bytes::Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]),
                            false,
                        );
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                        let _ = send.send_trailers(trailers);
                    }
                });
            }
        });
    })
}

#[test]
fn grpc_probes_follow_the_health_service() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let s = node_server();
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: grpc}
spec:
  containers:
  - name: c
    image: busybox:test
    command: ["sleep", "3600"]
    readinessProbe:
      grpc: {port: 50051}
      periodSeconds: 1
"#,
    );
    let pod = wait_phase(&s, "grpc", "Running");
    let uid = pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Nothing listens yet: not ready, with the failure in an event.
    until(
        Duration::from_secs(20),
        || {
            let e = s.ok(&[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=grpc",
            ]);
            e.contains("Readiness probe failed").then_some(())
        },
        || s.ok(&["get", "events"]),
    );
    assert_eq!(container_status(&s, "grpc")["ready"], false);
    let serving = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    struct Stop(Arc<AtomicBool>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let _stop = Stop(stop.clone());
    let netns = s.dir.path().join("node/pods").join(&uid).join("ns-net");
    let server = grpc_health_server(netns, 50051, serving.clone(), stop.clone());
    until(
        Duration::from_secs(20),
        || (container_status(&s, "grpc")["ready"] == true).then_some(()),
        || container_status(&s, "grpc").to_string(),
    );
    serving.store(false, Ordering::SeqCst);
    until(
        Duration::from_secs(20),
        || (container_status(&s, "grpc")["ready"] == false).then_some(()),
        || container_status(&s, "grpc").to_string(),
    );
    stop.store(true, Ordering::SeqCst);
    let _ = server.join();
}

#[test]
fn containers_of_a_pod_share_its_network_ipc_and_uts_namespaces() {
    let s = node_server();
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "duo"},
            "spec": {"terminationGracePeriodSeconds": 1,
              "initContainers": [{"name": "init", "image": "busybox:test",
                "command": ["sh", "-c", "for n in net ipc uts; do readlink /proc/self/ns/$n; done > /shared/init; hostname >> /shared/init"],
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]}],
              "containers": [
                {"name": "a", "image": "busybox:test",
                 "command": ["sh", "-c", "mkdir -p /www && echo from-a > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"]},
                {"name": "b", "image": "busybox:test", "command": ["sleep", "3600"],
                 "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]}],
              "volumes": [{"name": "shared", "emptyDir": {}}]}}"#,
    );
    wait_phase(&s, "duo", "Running");
    let ns_of = |c: &str| {
        s.ok(&[
            "exec",
            "duo",
            "-c",
            c,
            "--",
            "sh",
            "-c",
            "for n in net ipc uts; do readlink /proc/self/ns/$n; done; hostname",
        ])
    };
    let (a, b) = (ns_of("a"), ns_of("b"));
    assert_eq!(a, b, "both containers see the same namespaces");
    assert!(
        a.starts_with("net:[") && a.contains("\nipc:[") && a.contains("\nuts:["),
        "{a}"
    );
    assert!(a.ends_with("duo\n"), "{a}");
    let init = s.ok(&["exec", "duo", "-c", "b", "--", "cat", "/shared/init"]);
    assert_eq!(init, a, "the init container ran in them too");
    // Over the shared loopback (up from the start), b reaches a's server.
    let page = until(
        Duration::from_secs(20),
        || {
            let out = s.kubectl(&[
                "exec",
                "duo",
                "-c",
                "b",
                "--",
                "timeout",
                "5",
                "wget",
                "-qO-",
                "http://127.0.0.1:8080/",
            ]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains("from-a").then_some(text)
        },
        || s.log(),
    );
    assert_eq!(page.trim(), "from-a");

    // A pod of one container: its own IPC and UTS namespaces (nobody to
    // share them with), the pod's hostname, loopback up.
    s.ok(&[
        "run",
        "solo",
        "--image=busybox:test",
        "--restart=Never",
        "--",
        "sleep",
        "3600",
    ]);
    wait_phase(&s, "solo", "Running");
    let solo = s.ok(&[
        "exec",
        "solo",
        "--",
        "sh",
        "-c",
        "for n in ipc uts; do readlink /proc/self/ns/$n; done; hostname; ip -o link show lo",
    ]);
    assert!(solo.contains("\nsolo\n"), "{solo}");
    assert!(solo.contains("UP"), "{solo}");
    // IPv4 pods: no IPv6 on eth0 (nothing for the bridge to flood), `::1`
    // on loopback.
    let addrs = s.ok(&["exec", "solo", "--", "ip", "-o", "addr"]);
    assert!(
        addrs
            .lines()
            .any(|l| l.contains("lo") && l.contains("inet6 ::1")),
        "{addrs}"
    );
    assert!(
        !addrs
            .lines()
            .any(|l| l.contains("eth0") && l.contains("inet6")),
        "{addrs}"
    );
    assert!(
        addrs
            .lines()
            .any(|l| l.contains("eth0") && l.contains("inet ")),
        "{addrs}"
    );
    let duo_ipc = a.lines().nth(1).unwrap_or_default().to_string();
    assert!(!solo.contains(&duo_ipc), "{solo} vs {a}");
}

/// The host-local reservations of the node: address → CNI container id.
fn reservations(s: &Server) -> Vec<(String, String)> {
    let root = s.dir.path().join("node").join("ipam");
    let mut out = Vec::new();
    for net in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(net.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.parse::<std::net::IpAddr>().is_ok() {
                let id = std::fs::read_to_string(f.path()).unwrap_or_default();
                out.push((name, id.lines().next().unwrap_or_default().to_string()));
            }
        }
    }
    out
}

fn warm_count(s: &Server) -> usize {
    std::fs::read_dir(s.dir.path().join("node").join("warm"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("ns-net").exists())
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn pods_take_warm_sandboxes_and_the_pool_refills() {
    let s = node_server();
    let warm_ids = |s: &Server| -> Vec<(String, String)> {
        reservations(s)
            .into_iter()
            .filter(|(_, id)| id.starts_with("warm-"))
            .collect()
    };
    until(
        Duration::from_secs(30),
        || (warm_count(&s) == 4 && warm_ids(&s).len() == 4).then_some(()),
        || format!("{:?}\n{}", reservations(&s), s.log()),
    );
    let before = warm_ids(&s);
    s.ok(&[
        "run",
        "w",
        "--image=busybox:test",
        "--restart=Never",
        "--",
        "sleep",
        "3600",
    ]);
    let pod = wait_phase(&s, "w", "Running");
    let ip = pod["status"]["podIP"].as_str().expect("podIP").to_string();
    // The pod's address is a warm sandbox's, reserved under that id.
    let (_, id) = before
        .iter()
        .find(|(a, _)| *a == ip)
        .unwrap_or_else(|| panic!("{ip} not among the warm sandboxes {before:?}"));
    let out = s.ok(&["exec", "w", "--", "ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(out.contains(&format!("inet {ip}/")), "{out}");
    // The pool makes another.
    until(
        Duration::from_secs(30),
        || (warm_count(&s) == 4 && warm_ids(&s).len() == 5).then_some(()),
        || format!("{:?}", reservations(&s)),
    );
    // The pod gone, its address is released under the warm id it came with.
    s.ok(&["delete", "pod", "w", "--grace-period=1"]);
    until(
        Duration::from_secs(30),
        || (!reservations(&s).iter().any(|(_, i)| i == id)).then_some(()),
        || format!("{:?}", reservations(&s)),
    );
    assert_eq!(warm_ids(&s).len(), 4, "{:?}", reservations(&s));
}
