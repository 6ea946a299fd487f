//! The CNI runtime side: run a network configuration list's plugins
//! (Debian's `containernetworking-plugins`: bridge, host-local, loopback, ...)
//! for a sandbox's network namespace, through the CNI 1.0 exec protocol:
//! `CNI_*` environment variables, the plugin's configuration on stdin (with
//! `name`, `cniVersion` and the previous plugin's result as `prevResult`),
//! a JSON result or error on stdout.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Errors of a CNI invocation.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("CNI configuration: {0}")]
    Config(String),
    #[error("CNI plugin {plugin:?} not found in {path}")]
    PluginNotFound { plugin: String, path: String },
    #[error("CNI plugin {plugin:?} failed (code {code}): {msg}")]
    Plugin {
        plugin: String,
        code: u32,
        msg: String,
    },
    #[error("CNI plugin {plugin:?} returned a result that is not CNI JSON: {reason}")]
    BadResult { plugin: String, reason: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A network configuration list (`.conflist`).
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub name: String,
    pub cni_version: String,
    /// Each plugin's own configuration (with `type`).
    pub plugins: Vec<Value>,
}

impl NetworkConfig {
    /// Parse a `.conflist` document.
    pub fn from_json(doc: &Value) -> Result<Self, CniError> {
        let name = doc
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| CniError::Config("the list has no \"name\"".into()))?;
        let cni_version = doc
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or("1.0.0");
        let plugins = doc
            .get("plugins")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| CniError::Config("the list has no \"plugins\"".into()))?;
        for p in plugins {
            if p.get("type").and_then(Value::as_str).is_none() {
                return Err(CniError::Config(format!("plugin without \"type\": {p}")));
            }
        }
        Ok(NetworkConfig {
            name: name.into(),
            cni_version: cni_version.into(),
            plugins: plugins.clone(),
        })
    }

    /// A bridge network with host-local addresses from `subnet`, the bridge
    /// as gateway and no masquerading (pods get no way out through NAT).
    /// The loopback interface is not in the list: the node brings it up
    /// when it makes the namespace (one process fewer per pod than the
    /// `loopback` plugin).
    pub fn bridge(name: &str, bridge: &str, subnet: &str, ipam_dir: &Path) -> Self {
        NetworkConfig {
            name: name.into(),
            cni_version: "1.0.0".into(),
            plugins: vec![json!({
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir,
                },
            })],
        }
    }
}

/// What the plugins set up, from the final result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Addresses inside the namespace (without prefix length).
    pub ips: Vec<IpAddr>,
    /// Their gateways, where given.
    pub gateways: Vec<IpAddr>,
    /// The raw result, as CNI returned it.
    pub result: Value,
}

#[derive(Deserialize)]
struct ResultIp {
    address: String,
    gateway: Option<String>,
}

fn attachment(result: Value, plugin: &str) -> Result<Attachment, CniError> {
    let ips: Vec<ResultIp> = match result.get("ips") {
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| CniError::BadResult {
            plugin: plugin.into(),
            reason: e.to_string(),
        })?,
        None => Vec::new(),
    };
    let mut out = Attachment {
        ips: Vec::new(),
        gateways: Vec::new(),
        result,
    };
    for ip in ips {
        let addr = ip.address.split('/').next().unwrap_or_default();
        out.ips.push(addr.parse().map_err(|_| CniError::BadResult {
            plugin: plugin.into(),
            reason: format!("bad address {:?}", ip.address),
        })?);
        if let Some(gw) = ip.gateway.and_then(|g| g.parse().ok()) {
            out.gateways.push(gw);
        }
    }
    Ok(out)
}

/// Which namespace and interface a CNI call is about.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// `CNI_CONTAINERID`: the sandbox's id.
    pub container_id: &'a str,
    /// The network namespace's path (`/run/netns/<name>`).
    pub netns: &'a Path,
    /// The interface inside it (`eth0`).
    pub ifname: &'a str,
}

/// Runs plugins found in `plugin_dirs`.
#[derive(Debug, Clone)]
pub struct Cni {
    pub plugin_dirs: Vec<PathBuf>,
}

impl Default for Cni {
    fn default() -> Self {
        Cni {
            plugin_dirs: vec!["/usr/lib/cni".into(), "/opt/cni/bin".into()],
        }
    }
}

impl Cni {
    fn plugin_path(&self, plugin: &str) -> Result<PathBuf, CniError> {
        let valid = !plugin.is_empty() && !plugin.contains('/') && plugin != "." && plugin != "..";
        if valid {
            for dir in &self.plugin_dirs {
                let p = dir.join(plugin);
                if p.is_file() {
                    return Ok(p);
                }
            }
        }
        Err(CniError::PluginNotFound {
            plugin: plugin.into(),
            path: self.cni_path(),
        })
    }

    fn cni_path(&self) -> String {
        self.plugin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Run one plugin with `command` (`ADD`, `DEL`, `CHECK`).
    async fn invoke(
        &self,
        net: &NetworkConfig,
        plugin: &Value,
        command: &str,
        target: Target<'_>,
        prev: Option<&Value>,
    ) -> Result<Option<Value>, CniError> {
        let kind = plugin
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut conf = plugin.clone();
        if let Some(obj) = conf.as_object_mut() {
            obj.insert("name".into(), json!(net.name));
            obj.insert("cniVersion".into(), json!(net.cni_version));
            if let Some(prev) = prev {
                obj.insert("prevResult".into(), prev.clone());
            }
        }
        let stdin = serde_json::to_vec(&conf)
            .map_err(|e| CniError::Config(format!("plugin {kind}: {e}")))?;
        let mut child = Command::new(self.plugin_path(&kind)?)
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", target.container_id)
            .env("CNI_NETNS", target.netns)
            .env("CNI_IFNAME", target.ifname)
            .env("CNI_PATH", self.cni_path())
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(&stdin).await?;
        }
        let out = child.wait_with_output().await?;
        let body: Option<Value> = serde_json::from_slice(&out.stdout).ok();
        if !out.status.success() {
            let (code, msg) = match &body {
                Some(err) => (
                    err.get("code").and_then(Value::as_u64).unwrap_or(999) as u32,
                    [err.get("msg"), err.get("details")]
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join(": "),
                ),
                None => (999, String::from_utf8_lossy(&out.stderr).trim().to_string()),
            };
            return Err(CniError::Plugin {
                plugin: kind,
                code,
                msg,
            });
        }
        if command != "ADD" {
            return Ok(None);
        }
        match body {
            Some(v) => Ok(Some(v)),
            None => Err(CniError::BadResult {
                plugin: kind,
                reason: String::from_utf8_lossy(&out.stdout).into_owned(),
            }),
        }
    }

    /// Attach `netns` to the network: every plugin's ADD in order, each
    /// seeing the previous result. On failure the plugins already run are
    /// deleted again, so nothing is left half set up.
    pub async fn add(
        &self,
        net: &NetworkConfig,
        target: Target<'_>,
    ) -> Result<Attachment, CniError> {
        let mut prev: Option<Value> = None;
        for (i, plugin) in net.plugins.iter().enumerate() {
            match self.invoke(net, plugin, "ADD", target, prev.as_ref()).await {
                Ok(Some(result)) => prev = Some(result),
                Ok(None) => {}
                Err(e) => {
                    for done in net.plugins[..i].iter().rev() {
                        let _ = self.invoke(net, done, "DEL", target, prev.as_ref()).await;
                    }
                    return Err(e);
                }
            }
        }
        let kind = net
            .plugins
            .last()
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str);
        attachment(prev.unwrap_or(Value::Null), kind.unwrap_or_default())
    }

    /// Detach: every plugin's DEL in reverse order. DEL is idempotent per
    /// the spec; all plugins run even if one fails, and the first error is
    /// returned.
    pub async fn del(&self, net: &NetworkConfig, target: Target<'_>) -> Result<(), CniError> {
        let mut first = None;
        for plugin in net.plugins.iter().rev() {
            if let Err(e) = self.invoke(net, plugin, "DEL", target, None).await {
                first.get_or_insert(e);
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflist_needs_a_name_and_typed_plugins() {
        let ok = NetworkConfig::from_json(&json!({
            "name": "n", "cniVersion": "1.0.0",
            "plugins": [{"type": "bridge"}, {"type": "loopback"}]
        }))
        .expect("valid");
        assert_eq!(ok.plugins.len(), 2);
        assert!(NetworkConfig::from_json(&json!({"plugins": [{"type": "x"}]})).is_err());
        assert!(NetworkConfig::from_json(&json!({"name": "n", "plugins": []})).is_err());
        assert!(NetworkConfig::from_json(&json!({"name": "n", "plugins": [{}]})).is_err());
    }

    #[test]
    fn results_give_addresses_and_gateways() {
        let a = attachment(
            json!({"cniVersion": "1.0.0", "ips": [
                {"interface": 2, "address": "10.244.0.2/24", "gateway": "10.244.0.1"},
                {"address": "fd00::2/64"}
            ]}),
            "bridge",
        )
        .expect("parses");
        assert_eq!(
            a.ips,
            vec![
                "10.244.0.2".parse::<IpAddr>().expect("ip"),
                "fd00::2".parse().expect("ip")
            ]
        );
        assert_eq!(
            a.gateways,
            vec!["10.244.0.1".parse::<IpAddr>().expect("ip")]
        );
        assert!(attachment(json!({"ips": [{"address": "nope"}]}), "bridge").is_err());
    }

    #[tokio::test]
    async fn plugin_names_cannot_leave_the_plugin_directories() {
        let cni = Cni::default();
        for bad in ["", "../bin/sh", "/bin/sh", ".."] {
            assert!(matches!(
                cni.plugin_path(bad),
                Err(CniError::PluginNotFound { .. })
            ));
        }
    }

    /// Needs root, `ip` and Debian's CNI plugins (scripts/deps.sh installs
    /// them); skipped with a message where they are missing.
    #[tokio::test]
    async fn bridge_and_host_local_attach_and_detach_a_namespace() {
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0\n"))
            .unwrap_or(false);
        if !root || !Path::new("/usr/lib/cni/bridge").exists() {
            eprintln!("skipped: needs root and /usr/lib/cni plugins");
            return;
        }
        let tag = format!("sk{}", std::process::id() % 100_000);
        let ns = format!("{tag}-cni");
        let ip = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .output()
                .expect("run ip")
        };
        assert!(ip(&["netns", "add", &ns]).status.success());
        let dir = tempfile::tempdir().expect("tempdir");
        let bridge = format!("{tag}br");
        let net = NetworkConfig::bridge("skiff-test", &bridge, "10.250.7.0/24", dir.path());
        let netns = PathBuf::from(format!("/run/netns/{ns}"));
        let cni = Cni::default();
        let target = Target {
            container_id: "c1",
            netns: &netns,
            ifname: "eth0",
        };
        let attached = cni.add(&net, target).await;
        let inside = ip(&["-n", &ns, "-j", "addr", "show", "eth0"]);
        let detached = cni.del(&net, target).await;
        let after = ip(&["-n", &ns, "link", "show", "eth0"]);
        // Clean up before asserting.
        ip(&["netns", "del", &ns]);
        ip(&["link", "del", &bridge]);
        let attached = attached.expect("ADD");
        assert_eq!(
            attached.ips,
            vec!["10.250.7.2".parse::<IpAddr>().expect("ip")]
        );
        assert_eq!(
            attached.gateways,
            vec!["10.250.7.1".parse::<IpAddr>().expect("ip")]
        );
        let inside = String::from_utf8_lossy(&inside.stdout).into_owned();
        assert!(
            inside.contains("10.250.7.2"),
            "eth0 inside the namespace: {inside}"
        );
        detached.expect("DEL");
        assert!(!after.status.success(), "eth0 is gone after DEL");
        // A plugin that is not installed is named in the error.
        let missing = Cni {
            plugin_dirs: vec![dir.path().into()],
        };
        assert!(matches!(
            missing.add(&net, target).await,
            Err(CniError::PluginNotFound { .. })
        ));
    }
}
