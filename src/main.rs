//! The `skiff` command: a serverless Kubernetes in one binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use skiff_store::{Revision, SqliteOptions, SqliteStore, Store};
use tokio_util::sync::CancellationToken;

mod image_cmd;
mod node_cmd;

/// The control plane allocates and frees many small JSON values per request
/// and watch event; mimalloc keeps that cheap where glibc's allocator spent
/// over a third of the CPU consolidating and unlinking chunks under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "skiff",
    version,
    about = "A serverless Kubernetes in one binary",
    long_about = "skiff runs a Kubernetes-compatible control plane whose pods run as sandboxes on a virtual node.\n\nStart it with `skiff server`, then point kubectl at the kubeconfig it prints."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the control plane (API server with its embedded store) on this machine.
    Server(ServerArgs),
    /// Print the skiff version and the Kubernetes API version it serves.
    Version,
    /// Manage the node's image store: import, ls, rm, prune.
    Image(image_cmd::ImageArgs),
    /// Operate on this machine's node (`skiff node reset`).
    Node(node_cmd::NodeCmd),
    /// The node's container supervisor (started by `skiff server`, not by hand).
    #[command(hide = true)]
    Supervise(node_cmd::SuperviseArgs),
}

#[derive(clap::Args, Debug)]
struct ServerArgs {
    /// Address and port of the HTTPS API.
    #[arg(long, env = "SKIFF_LISTEN", default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Where state, certificates and the admin kubeconfig live (default: ~/.skiff).
    #[arg(long, env = "SKIFF_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The store: `sqlite` (embedded, in the data dir) or `sqlite:<path>`.
    #[arg(long, env = "SKIFF_STORE", default_value = "sqlite")]
    store: String,
    /// Extra DNS names or IPs for the serving certificate (repeatable).
    #[arg(long = "tls-san", env = "SKIFF_TLS_SANS", value_delimiter = ',')]
    tls_sans: Vec<String>,
    /// How long watch history is kept before compaction (seconds).
    #[arg(long, env = "SKIFF_HISTORY_SECONDS", default_value_t = 300)]
    history_seconds: u64,
    /// Register this many fake nodes (kwok-style: pods bound to them go
    /// Running without processes), for controller tests and scale benchmarks.
    #[arg(long, env = "SKIFF_FAKE_NODES", default_value_t = 0)]
    fake_nodes: usize,
    /// Seconds a node may miss heartbeats before it is marked NotReady.
    #[arg(long, env = "SKIFF_NODE_MONITOR_GRACE_SECONDS", default_value_t = 40)]
    node_monitor_grace_seconds: u64,
    /// Seconds between HorizontalPodAutoscaler evaluations.
    #[arg(long, env = "SKIFF_HPA_SYNC_SECONDS", default_value_t = 15)]
    hpa_sync_seconds: u64,
    /// Do not run the controllers (API server only).
    #[arg(long, env = "SKIFF_NO_CONTROLLERS")]
    no_controllers: bool,
    /// Publish the cluster CA as ConfigMap `kube-root-ca.crt` in every
    /// namespace (as kube-controller-manager does).
    #[arg(long, env = "SKIFF_PUBLISH_ROOT_CA")]
    publish_root_ca: bool,
    #[command(flatten)]
    node: node_cmd::NodeArgs,
}

fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
        .join(".skiff")
}

/// Logs to stderr, filtered by `SKIFF_LOG` (default `info`).
fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Image(args) => image_cmd::run(args, default_data_dir()),
        Command::Node(cmd) => node_cmd::node_command(cmd, default_data_dir()),
        Command::Supervise(args) => {
            init_tracing();
            node_cmd::supervise(args)
        }
        Command::Version => {
            let v = skiff_apiserver::version::info();
            println!("skiff {}", env!("CARGO_PKG_VERSION"));
            println!("Kubernetes API {}", v["gitVersion"].as_str().unwrap_or(""));
            Ok(())
        }
        Command::Server(args) => {
            init_tracing();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(server(args))
        }
    }
}

async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    // Absolute: the node hands paths under it to runc, CNI plugins and the
    // supervisor, which do not share our working directory's meaning.
    let data_dir = data_dir
        .canonicalize()
        .with_context(|| format!("resolving {}", data_dir.display()))?;
    let db_path = match args.store.as_str() {
        "sqlite" => data_dir.join("state.db"),
        s if s.starts_with("sqlite:") => PathBuf::from(&s["sqlite:".len()..]),
        other => anyhow::bail!("unknown store {other:?}: use `sqlite` or `sqlite:<path>`"),
    };
    let store =
        tokio::task::spawn_blocking(move || SqliteStore::open(&db_path, SqliteOptions::default()))
            .await?
            .context("opening the store")?;
    let store_metrics = store.metrics();
    let store: Arc<dyn Store> = Arc::new(store);

    let shutdown = CancellationToken::new();
    let cfg = skiff_apiserver::ServerConfig {
        listen: args.listen,
        data_dir: data_dir.clone(),
        extra_sans: args.tls_sans.clone(),
        store_metrics: Some(store_metrics),
    };
    let running = skiff_apiserver::start(cfg, store.clone(), shutdown.clone()).await?;
    eprintln!(
        "skiff API server listening on https://{}",
        running.local_addr
    );
    eprintln!("kubeconfig: {}", running.kubeconfig_path.display());
    eprintln!("  export KUBECONFIG={}", running.kubeconfig_path.display());

    let client = skiff_client::in_process(running.router.clone(), &running.internal_token)?;
    // Nodes running in this process serve pods/log, exec, attach and
    // port-forward through this registry (node name -> kubelet router).
    let nodes = skiff_node::kubelet::InProcessNodes::new();
    running.state.set_node_connector(nodes.clone());
    // Every node of this process, for metrics.k8s.io (`kubectl top`).
    let mut runtimes: Vec<(String, Arc<dyn skiff_node::NodeRuntime>)> = Vec::new();
    let metrics: Arc<dyn skiff_client::metrics::PodMetricsSource> = if args.fake_nodes > 0 {
        let fake =
            skiff_node::start_fake_nodes(client.clone(), args.fake_nodes, shutdown.clone()).await?;
        for (name, runtime) in fake.runtimes() {
            nodes.register(
                name,
                skiff_node::kubelet::router(runtime.clone(), shutdown.clone()),
            );
            runtimes.push((name.to_string(), runtime.clone()));
        }
        fake
    } else {
        Arc::new(skiff_client::metrics::NoMetrics)
    };
    let node = match node_cmd::wanted(&args.node)? {
        None => None,
        Some(oci_runtime) => {
            let store = Arc::new(
                skiff_image::ImageStore::open(data_dir.join("images"))
                    .context("opening the image store")?,
            );
            let images = Arc::new(skiff_node::sandbox::images::StoreImages::new(store));
            let rt = node_cmd::start(
                &args.node,
                oci_runtime,
                &data_dir,
                client.clone(),
                images,
                shutdown.clone(),
            )
            .await?;
            nodes.register(
                &args.node.node_name,
                skiff_node::kubelet::router(rt.clone(), shutdown.clone()),
            );
            eprintln!("node {} runs pods on this machine", args.node.node_name);
            runtimes.push((args.node.node_name.clone(), rt.clone()));
            // Per-pod usage, integrated for billing.
            let known = rt.clone();
            tokio::spawn(skiff_node::sandbox::stats::record_usage(
                rt.clone(),
                move || known.known_pods(),
                data_dir.join("node").join("usage.json"),
                Duration::from_secs(10),
                shutdown.clone(),
            ));
            Some(rt)
        }
    };
    let metrics = if runtimes.is_empty() {
        metrics
    } else {
        let source = Arc::new(skiff_node::sandbox::stats::NodeMetrics::new(
            client.clone(),
            runtimes,
        ));
        running.state.set_metrics_provider(source.clone());
        // The fake nodes alone keep their direct source for the autoscaler.
        if node.is_some() {
            source
        } else {
            metrics
        }
    };
    let controllers = if args.no_controllers {
        None
    } else {
        let settings = skiff_controllers::Settings {
            node_monitor_grace: Duration::from_secs(args.node_monitor_grace_seconds.max(1)),
            hpa_sync_period: Duration::from_secs(args.hpa_sync_seconds.max(1)),
            // The API server keeps its CA in the data dir (tls::ensure_pki).
            root_ca: if args.publish_root_ca {
                Some(
                    std::fs::read_to_string(data_dir.join("ca.crt"))
                        .context("reading the cluster CA")?,
                )
            } else {
                None
            },
        };
        let ctx = skiff_controllers::Context::new(client.clone(), metrics, settings);
        let elector = skiff_client::leader::LeaderElector::new(
            client.clone(),
            skiff_client::leader::LeaderConfig::new("skiff-controller-manager"),
        );
        tracing::info!(
            identity = elector.identity(),
            "campaigning for the controller-manager lease"
        );
        let stop = shutdown.clone();
        Some(tokio::spawn(elector.run(stop, move |leading| {
            skiff_controllers::run(ctx.clone(), leading)
        })))
    };

    let compactor = tokio::spawn(compact_loop(
        store.clone(),
        Duration::from_secs(args.history_seconds.max(10)),
        shutdown.clone(),
    ));

    wait_for_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    if let Some(c) = controllers {
        let _ = tokio::time::timeout(Duration::from_secs(5), c).await; // releases the lease
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), running.wait()).await; // bounded drain
    let _ = compactor.await; // the loop ends on the token
    drop(node); // running pods stay with the supervisor
    drop(running);
    drop(store);
    Ok(())
}

/// Keep `history` of watch history: every `history`, compact at the revision
/// that was current one period ago (as kube-apiserver compacts etcd).
async fn compact_loop(store: Arc<dyn Store>, history: Duration, shutdown: CancellationToken) {
    let mut previous: Option<Revision> = None;
    let mut tick = tokio::time::interval(history);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Some(rev) = previous {
            if let Err(e) = store.compact(rev).await {
                tracing::warn!(error = %e, revision = rev.0, "compaction failed");
            }
        }
        previous = store.current_revision().await.ok();
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await; // no SIGTERM handler possible: Ctrl-C only
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
}
