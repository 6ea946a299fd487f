//! The node benchmark: how fast the real node gets a pod running, next to the
//! floor (a raw `runc run` of the same rootfs) and a peer (`podman --runtime
//! runc run --rm` of the same image), all in one run on this machine.
//!
//! - floor: `runc run` of busybox `true` (create, start, exit, delete) and
//!   `runc run -d` of busybox `sleep` until runc returns (the container's
//!   process is running), sequential;
//! - peer: `podman --runtime runc run --rm --network none` of the same image
//!   (imported from the same OCI archive) running `true`, sequential;
//! - skiff: a real `skiff server --node on` on a temp data dir; pod create →
//!   `Ready=True` as seen by a watch, sequential and 100 at once; a
//!   500-replica Deployment until every pod is `Running` (by the same watch);
//!   the server's and the supervisor's RSS per running pod (RSS with the
//!   Deployment running minus idle, over the pods running).
//!
//! Everything made here is removed at the end, also on failure: the node by
//! `skiff node reset`, runc containers by `runc delete`, podman's state (a
//! private `--root`) by `podman system reset`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::Api;
use skiff_bench::procfs::{self, Memory};
use skiff_bench::server::client;
use skiff_bench::stats::Latency;
use tokio::sync::Notify;

#[derive(Parser, Debug)]
#[command(about = "skiff node benchmark: pod start latency vs raw runc and podman, 500 pods, RSS")]
struct Args {
    /// The `skiff` binary to start.
    #[arg(long, default_value = "target/release/skiff")]
    skiff: PathBuf,
    /// The OCI runtime (floor and peer use it too).
    #[arg(long, default_value = "runc")]
    runc: String,
    /// Sequential runs of each of floor, peer and skiff.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Pods created at once.
    #[arg(long, default_value_t = 100)]
    concurrent: usize,
    /// Replicas of the Deployment.
    #[arg(long, default_value_t = 500)]
    replicas: usize,
    /// The node's pod range (outside the 10.200-249 ranges the e2e tests use).
    #[arg(long, default_value = "10.180.0.0/20")]
    pod_cidr: String,
    /// Skip podman (when it is not installed).
    #[arg(long)]
    no_podman: bool,
    /// Wall-clock cap of one phase.
    #[arg(long, default_value_t = 120)]
    cap_seconds: u64,
    /// Also write the markdown report here.
    #[arg(long)]
    out: Option<PathBuf>,
}

const IMAGE: &str = "bench.local/busybox:1";
const NS: &str = "nodebench";
/// Targets of issue 5.
const TARGET_FLOOR_RATIO: f64 = 2.0;
const TARGET_DEPLOY_S: f64 = 30.0;
const TARGET_RSS_PER_POD_MIB: f64 = 2.0;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default(); // Err: already installed
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // On TERM or INT the benchmark's future is dropped, so its guards remove
    // what it made (the node, runc containers, podman's state).
    tokio::select! {
        r = run(args) => r,
        _ = term.recv() => bail!("terminated"),
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    }
}

async fn run(args: Args) -> Result<()> {
    ensure!(
        nix::unistd::geteuid().is_root(),
        "the node benchmark needs root (runc, namespaces, cgroups)"
    );
    let began = Instant::now();
    let cap = Duration::from_secs(args.cap_seconds);
    let work = tempfile::Builder::new()
        .prefix("skiff-nodebench-")
        .tempdir()?;
    let tag = std::process::id() % 100_000;

    // The image: busybox from skiff's own builder, as an OCI archive (for
    // skiff and podman) and as its layer unpacked (the floor's rootfs).
    let archive = work.path().join("busybox.oci.tar");
    skiff_image::build::ImageBuilder::busybox()?
        .write_oci_archive(&archive, Some(IMAGE))
        .context("building the busybox image")?;
    let bundle = work.path().join("bundle");
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(&rootfs)?;
    let layer = skiff_image::build::busybox_layer()?.to_tar()?;
    tar::Archive::new(&layer[..]).unpack(&rootfs)?;

    let mut r = Report::default();

    // (a) The floor: raw runc on the same rootfs.
    {
        let runc = RuncFloor::new(&args.runc, &bundle, work.path().join("runc-root"), tag)?;
        for i in 0..2 {
            runc.run_to_exit(&format!("warm{i}"))?; // untimed: page cache, first cgroup
        }
        let mut exit = Vec::new();
        let mut start = Vec::new();
        for i in 0..args.runs {
            exit.push(runc.run_to_exit(&format!("x{i}"))?);
        }
        let cpu0 = procfs::machine_busy_seconds().ok();
        for i in 0..args.runs {
            start.push(runc.run_detached(&format!("d{i}"))?);
        }
        // Includes the `runc delete` after each run, as skiff's figure
        // includes its own bookkeeping.
        r.runc_cpu_ms = cpu0
            .zip(procfs::machine_busy_seconds().ok())
            .map(|(a, b)| (b - a) * 1e3 / args.runs.max(1) as f64);
        r.runc_exit = Latency::of(exit);
        r.runc_start = Latency::of(start);
        eprintln!(
            "bench: runc run (to exit) p50 {}, runc run -d (started) p50 {}",
            ms(r.runc_exit.map(|l| l.p50)),
            ms(r.runc_start.map(|l| l.p50))
        );
    }

    // (b) The peer: podman with runc, same image.
    if !args.no_podman {
        let podman = Podman::new(&args.runc, work.path().join("podman"), &archive)?;
        podman.run_true()?; // untimed: storage and runtime warm
        let mut v = Vec::new();
        for _ in 0..args.runs {
            v.push(podman.run_true()?);
        }
        r.podman = Latency::of(v);
        eprintln!("bench: podman run --rm p50 {}", ms(r.podman.map(|l| l.p50)));
    }

    // (c) skiff.
    let node = NodeServer::start(&args, work.path(), tag).await?;
    node.import(&archive)?;
    let client = client(&node.kubeconfig).await?;
    wait_node_ready(&client, &node.node_name, cap).await?;
    let ns_api: Api<Namespace> = Api::all(client.clone());
    ns_api
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": NS}}))?,
        )
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // settle before idle RSS
    r.idle = node.memory()?;
    eprintln!("bench: node up, idle RSS {}", mib(r.idle.total()));

    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let seen = Seen::start(pods.clone()).await?;
    let pp = PostParams::default();

    // Sequential pods (one untimed first: the image's first mount, the supervisor).
    pods.create(&pp, &pod("warm"))
        .await
        .context("creating the warm-up pod")?;
    seen.wait_ready(&["warm".into()], cap).await?;
    let mut seq = Vec::new();
    let mut seq_sched = Vec::new();
    for i in 0..args.runs {
        let name = format!("seq-{i}");
        let t0 = Instant::now();
        pods.create(&pp, &pod(&name)).await?;
        let at = seen.wait_ready(std::slice::from_ref(&name), cap).await?;
        if let Some(ready) = at.first().copied() {
            seq.push(ready - t0);
        }
        if let Some(s) = seen.scheduled_at(&name) {
            seq_sched.push(s - t0);
        }
    }
    r.seq = Latency::of(seq);
    r.seq_sched = Latency::of(seq_sched);
    eprintln!("bench: skiff sequential p50 {}", ms(r.seq.map(|l| l.p50)));

    // Concurrent pods.
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.concurrent {
        let pods = pods.clone();
        tasks.spawn(async move {
            let name = format!("con-{i}");
            let t = Instant::now();
            pods.create(&PostParams::default(), &pod(&name)).await?;
            anyhow::Ok((name, t))
        });
    }
    let mut created = Vec::new();
    while let Some(res) = tasks.join_next().await {
        created.push(res??);
    }
    let names: Vec<String> = created.iter().map(|(n, _)| n.clone()).collect();
    let ready = seen.wait_ready(&names, cap).await?;
    r.con_all = Some(t0.elapsed());
    r.con = Latency::of(
        created
            .iter()
            .zip(&ready)
            .map(|((_, t), at)| at.saturating_duration_since(*t))
            .collect(),
    );
    eprintln!(
        "bench: skiff {} at once p50 {}, all in {}",
        args.concurrent,
        ms(r.con.map(|l| l.p50)),
        ms(r.con_all)
    );

    // Out of the Deployment's way: delete them all, timed until gone.
    let t0 = Instant::now();
    pods.delete_collection(
        &DeleteParams::default().grace_period(0),
        &ListParams::default().labels("bench=single"),
    )
    .await?;
    poll(cap, "the single pods to be gone", || async {
        let left = pods
            .list(&ListParams::default().labels("bench=single"))
            .await?;
        Ok(left.items.is_empty())
    })
    .await?;
    r.delete = Some((args.runs + 1 + args.concurrent, t0.elapsed()));
    eprintln!(
        "bench: deleted {} pods in {}",
        args.runs + 1 + args.concurrent,
        ms(Some(t0.elapsed()))
    );

    // The node tears the deleted pods down after the API forgot them
    // (containers, CNI, cgroups, directories): wait for that, so the
    // Deployment is measured on its own, not sharing the CPU with it.
    let t1 = Instant::now();
    let pods_dir = node.data.join("node").join("pods");
    poll(cap, "the node to clean the deleted pods up", || async {
        Ok(std::fs::read_dir(&pods_dir)
            .map(|d| d.count() == 0)
            .unwrap_or(true))
    })
    .await?;
    r.cleanup = Some(t1.elapsed());
    eprintln!("bench: node cleaned up in {}", ms(r.cleanup));

    // The Deployment.
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let cpu0 = procfs::machine_busy_seconds().ok();
    let t0 = Instant::now();
    deploys
        .create(&pp, &deployment("web", args.replicas))
        .await?;
    let mut last_print = Instant::now();
    loop {
        let running = seen.running_with_prefix("web-");
        if running >= args.replicas {
            break;
        }
        if t0.elapsed() > cap {
            r.deploy_capped = Some(running);
            eprintln!("bench: capped at {running} Running");
            break;
        }
        if last_print.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "bench: {running}/{} Running after {:.1} s",
                args.replicas,
                t0.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        seen.changed(Duration::from_millis(200)).await;
    }
    r.deploy = Some(t0.elapsed());
    r.replicas = args.replicas;
    r.deploy_cpu_ms = cpu0
        .zip(procfs::machine_busy_seconds().ok())
        .map(|(a, b)| (b - a) * 1e3 / args.replicas.max(1) as f64);
    eprintln!("bench: Deployment Running in {}", ms(r.deploy));
    tokio::time::sleep(Duration::from_secs(3)).await; // status writes and probes settle
    r.loaded = node.memory()?;
    r.loaded_pods = seen.running_with_prefix("web-");
    r.server_cpu = procfs::cpu_seconds(node.pid).ok();

    drop(seen);
    drop(client);
    let t0 = Instant::now();
    drop(node); // kill, `skiff node reset`
    r.reset = Some(t0.elapsed());
    r.took = began.elapsed();
    r.meta = machine();

    let report = render(&args, &r);
    println!("{report}");
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, &report)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- the floor

/// Raw runc on the bundle, with a runc state dir of its own. Deletes every
/// container it made when dropped.
struct RuncFloor {
    runc: String,
    bundle: PathBuf,
    root: PathBuf,
    tag: u32,
}

impl RuncFloor {
    fn new(runc: &str, bundle: &Path, root: PathBuf, tag: u32) -> Result<RuncFloor> {
        std::fs::create_dir_all(&root)?;
        // `runc spec` writes the default config (new pid, net, ipc, uts and
        // mount namespaces, read-only rootfs); we take it without a terminal.
        let config = bundle.join("config.json");
        let _ = std::fs::remove_file(&config);
        let st = Command::new(runc)
            .args(["spec", "--bundle"])
            .arg(bundle)
            .status()
            .context("runc spec")?;
        ensure!(st.success(), "runc spec failed: {st}");
        let floor = RuncFloor {
            runc: runc.to_string(),
            bundle: bundle.to_path_buf(),
            root,
            tag,
        };
        Ok(floor)
    }

    fn set_args(&self, args: &[&str]) -> Result<()> {
        let path = self.bundle.join("config.json");
        let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = serde_json::json!(args);
        std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
        Ok(())
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.runc);
        c.arg("--root")
            .arg(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    fn id(&self, name: &str) -> String {
        format!("skiff-nodebench-{}-{name}", self.tag)
    }

    /// `runc run` of `true` to its exit (runc deletes the container).
    fn run_to_exit(&self, name: &str) -> Result<Duration> {
        self.set_args(&["/bin/true"])?;
        let t0 = Instant::now();
        let out = self
            .cmd()
            .args(["run", "--bundle"])
            .arg(&self.bundle)
            .arg(self.id(name))
            .output()?;
        let d = t0.elapsed();
        ensure!(
            out.status.success(),
            "runc run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(d)
    }

    /// `runc run -d` of `sleep` until runc returns (the process runs); the
    /// container is killed and deleted after, untimed.
    fn run_detached(&self, name: &str) -> Result<Duration> {
        self.set_args(&["/bin/sleep", "3600"])?;
        let id = self.id(name);
        let t0 = Instant::now();
        let out = self
            .cmd()
            .args(["run", "-d", "--bundle"])
            .arg(&self.bundle)
            .arg(&id)
            // The container keeps runc's stdio: a pipe would stay open.
            .stderr(Stdio::null())
            .output()?;
        let d = t0.elapsed();
        ensure!(out.status.success(), "runc run -d {id}: {}", out.status);
        let _ = self.cmd().args(["delete", "--force", &id]).output();
        Ok(d)
    }
}

impl Drop for RuncFloor {
    fn drop(&mut self) {
        let Ok(out) = self
            .cmd()
            .stdout(Stdio::piped())
            .args(["list", "-q"])
            .output()
        else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = self.cmd().args(["delete", "--force", id.trim()]).output();
        }
    }
}

// ---------------------------------------------------------------- the peer

/// podman with a private storage root and run root; `system reset` when dropped.
struct Podman {
    base: Vec<String>,
    image: String,
}

impl Podman {
    fn new(runc: &str, dir: PathBuf, archive: &Path) -> Result<Podman> {
        std::fs::create_dir_all(&dir)?;
        let base = vec![
            "--root".to_string(),
            dir.join("storage").display().to_string(),
            "--runroot".to_string(),
            dir.join("run").display().to_string(),
            "--runtime".to_string(),
            runc.to_string(),
            "--cgroup-manager".to_string(),
            "cgroupfs".to_string(),
            "--events-backend".to_string(),
            "file".to_string(),
        ];
        let mut p = Podman {
            base,
            image: String::new(),
        };
        let out = p
            .cmd()
            .args(["pull", "-q"])
            .arg(format!("oci-archive:{}", archive.display()))
            .output()
            .context("podman (install it: scripts/bench-deps.sh, or pass --no-podman)")?;
        ensure!(
            out.status.success(),
            "podman pull oci-archive: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        p.image = String::from_utf8_lossy(&out.stdout).trim().to_string();
        ensure!(!p.image.is_empty(), "podman pull printed no image id");
        Ok(p)
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.args(&self.base)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// `podman run --rm` of `true` to its exit.
    fn run_true(&self) -> Result<Duration> {
        let t0 = Instant::now();
        let out = self
            .cmd()
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
                &self.image,
                "/bin/true",
            ])
            .output()?;
        let d = t0.elapsed();
        ensure!(
            out.status.success(),
            "podman run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(d)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd().args(["system", "reset", "--force"]).output();
    }
}

// ---------------------------------------------------------------- skiff

/// `skiff server --node on` with a data dir, pod range, bridge and cgroup
/// parent of its own. Dropping it kills the server and runs `skiff node
/// reset` (containers, mounts, namespaces, cgroups, bridge, nft table).
struct NodeServer {
    child: std::process::Child,
    pid: u32,
    skiff: PathBuf,
    data: PathBuf,
    kubeconfig: PathBuf,
    node_name: String,
    node_args: Vec<String>,
}

impl NodeServer {
    async fn start(args: &Args, work: &Path, tag: u32) -> Result<NodeServer> {
        ensure!(
            args.skiff.exists(),
            "{} not found: run `cargo build --release --bin skiff`",
            args.skiff.display()
        );
        let data = work.join("skiff");
        std::fs::create_dir_all(&data)?;
        let node_name = format!("nodebench-{tag}");
        let node_args = vec![
            "--pod-cidr".to_string(),
            args.pod_cidr.clone(),
            "--node-bridge".to_string(),
            format!("sknb{tag}"),
            "--cgroup-parent".to_string(),
            format!("skiff-nodebench-{tag}"),
            "--oci-runtime".to_string(),
            args.runc.clone(),
        ];
        let log_path = data.join("server.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(&args.skiff)
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .args(["--node", "on", "--node-name", &node_name])
            .args(&node_args)
            .env_remove("SKIFF_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", args.skiff.display()))?;
        let mut s = NodeServer {
            pid: child.id(),
            child,
            skiff: args.skiff.clone(),
            data,
            kubeconfig: PathBuf::new(),
            node_name,
            node_args,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let listening = text
                .lines()
                .any(|l| l.starts_with("skiff API server listening on "));
            if let Some(kc) = text.lines().find_map(|l| l.strip_prefix("kubeconfig: ")) {
                if listening {
                    s.kubeconfig = PathBuf::from(kc.trim());
                    return Ok(s);
                }
            }
            if let Some(status) = s.child.try_wait()? {
                bail!("skiff server exited with {status}:\n{text}");
            }
            ensure!(
                Instant::now() < deadline,
                "skiff server did not listen within 60 s:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn import(&self, archive: &Path) -> Result<()> {
        let out = Command::new(&self.skiff)
            .args(["image", "import", "--data-dir"])
            .arg(&self.data)
            .args(["--name", IMAGE])
            .arg(archive)
            .output()?;
        ensure!(
            out.status.success(),
            "skiff image import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// RSS of the server and of the container supervisor (absent until the
    /// first pod starts it).
    fn memory(&self) -> Result<Agent> {
        let server = Memory::of_pid(self.pid)?.rss_kib;
        let supervisor = std::fs::read_to_string(
            self.data
                .join("node")
                .join("supervisor")
                .join("supervisor.pid"),
        )
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .and_then(|pid| Memory::of_pid(pid).ok())
        .map_or(0, |m| m.rss_kib);
        Ok(Agent {
            server_kib: server,
            supervisor_kib: supervisor,
        })
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let st = Command::new(&self.skiff)
            .args(["node", "reset", "--data-dir"])
            .arg(&self.data)
            .args(&self.node_args)
            .stdout(Stdio::null())
            .status();
        if !matches!(st, Ok(s) if s.success()) {
            eprintln!(
                "bench: `skiff node reset` failed ({st:?}); data in {}",
                self.data.display()
            );
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Agent {
    server_kib: u64,
    supervisor_kib: u64,
}

impl Agent {
    fn total(&self) -> u64 {
        self.server_kib + self.supervisor_kib
    }
}

async fn wait_node_ready(client: &kube::Client, name: &str, cap: Duration) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    poll(cap, "the node to be Ready", || async {
        let n = nodes.get_opt(name).await?;
        Ok(n.and_then(|n| n.status)
            .and_then(|s| s.conditions)
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True")))
    })
    .await
}

/// Poll `f` every 50 ms until it says true, at most `cap`.
async fn poll<F, Fut>(cap: Duration, what: &str, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + cap;
    loop {
        if f().await? {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"bench": "single"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "Never",
                            "command": ["sleep", "3600"]}]
        }
    }))
    .unwrap_or_default()
}

fn deployment(name: &str, replicas: usize) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "Never",
                                    "command": ["sleep", "3600"]}]
                }
            }
        }
    }))
    .unwrap_or_default()
}

// ---------------------------------------------------------------- the watch

#[derive(Default)]
struct PodSeen {
    scheduled: Option<Instant>,
    ready: Option<Instant>,
    running: bool,
}

/// One pod watch on the namespace, recording when each pod was first seen
/// bound to the node and `Ready=True`, and whether it is `Running` now.
struct Seen {
    state: Arc<Mutex<HashMap<String, PodSeen>>>,
    notify: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Seen {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Seen {
    async fn start(pods: Api<Pod>) -> Result<Seen> {
        let state: Arc<Mutex<HashMap<String, PodSeen>>> = Arc::default();
        let notify = Arc::new(Notify::new());
        let rv = pods
            .list(&ListParams::default())
            .await?
            .metadata
            .resource_version
            .unwrap_or_default();
        let stream = pods
            .watch(&WatchParams::default().timeout(290), &rv)
            .await?;
        let (st, nt) = (state.clone(), notify.clone());
        let task = tokio::spawn(async move {
            let mut rv = rv;
            let mut stream = Box::pin(stream);
            loop {
                while let Some(ev) = stream.next().await {
                    let now = Instant::now();
                    let (pod, gone) = match ev {
                        Ok(WatchEvent::Added(p) | WatchEvent::Modified(p)) => (p, false),
                        Ok(WatchEvent::Deleted(p)) => (p, true),
                        Ok(WatchEvent::Bookmark(_)) | Ok(WatchEvent::Error(_)) | Err(_) => continue,
                    };
                    if let Some(v) = &pod.metadata.resource_version {
                        rv.clone_from(v);
                    }
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    if let Ok(mut m) = st.lock() {
                        let e = m.entry(name).or_default();
                        if e.scheduled.is_none()
                            && pod
                                .spec
                                .as_ref()
                                .and_then(|s| s.node_name.as_ref())
                                .is_some()
                        {
                            e.scheduled = Some(now);
                        }
                        let status = pod.status.as_ref();
                        let ready = status.and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
                            c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                        if ready && e.ready.is_none() {
                            e.ready = Some(now);
                        }
                        e.running = !gone
                            && pod.metadata.deletion_timestamp.is_none()
                            && status.and_then(|s| s.phase.as_deref()) == Some("Running");
                    }
                    nt.notify_waiters();
                }
                // The server ended the watch: resume from the last version.
                match pods.watch(&WatchParams::default().timeout(290), &rv).await {
                    Ok(s) => stream = Box::pin(s),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Ok(Seen {
            state,
            notify,
            task,
        })
    }

    /// Wait until every pod of `names` has been seen Ready; their times, in order.
    async fn wait_ready(&self, names: &[String], cap: Duration) -> Result<Vec<Instant>> {
        let deadline = Instant::now() + cap;
        loop {
            let notified = self.notify.notified();
            {
                let m = self.state.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                let got: Vec<Instant> = names
                    .iter()
                    .filter_map(|n| m.get(n).and_then(|p| p.ready))
                    .collect();
                if got.len() == names.len() {
                    return Ok(got);
                }
                if Instant::now() > deadline {
                    bail!("{} of {} pods Ready within {cap:?}", got.len(), names.len());
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), notified).await;
        }
    }

    fn scheduled_at(&self, name: &str) -> Option<Instant> {
        self.state.lock().ok()?.get(name)?.scheduled
    }

    fn running_with_prefix(&self, prefix: &str) -> usize {
        self.state.lock().map_or(0, |m| {
            m.iter()
                .filter(|(n, p)| n.starts_with(prefix) && p.running)
                .count()
        })
    }

    async fn changed(&self, at_most: Duration) {
        let _ = tokio::time::timeout(at_most, self.notify.notified()).await;
    }
}

// ---------------------------------------------------------------- the report

#[derive(Default)]
struct Report {
    runc_exit: Option<Latency>,
    runc_start: Option<Latency>,
    podman: Option<Latency>,
    seq: Option<Latency>,
    seq_sched: Option<Latency>,
    con: Option<Latency>,
    con_all: Option<Duration>,
    delete: Option<(usize, Duration)>,
    /// From the API's deletion until the node removed the last pod directory.
    cleanup: Option<Duration>,
    deploy: Option<Duration>,
    deploy_capped: Option<usize>,
    replicas: usize,
    /// Machine CPU (all processes) per `runc run -d` of the floor.
    runc_cpu_ms: Option<f64>,
    /// Machine CPU per pod while the Deployment came up.
    deploy_cpu_ms: Option<f64>,
    idle: Agent,
    loaded: Agent,
    loaded_pods: usize,
    server_cpu: Option<f64>,
    reset: Option<Duration>,
    took: Duration,
    meta: String,
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("–".into(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn lat(l: Option<Latency>) -> String {
    l.map_or("–".into(), |l| {
        format!(
            "{:.1} / {:.1} ms (max {:.1}, n={})",
            l.p50.as_secs_f64() * 1e3,
            l.p99.as_secs_f64() * 1e3,
            l.max.as_secs_f64() * 1e3,
            l.count
        )
    })
}

fn ratio(a: Option<Latency>, b: Option<Latency>) -> Option<f64> {
    Some(a?.p50.as_secs_f64() / b?.p50.as_secs_f64())
}

fn verdict(ok: bool, how: String) -> String {
    format!("{} ({how})", if ok { "pass" } else { "MISS" })
}

fn machine() -> String {
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let runc = Command::new("runc")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_default();
    let podman = Command::new("podman")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "commit {commit}, {cpus} CPUs, {:.1} GiB RAM, kernel {}, {runc}, {podman}, load average at end {}",
        procfs::mem_total_kib().unwrap_or(0) as f64 / 1024.0 / 1024.0,
        procfs::kernel_release().unwrap_or_default(),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
}

fn render(args: &Args, r: &Report) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "### Node ({}; took {:.0} s)\n\n",
        r.meta,
        r.took.as_secs_f64()
    ));
    o.push_str("| figure | value (p50 / p99) | target | result |\n|---|---|---|---|\n");
    let row = |o: &mut String, a: &str, b: String, c: &str, d: String| {
        o.push_str(&format!("| {a} | {b} | {c} | {d} |\n"));
    };
    row(
        &mut o,
        "runc run, `true` to exit (floor)",
        lat(r.runc_exit),
        "floor",
        String::new(),
    );
    row(
        &mut o,
        "runc run -d, `sleep` until started (floor)",
        lat(r.runc_start),
        "floor",
        String::new(),
    );
    row(
        &mut o,
        "podman --runtime runc run --rm --network none, `true` (peer)",
        lat(r.podman),
        "peer",
        String::new(),
    );
    row(
        &mut o,
        &format!(
            "skiff pod create → Ready (watch), sequential ×{}",
            args.runs
        ),
        lat(r.seq),
        "",
        String::new(),
    );
    row(
        &mut o,
        "  of which create → bound to the node (watch)",
        lat(r.seq_sched),
        "",
        String::new(),
    );
    if let Some(x) = ratio(r.seq, r.runc_exit) {
        row(
            &mut o,
            "skiff p50 / runc run p50",
            format!("{x:.2}"),
            "≤ 2",
            verdict(
                x <= TARGET_FLOOR_RATIO,
                format!("{:.2}× target", x / TARGET_FLOOR_RATIO),
            ),
        );
    }
    if let Some(x) = ratio(r.seq, r.runc_start) {
        row(
            &mut o,
            "skiff p50 / runc run -d p50",
            format!("{x:.2}"),
            "",
            String::new(),
        );
    }
    if let Some(x) = ratio(r.seq, r.podman) {
        row(
            &mut o,
            "skiff p50 / podman p50",
            format!("{x:.2}"),
            "< 1",
            verdict(x < 1.0, format!("{x:.2}×")),
        );
    }
    row(
        &mut o,
        &format!("skiff pod create → Ready, {} at once", args.concurrent),
        format!("{}; all Ready after {}", lat(r.con), ms(r.con_all)),
        "",
        String::new(),
    );
    if let Some((n, d)) = r.delete {
        row(
            &mut o,
            &format!("delete {n} pods until gone (grace 0)"),
            ms(Some(d)),
            "",
            String::new(),
        );
    }
    if let Some(d) = r.cleanup {
        row(
            &mut o,
            "  then until the node cleaned them up (containers, CNI, cgroups, dirs)",
            ms(Some(d)),
            "",
            String::new(),
        );
    }
    if let Some(d) = r.deploy {
        let s = d.as_secs_f64();
        let what = match r.deploy_capped {
            Some(n) => format!("capped: {n} Running after {s:.1} s"),
            None => format!("{s:.2} s"),
        };
        row(
            &mut o,
            &format!("Deployment of {} → all pods Running (watch)", r.replicas),
            what,
            "< 30 s",
            verdict(
                r.deploy_capped.is_none() && s < TARGET_DEPLOY_S,
                format!("{:.2}× target", s / TARGET_DEPLOY_S),
            ),
        );
    }
    if let (Some(floor), Some(ours)) = (r.runc_cpu_ms, r.deploy_cpu_ms) {
        row(
            &mut o,
            "machine CPU per pod, Deployment (all processes) / per runc run -d + delete",
            format!("{ours:.1} ms / {floor:.1} ms"),
            "",
            format!("{:.2}×", ours / floor.max(0.001)),
        );
    }
    let pods = r.loaded_pods.max(1);
    let per_pod = (r.loaded.total() as f64 - r.idle.total() as f64) / pods as f64 / 1024.0;
    row(
        &mut o,
        "agent RSS idle (server + supervisor)",
        format!(
            "{} + {}",
            mib(r.idle.server_kib),
            mib(r.idle.supervisor_kib)
        ),
        "",
        String::new(),
    );
    row(
        &mut o,
        &format!("agent RSS with {} pods Running", r.loaded_pods),
        format!(
            "{} + {}",
            mib(r.loaded.server_kib),
            mib(r.loaded.supervisor_kib)
        ),
        "",
        String::new(),
    );
    row(
        &mut o,
        "agent RSS per running pod ((loaded − idle) / pods)",
        format!("{:.3} MiB", per_pod),
        "< 2 MiB",
        verdict(
            per_pod < TARGET_RSS_PER_POD_MIB,
            format!("{:.2}× target", per_pod / TARGET_RSS_PER_POD_MIB),
        ),
    );
    if let Some(cpu) = r.server_cpu {
        row(
            &mut o,
            "server CPU over the whole skiff part",
            format!("{cpu:.1} s"),
            "",
            String::new(),
        );
    }
    if let Some(d) = r.reset {
        row(
            &mut o,
            &format!("`skiff node reset` of {} pods", r.loaded_pods),
            ms(Some(d)),
            "",
            String::new(),
        );
    }
    o
}
