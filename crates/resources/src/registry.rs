use std::sync::Arc;

use crate::Strategy;

/// Generates the OpenAPI schema of a built-in kind (via k8s-openapi's schemars impls).
pub type SchemaFn = fn(&mut schemars::SchemaGenerator) -> schemars::Schema;

/// Where the `scale` subresource reads and writes replicas, as JSON paths
/// (`.spec.replicas`), like CRD `subresources.scale`.
///
/// Built-in kinds (Deployment, ReplicaSet, StatefulSet) use `.spec.replicas`,
/// `.status.replicas` and `label_selector_path: Some(".status.selector")` for
/// uniformity with CRDs, but their status has no `selector` field: the server derives
/// `Scale.status.selector` from the structured `spec.selector`, e.g. with
/// [`crate::scale_selector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleSubresource {
    pub spec_replicas_path: String,
    pub status_replicas_path: String,
    pub label_selector_path: Option<String>,
}

/// One served resource (a group/version/resource) and its behaviour.
#[derive(Clone)]
pub struct ResourceDef {
    /// API group, `""` for core.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// `<Kind>List`.
    pub list_kind: String,
    /// Plural resource name used in URLs.
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    /// Verbs of the main resource: get, list, watch, create, update, patch, delete,
    /// deletecollection.
    pub verbs: Vec<String>,
    /// `status` subresource: the main resource ignores status changes, `/status`
    /// ignores everything but status.
    pub has_status: bool,
    pub scale: Option<ScaleSubresource>,
    /// Other subresource names served by handlers elsewhere (`log`, `exec`,
    /// `attach`, `portforward`, `binding`, `eviction`, `proxy`, `token`).
    pub extra_subresources: Vec<String>,
    /// `None` for dynamic kinds (CRDs): the API server takes their schema from the CRD.
    pub schema: Option<SchemaFn>,
    pub strategy: Arc<dyn Strategy>,
}

impl std::fmt::Debug for ResourceDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceDef")
            .field("group", &self.group)
            .field("version", &self.version)
            .field("kind", &self.kind)
            .field("plural", &self.plural)
            .finish_non_exhaustive()
    }
}

impl ResourceDef {
    /// `group/version`, or just `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// Every built-in kind skiff serves, each exactly once.
pub fn builtin_resources() -> Vec<ResourceDef> {
    crate::catalog::all()
}
