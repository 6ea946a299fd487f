//! The Job controller (upstream pkg/controller/job) and the Job part of the
//! TTL-after-finished controller.
//!
//! Pods are made from the template with a controller reference and the
//! tracking finalizer `batch.kubernetes.io/job-tracking`, `<job>-` as
//! generateName (`<job>-<index>-` for Indexed Jobs, which also get the
//! completion-index annotation and label, hostname `<job>-<index>` and
//! `JOB_COMPLETION_INDEX`). Counting follows upstream's protocol, so a pod is
//! counted exactly once even across controller restarts:
//!
//! 1. a finished pod that still carries the finalizer has its uid written to
//!    `status.uncountedTerminatedPods` (Indexed successes go straight into
//!    `completedIndexes`) before anything else happens to it;
//! 2. then the finalizer is removed;
//! 3. uids in the uncounted lists whose pods no longer carry the finalizer
//!    move into `succeeded` / `failed`.
//!
//! A crash between any two steps leaves enough in the Job's status to finish
//! the job on the next sync; pods whose finalizer removal has not yet shown up
//! in the cache are skipped so they are not counted twice.
//!
//! Failures end the Job through the interim `FailureTarget` condition
//! (BackoffLimitExceeded, DeadlineExceeded): active pods are deleted and the
//! `Failed` condition follows once none is left terminating; success goes
//! through `SuccessCriteriaMet` to `Complete` the same way. Pod re-creation
//! after failures waits 10 s, doubling per consecutive failure up to six
//! minutes (kept in memory, as upstream). Finished Jobs with
//! `ttlSecondsAfterFinished` are deleted (Background propagation) when it
//! passes. A sweeper removes the tracking finalizer from pods whose Job is gone
//! or finished.

pub mod state;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use skiff_client::cache::Cache;
use skiff_client::events::{EventType, Recorder};
use skiff_client::expectations::Expectations;
use skiff_client::objects::{self, PodName};
use tokio_util::sync::CancellationToken;

use crate::runtime::{Backoff, Context, Error};
use state::{BackoffRecord, Intervals};

/// Most pods created or deleted in one sync, and most uids added to the
/// uncounted lists (upstream's MaxPodCreateDeletePerSync, MaxUncountedPods).
const BURST: usize = 500;
/// How often the orphan sweeper looks at every pod with the finalizer.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

struct State {
    ctx: Arc<Context>,
    pods: Cache<Pod>,
    /// Pods created and not yet in the cache.
    creations: Expectations,
    /// Pods deleted and not yet shown deleting (or gone) in the cache.
    deletions: Expectations,
    /// Job key → uids whose tracking finalizer we removed and the cache still shows.
    finalizer_removals: Mutex<HashMap<String, HashSet<String>>>,
    /// Job key → consecutive pod failures (for the re-creation delay).
    pod_backoff: Mutex<HashMap<String, BackoffRecord>>,
    backoff: Backoff,
    recorder: Recorder,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl State {
    fn forget(&self, key: &str) {
        self.creations.forget(key);
        self.deletions.forget(key);
        lock(&self.finalizer_removals).remove(key);
        lock(&self.pod_backoff).remove(key);
    }

    /// The uids whose finalizer removal the cache does not show yet.
    fn pending_removals(&self, key: &str, pods: &[Arc<Pod>]) -> HashSet<String> {
        let mut m = lock(&self.finalizer_removals);
        let Some(set) = m.get_mut(key) else {
            return HashSet::new();
        };
        set.retain(|uid| {
            pods.iter().any(|p| {
                p.uid().as_deref() == Some(uid.as_str()) && state::has_tracking_finalizer(p)
            })
        });
        let out = set.clone();
        if set.is_empty() {
            m.remove(key);
        }
        out
    }

    fn expect_removal(&self, key: &str, uid: &str) {
        lock(&self.finalizer_removals)
            .entry(key.to_string())
            .or_default()
            .insert(uid.to_string());
    }

    fn removal_failed(&self, key: &str, uid: &str) {
        if let Some(set) = lock(&self.finalizer_removals).get_mut(key) {
            set.remove(uid);
        }
    }
}

/// Run until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let (pods, pod_changes) = ctx.informers.all::<Pod>();
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = pods.wait_ready() => {}
    }
    let state = Arc::new(State {
        recorder: ctx.recorder("job-controller"),
        ctx,
        pods,
        creations: Expectations::new(),
        deletions: Expectations::new(),
        finalizer_removals: Mutex::new(HashMap::new()),
        pod_backoff: Mutex::new(HashMap::new()),
        backoff: Backoff::default(),
    });
    let controller = Controller::new(Api::<Job>::all(client), watcher::Config::default())
        .owns_stream(pod_changes)
        .graceful_shutdown_on(shutdown.clone().cancelled_owned());
    let sweeper = tokio::spawn(sweep_orphans(
        state.clone(),
        controller.store(),
        shutdown.clone(),
    ));
    controller
        .run(reconcile, error_policy, state)
        .for_each(|_| futures::future::ready(()))
        .await;
    let _ = sweeper.await; // ends on the token
}

fn error_policy(job: Arc<Job>, err: &Error, st: Arc<State>) -> Action {
    let key = objects::key(job.as_ref());
    tracing::debug!(%key, error = %err, "job sync failed");
    st.backoff.requeue(&key)
}

fn conditions(job: &Job) -> &[JobCondition] {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[])
}

/// The Complete or Failed condition, if the Job has finished.
fn finished_condition(job: &Job) -> Option<&JobCondition> {
    conditions(job)
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

fn min_requeue(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn to_duration(d: SignedDuration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

/// Everything one sync works out before it writes.
struct Sync<'a> {
    key: String,
    ns: String,
    job: Job,
    pods: &'a [Arc<Pod>],
    expected_rm: HashSet<String>,
    indexed: bool,
    completions: i32,
    only_replace_failed: bool,
    finished: Option<JobCondition>,
    prev_succeeded_ix: Intervals,
    succeeded_ix: Intervals,
    terminating: i32,
    new_backoff: BackoffRecord,
    now: Timestamp,
}

async fn reconcile(job: Arc<Job>, st: Arc<State>) -> Result<Action, Error> {
    let key = objects::key(job.as_ref());
    let now = Timestamp::now();
    if finished_condition(&job).is_some() {
        st.forget(&key);
        return ttl_after_finished(&st, &job, now).await;
    }
    let Some(spec) = job.spec.clone() else {
        return Ok(Action::await_change());
    };
    let mode = spec.completion_mode.as_deref().unwrap_or("NonIndexed");
    if mode != "NonIndexed" && mode != "Indexed" {
        st.recorder.publish(
            job.as_ref(),
            EventType::Warning,
            "UnknownCompletionMode",
            "Skipped Job sync because completion mode is unknown",
        );
        return Ok(Action::await_change());
    }
    let ns = job.namespace().unwrap_or_default();
    let uid = job.uid().unwrap_or_default();
    let indexed = mode == "Indexed";
    let completions = spec.completions.unwrap_or(0);
    let only_replace_failed = spec.pod_replacement_policy.as_deref() == Some("Failed");
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let suspended = spec.suspend == Some(true);

    let mut job = (*job).clone();
    let status = job.status.get_or_insert_with(JobStatus::default);
    let old_status = status.clone();
    let uncounted = status
        .uncounted_terminated_pods
        .get_or_insert_with(UncountedTerminatedPods::default);
    let uncounted_succeeded: HashSet<String> =
        uncounted.succeeded.iter().flatten().cloned().collect();
    let uncounted_failed: HashSet<String> = uncounted.failed.iter().flatten().cloned().collect();

    // Both are asked (no short-circuit) so both forget what the cache shows.
    let satisfied = st
        .creations
        .satisfied(&key, |n| st.pods.get(Some(&ns), n).is_some())
        & st.deletions.satisfied(&key, |n| {
            st.pods
                .get(Some(&ns), n)
                .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
        });
    let pods: Vec<Arc<Pod>> = st
        .pods
        .owned_by(&uid)
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .collect();
    let expected_rm = st.pending_removals(&key, &pods);
    let uid_of = |p: &Pod| p.uid().unwrap_or_default();
    let counted = |p: &Pod| {
        state::has_tracking_finalizer(p)
            && !expected_rm.contains(&uid_of(p))
            && (!indexed || state::valid_index(p, completions).is_some())
    };
    let new_succeeded: Vec<&Pod> = pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| counted(p) && state::succeeded(p) && !uncounted_succeeded.contains(&uid_of(p)))
        .collect();
    let new_failed: Vec<&Pod> = pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| {
            counted(p)
                && state::pod_failed(p, only_replace_failed)
                && !uncounted_failed.contains(&uid_of(p))
        })
        .collect();
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let status = job.status.get_or_insert_with(JobStatus::default);
    let mut succeeded = status
        .succeeded
        .unwrap_or(0)
        .saturating_add(count(new_succeeded.len() + uncounted_succeeded.len()));
    let failed = status
        .failed
        .unwrap_or(0)
        .saturating_add(count(new_failed.len() + uncounted_failed.len()));
    if status.start_time.is_none() && !suspended {
        status.start_time = Some(Time(now));
    }
    let start_time = status.start_time.as_ref().map(|t| t.0);
    let new_backoff = lock(&st.pod_backoff)
        .get(&key)
        .copied()
        .unwrap_or_default()
        .after(
            &new_succeeded
                .iter()
                .map(|p| state::finished_time(p))
                .collect::<Vec<_>>(),
            &new_failed
                .iter()
                .map(|p| state::finished_time(p))
                .collect::<Vec<_>>(),
        );

    let mut requeue: Option<Duration> = None;
    let conds = status.conditions.clone().unwrap_or_default();
    let mut finished: Option<JobCondition> = None;
    if let Some(c) =
        state::find_condition(&conds, "SuccessCriteriaMet").filter(|c| c.status == "True")
    {
        finished = Some(c.clone());
    } else if let Some(c) =
        state::find_condition(&conds, "FailureTarget").filter(|c| c.status == "True")
    {
        finished = Some(state::condition(
            "Failed",
            c.reason.as_deref().unwrap_or(""),
            c.message.as_deref().unwrap_or(""),
            now,
        ));
    }
    if finished.is_none() {
        let on_failure = spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            == Some("OnFailure");
        let deadline = spec
            .active_deadline_seconds
            .filter(|_| !suspended)
            .zip(start_time)
            .map(|(secs, start)| {
                start
                    .checked_add(SignedDuration::from_secs(secs))
                    .unwrap_or(start)
            });
        if failed > backoff_limit
            || (on_failure
                && state::past_backoff_limit_on_failure(
                    backoff_limit,
                    pods.iter().map(|p| p.as_ref()),
                ))
        {
            finished = Some(state::condition(
                "FailureTarget",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                now,
            ));
        } else if deadline.is_some_and(|d| now >= d) {
            finished = Some(state::condition(
                "FailureTarget",
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
                now,
            ));
        } else if let Some(d) = deadline {
            requeue = Some(to_duration(d.duration_since(now)));
        }
    }
    let mut prev_succeeded_ix = Intervals::default();
    let mut succeeded_ix = Intervals::default();
    if indexed {
        prev_succeeded_ix = Intervals::parse(
            status.completed_indexes.as_deref().unwrap_or(""),
            completions,
        );
        succeeded_ix = prev_succeeded_ix.with(
            pods.iter()
                .filter(|p| {
                    state::succeeded(p)
                        && state::has_tracking_finalizer(p)
                        && !expected_rm.contains(&uid_of(p))
                })
                .filter_map(|p| state::valid_index(p, completions)),
        );
        succeeded = succeeded_ix.total();
    }

    let active_pods: Vec<&Pod> = pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| objects::pod_active(p))
        .collect();
    let mut active = count(active_pods.len());
    let mut terminating = count(pods.iter().filter(|p| state::terminating(p)).count());
    let mut ready = count(active_pods.iter().filter(|p| objects::pod_ready(p)).count());
    let mut suspend_changed = false;
    let mut manage_err: Option<Error> = None;
    let api: Api<Pod> = Api::namespaced(st.ctx.client.clone(), &ns);
    if finished.is_some() {
        let (deleted, deleted_ready, err) = delete_active_pods(&st, &job, &api, &active_pods).await;
        if deleted != active || !satisfied {
            // Pods may still be on their way into the cache, or in the way.
            finished = None;
        }
        active -= deleted;
        terminating += deleted;
        ready -= deleted_ready;
        manage_err = err;
    } else {
        let mut manage_called = false;
        if satisfied && job.metadata.deletion_timestamp.is_none() {
            let m = ManageInput {
                key: &key,
                ns: &ns,
                active_pods: &active_pods,
                succeeded,
                succeeded_ix: &succeeded_ix,
                indexed,
                only_replace_failed,
                backoff: new_backoff,
                now,
            };
            let out = manage_job(&st, &job, &api, m, &mut terminating, &mut ready).await;
            active = out.active;
            requeue = min_requeue(requeue, out.requeue);
            manage_err = out.err;
            manage_called = true;
        }
        let complete = match spec.completions {
            None => succeeded > 0 && active == 0,
            Some(c) => succeeded >= c && active == 0,
        };
        if complete {
            finished = Some(state::condition(
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            ));
        } else if manage_called {
            let list = job
                .status
                .get_or_insert_with(JobStatus::default)
                .conditions
                .get_or_insert_with(Vec::new);
            if suspended {
                if state::ensure_condition(
                    list,
                    "Suspended",
                    "True",
                    "JobSuspended",
                    "Job suspended",
                    now,
                ) {
                    suspend_changed = true;
                    st.recorder
                        .publish(&job, EventType::Normal, "Suspended", "Job suspended");
                }
            } else if state::ensure_condition(
                list,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                now,
            ) {
                suspend_changed = true;
                st.recorder
                    .publish(&job, EventType::Normal, "Resumed", "Job resumed");
                // activeDeadlineSeconds counts continuous activity.
                job.status.get_or_insert_with(JobStatus::default).start_time = Some(Time(now));
            }
        }
    }

    let status = job.status.get_or_insert_with(JobStatus::default);
    let needs_flush = suspend_changed
        || old_status.active.unwrap_or(0) != active
        || old_status.ready != Some(ready)
        || old_status.terminating != Some(terminating)
        || old_status.start_time != status.start_time;
    status.active = Some(active);
    status.ready = Some(ready);
    status.terminating = Some(terminating);
    let sync = Sync {
        key: key.clone(),
        ns,
        job,
        pods: &pods,
        expected_rm,
        indexed,
        completions,
        only_replace_failed,
        finished,
        prev_succeeded_ix,
        succeeded_ix,
        terminating,
        new_backoff,
        now,
    };
    track_and_remove_finalizers(&st, sync, needs_flush).await?;
    if let Some(e) = manage_err {
        return Err(e);
    }
    st.backoff.reset(&key);
    Ok(match requeue {
        Some(d) => Action::requeue(d.max(Duration::from_millis(100))),
        None => Action::requeue(Duration::from_secs(300)),
    })
}

/// Delete the active pods of a Job that has failed or succeeded, keeping
/// their finalizers (they are counted as they go). Returns how many were
/// deleted, how many of those were ready, and the first error.
async fn delete_active_pods(
    st: &State,
    job: &Job,
    api: &Api<Pod>,
    active: &[&Pod],
) -> (i32, i32, Option<Error>) {
    let dp = DeleteParams::default();
    let results = futures::future::join_all(
        active
            .iter()
            .map(|p| api.delete(p.metadata.name.as_deref().unwrap_or_default(), &dp)),
    )
    .await;
    let (mut deleted, mut deleted_ready, mut err) = (0, 0, None);
    for (p, r) in active.iter().zip(results) {
        match r {
            Ok(_) => {
                deleted += 1;
                st.recorder.publish(
                    job,
                    EventType::Normal,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {}", p.name_any()),
                );
            }
            Err(kube::Error::Api(s)) if s.code == 404 => deleted += 1,
            Err(e) => {
                err.get_or_insert(Error::from(e));
                continue;
            }
        }
        if objects::pod_ready(p) {
            deleted_ready += 1;
        }
    }
    (deleted, deleted_ready, err)
}

/// Delete pods the Job no longer wants (suspension, too many): the finalizer
/// goes first, so these pods are not counted as failures.
async fn delete_job_pods(
    st: &State,
    job: &Job,
    key: &str,
    api: &Api<Pod>,
    pods: &[&Pod],
) -> (i32, i32, Option<Error>) {
    let (mut removed, mut removed_ready, mut err) = (0, 0, None);
    for p in pods {
        let name = p.name_any();
        st.deletions.expect_delete(key, &name);
        if state::has_tracking_finalizer(p) {
            if let Err(e) = remove_finalizer(api, &name).await {
                st.deletions.forget(key);
                err.get_or_insert(e);
                continue;
            }
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                st.recorder.publish(
                    job,
                    EventType::Normal,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {name}"),
                );
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                st.deletions.forget(key);
                err.get_or_insert(Error::from(e));
                continue;
            }
        }
        removed += 1;
        if objects::pod_ready(p) {
            removed_ready += 1;
        }
    }
    (removed, removed_ready, err)
}

async fn remove_finalizer(api: &Api<Pod>, name: &str) -> Result<(), Error> {
    let patch = serde_json::json!({
        "metadata": {"$deleteFromPrimitiveList/finalizers": [state::TRACKING_FINALIZER]}
    });
    match api
        .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

struct ManageInput<'a> {
    key: &'a str,
    ns: &'a str,
    active_pods: &'a [&'a Pod],
    succeeded: i32,
    succeeded_ix: &'a Intervals,
    indexed: bool,
    only_replace_failed: bool,
    backoff: BackoffRecord,
    now: Timestamp,
}

struct ManageOutput {
    active: i32,
    requeue: Option<Duration>,
    err: Option<Error>,
}

/// Create or delete pods so the Job has as many active as it wants
/// (upstream's manageJob). Deletion and creation never happen in one sync.
async fn manage_job(
    st: &State,
    job: &Job,
    api: &Api<Pod>,
    m: ManageInput<'_>,
    terminating: &mut i32,
    ready: &mut i32,
) -> ManageOutput {
    let spec = job.spec.clone().unwrap_or_default();
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let mut active = count(m.active_pods.len());
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let completions = spec.completions;
    let indexed_completions = m.indexed.then(|| completions.unwrap_or(0));
    if spec.suspend == Some(true) {
        let victims =
            state::pods_for_removal(m.active_pods, indexed_completions, m.active_pods.len());
        let (removed, removed_ready, err) = delete_job_pods(st, job, m.key, api, &victims).await;
        *terminating += removed;
        *ready -= removed_ready;
        return ManageOutput {
            active: active - removed,
            requeue: None,
            err,
        };
    }
    let want = match completions {
        None if m.succeeded > 0 => active,
        None => parallelism,
        Some(c) => (c - m.succeeded).min(parallelism).max(0),
    };
    let at_least = usize::try_from((active - want).max(0)).unwrap_or(0);
    let mut victims = state::pods_for_removal(m.active_pods, indexed_completions, at_least);
    victims.truncate(BURST);
    if !victims.is_empty() {
        let (removed, removed_ready, err) = delete_job_pods(st, job, m.key, api, &victims).await;
        *terminating += removed;
        *ready -= removed_ready;
        return ManageOutput {
            active: active - removed,
            requeue: None,
            err,
        };
    }
    let held = if m.only_replace_failed {
        *terminating
    } else {
        0
    };
    let diff = want - held - active;
    if diff <= 0 {
        return ManageOutput {
            active,
            requeue: None,
            err: None,
        };
    }
    let wait = m.backoff.remaining(m.now);
    if !wait.is_zero() {
        return ManageOutput {
            active,
            requeue: Some(wait),
            err: None,
        };
    }
    let mut n = usize::try_from(diff).unwrap_or(0).min(BURST);
    let mut indexes: Vec<Option<i32>> = vec![None; n];
    if let Some(c) = indexed_completions {
        let busy: BTreeSet<i32> = m
            .active_pods
            .iter()
            .filter_map(|p| state::valid_index(p, c))
            .collect();
        indexes = state::first_pending_indexes(m.succeeded_ix, &busy, n, c)
            .into_iter()
            .map(Some)
            .collect();
        n = indexes.len();
    }
    let mut template = spec.template.clone();
    if m.indexed {
        state::add_index_env(&mut template);
    }
    let meta = template.metadata.get_or_insert_with(Default::default);
    let finalizers = meta.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == state::TRACKING_FINALIZER) {
        finalizers.push(state::TRACKING_FINALIZER.to_string());
    }
    let job_name = job.name_any();
    let make = |index: Option<i32>| -> Pod {
        let mut t = template.clone();
        let name = match index {
            Some(i) => {
                let meta = t.metadata.get_or_insert_with(Default::default);
                meta.annotations
                    .get_or_insert_with(Default::default)
                    .insert(state::COMPLETION_INDEX.into(), i.to_string());
                meta.labels
                    .get_or_insert_with(Default::default)
                    .insert(state::COMPLETION_INDEX.into(), i.to_string());
                if let Some(s) = t.spec.as_mut() {
                    s.hostname = Some(format!("{job_name}-{i}"));
                }
                state::generate_name_with_index(&job_name, i)
            }
            None => format!("{job_name}-"),
        };
        objects::pod_from_template(
            &t,
            m.ns,
            PodName::Generate(name),
            objects::controller_ref(job),
        )
    };
    // Slow start: 1, 2, 4, … so a template the API rejects fails one request.
    let pp = PostParams::default();
    let mut done = 0usize;
    let mut batch = 1usize;
    let mut err = None;
    while done < n {
        let size = batch.min(n - done);
        let results = futures::future::join_all(indexes[done..done + size].iter().map(|ix| {
            let pod = make(*ix);
            let api = api.clone();
            let pp = pp.clone();
            async move { api.create(&pp, &pod).await }
        }))
        .await;
        for r in results {
            match r {
                Ok(created) => {
                    st.creations.expect_create(m.key, &created.name_any());
                    active += 1;
                    st.recorder.publish(
                        job,
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!("Created pod: {}", created.name_any()),
                    );
                }
                Err(e) => {
                    st.recorder.publish(
                        job,
                        EventType::Warning,
                        "FailedCreate",
                        &format!("Error creating: {e}"),
                    );
                    err.get_or_insert(Error::from(e));
                }
            }
        }
        if err.is_some() {
            break;
        }
        done += size;
        batch = batch.saturating_mul(2);
    }
    ManageOutput {
        active,
        requeue: None,
        err,
    }
}

/// Move uncounted uids whose pods no longer carry the finalizer into the
/// counters. Returns whether anything changed.
fn clean_uncounted(status: &mut JobStatus, with_finalizer: &HashSet<String>) -> bool {
    let u = status
        .uncounted_terminated_pods
        .get_or_insert_with(UncountedTerminatedPods::default);
    let mut changed = false;
    let succ = u.succeeded.take().unwrap_or_default();
    let (keep, done): (Vec<String>, Vec<String>) = succ
        .into_iter()
        .partition(|uid| with_finalizer.contains(uid));
    u.succeeded = (!keep.is_empty()).then_some(keep);
    let fail = u.failed.take().unwrap_or_default();
    let (keep_f, done_f): (Vec<String>, Vec<String>) = fail
        .into_iter()
        .partition(|uid| with_finalizer.contains(uid));
    u.failed = (!keep_f.is_empty()).then_some(keep_f);
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    if !done.is_empty() {
        status.succeeded = Some(
            status
                .succeeded
                .unwrap_or(0)
                .saturating_add(count(done.len())),
        );
        changed = true;
    }
    if !done_f.is_empty() {
        status.failed = Some(
            status
                .failed
                .unwrap_or(0)
                .saturating_add(count(done_f.len())),
        );
        changed = true;
    }
    changed
}

async fn write_status(st: &State, job: &Job, ns: &str) -> Result<Job, Error> {
    let api: Api<Job> = Api::namespaced(st.ctx.client.clone(), ns);
    Ok(api
        .replace_status(&job.name_any(), &PostParams::default(), job)
        .await?)
}

/// Upstream's trackJobStatusAndRemoveFinalizers: record finished pods as
/// uncounted, remove their finalizers, count the ones whose finalizer is gone,
/// and add the terminal condition when nothing is left to count.
async fn track_and_remove_finalizers(
    st: &State,
    mut s: Sync<'_>,
    mut needs_flush: bool,
) -> Result<(), Error> {
    let uid_of = |p: &Pod| p.uid().unwrap_or_default();
    let mut with_finalizer: HashSet<String> = s
        .pods
        .iter()
        .filter(|p| state::has_tracking_finalizer(p) && !s.expected_rm.contains(&uid_of(p)))
        .map(|p| uid_of(p))
        .collect();
    let status = s.job.status.get_or_insert_with(JobStatus::default);
    if clean_uncounted(status, &with_finalizer) {
        needs_flush = true;
    }
    let uncounted = status
        .uncounted_terminated_pods
        .get_or_insert_with(UncountedTerminatedPods::default);
    let was_succeeded: HashSet<String> = uncounted.succeeded.iter().flatten().cloned().collect();
    let was_failed: HashSet<String> = uncounted.failed.iter().flatten().cloned().collect();
    let mut add_succeeded: Vec<String> = Vec::new();
    let mut add_failed: Vec<String> = Vec::new();
    let mut new_indexes: Vec<i32> = Vec::new();
    let mut to_remove: Vec<&Pod> = Vec::new();
    let mut reached_max = false;
    let finishing_failed = s
        .finished
        .as_ref()
        .is_some_and(|c| c.type_ != "SuccessCriteriaMet");
    let mut pods: Vec<&Pod> = s.pods.iter().map(|p| p.as_ref()).collect();
    if s.indexed {
        pods.sort_by_key(|p| state::completion_index(p));
    }
    let job_deleting = s.job.metadata.deletion_timestamp.is_some();
    for p in pods {
        let uid = uid_of(p);
        if !state::has_tracking_finalizer(p) || s.expected_rm.contains(&uid) {
            continue;
        }
        let failed = state::pod_failed(p, s.only_replace_failed);
        let can_remove = job_deleting || s.finished.is_some() || state::succeeded(p) || failed;
        if !can_remove {
            continue;
        }
        to_remove.push(p);
        if state::succeeded(p) && !was_failed.contains(&uid) {
            if s.indexed {
                if let Some(ix) = state::valid_index(p, s.completions) {
                    if !s.prev_succeeded_ix.has(ix) {
                        new_indexes.push(ix);
                        needs_flush = true;
                    }
                }
            } else if !was_succeeded.contains(&uid) {
                add_succeeded.push(uid);
                needs_flush = true;
            }
        } else if (failed || finishing_failed)
            && !was_failed.contains(&uid)
            && (!s.indexed || state::valid_index(p, s.completions).is_some())
        {
            add_failed.push(uid);
            needs_flush = true;
        }
        if new_indexes.len()
            + was_succeeded.len()
            + add_succeeded.len()
            + was_failed.len()
            + add_failed.len()
            >= BURST
        {
            reached_max = true;
            break;
        }
    }
    let status = s.job.status.get_or_insert_with(JobStatus::default);
    let uncounted = status
        .uncounted_terminated_pods
        .get_or_insert_with(UncountedTerminatedPods::default);
    if !add_succeeded.is_empty() {
        uncounted
            .succeeded
            .get_or_insert_with(Vec::new)
            .extend(add_succeeded);
    }
    if !add_failed.is_empty() {
        uncounted
            .failed
            .get_or_insert_with(Vec::new)
            .extend(add_failed);
    }
    if s.indexed {
        s.succeeded_ix = s.succeeded_ix.with(new_indexes);
        let text = s.succeeded_ix.to_string();
        if status.completed_indexes.as_deref().unwrap_or("") != text {
            needs_flush = true;
        }
        status.succeeded = Some(s.succeeded_ix.total());
        status.completed_indexes = Some(text);
    }
    let list = status.conditions.get_or_insert_with(Vec::new);
    if let Some(c) = s.finished.clone() {
        if c.type_ == "FailureTarget" {
            list.push(c.clone());
            needs_flush = true;
            s.finished = Some(state::condition(
                "Failed",
                c.reason.as_deref().unwrap_or(""),
                c.message.as_deref().unwrap_or(""),
                s.now,
            ));
        } else if c.type_ == "SuccessCriteriaMet" {
            if state::find_condition(list, "SuccessCriteriaMet").is_none() {
                list.push(c.clone());
                needs_flush = true;
            }
            s.finished = Some(state::condition(
                "Complete",
                c.reason.as_deref().unwrap_or(""),
                c.message.as_deref().unwrap_or(""),
                s.now,
            ));
        }
    }

    // Flush: uncounted uids and interim conditions are written before any
    // finalizer goes.
    if needs_flush {
        s.job = write_status(st, &s.job, &s.ns).await?;
        lock(&st.pod_backoff).insert(s.key.clone(), s.new_backoff);
        needs_flush = false;
    }
    let pods_api: Api<Pod> = Api::namespaced(st.ctx.client.clone(), &s.ns);
    let mut rm_err: Option<Error> = None;
    for p in &to_remove {
        let uid = uid_of(p);
        st.expect_removal(&s.key, &uid);
        match remove_finalizer(&pods_api, &p.name_any()).await {
            Ok(()) => {
                with_finalizer.remove(&uid);
            }
            Err(e) => {
                st.removal_failed(&s.key, &uid);
                rm_err.get_or_insert(e);
            }
        }
    }
    let status = s.job.status.get_or_insert_with(JobStatus::default);
    if clean_uncounted(status, &with_finalizer) {
        needs_flush = true;
    }
    if let Some(e) = rm_err {
        if needs_flush {
            write_status(st, &s.job, &s.ns).await?;
        }
        return Err(e);
    }
    // Finished once nothing is left to count and no pod is terminating.
    let mut job_finished = false;
    if let Some(c) = s.finished.as_ref().filter(|_| !reached_max) {
        let uncounted_left = status.uncounted_terminated_pods.as_ref().map_or(0, |u| {
            u.succeeded.as_ref().map_or(0, Vec::len) + u.failed.as_ref().map_or(0, Vec::len)
        });
        if uncounted_left == 0 && s.terminating == 0 {
            let list = status.conditions.get_or_insert_with(Vec::new);
            state::ensure_condition(
                list,
                &c.type_,
                "True",
                c.reason.as_deref().unwrap_or(""),
                c.message.as_deref().unwrap_or(""),
                s.now,
            );
            if c.type_ == "Complete" {
                status.completion_time = Some(Time(s.now));
            }
            job_finished = true;
            needs_flush = true;
        }
    }
    if needs_flush {
        let written = write_status(st, &s.job, &s.ns).await?;
        if job_finished {
            match s.finished.as_ref() {
                Some(c) if c.type_ == "Complete" => {
                    st.recorder
                        .publish(&written, EventType::Normal, "Completed", "Job completed");
                }
                Some(c) => st.recorder.publish(
                    &written,
                    EventType::Warning,
                    c.reason.as_deref().unwrap_or("Failed"),
                    c.message.as_deref().unwrap_or(""),
                ),
                None => {}
            }
        }
    }
    Ok(())
}

/// When the Job finished (its Complete or Failed condition's transition time).
fn finish_time(job: &Job) -> Option<Timestamp> {
    finished_condition(job).and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// Delete a finished Job once `ttlSecondsAfterFinished` has passed
/// (upstream's TTL-after-finished controller), re-reading it first so a
/// changed TTL is honoured.
async fn ttl_after_finished(st: &State, job: &Job, now: Timestamp) -> Result<Action, Error> {
    let expire_at = |j: &Job| -> Option<Timestamp> {
        let ttl = j.spec.as_ref()?.ttl_seconds_after_finished?;
        let done = finish_time(j).unwrap_or(now);
        Some(
            done.checked_add(SignedDuration::from_secs(i64::from(ttl)))
                .unwrap_or(done),
        )
    };
    let Some(at) = expire_at(job) else {
        return Ok(Action::await_change());
    };
    if now < at {
        return Ok(Action::requeue(
            to_duration(at.duration_since(now)) + Duration::from_millis(100),
        ));
    }
    let ns = job.namespace().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(st.ctx.client.clone(), &ns);
    let Some(fresh) = api.get_opt(&job.name_any()).await? else {
        return Ok(Action::await_change());
    };
    if fresh.uid() != job.uid() || finished_condition(&fresh).is_none() {
        return Ok(Action::await_change());
    }
    match expire_at(&fresh) {
        None => return Ok(Action::await_change()),
        Some(at) if now < at => {
            return Ok(Action::requeue(to_duration(at.duration_since(now))));
        }
        Some(_) => {}
    }
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions {
            uid: fresh.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&fresh.name_any(), &dp).await {
        Ok(_) => tracing::debug!(job = %objects::key(job), "deleted after ttlSecondsAfterFinished"),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

/// Remove the tracking finalizer from pods whose Job is gone (or is another
/// object now) or has finished: nobody else would, and they could never be
/// deleted.
async fn sweep_orphans(st: Arc<State>, jobs: Store<Job>, shutdown: CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => return,
        r = jobs.wait_until_ready() => if r.is_err() { return },
    }
    loop {
        for pod in st.pods.all() {
            if !state::has_tracking_finalizer(&pod) {
                continue;
            }
            let ns = pod.namespace().unwrap_or_default();
            let orphan = match objects::controller_of(&pod.metadata) {
                None => true,
                Some(r) if r.kind == "Job" && r.api_version == "batch/v1" => {
                    match jobs.get(&ObjectRef::new(&r.name).within(&ns)) {
                        None => true,
                        Some(j) => {
                            j.uid().as_deref() != Some(r.uid.as_str())
                                || finished_condition(&j).is_some()
                        }
                    }
                }
                Some(_) => false,
            };
            if orphan {
                let api: Api<Pod> = Api::namespaced(st.ctx.client.clone(), &ns);
                if let Err(e) = remove_finalizer(&api, &pod.name_any()).await {
                    tracing::debug!(pod = %objects::key(pod.as_ref()), error = %e, "removing an orphan's job-tracking finalizer failed");
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncounted_move_to_counters_once_finalizer_is_gone() {
        let mut status = JobStatus {
            succeeded: Some(1),
            failed: Some(2),
            uncounted_terminated_pods: Some(UncountedTerminatedPods {
                succeeded: Some(vec!["a".into(), "b".into()]),
                failed: Some(vec!["c".into()]),
            }),
            ..Default::default()
        };
        let with: HashSet<String> = ["b".to_string()].into();
        assert!(clean_uncounted(&mut status, &with));
        assert_eq!(status.succeeded, Some(2));
        assert_eq!(status.failed, Some(3));
        let u = status.uncounted_terminated_pods.as_ref().unwrap();
        assert_eq!(u.succeeded.as_deref(), Some(&["b".to_string()][..]));
        assert_eq!(u.failed, None);
        // Nothing more to move.
        assert!(!clean_uncounted(&mut status, &with));
    }
}
