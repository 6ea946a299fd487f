//! Shared server state handed to every handler.

use std::sync::{Arc, RwLock};

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
    openapi: RwLock<Option<Arc<OpenApiDocs>>>,
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
            openapi: RwLock::new(None),
        }
    }

    /// The OpenAPI documents for the current registry generation (rebuilt lazily
    /// after CRD changes).
    pub fn openapi(&self) -> Arc<OpenApiDocs> {
        let snap = self.rest.registry.snapshot();
        if let Ok(guard) = self.openapi.read() {
            if let Some(docs) = guard.as_ref().filter(|d| d.generation == snap.generation) {
                return docs.clone();
            }
        }
        let previous = self.openapi.read().ok().and_then(|g| g.clone());
        let docs = Arc::new(OpenApiDocs::build(
            &snap,
            previous.as_ref().map(|d| d.api()),
        ));
        if let Ok(mut guard) = self.openapi.write() {
            *guard = Some(docs.clone());
        }
        docs
    }

    /// Patch metadata for a kind (strategic merge patch, server-side apply).
    pub fn patch_schema(&self, res: &Resource) -> Arc<dyn PatchSchema> {
        self.openapi().patch_schema(res)
    }
}
