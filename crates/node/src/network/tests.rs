//! Kernel-level tests: real network namespaces on a CNI bridge, real
//! nftables, busybox httpd and wget, and (in the last one) a real API server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::catalog::Catalog;
use super::rules;
use super::test_util::{can_run, exec, wget, Lab, Pod};

fn service(name: &str, ip: std::net::Ipv4Addr, affinity: bool) -> Service {
    let mut spec = json!({"clusterIP": ip.to_string(),
        "ports": [{"name": "http", "port": 80, "targetPort": "web"}]});
    if affinity {
        spec["sessionAffinity"] = json!("ClientIP");
    }
    serde_json::from_value(json!({
        "metadata": {"namespace": "ns", "name": name}, "spec": spec
    }))
    .unwrap()
}

fn slice(service: &str, pods: &[&Pod]) -> EndpointSlice {
    let eps: Vec<_> = pods
        .iter()
        .map(|p| json!({"addresses": [p.ip.to_string()], "conditions": {"ready": true}}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": "ns", "name": format!("{service}-x"),
            "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        "endpoints": eps
    }))
    .unwrap()
}

/// Ask `addr` over TCP for the A records of `name`.
async fn tcp_query(addr: std::net::SocketAddr, name: &str) -> Vec<String> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut q = Message::query();
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let body = q.to_vec().unwrap();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut out = u16::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    conn.write_all(&out).await.unwrap();
    let mut len = [0u8; 2];
    conn.read_exact(&mut len).await.unwrap();
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    conn.read_exact(&mut reply).await.unwrap();
    let m = Message::from_vec(&reply).unwrap();
    assert_eq!(m.metadata.id, q.metadata.id);
    m.answers.iter().map(|r| r.data.to_string()).collect()
}

/// Send a datagram to `ip:port` from `netns` and return the reply (a
/// backend's name, from [`Lab::udp_echo`]).
async fn udp_ask(netns: Option<&str>, ip: std::net::Ipv4Addr, port: u16) -> Result<String, String> {
    let script = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(2)\n\
         s.sendto(b'?', ('{ip}', {port}))\nprint(s.recv(100).decode(), end='')\n"
    );
    super::test_util::python(netns, &script).await
}

/// Which backends answer `url` from `netns` over `tries` requests.
async fn answers(netns: Option<&str>, url: &str, tries: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..tries {
        match wget(netns, url).await {
            Ok(body) => {
                seen.insert(body);
            }
            Err(e) => panic!("{url} from {netns:?}: {e}"),
        }
    }
    seen
}

#[tokio::test]
async fn pods_reach_pods_and_services_and_nothing_else() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new(1);
    let a = lab.pod("a").await;
    let b = lab.pod("b").await;
    let client = lab.pod("c").await;
    lab.contain_service_cidr();
    let outside = lab.outside().await;
    let host_addr = lab.host_address().await;
    let gw = lab.gateway;
    lab.httpd(None, &format!("{gw}:8081"), "gateway").await;
    let c = Some(client.netns.as_str());

    // Without the table every one of these is reachable: the checks below
    // can fail.
    let forbidden = [
        format!("http://{outside}/"),
        format!("http://{host_addr}:8080/"),
        format!("http://{gw}:8081/"),
    ];
    for url in &forbidden {
        assert!(
            wget(c, url).await.is_ok(),
            "{url} is reachable before the rules"
        );
    }

    let web = lab.service_ip(10);
    let empty = lab.service_ip(11);
    let sticky = lab.service_ip(12);
    let udp = lab.service_ip(13);
    let api = lab.service_ip(14);
    let sneaky = lab.service_ip(15);
    lab.udp_echo(&a).await;
    lab.udp_echo(&b).await;
    let services = [
        service("web", web, false),
        service("empty", empty, false),
        service("sticky", sticky, true),
        serde_json::from_value(json!({
            "metadata": {"namespace": "ns", "name": "udp"},
            "spec": {"clusterIP": udp.to_string(),
                "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}]}
        }))
        .unwrap(),
        // The API server's Service: its endpoint is a host address.
        serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "kubernetes"},
            "spec": {"clusterIP": api.to_string(), "ports": [{"name": "https", "port": 443}]}
        }))
        .unwrap(),
        // Anyone else's Service pointing at a host address.
        serde_json::from_value(json!({
            "metadata": {"namespace": "ns", "name": "sneaky"},
            "spec": {"clusterIP": sneaky.to_string(), "ports": [{"name": "http", "port": 80}]}
        }))
        .unwrap(),
    ];
    let udp_slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"namespace": "ns", "name": "udp-x",
            "labels": {"kubernetes.io/service-name": "udp"}},
        "addressType": "IPv4",
        "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}],
        "endpoints": [{"addresses": [a.ip.to_string()]}, {"addresses": [b.ip.to_string()]}]
    }))
    .unwrap();
    let sneaky_slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"namespace": "ns", "name": "sneaky-x",
            "labels": {"kubernetes.io/service-name": "sneaky"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [host_addr.to_string()]}]
    }))
    .unwrap();
    // The API server's endpoint comes through the Endpoints fallback.
    let api_endpoints: k8s_openapi::api::core::v1::Endpoints = serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "kubernetes"},
        "subsets": [{"addresses": [{"ip": host_addr.to_string()}],
                     "ports": [{"name": "https", "port": 8080}]}]
    }))
    .unwrap();
    let slices = [
        slice("web", &[&a, &b]),
        slice("sticky", &[&a, &b]),
        udp_slice,
        sneaky_slice,
    ];
    let catalog = Catalog::build(services.iter(), slices.iter(), [&api_endpoints]);
    let cfg = lab.config().rule_config();
    let script = rules::render(&cfg, &catalog);
    rules::apply(&script).await.expect(&script);
    // Applying again replaces the table in place.
    rules::apply(&script).await.expect("idempotent");

    assert_eq!(wget(c, &format!("http://{}/", a.ip)).await.unwrap(), "a");
    assert_eq!(wget(c, &format!("http://{}/", b.ip)).await.unwrap(), "b");

    let both: BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
    let url = format!("http://{web}/");
    assert_eq!(answers(c, &url, 40).await, both, "pod -> ClusterIP");
    assert_eq!(answers(None, &url, 40).await, both, "host -> ClusterIP");
    // A backend reaching its own Service (hairpin) also gets itself.
    assert_eq!(answers(Some(&a.netns), &url, 40).await, both, "hairpin");
    // ClientIP affinity: one backend for one client.
    let stuck = answers(c, &format!("http://{sticky}/"), 20).await;
    assert_eq!(stuck.len(), 1, "affinity: {stuck:?}");

    for netns in [c, None] {
        let err = wget(netns, &format!("http://{empty}/")).await.unwrap_err();
        assert!(
            err.contains("refused"),
            "no endpoints from {netns:?}: {err}"
        );
        let err = wget(netns, &format!("http://{web}:81/")).await.unwrap_err();
        assert!(
            err.contains("refused"),
            "unknown port from {netns:?}: {err}"
        );
    }

    for url in &forbidden {
        let err = wget(c, url).await.unwrap_err();
        assert!(
            !err.contains("refused"),
            "{url} was dropped, not refused: {err}"
        );
    }
    // UDP Services balance too.
    let mut seen = BTreeSet::new();
    for _ in 0..40 {
        seen.insert(udp_ask(c, udp, 53).await.expect("UDP through the Service"));
    }
    assert_eq!(seen, both, "pod -> ClusterIP over UDP");
    // The API server's Service reaches the host; another Service pointing
    // at the host is dropped for pods (the host itself may use it).
    assert_eq!(
        wget(c, &format!("http://{api}:443/")).await.unwrap(),
        "host"
    );
    let err = wget(c, &format!("http://{sneaky}/")).await.unwrap_err();
    assert!(!err.contains("refused"), "dropped, not refused: {err}");
    assert_eq!(
        wget(None, &format!("http://{sneaky}/")).await.unwrap(),
        "host"
    );
    // The host still reaches pods (probes, port-forward): replies pass.
    assert_eq!(wget(None, &format!("http://{}/", a.ip)).await.unwrap(), "a");

    rules::remove(&lab.table).await.unwrap();
    rules::remove(&lab.table)
        .await
        .expect("removing twice is fine");
    assert!(wget(c, &forbidden[0]).await.is_ok(), "rules gone");
}

#[tokio::test]
async fn dns_answers_pods_from_the_catalog() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new(2);
    let cfg = lab.config();
    // The responder starts before the bridge and its gateway address exist
    // (as on a fresh node), from an empty catalog.
    let stop = tokio_util::sync::CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(Catalog::default()));
    let server = super::dns::DnsServer::start(
        cfg.dns_listen,
        cfg.cluster_domain.clone(),
        rx,
        &tasks,
        stop.clone(),
    )
    .unwrap();

    let a = lab.pod("a").await;
    let client = lab.pod("c").await;
    let c = Some(client.netns.as_str());
    let web = lab.service_ip(10);
    let catalog = Catalog::build([&service("web", web, false)], [&slice("web", &[&a])], []);
    rules::apply(&rules::render(&cfg.rule_config(), &catalog))
        .await
        .unwrap();
    tx.send(Arc::new(catalog)).unwrap();
    let dns = server.addr().ip().to_string();

    let out = exec(c, &["nslookup", "web.ns.svc.cluster.local", &dns])
        .await
        .unwrap();
    assert!(out.contains(&web.to_string()), "{out}");
    let name = format!(
        "{}.ns.pod.cluster.local",
        a.ip.to_string().replace('.', "-")
    );
    let out = exec(c, &["nslookup", &name, &dns]).await.unwrap();
    assert!(out.contains(&a.ip.to_string()), "{out}");
    let err = exec(c, &["nslookup", "nope.ns.svc.cluster.local", &dns])
        .await
        .unwrap_err();
    assert!(err.contains("NXDOMAIN"), "{err}");
    // SRV of a named port.
    let out = exec(
        c,
        &[
            "nslookup",
            "-type=srv",
            "_http._tcp.web.ns.svc.cluster.local",
            &dns,
        ],
    )
    .await;
    assert!(
        out.as_deref()
            .is_ok_and(|o| o.contains("web.ns.svc.cluster.local")),
        "{out:?}"
    );
    // TCP, length-prefixed (busybox only asks over UDP).
    let answer = tcp_query(server.addr(), "web.ns.svc.cluster.local.").await;
    assert_eq!(answer, vec![web.to_string()]);
    stop.cancel();
    tasks.close();
    tasks.wait().await;
}

#[tokio::test]
async fn api_services_and_slices_become_traffic_and_dns() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new(3);
    let a = lab.pod("a").await;
    let b = lab.pod("b").await;
    let client = lab.pod("c").await;
    // NodeNetwork routes the Service CIDR into the bridge; removed on drop
    // should the test fail before teardown.
    lab.forget_route_on_drop();
    let c = Some(client.netns.as_str());

    let dir = tempfile::Builder::new()
        .prefix("svcnet-api-")
        .tempdir()
        .unwrap();
    let store = skiff_store::SqliteStore::open(
        &dir.path().join("state.db"),
        skiff_store::SqliteOptions::default(),
    )
    .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = skiff_apiserver::start(
        skiff_apiserver::ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().into(),
            extra_sans: vec![],
            store_metrics: None,
        },
        Arc::new(store),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let kube = skiff_client::in_process(server.router.clone(), &server.internal_token).unwrap();

    let mut cfg = lab.config();
    cfg.resync = Duration::from_secs(1);
    let net = super::NodeNetwork::start(kube.clone(), cfg, shutdown.clone())
        .await
        .unwrap();
    // Isolation is in place before any Service exists: a closed port on
    // the node is dropped (a timeout), not refused.
    let out = wget(c, &format!("http://{}:8081/", lab.gateway)).await;
    assert!(
        out.as_ref().is_err_and(|e| !e.contains("refused")),
        "{out:?}"
    );

    let ns = "default";
    let web = lab.service_ip(20);
    let services: kube::Api<Service> = kube::Api::namespaced(kube.clone(), ns);
    let slices: kube::Api<EndpointSlice> = kube::Api::namespaced(kube.clone(), ns);
    let mut svc = service("web", web, false);
    svc.metadata.namespace = Some(ns.into());
    services.create(&Default::default(), &svc).await.unwrap();
    let mut sl = slice("web", &[&a, &b]);
    sl.metadata.namespace = Some(ns.into());
    slices.create(&Default::default(), &sl).await.unwrap();

    let url = format!("http://{web}/");
    let mut last = Err(String::new());
    for _ in 0..100 {
        last = wget(c, &url).await;
        if last.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(last.is_ok(), "the Service never worked: {last:?}");
    let both: BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
    assert_eq!(answers(c, &url, 40).await, both);

    let want = format!("dev {}", lab.bridge);
    let mut routes = String::new();
    for _ in 0..100 {
        let out = std::process::Command::new("ip")
            .args(["route", "show", &lab.service_cidr.to_string()])
            .output()
            .unwrap();
        routes = String::from_utf8_lossy(&out.stdout).into_owned();
        if routes.contains(&want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(routes.contains(&want), "{routes}");
    let dns = net.dns_addr().ip().to_string();
    let out = exec(c, &["nslookup", "web.default.svc.cluster.local", &dns])
        .await
        .unwrap();
    assert!(out.contains(&web.to_string()), "{out}");

    // A table deleted behind the node's back comes back on the next resync.
    rules::remove(&lab.table).await.unwrap();
    let mut healed = Err(String::new());
    for _ in 0..100 {
        healed = wget(c, &url).await;
        if healed.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healed.is_ok(), "the table never came back: {healed:?}");

    // The slice goes away: the Service refuses, level-triggered.
    slices.delete("web-x", &Default::default()).await.unwrap();
    let mut last = Ok(String::new());
    for _ in 0..100 {
        last = wget(c, &url).await;
        if last.as_ref().is_err_and(|e| e.contains("refused")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        last.as_ref().is_err_and(|e| e.contains("refused")),
        "{last:?}"
    );

    let table = lab.table.clone();
    net.teardown().await.unwrap();
    let listed = std::process::Command::new("nft")
        .args(["list", "table", "inet", &table])
        .output()
        .unwrap();
    assert!(!listed.status.success(), "the table is gone after teardown");
    let routes = std::process::Command::new("ip")
        .args(["route", "show", &lab.service_cidr.to_string()])
        .output()
        .unwrap();
    assert!(
        routes.stdout.is_empty(),
        "the Service route is gone after teardown"
    );
    shutdown.cancel();
    server.wait().await;
}
