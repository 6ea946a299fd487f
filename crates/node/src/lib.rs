//! The node side: the interface a node agent drives ([`NodeRuntime`]) and the
//! agent that registers a Node, heartbeats its Lease and runs the pods bound to
//! it. (Being written: see issue 4; `start_fake_nodes` is wired by the binary.)

use std::sync::Arc;

use skiff_client::metrics::{PodMetricsSource, PodUsage};
use tokio_util::sync::CancellationToken;

/// Errors of the node side.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// The fake nodes started in this process, and the usage they report.
#[derive(Debug, Default)]
pub struct FakeNodes {}

#[async_trait::async_trait]
impl PodMetricsSource for FakeNodes {
    async fn pod_usage(&self, _namespace: &str, _name: &str) -> Option<PodUsage> {
        None
    }
}

/// Register `count` fake nodes and run their agents until `shutdown`.
pub async fn start_fake_nodes(
    _client: kube::Client,
    _count: usize,
    _shutdown: CancellationToken,
) -> Result<Arc<FakeNodes>, Error> {
    Ok(Arc::new(FakeNodes::default()))
}
