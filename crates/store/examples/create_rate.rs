//! The raw store floor of `bench/run.sh` without the API server: creates of
//! 1,024-byte values from 1, 8 and 64 writers on a fresh `SqliteStore`, and the
//! delay from a create's acknowledgement to its arrival at 100 watchers.
//!
//! `cargo run --release -p skiff-store --example create_rate [ops] [reps]`
//!
//! With `SKIFF_STORE_SECOND=1` a second `SqliteStore` is opened on the same
//! file and left idle, to show what following another connection costs;
//! `SKIFF_STORE_FOLLOW_MS=<ms>` sets the stores' `follow_interval`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use skiff_store::{measure_create_rate, Revision, SqliteOptions, SqliteStore, Store};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let ops = arg(1, 2000);
    let reps = arg(2, 3);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("store.db");
    let mut opts = SqliteOptions::default();
    if let Some(ms) = std::env::var("SKIFF_STORE_FOLLOW_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts = opts.follow_interval(Duration::from_millis(ms));
    }
    let store = Arc::new(SqliteStore::open(&path, opts.clone())?);
    let _second = match std::env::var_os("SKIFF_STORE_SECOND") {
        Some(_) => Some(SqliteStore::open(&path, opts)?),
        None => None,
    };
    for writers in [1, 8, 64] {
        let mut rates = Vec::new();
        for rep in 0..reps {
            let dyn_store: Arc<dyn Store> = store.clone();
            let rate = measure_create_rate(
                dyn_store,
                &format!("/bench/w{writers}/r{rep}/"),
                writers,
                ops,
                1024,
            )
            .await?;
            rates.push(rate.per_second());
        }
        let mid = median(rates.clone());
        println!("create @{writers}: {mid:.0}/s (reps {rates:.0?})");
    }

    // Watch delivery: 100 watchers of one prefix, 200 sequential creates.
    let watchers = 100;
    let mut streams = Vec::new();
    for _ in 0..watchers {
        streams.push(store.watch("/watch/", Revision(0)).await?);
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    for mut stream in streams {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(event)) = stream.next().await {
                if tx.send((event.revision().0, Instant::now())).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let value = Bytes::from(vec![b'x'; 1024]);
    let mut delays = Vec::new();
    for i in 0..200 {
        let start = Instant::now();
        let rev = store
            .create(&format!("/watch/{i:04}"), value.clone())
            .await?;
        let mut got = 0;
        while got < watchers {
            let Ok(Some((r, at))) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await
            else {
                return Err("watch event missing".into());
            };
            if r == rev.0 {
                got += 1;
                delays.push(at - start);
            }
        }
    }
    delays.sort();
    println!(
        "create→100 watchers: p50 {:.2} ms, p99 {:.2} ms",
        percentile(&delays, 0.5).as_secs_f64() * 1e3,
        percentile(&delays, 0.99).as_secs_f64() * 1e3
    );
    Ok(())
}
