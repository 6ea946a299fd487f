//! Small helpers over typed objects: owner references, selectors, pod state.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::core::{Selector, SelectorExt};
use kube::{Resource, ResourceExt};

/// A controller owner reference to `owner` (controller and blockOwnerDeletion set).
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The owner reference marked `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether `meta` is controlled by the object with `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == uid)
}

/// Whether `selector` selects `labels`. An unparsable selector selects nothing.
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    match Selector::try_from(selector.clone()) {
        Ok(s) => s.matches(labels),
        Err(_) => false,
    }
}

/// The label-selector query string for `selector` (`a=b,c in (d)`), or `None`
/// if it cannot be expressed.
pub fn selector_string(selector: &LabelSelector) -> Option<String> {
    Selector::try_from(selector.clone())
        .ok()
        .map(|s| s.to_string())
}

/// `namespace/name` of an object.
pub fn key<K: Resource>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Whether the pod has finished (Succeeded or Failed).
pub fn pod_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// Active in the controllers' sense: not finished and not being deleted.
pub fn pod_active(pod: &Pod) -> bool {
    !pod_terminal(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// When the pod's Ready condition last became True, if it is True now.
pub fn pod_ready_since(pod: &Pod) -> Option<Timestamp> {
    let cond = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    if cond.status != "True" {
        return None;
    }
    Some(
        cond.last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::MIN),
    )
}

/// Whether the pod's Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod_ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now` (upstream's IsPodAvailable).
pub fn pod_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match pod_ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since
            .saturating_add(SignedDuration::from_secs(i64::from(min_ready_seconds)))
            .is_ok_and(|t| t <= now),
    }
}

/// A pod made from `template` for a controller: labels, annotations and spec
/// from the template, `generateName` (or `name`), the controller reference.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    name: PodName,
    owner: OwnerReference,
) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut meta = ObjectMeta {
        namespace: Some(namespace.to_string()),
        labels: tmeta.labels,
        annotations: tmeta.annotations,
        finalizers: tmeta.finalizers,
        owner_references: Some(vec![owner]),
        ..Default::default()
    };
    match name {
        PodName::Generate(prefix) => meta.generate_name = Some(prefix),
        PodName::Fixed(n) => meta.name = Some(n),
    }
    Pod {
        metadata: meta,
        spec: template.spec.clone(),
        status: None,
    }
}

/// How a controller names the pods it makes.
#[derive(Debug, Clone)]
pub enum PodName {
    /// `metadata.generateName` (the API server adds a random suffix).
    Generate(String),
    /// An exact name (StatefulSet ordinals).
    Fixed(String),
}

/// Replace `obj`'s owner references with `refs` (adopting or releasing it),
/// guarded by its uid and resourceVersion. `Ok(None)` when the object is gone
/// or changed meanwhile: the next sync decides again.
pub async fn set_owner_references<K>(
    api: &kube::Api<K>,
    obj: &K,
    refs: Vec<OwnerReference>,
) -> Result<Option<K>, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({
        "metadata": {"ownerReferences": refs, "resourceVersion": obj.resource_version(), "uid": obj.uid()}
    });
    match api
        .patch(
            &obj.name_any(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
    {
        Ok(o) => Ok(Some(o)),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(None),
        Err(e) => Err(e),
    }
}
