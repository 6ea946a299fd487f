"""list + watch from the list's resourceVersion, and resuming a watch."""

from kubernetes import client, watch

from helpers import check, connect, namespace

api = connect()
v1 = client.CoreV1Api(api)
ns = namespace(api, "py-watch")


def cm(name, value):
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"v": value})


def events(rv, want, timeout=20, on_event=None):
    """Watch from rv until `want` events arrived (or the server ends the stream)."""
    w = watch.Watch()
    got = []
    for ev in w.stream(v1.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=timeout):
        got.append((ev["type"], ev["object"].metadata.name, ev["object"].data, ev["object"].metadata.resource_version))
        if on_event:
            on_event(len(got))
        if len(got) >= want:
            w.stop()
    return got


v1.create_namespaced_config_map(ns, cm("before", "0"))
listed = v1.list_namespaced_config_map(ns)
list_rv = listed.metadata.resource_version
check([i.metadata.name for i in listed.items] == ["before"], "initial list")

# Changes after the list, replayed by a watch from the list's resourceVersion.
v1.create_namespaced_config_map(ns, cm("a", "1"))
v1.patch_namespaced_config_map("a", ns, {"data": {"v": "2"}})
v1.delete_namespaced_config_map("a", ns)
got = events(list_rv, 3)
check([(t, n) for t, n, _, _ in got] == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")], f"ADDED/MODIFIED/DELETED in order: {got}")
check(got[1][2] == {"v": "2"}, "MODIFIED carries the new object")
rvs = [int(r) for _, _, _, r in got]
check(rvs == sorted(rvs) and len(set(rvs)) == 3, f"event resourceVersions increase: {rvs}")
check(rvs[0] > int(list_rv), "no event at or before the list resourceVersion")

# Resume from the last event: only later changes arrive.
last_rv = got[-1][3]
v1.create_namespaced_config_map(ns, cm("b", "1"))
v1.create_namespaced_config_map(ns, cm("c", "1"))
got = events(last_rv, 2)
check([(t, n) for t, n, _, _ in got] == [("ADDED", "b"), ("ADDED", "c")], f"resumed watch sees only later events: {got}")

# Live: a change made while the watch is open arrives on it.
mid_rv = got[0][3]  # replays c, then waits


def change(n):
    if n == 1:
        v1.patch_namespaced_config_map("b", ns, {"data": {"v": "live"}})


got = events(mid_rv, 2, on_event=change)
check([(t, n) for t, n, _, _ in got] == [("ADDED", "c"), ("MODIFIED", "b")], f"live event delivered: {got}")
check(got[1][2] == {"v": "live"}, "live MODIFIED has the new data")

# A watch with a label selector only sees matching objects; an object that
# stops matching is reported as DELETED for that watcher.
sel_rv = v1.list_namespaced_config_map(ns).metadata.resource_version
v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="sel", labels={"w": "yes"})))
v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="unsel")))
v1.patch_namespaced_config_map("sel", ns, {"metadata": {"labels": {"w": "no"}}})
w = watch.Watch()
got = []
for ev in w.stream(v1.list_namespaced_config_map, ns, resource_version=sel_rv, label_selector="w=yes", timeout_seconds=5):
    got.append((ev["type"], ev["object"].metadata.name))
    if len(got) >= 2:
        w.stop()
check(got == [("ADDED", "sel"), ("DELETED", "sel")], f"selector watch: {got}")

# A watch ends cleanly at timeoutSeconds.
got = events(v1.list_namespaced_config_map(ns).metadata.resource_version, 1, timeout=1)
check(got == [], "an idle watch ends at timeoutSeconds with no events")
print("watch_resume: all checks passed")
