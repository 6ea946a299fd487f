//! The per-pod `/etc/resolv.conf` and `/etc/hosts` the runtime bind-mounts,
//! written the way the kubelet writes them.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{HostAlias, Pod, PodSpec};

/// The most nameservers a resolver reads (glibc's MAXNS).
const MAX_NAMESERVERS: usize = 3;
/// The kubelet's limit on search domains.
const MAX_SEARCH: usize = 32;
/// The longest hostname (a DNS label).
const MAX_HOSTNAME: usize = 63;

/// The cluster DNS a pod is pointed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDns {
    /// The responder's address as pods reach it.
    pub ip: IpAddr,
    /// e.g. `cluster.local`.
    pub domain: String,
}

/// What a resolv.conf says.
#[derive(Debug, Default, PartialEq, Eq)]
struct Resolv {
    nameservers: Vec<String>,
    searches: Vec<String>,
    /// (name, value): `ndots:5` is ("ndots", Some("5")).
    options: Vec<(String, Option<String>)>,
}

fn parse_option(s: &str) -> (String, Option<String>) {
    match s.split_once(':') {
        Some((k, v)) => (k.to_string(), Some(v.to_string())),
        None => (s.to_string(), None),
    }
}

/// Parse the node's own resolv.conf (for `dnsPolicy: Default`).
fn parse(text: &str) -> Resolv {
    let mut r = Resolv::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => r.nameservers.extend(words.next().map(str::to_string)),
            // A later search (or domain) line replaces an earlier one.
            Some("search") | Some("domain") => r.searches = words.map(str::to_string).collect(),
            Some("options") => r.options.extend(words.map(parse_option)),
            _ => {}
        }
    }
    r
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !item.is_empty() && !list.iter().any(|x| x == item) {
        list.push(item.to_string());
    }
}

/// The pod's `/etc/resolv.conf`, as the kubelet builds it:
///
/// - `ClusterFirst` (the default; `Default` for host-network pods): the
///   cluster DNS, search `<ns>.svc.<domain> svc.<domain> <domain>` followed by
///   the node's own search domains, `options ndots:5`;
/// - `ClusterFirstWithHostNet`: the same, also for host-network pods;
/// - `Default`: the node's resolv.conf (`node_resolv_conf`, its text);
/// - `None`: only what `dnsConfig` says.
///
/// `dnsConfig` is merged on top: nameservers and searches appended without
/// duplicates, options replacing same-named ones. Lists are cut to the limits
/// resolvers read (3 nameservers, 32 search domains).
pub fn resolv_conf(
    namespace: &str,
    dns: &ClusterDns,
    pod: &PodSpec,
    node_resolv_conf: &str,
) -> String {
    let host_network = pod.host_network.unwrap_or(false);
    let node = parse(node_resolv_conf);
    let mut r = match pod.dns_policy.as_deref().unwrap_or("ClusterFirst") {
        "None" => Resolv::default(),
        "Default" => node,
        "ClusterFirst" if host_network => node,
        _ => {
            let d = dns.domain.trim_end_matches('.');
            let mut searches = vec![
                format!("{namespace}.svc.{d}"),
                format!("svc.{d}"),
                d.to_string(),
            ];
            for s in &node.searches {
                push_unique(&mut searches, s);
            }
            Resolv {
                nameservers: vec![dns.ip.to_string()],
                searches,
                options: vec![("ndots".into(), Some("5".into()))],
            }
        }
    };
    if let Some(cfg) = &pod.dns_config {
        for ns in cfg.nameservers.iter().flatten() {
            push_unique(&mut r.nameservers, ns);
        }
        for s in cfg.searches.iter().flatten() {
            push_unique(&mut r.searches, s);
        }
        for o in cfg.options.iter().flatten() {
            let (name, value) = (o.name.clone().unwrap_or_default(), o.value.clone());
            if name.is_empty() {
                continue;
            }
            match r.options.iter_mut().find(|(n, _)| *n == name) {
                Some(existing) => existing.1 = value,
                None => r.options.push((name, value)),
            }
        }
    }
    r.nameservers.truncate(MAX_NAMESERVERS);
    r.searches.truncate(MAX_SEARCH);
    let mut out = String::new();
    if !r.searches.is_empty() {
        out.push_str(&format!("search {}\n", r.searches.join(" ")));
    }
    for ns in &r.nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if !r.options.is_empty() {
        let opts: Vec<String> = r
            .options
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}:{v}"),
                None => k.clone(),
            })
            .collect();
        out.push_str(&format!("options {}\n", opts.join(" ")));
    }
    out
}

/// The pod's `/etc/hosts`, as the kubelet writes it: localhost entries, the
/// pod's own address under its hostname (and its FQDN
/// `<hostname>.<subdomain>.<ns>.svc.<domain>` when it has a subdomain), then
/// `hostAliases`.
pub fn etc_hosts(
    pod_ip: IpAddr,
    hostname: &str,
    subdomain: Option<&str>,
    namespace: &str,
    cluster_domain: &str,
    host_aliases: &[HostAlias],
) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    match subdomain.filter(|s| !s.is_empty()) {
        Some(sub) => {
            let d = cluster_domain.trim_end_matches('.');
            out.push_str(&format!(
                "{pod_ip}\t{hostname}.{sub}.{namespace}.svc.{d}\t{hostname}\n"
            ));
        }
        None => out.push_str(&format!("{pod_ip}\t{hostname}\n")),
    }
    if !host_aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for alias in host_aliases {
            let names = alias.hostnames.clone().unwrap_or_default();
            if names.is_empty() {
                continue;
            }
            out.push_str(&format!("{}\t{}\n", alias.ip, names.join("\t")));
        }
    }
    out
}

/// A pod's hostname as the kubelet sets it: `spec.hostname`, else the pod's
/// name cut to 63 characters (without a trailing `-` or `.` the cut may
/// leave).
pub fn pod_hostname(pod: &Pod) -> String {
    if let Some(h) = pod.spec.as_ref().and_then(|s| s.hostname.as_deref()) {
        if !h.is_empty() {
            return h.to_string();
        }
    }
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let cut: String = name.chars().take(MAX_HOSTNAME).collect();
    cut.trim_end_matches(['-', '.']).to_string()
}

/// Both per-pod files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFiles {
    pub resolv_conf: String,
    /// `None` for host-network pods, which see the node's `/etc/hosts`.
    pub hosts: Option<String>,
}

/// [`resolv_conf`] and [`etc_hosts`] for `pod` at `pod_ip`.
pub fn pod_files(pod: &Pod, pod_ip: IpAddr, dns: &ClusterDns, node_resolv_conf: &str) -> PodFiles {
    let default = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default);
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let hosts = (!spec.host_network.unwrap_or(false)).then(|| {
        etc_hosts(
            pod_ip,
            &pod_hostname(pod),
            spec.subdomain.as_deref(),
            namespace,
            &dns.domain,
            spec.host_aliases.as_deref().unwrap_or_default(),
        )
    });
    PodFiles {
        resolv_conf: resolv_conf(namespace, dns, spec, node_resolv_conf),
        hosts,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn dns() -> ClusterDns {
        ClusterDns {
            ip: "10.244.0.1".parse().unwrap(),
            domain: "cluster.local".into(),
        }
    }

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    const NODE: &str = "# generated\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0\n";

    #[test]
    fn cluster_first_points_at_the_cluster_dns_with_the_namespace_search_path() {
        let out = resolv_conf("team", &dns(), &spec(json!({"containers": []})), NODE);
        assert_eq!(
            out,
            "search team.svc.cluster.local svc.cluster.local cluster.local corp.example\n\
             nameserver 10.244.0.1\noptions ndots:5\n"
        );
        // Host-network pods get the node's unless they ask for the cluster's.
        let host = spec(json!({"containers": [], "hostNetwork": true}));
        assert_eq!(
            resolv_conf("team", &dns(), &host, NODE),
            "search corp.example\nnameserver 192.0.2.53\noptions edns0\n"
        );
        let with_net = spec(json!({"containers": [], "hostNetwork": true,
            "dnsPolicy": "ClusterFirstWithHostNet"}));
        assert!(resolv_conf("team", &dns(), &with_net, NODE).contains("nameserver 10.244.0.1\n"));
    }

    #[test]
    fn dns_config_merges_and_none_uses_only_it() {
        let merged = spec(json!({"containers": [], "dnsConfig": {
            "nameservers": ["10.244.0.1", "1.1.1.1"],
            "searches": ["extra.local"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]
        }}));
        assert_eq!(
            resolv_conf("ns", &dns(), &merged, ""),
            "search ns.svc.cluster.local svc.cluster.local cluster.local extra.local\n\
             nameserver 10.244.0.1\nnameserver 1.1.1.1\noptions ndots:2 edns0\n"
        );
        let none = spec(json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["a", "b", "c", "d"]
        }}));
        assert_eq!(
            resolv_conf("ns", &dns(), &none, NODE),
            "nameserver a\nnameserver b\nnameserver c\n"
        );
    }

    #[test]
    fn hosts_name_the_pod_and_its_aliases() {
        let aliases: Vec<HostAlias> = serde_json::from_value(json!([
            {"ip": "10.1.2.3", "hostnames": ["foo", "bar"]}
        ]))
        .unwrap();
        let out = etc_hosts(
            "10.244.0.7".parse().unwrap(),
            "web-0",
            Some("web"),
            "ns",
            "cluster.local",
            &aliases,
        );
        assert!(out.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(out.contains("\n10.244.0.7\tweb-0.web.ns.svc.cluster.local\tweb-0\n"));
        assert!(out.ends_with("# Entries added by HostAliases.\n10.1.2.3\tfoo\tbar\n"));
        let plain = etc_hosts(
            "10.244.0.8".parse().unwrap(),
            "p",
            None,
            "ns",
            "cluster.local",
            &[],
        );
        assert!(plain.ends_with("fe00::2\tip6-allrouters\n10.244.0.8\tp\n"));
    }

    #[test]
    fn pod_files_use_the_pods_name_namespace_and_subdomain() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"namespace": "team", "name": format!("{}-", "x".repeat(62))},
            "spec": {"containers": [], "subdomain": "sub"}
        }))
        .unwrap();
        assert_eq!(pod_hostname(&pod), "x".repeat(62));
        let files = pod_files(&pod, "10.244.0.9".parse().unwrap(), &dns(), "");
        assert!(files
            .resolv_conf
            .starts_with("search team.svc.cluster.local "));
        let hosts = files.hosts.unwrap();
        assert!(
            hosts.contains(&format!(
                "10.244.0.9\t{0}.sub.team.svc.cluster.local\t{0}\n",
                "x".repeat(62)
            )),
            "{hosts}"
        );
        let named: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [], "hostname": "h", "hostNetwork": true}
        }))
        .unwrap();
        assert_eq!(pod_hostname(&named), "h");
        assert_eq!(
            pod_files(&named, "10.0.0.1".parse().unwrap(), &dns(), "").hosts,
            None
        );
    }
}
