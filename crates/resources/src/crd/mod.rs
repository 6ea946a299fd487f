//! Serving CustomResourceDefinitions.
//!
//! [`crd_resource_defs`] turns a CRD (`apiextensions.k8s.io/v1` JSON) into one
//! [`crate::ResourceDef`] per served version, each carrying a [`CrdStrategy`] that
//! prunes, defaults, validates and prints custom resources from that version's
//! structural schema. [`validate_crd`] validates the CRD object itself.
//!
//! Not implemented: `x-kubernetes-validations` (CEL rules are ignored), conversion
//! webhooks (versions are served from the stored object as-is) and the
//! `x-kubernetes-map-type` / ratcheting rules.

mod columns;
mod default;
mod definition;
mod defs;
mod format;
mod jsonpath;
mod prune;
mod schema;
mod strategy;
mod structural;
mod validate;

#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests;

pub use definition::validate_crd;
pub use defs::{crd_resource_defs, CrdVersion};
pub use strategy::CrdStrategy;
