//! The real node: pods as runc containers in their own network namespace,
//! driven with kubectl. Needs root (namespaces, mounts, cgroups).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{wait_for, Server};

/// Poll `f` until it gives `Some`; on timeout panic with `describe()`.
fn until<T>(
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
    mut describe: impl FnMut() -> String,
) -> T {
    wait_for(timeout, "a pod condition", || f().ok_or_else(&mut describe))
}

/// busybox-static as `busybox:test` (entrypoint-less, cmd `sh`).
fn busybox_archive(dir: &Path) -> PathBuf {
    let path = dir.join("busybox.oci.tar");
    skiff_image::build::ImageBuilder::busybox()
        .expect("busybox image")
        .cmd(["sh"])
        .write_oci_archive(&path, Some("busybox:test"))
        .expect("write image");
    path
}

fn node_server() -> Server {
    let s = Server::start_node(&[]);
    let archive = busybox_archive(s.dir.path());
    s.import_image(&archive);
    until(
        Duration::from_secs(30),
        || {
            let out = s.kubectl(&[
                "get",
                "node",
                "skiff-node",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
        },
        || s.log(),
    );
    s
}

fn pod_json(s: &Server, name: &str) -> serde_json::Value {
    s.get_json(&["pod", name])
}

fn wait_phase(s: &Server, name: &str, phase: &str) -> serde_json::Value {
    until(
        Duration::from_secs(60),
        || {
            let p = pod_json(s, name);
            (p["status"]["phase"] == phase).then_some(p)
        },
        || {
            format!(
                "{}\n{}",
                serde_json::to_string_pretty(&pod_json(s, name)).unwrap_or_default(),
                s.log()
            )
        },
    )
}

fn netns_count() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("nsfs"))
        .count()
}

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

    let before = netns_count();
    s.ok(&["delete", "pod", "hello", "--grace-period=1"]);
    until(
        Duration::from_secs(30),
        || {
            let out = s.kubectl(&["get", "pod", "hello"]);
            (!out.status.success()).then_some(())
        },
        || s.log(),
    );
    // Its namespaces (three bind mounts) are gone with it.
    assert!(
        netns_count() + 3 <= before,
        "namespace mounts left: {before} -> {}",
        netns_count()
    );
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
