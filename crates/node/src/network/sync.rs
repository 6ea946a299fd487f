//! The sync loop: Services, EndpointSlices and Endpoints from watch-fed
//! caches, turned into a [`Catalog`] and an nftables table whenever they
//! change (debounced), and again every resync period whether or not they
//! did. Level-triggered: every pass renders the whole table from the whole
//! cache, so a missed event or a table deleted behind our back heals on the
//! next pass.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::Api;
use skiff_client::cache::Cache;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::catalog::Catalog;
use super::route;
use super::rules::{self, RuleConfig};

/// How long changes are gathered before one re-render (an EndpointSlice
/// update usually comes with its Endpoints update right after).
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Retry backoff after a failed `nft` run.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How often to look for the bridge before it exists.
const BRIDGE_POLL: Duration = Duration::from_secs(2);
/// The most changes drained in one debounce window before rendering anyway.
const DRAIN_MAX: usize = 10_000;

/// Run until `shutdown`: keep the table and `catalog` in step with the API.
pub(crate) async fn run(
    client: kube::Client,
    rules_cfg: RuleConfig,
    resync: Duration,
    catalog: watch::Sender<Arc<Catalog>>,
    shutdown: CancellationToken,
) {
    let cfg = watcher::Config::default();
    let (services, s1) =
        Cache::<Service>::spawn(Api::all(client.clone()), cfg.clone(), shutdown.clone());
    let (slices, s2) =
        Cache::<EndpointSlice>::spawn(Api::all(client.clone()), cfg.clone(), shutdown.clone());
    let (endpoints, s3) = Cache::<Endpoints>::spawn(Api::all(client), cfg, shutdown.clone());
    let mut changes = futures::stream::select(
        s1.map(|_| ()),
        futures::stream::select(s2.map(|_| ()), s3.map(|_| ())),
    )
    .boxed();
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = async { services.wait_ready().await; slices.wait_ready().await; endpoints.wait_ready().await } => {}
    }
    tracing::info!(table = %rules_cfg.table, "service proxy caches ready");

    let mut applied: Option<String> = None;
    let mut backoff = RETRY_MIN;
    let mut next_resync = Instant::now() + resync;
    loop {
        let svcs = services.all();
        let sl = slices.all();
        let eps = endpoints.all();
        let cat = Catalog::build(
            svcs.iter().map(Arc::as_ref),
            sl.iter().map(Arc::as_ref),
            eps.iter().map(Arc::as_ref),
        );
        let script = rules::render(&rules_cfg, &cat);
        catalog.send_if_modified(|old| {
            let changed = **old != cat;
            if changed {
                *old = Arc::new(cat);
            }
            changed
        });
        let mut wait = resync;
        if applied.as_deref() != Some(script.as_str()) {
            match rules::apply(&script).await {
                Ok(()) => {
                    tracing::debug!(table = %rules_cfg.table, "service rules applied");
                    applied = Some(script);
                    backoff = RETRY_MIN;
                }
                Err(e) => {
                    tracing::warn!(error = %e, table = %rules_cfg.table, "applying service rules failed; retrying");
                    wait = backoff;
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
            }
        }
        // The route only once the rules are in, so the first cluster IP
        // packets routed into the bridge already meet them.
        if applied.is_some() {
            match route::ensure(&rules_cfg.bridge, rules_cfg.service_cidr).await {
                Ok(true) => {}
                // No bridge before the first pod: look again soon.
                Ok(false) => wait = wait.min(BRIDGE_POLL),
                Err(e) => {
                    tracing::warn!(error = %e, bridge = %rules_cfg.bridge, "routing the Service CIDR failed; retrying");
                    wait = wait.min(RETRY_MAX);
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {
                // The periodic pass re-applies even an unchanged table.
                if Instant::now() >= next_resync {
                    applied = None;
                    next_resync = Instant::now() + resync;
                }
                continue;
            }
            next = changes.next() => if next.is_none() { return },
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(DEBOUNCE) => {}
        }
        for _ in 0..DRAIN_MAX {
            match changes.next().now_or_never() {
                Some(Some(_)) => {}
                Some(None) => return,
                None => break,
            }
        }
    }
}
