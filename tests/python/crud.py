"""CRUD, selectors, pagination and conflicts through CoreV1Api/AppsV1Api."""

from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers import check, connect, expect_api_error, namespace

api = connect()
v1 = client.CoreV1Api(api)
apps = client.AppsV1Api(api)
ns = namespace(api, "py-crud")

# --- ConfigMaps -------------------------------------------------------------
cm = client.V1ConfigMap(
    metadata=client.V1ObjectMeta(name="cm1", labels={"app": "py", "tier": "a"}),
    data={"k": "v"},
)
created = v1.create_namespaced_config_map(ns, cm)
check(created.metadata.uid and created.metadata.resource_version, "create returns uid and resourceVersion")
check(created.metadata.creation_timestamp is not None, "creationTimestamp is set")

got = v1.read_namespaced_config_map("cm1", ns)
check(got.data == {"k": "v"}, "read returns the data")

got.data["k2"] = "v2"
replaced = v1.replace_namespaced_config_map("cm1", ns, got)
check(replaced.data == {"k": "v", "k2": "v2"}, "replace updates the data")
check(int(replaced.metadata.resource_version) > int(created.metadata.resource_version), "replace bumps resourceVersion")

patched = v1.patch_namespaced_config_map("cm1", ns, {"data": {"k": None, "p": "q"}})
check(patched.data == {"k2": "v2", "p": "q"}, "strategic/merge patch with null deletes a key")

# 409 AlreadyExists on create of an existing object.
body = expect_api_error(lambda: v1.create_namespaced_config_map(ns, cm), 409, "AlreadyExists")
check(body["message"] == 'configmaps "cm1" already exists', "AlreadyExists message")

# 409 Conflict on a stale update.
stale = replaced  # resourceVersion from before the patch
stale.data = {"stale": "yes"}
body = expect_api_error(lambda: v1.replace_namespaced_config_map("cm1", ns, stale), 409, "Conflict")
check("the object has been modified" in body["message"], "Conflict message")
check(v1.read_namespaced_config_map("cm1", ns).data == {"k2": "v2", "p": "q"}, "stale update wrote nothing")

# 404 on a missing object.
expect_api_error(lambda: v1.read_namespaced_config_map("nope", ns), 404, "NotFound")

# --- Label selectors and pagination ------------------------------------------
for i in range(7):
    v1.create_namespaced_config_map(
        ns,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"page-{i}", labels={"app": "py", "tier": "b" if i % 2 else "c"})),
    )
sel = v1.list_namespaced_config_map(ns, label_selector="tier=b")
check(sorted(i.metadata.name for i in sel.items) == ["page-1", "page-3", "page-5"], "label selector tier=b")
sel = v1.list_namespaced_config_map(ns, label_selector="app=py,tier in (a,c)")
check(sorted(i.metadata.name for i in sel.items) == ["cm1", "page-0", "page-2", "page-4", "page-6"], "set-based selector")
sel = v1.list_namespaced_config_map(ns, field_selector="metadata.name=page-2")
check([i.metadata.name for i in sel.items] == ["page-2"], "field selector metadata.name")

names, cont, pages = [], None, 0
while True:
    kwargs = {"label_selector": "app=py", "limit": 3}
    if cont:
        kwargs["_continue"] = cont
    page = v1.list_namespaced_config_map(ns, **kwargs)
    pages += 1
    check(len(page.items) <= 3, f"page {pages} has at most 3 items")
    names += [i.metadata.name for i in page.items]
    cont = page.metadata._continue
    if not cont:
        break
    check(page.metadata.remaining_item_count is None or page.metadata.remaining_item_count > 0, "remainingItemCount")
    check(pages < 10, "pagination terminates")
check(pages == 3, f"8 objects in pages of 3 is 3 pages (got {pages})")
check(sorted(names) == sorted(["cm1"] + [f"page-{i}" for i in range(7)]), "pages cover every object exactly once")

# Cross-namespace list.
every = v1.list_config_map_for_all_namespaces(label_selector="app=py")
check(len(every.items) == 8 and all(i.metadata.namespace == ns for i in every.items), "list across namespaces")

v1.delete_namespaced_config_map("cm1", ns)
expect_api_error(lambda: v1.read_namespaced_config_map("cm1", ns), 404, "NotFound")
v1.delete_collection_namespaced_config_map(ns, label_selector="tier=b")
left = v1.list_namespaced_config_map(ns, label_selector="app=py")
check(sorted(i.metadata.name for i in left.items) == ["page-0", "page-2", "page-4", "page-6"], "deletecollection by label")

# --- Deployments ------------------------------------------------------------
dep = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="web"),
    spec=client.V1DeploymentSpec(
        replicas=2,
        selector=client.V1LabelSelector(match_labels={"app": "web"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "web"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="app", image="nginx:1.27")]),
        ),
    ),
)
d = apps.create_namespaced_deployment(ns, dep)
check(d.spec.replicas == 2 and d.metadata.generation == 1, "deployment created with generation 1")
check(d.spec.strategy.type == "RollingUpdate", "defaults applied (strategy RollingUpdate)")
check(d.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent", "container defaults applied")

# The deployment controller writes status right after the create, so a replace
# is a read-modify-write retried on 409 Conflict, as client-go's RetryOnConflict.
for attempt in range(10):
    d = apps.read_namespaced_deployment("web", ns)
    d.spec.replicas = 4
    try:
        d = apps.replace_namespaced_deployment("web", ns, d)
        break
    except ApiException as e:
        if e.status != 409 or attempt == 9:
            raise
check(d.spec.replicas == 4 and d.metadata.generation == 2, "replace bumps generation")

d = apps.patch_namespaced_deployment(
    "web", ns, {"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "busybox"}]}}}}
)
check([c.name for c in d.spec.template.spec.containers] == ["side", "app"], "strategic merge patch merges containers by name")

scale = apps.read_namespaced_deployment_scale("web", ns)
check(scale.spec.replicas == 4, "read scale")
scale = apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 1}})
check(scale.spec.replicas == 1, "patch scale")
check(apps.read_namespaced_deployment("web", ns).spec.replicas == 1, "scale wrote spec.replicas")

bad = client.V1Deployment(metadata=client.V1ObjectMeta(name="bad"), spec=dep.spec)
bad.spec.replicas = -1
body = expect_api_error(lambda: apps.create_namespaced_deployment(ns, bad), 422, "Invalid")
check(body["details"]["causes"][0]["field"] == "spec.replicas", "invalid field named")

listed = apps.list_namespaced_deployment(ns)
check([i.metadata.name for i in listed.items] == ["web"], "deployment list")
apps.delete_namespaced_deployment("web", ns)
expect_api_error(lambda: apps.read_namespaced_deployment("web", ns), 404, "NotFound")
print("crud: all checks passed")
