//! The Endpoints controller (upstream pkg/controller/endpoint): one core/v1
//! Endpoints object per Service that has a selector, named like the Service,
//! listing the selected pods' addresses (ready ones in `addresses`, the others
//! in `notReadyAddresses`) grouped into subsets by the set of ports each pod
//! offers (a named `targetPort` is looked up in every pod's container ports).
//!
//! Services without a selector and ExternalName Services are left alone (their
//! Endpoints, if any, are the user's). When a Service goes, its Endpoints go
//! too; upstream sets no owner reference on Endpoints, so this controller
//! deletes them itself (and, once at start, those whose Service vanished
//! while no controller ran).
//!
//! This module also holds what the EndpointSlice controller shares with it:
//! which pods a Service selects, how a pod's ports and addresses resolve, and
//! the pod-change triggers (a pod event wakes the Services that select it now
//! or selected it before, and only when something that matters changed).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use skiff_client::cache::Cache;
use skiff_client::events::{EventType, Recorder};
use skiff_client::objects;
use tokio_util::sync::CancellationToken;

use crate::runtime::{Backoff, Context, Error};

/// Most addresses one Endpoints object carries (upstream's maxCapacity).
pub const MAX_ADDRESSES: usize = 1000;
/// Set on an Endpoints object whose addresses were cut at [`MAX_ADDRESSES`].
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// When the change that caused the last write happened (RFC 3339).
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// Label on the Endpoints (and slices) of a headless Service.
pub const HEADLESS: &str = "service.kubernetes.io/headless";
/// Endpoints carrying this annotation are leader-election records, never a
/// Service's (upstream skips them in its start-up sweep).
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

// ---------------------------------------------------------------------------
// Shared with the EndpointSlice controller.
// ---------------------------------------------------------------------------

/// The Service's selector, if this controller manages its endpoints (not
/// ExternalName, selector present and non-empty; an empty map is what an
/// omitted selector decodes to upstream).
pub(crate) fn managed_selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

/// Whether `selector` (a Service's equality selector) selects `labels`.
pub(crate) fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The pods of the Service's namespace its selector selects.
pub(crate) fn selected_pods(pods: &Cache<Pod>, svc: &Service) -> Vec<Arc<Pod>> {
    let Some(selector) = managed_selector(svc) else {
        return Vec::new();
    };
    let mut out: Vec<Arc<Pod>> = pods
        .in_namespace(&svc.namespace().unwrap_or_default())
        .into_iter()
        .filter(|p| selector_matches(selector, p.labels()))
        .collect();
    out.sort_by_key(|p| p.name_any());
    out
}

/// Whether the Service has a cluster IP (not headless).
pub(crate) fn has_cluster_ip(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty() && ip != "None")
}

/// The pod's IPs (`status.podIPs`, else `status.podIP`).
pub(crate) fn pod_ips(pod: &Pod) -> Vec<String> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let ips: Vec<String> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .filter(|ip| !ip.is_empty())
        .collect();
    if !ips.is_empty() {
        return ips;
    }
    status
        .pod_ip
        .iter()
        .filter(|ip| !ip.is_empty())
        .cloned()
        .collect()
}

/// Whether `ip` is an IPv6 address (anything unparsable counts as IPv4).
pub(crate) fn is_ipv6(ip: &str) -> bool {
    ip.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_ipv6())
}

/// Upstream's ShouldPodBeInEndpoints: not finished, has an IP, and (unless
/// terminating pods are wanted) not being deleted.
pub(crate) fn pod_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if objects::pod_terminal(pod) || pod_ips(pod).is_empty() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// Upstream's ShouldSetHostname: the pod names itself under this Service.
pub(crate) fn pod_hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let same_ns = pod.namespace() == svc.namespace();
    (same_ns && spec.subdomain.as_deref() == Some(svc.name_any().as_str()))
        .then(|| hostname.to_string())
}

/// The protocol of a Service port (TCP when unset, as defaulting does).
pub(crate) fn port_protocol(port: &ServicePort) -> String {
    port.protocol.clone().unwrap_or_else(|| "TCP".into())
}

/// Upstream's FindPort: a numeric `targetPort` as is (unset: the port
/// itself), a named one looked up in the pod's containers (and sidecars,
/// init containers with `restartPolicy: Always`) with the same protocol.
pub(crate) fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let protocol = port_protocol(port);
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// A reference to the pod for `targetRef` (no resourceVersion, as upstream,
/// so that pod updates that change nothing here cause no write).
pub(crate) fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.namespace(),
        name: Some(pod.name_any()),
        uid: pod.uid(),
        ..Default::default()
    }
}

/// When the latest change among the Service and its pods happened: the
/// Service's creation, each pod's creation or last Ready transition. (Upstream
/// tracks the earliest change not yet written; the latest change is what a
/// stateless controller can tell.)
pub(crate) fn trigger_time(svc: &Service, pods: &[Arc<Pod>]) -> Option<Timestamp> {
    let pod_times = pods.iter().filter_map(|p| {
        let ready = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0);
        ready.or_else(|| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
    });
    svc.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .into_iter()
        .chain(pod_times)
        .max()
}

/// What about a pod matters to endpoints: a change in anything else (status
/// timestamps, annotations, resourceVersion) wakes no Service.
fn fingerprint(pod: &Pod) -> u64 {
    let mut h = DefaultHasher::new();
    pod.metadata.uid.hash(&mut h);
    pod.metadata.labels.hash(&mut h);
    pod.metadata.deletion_timestamp.is_some().hash(&mut h);
    pod_ips(pod).hash(&mut h);
    objects::pod_ready(pod).hash(&mut h);
    objects::pod_terminal(pod).hash(&mut h);
    if let Some(spec) = pod.spec.as_ref() {
        spec.node_name.hash(&mut h);
        spec.hostname.hash(&mut h);
        spec.subdomain.hash(&mut h);
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            c.restart_policy.hash(&mut h);
            for p in c.ports.iter().flatten() {
                (&p.name, p.container_port, &p.protocol).hash(&mut h);
            }
        }
    }
    h.finish()
}

struct Seen {
    services: Vec<String>,
    fingerprint: u64,
}

/// Maps pod changes to the Services to reconcile: those that select the pod
/// now and those that selected it when it was last seen (so a pod whose
/// labels changed leaves its old Service), skipping changes that do not
/// matter to endpoints.
pub(crate) struct PodTriggers {
    services: Store<Service>,
    pods: Cache<Pod>,
    seen: Mutex<HashMap<String, Seen>>,
}

impl PodTriggers {
    pub(crate) fn new(services: Store<Service>, pods: Cache<Pod>) -> Arc<Self> {
        Arc::new(PodTriggers {
            services,
            pods,
            seen: Mutex::new(HashMap::new()),
        })
    }

    fn matching(&self, pod: &Pod) -> Vec<String> {
        let ns = pod.namespace();
        let mut names: Vec<String> = self
            .services
            .state()
            .iter()
            .filter(|s| s.namespace() == ns)
            .filter(|s| managed_selector(s).is_some_and(|sel| selector_matches(sel, pod.labels())))
            .map(|s| s.name_any())
            .collect();
        names.sort();
        names
    }

    /// The Services to wake for this changed (or deleted) pod.
    pub(crate) fn on_pod(&self, pod: &Pod) -> Vec<ObjectRef<Service>> {
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let key = format!("{ns}/{name}");
        let gone = self
            .pods
            .get(Some(&ns), &name)
            .is_none_or(|p| p.uid() != pod.uid());
        let now = self.matching(pod);
        let fp = fingerprint(pod);
        let previous = {
            let mut seen = match self.seen.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if gone {
                seen.remove(&key)
            } else {
                seen.insert(
                    key,
                    Seen {
                        services: now.clone(),
                        fingerprint: fp,
                    },
                )
            }
        };
        let mut wake = now;
        if let Some(prev) = previous {
            if !gone && prev.fingerprint == fp && prev.services == wake {
                return Vec::new();
            }
            wake.extend(prev.services);
            wake.sort();
            wake.dedup();
        }
        wake.into_iter()
            .map(|n| ObjectRef::new(&n).within(&ns))
            .collect()
    }
}

/// The stream of Service references to reconcile for `pod_changes`.
pub(crate) fn service_triggers(
    triggers: Arc<PodTriggers>,
    pod_changes: impl Stream<Item = Result<Pod, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = ObjectRef<Service>> + Send + 'static {
    pod_changes.flat_map(move |r| {
        let refs = match r {
            Ok(pod) => triggers.on_pod(&pod),
            Err(_) => Vec::new(),
        };
        futures::stream::iter(refs)
    })
}

/// A controller over Services whose trigger stream includes deletions (so a
/// deleted Service surfaces as `ObjectNotFound` in the run stream).
pub(crate) fn service_controller(client: &Client) -> Controller<Service> {
    let (reader, writer) = reflector::store();
    let stream = watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(writer)
    .touched_objects();
    Controller::for_stream(stream, reader)
}

/// Per-Service pacing: after a write for a large Service, the next sync of
/// it waits a little, so that a burst of pod changes (a 10,000-pod rollout)
/// is written in a few batches rather than once per pod. Changes that arrive
/// meanwhile are merged by the controller's queue; nothing is lost.
#[derive(Default)]
pub(crate) struct Pacing {
    next: Mutex<HashMap<String, Instant>>,
}

impl Pacing {
    /// The pause after a write that covered `endpoints` addresses.
    pub(crate) fn pause_for(endpoints: usize) -> Duration {
        match endpoints {
            0..=100 => Duration::ZERO,
            101..=1000 => Duration::from_millis(100),
            _ => Duration::from_millis(500),
        }
    }

    pub(crate) fn wrote(&self, key: &str, endpoints: usize) {
        let pause = Self::pause_for(endpoints);
        if let Ok(mut m) = self.next.lock() {
            if pause.is_zero() {
                m.remove(key);
            } else {
                m.insert(key.to_string(), Instant::now() + pause);
            }
        }
    }

    pub(crate) fn forget(&self, key: &str) {
        if let Ok(mut m) = self.next.lock() {
            m.remove(key);
        }
    }

    /// Wait until `key` may be synced again (or `shutdown`).
    pub(crate) async fn wait(&self, key: &str, shutdown: &CancellationToken) {
        let until = self.next.lock().ok().and_then(|m| m.get(key).copied());
        if let Some(until) = until {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep_until(until.into()) => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The Endpoints controller.
// ---------------------------------------------------------------------------

struct State {
    ctx: Arc<Context>,
    pods: Cache<Pod>,
    backoff: Backoff,
    pacing: Pacing,
    recorder: Recorder,
    shutdown: CancellationToken,
}

/// Run until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let (pods, pod_changes) = ctx.informers.all::<Pod>();
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = pods.wait_ready() => {}
    }
    let controller = service_controller(&client);
    let services = controller.store();
    let triggers = PodTriggers::new(services.clone(), pods.clone());
    let state = Arc::new(State {
        recorder: ctx.recorder("endpoint-controller"),
        ctx,
        pods,
        backoff: Backoff::default(),
        pacing: Pacing::default(),
        shutdown: shutdown.clone(),
    });
    tokio::spawn(sweep_leftovers(client.clone(), services, shutdown.clone()));
    let st = state.clone();
    controller
        .with_config(controller::Config::default().concurrency(8))
        .reconcile_on(service_triggers(triggers, pod_changes))
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, state)
        .for_each(move |r| {
            let st = st.clone();
            async move {
                if let Err(controller::Error::ObjectNotFound(r)) = r {
                    service_gone(&st, r.namespace.as_deref().unwrap_or_default(), &r.name).await;
                }
            }
        })
        .await;
}

/// The Service `namespace/name` is gone: so are its Endpoints.
async fn service_gone(st: &State, namespace: &str, name: &str) {
    st.pacing.forget(&format!("{namespace}/{name}"));
    let api: Api<Endpoints> = Api::namespaced(st.ctx.client.clone(), namespace);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => tracing::warn!(%namespace, %name, error = %e, "deleting endpoints failed"),
    }
}

/// Once at start (upstream's checkLeftoverEndpoints): Endpoints whose Service
/// was deleted while no controller ran are deleted.
async fn sweep_leftovers(client: Client, services: Store<Service>, shutdown: CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => return,
        r = services.wait_until_ready() => if r.is_err() { return },
    }
    let api: Api<Endpoints> = Api::all(client.clone());
    let list = match api.list(&ListParams::default()).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "listing endpoints for the leftover sweep failed");
            return;
        }
    };
    for ep in list.items {
        if ep.annotations().contains_key(LEADER_ANNOTATION) {
            continue;
        }
        let ns = ep.namespace().unwrap_or_default();
        let name = ep.name_any();
        if services.get(&ObjectRef::new(&name).within(&ns)).is_some() {
            continue;
        }
        let api: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(namespace = %ns, %name, "deleted endpoints of a deleted service")
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                tracing::warn!(namespace = %ns, %name, error = %e, "deleting leftover endpoints failed")
            }
        }
    }
}

fn error_policy(svc: Arc<Service>, err: &Error, st: Arc<State>) -> Action {
    let key = objects::key(svc.as_ref());
    tracing::debug!(%key, error = %err, "endpoints sync failed");
    st.backoff.requeue(&key)
}

/// One pod's address and the ports it offers, before grouping into subsets.
struct PodAddress {
    address: EndpointAddress,
    ready: bool,
    ports: Vec<EndpointPort>,
}

/// The address of `pod` for the Service's IP family (upstream's
/// podToEndpointAddressForService), or `None` if the pod has no such IP.
fn pod_address(svc: &Service, pod: &Pod) -> Option<EndpointAddress> {
    let spec = svc.spec.as_ref();
    let want_v6 = if has_cluster_ip(svc) {
        spec.and_then(|s| s.cluster_ip.as_deref())
            .is_some_and(is_ipv6)
    } else {
        spec.and_then(|s| s.ip_families.as_ref())
            .and_then(|f| f.first())
            .is_some_and(|f| f == "IPv6")
    };
    let ip = pod_ips(pod).into_iter().find(|ip| is_ipv6(ip) == want_v6)?;
    Some(EndpointAddress {
        ip,
        hostname: pod_hostname(pod, svc),
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(pod_ref(pod)),
    })
}

/// The desired subsets for `svc` over `pods`: upstream's per-pod, per-port
/// addresses repacked so that addresses offering the same ports share a
/// subset; sorted, so equal states compare equal.
pub(crate) fn desired_subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses.unwrap_or(false);
    let svc_ports = spec.ports.unwrap_or_default();
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let mut entries = Vec::new();
    for pod in pods {
        if !pod_in_endpoints(pod, publish) {
            continue;
        }
        let Some(address) = pod_address(svc, pod) else {
            continue;
        };
        let ports: Vec<EndpointPort> = svc_ports
            .iter()
            .filter_map(|p| {
                find_port(pod, p).map(|n| EndpointPort {
                    name: p.name.clone().filter(|n| !n.is_empty()),
                    port: n,
                    protocol: Some(port_protocol(p)),
                    app_protocol: p.app_protocol.clone(),
                })
            })
            .collect();
        // A pod that offers none of the Service's ports is not an endpoint,
        // except for a headless Service that has no ports at all.
        if ports.is_empty() && !(svc_ports.is_empty() && headless) {
            continue;
        }
        entries.push(PodAddress {
            address,
            ready: publish || objects::pod_ready(pod),
            ports,
        });
    }
    repack(entries)
}

fn port_key(p: &EndpointPort) -> (String, i32, String) {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        p.protocol.clone().unwrap_or_default(),
    )
}

fn address_key(a: &EndpointAddress) -> (String, String) {
    (
        a.ip.clone(),
        a.target_ref
            .as_ref()
            .and_then(|r| r.uid.clone())
            .unwrap_or_default(),
    )
}

/// Group addresses by the exact set of ports they offer.
fn repack(entries: Vec<PodAddress>) -> Vec<EndpointSubset> {
    type PortSet = Vec<(String, i32, String)>;
    /// Ports, ready addresses, not-ready addresses.
    type Group = (
        Vec<EndpointPort>,
        Vec<EndpointAddress>,
        Vec<EndpointAddress>,
    );
    let mut groups: BTreeMap<PortSet, Group> = BTreeMap::new();
    for mut e in entries {
        e.ports.sort_by_key(port_key);
        e.ports.dedup_by_key(|p| port_key(p));
        let key: PortSet = e.ports.iter().map(port_key).collect();
        let g = groups
            .entry(key)
            .or_insert_with(|| (e.ports.clone(), Vec::new(), Vec::new()));
        if e.ready {
            g.1.push(e.address);
        } else {
            g.2.push(e.address);
        }
    }
    groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            ready.sort_by_key(address_key);
            ready.dedup_by_key(|a| address_key(a));
            not_ready.sort_by_key(address_key);
            not_ready.dedup_by_key(|a| address_key(a));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

/// Cut the subsets to [`MAX_ADDRESSES`] addresses, ready ones first, each
/// subset keeping its share (upstream's truncateEndpoints). Returns whether
/// anything was cut.
pub(crate) fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let count = |v: &Option<Vec<EndpointAddress>>| v.as_ref().map_or(0, Vec::len);
    let total_ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let total_not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if total_ready + total_not_ready <= MAX_ADDRESSES {
        return false;
    }
    let cut_ready = total_ready > MAX_ADDRESSES;
    let (room, total) = if cut_ready {
        (MAX_ADDRESSES, total_ready)
    } else {
        (MAX_ADDRESSES - total_ready, total_not_ready)
    };
    let mut left = room;
    for s in subsets.iter_mut() {
        let field = if cut_ready {
            &mut s.addresses
        } else {
            &mut s.not_ready_addresses
        };
        let n = count(field);
        // This subset's share of the room, rounded up (integer ceil).
        let share = (n * room).div_ceil(total.max(1)).min(left);
        if let Some(v) = field.as_mut() {
            v.truncate(share);
        }
        if field.as_ref().is_some_and(Vec::is_empty) {
            *field = None;
        }
        left -= count(field);
        if cut_ready {
            s.not_ready_addresses = None;
        }
    }
    true
}

/// Subsets in a comparable form: empty lists as absent, target references
/// without resourceVersion, everything sorted.
fn canonical(subsets: &[EndpointSubset]) -> Vec<EndpointSubset> {
    let clean = |v: &Option<Vec<EndpointAddress>>| {
        let mut v: Vec<EndpointAddress> = v
            .iter()
            .flatten()
            .cloned()
            .map(|mut a| {
                if let Some(r) = a.target_ref.as_mut() {
                    r.resource_version = None;
                }
                a
            })
            .collect();
        v.sort_by_key(address_key);
        (!v.is_empty()).then_some(v)
    };
    let mut out: Vec<EndpointSubset> = subsets
        .iter()
        .map(|s| {
            let mut ports = s.ports.clone().unwrap_or_default();
            for p in &mut ports {
                if p.protocol.is_none() {
                    p.protocol = Some("TCP".into());
                }
            }
            ports.sort_by_key(port_key);
            EndpointSubset {
                addresses: clean(&s.addresses),
                not_ready_addresses: clean(&s.not_ready_addresses),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .filter(|s| s.addresses.is_some() || s.not_ready_addresses.is_some())
        .collect();
    out.sort_by_key(|s| s.ports.iter().flatten().map(port_key).collect::<Vec<_>>());
    out
}

/// The labels the Endpoints of `svc` carry: the Service's, plus the headless
/// label for a Service without a cluster IP.
fn desired_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    if has_cluster_ip(svc) {
        labels.remove(HEADLESS);
    } else {
        labels.insert(HEADLESS.into(), String::new());
    }
    labels
}

async fn reconcile(svc: Arc<Service>, st: Arc<State>) -> Result<Action, Error> {
    if managed_selector(&svc).is_none() {
        return Ok(Action::await_change());
    }
    let key = objects::key(svc.as_ref());
    st.pacing.wait(&key, &st.shutdown).await;
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let pods = selected_pods(&st.pods, &svc);
    let mut subsets = desired_subsets(&svc, &pods);
    let truncated = truncate(&mut subsets);
    let labels = desired_labels(&svc);

    let api: Api<Endpoints> = Api::namespaced(st.ctx.client.clone(), &ns);
    let current = api.get_opt(&name).await?;
    if let Some(cur) = current.as_ref() {
        let same_subsets =
            canonical(cur.subsets.as_deref().unwrap_or_default()) == canonical(&subsets);
        let same_labels = *cur.labels() == labels;
        let same_capacity = cur.annotations().contains_key(OVER_CAPACITY) == truncated;
        if same_subsets && same_labels && same_capacity {
            st.backoff.reset(&key);
            return Ok(Action::await_change());
        }
    }
    let mut next = current.clone().unwrap_or_else(|| Endpoints {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        subsets: None,
    });
    next.metadata.labels = (!labels.is_empty()).then_some(labels);
    let annotations = next.metadata.annotations.get_or_insert_with(BTreeMap::new);
    match trigger_time(&svc, &pods) {
        Some(t) => annotations.insert(LAST_CHANGE_TRIGGER_TIME.into(), t.to_string()),
        None => annotations.remove(LAST_CHANGE_TRIGGER_TIME),
    };
    if truncated {
        annotations.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    if annotations.is_empty() {
        next.metadata.annotations = None;
    }
    let count: usize = subsets
        .iter()
        .map(|s| {
            s.addresses.as_ref().map_or(0, Vec::len)
                + s.not_ready_addresses.as_ref().map_or(0, Vec::len)
        })
        .sum();
    next.subsets = (!subsets.is_empty()).then_some(subsets);
    let written = if current.is_some() {
        api.replace(&name, &PostParams::default(), &next).await
    } else {
        api.create(&PostParams::default(), &next).await
    };
    match written {
        Ok(_) => {
            st.pacing.wrote(&key, count);
            st.backoff.reset(&key);
            Ok(Action::await_change())
        }
        // The namespace is terminating: creating anything there fails for ever.
        Err(kube::Error::Api(s)) if current.is_none() && s.code == 403 => {
            tracing::debug!(%key, message = %s.message, "endpoints creation forbidden");
            Ok(Action::await_change())
        }
        Err(e) => {
            let (reason, verb) = if current.is_some() {
                ("FailedToUpdateEndpoint", "update")
            } else {
                ("FailedToCreateEndpoint", "create")
            };
            st.recorder.publish(
                &next,
                EventType::Warning,
                reason,
                &format!("Failed to {verb} endpoint {ns}/{name}: {e}"),
            );
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus, ServiceSpec,
    };
    use kube::api::ObjectMeta;

    fn svc(ports: Vec<ServicePort>, cluster_ip: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), "web".to_string())].into()),
                cluster_ip: Some(cluster_ip.into()),
                ports: Some(ports),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn named_port(name: &str, target: &str) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port: 80,
            target_port: Some(IntOrString::String(target.into())),
            protocol: Some("TCP".into()),
            ..Default::default()
        }
    }

    fn pod(name: &str, ip: &str, ready: bool, ports: &[(&str, i32)]) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(
                        ports
                            .iter()
                            .map(|(n, p)| ContainerPort {
                                name: Some(n.to_string()),
                                container_port: *p,
                                protocol: Some("TCP".into()),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some(ip.into()),
                pod_ips: Some(vec![PodIP { ip: ip.into() }]),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn named_ports_resolve_per_pod_and_group_subsets() {
        let s = svc(vec![named_port("http", "web")], "10.96.0.10");
        let pods = vec![
            pod("a", "10.0.0.1", true, &[("web", 8080)]),
            pod("b", "10.0.0.2", false, &[("web", 8080)]),
            pod("c", "10.0.0.3", true, &[("web", 9090)]),
            pod("d", "10.0.0.4", true, &[("other", 1)]),
        ];
        let subsets = desired_subsets(&s, &pods);
        assert_eq!(subsets.len(), 2, "{subsets:?}");
        let first = &subsets[0];
        assert_eq!(first.ports.as_ref().map(|p| p[0].port), Some(8080));
        let ips = |v: &Option<Vec<EndpointAddress>>| -> Vec<String> {
            v.iter().flatten().map(|a| a.ip.clone()).collect()
        };
        assert_eq!(ips(&first.addresses), vec!["10.0.0.1"]);
        assert_eq!(ips(&first.not_ready_addresses), vec!["10.0.0.2"]);
        assert_eq!(subsets[1].ports.as_ref().map(|p| p[0].port), Some(9090));
        assert_eq!(ips(&subsets[1].addresses), vec!["10.0.0.3"]);
        // Equal states compare equal (no write when nothing changed).
        assert_eq!(canonical(&subsets), canonical(&desired_subsets(&s, &pods)));
    }

    #[test]
    fn headless_without_ports_and_hostnames() {
        let s = svc(vec![], "None");
        let mut p = (*pod("a", "10.0.0.1", true, &[])).clone();
        if let Some(spec) = p.spec.as_mut() {
            spec.hostname = Some("a".into());
            spec.subdomain = Some("web".into());
        }
        let subsets = desired_subsets(&s, &[Arc::new(p)]);
        assert_eq!(subsets.len(), 1);
        let addr = &subsets[0].addresses.as_ref().expect("addresses")[0];
        assert_eq!(addr.hostname.as_deref(), Some("a"));
        assert!(subsets[0].ports.is_none());
        assert!(desired_labels(&s).contains_key(HEADLESS));
    }

    #[test]
    fn terminating_pods_are_left_out_unless_published() {
        let mut s = svc(vec![named_port("http", "web")], "10.96.0.10");
        let mut p = (*pod("a", "10.0.0.1", true, &[("web", 8080)])).clone();
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::now(),
        ));
        let pods = vec![Arc::new(p)];
        assert!(desired_subsets(&s, &pods).is_empty());
        if let Some(spec) = s.spec.as_mut() {
            spec.publish_not_ready_addresses = Some(true);
        }
        assert_eq!(desired_subsets(&s, &pods).len(), 1);
    }

    #[test]
    fn truncation_keeps_ready_first_and_proportions() {
        let addrs = |n: usize, base: usize| -> Option<Vec<EndpointAddress>> {
            Some(
                (0..n)
                    .map(|i| EndpointAddress {
                        ip: format!("10.{}.{}.{}", base, i / 256, i % 256),
                        ..Default::default()
                    })
                    .collect(),
            )
        };
        let mut subsets = vec![
            EndpointSubset {
                addresses: addrs(900, 1),
                not_ready_addresses: addrs(300, 2),
                ports: None,
            },
            EndpointSubset {
                addresses: addrs(50, 3),
                not_ready_addresses: addrs(100, 4),
                ports: None,
            },
        ];
        assert!(truncate(&mut subsets));
        let n = |v: &Option<Vec<EndpointAddress>>| v.as_ref().map_or(0, Vec::len);
        assert_eq!(n(&subsets[0].addresses), 900);
        assert_eq!(n(&subsets[1].addresses), 50);
        let not_ready = n(&subsets[0].not_ready_addresses) + n(&subsets[1].not_ready_addresses);
        assert_eq!(not_ready, 50);
        // Over 1000 ready: only ready addresses remain, 1000 of them.
        let mut big = vec![EndpointSubset {
            addresses: addrs(1500, 5),
            not_ready_addresses: addrs(10, 6),
            ports: None,
        }];
        assert!(truncate(&mut big));
        assert_eq!(n(&big[0].addresses), 1000);
        assert_eq!(n(&big[0].not_ready_addresses), 0);
        let mut small = vec![EndpointSubset {
            addresses: addrs(10, 7),
            not_ready_addresses: None,
            ports: None,
        }];
        assert!(!truncate(&mut small));
    }

    #[test]
    fn numeric_and_missing_target_ports() {
        let p = pod("a", "10.0.0.1", true, &[]);
        let mut port = named_port("http", "web");
        assert_eq!(find_port(&p, &port), None);
        port.target_port = Some(IntOrString::Int(8443));
        assert_eq!(find_port(&p, &port), Some(8443));
        port.target_port = None;
        assert_eq!(find_port(&p, &port), Some(80));
    }
}
