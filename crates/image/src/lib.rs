//! skiff-image: a content-addressed OCI image store.
//!
//! [`ImageStore`] keeps blobs by digest, imports OCI layouts and
//! docker-archive tars ([`ImageStore::import`]), unpacks each layer once into
//! a directory that overlayfs can use as a lowerdir (whiteouts converted),
//! resolves references the way Kubernetes does, and garbage-collects what
//! no tag or running container uses. [`mount::plan_rootfs`] stacks an
//! image's layers into a container root filesystem (mounted by the OCI
//! runtime inside the container, or here); [`layers::read_file`] reads an
//! image's file without mounting it; [`build`] makes small
//! test images from host files.

pub mod build;
pub mod digest;
pub mod error;
mod import;
pub mod layers;
pub mod mount;
pub mod pull;
pub mod reference;
mod store;
pub mod unpack;

pub use digest::Digest;
pub use error::{Error, Result};
pub use store::{GcReport, Image, ImageStore};
