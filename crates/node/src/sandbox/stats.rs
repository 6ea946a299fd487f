//! Usage of running pods: CPU from the container cgroups' cumulative
//! counters as millicores between two samples, memory as the working set.
//! [`CpuSamples`] keeps the last sample of every container so each read
//! measures the time since the previous one (like cAdvisor's housekeeping,
//! on demand); [`NodeMetrics`] turns the runtimes of this process into the
//! source of `metrics.k8s.io` (`kubectl top`) and of the autoscaler.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use skiff_apiserver::metrics_api::{ContainerUsage, MetricsProvider, PodSample};
use skiff_client::metrics::{PodMetricsSource, PodUsage};

use crate::cgroups::{CgroupStats, CpuSample};
use crate::runtime::{NodeRuntime, PodStats};

/// A window shorter than this reuses the previous rate (two reads in a
/// row would otherwise measure a few microseconds of noise).
pub const MIN_WINDOW: Duration = Duration::from_secs(1);

/// How long to wait for a second sample when a container has none yet.
pub const FIRST_WINDOW: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy)]
struct Last {
    sample: CpuSample,
    /// The rate measured when `sample` was taken.
    millicores: Option<u64>,
}

/// The last CPU sample of each container (by container id).
#[derive(Debug, Default)]
pub struct CpuSamples {
    last: Mutex<HashMap<String, Last>>,
}

impl CpuSamples {
    /// Record `now` for container `id` and return its CPU rate since the
    /// previous sample; `None` for a container seen for the first time.
    pub fn rate(&self, id: &str, now: CpuSample) -> Option<u64> {
        let mut last = match self.last.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match last.get(id).copied() {
            Some(prev)
                if now
                    .at
                    .checked_duration_since(prev.sample.at)
                    .is_some_and(|d| d < MIN_WINDOW)
                    && prev.millicores.is_some() =>
            {
                prev.millicores
            }
            Some(prev) => {
                let m = now.millicores_since(&prev.sample);
                last.insert(
                    id.to_string(),
                    Last {
                        sample: now,
                        millicores: m,
                    },
                );
                m
            }
            None => {
                last.insert(
                    id.to_string(),
                    Last {
                        sample: now,
                        millicores: None,
                    },
                );
                None
            }
        }
    }

    /// Forget the containers of pod `uid` whose ids are not in `keep`.
    pub fn retain_pod(&self, uid: &str, keep: &[String]) {
        self.retain(|id| !id.starts_with(uid) || keep.iter().any(|k| k == id));
    }

    /// Keep only the containers `keep` says yes to (by id).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut last = match self.last.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        last.retain(|id, _| keep(id));
    }
}

/// Read the usage of running containers (`(name, id)`) through `read`,
/// sampling twice when a container has no earlier sample.
pub(crate) async fn sample_containers(
    samples: &CpuSamples,
    running: &[(String, String)],
    read: impl Fn(&str) -> Option<CgroupStats>,
) -> Vec<(String, crate::runtime::Usage)> {
    let mut out = Vec::with_capacity(running.len());
    let mut missing = Vec::new();
    for (name, id) in running {
        let Some(st) = read(id) else { continue };
        let rate = samples.rate(
            id,
            CpuSample {
                usage_ns: st.cpu_usage_ns,
                at: Instant::now(),
            },
        );
        match rate {
            Some(m) => out.push((name.clone(), usage(m, &st))),
            None => missing.push((name.clone(), id.clone())),
        }
    }
    if !missing.is_empty() {
        tokio::time::sleep(FIRST_WINDOW).await;
        for (name, id) in missing {
            let Some(st) = read(&id) else { continue };
            let now = CpuSample {
                usage_ns: st.cpu_usage_ns,
                at: Instant::now(),
            };
            let m = samples.rate(&id, now).unwrap_or(0);
            out.push((name, usage(m, &st)));
        }
    }
    out
}

fn usage(cpu_millis: u64, st: &CgroupStats) -> crate::runtime::Usage {
    crate::runtime::Usage {
        cpu_millis,
        memory_bytes: st.memory_working_set_bytes,
    }
}

/// The usage source of the nodes in this process: finds a pod's node and
/// uid through the API and asks that node's runtime
/// ([`NodeRuntime::stats`]).
pub struct NodeMetrics {
    client: kube::Client,
    nodes: Vec<(String, Arc<dyn NodeRuntime>)>,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics")
            .field(
                "nodes",
                &self.nodes.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl NodeMetrics {
    /// A source over `nodes` (node name, runtime).
    pub fn new(client: kube::Client, nodes: Vec<(String, Arc<dyn NodeRuntime>)>) -> NodeMetrics {
        NodeMetrics { client, nodes }
    }

    /// The stats of pod `namespace/name`, if it is bound to one of our nodes.
    pub async fn pod_stats(&self, namespace: &str, name: &str) -> Option<PodStats> {
        let api: kube::Api<Pod> = kube::Api::namespaced(self.client.clone(), namespace);
        let pod = api.get_opt(name).await.ok()??;
        let node = pod.spec.as_ref()?.node_name.as_deref()?;
        let uid = pod.metadata.uid.as_deref()?;
        let (_, runtime) = self.nodes.iter().find(|(n, _)| n == node)?;
        // A pod with no running container has no usage to show (as
        // metrics-server leaves out pods it has no container metrics for).
        runtime
            .stats(uid)
            .await
            .filter(|s| !s.containers.is_empty())
    }
}

#[async_trait::async_trait]
impl PodMetricsSource for NodeMetrics {
    async fn pod_usage(&self, namespace: &str, name: &str) -> Option<PodUsage> {
        let stats = self.pod_stats(namespace, name).await?;
        let total = stats.total();
        Some(PodUsage {
            cpu_millis: total.cpu_millis,
            memory_bytes: total.memory_bytes,
            timestamp: stats.timestamp,
        })
    }
}

#[async_trait::async_trait]
impl MetricsProvider for NodeMetrics {
    async fn pod(&self, namespace: &str, name: &str) -> Option<PodSample> {
        let stats = self.pod_stats(namespace, name).await?;
        Some(PodSample {
            timestamp: stats.timestamp.to_string(),
            window_seconds: MIN_WINDOW.as_secs().max(1),
            containers: stats
                .containers
                .into_iter()
                .map(|(name, u)| ContainerUsage {
                    name,
                    cpu_millis: u.cpu_millis,
                    memory_bytes: u.memory_bytes,
                })
                .collect(),
        })
    }
}

/// One pod's accumulated usage, for billing: CPU as millicore-seconds and
/// memory as byte-seconds, integrated over the samples the node took.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PodBill {
    pub cpu_millicore_seconds: f64,
    pub memory_byte_seconds: f64,
    /// RFC 3339 times of the first and the latest sample.
    pub first: String,
    pub last: String,
}

/// The usage ledger of a node: pod uid → [`PodBill`], kept in a JSON file
/// rewritten (atomically) after every round of samples.
#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UsageLedger {
    pub pods: std::collections::BTreeMap<String, PodBill>,
}

impl UsageLedger {
    /// The ledger in `path` (empty if there is none or it does not parse).
    pub fn load(path: &std::path::Path) -> UsageLedger {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Add `seconds` of `stats` to pod `uid`.
    pub fn add(&mut self, uid: &str, stats: &PodStats, seconds: f64) {
        let total = stats.total();
        let at = stats.timestamp.to_string();
        let bill = self.pods.entry(uid.to_string()).or_insert_with(|| PodBill {
            first: at.clone(),
            ..PodBill::default()
        });
        bill.cpu_millicore_seconds += total.cpu_millis as f64 * seconds;
        bill.memory_byte_seconds += total.memory_bytes as f64 * seconds;
        bill.last = at;
    }

    fn save(&self, path: &std::path::Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, path)
    }
}

/// Every `every`, sample the pods `pods()` names and add their usage to the
/// ledger in `path` (each sample stands for the time since the previous
/// round), until `shutdown`.
pub async fn record_usage(
    runtime: Arc<dyn NodeRuntime>,
    pods: impl Fn() -> Vec<String> + Send + 'static,
    path: std::path::PathBuf,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut ledger = UsageLedger::load(&path);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        // The first round stands for one period.
        let seconds = previous
            .map_or(every, |p| now.duration_since(p))
            .as_secs_f64();
        previous = Some(now);
        for uid in pods() {
            if let Some(stats) = runtime.stats(&uid).await {
                ledger.add(&uid, &stats, seconds);
            }
        }
        if let Err(e) = ledger.save(&path) {
            tracing::warn!(error = %e, path = %path.display(), "writing the usage ledger failed");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rates_need_two_samples_and_a_window() {
        let s = CpuSamples::default();
        let t0 = Instant::now();
        let at = |ms: u64, ns: u64| CpuSample {
            usage_ns: ns,
            at: t0 + Duration::from_millis(ms),
        };
        assert_eq!(s.rate("u-a-0", at(0, 0)), None);
        // Half a CPU over two seconds.
        assert_eq!(s.rate("u-a-0", at(2000, 1_000_000_000)), Some(500));
        // Too soon after: the last rate again, the sample is not replaced.
        assert_eq!(s.rate("u-a-0", at(2100, 1_000_000_000)), Some(500));
        // A full CPU over the next second.
        assert_eq!(s.rate("u-a-0", at(3000, 2_000_000_000)), Some(1000));
        s.retain_pod("u", &[]);
        assert_eq!(s.rate("u-a-0", at(4000, 3_000_000_000)), None);
    }

    #[test]
    fn the_ledger_integrates_usage_and_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.json");
        let stats = PodStats {
            timestamp: k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            containers: vec![
                (
                    "a".into(),
                    crate::runtime::Usage {
                        cpu_millis: 200,
                        memory_bytes: 1000,
                    },
                ),
                (
                    "b".into(),
                    crate::runtime::Usage {
                        cpu_millis: 50,
                        memory_bytes: 24,
                    },
                ),
            ],
        };
        let mut l = UsageLedger::load(&path);
        l.add("uid1", &stats, 10.0);
        l.add("uid1", &stats, 2.0);
        l.save(&path).unwrap();
        let l = UsageLedger::load(&path);
        let bill = &l.pods["uid1"];
        assert_eq!(bill.cpu_millicore_seconds, 250.0 * 12.0);
        assert_eq!(bill.memory_byte_seconds, 1024.0 * 12.0);
        assert_eq!(bill.first, "1970-01-01T00:00:00Z");
    }
}
