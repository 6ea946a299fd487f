//! Pod resource usage as nodes report it, read by the autoscaler.

use k8s_openapi::jiff::Timestamp;

/// One pod's usage over a recent window (what metrics-server's PodMetrics holds).
#[derive(Debug, Clone, PartialEq)]
pub struct PodUsage {
    /// CPU in millicores, summed over the pod's containers.
    pub cpu_millis: u64,
    /// Working-set memory in bytes, summed over the pod's containers.
    pub memory_bytes: u64,
    /// When the sample was taken.
    pub timestamp: Timestamp,
}

/// Where pod usage comes from (the node agents in this process, or a remote
/// metrics endpoint).
#[async_trait::async_trait]
pub trait PodMetricsSource: Send + Sync {
    /// The latest usage of pod `namespace/name`, or `None` if no node reports it.
    async fn pod_usage(&self, namespace: &str, name: &str) -> Option<PodUsage>;
}

/// A source that knows no pods (no nodes report metrics).
#[derive(Debug, Default)]
pub struct NoMetrics;

#[async_trait::async_trait]
impl PodMetricsSource for NoMetrics {
    async fn pod_usage(&self, _namespace: &str, _name: &str) -> Option<PodUsage> {
        None
    }
}
