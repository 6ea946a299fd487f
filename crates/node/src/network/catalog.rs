//! The node's view of Services: which cluster IP and port goes to which
//! ready endpoint addresses, computed from Services and EndpointSlices
//! (Endpoints where a Service has no slices). A pure function of the cached
//! objects, shared by the nftables rules and the DNS responder.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label linking an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The transport protocol of a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// From a Kubernetes `protocol` field (default TCP); `None` for SCTP and
    /// anything unknown, which the node does not proxy.
    fn parse(s: Option<&str>) -> Option<Self> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            _ => None,
        }
    }

    /// The lowercase name (`tcp`, `udp`), as nftables and SRV labels spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One ready endpoint address and the port it serves a Service port on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backend {
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// One port of a Service and where its traffic goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The port's name (`""` when the Service has a single unnamed port).
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
    /// Ready endpoints, sorted and without duplicates. Named `targetPort`s are
    /// already resolved: each backend carries its own endpoint's port.
    pub backends: Vec<Backend>,
}

/// How a Service is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// A virtual IP that the node's rules translate to endpoints.
    ClusterIp(Ipv4Addr),
    /// `clusterIP: None`: DNS answers with the endpoints themselves.
    Headless,
    /// `type: ExternalName`: DNS answers with a CNAME, no rules.
    ExternalName(String),
}

/// A ready endpoint of a Service, for DNS.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    /// `hostname` of the endpoint (set for StatefulSet pods with a subdomain).
    pub hostname: Option<String>,
}

/// One Service as the node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    pub namespace: String,
    pub name: String,
    pub kind: ServiceKind,
    pub ports: Vec<ServicePort>,
    /// Ready endpoint addresses (sorted, unique by IP).
    pub endpoints: Vec<Endpoint>,
    /// `sessionAffinity: ClientIP`: how long a client sticks to its endpoint.
    pub affinity_timeout_seconds: Option<u32>,
}

/// Every Service the node serves, sorted by namespace and name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    pub services: Vec<ServiceEntry>,
}

/// A port as an endpoint source names it: (name, protocol) → port number.
type PortMap = BTreeMap<(String, Protocol), u16>;

/// The endpoints of one Service, merged over its slices: each address with
/// its hostname and the ports its slice declared.
#[derive(Default)]
struct Collected {
    endpoints: BTreeMap<Ipv4Addr, Option<String>>,
    backends: BTreeMap<(String, Protocol), BTreeSet<Backend>>,
    /// Endpoints that are terminating but still serving: used for a port
    /// only when it has no ready backend, so connections made while the
    /// last pods shut down still land (kube-proxy's rule since 1.28).
    terminating: BTreeMap<(String, Protocol), BTreeSet<Backend>>,
}

impl Collected {
    fn add(&mut self, ip: Ipv4Addr, hostname: Option<String>, ports: &PortMap) {
        let entry = self.endpoints.entry(ip).or_default();
        if entry.is_none() {
            *entry = hostname;
        }
        for (key, port) in ports {
            self.backends
                .entry(key.clone())
                .or_default()
                .insert(Backend { ip, port: *port });
        }
    }
}

fn from_slices<'a>(slices: impl Iterator<Item = &'a EndpointSlice>) -> Option<Collected> {
    let mut out = Collected::default();
    let mut any = false;
    for slice in slices {
        any = true;
        if slice.address_type != "IPv4" {
            continue;
        }
        let ports: PortMap = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let proto = Protocol::parse(p.protocol.as_deref())?;
                let port = u16::try_from(p.port?).ok()?;
                Some(((p.name.clone().unwrap_or_default(), proto), port))
            })
            .collect();
        for ep in &slice.endpoints {
            let cond = ep.conditions.as_ref();
            // A missing `ready` means ready (the API's documented default).
            let ready = cond.and_then(|c| c.ready).unwrap_or(true);
            let draining = cond.and_then(|c| c.serving).unwrap_or(false)
                && cond.and_then(|c| c.terminating).unwrap_or(false);
            for addr in &ep.addresses {
                let Ok(ip) = addr.parse::<Ipv4Addr>() else {
                    continue;
                };
                if ready {
                    out.add(ip, ep.hostname.clone(), &ports);
                } else if draining {
                    for (key, port) in &ports {
                        out.terminating
                            .entry(key.clone())
                            .or_default()
                            .insert(Backend { ip, port: *port });
                    }
                }
            }
        }
    }
    any.then_some(out)
}

fn from_endpoints(eps: &Endpoints) -> Collected {
    let mut out = Collected::default();
    for subset in eps.subsets.iter().flatten() {
        let ports: PortMap = subset
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let proto = Protocol::parse(p.protocol.as_deref())?;
                let port = u16::try_from(p.port).ok()?;
                Some(((p.name.clone().unwrap_or_default(), proto), port))
            })
            .collect();
        // `addresses` holds the ready ones; `notReadyAddresses` are skipped.
        for addr in subset.addresses.iter().flatten() {
            if let Ok(ip) = addr.ip.parse::<Ipv4Addr>() {
                out.add(ip, addr.hostname.clone(), &ports);
            }
        }
    }
    out
}

impl Catalog {
    /// Compute the catalog. EndpointSlices labelled with a Service's name win;
    /// a Service without any falls back to its Endpoints object (clusters
    /// whose controllers only write Endpoints). Only IPv4 is handled: the pod
    /// network is IPv4.
    pub fn build<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        endpoints: impl IntoIterator<Item = &'a Endpoints>,
    ) -> Catalog {
        let mut slices_by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> =
            BTreeMap::new();
        for s in slices {
            let ns = s.metadata.namespace.clone().unwrap_or_default();
            let svc = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .cloned();
            if let Some(svc) = svc {
                slices_by_service.entry((ns, svc)).or_default().push(s);
            }
        }
        let endpoints_by_service: BTreeMap<(String, String), &Endpoints> = endpoints
            .into_iter()
            .map(|e| {
                (
                    (
                        e.metadata.namespace.clone().unwrap_or_default(),
                        e.metadata.name.clone().unwrap_or_default(),
                    ),
                    e,
                )
            })
            .collect();
        let mut out: Vec<ServiceEntry> = services
            .into_iter()
            .filter_map(|svc| {
                let key = (
                    svc.metadata.namespace.clone().unwrap_or_default(),
                    svc.metadata.name.clone().unwrap_or_default(),
                );
                let collected = slices_by_service
                    .get(&key)
                    .and_then(|s| from_slices(s.iter().copied()))
                    .or_else(|| endpoints_by_service.get(&key).map(|e| from_endpoints(e)))
                    .unwrap_or_default();
                entry(svc, key, collected)
            })
            .collect();
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Catalog { services: out }
    }

    /// The Service `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&ServiceEntry> {
        self.services
            .binary_search_by(|s| (s.namespace.as_str(), s.name.as_str()).cmp(&(namespace, name)))
            .ok()
            .and_then(|i| self.services.get(i))
    }
}

fn entry(svc: &Service, key: (String, String), mut collected: Collected) -> Option<ServiceEntry> {
    let spec = svc.spec.as_ref()?;
    let (namespace, name) = key;
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        ServiceKind::ExternalName(spec.external_name.clone().unwrap_or_default())
    } else {
        match spec.cluster_ip.as_deref() {
            Some("None") => ServiceKind::Headless,
            Some(ip) => ServiceKind::ClusterIp(ip.parse().ok()?),
            // Not allocated yet (or an IPv6-only Service): nothing to serve.
            None => return None,
        }
    };
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let protocol = Protocol::parse(p.protocol.as_deref())?;
            let port = u16::try_from(p.port).ok()?;
            let name = p.name.clone().unwrap_or_default();
            let key = (name.clone(), protocol);
            let backends = collected
                .backends
                .remove(&key)
                .filter(|b| !b.is_empty())
                .or_else(|| collected.terminating.remove(&key))
                .map(|b| b.into_iter().collect())
                .unwrap_or_default();
            Some(ServicePort {
                name,
                port,
                protocol,
                backends,
            })
        })
        .collect();
    let affinity_timeout_seconds =
        (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .filter(|t| *t > 0)
                // The API's default: three hours.
                .unwrap_or(10_800)
        });
    let endpoints = match kind {
        ServiceKind::ExternalName(_) => Vec::new(),
        _ => collected
            .endpoints
            .into_iter()
            .map(|(ip, hostname)| Endpoint { ip, hostname })
            .collect(),
    };
    Some(ServiceEntry {
        namespace,
        name,
        kind,
        ports,
        endpoints,
        affinity_timeout_seconds,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    pub(crate) fn service(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn slices_give_ready_backends_with_named_ports_resolved_per_slice() {
        let svc = service(json!({
            "metadata": {"namespace": "ns", "name": "web"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [
                {"name": "http", "port": 80, "targetPort": "web"},
                {"name": "dns", "port": 53, "protocol": "UDP"}
            ]}
        }));
        let slice = |name: &str, port: i32, eps: serde_json::Value| -> EndpointSlice {
            serde_json::from_value(json!({
                "metadata": {"namespace": "ns", "name": name,
                    "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": port, "protocol": "TCP"},
                          {"name": "dns", "port": 5353, "protocol": "UDP"}],
                "endpoints": eps
            }))
            .unwrap()
        };
        let a = slice(
            "web-a",
            8080,
            json!([
                {"addresses": ["10.244.0.2"], "conditions": {"ready": true}},
                {"addresses": ["10.244.0.3"], "conditions": {"ready": false}},
                {"addresses": ["10.244.0.4"]}
            ]),
        );
        // Terminating endpoints only count when nothing is ready.
        let draining = serde_json::from_value::<EndpointSlice>(json!({
            "metadata": {"namespace": "ns", "name": "web-c",
                "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": ["10.244.0.7"],
                "conditions": {"ready": false, "serving": true, "terminating": true}}]
        }))
        .unwrap();
        let only_draining = Catalog::build([&svc], [&draining], []);
        let http = &only_draining.get("ns", "web").unwrap().ports[0];
        assert_eq!(http.backends.len(), 1, "the draining endpoint serves");
        assert!(only_draining.get("ns", "web").unwrap().endpoints.is_empty());
        // A second slice whose pods name the port differently.
        let b = slice("web-b", 9090, json!([{"addresses": ["10.244.0.5"]}]));
        let cat = Catalog::build([&svc], [&a, &b, &draining], []);
        let web = cat.get("ns", "web").unwrap();
        assert_eq!(
            web.kind,
            ServiceKind::ClusterIp("10.96.0.10".parse().unwrap())
        );
        let http = &web.ports[0];
        assert_eq!(http.protocol, Protocol::Tcp);
        let got: Vec<(String, u16)> = http
            .backends
            .iter()
            .map(|b| (b.ip.to_string(), b.port))
            .collect();
        assert_eq!(
            got,
            [
                ("10.244.0.2", 8080),
                ("10.244.0.4", 8080),
                ("10.244.0.5", 9090)
            ]
            .map(|(a, p)| (a.to_string(), p))
        );
        assert_eq!(web.ports[1].protocol, Protocol::Udp);
        assert_eq!(web.ports[1].backends.len(), 3);
        assert_eq!(web.endpoints.len(), 3);
        assert_eq!(web.affinity_timeout_seconds, None);
    }

    #[test]
    fn endpoints_are_the_fallback_and_kinds_are_told_apart() {
        let headless = service(json!({
            "metadata": {"namespace": "ns", "name": "db"},
            "spec": {"clusterIP": "None", "ports": [{"port": 5432}],
                     "sessionAffinity": "ClientIP"}
        }));
        let ext = service(json!({
            "metadata": {"namespace": "ns", "name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "example.org"}
        }));
        let pending = service(json!({
            "metadata": {"namespace": "ns", "name": "pending"},
            "spec": {"ports": [{"port": 1}]}
        }));
        let eps: Endpoints = serde_json::from_value(json!({
            "metadata": {"namespace": "ns", "name": "db"},
            "subsets": [{
                "addresses": [{"ip": "10.244.0.9", "hostname": "db-0"}],
                "notReadyAddresses": [{"ip": "10.244.0.8"}],
                "ports": [{"port": 5432}]
            }]
        }))
        .unwrap();
        let cat = Catalog::build([&headless, &ext, &pending], [], [&eps]);
        assert_eq!(cat.services.len(), 2, "the unallocated Service is left out");
        let db = cat.get("ns", "db").unwrap();
        assert_eq!(db.kind, ServiceKind::Headless);
        assert_eq!(
            db.endpoints,
            vec![Endpoint {
                ip: "10.244.0.9".parse().unwrap(),
                hostname: Some("db-0".into())
            }]
        );
        assert_eq!(db.ports[0].backends.len(), 1);
        assert_eq!(db.affinity_timeout_seconds, Some(10_800));
        assert_eq!(
            cat.get("ns", "ext").unwrap().kind,
            ServiceKind::ExternalName("example.org".into())
        );
    }
}
