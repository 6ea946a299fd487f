//! The real node pulls images: pods whose images live in a registry
//! (Debian's docker-registry on 127.0.0.1, images pushed with skopeo),
//! pull policies, pull errors and back-off as the kubelet reports them,
//! and imagePullSecrets for a registry that wants credentials. Needs root.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{wait_for, Server};

/// bcrypt of "skiff-secret" (user "skiff"), for the registry's htpasswd.
const HTPASSWD: &str = "skiff:$2a$05$skiffimagetestsaltsaleAXxBXJzDEPIv9Xz5jUtI23CfKJZnnaa\n";

/// A docker-registry process on a free 127.0.0.1 port, killed on drop.
struct Registry {
    child: Child,
    addr: String,
    /// Its access log (one line a request).
    access_log: std::path::PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// The blobs of repository `repo` fetched with GET, one entry a request.
    fn blob_gets(&self, repo: &str) -> Vec<String> {
        let needle = format!("\"GET /v2/{repo}/blobs/");
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(&needle).map(|(_, rest)| rest))
            .map(|rest| rest.split(' ').next().unwrap_or_default().to_string())
            .collect()
    }

    fn start(dir: &Path, with_auth: bool) -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.join("registry-data").display()
        );
        if with_auth {
            let htpasswd = dir.join("htpasswd");
            std::fs::write(&htpasswd, HTPASSWD).unwrap();
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: skiff-node-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let cfg_path = dir.join("registry.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let access_log = dir.join("registry-access.log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdout(std::fs::File::create(&access_log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");
        let reg = Registry {
            child,
            addr,
            access_log,
        };
        wait_for(Duration::from_secs(20), "docker-registry to listen", || {
            let mut s = std::net::TcpStream::connect(&reg.addr).map_err(|e| e.to_string())?;
            let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
            let mut buf = [0u8; 8];
            s.read_exact(&mut buf).map_err(|e| e.to_string())?;
            buf.starts_with(b"HTTP/1.")
                .then_some(())
                .ok_or_else(|| "not HTTP".to_string())
        });
        reg
    }

    /// Push busybox (cmd `sh`) as `<addr>/<name>` with skopeo.
    fn push_busybox(&self, dir: &Path, name: &str, creds: Option<&str>) {
        let archive = dir.join("busybox-push.oci.tar");
        if !archive.exists() {
            skiff_image::build::ImageBuilder::busybox()
                .expect("busybox image")
                .cmd(["sh"])
                .write_oci_archive(&archive, None)
                .expect("write image");
        }
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        let out = cmd
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("docker://{}/{name}", self.addr))
            .output()
            .expect("skopeo must be installed");
        assert!(
            out.status.success(),
            "skopeo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn node_server() -> Server {
    let s = Server::start_node(&[]);
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

/// The first container's status of pod `name`.
fn container_status(s: &Server, name: &str) -> serde_json::Value {
    s.get_json(&["pod", name])["status"]["containerStatuses"][0].clone()
}

/// Wait until the pod's container waits with `reason`; its status then.
fn wait_waiting(s: &Server, name: &str, reason: &str) -> serde_json::Value {
    wait_for(
        Duration::from_secs(60),
        &format!("pod {name} waiting with {reason}"),
        || {
            let c = container_status(s, name);
            if c["state"]["waiting"]["reason"] == reason {
                Ok(c)
            } else {
                Err(c.to_string())
            }
        },
    )
}

fn wait_running(s: &Server, name: &str) -> serde_json::Value {
    wait_for(
        Duration::from_secs(90),
        &format!("pod {name} running"),
        || {
            let p = s.get_json(&["pod", name]);
            if p["status"]["phase"] == "Running" {
                Ok(p)
            } else {
                Err(format!("{}\n{}", p["status"], s.log()))
            }
        },
    )
}

/// `(type, reason, message)` of the events about pod `name`.
fn events_of(s: &Server, name: &str) -> Vec<(String, String, String)> {
    let list = s.get_json(&["events"]);
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|e| e["involvedObject"]["name"] == name)
                .map(|e| {
                    let f = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                    (f("type"), f("reason"), f("message"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Wait for an event about `pod` with `reason` whose message has `part`.
fn wait_event(s: &Server, pod: &str, kind: &str, reason: &str, part: &str) -> String {
    wait_for(
        Duration::from_secs(60),
        &format!("a {kind} {reason} event on {pod} mentioning {part:?}"),
        || {
            let evs = events_of(s, pod);
            evs.iter()
                .find(|(t, r, m)| t == kind && r == reason && m.contains(part))
                .map(|(_, _, m)| m.clone())
                .ok_or_else(|| format!("{evs:#?}"))
        },
    )
}

fn pod_yaml(name: &str, image: &str, policy: &str, secret: Option<&str>) -> String {
    let secrets = secret
        .map(|s| format!("  imagePullSecrets:\n  - name: {s}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n{secrets}  containers:\n  - name: main\n    image: {image}\n    imagePullPolicy: {policy}\n    command: [\"sh\", \"-c\", \"echo pulled-and-running; sleep 3600\"]\n"
    )
}

fn tmpdir(test: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("skiff-nodeimg-{test}-{}-", std::process::id()))
        .tempdir_in("/tmp")
        .unwrap()
}

#[test]
fn pods_pull_their_images_from_a_registry_and_report_pull_errors() {
    let tmp = tmpdir("pull");
    let reg = Registry::start(tmp.path(), false);
    reg.push_busybox(tmp.path(), "test/busybox:1", None);
    let image = format!("{}/test/busybox:1", reg.addr);
    let s = node_server();

    // Pulled on first use (plain HTTP to a loopback registry), then runs.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("pulled", &image, "IfNotPresent", None),
    );
    let pod = wait_running(&s, "pulled");
    let image_id = pod["status"]["containerStatuses"][0]["imageID"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        image_id.starts_with(&format!("{}/test/busybox@sha256:", reg.addr)),
        "{pod}"
    );
    let logs = wait_for(Duration::from_secs(20), "the pod's output", || {
        let l = s.ok(&["logs", "pulled"]);
        if l.contains("pulled-and-running") {
            Ok(l)
        } else {
            Err(l)
        }
    });
    assert!(logs.contains("pulled-and-running"), "{logs}");
    wait_event(
        &s,
        "pulled",
        "Normal",
        "Pulling",
        &format!("Pulling image {image:?}"),
    );
    wait_event(
        &s,
        "pulled",
        "Normal",
        "Pulled",
        &format!("Successfully pulled image {image:?} in "),
    );

    // A second pod finds it present (IfNotPresent).
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("present", &image, "IfNotPresent", None),
    );
    wait_running(&s, "present");
    wait_event(
        &s,
        "present",
        "Normal",
        "Pulled",
        &format!("Container image {image:?} already present on machine"),
    );

    // An image the registry does not have: ErrImagePull with the
    // registry's reason, then ImagePullBackOff while backing off.
    let missing = format!("{}/test/nope:1", reg.addr);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("missing", &missing, "IfNotPresent", None),
    );
    let failed = wait_event(
        &s,
        "missing",
        "Warning",
        "Failed",
        &format!("Failed to pull image {missing:?}"),
    );
    assert!(failed.to_lowercase().contains("unknown"), "{failed}");
    wait_event(&s, "missing", "Warning", "Failed", "Error: ErrImagePull");
    let c = wait_waiting(&s, "missing", "ImagePullBackOff");
    let msg = c["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        msg.contains(&format!("Back-off pulling image {missing:?}")),
        "{c}"
    );
    assert!(msg.to_lowercase().contains("unknown"), "{c}");
    wait_event(
        &s,
        "missing",
        "Normal",
        "BackOff",
        &format!("Back-off pulling image {missing:?}"),
    );
    wait_event(
        &s,
        "missing",
        "Warning",
        "Failed",
        "Error: ImagePullBackOff",
    );
    assert_eq!(
        s.get_json(&["pod", "missing"])["status"]["phase"],
        "Pending"
    );

    // Never, and the node does not have it.
    let absent = format!("{}/test/busybox:never-pushed", reg.addr);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("never", &absent, "Never", None),
    );
    let c = wait_waiting(&s, "never", "ErrImageNeverPull");
    assert!(
        c["state"]["waiting"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("is not present with pull policy of Never"),
        "{c}"
    );
    // Never with an image the node has runs without asking the registry.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("never-present", &image, "Never", None),
    );
    wait_running(&s, "never-present");

    // Not a reference at all.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("invalid", "Bad_Name::x", "IfNotPresent", None),
    );
    wait_waiting(&s, "invalid", "InvalidImageName");
    wait_event(
        &s,
        "invalid",
        "Warning",
        "InspectFailed",
        "invalid reference format",
    );

    // Two pods wanting a new image at once: it is fetched once (every
    // blob GET once in the registry's log), one pod pulls, the other finds
    // it present.
    reg.push_busybox(tmp.path(), "test/shared:1", None);
    let shared = format!("{}/test/shared:1", reg.addr);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            "{}---\n{}",
            pod_yaml("shared-a", &shared, "IfNotPresent", None),
            pod_yaml("shared-b", &shared, "IfNotPresent", None)
        ),
    );
    wait_running(&s, "shared-a");
    wait_running(&s, "shared-b");
    let gets = reg.blob_gets("test/shared");
    assert!(!gets.is_empty(), "no blob fetched");
    let mut unique = gets.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), gets.len(), "a blob fetched twice: {gets:?}");
    for p in ["shared-a", "shared-b"] {
        wait_event(&s, p, "Normal", "Pulled", &format!("{shared:?}"));
    }
    let pulled: Vec<&str> = ["shared-a", "shared-b"]
        .into_iter()
        .filter(|p| {
            events_of(&s, p)
                .iter()
                .any(|(_, r, m)| r == "Pulled" && m.starts_with("Successfully pulled"))
        })
        .collect();
    assert_eq!(pulled.len(), 1, "{pulled:?}");

    // An image that appears while the pull backs off: the container then
    // starts, and its crash-loop back-off starts afresh (the first restart
    // is immediate; the pull's back-off is not carried over).
    let late = format!("{}/test/late:1", reg.addr);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("late", &late, "IfNotPresent", None)
            .replace("restartPolicy: Never", "restartPolicy: Always")
            .replace("echo pulled-and-running; sleep 3600", "exit 3"),
    );
    wait_event(&s, "late", "Warning", "Failed", "Error: ErrImagePull");
    reg.push_busybox(tmp.path(), "test/late:1", None);
    let c = wait_waiting(&s, "late", "CrashLoopBackOff");
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 3, "{c}");
    assert_eq!(c["restartCount"], 2, "{c}");
    let msg = c["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(msg.starts_with("back-off 10s restarting failed"), "{c}");
}

#[test]
fn image_pull_secrets_open_an_authenticated_registry() {
    let tmp = tmpdir("auth");
    let reg = Registry::start(tmp.path(), true);
    reg.push_busybox(tmp.path(), "private/busybox:1", Some("skiff:skiff-secret"));
    let image = format!("{}/private/busybox:1", reg.addr);
    let s = node_server();

    // Without credentials the registry refuses.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("anonymous", &image, "IfNotPresent", None),
    );
    let failed = wait_event(
        &s,
        "anonymous",
        "Warning",
        "Failed",
        &format!("Failed to pull image {image:?}"),
    );
    let lower = failed.to_lowercase();
    assert!(
        lower.contains("401") || lower.contains("authorized"),
        "{failed}"
    );
    wait_waiting(&s, "anonymous", "ImagePullBackOff");

    // A missing secret is reported, and the pull still fails.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("no-such-secret", &image, "IfNotPresent", Some("absent")),
    );
    wait_event(
        &s,
        "no-such-secret",
        "Warning",
        "FailedToRetrieveImagePullSecret",
        "absent",
    );

    // With a kubernetes.io/dockerconfigjson secret it pulls.
    s.ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={}", reg.addr),
        "--docker-username=skiff",
        "--docker-password=skiff-secret",
    ]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("authorized", &image, "IfNotPresent", Some("regcred")),
    );
    wait_running(&s, "authorized");
    let logs = wait_for(Duration::from_secs(20), "the pod's output", || {
        let l = s.ok(&["logs", "authorized"]);
        if l.contains("pulled-and-running") {
            Ok(l)
        } else {
            Err(l)
        }
    });
    assert!(logs.contains("pulled-and-running"), "{logs}");
    wait_event(
        &s,
        "authorized",
        "Normal",
        "Pulled",
        &format!("Successfully pulled image {image:?}"),
    );

    // The older kubernetes.io/dockercfg secret works too (Always: the
    // image is on the node now, so only a pull proves the credentials).
    let dockercfg = tmp.path().join("dockercfg.json");
    std::fs::write(
        &dockercfg,
        format!(
            r#"{{"{}":{{"username":"skiff","password":"skiff-secret"}}}}"#,
            reg.addr
        ),
    )
    .unwrap();
    s.ok(&[
        "create",
        "secret",
        "generic",
        "legacy",
        "--type=kubernetes.io/dockercfg",
        &format!("--from-file=.dockercfg={}", dockercfg.display()),
    ]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("legacy", &image, "Always", Some("legacy")),
    );
    wait_running(&s, "legacy");
    wait_event(
        &s,
        "legacy",
        "Normal",
        "Pulled",
        &format!("Successfully pulled image {image:?}"),
    );

    // A wrong password is refused like none.
    s.ok(&[
        "create",
        "secret",
        "docker-registry",
        "badcred",
        &format!("--docker-server={}", reg.addr),
        "--docker-username=skiff",
        "--docker-password=wrong",
    ]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("wrong-password", &image, "Always", Some("badcred")),
    );
    let failed = wait_event(
        &s,
        "wrong-password",
        "Warning",
        "Failed",
        &format!("Failed to pull image {image:?}"),
    );
    assert!(failed.to_lowercase().contains("authorized"), "{failed}");
}
