//! Server-side apply through kubectl (`apply --server-side`) and on the wire:
//! creation, field removal, ownership, conflicts and forcing.

mod common;

use common::Server;
use serde_json::Value;

fn cm(name: &str, data: &[(&str, &str)]) -> String {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect();
    serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
        .to_string()
}

/// The managedFields entries of `obj` as (manager, operation, fieldsV1).
fn managers(obj: &Value) -> Vec<(String, String, Value)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap_or_default().to_string(),
                        e["operation"].as_str().unwrap_or_default().to_string(),
                        e["fieldsV1"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn owns(obj: &Value, manager: &str, data_key: &str) -> bool {
    managers(obj)
        .iter()
        .any(|(m, _, f)| m == manager && f["f:data"].get(format!("f:{data_key}")).is_some())
}

fn get_cm(s: &Server, name: &str) -> Value {
    s.get_json(&["cm", name, "--show-managed-fields"])
}

const HELP: &str = "Please review the fields above--they currently have other managers.";

#[test]
fn server_side_apply_creates_and_removes_dropped_fields() {
    let s = Server::start();
    let out = s.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        &cm("s1", &[("a", "1"), ("b", "2")]),
    );
    assert_eq!(out.trim(), "configmap/s1 serverside-applied");
    let obj = get_cm(&s, "s1");
    assert_eq!(
        obj["data"],
        serde_json::json!({"a": "1", "b": "2"}),
        "{obj:#}"
    );
    let m = managers(&obj);
    assert_eq!(m.len(), 1, "one manager: {obj:#}");
    assert_eq!(
        (m[0].0.as_str(), m[0].1.as_str()),
        ("kubectl", "Apply"),
        "{obj:#}"
    );
    assert!(
        owns(&obj, "kubectl", "a") && owns(&obj, "kubectl", "b"),
        "{obj:#}"
    );
    assert!(
        obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_null(),
        "server-side apply must not write the last-applied annotation: {obj:#}"
    );
    // managedFields are hidden unless asked for.
    assert!(s.get_json(&["cm", "s1"])["metadata"]["managedFields"].is_null());

    let out = s.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        &cm("s1", &[("a", "1"), ("b", "2")]),
    );
    assert_eq!(out.trim(), "configmap/s1 serverside-applied");
    let rv = get_cm(&s, "s1")["metadata"]["resourceVersion"].clone();
    assert_eq!(
        rv, obj["metadata"]["resourceVersion"],
        "a no-op apply must not write"
    );

    // Dropping a field from the applied configuration removes it.
    s.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        &cm("s1", &[("a", "1")]),
    );
    let obj = get_cm(&s, "s1");
    assert_eq!(
        obj["data"],
        serde_json::json!({"a": "1"}),
        "b must be removed: {obj:#}"
    );
    assert!(!owns(&obj, "kubectl", "b"), "{obj:#}");
}

#[test]
fn server_side_apply_merges_lists_by_key() {
    let s = Server::start();
    let deploy = |env: &str, replicas: u32| {
        format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: app
        image: nginx:1.27
        env:
{env}"#
        )
    };
    let both = "        - {name: KEEP, value: \"1\"}\n        - {name: DROP, value: \"2\"}\n";
    let one = "        - {name: KEEP, value: \"1\"}\n";
    s.ok_stdin(&["apply", "--server-side", "-f", "-"], &deploy(both, 2));
    // Another manager adds a container; kubectl's apply must keep it.
    s.ok_stdin(
        &["apply", "--server-side", "--field-manager=sidecar", "-f", "-"],
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: side, image: busybox}\n",
    );
    s.ok_stdin(&["apply", "--server-side", "-f", "-"], &deploy(one, 3));
    let d = s.get_json(&["deploy", "web"]);
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    let names: Vec<&str> = containers
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["app", "side"], "containers merge by name: {d:#}");
    let env: Vec<&str> = containers[0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(
        env,
        ["KEEP"],
        "env var dropped from the applied config: {d:#}"
    );
    assert_eq!(d["spec"]["replicas"], 3);
}

#[test]
fn second_manager_conflicts_then_forces() {
    let s = Server::start();
    s.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        &cm("s1", &[("a", "1"), ("b", "2")]),
    );

    let out = s.kubectl_stdin(
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        &cm("s1", &[("a", "9")]),
    );
    assert_eq!(out.status.code(), Some(1), "conflict exits 1");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(
            "error: Apply failed with 1 conflict: conflict with \"kubectl\": .data.a\n"
        ),
        "conflict message (an Apply manager is named without version):\n{err}"
    );
    assert!(
        err.contains(HELP) && err.contains("--force-conflicts"),
        "help text:\n{err}"
    );
    assert_eq!(
        get_cm(&s, "s1")["data"]["a"],
        "1",
        "a conflicting apply must not write"
    );

    // Applying the same value co-owns the field without conflict.
    s.ok_stdin(
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        &cm("s1", &[("a", "1")]),
    );
    let obj = get_cm(&s, "s1");
    assert!(
        owns(&obj, "kubectl", "a") && owns(&obj, "other", "a"),
        "shared ownership: {obj:#}"
    );

    let out = s.ok_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        &cm("s1", &[("a", "9")]),
    );
    assert_eq!(out.trim(), "configmap/s1 serverside-applied");
    let obj = get_cm(&s, "s1");
    assert_eq!(
        obj["data"],
        serde_json::json!({"a": "9", "b": "2"}),
        "{obj:#}"
    );
    assert!(
        owns(&obj, "other", "a"),
        "other owns a after forcing: {obj:#}"
    );
    assert!(!owns(&obj, "kubectl", "a"), "kubectl lost a: {obj:#}");
    assert!(owns(&obj, "kubectl", "b"), "kubectl keeps b: {obj:#}");

    // kubectl now conflicts with other.
    let err = s.fails_stdin(
        &["apply", "--server-side", "-f", "-"],
        &cm("s1", &[("a", "1"), ("b", "2")]),
    );
    assert!(err.contains("conflict with \"other\": .data.a"), "{err}");
}

#[test]
fn conflict_status_on_the_wire() {
    let s = Server::start();
    s.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        &cm("s1", &[("a", "1"), ("b", "2")]),
    );
    let body = cm("s1", &[("a", "x"), ("b", "y")]);
    let r = s.curl_full(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/s1?fieldManager=other&force=false",
        &[],
        Some("application/apply-patch+yaml"),
        Some(body.as_bytes()),
    );
    let st = r.json();
    assert_eq!(r.code, 409, "{}", r.body);
    assert_eq!(st["kind"], "Status");
    assert_eq!(st["reason"], "Conflict", "{st:#}");
    assert_eq!(st["code"], 409, "{st:#}");
    assert_eq!(
        st["message"],
        "Apply failed with 2 conflicts: conflicts with \"kubectl\":\n- .data.a\n- .data.b",
        "{st:#}"
    );
    let causes = st["details"]["causes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let fields: Vec<(&str, &str)> = causes
        .iter()
        .map(|c| {
            (
                c["reason"].as_str().unwrap_or(""),
                c["field"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        fields,
        [
            ("FieldManagerConflict", ".data.a"),
            ("FieldManagerConflict", ".data.b")
        ],
        "{st:#}"
    );

    // Apply creates when the object is missing: 201.
    let r = s.curl_full(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/fresh?fieldManager=me",
        &[],
        Some("application/apply-patch+yaml"),
        Some(cm("fresh", &[("k", "v")]).as_bytes()),
    );
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(r.json()["data"]["k"], "v");

    // An apply patch needs a field manager.
    let r = s.curl_full(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/fresh",
        &[],
        Some("application/apply-patch+yaml"),
        Some(cm("fresh", &[("k", "w")]).as_bytes()),
    );
    // Upstream: errors.NewInvalid(PatchOptions.meta.k8s.io) from ValidatePatchOptions.
    let st = r.json();
    assert_eq!(r.code, 422, "apply without fieldManager: {}", r.body);
    assert_eq!(st["reason"], "Invalid", "{st:#}");
    assert_eq!(
        st["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        "{st:#}"
    );
    assert_eq!(
        st["details"]["causes"][0]["field"], "fieldManager",
        "{st:#}"
    );
    assert_eq!(s.get_json(&["cm", "fresh"])["data"]["k"], "v");
}

#[test]
fn kubectl_create_then_server_side_apply_conflicts_with_kubectl_create() {
    let s = Server::start();
    s.ok_stdin(&["create", "-f", "-"], &cm("c2", &[("a", "1")]));
    let obj = get_cm(&s, "c2");
    let m = managers(&obj);
    assert_eq!(
        m.iter()
            .map(|(m, o, _)| (m.as_str(), o.as_str()))
            .collect::<Vec<_>>(),
        [("kubectl-create", "Update")],
        "{obj:#}"
    );

    let out = s.kubectl_stdin(
        &["apply", "--server-side", "-f", "-"],
        &cm("c2", &[("a", "2")]),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(
            "error: Apply failed with 1 conflict: conflict with \"kubectl-create\" using v1: .data.a\n"
        ),
        "an Update manager is named with its version:\n{err}"
    );
    assert_eq!(get_cm(&s, "c2")["data"]["a"], "1");

    // The same value is no conflict; kubectl becomes a co-owner.
    s.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        &cm("c2", &[("a", "1"), ("n", "new")]),
    );
    let obj = get_cm(&s, "c2");
    assert!(
        owns(&obj, "kubectl", "a") && owns(&obj, "kubectl", "n"),
        "{obj:#}"
    );
    s.ok_stdin(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        &cm("c2", &[("a", "2"), ("n", "new")]),
    );
    assert_eq!(get_cm(&s, "c2")["data"]["a"], "2");
}

#[test]
fn client_side_updates_are_tracked_as_update_managers() {
    let s = Server::start();
    s.ok_stdin(&["apply", "-f", "-"], &cm("u1", &[("a", "1")]));
    s.ok(&["label", "cm", "u1", "x=y"]);
    s.ok(&[
        "patch",
        "cm",
        "u1",
        "--type=merge",
        "-p",
        r#"{"data":{"p":"q"}}"#,
    ]);
    let obj = get_cm(&s, "u1");
    let m: Vec<(String, String)> = managers(&obj).into_iter().map(|(m, o, _)| (m, o)).collect();
    for want in [
        "kubectl-client-side-apply",
        "kubectl-label",
        "kubectl-patch",
    ] {
        assert!(
            m.iter().any(|(n, o)| n == want && o == "Update"),
            "{want} missing: {m:?}"
        );
    }
    // Server-side apply then takes over a field held by an Update manager only with force.
    let err = s.fails_stdin(
        &["apply", "--server-side", "-f", "-"],
        &cm("u1", &[("p", "z")]),
    );
    assert!(
        err.contains("conflict with \"kubectl-patch\" using v1: .data.p"),
        "{err}"
    );
}
