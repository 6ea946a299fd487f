//! Client-side plumbing shared by the controllers and the node agents.
//!
//! - [`in_process`]: a `kube::Client` that calls the API server's router in the
//!   same process (no socket, no TLS), with an identity injected as a header.
//! - [`events::Recorder`]: core/v1 Events with upstream-style aggregation, the
//!   ones `kubectl describe` shows.
//! - [`leader::LeaderElector`]: leader election on a coordination.k8s.io Lease,
//!   so that only one of several servers sharing a store runs controllers.
//! - [`expectations::Expectations`]: what a controller created or deleted and
//!   has not yet seen in its cache (so a lagging cache does not cause duplicates).
//! - [`objects`]: owner references, pod readiness and similar helpers.

pub mod cache;
pub mod events;
pub mod expectations;
pub mod leader;
pub mod metrics;
pub mod objects;

use std::convert::Infallible;

use http::{HeaderValue, Request, Response};
use tower::{Service, ServiceBuilder};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("invalid token for the in-process client")]
    Token,
}

/// A client whose requests go straight into `service` (the API server's router)
/// carrying `Authorization: Bearer <token>`.
pub fn in_process<S, B>(service: S, token: &str) -> Result<kube::Client, Error>
where
    S: Service<Request<kube::client::Body>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| Error::Token)?;
    let svc = ServiceBuilder::new()
        .map_request(move |mut req: Request<kube::client::Body>| {
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, value.clone());
            req
        })
        .service(service);
    Ok(kube::Client::new(svc, "default"))
}
