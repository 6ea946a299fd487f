//! The ServiceAccount controller and the root-CA publisher (upstream's
//! serviceaccount-controller and root-ca-cert-publisher), one reconcile per
//! namespace: every active namespace holds a ServiceAccount `default` and a
//! ConfigMap `kube-root-ca.crt` whose `ca.crt` is the cluster CA. Both are put
//! back when deleted; the ConfigMap's data is rewritten when it differs.
//! Namespaces being deleted are left alone.
//!
//! Pods are not given a `kube-api-access` projected volume here (upstream's
//! admission plugin does that); the node mounts such volumes when a pod names
//! one.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::runtime::{Backoff, Context, Error};

/// The ServiceAccount every namespace gets.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// The ConfigMap carrying the cluster CA in every namespace.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
/// Its key holding the PEM bundle.
pub const ROOT_CA_KEY: &str = "ca.crt";

struct State {
    ctx: Arc<Context>,
    backoff: Backoff,
}

/// Run until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let state = Arc::new(State {
        ctx,
        backoff: Backoff::default(),
    });
    let publish_root_ca = state.ctx.settings.root_ca.is_some();
    let mut controller = Controller::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<ServiceAccount>::all(client.clone()),
        watcher::Config::default(),
        |sa| namespace_of(&sa, DEFAULT_SERVICE_ACCOUNT),
    );
    if publish_root_ca {
        controller = controller.watches(
            Api::<ConfigMap>::all(client),
            watcher::Config::default().fields(&format!("metadata.name={ROOT_CA_CONFIGMAP}")),
            |cm| namespace_of(&cm, ROOT_CA_CONFIGMAP),
        );
    }
    controller
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, state)
        .for_each(|_| async {})
        .await;
}

/// The namespace to reconcile when an object named `name` changes.
fn namespace_of<K: ResourceExt>(obj: &K, name: &str) -> Option<ObjectRef<Namespace>> {
    if obj.name_any() != name {
        return None;
    }
    obj.namespace().map(|ns| ObjectRef::new(&ns))
}

/// Whether the namespace is being deleted (nothing may be created in it).
fn terminating(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        || ns
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Terminating")
}

async fn reconcile(ns: Arc<Namespace>, st: Arc<State>) -> Result<Action, Error> {
    if terminating(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    ensure_service_account(&st.ctx, &name).await?;
    if let Some(ca) = st.ctx.settings.root_ca.as_deref() {
        ensure_root_ca(&st.ctx, &name, ca).await?;
    }
    st.backoff.reset(&name);
    Ok(Action::await_change())
}

/// Whether a write failed only because the namespace is going away (or
/// someone else created the object first); the next event settles it.
fn benign(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409
        || (s.code == 403 && s.reason == "Forbidden" && s.message.contains("terminat"))
        || s.code == 404)
}

async fn ensure_service_account(ctx: &Context, namespace: &str) -> Result<(), Error> {
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), namespace);
    if api.get_opt(DEFAULT_SERVICE_ACCOUNT).await?.is_some() {
        return Ok(());
    }
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT_SERVICE_ACCOUNT.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => {
            tracing::debug!(%namespace, "created the default service account");
            Ok(())
        }
        Err(e) if benign(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn ensure_root_ca(ctx: &Context, namespace: &str, ca: &str) -> Result<(), Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let data = BTreeMap::from([(ROOT_CA_KEY.to_string(), ca.to_string())]);
    let result = match api.get_opt(ROOT_CA_CONFIGMAP).await? {
        Some(cm) if cm.data.as_ref() == Some(&data) && cm.binary_data.is_none() => return Ok(()),
        Some(mut cm) => {
            // Upstream replaces the data wholesale; the object's metadata
            // (labels, annotations, resourceVersion) stays.
            cm.data = Some(data);
            cm.binary_data = None;
            api.replace(ROOT_CA_CONFIGMAP, &PostParams::default(), &cm)
                .await
        }
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(ROOT_CA_CONFIGMAP.into()),
                    namespace: Some(namespace.into()),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            api.create(&PostParams::default(), &cm).await
        }
    };
    match result {
        Ok(_) => Ok(()),
        // A conflict means it changed under us: the watch event brings it back.
        Err(e) if benign(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn error_policy(ns: Arc<Namespace>, err: &Error, st: Arc<State>) -> Action {
    let name = ns.name_any();
    tracing::debug!(namespace = %name, error = %err, "service account sync failed");
    st.backoff.requeue(&name)
}
