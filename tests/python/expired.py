"""410 Gone: a watch from a compacted resourceVersion, and an expired continue token.

The server is started with --history-seconds 10, so compaction runs every 10 s
at the revision current one period earlier; this script waits (bounded) for it.
"""

import time

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from helpers import check, connect, namespace

api = connect()
v1 = client.CoreV1Api(api)
ns = namespace(api, "py-gone")

for i in range(4):
    v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"c{i}")))
first = v1.list_namespaced_config_map(ns, limit=2)
old_rv = first.metadata.resource_version
cont = first.metadata._continue
check(cont, "first page has a continue token")
# Later writes, so that compaction moves past old_rv.
v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="later")))
v1.patch_namespaced_config_map("later", ns, {"data": {"x": "y"}})

deadline = time.monotonic() + 60
gone = None
while gone is None:
    w = watch.Watch()
    try:
        for _ in w.stream(v1.list_namespaced_config_map, ns, resource_version=str(int(old_rv) - 1), timeout_seconds=1):
            pass  # replayed events: not compacted yet
    except ApiException as e:
        if e.status == 410:
            gone = e
            break
        raise
    if time.monotonic() > deadline:
        raise AssertionError("no 410 for a watch from an old resourceVersion within 60 s (compaction not happening?)")
    time.sleep(0.5)
check("Expired" in (gone.reason or "") or "too old" in (gone.reason or ""), f"410 watch error: {gone.reason}")

try:
    v1.list_namespaced_config_map(ns, limit=2, _continue=cont)
    raise AssertionError("continue token from before compaction still accepted")
except ApiException as e:
    import json

    body = json.loads(e.body)
    check(e.status == 410 and body.get("reason") == "Expired", f"expired continue token: 410 Expired ({body.get('message')})")

# A list at resourceVersion older than compaction with an exact match is 410 too.
try:
    v1.list_namespaced_config_map(ns, resource_version=str(int(old_rv) - 1), resource_version_match="Exact")
    raise AssertionError("exact list at a compacted revision succeeded")
except ApiException as e:
    check(e.status == 410, f"list at compacted revision: {e.status}")

# Relisting works and a new watch from the fresh list is fine.
fresh = v1.list_namespaced_config_map(ns)
check(len(fresh.items) == 5, "relist after 410")
print("expired: all checks passed")
