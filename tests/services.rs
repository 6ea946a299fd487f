//! Services end to end: Endpoints and EndpointSlices following pod readiness,
//! named target ports resolved per pod, headless hostnames, selector-less
//! Services left to their user, and cleanup with the Service. Pods are driven
//! by hand (created bound to a Node, their status patched with an IP and the
//! Ready condition), except in the last test, where a Deployment runs on fake
//! nodes and readiness is flipped with the `fake.skiff.dev/ready` annotation.
//! Every wait is bounded; nothing asserts on timing.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{wait_for, Server};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

/// A server whose hand-made Node is never declared unreachable while a test
/// runs (it has no agent renewing its Lease).
fn server() -> Server {
    Server::start_with(&["--node-monitor-grace-seconds", "3600"])
}

fn create(s: &Server, obj: &Value) {
    s.ok_stdin(&["create", "-f", "-"], &obj.to_string());
}

fn node(s: &Server, name: &str) {
    create(
        s,
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}),
    );
}

/// A pod bound to `node-a` whose single container offers `ports`
/// (`(name, containerPort)`).
fn pod(s: &Server, ns: &str, name: &str, labels: Value, ports: &[(&str, i32)], extra: Value) {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p)| json!({"name": n, "containerPort": p}))
        .collect();
    let mut spec = json!({
        "nodeName": "node-a",
        "containers": [{"name": "main", "image": "busybox", "ports": ports}],
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    create(
        s,
        &json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": spec,
        }),
    );
}

/// Patch the pod's status as a node agent would: Running with `ip`, Ready or not.
fn set_status(s: &Server, ns: &str, name: &str, ip: &str, ready: bool) {
    let status = json!({"status": {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
    }});
    s.ok(&[
        "patch",
        "pod",
        name,
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
}

/// One address of an Endpoints object: (ip, ready, hostname, sorted
/// `name:port` of its subset).
type Addr = (String, bool, String, Vec<String>);

fn endpoints_addresses(ep: &Value) -> BTreeSet<Addr> {
    let mut out = BTreeSet::new();
    for subset in ep["subsets"].as_array().into_iter().flatten() {
        let mut ports: Vec<String> = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("{}:{}", p["name"].as_str().unwrap_or(""), p["port"]))
            .collect();
        ports.sort();
        for (field, ready) in [("addresses", true), ("notReadyAddresses", false)] {
            for a in subset[field].as_array().into_iter().flatten() {
                out.insert((
                    a["ip"].as_str().unwrap_or("").to_string(),
                    ready,
                    a["hostname"].as_str().unwrap_or("").to_string(),
                    ports.clone(),
                ));
            }
        }
    }
    out
}

fn addr(ip: &str, ready: bool, hostname: &str, ports: &[&str]) -> Addr {
    (
        ip.to_string(),
        ready,
        hostname.to_string(),
        ports.iter().map(|p| p.to_string()).collect(),
    )
}

/// The Service's Endpoints, or `None` if there are none.
fn get_endpoints(s: &Server, ns: &str, name: &str) -> Option<Value> {
    let out = s.kubectl(&["get", "endpoints", name, "-n", ns, "-o", "json"]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Wait until the Service's Endpoints list exactly `want`.
#[track_caller]
fn wait_endpoints(s: &Server, ns: &str, name: &str, want: &BTreeSet<Addr>) -> Value {
    wait_for(WAIT, &format!("endpoints {ns}/{name} = {want:?}"), || {
        let ep = get_endpoints(s, ns, name).ok_or("no endpoints yet")?;
        let got = endpoints_addresses(&ep);
        if &got == want {
            Ok(ep)
        } else {
            Err(format!("{got:?}"))
        }
    })
}

/// The Service's slices (managed by the controller).
fn slices(s: &Server, ns: &str, service: &str) -> Vec<Value> {
    let list = s.get_json(&[
        "endpointslices",
        "-n",
        ns,
        "-l",
        &format!("kubernetes.io/service-name={service}"),
    ]);
    list["items"].as_array().cloned().unwrap_or_default()
}

/// One slice endpoint: (ip, ready, serving, terminating, sorted `name:port`).
type SliceEp = (String, bool, bool, bool, Vec<String>);

fn slice_endpoints(items: &[Value]) -> BTreeSet<SliceEp> {
    let mut out = BTreeSet::new();
    for slice in items {
        let mut ports: Vec<String> = slice["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("{}:{}", p["name"].as_str().unwrap_or(""), p["port"]))
            .collect();
        ports.sort();
        for ep in slice["endpoints"].as_array().into_iter().flatten() {
            let c = &ep["conditions"];
            for ip in ep["addresses"].as_array().into_iter().flatten() {
                out.insert((
                    ip.as_str().unwrap_or("").to_string(),
                    c["ready"] == true,
                    c["serving"] == true,
                    c["terminating"] == true,
                    ports.clone(),
                ));
            }
        }
    }
    out
}

fn slice_ep(ip: &str, ready: bool, ports: &[&str]) -> SliceEp {
    (
        ip.to_string(),
        ready,
        ready,
        false,
        ports.iter().map(|p| p.to_string()).collect(),
    )
}

#[track_caller]
fn wait_slices(s: &Server, ns: &str, service: &str, want: &BTreeSet<SliceEp>) -> Vec<Value> {
    wait_for(
        WAIT,
        &format!("slices of {ns}/{service} = {want:?}"),
        || {
            let items = slices(s, ns, service);
            let got = slice_endpoints(&items);
            if &got == want {
                Ok(items)
            } else {
                Err(format!("{got:?}"))
            }
        },
    )
}

#[test]
fn endpoints_follow_readiness() {
    let s = server();
    let ns = "shop";
    s.create_ns(ns);
    node(&s, "node-a");
    create(
        &s,
        &json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": ns, "labels": {"tier": "front"}},
            "spec": {
                "selector": {"app": "web"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "web"},
                    {"name": "metrics", "port": 9090, "targetPort": 9100},
                ],
            },
        }),
    );
    let web = json!({"app": "web"});
    pod(&s, ns, "p1", web.clone(), &[("web", 8080)], json!({}));
    pod(&s, ns, "p2", web.clone(), &[("web", 8080)], json!({}));
    // The same port name on another number: resolved per pod.
    pod(&s, ns, "p3", web.clone(), &[("web", 8081)], json!({}));
    // No port named `web`: only the numeric target applies to it.
    pod(&s, ns, "p4", web.clone(), &[("other", 7000)], json!({}));
    // Not selected.
    pod(
        &s,
        ns,
        "x1",
        json!({"app": "other"}),
        &[("web", 8080)],
        json!({}),
    );
    for (name, ip) in [
        ("p1", "10.244.0.11"),
        ("p2", "10.244.0.12"),
        ("p3", "10.244.0.13"),
        ("p4", "10.244.0.14"),
        ("x1", "10.244.0.99"),
    ] {
        set_status(&s, ns, name, ip, true);
    }

    let both = ["http:8080", "metrics:9100"];
    let mut want: BTreeSet<Addr> = [
        addr("10.244.0.11", true, "", &both),
        addr("10.244.0.12", true, "", &both),
        addr("10.244.0.13", true, "", &["http:8081", "metrics:9100"]),
        addr("10.244.0.14", true, "", &["metrics:9100"]),
    ]
    .into();
    let ep = wait_endpoints(&s, ns, "web", &want);
    assert_eq!(ep["metadata"]["labels"]["tier"], "front", "{ep}");
    assert!(
        ep["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"]
            .is_string(),
        "{ep}"
    );
    // Addresses name their pod and node.
    let first = &ep["subsets"][0]["addresses"][0];
    assert_eq!(first["targetRef"]["kind"], "Pod", "{ep}");
    assert_eq!(first["nodeName"], "node-a", "{ep}");
    assert!(ep["metadata"]["ownerReferences"].is_null(), "{ep}");

    let mut want_slices: BTreeSet<SliceEp> = [
        slice_ep("10.244.0.11", true, &both),
        slice_ep("10.244.0.12", true, &both),
        slice_ep("10.244.0.13", true, &["http:8081", "metrics:9100"]),
        slice_ep("10.244.0.14", true, &["metrics:9100"]),
    ]
    .into();
    let items = wait_slices(&s, ns, "web", &want_slices);
    for slice in &items {
        assert_eq!(slice["addressType"], "IPv4", "{slice}");
        assert_eq!(
            slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
            "endpointslice-controller.k8s.io"
        );
        assert_eq!(slice["metadata"]["labels"]["tier"], "front");
        let owner = &slice["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Service", "{slice}");
        assert_eq!(owner["name"], "web", "{slice}");
        assert!(
            slice["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("web-")),
            "{slice}"
        );
    }

    // p2 turns unready: notReadyAddresses, ready=false in its slice.
    set_status(&s, ns, "p2", "10.244.0.12", false);
    want.remove(&addr("10.244.0.12", true, "", &both));
    want.insert(addr("10.244.0.12", false, "", &both));
    wait_endpoints(&s, ns, "web", &want);
    want_slices.remove(&slice_ep("10.244.0.12", true, &both));
    want_slices.insert(slice_ep("10.244.0.12", false, &both));
    wait_slices(&s, ns, "web", &want_slices);

    // p1 goes away: it leaves both.
    s.ok(&[
        "delete",
        "pod",
        "p1",
        "-n",
        ns,
        "--grace-period=0",
        "--force",
    ]);
    want.remove(&addr("10.244.0.11", true, "", &both));
    wait_endpoints(&s, ns, "web", &want);
    want_slices.remove(&slice_ep("10.244.0.11", true, &both));
    wait_slices(&s, ns, "web", &want_slices);

    // A pod whose labels stop matching leaves too.
    s.ok(&["label", "pod", "p3", "-n", ns, "app=gone", "--overwrite"]);
    want.remove(&addr(
        "10.244.0.13",
        true,
        "",
        &["http:8081", "metrics:9100"],
    ));
    wait_endpoints(&s, ns, "web", &want);

    let described = s.ok(&["describe", "svc", "web", "-n", ns]);
    assert!(
        described.contains("Endpoints:") && described.contains("10.244.0.14"),
        "{described}"
    );

    // Deleting the Service removes its Endpoints and slices.
    s.ok(&["delete", "svc", "web", "-n", ns]);
    wait_for(WAIT, "endpoints and slices of web to go", || {
        let ep = get_endpoints(&s, ns, "web");
        let left = slices(&s, ns, "web");
        if ep.is_none() && left.is_empty() {
            Ok(())
        } else {
            Err(format!("endpoints {ep:?}, {} slices", left.len()))
        }
    });
}

#[test]
fn headless_hostnames_and_selectorless_services() {
    let s = server();
    let ns = "data";
    s.create_ns(ns);
    node(&s, "node-a");

    // A Service without a selector with Endpoints its user manages.
    create(
        &s,
        &json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "ext", "namespace": ns},
            "spec": {"ports": [{"name": "pg", "port": 5432}]},
        }),
    );
    create(
        &s,
        &json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "ext", "namespace": ns},
            "subsets": [{
                "addresses": [{"ip": "192.0.2.10"}],
                "ports": [{"name": "pg", "port": 5432}],
            }],
        }),
    );
    let user_rv =
        s.get_json(&["endpoints", "ext", "-n", ns])["metadata"]["resourceVersion"].clone();

    // A headless Service whose pods name themselves under it.
    create(
        &s,
        &json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "db", "namespace": ns},
            "spec": {"clusterIP": "None", "selector": {"app": "db"}},
        }),
    );
    for (i, ip) in [(0, "10.244.1.10"), (1, "10.244.1.11")] {
        let name = format!("db-{i}");
        pod(
            &s,
            ns,
            &name,
            json!({"app": "db"}),
            &[],
            json!({"hostname": name, "subdomain": "db"}),
        );
        set_status(&s, ns, &name, ip, i == 0);
    }
    let want: BTreeSet<Addr> = [
        addr("10.244.1.10", true, "db-0", &[]),
        addr("10.244.1.11", false, "db-1", &[]),
    ]
    .into();
    let ep = wait_endpoints(&s, ns, "db", &want);
    assert!(
        ep["metadata"]["labels"]
            .get("service.kubernetes.io/headless")
            .is_some(),
        "{ep}"
    );
    let items = wait_for(WAIT, "slices of db with hostnames", || {
        let items = slices(&s, ns, "db");
        let mut hosts: Vec<String> = items
            .iter()
            .flat_map(|sl| sl["endpoints"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e["hostname"].as_str().map(str::to_string))
            .collect();
        hosts.sort();
        if hosts == ["db-0", "db-1"] {
            Ok(items)
        } else {
            Err(format!("{hosts:?}"))
        }
    });
    assert!(items.iter().all(|sl| sl["metadata"]["labels"]
        .get("service.kubernetes.io/headless")
        .is_some()));

    // The controllers have run since `ext` was made: its Endpoints are as
    // its user wrote them, and no slices were made for it.
    let ext = s.get_json(&["endpoints", "ext", "-n", ns]);
    assert_eq!(ext["metadata"]["resourceVersion"], user_rv, "{ext}");
    assert_eq!(
        endpoints_addresses(&ext),
        [addr("192.0.2.10", true, "", &["pg:5432"])].into()
    );
    assert!(slices(&s, ns, "ext").is_empty());

    // A Service with a selector but no pods gets empty Endpoints and one
    // placeholder slice.
    create(
        &s,
        &json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "lonely", "namespace": ns},
            "spec": {"selector": {"app": "nobody"}, "ports": [{"port": 80}]},
        }),
    );
    wait_for(WAIT, "empty endpoints and a placeholder slice", || {
        let ep = get_endpoints(&s, ns, "lonely").ok_or("no endpoints")?;
        let items = slices(&s, ns, "lonely");
        if endpoints_addresses(&ep).is_empty()
            && items.len() == 1
            && items[0]["endpoints"].as_array().is_none_or(Vec::is_empty)
        {
            Ok(())
        } else {
            Err(format!("{ep} / {items:?}"))
        }
    });
}

#[test]
fn deployment_pods_on_fake_nodes_follow_readiness() {
    let s = Server::start_with(&["--fake-nodes", "2"]);
    let ns = "default";
    s.ok(&[
        "create",
        "deployment",
        "api",
        "--image=busybox",
        "--replicas=3",
        "--port=8080",
    ]);
    s.ok(&[
        "expose",
        "deployment",
        "api",
        "--port=80",
        "--target-port=8080",
    ]);
    let ready_ips = |ep: &Value| -> (usize, usize) {
        let a = endpoints_addresses(ep);
        (
            a.iter().filter(|x| x.1).count(),
            a.iter().filter(|x| !x.1).count(),
        )
    };
    wait_for(WAIT, "three ready addresses", || {
        let ep = get_endpoints(&s, ns, "api").ok_or("no endpoints")?;
        match ready_ips(&ep) {
            (3, 0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let pods = s.get_json(&["pods", "-l", "app=api"]);
    let victim = pods["items"][0]["metadata"]["name"]
        .as_str()
        .expect("pod name")
        .to_string();
    s.ok(&["annotate", "pod", &victim, "fake.skiff.dev/ready=false"]);
    wait_for(WAIT, "one address to turn not ready", || {
        let ep = get_endpoints(&s, ns, "api").ok_or("no endpoints")?;
        let items = slices(&s, ns, "api");
        let unready: Vec<String> = items
            .iter()
            .flat_map(|sl| sl["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["conditions"]["ready"] == false)
            .filter_map(|e| e["targetRef"]["name"].as_str().map(str::to_string))
            .collect();
        if ready_ips(&ep) == (2, 1) && unready == [victim.clone()] {
            Ok(())
        } else {
            Err(format!("{:?} / {unready:?}", ready_ips(&ep)))
        }
    });
    // Scaled to zero: no addresses, one placeholder slice.
    s.ok(&["scale", "deployment", "api", "--replicas=0"]);
    wait_for(WAIT, "no addresses left", || {
        let ep = get_endpoints(&s, ns, "api").ok_or("no endpoints")?;
        let items = slices(&s, ns, "api");
        let eps: usize = items
            .iter()
            .map(|sl| sl["endpoints"].as_array().map_or(0, Vec::len))
            .sum();
        if endpoints_addresses(&ep).is_empty() && eps == 0 && items.len() == 1 {
            Ok(())
        } else {
            Err(format!(
                "{} addresses, {eps} slice endpoints",
                endpoints_addresses(&ep).len()
            ))
        }
    });
}
