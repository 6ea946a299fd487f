//! `skiff-patch`: the patch flavours Kubernetes accepts, applied to JSON objects.
//!
//! - RFC 6902 JSON patch and RFC 7386 merge patch ([`json_patch`], [`merge_patch`]);
//! - strategic merge patch ([`strategic_merge_patch`]), driven by per-field
//!   metadata from a [`PatchSchema`];
//! - server-side apply with field managers and conflicts ([`apply`]).
//!
//! Everything here is a pure function on `serde_json::Value`.

pub mod apply;
mod error;
mod json;
mod merge;
mod schema;
mod strategic;

#[cfg(test)]
mod test_schema;

pub use apply::{apply, track_update, ApplyError, Conflict};
pub use error::{Error, Result};
pub use json::json_patch;
pub use merge::merge_patch;
pub use schema::{FieldMeta, NoSchema, PatchSchema};
pub use strategic::strategic_merge_patch;
