//! Errors of the node's network data plane.

use std::net::SocketAddr;

/// Errors of [`super::NodeNetwork`] and its parts.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("invalid network configuration: {0}")]
    Config(String),
    #[error("running nft: {0}")]
    NftSpawn(#[source] std::io::Error),
    #[error("nft did not finish in time")]
    NftTimeout,
    #[error("nft {args} failed: {stderr}")]
    Nft { args: String, stderr: String },
    #[error("running ip: {0}")]
    IpSpawn(#[source] std::io::Error),
    #[error("ip did not finish in time")]
    IpTimeout,
    #[error("ip {args} failed: {stderr}")]
    Ip { args: String, stderr: String },
    #[error("DNS responder cannot listen on {addr}: {source}")]
    DnsBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}
