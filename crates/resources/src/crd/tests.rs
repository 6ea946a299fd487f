//! End-to-end tests of the public CRD API: definitions, the strategy pipeline and
//! CRD validation.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::test_util::widget_crd;
use super::*;
use crate::{ErrorType, ScaleSubresource, Strategy};

fn served(crd: &Value) -> Vec<CrdVersion> {
    crd_resource_defs(crd).unwrap()
}

fn storage_strategy() -> std::sync::Arc<dyn Strategy> {
    served(&widget_crd())
        .into_iter()
        .find(|v| v.storage)
        .unwrap()
        .def
        .strategy
}

fn fields(errs: &[crate::FieldError]) -> Vec<(String, String)> {
    errs.iter()
        .map(|e| (e.field.clone(), e.message()))
        .collect()
}

#[test]
fn served_versions_become_resource_defs() {
    let versions = served(&widget_crd());
    assert_eq!(
        versions.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        vec!["v1beta1", "v1"]
    );
    let (beta, v1) = (&versions[0], &versions[1]);
    assert!(!beta.storage && v1.storage);
    assert!(beta.deprecated);
    assert_eq!(beta.deprecation_warning.as_deref(), Some("use v1"));
    let d = &v1.def;
    assert_eq!(
        (d.group.as_str(), d.version.as_str(), d.kind.as_str()),
        ("example.com", "v1", "Widget")
    );
    assert_eq!(
        (d.list_kind.as_str(), d.plural.as_str(), d.singular.as_str()),
        ("WidgetList", "widgets", "widget")
    );
    assert_eq!(d.short_names, vec!["wd"]);
    assert_eq!(d.categories, vec!["all"]);
    assert!(d.namespaced);
    assert_eq!(
        d.verbs,
        vec![
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "create",
            "update",
            "watch"
        ]
    );
    assert!(d.has_status);
    assert!(!beta.def.has_status);
    assert_eq!(
        d.scale,
        Some(ScaleSubresource {
            spec_replicas_path: ".spec.size".into(),
            status_replicas_path: ".status.replicas".into(),
            label_selector_path: Some(".spec.selector".into()),
        })
    );
    assert!(d.schema.is_none());
    assert_eq!(
        v1.schema.as_ref().and_then(|s| s.get("type")),
        Some(&json!("object"))
    );
    assert_eq!(d.api_version(), "example.com/v1");
}

#[test]
fn names_default_and_missing_fields_are_errors() {
    let mut crd = widget_crd();
    crd["spec"]["names"] = json!({"plural": "widgets", "kind": "Widget"});
    let v = served(&crd);
    assert_eq!(
        (v[0].def.singular.as_str(), v[0].def.list_kind.as_str()),
        ("widget", "WidgetList")
    );

    let errs = crd_resource_defs(&json!({"spec": {"versions": "nope"}})).unwrap_err();
    let paths: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "spec.group",
            "spec.names.plural",
            "spec.names.kind",
            "spec.scope",
            "spec.versions"
        ]
    );
    assert!(crd_resource_defs(&json!([1, 2])).is_err());
    assert!(crd_resource_defs(&json!(null)).is_err());
}

#[test]
fn strategy_prunes_defaults_and_validates() {
    let s = storage_strategy();
    let input = json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1", "namespace": "default"},
        "spec": {"size": 3, "shape": "round", "tags": ["a"]},
        "status": {"replicas": 1, "extra": true}
    });
    assert_eq!(
        s.unknown_fields(&input),
        vec![".spec.shape", ".status.extra"]
    );
    let mut obj = s.normalize(input).unwrap();
    assert!(obj["spec"].get("shape").is_none());
    s.default(&mut obj);
    assert_eq!(obj["spec"]["color"], json!("red"));
    assert_eq!(s.validate(&obj, None), vec![]);
    assert!(s.normalize(json!("string body")).is_err());
}

#[test]
fn validation_errors_carry_kubernetes_paths() {
    let s = storage_strategy();
    let obj = json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "Bad_Name"},
        "spec": {"size": "3", "color": "purple", "tags": ["a", "a"]},
    });
    let errs = s.validate(&obj, None);
    let got = fields(&errs);
    assert_eq!(got[0].0, "metadata.name");
    assert!(
        got[0]
            .1
            .starts_with("Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"),
        "{}",
        got[0].1
    );
    assert_eq!(
        got[1..].to_vec(),
        vec![
            (
                "spec.size".to_string(),
                "Invalid value: \"string\": spec.size in body must be of type integer: \"string\""
                    .to_string()
            ),
            (
                "spec.color".to_string(),
                "Unsupported value: \"purple\": supported values: \"red\", \"green\", \"blue\""
                    .to_string()
            ),
            (
                "spec.tags[1]".to_string(),
                "Duplicate value: \"a\"".to_string()
            ),
        ]
    );
    let errs = s.validate(&json!({"metadata": {"name": "w"}, "spec": {}}), None);
    assert_eq!(
        fields(&errs),
        vec![("spec.size".to_string(), "Required value".to_string())]
    );
    let errs = s.validate(
        &json!({"metadata": {"name": "w"}, "spec": {"size": 0}}),
        None,
    );
    assert_eq!(errs[0].kind, ErrorType::Invalid);
    assert_eq!(
        errs[0].detail,
        "spec.size in body should be greater than or equal to 1"
    );
}

#[test]
fn strategy_is_total_on_hostile_input() {
    let s = storage_strategy();
    for input in [
        json!(null),
        json!([1, {"a": 2}]),
        json!({"spec": [1]}),
        json!({"metadata": 5, "spec": {"size": {}}}),
        json!("x"),
    ] {
        let _ = s.validate(&input, Some(&input));
        let _ = s.unknown_fields(&input);
        let _ = s.row(&input, Utc::now());
        let mut copy = input.clone();
        s.default(&mut copy);
        if let Ok(mut n) = s.normalize(input) {
            s.default(&mut n);
        }
    }
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!({"spec": deep});
    }
    let _ = s.validate(&deep, None);
    let _ = s.unknown_fields(&deep);
}

#[test]
fn table_uses_printer_columns() {
    let s = storage_strategy();
    let names: Vec<String> = s.columns().into_iter().map(|c| c.name).collect();
    assert_eq!(names, vec!["Name", "Size", "Color", "Ready", "Age"]);
    let now = DateTime::parse_from_rfc3339("2024-01-01T01:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let obj = json!({
        "metadata": {"name": "w1", "creationTimestamp": "2024-01-01T00:55:00Z"},
        "spec": {"size": 3, "color": "red"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}
    });
    assert_eq!(
        s.row(&obj, now),
        vec![
            json!("w1"),
            json!(3),
            json!("red"),
            json!("True"),
            json!("5m")
        ]
    );
    assert_eq!(s.field_value(&obj, "spec.size"), None);
}

#[test]
fn valid_crd_passes_validation() {
    assert_eq!(fields(&validate_crd(&widget_crd(), None)), vec![]);
    assert_eq!(
        fields(&validate_crd(&widget_crd(), Some(&widget_crd()))),
        vec![]
    );
}

#[test]
fn crd_name_group_and_names_are_checked() {
    let mut crd = widget_crd();
    crd["metadata"]["name"] = json!("gadgets.example.com");
    crd["spec"]["group"] = json!("example");
    crd["spec"]["names"]["plural"] = json!("Widgets");
    crd["spec"]["names"]["kind"] = json!("Wid get");
    crd["spec"]["names"]["listKind"] = json!("Wid get");
    crd["spec"]["names"]["shortNames"] = json!(["ok", "NO"]);
    crd["spec"]["scope"] = json!("Global");
    let errs = validate_crd(&crd, None);
    let paths: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "metadata.name",
            "spec.group",
            "spec.scope",
            "spec.names.plural",
            "spec.names.kind",
            "spec.names.listKind",
            "spec.names.listKind",
            "spec.names.shortNames[1]",
        ]
    );
    assert_eq!(
        errs[0].message(),
        "Invalid value: \"gadgets.example.com\": must be spec.names.plural+\".\"+spec.group"
    );
    assert_eq!(
        errs[1].message(),
        "Invalid value: \"example\": should be a domain with at least one dot"
    );
    assert_eq!(
        errs[2].message(),
        "Unsupported value: \"Global\": supported values: \"Cluster\", \"Namespaced\""
    );
    assert!(errs[4]
        .detail
        .starts_with("may have mixed case, but should otherwise match: a DNS-1035 label"));
    assert_eq!(errs[6].detail, "kind and listKind may not be the same");

    let mut changed = widget_crd();
    changed["spec"]["scope"] = json!("Cluster");
    let errs = validate_crd(&changed, Some(&widget_crd()));
    assert_eq!(
        fields(&errs),
        vec![(
            "spec.scope".to_string(),
            "Invalid value: \"Cluster\": field is immutable".to_string()
        )]
    );
}

#[test]
fn crd_versions_are_checked() {
    let mut crd = widget_crd();
    crd["spec"]["versions"][0]["storage"] = json!(true);
    crd["spec"]["versions"][2]["name"] = json!("v1");
    let errs = validate_crd(&crd, None);
    assert_eq!(
        fields(&errs),
        vec![
            (
                "spec.versions".to_string(),
                "Invalid value: [\"v1beta1\",\"v1\",\"v1\"]: must have exactly one version marked as storage version".to_string()
            ),
            ("spec.versions[2].name".to_string(), "Duplicate value: \"v1\"".to_string()),
        ]
    );

    let mut crd = widget_crd();
    crd["spec"]["versions"] = json!([{"name": "V1", "served": false, "storage": true}]);
    let paths: Vec<String> = validate_crd(&crd, None)
        .into_iter()
        .map(|e| e.field)
        .collect();
    assert_eq!(
        paths,
        vec![
            "spec.versions",
            "spec.versions[0].name",
            "spec.versions[0].schema.openAPIV3Schema"
        ]
    );

    crd["spec"]["versions"] = json!([]);
    assert_eq!(
        fields(&validate_crd(&crd, None)),
        vec![(
            "spec.versions".to_string(),
            "Required value: must have at least one version".to_string()
        )]
    );
}

#[test]
fn crd_subresources_and_columns_are_checked() {
    let mut crd = widget_crd();
    crd["spec"]["versions"][1]["subresources"]["scale"] =
        json!({"specReplicasPath": ".status.size", "labelSelectorPath": "spec.sel"});
    crd["spec"]["versions"][1]["additionalPrinterColumns"] = json!([
        {"name": "", "type": "text", "format": "weird", "jsonPath": "spec.size"},
        {"name": "Ok", "type": "string", "jsonPath": ".spec.x[", "priority": -1},
    ]);
    let errs = validate_crd(&crd, None);
    let got = fields(&errs);
    let p = "spec.versions[1]";
    assert_eq!(
        got,
        vec![
            (format!("{p}.subresources.scale.specReplicasPath"), "Invalid value: \".status.size\": should be a json path under .spec".to_string()),
            (format!("{p}.subresources.scale.statusReplicasPath"), "Required value".to_string()),
            (
                format!("{p}.subresources.scale.labelSelectorPath"),
                "Invalid value: \"spec.sel\": should be a json path under either .spec or .status".to_string()
            ),
            (format!("{p}.additionalPrinterColumns[0].name"), "Required value".to_string()),
            (
                format!("{p}.additionalPrinterColumns[0].type"),
                "Unsupported value: \"text\": supported values: \"integer\", \"number\", \"string\", \"boolean\", \"date\"".to_string()
            ),
            (
                format!("{p}.additionalPrinterColumns[0].format"),
                "Unsupported value: \"weird\": supported values: \"int32\", \"int64\", \"float\", \"double\", \"byte\", \"date\", \"date-time\", \"password\"".to_string()
            ),
            (format!("{p}.additionalPrinterColumns[0].jsonPath"), "Invalid value: \"spec.size\": must be a simple json path starting with .".to_string()),
            (format!("{p}.additionalPrinterColumns[1].priority"), "Invalid value: -1: must be greater than or equal to 0".to_string()),
            (format!("{p}.additionalPrinterColumns[1].jsonPath"), "Invalid value: \".spec.x[\": must be a simple json path starting with .".to_string()),
        ]
    );
}

#[test]
fn crd_schemas_must_be_structural() {
    let mut crd = widget_crd();
    crd["spec"]["versions"][1]["schema"]["openAPIV3Schema"] = json!({
        "type": "object",
        "properties": {
            "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
            "spec": {
                "properties": {
                    "a": {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": {"type": "string"}},
                    "b": {"type": "array", "items": [{"type": "string"}], "uniqueItems": true},
                    "c": {"type": "string", "pattern": "(", "$ref": "#/x"},
                    "d": {"type": "integer", "minimum": 1, "default": 0},
                    "e": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "f": {"type": "string", "allOf": [{"type": "string", "minLength": 1}]},
                    "g": {"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
                    "h": {"type": "thing"},
                    "i": {"type": "object", "x-kubernetes-preserve-unknown-fields": false},
                    "j": {"x-kubernetes-preserve-unknown-fields": true},
                }
            }
        }
    });
    let errs = validate_crd(&crd, None);
    let base = "spec.versions[1].schema.openAPIV3Schema";
    let got: Vec<(String, String)> = fields(&errs)
        .into_iter()
        .map(|(f, m)| (f.strip_prefix(base).unwrap_or(&f).to_string(), m))
        .collect();
    let want = vec![
        (".properties[metadata]", "Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"),
        (".properties[spec].type", "Required value: must not be empty for specified object fields"),
        (".properties[spec].properties[a].additionalProperties", "Forbidden: additionalProperties and properties are mutual exclusive"),
        (".properties[spec].properties[b].uniqueItems", "Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"),
        (".properties[spec].properties[b].items", "Forbidden: items must be a schema object and not an array"),
        (".properties[spec].properties[c].$ref", "Forbidden: $ref is not supported in structural schemas"),
        (".properties[spec].properties[c].pattern", "Invalid value: \"(\": must be a valid regular expression, but isn't"),
        (
            ".properties[spec].properties[d].default",
            "Invalid value: 0: spec.versions[1].schema.openAPIV3Schema.properties[spec].properties[d].default in body should be greater than or equal to 1",
        ),
        (".properties[spec].properties[f].allOf[0].type", "Forbidden: must be empty to be structural"),
        (".properties[spec].properties[g].x-kubernetes-list-map-keys", "Required value: must not be empty if x-kubernetes-list-type is map"),
        (".properties[spec].properties[h].type", "Unsupported value: \"thing\": supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\""),
        (".properties[spec].properties[i].x-kubernetes-preserve-unknown-fields", "Invalid value: false: must be true or undefined"),
    ];
    let want: Vec<(String, String)> = want
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(got, want);

    crd["spec"]["versions"][1]["schema"]["openAPIV3Schema"] = json!({"type": "string"});
    assert_eq!(
        fields(&validate_crd(&crd, None)),
        vec![(
            format!("{base}.type"),
            "Invalid value: \"string\": must be object at the root".to_string()
        )]
    );
}

#[test]
fn crd_validation_is_total() {
    for crd in [
        json!(null),
        json!([]),
        json!({"spec": []}),
        json!({"spec": {"versions": [1, null, {"schema": []}]}}),
    ] {
        assert!(!validate_crd(&crd, Some(&crd)).is_empty());
    }
    let mut deep = json!({"type": "string"});
    for _ in 0..100 {
        deep = json!({"type": "object", "properties": {"a": deep}});
    }
    let mut crd = widget_crd();
    crd["spec"]["versions"][1]["schema"]["openAPIV3Schema"] = deep;
    let errs = validate_crd(&crd, None);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].kind, ErrorType::Forbidden);
}
