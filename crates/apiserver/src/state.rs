//! Shared server state handed to every handler.

use std::sync::{Arc, OnceLock, RwLock};

use skiff_patch::PatchSchema;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::openapi::OpenApiDocs;
use crate::pod_streams::NodeConnector;
use crate::registry::Resource;
use crate::rest::Rest;

pub struct ApiState {
    pub rest: Arc<Rest>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    /// `host:port` clients reach us at (for `/api`'s serverAddressByClientCIDRs).
    pub server_address: String,
    /// How `pods/log|exec|attach|portforward` reach nodes (none: every node
    /// is unreachable).
    node_connector: RwLock<Option<Arc<dyn NodeConnector>>>,
    /// Where `metrics.k8s.io` reads usage (none: the group is not served).
    metrics_provider: RwLock<Option<Arc<dyn crate::metrics_api::MetricsProvider>>>,
    /// Signs service account tokens (none: `serviceaccounts/token` is not served).
    token_signer: OnceLock<Arc<crate::sa_token::TokenSigner>>,
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
            node_connector: RwLock::new(None),
            metrics_provider: RwLock::new(None),
            token_signer: OnceLock::new(),
        }
    }

    /// Route the streaming pod subresources to nodes through `connector`.
    pub fn set_node_connector(&self, connector: Arc<dyn NodeConnector>) {
        if let Ok(mut c) = self.node_connector.write() {
            *c = Some(connector);
        }
    }

    /// The connector set by [`ApiState::set_node_connector`].
    pub fn node_connector(&self) -> Option<Arc<dyn NodeConnector>> {
        self.node_connector.read().ok().and_then(|c| c.clone())
    }

    /// Serve `metrics.k8s.io` (`kubectl top`) from `provider`.
    pub fn set_metrics_provider(&self, provider: Arc<dyn crate::metrics_api::MetricsProvider>) {
        if let Ok(mut p) = self.metrics_provider.write() {
            *p = Some(provider);
        }
    }

    /// The provider set by [`ApiState::set_metrics_provider`].
    pub fn metrics_provider(&self) -> Option<Arc<dyn crate::metrics_api::MetricsProvider>> {
        self.metrics_provider.read().ok().and_then(|p| p.clone())
    }

    /// Issue service account tokens with `signer` (set once, at start).
    pub fn set_token_signer(&self, signer: Arc<crate::sa_token::TokenSigner>) {
        let _ = self.token_signer.set(signer); // a second call keeps the first key
    }

    /// The signer set by [`ApiState::set_token_signer`].
    pub fn token_signer(&self) -> Option<&Arc<crate::sa_token::TokenSigner>> {
        self.token_signer.get()
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
