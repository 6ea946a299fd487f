//! CustomResourceDefinitions end to end with kubectl: establishment,
//! discovery, printer columns, explain, schema validation, the scale and
//! status subresources, and cleanup when the CRD goes.

mod common;

use std::time::Duration;

use common::{wait_for, Server};

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        description: A widget for tests.
        properties:
          spec:
            type: object
            description: What the widget should be.
            required: [size]
            properties:
              size:
                type: integer
                minimum: 1
                description: How big the widget is.
              color:
                type: string
                enum: [red, green, blue]
                description: The colour of the widget.
              replicas:
                type: integer
          status:
            type: object
            properties:
              replicas:
                type: integer
              phase:
                type: string
              labelSelector:
                type: string
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.labelSelector
    additionalPrinterColumns:
    - name: Size
      type: integer
      jsonPath: .spec.size
    - name: Color
      type: string
      jsonPath: .spec.color
    - name: Phase
      type: string
      jsonPath: .status.phase
      priority: 1
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

/// A server with the Widget CRD established.
fn with_crd() -> Server {
    let s = Server::start();
    let out = s.ok_stdin(&["apply", "-f", "-"], CRD);
    assert_eq!(
        out.trim(),
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com created"
    );
    let out = s.ok(&[
        "wait",
        "--for",
        "condition=established",
        "crd/widgets.example.com",
        "--timeout=60s",
    ]);
    assert_eq!(
        out.trim(),
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com condition met"
    );
    // Discovery may lag establishment by a moment.
    wait_for(Duration::from_secs(30), "widgets in discovery", || {
        let out = s.kubectl(&["get", "widgets"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    s
}

fn widget(name: &str, size: i64, color: &str) -> String {
    format!(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: {name}\nspec:\n  size: {size}\n  color: {color}\n  replicas: 1\n"
    )
}

fn header(table: &str) -> Vec<String> {
    let first = table.lines().next().unwrap_or_default();
    first
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect()
}

fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name}:\n{table}"))
        .split_whitespace()
        .collect()
}

#[test]
fn crd_is_established_and_served_in_discovery() {
    let s = with_crd();
    let crd = s.get_json(&["crd", "widgets.example.com"]);
    let conditions = crd["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for t in ["NamesAccepted", "Established"] {
        let c = conditions
            .iter()
            .find(|c| c["type"] == t)
            .unwrap_or_else(|| panic!("condition {t} missing: {crd:#}"));
        assert_eq!(c["status"], "True", "{t}: {c}");
    }
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "Widget", "{crd:#}");
    assert_eq!(
        crd["status"]["storedVersions"],
        serde_json::json!(["v1"]),
        "{crd:#}"
    );

    let out = s.ok(&["api-resources", "--api-group=example.com"]);
    let r = row(&out, "widgets");
    assert_eq!(
        r,
        ["widgets", "wd", "example.com/v1", "true", "Widget"],
        "{out}"
    );
    let versions = s.ok(&["api-versions"]);
    for v in ["example.com/v1", "example.com/v1beta1"] {
        assert!(
            versions.lines().any(|l| l == v),
            "api-versions lacks {v}:\n{versions}"
        );
    }
}

#[test]
fn custom_objects_print_with_printer_columns() {
    let s = with_crd();
    let out = s.ok_stdin(&["apply", "-f", "-"], &widget("w1", 3, "red"));
    assert_eq!(out.trim(), "widget.example.com/w1 created");
    s.ok_stdin(&["apply", "-f", "-"], &widget("w2", 7, "blue"));

    let out = s.ok(&["get", "widgets"]);
    assert_eq!(
        header(&out),
        ["NAME", "SIZE", "COLOR", "AGE"],
        "priority-1 column hidden:\n{out}"
    );
    let r = row(&out, "w1");
    assert_eq!(&r[..3], ["w1", "3", "red"], "{out}");
    let age = r.get(3).copied().unwrap_or_default();
    assert!(
        age.ends_with('s') || age.ends_with('m'),
        "date column is rendered as an age, got {age:?}:\n{out}"
    );
    assert_eq!(row(&out, "w2")[..3], ["w2", "7", "blue"]);

    let wide = s.ok(&["get", "wd", "-o", "wide"]);
    assert_eq!(
        header(&wide),
        ["NAME", "SIZE", "COLOR", "PHASE", "AGE"],
        "wide shows priority 1:\n{wide}"
    );

    // The object reads back the same through the other served version.
    let beta = s.get_json(&["widgets.v1beta1.example.com", "w1"]);
    assert_eq!(beta["apiVersion"], "example.com/v1beta1", "{beta:#}");
    assert_eq!(beta["spec"]["size"], 3, "{beta:#}");

    // -o name and label selection work as for built-ins.
    s.ok(&["label", "widget", "w2", "tier=gold"]);
    assert_eq!(
        s.ok(&["get", "widgets", "-l", "tier=gold", "-o", "name"])
            .trim(),
        "widget.example.com/w2"
    );
}

#[test]
fn explain_custom_resource_uses_its_schema() {
    let s = with_crd();
    let out = s.ok(&["explain", "widget.spec"]);
    for want in [
        "GROUP:      example.com",
        "KIND:       Widget",
        "VERSION:    v1",
        "FIELD: spec <Object>",
        "What the widget should be.",
        "size\t<integer> -required-",
        "How big the widget is.",
        "color\t<string>",
        "enum: red, green, blue",
    ] {
        assert!(
            out.contains(want),
            "explain widget.spec lacks {want:?}:\n{out}"
        );
    }
}

#[test]
fn invalid_custom_object_is_rejected_with_fields_named() {
    let s = with_crd();
    let err = s.fails_stdin(&["apply", "-f", "-"], &widget("bad", 0, "pink"));
    assert!(err.contains("The Widget \"bad\" is invalid"), "{err}");
    assert!(
        err.contains(
            "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
        ),
        "minimum violation: {err}"
    );
    assert!(
        err.contains(
            r#"spec.color: Unsupported value: "pink": supported values: "red", "green", "blue""#
        ),
        "enum violation: {err}"
    );
    let err = s.fails_stdin(
        &["create", "-f", "-"],
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: nosize}\nspec: {color: red}\n",
    );
    assert!(
        err.contains("spec.size: Required value"),
        "required field: {err}"
    );
    let err = s.fails_stdin(
        &["create", "-f", "-"],
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: str}\nspec: {size: big}\n",
    );
    assert!(
        err.contains(
            "spec.size: Invalid value: \"string\": spec.size in body must be of type integer"
        ),
        "{err}"
    );
    // Strict field validation names an unknown field.
    let err = s.fails_stdin(
        &["create", "-f", "-"],
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: extra}\nspec: {size: 1, extra: 1}\n",
    );
    assert!(
        err.contains(r#"unknown field "spec.extra""#),
        "strict validation: {err}"
    );
    let listed = s.ok(&["get", "widgets", "-o", "name"]);
    assert_eq!(
        listed.trim(),
        "",
        "rejected objects must not be stored: {listed}"
    );

    // Without validation the unknown field is pruned, not stored.
    s.ok_stdin(
        &["create", "--validate=false", "-f", "-"],
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: pruned}\nspec: {size: 1, extra: 1}\n",
    );
    let w = s.get_json(&["widget", "pruned"]);
    assert!(
        w["spec"].get("extra").is_none(),
        "unknown field must be pruned: {w:#}"
    );
}

#[test]
fn strategic_merge_patch_is_unsupported_for_custom_resources() {
    let s = with_crd();
    s.ok_stdin(&["apply", "-f", "-"], &widget("w1", 3, "red"));
    let err = s.fails(&["patch", "widget", "w1", "-p", r#"{"spec":{"size":4}}"#]);
    assert!(
        err.contains("application/strategic-merge-patch+json is not supported by example.com/v1, Kind=Widget"),
        "{err}"
    );
    s.ok(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":4}}"#,
    ]);
    assert_eq!(s.get_json(&["widget", "w1"])["spec"]["size"], 4);
    // Client-side apply of a CRD object falls back to a merge patch.
    let out = s.ok_stdin(&["apply", "-f", "-"], &widget("w1", 5, "green"));
    assert_eq!(out.trim(), "widget.example.com/w1 configured");
    let w = s.get_json(&["widget", "w1"]);
    assert_eq!(
        (w["spec"]["size"].clone(), w["spec"]["color"].clone()),
        (5.into(), "green".into()),
        "{w:#}"
    );
}

#[test]
fn scale_subresource_of_custom_resource() {
    let s = with_crd();
    s.ok_stdin(&["apply", "-f", "-"], &widget("w1", 3, "red"));
    let out = s.ok(&["scale", "widget", "w1", "--replicas=4"]);
    assert_eq!(out.trim(), "widget.example.com/w1 scaled");
    assert_eq!(s.get_json(&["widget", "w1"])["spec"]["replicas"], 4);

    s.ok(&[
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":2,"labelSelector":"app=w1"}}"#,
    ]);
    let scale = s.get_json(&["widget", "w1", "--subresource=scale"]);
    assert_eq!(scale["kind"], "Scale", "{scale:#}");
    assert_eq!(scale["apiVersion"], "autoscaling/v1", "{scale:#}");
    assert_eq!(scale["spec"]["replicas"], 4, "{scale:#}");
    assert_eq!(scale["status"]["replicas"], 2, "{scale:#}");
    assert_eq!(scale["status"]["selector"], "app=w1", "{scale:#}");

    let err = s.fails(&[
        "scale",
        "widget",
        "w1",
        "--current-replicas=9",
        "--replicas=1",
    ]);
    assert!(err.contains("Expected replicas to be 9, was 4"), "{err}");
}

#[test]
fn status_subresource_is_separate_from_the_main_resource() {
    let s = with_crd();
    s.ok_stdin(&["apply", "-f", "-"], &widget("w1", 3, "red"));
    let w0 = s.get_json(&["widget", "w1"]);
    let generation0 = w0["metadata"]["generation"]
        .as_i64()
        .unwrap_or_else(|| panic!("generation: {w0:#}"));

    // Writes to the main resource ignore status.
    s.ok(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Main"}}"#,
    ]);
    let w = s.get_json(&["widget", "w1"]);
    assert!(
        w["status"]["phase"].is_null(),
        "status written through the main resource: {w:#}"
    );

    // Writes to /status ignore everything but status, and leave generation alone.
    s.ok(&[
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":99},"metadata":{"labels":{"via":"status"}},"status":{"phase":"Ready"}}"#,
    ]);
    let w = s.get_json(&["widget", "w1"]);
    assert_eq!(w["status"]["phase"], "Ready", "{w:#}");
    assert_eq!(w["spec"]["size"], 3, "spec written through /status: {w:#}");
    assert!(
        w["metadata"]["labels"]["via"].is_null(),
        "labels written through /status: {w:#}"
    );
    assert_eq!(
        w["metadata"]["generation"].as_i64(),
        Some(generation0),
        "status write bumped generation"
    );

    // A spec change bumps generation and keeps status.
    s.ok(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":5}}"#,
    ]);
    let w = s.get_json(&["widget", "w1"]);
    assert_eq!(
        w["metadata"]["generation"].as_i64(),
        Some(generation0 + 1),
        "{w:#}"
    );
    assert_eq!(w["status"]["phase"], "Ready", "{w:#}");

    // The Phase printer column reads status.
    let wide = s.ok(&["get", "widget", "w1", "-o", "wide"]);
    assert_eq!(row(&wide, "w1")[..4], ["w1", "5", "red", "Ready"], "{wide}");
}

#[test]
fn deleting_the_crd_removes_its_objects() {
    let s = with_crd();
    s.create_ns("other");
    s.ok_stdin(&["apply", "-f", "-"], &widget("w1", 3, "red"));
    s.ok_stdin(
        &["apply", "-n", "other", "-f", "-"],
        &widget("w2", 3, "red"),
    );
    assert_eq!(
        s.ok(&["get", "widgets", "-A", "-o", "name"])
            .lines()
            .count(),
        2
    );

    let out = s.ok(&["delete", "crd", "widgets.example.com", "--timeout=60s"]);
    assert_eq!(
        out.trim(),
        "customresourcedefinition.apiextensions.k8s.io \"widgets.example.com\" deleted"
    );
    wait_for(
        Duration::from_secs(60),
        "the widgets collection to be gone",
        || {
            let (code, body) = s.curl("GET", "/apis/example.com/v1/widgets", None, None);
            if code == 404 {
                Ok(())
            } else {
                Err(format!("{code} {body}"))
            }
        },
    );
    let (code, groups) = s.curl_json("GET", "/apis", None);
    assert_eq!(code, 200);
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("APIGroupList expected: {groups:#}"))
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert!(
        !names.contains(&"example.com"),
        "example.com still in discovery: {names:?}"
    );
    // kubectl caches discovery; with the cache dropped the type is unknown.
    std::fs::remove_dir_all(s.cache_dir()).expect("drop kubectl cache");
    let err = s.fails(&["get", "widgets", "-A"]);
    assert!(
        err.contains("the server doesn't have a resource type \"widgets\""),
        "{err}"
    );

    // Recreating the CRD does not resurrect the old objects.
    s.ok_stdin(&["apply", "-f", "-"], CRD);
    s.ok(&[
        "wait",
        "--for",
        "condition=established",
        "crd/widgets.example.com",
        "--timeout=60s",
    ]);
    let (code, list) = s.curl_json("GET", "/apis/example.com/v1/widgets", None);
    assert_eq!(code, 200, "{list:#}");
    assert_eq!(
        list["items"],
        serde_json::json!([]),
        "old widgets came back: {list:#}"
    );
}

#[test]
fn server_side_apply_of_custom_objects() {
    let s = with_crd();
    let w = |spec: &str| {
        format!("apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: ss}}\nspec: {spec}\n")
    };
    let out = s.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        &w("{size: 3, color: red}"),
    );
    assert_eq!(out.trim(), "widget.example.com/ss serverside-applied");

    let err = s.fails_stdin(
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        &w("{size: 4}"),
    );
    assert!(
        err.starts_with(
            "error: Apply failed with 1 conflict: conflict with \"kubectl\": .spec.size\n"
        ),
        "{err}"
    );
    // Dropping color from kubectl's configuration removes it.
    s.ok_stdin(&["apply", "--server-side", "-f", "-"], &w("{size: 3}"));
    let obj = s.get_json(&["widget", "ss"]);
    assert_eq!(obj["spec"], serde_json::json!({"size": 3}), "{obj:#}");
    // The schema applies to apply patches too.
    let err = s.fails_stdin(&["apply", "--server-side", "-f", "-"], &w("{size: 0}"));
    assert!(err.contains("spec.size: Invalid value: 0"), "{err}");
    assert_eq!(s.get_json(&["widget", "ss"])["spec"]["size"], 3);
}
