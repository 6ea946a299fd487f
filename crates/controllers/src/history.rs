//! ControllerRevision history shared by the StatefulSet and DaemonSet
//! controllers (upstream pkg/controller/history, written afresh).
//!
//! Each distinct pod template of an owner is kept as a ControllerRevision
//! named `<owner>-<hash>`, labelled with the owner's template labels plus
//! `controller-revision-hash: <hash>`, controlled by the owner, numbered by
//! `revision`, and holding in `data` the strategic merge patch kubectl
//! applies on `rollout undo`: `{"spec":{"template":{…,"$patch":"replace"}}}`
//! with keys sorted (so kubectl's byte comparison in `rollout undo` can tell
//! that a revision is already current). A template that returns to an older
//! revision reuses it with a new number; a name collision with a different
//! template bumps the owner's `collisionCount`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Map, Value};
use skiff_client::objects;

use crate::runtime::Error;

/// The label naming a pod's (and a revision's) template hash.
pub const HASH_LABEL: &str = "controller-revision-hash";

/// How many names are tried before giving up on hash collisions.
const MAX_COLLISIONS: i32 = 64;

/// `value` with every object's keys in sorted order (Go's encoding/json
/// writes maps that way, and kubectl compares revision bytes).
pub fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            let mut out = Map::new();
            for (k, v) in sorted {
                out.insert(k.clone(), canonical(v));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// The revision `data` for `template`: a patch replacing `spec.template`.
pub fn template_data(template: &PodTemplateSpec) -> Result<Value, Error> {
    let mut t = serde_json::to_value(template)
        .map_err(|e| Error::Invalid(format!("encoding the pod template: {e}")))?;
    go_zero_values(&mut t);
    if let Value::Object(m) = &mut t {
        m.insert("$patch".into(), Value::from("replace"));
    }
    Ok(canonical(&serde_json::json!({ "spec": { "template": t } })))
}

/// Add `resources: {}` to every container, as Go's encoding/json writes that
/// zero-valued struct (upstream's revisions have it). Go also writes
/// `metadata.creationTimestamp: null`, but the API server drops nulls when
/// it stores the revision, so it is left out.
fn go_zero_values(template: &mut Value) {
    let Value::Object(t) = template else { return };
    let Some(Value::Object(spec)) = t.get_mut("spec") else {
        return;
    };
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs.iter_mut() {
                if let Value::Object(c) = c {
                    c.entry("resources")
                        .or_insert_with(|| Value::Object(Map::new()));
                }
            }
        }
    }
}

/// The pod template a revision holds (its `data` without `$patch`).
pub fn revision_template(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Value::Object(m) = &mut t {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// Whether `rev` holds the template whose data is `data`. Both sides go
/// through the typed template, so what the API server normalizes when it
/// stores a revision (nulls, empty objects) does not count as a difference.
pub fn revision_matches(rev: &ControllerRevision, data: &Value) -> bool {
    if rev.data.as_ref().is_some_and(|d| &d.0 == data) {
        return true;
    }
    revision_template(rev)
        .and_then(|t| template_data(&t).ok())
        .is_some_and(|d| &d == data)
}

/// The hash label of a revision.
pub fn revision_hash(rev: &ControllerRevision) -> Option<&str> {
    rev.metadata
        .labels
        .as_ref()?
        .get(HASH_LABEL)
        .map(String::as_str)
}

const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A short, name-safe hash of `data` salted with `collision_count`: FNV-1a
/// (32 bit) over the canonical JSON, written in decimal and mapped onto an
/// alphabet without vowels (so no words appear in names).
pub fn hash_data(data: &Value, collision_count: i32) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(canonical(data).to_string().as_bytes());
    if collision_count > 0 {
        feed(collision_count.to_string().as_bytes());
    }
    h.to_string()
        .bytes()
        .map(|b| char::from(SAFE[usize::from(b) % SAFE.len()]))
        .collect()
}

/// Revisions controlled by `owner` (with uid) among those its selector
/// selects, orphans adopted, sorted by revision number (then name).
pub async fn list<K: Resource<DynamicType = ()>>(
    client: &Client,
    owner: &K,
    selector: &LabelSelector,
) -> Result<Vec<ControllerRevision>, Error> {
    let ns = owner.namespace().unwrap_or_default();
    let uid = owner.uid().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let mut lp = ListParams::default();
    if let Some(s) = objects::selector_string(selector) {
        if !s.is_empty() {
            lp = lp.labels(&s);
        }
    }
    let mut revs = Vec::new();
    for r in api.list(&lp).await?.items {
        if objects::is_controlled_by(&r.metadata, &uid) {
            revs.push(r);
        } else if objects::controller_of(&r.metadata).is_none()
            && owner.meta().deletion_timestamp.is_none()
            && r.metadata.deletion_timestamp.is_none()
        {
            // An orphan the selector selects (its owner was deleted with
            // --cascade=orphan): adopt it, as upstream does.
            if let Some(adopted) = adopt(&api, &r, owner).await? {
                revs.push(adopted);
            }
        }
    }
    sort(&mut revs);
    Ok(revs)
}

async fn adopt<K: Resource<DynamicType = ()>>(
    api: &Api<ControllerRevision>,
    rev: &ControllerRevision,
    owner: &K,
) -> Result<Option<ControllerRevision>, Error> {
    let mut refs = rev.metadata.owner_references.clone().unwrap_or_default();
    refs.push(objects::controller_ref(owner));
    Ok(objects::set_owner_references(api, rev, refs).await?)
}

fn sort(revs: &mut [ControllerRevision]) {
    revs.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
}

/// The owner's history after making sure its current template has a revision.
#[derive(Debug)]
pub struct History {
    /// Every revision, sorted by number.
    pub revisions: Vec<ControllerRevision>,
    /// The revision of the current template (the newest number).
    pub update: ControllerRevision,
    /// The owner's collisionCount after this call.
    pub collision_count: i32,
}

/// Find or create the revision of `template` for `owner`, as upstream's
/// controllers do: an equal revision that is already the newest is used as
/// is; an equal older one is renumbered to be the newest; otherwise a new
/// revision is created (a name taken by a different template bumps the
/// collision count and tries again).
pub async fn ensure<K: Resource<DynamicType = ()>>(
    client: &Client,
    owner: &K,
    template: &PodTemplateSpec,
    mut revisions: Vec<ControllerRevision>,
    collision_count: i32,
) -> Result<History, Error> {
    let ns = owner.namespace().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let data = template_data(template)?;
    let max = revisions.iter().map(|r| r.revision).max().unwrap_or(0);
    let equal = revisions
        .iter()
        .filter(|r| revision_matches(r, &data))
        .max_by_key(|r| r.revision)
        .cloned();
    let mut cc = collision_count.max(0);
    let update = match equal {
        Some(r) if r.revision == max => r,
        Some(r) => renumber(&api, &r, max + 1).await?,
        None => loop {
            let hash = hash_data(&data, cc);
            let rev = new_revision(owner, template, &data, &hash, max + 1);
            match api.create(&PostParams::default(), &rev).await {
                Ok(created) => break created,
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let name = rev.name_any();
                    match api.get_opt(&name).await? {
                        Some(existing)
                            if revision_matches(&existing, &data)
                                && objects::is_controlled_by(
                                    &existing.metadata,
                                    &owner.uid().unwrap_or_default(),
                                ) =>
                        {
                            // Our own write that the list did not show yet.
                            break if existing.revision > max {
                                existing
                            } else {
                                renumber(&api, &existing, max + 1).await?
                            };
                        }
                        Some(_) => {
                            cc += 1;
                            if cc > collision_count.max(0) + MAX_COLLISIONS {
                                return Err(Error::Invalid(format!(
                                    "too many revision name collisions for {}",
                                    owner.name_any()
                                )));
                            }
                        }
                        None => {} // deleted in between: try the same name again
                    }
                }
                Err(e) => return Err(e.into()),
            }
        },
    };
    revisions.retain(|r| r.name_any() != update.name_any());
    revisions.push(update.clone());
    sort(&mut revisions);
    Ok(History {
        revisions,
        update,
        collision_count: cc,
    })
}

async fn renumber(
    api: &Api<ControllerRevision>,
    rev: &ControllerRevision,
    number: i64,
) -> Result<ControllerRevision, Error> {
    let patch = serde_json::json!({ "revision": number });
    Ok(api
        .patch(
            &rev.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?)
}

fn new_revision<K: Resource<DynamicType = ()>>(
    owner: &K,
    template: &PodTemplateSpec,
    data: &Value,
    hash: &str,
    number: i64,
) -> ControllerRevision {
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.into());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", owner.name_any())),
            namespace: owner.namespace(),
            labels: Some(labels),
            annotations: owner
                .annotations()
                .get("kubernetes.io/change-cause")
                .map(|c| BTreeMap::from([("kubernetes.io/change-cause".into(), c.clone())])),
            owner_references: Some(vec![objects::controller_ref(owner)]),
            ..Default::default()
        },
        data: Some(RawExtension(data.clone())),
        revision: number,
    }
}

/// Delete the oldest revisions that no live pod uses (and that are neither
/// `keep`-listed) beyond `limit` of them.
pub async fn truncate(
    client: &Client,
    namespace: &str,
    revisions: &[ControllerRevision],
    live: impl Fn(&ControllerRevision) -> bool,
    limit: i32,
) -> Result<(), Error> {
    let dead: Vec<&ControllerRevision> = revisions.iter().filter(|r| !live(r)).collect();
    let limit = usize::try_from(limit.max(0)).unwrap_or(0);
    if dead.len() <= limit {
        return Ok(());
    }
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
    for r in &dead[..dead.len() - limit] {
        let dp = DeleteParams {
            preconditions: r.uid().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&r.name_any(), &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn data_is_a_sorted_replace_patch_that_round_trips() {
        let t = template("nginx:1");
        let data = template_data(&t).expect("data");
        let text = data.to_string();
        assert!(text.starts_with(r#"{"spec":{"template":{"$patch":"replace","metadata":{"labels""#));
        assert!(text.contains(r#""name":"c","resources":{}}"#), "{text}");
        let rev = ControllerRevision {
            data: Some(RawExtension(data.clone())),
            ..Default::default()
        };
        let back = revision_template(&rev).expect("template");
        assert_eq!(template_data(&back).expect("data"), data);
        assert_eq!(
            back.spec.map(|s| s.containers[0].image.clone()),
            Some(Some("nginx:1".into()))
        );
    }

    #[test]
    fn stored_normalization_still_matches() {
        let data = template_data(&template("nginx:1")).expect("data");
        let mut stored = data.clone();
        // What a server may do: drop empty objects, reorder keys.
        if let Some(Value::Object(c)) = stored.pointer_mut("/spec/template/spec/containers/0") {
            c.remove("resources");
        }
        let rev = ControllerRevision {
            data: Some(RawExtension(stored)),
            ..Default::default()
        };
        assert!(revision_matches(&rev, &data));
        let other = template_data(&template("nginx:2")).expect("other");
        assert!(!revision_matches(&rev, &other));
    }

    #[test]
    fn hash_is_stable_safe_and_salted() {
        let a = template_data(&template("nginx:1")).expect("a");
        let b = template_data(&template("nginx:2")).expect("b");
        let h = hash_data(&a, 0);
        assert_eq!(h, hash_data(&a, 0));
        assert_ne!(h, hash_data(&b, 0));
        assert_ne!(h, hash_data(&a, 1));
        assert!(h.bytes().all(|c| SAFE.contains(&c)));
        assert!(!h.is_empty() && h.len() <= 10);
    }
}
