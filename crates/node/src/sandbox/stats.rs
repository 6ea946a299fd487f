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
        runtime.stats(uid).await
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
}
