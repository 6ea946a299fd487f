//! The cluster DNS responder: authoritative for the cluster domain, answering
//! from the [`Catalog`] over UDP and TCP. Names it does not know get NXDOMAIN
//! and nothing is forwarded upstream: pods have no way out of the node, so a
//! recursive answer would only invite them to try.
//!
//! Answered names (`<domain>` is e.g. `cluster.local`):
//! - `<svc>.<ns>.svc.<domain>`: A with the cluster IP; for a headless Service
//!   the ready endpoints' addresses; for an ExternalName a CNAME.
//! - `<host>.<svc>.<ns>.svc.<domain>` for endpoints of a headless Service,
//!   by `hostname` or by dashed address (`10-244-0-5`).
//! - `_<port>._<proto>.<svc>.<ns>.svc.<domain>`: SRV per named port.
//! - `<a-b-c-d>.<ns>.pod.<domain>`: A with that address (as kube-dns does,
//!   without checking that such a pod exists).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::catalog::{Catalog, ServiceEntry, ServiceKind};
use super::NetError;

/// The TTL of every answer: short, so clients notice changes quickly (the
/// same as CoreDNS's kubernetes plugin).
const TTL: u32 = 5;
/// Plain DNS over UDP without EDNS.
const UDP_MIN: usize = 512;
/// The most a TCP client may keep open at once.
const TCP_CONNECTIONS: usize = 64;
/// How long an idle TCP connection is kept.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Build the response to `request` from `catalog` for zone `domain`
/// (e.g. `cluster.local`, without a trailing dot).
pub fn answer(catalog: &Catalog, domain: &str, request: &Message) -> Message {
    let mut resp = Message::response(request.metadata.id, request.metadata.op_code);
    resp.metadata.recursion_desired = request.metadata.recursion_desired;
    resp.metadata.checking_disabled = request.metadata.checking_disabled;
    resp.queries = request.queries.clone();
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        resp.edns = Some(edns);
    }
    if request.metadata.message_type != MessageType::Query {
        resp.metadata.response_code = ResponseCode::FormErr;
        return resp;
    }
    if request.metadata.op_code != OpCode::Query {
        resp.metadata.response_code = ResponseCode::NotImp;
        return resp;
    }
    let [query] = request.queries.as_slice() else {
        resp.metadata.response_code = ResponseCode::FormErr;
        return resp;
    };
    if query.query_class() != DNSClass::IN {
        resp.metadata.response_code = ResponseCode::Refused;
        return resp;
    }
    let name = query.name();
    match lookup(catalog, domain, name) {
        Some(found) => {
            resp.metadata.authoritative = true;
            for rec in found.records(name, query.query_type(), domain) {
                resp.answers.push(rec);
            }
        }
        None => {
            resp.metadata.authoritative = in_zone(name, domain);
            resp.metadata.response_code = ResponseCode::NXDomain;
        }
    }
    resp
}

/// Lowercase labels of `name` without the trailing root.
fn labels(name: &Name) -> Vec<String> {
    name.iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect()
}

fn in_zone(name: &Name, domain: &str) -> bool {
    let l = labels(name);
    let d: Vec<&str> = domain.split('.').filter(|s| !s.is_empty()).collect();
    l.len() >= d.len() && l[l.len() - d.len()..].iter().zip(&d).all(|(a, b)| a == b)
}

/// What a name resolves to.
enum Found<'a> {
    /// A Service name.
    Service(&'a ServiceEntry),
    /// One address (pod names, headless endpoint names).
    Address(Ipv4Addr),
    /// SRV records of a Service port.
    Srv(&'a ServiceEntry, u16),
}

fn dashed(s: &str) -> Option<Ipv4Addr> {
    let dotted = s.replace('-', ".");
    dotted.parse().ok().filter(|_| s.split('-').count() == 4)
}

fn lookup<'a>(catalog: &'a Catalog, domain: &str, name: &Name) -> Option<Found<'a>> {
    let l = labels(name);
    let d: Vec<&str> = domain.split('.').filter(|s| !s.is_empty()).collect();
    if !in_zone(name, domain) {
        return None;
    }
    let rest: Vec<&str> = l[..l.len() - d.len()].iter().map(String::as_str).collect();
    match rest.as_slice() {
        [ip, _ns, "pod"] => dashed(ip).map(Found::Address),
        [svc, ns, "svc"] => catalog.get(ns, svc).map(Found::Service),
        [port, proto, svc, ns, "svc"] => {
            let entry = catalog.get(ns, svc)?;
            let port_name = port.strip_prefix('_')?;
            let proto = proto.strip_prefix('_')?;
            let p = entry.ports.iter().find(|p| {
                !p.name.is_empty() && p.name == port_name && p.protocol.as_str() == proto
            })?;
            Some(Found::Srv(entry, p.port))
        }
        [host, svc, ns, "svc"] => {
            let entry = catalog.get(ns, svc)?;
            if entry.kind != ServiceKind::Headless {
                return None;
            }
            entry
                .endpoints
                .iter()
                .find(|e| e.hostname.as_deref() == Some(host) || dashed(host) == Some(e.ip))
                .map(|e| Found::Address(e.ip))
        }
        _ => None,
    }
}

fn fqdn(s: &str) -> Option<Name> {
    let mut n = Name::from_ascii(s).ok()?;
    n.set_fqdn(true);
    Some(n)
}

impl Found<'_> {
    fn records(&self, name: &Name, qtype: RecordType, domain: &str) -> Vec<Record> {
        let a = |ip: Ipv4Addr| Record::from_rdata(name.clone(), TTL, RData::A(A(ip)));
        let wants_a = matches!(qtype, RecordType::A | RecordType::ANY);
        match self {
            Found::Address(ip) if wants_a => vec![a(*ip)],
            Found::Address(_) => Vec::new(),
            Found::Service(svc) => match &svc.kind {
                ServiceKind::ExternalName(target) => fqdn(target)
                    .map(|t| Record::from_rdata(name.clone(), TTL, RData::CNAME(CNAME(t))))
                    .into_iter()
                    .collect(),
                ServiceKind::ClusterIp(ip) if wants_a => vec![a(*ip)],
                ServiceKind::Headless if wants_a => svc.endpoints.iter().map(|e| a(e.ip)).collect(),
                _ => Vec::new(),
            },
            Found::Srv(svc, port) if matches!(qtype, RecordType::SRV | RecordType::ANY) => {
                let base = format!("{}.{}.svc.{domain}", svc.name, svc.namespace);
                let targets: Vec<String> = match svc.kind {
                    ServiceKind::Headless => svc
                        .endpoints
                        .iter()
                        .map(|e| {
                            let host = e
                                .hostname
                                .clone()
                                .unwrap_or_else(|| e.ip.to_string().replace('.', "-"));
                            format!("{host}.{base}")
                        })
                        .collect(),
                    _ => vec![base],
                };
                let weight = u16::try_from(100 / targets.len().max(1)).unwrap_or(100);
                targets
                    .iter()
                    .filter_map(|t| fqdn(t))
                    .map(|t| {
                        Record::from_rdata(
                            name.clone(),
                            TTL,
                            RData::SRV(SRV::new(0, weight, *port, t)),
                        )
                    })
                    .collect()
            }
            Found::Srv(..) => Vec::new(),
        }
    }
}

/// Serialize `resp`, truncated (TC set, records dropped) if it does not fit
/// in `limit` bytes.
fn encode(resp: &Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = resp.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    resp.truncate().to_vec().ok()
}

/// The answer to one wire-format query; `None` when the bytes are not even a
/// DNS header (dropped, as there is nobody to answer to).
fn respond(catalog: &Catalog, domain: &str, packet: &[u8], udp: bool) -> Option<Vec<u8>> {
    let request = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(_) => {
            // Answer FORMERR to anything with an id; shorter junk is dropped.
            let id = u16::from_be_bytes([*packet.first()?, *packet.get(1)?]);
            let resp = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
            return resp.to_vec().ok();
        }
    };
    let resp = answer(catalog, domain, &request);
    let limit = if udp {
        usize::from(request.max_payload()).clamp(UDP_MIN, 4096)
    } else {
        usize::from(u16::MAX)
    };
    encode(&resp, limit)
}

/// A running responder on one address (UDP and TCP).
#[derive(Debug)]
pub struct DnsServer {
    addr: SocketAddr,
}

impl DnsServer {
    /// Bind `addr` (UDP and TCP) and serve until `shutdown`. The address may
    /// not exist yet (IP_FREEBIND): the bridge and its gateway address appear
    /// with the first pod, and the responder must already be there for it.
    /// Port 0 picks a free port (the same for UDP and TCP is not guaranteed;
    /// tests use [`DnsServer::addr`], the UDP one).
    pub fn start(
        addr: SocketAddr,
        domain: String,
        catalog: watch::Receiver<Arc<Catalog>>,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<DnsServer, NetError> {
        let bind_err = |source| NetError::DnsBind { addr, source };
        let udp = bind_udp(addr).map_err(bind_err)?;
        let local = udp.local_addr().map_err(bind_err)?;
        let tcp = bind_tcp(local).map_err(bind_err)?;
        let domain: Arc<str> = domain.trim_end_matches('.').to_ascii_lowercase().into();
        tasks.spawn(serve_udp(
            udp,
            domain.clone(),
            catalog.clone(),
            shutdown.clone(),
        ));
        let conns = tasks.clone();
        tasks.spawn(serve_tcp(tcp, domain, catalog, conns, shutdown));
        Ok(DnsServer { addr: local })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn socket(addr: SocketAddr, kind: socket2::Type) -> std::io::Result<socket2::Socket> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, kind, None)?;
    if addr.is_ipv4() {
        s.set_freebind_v4(true)?;
    } else {
        s.set_freebind_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = socket(addr, socket2::Type::DGRAM)?;
    UdpSocket::from_std(s.into())
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = socket(addr, socket2::Type::STREAM)?;
    s.listen(128)?;
    TcpListener::from_std(s.into())
}

async fn serve_udp(
    sock: UdpSocket,
    domain: Arc<str>,
    catalog: watch::Receiver<Arc<Catalog>>,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS UDP receive failed");
                    continue;
                }
            },
        };
        let cat = catalog.borrow().clone();
        let Some(reply) = buf.get(..n).and_then(|p| respond(&cat, &domain, p, true)) else {
            continue;
        };
        if let Err(e) = sock.send_to(&reply, peer).await {
            tracing::debug!(error = %e, %peer, "DNS UDP reply failed");
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    domain: Arc<str>,
    catalog: watch::Receiver<Arc<Catalog>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(TCP_CONNECTIONS));
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS TCP accept failed");
                    continue;
                }
            },
        };
        // Over the limit, the new connection is closed at once.
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            continue;
        };
        let (domain, catalog, stop) = (domain.clone(), catalog.clone(), shutdown.clone());
        tasks.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = serve_connection(stream, &domain, &catalog) => {}
            }
            drop(permit);
        });
    }
}

/// Length-prefixed messages until the client closes or idles out.
async fn serve_connection(
    mut stream: TcpStream,
    domain: &str,
    catalog: &watch::Receiver<Arc<Catalog>>,
) {
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let n = usize::from(u16::from_be_bytes(len));
        let Some(msg) = buf.get_mut(..n) else { return };
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(msg)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let cat = catalog.borrow().clone();
        let Some(reply) = respond(&cat, domain, msg, false) else {
            return;
        };
        let Ok(rlen) = u16::try_from(reply.len()) else {
            return;
        };
        let mut out = rlen.to_be_bytes().to_vec();
        out.extend_from_slice(&reply);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::network::catalog::{Backend, Endpoint, Protocol, ServicePort};
    use hickory_proto::op::Query;

    fn catalog() -> Catalog {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let port = |name: &str, backends: Vec<Backend>| ServicePort {
            name: name.into(),
            port: 80,
            protocol: Protocol::Tcp,
            backends,
        };
        Catalog {
            services: vec![
                ServiceEntry {
                    namespace: "ns".into(),
                    name: "db".into(),
                    kind: ServiceKind::Headless,
                    ports: vec![port("sql", vec![])],
                    endpoints: vec![
                        Endpoint {
                            ip: ip("10.244.0.5"),
                            hostname: Some("db-0".into()),
                        },
                        Endpoint {
                            ip: ip("10.244.0.6"),
                            hostname: None,
                        },
                    ],
                    affinity_timeout_seconds: None,
                },
                ServiceEntry {
                    namespace: "ns".into(),
                    name: "ext".into(),
                    kind: ServiceKind::ExternalName("example.org".into()),
                    ports: vec![],
                    endpoints: vec![],
                    affinity_timeout_seconds: None,
                },
                ServiceEntry {
                    namespace: "ns".into(),
                    name: "web".into(),
                    kind: ServiceKind::ClusterIp(ip("10.96.0.10")),
                    ports: vec![port("http", vec![])],
                    endpoints: vec![],
                    affinity_timeout_seconds: None,
                },
            ],
        }
    }

    fn ask(name: &str, t: RecordType) -> Message {
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        let bytes = q.to_vec().unwrap();
        let reply = respond(&catalog(), "cluster.local", &bytes, true).unwrap();
        let m = Message::from_vec(&reply).unwrap();
        assert_eq!(m.metadata.id, q.metadata.id);
        m
    }

    fn rdata(m: &Message) -> Vec<String> {
        m.answers.iter().map(|r| r.data.to_string()).collect()
    }

    #[test]
    fn services_pods_and_srv_resolve_and_the_rest_is_nxdomain() {
        let m = ask("web.ns.svc.cluster.local.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert_eq!(rdata(&m), ["10.96.0.10"]);
        // Case does not matter.
        assert_eq!(
            rdata(&ask("WEB.ns.SVC.cluster.local.", RecordType::A)),
            ["10.96.0.10"]
        );
        // AAAA of an existing name: no data, no error.
        let m = ask("web.ns.svc.cluster.local.", RecordType::AAAA);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert_eq!(
            rdata(&ask("db.ns.svc.cluster.local.", RecordType::A)),
            ["10.244.0.5", "10.244.0.6"]
        );
        assert_eq!(
            rdata(&ask("db-0.db.ns.svc.cluster.local.", RecordType::A)),
            ["10.244.0.5"]
        );
        assert_eq!(
            rdata(&ask("10-244-0-6.db.ns.svc.cluster.local.", RecordType::A)),
            ["10.244.0.6"]
        );
        assert_eq!(
            rdata(&ask("ext.ns.svc.cluster.local.", RecordType::A)),
            ["example.org."]
        );
        assert_eq!(
            rdata(&ask("10-1-2-3.ns.pod.cluster.local.", RecordType::A)),
            ["10.1.2.3"]
        );
        assert_eq!(
            rdata(&ask(
                "_http._tcp.web.ns.svc.cluster.local.",
                RecordType::SRV
            )),
            ["0 100 80 web.ns.svc.cluster.local."]
        );
        assert_eq!(
            rdata(&ask("_sql._tcp.db.ns.svc.cluster.local.", RecordType::SRV)),
            [
                "0 50 80 db-0.db.ns.svc.cluster.local.",
                "0 50 80 10-244-0-6.db.ns.svc.cluster.local."
            ]
        );
        for unknown in [
            "nope.ns.svc.cluster.local.",
            "web.other.svc.cluster.local.",
            "x.web.ns.svc.cluster.local.",
            "1-2-3.ns.pod.cluster.local.",
            "example.com.",
            "_http._udp.web.ns.svc.cluster.local.",
        ] {
            let m = ask(unknown, RecordType::A);
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::NXDomain,
                "{unknown}"
            );
        }
    }

    #[test]
    fn junk_gets_formerr_or_nothing() {
        assert!(respond(&catalog(), "cluster.local", &[1], true).is_none());
        let reply = respond(&catalog(), "cluster.local", &[0x12, 0x34, 0xff], true).unwrap();
        let m = Message::from_vec(&reply).unwrap();
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    }
}
