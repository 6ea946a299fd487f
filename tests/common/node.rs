//! Helpers of the tests that run real pods on a server's node.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{wait_for, Server};

/// Poll `f` until it gives `Some`; on timeout panic with `describe()`.
pub fn until<T>(
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
    mut describe: impl FnMut() -> String,
) -> T {
    wait_for(timeout, "a condition", || f().ok_or_else(&mut describe))
}

/// busybox-static as `busybox:test` (every applet, cmd `sh`), as an OCI archive in `dir`.
pub fn busybox_archive(dir: &Path) -> PathBuf {
    let path = dir.join("busybox.oci.tar");
    skiff_image::build::ImageBuilder::busybox()
        .expect("busybox image")
        .cmd(["sh"])
        .write_oci_archive(&path, Some("busybox:test"))
        .expect("write image");
    path
}

/// A server with a real node, `busybox:test` imported, the node Ready.
pub fn node_server() -> Server {
    let s = Server::start_node(&[]);
    let archive = busybox_archive(s.dir.path());
    s.import_image(&archive);
    wait_for(Duration::from_secs(30), "the node to be Ready", || {
        let out = s.kubectl(&[
            "get",
            "node",
            "skiff-node",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        let ready = String::from_utf8_lossy(&out.stdout) == "True";
        ready.then_some(()).ok_or_else(|| s.log())
    });
    s
}

pub fn pod_json(s: &Server, name: &str) -> serde_json::Value {
    s.get_json(&["pod", name])
}

/// The first container's status of pod `name`.
pub fn container_status(s: &Server, name: &str) -> serde_json::Value {
    pod_json(s, name)["status"]["containerStatuses"][0].clone()
}

/// Wait for pod `name` to reach `phase`; returns the pod.
pub fn wait_phase(s: &Server, name: &str, phase: &str) -> serde_json::Value {
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

/// Mounts under the pod's directory (namespace files, root filesystems, volumes).
pub fn mounts_of(uid: &str) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&format!("/pods/{uid}/")))
        .count()
}
