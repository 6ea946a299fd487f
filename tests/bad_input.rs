//! Rejected requests: the exact HTTP code, `Status.reason`, the field or
//! message, what kubectl prints, and that nothing was stored.

mod common;

use std::time::Duration;

use common::{wait_for, CurlReply, Server};
use serde_json::{json, Value};

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";

fn post(s: &Server, path: &str, content_type: &str, body: &str) -> CurlReply {
    s.curl_full("POST", path, &[], Some(content_type), Some(body.as_bytes()))
}

/// Assert a `Status` reply with `code` and `reason`; returns the Status.
#[track_caller]
fn status(r: &CurlReply, code: u16, reason: &str) -> Value {
    let st = r.json();
    assert_eq!(
        r.code, code,
        "HTTP code; body: {}; curl stderr: {}",
        r.body, r.stderr
    );
    assert_eq!(st["kind"], "Status", "a Status body: {}", r.body);
    assert_eq!(st["apiVersion"], "v1", "{}", r.body);
    assert_eq!(st["status"], "Failure", "{}", r.body);
    assert_eq!(st["code"], code, "Status.code: {}", r.body);
    assert_eq!(st["reason"], reason, "Status.reason: {}", r.body);
    st
}

#[track_caller]
fn message(st: &Value) -> &str {
    st["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {st:#}"))
}

/// The (field, reason) of every cause.
fn causes(st: &Value) -> Vec<(String, String)> {
    st["details"]["causes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        c["field"].as_str().unwrap_or_default().to_string(),
                        c["reason"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[track_caller]
fn assert_absent(s: &Server, path: &str) {
    let (code, body) = s.curl("GET", path, None, None);
    assert_eq!(code, 404, "a rejected write must not store {path}: {body}");
}

fn get(s: &Server, path: &str) -> Value {
    let (code, v) = s.curl_json("GET", path, None);
    assert_eq!(code, 200, "GET {path}: {v}");
    v
}

fn deployment(name: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}
            }
        }
    })
}

#[test]
fn malformed_json_and_yaml_are_bad_request() {
    let s = Server::start();
    let r = post(
        &s,
        CMS,
        "application/json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x""#,
    );
    let st = status(&r, 400, "BadRequest");
    assert!(!message(&st).is_empty());
    assert_absent(&s, &format!("{CMS}/x"));

    let r = post(&s, CMS, "application/json", "not json at all");
    status(&r, 400, "BadRequest");

    let r = post(
        &s,
        CMS,
        "application/yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [y\n",
    );
    status(&r, 400, "BadRequest");
    assert_absent(&s, &format!("{CMS}/y"));

    // A body that is JSON but not an object.
    let r = post(&s, CMS, "application/json", "[1,2,3]");
    status(&r, 400, "BadRequest");

    // kubectl refuses malformed YAML itself (rc 1) and sends nothing.
    let err = s.fails_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [y\n",
    );
    assert!(err.starts_with("error:"), "{err}");
}

#[test]
fn unsupported_content_type_is_415() {
    let s = Server::start();
    let r = post(
        &s,
        CMS,
        "text/plain",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"t"}}"#,
    );
    let st = status(&r, 415, "UnsupportedMediaType");
    assert!(message(&st).contains("text/plain"), "{st:#}");
    assert_absent(&s, &format!("{CMS}/t"));
}

#[test]
fn kind_and_name_mismatches_are_bad_request() {
    let s = Server::start();
    let r = post(
        &s,
        CMS,
        "application/json",
        r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#,
    );
    let st = status(&r, 400, "BadRequest");
    assert!(
        message(&st).contains("Secret"),
        "message names the kind sent: {st:#}"
    );
    assert_absent(&s, &format!("{CMS}/x"));
    assert_absent(&s, "/api/v1/namespaces/default/secrets/x");

    let r = post(
        &s,
        CMS,
        "application/json",
        r#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"x"}}"#,
    );
    status(&r, 400, "BadRequest");
    assert_absent(&s, &format!("{CMS}/x"));

    // PUT whose body names another object.
    s.create_cm("default", "real", &[("k", "v")]);
    let r = s.curl_full(
        "PUT",
        &format!("{CMS}/real"),
        &[],
        Some("application/json"),
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"other"},"data":{"k":"changed"}}"#),
    );
    let st = status(&r, 400, "BadRequest");
    assert!(
        message(&st)
            .contains("the name of the object (other) does not match the name on the URL (real)"),
        "{st:#}"
    );
    assert_eq!(get(&s, &format!("{CMS}/real"))["data"]["k"], "v");
    assert_absent(&s, &format!("{CMS}/other"));
}

#[test]
fn unknown_resource_is_not_found() {
    let s = Server::start();
    for path in [
        "/api/v1/namespaces/default/foos",
        "/api/v1/foos",
        "/apis/nope.example.com/v1/things",
        "/apis/apps/v1/namespaces/default/foos/x",
    ] {
        let r = s.curl_full("GET", path, &[], None, None);
        status(&r, 404, "NotFound");
    }
    let r = post(
        &s,
        "/api/v1/namespaces/default/foos",
        "application/json",
        r#"{"apiVersion":"v1","kind":"Foo","metadata":{"name":"x"}}"#,
    );
    status(&r, 404, "NotFound");

    // A missing object names itself.
    let r = s.curl_full("GET", &format!("{CMS}/nope"), &[], None, None);
    let st = status(&r, 404, "NotFound");
    assert_eq!(message(&st), r#"configmaps "nope" not found"#);
    assert_eq!(st["details"]["name"], "nope", "{st:#}");
    assert_eq!(st["details"]["kind"], "configmaps", "{st:#}");

    let err = s.fails(&["get", "foos"]);
    assert!(
        err.contains(r#"the server doesn't have a resource type "foos""#),
        "{err}"
    );
    let err = s.fails(&["get", "cm", "nope"]);
    assert_eq!(
        err.trim(),
        r#"Error from server (NotFound): configmaps "nope" not found"#
    );
}

#[test]
fn invalid_name_is_unprocessable() {
    let s = Server::start();
    let r = post(
        &s,
        CMS,
        "application/json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}"#,
    );
    let st = status(&r, 422, "Invalid");
    assert_eq!(
        causes(&st),
        [("metadata.name".to_string(), "FieldValueInvalid".to_string())],
        "{st:#}"
    );
    assert_eq!(st["details"]["name"], "Bad_Name", "{st:#}");
    assert_eq!(st["details"]["kind"], "ConfigMap", "{st:#}");
    assert!(
        message(&st).contains("a lowercase RFC 1123 subdomain"),
        "{st:#}"
    );
    assert_absent(&s, &format!("{CMS}/Bad_Name"));

    let err = s.fails_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n",
    );
    assert!(
        err.contains(r#"The ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain"#),
        "{err}"
    );

    // No name at all.
    let r = post(
        &s,
        CMS,
        "application/json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#,
    );
    let st = status(&r, 422, "Invalid");
    assert_eq!(
        causes(&st),
        [(
            "metadata.name".to_string(),
            "FieldValueRequired".to_string()
        )],
        "{st:#}"
    );
    assert!(
        message(&st).contains("name or generateName is required"),
        "{st:#}"
    );
}

#[test]
fn negative_replicas_is_unprocessable() {
    let s = Server::start();
    let r = post(
        &s,
        DEPLOYS,
        "application/json",
        &deployment("d1", -1).to_string(),
    );
    let st = status(&r, 422, "Invalid");
    assert_eq!(
        causes(&st),
        [("spec.replicas".to_string(), "FieldValueInvalid".to_string())],
        "{st:#}"
    );
    assert_eq!(st["details"]["group"], "apps", "{st:#}");
    assert_eq!(st["details"]["kind"], "Deployment", "{st:#}");
    assert!(
        message(&st)
            .contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
        "{st:#}"
    );
    assert_absent(&s, &format!("{DEPLOYS}/d1"));

    let err = s.fails_stdin(&["apply", "-f", "-"], &deployment("d1", -1).to_string());
    assert!(
        err.contains(r#"The Deployment "d1" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"#),
        "{err}"
    );

    // Also on update: the stored object keeps its replicas.
    s.ok_stdin(&["apply", "-f", "-"], &deployment("d2", 2).to_string());
    let err = s.fails(&[
        "patch",
        "deploy",
        "d2",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":-3}}"#,
    ]);
    assert!(err.contains("spec.replicas: Invalid value: -3"), "{err}");
    assert_eq!(get(&s, &format!("{DEPLOYS}/d2"))["spec"]["replicas"], 2);
}

#[test]
fn unknown_fields_strict_warn_and_ignore() {
    let s = Server::start();
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"NAME","bogusMeta":1},"data":{"a":"b"},"bogus":1}"#;
    let r = post(
        &s,
        &format!("{CMS}?fieldValidation=Strict"),
        "application/json",
        &body.replace("NAME", "strict"),
    );
    let st = status(&r, 400, "BadRequest");
    let msg = message(&st);
    assert!(msg.starts_with("strict decoding error: "), "{msg}");
    assert!(msg.contains(r#"unknown field "bogus""#), "{msg}");
    assert!(
        msg.contains(r#"unknown field "metadata.bogusMeta""#),
        "{msg}"
    );
    assert_absent(&s, &format!("{CMS}/strict"));

    let r = post(
        &s,
        &format!("{CMS}?fieldValidation=Warn"),
        "application/json",
        &body.replace("NAME", "warn"),
    );
    assert_eq!(r.code, 201, "Warn creates: {}", r.body);
    let warnings = r.header("Warning");
    assert!(
        warnings
            .iter()
            .any(|w| w == r#"299 - "unknown field \"bogus\"""#),
        "Warning headers: {warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w == r#"299 - "unknown field \"metadata.bogusMeta\"""#),
        "Warning headers: {warnings:?}"
    );
    let stored = get(&s, &format!("{CMS}/warn"));
    assert!(
        stored.get("bogus").is_none(),
        "unknown fields are dropped: {stored:#}"
    );
    assert_eq!(stored["data"]["a"], "b");

    let r = post(
        &s,
        &format!("{CMS}?fieldValidation=Ignore"),
        "application/json",
        &body.replace("NAME", "ignore"),
    );
    assert_eq!(r.code, 201, "{}", r.body);
    assert!(
        r.header("Warning").is_empty(),
        "Ignore sends no warnings: {}",
        r.headers
    );

    // An unknown fieldValidation value is refused.
    let r = post(
        &s,
        &format!("{CMS}?fieldValidation=Loud"),
        "application/json",
        &body.replace("NAME", "loud"),
    );
    status(&r, 400, "BadRequest");
    assert_absent(&s, &format!("{CMS}/loud"));

    // kubectl: strict by default, warnings with --validate=warn.
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kc}\nbogus: 1\n";
    let err = s.fails_stdin(&["create", "-f", "-"], manifest);
    assert!(
        err.contains(r#"strict decoding error: unknown field "bogus""#),
        "{err}"
    );
    let out = s.kubectl_stdin(&["create", "--validate=warn", "-f", "-"], manifest);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(r#"Warning: unknown field "bogus""#), "{err}");
}

#[test]
fn oversized_body_is_413() {
    let s = Server::start();
    let big = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "big"},
        "data": {"k": "x".repeat(3 * 1024 * 1024 + 16)}
    })
    .to_string();
    let r = post(&s, CMS, "application/json", &big);
    status(&r, 413, "RequestEntityTooLarge");
    assert_absent(&s, &format!("{CMS}/big"));

    // A large but acceptable object (under the 1 MiB ConfigMap limit) is fine.
    let ok = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "large"},
        "data": {"k": "x".repeat(900 * 1024)}
    })
    .to_string();
    let r = post(&s, CMS, "application/json", &ok);
    assert_eq!(r.code, 201, "{}", &r.body[..r.body.len().min(300)]);
}

const CRD: &str = r#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
"metadata":{"name":"gadgets.example.com"},
"spec":{"group":"example.com","scope":"Namespaced",
"names":{"plural":"gadgets","singular":"gadget","kind":"Gadget"},
"versions":[{"name":"v1","served":true,"storage":true,
"schema":{"openAPIV3Schema":{"type":"object","properties":{"spec":{"type":"object","properties":{"size":{"type":"integer"}}}}}}}]}}"#;

#[test]
fn update_without_resource_version() {
    let s = Server::start();
    s.ok_stdin(&["create", "-f", "-"], CRD);
    s.ok(&[
        "wait",
        "--for=condition=established",
        "crd/gadgets.example.com",
        "--timeout=60s",
    ]);
    let path = "/apis/example.com/v1/namespaces/default/gadgets";
    // The collection may be served a moment after establishment.
    wait_for(Duration::from_secs(30), "gadgets to be served", || {
        let r = post(
            &s,
            path,
            "application/json",
            r#"{"apiVersion":"example.com/v1","kind":"Gadget","metadata":{"name":"g"},"spec":{"size":1}}"#,
        );
        match r.code {
            201 => Ok(()),
            404 => Err(r.body),
            _ => panic!("create gadget: {} {}", r.code, r.body),
        }
    });
    let rv = get(&s, &format!("{path}/g"))["metadata"]["resourceVersion"].clone();

    // Custom resources do not allow unconditional updates.
    let r = s.curl_full(
        "PUT",
        &format!("{path}/g"),
        &[],
        Some("application/json"),
        Some(br#"{"apiVersion":"example.com/v1","kind":"Gadget","metadata":{"name":"g"},"spec":{"size":2}}"#),
    );
    let st = status(&r, 422, "Invalid");
    assert_eq!(
        causes(&st),
        [(
            "metadata.resourceVersion".to_string(),
            "FieldValueInvalid".to_string()
        )],
        "{st:#}"
    );
    assert!(
        message(&st).contains("must be specified for an update"),
        "{st:#}"
    );
    let now = get(&s, &format!("{path}/g"));
    assert_eq!(
        (
            now["spec"]["size"].clone(),
            now["metadata"]["resourceVersion"].clone()
        ),
        (json!(1), rv)
    );

    // ConfigMaps do (last write wins).
    s.create_cm("default", "free", &[("k", "1")]);
    let r = s.curl_full(
        "PUT",
        &format!("{CMS}/free"),
        &[],
        Some("application/json"),
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"free"},"data":{"k":"2"}}"#),
    );
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(get(&s, &format!("{CMS}/free"))["data"]["k"], "2");
}

#[test]
fn stale_resource_version_is_409() {
    let s = Server::start();
    s.create_cm("default", "c", &[("k", "1")]);
    let first = get(&s, &format!("{CMS}/c"));
    let stale_rv = first["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    s.ok(&[
        "patch",
        "cm",
        "c",
        "--type=merge",
        "-p",
        r#"{"data":{"k":"2"}}"#,
    ]);
    let current = get(&s, &format!("{CMS}/c"));

    let mut update = first.clone();
    update["data"]["k"] = json!("stale");
    let r = s.curl_full(
        "PUT",
        &format!("{CMS}/c"),
        &[],
        Some("application/json"),
        Some(update.to_string().as_bytes()),
    );
    let st = status(&r, 409, "Conflict");
    assert_eq!(
        message(&st),
        r#"Operation cannot be fulfilled on configmaps "c": the object has been modified; please apply your changes to the latest version and try again"#
    );
    assert_eq!(st["details"]["name"], "c", "{st:#}");
    assert_eq!(
        get(&s, &format!("{CMS}/c")),
        current,
        "a conflicting update must not write"
    );

    // A merge patch with a resourceVersion precondition conflicts too.
    let patch = json!({"metadata": {"resourceVersion": stale_rv}, "data": {"k": "p"}}).to_string();
    let r = s.curl_full(
        "PATCH",
        &format!("{CMS}/c"),
        &[],
        Some("application/merge-patch+json"),
        Some(patch.as_bytes()),
    );
    status(&r, 409, "Conflict");
    assert_eq!(get(&s, &format!("{CMS}/c")), current);

    // kubectl replace with a stale resourceVersion in the file.
    let err = s.fails_stdin(&["replace", "-f", "-"], &update.to_string());
    assert!(
        err.contains(r#"Error from server (Conflict): error when replacing "STDIN": Operation cannot be fulfilled on configmaps "c": the object has been modified"#),
        "{err}"
    );

    // Creating an existing object: 409 AlreadyExists.
    let r = post(
        &s,
        CMS,
        "application/json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}"#,
    );
    let st = status(&r, 409, "AlreadyExists");
    assert_eq!(message(&st), r#"configmaps "c" already exists"#);
    assert_eq!(get(&s, &format!("{CMS}/c")), current);
}

#[test]
fn create_in_missing_or_terminating_namespace() {
    let s = Server::start();
    let r = post(
        &s,
        "/api/v1/namespaces/nope/configmaps",
        "application/json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#,
    );
    let st = status(&r, 404, "NotFound");
    assert_eq!(message(&st), r#"namespaces "nope" not found"#);
    assert_eq!(st["details"]["kind"], "namespaces", "{st:#}");
    assert_absent(&s, "/api/v1/namespaces/nope/configmaps/x");
    let err = s.fails_stdin(
        &["create", "-n", "nope", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    );
    assert!(err.contains(r#"namespaces "nope" not found"#), "{err}");

    s.create_ns("term");
    s.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: pin, namespace: term, finalizers: [example.com/hold]}\n",
    );
    s.ok(&["delete", "ns", "term", "--wait=false"]);
    let r = post(
        &s,
        "/api/v1/namespaces/term/configmaps",
        "application/json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"late"}}"#,
    );
    let st = status(&r, 403, "Forbidden");
    assert_eq!(
        message(&st),
        r#"configmaps "late" is forbidden: unable to create new content in namespace term because it is being terminated"#
    );
    assert_absent(&s, "/api/v1/namespaces/term/configmaps/late");
    // Updates inside a terminating namespace are still allowed (finalizers must be removable).
    s.ok(&["label", "cm", "pin", "-n", "term", "still=writable"]);
}

#[test]
fn delete_collection_honours_selectors() {
    let s = Server::start();
    s.create_ns("dc");
    for (name, team) in [("a", "x"), ("b", "x"), ("c", "y")] {
        s.create_cm("dc", name, &[]);
        s.ok(&["label", "cm", name, "-n", "dc", &format!("team={team}")]);
    }
    let r = s.curl_full(
        "DELETE",
        "/api/v1/namespaces/dc/configmaps?labelSelector=team%3Dx",
        &[],
        None,
        None,
    );
    assert_eq!(r.code, 200, "{}", r.body);
    let list = r.json();
    assert_eq!(list["kind"], "ConfigMapList", "{list:#}");
    let mut deleted: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    deleted.sort();
    assert_eq!(deleted, ["a", "b"], "{list:#}");
    let left = s.ok(&["get", "cm", "-n", "dc", "-l", "team", "-o", "name"]);
    assert_eq!(left.trim(), "configmap/c");

    // A bad selector deletes nothing.
    let r = s.curl_full(
        "DELETE",
        "/api/v1/namespaces/dc/configmaps?labelSelector=team%3D%3D%3Dy",
        &[],
        None,
        None,
    );
    status(&r, 400, "BadRequest");
    assert_eq!(
        s.ok(&["get", "cm", "c", "-n", "dc", "-o", "name"]).trim(),
        "configmap/c"
    );

    let out = s.ok(&["delete", "cm", "-n", "dc", "-l", "team=y"]);
    assert_eq!(out.trim(), r#"configmap "c" deleted"#);
}

#[test]
fn invalid_label_selector_is_400() {
    let s = Server::start();
    for sel in ["a%3D%3D%3Db", "a%20in%20b", "!!a", "a%3Db%3Dc"] {
        let r = s.curl_full(
            "GET",
            &format!("{CMS}?labelSelector={sel}"),
            &[],
            None,
            None,
        );
        let st = status(&r, 400, "BadRequest");
        assert!(!message(&st).is_empty(), "{st:#}");
    }
    let err = s.fails(&["get", "cm", "-l", "a in b"]);
    assert!(
        err.contains("Error from server (BadRequest)")
            || err.contains("unable to parse requirement"),
        "{err}"
    );
    // Watches validate too.
    let r = s.curl_full(
        "GET",
        &format!("{CMS}?watch=true&timeoutSeconds=1&labelSelector=a%3D%3D%3Db"),
        &[],
        None,
        None,
    );
    status(&r, 400, "BadRequest");
}

#[test]
fn unsupported_field_selector_is_400() {
    let s = Server::start();
    let r = s.curl_full(
        "GET",
        &format!("{CMS}?fieldSelector=data.a%3Db"),
        &[],
        None,
        None,
    );
    let st = status(&r, 400, "BadRequest");
    assert_eq!(message(&st), "field label not supported: data.a");
    // Supported ones work: metadata.name / metadata.namespace everywhere, status.phase on pods.
    for ok in [
        format!("{CMS}?fieldSelector=metadata.name%3Dx"),
        format!("{CMS}?fieldSelector=metadata.namespace%3Ddefault"),
        "/api/v1/pods?fieldSelector=status.phase%3DRunning".to_string(),
        "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1".to_string(),
    ] {
        let (code, body) = s.curl("GET", &ok, None, None);
        assert_eq!(code, 200, "{ok}: {body}");
    }
    let err = s.fails(&["get", "cm", "--field-selector", "data.a=b"]);
    assert!(err.contains("field label not supported: data.a"), "{err}");
}

/// Upstream builds `Invalid` messages with the group-qualified kind
/// (`schema.GroupKind.String()`), e.g. `Deployment.apps "d1" is invalid: ...`.
#[test]
fn invalid_messages_use_the_group_qualified_kind() {
    let s = Server::start();
    let r = post(
        &s,
        DEPLOYS,
        "application/json",
        &deployment("d1", -1).to_string(),
    );
    let st = status(&r, 422, "Invalid");
    assert_eq!(
        message(&st),
        r#"Deployment.apps "d1" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"#
    );
    // Core kinds have no group suffix.
    let r = post(
        &s,
        CMS,
        "application/json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}"#,
    );
    let st = status(&r, 422, "Invalid");
    assert!(
        message(&st).starts_with(
            r#"ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": "#
        ),
        "{st:#}"
    );
}

#[test]
fn wrong_or_missing_token_is_401() {
    let s = Server::start();
    let mut ep = s.endpoint();
    ep.token = "not-the-token".into();
    let r = ep.curl_full("GET", CMS, &[], None, None);
    status(&r, 401, "Unauthorized");
    let r = ep.curl_full(
        "POST",
        CMS,
        &[],
        Some("application/json"),
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"sneaky"}}"#),
    );
    status(&r, 401, "Unauthorized");
    assert_absent(&s, &format!("{CMS}/sneaky"));

    // No Authorization header at all.
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(s.ca_path())
        .arg(format!("{}{CMS}", s.url))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");

    // On a cold discovery cache kubectl reports the discovery failure
    // ("the server has asked for the client to provide credentials"); either
    // way its last line is the login error.
    let err = s.fails(&["--token=not-the-token", "get", "cm"]);
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: You must be logged in to the server ("),
        "{err}"
    );
}

#[test]
fn workload_selectors_are_validated_at_admission() {
    let s = Server::start_with(&["--no-controllers"]);
    let template = |labels: Value| json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "nginx"}], "restartPolicy": "Always"}});
    let kinds: [(&str, &str, &str); 4] = [
        ("deployments", "Deployment", "apps/v1"),
        ("replicasets", "ReplicaSet", "apps/v1"),
        ("statefulsets", "StatefulSet", "apps/v1"),
        ("daemonsets", "DaemonSet", "apps/v1"),
    ];
    for (plural, kind, api_version) in kinds {
        let path = format!("/apis/apps/v1/namespaces/default/{plural}");
        let mut base = json!({
            "apiVersion": api_version, "kind": kind,
            "metadata": {"name": "w"},
            "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": template(json!({"app": "b"}))}
        });
        if kind == "StatefulSet" {
            base["spec"]["serviceName"] = json!("w");
        }
        // The selector does not match the template's labels.
        let st = status(
            &post(&s, &path, "application/json", &base.to_string()),
            422,
            "Invalid",
        );
        assert!(
            causes(&st)
                .iter()
                .any(|(f, _)| f == "spec.template.metadata.labels"),
            "{kind}: {st:#}"
        );
        assert!(
            message(&st).contains("`selector` does not match template `labels`"),
            "{kind}: {st:#}"
        );
        // An operator that does not exist.
        let mut bad_op = base.clone();
        bad_op["spec"]["selector"] =
            json!({"matchExpressions": [{"key": "app", "operator": "Near", "values": ["b"]}]});
        let st = status(
            &post(&s, &path, "application/json", &bad_op.to_string()),
            422,
            "Invalid",
        );
        assert!(
            causes(&st)
                .iter()
                .any(|(f, _)| f.starts_with("spec.selector.matchExpressions[0].operator")),
            "{kind}: {st:#}"
        );
        // An empty selector.
        let mut empty = base.clone();
        empty["spec"]["selector"] = json!({});
        let st = status(
            &post(&s, &path, "application/json", &empty.to_string()),
            422,
            "Invalid",
        );
        assert!(
            causes(&st).iter().any(|(f, _)| f == "spec.selector"),
            "{kind}: {st:#}"
        );
        assert_absent(&s, &format!("{path}/w"));
    }
    // Negative replicas on every scalable kind.
    for (plural, kind) in [
        ("replicasets", "ReplicaSet"),
        ("statefulsets", "StatefulSet"),
    ] {
        let path = format!("/apis/apps/v1/namespaces/default/{plural}");
        let body = json!({
            "apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": "n"},
            "spec": {"replicas": -2, "serviceName": "n", "selector": {"matchLabels": {"app": "a"}}, "template": template(json!({"app": "a"}))}
        });
        let st = status(
            &post(&s, &path, "application/json", &body.to_string()),
            422,
            "Invalid",
        );
        assert!(
            causes(&st).iter().any(|(f, _)| f == "spec.replicas"),
            "{kind}: {st:#}"
        );
    }
    // A Job with a negative parallelism and a manual selector that does not match.
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "j"},
        "spec": {
            "parallelism": -1,
            "manualSelector": true,
            "selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}}
        }
    });
    let st = status(
        &post(
            &s,
            "/apis/batch/v1/namespaces/default/jobs",
            "application/json",
            &job.to_string(),
        ),
        422,
        "Invalid",
    );
    let fields: Vec<String> = causes(&st).into_iter().map(|(f, _)| f).collect();
    assert!(fields.iter().any(|f| f == "spec.parallelism"), "{st:#}");
    assert!(
        fields.iter().any(|f| f == "spec.template.metadata.labels"),
        "{st:#}"
    );
}
