//! Service account tokens end to end: `kubectl create token` (the
//! `serviceaccounts/<name>/token` subresource) gives a JWT the server accepts as
//! a bearer token for the service account, and refuses once the token expired,
//! was altered, names another audience, or its service account or bound pod is
//! gone. Bad TokenRequests are refused with the field named.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use common::{Endpoint, Server};
use serde_json::{json, Value};
use skiff_apiserver::sa_token::{Claims, ObjectRef, TokenSigner, DEFAULT_ISSUER};

/// Create (or keep) a ServiceAccount; `kubectl apply` so a server that makes
/// `default` itself does not fail the test.
fn service_account(s: &Server, ns: &str, name: &str) -> String {
    s.ok_stdin(
        &["apply", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}}).to_string(),
    );
    s.get_json(&["sa", name, "-n", ns])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string()
}

fn create_token(s: &Server, args: &[&str]) -> String {
    let mut all = vec!["create", "token"];
    all.extend_from_slice(args);
    let t = s.ok(&all).trim().to_string();
    assert_eq!(t.split('.').count(), 3, "not a JWT: {t}");
    t
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

/// `kubectl --token <token> <args>`: the admin credentials of the kubeconfig are
/// replaced by the token.
fn as_token(s: &Server, token: &str, args: &[&str]) -> std::process::Output {
    let mut c = s.kubectl_cmd();
    c.arg("--token").arg(token).args(args);
    c.output().unwrap()
}

fn whoami(s: &Server, token: &str) -> Value {
    let out = as_token(s, token, &["auth", "whoami", "-o", "json"]);
    assert!(
        out.status.success(),
        "whoami failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The status code of `GET /api/v1/namespaces/default/pods` with `token`.
fn code_with(s: &Server, token: &str) -> u16 {
    let ep = Endpoint {
        token: token.to_string(),
        ..s.endpoint()
    };
    ep.curl_full("GET", "/api/v1/namespaces/default/pods", &[], None, None)
        .code
}

#[track_caller]
fn assert_unauthorized(s: &Server, token: &str) {
    assert_eq!(code_with(s, token), 401);
    let out = as_token(s, token, &["get", "pods"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Unauthorized"), "{err}");
}

#[test]
fn create_token_authenticates_as_the_service_account() {
    let s = Server::start();
    let uid = service_account(&s, "default", "default");
    let token = create_token(&s, &["default"]);

    let me = whoami(&s, &token);
    let info = &me["status"]["userInfo"];
    assert_eq!(info["username"], "system:serviceaccount:default:default");
    assert_eq!(info["uid"], uid.as_str());
    assert_eq!(
        info["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ])
    );
    let out = as_token(&s, &token, &["get", "pods", "-A"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(code_with(&s, &token), 200);

    // Upstream's claims, the API audience when none was asked for, an hour.
    let c = payload(&token);
    assert_eq!(c["iss"], DEFAULT_ISSUER);
    assert_eq!(c["aud"], json!([DEFAULT_ISSUER]));
    assert_eq!(c["sub"], "system:serviceaccount:default:default");
    assert_eq!(c["kubernetes.io"]["namespace"], "default");
    assert_eq!(c["kubernetes.io"]["serviceaccount"]["name"], "default");
    assert_eq!(c["kubernetes.io"]["serviceaccount"]["uid"], uid.as_str());
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );

    // A chosen lifetime and audience: the token is for someone else, so the
    // API server refuses it.
    s.create_ns("team");
    service_account(&s, "team", "builder");
    let vault = create_token(
        &s,
        &[
            "builder",
            "-n",
            "team",
            "--audience",
            "vault",
            "--duration",
            "20m",
        ],
    );
    let c = payload(&vault);
    assert_eq!(c["aud"], json!(["vault"]));
    assert_eq!(c["sub"], "system:serviceaccount:team:builder");
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        1200
    );
    assert_unauthorized(&s, &vault);
    // Asking for the API audience among others is accepted.
    let both = create_token(
        &s,
        &[
            "builder",
            "-n",
            "team",
            "--audience",
            "vault",
            "--audience",
            DEFAULT_ISSUER,
        ],
    );
    assert_eq!(
        whoami(&s, &both)["status"]["userInfo"]["username"],
        "system:serviceaccount:team:builder"
    );

    // The full TokenRequest comes back with -o json.
    let tr: Value =
        serde_json::from_str(&s.ok(&["create", "token", "default", "-o", "json"])).unwrap();
    assert_eq!(tr["kind"], "TokenRequest");
    assert_eq!(tr["spec"]["expirationSeconds"], 3600);
    assert!(tr["status"]["expirationTimestamp"]
        .as_str()
        .unwrap()
        .ends_with('Z'));

    // The issuer discovery documents publish the signing key.
    let (code, conf) = s.curl_json("GET", "/.well-known/openid-configuration", None);
    assert_eq!(code, 200);
    assert_eq!(conf["issuer"], DEFAULT_ISSUER);
    let (code, jwks) = s.curl_json("GET", "/openid/v1/jwks", None);
    assert_eq!(code, 200);
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
}

#[test]
fn tokens_of_deleted_service_accounts_and_pods_are_refused() {
    // A fake node runs the pod, so the token also names its node.
    let s = Server::start_with(&["--fake-nodes", "1"]);
    service_account(&s, "default", "runner");
    let token = create_token(&s, &["runner"]);
    assert_eq!(code_with(&s, &token), 200);
    s.ok(&["delete", "sa", "runner"]);
    assert_unauthorized(&s, &token);
    // A new service account of the same name is another identity.
    service_account(&s, "default", "runner");
    assert_unauthorized(&s, &token);

    // Bound to a pod: valid while that pod exists.
    s.ok_stdin(
        &["create", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "worker", "namespace": "default"},
            "spec": {"serviceAccountName": "runner", "containers": [{"name": "c", "image": "busybox"}]}})
        .to_string(),
    );
    let pod = common::wait_for(
        std::time::Duration::from_secs(30),
        "pod worker scheduled",
        || {
            let pod = s.get_json(&["pod", "worker"]);
            if pod["spec"]["nodeName"].is_string() {
                Ok(pod)
            } else {
                Err(pod["status"].to_string())
            }
        },
    );
    let pod_uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let node = pod["spec"]["nodeName"].as_str().unwrap();
    let node_uid = s.get_json(&["node", node])["metadata"]["uid"].clone();
    let bound = create_token(
        &s,
        &[
            "runner",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "worker",
        ],
    );
    let c = payload(&bound);
    assert_eq!(c["kubernetes.io"]["pod"]["name"], "worker");
    assert_eq!(c["kubernetes.io"]["pod"]["uid"], pod_uid.as_str());
    assert_eq!(c["kubernetes.io"]["node"]["name"], node);
    assert_eq!(c["kubernetes.io"]["node"]["uid"], node_uid);
    assert_eq!(
        whoami(&s, &bound)["status"]["userInfo"]["username"],
        "system:serviceaccount:default:runner"
    );
    s.ok(&["delete", "pod", "worker", "--grace-period=0", "--force"]);
    common::wait_for(
        std::time::Duration::from_secs(30),
        "pod worker gone",
        || {
            let out = s.kubectl(&["get", "pod", "worker"]);
            if out.status.success() {
                Err("still there".into())
            } else {
                Ok(())
            }
        },
    );
    assert_unauthorized(&s, &bound);

    // A pod running as another service account cannot carry this one's token.
    s.ok_stdin(
        &["create", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "other", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
        .to_string(),
    );
    let err = s.fails(&[
        "create",
        "token",
        "runner",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "other",
    ]);
    assert!(
        err.contains("cannot bind token for serviceaccount \"runner\" to pod running with different serviceaccount name"),
        "{err}"
    );
    let err = s.fails(&[
        "create",
        "token",
        "runner",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "nope",
    ]);
    assert!(err.contains("pods \"nope\" not found"), "{err}");
    // Secrets bind too, and a secret's token dies with the secret.
    s.ok(&["create", "secret", "generic", "vault", "--from-literal=a=b"]);
    let secret_bound = create_token(
        &s,
        &[
            "runner",
            "--bound-object-kind",
            "Secret",
            "--bound-object-name",
            "vault",
        ],
    );
    assert_eq!(code_with(&s, &secret_bound), 200);
    s.ok(&["delete", "secret", "vault"]);
    assert_unauthorized(&s, &secret_bound);
}

#[test]
fn expired_and_tampered_tokens_are_refused() {
    let s = Server::start();
    let uid = service_account(&s, "default", "default");
    let token = create_token(&s, &["default"]);
    assert_eq!(code_with(&s, &token), 200);

    // Signed with the server's own key (read from its data dir), so only the
    // lifetime differs from a token it would accept.
    let signer = TokenSigner::load_or_create(s.dir.path()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let minted = |start: i64| {
        let c = Claims::new(
            DEFAULT_ISSUER,
            vec![DEFAULT_ISSUER.to_string()],
            "default",
            "default",
            &uid,
            start,
            600,
        );
        signer.sign(&c).unwrap()
    };
    assert_eq!(
        code_with(&s, &minted(now)),
        200,
        "a fresh token is accepted"
    );
    assert_unauthorized(&s, &minted(now - 3600));

    // A token for a pod uid that never existed.
    let mut c = Claims::new(
        DEFAULT_ISSUER,
        vec![DEFAULT_ISSUER.to_string()],
        "default",
        "default",
        &uid,
        now,
        600,
    );
    c.kubernetes.pod = Some(ObjectRef {
        name: "ghost".into(),
        uid: "0000".into(),
    });
    assert_unauthorized(&s, &signer.sign(&c).unwrap());

    // Altered signature; payload swapped for another service account's.
    let parts: Vec<&str> = token.split('.').collect();
    let mut sig = parts[2].to_string();
    let last = if sig.ends_with('A') { "B" } else { "A" };
    sig.replace_range(sig.len() - 1.., last);
    assert_unauthorized(&s, &format!("{}.{}.{}", parts[0], parts[1], sig));
    service_account(&s, "kube-system", "admin");
    let other = create_token(&s, &["admin", "-n", "kube-system"]);
    let other_payload = other.split('.').nth(1).unwrap();
    assert_unauthorized(&s, &format!("{}.{}.{}", parts[0], other_payload, parts[2]));
    // Not a token at all.
    assert_unauthorized(&s, "a.b.c");

    // The signing key lives in the data dir: tokens survive a restart.
    let mut s = s;
    s.restart();
    assert_eq!(code_with(&s, &token), 200);
}

#[test]
fn bad_token_requests_name_the_field() {
    let s = Server::start();
    let sa_uid = service_account(&s, "default", "default");
    let path = "/api/v1/namespaces/default/serviceaccounts/default/token";
    let request = |spec: Value| json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
    let field_of = |v: &Value| v["details"]["causes"][0]["field"].clone();

    let (code, st) = s.curl_json(
        "POST",
        path,
        Some(&request(json!({"expirationSeconds": 60}))),
    );
    assert_eq!(code, 422, "{st}");
    assert_eq!(field_of(&st), "spec.expirationSeconds");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("may not specify a duration less than 10 minutes"),
        "{st}"
    );
    let (code, st) = s.curl_json(
        "POST",
        path,
        Some(&request(json!({"expirationSeconds": (1i64 << 32) + 1}))),
    );
    assert_eq!(code, 422, "{st}");
    assert_eq!(field_of(&st), "spec.expirationSeconds");

    let mut named = request(json!({}));
    named["metadata"] = json!({"name": "someone-else"});
    let (code, st) = s.curl_json("POST", path, Some(&named));
    assert_eq!(code, 422, "{st}");
    assert_eq!(field_of(&st), "metadata.name");

    let (code, st) = s.curl_json(
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/ghost/token",
        Some(&request(json!({}))),
    );
    assert_eq!(code, 404, "{st}");
    assert_eq!(st["message"], "serviceaccounts \"ghost\" not found");

    let (code, st) = s.curl_json(
        "POST",
        path,
        Some(&request(
            json!({"boundObjectRef": {"apiVersion": "v1", "kind": "ConfigMap", "name": "x"}}),
        )),
    );
    assert_eq!(code, 400, "{st}");
    assert_eq!(
        st["message"],
        "cannot bind token to object of type /v1, Kind=ConfigMap"
    );

    s.ok(&["create", "secret", "generic", "held", "--from-literal=a=b"]);
    let (code, st) = s.curl_json(
        "POST",
        path,
        Some(&request(json!({"boundObjectRef":
            {"apiVersion": "v1", "kind": "Secret", "name": "held", "uid": sa_uid}}))),
    );
    assert_eq!(code, 409, "{st}");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("does not match the UID in record"),
        "{st}"
    );

    // kubectl passes a too-short duration on; the server names the field.
    let err = s.fails(&["create", "token", "default", "--duration", "5m"]);
    assert!(err.contains("spec.expirationSeconds"), "{err}");

    // A good request answers 201 with the token.
    let (code, tr) = s.curl_json("POST", path, Some(&request(json!({}))));
    assert_eq!(code, 201, "{tr}");
    assert!(tr["status"]["token"].as_str().unwrap().contains('.'));
}
