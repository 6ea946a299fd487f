"""The dynamic client with a CustomResourceDefinition."""

import time

from kubernetes import client, dynamic
from kubernetes.client.rest import ApiException

from helpers import check, connect, expect_api_error, namespace

api = connect()
ns = namespace(api, "py-dyn")
ext = client.ApiextensionsV1Api(api)

crd = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gizmos.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo", "shortNames": ["gz"]},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer", "minimum": 1}}},
                            "status": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
                        },
                    }
                },
            }
        ],
    },
}
ext.create_custom_resource_definition(crd)

# Wait (bounded) for Established.
deadline = time.monotonic() + 60
while True:
    got = ext.read_custom_resource_definition("gizmos.example.com")
    conds = {c.type: c.status for c in (got.status.conditions or [])} if got.status else {}
    if conds.get("Established") == "True":
        break
    if time.monotonic() > deadline:
        raise AssertionError(f"CRD not established: {conds}")
    time.sleep(0.1)
check(True, "CRD established")

# Discovery-driven dynamic client (retry while discovery catches up).
deadline = time.monotonic() + 30
while True:
    try:
        dyn = dynamic.DynamicClient(api)
        gizmos = dyn.resources.get(api_version="example.com/v1", kind="Gizmo")
        break
    except Exception as e:  # ResourceNotFoundError until discovery has it
        if time.monotonic() > deadline:
            raise AssertionError(f"Gizmo not in discovery: {e}")
        time.sleep(0.1)
check(gizmos.namespaced and gizmos.name == "gizmos", "dynamic client resolved Gizmo")

obj = gizmos.create(
    namespace=ns,
    body={"apiVersion": "example.com/v1", "kind": "Gizmo", "metadata": {"name": "g1", "labels": {"k": "v"}}, "spec": {"size": 2}},
)
check(obj.metadata.name == "g1" and obj.spec.size == 2, "create custom object")
got = gizmos.get(namespace=ns, name="g1")
check(got.spec.size == 2, "get custom object")
listed = gizmos.get(namespace=ns, label_selector="k=v")
check([i.metadata.name for i in listed.items] == ["g1"], "list custom objects by label")

patched = gizmos.patch(
    namespace=ns, name="g1", body={"spec": {"size": 5}}, content_type="application/merge-patch+json"
)
check(patched.spec.size == 5, "merge patch custom object")

status = gizmos.status.patch(
    namespace=ns, name="g1", body={"status": {"ok": True}}, content_type="application/merge-patch+json"
)
check(status.status.ok is True, "status subresource patch")

body = expect_api_error(
    lambda: gizmos.create(
        namespace=ns, body={"apiVersion": "example.com/v1", "kind": "Gizmo", "metadata": {"name": "bad"}, "spec": {"size": 0}}
    ),
    422,
    "Invalid",
)
check(body["details"]["causes"][0]["field"] == "spec.size", "schema violation names spec.size")

applied = gizmos.server_side_apply(
    namespace=ns,
    body={"apiVersion": "example.com/v1", "kind": "Gizmo", "metadata": {"name": "g2"}, "spec": {"size": 3}},
    field_manager="py",
)
check(applied.spec.size == 3, "server-side apply creates a custom object")

gizmos.delete(namespace=ns, name="g1")
try:
    gizmos.get(namespace=ns, name="g1")
    raise AssertionError("g1 still exists")
except ApiException as e:
    check(e.status == 404, "deleted custom object is gone")
except dynamic.exceptions.NotFoundError:
    check(True, "deleted custom object is gone")
print("dynamic_crd: all checks passed")
