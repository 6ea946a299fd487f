//! The Job controller's pure parts: completion-index intervals, pod
//! classification, the pod-failure backoff record, removal order, conditions.
//! Nothing here talks to the API or reads the clock.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::JobCondition;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use skiff_client::objects;

/// The finalizer that keeps a finished pod around until the Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Annotation and label carrying an Indexed Job pod's index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The environment variable an Indexed Job's containers read their index from.
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// First delay before re-creating a pod after a failure (upstream's
/// DefaultJobPodFailureBackOff); doubles per consecutive failure.
pub const POD_FAILURE_BACKOFF: Duration = Duration::from_secs(10);
/// Cap on that delay (six minutes, as the Job documentation states).
pub const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(360);
/// Generated names are at most this long before the 5-character suffix.
const MAX_GENERATED_NAME: usize = 58;

/// Sorted, disjoint, inclusive ranges of completion indexes (the
/// `completedIndexes` format: `1,3-5,7`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intervals(Vec<(i32, i32)>);

impl Intervals {
    /// Parse `s`, ignoring malformed parts and indexes `>= completions`.
    pub fn parse(s: &str, completions: i32) -> Intervals {
        let mut set = BTreeSet::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
                None => (part.parse::<i32>(), part.parse::<i32>()),
            };
            let (Ok(a), Ok(b)) = (a, b) else { continue };
            if a < 0 || b < a {
                continue;
            }
            for i in a..=b.min(completions.saturating_sub(1)) {
                set.insert(i);
            }
        }
        Intervals::from_set(&set)
    }

    fn from_set(set: &BTreeSet<i32>) -> Intervals {
        let mut out: Vec<(i32, i32)> = Vec::new();
        for &i in set {
            match out.last_mut() {
                Some((_, last)) if *last + 1 == i => *last = i,
                _ => out.push((i, i)),
            }
        }
        Intervals(out)
    }

    fn to_set(&self) -> BTreeSet<i32> {
        self.0.iter().flat_map(|&(a, b)| a..=b).collect()
    }

    /// These intervals plus `more`.
    pub fn with(&self, more: impl IntoIterator<Item = i32>) -> Intervals {
        let mut set = self.to_set();
        set.extend(more);
        Intervals::from_set(&set)
    }

    pub fn has(&self, i: i32) -> bool {
        self.0.iter().any(|&(a, b)| a <= i && i <= b)
    }

    pub fn total(&self) -> i32 {
        self.0.iter().map(|&(a, b)| b - a + 1).sum()
    }
}

impl std::fmt::Display for Intervals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, &(a, b)) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}-{b}")?;
            }
        }
        Ok(())
    }
}

/// The pod's completion index (annotation, else label), if it is a valid one.
pub fn completion_index(pod: &Pod) -> Option<i32> {
    let meta = &pod.metadata;
    let raw = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(COMPLETION_INDEX))
        .or_else(|| meta.labels.as_ref().and_then(|l| l.get(COMPLETION_INDEX)))?;
    raw.parse::<i32>().ok().filter(|i| *i >= 0)
}

/// The index if it is valid for a Job with `completions`.
pub fn valid_index(pod: &Pod, completions: i32) -> Option<i32> {
    completion_index(pod).filter(|i| *i < completions)
}

pub fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == TRACKING_FINALIZER))
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn succeeded(pod: &Pod) -> bool {
    phase(pod) == "Succeeded"
}

/// Upstream's isPodFailed: phase Failed, or (unless only failed pods are
/// replaced) deleted before it succeeded.
pub fn pod_failed(pod: &Pod, only_replace_failed: bool) -> bool {
    if phase(pod) == "Failed" {
        return true;
    }
    if only_replace_failed {
        return false;
    }
    pod.metadata.deletion_timestamp.is_some() && !succeeded(pod)
}

/// Being deleted but not finished.
pub fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !objects::pod_terminal(pod)
}

/// When the pod finished: the latest container finish time if every
/// container has terminated, else the time Ready went False, else its
/// deletion time less the grace period, else its creation time.
pub fn finished_time(pod: &Pod) -> Timestamp {
    let status = pod.status.as_ref();
    if let Some(cs) = status.and_then(|s| s.container_statuses.as_ref()) {
        let mut latest: Option<Timestamp> = None;
        let mut all = !cs.is_empty();
        for c in cs {
            match c
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .and_then(|t| t.finished_at.as_ref())
            {
                Some(t) => latest = Some(latest.map_or(t.0, |l| l.max(t.0))),
                None => all = false,
            }
        }
        if let (true, Some(t)) = (all, latest) {
            return t;
        }
    }
    if let Some(c) = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
    {
        if c.status == "False" {
            if let Some(t) = &c.last_transition_time {
                return t.0;
            }
        }
    }
    if let Some(d) = &pod.metadata.deletion_timestamp {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        return d
            .0
            .checked_sub(SignedDuration::from_secs(grace))
            .unwrap_or(d.0);
    }
    pod.metadata
        .creation_timestamp
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
}

/// Consecutive pod failures since the last success, for the re-creation delay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackoffRecord {
    pub failures: i32,
    pub last_failure: Option<Timestamp>,
}

impl BackoffRecord {
    /// The record after the newly finished pods (upstream's newBackoffRecord):
    /// failures after the latest success count, a success resets.
    pub fn after(self, new_succeeded: &[Timestamp], new_failed: &[Timestamp]) -> BackoffRecord {
        let mut failed: Vec<Timestamp> = new_failed.to_vec();
        failed.sort();
        let last_success = new_succeeded.iter().max().copied();
        match last_success {
            None => match failed.last() {
                None => self,
                Some(&last) => BackoffRecord {
                    failures: self
                        .failures
                        .saturating_add(i32::try_from(failed.len()).unwrap_or(i32::MAX)),
                    last_failure: Some(last),
                },
            },
            Some(success) => {
                let after: Vec<&Timestamp> = failed.iter().filter(|t| **t > success).collect();
                BackoffRecord {
                    failures: i32::try_from(after.len()).unwrap_or(i32::MAX),
                    last_failure: after.last().map(|t| **t),
                }
            }
        }
    }

    /// How long to wait before creating pods at `now`.
    pub fn remaining(&self, now: Timestamp) -> Duration {
        let Some(last) = self.last_failure else {
            return Duration::ZERO;
        };
        if self.failures <= 0 {
            return Duration::ZERO;
        }
        let mut delay = POD_FAILURE_BACKOFF;
        for _ in 1..self.failures {
            delay = delay.saturating_mul(2);
            if delay >= MAX_POD_FAILURE_BACKOFF {
                delay = MAX_POD_FAILURE_BACKOFF;
                break;
            }
        }
        let elapsed = Duration::try_from(now.duration_since(last)).unwrap_or(Duration::ZERO);
        delay.saturating_sub(elapsed)
    }
}

/// For `restartPolicy: OnFailure`: whether the container restarts of the
/// running and pending pods reach the backoff limit.
pub fn past_backoff_limit_on_failure<'a>(
    backoff_limit: i32,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> bool {
    let mut restarts: i64 = 0;
    for p in pods {
        if !matches!(phase(p), "Running" | "Pending") {
            continue;
        }
        if let Some(s) = &p.status {
            for c in s
                .init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
            {
                restarts += i64::from(c.restart_count);
            }
        }
    }
    if backoff_limit == 0 {
        restarts > 0
    } else {
        restarts >= i64::from(backoff_limit)
    }
}

/// Order active pods so that the cheapest to lose come first: unscheduled
/// before scheduled, pending before running, not ready before ready, more
/// restarts first, newer first.
pub fn removal_order(a: &Pod, b: &Pod) -> Ordering {
    let scheduled = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
    let phase_rank = |p: &Pod| match phase(p) {
        "Pending" | "" => 0,
        "Unknown" => 1,
        _ => 2,
    };
    let restarts = |p: &Pod| -> i64 {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map_or(0, |cs| cs.iter().map(|c| i64::from(c.restart_count)).sum())
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    scheduled(a)
        .cmp(&scheduled(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(objects::pod_ready(a).cmp(&objects::pod_ready(b)))
        .then(restarts(b).cmp(&restarts(a)))
        .then(created(b).cmp(&created(a)))
}

/// The active pods to delete: for Indexed Jobs first those without a valid
/// index or repeating another pod's index, then the cheapest, until at least
/// `at_least` are chosen.
pub fn pods_for_removal<'a>(
    active: &[&'a Pod],
    indexed_completions: Option<i32>,
    at_least: usize,
) -> Vec<&'a Pod> {
    let mut remove: Vec<&Pod> = Vec::new();
    let mut left: Vec<&Pod> = Vec::new();
    if let Some(completions) = indexed_completions {
        let mut by_index: Vec<&Pod> = active.to_vec();
        // Among duplicates keep the best one (it sorts last).
        by_index.sort_by(|a, b| {
            valid_index(a, completions)
                .cmp(&valid_index(b, completions))
                .then(removal_order(a, b))
        });
        for (n, p) in by_index.iter().enumerate() {
            let ix = valid_index(p, completions);
            let dup = ix.is_some()
                && by_index
                    .get(n + 1)
                    .is_some_and(|q| valid_index(q, completions) == ix);
            if ix.is_none() || dup {
                remove.push(p);
            } else {
                left.push(p);
            }
        }
    } else {
        left = active.to_vec();
    }
    if remove.len() < at_least {
        left.sort_by(|a, b| removal_order(a, b));
        let more = at_least - remove.len();
        remove.extend(left.into_iter().take(more));
    }
    remove
}

/// The lowest `count` indexes below `completions` that have neither
/// succeeded nor an active pod.
pub fn first_pending_indexes(
    succeeded: &Intervals,
    active: &BTreeSet<i32>,
    count: usize,
    completions: i32,
) -> Vec<i32> {
    (0..completions)
        .filter(|i| !succeeded.has(*i) && !active.contains(i))
        .take(count)
        .collect()
}

/// `generateName` for an Indexed Job's pod: `<job>-<index>-`, the job name
/// shortened so the whole stays within the generated-name limit.
pub fn generate_name_with_index(job: &str, index: i32) -> String {
    let suffix = format!("-{index}-");
    let mut prefix = job.to_string();
    let max = MAX_GENERATED_NAME.saturating_sub(suffix.len());
    if prefix.len() > max {
        let mut cut = max;
        while !prefix.is_char_boundary(cut) {
            cut -= 1;
        }
        prefix.truncate(cut);
    }
    format!("{prefix}{suffix}")
}

/// Give every container (and init container) `JOB_COMPLETION_INDEX` from
/// the pod's completion-index annotation, unless it sets the variable itself.
pub fn add_index_env(template: &mut PodTemplateSpec) {
    let Some(spec) = template.spec.as_mut() else {
        return;
    };
    let var = EnvVar {
        name: INDEX_ENV.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".into()),
                field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
            }),
            ..Default::default()
        }),
    };
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        let env = c.env.get_or_insert_with(Vec::new);
        if !env.iter().any(|e| e.name == INDEX_ENV) {
            env.push(var.clone());
        }
    }
}

pub fn condition(type_: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: (!reason.is_empty()).then(|| reason.to_string()),
        message: (!message.is_empty()).then(|| message.to_string()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

pub fn find_condition<'a>(list: &'a [JobCondition], type_: &str) -> Option<&'a JobCondition> {
    list.iter().find(|c| c.type_ == type_)
}

pub fn condition_true(list: &[JobCondition], type_: &str) -> bool {
    find_condition(list, type_).is_some_and(|c| c.status == "True")
}

/// Upstream's ensureJobConditionStatus: set the condition of `type_` to
/// `status` (a new False condition is not added). Returns whether it changed.
pub fn ensure_condition(
    list: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let mut new = condition(type_, reason, message, now);
    new.status = status.into();
    if let Some(c) = list.iter_mut().find(|c| c.type_ == type_) {
        let same = c.status == status
            && c.reason.as_deref().unwrap_or("") == reason
            && c.message.as_deref().unwrap_or("") == message;
        if same {
            return false;
        }
        *c = new;
        return true;
    }
    if status == "False" {
        return false;
    }
    list.push(new);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodSpec, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn pod(name: &str, phase: &str, index: Option<i32>) -> Pod {
        let mut meta = ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        };
        if let Some(i) = index {
            meta.annotations = Some([(COMPLETION_INDEX.to_string(), i.to_string())].into());
        }
        Pod {
            metadata: meta,
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn intervals_parse_merge_and_print() {
        let i = Intervals::parse("0,2-3,5,x,9-7", 5);
        assert_eq!(i.to_string(), "0,2-3");
        assert_eq!(i.total(), 3);
        let j = i.with([1, 4]);
        assert_eq!(j.to_string(), "0-4");
        assert!(j.has(4) && !j.has(5));
        assert_eq!(Intervals::default().to_string(), "");
        assert_eq!(Intervals::parse("", 3).with([2, 0]).to_string(), "0,2");
    }

    #[test]
    fn failed_pods_include_deleted_unless_only_failed_are_replaced() {
        let mut p = pod("a", "Running", None);
        assert!(!pod_failed(&p, false));
        p.metadata.deletion_timestamp = Some(Time(ts("2024-01-01T00:00:00Z")));
        assert!(pod_failed(&p, false));
        assert!(!pod_failed(&p, true));
        assert!(terminating(&p));
        let f = pod("b", "Failed", None);
        assert!(pod_failed(&f, true));
    }

    #[test]
    fn finished_time_prefers_container_finish() {
        let mut p = pod("a", "Failed", None);
        p.metadata.creation_timestamp = Some(Time(ts("2024-01-01T00:00:00Z")));
        assert_eq!(finished_time(&p), ts("2024-01-01T00:00:00Z"));
        p.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            name: "c".into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    finished_at: Some(Time(ts("2024-01-01T00:00:07Z"))),
                    exit_code: 1,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        assert_eq!(finished_time(&p), ts("2024-01-01T00:00:07Z"));
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let t0 = ts("2024-01-01T00:00:00Z");
        let r = BackoffRecord::default().after(&[], &[t0]);
        assert_eq!(r.failures, 1);
        assert_eq!(r.remaining(t0), Duration::from_secs(10));
        assert_eq!(
            r.remaining(ts("2024-01-01T00:00:04Z")),
            Duration::from_secs(6)
        );
        assert_eq!(r.remaining(ts("2024-01-01T00:00:30Z")), Duration::ZERO);
        let r2 = r.after(&[], &[t0]);
        assert_eq!(r2.remaining(t0), Duration::from_secs(20));
        let many = BackoffRecord {
            failures: 12,
            last_failure: Some(t0),
        };
        assert_eq!(many.remaining(t0), MAX_POD_FAILURE_BACKOFF);
        // A success after the failures resets; failures after it count.
        let t1 = ts("2024-01-01T00:01:00Z");
        let t2 = ts("2024-01-01T00:02:00Z");
        let reset = many.after(&[t1], &[t0]);
        assert_eq!(reset, BackoffRecord::default());
        let again = many.after(&[t1], &[t0, t2]);
        assert_eq!(again.failures, 1);
        assert_eq!(again.last_failure, Some(t2));
        assert_eq!(many.after(&[], &[]), many);
    }

    #[test]
    fn on_failure_restarts_count_against_the_limit() {
        let mut p = pod("a", "Running", None);
        p.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            name: "c".into(),
            restart_count: 2,
            ..Default::default()
        }]);
        assert!(past_backoff_limit_on_failure(2, [&p]));
        assert!(!past_backoff_limit_on_failure(3, [&p]));
        let fresh = pod("b", "Running", None);
        assert!(!past_backoff_limit_on_failure(0, [&fresh]));
        assert!(past_backoff_limit_on_failure(0, [&p]));
    }

    #[test]
    fn removal_prefers_duplicates_and_invalid_indexes() {
        let a = pod("a", "Running", Some(0));
        let b = pod("b", "Pending", Some(0));
        let c = pod("c", "Running", Some(1));
        let d = pod("d", "Running", Some(7));
        let e = pod("e", "Running", None);
        let active = [&a, &b, &c, &d, &e];
        let rm = pods_for_removal(&active, Some(3), 0);
        let mut names: Vec<&str> = rm
            .iter()
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect();
        names.sort();
        // The pending duplicate of index 0 goes, the running one stays.
        assert_eq!(names, ["b", "d", "e"]);
        // Non-indexed: pending before running.
        let rm = pods_for_removal(&[&a, &b], None, 1);
        assert_eq!(rm[0].metadata.name.as_deref(), Some("b"));
    }

    #[test]
    fn pending_indexes_skip_done_and_running() {
        let done = Intervals::parse("0,2", 6);
        let active: BTreeSet<i32> = [1].into();
        assert_eq!(first_pending_indexes(&done, &active, 2, 6), [3, 4]);
        assert_eq!(first_pending_indexes(&done, &active, 9, 6), [3, 4, 5]);
    }

    #[test]
    fn index_names_and_env() {
        assert_eq!(generate_name_with_index("pi", 3), "pi-3-");
        let long = "x".repeat(70);
        let n = generate_name_with_index(&long, 12);
        assert_eq!(n.len(), MAX_GENERATED_NAME);
        assert!(n.ends_with("-12-"));
        let mut t = PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![Default::default(), Default::default()],
                ..Default::default()
            }),
        };
        add_index_env(&mut t);
        add_index_env(&mut t);
        for c in &t.spec.as_ref().unwrap().containers {
            let env = c.env.as_ref().unwrap();
            assert_eq!(env.len(), 1);
            assert_eq!(env[0].name, INDEX_ENV);
        }
    }

    #[test]
    fn conditions_are_set_once() {
        let now = ts("2024-01-01T00:00:00Z");
        let mut list = Vec::new();
        assert!(!ensure_condition(
            &mut list,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            now
        ));
        assert!(ensure_condition(
            &mut list,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            now
        ));
        assert!(!ensure_condition(
            &mut list,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            now
        ));
        assert!(ensure_condition(
            &mut list,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            now
        ));
        assert_eq!(list.len(), 1);
        assert!(!condition_true(&list, "Suspended"));
    }
}
