//! The EndpointSlice controller (upstream pkg/controller/endpointslice and
//! its reconciler in k8s.io/endpointslice): discovery.k8s.io/v1 slices of at
//! most 100 endpoints for every Service with a selector, one set per address
//! type the Service serves (IPv4, IPv6) and per set of resolved ports.
//!
//! Each endpoint carries the ready / serving / terminating conditions (pods
//! being deleted stay listed as terminating), the node, the pod reference and
//! the hostname. Slices are owned by their Service (the garbage collector
//! removes them with it) and labelled `kubernetes.io/service-name` and
//! `endpointslice.kubernetes.io/managed-by`.
//!
//! Churn is kept low as upstream does: endpoints that did not change stay in
//! their slice, changed ones are replaced in place, removed ones leave a gap
//! that new endpoints fill before any new slice is created, and a slice that
//! would be deleted while another is created is updated instead. When nothing
//! changed nothing is written. A Service with no endpoints keeps one empty
//! placeholder slice.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use skiff_client::cache::Cache;
use skiff_client::events::{EventType, Recorder};
use skiff_client::objects;
use tokio_util::sync::CancellationToken;

use crate::endpoints::{
    find_port, has_cluster_ip, is_ipv6, managed_selector, pod_hostname, pod_in_endpoints, pod_ips,
    pod_ref, port_protocol, selected_pods, service_controller, service_triggers, trigger_time,
    Pacing, PodTriggers, HEADLESS, LAST_CHANGE_TRIGGER_TIME,
};
use crate::runtime::{Backoff, Context, Error};

/// The label naming a slice's Service.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label naming the controller that manages a slice.
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY`].
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// Most endpoints in one slice (upstream's --max-endpoints-per-slice default).
pub const MAX_PER_SLICE: usize = 100;

struct State {
    ctx: Arc<Context>,
    pods: Cache<Pod>,
    backoff: Backoff,
    pacing: Pacing,
    recorder: Recorder,
    shutdown: CancellationToken,
    /// `namespace/name@resourceVersion` of slices this controller wrote, so
    /// that their watch events do not wake the Service again.
    written: Mutex<HashSet<String>>,
}

impl State {
    fn note_written(&self, slice: &EndpointSlice) {
        if let Ok(mut w) = self.written.lock() {
            if w.len() > 100_000 {
                w.clear(); // events that never came (a relist); forget them
            }
            w.insert(written_key(slice));
        }
    }

    /// Whether this slice event is the echo of our own write.
    fn is_echo(&self, slice: &EndpointSlice) -> bool {
        self.written
            .lock()
            .is_ok_and(|mut w| w.remove(&written_key(slice)))
    }
}

fn written_key(slice: &EndpointSlice) -> String {
    format!(
        "{}/{}@{}",
        slice.namespace().unwrap_or_default(),
        slice.name_any(),
        slice.resource_version().unwrap_or_default()
    )
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
    let triggers = PodTriggers::new(controller.store(), pods.clone());
    let state = Arc::new(State {
        recorder: ctx.recorder("endpointslice-controller"),
        ctx,
        pods,
        backoff: Backoff::default(),
        pacing: Pacing::default(),
        shutdown: shutdown.clone(),
        written: Mutex::new(HashSet::new()),
    });
    let echo = state.clone();
    let st = state.clone();
    controller
        .with_config(controller::Config::default().concurrency(8))
        .reconcile_on(service_triggers(triggers, pod_changes))
        .watches(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default().labels(&format!("{MANAGED_BY}={CONTROLLER_NAME}")),
            move |slice: EndpointSlice| {
                if echo.is_echo(&slice) {
                    return None;
                }
                let service = slice.labels().get(SERVICE_NAME)?.clone();
                Some(ObjectRef::new(&service).within(&slice.namespace().unwrap_or_default()))
            },
        )
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, state)
        .for_each(move |r| {
            // The slices of a deleted Service go with it (owner reference).
            if let Err(controller::Error::ObjectNotFound(r)) = r {
                st.pacing.forget(&format!(
                    "{}/{}",
                    r.namespace.as_deref().unwrap_or_default(),
                    r.name
                ));
            }
            futures::future::ready(())
        })
        .await;
}

fn error_policy(svc: Arc<Service>, err: &Error, st: Arc<State>) -> Action {
    let key = objects::key(svc.as_ref());
    tracing::debug!(%key, error = %err, "endpointslice sync failed");
    st.backoff.requeue(&key)
}

/// The address types a Service serves (upstream's getAddressTypesForService).
fn address_types(svc: &Service) -> BTreeSet<String> {
    let spec = svc.spec.as_ref();
    let mut out: BTreeSet<String> = spec
        .and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
        .filter(|f| *f == "IPv4" || *f == "IPv6")
        .cloned()
        .collect();
    if !out.is_empty() {
        return out;
    }
    if has_cluster_ip(svc) {
        let v6 = spec
            .and_then(|s| s.cluster_ip.as_deref())
            .is_some_and(is_ipv6);
        out.insert(if v6 { "IPv6" } else { "IPv4" }.into());
    } else {
        out.insert("IPv4".into());
        out.insert("IPv6".into());
    }
    out
}

/// The labels of the slices of `svc`: the Service's own (minus the reserved
/// ones), the headless label, the service name and the manager.
fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = svc
        .labels()
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), SERVICE_NAME | MANAGED_BY | HEADLESS))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !has_cluster_ip(svc) {
        labels.insert(HEADLESS.into(), String::new());
    }
    labels.insert(SERVICE_NAME.into(), svc.name_any());
    labels.insert(MANAGED_BY.into(), CONTROLLER_NAME.into());
    labels
}

fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    let uid = svc.uid().unwrap_or_default();
    slice
        .owner_references()
        .iter()
        .any(|o| o.uid == uid && o.kind == "Service" && o.api_version == "v1")
}

/// The ports `pod` offers for the Service (upstream's getEndpointPorts):
/// ports whose named target the pod lacks are left out.
fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let spec = svc.spec.clone().unwrap_or_default();
    spec.ports
        .iter()
        .flatten()
        .filter_map(|p| {
            find_port(pod, p).map(|n| EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(n),
                protocol: Some(port_protocol(p)),
                app_protocol: p.app_protocol.clone(),
            })
        })
        .collect()
}

type PortKey = Vec<(String, i32, String, String)>;

/// The identity of a set of ports, independent of order.
fn port_key(ports: &[EndpointPort]) -> PortKey {
    let mut k: PortKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or_default(),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.app_protocol.clone().unwrap_or_default(),
            )
        })
        .collect();
    k.sort();
    k.dedup();
    k
}

/// The identity of an endpoint: its pod and addresses.
fn endpoint_key(ep: &Endpoint) -> (String, Vec<String>) {
    let pod = ep
        .target_ref
        .as_ref()
        .and_then(|r| r.name.clone())
        .unwrap_or_default();
    let mut addrs = ep.addresses.clone();
    addrs.sort();
    (pod, addrs)
}

/// The endpoint for `pod` in a slice of `address_type` (upstream's podToEndpoint).
fn pod_endpoint(pod: &Pod, svc: &Service, address_type: &str) -> Endpoint {
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let serving = objects::pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let want_v6 = address_type == "IPv6";
    Endpoint {
        addresses: pod_ips(pod)
            .into_iter()
            .filter(|ip| is_ipv6(ip) == want_v6)
            .collect(),
        conditions: Some(EndpointConditions {
            ready: Some(publish || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: pod_hostname(pod, svc),
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(pod_ref(pod)),
        ..Default::default()
    }
}

/// An endpoint as stored, in the form desired ones are built in.
fn comparable(ep: &Endpoint) -> Endpoint {
    let mut ep = ep.clone();
    if let Some(r) = ep.target_ref.as_mut() {
        r.resource_version = None;
        r.api_version = None;
        r.field_path = None;
    }
    ep
}

fn new_slice(svc: &Service, ports: Vec<EndpointPort>, address_type: &str) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", svc.name_any())),
            namespace: svc.namespace(),
            labels: Some(slice_labels(svc)),
            owner_references: Some(vec![objects::controller_ref(svc)]),
            ..Default::default()
        },
        address_type: address_type.to_string(),
        endpoints: Vec::new(),
        ports: Some(ports),
    }
}

/// Writes one sync decided on.
#[derive(Default, Debug)]
struct Plan {
    create: Vec<EndpointSlice>,
    update: Vec<EndpointSlice>,
    delete: Vec<EndpointSlice>,
}

impl Plan {
    fn extend(&mut self, other: Plan) {
        self.create.extend(other.create);
        self.update.extend(other.update);
        self.delete.extend(other.delete);
    }
}

/// The desired endpoints of one port set.
struct Desired {
    ports: Vec<EndpointPort>,
    endpoints: BTreeMap<(String, Vec<String>), Endpoint>,
}

/// Plan the slices of one address type (upstream's reconcileByAddressType).
fn plan_address_type(
    svc: &Service,
    pods: &[Arc<Pod>],
    existing: Vec<EndpointSlice>,
    address_type: &str,
) -> Plan {
    let mut plan = Plan::default();
    let existing_count = existing.len();
    let mut by_ports: BTreeMap<PortKey, Vec<EndpointSlice>> = BTreeMap::new();
    for s in existing {
        if owned_by(&s, svc) {
            by_ports
                .entry(port_key(s.ports.as_deref().unwrap_or_default()))
                .or_default()
                .push(s);
        } else {
            plan.delete.push(s);
        }
    }
    let mut desired: BTreeMap<PortKey, Desired> = BTreeMap::new();
    for pod in pods {
        if !pod_in_endpoints(pod, true) {
            continue;
        }
        let ports = endpoint_ports(svc, pod);
        let d = desired.entry(port_key(&ports)).or_insert_with(|| Desired {
            ports,
            endpoints: BTreeMap::new(),
        });
        let ep = pod_endpoint(pod, svc, address_type);
        if !ep.addresses.is_empty() {
            d.endpoints.insert(endpoint_key(&ep), ep);
        }
    }
    for (key, d) in desired {
        let slices = by_ports.remove(&key).unwrap_or_default();
        plan.extend(plan_port_set(svc, slices, d, address_type));
    }
    // Port sets nobody offers any more.
    plan.delete.extend(by_ports.into_values().flatten());

    // No slice would remain: keep (or make) one empty placeholder.
    if existing_count == plan.delete.len() && plan.create.is_empty() {
        let placeholder = new_slice(svc, Vec::new(), address_type);
        let keep = plan.delete.len() == 1
            && plan.delete.first().is_some_and(|s| {
                s.endpoints.is_empty()
                    && s.ports.as_deref().unwrap_or_default().is_empty()
                    && s.labels() == placeholder.labels()
                    && owned_by(s, svc)
            });
        if keep {
            plan.delete.clear();
        } else {
            plan.create.push(placeholder);
        }
    }
    plan
}

/// Plan the slices of one port set (upstream's reconcileByPortMapping).
fn plan_port_set(
    svc: &Service,
    existing: Vec<EndpointSlice>,
    mut desired: Desired,
    address_type: &str,
) -> Plan {
    let labels = slice_labels(svc);
    let mut plan = Plan::default();
    let mut to_update: Vec<EndpointSlice> = Vec::new();
    let mut unchanged: Vec<EndpointSlice> = Vec::new();

    // 1. Keep desired endpoints where they are (replacing changed ones),
    //    drop the others.
    for slice in existing {
        let mut kept = Vec::with_capacity(slice.endpoints.len());
        let mut changed = false;
        for ep in &slice.endpoints {
            if let Some(want) = desired.endpoints.remove(&endpoint_key(ep)) {
                if comparable(ep) != want {
                    changed = true;
                }
                kept.push(want);
            }
        }
        let labels_changed = *slice.labels() != labels;
        if changed || kept.len() != slice.endpoints.len() {
            if kept.is_empty() {
                plan.delete.push(slice);
            } else {
                let mut s = slice;
                s.endpoints = kept;
                s.metadata.labels = Some(labels.clone());
                to_update.push(s);
            }
        } else if labels_changed {
            let mut s = slice;
            s.metadata.labels = Some(labels.clone());
            to_update.push(s);
        } else {
            unchanged.push(slice);
        }
    }

    let mut remaining = desired.endpoints.into_values();
    let mut left = remaining.len();

    // 2. Fill the slices being updated anyway, fullest first.
    to_update.sort_by_key(|s| std::cmp::Reverse(s.endpoints.len()));
    for s in &mut to_update {
        while left > 0 && s.endpoints.len() < MAX_PER_SLICE {
            if let Some(ep) = remaining.next() {
                s.endpoints.push(ep);
            }
            left -= 1;
        }
    }

    // 3. Put what is left into the unchanged slice it fits best, or new ones.
    while left > 0 {
        let fit = if left < MAX_PER_SLICE {
            unchanged
                .iter()
                .enumerate()
                .filter(|(_, s)| s.endpoints.len() + left <= MAX_PER_SLICE)
                .max_by_key(|(_, s)| s.endpoints.len())
                .map(|(i, _)| i)
        } else {
            None
        };
        let (mut slice, existing) = match fit {
            Some(i) => (unchanged.swap_remove(i), true),
            None => (new_slice(svc, desired.ports.clone(), address_type), false),
        };
        while left > 0 && slice.endpoints.len() < MAX_PER_SLICE {
            if let Some(ep) = remaining.next() {
                slice.endpoints.push(ep);
            }
            left -= 1;
        }
        if existing {
            to_update.push(slice);
        } else {
            plan.create.push(slice);
        }
    }
    plan.update = to_update;
    plan
}

/// Turn creations into updates of slices that would be deleted (same
/// address type, owned by the Service): fewer writes, stable names.
fn reuse_deleted(svc: &Service, plan: &mut Plan) {
    let mut i = 0;
    while i < plan.delete.len() && !plan.create.is_empty() {
        let reusable = plan.delete.get(i).is_some_and(|d| {
            plan.create
                .last()
                .is_some_and(|c| c.address_type == d.address_type)
                && owned_by(d, svc)
        });
        if !reusable {
            i += 1;
            continue;
        }
        let old = plan.delete.remove(i);
        if let Some(mut slice) = plan.create.pop() {
            slice.metadata.generate_name = None;
            slice.metadata.name = old.metadata.name;
            slice.metadata.resource_version = old.metadata.resource_version;
            slice.metadata.annotations = old.metadata.annotations;
            plan.update.push(slice);
        }
    }
}

fn stamp(slice: &mut EndpointSlice, when: Option<Timestamp>) {
    let annotations = slice.metadata.annotations.get_or_insert_with(BTreeMap::new);
    match when {
        Some(t) => annotations.insert(LAST_CHANGE_TRIGGER_TIME.into(), t.to_string()),
        None => annotations.remove(LAST_CHANGE_TRIGGER_TIME),
    };
    if annotations.is_empty() {
        slice.metadata.annotations = None;
    }
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
    let api: Api<EndpointSlice> = Api::namespaced(st.ctx.client.clone(), &ns);
    let existing: Vec<EndpointSlice> = api
        .list(&ListParams::default().labels(&format!(
            "{SERVICE_NAME}={name},{MANAGED_BY}={CONTROLLER_NAME}"
        )))
        .await?
        .items
        .into_iter()
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .collect();

    let types = address_types(&svc);
    let mut plan = Plan::default();
    let mut by_type: BTreeMap<String, Vec<EndpointSlice>> = BTreeMap::new();
    for s in existing {
        if types.contains(&s.address_type) {
            by_type.entry(s.address_type.clone()).or_default().push(s);
        } else {
            plan.delete.push(s);
        }
    }
    for t in &types {
        let slices = by_type.remove(t).unwrap_or_default();
        plan.extend(plan_address_type(&svc, &pods, slices, t));
    }
    reuse_deleted(&svc, &mut plan);
    if plan.create.is_empty() && plan.update.is_empty() && plan.delete.is_empty() {
        st.backoff.reset(&key);
        return Ok(Action::await_change());
    }

    let when = trigger_time(&svc, &pods);
    let mut endpoints = 0;
    // Creating while the Service is being deleted would race the garbage collector.
    if svc.metadata.deletion_timestamp.is_none() {
        for mut slice in plan.create {
            stamp(&mut slice, when);
            endpoints += slice.endpoints.len();
            match api.create(&PostParams::default(), &slice).await {
                Ok(s) => st.note_written(&s),
                Err(kube::Error::Api(s)) if s.code == 403 => {
                    // The namespace is terminating.
                    tracing::debug!(%key, message = %s.message, "endpointslice creation forbidden");
                    return Ok(Action::await_change());
                }
                Err(e) => {
                    st.recorder.publish(
                        svc.as_ref(),
                        EventType::Warning,
                        "FailedToUpdateEndpointSlices",
                        &format!("Error updating Endpoint Slices for Service {ns}/{name}: {e}"),
                    );
                    return Err(e.into());
                }
            }
        }
    }
    for mut slice in plan.update {
        stamp(&mut slice, when);
        endpoints += slice.endpoints.len();
        let slice_name = slice.name_any();
        match api
            .replace(&slice_name, &PostParams::default(), &slice)
            .await
        {
            Ok(s) => st.note_written(&s),
            Err(e) => {
                if !matches!(&e, kube::Error::Api(s) if s.code == 409) {
                    st.recorder.publish(
                        svc.as_ref(),
                        EventType::Warning,
                        "FailedToUpdateEndpointSlices",
                        &format!("Error updating Endpoint Slices for Service {ns}/{name}: {e}"),
                    );
                }
                return Err(e.into());
            }
        }
    }
    for slice in plan.delete {
        match api
            .delete(&slice.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    st.pacing.wrote(&key, endpoints);
    st.backoff.reset(&key);
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn svc() -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("svc-uid".into()),
                labels: Some([("tier".to_string(), "front".to_string())].into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), "web".to_string())].into()),
                cluster_ip: Some("10.96.0.10".into()),
                ip_families: Some(vec!["IPv4".into()]),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(IntOrString::String("web".into())),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pod(i: usize, ready: bool) -> Arc<Pod> {
        let ip = format!("10.0.{}.{}", i / 250, i % 250 + 1);
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(format!("p{i:05}")),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{i}")),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("web".into()),
                        container_port: 8080,
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: Some(ip.clone()),
                pod_ips: Some(vec![PodIP { ip }]),
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    /// Apply a plan to a simulated store, naming created slices.
    fn apply(store: &mut Vec<EndpointSlice>, plan: Plan, next: &mut usize) {
        for u in plan.update {
            if let Some(s) = store
                .iter_mut()
                .find(|s| s.metadata.name == u.metadata.name)
            {
                *s = u;
            }
        }
        for d in plan.delete {
            store.retain(|s| s.metadata.name != d.metadata.name);
        }
        for mut c in plan.create {
            *next += 1;
            c.metadata.name = Some(format!("web-{next}"));
            store.push(c);
        }
    }

    fn sync(store: &mut Vec<EndpointSlice>, pods: &[Arc<Pod>], next: &mut usize) -> usize {
        let s = svc();
        let mut plan = plan_address_type(&s, pods, store.clone(), "IPv4");
        reuse_deleted(&s, &mut plan);
        let writes = plan.create.len() + plan.update.len() + plan.delete.len();
        apply(store, plan, next);
        writes
    }

    #[test]
    fn slices_hold_at_most_100_and_churn_is_minimal() {
        let mut store = Vec::new();
        let mut next = 0;
        let pods: Vec<Arc<Pod>> = (0..250).map(|i| pod(i, true)).collect();
        sync(&mut store, &pods, &mut next);
        assert_eq!(store.len(), 3);
        assert!(store.iter().all(|s| s.endpoints.len() <= MAX_PER_SLICE));
        assert_eq!(store.iter().map(|s| s.endpoints.len()).sum::<usize>(), 250);
        let first = &store[0];
        assert_eq!(first.ports.as_ref().and_then(|p| p[0].port), Some(8080));
        assert_eq!(first.labels()[SERVICE_NAME], "web");
        assert_eq!(first.labels()[MANAGED_BY], CONTROLLER_NAME);
        assert_eq!(first.labels()["tier"], "front");
        // Nothing changed: nothing to write.
        assert_eq!(sync(&mut store, &pods, &mut next), 0);
        // One pod turns unready: exactly one slice is updated.
        let mut changed = pods.clone();
        changed[7] = pod(7, false);
        assert_eq!(sync(&mut store, &changed, &mut next), 1);
        let ep = store
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .find(|e| e.target_ref.as_ref().and_then(|r| r.name.as_deref()) == Some("p00007"))
            .expect("endpoint");
        assert_eq!(ep.conditions.as_ref().and_then(|c| c.ready), Some(false));
        // One pod goes, another comes: the new one fills the gap in place.
        changed.remove(3);
        changed.push(pod(900, true));
        assert_eq!(sync(&mut store, &changed, &mut next), 1);
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn no_pods_means_one_placeholder() {
        let mut store = Vec::new();
        let mut next = 0;
        sync(&mut store, &[], &mut next);
        assert_eq!(store.len(), 1);
        assert!(store[0].endpoints.is_empty());
        assert_eq!(sync(&mut store, &[], &mut next), 0);
        // Pods arrive: the placeholder is reused, not deleted and recreated.
        let pods: Vec<Arc<Pod>> = (0..3).map(|i| pod(i, true)).collect();
        assert_eq!(sync(&mut store, &pods, &mut next), 1);
        assert_eq!(store.len(), 1);
        assert_eq!(store[0].metadata.name.as_deref(), Some("web-1"));
        assert_eq!(store[0].endpoints.len(), 3);
        // And back to none: the slice turns into the placeholder again.
        sync(&mut store, &[], &mut next);
        assert_eq!(store.len(), 1);
        assert!(store[0].endpoints.is_empty());
    }

    #[test]
    fn terminating_pods_stay_listed_not_ready() {
        let mut p = (*pod(1, true)).clone();
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::now(),
        ));
        let ep = pod_endpoint(&p, &svc(), "IPv4");
        let c = ep.conditions.expect("conditions");
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(true), Some(true))
        );
        assert!(pod_endpoint(&p, &svc(), "IPv6").addresses.is_empty());
    }
}
