//! The lifecycle index: every object's identity, owners and deletion state, by
//! uid and by store key, with the reverse owner → dependents edges.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;
use skiff_store::KeyValue;

use crate::registry::{Resource, Snapshot};

#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    metadata: MetaHead,
    #[serde(default)]
    spec: Option<SpecHead>,
}

/// Everything but `metadata` is skipped (custom resources' `spec` can be any shape).
#[derive(Deserialize)]
struct MetaOnly {
    #[serde(default)]
    metadata: MetaHead,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct MetaHead {
    uid: Option<String>,
    #[serde(default)]
    owner_references: Vec<OwnerHead>,
    #[serde(default)]
    finalizers: Vec<String>,
    deletion_timestamp: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnerHead {
    uid: Option<String>,
    block_owner_deletion: Option<bool>,
}

#[derive(Deserialize)]
struct SpecHead {
    #[serde(default)]
    finalizers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct OwnerRef {
    pub uid: String,
    /// `blockOwnerDeletion`: a foreground-deleting owner waits for this dependent.
    pub block: bool,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub key: String,
    pub res: Arc<Resource>,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub owners: Vec<OwnerRef>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
    pub is_namespace: bool,
    /// A deleting namespace that still has the `kubernetes` spec finalizer.
    pub namespace_finalizing: bool,
}

#[derive(Debug, Default)]
pub struct Index {
    nodes: HashMap<String, Node>,
    by_key: HashMap<String, String>,
    dependents: HashMap<String, HashSet<String>>,
    namespaces: HashMap<String, String>,
    per_namespace: HashMap<String, usize>,
}

/// `/registry/<group>/<plural>/[<ns>/]<name>` → the served resource at its
/// storage version, plus namespace and name.
fn locate(snap: &Snapshot, key: &str) -> Option<(Arc<Resource>, Option<String>, String)> {
    let rest = key.strip_prefix("/registry/")?;
    let mut parts = rest.splitn(3, '/');
    let group = parts.next()?;
    let plural = parts.next()?;
    let tail = parts.next()?;
    let group = if group == "core" { "" } else { group };
    let res = snap.stored(group, plural)?;
    if res.def.namespaced {
        let (ns, name) = tail.split_once('/')?;
        Some((res, Some(ns.to_string()), name.to_string()))
    } else {
        Some((res, None, tail.to_string()))
    }
}

impl Index {
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn dependents(&self, uid: &str) -> Vec<String> {
        self.dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn namespace_uid(&self, ns: Option<&str>) -> Option<String> {
        self.namespaces.get(ns?).cloned()
    }

    pub fn count_in_namespace(&self, ns: &str) -> usize {
        self.per_namespace.get(ns).copied().unwrap_or(0)
    }

    /// Insert or replace the object at `kv.key`; returns its uid.
    pub fn put(&mut self, snap: &Snapshot, kv: &KeyValue) -> Option<String> {
        let (res, namespace, name) = locate(snap, &kv.key)?;
        // Only the metadata (and a namespace's spec.finalizers) matter here; the
        // rest of the object is skipped without being built.
        let is_namespace = res.is_core("namespaces");
        let head: Head = if is_namespace {
            serde_json::from_slice(&kv.value).ok()?
        } else {
            let h: MetaOnly = serde_json::from_slice(&kv.value).ok()?;
            Head {
                metadata: h.metadata,
                spec: None,
            }
        };
        let uid = head.metadata.uid?;
        self.remove(&kv.key);
        let owners: Vec<OwnerRef> = head
            .metadata
            .owner_references
            .into_iter()
            .filter_map(|r| {
                Some(OwnerRef {
                    uid: r.uid?,
                    block: r.block_owner_deletion.unwrap_or(false),
                })
            })
            .collect();
        let finalizers = head.metadata.finalizers;
        let deleting = head.metadata.deletion_timestamp.is_some();
        let namespace_finalizing = is_namespace
            && deleting
            && head
                .spec
                .is_some_and(|s| s.finalizers.iter().any(|f| f == "kubernetes"));
        for o in &owners {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(uid.clone());
        }
        if is_namespace {
            self.namespaces.insert(name.clone(), uid.clone());
        }
        if let Some(ns) = &namespace {
            *self.per_namespace.entry(ns.clone()).or_default() += 1;
        }
        self.by_key.insert(kv.key.clone(), uid.clone());
        self.nodes.insert(
            uid.clone(),
            Node {
                key: kv.key.clone(),
                res,
                namespace,
                name,
                uid: uid.clone(),
                owners,
                deleting,
                finalizers,
                is_namespace,
                namespace_finalizing,
            },
        );
        Some(uid)
    }

    /// Forget the object at `key`; returns what it was.
    pub fn remove(&mut self, key: &str) -> Option<Node> {
        let uid = self.by_key.remove(key)?;
        let node = self.nodes.remove(&uid)?;
        for o in &node.owners {
            if let Some(set) = self.dependents.get_mut(&o.uid) {
                set.remove(&uid);
                if set.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
        }
        if node.is_namespace && self.namespaces.get(&node.name) == Some(&uid) {
            self.namespaces.remove(&node.name);
        }
        if let Some(ns) = &node.namespace {
            if let Some(n) = self.per_namespace.get_mut(ns) {
                *n = n.saturating_sub(1);
            }
        }
        Some(node)
    }
}
