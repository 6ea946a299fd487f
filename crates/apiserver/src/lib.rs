//! `skiff-apiserver`: the Kubernetes-compatible HTTP API.
//!
//! Requests pass a stack of tower layers (panic catch, authentication, metrics;
//! see [`server::app`]) and reach one dispatcher that resolves a typed
//! [`request_info::RequestInfo`] and serves discovery, OpenAPI or the generic REST
//! verbs of [`rest::Rest`] over the revisioned store.

// `ApiError` carries the Status details by value; it is built at most once per
// request, so its size does not matter and boxing it would only add noise.
#![allow(clippy::result_large_err)]

pub mod auth;
mod binding;
mod body_limit;
mod bootstrap;
mod cluster_ip;
mod content;
mod crds;
mod discovery;
pub mod error;
mod handlers;
mod kubeconfig;
mod lifecycle;
mod managed;
pub mod metrics;
pub mod metrics_api;
pub mod object;
mod openapi;
mod patching;
pub mod pod_streams;
pub mod query;
mod raw;
pub mod registry;
pub mod request_info;
pub mod rest;
mod reviews;
pub mod sa_token;
mod scale;
mod selectors;
pub mod server;
mod sparse;
pub mod state;
mod store_metrics;
mod table;
mod timeout;
pub mod tls;
pub mod version;
mod watch;

pub use pod_streams::NodeConnector;
pub use server::{start, RunningServer, ServerConfig, ServerError};
