//! [`OpenApi`]: the served documents, built once from the resource definitions
//! (and rebuilt when CRDs change), kept serialized so serving is a clone of
//! [`Bytes`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::{json, Map, Value};
use skiff_patch::PatchSchema;
use skiff_resources::ResourceDef;

use crate::components::{self, closure, Gvk, Schemas, COMMON, SCALE};
use crate::crd::CrdEntry;
use crate::hash::content_hash;
use crate::patch_schema::{GraphBuilder, KindSchema};
use crate::paths::{resource_paths, Flavor, ResourceSchemas};
use crate::v2;

const INFO_TITLE: &str = "Kubernetes";
const INFO_VERSION: &str = "v1.33.0";

/// One serialized group-version document and its content hash.
#[derive(Debug, Clone)]
pub struct GroupVersionDoc {
    pub bytes: Bytes,
    /// Upper-case hex; the `hash` query parameter of the index URL.
    pub hash: String,
}

/// A resource as placed into the documents.
struct Served<'a> {
    def: &'a ResourceDef,
    kind_schema: String,
    list_schema: String,
    builtin: bool,
}

impl<'a> Served<'a> {
    fn crd(crd: &'a CrdEntry) -> Self {
        Served {
            def: &crd.resource,
            kind_schema: crd.schema_name(),
            list_schema: crd.list_schema_name(),
            builtin: false,
        }
    }
}

/// The part that depends only on the built-in kinds, shared by every rebuild.
struct BuiltinPart {
    defs: Vec<ResourceDef>,
    schemas: Schemas,
    kinds: BTreeMap<Gvk, (String, String)>,
    docs: BTreeMap<String, GroupVersionDoc>,
    patch_schemas: HashMap<Gvk, Arc<dyn PatchSchema>>,
}

impl BuiltinPart {
    /// The built-in resources for which `keep` holds, with their schema names.
    fn served(&self, keep: impl Fn(&ResourceDef) -> bool) -> Vec<Served<'_>> {
        self.defs
            .iter()
            .filter(|def| keep(def))
            .filter_map(|def| {
                let (kind_schema, list_schema) = self.kinds.get(&Gvk::of(def))?.clone();
                Some(Served {
                    def,
                    kind_schema,
                    list_schema,
                    builtin: true,
                })
            })
            .collect()
    }
}

/// The OpenAPI v3 index, per-group-version v3 documents, the Swagger 2.0
/// document and the patch schemas of every served kind.
///
/// Immutable once built; the API server swaps in a new one (see
/// [`OpenApi::with_crds`]) when CRDs change.
pub struct OpenApi {
    builtin: Arc<BuiltinPart>,
    crds: Vec<CrdEntry>,
    crd_schemas: Schemas,
    index: Value,
    index_bytes: Bytes,
    group_versions: BTreeMap<String, GroupVersionDoc>,
    /// Built on first request: kubectl only reads v2 when v3 fails.
    v2: OnceLock<Bytes>,
    patch_schemas: HashMap<Gvk, Arc<dyn PatchSchema>>,
}

impl std::fmt::Debug for OpenApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenApi")
            .field(
                "group_versions",
                &self.group_versions.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl OpenApi {
    /// Builds every document from the built-in definitions (those with a
    /// `schema`; others are skipped) and the served CRD versions.
    pub fn build(builtins: &[ResourceDef], crds: &[CrdEntry]) -> OpenApi {
        let defs: Vec<ResourceDef> = builtins
            .iter()
            .filter(|d| d.schema.is_some())
            .cloned()
            .collect();
        let components::Builtins { schemas, kinds } = components::builtins(&defs);
        let mut builtin = BuiltinPart {
            defs,
            schemas,
            kinds,
            docs: BTreeMap::new(),
            patch_schemas: HashMap::new(),
        };

        let lookup = |name: &str| builtin.schemas.get(name);
        let docs = group_documents(&builtin.served(|_| true), &lookup);
        let mut builder = GraphBuilder::new(&lookup);
        let roots: Vec<(Gvk, u32)> = builtin
            .kinds
            .iter()
            .filter_map(|(gvk, (name, _))| Some((gvk.clone(), builder.definition(name)?)))
            .collect();
        let graph = Arc::new(builder.finish());
        builtin.docs = docs;
        builtin.patch_schemas = roots
            .into_iter()
            .map(|(gvk, root)| {
                let schema: Arc<dyn PatchSchema> = Arc::new(KindSchema {
                    graph: graph.clone(),
                    root,
                });
                (gvk, schema)
            })
            .collect();
        Self::assemble(Arc::new(builtin), crds)
    }

    /// The same built-in documents with a new set of CRD versions; only the
    /// CRDs' group-versions are rebuilt.
    #[must_use]
    pub fn with_crds(&self, crds: &[CrdEntry]) -> OpenApi {
        Self::assemble(self.builtin.clone(), crds)
    }

    fn assemble(builtin: Arc<BuiltinPart>, crds: &[CrdEntry]) -> OpenApi {
        let mut crd_schemas = Schemas::new();
        for crd in crds {
            crd_schemas.extend(crd.component_schemas());
        }
        let lookup = |name: &str| crd_schemas.get(name).or_else(|| builtin.schemas.get(name));

        // Group-versions touched by a CRD are rebuilt with everything they serve.
        let crd_gvs: BTreeSet<String> = crds.iter().map(|c| gv_key(&c.resource)).collect();
        let mut served = builtin.served(|d| crd_gvs.contains(&gv_key(d)));
        served.extend(crds.iter().map(Served::crd));
        let mut group_versions = builtin.docs.clone();
        group_versions.extend(group_documents(&served, &lookup));

        let mut patch_schemas = builtin.patch_schemas.clone();
        for crd in crds {
            let mut builder = GraphBuilder::new(&lookup);
            if let Some(root) = builder.definition(&crd.schema_name()) {
                let graph = Arc::new(builder.finish());
                let schema: Arc<dyn PatchSchema> = Arc::new(KindSchema { graph, root });
                patch_schemas.insert(Gvk::of(&crd.resource), schema);
            }
        }

        let index = index_of(&group_versions);
        let index_bytes = Bytes::from(serde_json::to_vec(&index).unwrap_or_default());
        OpenApi {
            builtin,
            crds: crds.to_vec(),
            crd_schemas,
            index,
            index_bytes,
            group_versions,
            v2: OnceLock::new(),
            patch_schemas,
        }
    }

    /// The `/openapi/v3` index: `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=…"}, …}}`.
    pub fn v3_index(&self) -> Value {
        self.index.clone()
    }

    /// [`OpenApi::v3_index`], serialized.
    pub fn v3_index_bytes(&self) -> Bytes {
        self.index_bytes.clone()
    }

    /// The v3 document of one group-version, addressed as in the index (`api/v1`,
    /// `apis/apps/v1`; a leading `/` is ignored). `None` for unknown paths.
    pub fn v3_group_version(&self, path: &str) -> Option<GroupVersionDoc> {
        self.group_versions
            .get(path.trim_start_matches('/'))
            .cloned()
    }

    /// Index keys of every served group-version.
    pub fn group_versions(&self) -> impl Iterator<Item = &str> {
        self.group_versions.keys().map(String::as_str)
    }

    /// The Swagger 2.0 document (`/openapi/v2`, JSON), built on the first call.
    pub fn v2(&self) -> Bytes {
        self.v2
            .get_or_init(|| {
                let mut served = self.builtin.served(|_| true);
                served.extend(self.crds.iter().map(Served::crd));
                let doc = v2_document(&served, &self.builtin.schemas, &self.crd_schemas);
                Bytes::from(serde_json::to_vec(&doc).unwrap_or_default())
            })
            .clone()
    }

    /// Field metadata for strategic merge patch and server-side apply of a kind
    /// (built-ins, `autoscaling/v1` `Scale`, and CRD versions). `None` for unknown kinds.
    pub fn patch_schema(
        &self,
        group: &str,
        version: &str,
        kind: &str,
    ) -> Option<Arc<dyn PatchSchema>> {
        let gvk = Gvk {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
        };
        self.patch_schemas.get(&gvk).cloned()
    }
}

/// `api/v1` or `apis/<group>/<version>`.
fn gv_key(def: &ResourceDef) -> String {
    if def.group.is_empty() {
        format!("api/{}", def.version)
    } else {
        format!("apis/{}/{}", def.group, def.version)
    }
}

fn index_of(docs: &BTreeMap<String, GroupVersionDoc>) -> Value {
    let paths: Map<String, Value> = docs
        .iter()
        .map(|(key, doc)| {
            (
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", doc.hash)}),
            )
        })
        .collect();
    json!({ "paths": paths })
}

/// One serialized v3 document per group-version of `served`.
fn group_documents<'a>(
    served: &[Served<'_>],
    lookup: &dyn Fn(&str) -> Option<&'a Value>,
) -> BTreeMap<String, GroupVersionDoc> {
    let mut by_gv: BTreeMap<String, Vec<&Served<'_>>> = BTreeMap::new();
    for s in served {
        by_gv.entry(gv_key(s.def)).or_default().push(s);
    }
    by_gv
        .into_iter()
        .map(|(key, resources)| {
            let doc = v3_document(&resources, lookup);
            let bytes = serde_json::to_vec(&doc).unwrap_or_default();
            let hash = content_hash(&bytes);
            (
                key,
                GroupVersionDoc {
                    bytes: Bytes::from(bytes),
                    hash,
                },
            )
        })
        .collect()
}

fn v3_document<'a>(resources: &[&Served<'_>], lookup: &dyn Fn(&str) -> Option<&'a Value>) -> Value {
    let mut paths = BTreeMap::new();
    let mut roots: Vec<&str> = COMMON.to_vec();
    for s in resources {
        let names = ResourceSchemas {
            kind: &s.kind_schema,
            list: &s.list_schema,
            strategic_merge: s.builtin,
        };
        paths.extend(resource_paths(s.def, &names, Flavor::V3));
        roots.push(&s.kind_schema);
        roots.push(&s.list_schema);
        if s.def.scale.is_some() {
            roots.push(SCALE);
        }
    }
    let schemas: Map<String, Value> = closure(roots, lookup)
        .into_iter()
        .filter_map(|name| Some((name.clone(), lookup(&name)?.clone())))
        .collect();
    json!({
        "openapi": "3.0.0",
        "info": {"title": INFO_TITLE, "version": INFO_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

fn v2_document(served: &[Served<'_>], builtins: &Schemas, crds: &Schemas) -> Value {
    let mut paths = BTreeMap::new();
    for s in served {
        let names = ResourceSchemas {
            kind: &s.kind_schema,
            list: &s.list_schema,
            strategic_merge: s.builtin,
        };
        paths.extend(resource_paths(s.def, &names, Flavor::V2));
    }
    let definitions: Map<String, Value> = builtins
        .iter()
        .chain(crds.iter())
        .map(|(name, schema)| (name.clone(), v2::definition(name, schema)))
        .collect();
    json!({
        "swagger": "2.0",
        "info": {"title": INFO_TITLE, "version": INFO_VERSION},
        "paths": paths,
        "definitions": definitions,
    })
}
