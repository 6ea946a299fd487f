//! The autoscaling algorithm, free of I/O: every function takes the pods,
//! samples, history and "now" it needs, so it can be tested exactly.
//!
//! It follows upstream's `pkg/controller/podautoscaler` (replica_calculator.go
//! for the per-metric proposal, horizontal.go for stabilization, rate limits
//! and conditions):
//!
//! - **Proposal per metric.** `ratio = current / target`; inside the
//!   tolerance (0.1 either way) nothing changes, otherwise
//!   `ceil(ratio × ready pods)`. Pods without a sample count as 100 % of their
//!   request (or of the target, if higher) on a scale-down and 0 % on a
//!   scale-up; not-yet-ready pods count as 0 % on a scale-up only. If those
//!   assumptions flip the direction or land inside the tolerance, nothing
//!   changes.
//! - **Several metrics**: the largest proposal wins.
//! - **Without `behavior`** the highest recommendation of the last 5 minutes
//!   is used (scale-down stabilization) and one step may at most double the
//!   replicas (or reach 4).
//! - **With `behavior`** the recommendation is held between the lowest of
//!   the scale-up window and the highest of the scale-down window, then
//!   limited by the policies (`Pods`/`Percent` per `periodSeconds`, combined
//!   by `selectPolicy`) against the scale events of each policy's period.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerBehavior};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::quantity::parse_milli;

/// How far the usage ratio may be from 1.0 before anything changes
/// (`--horizontal-pod-autoscaler-tolerance`).
pub const DEFAULT_TOLERANCE: f64 = 0.1;
/// How long after a pod starts its CPU samples are doubted
/// (`--horizontal-pod-autoscaler-cpu-initialization-period`).
pub const CPU_INITIALIZATION_PERIOD: Duration = Duration::from_secs(300);
/// After the initialization period, a pod that went unready within this long
/// of starting is taken never to have been ready
/// (`--horizontal-pod-autoscaler-initial-readiness-delay`).
pub const DELAY_OF_INITIAL_READINESS_STATUS: Duration = Duration::from_secs(30);
/// The scale-down stabilization window when none is given
/// (`--horizontal-pod-autoscaler-downscale-stabilization`).
pub const DOWNSCALE_STABILIZATION_WINDOW: Duration = Duration::from_secs(300);

const SCALE_UP_LIMIT_FACTOR: f64 = 2.0;
const SCALE_UP_LIMIT_MINIMUM: f64 = 4.0;

/// Why no proposal could be computed; the texts are upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalcError {
    #[error(
        "unable to get metrics for resource {0}: no metrics returned from resource metrics API"
    )]
    NoMetrics(String),
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoReadyMetrics,
    /// A pod lacks the request a Utilization target needs.
    #[error("{0}")]
    MissingRequest(String),
    #[error("no metrics returned matched known pods")]
    NoMatchingPods,
}

/// The tolerance below and above a ratio of 1.0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    pub scale_down: f64,
    pub scale_up: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances {
            scale_down: DEFAULT_TOLERANCE,
            scale_up: DEFAULT_TOLERANCE,
        }
    }
}

impl Tolerances {
    /// The tolerances of an HPA: `behavior.scale{Down,Up}.tolerance` where
    /// set (upstream's HPAConfigurableTolerance), the default otherwise.
    pub fn of(behavior: Option<&HorizontalPodAutoscalerBehavior>) -> Tolerances {
        let get = |rules: Option<&HPAScalingRules>| {
            rules
                .and_then(|r| r.tolerance.as_ref())
                .and_then(|q| parse_milli(&q.0))
                .filter(|m| *m >= 0)
                .map(|m| m as f64 / 1000.0)
        };
        let d = Tolerances::default();
        Tolerances {
            scale_down: get(behavior.and_then(|b| b.scale_down.as_ref())).unwrap_or(d.scale_down),
            scale_up: get(behavior.and_then(|b| b.scale_up.as_ref())).unwrap_or(d.scale_up),
        }
    }

    /// Whether `ratio` is close enough to 1.0 to change nothing.
    pub fn is_within(&self, ratio: f64) -> bool {
        (1.0 - self.scale_down) <= ratio && ratio <= (1.0 + self.scale_up)
    }
}

/// A pod's phase as the algorithm distinguishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Failed,
    /// Succeeded, Unknown or unset: neither skipped nor waited for.
    Other,
}

impl Phase {
    pub fn parse(phase: Option<&str>) -> Phase {
        match phase {
            Some("Pending") => Phase::Pending,
            Some("Running") => Phase::Running,
            Some("Failed") => Phase::Failed,
            _ => Phase::Other,
        }
    }
}

/// A pod's Ready condition.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadyCondition {
    /// `status: "False"` (an `Unknown` status is not False).
    pub is_false: bool,
    pub last_transition: Timestamp,
}

/// What the algorithm needs to know about one pod selected by the target.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    pub name: String,
    pub phase: Phase,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    pub ready: Option<ReadyCondition>,
    pub start_time: Option<Timestamp>,
    /// The pod's request for the metric's resource in milli-units, or the
    /// message saying which container has none.
    pub request: Result<i64, String>,
}

/// One pod's usage sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Usage in milli-units (millicores, or bytes × 1000).
    pub value: i64,
    /// The end of the sampling window.
    pub timestamp: Timestamp,
    /// How long the sample was averaged over.
    pub window: Duration,
}

/// Samples by pod name.
pub type Samples = BTreeMap<String, Sample>;

/// The readiness windows that decide whether a CPU sample is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub cpu_initialization_period: Duration,
    pub delay_of_initial_readiness_status: Duration,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            cpu_initialization_period: CPU_INITIALIZATION_PERIOD,
            delay_of_initial_readiness_status: DELAY_OF_INITIAL_READINESS_STATUS,
        }
    }
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

fn minus_secs(t: Timestamp, secs: i64) -> Timestamp {
    t.checked_sub(SignedDuration::from_secs(secs))
        .unwrap_or(Timestamp::MIN)
}

/// Pods sorted by how their samples are used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Groups {
    /// Pods whose samples count as they are.
    pub ready: usize,
    /// Pending pods, and (for CPU) pods not ready or sampled too early.
    pub unready: BTreeSet<String>,
    /// Pods without a sample.
    pub missing: BTreeSet<String>,
    /// Failed pods and pods being deleted.
    pub ignored: BTreeSet<String>,
}

/// Upstream's `groupPods`.
pub fn group_pods(
    pods: &[PodInfo],
    samples: &Samples,
    resource: &str,
    readiness: &Readiness,
    now: Timestamp,
) -> Groups {
    let mut g = Groups::default();
    for pod in pods {
        if pod.deleting || pod.phase == Phase::Failed {
            g.ignored.insert(pod.name.clone());
            continue;
        }
        if pod.phase == Phase::Pending {
            g.unready.insert(pod.name.clone());
            continue;
        }
        let Some(sample) = samples.get(&pod.name) else {
            g.missing.insert(pod.name.clone());
            continue;
        };
        if resource == "cpu" {
            let unready = match (&pod.ready, pod.start_time) {
                (Some(cond), Some(start)) => {
                    if plus(start, readiness.cpu_initialization_period) > now {
                        // Still initializing: the sample must be taken wholly
                        // after the pod became ready.
                        cond.is_false
                            || sample.timestamp < plus(cond.last_transition, sample.window)
                    } else {
                        // Unready and never been ready.
                        cond.is_false
                            && plus(start, readiness.delay_of_initial_readiness_status)
                                > cond.last_transition
                    }
                }
                _ => true,
            };
            if unready {
                g.unready.insert(pod.name.clone());
                continue;
            }
        }
        g.ready += 1;
    }
    g
}

/// The requests of every pod, or the first pod's missing-request message.
fn requests(pods: &[PodInfo]) -> Result<BTreeMap<&str, i64>, CalcError> {
    pods.iter()
        .map(|p| match &p.request {
            Ok(r) => Ok((p.name.as_str(), *r)),
            Err(m) => Err(CalcError::MissingRequest(m.clone())),
        })
        .collect()
}

/// `(ratio, utilization %, raw average)` of the samples against their
/// pods' requests (upstream's GetResourceUtilizationRatio: integer percent).
fn utilization_ratio(
    values: &BTreeMap<String, i64>,
    requests: &BTreeMap<&str, i64>,
    target_utilization: i32,
) -> Result<(f64, i32, i64), CalcError> {
    let (mut total, mut requested, mut n) = (0i128, 0i128, 0i128);
    for (pod, value) in values {
        // Samples of pods not listed are extraneous.
        let Some(request) = requests.get(pod.as_str()) else {
            continue;
        };
        total += i128::from(*value);
        requested += i128::from(*request);
        n += 1;
    }
    if requested == 0 {
        return Err(CalcError::NoMatchingPods);
    }
    let utilization = i32::try_from(total * 100 / requested).unwrap_or(i32::MAX);
    let raw = i64::try_from(total / n).unwrap_or(i64::MAX);
    Ok((
        f64::from(utilization) / f64::from(target_utilization),
        utilization,
        raw,
    ))
}

/// `(ratio, average)` of plain values against a target average.
fn usage_ratio(values: &BTreeMap<String, i64>, target: i64) -> (f64, i64) {
    let total: i128 = values.values().map(|v| i128::from(*v)).sum();
    let n = i128::try_from(values.len()).unwrap_or(1).max(1);
    let average = i64::try_from(total / n).unwrap_or(i64::MAX);
    (average as f64 / target as f64, average)
}

fn ceil_replicas(x: f64) -> i32 {
    // `as` saturates, like the clamp upstream applies before converting.
    x.ceil() as i32
}

/// A Utilization proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtilizationProposal {
    pub replicas: i32,
    /// Average utilization in percent of the requests.
    pub utilization: i32,
    /// Average usage in milli-units.
    pub raw_average: i64,
}

/// Upstream's `GetResourceReplicas`: the replicas that bring the average
/// utilization (percent of request) of `resource` to `target_utilization`.
#[allow(clippy::too_many_arguments)]
pub fn resource_replicas(
    current: i32,
    target_utilization: i32,
    resource: &str,
    tolerances: Tolerances,
    pods: &[PodInfo],
    samples: &Samples,
    readiness: &Readiness,
    now: Timestamp,
) -> Result<UtilizationProposal, CalcError> {
    if samples.is_empty() {
        return Err(CalcError::NoMetrics(resource.to_string()));
    }
    if pods.is_empty() {
        return Err(CalcError::NoPods);
    }
    let groups = group_pods(pods, samples, resource, readiness, now);
    let mut values: BTreeMap<String, i64> = samples
        .iter()
        .filter(|(name, _)| !groups.ignored.contains(*name) && !groups.unready.contains(*name))
        .map(|(name, s)| (name.clone(), s.value))
        .collect();
    if values.is_empty() {
        return Err(CalcError::NoReadyMetrics);
    }
    let requests = requests(pods)?;
    let (ratio, utilization, raw_average) =
        utilization_ratio(&values, &requests, target_utilization)?;
    let keep = |replicas| UtilizationProposal {
        replicas,
        utilization,
        raw_average,
    };

    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if tolerances.is_within(ratio) {
            return Ok(keep(current));
        }
        return Ok(keep(ceil_replicas(ratio * groups.ready as f64)));
    }

    if !groups.missing.is_empty() {
        if ratio < 1.0 {
            // Scale-down: missing pods use all of their request (or the
            // target, if it is above 100 %).
            let fallback = i64::from(target_utilization.max(100));
            for pod in &groups.missing {
                let request = requests.get(pod.as_str()).copied().unwrap_or(0);
                values.insert(pod.clone(), request.saturating_mul(fallback) / 100);
            }
        } else if ratio > 1.0 {
            // Scale-up: missing pods use nothing.
            for pod in &groups.missing {
                values.insert(pod.clone(), 0);
            }
        }
    }
    if scale_up_with_unready {
        for pod in &groups.unready {
            values.insert(pod.clone(), 0);
        }
    }

    let (new_ratio, _, _) = utilization_ratio(&values, &requests, target_utilization)?;
    if tolerances.is_within(new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        // Too small a change, or the assumptions reverse the direction.
        return Ok(keep(current));
    }
    let replicas = ceil_replicas(new_ratio * values.len() as f64);
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(keep(current));
    }
    Ok(keep(replicas))
}

/// An AverageValue proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueProposal {
    pub replicas: i32,
    /// Average usage in milli-units.
    pub average: i64,
}

/// Upstream's `GetRawResourceReplicas` (calcPlainMetricReplicas): the
/// replicas that bring the average usage to `target_average` milli-units.
#[allow(clippy::too_many_arguments)]
pub fn raw_resource_replicas(
    current: i32,
    target_average: i64,
    resource: &str,
    tolerances: Tolerances,
    pods: &[PodInfo],
    samples: &Samples,
    readiness: &Readiness,
    now: Timestamp,
) -> Result<ValueProposal, CalcError> {
    if samples.is_empty() {
        return Err(CalcError::NoMetrics(resource.to_string()));
    }
    if pods.is_empty() {
        return Err(CalcError::NoPods);
    }
    let groups = group_pods(pods, samples, resource, readiness, now);
    let mut values: BTreeMap<String, i64> = samples
        .iter()
        .filter(|(name, _)| !groups.ignored.contains(*name) && !groups.unready.contains(*name))
        .map(|(name, s)| (name.clone(), s.value))
        .collect();
    if values.is_empty() {
        return Err(CalcError::NoReadyMetrics);
    }
    let (ratio, average) = usage_ratio(&values, target_average);
    let keep = |replicas| ValueProposal { replicas, average };

    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if tolerances.is_within(ratio) {
            return Ok(keep(current));
        }
        return Ok(keep(ceil_replicas(ratio * groups.ready as f64)));
    }
    if !groups.missing.is_empty() {
        if ratio < 1.0 {
            // Scale-down: missing pods use exactly the target.
            for pod in &groups.missing {
                values.insert(pod.clone(), target_average);
            }
        } else if ratio > 1.0 {
            for pod in &groups.missing {
                values.insert(pod.clone(), 0);
            }
        }
    }
    if scale_up_with_unready {
        for pod in &groups.unready {
            values.insert(pod.clone(), 0);
        }
    }
    let (new_ratio, _) = usage_ratio(&values, target_average);
    if tolerances.is_within(new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(keep(current));
    }
    let replicas = ceil_replicas(new_ratio * values.len() as f64);
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(keep(current));
    }
    Ok(keep(replicas))
}

/// One metric's outcome, as [`combine_metrics`] weighs it.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricOutcome {
    /// `replicas` proposed by the metric described as `name` (e.g. "cpu
    /// resource utilization (percentage of request)").
    Proposal { replicas: i32, name: String },
    /// No proposal: the ScalingActive=False condition it would set, and the
    /// error text.
    Invalid {
        reason: String,
        message: String,
        error: String,
    },
}

/// What the metrics decide together.
#[derive(Debug, Clone, PartialEq)]
pub enum Combined {
    /// Scale on `replicas` from `metric`; `error` is set when some metrics
    /// failed but the others still allow scaling (up).
    Replicas {
        replicas: i32,
        metric: String,
        error: Option<String>,
    },
    /// Nothing to scale on: the condition from the first invalid metric.
    Failed {
        reason: String,
        message: String,
        error: String,
    },
}

/// Upstream's computeReplicasForMetrics: the largest proposal wins; if every
/// metric failed, or some failed and the others would scale down, nothing is
/// decided.
pub fn combine_metrics(outcomes: &[MetricOutcome], spec_replicas: i32) -> Combined {
    let mut replicas = 0;
    let mut metric = String::new();
    let mut invalid = 0usize;
    let mut first: Option<(&str, &str, &str)> = None;
    for o in outcomes {
        match o {
            MetricOutcome::Proposal { replicas: r, name } => {
                if replicas == 0 || *r > replicas {
                    replicas = *r;
                    metric = name.clone();
                }
            }
            MetricOutcome::Invalid {
                reason,
                message,
                error,
            } => {
                if first.is_none() {
                    first = Some((reason, message, error));
                }
                invalid += 1;
            }
        }
    }
    let error = first.map(|(_, _, e)| {
        format!(
            "invalid metrics ({invalid} invalid out of {}), first error is: {e}",
            outcomes.len()
        )
    });
    match first {
        Some((reason, message, _)) if invalid >= outcomes.len() || replicas < spec_replicas => {
            Combined::Failed {
                reason: reason.to_string(),
                message: message.to_string(),
                error: error.unwrap_or_default(),
            }
        }
        _ => Combined::Replicas {
            replicas,
            metric,
            error,
        },
    }
}

/// What to do before looking at metrics (upstream's reconcileAutoscaler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precheck {
    /// The target has 0 replicas and minReplicas is not 0: autoscaling is off.
    Disabled,
    /// Bring the target into [min, max] first.
    Clamp { desired: i32, reason: &'static str },
    /// Evaluate the metrics.
    Evaluate,
}

/// Upstream's checks on the current replica count.
pub fn precheck(current: i32, min: i32, max: i32) -> Precheck {
    if current == 0 && min != 0 {
        Precheck::Disabled
    } else if current > max {
        Precheck::Clamp {
            desired: max,
            reason: "Current number of replicas above Spec.MaxReplicas",
        }
    } else if current < min {
        Precheck::Clamp {
            desired: min,
            reason: "Current number of replicas below Spec.MinReplicas",
        }
    } else {
        Precheck::Evaluate
    }
}

/// The SuccessfulRescale reason for going from `current` to the metrics'
/// (pre-normalized) `desired`.
pub fn rescale_reason(current: i32, desired: i32, metric: &str) -> String {
    if desired > current {
        format!("{metric} above target")
    } else if desired < current {
        "All metrics below target".into()
    } else {
        String::new()
    }
}

/// How scaling policies combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectPolicy {
    Max,
    Min,
    Disabled,
}

/// A `Pods` or `Percent` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    Pods,
    Percent,
}

/// At most `value` pods or percent per `period_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub kind: PolicyKind,
    pub value: i32,
    pub period_seconds: i32,
}

/// One direction's rules with upstream's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub stabilization_window_seconds: i32,
    pub select_policy: SelectPolicy,
    pub policies: Vec<Policy>,
}

/// Both directions' rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behavior {
    pub scale_up: Rules,
    pub scale_down: Rules,
}

impl Behavior {
    /// `spec.behavior` with upstream's defaults (GenerateHPAScaleUpRules /
    /// GenerateHPAScaleDownRules; a missing scale-down window is the
    /// controller's `downscale_window`, 300 s).
    pub fn from_spec(b: &HorizontalPodAutoscalerBehavior, downscale_window: Duration) -> Behavior {
        let up_default = Rules {
            stabilization_window_seconds: 0,
            select_policy: SelectPolicy::Max,
            policies: vec![
                Policy {
                    kind: PolicyKind::Pods,
                    value: 4,
                    period_seconds: 15,
                },
                Policy {
                    kind: PolicyKind::Percent,
                    value: 100,
                    period_seconds: 15,
                },
            ],
        };
        let down_default = Rules {
            stabilization_window_seconds: i32::try_from(downscale_window.as_secs())
                .unwrap_or(i32::MAX),
            select_policy: SelectPolicy::Max,
            policies: vec![Policy {
                kind: PolicyKind::Percent,
                value: 100,
                period_seconds: 15,
            }],
        };
        Behavior {
            scale_up: merge_rules(b.scale_up.as_ref(), up_default),
            scale_down: merge_rules(b.scale_down.as_ref(), down_default),
        }
    }
}

fn merge_rules(from: Option<&HPAScalingRules>, mut to: Rules) -> Rules {
    let Some(from) = from else { return to };
    match from.select_policy.as_deref() {
        Some("Min") => to.select_policy = SelectPolicy::Min,
        Some("Disabled") => to.select_policy = SelectPolicy::Disabled,
        Some("Max") => to.select_policy = SelectPolicy::Max,
        _ => {}
    }
    if let Some(w) = from.stabilization_window_seconds {
        to.stabilization_window_seconds = w;
    }
    if let Some(policies) = &from.policies {
        to.policies = policies
            .iter()
            .filter_map(|p| {
                let kind = match p.type_.as_str() {
                    "Pods" => PolicyKind::Pods,
                    "Percent" => PolicyKind::Percent,
                    _ => return None,
                };
                Some(Policy {
                    kind,
                    value: p.value,
                    period_seconds: p.period_seconds,
                })
            })
            .collect();
    }
    to
}

/// A replica change the controller made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleEvent {
    /// How many replicas were added (up) or removed (down); never negative.
    pub change: i32,
    pub at: Timestamp,
    /// Older than every policy period: may be overwritten.
    pub outdated: bool,
}

/// What an HPA's past evaluations left behind (kept in memory, as upstream).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Unstabilized recommendations.
    pub recommendations: Vec<(i32, Timestamp)>,
    pub scale_up_events: Vec<ScaleEvent>,
    pub scale_down_events: Vec<ScaleEvent>,
}

/// A condition to set on the HPA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub status: bool,
    pub reason: &'static str,
    pub message: &'static str,
}

/// The normalized recommendation with the conditions that explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    pub desired: i32,
    /// AbleToScale (always True here: ReadyForNewScale / Scale*Stabilized).
    pub able_to_scale: Cond,
    /// ScalingLimited (True when the rate or min/max cut the recommendation).
    pub scaling_limited: Cond,
}

const READY_FOR_NEW_SCALE: Cond = Cond {
    status: true,
    reason: "ReadyForNewScale",
    message: "recommended size matches current size",
};
const SCALE_DOWN_STABILIZED: Cond = Cond {
    status: true,
    reason: "ScaleDownStabilized",
    message: "recent recommendations were higher than current one, applying the highest recent recommendation",
};
const SCALE_UP_STABILIZED: Cond = Cond {
    status: true,
    reason: "ScaleUpStabilized",
    message: "recent recommendations were lower than current one, applying the lowest recent recommendation",
};
const WITHIN_RANGE: (&str, &str) = (
    "DesiredWithinRange",
    "the desired count is within the acceptable range",
);
const TOO_MANY: (&str, &str) = (
    "TooManyReplicas",
    "the desired replica count is more than the maximum replica count",
);
const TOO_FEW: (&str, &str) = (
    "TooFewReplicas",
    "the desired replica count is less than the minimum replica count",
);
const SCALE_UP_LIMIT: (&str, &str) = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
);
const SCALE_DOWN_LIMIT: (&str, &str) = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
);

impl History {
    /// The first time an HPA is seen its target's size counts as a
    /// recommendation (so a fresh HPA does not scale down at once).
    pub fn record_initial(&mut self, current: i32, now: Timestamp) {
        if self.recommendations.is_empty() {
            self.recommendations.push((current, now));
        }
    }

    fn record(&mut self, replace: Option<usize>, recommendation: i32, now: Timestamp) {
        match replace.and_then(|i| self.recommendations.get_mut(i)) {
            Some(slot) => *slot = (recommendation, now),
            None => self.recommendations.push((recommendation, now)),
        }
    }

    /// Without `behavior`: the highest recommendation within `window`
    /// (upstream's stabilizeRecommendation); records `desired`.
    pub fn stabilize(&mut self, desired: i32, window: Duration, now: Timestamp) -> i32 {
        let cutoff = minus_secs(now, i64::try_from(window.as_secs()).unwrap_or(i64::MAX));
        let mut max = desired;
        let mut old = None;
        for (i, (rec, at)) in self.recommendations.iter().enumerate() {
            if *at < cutoff {
                old = Some(i);
            } else if *rec > max {
                max = *rec;
            }
        }
        self.record(old, desired, now);
        max
    }

    /// With `behavior`: `current` held between the lowest recommendation of
    /// the scale-up window and the highest of the scale-down window
    /// (upstream's stabilizeRecommendationWithBehaviors); records `desired`.
    pub fn stabilize_with_behavior(
        &mut self,
        behavior: &Behavior,
        current: i32,
        desired: i32,
        now: Timestamp,
    ) -> (i32, Cond) {
        let up_cutoff = minus_secs(
            now,
            i64::from(behavior.scale_up.stabilization_window_seconds),
        );
        let down_cutoff = minus_secs(
            now,
            i64::from(behavior.scale_down.stabilization_window_seconds),
        );
        let (mut up, mut down) = (desired, desired);
        let mut old = None;
        for (i, (rec, at)) in self.recommendations.iter().enumerate() {
            if *at > up_cutoff {
                up = up.min(*rec);
            }
            if *at > down_cutoff {
                down = down.max(*rec);
            }
            if *at < up_cutoff && *at < down_cutoff {
                old = Some(i);
            }
        }
        let stabilized = current.max(up).min(down);
        self.record(old, desired, now);
        let cond = if desired >= current {
            SCALE_UP_STABILIZED
        } else {
            SCALE_DOWN_STABILIZED
        };
        (stabilized, cond)
    }

    /// Remember a rescale from `prev` to `new` for the rate policies
    /// (upstream's storeScaleEvent; nothing is kept without `behavior`).
    pub fn store_scale_event(
        &mut self,
        behavior: Option<&Behavior>,
        prev: i32,
        new: i32,
        now: Timestamp,
    ) {
        let Some(behavior) = behavior else { return };
        let (rules, events, change) = if new > prev {
            (&behavior.scale_up, &mut self.scale_up_events, new - prev)
        } else {
            (
                &behavior.scale_down,
                &mut self.scale_down_events,
                prev - new,
            )
        };
        let longest = rules
            .policies
            .iter()
            .map(|p| p.period_seconds)
            .max()
            .unwrap_or(0);
        let cutoff = minus_secs(now, i64::from(longest));
        let mut old = None;
        for (i, e) in events.iter_mut().enumerate() {
            if e.at < cutoff {
                e.outdated = true;
            }
            if e.outdated {
                old = Some(i);
            }
        }
        let event = ScaleEvent {
            change,
            at: now,
            outdated: false,
        };
        match old.and_then(|i| events.get_mut(i)) {
            Some(slot) => *slot = event,
            None => events.push(event),
        }
    }
}

/// Replicas changed by `events` within the last `period_seconds`.
fn change_in_period(period_seconds: i32, events: &[ScaleEvent], now: Timestamp) -> i32 {
    let cutoff = minus_secs(now, i64::from(period_seconds));
    events
        .iter()
        .filter(|e| e.at > cutoff)
        .map(|e| e.change)
        .fold(0i32, i32::saturating_add)
}

fn period_start(current: i32, policy: &Policy, history: &History, now: Timestamp) -> i32 {
    let added = change_in_period(policy.period_seconds, &history.scale_up_events, now);
    let removed = change_in_period(policy.period_seconds, &history.scale_down_events, now);
    current.saturating_sub(added).saturating_add(removed)
}

/// The most replicas the scale-up policies allow now
/// (upstream's calculateScaleUpLimitWithScalingRules).
pub fn scale_up_limit(current: i32, history: &History, rules: &Rules, now: Timestamp) -> i32 {
    let pick: fn(i32, i32) -> i32 = match rules.select_policy {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => std::cmp::min,
        SelectPolicy::Max => std::cmp::max,
    };
    let mut result = match rules.select_policy {
        SelectPolicy::Min => i32::MAX,
        _ => i32::MIN,
    };
    for policy in &rules.policies {
        let start = period_start(current, policy, history, now);
        let proposed = match policy.kind {
            PolicyKind::Pods => start.saturating_add(policy.value),
            // Rounded up, or a small target could never grow.
            PolicyKind::Percent => {
                (f64::from(start) * (1.0 + f64::from(policy.value) / 100.0)).ceil() as i32
            }
        };
        result = pick(result, proposed);
    }
    result
}

/// The fewest replicas the scale-down policies allow now
/// (upstream's calculateScaleDownLimitWithBehaviors).
pub fn scale_down_limit(current: i32, history: &History, rules: &Rules, now: Timestamp) -> i32 {
    let pick: fn(i32, i32) -> i32 = match rules.select_policy {
        SelectPolicy::Disabled => return current,
        // The smallest change is the largest replica count.
        SelectPolicy::Min => std::cmp::max,
        SelectPolicy::Max => std::cmp::min,
    };
    let mut result = match rules.select_policy {
        SelectPolicy::Min => i32::MIN,
        _ => i32::MAX,
    };
    for policy in &rules.policies {
        let start = period_start(current, policy, history, now);
        let proposed = match policy.kind {
            PolicyKind::Pods => start.saturating_sub(policy.value),
            // Truncated, as Go's int32 conversion.
            PolicyKind::Percent => {
                (f64::from(start) * (1.0 - f64::from(policy.value) / 100.0)) as i32
            }
        };
        result = pick(result, proposed);
    }
    result
}

fn limited(desired: i32, stabilized: i32, (reason, message): (&'static str, &'static str)) -> Cond {
    Cond {
        status: desired != stabilized,
        reason,
        message,
    }
}

/// Without `behavior` (upstream's normalizeDesiredReplicas): stabilize over
/// `downscale_window`, then clamp to [min, max] and to the fixed scale-up
/// limit (double, or at least 4).
pub fn normalize(
    history: &mut History,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    downscale_window: Duration,
    now: Timestamp,
) -> Normalized {
    let stabilized = history.stabilize(desired, downscale_window, now);
    let able_to_scale = if stabilized != desired {
        SCALE_DOWN_STABILIZED
    } else {
        READY_FOR_NEW_SCALE
    };
    let up_limit = (SCALE_UP_LIMIT_FACTOR * f64::from(current)).max(SCALE_UP_LIMIT_MINIMUM) as i32;
    let (maximum, max_reason) = if max > up_limit {
        (up_limit, SCALE_UP_LIMIT)
    } else {
        (max, TOO_MANY)
    };
    let (out, why) = if stabilized < min {
        (min, TOO_FEW)
    } else if stabilized > maximum {
        (maximum, max_reason)
    } else {
        (stabilized, WITHIN_RANGE)
    };
    Normalized {
        desired: out,
        able_to_scale,
        scaling_limited: limited(out, stabilized, why),
    }
}

/// With `behavior` (upstream's normalizeDesiredReplicasWithBehaviors):
/// stabilize within both windows, then limit by the policies and [min, max].
pub fn normalize_with_behavior(
    history: &mut History,
    behavior: &Behavior,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    now: Timestamp,
) -> Normalized {
    let (stabilized, stabilized_cond) =
        history.stabilize_with_behavior(behavior, current, desired, now);
    let able_to_scale = if stabilized != desired {
        stabilized_cond
    } else {
        READY_FOR_NEW_SCALE
    };
    let (out, why) = if stabilized > current {
        let limit = scale_up_limit(current, history, &behavior.scale_up, now).max(current);
        let (maximum, why) = if max > limit {
            (limit, SCALE_UP_LIMIT)
        } else {
            (max, TOO_MANY)
        };
        if stabilized > maximum {
            (maximum, why)
        } else {
            (stabilized, WITHIN_RANGE)
        }
    } else if stabilized < current {
        let limit = scale_down_limit(current, history, &behavior.scale_down, now).min(current);
        let (minimum, why) = if min < limit {
            (limit, SCALE_DOWN_LIMIT)
        } else {
            (min, TOO_FEW)
        };
        if stabilized < minimum {
            (minimum, why)
        } else {
            (stabilized, WITHIN_RANGE)
        }
    } else {
        (stabilized, WITHIN_RANGE)
    };
    Normalized {
        desired: out,
        able_to_scale,
        scaling_limited: limited(out, stabilized, why),
    }
}

#[cfg(test)]
mod tests;
