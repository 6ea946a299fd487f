//! The algorithm against upstream's behaviour. Expected numbers are worked
//! out by hand in each test's comment.

use super::*;
use k8s_openapi::api::autoscaling::v2::HPAScalingPolicy;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).expect("timestamp")
}

/// "Now" in every test.
const NOW: i64 = 10_000;

/// A running pod, started an hour ago and ready ever since, requesting
/// `request` milli-units.
fn pod(name: &str, request: i64) -> PodInfo {
    PodInfo {
        name: name.into(),
        phase: Phase::Running,
        deleting: false,
        ready: Some(ReadyCondition {
            is_false: false,
            last_transition: t(NOW - 3590),
        }),
        start_time: Some(t(NOW - 3600)),
        request: Ok(request),
    }
}

fn sample(value: i64) -> Sample {
    Sample {
        value,
        timestamp: t(NOW),
        window: Duration::from_secs(30),
    }
}

/// Pods `p0..pN` requesting `request` each, with the given usage samples
/// (`None` = no sample).
fn fleet(request: i64, usage: &[Option<i64>]) -> (Vec<PodInfo>, Samples) {
    let pods = (0..usage.len())
        .map(|i| pod(&format!("p{i}"), request))
        .collect();
    let samples = usage
        .iter()
        .enumerate()
        .filter_map(|(i, u)| u.map(|v| (format!("p{i}"), sample(v))))
        .collect();
    (pods, samples)
}

fn cpu(
    current: i32,
    target: i32,
    pods: &[PodInfo],
    samples: &Samples,
) -> Result<UtilizationProposal, CalcError> {
    resource_replicas(
        current,
        target,
        "cpu",
        Tolerances::default(),
        pods,
        samples,
        &Readiness::default(),
        t(NOW),
    )
}

fn proposal(replicas: i32, utilization: i32, raw_average: i64) -> UtilizationProposal {
    UtilizationProposal {
        replicas,
        utilization,
        raw_average,
    }
}

// ---- replica calculation: Utilization ----

#[test]
fn scale_up() {
    // 1500m of 3000m requested = 50 %; 50/30 → ceil(1.667 × 3) = 5.
    let (pods, samples) = fleet(1000, &[Some(300), Some(500), Some(700)]);
    assert_eq!(cpu(3, 30, &pods, &samples), Ok(proposal(5, 50, 500)));
}

#[test]
fn scale_up_single_pod_from_issue() {
    // 200m of 100m = 200 %; 200/50 = 4 × 1 pod.
    let (pods, samples) = fleet(100, &[Some(200)]);
    assert_eq!(cpu(1, 50, &pods, &samples), Ok(proposal(4, 200, 200)));
}

#[test]
fn scale_down() {
    // 1400m of 5000m = 28 %; 28/50 = 0.56 → ceil(2.8) = 3.
    let (pods, samples) = fleet(
        1000,
        &[Some(100), Some(300), Some(500), Some(250), Some(250)],
    );
    assert_eq!(cpu(5, 50, &pods, &samples), Ok(proposal(3, 28, 280)));
}

#[test]
fn utilization_is_integer_percent() {
    // 100m of 300m = 33 % (not 33.3); 33/50 = 0.66 → ceil(1.98) = 2.
    let (pods, samples) = fleet(100, &[Some(50), Some(50), Some(0)]);
    assert_eq!(cpu(3, 50, &pods, &samples), Ok(proposal(2, 33, 33)));
}

#[test]
fn within_tolerance_keeps_current() {
    // 102 % of a 100 % target.
    let (pods, samples) = fleet(1000, &[Some(1010), Some(1030), Some(1020)]);
    assert_eq!(cpu(3, 100, &pods, &samples), Ok(proposal(3, 102, 1020)));
    // Exactly 110 % and 90 % are still inside (the bounds are inclusive).
    let (pods, samples) = fleet(1000, &[Some(1100)]);
    assert_eq!(cpu(1, 100, &pods, &samples).map(|p| p.replicas), Ok(1));
    let (pods, samples) = fleet(1000, &[Some(900), Some(900)]);
    assert_eq!(cpu(2, 100, &pods, &samples).map(|p| p.replicas), Ok(2));
    // 111 % is out: ceil(1.11 × 1) = 2; 89 % of 10 pods: ceil(8.9) = 9.
    let (pods, samples) = fleet(1000, &[Some(1110)]);
    assert_eq!(cpu(1, 100, &pods, &samples).map(|p| p.replicas), Ok(2));
    let (pods, samples) = fleet(1000, &[Some(890); 10]);
    assert_eq!(cpu(10, 100, &pods, &samples).map(|p| p.replicas), Ok(9));
}

#[test]
fn configurable_tolerances() {
    let tol = Tolerances {
        scale_down: 0.0,
        scale_up: 0.5,
    };
    let (pods, samples) = fleet(1000, &[Some(1400)]);
    let r = resource_replicas(
        1,
        100,
        "cpu",
        tol,
        &pods,
        &samples,
        &Readiness::default(),
        t(NOW),
    );
    assert_eq!(r.map(|p| p.replicas), Ok(1), "140 % is within +50 %");
    let (pods, samples) = fleet(1000, &[Some(950), Some(950)]);
    let r = resource_replicas(
        2,
        100,
        "cpu",
        tol,
        &pods,
        &samples,
        &Readiness::default(),
        t(NOW),
    );
    assert_eq!(r.map(|p| p.replicas), Ok(2), "ceil(0.95 × 2) = 2 anyway");
    let (pods, samples) = fleet(1000, &[Some(900); 20]);
    let r = resource_replicas(
        20,
        100,
        "cpu",
        tol,
        &pods,
        &samples,
        &Readiness::default(),
        t(NOW),
    );
    assert_eq!(
        r.map(|p| p.replicas),
        Ok(18),
        "90 % is outside a 0 down-tolerance"
    );
}

#[test]
fn unready_pods_count_as_zero_on_scale_up() {
    // p0 is not ready (within the initialization period): the ready pods use
    // 1200m of 2000m = 60 %, ratio 2; counting p0 as 0: 1200/3000 = 40 %,
    // ratio 1.333 → ceil(4.0) = 4.
    let (mut pods, samples) = fleet(1000, &[Some(300), Some(500), Some(700)]);
    pods[0].start_time = Some(t(NOW - 60));
    pods[0].ready = Some(ReadyCondition {
        is_false: true,
        last_transition: t(NOW - 60),
    });
    assert_eq!(cpu(3, 30, &pods, &samples), Ok(proposal(4, 60, 600)));
}

#[test]
fn unready_pods_damp_scale_up_with_uneven_requests() {
    // Ready p0 uses 260m of 100m; unready p1 requests 300m. Alone: 260 %,
    // ratio 5.2 → 6 pods. With p1 at 0: 260/400 = 65 %, ratio 1.3 → ceil(2.6) = 3.
    let mut pods = vec![pod("p0", 100), pod("p1", 300)];
    pods[1].phase = Phase::Pending;
    let samples: Samples = [("p0".to_string(), sample(260))].into();
    assert_eq!(cpu(2, 50, &pods, &samples), Ok(proposal(3, 260, 260)));
}

#[test]
fn unready_pods_that_reverse_the_direction_change_nothing() {
    // Ready p0: 40 % of a 30 % target (up); with p1, p2 at 0: 400/3000 =
    // 13 %, ratio 0.44 (down) → keep 3.
    let (mut pods, samples) = fleet(1000, &[Some(400), Some(500), Some(700)]);
    for p in &mut pods[1..] {
        p.start_time = Some(t(NOW - 60));
        p.ready = Some(ReadyCondition {
            is_false: true,
            last_transition: t(NOW - 60),
        });
    }
    assert_eq!(cpu(3, 30, &pods, &samples), Ok(proposal(3, 40, 400)));
}

#[test]
fn unready_pods_are_ignored_on_scale_down() {
    // Ready p0 at 10 %, target 50: ratio 0.2; the unready pod is left out
    // on a scale-down → ceil(0.2 × 1) = 1.
    let (mut pods, samples) = fleet(1000, &[Some(100), Some(900)]);
    pods[1].phase = Phase::Pending;
    assert_eq!(cpu(2, 50, &pods, &samples), Ok(proposal(1, 10, 100)));
}

#[test]
fn missing_pods_count_as_zero_on_scale_up() {
    // p0 at 190 % (ratio 1.9); with p1 at 0: 95 %, ratio 0.95 → the
    // direction flips → keep 2.
    let (pods, samples) = fleet(1000, &[Some(1900), None]);
    assert_eq!(cpu(2, 100, &pods, &samples), Ok(proposal(2, 190, 1900)));
    // p0 at 400 %: with p1 at 0, 200 % → ceil(2 × 2) = 4.
    let (pods, samples) = fleet(1000, &[Some(4000), None]);
    assert_eq!(cpu(2, 100, &pods, &samples), Ok(proposal(4, 400, 4000)));
}

#[test]
fn missing_pods_count_as_full_request_on_scale_down() {
    // 40 % of a 50 % target (0.8); p3 at 100 %: 2200/4000 = 55 %, 1.1 →
    // inside the tolerance → keep 4.
    let (pods, samples) = fleet(1000, &[Some(400), Some(400), Some(400), None]);
    assert_eq!(cpu(4, 50, &pods, &samples), Ok(proposal(4, 40, 400)));
    // 10 % (0.2); with p3 at 100 %: 1300/4000 = 32 %, 0.64 → ceil(2.56) = 3.
    let (pods, samples) = fleet(1000, &[Some(100), Some(100), Some(100), None]);
    assert_eq!(cpu(4, 50, &pods, &samples), Ok(proposal(3, 10, 100)));
}

#[test]
fn missing_pods_use_the_target_when_it_is_above_100_percent() {
    // 50 % of a 200 % target (0.25); p1 counts as 200 % of 1000m:
    // 2500/2000 = 125 %, 0.625 → ceil(1.25) = 2 = current.
    let (pods, samples) = fleet(1000, &[Some(500), None]);
    assert_eq!(cpu(2, 200, &pods, &samples), Ok(proposal(2, 50, 500)));
    // 3 pods, 2 missing, p0 at 10 %: (100 + 2 × 2000)/3000 = 136 % → 0.68
    // → ceil(2.04) = 3 = current.
    let (pods, samples) = fleet(1000, &[Some(100), None, None]);
    assert_eq!(cpu(3, 200, &pods, &samples).map(|p| p.replicas), Ok(3));
}

#[test]
fn new_count_must_not_reverse_the_direction() {
    // One sample of 4 pods at 30 % of 1000m (2 missing, 1 Pending and so
    // unready). Ratio 0.6 → missing at 100 %: (300 + 2000)/3000 = 76 %, 0.76
    // → ceil(0.76 × 3) = 3 < 4: a scale-down, allowed.
    let (mut pods, samples) = fleet(1000, &[Some(300), None, None, Some(0)]);
    pods[3].phase = Phase::Pending;
    assert_eq!(cpu(4, 100, &pods, &samples).map(|p| p.replicas), Ok(3));
    // Same with current 2: 3 > 2 while the ratio says down → keep 2.
    assert_eq!(cpu(2, 100, &pods, &samples).map(|p| p.replicas), Ok(2));
}

#[test]
fn failed_and_deleted_pods_are_ignored() {
    // Without p3/p4: 1500/3000 = 50 %, target 50 → keep 3. Their samples
    // (huge) must not count, and their requests are not summed.
    let (mut pods, samples) = fleet(
        1000,
        &[Some(500), Some(500), Some(500), Some(9000), Some(9000)],
    );
    pods[3].phase = Phase::Failed;
    pods[4].deleting = true;
    assert_eq!(cpu(5, 50, &pods, &samples), Ok(proposal(5, 50, 500)));
}

#[test]
fn cpu_samples_during_initialization_need_a_full_window_after_ready() {
    // Started 60 s ago, ready since 20 s; a 30 s window ending now began
    // before it was ready → unready, so the sample is ignored on scale-up.
    let (mut pods, samples) = fleet(100, &[Some(200), Some(200)]);
    pods[1].start_time = Some(t(NOW - 60));
    pods[1].ready = Some(ReadyCondition {
        is_false: false,
        last_transition: t(NOW - 20),
    });
    let g = group_pods(&pods, &samples, "cpu", &Readiness::default(), t(NOW));
    assert_eq!(g.ready, 1);
    assert_eq!(g.unready, ["p1".to_string()].into());
    // p0 alone: 200 %/50 = 4 → p1 at 0: 200/200 = 100 %, 2.0 → ceil(4) = 4.
    assert_eq!(cpu(2, 50, &pods, &samples).map(|p| p.replicas), Ok(4));
    // A sample with no window, taken after the transition, counts.
    let mut instant = samples.clone();
    if let Some(s) = instant.get_mut("p1") {
        s.window = Duration::ZERO;
    }
    let g = group_pods(&pods, &instant, "cpu", &Readiness::default(), t(NOW));
    assert_eq!(g.ready, 2);
    assert_eq!(cpu(2, 50, &pods, &instant).map(|p| p.replicas), Ok(8));
}

#[test]
fn cpu_unready_after_initialization_only_if_never_ready() {
    let samples: Samples = [("p0".to_string(), sample(100))].into();
    // Started an hour ago, went unready 10 s after starting: never ready.
    let mut p = pod("p0", 100);
    p.ready = Some(ReadyCondition {
        is_false: true,
        last_transition: t(NOW - 3590),
    });
    let g = group_pods(&[p.clone()], &samples, "cpu", &Readiness::default(), t(NOW));
    assert_eq!(g.unready.len(), 1);
    // Went unready long after starting: it was ready once, its sample counts.
    p.ready = Some(ReadyCondition {
        is_false: true,
        last_transition: t(NOW - 100),
    });
    let g = group_pods(&[p.clone()], &samples, "cpu", &Readiness::default(), t(NOW));
    assert_eq!(g.ready, 1);
    // No Ready condition or no start time: unready.
    p.ready = None;
    let g = group_pods(&[p.clone()], &samples, "cpu", &Readiness::default(), t(NOW));
    assert_eq!(g.unready.len(), 1);
}

#[test]
fn readiness_only_matters_for_cpu() {
    let (mut pods, samples) = fleet(1000, &[Some(500)]);
    pods[0].ready = None;
    let g = group_pods(&pods, &samples, "memory", &Readiness::default(), t(NOW));
    assert_eq!(g.ready, 1);
    // Pending is unready for every resource.
    pods[0].phase = Phase::Pending;
    let g = group_pods(&pods, &samples, "memory", &Readiness::default(), t(NOW));
    assert_eq!(g.unready.len(), 1);
}

#[test]
fn memory_utilization() {
    // 96Mi used of 64Mi requested per pod (milli-units) = 150 %, target 60
    // → ratio 2.5 → ceil(5) = 5.
    let mi = 1024 * 1024 * 1000;
    let (pods, samples) = fleet(64 * mi, &[Some(96 * mi), Some(96 * mi)]);
    let r = resource_replicas(
        2,
        60,
        "memory",
        Tolerances::default(),
        &pods,
        &samples,
        &Readiness::default(),
        t(NOW),
    );
    assert_eq!(r, Ok(proposal(5, 150, 96 * mi)));
}

#[test]
fn errors() {
    let (pods, _) = fleet(1000, &[Some(1)]);
    assert_eq!(
        cpu(1, 50, &pods, &Samples::new()),
        Err(CalcError::NoMetrics("cpu".into()))
    );
    assert_eq!(
        CalcError::NoMetrics("cpu".into()).to_string(),
        "unable to get metrics for resource cpu: no metrics returned from resource metrics API"
    );
    let (_, samples) = fleet(1000, &[Some(1)]);
    assert_eq!(cpu(1, 50, &[], &samples), Err(CalcError::NoPods));
    let (mut pods, samples) = fleet(1000, &[Some(1)]);
    pods[0].phase = Phase::Pending;
    assert_eq!(cpu(1, 50, &pods, &samples), Err(CalcError::NoReadyMetrics));
    let (mut pods, samples) = fleet(1000, &[Some(1), Some(1)]);
    pods[1].request = Err("missing request for cpu in container app of Pod p1".into());
    assert_eq!(
        cpu(2, 50, &pods, &samples).map_err(|e| e.to_string()),
        Err("missing request for cpu in container app of Pod p1".into())
    );
    // Zero requests in total cannot give a utilization.
    let (pods, samples) = fleet(0, &[Some(1)]);
    assert_eq!(cpu(1, 50, &pods, &samples), Err(CalcError::NoMatchingPods));
}

// ---- replica calculation: AverageValue ----

fn value(
    current: i32,
    target: i64,
    pods: &[PodInfo],
    samples: &Samples,
) -> Result<ValueProposal, CalcError> {
    raw_resource_replicas(
        current,
        target,
        "cpu",
        Tolerances::default(),
        pods,
        samples,
        &Readiness::default(),
        t(NOW),
    )
}

#[test]
fn average_value() {
    // Average 200m against 100m: ratio 2 → 6.
    let (pods, samples) = fleet(1000, &[Some(100), Some(200), Some(300)]);
    assert_eq!(
        value(3, 100, &pods, &samples),
        Ok(ValueProposal {
            replicas: 6,
            average: 200
        })
    );
    // Requests do not matter (none needed).
    let (mut pods, samples) = fleet(1000, &[Some(105)]);
    pods[0].request = Err("none".into());
    assert_eq!(value(1, 100, &pods, &samples).map(|p| p.replicas), Ok(1));
    // Scale-down with a missing pod counted at the target: 20m of 100m
    // (0.2); with p1 at 100m: average 60m → 0.6 → ceil(1.2) = 2 = current.
    let (pods, samples) = fleet(1000, &[Some(20), None]);
    assert_eq!(value(2, 100, &pods, &samples).map(|p| p.replicas), Ok(2));
    // Three pods, one missing: (20 + 20 + 100)/3 = 46m → ceil(1.38) = 2.
    let (pods, samples) = fleet(1000, &[Some(20), Some(20), None]);
    assert_eq!(value(3, 100, &pods, &samples).map(|p| p.replicas), Ok(2));
}

// ---- combining metrics ----

fn prop(replicas: i32, name: &str) -> MetricOutcome {
    MetricOutcome::Proposal {
        replicas,
        name: name.into(),
    }
}

fn bad(reason: &str) -> MetricOutcome {
    MetricOutcome::Invalid {
        reason: reason.into(),
        message: format!("{reason} message"),
        error: format!("{reason} error"),
    }
}

#[test]
fn largest_proposal_wins() {
    assert_eq!(
        combine_metrics(&[prop(3, "cpu"), prop(7, "memory"), prop(5, "x")], 4),
        Combined::Replicas {
            replicas: 7,
            metric: "memory".into(),
            error: None
        }
    );
}

#[test]
fn invalid_metrics() {
    // All invalid: the first one's condition.
    assert_eq!(
        combine_metrics(
            &[bad("FailedGetPodsMetric"), bad("FailedGetResourceMetric")],
            4
        ),
        Combined::Failed {
            reason: "FailedGetPodsMetric".into(),
            message: "FailedGetPodsMetric message".into(),
            error:
                "invalid metrics (2 invalid out of 2), first error is: FailedGetPodsMetric error"
                    .into(),
        }
    );
    // Some invalid, the rest would scale down: nothing is done.
    assert!(matches!(
        combine_metrics(&[bad("A"), prop(2, "cpu")], 4),
        Combined::Failed { .. }
    ));
    // Some invalid, the rest scale up (or hold): go ahead, but report.
    assert_eq!(
        combine_metrics(&[bad("A"), prop(6, "cpu")], 4),
        Combined::Replicas {
            replicas: 6,
            metric: "cpu".into(),
            error: Some("invalid metrics (1 invalid out of 2), first error is: A error".into())
        }
    );
}

#[test]
fn prechecks() {
    assert_eq!(precheck(0, 1, 5), Precheck::Disabled);
    assert_eq!(precheck(0, 0, 5), Precheck::Evaluate);
    assert_eq!(
        precheck(7, 1, 5),
        Precheck::Clamp {
            desired: 5,
            reason: "Current number of replicas above Spec.MaxReplicas"
        }
    );
    assert_eq!(
        precheck(1, 2, 5),
        Precheck::Clamp {
            desired: 2,
            reason: "Current number of replicas below Spec.MinReplicas"
        }
    );
    assert_eq!(precheck(3, 1, 5), Precheck::Evaluate);
    assert_eq!(
        rescale_reason(1, 4, "cpu resource utilization (percentage of request)"),
        "cpu resource utilization (percentage of request) above target"
    );
    assert_eq!(rescale_reason(4, 1, "cpu"), "All metrics below target");
}

// ---- normalization without behavior ----

const WINDOW: Duration = DOWNSCALE_STABILIZATION_WINDOW;

#[test]
fn legacy_scale_up_limit_and_max() {
    let mut h = History::default();
    // 1 → 10: at most max(2 × 1, 4) = 4.
    let n = normalize(&mut h, 1, 10, 1, 10, WINDOW, t(NOW));
    assert_eq!(n.desired, 4);
    assert_eq!(n.able_to_scale.reason, "ReadyForNewScale");
    assert!(n.scaling_limited.status);
    assert_eq!(n.scaling_limited.reason, "ScaleUpLimit");
    // 4 → 16: max(8, 4) = 8.
    let n = normalize(&mut h, 4, 16, 1, 10, WINDOW, t(NOW + 15));
    assert_eq!((n.desired, n.scaling_limited.reason), (8, "ScaleUpLimit"));
    // 8 → 32: the limit (16) is above max (10): TooManyReplicas.
    let n = normalize(&mut h, 8, 32, 1, 10, WINDOW, t(NOW + 30));
    assert_eq!(
        (n.desired, n.scaling_limited.reason),
        (10, "TooManyReplicas")
    );
    assert_eq!(
        n.scaling_limited.message,
        "the desired replica count is more than the maximum replica count"
    );
    // 10 → 10: the window still holds 32, so upstream reports it as
    // stabilized and limited by max.
    let n = normalize(&mut h, 10, 10, 1, 10, WINDOW, t(NOW + 45));
    assert_eq!(n.desired, 10);
    assert_eq!(n.able_to_scale.reason, "ScaleDownStabilized");
    assert_eq!(
        (n.scaling_limited.status, n.scaling_limited.reason),
        (true, "TooManyReplicas")
    );
    // Once the window has passed: within range, not limited.
    let n = normalize(&mut h, 10, 10, 1, 10, WINDOW, t(NOW + 400));
    assert_eq!(n.able_to_scale.reason, "ReadyForNewScale");
    assert!(!n.scaling_limited.status);
    assert_eq!(n.scaling_limited.reason, "DesiredWithinRange");
}

#[test]
fn legacy_scale_down_is_stabilized_for_five_minutes() {
    let mut h = History::default();
    h.record_initial(10, t(NOW));
    // A minute later the metrics say 2: the highest of the window (10) wins.
    let n = normalize(&mut h, 10, 2, 1, 10, WINDOW, t(NOW + 60));
    assert_eq!(n.desired, 10);
    assert_eq!(n.able_to_scale.reason, "ScaleDownStabilized");
    assert!(!n.scaling_limited.status);
    // Exactly 300 s after the first recommendation it still counts.
    let n = normalize(&mut h, 10, 2, 1, 10, WINDOW, t(NOW + 300));
    assert_eq!(n.desired, 10);
    // A second later it is outside; the 2s recorded since are below 3.
    let n = normalize(&mut h, 10, 3, 1, 10, WINDOW, t(NOW + 301));
    assert_eq!(n.desired, 3);
    assert_eq!(n.able_to_scale.reason, "ReadyForNewScale");
    // The old slot was reused: still three entries.
    assert_eq!(h.recommendations.len(), 3);
}

#[test]
fn legacy_min_clamp() {
    let mut h = History::default();
    let n = normalize(&mut h, 2, 0, 1, 10, Duration::ZERO, t(NOW));
    assert_eq!(n.desired, 1);
    assert!(n.scaling_limited.status);
    assert_eq!(n.scaling_limited.reason, "TooFewReplicas");
    // minReplicas 0 lets the count reach zero.
    let mut h = History::default();
    let n = normalize(&mut h, 2, 0, 0, 10, Duration::ZERO, t(NOW));
    assert_eq!(n.desired, 0);
}

// ---- normalization with behavior ----

fn rules(
    window: Option<i32>,
    select: Option<&str>,
    policies: &[(&str, i32, i32)],
) -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: window,
        select_policy: select.map(String::from),
        policies: (!policies.is_empty()).then(|| {
            policies
                .iter()
                .map(|(k, v, p)| HPAScalingPolicy {
                    type_: (*k).into(),
                    value: *v,
                    period_seconds: *p,
                })
                .collect()
        }),
        tolerance: None,
    }
}

fn behavior(up: Option<HPAScalingRules>, down: Option<HPAScalingRules>) -> Behavior {
    Behavior::from_spec(
        &HorizontalPodAutoscalerBehavior {
            scale_up: up,
            scale_down: down,
        },
        WINDOW,
    )
}

#[test]
fn behavior_defaults() {
    let b = behavior(None, None);
    assert_eq!(b.scale_up.stabilization_window_seconds, 0);
    assert_eq!(b.scale_up.select_policy, SelectPolicy::Max);
    assert_eq!(b.scale_up.policies.len(), 2);
    assert_eq!(b.scale_down.stabilization_window_seconds, 300);
    assert_eq!(
        b.scale_down.policies,
        vec![Policy {
            kind: PolicyKind::Percent,
            value: 100,
            period_seconds: 15
        }]
    );
    // Partial rules keep the other defaults.
    let b = behavior(None, Some(rules(Some(0), None, &[])));
    assert_eq!(b.scale_down.stabilization_window_seconds, 0);
    assert_eq!(b.scale_down.policies.len(), 1);
    let b = behavior(Some(rules(None, Some("Min"), &[("Pods", 1, 60)])), None);
    assert_eq!(b.scale_up.select_policy, SelectPolicy::Min);
    assert_eq!(b.scale_up.stabilization_window_seconds, 0);
    assert_eq!(b.scale_up.policies.len(), 1);
}

#[test]
fn default_scale_up_rate() {
    let b = behavior(None, None);
    let mut h = History::default();
    // 1 → 10: max(1 + 4, 1 × 2) = 5.
    let n = normalize_with_behavior(&mut h, &b, 1, 10, 1, 100, t(NOW));
    assert_eq!((n.desired, n.scaling_limited.reason), (5, "ScaleUpLimit"));
    assert!(n.scaling_limited.status);
    h.store_scale_event(Some(&b), 1, 5, t(NOW));
    // 5 s later: the period started at 1 replica → still 5 at most.
    let n = normalize_with_behavior(&mut h, &b, 5, 20, 1, 100, t(NOW + 5));
    assert_eq!(n.desired, 5);
    assert_eq!(n.scaling_limited.reason, "ScaleUpLimit");
    // 15 s later the event is outside the period: max(5 + 4, 10) = 10.
    let n = normalize_with_behavior(&mut h, &b, 5, 20, 1, 100, t(NOW + 15));
    assert_eq!(n.desired, 10);
    // 10 → 100: max(14, 20) = 20.
    let mut h = History::default();
    let n = normalize_with_behavior(&mut h, &b, 10, 100, 1, 100, t(NOW));
    assert_eq!(n.desired, 20);
    // Capped by max instead.
    let mut h = History::default();
    let n = normalize_with_behavior(&mut h, &b, 10, 100, 1, 15, t(NOW));
    assert_eq!(
        (n.desired, n.scaling_limited.reason),
        (15, "TooManyReplicas")
    );
}

#[test]
fn select_policy_min_and_disabled_for_scale_up() {
    let up = rules(None, Some("Min"), &[("Pods", 4, 60), ("Percent", 100, 60)]);
    let b = behavior(Some(up), None);
    let mut h = History::default();
    // min(10 + 4, 20) = 14.
    let n = normalize_with_behavior(&mut h, &b, 10, 50, 1, 100, t(NOW));
    assert_eq!(n.desired, 14);
    let b = behavior(Some(rules(None, Some("Disabled"), &[])), None);
    let mut h = History::default();
    let n = normalize_with_behavior(&mut h, &b, 10, 50, 1, 100, t(NOW));
    assert_eq!((n.desired, n.scaling_limited.reason), (10, "ScaleUpLimit"));
}

#[test]
fn percent_scale_up_rounds_up() {
    // 10 % of 3 = 0.3 → ceil(3.3) = 4.
    let b = behavior(Some(rules(None, None, &[("Percent", 10, 60)])), None);
    let mut h = History::default();
    let n = normalize_with_behavior(&mut h, &b, 3, 10, 1, 100, t(NOW));
    assert_eq!(n.desired, 4);
}

#[test]
fn scale_up_stabilization_window() {
    let b = behavior(Some(rules(Some(60), None, &[])), None);
    let mut h = History::default();
    h.record_initial(3, t(NOW - 30));
    // The lowest recommendation of the last minute is 3: hold at 3.
    let n = normalize_with_behavior(&mut h, &b, 3, 8, 1, 100, t(NOW));
    assert_eq!(n.desired, 3);
    assert_eq!(n.able_to_scale.reason, "ScaleUpStabilized");
    // 61 s after the 3 only the 8 remains: scale, at most max(3 + 4, 6) = 7.
    let n = normalize_with_behavior(&mut h, &b, 3, 8, 1, 100, t(NOW + 31));
    assert_eq!(n.able_to_scale.reason, "ReadyForNewScale");
    assert_eq!(n.desired, 7);
}

#[test]
fn default_scale_down_window_holds_then_releases() {
    let b = behavior(None, None);
    let mut h = History::default();
    h.record_initial(10, t(NOW));
    let n = normalize_with_behavior(&mut h, &b, 10, 2, 1, 10, t(NOW + 60));
    assert_eq!(n.desired, 10);
    assert_eq!(n.able_to_scale.reason, "ScaleDownStabilized");
    assert_eq!(
        n.able_to_scale.message,
        "recent recommendations were higher than current one, applying the highest recent recommendation"
    );
    // Strictly after the cutoff counts: at +300 the first 10 is out.
    let n = normalize_with_behavior(&mut h, &b, 10, 2, 1, 10, t(NOW + 300));
    assert_eq!(n.desired, 2);
    assert_eq!(n.able_to_scale.reason, "ReadyForNewScale");
    assert!(!n.scaling_limited.status);
}

#[test]
fn zero_scale_down_window_scales_at_once() {
    let b = behavior(None, Some(rules(Some(0), None, &[])));
    let mut h = History::default();
    h.record_initial(10, t(NOW));
    // 100 % per 15 s: anything down to min.
    let n = normalize_with_behavior(&mut h, &b, 10, 2, 1, 10, t(NOW + 1));
    assert_eq!(n.desired, 2);
    // Below min: TooFewReplicas.
    let n = normalize_with_behavior(&mut h, &b, 2, 0, 1, 10, t(NOW + 2));
    assert_eq!((n.desired, n.scaling_limited.reason), (1, "TooFewReplicas"));
    assert!(n.scaling_limited.status);
}

#[test]
fn scale_down_pods_policy_uses_events_of_its_period() {
    let b = behavior(None, Some(rules(Some(0), None, &[("Pods", 1, 60)])));
    let mut h = History::default();
    let n = normalize_with_behavior(&mut h, &b, 10, 2, 1, 10, t(NOW));
    assert_eq!((n.desired, n.scaling_limited.reason), (9, "ScaleDownLimit"));
    h.store_scale_event(Some(&b), 10, 9, t(NOW));
    // 30 s later the period began at 10: the limit (9) is the current count.
    let n = normalize_with_behavior(&mut h, &b, 9, 2, 1, 10, t(NOW + 30));
    assert_eq!(n.desired, 9);
    assert!(n.scaling_limited.status);
    // 60 s later (not after the cutoff any more): one more.
    let n = normalize_with_behavior(&mut h, &b, 9, 2, 1, 10, t(NOW + 60));
    assert_eq!(n.desired, 8);
}

#[test]
fn scale_down_select_policy_and_percent_truncation() {
    // 50 % of 5 = 2.5 → int(2.5) = 2.
    let b = behavior(None, Some(rules(Some(0), None, &[("Percent", 50, 60)])));
    let mut h = History::default();
    let n = normalize_with_behavior(&mut h, &b, 5, 1, 1, 10, t(NOW));
    assert_eq!(n.desired, 2);
    // Min change of (Pods 1, Percent 50) from 10: max(9, 5) = 9; Max: 5.
    let policies = [("Pods", 1, 60), ("Percent", 50, 60)];
    let b = behavior(None, Some(rules(Some(0), Some("Min"), &policies)));
    let mut h = History::default();
    assert_eq!(
        normalize_with_behavior(&mut h, &b, 10, 1, 1, 10, t(NOW)).desired,
        9
    );
    let b = behavior(None, Some(rules(Some(0), Some("Max"), &policies)));
    let mut h = History::default();
    assert_eq!(
        normalize_with_behavior(&mut h, &b, 10, 1, 1, 10, t(NOW)).desired,
        5
    );
    let b = behavior(None, Some(rules(Some(0), Some("Disabled"), &policies)));
    let mut h = History::default();
    let n = normalize_with_behavior(&mut h, &b, 10, 1, 1, 10, t(NOW));
    assert_eq!(
        (n.desired, n.scaling_limited.reason),
        (10, "ScaleDownLimit")
    );
}

#[test]
fn scale_up_after_a_scale_down_counts_the_removed_pods() {
    // Down 10 → 6 at t, then up at t + 5 with Pods 2 per 60 s: the period
    // began at 6 − 0 (added) + 4 (removed) = 10 replicas → at most 12.
    let b = behavior(Some(rules(None, None, &[("Pods", 2, 60)])), None);
    let mut h = History::default();
    h.store_scale_event(Some(&b), 10, 6, t(NOW));
    let n = normalize_with_behavior(&mut h, &b, 6, 20, 1, 100, t(NOW + 5));
    assert_eq!(n.desired, 12);
}

#[test]
fn scale_events_reuse_outdated_slots() {
    let b = behavior(None, None);
    let mut h = History::default();
    h.store_scale_event(Some(&b), 1, 5, t(NOW));
    h.store_scale_event(Some(&b), 5, 9, t(NOW + 5));
    assert_eq!(h.scale_up_events.len(), 2);
    // 20 s on, both are older than the longest period (15 s): one is reused.
    h.store_scale_event(Some(&b), 9, 13, t(NOW + 25));
    assert_eq!(h.scale_up_events.len(), 2);
    assert!(h
        .scale_up_events
        .iter()
        .any(|e| e.at == t(NOW + 25) && !e.outdated));
    // Without behavior nothing is stored.
    let mut h = History::default();
    h.store_scale_event(None, 1, 5, t(NOW));
    assert!(h.scale_up_events.is_empty());
}

#[test]
fn tolerances_from_behavior() {
    let mut up = rules(None, None, &[]);
    up.tolerance = Some(Quantity("0.05".into()));
    let mut down = rules(None, None, &[]);
    down.tolerance = Some(Quantity("200m".into()));
    let b = HorizontalPodAutoscalerBehavior {
        scale_up: Some(up),
        scale_down: Some(down),
    };
    let tol = Tolerances::of(Some(&b));
    assert!((tol.scale_up - 0.05).abs() < 1e-9);
    assert!((tol.scale_down - 0.2).abs() < 1e-9);
    assert_eq!(Tolerances::of(None), Tolerances::default());
    assert!(tol.is_within(0.81) && tol.is_within(1.04));
    assert!(!tol.is_within(0.79) && !tol.is_within(1.06));
}
