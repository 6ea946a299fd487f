use serde_json::{json, Value};

use super::strategic_merge_patch;
use crate::test_schema::K8s;
use crate::Error;

fn smp(doc: Value, patch: Value) -> Value {
    strategic_merge_patch(&doc, &patch, &K8s).unwrap_or_else(|e| panic!("{patch}: {e}"))
}

fn pod(containers: Value) -> Value {
    json!({"spec": {"containers": containers}})
}

#[test]
fn maps_merge_and_null_deletes() {
    let doc = json!({"metadata": {"name": "x", "labels": {"a": "1", "b": "2"}}});
    let patch = json!({"metadata": {"labels": {"b": null, "c": "3", "zz": null}}});
    assert_eq!(
        smp(doc, patch),
        json!({"metadata": {"name": "x", "labels": {"a": "1", "c": "3"}}})
    );
}

#[test]
fn lists_merge_by_key_replace_or_union() {
    let cases = [
        // merge by name, in place
        (
            pod(json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y"}])),
            pod(json!([{"name": "b", "image": "z"}])),
            pod(json!([{"name": "a", "image": "x"}, {"name": "b", "image": "z"}])),
        ),
        // a new item named by a plain patch goes before the server's items (upstream order)
        (
            pod(json!([{"name": "a"}])),
            pod(json!([{"name": "c", "image": "i"}])),
            pod(json!([{"name": "c", "image": "i"}, {"name": "a"}])),
        ),
        // the patch's order wins for the items it names
        (
            pod(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])),
            pod(json!([{"name": "c", "x": 1}, {"name": "a", "x": 2}])),
            pod(json!([{"name": "b"}, {"name": "c", "x": 1}, {"name": "a", "x": 2}])),
        ),
        // nested merge lists: ports by containerPort
        (
            pod(json!([{"name": "a", "ports": [{"containerPort": 80, "name": "http"}]}])),
            pod(json!([{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP"}]}])),
            pod(
                json!([{"name": "a", "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}]}]),
            ),
        ),
        // atomic list replaced
        (
            pod(json!([{"name": "a", "args": ["x", "y"]}])),
            pod(json!([{"name": "a", "args": ["z"]}])),
            pod(json!([{"name": "a", "args": ["z"]}])),
        ),
        // primitive merge list: union
        (
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"finalizers": ["b", "c"]}}),
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
        ),
        // list with no schema: replaced
        (
            json!({"spec": {"things": [1, 2]}}),
            json!({"spec": {"things": [3]}}),
            json!({"spec": {"things": [3]}}),
        ),
        // ownerReferences by uid
        (
            json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}}),
            json!({"metadata": {"ownerReferences": [{"uid": "1", "controller": true}]}}),
            json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a", "controller": true}]}}),
        ),
        // type change replaces
        (
            pod(json!("oops")),
            pod(json!([{"name": "a"}])),
            pod(json!([{"name": "a"}])),
        ),
        (
            json!({"data": {"k": "v"}}),
            json!({"data": "s"}),
            json!({"data": "s"}),
        ),
    ];
    for (doc, patch, want) in cases {
        assert_eq!(smp(doc.clone(), patch.clone()), want, "{doc} + {patch}");
    }
}

#[test]
fn patch_directive_on_maps() {
    let doc = json!({"spec": {"template": {"metadata": {"labels": {"a": "1"}, "annotations": {"x": "y"}}}}});
    assert_eq!(
        smp(
            doc.clone(),
            json!({"spec": {"template": {"metadata": {"$patch": "replace", "labels": {"b": "2"}}}}})
        ),
        json!({"spec": {"template": {"metadata": {"labels": {"b": "2"}}}}})
    );
    assert_eq!(
        smp(
            doc.clone(),
            json!({"spec": {"template": {"metadata": {"$patch": "delete"}}}})
        ),
        json!({"spec": {"template": {"metadata": {}}}})
    );
    assert_eq!(
        smp(
            doc.clone(),
            json!({"spec": {"template": {"metadata": {"$patch": "merge", "labels": {"b": "2"}}}}})
        ),
        json!({"spec": {"template": {"metadata": {"labels": {"a": "1", "b": "2"}, "annotations": {"x": "y"}}}}})
    );
    // deleting something that is not there adds nothing
    assert_eq!(
        smp(json!({}), json!({"spec": {"$patch": "delete"}})),
        json!({})
    );
}

#[test]
fn patch_directive_in_list_items() {
    let env = |e: Value| pod(json!([{"name": "c", "env": e}]));
    assert_eq!(
        smp(
            env(json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])),
            env(json!([{"$patch": "delete", "name": "A"}]))
        ),
        env(json!([{"name": "B", "value": "2"}]))
    );
    assert_eq!(
        smp(
            pod(json!([{"name": "a"}, {"name": "b"}])),
            pod(json!([{"$patch": "replace"}, {"name": "z", "image": "i"}]))
        ),
        pod(json!([{"name": "z", "image": "i"}]))
    );
}

#[test]
fn set_element_order() {
    let cases = [
        // reorder only
        (
            pod(json!([{"name": "a"}, {"name": "b"}])),
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}),
            pod(json!([{"name": "b"}, {"name": "a"}])),
        ),
        // kubectl set image
        (
            pod(json!([{"name": "a", "image": "1"}, {"name": "b", "image": "1"}])),
            json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                            "containers": [{"image": "2", "name": "b"}]}}),
            pod(json!([{"name": "a", "image": "1"}, {"name": "b", "image": "2"}])),
        ),
        // new item lands where the order list puts it
        (
            pod(json!([{"name": "a"}, {"name": "b"}])),
            json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "n"}, {"name": "b"}],
                            "containers": [{"name": "n"}]}}),
            pod(json!([{"name": "a"}, {"name": "n"}, {"name": "b"}])),
        ),
        // server-only items keep their place relative to named ones
        (
            pod(json!([{"name": "s"}, {"name": "a"}, {"name": "b"}])),
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}),
            pod(json!([{"name": "s"}, {"name": "b"}, {"name": "a"}])),
        ),
        // primitives
        (
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"$setElementOrder/finalizers": ["c", "b", "a"], "finalizers": ["c"]}}),
            json!({"metadata": {"finalizers": ["c", "b", "a"]}}),
        ),
        // field absent from the document
        (
            json!({"spec": {}}),
            json!({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "a"}]}}),
            pod(json!([{"name": "a"}])),
        ),
        // on a non-merging list the directive is ignored
        (
            json!({"spec": {"things": [1, 2]}}),
            json!({"spec": {"$setElementOrder/things": [2, 1]}}),
            json!({"spec": {"things": [1, 2]}}),
        ),
    ];
    for (doc, patch, want) in cases {
        assert_eq!(smp(doc.clone(), patch.clone()), want, "{doc} + {patch}");
    }
}

#[test]
fn retain_keys() {
    let deploy =
        json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
    assert_eq!(
        smp(
            deploy,
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}})
        ),
        json!({"spec": {"strategy": {"type": "Recreate"}}})
    );
    // volumes: merge,retainKeys switches the volume source
    let doc = json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]}});
    let patch = json!({"spec": {
        "$setElementOrder/volumes": [{"name": "v"}, {"name": "w"}],
        "volumes": [{"$retainKeys": ["configMap", "name"], "name": "v", "configMap": {"name": "cm"}}]
    }});
    assert_eq!(
        smp(doc, patch),
        json!({"spec": {"volumes": [{"name": "v", "configMap": {"name": "cm"}}, {"name": "w", "emptyDir": {}}]}})
    );
}

#[test]
fn delete_from_primitive_list() {
    let doc = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
    assert_eq!(
        smp(
            doc.clone(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zz"]}})
        ),
        json!({"metadata": {"finalizers": ["a", "c"]}})
    );
    assert_eq!(
        smp(
            doc,
            json!({"metadata": {"$setElementOrder/finalizers": ["c", "a"], "$deleteFromPrimitiveList/finalizers": ["b"]}})
        ),
        json!({"metadata": {"finalizers": ["c", "a"]}})
    );
    assert_eq!(
        smp(
            json!({}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}})
        ),
        json!({"metadata": {}})
    );
}

#[test]
fn directives_never_leak_into_new_values() {
    let patch = json!({"spec": {
        "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null},
        "template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"name": "a", "env": [{"$patch": "delete", "name": "X"}, {"name": "Y"}],
                            "$setElementOrder/env": [{"name": "Y"}]}],
            "volumes": [{"$retainKeys": ["name"], "name": "v"}]
        }},
        "extra": {"$patch": "replace", "k": {"$patch": "delete"}}
    }});
    assert_eq!(
        smp(json!({}), patch),
        json!({"spec": {
            "strategy": {"type": "Recreate"},
            "template": {"spec": {"containers": [{"name": "a", "env": [{"name": "Y"}]}], "volumes": [{"name": "v"}]}},
            "extra": {}
        }})
    );
}

/// What `kubectl apply` sends after editing a manifest it applied before (the
/// 3-way patch against the last-applied annotation), applied to the live object.
#[test]
fn client_side_apply_round_trip() {
    let live = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "old"},
                     "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
            "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1",
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}],
                 "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                {"name": "side", "image": "busybox"}
            ]}}
        },
        "status": {"replicas": 2}
    });
    // Manifest change: image bumped, env B removed and N inserted before C,
    // sidecar removed, replicas dropped from the manifest, a label added, Recreate.
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "new"},
                     "labels": {"tier": "front"}},
        "spec": {
            "replicas": null,
            "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null},
            "template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}],
                "containers": [
                    {"$setElementOrder/env": [{"name": "A"}, {"name": "N"}, {"name": "C"}],
                     "env": [{"name": "N", "value": "n"}, {"$patch": "delete", "name": "B"}],
                     "image": "nginx:2", "name": "web"},
                    {"$patch": "delete", "name": "side"}
                ]
            }}
        }
    });
    let want = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "new"},
                     "labels": {"app": "web", "tier": "front"}},
        "spec": {
            "strategy": {"type": "Recreate"},
            "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:2",
                 "env": [{"name": "A", "value": "1"}, {"name": "N", "value": "n"}, {"name": "C", "value": "3"}],
                 "ports": [{"containerPort": 80, "protocol": "TCP"}]}
            ]}}
        },
        "status": {"replicas": 2}
    });
    assert_eq!(smp(live, patch), want);
}

#[test]
fn invalid_patches() {
    let doc = json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [{"name": "a"}]}});
    let cases = [
        json!([1]),
        json!("x"),
        json!({"spec": {"$patch": "bogus"}}),
        json!({"spec": {"$patch": 5}}),
        json!({"spec": {"containers": [{"$patch": "merge", "name": "a"}]}}),
        json!({"spec": {"containers": [{"$patch": "frob", "name": "a"}]}}),
        json!({"spec": {"containers": [{"$patch": "delete"}]}}),
        json!({"spec": {"containers": [{"image": "no-name"}]}}),
        json!({"spec": {"$retainKeys": "type"}}),
        json!({"spec": {"$retainKeys": [1]}}),
        json!({"spec": {"$setElementOrder/containers": {"name": "a"}}}),
        json!({"spec": {"$setElementOrder/containers": [{"x": "a"}]}}),
        json!({"spec": {"$setElementOrder/": []}}),
        json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                        "containers": [{"name": "b"}, {"name": "a"}]}}),
        json!({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "b"}]}}),
        json!({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": {"name": "a"}}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
        json!({"metadata": {"finalizers": [{"x": 1}]}}),
        json!({"metadata": {"finalizers": [["a"]]}}),
    ];
    for patch in cases {
        match strategic_merge_patch(&doc, &patch, &K8s) {
            Err(Error::InvalidPatch(_)) => {}
            other => panic!("{patch}: {other:?}"),
        }
    }
    assert!(strategic_merge_patch(&json!([1]), &json!({}), &K8s).is_err());
}

#[test]
fn deep_nesting_is_rejected_not_a_crash() {
    let mut patch = json!({"leaf": 1});
    for _ in 0..400 {
        patch = json!({ "a": patch });
    }
    assert!(matches!(
        strategic_merge_patch(&json!({}), &patch, &K8s),
        Err(Error::InvalidPatch(_))
    ));
    let mut list = json!([1]);
    for _ in 0..400 {
        list = json!([list]);
    }
    assert!(strategic_merge_patch(&json!({}), &json!({"spec": {"things": list}}), &K8s).is_err());
}

#[test]
fn key_order_is_kept() {
    let doc = json!({"a": 1, "b": {"x": 1, "y": 2}, "c": 3});
    let out = smp(doc, json!({"b": {"x": 5}, "a": null, "d": 4}));
    assert_eq!(
        serde_json::to_string(&out).unwrap(),
        r#"{"b":{"x":5,"y":2},"c":3,"d":4}"#
    );
}
