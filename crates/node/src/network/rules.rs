//! The node's nftables table: pod egress isolation and Service DNAT, in one
//! table of our own (`table inet <name>`), replaced atomically as a whole.
//!
//! The rules, in order of a packet's path:
//!
//! - **nat prerouting / output**: a packet whose `daddr . l4proto . dport`
//!   is a Service port jumps to that port's chain, which picks a ready
//!   endpoint (`numgen random`, or the one a client is stuck to under
//!   `sessionAffinity: ClientIP`) and DNATs to it. Prerouting covers pods
//!   (and other hosts), output covers the node itself.
//! - **nat postrouting**: DNATed traffic from the pod CIDR is SNATed to the
//!   bridge's gateway address. Without it, a pod reaching a Service whose
//!   endpoint is on the same bridge would get the reply straight over the
//!   bridge from the endpoint's own address (it never passes the host's
//!   conntrack, so it is never un-DNATed) and drop it as unexpected.
//!   `br_netfilter` would also fix that (this kernel has it, and
//!   `bridge-nf-call-iptables` is on here), but it is a global switch the node
//!   does not own, and it cannot fix hairpin traffic (a pod reaching itself
//!   through its Service); SNAT works with and without it. The price is that
//!   backends see the gateway as the client of pod-to-Service traffic.
//! - **filter forward / output**: anything still addressed to the Service
//!   CIDR after DNAT has no ready endpoint (or is not a Service port) and is
//!   rejected (TCP reset, ICMP port unreachable), as kube-proxy does, so
//!   clients fail fast instead of timing out.
//! - **filter input / forward** for packets coming in from the bridge: pods
//!   may reach other pods (anything leaving through the bridge again), the
//!   DNS responder, and replies of connections someone else opened towards
//!   them (the node's probes and port-forwards). Everything else is dropped:
//!   no internet, no other host address, no other port on the node.
//!   One exception: the `default/kubernetes` Service, whose endpoint is the
//!   API server on a host address, so in-cluster clients work. Other
//!   Services whose endpoints lie outside the pod network stay unreachable
//!   from pods: anyone who may write an EndpointSlice could otherwise point
//!   a Service at any host port or at the internet.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Stdio;
use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::catalog::{Catalog, ServiceKind, ServicePort};
use super::NetError;

/// How long one `nft` run may take.
const NFT_TIMEOUT: Duration = Duration::from_secs(20);

/// What the rules need to know about the node's networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleConfig {
    /// The nftables table (family `inet`); nothing outside it is touched.
    pub table: String,
    /// The Linux bridge the pods hang off.
    pub bridge: String,
    pub pod_cidr: Ipv4Net,
    pub service_cidr: Ipv4Net,
    /// The bridge's own address (the pods' default gateway).
    pub gateway: Ipv4Addr,
    /// Where pods may send DNS queries (UDP and TCP).
    pub dns: SocketAddrV4,
}

/// nftables quotes interface names; ours come from config, but make sure a
/// name cannot break out of its quotes.
fn quoted(s: &str) -> String {
    let clean: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    format!("\"{clean}\"")
}

/// The table name as an nft identifier: only ASCII letters, digits and `_`
/// survive, so a name cannot smuggle in other commands.
fn table_ident(name: &str) -> String {
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if clean.starts_with(|c: char| c.is_ascii_alphabetic()) {
        clean
    } else {
        format!("t{clean}")
    }
}

fn port_chain(i: usize) -> String {
    format!("svc_{i}")
}

fn endpoint_chain(i: usize, j: usize) -> String {
    format!("svc_{i}_ep_{j}")
}

fn affinity_set(i: usize, j: usize) -> String {
    format!("svc_{i}_aff_{j}")
}

/// Render the whole table as an `nft -f` script that replaces the old one in
/// one transaction (create-if-missing, delete, define): the kernel applies
/// all of it or none of it, so there is no moment without rules.
pub fn render(cfg: &RuleConfig, catalog: &Catalog) -> String {
    let t = &table_ident(&cfg.table);
    let br = quoted(&cfg.bridge);
    let mut ports: Vec<(Ipv4Addr, &ServicePort, Option<u32>, String)> = Vec::new();
    for svc in &catalog.services {
        if let ServiceKind::ClusterIp(ip) = svc.kind {
            for p in &svc.ports {
                let what = format!(
                    "{}/{}:{}/{}",
                    svc.namespace,
                    svc.name,
                    p.port,
                    p.protocol.as_str()
                );
                ports.push((ip, p, svc.affinity_timeout_seconds, what));
            }
        }
    }

    let mut s = String::new();
    // `writeln!` into a String cannot fail; the results are ignored below.
    let _ = writeln!(
        s,
        "table inet {t} {{}}\ndelete table inet {t}\ntable inet {t} {{"
    );

    let _ = writeln!(
        s,
        "  map service_ports {{\n    type ipv4_addr . inet_proto . inet_service : verdict"
    );
    let with_backends: Vec<String> = ports
        .iter()
        .enumerate()
        .filter(|(_, (_, p, _, _))| !p.backends.is_empty())
        .map(|(i, (ip, p, _, _))| {
            format!(
                "{ip} . {} . {} : goto {}",
                p.protocol.as_str(),
                p.port,
                port_chain(i)
            )
        })
        .collect();
    if !with_backends.is_empty() {
        let _ = writeln!(s, "    elements = {{ {} }}", with_backends.join(", "));
    }
    let _ = writeln!(s, "  }}");

    for (i, (_, p, affinity, _)) in ports.iter().enumerate() {
        if let Some(timeout) = affinity {
            for j in 0..p.backends.len() {
                let _ = writeln!(
                    s,
                    "  set {} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}",
                    affinity_set(i, j)
                );
            }
        }
    }

    let dispatch = "ip daddr . meta l4proto . th dport vmap @service_ports";
    let _ = writeln!(
        s,
        "  chain nat_prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    {dispatch}\n  }}"
    );
    let _ = writeln!(
        s,
        "  chain nat_output {{\n    type nat hook output priority -100; policy accept;\n    {dispatch}\n  }}"
    );
    let _ = writeln!(
        s,
        "  chain nat_postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    ct status dnat ip saddr {} oifname {br} snat ip to {}\n  }}",
        cfg.pod_cidr, cfg.gateway
    );

    for (i, (_, p, affinity, what)) in ports.iter().enumerate() {
        if p.backends.is_empty() {
            continue;
        }
        let _ = writeln!(s, "  chain {} {{\n    comment \"{what}\"", port_chain(i));
        if affinity.is_some() {
            for j in 0..p.backends.len() {
                let _ = writeln!(
                    s,
                    "    ip saddr @{} goto {}",
                    affinity_set(i, j),
                    endpoint_chain(i, j)
                );
            }
        }
        let targets: Vec<String> = (0..p.backends.len())
            .map(|j| format!("{j} : goto {}", endpoint_chain(i, j)))
            .collect();
        let _ = writeln!(
            s,
            "    numgen random mod {} vmap {{ {} }}\n  }}",
            p.backends.len(),
            targets.join(", ")
        );
        for (j, b) in p.backends.iter().enumerate() {
            let _ = writeln!(s, "  chain {} {{", endpoint_chain(i, j));
            if affinity.is_some() {
                let _ = writeln!(s, "    update @{} {{ ip saddr }}", affinity_set(i, j));
            }
            let _ = writeln!(
                s,
                "    meta l4proto {} dnat ip to {}:{}\n  }}",
                p.protocol.as_str(),
                b.ip,
                b.port
            );
        }
    }

    let _ = writeln!(
        s,
        "  chain service_reject {{\n    meta l4proto tcp reject with tcp reset\n    reject with icmpx type port-unreachable\n  }}"
    );
    let _ = writeln!(
        s,
        "  chain filter_input {{\n    type filter hook input priority filter; policy accept;\n    iifname {br} jump pod_input\n  }}"
    );
    let (dns_ip, dns_port) = (cfg.dns.ip(), cfg.dns.port());
    let _ = writeln!(
        s,
        "  chain pod_input {{\n    ct state established,related accept\n    ip daddr {dns_ip} udp dport {dns_port} accept\n    ip daddr {dns_ip} tcp dport {dns_port} accept"
    );
    if let Some(ip) = api_server_ip(catalog) {
        let _ = writeln!(s, "    ct status dnat ct original ip daddr {ip} accept");
    }
    let _ = writeln!(s, "    drop\n  }}");
    let _ = writeln!(
        s,
        "  chain filter_forward {{\n    type filter hook forward priority filter; policy accept;\n    ip daddr {} jump service_reject\n    iifname {br} jump pod_forward\n  }}",
        cfg.service_cidr
    );
    let _ = writeln!(
        s,
        "  chain pod_forward {{\n    oifname {br} accept\n    ct state established,related accept\n    drop\n  }}"
    );
    let _ = writeln!(
        s,
        "  chain filter_output {{\n    type filter hook output priority filter; policy accept;\n    ip daddr {} jump service_reject\n  }}",
        cfg.service_cidr
    );
    let _ = writeln!(s, "}}");
    s
}

/// The cluster IP of `default/kubernetes`, the API server's own Service.
fn api_server_ip(catalog: &Catalog) -> Option<Ipv4Addr> {
    match catalog.get("default", "kubernetes")?.kind {
        ServiceKind::ClusterIp(ip) => Some(ip),
        _ => None,
    }
}

async fn nft(args: &[&str], stdin: Option<&str>) -> Result<(), NetError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(NetError::NftSpawn)?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input
            .write_all(text.as_bytes())
            .await
            .map_err(NetError::NftSpawn)?;
    }
    let out = tokio::time::timeout(NFT_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| NetError::NftTimeout)?
        .map_err(NetError::NftSpawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Nft {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Install `script` (from [`render`]) with `nft -f -`.
pub async fn apply(script: &str) -> Result<(), NetError> {
    nft(&["-f", "-"], Some(script)).await
}

/// Remove the table; a table that is already gone is fine.
pub async fn remove(table: &str) -> Result<(), NetError> {
    // Create-then-delete in one transaction: succeeds whether or not the
    // table exists, without parsing nft's error text.
    let table = table_ident(table);
    let script = format!("table inet {table} {{}}\ndelete table inet {table}\n");
    nft(&["-f", "-"], Some(&script)).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::network::catalog::{Backend, Protocol, ServiceEntry};

    fn cfg() -> RuleConfig {
        RuleConfig {
            table: "skiff; flush ruleset".into(),
            bridge: "skiff0\"; flush ruleset".into(),
            pod_cidr: "10.244.0.0/16".parse().unwrap(),
            service_cidr: "10.96.0.0/12".parse().unwrap(),
            gateway: "10.244.0.1".parse().unwrap(),
            dns: "10.244.0.1:53".parse().unwrap(),
        }
    }

    #[test]
    fn services_without_backends_get_no_dnat_and_names_cannot_inject() {
        let backend = |ip: &str| Backend {
            ip: ip.parse().unwrap(),
            port: 8080,
        };
        let svc = |name: &str, backends: Vec<Backend>, affinity| ServiceEntry {
            namespace: "ns".into(),
            name: name.into(),
            kind: ServiceKind::ClusterIp("10.96.0.10".parse().unwrap()),
            ports: vec![ServicePort {
                name: String::new(),
                port: 80,
                protocol: Protocol::Tcp,
                backends,
            }],
            endpoints: vec![],
            affinity_timeout_seconds: affinity,
        };
        let cat = Catalog {
            services: vec![
                svc(
                    "a",
                    vec![backend("10.244.0.2"), backend("10.244.0.3")],
                    Some(60),
                ),
                svc("b", vec![], None),
            ],
        };
        let text = render(&cfg(), &cat);
        assert!(text.contains("oifname \"skiff0flushruleset\""), "{text}");
        assert!(
            text.starts_with("table inet skiffflushruleset {}\n"),
            "{text}"
        );
        assert!(!text.contains("flush ruleset"));
        assert!(text.contains("numgen random mod 2 vmap"));
        assert!(text.contains("dnat ip to 10.244.0.3:8080"));
        assert!(text.contains("update @svc_0_aff_1 { ip saddr }"));
        assert!(text.contains("timeout 60s"));
        assert!(
            !text.contains("chain svc_1"),
            "no chain for a Service without endpoints"
        );
    }
}
