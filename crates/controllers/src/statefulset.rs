//! The StatefulSet controller (after upstream pkg/controller/statefulset).
//!
//! Pods are named `<set>-<ordinal>` for ordinals `start..start+replicas`
//! (`spec.ordinals.start`), carry the labels
//! `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index` and
//! `controller-revision-hash` (the revision's name), and get
//! `hostname = <pod name>`, `subdomain = serviceName`.
//!
//! - `OrderedReady`: ordinal i is created only when every lower ordinal is
//!   Running, Ready and available (`minReadySeconds`); scale-down removes the
//!   highest ordinal first, one at a time, and only while the others are healthy.
//! - `Parallel`: all missing pods are created and all surplus pods deleted at once.
//! - `RollingUpdate`: outdated pods at or above `partition` are deleted from the
//!   highest ordinal down (recreated at the update revision), at most
//!   `maxUnavailable` (default 1) unavailable at a time. `OnDelete`: pods are
//!   replaced only when someone deletes them.
//! - Failed or succeeded pods are deleted and recreated.
//! - `volumeClaimTemplates`: a PersistentVolumeClaim `<claim>-<set>-<ordinal>`
//!   is created (if missing) before its pod and mounted as the template's
//!   volume; with `persistentVolumeClaimRetentionPolicy.whenDeleted: Delete`
//!   the claim is owned by the set. Nothing provisions storage for the claims
//!   yet, and `whenScaled: Delete` is not implemented.
//! - Orphaned pods that the selector selects and that are named like members
//!   are adopted (e.g. after `kubectl delete sts --cascade=orphan` and a
//!   re-create); owned pods whose labels stop matching are released.
//!
//! Revisions live in ControllerRevisions ([`crate::history`]) so that
//! `kubectl rollout history|undo sts/x` work; status carries the counts
//! `kubectl rollout status` reads.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;
use skiff_client::cache::Cache;
use skiff_client::events::{EventType, Recorder};
use skiff_client::expectations::Expectations;
use skiff_client::objects::{self, PodName};
use tokio_util::sync::CancellationToken;

use crate::history::{self, HASH_LABEL};
use crate::runtime::{Backoff, Context, Error};

/// Label with the pod's own name (for per-pod Services).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Label with the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// Look again at least this often (level-triggered safety net).
const RESYNC: Duration = Duration::from_secs(300);

struct State {
    ctx: Arc<Context>,
    pods: Cache<Pod>,
    expectations: Expectations,
    backoff: Backoff,
    recorder: Recorder,
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
        recorder: ctx.recorder("statefulset-controller"),
        ctx,
        pods,
        expectations: Expectations::new(),
        backoff: Backoff::default(),
    });
    Controller::new(Api::<StatefulSet>::all(client), watcher::Config::default())
        .owns_stream(pod_changes)
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, state)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(set: Arc<StatefulSet>, err: &Error, st: Arc<State>) -> Action {
    let key = objects::key(set.as_ref());
    tracing::debug!(%key, error = %err, "statefulset sync failed");
    st.backoff.requeue(&key)
}

/// The ordinal of `pod` if it is named `<set>-<n>` (canonical decimal).
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let rest = pod.strip_prefix(set)?.strip_prefix('-')?;
    let n: i32 = rest.parse().ok()?;
    (n >= 0 && n.to_string() == rest).then_some(n)
}

fn running_and_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && objects::pod_ready(pod)
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn revision_of(pod: &Pod) -> Option<&str> {
    pod.labels().get(HASH_LABEL).map(String::as_str)
}

/// Healthy in upstream's sense: Running, Ready, available and not terminating.
fn healthy(pod: &Pod, min_ready: i32, now: Timestamp) -> bool {
    running_and_ready(pod) && !terminating(pod) && objects::pod_available(pod, min_ready, now)
}

/// Integer or percentage of `total`, rounded up (upstream's
/// GetScaledValueFromIntOrPercent with roundUp).
pub(crate) fn scaled(v: Option<&IntOrString>, total: i32, default: i32) -> i32 {
    match v {
        None => default,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let total = i64::from(total.max(0));
            i32::try_from((pct * total + 99) / 100).unwrap_or(i32::MAX)
        }
    }
}

/// The pod for ordinal `ord` of `set` built from `template` at `revision`.
fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ord: i32, revision: &str) -> Pod {
    let name = format!("{}-{ord}", set.name_any());
    let ns = set.namespace().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let mut pod = objects::pod_from_template(
        template,
        &ns,
        PodName::Fixed(name.clone()),
        objects::controller_ref(set),
    );
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ord.to_string());
    labels.insert(HASH_LABEL.into(), revision.into());
    let pspec = pod.spec.get_or_insert_with(Default::default);
    pspec.hostname = Some(name.clone());
    if !spec.service_name.as_deref().unwrap_or("").is_empty() {
        pspec.subdomain = spec.service_name.clone();
    }
    for claim in spec.volume_claim_templates.iter().flatten() {
        let cname = claim.name_any();
        let volume = Volume {
            name: cname.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&cname, set, ord),
                read_only: None,
            }),
            ..Default::default()
        };
        let volumes = pspec.volumes.get_or_insert_with(Vec::new);
        match volumes.iter_mut().find(|v| v.name == cname) {
            Some(v) => *v = volume,
            None => volumes.push(volume),
        }
    }
    pod
}

fn claim_name(claim: &str, set: &StatefulSet, ord: i32) -> String {
    format!("{claim}-{}-{ord}", set.name_any())
}

/// The pod's view of one reconcile: what exists and what this pass changed.
struct Slot {
    ord: i32,
    pod: Option<Pod>,
}

async fn reconcile(set: Arc<StatefulSet>, st: Arc<State>) -> Result<Action, Error> {
    let key = objects::key(set.as_ref());
    if set.metadata.deletion_timestamp.is_some() {
        st.expectations.forget(&key);
        return Ok(Action::await_change());
    }
    let result = sync(&set, &st, &key).await;
    if result.is_ok() {
        st.backoff.reset(&key);
    }
    result
}

async fn sync(set: &StatefulSet, st: &State, key: &str) -> Result<Action, Error> {
    let ns = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let spec: StatefulSetSpec = set.spec.clone().unwrap_or_default();
    let client = &st.ctx.client;
    let now = Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0).max(0);

    // Revisions: the update revision is the current template's.
    let revisions = history::list(client, set, &spec.selector).await?;
    let status = set.status.clone().unwrap_or_default();
    let hist = history::ensure(
        client,
        set,
        &spec.template,
        revisions,
        status.collision_count.unwrap_or(0),
    )
    .await?;
    let update_rev = hist.update.clone();
    let current_rev: ControllerRevision = hist
        .revisions
        .iter()
        .find(|r| Some(r.name_any()) == status.current_revision)
        .cloned()
        .unwrap_or_else(|| update_rev.clone());
    let current_template =
        history::revision_template(&current_rev).unwrap_or_else(|| spec.template.clone());

    // Pods, by ordinal.
    let start = spec
        .ordinals
        .as_ref()
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0);
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let end = start.saturating_add(replicas);
    let mut slots: Vec<Slot> = (start..end).map(|ord| Slot { ord, pod: None }).collect();
    let mut condemned: Vec<Pod> = Vec::new();
    let claimed = claim_pods(client, &st.pods, set, &spec.selector, |p| {
        ordinal_of(&name, &p.name_any()).is_some()
    })
    .await?;
    for pod in claimed {
        let Some(ord) = ordinal_of(&name, &pod.name_any()) else {
            continue; // not a member (upstream ignores it too)
        };
        if ord >= start && ord < end {
            if let Some(slot) = usize::try_from(ord - start)
                .ok()
                .and_then(|i| slots.get_mut(i))
            {
                slot.pod = Some(pod.as_ref().clone());
            }
        } else {
            condemned.push(pod.as_ref().clone());
        }
    }
    condemned.sort_by_key(|p| std::cmp::Reverse(ordinal_of(&name, &p.name_any())));

    let satisfied = st.expectations.satisfied(key, |n| {
        st.pods.get(Some(&ns), n).is_some_and(|p| !terminating(&p))
    });
    let mut failure: Option<Error> = None;
    if satisfied {
        let plan = Plan {
            st,
            set,
            key,
            ns: &ns,
            spec: &spec,
            current_rev: &current_rev,
            current_template: &current_template,
            update_rev: &update_rev,
            min_ready,
            now,
        };
        if let Err(e) = plan.apply(&mut slots, &mut condemned).await {
            failure = Some(e);
        }
    }

    let requeue = update_status(
        st,
        set,
        &slots,
        &condemned,
        &current_rev,
        &update_rev,
        hist.collision_count,
    )
    .await?;

    // History: keep what live pods and the status use, plus revisionHistoryLimit more.
    let mut live: HashSet<String> = slots
        .iter()
        .filter_map(|s| s.pod.as_ref())
        .chain(condemned.iter())
        .filter_map(|p| revision_of(p).map(str::to_string))
        .collect();
    live.insert(current_rev.name_any());
    live.insert(update_rev.name_any());
    history::truncate(
        client,
        &ns,
        &hist.revisions,
        |r| live.contains(&r.name_any()),
        spec.revision_history_limit.unwrap_or(10),
    )
    .await?;

    if let Some(e) = failure {
        return Err(e);
    }
    Ok(Action::requeue(requeue.unwrap_or(RESYNC)))
}

struct Plan<'a> {
    st: &'a State,
    set: &'a StatefulSet,
    key: &'a str,
    ns: &'a str,
    spec: &'a StatefulSetSpec,
    current_rev: &'a ControllerRevision,
    current_template: &'a PodTemplateSpec,
    update_rev: &'a ControllerRevision,
    min_ready: i32,
    now: Timestamp,
}

impl Plan<'_> {
    fn monotonic(&self) -> bool {
        self.spec.pod_management_policy.as_deref() != Some("Parallel")
    }

    fn rolling(&self) -> bool {
        self.spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref())
            .unwrap_or("RollingUpdate")
            == "RollingUpdate"
    }

    fn partition(&self) -> i32 {
        self.spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.partition)
            .unwrap_or(0)
            .max(0)
    }

    fn healthy(&self, pod: &Pod) -> bool {
        healthy(pod, self.min_ready, self.now)
    }

    /// A new pod for `ord`: below the partition at the current revision,
    /// otherwise at the update revision.
    fn pod_for(&self, ord: i32, start: i32) -> Pod {
        if self.rolling() && ord < start.saturating_add(self.partition()) {
            new_pod(
                self.set,
                self.current_template,
                ord,
                &self.current_rev.name_any(),
            )
        } else {
            new_pod(
                self.set,
                &self.spec.template,
                ord,
                &self.update_rev.name_any(),
            )
        }
    }

    /// One pass: replicas in ordinal order, then surplus pods from the
    /// highest ordinal, then the rolling update. Pods created or deleted here
    /// are reflected in `slots`/`condemned` (deleted ones as terminating).
    async fn apply(&self, slots: &mut [Slot], condemned: &mut [Pod]) -> Result<(), Error> {
        let monotonic = self.monotonic();
        let start = slots.first().map(|s| s.ord).unwrap_or(0);
        for slot in slots.iter_mut() {
            if let Some(pod) = slot.pod.as_mut() {
                if objects::pod_terminal(pod) && !terminating(pod) {
                    // Failed or Succeeded: replace it (once it is gone).
                    self.delete(pod, "failed").await?;
                    if monotonic {
                        return Ok(());
                    }
                    continue;
                }
                if terminating(pod) {
                    if monotonic {
                        return Ok(());
                    }
                    continue;
                }
                if !self.healthy(pod) {
                    if monotonic {
                        return Ok(());
                    }
                    continue;
                }
                self.fix_identity(pod).await?;
            } else {
                let pod = self.pod_for(slot.ord, start);
                let created = self.create(pod, slot.ord).await?;
                slot.pod = Some(created);
                if monotonic {
                    return Ok(());
                }
            }
        }

        // Surplus pods, highest ordinal first.
        let first_unhealthy_condemned = condemned.iter().position(|p| !self.healthy(p));
        for (i, pod) in condemned.iter_mut().enumerate() {
            if terminating(pod) {
                if monotonic {
                    return Ok(());
                }
                continue;
            }
            if monotonic && !self.healthy(pod) && first_unhealthy_condemned != Some(i) {
                return Ok(());
            }
            self.delete(pod, "scale down").await?;
            if monotonic {
                return Ok(());
            }
        }

        if !self.rolling() {
            return Ok(()); // OnDelete: pods change when someone deletes them
        }
        let replicas = i32::try_from(slots.len()).unwrap_or(i32::MAX);
        let max_unavailable = scaled(
            self.spec
                .update_strategy
                .as_ref()
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.max_unavailable.as_ref()),
            replicas,
            1,
        )
        .max(1);
        let mut unavailable = slots
            .iter()
            .filter(|s| !s.pod.as_ref().is_some_and(|p| self.healthy(p)))
            .count();
        let budget = usize::try_from(max_unavailable).unwrap_or(1);
        let update = self.update_rev.name_any();
        let min = start.saturating_add(self.partition());
        for slot in slots.iter_mut().rev() {
            if unavailable >= budget {
                break;
            }
            if slot.ord < min {
                break;
            }
            let Some(pod) = slot.pod.as_mut() else {
                continue;
            };
            if revision_of(pod) != Some(update.as_str()) && !terminating(pod) {
                let was_healthy = self.healthy(pod);
                self.delete(pod, "update").await?;
                if was_healthy {
                    unavailable += 1;
                }
            }
        }
        Ok(())
    }

    async fn create(&self, pod: Pod, ord: i32) -> Result<Pod, Error> {
        let client = &self.st.ctx.client;
        self.ensure_claims(ord).await?;
        let api: Api<Pod> = Api::namespaced(client.clone(), self.ns);
        let name = pod.name_any();
        match api.create(&PostParams::default(), &pod).await {
            Ok(created) => {
                self.st.expectations.expect_create(self.key, &name);
                self.st.recorder.publish(
                    self.set,
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!(
                        "create Pod {name} in StatefulSet {} successful",
                        self.set.name_any()
                    ),
                );
                Ok(created)
            }
            Err(e) => {
                self.st.recorder.publish(
                    self.set,
                    EventType::Warning,
                    "FailedCreate",
                    &format!(
                        "create Pod {name} in StatefulSet {} failed error: {e}",
                        self.set.name_any()
                    ),
                );
                Err(e.into())
            }
        }
    }

    /// The PersistentVolumeClaims of ordinal `ord`, created if missing.
    async fn ensure_claims(&self, ord: i32) -> Result<(), Error> {
        let client = &self.st.ctx.client;
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), self.ns);
        let delete_with_set = self
            .spec
            .persistent_volume_claim_retention_policy
            .as_ref()
            .and_then(|p| p.when_deleted.as_deref())
            == Some("Delete");
        for claim in self.spec.volume_claim_templates.iter().flatten() {
            let cname = claim_name(&claim.name_any(), self.set, ord);
            if api.get_opt(&cname).await?.is_some() {
                continue;
            }
            let mut labels = claim.metadata.labels.clone().unwrap_or_default();
            labels.extend(self.spec.selector.match_labels.clone().unwrap_or_default());
            let owner = delete_with_set.then(|| {
                let mut r = objects::controller_ref(self.set);
                r.controller = None;
                vec![r]
            });
            let pvc = PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(cname.clone()),
                    namespace: Some(self.ns.to_string()),
                    labels: Some(labels),
                    annotations: claim.metadata.annotations.clone(),
                    owner_references: owner,
                    ..Default::default()
                },
                spec: claim.spec.clone(),
                status: None,
            };
            match api.create(&PostParams::default(), &pvc).await {
                Ok(_) => self.st.recorder.publish(
                    self.set,
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!(
                        "create Claim {cname} Pod {}-{ord} in StatefulSet {} success",
                        self.set.name_any(),
                        self.set.name_any()
                    ),
                ),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Delete `pod` (guarded by its uid) and mark it terminating in `pod`.
    async fn delete(&self, pod: &mut Pod, why: &str) -> Result<(), Error> {
        let api: Api<Pod> = Api::namespaced(self.st.ctx.client.clone(), self.ns);
        let name = pod.name_any();
        let dp = DeleteParams {
            preconditions: pod.uid().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {
                self.st.expectations.expect_delete(self.key, &name);
                self.st.recorder.publish(
                    self.set,
                    EventType::Normal,
                    "SuccessfulDelete",
                    &format!(
                        "delete Pod {name} in StatefulSet {} successful",
                        self.set.name_any()
                    ),
                );
                tracing::debug!(pod = %name, why, "statefulset deleted pod");
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                self.st.recorder.publish(
                    self.set,
                    EventType::Warning,
                    "FailedDelete",
                    &format!(
                        "delete Pod {name} in StatefulSet {} failed error: {e}",
                        self.set.name_any()
                    ),
                );
                return Err(e.into());
            }
        }
        pod.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(self.now),
        );
        Ok(())
    }

    /// Restore the identity labels if someone removed them.
    async fn fix_identity(&self, pod: &Pod) -> Result<(), Error> {
        let name = pod.name_any();
        let Some(ord) = ordinal_of(&self.set.name_any(), &name) else {
            return Ok(());
        };
        let labels = pod.labels();
        let index = ord.to_string();
        if labels.get(POD_NAME_LABEL) == Some(&name) && labels.get(POD_INDEX_LABEL) == Some(&index)
        {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.st.ctx.client.clone(), self.ns);
        let patch = json!({"metadata": {"labels": {POD_NAME_LABEL: name, POD_INDEX_LABEL: index}}});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Write status if it changed; returns when to look again for pods that
/// become available after `minReadySeconds`.
async fn update_status(
    st: &State,
    set: &StatefulSet,
    slots: &[Slot],
    condemned: &[Pod],
    current_rev: &ControllerRevision,
    update_rev: &ControllerRevision,
    collision_count: i32,
) -> Result<Option<Duration>, Error> {
    let spec = set.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0).max(0);
    let now = Timestamp::now();
    let current = current_rev.name_any();
    let update = update_rev.name_any();
    let (mut replicas, mut ready, mut available, mut n_current, mut n_updated) =
        (0i32, 0i32, 0i32, 0i32, 0i32);
    let mut next: Option<Duration> = None;
    for pod in slots
        .iter()
        .filter_map(|s| s.pod.as_ref())
        .chain(condemned.iter())
    {
        replicas += 1;
        if running_and_ready(pod) {
            ready += 1;
            if objects::pod_available(pod, min_ready, now) {
                available += 1;
            } else if let Some(since) = objects::pod_ready_since(pod) {
                let at = since
                    .saturating_add(SignedDuration::from_secs(i64::from(min_ready)))
                    .unwrap_or(now);
                let wait = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
                    + Duration::from_millis(100);
                next = Some(next.map_or(wait, |n| n.min(wait)));
            }
        }
        if !terminating(pod) {
            let rev = revision_of(pod);
            if rev == Some(current.as_str()) {
                n_current += 1;
            }
            if rev == Some(update.as_str()) {
                n_updated += 1;
            }
        }
    }
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let (mut current_name, mut current_count) = (current, n_current);
    // A finished rolling update makes the update revision current.
    if rolling && n_updated == replicas && ready == replicas {
        current_name = update.clone();
        current_count = n_updated;
    }
    let status = json!({
        "observedGeneration": set.metadata.generation,
        "replicas": replicas,
        "readyReplicas": ready,
        "currentReplicas": current_count,
        "updatedReplicas": n_updated,
        "availableReplicas": available,
        "currentRevision": current_name,
        "updateRevision": update,
        "collisionCount": collision_count,
    });
    let old = serde_json::to_value(set.status.clone().unwrap_or_default()).unwrap_or_default();
    let changed = status
        .as_object()
        .into_iter()
        .flatten()
        .any(|(k, v)| old.get(k).unwrap_or(&serde_json::Value::Null) != v);
    if changed {
        let api: Api<StatefulSet> =
            Api::namespaced(st.ctx.client.clone(), &set.namespace().unwrap_or_default());
        match api
            .patch_status(
                &set.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": status })),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(next)
}

/// The pods `owner` controls after claiming, as upstream's ControllerRefManager:
/// owned pods the selector no longer selects are released, orphans in the
/// namespace that it selects (and `member` accepts) are adopted. Both writes
/// carry the pod's uid and resourceVersion, so a pod that changed meanwhile is
/// left for the next pass.
pub(crate) async fn claim_pods<K>(
    client: &kube::Client,
    pods: &Cache<Pod>,
    owner: &K,
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    member: impl Fn(&Pod) -> bool,
) -> Result<Vec<Arc<Pod>>, Error>
where
    K: kube::Resource<DynamicType = ()>,
{
    let ns = owner.namespace().unwrap_or_default();
    let uid = owner.uid().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut claimed = Vec::new();
    for pod in pods.owned_by(&uid) {
        if pod.namespace().as_deref() != Some(ns.as_str()) {
            continue;
        }
        if objects::selects(selector, pod.labels()) || terminating(&pod) {
            claimed.push(pod);
            continue;
        }
        let refs: Vec<_> = pod
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.uid != uid)
            .collect();
        objects::set_owner_references(&api, pod.as_ref(), refs).await?;
    }
    if owner.meta().deletion_timestamp.is_none() {
        for pod in pods.orphans(&ns) {
            if terminating(&pod)
                || objects::pod_terminal(&pod)
                || !objects::selects(selector, pod.labels())
                || !member(&pod)
            {
                continue;
            }
            let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
            refs.push(objects::controller_ref(owner));
            if let Some(adopted) = objects::set_owner_references(&api, pod.as_ref(), refs).await? {
                claimed.push(Arc::new(adopted));
            }
        }
    }
    Ok(claimed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_parse_only_canonical_members() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-012"), None);
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "webx-1"), None);
        assert_eq!(ordinal_of("web", "web--1"), None);
        assert_eq!(ordinal_of("web-a", "web-a-3"), Some(3));
    }

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled(None, 10, 1), 1);
        assert_eq!(scaled(Some(&IntOrString::Int(3)), 10, 1), 3);
        assert_eq!(scaled(Some(&IntOrString::String("25%".into())), 10, 1), 3);
        assert_eq!(scaled(Some(&IntOrString::String("10%".into())), 3, 1), 1);
    }

    #[test]
    fn pods_get_identity_and_claims() {
        let set: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
            "spec": {
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]
            }
        }))
        .expect("set");
        let spec = set.spec.clone().expect("spec");
        let pod = new_pod(&set, &spec.template, 2, "web-abc");
        assert_eq!(pod.metadata.name.as_deref(), Some("web-2"));
        let labels = pod.metadata.labels.clone().expect("labels");
        assert_eq!(
            labels.get(POD_NAME_LABEL).map(String::as_str),
            Some("web-2")
        );
        assert_eq!(labels.get(POD_INDEX_LABEL).map(String::as_str), Some("2"));
        assert_eq!(labels.get(HASH_LABEL).map(String::as_str), Some("web-abc"));
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        let pspec = pod.spec.expect("spec");
        assert_eq!(pspec.hostname.as_deref(), Some("web-2"));
        assert_eq!(pspec.subdomain.as_deref(), Some("nginx"));
        let vols = pspec.volumes.expect("volumes");
        assert_eq!(
            vols[0]
                .persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str()),
            Some("data-web-2")
        );
    }
}
