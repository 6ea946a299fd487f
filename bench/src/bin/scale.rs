//! The scale benchmark: on fake nodes, a Deployment scaled 0 → 1,000 → 10,000
//! replicas and a rolling update of 1,000 pods with maxSurge 25%, each timed
//! until the Deployment's status says every replica is ready (and, for the
//! rollout, updated and available); the control plane's CPU-seconds and peak
//! RSS alongside.
//!
//! The floor, measured in the same run: a server without controllers absorbing
//! the same API writes a pod needs on its way to Running (create, bind, one
//! status write) from this client at the same concurrency, the least work any
//! controller pipeline must get through the API. The ratio pipeline / floor
//! says how much the controllers, scheduler and fake nodes add on top.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use skiff_bench::procfs::{self, Memory};
use skiff_bench::server::{client, Server};
use tokio::sync::Semaphore;

#[derive(Parser, Debug)]
#[command(
    about = "skiff scale benchmark: Deployment to 1k/10k pods and a 1k rollout on fake nodes"
)]
struct Args {
    /// The `skiff` binary to start.
    #[arg(long, default_value = "target/release/skiff")]
    skiff: PathBuf,
    /// Fake nodes to register.
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// Replica counts to scale to, in order.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    steps: Vec<i32>,
    /// Replicas of the rolling update (run after the first step).
    #[arg(long, default_value_t = 1000)]
    rollout: i32,
    /// Concurrent writes of the floor client.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Wall-clock cap of one phase.
    #[arg(long, default_value_t = 180)]
    cap_seconds: u64,
    /// Also write the markdown report here.
    #[arg(long)]
    out: Option<PathBuf>,
}

const TARGET_1K_S: f64 = 3.0;
const TARGET_10K_S: f64 = 30.0;
const TARGET_ROLLOUT_S: f64 = 10.0;

struct Phase {
    name: String,
    pods: i32,
    seconds: f64,
    cpu: f64,
    floor: Option<f64>,
    target: Option<f64>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default(); // Err: already installed
    let cap = Duration::from_secs(args.cap_seconds);
    let mut phases: Vec<Phase> = Vec::new();

    // The floor per step, on a server that runs no controllers.
    let mut floors = Vec::new();
    {
        let server = Server::start(&args.skiff, &["--no-controllers"]).await?;
        let client = client(&server.kubeconfig).await?;
        for (i, &n) in args.steps.iter().enumerate() {
            let ns = format!("floor-{i}");
            create_ns(&client, &ns).await?;
            let began = Instant::now();
            floor_writes(&client, &ns, n, args.concurrency).await?;
            let s = began.elapsed().as_secs_f64();
            eprintln!("bench: floor {n} pods: {s:.2} s");
            floors.push(s);
        }
        server.stop().await;
    }

    let nodes = args.nodes.to_string();
    let server = Server::start(&args.skiff, &["--fake-nodes", &nodes]).await?;
    let pid = server.pid;
    let client = client(&server.kubeconfig).await?;
    create_ns(&client, "scale").await?;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "scale");
    deploys
        .create(&PostParams::default(), &deployment("web", 0, "img:v1"))
        .await?;
    let mut current = 0;
    for (i, &n) in args.steps.iter().enumerate() {
        let cpu0 = procfs::cpu_seconds(pid)?;
        let began = Instant::now();
        scale(&deploys, "web", n).await?;
        wait_ready(&deploys, "web", n, false, cap).await?;
        let seconds = began.elapsed().as_secs_f64();
        let running = count_running(&client, "scale").await?;
        if running != usize::try_from(n).unwrap_or(0) {
            bail!("{n} ready replicas reported but {running} pods Running");
        }
        phases.push(Phase {
            name: format!("scale {current} → {n}"),
            pods: n,
            seconds,
            cpu: procfs::cpu_seconds(pid)? - cpu0,
            floor: floors.get(i).copied(),
            target: match n {
                1000 => Some(TARGET_1K_S),
                10000 => Some(TARGET_10K_S),
                _ => None,
            },
        });
        eprintln!("bench: scaled to {n} in {seconds:.2} s");
        current = n;
        if i == 0 && args.rollout > 0 {
            // The rolling update, on its own Deployment.
            deploys
                .create(
                    &PostParams::default(),
                    &deployment("roll", args.rollout, "img:v1"),
                )
                .await?;
            wait_ready(&deploys, "roll", args.rollout, false, cap).await?;
            let cpu0 = procfs::cpu_seconds(pid)?;
            let began = Instant::now();
            let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "img:v2"}]}}}});
            deploys
                .patch("roll", &PatchParams::default(), &Patch::Strategic(&patch))
                .await?;
            wait_ready(&deploys, "roll", args.rollout, true, cap).await?;
            let seconds = began.elapsed().as_secs_f64();
            phases.push(Phase {
                name: format!("rolling update of {} (maxSurge 25%)", args.rollout),
                pods: args.rollout,
                seconds,
                cpu: procfs::cpu_seconds(pid)? - cpu0,
                floor: None,
                target: Some(TARGET_ROLLOUT_S),
            });
            eprintln!("bench: rolled out {} in {seconds:.2} s", args.rollout);
            // Out of the way of the next step.
            deploys.delete("roll", &Default::default()).await?;
            wait_gone(&client, "scale", "app=roll", cap).await?;
        }
    }
    let mem = Memory::of_pid(pid).context("reading the server's memory")?;
    server.stop().await;

    let report = render(&args, &phases, &mem);
    println!("{report}");
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, &report)?;
    }
    Ok(())
}

fn deployment(name: &str, replicas: i32, image: &str) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image}]}
            }
        }
    }))
    .unwrap_or_default()
}

async fn create_ns(client: &kube::Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
    api.create(&PostParams::default(), &ns).await?;
    Ok(())
}

async fn scale(api: &Api<Deployment>, name: &str, n: i32) -> Result<()> {
    let patch = serde_json::json!({"spec": {"replicas": n}});
    api.patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Until status says `n` ready (and, for a rollout, updated and available).
async fn wait_ready(
    api: &Api<Deployment>,
    name: &str,
    n: i32,
    rollout: bool,
    cap: Duration,
) -> Result<()> {
    let deadline = Instant::now() + cap;
    loop {
        let d = api.get(name).await?;
        let gen = d.metadata.generation;
        if let Some(s) = d.status {
            let ready = s.ready_replicas.unwrap_or(0) == n && s.observed_generation == gen;
            let done = !rollout
                || s.updated_replicas.unwrap_or(0) == n
                    && s.available_replicas.unwrap_or(0) == n
                    && s.replicas.unwrap_or(0) == n;
            if ready && done {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{name}: not ready within {cap:?}: {s:?}");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn count_running(client: &kube::Client, ns: &str) -> Result<usize> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pods = api.list(&ListParams::default()).await?;
    Ok(pods
        .items
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        })
        .count())
}

async fn wait_gone(client: &kube::Client, ns: &str, selector: &str, cap: Duration) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + cap;
    loop {
        let left = api
            .list(&ListParams::default().labels(selector))
            .await?
            .items
            .len();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{left} pods of {selector} still there after {cap:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The API writes one pod needs: create, bind to a node, one status write.
async fn floor_writes(client: &kube::Client, ns: &str, n: i32, concurrency: usize) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let api = api.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let name = format!("p{i}");
            let pod: Pod = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": {"app": "floor"}},
                "spec": {"containers": [{"name": "main", "image": "img:v1"}]}
            }))?;
            api.create(&PostParams::default(), &pod).await?;
            let binding = serde_json::json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": "floor-node"}
            });
            api.create_subresource::<serde_json::Value, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await?;
            let status = serde_json::json!({"status": {
                "phase": "Running",
                "podIP": format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256),
                "conditions": [{"type": "Ready", "status": "True"}]
            }});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await?;
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

fn render(args: &Args, phases: &[Phase], mem: &Memory) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "### Scale (fake nodes: {}, floor concurrency {})\n\n",
        args.nodes, args.concurrency
    ));
    out.push_str(
        "| phase | pods | seconds | floor s | ratio to floor | target s | met | server CPU-s |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---|---:|\n");
    for p in phases {
        let floor = p.floor.map_or("–".into(), |f| format!("{f:.2}"));
        let ratio = p
            .floor
            .map_or("–".into(), |f| format!("{:.2}", p.seconds / f));
        let target = p.target.map_or("–".into(), |t| format!("{t:.0}"));
        let met = p
            .target
            .map_or("–", |t| if p.seconds < t { "yes" } else { "no" });
        out.push_str(&format!(
            "| {} | {} | {:.2} | {floor} | {ratio} | {target} | {met} | {:.1} |\n",
            p.name, p.pods, p.seconds, p.cpu
        ));
    }
    out.push_str(&format!(
        "\nPeak server RSS: {:.1} MiB (now {:.1} MiB).\n",
        mem.hwm_kib as f64 / 1024.0,
        mem.rss_kib as f64 / 1024.0
    ));
    out
}
