//! `skiff-resources`: what the API server knows about each kind.
//!
//! A [`ResourceDef`] names a kind (group, version, kind, plural, singular, short
//! names, categories, scope, verbs, subresources) and carries its [`Strategy`]:
//! defaulting, validation, strict-field checking, table columns and the OpenAPI
//! schema. The API server's REST handlers are generic over these definitions, so
//! adding a kind means adding a definition, not handlers.

mod catalog;
mod crd;
mod defaults;
mod field_error;
mod kinds;
mod normalize;
mod registry;
mod selector;
mod strategy;
mod table;
mod tables;
mod typed;
mod unknown_fields;
mod validation;

pub use crd::{crd_resource_defs, validate_crd, CrdStrategy, CrdVersion};
pub use field_error::{ErrorType, FieldError};
pub use registry::{builtin_resources, ResourceDef, ScaleSubresource, SchemaFn};
pub use selector::{label_selector_string, scale_selector};
pub use strategy::Strategy;
pub use table::{Column, Row};
pub use tables::human_duration;
/// A resource quantity (`250m`, `1.5Gi`, `2e3`) as a floating-point value in base units.
pub use validation::quantity::parse as parse_quantity;
