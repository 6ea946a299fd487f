//! The HorizontalPodAutoscaler controller (autoscaling/v2), after upstream's
//! `pkg/controller/podautoscaler/horizontal.go`.
//!
//! Every HPA is evaluated once per `hpa_sync_period` (sooner when its spec
//! changes): read the target's `/scale` (any kind that serves it, found
//! through discovery), list the pods its `status.selector` selects, read
//! their usage from [`Context::metrics`] and their requests from the pod
//! specs, let [`algorithm`] decide, write `/scale`, then the status
//! (conditions AbleToScale / ScalingActive / ScalingLimited with upstream's
//! reasons) and Events. Recommendations and scale events live in memory per
//! HPA, as upstream keeps them.
//!
//! Only Resource metrics (cpu, memory) are computed; Pods, Object, External
//! and ContainerResource metrics need a metrics API skiff does not have, so
//! they make ScalingActive False with upstream's FailedGet*Metric reasons.

pub mod algorithm;
pub mod quantity;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::{
    ContainerResourceMetricStatus, ExternalMetricStatus, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus, MetricSpec, MetricStatus,
    MetricValueStatus, ObjectMetricStatus, PodsMetricStatus, ResourceMetricSource,
    ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use skiff_client::events::{EventType, Recorder};
use tokio_util::sync::CancellationToken;

use crate::runtime::{Backoff, Context, Error};
use algorithm::{
    Behavior, Combined, History, MetricOutcome, Phase, PodInfo, Precheck, Readiness,
    ReadyCondition, Sample, Samples, Tolerances,
};

/// The Events' source component, as upstream.
const COMPONENT: &str = "horizontal-pod-autoscaler";
/// The window a usage sample covers. The nodes report instantaneous usage
/// (metrics-server reports ~15 s windows), so a sample counts as soon as it
/// was taken after the pod became ready.
const METRIC_WINDOW: Duration = Duration::ZERO;
/// How often histories of deleted HPAs are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Per-HPA memory (keyed by uid, so a re-created HPA starts afresh).
#[derive(Default)]
struct Tracked {
    history: History,
    /// When it was last evaluated, and at which generation.
    last_eval: Option<(Instant, Option<i64>)>,
}

struct State {
    ctx: Arc<Context>,
    recorder: Recorder,
    backoff: Backoff,
    store: Store<HorizontalPodAutoscaler>,
    tracked: Mutex<HashMap<String, Tracked>>,
    /// Scale targets resolved through discovery: (apiVersion, kind) → resource.
    targets: Mutex<HashMap<(String, String), ApiResource>>,
    last_prune: Mutex<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Run the controller until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let api: Api<HorizontalPodAutoscaler> = Api::all(ctx.client.clone());
    let controller = Controller::new(api, watcher::Config::default());
    let state = Arc::new(State {
        recorder: ctx.recorder(COMPONENT),
        ctx,
        backoff: Backoff::default(),
        store: controller.store(),
        tracked: Mutex::new(HashMap::new()),
        targets: Mutex::new(HashMap::new()),
        last_prune: Mutex::new(Instant::now()),
    });
    controller
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, state)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(hpa: Arc<HorizontalPodAutoscaler>, err: &Error, state: Arc<State>) -> Action {
    let key = skiff_client::objects::key(hpa.as_ref());
    tracing::warn!(hpa = %key, error = %err, "autoscaler reconcile failed");
    state.backoff.requeue(&key)
}

async fn reconcile(hpa: Arc<HorizontalPodAutoscaler>, state: Arc<State>) -> Result<Action, Error> {
    let period = state.ctx.settings.hpa_sync_period;
    let uid = hpa.uid().unwrap_or_default();
    let generation = hpa.metadata.generation;
    // Status writes and resyncs wake us too: evaluate once per period unless
    // the spec changed.
    if let Some((at, seen)) = lock(&state.tracked).get(&uid).and_then(|t| t.last_eval) {
        let elapsed = at.elapsed();
        if seen == generation && elapsed < period {
            return Ok(Action::requeue(period - elapsed));
        }
    }
    evaluate(&hpa, &state).await;
    if let Some(t) = lock(&state.tracked).get_mut(&uid) {
        t.last_eval = Some((Instant::now(), generation));
    }
    state
        .backoff
        .reset(&skiff_client::objects::key(hpa.as_ref()));
    prune(&state);
    Ok(Action::requeue(period))
}

/// Forget HPAs that no longer exist.
fn prune(state: &State) {
    {
        let mut last = lock(&state.last_prune);
        if last.elapsed() < PRUNE_EVERY {
            return;
        }
        *last = Instant::now();
    }
    let live: HashSet<String> = state.store.state().iter().filter_map(|h| h.uid()).collect();
    lock(&state.tracked).retain(|uid, _| live.contains(uid));
}

/// The HPA's new status while it is being evaluated.
struct Draft {
    status: HorizontalPodAutoscalerStatus,
    now: Timestamp,
}

impl Draft {
    /// Upstream's setCondition: the transition time moves only when the
    /// status does.
    fn set(&mut self, type_: &str, status: bool, reason: &str, message: impl Into<String>) {
        let status = if status { "True" } else { "False" };
        let conditions = self.status.conditions.get_or_insert_with(Vec::new);
        let idx = match conditions.iter().position(|c| c.type_ == type_) {
            Some(i) => i,
            None => {
                conditions.push(HorizontalPodAutoscalerCondition {
                    type_: type_.to_string(),
                    ..Default::default()
                });
                conditions.len() - 1
            }
        };
        let Some(c) = conditions.get_mut(idx) else {
            return;
        };
        if c.status != status {
            c.last_transition_time = Some(Time(self.now));
        }
        c.status = status.to_string();
        c.reason = Some(reason.to_string());
        c.message = Some(message.into());
    }
}

/// One evaluation (upstream's reconcileAutoscaler). Failures are reported
/// through the status and Events; the next evaluation comes a period later
/// either way, as upstream's fixed-interval queue does.
async fn evaluate(hpa: &HorizontalPodAutoscaler, state: &State) {
    let Some(spec) = hpa.spec.as_ref() else {
        return;
    };
    let ns = hpa.namespace().unwrap_or_default();
    let uid = hpa.uid().unwrap_or_default();
    let target = &spec.scale_target_ref;
    let reference = format!("{}/{}/{}", target.kind, ns, target.name);
    let original = hpa.status.clone().unwrap_or_default();
    let mut draft = Draft {
        status: original.clone(),
        now: Timestamp::now(),
    };
    draft.status.observed_generation = hpa.metadata.generation;

    let api_version = target.api_version.clone().unwrap_or_default();
    let api = match resolve_target(state, &api_version, &target.kind).await {
        Ok(ar) => Api::<DynamicObject>::namespaced_with(state.ctx.client.clone(), &ns, &ar),
        Err(e) => {
            failed_get_scale(hpa, state, &mut draft, &original, &e).await;
            return;
        }
    };
    let scale = match api.get_scale(&target.name).await {
        Ok(s) => s,
        Err(e) => {
            // A stale discovery entry is dropped so the next period retries it.
            lock(&state.targets).remove(&(api_version.clone(), target.kind.clone()));
            failed_get_scale(hpa, state, &mut draft, &original, &e.to_string()).await;
            return;
        }
    };
    draft.set(
        "AbleToScale",
        true,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
    );
    let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let selector = scale
        .status
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    with_history(state, &uid, |h| h.record_initial(current, draft.now));

    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;
    let behavior = spec
        .behavior
        .as_ref()
        .map(|b| Behavior::from_spec(b, algorithm::DOWNSCALE_STABILIZATION_WINDOW));
    let mut metric_statuses: Option<Vec<MetricStatus>> = None;
    let (mut desired, rescale_reason, rescale) = match algorithm::precheck(current, min, max) {
        Precheck::Disabled => {
            draft.set(
                "ScalingActive",
                false,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
            );
            (0, String::new(), false)
        }
        Precheck::Clamp { desired, reason } => (desired, reason.to_string(), true),
        Precheck::Evaluate => {
            let metrics = spec.metrics.clone().unwrap_or_default();
            let computed =
                compute_metrics(hpa, state, &mut draft, &ns, &selector, current, &metrics).await;
            let (replicas, metric, statuses) = match computed {
                Ok(v) => v,
                Err((statuses, error)) => {
                    set_current(&mut draft, current, statuses);
                    write_status(hpa, state, &original, &draft.status).await;
                    state.recorder.publish(
                        hpa,
                        EventType::Warning,
                        "FailedComputeMetricsReplicas",
                        &error,
                    );
                    return;
                }
            };
            metric_statuses = statuses;
            let desired = replicas.max(0);
            let reason = algorithm::rescale_reason(current, desired, &metric);
            let normalized = with_history(state, &uid, |h| match &behavior {
                None => algorithm::normalize(
                    h,
                    current,
                    desired,
                    min,
                    max,
                    algorithm::DOWNSCALE_STABILIZATION_WINDOW,
                    draft.now,
                ),
                Some(b) => {
                    algorithm::normalize_with_behavior(h, b, current, desired, min, max, draft.now)
                }
            });
            let able = &normalized.able_to_scale;
            draft.set("AbleToScale", able.status, able.reason, able.message);
            let limited = &normalized.scaling_limited;
            draft.set(
                "ScalingLimited",
                limited.status,
                limited.reason,
                limited.message,
            );
            (normalized.desired, reason, normalized.desired != current)
        }
    };

    if rescale {
        let patch = serde_json::json!({"spec": {"replicas": desired}});
        if let Err(e) = api
            .patch_scale(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            state.recorder.publish(
                hpa,
                EventType::Warning,
                "FailedRescale",
                &format!("New size: {desired}; reason: {rescale_reason}; error: {e}"),
            );
            draft.set(
                "AbleToScale",
                false,
                "FailedUpdateScale",
                format!("the HPA controller was unable to update the target scale: {e}"),
            );
            set_current(&mut draft, current, metric_statuses);
            write_status(hpa, state, &original, &draft.status).await;
            return;
        }
        draft.set(
            "AbleToScale",
            true,
            "SucceededRescale",
            format!("the HPA controller was able to update the target scale to {desired}"),
        );
        state.recorder.publish(
            hpa,
            EventType::Normal,
            "SuccessfulRescale",
            &format!("New size: {desired}; reason: {rescale_reason}"),
        );
        with_history(state, &uid, |h| {
            h.store_scale_event(behavior.as_ref(), current, desired, draft.now)
        });
        tracing::info!(hpa = %skiff_client::objects::key(hpa), target = %reference, current, desired, reason = %rescale_reason, "successfully rescaled");
        draft.status.last_scale_time = Some(Time(draft.now));
    } else {
        desired = current;
    }
    draft.status.current_replicas = Some(current);
    draft.status.desired_replicas = desired;
    draft.status.current_metrics = metric_statuses;
    write_status(hpa, state, &original, &draft.status).await;
}

fn with_history<R>(state: &State, uid: &str, f: impl FnOnce(&mut History) -> R) -> R {
    let mut tracked = lock(&state.tracked);
    f(&mut tracked.entry(uid.to_string()).or_default().history)
}

/// Upstream's setCurrentReplicasAndMetricsInStatus.
fn set_current(draft: &mut Draft, current: i32, statuses: Option<Vec<MetricStatus>>) {
    draft.status.current_replicas = Some(current);
    draft.status.current_metrics = statuses;
}

async fn failed_get_scale(
    hpa: &HorizontalPodAutoscaler,
    state: &State,
    draft: &mut Draft,
    original: &HorizontalPodAutoscalerStatus,
    error: &str,
) {
    state
        .recorder
        .publish(hpa, EventType::Warning, "FailedGetScale", error);
    draft.set(
        "AbleToScale",
        false,
        "FailedGetScale",
        format!("the HPA controller was unable to get the target's current scale: {error}"),
    );
    write_status(hpa, state, original, &draft.status).await;
}

/// The API resource serving `kind` in `api_version` (cached).
async fn resolve_target(
    state: &State,
    api_version: &str,
    kind: &str,
) -> Result<ApiResource, String> {
    let key = (api_version.to_string(), kind.to_string());
    if let Some(ar) = lock(&state.targets).get(&key) {
        return Ok(ar.clone());
    }
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    if version.is_empty() || api_version.matches('/').count() > 1 {
        return Err(format!("unexpected GroupVersion string: {api_version}"));
    }
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (ar, _caps) = kube::discovery::pinned_kind(&state.ctx.client, &gvk)
        .await
        .map_err(|e| format!("unable to determine resource for scale target reference: {e}"))?;
    lock(&state.targets).insert(key, ar.clone());
    Ok(ar)
}

/// Write `status` if it differs from `original` (upstream's
/// updateStatusIfNeeded). A merge patch of the whole status: absent fields
/// are sent as null so they are cleared.
async fn write_status(
    hpa: &HorizontalPodAutoscaler,
    state: &State,
    original: &HorizontalPodAutoscalerStatus,
    status: &HorizontalPodAutoscalerStatus,
) {
    if original == status {
        return;
    }
    let mut value = match serde_json::to_value(status) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "encoding HPA status");
            return;
        }
    };
    if let Some(obj) = value.as_object_mut() {
        for field in [
            "conditions",
            "currentMetrics",
            "currentReplicas",
            "lastScaleTime",
            "observedGeneration",
        ] {
            obj.entry(field).or_insert(serde_json::Value::Null);
        }
    }
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(
        state.ctx.client.clone(),
        &hpa.namespace().unwrap_or_default(),
    );
    let patch = serde_json::json!({ "status": value });
    if let Err(e) = api
        .patch_status(
            &hpa.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        state.recorder.publish(
            hpa,
            EventType::Warning,
            "FailedUpdateStatus",
            &e.to_string(),
        );
        tracing::warn!(hpa = %skiff_client::objects::key(hpa), error = %e, "failed to update status");
    }
}

type Computed =
    Result<(i32, String, Option<Vec<MetricStatus>>), (Option<Vec<MetricStatus>>, String)>;

/// Upstream's computeReplicasForMetrics: a proposal per metric, the largest
/// wins; sets ScalingActive.
#[allow(clippy::too_many_arguments)]
async fn compute_metrics(
    hpa: &HorizontalPodAutoscaler,
    state: &State,
    draft: &mut Draft,
    ns: &str,
    selector: &str,
    current: i32,
    metrics: &[MetricSpec],
) -> Computed {
    if selector.is_empty() {
        let msg = "selector is required";
        state
            .recorder
            .publish(hpa, EventType::Warning, "SelectorRequired", msg);
        draft.set(
            "ScalingActive",
            false,
            "InvalidSelector",
            "the HPA target's scale is missing a selector",
        );
        return Err((None, msg.to_string()));
    }
    let pods_api: Api<Pod> = Api::namespaced(state.ctx.client.clone(), ns);
    let pods = match pods_api.list(&ListParams::default().labels(selector)).await {
        Ok(list) => list.items,
        Err(kube::Error::Api(s)) if s.code == 400 => {
            let msg = format!(
                "couldn't convert selector into a corresponding internal selector object: {}",
                s.message
            );
            state
                .recorder
                .publish(hpa, EventType::Warning, "InvalidSelector", &msg);
            draft.set("ScalingActive", false, "InvalidSelector", msg.clone());
            return Err((None, msg));
        }
        Err(e) => {
            return Err((
                None,
                format!("unable to get pods while calculating replica count: {e}"),
            ))
        }
    };
    let usage = read_usage(state, ns, &pods).await;
    let tolerances = Tolerances::of(hpa.spec.as_ref().and_then(|s| s.behavior.as_ref()));
    let mut outcomes = Vec::with_capacity(metrics.len());
    let mut statuses = Vec::with_capacity(metrics.len());
    for m in metrics {
        let (outcome, status) = metric_outcome(m, current, &pods, &usage, tolerances, draft.now);
        if let MetricOutcome::Invalid {
            reason, message, ..
        } = &outcome
        {
            // The event carries the metric's own error (upstream's
            // getUnableComputeReplicaCountCondition).
            let detail = message.strip_prefix(UNABLE).unwrap_or(message);
            state
                .recorder
                .publish(hpa, EventType::Warning, reason, detail);
        }
        outcomes.push(outcome);
        statuses.push(status);
    }
    let statuses = (!statuses.is_empty()).then_some(statuses);
    match algorithm::combine_metrics(&outcomes, current) {
        Combined::Failed {
            reason,
            message,
            error,
        } => {
            draft.set("ScalingActive", false, &reason, message);
            Err((statuses, error))
        }
        Combined::Replicas {
            replicas,
            metric,
            error,
        } => {
            if let Some(e) = error {
                tracing::info!(hpa = %skiff_client::objects::key(hpa), error = %e, "some metrics are invalid");
            }
            draft.set(
                "ScalingActive",
                true,
                "ValidMetricFound",
                format!("the HPA was able to successfully calculate a replica count from {metric}"),
            );
            Ok((replicas, metric, statuses))
        }
    }
}

/// Usage of every pod that has a sample.
async fn read_usage(
    state: &State,
    ns: &str,
    pods: &[Pod],
) -> BTreeMap<String, skiff_client::metrics::PodUsage> {
    let mut out = BTreeMap::new();
    for p in pods {
        let name = p.name_any();
        if let Some(u) = state.ctx.metrics.pod_usage(ns, &name).await {
            out.insert(name, u);
        }
    }
    out
}

const UNABLE: &str = "the HPA was unable to compute the replica count: ";

fn invalid(reason: &str, what: &str, detail: &str) -> MetricOutcome {
    MetricOutcome::Invalid {
        reason: reason.to_string(),
        message: format!("{UNABLE}{detail}"),
        error: format!("failed to get {what} value: {detail}"),
    }
}

/// One metric's proposal and its status entry. Entries of failed or
/// unsupported metrics keep their type and identity with no current value,
/// so status and spec stay aligned (printers match them by index).
fn metric_outcome(
    m: &MetricSpec,
    current: i32,
    pods: &[Pod],
    usage: &BTreeMap<String, skiff_client::metrics::PodUsage>,
    tolerances: Tolerances,
    now: Timestamp,
) -> (MetricOutcome, MetricStatus) {
    let empty = MetricStatus {
        type_: m.type_.clone(),
        ..Default::default()
    };
    const NO_CUSTOM: &str = "skiff serves resource metrics (cpu, memory) only";
    match (m.type_.as_str(), m) {
        ("Resource", MetricSpec { resource: Some(r), .. }) => {
            resource_outcome(r, current, pods, usage, tolerances, now)
        }
        ("ContainerResource", MetricSpec { container_resource: Some(c), .. }) => (
            invalid(
                "FailedGetContainerResourceMetric",
                &format!("{} container metric", c.container),
                &format!(
                    "unable to get metrics for resource {} of container {}: the nodes report per-pod usage only",
                    c.name, c.container
                ),
            ),
            MetricStatus {
                container_resource: Some(ContainerResourceMetricStatus {
                    name: c.name.clone(),
                    container: c.container.clone(),
                    current: MetricValueStatus::default(),
                }),
                ..empty
            },
        ),
        ("Pods", MetricSpec { pods: Some(p), .. }) => (
            invalid(
                "FailedGetPodsMetric",
                "pods metric",
                &format!("unable to get metric {}: {NO_CUSTOM}", p.metric.name),
            ),
            MetricStatus {
                pods: Some(PodsMetricStatus {
                    metric: p.metric.clone(),
                    current: MetricValueStatus::default(),
                }),
                ..empty
            },
        ),
        ("Object", MetricSpec { object: Some(o), .. }) => (
            invalid(
                "FailedGetObjectMetric",
                "object metric",
                &format!("unable to get metric {}: {NO_CUSTOM}", o.metric.name),
            ),
            MetricStatus {
                object: Some(ObjectMetricStatus {
                    described_object: o.described_object.clone(),
                    metric: o.metric.clone(),
                    current: MetricValueStatus::default(),
                }),
                ..empty
            },
        ),
        ("External", MetricSpec { external: Some(e), .. }) => (
            invalid(
                "FailedGetExternalMetric",
                &format!("{} external metric", e.metric.name),
                &format!("unable to get external metric {}: {NO_CUSTOM}", e.metric.name),
            ),
            MetricStatus {
                external: Some(ExternalMetricStatus {
                    metric: e.metric.clone(),
                    current: MetricValueStatus::default(),
                }),
                ..empty
            },
        ),
        (other, _) => (
            invalid(
                "InvalidMetricSourceType",
                "metric",
                &format!("unknown metric source type {other:?}"),
            ),
            empty,
        ),
    }
}

fn resource_outcome(
    r: &ResourceMetricSource,
    current: i32,
    pods: &[Pod],
    usage: &BTreeMap<String, skiff_client::metrics::PodUsage>,
    tolerances: Tolerances,
    now: Timestamp,
) -> (MetricOutcome, MetricStatus) {
    let resource = r.name.as_str();
    let what = format!("{resource} resource metric");
    let mut status = MetricStatus {
        type_: "Resource".into(),
        resource: Some(ResourceMetricStatus {
            name: r.name.clone(),
            current: MetricValueStatus::default(),
        }),
        ..Default::default()
    };
    let samples: Samples = match resource {
        "cpu" | "memory" => usage
            .iter()
            .map(|(name, u)| {
                let value = if resource == "cpu" {
                    i64::try_from(u.cpu_millis).unwrap_or(i64::MAX)
                } else {
                    i64::try_from(u.memory_bytes)
                        .unwrap_or(i64::MAX)
                        .saturating_mul(1000)
                };
                (
                    name.clone(),
                    Sample {
                        value,
                        timestamp: u.timestamp,
                        window: METRIC_WINDOW,
                    },
                )
            })
            .collect(),
        // Nodes report cpu and memory only.
        _ => Samples::new(),
    };
    let infos: Vec<PodInfo> = pods.iter().map(|p| pod_info(p, resource)).collect();
    let readiness = Readiness::default();
    let target = &r.target;
    if let Some(value) = &target.average_value {
        let Some(target_milli) = quantity::parse_milli(&value.0).filter(|v| *v > 0) else {
            let detail = format!("invalid average value target {:?}", value.0);
            return (invalid("FailedGetResourceMetric", &what, &detail), status);
        };
        return match algorithm::raw_resource_replicas(
            current,
            target_milli,
            resource,
            tolerances,
            &infos,
            &samples,
            &readiness,
            now,
        ) {
            Ok(p) => {
                if let Some(s) = status.resource.as_mut() {
                    s.current.average_value = Some(Quantity(quantity::format_milli(p.average)));
                }
                (
                    MetricOutcome::Proposal {
                        replicas: p.replicas,
                        name: format!("{resource} resource"),
                    },
                    status,
                )
            }
            Err(e) => (
                invalid(
                    "FailedGetResourceMetric",
                    &what,
                    &format!("failed to get {resource} usage: {e}"),
                ),
                status,
            ),
        };
    }
    let Some(target_utilization) = target.average_utilization.filter(|u| *u > 0) else {
        let detail = "invalid resource metric source: neither an average utilization target nor an average value (usage) target was set";
        return (invalid("FailedGetResourceMetric", &what, detail), status);
    };
    match algorithm::resource_replicas(
        current,
        target_utilization,
        resource,
        tolerances,
        &infos,
        &samples,
        &readiness,
        now,
    ) {
        Ok(p) => {
            if let Some(s) = status.resource.as_mut() {
                s.current.average_utilization = Some(p.utilization);
                s.current.average_value = Some(Quantity(quantity::format_milli(p.raw_average)));
            }
            (
                MetricOutcome::Proposal {
                    replicas: p.replicas,
                    name: format!("{resource} resource utilization (percentage of request)"),
                },
                status,
            )
        }
        Err(e) => (
            invalid(
                "FailedGetResourceMetric",
                &what,
                &format!("failed to get {resource} utilization: {e}"),
            ),
            status,
        ),
    }
}

/// What the algorithm needs of `pod` for `resource`.
fn pod_info(pod: &Pod, resource: &str) -> PodInfo {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| ReadyCondition {
            is_false: c.status == "False",
            last_transition: c
                .last_transition_time
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
        });
    PodInfo {
        name: pod.name_any(),
        phase: Phase::parse(status.and_then(|s| s.phase.as_deref())),
        deleting: pod.metadata.deletion_timestamp.is_some(),
        ready,
        start_time: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
        request: pod_request(pod, resource),
    }
}

/// The sum of the containers' requests for `resource` (restartable init
/// containers included), in milli-units.
fn pod_request(pod: &Pod, resource: &str) -> Result<i64, String> {
    let name = pod.name_any();
    let Some(spec) = pod.spec.as_ref() else {
        return Err(format!("missing request for {resource} in Pod {name}"));
    };
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    let mut total: i64 = 0;
    for c in spec.containers.iter().chain(sidecars) {
        let request = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(resource))
            .and_then(|q| quantity::parse_milli(&q.0));
        match request {
            Some(v) => total = total.saturating_add(v),
            None => {
                return Err(format!(
                    "missing request for {resource} in container {} of Pod {name}",
                    c.name
                ))
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests;
