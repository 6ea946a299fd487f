//! Exposition of the store's per-statement timings (`skiff_store_*`) in the
//! OpenMetrics text of `/metrics`.

use std::fmt::Write;

use skiff_store::{StoreMetrics, BUCKET_BOUNDS_MICROS};

/// Append the store families to `out` (which must not yet end with `# EOF`).
pub fn encode(m: &StoreMetrics, out: &mut String) {
    let stats = m.snapshot();
    out.push_str(
        "# HELP skiff_store_statement_duration_seconds SQL statement latency by statement.\n",
    );
    out.push_str("# TYPE skiff_store_statement_duration_seconds histogram\n");
    for s in &stats {
        let name = s.statement.name();
        let mut cumulative = 0u64;
        for (i, bound) in BUCKET_BOUNDS_MICROS.iter().enumerate() {
            cumulative += s.buckets.get(i).copied().unwrap_or(0);
            let le = *bound as f64 / 1_000_000.0;
            let _ = writeln!(out, "skiff_store_statement_duration_seconds_bucket{{statement=\"{name}\",le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "skiff_store_statement_duration_seconds_bucket{{statement=\"{name}\",le=\"+Inf\"}} {}",
            s.count
        );
        let _ = writeln!(
            out,
            "skiff_store_statement_duration_seconds_sum{{statement=\"{name}\"}} {}",
            s.total.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "skiff_store_statement_duration_seconds_count{{statement=\"{name}\"}} {}",
            s.count
        );
    }
    out.push_str("# HELP skiff_store_statement_errors SQL statements that failed, by statement.\n");
    out.push_str("# TYPE skiff_store_statement_errors counter\n");
    for s in &stats {
        let _ = writeln!(
            out,
            "skiff_store_statement_errors_total{{statement=\"{}\"}} {}",
            s.statement.name(),
            s.errors
        );
    }
    let (batches, writes) = m.batches();
    out.push_str("# HELP skiff_store_commit_batches Group-commit transactions committed.\n# TYPE skiff_store_commit_batches counter\n");
    let _ = writeln!(out, "skiff_store_commit_batches_total {batches}");
    out.push_str("# HELP skiff_store_batched_writes Writes committed in group-commit transactions.\n# TYPE skiff_store_batched_writes counter\n");
    let _ = writeln!(out, "skiff_store_batched_writes_total {writes}");
}
