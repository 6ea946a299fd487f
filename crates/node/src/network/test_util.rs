//! A network lab for the kernel-level tests: a CNI bridge of its own with
//! netns "pods" (Debian's bridge + host-local plugins through [`crate::cni`]),
//! busybox httpd servers, and addresses the pods must not reach. Everything
//! it creates is named after the test and the process id and removed on
//! drop, also when the test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::cni::{Cni, NetworkConfig, Target};

/// Whether the kernel-level tests can run here (root, nft, the plugins,
/// busybox); they print why and pass trivially where not.
pub(crate) fn can_run() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false);
    let tools = [
        "/usr/lib/cni/bridge",
        "/usr/lib/cni/host-local",
        "/bin/busybox",
    ]
    .iter()
    .all(|p| Path::new(p).exists())
        && Command::new("nft").arg("--version").output().is_ok();
    if !(root && tools) {
        eprintln!("skipped: needs root, nft, busybox and /usr/lib/cni plugins");
    }
    root && tools
}

fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} {args:?}: {e}"))
}

fn must(cmd: &str, args: &[&str]) {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A pod: a network namespace attached to the lab's bridge.
#[derive(Debug, Clone)]
pub(crate) struct Pod {
    pub netns: String,
    pub ip: Ipv4Addr,
}

pub(crate) struct Lab {
    pub tag: String,
    pub bridge: String,
    pub pod_cidr: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub service_cidr: Ipv4Net,
    pub table: String,
    /// An octet unique to this lab, for other test addresses.
    pub octet: u8,
    dir: tempfile::TempDir,
    net: NetworkConfig,
    netns: Vec<String>,
    links: Vec<String>,
    routes: Vec<String>,
    children: Vec<Child>,
}

impl Lab {
    /// A lab for test number `n` (distinct per test in this file).
    pub fn new(n: u32) -> Lab {
        let pid = std::process::id();
        let tag = format!("sn{}x{n}", pid % 100_000);
        let octet = u8::try_from((pid.wrapping_mul(7).wrapping_add(n * 31)) % 200 + 20).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("svcnet-")
            .tempdir()
            .unwrap();
        let bridge = format!("{tag}br");
        let pod_cidr: Ipv4Net = format!("10.253.{octet}.0/24").parse().unwrap();
        let net = NetworkConfig::bridge(
            &format!("{tag}net"),
            &bridge,
            &pod_cidr.to_string(),
            &dir.path().join("ipam"),
        );
        Lab {
            gateway: Ipv4Addr::new(10, 253, octet, 1),
            service_cidr: format!("10.97.{octet}.0/24").parse().unwrap(),
            table: format!("skiff_{tag}"),
            bridge,
            pod_cidr,
            octet,
            tag,
            dir,
            net,
            netns: Vec::new(),
            links: Vec::new(),
            routes: Vec::new(),
            children: Vec::new(),
        }
    }

    /// The lab's bridge, CIDRs and table as a [`super::NetworkConfig`], DNS on
    /// the gateway.
    pub fn config(&self) -> super::NetworkConfig {
        super::NetworkConfig {
            pod_cidr: self.pod_cidr,
            service_cidr: self.service_cidr,
            bridge: self.bridge.clone(),
            gateway_ip: self.gateway,
            dns_listen: std::net::SocketAddr::new(self.gateway.into(), 53),
            cluster_domain: "cluster.local".into(),
            table: self.table.clone(),
            resync: Duration::from_secs(60),
        }
    }

    /// A Service IP of this lab.
    pub fn service_ip(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 97, self.octet, last)
    }

    fn docroot(&self, name: &str, text: &str) -> PathBuf {
        let d = self.dir.path().join(format!("www-{name}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("index.html"), text).unwrap();
        d
    }

    fn add_netns(&mut self, name: &str) -> String {
        let ns = format!("{}{name}", self.tag);
        must("ip", &["netns", "add", &ns]);
        self.netns.push(ns.clone());
        must("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// Run `busybox httpd` serving `text` on `listen` (`[ip:]port`), in `netns`
    /// or on the host, and wait until it answers.
    pub async fn httpd(&mut self, netns: Option<&str>, listen: &str, text: &str) {
        let root = self.docroot(&format!("{}-{}", netns.unwrap_or("host"), listen), text);
        let root = root.to_str().unwrap();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "busybox"]);
                c
            }
            None => Command::new("busybox"),
        };
        let child = cmd
            .args(["httpd", "-f", "-p", listen, "-h", root])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
        let url = match listen.rsplit_once(':') {
            Some((ip, port)) => format!("http://{ip}:{port}/"),
            None => format!("http://127.0.0.1:{listen}/"),
        };
        for _ in 0..100 {
            if wget(netns, &url).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("httpd on {listen} in {netns:?} never answered");
    }

    /// A pod attached through CNI, serving `name` over HTTP on port 80.
    pub async fn pod(&mut self, name: &str) -> Pod {
        let ns = self.add_netns(name);
        let path = PathBuf::from(format!("/run/netns/{ns}"));
        let target = Target {
            container_id: &ns,
            netns: &path,
            ifname: "eth0",
        };
        let att = Cni::default()
            .add(&self.net, target)
            .await
            .expect("CNI ADD");
        let ip = match att.ips.first() {
            Some(std::net::IpAddr::V4(ip)) => *ip,
            other => panic!("no IPv4 address from CNI: {other:?}"),
        };
        self.links.push(self.bridge.clone());
        self.links.dedup();
        self.httpd(Some(&ns), "80", name).await;
        Pod { netns: ns, ip }
    }

    /// A UDP server in `pod` on port 5353 answering every datagram with the
    /// pod's name (python3: busybox has no UDP server).
    pub async fn udp_echo(&mut self, pod: &Pod) {
        let name = pod.netns.trim_start_matches(&self.tag).to_string();
        let script = format!(
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.bind(('0.0.0.0', 5353))\nwhile True:\n    _, peer = s.recvfrom(100)\n    \
             s.sendto(b'{name}', peer)\n"
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &pod.netns, "python3", "-c", &script])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
        let probe = "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.settimeout(0.2)\ns.sendto(b'?', ('127.0.0.1', 5353))\n\
             print(s.recv(100).decode(), end='')\n";
        for _ in 0..100 {
            if python(Some(&pod.netns), probe).await.is_ok() {
                return;
            }
        }
        panic!("UDP server in {} never answered", pod.netns);
    }

    /// A namespace outside the node, reachable only by routing through the
    /// host (as the internet would be), serving "outside" on port 80.
    /// Returns its address.
    pub async fn outside(&mut self) -> Ipv4Addr {
        let ns = self.add_netns("out");
        let (host, peer) = (format!("{}o0", self.tag), format!("{}o1", self.tag));
        must(
            "ip",
            &["link", "add", &host, "type", "veth", "peer", "name", &peer],
        );
        self.links.push(host.clone());
        must("ip", &["link", "set", &peer, "netns", &ns]);
        let o = self.octet;
        must(
            "ip",
            &["addr", "add", &format!("198.18.{o}.1/30"), "dev", &host],
        );
        must("ip", &["link", "set", &host, "up"]);
        must(
            "ip",
            &[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("198.18.{o}.2/30"),
                "dev",
                &peer,
            ],
        );
        must("ip", &["-n", &ns, "link", "set", &peer, "up"]);
        let back = self.pod_cidr.to_string();
        must(
            "ip",
            &[
                "-n",
                &ns,
                "route",
                "add",
                &back,
                "via",
                &format!("198.18.{o}.1"),
            ],
        );
        self.httpd(Some(&ns), "80", "outside").await;
        Ipv4Addr::new(198, 18, o, 2)
    }

    /// Another address of the host itself (the host end of [`Lab::outside`]'s
    /// link, which must have been made), serving "host" on port 8080.
    /// Returns it.
    pub async fn host_address(&mut self) -> Ipv4Addr {
        let ip = Ipv4Addr::new(198, 18, self.octet, 1);
        self.httpd(None, &format!("{ip}:8080"), "host").await;
        ip
    }

    /// Make sure a route for the Service CIDR (added by the code under test)
    /// is removed on drop.
    pub fn forget_route_on_drop(&mut self) {
        self.routes.push(self.service_cidr.to_string());
    }

    /// Route the Service CIDR into the bridge, so that if the rules were
    /// missing, host traffic to Service IPs would still stay on this host
    /// instead of following the default route out.
    pub fn contain_service_cidr(&mut self) {
        let cidr = self.service_cidr.to_string();
        must("ip", &["route", "add", &cidr, "dev", &self.bridge]);
        self.routes.push(cidr);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill(); // already gone is fine
            let _ = c.wait();
        }
        let t = &self.table;
        let script = format!("table inet {t} {{}}\ndelete table inet {t}\n");
        if let Ok(mut child) = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
        {
            if let Some(mut stdin) = child.stdin.take() {
                use std::io::Write;
                let _ = stdin.write_all(script.as_bytes());
            }
            let _ = child.wait();
        }
        for r in &self.routes {
            let _ = run("ip", &["route", "del", r]);
        }
        for ns in &self.netns {
            let _ = run("ip", &["netns", "del", ns]);
        }
        for l in &self.links {
            let _ = run("ip", &["link", "del", l]);
        }
    }
}

/// `busybox wget -O- url`, in `netns` or on the host, given up after 3 s:
/// the body, or wget's error text. (Debian's busybox-static 1.35 crashes
/// with `-T`, so the timeout is ours; `-q` would hide why it failed.)
pub(crate) async fn wget(netns: Option<&str>, url: &str) -> Result<String, String> {
    exec_for(netns, &["wget", "-O-", url], Duration::from_secs(3)).await
}

/// `busybox <args>` in `netns` or on the host: stdout on success, stderr
/// (and stdout) on failure.
pub(crate) async fn exec(netns: Option<&str>, args: &[&str]) -> Result<String, String> {
    exec_for(netns, args, Duration::from_secs(10)).await
}

/// `python3 -c script` in `netns` or on the host: its stdout, or stderr.
pub(crate) async fn python(netns: Option<&str>, script: &str) -> Result<String, String> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = tokio::process::Command::new("ip");
            c.args(["netns", "exec", ns, "python3"]);
            c
        }
        None => tokio::process::Command::new("python3"),
    };
    cmd.args(["-c", script]).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(10), cmd.output())
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

async fn exec_for(netns: Option<&str>, args: &[&str], limit: Duration) -> Result<String, String> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = tokio::process::Command::new("ip");
            c.args(["netns", "exec", ns, "busybox"]);
            c
        }
        None => tokio::process::Command::new("busybox"),
    };
    cmd.args(args).kill_on_drop(true);
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{}{stdout}", String::from_utf8_lossy(&out.stderr)))
    }
}
