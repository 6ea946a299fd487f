//! What every controller shares: the context, the error type, per-key backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::Client;
use skiff_client::cache::Informers;
use skiff_client::events::Recorder;
use skiff_client::metrics::PodMetricsSource;
use tokio_util::sync::CancellationToken;

/// Errors a reconcile can end with; all of them are retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Invalid(String),
}

/// Tunables (upstream's kube-controller-manager flags); the binary sets them.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a node may go without renewing its Lease before it is NotReady
    /// (`--node-monitor-grace-period`, 40 s upstream).
    pub node_monitor_grace: Duration,
    /// How often each HorizontalPodAutoscaler is evaluated
    /// (`--horizontal-pod-autoscaler-sync-period`, 15 s upstream).
    pub hpa_sync_period: Duration,
    /// The cluster CA (PEM) published as ConfigMap `kube-root-ca.crt` in every
    /// namespace (`--root-ca-file`); not published when `None`.
    pub root_ca: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            node_monitor_grace: Duration::from_secs(40),
            hpa_sync_period: Duration::from_secs(15),
            root_ca: None,
        }
    }
}

/// Shared by every controller.
pub struct Context {
    pub client: Client,
    /// Where the autoscaler reads pod CPU and memory usage.
    pub metrics: Arc<dyn PodMetricsSource>,
    pub settings: Settings,
    /// Watch-fed caches shared by the controllers of one leadership term.
    pub informers: Informers,
}

impl Context {
    pub fn new(
        client: Client,
        metrics: Arc<dyn PodMetricsSource>,
        settings: Settings,
    ) -> Arc<Self> {
        Arc::new(Context {
            informers: Informers::new(client.clone(), CancellationToken::new()),
            client,
            metrics,
            settings,
        })
    }

    /// The context of one leadership term: fresh shared caches that stop
    /// with `shutdown`.
    pub fn for_term(&self, shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Context {
            client: self.client.clone(),
            metrics: Arc::clone(&self.metrics),
            settings: self.settings.clone(),
            informers: Informers::new(self.client.clone(), shutdown),
        })
    }

    /// An event recorder for `component` (e.g. `deployment-controller`).
    pub fn recorder(&self, component: &str) -> Recorder {
        Recorder::new(self.client.clone(), component, None)
    }
}

/// Per-key exponential backoff, as client-go's default controller rate
/// limiter: 5 ms doubling per consecutive failure, capped at 1000 s (here 5 min);
/// a success resets the key.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    const BASE: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(300);

    /// The delay before retrying `key` after one more failure.
    pub fn next(&self, key: &str) -> Duration {
        let mut m = match self.failures.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let n = m.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let exp = (*n - 1).min(31);
        Self::BASE.saturating_mul(1u32 << exp).min(Self::MAX)
    }

    /// `key` reconciled fine: forget its failures.
    pub fn reset(&self, key: &str) {
        if let Ok(mut m) = self.failures.lock() {
            m.remove(key);
        }
    }

    /// The error policy's answer for `key`.
    pub fn requeue(&self, key: &str) -> Action {
        Action::requeue(self.next(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_resets() {
        let b = Backoff::default();
        assert_eq!(b.next("a"), Duration::from_millis(5));
        assert_eq!(b.next("a"), Duration::from_millis(10));
        assert_eq!(b.next("a"), Duration::from_millis(20));
        assert_eq!(b.next("b"), Duration::from_millis(5));
        b.reset("a");
        assert_eq!(b.next("a"), Duration::from_millis(5));
        for _ in 0..40 {
            b.next("c");
        }
        assert_eq!(b.next("c"), Backoff::MAX);
    }
}
