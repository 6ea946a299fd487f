//! `skiff-apiserver`: the Kubernetes-compatible HTTP API.
