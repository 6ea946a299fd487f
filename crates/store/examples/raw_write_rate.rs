//! Raw `create` throughput of the SQLite store at 1 and 8 concurrent writers:
//! the floor that API write benchmarks compare against.
//!
//! `cargo run --release -p skiff-store --example raw_write_rate [writes-per-run]`

use std::sync::Arc;

use skiff_store::{measure_create_rate, SqliteOptions, SqliteStore, Store};

const RUNS: usize = 5;
const VALUE_SIZE: usize = 1024;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let writes: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 2_000,
    };
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(
        &dir.path().join("store.db"),
        SqliteOptions::default(),
    )?);
    let metrics = store.metrics();
    let dyn_store: Arc<dyn Store> = store.clone();
    println!("writers  writes/s(median)  writes/s(min)  writes/s(max)  mean batch");
    for writers in [1, 8] {
        let (batches_before, writes_before) = metrics.batches();
        let mut rates = Vec::with_capacity(RUNS);
        for run in 0..RUNS {
            let prefix = format!("/bench/w{writers}/r{run}/");
            let rate =
                measure_create_rate(Arc::clone(&dyn_store), &prefix, writers, writes, VALUE_SIZE)
                    .await?;
            rates.push(rate.per_second());
        }
        rates.sort_by(f64::total_cmp);
        let (batches, batched) = metrics.batches();
        let mean_batch =
            (batched - writes_before) as f64 / (batches - batches_before).max(1) as f64;
        println!(
            "{writers:>7}  {:>16.0}  {:>13.0}  {:>13.0}  {mean_batch:>10.1}",
            rates[RUNS / 2],
            rates[0],
            rates[RUNS - 1],
        );
    }
    Ok(())
}
