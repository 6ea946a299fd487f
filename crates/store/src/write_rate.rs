//! The raw write rate of a store: the floor API benchmarks compare against.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{Result, Store};

/// The outcome of [`measure_create_rate`].
#[derive(Debug, Clone, Copy)]
pub struct WriteRate {
    pub writers: usize,
    pub writes: usize,
    pub elapsed: Duration,
}

impl WriteRate {
    /// Acknowledged writes per second.
    pub fn per_second(&self) -> f64 {
        self.writes as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Create `total` keys under `prefix` (which should hold no keys yet) from
/// `writers` concurrent tasks, each waiting for its write to be acknowledged
/// before sending the next, and time it. Every value is `value_size` bytes.
pub async fn measure_create_rate(
    store: Arc<dyn Store>,
    prefix: &str,
    writers: usize,
    total: usize,
    value_size: usize,
) -> Result<WriteRate> {
    let writers = writers.max(1);
    let value = Bytes::from(vec![b'x'; value_size]);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let store = Arc::clone(&store);
        let value = value.clone();
        let prefix = prefix.to_owned();
        // Writer `w` takes every `writers`-th index, so the total is exact.
        let mine: Vec<usize> = (w..total).step_by(writers).collect();
        tasks.spawn(async move {
            for i in mine {
                store
                    .create(&format!("{prefix}{i:010}"), value.clone())
                    .await?;
            }
            Ok::<_, crate::Error>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    Ok(WriteRate {
        writers,
        writes: total,
        elapsed: start.elapsed(),
    })
}
