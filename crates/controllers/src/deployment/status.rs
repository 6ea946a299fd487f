//! Deployment status: counts summed over the ReplicaSets and the Available and
//! Progressing conditions (with progressDeadlineSeconds), as upstream's
//! calculateStatus and syncRolloutStatus compute them.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use super::util::{replicas, rs_replicas, surge_and_unavailable};

fn status_of(rs: &ReplicaSet) -> (i32, i32, i32) {
    let s = rs.status.clone().unwrap_or_default();
    (
        s.replicas,
        s.ready_replicas.unwrap_or(0),
        s.available_replicas.unwrap_or(0),
    )
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Set `c`, keeping the transition time when the status did not change and
/// leaving the condition alone when status and reason are the same.
fn set(conds: &mut Vec<DeploymentCondition>, mut c: DeploymentCondition) {
    if let Some(cur) = conds.iter().find(|x| x.type_ == c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conds.retain(|x| x.type_ != c.type_);
    conds.push(c);
}

/// Whether the rollout is done: every replica updated and available, and the
/// latest spec observed.
pub(crate) fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let want = replicas(d);
    s.updated_replicas.unwrap_or(0) == want
        && s.replicas.unwrap_or(0) == want
        && s.available_replicas.unwrap_or(0) == want
        && s.observed_generation >= d.metadata.generation
}

/// The new status and, when the rollout is still under way, when to look
/// again for the progress deadline.
pub(crate) fn compute(
    d: &Deployment,
    all: &[ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    now: Timestamp,
) -> (DeploymentStatus, Option<Duration>) {
    let old = d.status.clone().unwrap_or_default();
    let spec_total: i32 = all.iter().map(rs_replicas).sum();
    let (mut actual, mut ready, mut available) = (0, 0, 0);
    for rs in all {
        let (a, r, v) = status_of(rs);
        actual += a;
        ready += r;
        available += v;
    }
    let updated = new_rs.map(|rs| status_of(rs).0).unwrap_or(0);
    let (_, max_unavailable) = surge_and_unavailable(d);
    let want = replicas(d);
    let mut conds = old.conditions.clone().unwrap_or_default();
    if available >= want - max_unavailable {
        set(
            &mut conds,
            condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set(
            &mut conds,
            condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(actual),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((spec_total - available).max(0)),
        collision_count: old.collision_count,
        conditions: None,
        terminating_replicas: old.terminating_replicas,
    };

    let spec = d.spec.clone().unwrap_or_default();
    let mut requeue = None;
    if spec.paused == Some(true) {
        set(
            &mut conds,
            condition(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
                now,
            ),
        );
    } else if let Some(deadline) = spec.progress_deadline_seconds {
        let rs_name = new_rs.map(|r| r.name_any()).unwrap_or_default();
        let current = conds.iter().find(|c| c.type_ == "Progressing").cloned();
        let was_paused = current
            .as_ref()
            .is_some_and(|c| c.reason.as_deref() == Some("DeploymentPaused"));
        let progressed = updated > old.updated_replicas.unwrap_or(0)
            || ready > old.ready_replicas.unwrap_or(0)
            || available > old.available_replicas.unwrap_or(0)
            || actual - updated < old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
        if was_paused {
            set(
                &mut conds,
                condition(
                    "Progressing",
                    "Unknown",
                    "DeploymentResumed",
                    "Deployment is resumed".into(),
                    now,
                ),
            );
        }
        if complete(d, &status) {
            set(
                &mut conds,
                condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                    now,
                ),
            );
        } else if progressed || current.is_none() || was_paused {
            let mut c = condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{rs_name}\" is progressing."),
                now,
            );
            if let Some(cur) = current.as_ref().filter(|c| c.status == "True") {
                c.last_transition_time = cur.last_transition_time.clone();
            }
            conds.retain(|x| x.type_ != "Progressing");
            conds.push(c);
        } else if let Some(cur) =
            current.filter(|c| c.reason.as_deref() != Some("ProgressDeadlineExceeded"))
        {
            let since = cur.last_update_time.as_ref().map(|t| t.0).unwrap_or(now);
            let due = since
                .saturating_add(SignedDuration::from_secs(i64::from(deadline)))
                .unwrap_or(now);
            if due <= now {
                set(
                    &mut conds,
                    condition(
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                        now,
                    ),
                );
            } else {
                requeue = Duration::try_from(due.duration_since(now)).ok();
            }
        }
        // While progressing, come back when the deadline could pass.
        if requeue.is_none() && !complete(d, &status) {
            if let Some(c) = conds
                .iter()
                .find(|c| c.type_ == "Progressing" && c.status == "True")
            {
                let since = c.last_update_time.as_ref().map(|t| t.0).unwrap_or(now);
                let due = since
                    .saturating_add(SignedDuration::from_secs(i64::from(deadline) + 1))
                    .unwrap_or(now);
                requeue = Duration::try_from(due.duration_since(now)).ok();
            }
        }
    }
    // Available first, then Progressing, as upstream lists them.
    conds.sort_by_key(|c| match c.type_.as_str() {
        "Available" => 0,
        "Progressing" => 1,
        _ => 2,
    });
    status.conditions = Some(conds);
    (status, requeue)
}

/// Whether two statuses differ in anything but condition timestamps that
/// were carried over.
pub(crate) fn differs(a: &DeploymentStatus, b: &DeploymentStatus) -> bool {
    serde_json::to_value(a).ok() != serde_json::to_value(b).ok()
}
