//! The everyday kubectl user story against a real `skiff server`: apply,
//! get, describe, edit, label/annotate/patch, scale, delete, discovery,
//! explain, selectors, chunked lists, watch and wait, namespaces.

mod common;

use std::time::Duration;

use common::{wait_for, write_file, Server};
use serde_json::Value;

const APP_V1: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: nginx:1.27
        env:
        - {name: KEEP, value: "1"}
        - {name: DROP, value: "2"}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  keep: "yes"
  drop: "no"
"#;

const DEPLOY_ONLY: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: NAME
spec:
  replicas: 1
  selector:
    matchLabels: {app: NAME}
  template:
    metadata:
      labels: {app: NAME}
    spec:
      containers:
      - name: app
        image: nginx:1.27
"#;

fn deployment(name: &str) -> String {
    DEPLOY_ONLY.replace("NAME", name)
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
}

/// The header row of a kubectl table, split on runs of 2+ spaces.
fn header(table: &str) -> Vec<String> {
    let first = table.lines().next().unwrap_or_default();
    first
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect()
}

fn env_names(deploy: &Value) -> Vec<String> {
    deploy["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn apply_multi_document_is_idempotent_and_prunes_removed_fields() {
    let s = Server::start();
    let file = write_file(s.dir.path(), "app.yaml", APP_V1);
    let f = file.to_str().expect("utf-8 path");

    let out = s.ok(&["apply", "-f", f]);
    assert_eq!(
        lines(&out),
        [
            "deployment.apps/web created",
            "service/web created",
            "configmap/web-config created"
        ],
        "first apply output"
    );

    let out = s.ok(&["apply", "-f", f]);
    assert_eq!(
        lines(&out),
        [
            "deployment.apps/web unchanged",
            "service/web unchanged",
            "configmap/web-config unchanged"
        ],
        "re-applying the same file must change nothing"
    );
    let rv_before = s.get_json(&["service", "web"])["metadata"]["resourceVersion"].clone();

    // Edit: drop one env var, one ConfigMap key, change replicas.
    let edited = APP_V1
        .replace("        - {name: DROP, value: \"2\"}\n", "")
        .replace("  drop: \"no\"\n", "")
        .replace("replicas: 2", "replicas: 4");
    assert_ne!(edited, APP_V1);
    std::fs::write(&file, edited).expect("rewrite file");
    let out = s.ok(&["apply", "-f", f]);
    assert_eq!(
        lines(&out),
        [
            "deployment.apps/web configured",
            "service/web unchanged",
            "configmap/web-config configured"
        ],
        "apply after editing the file"
    );

    let d = s.get_json(&["deployment", "web"]);
    assert_eq!(
        d["spec"]["replicas"], 4,
        "replicas changed in the file: {d:#}"
    );
    assert_eq!(
        env_names(&d),
        ["KEEP"],
        "env var removed from the file must be removed from the object: {d:#}"
    );
    let cm = s.get_json(&["configmap", "web-config"]);
    assert_eq!(
        cm["data"],
        serde_json::json!({"keep": "yes"}),
        "removed key must be pruned: {cm:#}"
    );
    let svc = s.get_json(&["service", "web"]);
    assert_eq!(
        svc["metadata"]["resourceVersion"], rv_before,
        "unchanged Service must not be written"
    );
    let last = cm["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .unwrap_or_else(|| panic!("last-applied annotation missing: {cm:#}"));
    assert!(
        !last.contains("drop"),
        "last-applied must be the new manifest: {last}"
    );
}

#[test]
fn get_tables_have_upstream_headers() {
    let s = Server::start();
    s.ok_stdin(&["apply", "-f", "-"], &deployment("web"));
    let out = s.ok(&["get", "deploy"]);
    assert_eq!(
        header(&out),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "get deploy:\n{out}"
    );
    assert!(
        out.lines().nth(1).unwrap_or_default().starts_with("web "),
        "row for web:\n{out}"
    );

    s.ok(&["run", "p1", "--image=nginx:1.27"]);
    let out = s.ok(&["get", "pods", "-o", "wide"]);
    assert_eq!(
        header(&out),
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ],
        "get pods -o wide:\n{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("p1 ")),
        "row for p1:\n{out}"
    );
    let narrow = s.ok(&["get", "pods"]);
    assert_eq!(
        header(&narrow),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "get pods:\n{narrow}"
    );
}

#[test]
fn describe_configmap_shows_data() {
    let s = Server::start();
    s.create_cm("default", "x", &[("color", "blue"), ("size", "3")]);
    s.ok(&["label", "cm", "x", "tier=web"]);
    let out = s.ok(&["describe", "configmap", "x"]);
    for want in [
        "Name:         x",
        "Namespace:    default",
        "tier=web",
        "Data\n====",
        "color:",
        "blue",
        "size:",
        "3",
    ] {
        assert!(out.contains(want), "describe output lacks {want:?}:\n{out}");
    }
}

#[test]
fn edit_configmap_with_scripted_editor() {
    let s = Server::start();
    s.create_cm("default", "x", &[("k", "foo")]);
    let out = s
        .kubectl_cmd()
        .args(["edit", "cm", "x"])
        .env("KUBE_EDITOR", "sed -i s/foo/bar/")
        .env_remove("EDITOR")
        .output()
        .expect("kubectl edit");
    assert!(
        out.status.success(),
        "kubectl edit failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configmap/x edited"
    );
    assert_eq!(s.get_json(&["cm", "x"])["data"]["k"], "bar");

    // An editor that changes nothing cancels the edit.
    let out = s
        .kubectl_cmd()
        .args(["edit", "cm", "x"])
        .env("KUBE_EDITOR", "true")
        .output()
        .expect("kubectl edit");
    assert!(
        out.status.success(),
        "no-op edit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Edit cancelled, no changes made."),
        "no-op edit stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn label_annotate_and_three_patch_types() {
    let s = Server::start();
    s.ok_stdin(&["apply", "-f", "-"], &deployment("web"));

    assert_eq!(
        s.ok(&["label", "deploy", "web", "tier=front"]).trim(),
        "deployment.apps/web labeled"
    );
    assert_eq!(
        s.get_json(&["deploy", "web"])["metadata"]["labels"]["tier"],
        "front"
    );
    let err = s.fails(&["label", "deploy", "web", "tier=back"]);
    assert!(
        err.contains("already has a value (front)"),
        "label without --overwrite: {err}"
    );
    s.ok(&["label", "deploy", "web", "tier=back", "--overwrite"]);
    assert_eq!(
        s.get_json(&["deploy", "web"])["metadata"]["labels"]["tier"],
        "back"
    );
    s.ok(&["label", "deploy", "web", "tier-"]);
    assert!(
        s.get_json(&["deploy", "web"])["metadata"]["labels"]
            .get("tier")
            .is_none(),
        "label removed"
    );

    assert_eq!(
        s.ok(&["annotate", "deploy", "web", "owner=team-a"]).trim(),
        "deployment.apps/web annotated"
    );
    assert_eq!(
        s.get_json(&["deploy", "web"])["metadata"]["annotations"]["owner"],
        "team-a"
    );

    // Strategic merge: containers merge by name, so adding a second one keeps the first.
    s.ok(&[
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox"}]}}}}"#,
    ]);
    let d = s.get_json(&["deploy", "web"]);
    let names: Vec<&str> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["side", "app"],
        "strategic merge by name (new items first, as upstream): {d:#}"
    );

    // Merge patch: a list is replaced wholesale; null deletes.
    s.ok(&[
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"annotations":{"owner":null}},"spec":{"template":{"spec":{"containers":[{"name":"only","image":"nginx"}]}}}}"#,
    ]);
    let d = s.get_json(&["deploy", "web"]);
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "merge patch replaces lists: {d:#}");
    assert_eq!(containers[0]["name"], "only");
    assert!(
        d["metadata"]["annotations"].get("owner").is_none(),
        "null removes the annotation: {d:#}"
    );

    // JSON patch.
    s.ok(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":5},{"op":"add","path":"/metadata/labels/j","value":"p"}]"#,
    ]);
    let d = s.get_json(&["deploy", "web"]);
    assert_eq!(d["spec"]["replicas"], 5);
    assert_eq!(d["metadata"]["labels"]["j"], "p");
    // A failing JSON-patch test op is rejected and changes nothing.
    let err = s.fails(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/spec/replicas","value":9}]"#,
    ]);
    assert!(!err.is_empty(), "failed test op must print an error");
    assert_eq!(s.get_json(&["deploy", "web"])["spec"]["replicas"], 5);
}

#[test]
fn delete_dash_f_removes_every_document() {
    let s = Server::start();
    let file = write_file(s.dir.path(), "app.yaml", APP_V1);
    let f = file.to_str().expect("utf-8 path");
    s.ok(&["apply", "-f", f]);
    let out = s.ok(&["delete", "-f", f]);
    assert_eq!(
        lines(&out),
        [
            "deployment.apps \"web\" deleted",
            "service \"web\" deleted",
            "configmap \"web-config\" deleted"
        ],
        "delete -f output"
    );
    for (kind, name) in [("deploy", "web"), ("svc", "web"), ("cm", "web-config")] {
        let err = s.fails(&["get", kind, name]);
        assert!(err.contains("NotFound"), "{kind}/{name} still there: {err}");
    }
    let err = s.fails(&["delete", "-f", f]);
    assert!(err.contains("NotFound"), "second delete: {err}");
    s.ok(&["delete", "-f", f, "--ignore-not-found"]);
}

#[test]
fn api_resources_and_explain() {
    let s = Server::start();
    let out = s.ok(&["api-resources"]);
    assert_eq!(
        header(&out),
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"],
        "{out}"
    );
    let row = |name: &str| -> Vec<String> {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("api-resources lacks {name}:\n{out}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert_eq!(row("pods"), ["pods", "po", "v1", "true", "Pod"]);
    assert_eq!(
        row("deployments"),
        ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    );
    assert_eq!(
        row("customresourcedefinitions"),
        [
            "customresourcedefinitions",
            "crd,crds",
            "apiextensions.k8s.io/v1",
            "false",
            "CustomResourceDefinition"
        ]
    );
    assert_eq!(
        row("namespaces"),
        ["namespaces", "ns", "v1", "false", "Namespace"]
    );

    let out = s.ok(&["api-resources", "--namespaced=false", "-o", "name"]);
    assert!(
        out.lines().any(|l| l == "namespaces"),
        "cluster-scoped list lacks namespaces:\n{out}"
    );
    assert!(
        !out.lines().any(|l| l == "pods"),
        "pods are namespaced:\n{out}"
    );

    let out = s.ok(&["explain", "deployment.spec.replicas"]);
    for want in [
        "KIND:       Deployment",
        "VERSION:    v1",
        "FIELD: replicas <integer>",
        "DESCRIPTION:",
    ] {
        assert!(out.contains(want), "explain lacks {want:?}:\n{out}");
    }
    let out = s.ok(&["explain", "configmap"]);
    assert!(
        out.contains("KIND:       ConfigMap") && out.contains("data\t<map[string]string>"),
        "explain cm:\n{out}"
    );
}

#[test]
fn get_all_across_namespaces() {
    let s = Server::start();
    s.create_ns("other");
    s.ok_stdin(&["apply", "-n", "other", "-f", "-"], &deployment("web"));
    s.ok(&["run", "p1", "--image=nginx:1.27"]);
    let out = s.ok(&["get", "all", "-A"]);
    assert!(
        out.starts_with("NAMESPACE"),
        "first column is NAMESPACE:\n{out}"
    );
    let has = |ns: &str, name: &str| {
        out.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.first() == Some(&ns) && cols.get(1) == Some(&name)
        })
    };
    assert!(
        has("other", "deployment.apps/web"),
        "deployment in other:\n{out}"
    );
    assert!(has("default", "pod/p1"), "pod in default:\n{out}");
    assert!(
        has("default", "service/kubernetes"),
        "the kubernetes Service:\n{out}"
    );
    // ConfigMaps are not in category "all".
    s.create_cm("default", "nope-not-all", &[]);
    assert!(!s.ok(&["get", "all", "-A"]).contains("nope-not-all"));
}

#[test]
fn scale_deployment_sets_spec_replicas() {
    let s = Server::start();
    s.ok_stdin(&["apply", "-f", "-"], &deployment("web"));
    assert_eq!(
        s.ok(&["scale", "deploy", "web", "--replicas=3"]).trim(),
        "deployment.apps/web scaled"
    );
    assert_eq!(s.get_json(&["deploy", "web"])["spec"]["replicas"], 3);
    // A precondition that does not hold is refused.
    let err = s.fails(&[
        "scale",
        "deploy",
        "web",
        "--current-replicas=2",
        "--replicas=5",
    ]);
    assert!(err.contains("Expected replicas to be 2, was 3"), "{err}");
    s.ok(&[
        "scale",
        "deploy",
        "web",
        "--current-replicas=3",
        "--replicas=0",
    ]);
    assert_eq!(s.get_json(&["deploy", "web"])["spec"]["replicas"], 0);
}

#[test]
fn select_by_label_and_field() {
    let s = Server::start();
    s.create_cm("default", "a", &[]);
    s.create_cm("default", "b", &[]);
    s.create_cm("default", "c", &[]);
    s.ok(&["label", "cm", "a", "b", "team=x"]);
    s.ok(&["label", "cm", "c", "team=y"]);

    let names = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["get", "cm", "-o", "name"];
        all.extend_from_slice(args);
        let mut v: Vec<String> = s.ok(&all).lines().map(String::from).collect();
        v.sort();
        v
    };
    assert_eq!(names(&["-l", "team=x"]), ["configmap/a", "configmap/b"]);
    assert_eq!(names(&["-l", "team!=x,team"]), ["configmap/c"]);
    assert_eq!(names(&["-l", "team in (y,z)"]), ["configmap/c"]);
    let unlabelled = names(&["-l", "!team"]);
    assert!(
        !unlabelled
            .iter()
            .any(|n| ["configmap/a", "configmap/b", "configmap/c"].contains(&n.as_str())),
        "!team must exclude labelled objects: {unlabelled:?}"
    );
    assert_eq!(
        names(&["--field-selector", "metadata.name=b"]),
        ["configmap/b"]
    );
    assert_eq!(
        names(&["--field-selector", "metadata.name!=b", "-l", "team"]),
        ["configmap/a", "configmap/c"]
    );
}

/// `kubectl create configmap|namespace` use the typed clientset, which sends
/// protobuf request bodies (KUBECTL-WIRE section 0).
#[test]
fn create_generators_configmap_and_namespace() {
    let s = Server::start();
    let out = s.ok(&["create", "namespace", "gen"]);
    assert_eq!(out.trim(), "namespace/gen created");
    assert_eq!(s.get_json(&["ns", "gen"])["status"]["phase"], "Active");
    let out = s.ok(&[
        "create",
        "configmap",
        "a",
        "-n",
        "gen",
        "--from-literal=k=v",
        "--from-literal=other=w",
    ]);
    assert_eq!(out.trim(), "configmap/a created");
    assert_eq!(
        s.get_json(&["cm", "a", "-n", "gen"])["data"],
        serde_json::json!({"k": "v", "other": "w"})
    );
    let err = s.fails(&["create", "configmap", "a", "-n", "gen"]);
    assert!(err.contains("configmaps \"a\" already exists"), "{err}");
}

#[test]
fn chunked_listing_pages_through_every_object() {
    let s = Server::start();
    s.create_ns("chunks");
    for i in 0..5 {
        s.create_cm("chunks", &format!("c{i}"), &[]);
    }
    let out = s.kubectl(&[
        "get",
        "cm",
        "-n",
        "chunks",
        "--chunk-size=2",
        "-o",
        "name",
        "-v=6",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "get --chunk-size failed: {stderr}");
    let got: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("configmap/c"))
        .collect();
    assert_eq!(
        got,
        [
            "configmap/c0",
            "configmap/c1",
            "configmap/c2",
            "configmap/c3",
            "configmap/c4"
        ],
        "{stdout}"
    );
    let pages = stderr
        .lines()
        .filter(|l| l.contains("/namespaces/chunks/configmaps?") && l.contains("limit=2"))
        .count();
    let continued = stderr.lines().filter(|l| l.contains("continue=")).count();
    // 5 ConfigMaps (+ kube-root-ca.crt, if the server makes one) in pages of 2.
    assert!(
        pages >= 3 && continued >= 2,
        "expected >= 3 pages with continue tokens, got {pages}:\n{stderr}"
    );

    // The table printer also pages, printing the header once.
    let table = s.ok(&["get", "cm", "-n", "chunks", "--chunk-size=2"]);
    assert_eq!(
        table.lines().filter(|l| l.starts_with("NAME")).count(),
        1,
        "{table}"
    );
    assert_eq!(
        table.lines().filter(|l| l.starts_with('c')).count(),
        5,
        "{table}"
    );
}

#[test]
fn get_watch_receives_a_change() {
    let s = Server::start();
    s.create_cm("default", "w1", &[("k", "one")]);
    let mut watch = s.spawn_kubectl(&[
        "get",
        "cm",
        "w1",
        "-w",
        "--request-timeout=60s",
        "-o",
        "jsonpath={.metadata.name}={.data.k}{\"\\n\"}",
    ]);
    wait_for(Duration::from_secs(30), "initial line from get -w", || {
        if watch.stdout().contains("w1=one") {
            Ok(())
        } else {
            Err(format!(
                "stdout {:?} stderr {:?}",
                watch.stdout(),
                watch.stderr()
            ))
        }
    });
    s.ok(&[
        "patch",
        "cm",
        "w1",
        "--type=merge",
        "-p",
        r#"{"data":{"k":"two"}}"#,
    ]);
    wait_for(Duration::from_secs(30), "the change through get -w", || {
        if watch.stdout().contains("w1=two") {
            Ok(())
        } else {
            Err(format!(
                "stdout {:?} stderr {:?}",
                watch.stdout(),
                watch.stderr()
            ))
        }
    });
    assert!(
        watch.try_exit().is_none(),
        "get -w must keep watching; stderr: {}",
        watch.stderr()
    );
    assert_eq!(lines(&watch.stdout()), ["w1=one", "w1=two"]);
}

#[test]
fn get_watch_table_prints_new_rows_under_one_header() {
    let s = Server::start();
    s.create_ns("tw");
    s.create_cm("tw", "first", &[]);
    let watch = s.spawn_kubectl(&["get", "cm", "-n", "tw", "-w", "--request-timeout=60s"]);
    wait_for(Duration::from_secs(30), "the initial table", || {
        if watch.stdout().lines().any(|l| l.starts_with("first ")) {
            Ok(())
        } else {
            Err(format!(
                "stdout {:?} stderr {:?}",
                watch.stdout(),
                watch.stderr()
            ))
        }
    });
    s.create_cm("tw", "second", &[("k", "v")]);
    wait_for(Duration::from_secs(30), "the new row", || {
        if watch.stdout().lines().any(|l| l.starts_with("second ")) {
            Ok(())
        } else {
            Err(format!(
                "stdout {:?} stderr {:?}",
                watch.stdout(),
                watch.stderr()
            ))
        }
    });
    let out = watch.stdout();
    assert_eq!(
        out.lines().filter(|l| l.starts_with("NAME")).count(),
        1,
        "one header:\n{out}"
    );
    assert_eq!(header(&out), ["NAME", "DATA", "AGE"], "{out}");
    let second: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("second "))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        second.get(1),
        Some(&"1"),
        "DATA column of the new row:\n{out}"
    );
    assert!(
        !out.contains("<unknown>"),
        "no stray rows (e.g. bookmarks):\n{out}"
    );
}

/// Wait until a background kubectl (run with -v=6) has opened its watch.
fn wait_until_watching(bg: &common::Background) {
    wait_for(Duration::from_secs(30), "kubectl to open its watch", || {
        if bg.stderr().contains("watch=true") {
            Ok(())
        } else {
            Err(bg.stderr())
        }
    });
}

#[test]
fn wait_for_delete_returns_when_deleted() {
    let s = Server::start();
    s.create_cm("default", "doomed", &[]);
    let mut wait = s.spawn_kubectl(&["wait", "--for=delete", "cm/doomed", "--timeout=60s", "-v=6"]);
    wait_until_watching(&wait);
    assert!(
        wait.try_exit().is_none(),
        "wait returned before the delete: {}",
        wait.stdout()
    );
    s.ok(&["delete", "cm", "doomed"]);
    let status = wait.wait_exit(Duration::from_secs(60));
    assert!(
        status.success(),
        "kubectl wait --for=delete: {status}\n{}",
        wait.stderr()
    );
    assert_eq!(wait.stdout().trim(), "configmap/doomed condition met");
}

#[test]
fn wait_for_jsonpath_returns_when_value_appears() {
    let s = Server::start();
    s.create_cm("default", "flag", &[("state", "pending")]);
    let mut wait = s.spawn_kubectl(&[
        "wait",
        "--for=jsonpath={.data.state}=ready",
        "cm/flag",
        "--timeout=60s",
        "-v=6",
    ]);
    wait_until_watching(&wait);
    assert!(
        wait.try_exit().is_none(),
        "wait returned early: {}",
        wait.stdout()
    );
    s.ok(&[
        "patch",
        "cm",
        "flag",
        "--type=merge",
        "-p",
        r#"{"data":{"state":"ready"}}"#,
    ]);
    let status = wait.wait_exit(Duration::from_secs(60));
    assert!(
        status.success(),
        "kubectl wait --for=jsonpath: {status}\n{}",
        wait.stderr()
    );
    assert_eq!(wait.stdout().trim(), "configmap/flag condition met");

    // A timeout is rc 1 with the upstream message.
    let out = s.kubectl(&[
        "wait",
        "--for=jsonpath={.data.state}=never",
        "cm/flag",
        "--timeout=1s",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("timed out waiting for the condition on configmaps/flag"),
        "{err}"
    );
}

/// Ok once `kubectl get ns <name>` answers NotFound.
fn namespace_gone(s: &Server, name: &str) -> Result<(), String> {
    let out = s.kubectl(&["get", "ns", name, "-o", "jsonpath={.status.phase}"]);
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && err.contains("NotFound") {
        return Ok(());
    }
    Err(format!(
        "phase {:?}, stderr {err:?}; server log tail:\n{}",
        String::from_utf8_lossy(&out.stdout),
        tail(&s.log())
    ))
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[test]
fn delete_namespace_cascades_to_its_contents() {
    let s = Server::start();
    s.create_ns("gone");
    s.create_cm("gone", "c1", &[]);
    s.ok_stdin(&["apply", "-n", "gone", "-f", "-"], &deployment("web"));
    s.create_ns("stays");
    s.create_cm("stays", "c1", &[]);

    assert_eq!(
        s.ok(&["delete", "ns", "gone", "--wait=false"]).trim(),
        "namespace \"gone\" deleted"
    );
    wait_for(
        Duration::from_secs(60),
        "namespace gone to disappear",
        || namespace_gone(&s, "gone"),
    );
    let left = s.ok(&["get", "cm,deploy", "-n", "gone", "-o", "name"]);
    assert_eq!(left.trim(), "", "contents of the deleted namespace remain");
    let stays = s.ok(&["get", "cm", "c1", "-n", "stays", "-o", "name"]);
    assert_eq!(
        stays.trim(),
        "configmap/c1",
        "other namespaces are untouched"
    );
}

#[test]
fn create_in_terminating_namespace_is_forbidden() {
    let s = Server::start();
    assert_eq!(
        s.ok(&["create", "ns", "term"]).trim(),
        "namespace/term created"
    );
    let ns = s.get_json(&["ns", "term"]);
    assert_eq!(ns["status"]["phase"], "Active", "{ns:#}");
    // A finalizer on an object inside keeps the namespace in Terminating.
    s.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, namespace: term, finalizers: [example.com/hold]}\n",
    );
    s.ok(&["delete", "ns", "term", "--wait=false"]);
    let ns = s.get_json(&["ns", "term"]);
    assert_eq!(ns["status"]["phase"], "Terminating", "{ns:#}");
    assert!(ns["metadata"]["deletionTimestamp"].is_string(), "{ns:#}");

    let err = s.fails_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: late, namespace: term}\n",
    );
    assert!(
        err.contains("configmaps \"late\" is forbidden: unable to create new content in namespace term because it is being terminated"),
        "{err}"
    );
    assert!(s
        .fails(&["get", "cm", "late", "-n", "term"])
        .contains("NotFound"));
    // The typed clientset path (protobuf body) gets the same answer.
    let err = s.fails(&["create", "configmap", "late2", "-n", "term"]);
    assert!(
        err.contains("configmaps \"late2\" is forbidden: unable to create new content in namespace term because it is being terminated"),
        "{err}"
    );
}

#[test]
fn namespace_waits_for_finalizers_of_its_contents() {
    let s = Server::start();
    s.create_ns("held");
    s.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: pinned, namespace: held, finalizers: [example.com/hold]}\n",
    );
    s.create_cm("held", "free", &[]);
    s.ok(&["delete", "ns", "held", "--wait=false"]);
    wait_for(
        Duration::from_secs(60),
        "unfinalized contents to be deleted",
        || {
            let out = s.ok(&["get", "cm", "-n", "held", "-o", "name"]);
            if out.contains("configmap/free") {
                Err(out)
            } else {
                Ok(())
            }
        },
    );
    let pinned = s.get_json(&["cm", "pinned", "-n", "held"]);
    assert!(
        pinned["metadata"]["deletionTimestamp"].is_string(),
        "pinned is being deleted: {pinned:#}"
    );
    assert_eq!(
        s.get_json(&["ns", "held"])["status"]["phase"],
        "Terminating"
    );
    s.ok(&[
        "patch",
        "cm",
        "pinned",
        "-n",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    wait_for(
        Duration::from_secs(60),
        "namespace held to disappear",
        || namespace_gone(&s, "held"),
    );
}

#[test]
fn service_gets_a_cluster_ip() {
    let s = Server::start();
    s.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n",
    );
    let svc = s.get_json(&["svc", "web"]);
    assert_eq!(svc["spec"]["type"], "ClusterIP", "{svc:#}");
    let ip = svc["spec"]["clusterIP"].as_str().unwrap_or_default();
    assert!(
        ip.parse::<std::net::Ipv4Addr>().is_ok(),
        "clusterIP allocated: {svc:#}"
    );
    assert_eq!(
        svc["spec"]["clusterIPs"],
        serde_json::json!([ip]),
        "{svc:#}"
    );
    let table = s.ok(&["get", "svc", "web"]);
    assert!(table.contains(ip), "CLUSTER-IP column:\n{table}");
    // Re-applying the manifest (which has no clusterIP) keeps the allocation.
    s.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 81, targetPort: 8080}]\n",
    );
    assert_eq!(s.get_json(&["svc", "web"])["spec"]["clusterIP"], ip);
}
