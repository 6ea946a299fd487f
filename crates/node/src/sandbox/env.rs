//! A container's configuration from the API, as the kubelet makes it: the
//! environment (`envFrom`, then `env` with ConfigMap, Secret and downward
//! API values) and, through [`super::volumes`], the pod's volumes and the
//! container's bind mounts.
//!
//! `$(VAR)` references in literal `env[].value`s are left as written here:
//! [`crate::bundle::resolve`] expands them (and only them) against the
//! entries before, so expanding here would expand twice.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::Api;

use super::Node;
use crate::bundle::BindMount;

/// Why a container's configuration could not be made (the kubelet's
/// message, e.g. `configmap "x" not found`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ConfigError(pub(crate) String);

/// What stops a container from being created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A volume could not be set up: the message of the `FailedMount`
    /// event (`MountVolume.SetUp failed for volume "v" : ...`); the
    /// container keeps waiting in `ContainerCreating`.
    Mount(String),
    /// `CreateContainerConfigError` with this message.
    Config(String),
}

/// Everything a container's bundle needs from the API.
#[derive(Debug, Clone, Default)]
pub(crate) struct ContainerConfig {
    /// In the kubelet's order (`envFrom`, then `env`), unexpanded.
    pub(crate) env: Vec<(String, String)>,
    /// The container's `volumeMounts`, sources resolved.
    pub(crate) mounts: Vec<BindMount>,
    /// `InvalidEnvironmentVariableNames` event messages.
    pub(crate) warnings: Vec<String>,
}

/// Set up the pod's volumes (idempotent), then resolve the container's
/// environment and mounts.
pub(crate) async fn prepare(
    node: &Node,
    pod: &Pod,
    container: &Container,
    pod_dir: &Path,
    ips: &[IpAddr],
) -> Result<ContainerConfig, Failure> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut objects =
        Objects::new(node.client.as_ref(), &namespace).with_services(node.services.as_ref());
    let facts = PodFacts::gather(node, pod, ips).await;
    super::volumes::setup(pod, pod_dir, &mut objects, &facts)
        .await
        .map_err(Failure::Mount)?;
    let (env, warnings) = container_env(pod, container, &mut objects, &facts)
        .await
        .map_err(|e| Failure::Config(e.0))?;
    let mounts = super::volumes::container_mounts(pod, container, pod_dir, &env)
        .map_err(|e| Failure::Config(e.0))?;
    Ok(ContainerConfig {
        env,
        mounts,
        warnings,
    })
}

/// ConfigMaps and Secrets of one namespace, each read at most once.
pub(crate) struct Objects<'a> {
    client: Option<&'a kube::Client>,
    /// The node's Service cache (the kubelet's service lister), once synced.
    services: Option<&'a skiff_client::cache::Cache<Service>>,
    namespace: String,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl<'a> Objects<'a> {
    pub(crate) fn new(client: Option<&'a kube::Client>, namespace: &str) -> Self {
        Objects {
            client,
            services: None,
            namespace: namespace.to_string(),
            config_maps: HashMap::new(),
            secrets: HashMap::new(),
        }
    }

    /// Read Services from `cache` (when it has synced) instead of the API.
    pub(crate) fn with_services(
        mut self,
        cache: Option<&'a skiff_client::cache::Cache<Service>>,
    ) -> Self {
        self.services = cache.filter(|c| c.is_ready());
        self
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    pub(crate) fn client(&self) -> Option<&'a kube::Client> {
        self.client
    }

    /// The ConfigMap `name`, `None` if it does not exist.
    pub(crate) async fn config_map(
        &mut self,
        name: &str,
    ) -> Result<Option<ConfigMap>, ConfigError> {
        if let Some(c) = self.config_maps.get(name) {
            return Ok(c.clone());
        }
        let c = get_opt::<ConfigMap>(self.client, &self.namespace, name).await?;
        self.config_maps.insert(name.to_string(), c.clone());
        Ok(c)
    }

    /// The Secret `name`, `None` if it does not exist.
    pub(crate) async fn secret(&mut self, name: &str) -> Result<Option<Secret>, ConfigError> {
        if let Some(s) = self.secrets.get(name) {
            return Ok(s.clone());
        }
        let s = get_opt::<Secret>(self.client, &self.namespace, name).await?;
        self.secrets.insert(name.to_string(), s.clone());
        Ok(s)
    }

    /// The ConfigMap's data, or the kubelet's error when it is missing and
    /// not optional (`None`: missing and optional).
    pub(crate) async fn config_map_data(
        &mut self,
        name: &str,
        optional: bool,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, ConfigError> {
        match self.config_map(name).await? {
            Some(cm) => {
                let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
                for (k, v) in cm.binary_data.unwrap_or_default() {
                    out.insert(k, v.0);
                }
                for (k, v) in cm.data.unwrap_or_default() {
                    out.insert(k, v.into_bytes());
                }
                Ok(Some(out))
            }
            None if optional => Ok(None),
            None => Err(ConfigError(format!("configmap {name:?} not found"))),
        }
    }

    /// The Secret's data, as [`Objects::config_map_data`].
    pub(crate) async fn secret_data(
        &mut self,
        name: &str,
        optional: bool,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, ConfigError> {
        match self.secret(name).await? {
            Some(s) => {
                let mut out: BTreeMap<String, Vec<u8>> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                for (k, v) in s.string_data.unwrap_or_default() {
                    out.insert(k, v.into_bytes());
                }
                Ok(Some(out))
            }
            None if optional => Ok(None),
            None => Err(ConfigError(format!("secret {name:?} not found"))),
        }
    }
}

impl Objects<'_> {
    /// The Services whose variables a container gets (the kubelet's
    /// service links): those of the pod's namespace when `links`, and the
    /// API server's `default/kubernetes` always; sorted by name. A failed
    /// read gives none (logged).
    pub(crate) async fn services(&self, links: bool) -> Vec<Service> {
        if let Some(cache) = self.services {
            let mut by_name: BTreeMap<String, Service> = BTreeMap::new();
            if links {
                for svc in cache.in_namespace(&self.namespace) {
                    by_name.insert(
                        svc.metadata.name.clone().unwrap_or_default(),
                        (*svc).clone(),
                    );
                }
            }
            if let Some(svc) = cache.get(Some("default"), "kubernetes") {
                by_name.entry("kubernetes".into()).or_insert((*svc).clone());
            }
            return by_name.into_values().collect();
        }
        let Some(client) = self.client else {
            return Vec::new();
        };
        let mut by_name: BTreeMap<String, Service> = BTreeMap::new();
        if links {
            let api: Api<Service> = Api::namespaced(client.clone(), &self.namespace);
            match api.list(&Default::default()).await {
                Ok(list) => {
                    for svc in list.items {
                        by_name.insert(svc.metadata.name.clone().unwrap_or_default(), svc);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "listing services for service links"),
            }
        }
        if !by_name.contains_key("kubernetes") || self.namespace != "default" {
            let api: Api<Service> = Api::namespaced(client.clone(), "default");
            if let Ok(Some(svc)) = api.get_opt("kubernetes").await {
                by_name.entry("kubernetes".into()).or_insert(svc);
            }
        }
        by_name.into_values().collect()
    }
}

/// The Docker-link style variables of `services` (`<NAME>_SERVICE_HOST`,
/// `<NAME>_SERVICE_PORT[_<PORT NAME>]`, `<NAME>_PORT[_<port>_<PROTO>...]`),
/// as the kubelet makes them; services without a cluster IP are skipped.
pub(crate) fn service_env(services: &[Service]) -> Vec<(String, String)> {
    let var = |s: &str| s.replace('-', "_").to_uppercase();
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        let ports = spec.ports.as_deref().unwrap_or_default();
        if ip.is_empty() || ip == "None" || ports.is_empty() {
            continue;
        }
        let prefix = var(svc.metadata.name.as_deref().unwrap_or_default());
        let host_port = |port: i32| match ip.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{ip}]:{port}"),
            _ => format!("{ip}:{port}"),
        };
        out.push((format!("{prefix}_SERVICE_HOST"), ip.clone()));
        out.push((format!("{prefix}_SERVICE_PORT"), ports[0].port.to_string()));
        for p in ports {
            if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{prefix}_SERVICE_PORT_{}", var(n)),
                    p.port.to_string(),
                ));
            }
        }
        for (i, p) in ports.iter().enumerate() {
            let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            let lower = proto.to_lowercase();
            let url = format!("{lower}://{}", host_port(p.port));
            if i == 0 {
                out.push((format!("{prefix}_PORT"), url.clone()));
            }
            let pp = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
            out.push((format!("{pp}_PROTO"), lower));
            out.push((format!("{pp}_PORT"), p.port.to_string()));
            out.push((format!("{pp}_ADDR"), ip.clone()));
            out.push((pp, url));
        }
    }
    out
}

async fn get_opt<K>(
    client: Option<&kube::Client>,
    namespace: &str,
    name: &str,
) -> Result<Option<K>, ConfigError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let Some(client) = client else {
        return Ok(None);
    };
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.get_opt(name).await.map_err(|e| {
        ConfigError(format!(
            "failed to get {} {namespace}/{name}: {e}",
            K::kind(&K::DynamicType::default()).to_lowercase()
        ))
    })
}

/// What the downward API reads besides the pod object.
#[derive(Debug, Clone, Default)]
pub(crate) struct PodFacts {
    pub(crate) pod_ips: Vec<IpAddr>,
    /// The node's address (`status.hostIP`), when known.
    pub(crate) host_ip: Option<String>,
    /// Node allocatable, the default of unset limits.
    pub(crate) cpu_millis: u64,
    pub(crate) memory_bytes: u64,
    pub(crate) ephemeral_storage_bytes: u64,
}

impl PodFacts {
    /// The facts for `pod`; the node's address is read from the Node only
    /// when the pod's status has none yet and the pod asks for it.
    pub(crate) async fn gather(node: &Node, pod: &Pod, ips: &[IpAddr]) -> PodFacts {
        let mut host_ip = pod.status.as_ref().and_then(|s| s.host_ip.clone());
        let wants_host =
            serde_json::to_string(&pod.spec).is_ok_and(|s| s.contains("status.hostIP"));
        if host_ip.is_none() && wants_host {
            host_ip = node_address(node.client.as_ref(), pod).await;
        }
        PodFacts {
            pod_ips: ips.to_vec(),
            host_ip,
            cpu_millis: node.config.cpu_millis,
            memory_bytes: node.config.memory_bytes,
            ephemeral_storage_bytes: 100 << 30,
        }
    }
}

/// The `InternalIP` of the pod's node.
async fn node_address(client: Option<&kube::Client>, pod: &Pod) -> Option<String> {
    let client = client?;
    let name = pod.spec.as_ref()?.node_name.clone()?;
    let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let n = api.get_opt(&name).await.ok()??;
    n.status?
        .addresses?
        .into_iter()
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address)
}

/// `key` of a ConfigMap's or Secret's data as an env value; `None` when
/// the object is absent (optional) or an optional key is missing: the
/// variable is left out.
fn key_value(
    data: Option<BTreeMap<String, Vec<u8>>>,
    key: &str,
    optional: bool,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<String>, ConfigError> {
    let Some(data) = data else {
        return Ok(None);
    };
    match data.get(key) {
        Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
        None if optional => Ok(None),
        None => Err(ConfigError(format!(
            "couldn't find key {key} in {kind} {namespace}/{name}"
        ))),
    }
}

/// A downward API `fieldRef` value. `whole_maps` allows `metadata.labels`
/// and `metadata.annotations` (volumes only), formatted as the kubelet does.
pub(crate) fn field_value(
    pod: &Pod,
    facts: &PodFacts,
    path: &str,
    whole_maps: bool,
) -> Result<String, ConfigError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let ips = || {
        facts
            .pod_ips
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    let map_key = |prefix: &str| -> Option<String> {
        path.strip_prefix(prefix)?
            .strip_suffix("']")
            .map(str::to_string)
    };
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" if whole_maps => format_map(meta.labels.as_ref()),
        "metadata.annotations" if whole_maps => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.clone().unwrap_or_default(),
        "status.podIP" => ips().into_iter().next().unwrap_or_default(),
        "status.podIPs" => ips().join(","),
        _ => {
            if let Some(k) = map_key("metadata.labels['") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&k).cloned())
                    .unwrap_or_default()
            } else if let Some(k) = map_key("metadata.annotations['") {
                meta.annotations
                    .as_ref()
                    .and_then(|l| l.get(&k).cloned())
                    .unwrap_or_default()
            } else {
                return Err(ConfigError(format!("unsupported fieldPath: {path}")));
            }
        }
    };
    Ok(value)
}

/// `key="value"` lines, sorted, values quoted (the kubelet's `FormatMap`).
fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| {
            let quoted = serde_json::to_string(v).unwrap_or_else(|_| format!("{v:?}"));
            format!("{k}={quoted}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A downward API `resourceFieldRef` value of container `container`:
/// limits default to node allocatable, requests to the limit (or 0), and
/// the value is divided by `divisor`, rounding up.
pub(crate) fn resource_value(
    pod: &Pod,
    facts: &PodFacts,
    container: &str,
    resource: &str,
    divisor: Option<&str>,
) -> Result<String, ConfigError> {
    let spec = pod.spec.as_ref();
    let c = spec
        .into_iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .find(|c| c.name == container)
        .ok_or_else(|| ConfigError(format!("container {container:?} not found in pod")))?;
    let resources = c.resources.as_ref();
    let get = |which: &str, name: &str| -> Option<String> {
        let map = match which {
            "limits" => resources.and_then(|r| r.limits.as_ref()),
            _ => resources.and_then(|r| r.requests.as_ref()),
        };
        map.and_then(|m| m.get(name)).map(|q| q.0.clone())
    };
    let (which, name) = resource
        .split_once('.')
        .ok_or_else(|| ConfigError(format!("unsupported container resource : {resource:?}")))?;
    let raw = match which {
        "limits" => get("limits", name),
        "requests" => get("requests", name).or_else(|| get("limits", name)),
        _ => None,
    };
    let bad = || ConfigError(format!("unsupported container resource : {resource:?}"));
    match name {
        "cpu" => {
            let millis = match (which, raw) {
                (_, Some(q)) => crate::quantity::cpu_millis(&q).ok_or_else(bad)?,
                ("limits", None) => facts.cpu_millis,
                ("requests", None) => 0,
                _ => return Err(bad()),
            };
            let d = divisor
                .and_then(crate::quantity::cpu_millis)
                .filter(|d| *d > 0)
                .unwrap_or(1000);
            Ok(millis.div_ceil(d).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let alloc = if name == "memory" {
                facts.memory_bytes
            } else {
                facts.ephemeral_storage_bytes
            };
            let bytes = match (which, raw) {
                (_, Some(q)) => crate::quantity::bytes(&q).ok_or_else(bad)?,
                ("limits", None) => alloc,
                ("requests", None) => 0,
                _ => return Err(bad()),
            };
            let d = divisor
                .and_then(crate::quantity::bytes)
                .filter(|d| *d > 0)
                .unwrap_or(1);
            Ok(bytes.div_ceil(d).to_string())
        }
        _ => Err(bad()),
    }
}

/// A name the kubelet accepts for a variable from `envFrom`
/// (`[-._a-zA-Z][-._a-zA-Z0-9]*`).
pub(crate) fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic() || matches!(c, '-' | '.' | '_') || (!first && c.is_ascii_digit())
    };
    match chars.next() {
        Some(c) if ok(c, true) => chars.all(|c| ok(c, false)),
        _ => false,
    }
}

/// The container's environment in the kubelet's order, and the
/// `InvalidEnvironmentVariableNames` messages of skipped `envFrom` keys.
pub(crate) async fn container_env(
    pod: &Pod,
    container: &Container,
    objects: &mut Objects<'_>,
    facts: &PodFacts,
) -> Result<(Vec<(String, String)>, Vec<String>), ConfigError> {
    let namespace = objects.namespace().to_string();
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut env: Vec<(String, String)> = service_env(&objects.services(links).await);
    let mut warnings = Vec::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (data, what, name) = if let Some(r) = &from.config_map_ref {
            let optional = r.optional.unwrap_or(false);
            let data = objects.config_map_data(&r.name, optional).await?;
            (data, "configMap", r.name.clone())
        } else if let Some(r) = &from.secret_ref {
            let optional = r.optional.unwrap_or(false);
            let data = objects.secret_data(&r.name, optional).await?;
            (data, "secret", r.name.clone())
        } else {
            continue;
        };
        let mut invalid = Vec::new();
        for (k, v) in data.into_iter().flatten() {
            let key = format!("{prefix}{k}");
            if !valid_env_name(&key) {
                invalid.push(key);
                continue;
            }
            env.push((key, String::from_utf8_lossy(&v).into_owned()));
        }
        if !invalid.is_empty() {
            invalid.sort();
            warnings.push(format!(
                "Keys [{}] from the EnvFrom {what} {namespace}/{name} were skipped since they are considered invalid environment variable names.",
                invalid.join(", ")
            ));
        }
    }
    for e in container.env.iter().flatten() {
        let Some(from) = &e.value_from else {
            env.push((e.name.clone(), e.value.clone().unwrap_or_default()));
            continue;
        };
        let value = if let Some(r) = &from.config_map_key_ref {
            let optional = r.optional.unwrap_or(false);
            let data = objects.config_map_data(&r.name, optional).await?;
            match key_value(data, &r.key, optional, "ConfigMap", &namespace, &r.name)? {
                Some(v) => v,
                None => continue,
            }
        } else if let Some(r) = &from.secret_key_ref {
            let optional = r.optional.unwrap_or(false);
            let data = objects.secret_data(&r.name, optional).await?;
            match key_value(data, &r.key, optional, "Secret", &namespace, &r.name)? {
                Some(v) => v,
                None => continue,
            }
        } else if let Some(f) = &from.field_ref {
            field_value(pod, facts, &f.field_path, false)?
        } else if let Some(r) = &from.resource_field_ref {
            let name = r
                .container_name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| container.name.clone());
            resource_value(
                pod,
                facts,
                &name,
                &r.resource,
                r.divisor.as_ref().map(|d| d.0.as_str()),
            )?
        } else {
            String::new()
        };
        env.push((e.name.clone(), value));
    }
    Ok((env, warnings))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                "labels": {"app": "web", "tier": "a \"b\""}},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa",
                "containers": [{"name": "c", "resources": {
                    "limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}}]}
        }))
        .unwrap()
    }

    fn facts() -> PodFacts {
        PodFacts {
            pod_ips: vec!["10.1.0.5".parse().unwrap()],
            host_ip: Some("192.0.2.1".into()),
            cpu_millis: 4000,
            memory_bytes: 8 << 30,
            ephemeral_storage_bytes: 100 << 30,
        }
    }

    #[test]
    fn field_paths() {
        let (p, f) = (pod(), facts());
        let v = |path| field_value(&p, &f, path, false);
        assert_eq!(v("metadata.name").unwrap(), "p");
        assert_eq!(v("metadata.labels['app']").unwrap(), "web");
        assert_eq!(v("metadata.labels['none']").unwrap(), "");
        assert_eq!(v("spec.serviceAccountName").unwrap(), "sa");
        assert_eq!(v("status.podIPs").unwrap(), "10.1.0.5");
        assert_eq!(v("status.hostIP").unwrap(), "192.0.2.1");
        assert!(v("metadata.labels").is_err());
        assert!(v("spec.bogus").is_err());
        assert_eq!(
            field_value(&p, &f, "metadata.labels", true).unwrap(),
            "app=\"web\"\ntier=\"a \\\"b\\\"\""
        );
    }

    #[test]
    fn resources_default_to_allocatable_and_round_up() {
        let (p, f) = (pod(), facts());
        let v = |r, d| resource_value(&p, &f, "c", r, d).unwrap();
        assert_eq!(v("limits.cpu", None), "4");
        assert_eq!(v("requests.cpu", None), "1");
        assert_eq!(v("requests.cpu", Some("1m")), "250");
        assert_eq!(v("limits.memory", Some("1Mi")), "64");
        assert_eq!(v("requests.memory", None), (64u64 << 20).to_string());
        assert_eq!(v("limits.ephemeral-storage", Some("1Gi")), "100");
        assert!(resource_value(&p, &f, "c", "limits.gpu", None).is_err());
    }

    #[test]
    fn service_links() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "my-db"},
            "spec": {"clusterIP": "10.96.0.7", "ports": [
                {"name": "sql", "port": 5432},
                {"name": "metrics", "port": 9187, "protocol": "UDP"}
            ]}
        }))
        .unwrap();
        let headless: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "h"},
            "spec": {"clusterIP": "None", "ports": [{"port": 1}]}
        }))
        .unwrap();
        let env: BTreeMap<String, String> = service_env(&[svc, headless]).into_iter().collect();
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("MY_DB_SERVICE_HOST"), Some("10.96.0.7"));
        assert_eq!(get("MY_DB_SERVICE_PORT"), Some("5432"));
        assert_eq!(get("MY_DB_SERVICE_PORT_METRICS"), Some("9187"));
        assert_eq!(get("MY_DB_PORT"), Some("tcp://10.96.0.7:5432"));
        assert_eq!(get("MY_DB_PORT_9187_UDP"), Some("udp://10.96.0.7:9187"));
        assert_eq!(get("MY_DB_PORT_9187_UDP_PROTO"), Some("udp"));
        assert_eq!(get("MY_DB_PORT_5432_TCP_ADDR"), Some("10.96.0.7"));
        assert_eq!(get("MY_DB_PORT_5432_TCP_PORT"), Some("5432"));
        assert_eq!(env.len(), 13);
        assert!(!env.keys().any(|k| k.starts_with("H_")));
    }

    #[test]
    fn env_names() {
        for ok in ["A", "a_b", "-x", ".y", "A1"] {
            assert!(valid_env_name(ok), "{ok}");
        }
        for bad in ["", "1A", "a b", "a=b", "é"] {
            assert!(!valid_env_name(bad), "{bad}");
        }
    }
}
