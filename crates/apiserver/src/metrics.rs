//! Prometheus metrics for `/metrics`, recorded by a middleware layer (handlers
//! contain no metrics code).

use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::request_info::{self, RequestInfo};
use crate::state::ApiState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: String,
    resource: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    verb: String,
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabel {
    resource: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    store: Option<Arc<skiff_store::StoreMetrics>>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    watches: Family<ResourceLabel, Gauge<i64, AtomicI64>>,
    watches_started: Family<ResourceLabel, Counter>,
    store_revision: Gauge<i64, AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let watches = Family::<ResourceLabel, Gauge<i64, AtomicI64>>::default();
        let watches_started = Family::<ResourceLabel, Counter>::default();
        let store_revision = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "skiff_apiserver_requests",
            "API requests by verb, resource and HTTP code",
            requests.clone(),
        );
        registry.register(
            "skiff_apiserver_request_duration_seconds",
            "API request latency by verb and resource (watch: until headers are sent)",
            latency.clone(),
        );
        registry.register(
            "skiff_apiserver_watches",
            "Open watch streams by resource",
            watches.clone(),
        );
        registry.register(
            "skiff_apiserver_watches_started",
            "Watch streams started by resource",
            watches_started.clone(),
        );
        registry.register(
            "skiff_store_revision",
            "Current store revision",
            store_revision.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            store: None,
            requests,
            latency,
            watches,
            watches_started,
            store_revision,
        }
    }

    /// Also expose the store's statement timings.
    #[must_use]
    pub fn with_store(mut self, store: Option<Arc<skiff_store::StoreMetrics>>) -> Self {
        self.store = store;
        self
    }

    pub fn watch_started(&self, resource: &str) {
        self.watches_started
            .get_or_create(&ResourceLabel {
                resource: resource.into(),
            })
            .inc();
    }

    /// Counts an open watch until dropped.
    pub fn watch_guard(self: &Arc<Self>, resource: &str) -> WatchGuard {
        let g = self
            .watches
            .get_or_create(&ResourceLabel {
                resource: resource.into(),
            })
            .clone();
        g.inc();
        WatchGuard(g)
    }

    pub async fn render(&self, state: &ApiState) -> Response {
        if let Ok(rev) = state.rest.store.current_revision().await {
            self.store_revision.set(rev.0 as i64);
        }
        let mut out = String::new();
        let ok = match self.registry.lock() {
            Ok(r) => prometheus_client::encoding::text::encode(&mut out, &r).is_ok(),
            Err(_) => false,
        };
        if !ok {
            return (StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed").into_response();
        }
        if let Some(store) = &self.store {
            let eof = out.rfind("# EOF").unwrap_or(out.len());
            let tail = out.split_off(eof);
            crate::store_metrics::encode(store, &mut out);
            out.push_str(&tail);
        }
        let mut r = (StatusCode::OK, out).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        r
    }
}

/// Decrements the open-watch gauge on drop.
pub struct WatchGuard(Gauge<i64, AtomicI64>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A bounded label for non-resource paths, so unknown URLs cannot grow the series.
fn non_resource_label(path: &str) -> &'static str {
    match path.trim_end_matches('/') {
        "/version" => "/version",
        "/healthz" | "/healthz/ping" => "/healthz",
        "/livez" | "/livez/ping" => "/livez",
        "/readyz" | "/readyz/ping" => "/readyz",
        "/metrics" => "/metrics",
        "/openapi/v2" => "/openapi/v2",
        "/openapi/v3" => "/openapi/v3",
        p if p.starts_with("/openapi/v3/") => "/openapi/v3/*",
        _ => "other",
    }
}

/// Middleware: resolve the request info once (handlers reuse it), time the
/// request, count it by verb/resource/code.
pub async fn layer(State(state): State<Arc<ApiState>>, mut req: Request, next: Next) -> Response {
    let info = request_info::resolve(req.method(), req.uri().path(), req.uri().query());
    let (verb, resource) = match &info {
        RequestInfo::Resource(r) => (r.verb.as_str().to_uppercase(), info.resource_label()),
        RequestInfo::NonResource { path } => (
            req.method().as_str().to_string(),
            non_resource_label(path).to_string(),
        ),
        other => (req.method().as_str().to_string(), other.resource_label()),
    };
    req.extensions_mut().insert(info);
    let start = Instant::now();
    let resp = next.run(req).await;
    let m = &state.metrics;
    m.latency
        .get_or_create(&LatencyLabels {
            verb: verb.clone(),
            resource: resource.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&RequestLabels {
            verb,
            resource,
            code: resp.status().as_u16().to_string(),
        })
        .inc();
    resp
}
