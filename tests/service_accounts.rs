//! The ServiceAccount controller and root-CA publisher end to end: every
//! namespace gets a `default` ServiceAccount and a `kube-root-ca.crt`
//! ConfigMap holding the cluster CA (the one the kubeconfig trusts), both put
//! back after deletion or edits, so `kubectl create token default` works
//! without creating anything by hand.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use base64::Engine;
use common::{wait_for, Server};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// The uid of ServiceAccount `default` in `ns`, once it exists.
fn wait_default_sa(s: &Server, ns: &str) -> String {
    wait_for(WAIT, &format!("sa default in {ns}"), || {
        let out = s.kubectl(&["get", "sa", "default", "-n", ns, "-o", "json"]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        v["metadata"]["uid"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| v.to_string())
    })
}

/// The CA the admin kubeconfig trusts (PEM).
fn kubeconfig_ca(s: &Server) -> String {
    let b64 = s.ok(&[
        "config",
        "view",
        "--raw",
        "-o",
        "jsonpath={.clusters[0].cluster.certificate-authority-data}",
    ]);
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .unwrap();
    String::from_utf8(raw).unwrap()
}

/// Wait until `kube-root-ca.crt` in `ns` holds exactly `ca`.
fn wait_root_ca(s: &Server, ns: &str, ca: &str) {
    wait_for(WAIT, &format!("kube-root-ca.crt in {ns}"), || {
        let out = s.kubectl(&["get", "cm", "kube-root-ca.crt", "-n", ns, "-o", "json"]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        let data = v["data"].as_object().cloned().unwrap_or_default();
        if data.len() == 1 && data.get("ca.crt").and_then(|c| c.as_str()) == Some(ca) {
            Ok(())
        } else {
            Err(v["data"].to_string())
        }
    });
}

#[test]
fn default_service_account_in_every_namespace_and_recreated() {
    let s = Server::start();
    wait_default_sa(&s, "default");
    wait_default_sa(&s, "kube-system");

    let ns = format!("sa-ctl-{}", std::process::id());
    s.create_ns(&ns);
    let first = wait_default_sa(&s, &ns);

    s.ok(&["delete", "sa", "default", "-n", &ns]);
    let second = wait_default_sa(&s, &ns);
    assert_ne!(first, second, "the service account was not recreated");

    // Deleting the namespace takes the service account away without the
    // controller fighting the deletion.
    s.ok(&["delete", "ns", &ns, "--wait=true", "--timeout=60s"]);
    let out = s.kubectl(&["get", "sa", "default", "-n", &ns]);
    assert!(!out.status.success(), "sa outlived its namespace");
}

#[test]
fn root_ca_configmap_published_and_restored() {
    let s = Server::start_with(&["--publish-root-ca"]);
    let ca = kubeconfig_ca(&s);
    assert!(ca.contains("BEGIN CERTIFICATE"), "{ca}");
    wait_root_ca(&s, "default", &ca);

    let ns = format!("rootca-{}", std::process::id());
    s.create_ns(&ns);
    wait_root_ca(&s, &ns, &ca);

    // Deleted: put back.
    s.ok(&["delete", "cm", "kube-root-ca.crt", "-n", &ns]);
    wait_root_ca(&s, &ns, &ca);

    // Edited: the data is restored.
    s.ok(&[
        "patch",
        "cm",
        "kube-root-ca.crt",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        &json!({"data": {"ca.crt": "tampered", "extra": "x"}}).to_string(),
    ]);
    wait_root_ca(&s, &ns, &ca);
}

#[test]
fn create_token_for_default_without_creating_it() {
    let s = Server::start();
    let ns = format!("tok-{}", std::process::id());
    s.create_ns(&ns);
    wait_default_sa(&s, &ns);
    let token = s.ok(&["create", "token", "default", "-n", &ns]);
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");
    let out = s
        .kubectl_cmd()
        .args(["--token", token, "auth", "whoami", "-o", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let who: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        who["status"]["userInfo"]["username"],
        format!("system:serviceaccount:{ns}:default")
    );
}
