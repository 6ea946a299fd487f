//! The node side: the interface a node agent drives ([`runtime::NodeRuntime`]),
//! the agent that registers a Node, heartbeats its Lease and runs the pods
//! bound to it ([`agent::Agent`]), and the fake runtime
//! ([`fake::FakeRuntime`], `skiff server --fake-nodes N`) that moves pods
//! through their phases without processes. See `docs/fake-nodes.md`.

pub mod agent;
pub mod bundle;
pub mod cgroups;
pub mod cni;
pub mod fake;
mod ipam;
pub mod kubelet;
pub mod network;
mod quantity;
mod queue;
pub mod runtime;
pub mod sandbox;
pub mod status;

use std::sync::{Arc, Mutex, MutexGuard};

use skiff_client::metrics::{PodMetricsSource, PodUsage};
use tokio_util::sync::CancellationToken;

pub use agent::{Agent, AgentConfig};
pub use fake::{FakeNodeConfig, FakeRuntime};
pub use runtime::{NodeRuntime, RuntimeError};

/// Lock `m`, taking over a lock a panicking holder poisoned (the data is
/// still consistent: every holder leaves it so between statements).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Errors of the node side.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("at most {max} fake nodes are supported (asked for {asked})")]
    TooManyNodes { asked: usize, max: usize },
}

/// The most fake nodes: each gets the pod range `10.<128+i>.0.0/16`.
pub const MAX_FAKE_NODES: usize = 128;

/// The name of fake node `i`.
pub fn fake_node_name(i: usize) -> String {
    format!("fake-node-{i}")
}

/// The fake nodes started in this process, and the usage they report.
#[derive(Debug, Default)]
pub struct FakeNodes {
    nodes: Vec<(String, Arc<FakeRuntime>)>,
}

impl FakeNodes {
    /// Node names and their runtimes.
    pub fn runtimes(&self) -> impl Iterator<Item = (&str, &Arc<FakeRuntime>)> {
        self.nodes.iter().map(|(n, r)| (n.as_str(), r))
    }
}

#[async_trait::async_trait]
impl PodMetricsSource for FakeNodes {
    async fn pod_usage(&self, namespace: &str, name: &str) -> Option<PodUsage> {
        self.nodes
            .iter()
            .find_map(|(_, rt)| rt.usage_of(namespace, name))
    }
}

/// The agent settings of fake node `i`. The Lease is renewed every second
/// (not the kubelet's 10 s): fake nodes are cheap, and tests run the node
/// lifecycle controller with grace periods of a few seconds.
pub fn fake_agent_config(i: usize) -> AgentConfig {
    let mut cfg = AgentConfig::new(
        &fake_node_name(i),
        &format!("172.30.{}.{}", i / 250, i % 250 + 2),
    );
    cfg.labels
        .insert("node.skiff.dev/type".into(), "fake".into());
    cfg.lease_renew_interval = std::time::Duration::from_secs(1);
    cfg
}

/// Register `count` fake nodes (`fake-node-0` …) and run their agents until
/// `shutdown`. Returns at once; the nodes register in the background.
pub async fn start_fake_nodes(
    client: kube::Client,
    count: usize,
    shutdown: CancellationToken,
) -> Result<Arc<FakeNodes>, Error> {
    start_fake_nodes_with(client, count, &FakeNodeConfig::default(), shutdown).await
}

/// [`start_fake_nodes`] with explicit node sizes.
pub async fn start_fake_nodes_with(
    client: kube::Client,
    count: usize,
    sizes: &FakeNodeConfig,
    shutdown: CancellationToken,
) -> Result<Arc<FakeNodes>, Error> {
    if count > MAX_FAKE_NODES {
        return Err(Error::TooManyNodes {
            asked: count,
            max: MAX_FAKE_NODES,
        });
    }
    let mut nodes = Vec::with_capacity(count);
    for i in 0..count {
        // i < 128, so 128 + i fits in a byte.
        let second = u8::try_from(128 + i).unwrap_or(u8::MAX);
        let runtime = Arc::new(FakeRuntime::new(sizes, (10, second)));
        let agent = Agent::new(client.clone(), fake_agent_config(i), runtime.clone());
        tokio::spawn(agent.run(shutdown.clone()));
        nodes.push((fake_node_name(i), runtime));
    }
    Ok(Arc::new(FakeNodes { nodes }))
}
