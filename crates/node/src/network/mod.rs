//! The node's network data plane, next to the CNI bridge the runtime wires
//! pods into:
//!
//! - [`rules`]: one nftables table with pod egress isolation (pods reach pods,
//!   Service IPs and the node's DNS, nothing else) and Service DNAT;
//! - [`catalog`]: Services and their ready endpoints, from EndpointSlices
//!   (Endpoints as a fallback);
//! - [`dns`]: the cluster DNS responder;
//! - [`resolv`]: the per-pod `/etc/resolv.conf` and `/etc/hosts`;
//! - [`route`]: the host route keeping Service traffic on the node;
//! - `sync`: the loop that keeps the first three in step with the API.
//!
//! [`NodeNetwork::start`] runs all of it.

pub mod catalog;
pub mod dns;
mod error;
pub mod resolv;
pub mod route;
pub mod rules;
mod sync;
#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use catalog::Catalog;
pub use error::NetError;
pub use resolv::{etc_hosts, pod_files, pod_hostname, resolv_conf, ClusterDns, PodFiles};

/// The node's networks and where its DNS listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The pods' addresses (the CNI host-local range).
    pub pod_cidr: Ipv4Net,
    /// The Service cluster IP range (the API server's allocation range).
    pub service_cidr: Ipv4Net,
    /// The CNI bridge.
    pub bridge: String,
    /// The bridge's address, the pods' default gateway.
    pub gateway_ip: Ipv4Addr,
    /// The DNS responder's address; pods are allowed to reach it. An
    /// unspecified IP (`0.0.0.0`) means the gateway.
    pub dns_listen: SocketAddr,
    /// e.g. `cluster.local`.
    pub cluster_domain: String,
    /// The nftables table (`inet` family) the node owns.
    pub table: String,
    /// How often the rules are re-applied without a change.
    pub resync: Duration,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        let gateway = Ipv4Addr::new(10, 244, 0, 1);
        NetworkConfig {
            pod_cidr: Ipv4Net::new(Ipv4Addr::new(10, 244, 0, 0), 16).unwrap_or_default(),
            service_cidr: Ipv4Net::new(Ipv4Addr::new(10, 96, 0, 0), 12).unwrap_or_default(),
            bridge: "skiff0".into(),
            gateway_ip: gateway,
            dns_listen: SocketAddr::new(IpAddr::V4(gateway), 53),
            cluster_domain: "cluster.local".into(),
            table: "skiff".into(),
            resync: Duration::from_secs(60),
        }
    }
}

impl NetworkConfig {
    /// The DNS address pods are sent to (and allowed to reach).
    pub fn dns_addr(&self) -> SocketAddrV4 {
        match self.dns_listen {
            SocketAddr::V4(a) if !a.ip().is_unspecified() => a,
            other => SocketAddrV4::new(self.gateway_ip, other.port()),
        }
    }

    /// The settings [`resolv_conf`] needs.
    pub fn cluster_dns(&self) -> ClusterDns {
        ClusterDns {
            ip: IpAddr::V4(*self.dns_addr().ip()),
            domain: self.cluster_domain.clone(),
        }
    }

    /// What [`rules::render`] needs.
    pub fn rule_config(&self) -> rules::RuleConfig {
        rules::RuleConfig {
            table: self.table.clone(),
            bridge: self.bridge.clone(),
            pod_cidr: self.pod_cidr,
            service_cidr: self.service_cidr,
            gateway: self.gateway_ip,
            dns: self.dns_addr(),
        }
    }

    fn validate(&self) -> Result<(), NetError> {
        let name_ok = |s: &str| {
            s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !name_ok(&self.table) || self.table.contains('-') {
            return Err(NetError::Config(format!(
                "bad nftables table name {:?}",
                self.table
            )));
        }
        if !name_ok(&self.bridge) || self.bridge.len() > 15 {
            return Err(NetError::Config(format!(
                "bad bridge name {:?}",
                self.bridge
            )));
        }
        if !self.pod_cidr.contains(&self.gateway_ip) {
            return Err(NetError::Config(format!(
                "gateway {} is outside the pod CIDR {}",
                self.gateway_ip, self.pod_cidr
            )));
        }
        Ok(())
    }
}

/// The running data plane: the table, the sync loop and the DNS responder.
#[derive(Debug)]
pub struct NodeNetwork {
    cfg: NetworkConfig,
    dns_addr: SocketAddr,
    catalog: watch::Receiver<Arc<Catalog>>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl NodeNetwork {
    /// Install the isolation rules at once (before any Service is known, so
    /// no pod runs unconfined while the caches fill), start the DNS
    /// responder and the sync loop. Runs until `shutdown` or
    /// [`NodeNetwork::teardown`]. Shutdown leaves the table in place, so pods
    /// that outlive an agent restart keep their isolation and Services.
    ///
    /// Errors: a bad config, `nft` failing on the initial table, or the DNS
    /// address not bindable.
    pub async fn start(
        client: kube::Client,
        cfg: NetworkConfig,
        shutdown: CancellationToken,
    ) -> Result<NodeNetwork, NetError> {
        cfg.validate()?;
        let rules_cfg = cfg.rule_config();
        rules::apply(&rules::render(&rules_cfg, &Catalog::default())).await?;
        let stop = shutdown.child_token();
        let tasks = TaskTracker::new();
        let (tx, catalog) = watch::channel(Arc::new(Catalog::default()));
        let dns = dns::DnsServer::start(
            cfg.dns_listen,
            cfg.cluster_domain.clone(),
            catalog.clone(),
            &tasks,
            stop.clone(),
        )?;
        tasks.spawn(sync::run(client, rules_cfg, cfg.resync, tx, stop.clone()));
        tracing::info!(table = %cfg.table, dns = %dns.addr(), "node network started");
        Ok(NodeNetwork {
            dns_addr: dns.addr(),
            cfg,
            catalog,
            tasks,
            stop,
        })
    }

    /// Where the DNS responder listens (UDP; TCP on the same address).
    pub fn dns_addr(&self) -> SocketAddr {
        self.dns_addr
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &NetworkConfig {
        &self.cfg
    }

    /// The Services as last synced.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.borrow().clone()
    }

    /// A receiver that changes whenever the catalog does.
    pub fn watch_catalog(&self) -> watch::Receiver<Arc<Catalog>> {
        self.catalog.clone()
    }

    /// Stop the sync loop and the responder, then remove the table and the
    /// Service route (idempotent: what is already gone is fine). Both are
    /// attempted; the first error is returned.
    pub async fn teardown(self) -> Result<(), NetError> {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        let table = rules::remove(&self.cfg.table).await;
        let route = route::remove(&self.cfg.bridge, self.cfg.service_cidr).await;
        table.and(route)
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;

    #[test]
    fn bad_names_and_a_gateway_outside_the_pods_are_refused() {
        assert!(NetworkConfig::default().validate().is_ok());
        for table in ["", "a-b", "1x", "x; flush ruleset"] {
            let cfg = NetworkConfig {
                table: table.into(),
                ..Default::default()
            };
            assert!(
                matches!(cfg.validate(), Err(NetError::Config(_))),
                "{table:?}"
            );
        }
        let cfg = NetworkConfig {
            bridge: "a-very-long-bridge".into(),
            ..Default::default()
        };
        assert!(matches!(cfg.validate(), Err(NetError::Config(_))));
        let cfg = NetworkConfig {
            gateway_ip: Ipv4Addr::new(192, 0, 2, 1),
            ..Default::default()
        };
        assert!(matches!(cfg.validate(), Err(NetError::Config(_))));
        // An unspecified DNS address means the gateway.
        let cfg = NetworkConfig {
            dns_listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 53),
            ..Default::default()
        };
        assert_eq!(cfg.dns_addr(), SocketAddrV4::new(cfg.gateway_ip, 53));
    }
}
