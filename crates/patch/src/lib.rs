//! `skiff-patch`: the patch flavours Kubernetes accepts, applied to JSON objects.
//!
//! - RFC 6902 JSON patch and RFC 7386 merge patch ([`json_patch`], [`merge_patch`]);
//! - strategic merge patch, driven by per-field metadata from a [`PatchSchema`];
//! - server-side apply with field managers and conflicts.

mod error;
mod schema;

pub use error::{Error, Result};
pub use schema::{FieldMeta, NoSchema, PatchSchema};
