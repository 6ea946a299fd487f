//! The ReplicaSet controller (upstream pkg/controller/replicaset): keeps
//! `spec.replicas` active pods matching the selector, adopting orphans and
//! releasing pods that stopped matching, creating in slow-start batches and
//! deleting the least valuable pods first, with expectations so a cache that
//! lags behind its own writes never causes duplicates. Writes `status`.

mod rank;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use skiff_client::cache::Cache;
use skiff_client::events::{EventType, Recorder};
use skiff_client::expectations::Expectations;
use skiff_client::objects::{self, PodName};
use tokio_util::sync::CancellationToken;

use crate::runtime::{Backoff, Context, Error};

/// Most pods created or deleted in one sync (upstream's burstReplicas).
const BURST: usize = 500;

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
        recorder: ctx.recorder("replicaset-controller"),
        ctx,
        pods,
        expectations: Expectations::new(),
        backoff: Backoff::default(),
    });
    Controller::new(Api::<ReplicaSet>::all(client), watcher::Config::default())
        .owns_stream(pod_changes)
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, state)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(rs: Arc<ReplicaSet>, err: &Error, st: Arc<State>) -> Action {
    let key = objects::key(rs.as_ref());
    tracing::debug!(%key, error = %err, "replicaset sync failed");
    st.backoff.requeue(&key)
}

async fn reconcile(rs: Arc<ReplicaSet>, st: Arc<State>) -> Result<Action, Error> {
    let key = objects::key(rs.as_ref());
    let ns = rs.namespace().unwrap_or_default();
    let uid = rs.uid().unwrap_or_default();
    if rs.metadata.deletion_timestamp.is_some() {
        st.expectations.forget(&key);
        return Ok(Action::await_change());
    }
    let spec = rs.spec.clone().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(st.ctx.client.clone(), &ns);

    // Claim: keep owned pods that still match, release the others, adopt orphans.
    let mut owned: Vec<Arc<Pod>> = Vec::new();
    for pod in st.pods.owned_by(&uid) {
        if objects::selects(&spec.selector, pod.labels()) {
            owned.push(pod);
        } else if pod.metadata.deletion_timestamp.is_none() {
            let refs: Vec<_> = pod
                .owner_references()
                .iter()
                .filter(|r| r.uid != uid)
                .cloned()
                .collect();
            objects::set_owner_references(&pods_api, pod.as_ref(), refs).await?;
        }
    }
    if rs.metadata.deletion_timestamp.is_none() {
        for pod in st.pods.orphans(&ns) {
            if pod.metadata.deletion_timestamp.is_none()
                && !objects::pod_terminal(&pod)
                && objects::selects(&spec.selector, pod.labels())
            {
                let mut refs = pod.owner_references().to_vec();
                refs.push(objects::controller_ref(rs.as_ref()));
                if let Some(adopted) =
                    objects::set_owner_references(&pods_api, pod.as_ref(), refs).await?
                {
                    owned.push(Arc::new(adopted));
                }
            }
        }
    }
    let active: Vec<Arc<Pod>> = owned
        .iter()
        .filter(|p| objects::pod_active(p))
        .cloned()
        .collect();

    let mut failure: Option<String> = None;
    let satisfied = st
        .expectations
        .satisfied(&key, |name| st.pods.get(Some(&ns), name).is_some());
    if satisfied {
        let want = usize::try_from(spec.replicas.unwrap_or(1).max(0)).unwrap_or(0);
        if active.len() < want {
            let n = (want - active.len()).min(BURST);
            if let Err(e) = create_pods(&st, rs.as_ref(), &key, &ns, n).await {
                failure = Some(e.to_string());
            }
        } else if active.len() > want {
            let n = (active.len() - want).min(BURST);
            let victims = rank::pick_victims(&active, n);
            delete_pods(&st, rs.as_ref(), &key, &pods_api, victims).await?;
        }
    }

    let requeue = update_status(&st, rs.as_ref(), &active, &owned, failure.as_deref()).await?;
    st.backoff.reset(&key);
    if let Some(msg) = failure {
        return Err(Error::Invalid(msg));
    }
    Ok(match requeue {
        Some(d) => Action::requeue(d),
        None => Action::requeue(Duration::from_secs(300)),
    })
}

/// Create `n` pods in slow-start batches (1, 2, 4, …): a template the API
/// rejects fails one request, not `n`.
async fn create_pods(
    st: &State,
    rs: &ReplicaSet,
    key: &str,
    ns: &str,
    n: usize,
) -> Result<(), Error> {
    let spec = rs.spec.clone().unwrap_or_default();
    let Some(template) = spec.template.as_ref() else {
        return Err(Error::Invalid("spec.template is missing".into()));
    };
    let pod = objects::pod_from_template(
        template,
        ns,
        PodName::Generate(format!("{}-", rs.name_any())),
        objects::controller_ref(rs),
    );
    let api: Api<Pod> = Api::namespaced(st.ctx.client.clone(), ns);
    let pp = PostParams::default();
    let mut remaining = n;
    let mut batch = 1usize;
    while remaining > 0 {
        let size = batch.min(remaining);
        let results = futures::future::join_all((0..size).map(|_| api.create(&pp, &pod))).await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(created) => {
                    st.expectations.expect_create(key, &created.name_any());
                    st.recorder.publish(
                        rs,
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!("Created pod: {}", created.name_any()),
                    );
                }
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(e);
                    }
                }
            }
        }
        if let Some(e) = first_err {
            st.recorder.publish(
                rs,
                EventType::Warning,
                "FailedCreate",
                &format!("Error creating: {e}"),
            );
            return Err(e.into());
        }
        remaining -= size;
        batch = batch.saturating_mul(2);
    }
    Ok(())
}

async fn delete_pods(
    st: &State,
    rs: &ReplicaSet,
    key: &str,
    api: &Api<Pod>,
    victims: Vec<Arc<Pod>>,
) -> Result<(), Error> {
    let results = futures::future::join_all(victims.iter().map(|p| async move {
        let dp = DeleteParams {
            preconditions: p.uid().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        (p, api.delete(&p.name_any(), &dp).await)
    }))
    .await;
    let mut first_err = None;
    for (p, r) in results {
        match r {
            Ok(_) => {
                st.expectations.expect_delete(key, &p.name_any());
                st.recorder.publish(
                    rs,
                    EventType::Normal,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {}", p.name_any()),
                );
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(e);
                }
            }
        }
    }
    match first_err {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Write status if it changed; returns when to look again for pods that will
/// become available after `minReadySeconds`.
async fn update_status(
    st: &State,
    rs: &ReplicaSet,
    active: &[Arc<Pod>],
    _owned: &[Arc<Pod>],
    failure: Option<&str>,
) -> Result<Option<Duration>, Error> {
    let spec = rs.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let now = Timestamp::now();
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let mut ready = 0i32;
    let mut available = 0i32;
    let mut fully_labeled = 0i32;
    let mut next: Option<Duration> = None;
    for p in active {
        let labels = p.labels();
        if template_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
        {
            fully_labeled += 1;
        }
        if let Some(since) = objects::pod_ready_since(p) {
            ready += 1;
            if objects::pod_available(p, min_ready, now) {
                available += 1;
            } else {
                let at = since
                    .saturating_add(k8s_openapi::jiff::SignedDuration::from_secs(i64::from(
                        min_ready,
                    )))
                    .unwrap_or(now);
                let wait = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
                    + Duration::from_millis(100);
                next = Some(next.map_or(wait, |n| n.min(wait)));
            }
        }
    }
    let old = rs.status.clone().unwrap_or_default();
    let mut conditions: Vec<ReplicaSetCondition> = old
        .conditions
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != "ReplicaFailure")
        .collect();
    if let Some(msg) = failure {
        let previous = old
            .conditions
            .as_ref()
            .and_then(|cs| cs.iter().find(|c| c.type_ == "ReplicaFailure"));
        conditions.push(ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some("FailedCreate".into()),
            message: Some(msg.to_string()),
            last_transition_time: previous
                .and_then(|c| c.last_transition_time.clone())
                .or(Some(Time(now))),
        });
    }
    let status = ReplicaSetStatus {
        replicas: i32::try_from(active.len()).unwrap_or(i32::MAX),
        fully_labeled_replicas: Some(fully_labeled),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        observed_generation: rs.metadata.generation,
        conditions: if conditions.is_empty() {
            None
        } else {
            Some(conditions)
        },
        terminating_replicas: old.terminating_replicas,
    };
    if normalized(&status) != normalized(&old) {
        let api: Api<ReplicaSet> =
            Api::namespaced(st.ctx.client.clone(), &rs.namespace().unwrap_or_default());
        let patch = serde_json::json!({ "status": status });
        match api
            .patch_status(
                &rs.name_any(),
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
    Ok(next)
}

/// Status with absent counters read as zero, for comparison.
fn normalized(s: &ReplicaSetStatus) -> serde_json::Value {
    serde_json::json!({
        "replicas": s.replicas,
        "fully": s.fully_labeled_replicas.unwrap_or(0),
        "ready": s.ready_replicas.unwrap_or(0),
        "available": s.available_replicas.unwrap_or(0),
        "gen": s.observed_generation,
        "conditions": s.conditions.clone().unwrap_or_default(),
    })
}
