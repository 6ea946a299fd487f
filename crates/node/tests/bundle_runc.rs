//! Container specs from `skiff_node::bundle` run by the real runc 1.1 with
//! cgroups from `skiff_node::cgroups`: a busybox rootfs, pod namespaces
//! bind-mounted like the runtime's, and checks made from inside the
//! container (`id`, `/proc/self/status`, the filesystem) and from the host
//! (cgroup files, OOM counters, CPU stats). Needs root, runc and
//! busybox-static; everything made is removed by guards, also on failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use oci_spec::image::ImageConfiguration;
use serde_json::json;
use skiff_node::bundle::{
    self, BindMount, ContainerFiles, NamespaceMode, NodeSettings, PodNamespaces, Prepared,
    Propagation,
};
use skiff_node::cgroups::{Cgroups, CpuSample};

const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "id", "cat", "env", "echo", "tail", "hostname", "touch", "readlink", "sleep", "true",
    "wc", "grep", "ls", "stat",
];

/// Everything one test made; dropped in reverse order of making.
struct Fixture {
    name: String,
    dir: tempfile::TempDir,
    ns_files: Vec<PathBuf>,
    runc_root: PathBuf,
    containers: Vec<String>,
    cgroups: Cgroups,
    pod_uid: String,
}

impl Fixture {
    fn new(test: &str) -> Fixture {
        let name = format!("{test}-{}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&format!("skiff-bundle-{name}-"))
            .tempdir()
            .unwrap();
        let runc_root = dir.path().join("runc");
        std::fs::create_dir(&runc_root).unwrap();
        let parent = format!("skiff-test-{}", name.replace('_', "-"));
        let cgroups = Cgroups::detect(&parent).unwrap();
        let pod_uid = format!("{:08x}-{name}", std::process::id());
        let mut f = Fixture {
            name,
            dir,
            ns_files: Vec::new(),
            runc_root,
            containers: Vec::new(),
            cgroups,
            pod_uid,
        };
        f.make_rootfs();
        f.make_namespaces();
        f
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    fn make_rootfs(&self) {
        use std::os::unix::fs::PermissionsExt;
        let root = self.rootfs();
        for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "work"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/work:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            root.join("etc/group"),
            "root:x:0:\nwheel:x:10:root,app\nstaff:x:50:app\napp:x:1001:\n",
        )
        .unwrap();
    }

    fn make_namespaces(&mut self) {
        let ns = self.dir.path().join("ns");
        std::fs::create_dir(&ns).unwrap();
        let files: Vec<PathBuf> = ["net", "ipc", "uts"].iter().map(|n| ns.join(n)).collect();
        for f in &files {
            std::fs::write(f, "").unwrap();
        }
        let status = std::process::Command::new("unshare")
            .arg(format!("--net={}", files[0].display()))
            .arg(format!("--ipc={}", files[1].display()))
            .arg(format!("--uts={}", files[2].display()))
            .arg("true")
            .status()
            .unwrap();
        assert!(status.success(), "unshare failed");
        self.ns_files = files;
    }

    fn namespaces(&self) -> PodNamespaces {
        PodNamespaces {
            network: NamespaceMode::Join(self.ns_files[0].clone()),
            ipc: NamespaceMode::Join(self.ns_files[1].clone()),
            uts: NamespaceMode::Join(self.ns_files[2].clone()),
            pid: NamespaceMode::New,
        }
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    /// Plan, write and return the bundle dir of `container` in `pod`.
    fn bundle(
        &mut self,
        pod: &Pod,
        container: &Container,
        image: &ImageConfiguration,
        env: &[(String, String)],
    ) -> (String, PathBuf) {
        let id = format!("{}-{}", container.name, self.name).replace('_', "-");
        // As the node does: the image stays a lower layer, the runtime mounts
        // the container's overlay inside the container's mount namespace.
        let own = self.dir.path().join(format!("c-{id}"));
        for d in ["root", "upper", "work"] {
            std::fs::create_dir_all(own.join(d)).unwrap();
        }
        let prepared = Prepared {
            id: id.clone(),
            rootfs: own.join("root"),
            rootfs_overlay: Some(vec![
                format!("lowerdir={}", self.rootfs().display()),
                format!("upperdir={}", own.join("upper").display()),
                format!("workdir={}", own.join("work").display()),
            ]),
            image_layers: vec![self.rootfs()],
            namespaces: self.namespaces(),
            cgroups_path: self.cgroups.container_path(&self.pod_uid, &id).unwrap(),
            mounts: vec![BindMount {
                source: self.dir.path().join("volume"),
                destination: "/data".into(),
                read_only: false,
                propagation: Propagation::Private,
            }],
            files: ContainerFiles {
                hosts: Some(self.file("hosts", "127.0.0.1 localhost\n")),
                resolv_conf: Some(self.file("resolv.conf", "nameserver 127.0.0.53\n")),
                hostname: Some(self.file("hostname", "web-0\n")),
                termination_log: Some((
                    self.file(&format!("termlog-{id}"), ""),
                    "/dev/termination-log".into(),
                )),
                shm: None,
            },
        };
        let volume = self.dir.path().join("volume");
        std::fs::create_dir_all(&volume).unwrap();
        // World-writable: the runtime's fsGroup ownership change is not
        // what this test is about.
        std::fs::set_permissions(&volume, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        let mut node = NodeSettings::for_this_process(8 << 30).unwrap();
        node.swap_accounting = self.cgroups.swap_accounting();
        let plan = bundle::resolve(pod, container, image, env, prepared, &node).unwrap();
        let spec = bundle::spec(&plan).unwrap();
        let dir = self.dir.path().join(format!("bundle-{id}"));
        bundle::write_bundle(&dir, &spec).unwrap();
        self.containers.push(id.clone());
        (id, dir)
    }

    fn runc(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("runc");
        cmd.arg("--root").arg(&self.runc_root);
        cmd.kill_on_drop(true);
        cmd
    }

    /// `runc run` in the foreground: (exit code, stdout, stderr).
    async fn run(&self, id: &str, bundle: &Path) -> (i32, String, String) {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            self.runc()
                .args(["run", "--bundle"])
                .arg(bundle)
                .arg(id)
                .stdin(Stdio::null())
                .output(),
        )
        .await
        .expect("runc run timed out")
        .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `runc run -d`: the container keeps running after runc returns, with
    /// runc's stdio (files here, so nothing waits on a pipe).
    async fn start(&self, id: &str, bundle: &Path) {
        let errors = self.dir.path().join(format!("{id}.stderr"));
        let status = tokio::time::timeout(
            Duration::from_secs(60),
            self.runc()
                .args(["run", "-d", "--bundle"])
                .arg(bundle)
                .arg(id)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&errors).unwrap())
                .status(),
        )
        .await
        .expect("runc run -d timed out")
        .unwrap();
        assert!(
            status.success(),
            "runc run -d: {}",
            std::fs::read_to_string(&errors).unwrap_or_default()
        );
    }

    async fn status(&self, id: &str) -> String {
        let out = self.runc().args(["state", id]).output().await.unwrap();
        let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        state["status"].as_str().unwrap_or("unknown").to_string()
    }

    async fn wait_stopped(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < deadline {
            last = self.status(id).await;
            if last == "stopped" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("container {id} did not stop; last status {last}");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for id in self.containers.iter().rev() {
            // The container may never have been created: runc then fails,
            // which is fine.
            let _ = std::process::Command::new("runc")
                .arg("--root")
                .arg(&self.runc_root)
                .args(["delete", "-f", id])
                .stderr(Stdio::null())
                .status();
        }
        // Drop may run on a runtime thread: clean the cgroups on a thread
        // of its own.
        let cgroups = self.cgroups.clone();
        let uid = self.pod_uid.clone();
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("a current-thread runtime");
            if let Err(e) = rt.block_on(cgroups.remove_pod(&uid, Duration::from_secs(10))) {
                eprintln!("cgroup cleanup of {uid}: {e}");
            }
            remove_parent(&cgroups);
        });
        if cleanup.join().is_err() {
            eprintln!("cgroup cleanup of {} panicked", self.pod_uid);
        }
        for f in &self.ns_files {
            let _ = std::process::Command::new("umount").arg(f).status();
        }
    }
}

/// Remove the per-test node parent in every hierarchy.
fn remove_parent(cg: &Cgroups) {
    let roots: Vec<PathBuf> = match cg.layout() {
        skiff_node::cgroups::Layout::V1 { hierarchies } => {
            hierarchies.iter().map(|h| h.mount.clone()).collect()
        }
        skiff_node::cgroups::Layout::V2 { root } => vec![root.clone()],
    };
    let parent = cg.pod_path("x").unwrap();
    let parent = parent
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap()
        .to_string();
    for r in roots {
        let p = r.join(&parent);
        if p.exists() {
            if let Err(e) = std::fs::remove_dir(&p) {
                eprintln!("removing {}: {e}", p.display());
            }
        }
    }
}

fn pod(name: &str, uid: &str, spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": uid},
        "spec": spec,
    }))
    .unwrap()
}

fn image(config: serde_json::Value) -> ImageConfiguration {
    serde_json::from_value(json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": []},
    }))
    .unwrap()
}

fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .map(|v| v.trim_start_matches(':').trim())
        })
        .unwrap_or_else(|| panic!("{key} missing from status"))
}

fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

#[tokio::test]
async fn a_restricted_container_runs_with_the_pod_namespaces_and_user() {
    let mut f = Fixture::new("restricted");
    let script = "id; echo ARG0=$0; env; cat /proc/self/status; \
        for m in /proc/kcore /proc/keys /proc/timer_list; do [ -e $m ] && echo MASK $m $(stat -c %t:%T $m); done; \
        if touch /rootfs-write 2>/dev/null; then echo ROOTFS=rw; else echo ROOTFS=ro; fi; \
        if touch /data/ok 2>/dev/null; then echo DATA=rw; else echo DATA=ro; fi; \
        echo HOST=$(hostname); echo NET=$(readlink /proc/self/ns/net); \
        echo IPC=$(readlink /proc/self/ns/ipc); echo UTS=$(readlink /proc/self/ns/uts); \
        echo CWD=$(pwd); echo PORTS=$(cat /proc/sys/net/ipv4/ip_local_port_range); echo RESOLV=$(cat /etc/resolv.conf)";
    let container: Container = serde_json::from_value(json!({
        "name": "app",
        "image": "busybox",
        "command": ["/bin/sh", "-c", script, "$(GREETING)"],
        "env": [
            {"name": "NAME", "value": "world"},
            {"name": "GREETING", "value": "hello-$(NAME)-$$(NAME)"},
            {"name": "SHARED", "value": "from-pod"},
        ],
        "securityContext": {
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "CHOWN"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
    }))
    .unwrap();
    let p = pod(
        "web-0",
        &f.pod_uid,
        json!({
            "containers": [container.clone()],
            "securityContext": {
                "supplementalGroups": [4242],
                "fsGroup": 2000,
                "sysctls": [{"name": "net/ipv4/ip_local_port_range", "value": "20000 30000"}],
            },
        }),
    );
    let img = image(json!({
        "User": "1000",
        "Env": ["PATH=/bin", "IMAGE_ONLY=1", "SHARED=from-image"],
        "Entrypoint": ["/bin/echo", "entrypoint"],
        "Cmd": ["cmd"],
        "WorkingDir": "/work",
    }));
    let env = vec![
        ("NAME".to_string(), "world".to_string()),
        ("GREETING".to_string(), "hello-$(NAME)-$$(NAME)".to_string()),
        ("SHARED".to_string(), "from-pod".to_string()),
    ];
    let limits = bundle::pod_resources(p.spec.as_ref().unwrap(), Some(4096)).unwrap();
    f.cgroups.create_pod(&f.pod_uid, &limits).unwrap();
    let (id, dir) = f.bundle(&p, &container, &img, &env);
    let (code, out, err) = f.run(&id, &dir).await;
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");

    let id_line = out.lines().next().unwrap();
    assert!(
        id_line.starts_with("uid=1000(app) gid=1001(app) groups="),
        "{id_line}"
    );
    for g in ["10(wheel)", "50(staff)", "1001(app)", "2000", "4242"] {
        assert!(id_line.contains(g), "{g} missing in {id_line}");
    }
    assert!(out.contains("ARG0=hello-world-$(NAME)\n"), "{out}");
    for kv in [
        "GREETING=hello-world-$(NAME)",
        "SHARED=from-pod",
        "IMAGE_ONLY=1",
        "PATH=/bin",
        "HOSTNAME=web-0",
        "HOME=/work",
    ] {
        assert!(out.lines().any(|l| l == kv), "{kv} missing:\n{out}");
    }
    // Only NET_BIND_SERVICE (10) and CHOWN (0) bound; a non-root process
    // keeps none effective after exec.
    assert_eq!(status_field(&out, "CapBnd"), "0000000000000401");
    assert_eq!(status_field(&out, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&out, "NoNewPrivs"), "1");
    assert_eq!(status_field(&out, "Seccomp"), "2");
    // Masked files are /dev/null (1:3); this kernel may lack /proc/kcore.
    assert!(out.contains("MASK /proc/keys 1:3\n"), "{out}");
    assert!(out.contains("MASK /proc/timer_list 1:3\n"), "{out}");
    if Path::new("/proc/kcore").exists() {
        assert!(out.contains("MASK /proc/kcore 1:3\n"), "{out}");
    }
    assert!(out.contains("ROOTFS=ro\n"), "{out}");
    assert!(out.contains("DATA=rw\n"), "{out}");
    assert!(f.dir.path().join("volume/ok").exists());
    assert!(out.contains("CWD=/work\n"), "{out}");
    // The pod's sysctl, set in the pod's network namespace.
    assert!(out.contains("PORTS=20000 30000\n"), "{out}");
    assert!(out.contains("RESOLV=nameserver 127.0.0.53\n"), "{out}");
    assert!(out.contains("HOST=web-0\n"), "{out}");
    for (key, file) in [("NET", 0), ("IPC", 1), ("UTS", 2)] {
        let want = format!(
            "{key}={}:[{}]",
            key.to_lowercase(),
            inode(&f.ns_files[file])
        );
        assert!(out.contains(&want), "{want} missing:\n{out}");
    }
    // The hostname was set in the pod's UTS namespace, not a private one.
    let host = std::process::Command::new("nsenter")
        .arg(format!("--uts={}", f.ns_files[2].display()))
        .arg("hostname")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&host.stdout).trim(), "web-0");
}

#[tokio::test]
async fn default_capabilities_and_limits_reach_a_root_container_and_its_cgroup() {
    let mut f = Fixture::new("defaults");
    let container: Container = serde_json::from_value(json!({
        "name": "main",
        "image": "busybox",
        "command": ["/bin/sh", "-c", "cat /proc/self/status; touch /written && echo ROOTFS=rw; exec sleep 120"],
        "resources": {"requests": {"cpu": "250m", "memory": "32Mi"}, "limits": {"memory": "48Mi", "cpu": "1"}},
    }))
    .unwrap();
    let p = pod(
        "defaults",
        &f.pod_uid,
        json!({"containers": [container.clone()]}),
    );
    let img = image(json!({}));
    let limits = bundle::pod_resources(p.spec.as_ref().unwrap(), Some(1024)).unwrap();
    f.cgroups.create_pod(&f.pod_uid, &limits).unwrap();
    let (id, dir) = f.bundle(&p, &container, &img, &[]);
    let log = f.dir.path().join("out.log");
    // Detached: runc hands the container its stdio; a file keeps it.
    let spec_path = dir.join("config.json");
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&spec_path).unwrap()).unwrap();
    // Burstable: 1000 - 1000 * 32Mi / 8Gi.
    assert_eq!(spec["process"]["oomScoreAdj"], json!(997));
    let out_file = std::fs::File::create(&log).unwrap();
    let status = f
        .runc()
        .args(["run", "-d", "--bundle"])
        .arg(&dir)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(out_file)
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = String::new();
    while Instant::now() < deadline && !out.contains("ROOTFS=") {
        tokio::time::sleep(Duration::from_millis(20)).await;
        out = std::fs::read_to_string(&log).unwrap();
    }
    // Docker's default set is 0xa80425fb.
    assert_eq!(status_field(&out, "CapEff"), "00000000a80425fb", "{out}");
    assert_eq!(status_field(&out, "NoNewPrivs"), "0");
    assert_eq!(status_field(&out, "Seccomp"), "2");
    assert!(out.contains("ROOTFS=rw"), "{out}");

    let rel = f.cgroups.container_path(&f.pod_uid, &id).unwrap();
    let rel = rel.trim_start_matches('/');
    let pod_rel = f.cgroups.pod_path(&f.pod_uid).unwrap();
    let pod_rel = pod_rel.trim_start_matches('/');
    if f.cgroups.is_v2() {
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(
            std::fs::read_to_string(root.join(rel).join("memory.max"))
                .unwrap()
                .trim(),
            (48u64 << 20).to_string()
        );
        assert_eq!(
            std::fs::read_to_string(root.join(rel).join("cpu.max"))
                .unwrap()
                .trim(),
            "100000 100000"
        );
        assert_eq!(
            std::fs::read_to_string(root.join(pod_rel).join("memory.max"))
                .unwrap()
                .trim(),
            (48u64 << 20).to_string()
        );
    } else {
        let mem = Path::new("/sys/fs/cgroup/memory");
        let cpu = Path::new("/sys/fs/cgroup/cpu");
        let pids = Path::new("/sys/fs/cgroup/pids");
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .trim()
                .to_string()
        };
        assert_eq!(
            read(mem.join(rel).join("memory.limit_in_bytes")),
            (48u64 << 20).to_string()
        );
        assert_eq!(read(cpu.join(rel).join("cpu.shares")), "256");
        assert_eq!(read(cpu.join(rel).join("cpu.cfs_quota_us")), "100000");
        assert_eq!(read(pids.join(rel).join("pids.max")), "4096");
        // The pod cgroup has the pod-level limits.
        assert_eq!(
            read(mem.join(pod_rel).join("memory.limit_in_bytes")),
            (48u64 << 20).to_string()
        );
        assert_eq!(read(cpu.join(pod_rel).join("cpu.shares")), "256");
        assert_eq!(read(pids.join(pod_rel).join("pids.max")), "1024");
    }
    assert_eq!(f.cgroups.list_pods().unwrap(), vec![f.pod_uid.clone()]);
    // Removing the pod kills what still runs in it.
    f.cgroups
        .remove_pod(&f.pod_uid, Duration::from_secs(20))
        .await
        .unwrap();
    f.wait_stopped(&id).await;
    assert!(f.cgroups.list_pods().unwrap().is_empty());
}

#[tokio::test]
async fn a_memory_hog_is_oom_killed_and_counted() {
    let mut f = Fixture::new("oom");
    let container: Container = serde_json::from_value(json!({
        "name": "hog",
        "image": "busybox",
        "command": ["/bin/tail", "/dev/zero"],
        "resources": {"limits": {"memory": "16Mi"}},
    }))
    .unwrap();
    let p = pod(
        "hog",
        &f.pod_uid,
        json!({"containers": [container.clone()]}),
    );
    let limits = bundle::pod_resources(p.spec.as_ref().unwrap(), None).unwrap();
    f.cgroups.create_pod(&f.pod_uid, &limits).unwrap();
    let (id, dir) = f.bundle(&p, &container, &image(json!({})), &[]);
    f.start(&id, &dir).await;
    f.wait_stopped(&id).await;
    assert!(f.cgroups.oom_kills(&f.pod_uid, &id).unwrap() >= 1);
    let stats = f.cgroups.container_stats(&f.pod_uid, &id).unwrap();
    assert!(stats.oom_kills >= 1);
}

#[tokio::test]
async fn stats_count_the_cpu_of_a_busy_loop() {
    let mut f = Fixture::new("stats");
    let container: Container = serde_json::from_value(json!({
        "name": "spin",
        "image": "busybox",
        "command": ["/bin/sh", "-c", "while :; do :; done"],
    }))
    .unwrap();
    let p = pod(
        "spin",
        &f.pod_uid,
        json!({"containers": [container.clone()]}),
    );
    let limits = bundle::pod_resources(p.spec.as_ref().unwrap(), None).unwrap();
    f.cgroups.create_pod(&f.pod_uid, &limits).unwrap();
    let (id, dir) = f.bundle(&p, &container, &image(json!({})), &[]);
    f.start(&id, &dir).await;
    let first = CpuSample {
        usage_ns: f
            .cgroups
            .container_stats(&f.pod_uid, &id)
            .unwrap()
            .cpu_usage_ns,
        at: Instant::now(),
    };
    // Wait until the loop has burnt at least 50 ms of CPU (bounded).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stats = f.cgroups.container_stats(&f.pod_uid, &id).unwrap();
    while stats.cpu_usage_ns < first.usage_ns + 50_000_000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        stats = f.cgroups.container_stats(&f.pod_uid, &id).unwrap();
    }
    let second = CpuSample {
        usage_ns: stats.cpu_usage_ns,
        at: Instant::now(),
    };
    assert!(second.usage_ns >= first.usage_ns + 50_000_000, "{stats:?}");
    assert!(second.millicores_since(&first).unwrap() > 0);
    assert!(stats.memory_working_set_bytes > 0);
    let pod_stats = f.cgroups.pod_stats(&f.pod_uid).unwrap();
    assert!(pod_stats.cpu_usage_ns >= stats.cpu_usage_ns);
    assert_eq!(pod_stats.oom_kills, 0);
}

#[tokio::test]
async fn a_privileged_container_has_every_capability_and_no_filters() {
    let mut f = Fixture::new("privileged");
    let container: Container = serde_json::from_value(json!({
        "name": "priv",
        "image": "busybox",
        "command": ["/bin/sh", "-c", "cat /proc/self/status; for m in /proc/keys /proc/timer_list; do echo MASK $m $(stat -c %t:%T $m); done"],
        "securityContext": {"privileged": true},
    }))
    .unwrap();
    let p = pod(
        "priv",
        &f.pod_uid,
        json!({"containers": [container.clone()]}),
    );
    let limits = bundle::pod_resources(p.spec.as_ref().unwrap(), None).unwrap();
    f.cgroups.create_pod(&f.pod_uid, &limits).unwrap();
    let (id, dir) = f.bundle(&p, &container, &image(json!({})), &[]);
    let (code, out, err) = f.run(&id, &dir).await;
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    // Everything this process may hand on (runc cannot grant more).
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    assert_eq!(status_field(&out, "CapEff"), status_field(&own, "CapBnd"));
    assert_eq!(status_field(&out, "Seccomp"), "0");
    assert!(!out.contains("MASK /proc/keys 1:3"), "{out}");
}
