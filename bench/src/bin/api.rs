//! The API benchmark: skiff's create/get/list/watch figures over HTTPS next to
//! their floor, the raw SQLite store's create rate, measured in the same run on
//! the same machine. See `docs/benchmarks.md` for what each figure means.
//!
//! `./bench/run.sh` builds the release binaries and runs this.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use clap::Parser;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use skiff_bench::procfs::{self, Memory};
use skiff_bench::server::{client, Server};
use skiff_bench::stats::{median, Latency};
use skiff_store::{measure_create_rate, ListOptions, SqliteOptions, SqliteStore, Store};
use tokio::sync::mpsc;

#[derive(Parser, Debug)]
#[command(about = "skiff API benchmark: create/get/list/watch vs the raw store")]
struct Args {
    /// The `skiff` binary to start.
    #[arg(long, default_value = "target/release/skiff")]
    skiff: PathBuf,
    /// Operations per create/get run (and writes per raw-store run).
    #[arg(long, default_value_t = 2_000)]
    ops: usize,
    /// Operations per list run (each returns `list-objects` objects).
    #[arg(long, default_value_t = 300)]
    list_ops: usize,
    /// Objects in the listed namespace; also the `limit` of each list.
    #[arg(long, default_value_t = 500)]
    list_objects: usize,
    /// Repetitions of every run; figures are medians over them.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Concurrent clients (and raw-store writers).
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    concurrency: Vec<usize>,
    /// Open watches for the fan-out figure.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Sequential writes observed by every watcher.
    #[arg(long, default_value_t = 200)]
    watch_writes: usize,
    /// Bytes of ConfigMap data (and of each raw-store value).
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Seconds the server idles after start-up before its RSS is read.
    #[arg(long, default_value_t = 3)]
    idle_seconds: u64,
    /// Wall-clock cap of one run; a capped run reports what it completed.
    #[arg(long, default_value_t = 60)]
    run_cap_seconds: u64,
    /// Also write the markdown report here.
    #[arg(long)]
    out: Option<PathBuf>,
}

// Targets from the project brief.
const TARGET_CREATE_RATIO: f64 = 0.40;
const TARGET_CREATE_P99_MS: f64 = 10.0;
const TARGET_WATCH_P99_MS: f64 = 5.0;
const TARGET_IDLE_RSS_MIB: f64 = 50.0;
/// The concurrency the ratio and create-p99 targets are stated at.
const TARGET_CONCURRENCY: usize = 8;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.reps > 0 && !args.concurrency.is_empty(),
        "need reps > 0 and a concurrency"
    );
    // Err means a provider is already installed: fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cap = Duration::from_secs(args.run_cap_seconds);
    let started = Instant::now();
    let load_at_start = load_average();
    eprintln!("bench: load average at start: {load_at_start}");

    // The floor first, while nothing else runs.
    let floor = raw_store_floor(&args).await?;

    let server = Server::start(&args.skiff, &[]).await?;
    eprintln!(
        "bench: server pid {} at {} (started in {:?})",
        server.pid, server.url, server.startup
    );
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    let idle = Memory::of_pid(server.pid).context("reading the idle server's memory")?;

    let cpu = CpuMeter {
        server_pid: server.pid,
    };
    let client = client(&server.kubeconfig).await?;
    for ns in ["bench-create", "bench-list", "bench-watch"] {
        create_namespace(&client, ns).await?;
    }

    let mut creates = Vec::new();
    for &c in &args.concurrency {
        creates.push(create_runs(&client, &args, cpu, c, cap).await?);
    }
    let mut gets = Vec::new();
    for &c in &args.concurrency {
        gets.push(get_runs(&client, &args, cpu, c, cap).await?);
    }
    fill_list_namespace(&client, &args).await?;
    let mut lists = Vec::new();
    for &c in &args.concurrency {
        lists.push(list_runs(&client, &args, cpu, c, cap).await?);
    }
    let watch = watch_fan_out(&client, &args, cpu, cap).await?;
    let after = Memory::of_pid(server.pid).context("reading the loaded server's memory")?;
    let (log, data_dir) = server.stop().await;
    let raw_lists = raw_list_floor(&args, &data_dir.path().join("state.db"), cap).await?;

    let report = Report {
        args: &args,
        floor,
        creates,
        gets,
        lists,
        raw_lists,
        watch,
        idle,
        after,
        elapsed: started.elapsed(),
        load_at_start,
    }
    .render();
    println!("{report}");
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
    }
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .count();
    if warnings > 0 {
        eprintln!("bench: the server logged {warnings} WARN/ERROR lines during the run");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The floor: raw store create rate.

/// Raw `create` rates (writes/s) of a fresh store per writer count, one per rep.
struct Floor {
    rates: Vec<(usize, Vec<f64>)>,
}

impl Floor {
    fn median(&self, writers: usize) -> Option<f64> {
        let (_, r) = self.rates.iter().find(|(w, _)| *w == writers)?;
        median(r)
    }
}

async fn raw_store_floor(args: &Args) -> Result<Floor> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("store.db");
    let store =
        tokio::task::spawn_blocking(move || SqliteStore::open(&path, SqliteOptions::default()))
            .await??;
    let store: Arc<dyn Store> = Arc::new(store);
    let mut rates = Vec::new();
    for &writers in &args.concurrency {
        let mut r = Vec::new();
        for rep in 0..args.reps {
            let prefix = format!("/bench/w{writers}/r{rep}/");
            let rate = tokio::time::timeout(
                Duration::from_secs(args.run_cap_seconds),
                measure_create_rate(
                    Arc::clone(&store),
                    &prefix,
                    writers,
                    args.ops,
                    args.value_size,
                ),
            )
            .await
            .context("raw store run exceeded its cap")??;
            r.push(rate.per_second());
        }
        eprintln!("bench: raw store @{writers}: {r:.0?} writes/s");
        rates.push((writers, r));
    }
    Ok(Floor { rates })
}

/// One request through kube-rs's HTTPS stack (TLS with the cluster CA, the
/// bearer token, its connection pool), with the body read in full but not
/// decoded, so client-side JSON work does not pollute the server's figures.
async fn call(
    client: &kube::Client,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    expect: StatusCode,
) -> Result<Bytes> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::ACCEPT, "application/json");
    if body.is_some() {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    let req = req.body(Body::from(body.unwrap_or_default()))?;
    let resp = client.send(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    if status != expect {
        bail!(
            "{path}: expected {expect}, got {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    Ok(bytes)
}

async fn create_namespace(client: &kube::Client, name: &str) -> Result<()> {
    let body = serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name},
    }))?;
    call(
        client,
        Method::POST,
        "/api/v1/namespaces",
        Some(body),
        StatusCode::CREATED,
    )
    .await?;
    Ok(())
}

fn configmap(name: &str, value_size: usize) -> Vec<u8> {
    let payload = "x".repeat(value_size);
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"payload":"{payload}"}}}}"#
    )
    .into_bytes()
}

async fn create_configmap(
    client: &kube::Client,
    ns: &str,
    name: &str,
    value_size: usize,
) -> Result<()> {
    call(
        client,
        Method::POST,
        &format!("/api/v1/namespaces/{ns}/configmaps"),
        Some(configmap(name, value_size)),
        StatusCode::CREATED,
    )
    .await?;
    Ok(())
}

/// CPU seconds used so far by the server and by this benchmark process, to
/// tell where a phase's time went on a machine both share.
#[derive(Clone, Copy)]
struct CpuMeter {
    server_pid: u32,
}

#[derive(Clone, Copy, Default)]
struct Cpu {
    server: f64,
    client: f64,
}

impl CpuMeter {
    fn now(&self) -> Result<Cpu> {
        Ok(Cpu {
            server: procfs::cpu_seconds(self.server_pid)?,
            client: procfs::cpu_seconds(std::process::id())?,
        })
    }

    fn since(&self, before: Cpu) -> Result<Cpu> {
        let now = self.now()?;
        Ok(Cpu {
            server: now.server - before.server,
            client: now.client - before.client,
        })
    }
}

// ---------------------------------------------------------------------------
// Closed-loop load: `concurrency` clients, each sending its next request when
// the previous one is answered.

/// One timed run.
struct Run {
    done: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    capped: bool,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Run `op(i)` for `i` in `0..ops` from `concurrency` tasks; stop early when
/// `cap` has passed.
async fn closed_loop<F, Fut>(concurrency: usize, ops: usize, cap: Duration, op: F) -> Result<Run>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let op = Arc::clone(&op);
        let next = Arc::clone(&next);
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(ops / concurrency.max(1) + 1);
            let mut capped = false;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ops {
                    break;
                }
                if start.elapsed() > cap {
                    capped = true;
                    break;
                }
                let t = Instant::now();
                op(i).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>((lat, capped))
        });
    }
    let mut latencies = Vec::with_capacity(ops);
    let mut capped = false;
    while let Some(joined) = tasks.join_next().await {
        let (lat, c) = joined??;
        latencies.extend(lat);
        capped |= c;
    }
    Ok(Run {
        done: latencies.len(),
        elapsed: start.elapsed(),
        latencies,
        capped,
    })
}

/// All repetitions at one concurrency.
struct Runs {
    concurrency: usize,
    runs: Vec<Run>,
    /// CPU used over all repetitions (warm-up excluded); `None` when the
    /// load ran inside this process (the raw store).
    cpu: Option<Cpu>,
}

impl Runs {
    fn rate(&self) -> f64 {
        let r: Vec<f64> = self.runs.iter().map(Run::per_second).collect();
        median(&r).unwrap_or(0.0)
    }

    fn rate_range(&self) -> (f64, f64) {
        let r = self.runs.iter().map(Run::per_second);
        (
            r.clone().fold(f64::INFINITY, f64::min),
            r.fold(0.0, f64::max),
        )
    }

    /// Median over repetitions of a per-run latency figure, in ms.
    fn latency_ms(&self, pick: fn(&Latency) -> Duration) -> f64 {
        let v: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|r| Latency::of(r.latencies.clone()))
            .map(|l| pick(&l).as_secs_f64() * 1e3)
            .collect();
        median(&v).unwrap_or(f64::NAN)
    }

    /// (server, client) CPU microseconds per completed operation; zeros
    /// when not measured.
    fn cpu_per_op_us(&self) -> (f64, f64) {
        let ops = self.runs.iter().map(|r| r.done).sum::<usize>().max(1) as f64;
        let cpu = self.cpu.unwrap_or_default();
        (cpu.server / ops * 1e6, cpu.client / ops * 1e6)
    }

    fn capped(&self) -> bool {
        self.runs.iter().any(|r| r.capped)
    }

    fn log(&self, what: &str) {
        let rates: Vec<String> = self
            .runs
            .iter()
            .map(|r| format!("{:.0}", r.per_second()))
            .collect();
        let (server, client) = self.cpu_per_op_us();
        let cpu = match self.cpu {
            Some(_) => format!(", CPU/op server {server:.0} µs client {client:.0} µs"),
            None => String::new(),
        };
        eprintln!(
            "bench: {what} @{}: {}/s, p50 {:.2} ms, p99 {:.2} ms{cpu}{}",
            self.concurrency,
            rates.join(" "),
            self.latency_ms(|l| l.p50),
            self.latency_ms(|l| l.p99),
            if self.capped() { " (capped)" } else { "" }
        );
    }
}

/// Untimed requests before a run, so the pool holds `concurrency` open
/// connections and TLS handshakes are not counted.
async fn warm_up(client: &kube::Client, concurrency: usize, cap: Duration) -> Result<()> {
    let c = client.clone();
    closed_loop(concurrency, concurrency * 4, cap, move |_| {
        let c = c.clone();
        async move {
            call(
                &c,
                Method::GET,
                "/api/v1/namespaces/default",
                None,
                StatusCode::OK,
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    Ok(())
}

fn create_name(concurrency: usize, rep: usize, i: usize) -> String {
    format!("c{concurrency}-r{rep}-{i:06}")
}

async fn create_runs(
    client: &kube::Client,
    args: &Args,
    cpu: CpuMeter,
    concurrency: usize,
    cap: Duration,
) -> Result<Runs> {
    warm_up(client, concurrency, cap).await?;
    let before = cpu.now()?;
    let mut runs = Vec::new();
    for rep in 0..args.reps {
        let c = client.clone();
        let size = args.value_size;
        let run = closed_loop(concurrency, args.ops, cap, move |i| {
            let c = c.clone();
            async move {
                create_configmap(&c, "bench-create", &create_name(concurrency, rep, i), size).await
            }
        })
        .await?;
        runs.push(run);
    }
    let runs = Runs {
        concurrency,
        runs,
        cpu: Some(cpu.since(before)?),
    };
    runs.log("create");
    Ok(runs)
}

async fn get_runs(
    client: &kube::Client,
    args: &Args,
    cpu: CpuMeter,
    concurrency: usize,
    cap: Duration,
) -> Result<Runs> {
    warm_up(client, concurrency, cap).await?;
    let before = cpu.now()?;
    // The objects the first create run made (at the first concurrency).
    let first = args.concurrency[0];
    let mut runs = Vec::new();
    for _ in 0..args.reps {
        let c = client.clone();
        let ops = args.ops;
        let run = closed_loop(concurrency, ops, cap, move |i| {
            let c = c.clone();
            async move {
                let path = format!(
                    "/api/v1/namespaces/bench-create/configmaps/{}",
                    create_name(first, 0, i % ops)
                );
                call(&c, Method::GET, &path, None, StatusCode::OK).await?;
                Ok(())
            }
        })
        .await?;
        runs.push(run);
    }
    let runs = Runs {
        concurrency,
        runs,
        cpu: Some(cpu.since(before)?),
    };
    runs.log("get");
    Ok(runs)
}

async fn fill_list_namespace(client: &kube::Client, args: &Args) -> Result<()> {
    let c = client.clone();
    let size = args.value_size;
    let run = closed_loop(
        8,
        args.list_objects,
        Duration::from_secs(args.run_cap_seconds),
        move |i| {
            let c = c.clone();
            async move { create_configmap(&c, "bench-list", &format!("l-{i:06}"), size).await }
        },
    )
    .await?;
    ensure!(!run.capped, "filling the list namespace hit the cap");
    // Check once that a list returns every object in one page.
    let body = call(
        client,
        Method::GET,
        &list_path(args.list_objects),
        None,
        StatusCode::OK,
    )
    .await?;
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    let items = v["items"].as_array().map_or(0, Vec::len);
    ensure!(
        items == args.list_objects,
        "list returned {items} items, expected {}",
        args.list_objects
    );
    eprintln!(
        "bench: list of {items} objects is {} KiB",
        body.len() / 1024
    );
    Ok(())
}

fn list_path(limit: usize) -> String {
    format!("/api/v1/namespaces/bench-list/configmaps?limit={limit}")
}

async fn list_runs(
    client: &kube::Client,
    args: &Args,
    cpu: CpuMeter,
    concurrency: usize,
    cap: Duration,
) -> Result<Runs> {
    warm_up(client, concurrency, cap).await?;
    let before = cpu.now()?;
    let mut runs = Vec::new();
    for _ in 0..args.reps {
        let c = client.clone();
        let path = Arc::new(list_path(args.list_objects));
        let run = closed_loop(concurrency, args.list_ops, cap, move |_| {
            let c = c.clone();
            let path = Arc::clone(&path);
            async move {
                call(&c, Method::GET, &path, None, StatusCode::OK).await?;
                Ok(())
            }
        })
        .await?;
        runs.push(run);
    }
    let runs = Runs {
        concurrency,
        runs,
        cpu: Some(cpu.since(before)?),
    };
    runs.log("list");
    Ok(runs)
}

/// The floor of the list figure: the same page read straight from the
/// server's own database (after the server has stopped) through
/// `SqliteStore::list`, at the same concurrencies.
async fn raw_list_floor(args: &Args, db: &Path, cap: Duration) -> Result<Vec<Runs>> {
    let db = db.to_owned();
    let store =
        tokio::task::spawn_blocking(move || SqliteStore::open(&db, SqliteOptions::default()))
            .await??;
    let store: Arc<dyn Store> = Arc::new(store);
    let prefix = "/registry/core/configmaps/bench-list/";
    let limit = args.list_objects;
    let page = store
        .list(
            prefix,
            ListOptions {
                limit: Some(limit),
                ..ListOptions::default()
            },
        )
        .await?;
    ensure!(
        page.items.len() == limit,
        "raw list of {prefix} returned {} keys, expected {limit}",
        page.items.len()
    );
    let mut all = Vec::new();
    for &concurrency in &args.concurrency {
        let mut runs = Vec::new();
        for _ in 0..args.reps {
            let store = Arc::clone(&store);
            let run = closed_loop(concurrency, args.list_ops, cap, move |_| {
                let store = Arc::clone(&store);
                async move {
                    let page = store
                        .list(
                            prefix,
                            ListOptions {
                                limit: Some(limit),
                                ..ListOptions::default()
                            },
                        )
                        .await?;
                    ensure!(page.items.len() == limit, "short raw list");
                    Ok(())
                }
            })
            .await?;
            runs.push(run);
        }
        let runs = Runs {
            concurrency,
            runs,
            cpu: None,
        };
        runs.log("raw store list");
        all.push(runs);
    }
    Ok(all)
}

// ---------------------------------------------------------------------------
// Watch fan-out.

struct Watch {
    /// Delay from just before each create call to each watcher receiving its
    /// event, over all (write, watcher) pairs.
    delays: Vec<Duration>,
    writes: usize,
    /// (write, watcher) pairs that never arrived within the per-write wait.
    missing: usize,
    /// Latency of the create calls themselves.
    create: Vec<Duration>,
    /// CPU used over the measured writes.
    cpu: Cpu,
}

/// A watch event, decoded only as far as the benchmark needs.
#[derive(serde::Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    object: EventObject,
}

#[derive(serde::Deserialize)]
struct EventObject {
    metadata: EventMeta,
}

#[derive(serde::Deserialize)]
struct EventMeta {
    name: String,
}

/// Stream one watch, sending (write index, arrival) for each ADDED `w-<n>`.
/// The arrival is when the chunk holding the event's line was read, before
/// any decoding.
async fn watcher(
    client: kube::Client,
    path: String,
    ready: mpsc::Sender<()>,
    seen: mpsc::UnboundedSender<(usize, Instant)>,
) -> Result<()> {
    let req = Request::builder()
        .uri(&path)
        .header(http::header::ACCEPT, "application/json")
        .body(Body::from(Vec::new()))?;
    let resp = client.send(req).await?;
    ensure!(resp.status() == StatusCode::OK, "watch: {}", resp.status());
    ready.send(()).await?;
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let at = Instant::now();
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let ev: Event = serde_json::from_slice(&line)
                .with_context(|| format!("watch line: {}", String::from_utf8_lossy(&line)))?;
            if ev.kind != "ADDED" {
                continue;
            }
            if let Some(n) = ev
                .object
                .metadata
                .name
                .strip_prefix("w-")
                .and_then(|n| n.parse().ok())
            {
                if seen.send((n, at)).is_err() {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

async fn watch_fan_out(
    client: &kube::Client,
    args: &Args,
    cpu: CpuMeter,
    cap: Duration,
) -> Result<Watch> {
    let list = call(
        client,
        Method::GET,
        "/api/v1/namespaces/bench-watch/configmaps?limit=1",
        None,
        StatusCode::OK,
    )
    .await?;
    let v: serde_json::Value = serde_json::from_slice(&list)?;
    let rv = v["metadata"]["resourceVersion"]
        .as_str()
        .context("list has no resourceVersion")?
        .to_owned();
    let path = format!("/api/v1/namespaces/bench-watch/configmaps?watch=true&resourceVersion={rv}");

    let (ready_tx, mut ready_rx) = mpsc::channel(args.watchers.max(1));
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let mut watchers = tokio::task::JoinSet::new();
    for _ in 0..args.watchers {
        watchers.spawn(watcher(
            client.clone(),
            path.clone(),
            ready_tx.clone(),
            seen_tx.clone(),
        ));
    }
    drop(ready_tx);
    drop(seen_tx);
    let open_deadline = Instant::now() + Duration::from_secs(30);
    for _ in 0..args.watchers {
        tokio::time::timeout_at(open_deadline.into(), ready_rx.recv())
            .await
            .context("watches did not open within 30 s")?
            .context("a watch failed to open")?;
    }

    // Write 0 is a warm-up proving every stream is live; it is not counted.
    let start = Instant::now();
    let mut before = Cpu::default();
    let per_write_wait = Duration::from_secs(5);
    let mut delays = Vec::with_capacity(args.watch_writes * args.watchers);
    let mut create = Vec::with_capacity(args.watch_writes);
    let mut missing = 0;
    let mut writes = 0;
    for n in 0..=args.watch_writes {
        if start.elapsed() > cap {
            eprintln!("bench: watch fan-out capped after {writes} writes");
            break;
        }
        let t0 = Instant::now();
        create_configmap(client, "bench-watch", &format!("w-{n:06}"), args.value_size).await?;
        let created = t0.elapsed();
        let mut got = 0;
        let deadline = tokio::time::Instant::now() + per_write_wait;
        while got < args.watchers {
            match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
                Ok(Some((m, at))) if m == n => {
                    got += 1;
                    if n > 0 {
                        delays.push(at.saturating_duration_since(t0));
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => bail!("every watch ended"),
                Err(_) => break,
            }
        }
        if n == 0 {
            before = cpu.now()?;
            ensure!(
                got == args.watchers,
                "only {got} of {} watches saw the warm-up write",
                args.watchers
            );
            continue;
        }
        missing += args.watchers - got;
        create.push(created);
        writes += 1;
    }
    let used = cpu.since(before)?;
    watchers.abort_all();
    while let Some(joined) = watchers.join_next().await {
        if let Ok(Err(e)) = joined {
            eprintln!("bench: a watcher failed: {e:#}");
        }
    }
    let w = Watch {
        delays,
        writes,
        missing,
        create,
        cpu: used,
    };
    if let Some(l) = Latency::of(w.delays.clone()) {
        eprintln!(
            "bench: watch fan-out to {}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} deliveries, {} missing; CPU/write server {:.0} µs client {:.0} µs",
            args.watchers,
            ms(l.p50),
            ms(l.p99),
            ms(l.max),
            l.count,
            w.missing,
            w.cpu.server / w.writes.max(1) as f64 * 1e6,
            w.cpu.client / w.writes.max(1) as f64 * 1e6,
        );
    }
    Ok(w)
}

// ---------------------------------------------------------------------------
// The report.

struct Report<'a> {
    args: &'a Args,
    floor: Floor,
    creates: Vec<Runs>,
    gets: Vec<Runs>,
    lists: Vec<Runs>,
    raw_lists: Vec<Runs>,
    watch: Watch,
    idle: Memory,
    after: Memory,
    elapsed: Duration,
    /// The 1/5/15-minute load average when the run began: other work on the
    /// machine skews every figure.
    load_at_start: String,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn verdict(ok: bool, by: String) -> String {
    if ok {
        format!("pass ({by})")
    } else {
        format!("**MISS** ({by})")
    }
}

impl Report<'_> {
    fn render(&self) -> String {
        let a = self.args;
        let mut rows: Vec<[String; 4]> = Vec::new();
        let mut row = |f: String, v: String, t: &str, r: String| rows.push([f, v, t.into(), r]);

        for &c in &a.concurrency {
            if let Some(raw) = self.floor.median(c) {
                row(
                    format!("raw store create @{c}"),
                    format!("{raw:.0}/s"),
                    "floor",
                    String::new(),
                );
            }
        }
        for runs in &self.creates {
            let c = runs.concurrency;
            let (lo, hi) = runs.rate_range();
            let (scpu, ccpu) = runs.cpu_per_op_us();
            row(
                format!("API create @{c}"),
                format!(
                    "{:.0}/s [{lo:.0}–{hi:.0}]; CPU/op server {scpu:.0} µs, client {ccpu:.0} µs",
                    runs.rate()
                ),
                "",
                if runs.capped() {
                    "capped".into()
                } else {
                    String::new()
                },
            );
            if let Some(raw) = self.floor.median(c) {
                let ratio = runs.rate() / raw;
                let (t, r) = if c == TARGET_CONCURRENCY {
                    (
                        "≥ 0.40",
                        verdict(
                            ratio >= TARGET_CREATE_RATIO,
                            format!("{:+.0}%", (ratio / TARGET_CREATE_RATIO - 1.0) * 100.0),
                        ),
                    )
                } else {
                    ("", String::new())
                };
                row(
                    format!("API create @{c} / raw store @{c}"),
                    format!("{:.0} / {raw:.0} = {ratio:.2}", runs.rate()),
                    t,
                    r,
                );
            }
            let p99 = runs.latency_ms(|l| l.p99);
            let (t, r) = if c == TARGET_CONCURRENCY {
                (
                    "< 10 ms",
                    verdict(
                        p99 < TARGET_CREATE_P99_MS,
                        format!("{:.1}× target", p99 / TARGET_CREATE_P99_MS),
                    ),
                )
            } else {
                ("", String::new())
            };
            row(
                format!("create p50 / p99 @{c}"),
                format!("{:.2} / {p99:.2} ms", runs.latency_ms(|l| l.p50)),
                t,
                r,
            );
        }
        for (what, all) in [("get", &self.gets), ("list", &self.lists)] {
            for runs in all {
                let c = runs.concurrency;
                let (lo, hi) = runs.rate_range();
                let name = if what == "list" {
                    format!("list ({} objects) @{c}", a.list_objects)
                } else {
                    format!("get @{c}")
                };
                let (scpu, ccpu) = runs.cpu_per_op_us();
                row(
                    name,
                    format!(
                        "{:.0}/s [{lo:.0}–{hi:.0}]; p50 {:.2} / p99 {:.2} ms; CPU/op server {scpu:.0} µs, client {ccpu:.0} µs",
                        runs.rate(),
                        runs.latency_ms(|l| l.p50),
                        runs.latency_ms(|l| l.p99)
                    ),
                    "",
                    if runs.capped() { "capped".into() } else { String::new() },
                );
                if what != "list" {
                    continue;
                }
                if let Some(raw) = self.raw_lists.iter().find(|r| r.concurrency == c) {
                    row(
                        format!("raw store list ({} keys) @{c}", a.list_objects),
                        format!(
                            "{:.0}/s; p50 {:.2} / p99 {:.2} ms",
                            raw.rate(),
                            raw.latency_ms(|l| l.p50),
                            raw.latency_ms(|l| l.p99)
                        ),
                        "floor",
                        String::new(),
                    );
                    row(
                        format!("API list @{c} / raw store list @{c}"),
                        format!("{:.2}", runs.rate() / raw.rate()),
                        "",
                        String::new(),
                    );
                }
            }
        }
        match Latency::of(self.watch.delays.clone()) {
            Some(l) => {
                let p99 = ms(l.p99);
                row(
                    format!("watch fan-out p50 / p99 to {} watchers", a.watchers),
                    format!(
                        "{:.2} / {p99:.2} ms (max {:.2}); CPU/write server {:.0} µs, client {:.0} µs",
                        ms(l.p50),
                        ms(l.max),
                        self.watch.cpu.server / self.watch.writes.max(1) as f64 * 1e6,
                        self.watch.cpu.client / self.watch.writes.max(1) as f64 * 1e6,
                    ),
                    "p99 < 5 ms",
                    verdict(
                        p99 < TARGET_WATCH_P99_MS && self.watch.missing == 0,
                        format!(
                            "{:.1}× target; {} writes, {} missing",
                            p99 / TARGET_WATCH_P99_MS,
                            self.watch.writes,
                            self.watch.missing
                        ),
                    ),
                );
            }
            None => row(
                "watch fan-out".into(),
                "no deliveries".into(),
                "p99 < 5 ms",
                "**MISS**".into(),
            ),
        }
        if let Some(l) = Latency::of(self.watch.create.clone()) {
            row(
                "create p50 / p99 during watch (sequential)".into(),
                format!("{:.2} / {:.2} ms", ms(l.p50), ms(l.p99)),
                "",
                String::new(),
            );
        }
        let idle = mib(self.idle.rss_kib);
        row(
            format!("idle RSS ({} s after start)", a.idle_seconds),
            format!("{idle:.1} MiB"),
            "< 50 MiB",
            verdict(
                idle < TARGET_IDLE_RSS_MIB,
                format!("{:.0}% of target", idle / TARGET_IDLE_RSS_MIB * 100.0),
            ),
        );
        row(
            "RSS after load / peak (VmHWM)".into(),
            format!(
                "{:.1} / {:.1} MiB",
                mib(self.after.rss_kib),
                mib(self.after.hwm_kib)
            ),
            "",
            String::new(),
        );

        let mut out = String::new();
        out.push_str(&format!(
            "API benchmark: commit {}, {} CPUs, {:.1} GiB RAM, kernel {}, load average at start {}; {} reps, {} ops per create/get run, {} per list run, {} B values; took {:.0} s\n\n",
            commit(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            procfs::mem_total_kib().map_or(0.0, |k| k as f64 / 1024.0 / 1024.0),
            procfs::kernel_release().unwrap_or_default(),
            self.load_at_start,
            a.reps,
            a.ops,
            a.list_ops,
            a.value_size,
            self.elapsed.as_secs_f64(),
        ));
        out.push_str("| figure | value (median [min–max] over reps) | target | result |\n");
        out.push_str("|---|---|---|---|\n");
        for [f, v, t, r] in rows {
            out.push_str(&format!("| {f} | {v} | {t} | {r} |\n"));
        }
        out
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}
