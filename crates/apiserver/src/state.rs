//! Shared server state handed to every handler.

use std::sync::Arc;

use skiff_patch::PatchSchema;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::openapi::OpenApiDocs;
use crate::registry::Resource;
use crate::rest::Rest;

pub struct ApiState {
    pub rest: Arc<Rest>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    /// `host:port` clients reach us at (for `/api`'s serverAddressByClientCIDRs).
    pub server_address: String,
}

impl ApiState {
    pub fn new(
        rest: Arc<Rest>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        server_address: String,
    ) -> Self {
        ApiState {
            rest,
            metrics,
            shutdown,
            server_address,
        }
    }

    /// The OpenAPI documents for the current registry generation.
    pub fn openapi(&self) -> Arc<OpenApiDocs> {
        self.rest.openapi()
    }

    /// Patch metadata for a kind (strategic merge patch, server-side apply).
    pub fn patch_schema(&self, res: &Resource) -> Arc<dyn PatchSchema> {
        self.rest.patch_schema(res)
    }
}
