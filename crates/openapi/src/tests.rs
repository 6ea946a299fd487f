//! Tests of the assembled documents and patch schemas against the fixture list.

use std::time::Instant;

use serde_json::Value;

use crate::test_util::{builtins, widget};
use crate::walk;
use crate::OpenApi;

fn build() -> OpenApi {
    OpenApi::build(&builtins(), &[widget()])
}

fn gv_doc(api: &OpenApi, path: &str) -> Value {
    let doc = api.v3_group_version(path).unwrap();
    serde_json::from_slice(&doc.bytes).unwrap()
}

#[test]
fn build_time() {
    let defs = builtins();
    let started = Instant::now();
    let api = OpenApi::build(&defs, &[widget()]);
    let built = started.elapsed();
    let started = Instant::now();
    let _rebuilt = api.with_crds(&[widget()]);
    println!(
        "build: {built:?}, rebuild with CRDs: {:?}",
        started.elapsed()
    );
}

#[test]
fn index_lists_every_group_version() {
    let api = build();
    let index = api.v3_index();
    let paths = index["paths"].as_object().unwrap();
    for key in [
        "api/v1",
        "apis/apps/v1",
        "apis/batch/v1",
        "apis/discovery.k8s.io/v1",
        "apis/coordination.k8s.io/v1",
        "apis/autoscaling/v2",
        "apis/networking.k8s.io/v1",
        "apis/node.k8s.io/v1",
        "apis/rbac.authorization.k8s.io/v1",
        "apis/apiextensions.k8s.io/v1",
        "apis/example.com/v1",
    ] {
        let doc = api.v3_group_version(key).unwrap();
        let url = paths[key]["serverRelativeURL"].as_str().unwrap();
        assert_eq!(url, format!("/openapi/v3/{key}?hash={}", doc.hash));
    }
    assert_eq!(paths.len(), 11);
    assert!(api.v3_group_version("/apis/apps/v1").is_some());
    assert!(api.v3_group_version("apis/nope/v1").is_none());
    assert_eq!(
        serde_json::from_slice::<Value>(&api.v3_index_bytes()).unwrap(),
        index
    );
}

#[test]
fn deployment_patch_operation() {
    let doc = gv_doc(&build(), "apis/apps/v1");
    assert_eq!(doc["openapi"], "3.0.0");
    let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    let patch = &item["patch"];
    assert_eq!(patch["x-kubernetes-action"], "patch");
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        serde_json::json!({"group": "apps", "version": "v1", "kind": "Deployment"})
    );
    let params: Vec<(&str, &str)> = patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["in"].as_str().unwrap()))
        .collect();
    for name in ["fieldValidation", "fieldManager", "dryRun", "force"] {
        assert!(
            params.contains(&(name, "query")),
            "{name} missing: {params:?}"
        );
    }
    let content = patch["requestBody"]["content"].as_object().unwrap();
    let types: Vec<&str> = content.keys().map(String::as_str).collect();
    assert_eq!(
        types,
        [
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml"
        ]
    );
    for verb in ["get", "put", "patch", "delete"] {
        assert!(item[verb].is_object(), "{verb}");
    }
    let collection = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"];
    assert_eq!(collection["get"]["x-kubernetes-action"], "list");
    assert_eq!(collection["post"]["x-kubernetes-action"], "post");
    assert_eq!(
        collection["delete"]["x-kubernetes-action"],
        "deletecollection"
    );
    assert_eq!(
        doc["paths"]["/apis/apps/v1/deployments"]["get"]["x-kubernetes-action"],
        "list"
    );
    assert!(
        doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"]["patch"]
            .is_object()
    );
    let scale =
        &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
    assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
    assert_eq!(
        doc["paths"]["/apis/apps/v1/watch/namespaces/{namespace}/deployments"]["get"]
            ["x-kubernetes-action"],
        "watchlist"
    );
}

#[test]
fn deployment_schema_has_gvk_and_meta() {
    let doc = gv_doc(&build(), "apis/apps/v1");
    let schemas = &doc["components"]["schemas"];
    let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
    assert!(deployment.get("required").is_none());
    assert_eq!(
        deployment["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
    );
    assert_eq!(
        deployment["properties"]["spec"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
    );
    assert_eq!(
        schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"]["type"],
        "integer"
    );
    assert!(
        schemas["io.k8s.api.apps.v1.DeploymentList"]["x-kubernetes-group-version-kind"].is_array()
    );
    assert!(
        schemas["io.k8s.api.autoscaling.v1.Scale"]["x-kubernetes-group-version-kind"].is_array()
    );
    for name in [
        "ObjectMeta",
        "ListMeta",
        "Status",
        "DeleteOptions",
        "Patch",
        "WatchEvent",
    ] {
        assert!(
            schemas[format!("io.k8s.apimachinery.pkg.apis.meta.v1.{name}")].is_object(),
            "{name}"
        );
    }
    assert!(
        schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["annotations"]
            ["additionalProperties"]
            .is_object()
    );

    let pod_spec = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"];
    let containers = &pod_spec["containers"];
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(
        pod_spec["volumes"]["x-kubernetes-patch-strategy"],
        "merge,retainKeys"
    );
    let container = &schemas["io.k8s.api.core.v1.Container"]["properties"];
    assert_eq!(
        container["ports"]["x-kubernetes-patch-merge-key"],
        "containerPort"
    );
    assert_eq!(container["env"]["x-kubernetes-patch-merge-key"], "name");
    let owners = &schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]
        ["ownerReferences"];
    assert_eq!(owners["x-kubernetes-patch-merge-key"], "uid");
    assert_eq!(
        schemas["io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"]["x-kubernetes-map-type"],
        "atomic"
    );
    assert!(schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["oneOf"].is_array());
}

/// Every `$ref` in every document resolves inside that document.
#[test]
fn every_ref_resolves() {
    let api = build();
    let keys: Vec<String> = api.group_versions().map(str::to_owned).collect();
    for key in keys {
        let doc = gv_doc(&api, &key);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut all = Vec::new();
        for schema in schemas.values() {
            all.extend(walk::refs(schema));
        }
        for path in doc["paths"].as_object().unwrap().values() {
            for op in path.as_object().unwrap().values().filter(|o| o.is_object()) {
                for body in op["requestBody"]["content"]
                    .as_object()
                    .into_iter()
                    .flat_map(|c| c.values())
                {
                    all.extend(walk::refs(&body["schema"]));
                }
                for response in op["responses"].as_object().unwrap().values() {
                    for c in response["content"]
                        .as_object()
                        .into_iter()
                        .flat_map(|c| c.values())
                    {
                        all.extend(walk::refs(&c["schema"]));
                    }
                }
            }
        }
        assert!(!all.is_empty());
        for r in all {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{key}: bad ref {r}"));
            assert!(schemas.contains_key(name), "{key}: unresolved {r}");
        }
    }
    let v2: Value = serde_json::from_slice(&api.v2()).unwrap();
    assert_eq!(v2["swagger"], "2.0");
    let definitions = v2["definitions"].as_object().unwrap();
    for schema in definitions.values() {
        for r in walk::refs(schema) {
            let name = r.strip_prefix("#/definitions/").unwrap();
            assert!(definitions.contains_key(name), "v2: unresolved {r}");
        }
    }
    let patch = &v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(patch["consumes"].as_array().unwrap().len(), 4);
    assert!(patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "fieldValidation"));
}

#[test]
fn builtin_patch_schema_lookups() {
    let api = build();
    let deployment = api.patch_schema("apps", "v1", "Deployment").unwrap();
    let containers = deployment
        .field(&["spec", "template", "spec", "containers"])
        .unwrap();
    assert_eq!(containers.patch_strategy.as_deref(), Some("merge"));
    assert_eq!(containers.patch_merge_key.as_deref(), Some("name"));
    assert_eq!(containers.list_map_keys, vec!["name"]);
    let ports = deployment
        .field(&["spec", "template", "spec", "containers", "ports"])
        .unwrap();
    assert_eq!(ports.patch_merge_key.as_deref(), Some("containerPort"));
    let owners = deployment.field(&["metadata", "ownerReferences"]).unwrap();
    assert_eq!(owners.patch_merge_key.as_deref(), Some("uid"));
    let selector = deployment.field(&["spec", "selector"]).unwrap();
    assert_eq!(selector.map_type.as_deref(), Some("atomic"));
    assert_eq!(deployment.field(&["metadata", "labels", "app"]), None);
    assert_eq!(deployment.field(&["spec", "replicas"]), None);
    let conditions = deployment.field(&["status", "conditions"]).unwrap();
    assert_eq!(conditions.patch_merge_key.as_deref(), Some("type"));

    let pod = api.patch_schema("", "v1", "Pod").unwrap();
    assert_eq!(
        pod.field(&["spec", "volumes"])
            .unwrap()
            .patch_strategy
            .as_deref(),
        Some("merge,retainKeys")
    );
    let crd = api
        .patch_schema("apiextensions.k8s.io", "v1", "CustomResourceDefinition")
        .unwrap();
    let validations = [
        "spec",
        "versions",
        "schema",
        "openAPIV3Schema",
        "properties",
        "spec",
        "properties",
        "x",
        "x-kubernetes-validations",
    ];
    assert_eq!(
        crd.field(&validations).unwrap().patch_merge_key.as_deref(),
        Some("rule")
    );
    assert!(api.patch_schema("autoscaling", "v1", "Scale").is_some());
    assert!(api.patch_schema("apps", "v1", "Nope").is_none());
}

#[test]
fn crd_document_and_lookup() {
    let api = build();
    let doc = gv_doc(&api, "apis/example.com/v1");
    let widget = &doc["components"]["schemas"]["com.example.v1.Widget"];
    assert_eq!(
        widget["x-kubernetes-group-version-kind"][0]["kind"],
        "Widget"
    );
    assert_eq!(
        widget["properties"]["metadata"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert_eq!(widget["properties"]["apiVersion"]["type"], "string");
    let patch =
        &doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"];
    let content = patch["requestBody"]["content"].as_object().unwrap();
    assert!(!content.contains_key("application/strategic-merge-patch+json"));
    assert_eq!(content.len(), 3);
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Widget");

    let schema = api.patch_schema("example.com", "v1", "Widget").unwrap();
    let parts = schema.field(&["spec", "parts"]).unwrap();
    assert_eq!(parts.list_type.as_deref(), Some("map"));
    assert_eq!(parts.list_map_keys, vec!["name"]);
    assert_eq!(
        schema
            .field(&["spec", "parts", "tags"])
            .unwrap()
            .list_type
            .as_deref(),
        Some("set")
    );
    assert_eq!(
        schema
            .field(&["metadata", "finalizers"])
            .unwrap()
            .list_type
            .as_deref(),
        Some("set")
    );

    // Dropping the CRD removes its document and schema; built-ins stay.
    let without = api.with_crds(&[]);
    assert!(without.v3_group_version("apis/example.com/v1").is_none());
    assert!(without
        .patch_schema("example.com", "v1", "Widget")
        .is_none());
    assert_eq!(
        without.v3_group_version("apis/apps/v1").unwrap().hash,
        api.v3_group_version("apis/apps/v1").unwrap().hash
    );
}

#[test]
fn hostile_crd_schemas_do_not_break_the_documents() {
    let mut odd = widget();
    odd.resource.kind = "Odd".into();
    odd.resource.list_kind = "OddList".into();
    odd.resource.plural = "odds".into();
    odd.schema = serde_json::json!({"properties": "nope", "items": 3, "$ref": "#/elsewhere", "allOf": [{"$ref": 5}]});
    let mut scalar = widget();
    scalar.resource.kind = "Scalar".into();
    scalar.resource.plural = "scalars".into();
    scalar.schema = Value::String("?".into());
    let api = OpenApi::build(&builtins(), &[odd, scalar]);
    let doc = gv_doc(&api, "apis/example.com/v1");
    assert!(
        doc["components"]["schemas"]["com.example.v1.Odd"]["properties"]["metadata"].is_object()
    );
    let schema = api.patch_schema("example.com", "v1", "Odd").unwrap();
    assert_eq!(schema.field(&["spec", "x"]), None);
    assert!(api.patch_schema("example.com", "v1", "Scalar").is_some());
}
