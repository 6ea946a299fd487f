//! `skiff-openapi`: the OpenAPI documents kubectl reads (`/openapi/v3`,
//! `/openapi/v3/<gv>`, `/openapi/v2`) and the patch metadata
//! (`x-kubernetes-patch-merge-key` and friends) that strategic merge patch and
//! server-side apply need, for built-in kinds and CRDs alike.
//!
//! [`OpenApi::build`] turns the resource definitions (built-ins carry a schemars
//! schema from k8s-openapi; CRD versions carry their `openAPIV3Schema`) into
//! serialized documents once; serving is a cheap clone of bytes, and
//! [`OpenApi::patch_schema`] answers field lookups from a precompiled graph.
//! The built-in patch metadata is a data table extracted from the upstream Go
//! type markers ([`builtin_field_meta`]).

mod components;
mod crd;
mod document;
mod hash;
mod patch_meta;
mod patch_meta_data;
mod patch_schema;
mod paths;
mod v2;
mod walk;

#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests;

pub use components::Gvk;
pub use crd::CrdEntry;
pub use document::{GroupVersionDoc, OpenApi};
pub use patch_meta::{builtin_field_meta, BuiltinFieldMeta};
