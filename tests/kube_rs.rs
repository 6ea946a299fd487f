//! kube-rs (`kube::Client` from the generated kubeconfig) against a real
//! server: typed CRUD and every patch type, errors, the runtime watcher, and
//! the Deployment scale subresource.

mod common;

use std::time::Duration;

use common::Server;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

async fn client(s: &Server) -> kube::Client {
    // Err means a provider is already installed (another test did it): fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = kube::config::Kubeconfig::read_from(&s.kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("config from kubeconfig");
    kube::Client::try_from(config).expect("client")
}

fn cm(name: &str, data: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"suite": "kube-rs"}}, "data": data}),
    )
    .expect("ConfigMap")
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}
            }
        }
    }))
    .expect("Deployment")
}

/// The API error of a failed call, as (code, reason).
fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> (u16, String) {
    match r {
        Err(kube::Error::Api(status)) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn data(c: &ConfigMap) -> Vec<(String, String)> {
    c.data.clone().unwrap_or_default().into_iter().collect()
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_configmap_crud_and_patches() {
    let s = Server::start();
    let c = client(&s).await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");

    let created = api
        .create(&PostParams::default(), &cm("c1", json!({"a": "1"})))
        .await
        .expect("create");
    assert!(
        created.metadata.uid.is_some() && created.metadata.resource_version.is_some(),
        "{created:?}"
    );
    let (code, reason) = api_error(
        api.create(&PostParams::default(), &cm("c1", json!({})))
            .await,
    );
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));

    let got = api.get("c1").await.expect("get");
    assert_eq!(data(&got), kv(&[("a", "1")]));
    assert!(
        api.get_opt("missing").await.expect("get_opt").is_none(),
        "get_opt of a missing object is None"
    );
    let (code, reason) = api_error(api.get("missing").await);
    assert_eq!((code, reason.as_str()), (404, "NotFound"));

    // replace, then a stale replace conflicts.
    let mut next = got.clone();
    next.data = Some([("a".to_string(), "2".to_string())].into());
    let replaced = api
        .replace("c1", &PostParams::default(), &next)
        .await
        .expect("replace");
    assert_eq!(data(&replaced), kv(&[("a", "2")]));
    let (code, reason) = api_error(api.replace("c1", &PostParams::default(), &next).await);
    assert_eq!(
        (code, reason.as_str()),
        (409, "Conflict"),
        "stale resourceVersion"
    );

    // Merge, strategic, JSON and apply patches.
    let p = api
        .patch(
            "c1",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"m": "merge", "a": null}})),
        )
        .await
        .expect("merge patch");
    assert_eq!(data(&p), kv(&[("m", "merge")]));
    let p = api
        .patch(
            "c1",
            &PatchParams::default(),
            &Patch::Strategic(json!({"data": {"s": "smp"}})),
        )
        .await
        .expect("strategic patch");
    assert_eq!(data(&p), kv(&[("m", "merge"), ("s", "smp")]));
    // The JSON-patch type comes from kube's json-patch dependency; let inference name it.
    let ops = serde_json::from_value(json!([{"op": "add", "path": "/data/j", "value": "json"}]))
        .expect("json patch ops");
    let p = api
        .patch("c1", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .expect("json patch");
    assert_eq!(data(&p), kv(&[("j", "json"), ("m", "merge"), ("s", "smp")]));
    let applied = api
        .patch(
            "c2",
            &PatchParams::apply("kube-rs-test"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c2"}, "data": {"x": "1"}})),
        )
        .await
        .expect("apply creates");
    assert_eq!(data(&applied), kv(&[("x", "1")]));
    let managers: Vec<String> = applied
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, ["kube-rs-test"]);
    // Another manager conflicts unless forced.
    let other = Patch::Apply(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c2"}, "data": {"x": "2"}}),
    );
    let (code, reason) = api_error(api.patch("c2", &PatchParams::apply("other"), &other).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    let forced = api
        .patch("c2", &PatchParams::apply("other").force(), &other)
        .await
        .expect("forced apply");
    assert_eq!(data(&forced), kv(&[("x", "2")]));

    // list with a label selector and pagination.
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("p{i}"), json!({})))
            .await
            .expect("create page item");
    }
    let all = api
        .list(&ListParams::default().labels("suite=kube-rs"))
        .await
        .expect("list");
    assert_eq!(
        all.items.len(),
        6,
        "c1 + p0..p4 carry the label (c2 does not)"
    );
    let mut names = Vec::new();
    let mut lp = ListParams::default().labels("suite=kube-rs").limit(2);
    for _ in 0..10 {
        let page = api.list(&lp).await.expect("page");
        assert!(page.items.len() <= 2);
        names.extend(page.items.iter().filter_map(|i| i.metadata.name.clone()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(
        names,
        ["c1", "p0", "p1", "p2", "p3", "p4"],
        "paged list in name order"
    );

    // delete, then deletecollection.
    api.delete("c1", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(api.get_opt("c1").await.expect("get_opt").is_none());
    let (code, _) = api_error(api.delete("c1", &DeleteParams::default()).await);
    assert_eq!(code, 404);
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("suite=kube-rs"),
    )
    .await
    .expect("deletecollection");
    let left = api
        .list(&ListParams::default().labels("suite=kube-rs"))
        .await
        .expect("list");
    assert!(
        left.items.is_empty(),
        "deletecollection left {:?}",
        left.items.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_deployment_crud_and_scale() {
    let s = Server::start();
    let c = client(&s).await;
    let api: Api<Deployment> = Api::namespaced(c, "default");
    let d = api
        .create(&PostParams::default(), &deployment("web", 2))
        .await
        .expect("create");
    let spec = d.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(d.metadata.generation, Some(1));
    assert_eq!(
        spec.strategy
            .as_ref()
            .and_then(|s| s.type_.clone())
            .as_deref(),
        Some("RollingUpdate"),
        "defaulted strategy"
    );

    let scale = api.get_scale("web").await.expect("get_scale");
    assert_eq!(scale.spec.as_ref().and_then(|s| s.replicas), Some(2));
    assert_eq!(
        scale
            .status
            .as_ref()
            .and_then(|s| s.selector.clone())
            .as_deref(),
        Some("app=web")
    );

    let scale = api
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .expect("patch_scale");
    assert_eq!(scale.spec.as_ref().and_then(|s| s.replicas), Some(5));
    let d = api.get("web").await.expect("get");
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(5));
    assert_eq!(d.metadata.generation, Some(2), "scaling bumps generation");

    // Scale to zero through the scale subresource.
    let scale = api
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .expect("scale to zero");
    assert_eq!(scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0), 0);

    // Strategic merge on containers keeps the existing one.
    let d = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "busybox"}]}}}})),
        )
        .await
        .expect("strategic");
    let names: Vec<String> = d
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers.into_iter().map(|c| c.name).collect())
        .unwrap_or_default();
    assert_eq!(names, ["side", "app"]);

    let (code, reason) = api_error(
        api.create(&PostParams::default(), &deployment("bad", -1))
            .await,
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));

    api.delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(api.get_opt("web").await.expect("get_opt").is_none());
}

/// The next watcher event, bounded in time.
async fn next<S>(stream: &mut S) -> watcher::Event<ConfigMap>
where
    S: futures::Stream<Item = Result<watcher::Event<ConfigMap>, watcher::Error>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(30), stream.try_next())
        .await
        .expect("watcher event within 30 s")
        .expect("watcher error")
        .expect("watcher stream ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_watcher_sees_init_then_changes() {
    let s = Server::start();
    let c = client(&s).await;
    s.create_ns("watched");
    let api: Api<ConfigMap> = Api::namespaced(c, "watched");
    api.create(&PostParams::default(), &cm("pre", json!({"v": "0"})))
        .await
        .expect("create pre");

    let mut stream = watcher(
        api.clone(),
        watcher::Config::default().labels("suite=kube-rs"),
    )
    .boxed();
    assert!(
        matches!(next(&mut stream).await, watcher::Event::Init),
        "first event is Init"
    );
    match next(&mut stream).await {
        watcher::Event::InitApply(o) => assert_eq!(o.metadata.name.as_deref(), Some("pre")),
        other => panic!("expected InitApply(pre), got {other:?}"),
    }
    assert!(
        matches!(next(&mut stream).await, watcher::Event::InitDone),
        "then InitDone"
    );

    api.create(&PostParams::default(), &cm("live", json!({"v": "1"})))
        .await
        .expect("create live");
    match next(&mut stream).await {
        watcher::Event::Apply(o) => {
            assert_eq!(o.metadata.name.as_deref(), Some("live"));
            assert_eq!(data(&o), kv(&[("v", "1")]));
        }
        other => panic!("expected Apply(live), got {other:?}"),
    }
    api.patch(
        "live",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .expect("patch");
    match next(&mut stream).await {
        watcher::Event::Apply(o) => assert_eq!(data(&o), kv(&[("v", "2")])),
        other => panic!("expected Apply(live v2), got {other:?}"),
    }
    api.delete("live", &DeleteParams::default())
        .await
        .expect("delete");
    match next(&mut stream).await {
        watcher::Event::Delete(o) => assert_eq!(o.metadata.name.as_deref(), Some("live")),
        other => panic!("expected Delete(live), got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_watch_from_list_resource_version() {
    let s = Server::start();
    let c = client(&s).await;
    let api: Api<ConfigMap> = Api::namespaced(c, "default");
    let list = api.list(&ListParams::default()).await.expect("list");
    let rv = list
        .metadata
        .resource_version
        .expect("list resourceVersion");
    api.create(&PostParams::default(), &cm("w", json!({})))
        .await
        .expect("create");
    api.delete("w", &DeleteParams::default())
        .await
        .expect("delete");
    let events: Vec<_> = api
        .watch(&kube::api::WatchParams::default().timeout(2), &rv)
        .await
        .expect("watch")
        .take(2)
        .try_collect()
        .await
        .expect("events");
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            kube::api::WatchEvent::Added(o) => {
                format!("ADDED {}", o.metadata.name.clone().unwrap_or_default())
            }
            kube::api::WatchEvent::Deleted(o) => {
                format!("DELETED {}", o.metadata.name.clone().unwrap_or_default())
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["ADDED w", "DELETED w"]);
}
