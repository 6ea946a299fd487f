//! The Deployment controller (upstream pkg/controller/deployment): owns
//! ReplicaSets named `<deployment>-<pod-template-hash>`, one per template
//! revision; rolls from the old ones to the new one with RollingUpdate
//! (maxSurge / maxUnavailable over available pods, minReadySeconds through
//! the ReplicaSets' availability) or Recreate; scales proportionally when
//! resized mid-rollout; keeps `revisionHistoryLimit` old ReplicaSets for
//! `kubectl rollout history/undo`; honours `paused`; and writes status with
//! the Available and Progressing conditions (progressDeadlineSeconds).

mod status;
mod util;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use skiff_client::cache::Cache;
use skiff_client::events::{EventType, Recorder};
use skiff_client::objects;
use tokio_util::sync::CancellationToken;

use crate::runtime::{Backoff, Context, Error};
use util::{
    equal_ignoring_hash, is_rolling, max_scaled_down, new_rs_target_rolling, proportion, replicas,
    revision, rs_annotations, rs_available, rs_replicas, surge_and_unavailable, template_hash,
    DESIRED, HASH_LABEL, MAX_REPLICAS, REVISION, REVISION_HISTORY,
};

struct State {
    ctx: Arc<Context>,
    rss: Cache<ReplicaSet>,
    backoff: Backoff,
    recorder: Recorder,
}

/// Run until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let (rss, rs_changes) = ctx.informers.all::<ReplicaSet>();
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = rss.wait_ready() => {}
    }
    let state = Arc::new(State {
        recorder: ctx.recorder("deployment-controller"),
        ctx,
        rss,
        backoff: Backoff::default(),
    });
    Controller::new(Api::<Deployment>::all(client), watcher::Config::default())
        .owns_stream(rs_changes)
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, state)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(d: Arc<Deployment>, err: &Error, st: Arc<State>) -> Action {
    let key = objects::key(d.as_ref());
    tracing::debug!(%key, error = %err, "deployment sync failed");
    st.backoff.requeue(&key)
}

/// One sync of one Deployment, with its ReplicaSets as last written.
struct Sync<'a> {
    st: &'a State,
    d: &'a Deployment,
    api: Api<ReplicaSet>,
    /// Every ReplicaSet the Deployment controls, oldest first.
    all: Vec<ReplicaSet>,
    /// Index into `all` of the one whose template matches.
    new: Option<usize>,
}

async fn reconcile(d: Arc<Deployment>, st: Arc<State>) -> Result<Action, Error> {
    let key = objects::key(d.as_ref());
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = d.namespace().unwrap_or_default();
    let spec = d.spec.clone().unwrap_or_default();
    if spec
        .selector
        .match_labels
        .as_ref()
        .is_none_or(|m| m.is_empty())
        && spec
            .selector
            .match_expressions
            .as_ref()
            .is_none_or(|m| m.is_empty())
    {
        st.recorder.publish(
            d.as_ref(),
            EventType::Warning,
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.",
        );
        return Ok(Action::await_change());
    }
    let api: Api<ReplicaSet> = Api::namespaced(st.ctx.client.clone(), &ns);
    let all = claim(&st, d.as_ref(), &api).await?;
    let mut s = Sync {
        st: &st,
        d: d.as_ref(),
        api,
        all,
        new: None,
    };
    s.new = s.all.iter().position(|rs| {
        rs.spec
            .as_ref()
            .and_then(|x| x.template.as_ref())
            .is_some_and(|a| equal_ignoring_hash(a, &spec.template))
    });

    let paused = spec.paused == Some(true);
    if paused || s.is_scaling_event() {
        s.sync_new_rs(false).await?;
        s.scale().await?;
        if paused {
            // A paused rollout still keeps history trimmed.
            s.cleanup().await?;
        }
    } else if is_rolling(s.d) {
        s.rolling().await?;
    } else {
        s.recreate().await?;
    }
    let requeue = s.sync_status().await?;
    st.backoff.reset(&key);
    Ok(match requeue {
        Some(d) => Action::requeue(d + Duration::from_millis(200)),
        None => Action::requeue(Duration::from_secs(300)),
    })
}

/// The ReplicaSets this Deployment controls: owned ones that still match the
/// selector, plus matching orphans it adopts; owned ones that stopped
/// matching are released. Oldest first.
async fn claim(
    st: &State,
    d: &Deployment,
    api: &Api<ReplicaSet>,
) -> Result<Vec<ReplicaSet>, Error> {
    let uid = d.uid().unwrap_or_default();
    let ns = d.namespace().unwrap_or_default();
    let selector = d
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    for rs in st.rss.owned_by(&uid) {
        if objects::selects(&selector, rs.labels()) {
            out.push(rs.as_ref().clone());
        } else if rs.metadata.deletion_timestamp.is_none() {
            let refs: Vec<_> = rs
                .owner_references()
                .iter()
                .filter(|r| r.uid != uid)
                .cloned()
                .collect();
            objects::set_owner_references(api, rs.as_ref(), refs).await?;
        }
    }
    for rs in st.rss.orphans(&ns) {
        if rs.metadata.deletion_timestamp.is_none() && objects::selects(&selector, rs.labels()) {
            let mut refs = rs.owner_references().to_vec();
            refs.push(objects::controller_ref(d));
            if let Some(adopted) = objects::set_owner_references(api, rs.as_ref(), refs).await? {
                out.push(adopted);
            }
        }
    }
    out.sort_by(|a, b| {
        let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
        ta.cmp(&tb).then_with(|| a.name_any().cmp(&b.name_any()))
    });
    Ok(out)
}

impl Sync<'_> {
    fn desired(&self) -> i32 {
        replicas(self.d)
    }

    fn old_indices(&self) -> Vec<usize> {
        (0..self.all.len())
            .filter(|i| Some(*i) != self.new)
            .collect()
    }

    fn spec_total(&self) -> i32 {
        self.all.iter().map(rs_replicas).sum()
    }

    fn max_old_revision(&self) -> i64 {
        self.old_indices()
            .into_iter()
            .map(|i| revision(&self.all[i]))
            .max()
            .unwrap_or(0)
    }

    /// Some active ReplicaSet was sized for a different `replicas`.
    fn is_scaling_event(&self) -> bool {
        let want = self.desired().to_string();
        self.all.iter().any(|rs| {
            rs_replicas(rs) > 0 && rs.annotations().get(DESIRED).is_some_and(|v| *v != want)
        })
    }

    /// Bring the new ReplicaSet's bookkeeping up to date, creating it when
    /// `create` and it does not exist. Returns its index.
    async fn sync_new_rs(&mut self, create: bool) -> Result<Option<usize>, Error> {
        let (surge, _) = surge_and_unavailable(self.d);
        let max_old = self.max_old_revision();
        let spec = self.d.spec.clone().unwrap_or_default();
        if let Some(i) = self.new {
            let rs = &self.all[i];
            let rev = revision(rs);
            let new_rev = if rev <= max_old { max_old + 1 } else { rev };
            let mut annotations =
                rs_annotations(self.d, rs.metadata.annotations.as_ref(), new_rev, surge);
            if new_rev != rev && rev > 0 {
                let history = rs
                    .annotations()
                    .get(REVISION_HISTORY)
                    .map(|h| format!("{h},{rev}"))
                    .unwrap_or_else(|| rev.to_string());
                annotations.insert(REVISION_HISTORY.into(), history);
            }
            let min_ready = spec.min_ready_seconds;
            let rs_min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
            if Some(&annotations) != rs.metadata.annotations.as_ref() || min_ready != rs_min_ready {
                let patch = serde_json::json!({
                    "metadata": {"annotations": annotations, "resourceVersion": rs.resource_version()},
                    "spec": {"minReadySeconds": min_ready},
                });
                let updated = self
                    .api
                    .patch(
                        &rs.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
                self.all[i] = updated;
            }
            self.set_deployment_revision(new_rev).await?;
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        let mut template = spec.template.clone();
        let collision = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&template, collision);
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector: LabelSelector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(HASH_LABEL.into(), hash.clone());
        let desired = self.desired();
        let start = if is_rolling(self.d) {
            new_rs_target_rolling(desired, surge, self.spec_total(), 0)
        } else {
            desired
        };
        let new_rev = max_old + 1;
        let mut labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(HASH_LABEL.into(), hash.clone());
        let name = format!("{}-{hash}", self.d.name_any());
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.namespace(),
                labels: Some(labels),
                annotations: Some(rs_annotations(self.d, None, new_rev, surge)),
                owner_references: Some(vec![objects::controller_ref(self.d)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(start),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        match self.api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                if start > 0 {
                    self.event(format!("Scaled up replica set {name} from 0 to {start}"));
                }
                self.all.push(created);
                self.new = Some(self.all.len() - 1);
                self.set_deployment_revision(new_rev).await?;
                Ok(self.new)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Same name: ours with an equal template is fine (the cache was
                // behind); anything else is a hash collision.
                let existing = self.api.get(&name).await?;
                let ours = objects::is_controlled_by(
                    &existing.metadata,
                    &self.d.uid().unwrap_or_default(),
                );
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignoring_hash(t, &spec.template));
                if ours && same {
                    self.all.push(existing);
                    self.new = Some(self.all.len() - 1);
                    return Ok(self.new);
                }
                let api: Api<Deployment> = Api::namespaced(
                    self.st.ctx.client.clone(),
                    &self.d.namespace().unwrap_or_default(),
                );
                let patch =
                    serde_json::json!({"status": {"collisionCount": collision.unwrap_or(0) + 1}});
                api.patch_status(
                    &self.d.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
                Err(Error::Invalid(format!(
                    "hash collision on replica set {name}"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn set_deployment_revision(&self, rev: i64) -> Result<(), Error> {
        let current = self.d.annotations().get(REVISION).cloned();
        if current.as_deref() == Some(rev.to_string().as_str()) {
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(
            self.st.ctx.client.clone(),
            &self.d.namespace().unwrap_or_default(),
        );
        let patch = serde_json::json!({"metadata": {"annotations": {REVISION: rev.to_string()}}});
        match api
            .patch(
                &self.d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn event(&self, message: String) {
        self.st
            .recorder
            .publish(self.d, EventType::Normal, "ScalingReplicaSet", &message);
    }

    /// Set ReplicaSet `i` to `size` (and its replica annotations); true if the size changed.
    async fn scale_rs(&mut self, i: usize, size: i32) -> Result<bool, Error> {
        let (surge, _) = surge_and_unavailable(self.d);
        let rs = &self.all[i];
        let old = rs_replicas(rs);
        let desired = self.desired().to_string();
        let max = (self.desired() + surge).to_string();
        let ann = rs.annotations();
        if old == size && ann.get(DESIRED) == Some(&desired) && ann.get(MAX_REPLICAS) == Some(&max)
        {
            return Ok(false);
        }
        let patch = serde_json::json!({
            "metadata": {
                "resourceVersion": rs.resource_version(),
                "annotations": {DESIRED: desired, MAX_REPLICAS: max},
            },
            "spec": {"replicas": size},
        });
        let name = rs.name_any();
        let updated = self
            .api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.all[i] = updated;
        if old != size {
            let dir = if size > old { "up" } else { "down" };
            self.event(format!(
                "Scaled {dir} replica set {name} from {old} to {size}"
            ));
        }
        Ok(old != size)
    }

    /// Resize without rolling: the only active (or latest) ReplicaSet takes the
    /// new size; a saturated new one means the old ones go; otherwise the
    /// change is shared out in proportion to the active ReplicaSets' sizes.
    async fn scale(&mut self) -> Result<(), Error> {
        let desired = self.desired();
        let active: Vec<usize> = (0..self.all.len())
            .filter(|i| rs_replicas(&self.all[*i]) > 0)
            .collect();
        if active.len() <= 1 {
            let target = active
                .first()
                .copied()
                .or(self.new)
                .or_else(|| self.all.len().checked_sub(1));
            if let Some(i) = target {
                self.scale_rs(i, desired).await?;
            }
            return Ok(());
        }
        if let Some(n) = self.new {
            let rs = &self.all[n];
            if rs_replicas(rs) == desired && rs_available(rs) == desired {
                for i in self.old_indices() {
                    self.scale_rs(i, 0).await?;
                }
                return Ok(());
            }
        }
        let (surge, _) = surge_and_unavailable(self.d);
        let allowed = desired + surge;
        let to_add = allowed - self.spec_total();
        let mut order = active.clone();
        // Growing: bigger (then newer) first; shrinking: bigger (then older) first.
        order.sort_by(|a, b| {
            let (ra, rb) = (&self.all[*a], &self.all[*b]);
            rs_replicas(rb).cmp(&rs_replicas(ra)).then_with(|| {
                if to_add > 0 {
                    b.cmp(a)
                } else {
                    a.cmp(b)
                }
            })
        });
        let status_replicas = self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let mut sizes: HashMap<usize, i32> = HashMap::new();
        let mut added = 0;
        for &i in &order {
            let rs = &self.all[i];
            let annotated = rs
                .annotations()
                .get(MAX_REPLICAS)
                .and_then(|v| v.parse().ok())
                .unwrap_or(status_replicas);
            let p = proportion(rs_replicas(rs), annotated, allowed, to_add, added);
            sizes.insert(i, rs_replicas(rs) + p);
            added += p;
        }
        if let Some(first) = order.first() {
            if let Some(v) = sizes.get_mut(first) {
                *v = (*v + to_add - added).max(0);
            }
        }
        for i in order {
            let size = sizes.get(&i).copied().unwrap_or(0);
            self.scale_rs(i, size).await?;
        }
        Ok(())
    }

    async fn rolling(&mut self) -> Result<(), Error> {
        let Some(n) = self.sync_new_rs(true).await? else {
            return Ok(());
        };
        let desired = self.desired();
        let (surge, max_unavailable) = surge_and_unavailable(self.d);
        // Grow the new ReplicaSet into the surge room.
        let cur = rs_replicas(&self.all[n]);
        let target = if cur > desired {
            desired
        } else {
            new_rs_target_rolling(desired, surge, self.spec_total(), cur)
        };
        if self.scale_rs(n, target).await? {
            return Ok(());
        }
        // Shrink the old ones as far as availability allows.
        let olds = self.old_indices();
        if olds.iter().map(|i| rs_replicas(&self.all[*i])).sum::<i32>() == 0 {
            return self.cleanup_if_complete().await;
        }
        let new_rs = &self.all[n];
        let max_down = max_scaled_down(
            desired,
            max_unavailable,
            self.spec_total(),
            rs_replicas(new_rs),
            rs_available(new_rs),
        );
        if max_down <= 0 {
            return Ok(());
        }
        // First the old pods that are not available anyway.
        let mut cleaned = 0;
        for &i in &olds {
            if cleaned >= max_down {
                break;
            }
            let rs = &self.all[i];
            let unhealthy = rs_replicas(rs) - rs_available(rs);
            if rs_replicas(rs) == 0 || unhealthy <= 0 {
                continue;
            }
            let down = (max_down - cleaned).min(unhealthy);
            let size = rs_replicas(rs) - down;
            self.scale_rs(i, size).await?;
            cleaned += down;
        }
        // Then available ones, keeping at least desired - maxUnavailable available.
        let available: i32 = self.all.iter().map(rs_available).sum();
        let min_available = desired - max_unavailable;
        let mut done = 0;
        if available > min_available {
            let total = available - min_available;
            for &i in &olds {
                if done >= total {
                    break;
                }
                let cur = rs_replicas(&self.all[i]);
                if cur == 0 {
                    continue;
                }
                let down = cur.min(total - done);
                self.scale_rs(i, cur - down).await?;
                done += down;
            }
        }
        if cleaned + done == 0 {
            self.cleanup_if_complete().await?;
        }
        Ok(())
    }

    async fn recreate(&mut self) -> Result<(), Error> {
        self.sync_new_rs(false).await?;
        let olds = self.old_indices();
        let mut scaled = false;
        for &i in &olds {
            if rs_replicas(&self.all[i]) > 0 {
                scaled |= self.scale_rs(i, 0).await?;
            }
        }
        if scaled {
            return Ok(());
        }
        // Wait until no old pod is left.
        let old_pods: i32 = olds
            .iter()
            .map(|i| {
                self.all[*i]
                    .status
                    .as_ref()
                    .map(|s| s.replicas)
                    .unwrap_or(0)
            })
            .sum();
        if old_pods > 0 {
            return Ok(());
        }
        let Some(n) = self.sync_new_rs(true).await? else {
            return Ok(());
        };
        let desired = self.desired();
        if !self.scale_rs(n, desired).await? {
            self.cleanup_if_complete().await?;
        }
        Ok(())
    }

    async fn cleanup_if_complete(&mut self) -> Result<(), Error> {
        let Some(n) = self.new else { return Ok(()) };
        let rs = &self.all[n];
        if rs_replicas(rs) == self.desired() && rs_available(rs) == self.desired() {
            self.cleanup().await?;
        }
        Ok(())
    }

    /// Delete the oldest scaled-down ReplicaSets beyond revisionHistoryLimit.
    async fn cleanup(&mut self) -> Result<(), Error> {
        let limit = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0);
        let mut dead: Vec<usize> = self
            .old_indices()
            .into_iter()
            .filter(|i| {
                let rs = &self.all[*i];
                rs_replicas(rs) == 0
                    && rs.status.as_ref().map(|s| s.replicas).unwrap_or(0) == 0
                    && rs.metadata.deletion_timestamp.is_none()
            })
            .collect();
        let limit = usize::try_from(limit).unwrap_or(0);
        if dead.len() <= limit {
            return Ok(());
        }
        dead.sort_by_key(|i| revision(&self.all[*i]));
        let excess = dead.len() - limit;
        for i in dead.into_iter().take(excess) {
            let rs = &self.all[i];
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: rs.uid(),
                    resource_version: rs.resource_version(),
                }),
                ..Default::default()
            };
            match self.api.delete(&rs.name_any(), &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn sync_status(&self) -> Result<Option<Duration>, Error> {
        let new_rs = self.new.map(|i| &self.all[i]);
        let (status, requeue) = status::compute(self.d, &self.all, new_rs, Timestamp::now());
        let old = self.d.status.clone().unwrap_or_default();
        if status::differs(&status, &old) {
            let api: Api<Deployment> = Api::namespaced(
                self.st.ctx.client.clone(),
                &self.d.namespace().unwrap_or_default(),
            );
            let patch = serde_json::json!({ "status": status });
            match api
                .patch_status(
                    &self.d.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(requeue)
    }
}
