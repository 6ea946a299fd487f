//! The CronJob controller (upstream pkg/controller/cronjob, the v2
//! controller): creates a Job for each activation of `spec.schedule` in
//! `spec.timeZone`, named `<cronjob>-<minutes since the epoch>` so that a
//! repeated attempt for the same activation can never create a second Job
//! (the name is the lock), honours `startingDeadlineSeconds`, the concurrency
//! policy and `suspend`, keeps `status.active`, `lastScheduleTime` and
//! `lastSuccessfulTime`, prunes finished Jobs beyond the history limits and
//! requeues itself for the next activation. The schedule arithmetic lives in
//! [`schedule`] and is pure.

pub mod schedule;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use skiff_client::cache::Cache;
use skiff_client::events::{self, EventType, Recorder};
use skiff_client::objects;
use tokio_util::sync::CancellationToken;

use crate::runtime::{Backoff, Context, Error};
use schedule::{Schedule, Times};

/// The annotation carrying the activation a Job was created for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

struct State {
    ctx: Arc<Context>,
    jobs: Cache<Job>,
    backoff: Backoff,
    recorder: Recorder,
}

/// Run until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let (jobs, job_changes) = ctx.informers.all::<Job>();
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = jobs.wait_ready() => {}
    }
    let state = Arc::new(State {
        recorder: ctx.recorder("cronjob-controller"),
        ctx,
        jobs,
        backoff: Backoff::default(),
    });
    Controller::new(Api::<CronJob>::all(client), watcher::Config::default())
        .owns_stream(job_changes)
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, state)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(cj: Arc<CronJob>, err: &Error, st: Arc<State>) -> Action {
    let key = objects::key(cj.as_ref());
    tracing::debug!(%key, error = %err, "cronjob sync failed");
    st.backoff.requeue(&key)
}

fn condition_true(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// `Complete` or `Failed` if the Job has finished.
fn finished_as(job: &Job) -> Option<&'static str> {
    if condition_true(job, "Complete") {
        Some("Complete")
    } else if condition_true(job, "Failed") {
        Some("Failed")
    } else {
        None
    }
}

fn in_active(cj: &CronJob, uid: &str) -> bool {
    cj.status
        .as_ref()
        .and_then(|s| s.active.as_ref())
        .is_some_and(|a| a.iter().any(|r| r.uid.as_deref() == Some(uid)))
}

fn remove_from_active(cj: &mut CronJob, uid: &str) {
    if let Some(active) = cj.status.as_mut().and_then(|s| s.active.as_mut()) {
        active.retain(|r| r.uid.as_deref() != Some(uid));
    }
}

async fn reconcile(cj: Arc<CronJob>, st: Arc<State>) -> Result<Action, Error> {
    let key = objects::key(cj.as_ref());
    let uid = cj.uid().unwrap_or_default();
    let ns = cj.namespace().unwrap_or_default();
    let jobs: Vec<Arc<Job>> = st
        .jobs
        .owned_by(&uid)
        .into_iter()
        .filter(|j| j.namespace().as_deref() == Some(ns.as_str()))
        .collect();
    let mut copy = (*cj).clone();
    let before = copy.status.clone();
    let mut changed = cleanup_finished(&st, &mut copy, &jobs).await;
    let (requeue, sync_changed, sync_err) = match sync(&st, &mut copy, &jobs).await {
        Ok((r, c)) => (r, c, None),
        Err((c, e)) => (None, c, Some(e)),
    };
    changed |= sync_changed;
    if changed && copy.status != before {
        let api: Api<CronJob> = Api::namespaced(st.ctx.client.clone(), &ns);
        api.replace_status(&cj.name_any(), &PostParams::default(), &copy)
            .await?;
    }
    if let Some(e) = sync_err {
        return Err(e);
    }
    st.backoff.reset(&key);
    Ok(match requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// Reconcile `status.active` with the Jobs, then create the Job for a due
/// activation. Returns when to look again and whether the status changed;
/// an error carries whether the status changed before it.
async fn sync(
    st: &State,
    cj: &mut CronJob,
    jobs: &[Arc<Job>],
) -> Result<(Option<Duration>, bool), (bool, Error)> {
    let mut changed = false;
    let ns = cj.namespace().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(st.ctx.client.clone(), &ns);
    for job in jobs {
        let juid = job.uid().unwrap_or_default();
        let found = in_active(cj, &juid);
        let finished = finished_as(job);
        if !found && finished.is_none() {
            // Maybe our cached status is older than the Job: look again.
            let api: Api<CronJob> = Api::namespaced(st.ctx.client.clone(), &ns);
            if let Ok(fresh) = api.get(&cj.name_any()).await {
                if in_active(&fresh, &juid) {
                    continue;
                }
            }
            st.recorder.publish(
                cj,
                EventType::Warning,
                "UnexpectedJob",
                &format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    job.name_any()
                ),
            );
        } else if let (true, Some(cond)) = (found, finished) {
            remove_from_active(cj, &juid);
            st.recorder.publish(
                cj,
                EventType::Normal,
                "SawCompletedJob",
                &format!("Saw completed job: {}, condition: {cond}", job.name_any()),
            );
            changed = true;
        }
        if finished == Some("Complete") {
            if let Some(done) = job.status.as_ref().and_then(|s| s.completion_time.clone()) {
                let status = cj.status.get_or_insert_with(Default::default);
                let newer = status
                    .last_successful_time
                    .as_ref()
                    .is_none_or(|t| t.0 < done.0);
                if newer {
                    status.last_successful_time = Some(done);
                    changed = true;
                }
            }
        }
    }
    // Active entries whose Job is gone.
    let active: Vec<ObjectReference> = cj
        .status
        .as_ref()
        .and_then(|s| s.active.clone())
        .unwrap_or_default();
    for r in active {
        let ruid = r.uid.clone().unwrap_or_default();
        if jobs
            .iter()
            .any(|j| j.uid().as_deref() == Some(ruid.as_str()))
        {
            continue;
        }
        let name = r.name.clone().unwrap_or_default();
        match jobs_api.get_opt(&name).await {
            Ok(Some(j)) if j.uid().as_deref() == Some(ruid.as_str()) => {} // cache lags
            Ok(_) => {
                st.recorder.publish(
                    cj,
                    EventType::Normal,
                    "MissingJob",
                    &format!("Active job went missing: {name}"),
                );
                remove_from_active(cj, &ruid);
                changed = true;
            }
            Err(e) => return Err((changed, e.into())),
        }
    }
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok((None, changed));
    }
    let spec = cj.spec.clone().unwrap_or_default();
    let tz = match spec.time_zone.as_deref() {
        Some(name) => match TimeZone::get(name) {
            Ok(tz) => tz,
            Err(e) => {
                st.recorder.publish(
                    cj,
                    EventType::Warning,
                    "UnknownTimeZone",
                    &format!("invalid timeZone: {name:?}: {e}"),
                );
                return Ok((None, changed));
            }
        },
        None => TimeZone::system(),
    };
    if spec.suspend == Some(true) {
        return Ok((None, changed));
    }
    let sched = match Schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            st.recorder.publish(
                cj,
                EventType::Warning,
                "UnparseableSchedule",
                &format!("unparseable schedule: {:?} : {e}", spec.schedule),
            );
            return Ok((None, changed));
        }
    };
    let now = Timestamp::now();
    let times = Times {
        created: cj
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(now),
        last_schedule: cj
            .status
            .as_ref()
            .and_then(|s| s.last_schedule_time.as_ref())
            .map(|t| t.0),
        starting_deadline_seconds: spec.starting_deadline_seconds,
    };
    let requeue = || schedule::requeue_after(times, now, &sched, &tz);
    let scheduled = match schedule::next_to_run(times, now, &sched, &tz) {
        Ok((Some(t), too_many)) => {
            if too_many {
                st.recorder.publish(
                    cj,
                    EventType::Warning,
                    "TooManyMissedTimes",
                    "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
                );
            }
            t
        }
        Ok((None, _)) => return Ok((Some(requeue()), changed)),
        Err(e) => {
            st.recorder.publish(
                cj,
                EventType::Warning,
                "InvalidSchedule",
                &format!("invalid schedule: {} : {e}", spec.schedule),
            );
            return Ok((None, changed));
        }
    };
    if let Some(d) = spec.starting_deadline_seconds {
        let deadline = scheduled
            .checked_add(jiff::SignedDuration::from_secs(d))
            .unwrap_or(scheduled);
        if deadline < now {
            st.recorder.publish(
                cj,
                EventType::Warning,
                "MissSchedule",
                &format!(
                    "Missed scheduled time to start a job: {}",
                    scheduled.strftime("%a, %d %b %Y %H:%M:%S +0000")
                ),
            );
            return Ok((Some(requeue()), changed));
        }
    }
    let name = schedule::job_name(&cj.name_any(), scheduled);
    let already = cj
        .status
        .as_ref()
        .and_then(|s| s.active.as_ref())
        .is_some_and(|a| a.iter().any(|r| r.name.as_deref() == Some(name.as_str())))
        || cj
            .status
            .as_ref()
            .and_then(|s| s.last_schedule_time.as_ref())
            .is_some_and(|t| t.0 == scheduled);
    if already {
        return Ok((Some(requeue()), changed));
    }
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
    let active_count = cj
        .status
        .as_ref()
        .and_then(|s| s.active.as_ref())
        .map_or(0, Vec::len);
    if policy == "Forbid" && active_count > 0 {
        st.recorder.publish(
            cj,
            EventType::Normal,
            "JobAlreadyActive",
            "Not starting job because prior execution is running and concurrency policy is Forbid",
        );
        return Ok((Some(requeue()), changed));
    }
    if policy == "Replace" {
        let active: Vec<ObjectReference> = cj
            .status
            .as_ref()
            .and_then(|s| s.active.clone())
            .unwrap_or_default();
        for r in active {
            let jname = r.name.clone().unwrap_or_default();
            let job = match jobs_api.get_opt(&jname).await {
                Ok(Some(j)) => j,
                Ok(None) => {
                    remove_from_active(cj, r.uid.as_deref().unwrap_or_default());
                    changed = true;
                    continue;
                }
                Err(e) => {
                    st.recorder.publish(
                        cj,
                        EventType::Warning,
                        "FailedGet",
                        &format!("Get job: {e}"),
                    );
                    return Err((changed, e.into()));
                }
            };
            if let Err(e) = delete_job(st, cj, &job).await {
                return Err((changed, e));
            }
            changed = true;
        }
    }

    let job = job_from_template(cj, &name, scheduled, &tz);
    let created = match jobs_api.create(&PostParams::default(), &job).await {
        Ok(j) => {
            st.recorder.publish(
                cj,
                EventType::Normal,
                "SuccessfulCreate",
                &format!("Created job {}", j.name_any()),
            );
            j
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            // Created before (by us, status not yet written) or by someone else.
            let existing = match jobs_api.get(&name).await {
                Ok(j) => j,
                Err(e) => return Err((changed, e.into())),
            };
            let cj_uid = cj.uid().unwrap_or_default();
            if !objects::is_controlled_by(&existing.metadata, &cj_uid)
                || in_active(cj, existing.uid().as_deref().unwrap_or_default())
            {
                return Ok((None, changed));
            }
            existing
        }
        Err(e) => {
            st.recorder.publish(
                cj,
                EventType::Warning,
                "FailedCreate",
                &format!("Error creating job: {e}"),
            );
            return Err((changed, e.into()));
        }
    };
    let status = cj.status.get_or_insert_with(Default::default);
    status
        .active
        .get_or_insert_with(Vec::new)
        .push(events::reference(&created));
    status.last_schedule_time = Some(Time(scheduled));
    let times = Times {
        last_schedule: Some(scheduled),
        ..times
    };
    Ok((Some(schedule::requeue_after(times, now, &sched, &tz)), true))
}

fn job_from_template(cj: &CronJob, name: &str, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP.to_string(),
        schedule::rfc3339_in(scheduled, tz),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: cj.namespace(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![objects::controller_ref(cj)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Delete `job` (Background propagation) and drop it from `status.active`.
async fn delete_job(st: &State, cj: &mut CronJob, job: &Job) -> Result<(), Error> {
    let api: Api<Job> =
        Api::namespaced(st.ctx.client.clone(), &job.namespace().unwrap_or_default());
    match api
        .delete(&job.name_any(), &DeleteParams::background())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => {
            st.recorder.publish(
                cj,
                EventType::Warning,
                "FailedDelete",
                &format!("Deleted job: {e}"),
            );
            return Err(e.into());
        }
    }
    remove_from_active(cj, job.uid().as_deref().unwrap_or_default());
    st.recorder.publish(
        cj,
        EventType::Normal,
        "SuccessfulDelete",
        &format!("Deleted job {}", job.name_any()),
    );
    Ok(())
}

/// Delete the oldest finished Jobs beyond the history limits. Returns whether
/// the status changed.
async fn cleanup_finished(st: &State, cj: &mut CronJob, jobs: &[Arc<Job>]) -> bool {
    let spec = cj.spec.clone().unwrap_or_default();
    let mut succeeded: Vec<&Job> = Vec::new();
    let mut failed: Vec<&Job> = Vec::new();
    for j in jobs {
        if j.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match finished_as(j) {
            Some("Complete") => succeeded.push(j),
            Some(_) => failed.push(j),
            None => {}
        }
    }
    let mut changed = false;
    for (mut list, limit) in [
        (succeeded, spec.successful_jobs_history_limit),
        (failed, spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let keep = usize::try_from(limit.max(0)).unwrap_or(0);
        if list.len() <= keep {
            continue;
        }
        sort_by_start_time(&mut list);
        let n = list.len() - keep;
        for job in list.into_iter().take(n) {
            if delete_job(st, cj, job).await.is_ok() {
                changed = true;
            }
        }
    }
    changed
}

/// Oldest first by `status.startTime` (Jobs without one last), then by name.
fn sort_by_start_time(jobs: &mut [&Job]) {
    jobs.sort_by(|a, b| {
        let start = |j: &Job| {
            j.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0)
        };
        match (start(a), start(b)) {
            (Some(x), Some(y)) if x != y => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            _ => a.name_any().cmp(&b.name_any()),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{CronJobSpec, JobStatus, JobTemplateSpec};

    fn job(name: &str, start: Option<&str>) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: None,
            status: Some(JobStatus {
                start_time: start.map(|s| Time(s.parse().unwrap())),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn history_sorts_oldest_first_unstarted_last() {
        let a = job("a", Some("2024-01-01T10:02:00Z"));
        let b = job("b", Some("2024-01-01T10:01:00Z"));
        let c = job("c", None);
        let mut v = vec![&c, &a, &b];
        sort_by_start_time(&mut v);
        let names: Vec<String> = v.iter().map(|j| j.name_any()).collect();
        assert_eq!(names, ["b", "a", "c"]);
    }

    #[test]
    fn job_carries_template_owner_and_scheduled_time() {
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("app".to_string(), "x".to_string());
        let cj = CronJob {
            metadata: ObjectMeta {
                name: Some("nightly".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(CronJobSpec {
                schedule: "* * * * *".into(),
                job_template: JobTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..Default::default()
                    }),
                    spec: Some(Default::default()),
                },
                ..Default::default()
            }),
            status: None,
        };
        let at: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let j = job_from_template(&cj, &schedule::job_name("nightly", at), at, &TimeZone::UTC);
        assert_eq!(j.name_any(), "nightly-28401120");
        assert_eq!(j.labels().get("app").map(String::as_str), Some("x"));
        assert_eq!(
            j.annotations().get(SCHEDULED_TIMESTAMP).map(String::as_str),
            Some("2024-01-01T00:00:00Z")
        );
        assert!(objects::is_controlled_by(&j.metadata, "u1"));
    }
}
