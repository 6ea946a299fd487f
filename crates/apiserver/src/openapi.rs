//! Serving the OpenAPI documents built by `skiff-openapi`. The built-in part is
//! built once; CRD changes rebuild only what they touch.

use std::sync::Arc;

use bytes::Bytes;
use skiff_openapi::{CrdEntry, OpenApi};
use skiff_patch::{NoSchema, PatchSchema};

use crate::registry::{Resource, Snapshot};

pub struct OpenApiDocs {
    pub generation: u64,
    api: OpenApi,
}

impl OpenApiDocs {
    /// The documents for `snap`; `base` (built-ins only) is reused when given.
    pub fn build(snap: &Snapshot, base: Option<&OpenApi>) -> Self {
        let all = snap.all();
        let crds: Vec<CrdEntry> = all
            .iter()
            .filter(|r| r.custom)
            .map(|r| CrdEntry {
                resource: r.def.clone(),
                schema: r.crd_schema.clone().unwrap_or(serde_json::Value::Null),
            })
            .collect();
        let api = match base {
            Some(b) => b.with_crds(&crds),
            None => {
                let builtins: Vec<skiff_resources::ResourceDef> = all
                    .iter()
                    .filter(|r| !r.custom)
                    .map(|r| r.def.clone())
                    .collect();
                OpenApi::build(&builtins, &crds)
            }
        };
        OpenApiDocs {
            generation: snap.generation,
            api,
        }
    }

    pub fn api(&self) -> &OpenApi {
        &self.api
    }

    pub fn v2_bytes(&self) -> Bytes {
        self.api.v2()
    }

    pub fn v3_index_bytes(&self) -> Bytes {
        self.api.v3_index_bytes()
    }

    /// `api/v1`, `apis/apps/v1`, ...
    pub fn v3_group_version_bytes(&self, gv: &str) -> Option<Bytes> {
        self.api.v3_group_version(gv).map(|d| d.bytes)
    }

    pub fn patch_schema(&self, res: &Resource) -> Arc<dyn PatchSchema> {
        self.api
            .patch_schema(&res.def.group, &res.def.version, &res.def.kind)
            .unwrap_or_else(|| Arc::new(NoSchema))
    }
}
