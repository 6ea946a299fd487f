//! The served resources at this moment: built-ins plus the kinds of established
//! CRDs. Readers take a cheap snapshot (`Arc`); CRD changes swap in a new one.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use serde_json::Value;
use skiff_resources::ResourceDef;

/// One served group/version/resource.
#[derive(Debug, Clone)]
pub struct Resource {
    pub def: ResourceDef,
    /// The version objects of this resource are stored at (differs from
    /// `def.version` only for multi-version CRDs).
    pub storage_version: String,
    /// True for kinds served from a CustomResourceDefinition.
    pub custom: bool,
    /// For CRDs: the version's `openAPIV3Schema`.
    pub crd_schema: Option<Value>,
}

impl Resource {
    /// Is this the core (`""` group) resource `plural`?
    pub fn is_core(&self, plural: &str) -> bool {
        self.def.group.is_empty() && self.def.plural == plural
    }

    /// The store key prefix of the collection: `/registry/<group>/<plural>/`.
    pub fn collection_prefix(&self) -> String {
        let group = if self.def.group.is_empty() {
            "core"
        } else {
            self.def.group.as_str()
        };
        format!("/registry/{group}/{}/", self.def.plural)
    }
    /// The store key prefix for one namespace (or the whole collection when
    /// cluster-scoped or `namespace` is `None`).
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match (self.def.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{ns}/", self.collection_prefix()),
            _ => self.collection_prefix(),
        }
    }
    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.prefix(namespace))
    }
}

/// An immutable view of everything served.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Keyed by (group, version, plural).
    by_gvr: HashMap<(String, String, String), Arc<Resource>>,
    /// Group name → versions, preferred first; `""` is core.
    groups: BTreeMap<String, Vec<String>>,
    /// Group order as served in discovery (core first, then built-in order).
    group_order: Vec<String>,
    /// Bumped on every change (discovery and OpenAPI caches key on it).
    pub generation: u64,
}

impl Snapshot {
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Resource>> {
        self.by_gvr
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }
    /// The resource `group`/`plural` at its storage version (how the store keys it).
    pub fn stored(&self, group: &str, plural: &str) -> Option<Arc<Resource>> {
        let versions = self.groups.get(group)?;
        versions.iter().find_map(|v| {
            self.by_gvr
                .get(&(group.to_string(), v.clone(), plural.to_string()))
                .filter(|r| r.def.version == r.storage_version)
                .cloned()
        })
    }

    /// Find by group + kind at any version (storage version preferred).
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<Arc<Resource>> {
        let versions = self.groups.get(group)?;
        versions.iter().find_map(|v| {
            self.by_gvr
                .values()
                .find(|r| r.def.group == group && r.def.version == *v && r.def.kind == kind)
                .cloned()
        })
    }
    /// Find by group + version + kind.
    pub fn by_gvk(&self, group: &str, version: &str, kind: &str) -> Option<Arc<Resource>> {
        self.by_gvr
            .values()
            .find(|r| r.def.group == group && r.def.version == version && r.def.kind == kind)
            .cloned()
    }
    /// Groups in discovery order with their versions (preferred first).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        self.group_order
            .iter()
            .filter_map(|g| self.groups.get(g).map(|v| (g.clone(), v.clone())))
            .collect()
    }
    /// Resources of one group/version in registration order of plural names.
    pub fn resources(&self, group: &str, version: &str) -> Vec<Arc<Resource>> {
        let mut out: Vec<Arc<Resource>> = self
            .by_gvr
            .values()
            .filter(|r| r.def.group == group && r.def.version == version)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.def.plural.cmp(&b.def.plural));
        out
    }
    pub fn all(&self) -> Vec<Arc<Resource>> {
        let mut out: Vec<Arc<Resource>> = self.by_gvr.values().cloned().collect();
        out.sort_by(|a, b| {
            (&a.def.group, &a.def.version, &a.def.plural).cmp(&(
                &b.def.group,
                &b.def.version,
                &b.def.plural,
            ))
        });
        out
    }
}

/// The live registry.
#[derive(Debug)]
pub struct Registry {
    builtins: Vec<Resource>,
    current: RwLock<Arc<Snapshot>>,
}

impl Registry {
    pub fn new(builtins: Vec<ResourceDef>) -> Self {
        let builtins: Vec<Resource> = builtins
            .into_iter()
            .map(|def| Resource {
                storage_version: def.version.clone(),
                def,
                custom: false,
                crd_schema: None,
            })
            .collect();
        let snap = build(&builtins, &[], 1);
        Registry {
            builtins,
            current: RwLock::new(Arc::new(snap)),
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replace the set of custom resources (all established CRDs' served versions).
    pub fn set_custom(&self, custom: Vec<Resource>) {
        let mut guard = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let next = build(&self.builtins, &custom, guard.generation + 1);
        *guard = Arc::new(next);
    }
}

fn build(builtins: &[Resource], custom: &[Resource], generation: u64) -> Snapshot {
    let mut snap = Snapshot {
        generation,
        ..Default::default()
    };
    for r in builtins.iter().chain(custom.iter()) {
        let g = r.def.group.clone();
        if !snap.groups.contains_key(&g) {
            snap.group_order.push(g.clone());
        }
        let versions = snap.groups.entry(g).or_default();
        if !versions.contains(&r.def.version) {
            versions.push(r.def.version.clone());
        }
        snap.by_gvr.insert(
            (
                r.def.group.clone(),
                r.def.version.clone(),
                r.def.plural.clone(),
            ),
            Arc::new(r.clone()),
        );
    }
    // Preferred version first: the storage version for CRDs, else registration order
    // (built-ins register their preferred version first).
    for r in custom {
        if let Some(vs) = snap.groups.get_mut(&r.def.group) {
            if let Some(pos) = vs.iter().position(|v| *v == r.storage_version) {
                let v = vs.remove(pos);
                vs.insert(0, v);
            }
        }
    }
    snap
}
