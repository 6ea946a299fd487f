//! The API server's way to the nodes that run in its own process: a map from
//! node name to that node's [`super::router`], called as a tower service
//! (no socket; connection upgrades pass through the request extensions).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::Router;
use tower::ServiceExt;

/// Nodes reachable in this process, by name. Hand it to
/// [`skiff_apiserver::state::ApiState::set_node_connector`].
#[derive(Default)]
pub struct InProcessNodes {
    nodes: RwLock<HashMap<String, Router>>,
}

impl std::fmt::Debug for InProcessNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .nodes
            .read()
            .map(|n| n.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("InProcessNodes")
            .field("nodes", &names)
            .finish()
    }
}

impl InProcessNodes {
    pub fn new() -> Arc<InProcessNodes> {
        Arc::new(InProcessNodes::default())
    }

    /// Serve node `name`'s requests with `router` (usually
    /// [`super::router`] over the node's runtime). Replaces an earlier one.
    pub fn register(&self, name: &str, router: Router) {
        if let Ok(mut nodes) = self.nodes.write() {
            nodes.insert(name.to_string(), router);
        }
    }

    /// Forget node `name` (its requests then get "not reachable").
    pub fn remove(&self, name: &str) {
        if let Ok(mut nodes) = self.nodes.write() {
            nodes.remove(name);
        }
    }
}

#[async_trait::async_trait]
impl skiff_apiserver::NodeConnector for InProcessNodes {
    async fn forward(&self, node: &str, req: http::Request<Body>) -> Option<http::Response<Body>> {
        let router = self.nodes.read().ok()?.get(node).cloned()?;
        match router.oneshot(req).await {
            Ok(resp) => Some(resp),
            Err(never) => match never {},
        }
    }
}
