//! The real node's network, end to end over runc pods driven with kubectl:
//! Services by cluster IP and by DNS name from pods and from the host, pod
//! to pod by address, headless Services, and the isolation that keeps pods
//! away from the node's own addresses. Needs root (namespaces, nftables).
//!
//! The sandbox runtime has no `exec` yet, so a client pod runs the checks
//! as its command and the test reads its log.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::node::*;

/// A veth link on the host with an address outside the pod and Service
/// networks; removed on drop.
struct HostAddress {
    link: String,
    ip: Ipv4Addr,
}

impl HostAddress {
    fn new() -> HostAddress {
        let pid = std::process::id();
        let link = format!("sknet{}", pid % 100_000);
        let ip = Ipv4Addr::new(198, 19, (pid % 250) as u8, 1);
        let guard = HostAddress { link, ip };
        let peer = format!("{}p", guard.link);
        run_ok(
            "ip",
            &[
                "link",
                "add",
                &guard.link,
                "type",
                "veth",
                "peer",
                "name",
                &peer,
            ],
        );
        run_ok(
            "ip",
            &["addr", "add", &format!("{ip}/32"), "dev", &guard.link],
        );
        run_ok("ip", &["link", "set", &guard.link, "up"]);
        run_ok("ip", &["link", "set", &peer, "up"]);
        guard
    }
}

impl Drop for HostAddress {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.link])
            .status();
    }
}

fn run_ok(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An HTTP listener in this process answering `reached-host` to everyone,
/// until the test ends (the thread dies with the process).
fn host_listener(ip: Ipv4Addr) -> SocketAddr {
    let l = TcpListener::bind((ip, 0)).unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 512];
            let _ = c.read(&mut buf);
            let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 13\r\n\r\nreached-host\n");
        }
    });
    addr
}

/// `GET /` from the host, raw HTTP/1.0 with timeouts.
fn host_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    c.set_read_timeout(Some(Duration::from_secs(3)))?;
    c.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    c.read_to_string(&mut out)?;
    Ok(out)
}

const BACKENDS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: netns1}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: httpd
        image: busybox:test
        command: ["sh", "-c", "mkdir -p /www && echo \"served by $(hostname)\" > /www/index.html && exec httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: netns1}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-direct, namespace: netns1}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 8080}]
"#;

/// What the client pod runs: every check prints a marked line.
const CLIENT_SCRIPT: &str = r#"
echo "== resolv.conf"; cat /etc/resolv.conf; echo "== end"
for n in web web.netns1.svc.cluster.local web-direct.netns1.svc.cluster.local; do
  echo "== nslookup $n"; timeout 10 nslookup $n 2>&1; echo "== end"
done
i=0
while [ $i -lt 40 ]; do
  i=$((i+1)); echo "svc: $(timeout 5 wget -qO- http://web/ 2>&1)"
done
echo "fqdn: $(timeout 5 wget -qO- http://web.netns1.svc.cluster.local/ 2>&1)"
echo "svc.ns: $(timeout 5 wget -qO- http://web.netns1/ 2>&1)"
for ip in $BACKEND_IPS; do echo "pod $ip: $(timeout 5 wget -qO- http://$ip:8080/ 2>&1)"; done
echo "host gateway: $(timeout 4 wget -qO- http://$GATEWAY/ 2>&1)"
echo "host other: $(timeout 4 wget -qO- http://$OTHER/ 2>&1)"
echo CHECKS-DONE
sleep 3600
"#;

fn client_pod(backend_ips: &str, gateway: &str, other: &str) -> String {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "client", "namespace": "netns1"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "client",
                "image": "busybox:test",
                "command": ["sh", "-c", CLIENT_SCRIPT],
                "env": [
                    {"name": "BACKEND_IPS", "value": backend_ips},
                    {"name": "GATEWAY", "value": gateway},
                    {"name": "OTHER", "value": other},
                ],
            }],
        },
    })
    .to_string()
}

/// The lines of one `== nslookup <name>` block of the client's log.
fn nslookup_block<'a>(log: &'a str, name: &str) -> &'a str {
    let start = if name == "resolv.conf" {
        "== resolv.conf\n".to_string()
    } else {
        format!("== nslookup {name}\n")
    };
    let Some(i) = log.find(&start) else {
        return "";
    };
    let rest = &log[i + start.len()..];
    &rest[..rest.find("== end").unwrap_or(rest.len())]
}

#[test]
fn pods_reach_services_by_name_and_each_other_but_not_the_node() {
    let host_other = HostAddress::new();
    let s = node_server();
    s.create_ns("netns1");
    s.ok_stdin(&["apply", "-f", "-"], BACKENDS);

    // Both backends run with addresses.
    let backends: Vec<(String, String)> = until(
        Duration::from_secs(90),
        || {
            let list = s.get_json(&["pods", "-n", "netns1", "-l", "app=web"]);
            let items = list["items"].as_array()?;
            let v: Vec<(String, String)> = items
                .iter()
                .filter(|p| p["status"]["phase"] == "Running")
                .filter_map(|p| {
                    Some((
                        p["metadata"]["name"].as_str()?.to_string(),
                        p["status"]["podIP"].as_str()?.to_string(),
                    ))
                })
                .collect();
            (v.len() == 2).then_some(v)
        },
        || {
            format!(
                "{}\n{}",
                s.ok(&["get", "pods", "-A", "-o", "wide"]),
                s.log()
            )
        },
    );
    let cluster_ip = s.ok(&[
        "get",
        "svc",
        "web",
        "-n",
        "netns1",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert!(cluster_ip.parse::<Ipv4Addr>().is_ok(), "{cluster_ip}");
    // Both endpoints are published before the client starts.
    until(
        Duration::from_secs(30),
        || {
            let eps = s.ok(&[
                "get",
                "endpointslices",
                "-n",
                "netns1",
                "-l",
                "kubernetes.io/service-name=web",
                "-o",
                "jsonpath={.items[*].endpoints[*].addresses[0]}",
            ]);
            backends
                .iter()
                .all(|(_, ip)| eps.split_whitespace().any(|e| e == ip))
                .then_some(())
        },
        || s.log(),
    );

    // The node's addresses: the bridge gateway and one more host address,
    // each with a listener the host itself can reach.
    let pod_ip: Ipv4Addr = backends[0].1.parse().unwrap();
    let o = pod_ip.octets();
    let gateway = Ipv4Addr::new(o[0], o[1], o[2], 1);
    let gw_addr = host_listener(gateway);
    let other_addr = host_listener(host_other.ip);
    assert!(host_get(gw_addr).unwrap().contains("reached-host"));
    assert!(host_get(other_addr).unwrap().contains("reached-host"));

    let ips: Vec<&str> = backends.iter().map(|(_, ip)| ip.as_str()).collect();
    s.ok_stdin(
        &["apply", "-f", "-"],
        &client_pod(
            &ips.join(" "),
            &gw_addr.to_string(),
            &other_addr.to_string(),
        ),
    );
    let log = until(
        Duration::from_secs(240),
        || {
            let out = s.kubectl(&["logs", "-n", "netns1", "client"]);
            let l = String::from_utf8_lossy(&out.stdout).into_owned();
            l.contains("CHECKS-DONE").then_some(l)
        },
        || {
            format!(
                "{}\n{}",
                String::from_utf8_lossy(&s.kubectl(&["logs", "-n", "netns1", "client"]).stdout),
                s.log()
            )
        },
    );

    // DNS: the short name (search path) and the full name give the cluster
    // IP. (busybox nslookup applies the search path only to names without
    // a dot, so <svc>.<ns> is checked below through the libc resolver.)
    let resolv = nslookup_block(&log, "resolv.conf");
    assert!(
        resolv.contains("search netns1.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    for name in ["web", "web.netns1.svc.cluster.local"] {
        let block = nslookup_block(&log, name);
        assert!(
            block.contains(&format!("Address: {cluster_ip}")),
            "nslookup {name} should give {cluster_ip}:\n{block}\n--- full log:\n{log}"
        );
    }
    // A headless Service's name gives the pods' addresses.
    let block = nslookup_block(&log, "web-direct.netns1.svc.cluster.local");
    for (_, ip) in &backends {
        assert!(
            block.contains(&format!("Address: {ip}")),
            "headless name should give {ip}:\n{block}"
        );
    }
    assert!(!block.contains(&cluster_ip), "{block}");

    // The Service spreads requests over both backends.
    for (name, _) in &backends {
        assert!(
            log.lines()
                .any(|l| l.starts_with("svc: ") && l.contains(&format!("served by {name}"))),
            "no request to the Service reached {name}:\n{log}"
        );
    }
    for prefix in ["fqdn: served by web-", "svc.ns: served by web-"] {
        assert!(
            log.lines().any(|l| l.starts_with(prefix)),
            "{prefix}\n{log}"
        );
    }
    // Pod to pod by address.
    for (name, ip) in &backends {
        assert!(
            log.contains(&format!("pod {ip}: served by {name}")),
            "pod {ip}:\n{log}"
        );
    }
    // The node's own addresses are out of reach from the pod.
    let line = |prefix: &str| {
        log.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_default()
            .to_string()
    };
    let gw = line("host gateway:");
    let other = line("host other:");
    assert!(!gw.is_empty() && !gw.contains("reached-host"), "{gw}");
    assert!(
        !other.is_empty() && !other.contains("reached-host"),
        "{other}"
    );

    // The host reaches the Service by its cluster IP.
    let svc: SocketAddr = format!("{cluster_ip}:80").parse().unwrap();
    let reply = until(
        Duration::from_secs(20),
        || host_get(svc).ok().filter(|r| r.contains("served by web-")),
        || format!("{:?}", host_get(svc)),
    );
    assert!(reply.contains("served by web-"), "{reply}");

    // After the server goes (and `skiff node reset`), no table and no
    // bridge are left.
    let bridge = bridge_with(gateway).expect("the pod bridge holds the gateway");
    let table = format!(
        "skiff_{}",
        bridge.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    assert!(nft_table_exists(&table), "table {table} while running");
    drop(s);
    assert!(!nft_table_exists(&table), "table {table} left after reset");
    let link = Command::new("ip")
        .args(["link", "show", &bridge])
        .output()
        .unwrap();
    assert!(!link.status.success(), "bridge {bridge} left after reset");
}

/// The link holding `ip`.
fn bridge_with(ip: Ipv4Addr) -> Option<String> {
    let out = run_ok("ip", &["-o", "-4", "addr", "show"]);
    out.lines()
        .find(|l| l.contains(&format!("inet {ip}/")))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(str::to_string)
}

fn nft_table_exists(table: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", "inet", table])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
