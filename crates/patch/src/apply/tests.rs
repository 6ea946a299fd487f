use serde_json::{json, Value};

use super::*;
use crate::test_schema::K8s;

const T0: &str = "2025-01-01T00:00:00Z";
const T1: &str = "2025-01-01T00:01:00Z";

fn cm(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "default"}, "data": data})
}

fn ssa(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, ApplyError> {
    apply(live, config, manager, force, &K8s, "v1", T1)
}

fn managers(obj: &Value) -> Vec<(String, String, Value)> {
    decode_managed_fields(obj)
        .into_iter()
        .map(|e| {
            (
                e.manager,
                e.operation.as_str().to_string(),
                e.fields.to_fields_v1(),
            )
        })
        .collect()
}

fn deployment(containers: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 1, "template": {"spec": {"containers": containers}}}})
}

#[test]
fn create_via_apply_and_managed_fields_shape() {
    let mut config = cm(json!({"a": "1"}));
    config["metadata"]["labels"] = json!({"app": "web"});
    config["status"] = json!({"x": 1});
    let obj = apply(None, &config, "kubectl", false, &K8s, "v1", T0).unwrap();
    assert_eq!(obj["data"], json!({"a": "1"}));
    let want = json!([{
        "manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": T0,
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:app": {}}}}
    }]);
    // exact bytes, key order included
    assert_eq!(
        serde_json::to_string(&obj["metadata"]["managedFields"]).unwrap(),
        serde_json::to_string(&want).unwrap()
    );
}

#[test]
fn list_maps_sets_and_item_markers() {
    let mut d = deployment(json!([{"name": "web", "image": "nginx",
                                   "ports": [{"containerPort": 80, "protocol": "TCP"}]}]));
    d["metadata"]["finalizers"] = json!(["a"]);
    let obj = ssa(None, &d, "m", false).unwrap();
    let f = &obj["metadata"]["managedFields"][0]["fieldsV1"];
    assert_eq!(
        *f,
        json!({
            "f:metadata": {"f:finalizers": {"v:\"a\"": {}}},
            "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:protocol": {}}}}
            }}}}
        })
    );
}

#[test]
fn reapply_without_a_field_removes_it() {
    let obj = ssa(None, &cm(json!({"a": "1", "b": "2"})), "kubectl", false).unwrap();
    let obj = ssa(Some(&obj), &cm(json!({"a": "1"})), "kubectl", false).unwrap();
    assert_eq!(obj["data"], json!({"a": "1"}));
    assert_eq!(
        managers(&obj),
        vec![(
            "kubectl".into(),
            "Apply".into(),
            json!({"f:data": {"f:a": {}}})
        )]
    );

    // list items too
    let two = deployment(json!([{"name": "web", "image": "a"}, {"name": "side", "image": "b"}]));
    let obj = ssa(None, &two, "m", false).unwrap();
    let one = deployment(json!([{"name": "web", "image": "a"}]));
    let obj = ssa(Some(&obj), &one, "m", false).unwrap();
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"],
        json!([{"name": "web", "image": "a"}])
    );
}

#[test]
fn shared_fields_survive_until_the_last_owner_lets_go() {
    let obj = ssa(None, &cm(json!({"a": "1"})), "one", false).unwrap();
    let obj = ssa(Some(&obj), &cm(json!({"a": "1", "b": "2"})), "two", false).unwrap();
    assert_eq!(managers(&obj).len(), 2);
    let mut bare = cm(json!({}));
    bare.as_object_mut().unwrap().remove("data");
    let obj = ssa(Some(&obj), &bare, "one", false).unwrap();
    assert_eq!(obj["data"], json!({"a": "1", "b": "2"}));
    assert_eq!(
        managers(&obj),
        vec![(
            "two".into(),
            "Apply".into(),
            json!({"f:data": {"f:a": {}, "f:b": {}}})
        )]
    );
    let obj = ssa(Some(&obj), &cm(json!({"b": "2"})), "two", false).unwrap();
    assert_eq!(obj["data"], json!({"b": "2"}));
}

#[test]
fn conflicts_and_force() {
    let obj = ssa(None, &cm(json!({"a": "1", "b": "1"})), "one", false).unwrap();
    let err = ssa(Some(&obj), &cm(json!({"a": "2"})), "two", false).unwrap_err();
    assert_eq!(
        err.message(),
        r#"Apply failed with 1 conflict: conflict with "one": .data.a"#
    );
    assert_eq!(
        err.causes(),
        vec![ConflictCause {
            reason: "FieldManagerConflict",
            message: r#"conflict with "one""#.into(),
            field: ".data.a".into()
        }]
    );
    let forced = ssa(Some(&obj), &cm(json!({"a": "2"})), "two", true).unwrap();
    assert_eq!(forced["data"], json!({"a": "2", "b": "1"}));
    assert_eq!(
        managers(&forced),
        vec![
            ("one".into(), "Apply".into(), json!({"f:data": {"f:b": {}}})),
            ("two".into(), "Apply".into(), json!({"f:data": {"f:a": {}}})),
        ]
    );
    // the old owner now conflicts the other way round
    let err = ssa(
        Some(&forced),
        &cm(json!({"a": "1", "b": "1"})),
        "one",
        false,
    )
    .unwrap_err();
    assert_eq!(
        err.message(),
        r#"Apply failed with 1 conflict: conflict with "two": .data.a"#
    );
}

#[test]
fn update_then_apply_conflicts() {
    // kubectl create
    let mut obj = cm(json!({"a": "1"}));
    track_update(None, &mut obj, "kubectl-create", None, &K8s, "v1", T0);
    assert_eq!(
        obj["metadata"]["managedFields"],
        json!([{"manager": "kubectl-create", "operation": "Update", "apiVersion": "v1", "time": T0,
                "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}}])
    );
    // same value: shared, no conflict
    let same = ssa(Some(&obj), &cm(json!({"a": "1"})), "kubectl", false).unwrap();
    assert_eq!(managers(&same).len(), 2);
    // changed value: conflict naming the updater and its apiVersion
    let err = ssa(Some(&obj), &cm(json!({"a": "2"})), "kubectl", false).unwrap_err();
    assert_eq!(
        err.message(),
        r#"Apply failed with 1 conflict: conflict with "kubectl-create" using v1: .data.a"#
    );
    assert_eq!(
        err.causes()[0].message,
        r#"conflict with "kubectl-create" using v1"#
    );
}

#[test]
fn plural_conflict_message() {
    let mut obj = deployment(json!([{"name": "web", "image": "nginx:1"}]));
    track_update(None, &mut obj, "m", None, &K8s, "apps/v1", T0);
    let mut config = deployment(json!([{"name": "web", "image": "nginx:2"}]));
    config["spec"]["replicas"] = json!(3);
    let err = apply(Some(&obj), &config, "kubectl", false, &K8s, "apps/v1", T1).unwrap_err();
    assert_eq!(
        err.message(),
        "Apply failed with 2 conflicts: conflicts with \"m\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"web\"].image"
    );
    assert_eq!(err.causes().len(), 2);
    let ok = apply(Some(&obj), &config, "kubectl", true, &K8s, "apps/v1", T1).unwrap();
    assert_eq!(ok["spec"]["replicas"], json!(3));
    // the updater keeps what it still solely owns (name), loses image and replicas
    let m = managers(&ok);
    assert_eq!(m[1].0, "m");
    assert_eq!(
        m[1].2,
        json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:name": {}}}}}}})
    );
}

#[test]
fn list_map_merge_by_key_between_managers() {
    let obj = ssa(
        None,
        &deployment(json!([{"name": "web", "image": "a"}])),
        "one",
        false,
    )
    .unwrap();
    let side = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                      "spec": {"template": {"spec": {"containers": [{"name": "side", "image": "b"}]}}}});
    let obj = ssa(Some(&obj), &side, "two", false).unwrap();
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"],
        json!([{"name": "web", "image": "a"}, {"name": "side", "image": "b"}])
    );
    // `one` drops its container: only that one goes
    let mut none = deployment(json!([]));
    none["spec"]["template"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("containers");
    let obj = ssa(Some(&obj), &none, "one", false).unwrap();
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"],
        json!([{"name": "side", "image": "b"}])
    );
    assert_eq!(obj["spec"]["replicas"], json!(1));
}

#[test]
fn pruned_items_stay_while_someone_owns_part_of_them() {
    let obj = ssa(
        None,
        &deployment(json!([{"name": "web", "image": "a"}])),
        "one",
        false,
    )
    .unwrap();
    // kubectl set image: an update that only changes the image
    let mut set = obj.clone();
    set["spec"]["template"]["spec"]["containers"][0]["image"] = json!("b");
    track_update(
        Some(&obj),
        &mut set,
        "kubectl-set",
        None,
        &K8s,
        "apps/v1",
        T1,
    );
    let mut none = deployment(json!([]));
    none["spec"]["template"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("containers");
    let obj = apply(Some(&set), &none, "one", false, &K8s, "apps/v1", T1).unwrap();
    // the item keeps its key field and the image someone else owns
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"],
        json!([{"name": "web", "image": "b"}])
    );
}

#[test]
fn defaulted_key_fields_identify_the_same_item() {
    let port = |p: Value| deployment(json!([{"name": "web", "image": "a", "ports": [p]}]));
    // the server defaulted protocol; the manifest omits it
    let mut live = port(json!({"containerPort": 80, "protocol": "TCP", "name": "http"}));
    track_update(None, &mut live, "kubectl-create", None, &K8s, "apps/v1", T0);
    let obj = apply(
        Some(&live),
        &port(json!({"containerPort": 80, "name": "http"})),
        "k",
        false,
        &K8s,
        "apps/v1",
        T1,
    )
    .unwrap();
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80, "protocol": "TCP", "name": "http"}])
    );
    let err = apply(
        Some(&live),
        &port(json!({"containerPort": 80, "name": "web"})),
        "k",
        false,
        &K8s,
        "apps/v1",
        T1,
    )
    .unwrap_err();
    assert_eq!(
        err.message(),
        r#"Apply failed with 1 conflict: conflict with "kubectl-create" using apps/v1: .spec.template.spec.containers[name="web"].ports[containerPort=80,protocol="TCP"].name"#
    );
}

#[test]
fn client_side_apply_then_server_side_apply() {
    // what `kubectl apply` (client-side) leaves behind, then `--server-side`
    let mut obj = cm(json!({"a": "1"}));
    obj["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": "{}"});
    track_update(
        None,
        &mut obj,
        "kubectl-client-side-apply",
        None,
        &K8s,
        "v1",
        T0,
    );
    let err = ssa(Some(&obj), &cm(json!({"a": "2"})), "kubectl", false).unwrap_err();
    assert_eq!(
        err.message(),
        r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: .data.a"#
    );
    assert_eq!(
        managers(&obj)[0].2,
        json!({"f:data": {"f:a": {}}, "f:metadata": {"f:annotations": {
            "f:kubectl.kubernetes.io/last-applied-configuration": {}}}})
    );
}

#[test]
fn update_moves_ownership_and_removals_leave_every_entry() {
    let applied = ssa(None, &cm(json!({"a": "1", "b": "1"})), "kubectl", false).unwrap();
    let mut edited = applied.clone();
    edited["data"] = json!({"a": "edited", "c": "new"});
    track_update(
        Some(&applied),
        &mut edited,
        "kubectl-edit",
        None,
        &K8s,
        "v1",
        T1,
    );
    assert_eq!(
        managers(&edited),
        vec![(
            "kubectl-edit".into(),
            "Update".into(),
            json!({"f:data": {"f:a": {}, "f:c": {}}})
        ),]
    );
    let err = ssa(Some(&edited), &cm(json!({"a": "1"})), "kubectl", false).unwrap_err();
    assert_eq!(
        err.message(),
        r#"Apply failed with 1 conflict: conflict with "kubectl-edit" using v1: .data.a"#
    );
    // a no-change update records nothing
    let mut again = edited.clone();
    track_update(Some(&edited), &mut again, "other", None, &K8s, "v1", T1);
    assert_eq!(managers(&again), managers(&edited));
    // subresource entries are separate and named
    let mut st = edited.clone();
    st["status"] = json!({"phase": "x"});
    track_update(
        Some(&edited),
        &mut st,
        "ctrl",
        Some("status"),
        &K8s,
        "v1",
        T1,
    );
    let e = decode_managed_fields(&st);
    let ctrl = e.iter().find(|e| e.manager == "ctrl").unwrap();
    assert_eq!(ctrl.subresource.as_deref(), Some("status"));
    assert_eq!(
        ctrl.fields.to_fields_v1(),
        json!({"f:status": {"f:phase": {}}})
    );
}

#[test]
fn server_owned_fields_are_not_tracked() {
    let mut obj = cm(json!({"a": "1"}));
    obj["metadata"]["uid"] = json!("u");
    obj["metadata"]["resourceVersion"] = json!("5");
    obj["metadata"]["creationTimestamp"] = json!(T0);
    obj["status"] = json!({"s": 1});
    track_update(None, &mut obj, "c", None, &K8s, "v1", T0);
    assert_eq!(managers(&obj)[0].2, json!({"f:data": {"f:a": {}}}));
}

#[test]
fn objects_without_managed_fields_belong_to_before_first_apply() {
    let live = cm(json!({"a": "1"}));
    let err = ssa(Some(&live), &cm(json!({"a": "2"})), "kubectl", false).unwrap_err();
    assert_eq!(
        err.message(),
        r#"Apply failed with 1 conflict: conflict with "before-first-apply" using v1: .data.a"#
    );
}

#[test]
fn noop_apply_keeps_the_entry_time() {
    let obj = apply(None, &cm(json!({"a": "1"})), "k", false, &K8s, "v1", T0).unwrap();
    let again = apply(
        Some(&obj),
        &cm(json!({"a": "1"})),
        "k",
        false,
        &K8s,
        "v1",
        T1,
    )
    .unwrap();
    assert_eq!(again, obj);
    let changed = apply(
        Some(&obj),
        &cm(json!({"a": "2"})),
        "k",
        false,
        &K8s,
        "v1",
        T1,
    )
    .unwrap();
    assert_eq!(changed["metadata"]["managedFields"][0]["time"], json!(T1));
}

#[test]
fn invalid_configurations_and_hostile_input() {
    assert!(matches!(
        ssa(None, &json!([1]), "m", false),
        Err(ApplyError::Invalid(_))
    ));
    let mut with_mf = cm(json!({}));
    with_mf["metadata"]["managedFields"] = json!([]);
    assert!(matches!(
        ssa(None, &with_mf, "m", false),
        Err(ApplyError::Invalid(_))
    ));

    // garbage managedFields on the live object are dropped, not fatal
    for mf in [
        json!("x"),
        json!([1, {"operation": "Nope"}, {"manager": "z", "operation": "Update", "fieldsV1": {"k:bad": {}, "f:data": 3}}]),
    ] {
        let mut live = cm(json!({"a": "1"}));
        live["metadata"]["managedFields"] = mf;
        ssa(Some(&live), &cm(json!({"a": "2"})), "m", true).unwrap();
    }
    // list items of the wrong shape, type flips, deep nesting
    let weird = deployment(json!([1, "x", null, {"image": "no-name"}, [2]]));
    let obj = ssa(None, &weird, "m", false).unwrap();
    let obj = ssa(Some(&obj), &deployment(json!("flip")), "m", false).unwrap();
    let _ = ssa(Some(&obj), &weird, "m", false).unwrap();
    let mut deep = json!("x");
    for _ in 0..400 {
        deep = json!({ "a": deep });
    }
    let obj = ssa(None, &cm(deep.clone()), "m", false).unwrap();
    let _ = ssa(Some(&obj), &cm(json!({})), "m", false).unwrap();
    let mut o = cm(deep);
    track_update(None, &mut o, "u", None, &K8s, "v1", T0);
}
