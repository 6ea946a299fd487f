//! `skiff-resources`: what the API server knows about each kind.
//!
//! A [`ResourceDef`] names a kind (group, version, kind, plural, singular, short
//! names, categories, scope, verbs, subresources) and carries its [`Strategy`]:
//! defaulting, validation, strict-field checking, table columns and the OpenAPI
//! schema. The API server's REST handlers are generic over these definitions, so
//! adding a kind means adding a definition, not handlers.

mod field_error;
mod registry;
mod strategy;
mod table;

pub use field_error::{ErrorType, FieldError};
pub use registry::{builtin_resources, ResourceDef, ScaleSubresource, SchemaFn};
pub use strategy::Strategy;
pub use table::{Column, Row};
