//! The controllers. Each one is a level-triggered, idempotent reconcile
//! function driven by kube-runtime's `Controller` (watch-fed caches that relist
//! on 410, a work queue that de-duplicates keys), with per-key exponential
//! backoff on errors ([`runtime::Backoff`]) and Events through
//! [`skiff_client::events::Recorder`]. [`run`] starts them all; the binary runs
//! it only while it holds the controller-manager Lease.

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
pub mod history;
pub mod hpa;
pub mod job;
pub mod nodelifecycle;
pub mod replicaset;
pub mod runtime;
pub mod scheduler;
pub mod serviceaccount;
pub mod statefulset;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use runtime::{Context, Error, Settings};

/// Run every controller until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let ctx = ctx.for_term(shutdown.clone());
    let tasks: Vec<tokio::task::JoinHandle<()>> = vec![
        tokio::spawn(scheduler::run(ctx.clone(), shutdown.clone())),
        tokio::spawn(replicaset::run(ctx.clone(), shutdown.clone())),
        tokio::spawn(hpa::run(ctx.clone(), shutdown.clone())),
        tokio::spawn(statefulset::run(ctx.clone(), shutdown.clone())),
        tokio::spawn(daemonset::run(ctx.clone(), shutdown.clone())),
        tokio::spawn(deployment::run(ctx.clone(), shutdown.clone())),
        tokio::spawn(job::run(ctx.clone(), shutdown.clone())),
        tokio::spawn(cronjob::run(ctx.clone(), shutdown.clone())),
        tokio::spawn(endpoints::run(ctx.clone(), shutdown.clone())),
        tokio::spawn(endpointslice::run(ctx.clone(), shutdown.clone())),
        tokio::spawn(nodelifecycle::run(ctx.clone(), shutdown.clone())),
        tokio::spawn(serviceaccount::run(ctx.clone(), shutdown.clone())),
    ];
    shutdown.cancelled().await;
    for t in tasks {
        let _ = t.await; // each returns once the token is cancelled
    }
}
