//! From Kubernetes objects to a [`ContainerPlan`]: the kubelet's and
//! containerd's rules for the process (command and args against the
//! image's Entrypoint and Cmd, `$(VAR)` expansion, env order, working
//! directory), the user (securityContext over the image's `User`,
//! `runAsNonRoot`), the security settings and the resources.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::Capability;

use super::expand::expand;
use super::resources::{container_resources, cpu_quota, cpu_shares, oom_score_adj, pod_qos};
use super::security::capabilities;
use super::user::ImageUsers;
use super::{
    BindMount, BundleError, ContainerFiles, ContainerPlan, ContainerResources, NamespaceMode,
    PodNamespaces, ProcessUser, SeccompMode, CPU_PERIOD_US,
};

/// The `PATH` a container gets when neither the image nor the pod sets one.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the runtime prepared for one container before its spec is made.
#[derive(Clone, Debug, Default)]
pub struct Prepared {
    /// The runc container id.
    pub id: String,
    /// The bundle's root path.
    pub rootfs: PathBuf,
    /// The overlay options the runtime mounts on `rootfs` inside the
    /// container (`skiff_image::mount::Rootfs::overlay`); `None` when
    /// `rootfs` is complete already.
    pub rootfs_overlay: Option<Vec<String>>,
    /// Where `/etc/passwd` and `/etc/group` are read from: the image's layer
    /// directories, top first (empty: `rootfs` itself).
    pub image_layers: Vec<PathBuf>,
    pub namespaces: PodNamespaces,
    /// runc's `cgroupsPath` (see `cgroups::Cgroups::container_path`).
    pub cgroups_path: String,
    /// The volumes, in `volumeMounts` order, sources already resolved.
    pub mounts: Vec<BindMount>,
    pub files: ContainerFiles,
}

/// Node-wide settings that shape every container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSettings {
    /// The pids limit of each container (the kubelet's `podPidsLimit`).
    pub pids_limit: Option<i64>,
    /// The node's memory, for the Burstable OOM score.
    pub memory_capacity_bytes: u64,
    /// Containers that ask for no seccomp profile get `RuntimeDefault`
    /// (the kubelet's `--seccomp-default`); otherwise `Unconfined`.
    pub seccomp_default: bool,
    /// The host accounts swap (cgroup v1 `memory.memsw.*`, or v2
    /// `memory.swap.max`); then a memory limit also forbids swapping.
    pub swap_accounting: bool,
    /// The lowest OOM score adjustment containers may get. Lowering one's
    /// score needs `CAP_SYS_RESOURCE`; an agent without it must not ask
    /// runc for less than its own (see [`oom_score_adj_floor`]), or every
    /// Guaranteed container fails to start.
    pub min_oom_score_adj: i32,
    /// What `privileged` and `add: [ALL]` grant: the capabilities the agent
    /// holds ([`current_capabilities`](super::current_capabilities)); runc
    /// fails to start a container asking for more.
    pub all_capabilities: Vec<Capability>,
}

impl NodeSettings {
    /// [`NodeSettings::new`] fitted to this process: the OOM score floor
    /// and the grantable capabilities read from `/proc/self` (an agent
    /// without `CAP_SYS_RESOURCE`, as in a container, cannot do better).
    /// Set `swap_accounting` from `cgroups::Cgroups::swap_accounting`.
    ///
    /// # Errors
    /// Reading `/proc/self/status` or `/proc/self/oom_score_adj`.
    pub fn for_this_process(memory_capacity_bytes: u64) -> std::io::Result<Self> {
        let mut s = Self::new(memory_capacity_bytes);
        s.min_oom_score_adj = oom_score_adj_floor()?;
        s.all_capabilities = super::security::current_capabilities()?;
        Ok(s)
    }
}

/// The lowest OOM score adjustment this process can hand its children:
/// -1000 with `CAP_SYS_RESOURCE`, else its own current value.
///
/// # Errors
/// Reading `/proc/self/status` or `/proc/self/oom_score_adj`.
pub fn oom_score_adj_floor() -> std::io::Result<i32> {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = std::fs::read_to_string("/proc/self/status")?;
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    if effective & (1 << CAP_SYS_RESOURCE) != 0 {
        return Ok(-1000);
    }
    let own = std::fs::read_to_string("/proc/self/oom_score_adj")?;
    own.trim()
        .parse()
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "oom_score_adj"))
}

impl NodeSettings {
    /// Settings for a node with `memory_capacity_bytes` of memory: a pids
    /// limit of 4096, RuntimeDefault seccomp by default, swap accounted, no
    /// floor on OOM scores, every capability grantable.
    pub fn new(memory_capacity_bytes: u64) -> Self {
        Self {
            pids_limit: Some(4096),
            memory_capacity_bytes,
            seccomp_default: true,
            swap_accounting: true,
            min_oom_score_adj: -1000,
            all_capabilities: super::security::capabilities_from_mask(u64::MAX),
        }
    }
}

/// The pod's hostname: `spec.hostname`, else its name, cut to 63
/// characters without a trailing `-` or `.` (the kubelet's rule).
pub fn pod_hostname(pod: &Pod) -> String {
    let spec_name = pod.spec.as_ref().and_then(|s| s.hostname.clone());
    let name = spec_name
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    let cut: String = name.chars().take(63).collect();
    cut.trim_end_matches(['-', '.']).to_string()
}

/// The pod as the kubelet names it in messages: `name_namespace(uid)`.
fn pod_ref(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or_default(),
        m.namespace.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    )
}

fn id(field: &'static str, value: i64) -> Result<u32, BundleError> {
    u32::try_from(value).map_err(|_| BundleError::InvalidId { field, value })
}

/// Set `name` in `env`, in place when already there.
fn set_env(env: &mut Vec<(String, String)>, name: &str, value: String) {
    match env.iter_mut().find(|(k, _)| k == name) {
        Some(slot) => slot.1 = value,
        None => env.push((name.to_string(), value)),
    }
}

/// The container's own env: the runtime's resolved values, with `$(VAR)`
/// expanded in the ones written literally in `env[].value` (an entry equal
/// to a literal of the same name), against the entries before it. Values
/// from ConfigMaps, Secrets and the downward API are not expanded, as in
/// the kubelet.
fn container_env(container: &Container, resolved: &[(String, String)]) -> Vec<(String, String)> {
    let literal =
        |name: &str, value: &str| {
            container.env.iter().flatten().any(|e| {
                e.name == name && e.value_from.is_none() && e.value.as_deref() == Some(value)
            })
        };
    let mut out: Vec<(String, String)> = Vec::with_capacity(resolved.len());
    for (name, value) in resolved {
        let value = if literal(name, value) {
            expand(value, |n| {
                out.iter()
                    .rev()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.as_str())
            })
        } else {
            value.clone()
        };
        set_env(&mut out, name, value);
    }
    out
}

/// Kubernetes' rules against the image: `command` replaces the Entrypoint
/// and drops the Cmd; `args` replaces the Cmd.
fn process_args(
    container: &Container,
    image: Option<&oci_spec::image::Config>,
    env: &[(String, String)],
) -> Result<Vec<String>, BundleError> {
    let lookup = |n: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let command: Vec<String> = container
        .command
        .iter()
        .flatten()
        .map(|c| expand(c, lookup))
        .collect();
    let args: Vec<String> = container
        .args
        .iter()
        .flatten()
        .map(|a| expand(a, lookup))
        .collect();
    let mut out = if command.is_empty() {
        image
            .and_then(|c| c.entrypoint().clone())
            .unwrap_or_default()
    } else {
        command.clone()
    };
    if !args.is_empty() {
        out.extend(args);
    } else if command.is_empty() {
        out.extend(image.and_then(|c| c.cmd().clone()).unwrap_or_default());
    }
    if out.is_empty() {
        return Err(BundleError::NoCommand);
    }
    Ok(out)
}

/// The effective security settings: the container's fields over the
/// pod's.
struct Effective<'a> {
    pod: Option<&'a PodSecurityContext>,
    container: Option<&'a SecurityContext>,
}

impl Effective<'_> {
    fn run_as_user(&self) -> Option<i64> {
        self.container
            .and_then(|c| c.run_as_user)
            .or_else(|| self.pod.and_then(|p| p.run_as_user))
    }
    fn run_as_group(&self) -> Option<i64> {
        self.container
            .and_then(|c| c.run_as_group)
            .or_else(|| self.pod.and_then(|p| p.run_as_group))
    }
    fn run_as_non_root(&self) -> bool {
        self.container
            .and_then(|c| c.run_as_non_root)
            .or_else(|| self.pod.and_then(|p| p.run_as_non_root))
            .unwrap_or(false)
    }
    fn seccomp(&self) -> Option<&k8s_openapi::api::core::v1::SeccompProfile> {
        self.container
            .and_then(|c| c.seccomp_profile.as_ref())
            .or_else(|| self.pod.and_then(|p| p.seccomp_profile.as_ref()))
    }
}

/// The kubelet's `verifyRunAsNonRoot`.
fn verify_non_root(
    sc: &Effective<'_>,
    image_user: &str,
    pod: &Pod,
    container: &Container,
) -> Result<(), BundleError> {
    if !sc.run_as_non_root() {
        return Ok(());
    }
    let who = || (pod_ref(pod), container.name.clone());
    match sc.run_as_user() {
        Some(0) => {
            let (pod, container) = who();
            Err(BundleError::RunAsUserRoot { pod, container })
        }
        Some(_) => Ok(()),
        None => {
            let user = image_user.split(':').next().unwrap_or_default();
            match user.parse::<u32>() {
                Ok(0) => {
                    let (pod, container) = who();
                    Err(BundleError::ImageRunsAsRoot { pod, container })
                }
                Ok(_) => Ok(()),
                Err(_) if user.is_empty() => {
                    let (pod, container) = who();
                    Err(BundleError::ImageRunsAsRoot { pod, container })
                }
                Err(_) => {
                    let (pod, container) = who();
                    Err(BundleError::NonNumericUser {
                        user: user.to_string(),
                        pod,
                        container,
                    })
                }
            }
        }
    }
}

fn process_user(
    sc: &Effective<'_>,
    image_user: &str,
    users: &ImageUsers,
    pod_sc: Option<&PodSecurityContext>,
) -> Result<ProcessUser, BundleError> {
    let (uid, mut gid, name) = match sc.run_as_user() {
        Some(u) => {
            let uid = id("runAsUser", u)?;
            (uid, users.primary_gid(uid), users.name_of(uid))
        }
        None => users.resolve(image_user)?,
    };
    if let Some(g) = sc.run_as_group() {
        gid = id("runAsGroup", g)?;
    }
    let mut gids = vec![gid];
    if let Some(name) = &name {
        gids.extend(users.member_gids(name));
    }
    for g in pod_sc
        .and_then(|p| p.supplemental_groups.as_ref())
        .into_iter()
        .flatten()
    {
        gids.push(id("supplementalGroups", *g)?);
    }
    if let Some(g) = pod_sc.and_then(|p| p.fs_group) {
        gids.push(id("fsGroup", g)?);
    }
    let mut seen = std::collections::BTreeSet::new();
    gids.retain(|g| seen.insert(*g));
    Ok(ProcessUser {
        uid,
        gid,
        additional_gids: gids,
    })
}

/// Plan one container of `pod`.
///
/// `env` is the container's environment as the runtime resolved it, in
/// the kubelet's order (service links, then `envFrom`, then `env`); image
/// env comes first in the result, and a container variable replaces an
/// image one in place.
///
/// # Errors
/// Configuration errors (the runtime reports them as
/// `CreateContainerConfigError`, see [`BundleError::reason`]): no command,
/// `runAsNonRoot` violations with the kubelet's messages, unknown
/// capabilities or image users/groups, out-of-range ids, unsupported
/// seccomp profiles, unparsable quantities. Reading the rootfs can fail
/// with [`BundleError::Rootfs`].
pub fn resolve(
    pod: &Pod,
    container: &Container,
    image: &ImageConfiguration,
    env: &[(String, String)],
    prepared: Prepared,
    node: &NodeSettings,
) -> Result<ContainerPlan, BundleError> {
    let pod_spec = pod.spec.clone().unwrap_or_default();
    let pod_sc = pod_spec.security_context.as_ref();
    let csc = container.security_context.as_ref();
    let sc = Effective {
        pod: pod_sc,
        container: csc,
    };
    let image_config = image.config().as_ref();
    let image_user = image_config
        .and_then(|c| c.user().clone())
        .unwrap_or_default();

    let privileged = csc.and_then(|c| c.privileged).unwrap_or(false);
    let escalation = csc.and_then(|c| c.allow_privilege_escalation);
    if privileged && escalation == Some(false) {
        return Err(BundleError::PrivilegedWithoutEscalation);
    }
    let caps = csc.and_then(|c| c.capabilities.as_ref());
    let capabilities = capabilities(
        privileged,
        caps.and_then(|c| c.add.as_deref()).unwrap_or_default(),
        caps.and_then(|c| c.drop.as_deref()).unwrap_or_default(),
        &node.all_capabilities,
    )?;
    let seccomp = match sc.seccomp().map(|p| p.type_.as_str()) {
        Some("RuntimeDefault") => SeccompMode::RuntimeDefault,
        Some("Unconfined") => SeccompMode::Unconfined,
        Some(other) => {
            return Err(BundleError::UnsupportedSeccomp {
                kind: other.to_string(),
            })
        }
        None if node.seccomp_default => SeccompMode::RuntimeDefault,
        None => SeccompMode::Unconfined,
    };

    verify_non_root(&sc, &image_user, pod, container)?;
    let users = if prepared.image_layers.is_empty() {
        ImageUsers::read(std::slice::from_ref(&prepared.rootfs))?
    } else {
        ImageUsers::read(&prepared.image_layers)?
    };
    let user = process_user(&sc, &image_user, &users, pod_sc)?;

    let own_env = container_env(container, env);
    let args = process_args(container, image_config, &own_env)?;
    let hostname = match prepared.namespaces.uts {
        NamespaceMode::Host => None,
        _ => Some(pod_hostname(pod)),
    };
    let mut full_env = vec![("PATH".to_string(), DEFAULT_PATH.to_string())];
    if let Some(h) = &hostname {
        full_env.push(("HOSTNAME".into(), h.clone()));
    }
    for kv in image_config
        .and_then(|c| c.env().as_ref())
        .into_iter()
        .flatten()
    {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        if !k.is_empty() {
            set_env(&mut full_env, k, v.to_string());
        }
    }
    for (k, v) in own_env {
        set_env(&mut full_env, &k, v);
    }
    let cwd = container
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| image_config.and_then(|c| c.working_dir().clone()))
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_string());

    let (requests, limits) = container_resources(container.resources.as_ref())?;
    let memory_limit = limits
        .memory_bytes
        .map(|b| i64::try_from(b).unwrap_or(i64::MAX));
    let quota = cpu_quota(limits.cpu_millis);
    let resources = ContainerResources {
        cpu_shares: Some(cpu_shares(requests.cpu_millis)),
        cpu_quota_us: quota,
        cpu_period_us: quota.map(|_| CPU_PERIOD_US),
        memory_limit_bytes: memory_limit,
        memory_swap_bytes: memory_limit.filter(|_| node.swap_accounting),
        pids_limit: node.pids_limit,
    };
    let qos = pod_qos(&pod_spec);

    let sysctls = pod_sc
        .and_then(|p| p.sysctls.as_ref())
        .into_iter()
        .flatten()
        .map(|s| (super::security::sysctl_name(&s.name), s.value.clone()))
        .collect();

    Ok(ContainerPlan {
        id: prepared.id,
        rootfs: prepared.rootfs,
        rootfs_overlay: prepared.rootfs_overlay,
        readonly_rootfs: csc
            .and_then(|c| c.read_only_root_filesystem)
            .unwrap_or(false),
        args,
        env: full_env,
        cwd,
        user,
        terminal: container.tty.unwrap_or(false),
        hostname,
        namespaces: prepared.namespaces,
        cgroups_path: prepared.cgroups_path,
        resources,
        mounts: prepared.mounts,
        files: prepared.files,
        privileged,
        capabilities,
        no_new_privileges: escalation == Some(false),
        seccomp: Some(seccomp),
        sysctls,
        oom_score_adj: Some(
            oom_score_adj(qos, container, node.memory_capacity_bytes).max(node.min_oom_score_adj),
        ),
    })
}
