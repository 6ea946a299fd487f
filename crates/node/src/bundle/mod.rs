//! OCI runtime bundles for pod containers.
//!
//! Two steps, both pure: [`resolve`] turns a Kubernetes container (with its
//! pod, its image config, the env values the runtime resolved, and what the
//! runtime prepared on disk) into a [`ContainerPlan`]; [`spec`] turns a plan
//! into the `config.json` runc runs ([`write_bundle`] writes it). The plan
//! is the seam: everything Kubernetes-specific ends in it, everything
//! OCI-specific starts from it.
//!
//! Defaults follow what containerd's CRI plugin gives a Kubernetes
//! container on runc: the default capability set, masked and read-only
//! `/proc` paths, the standard mounts, a 64 MiB `/dev/shm` and a
//! deny-all device cgroup (runc appends the default devices). The seccomp
//! profile is skiff's own (see `seccomp.rs`).

mod expand;
mod resolve;
mod resources;
mod seccomp;
mod security;
#[cfg(test)]
mod tests;
mod user;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

pub use expand::expand;
pub use resolve::{oom_score_adj_floor, pod_hostname, resolve, NodeSettings, Prepared};
pub use resources::{
    container_resources, cpu_quota, cpu_shares, oom_score_adj, pod_qos, pod_resources, qos_class,
    CpuMemory, PodResources, QosClass, CPU_PERIOD_US,
};
pub use seccomp::runtime_default as runtime_default_seccomp;
pub use security::{
    capabilities, capabilities_from_mask, current_capabilities, forbidden_sysctls,
    parse_capability, sysctl_name, DEFAULT_CAPABILITIES, MASKED_PATHS, READONLY_PATHS,
    SAFE_SYSCTLS,
};
pub use user::ImageUsers;

/// Why a container's bundle could not be made. [`BundleError::reason`]
/// gives the waiting reason the kubelet would show.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("no command specified")]
    NoCommand,
    #[error("container's runAsUser breaks non-root policy (pod: {pod:?}, container: {container})")]
    RunAsUserRoot { pod: String, container: String },
    #[error("container has runAsNonRoot and image will run as root (pod: {pod:?}, container: {container})")]
    ImageRunsAsRoot { pod: String, container: String },
    #[error("container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: {pod:?}, container: {container})")]
    NonNumericUser {
        user: String,
        pod: String,
        container: String,
    },
    #[error("unknown capability {name:?}")]
    UnknownCapability { name: String },
    #[error("cannot set allowPrivilegeEscalation to false and privileged to true")]
    PrivilegedWithoutEscalation,
    #[error("{field} must be between 0 and 4294967295, not {value}")]
    InvalidId { field: &'static str, value: i64 },
    #[error("seccomp profile type {kind:?} is not supported")]
    UnsupportedSeccomp { kind: String },
    #[error("unable to find user {user}: no matching entries in passwd file")]
    UnknownUser { user: String },
    #[error("unable to find group {group}: no matching entries in group file")]
    UnknownGroup { group: String },
    #[error("invalid {resource} quantity {value:?}")]
    InvalidQuantity { resource: String, value: String },
    #[error("reading {path} of the container rootfs")]
    Rootfs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the bundle at {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("building the runtime spec")]
    Spec(#[from] oci_spec::OciSpecError),
}

impl BundleError {
    /// The container's waiting reason: `CreateContainerConfigError` for a
    /// problem in the pod or image configuration, `CreateContainerError`
    /// for a failure of the node.
    pub fn reason(&self) -> &'static str {
        match self {
            BundleError::Rootfs { .. } | BundleError::Write { .. } | BundleError::Spec(_) => {
                "CreateContainerError"
            }
            _ => "CreateContainerConfigError",
        }
    }
}

/// How a container gets one of its namespaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NamespaceMode {
    /// A new namespace of its own.
    #[default]
    New,
    /// Join the namespace bind-mounted at this path (the pod's).
    Join(PathBuf),
    /// Stay in the host's namespace (`hostNetwork`, `hostIPC`, `hostPID`).
    Host,
}

/// The namespaces a container shares with its pod. Mount and cgroup
/// namespaces are always the container's own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodNamespaces {
    pub network: NamespaceMode,
    pub ipc: NamespaceMode,
    pub uts: NamespaceMode,
    /// `New` unless the pod shares its process namespace (or `hostPID`).
    pub pid: NamespaceMode,
}

/// Mount propagation of a volume (`volumeMounts[].mountPropagation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Propagation {
    /// `None`: `rprivate`.
    #[default]
    Private,
    /// `HostToContainer`: `rslave`.
    HostToContainer,
    /// `Bidirectional`: `rshared` (privileged containers only).
    Bidirectional,
}

impl Propagation {
    /// From the Kubernetes field (absent is `None`).
    pub fn from_k8s(value: Option<&str>) -> Self {
        match value {
            Some("HostToContainer") => Propagation::HostToContainer,
            Some("Bidirectional") => Propagation::Bidirectional,
            _ => Propagation::Private,
        }
    }

    fn option(self) -> &'static str {
        match self {
            Propagation::Private => "rprivate",
            Propagation::HostToContainer => "rslave",
            Propagation::Bidirectional => "rshared",
        }
    }
}

/// A host path bind-mounted into the container (a volume the runtime
/// prepared, or one of the per-pod files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    /// The absolute path inside the container.
    pub destination: String,
    pub read_only: bool,
    pub propagation: Propagation,
}

/// Files the runtime wrote for the pod or container, bind-mounted at their
/// usual places (read-only when the rootfs is).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerFiles {
    /// Mounted at `/etc/hosts`.
    pub hosts: Option<PathBuf>,
    /// Mounted at `/etc/resolv.conf`.
    pub resolv_conf: Option<PathBuf>,
    /// Mounted at `/etc/hostname`.
    pub hostname: Option<PathBuf>,
    /// The container's termination log file and where it goes
    /// (`terminationMessagePath`, `/dev/termination-log` by default);
    /// always writable.
    pub termination_log: Option<(PathBuf, String)>,
    /// A pod-wide `/dev/shm` to share between the containers; `None` gives
    /// each container its own 64 MiB tmpfs.
    pub shm: Option<PathBuf>,
}

/// The seccomp filter of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeccompMode {
    /// skiff's default profile ([`runtime_default_seccomp`]).
    RuntimeDefault,
    /// No filter.
    Unconfined,
}

/// The user the container process runs as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// The cgroup limits of a container (runc writes them into its cgroup).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContainerResources {
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per `cpu_period_us`.
    pub cpu_quota_us: Option<i64>,
    pub cpu_period_us: Option<u64>,
    pub memory_limit_bytes: Option<i64>,
    /// Memory + swap; equal to the memory limit means no swap. Needs swap
    /// accounting on cgroup v1 (`memory.memsw.*`).
    pub memory_swap_bytes: Option<i64>,
    pub pids_limit: Option<i64>,
}

/// Everything needed to write one container's runtime spec: fully resolved,
/// nothing left to look up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerPlan {
    /// The runc container id.
    pub id: String,
    /// The container's root filesystem: complete, or the mount point of
    /// `rootfs_overlay`.
    pub rootfs: PathBuf,
    /// Overlay options mounted on the rootfs first, inside the container's
    /// mount namespace (nothing on the host).
    pub rootfs_overlay: Option<Vec<String>>,
    pub readonly_rootfs: bool,
    pub args: Vec<String>,
    /// In order; names are unique.
    pub env: Vec<(String, String)>,
    /// Absolute path inside the container.
    pub cwd: String,
    pub user: ProcessUser,
    /// Allocate a terminal (runc then needs `--console-socket`).
    pub terminal: bool,
    /// Set in the UTS namespace (the pod's, when joined).
    pub hostname: Option<String>,
    pub namespaces: PodNamespaces,
    /// runc's `cgroupsPath`, e.g. `/skiff/pod<uid>/<id>`.
    pub cgroups_path: String,
    pub resources: ContainerResources,
    /// Volumes, in the order given (parents are mounted before children).
    pub mounts: Vec<BindMount>,
    pub files: ContainerFiles,
    pub privileged: bool,
    /// Bounding, effective and permitted set.
    pub capabilities: Vec<Capability>,
    pub no_new_privileges: bool,
    pub seccomp: Option<SeccompMode>,
    /// Namespaced sysctls (`net.*`, `kernel.shm*`, …).
    pub sysctls: BTreeMap<String, String>,
    pub oom_score_adj: Option<i32>,
}

/// The size of a container's own `/dev/shm` and `/dev` (64 MiB).
const SHM_SIZE: &str = "size=65536k";

fn opts(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, BundleError> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(opts(options))
        .build()?)
}

fn bind(
    source: &Path,
    dest: &str,
    read_only: bool,
    prop: Propagation,
) -> Result<Mount, BundleError> {
    let options = vec![
        "rbind".to_string(),
        prop.option().to_string(),
        if read_only { "ro" } else { "rw" }.to_string(),
    ];
    Ok(MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(options)
        .build()?)
}

fn depth(path: &str) -> usize {
    path.split('/').filter(|c| !c.is_empty()).count()
}

/// The mounts: the standard ones, then the per-pod files, then the volumes
/// sorted by depth (stable), so a parent is mounted before what lies below
/// it. A volume at a standard destination replaces the standard mount.
fn mounts(plan: &ContainerPlan) -> Result<Vec<Mount>, BundleError> {
    let sys_ro = if plan.privileged { "rw" } else { "ro" };
    let mut standard = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", SHM_SIZE],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_ro],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_ro],
        )?,
    ];
    standard.push(match &plan.files.shm {
        Some(src) => bind(src, "/dev/shm", false, Propagation::Private)?,
        None => mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", SHM_SIZE],
        )?,
    });
    let ro = plan.readonly_rootfs;
    let f = &plan.files;
    for (src, dest) in [
        (&f.hosts, "/etc/hosts"),
        (&f.resolv_conf, "/etc/resolv.conf"),
        (&f.hostname, "/etc/hostname"),
    ] {
        if let Some(src) = src {
            standard.push(bind(src, dest, ro, Propagation::Private)?);
        }
    }
    if let Some((src, dest)) = &f.termination_log {
        standard.push(bind(src, dest, false, Propagation::Private)?);
    }
    let user_dests: Vec<&str> = plan.mounts.iter().map(|m| m.destination.as_str()).collect();
    standard.retain(|m| {
        let d = m.destination().to_string_lossy();
        !user_dests.iter().any(|u| u.trim_end_matches('/') == d)
    });
    let mut volumes: Vec<&BindMount> = plan.mounts.iter().collect();
    volumes.sort_by_key(|m| depth(&m.destination));
    for m in volumes {
        standard.push(bind(&m.source, &m.destination, m.read_only, m.propagation)?);
    }
    if let Some(options) = &plan.rootfs_overlay {
        // First: every other mount lands on the overlay.
        let opts: Vec<&str> = options.iter().map(String::as_str).collect();
        standard.insert(0, mount("/", "overlay", "overlay", &opts)?);
    }
    Ok(standard)
}

fn namespace(
    typ: LinuxNamespaceType,
    mode: &NamespaceMode,
) -> Result<Option<oci_spec::runtime::LinuxNamespace>, BundleError> {
    Ok(match mode {
        NamespaceMode::Host => None,
        NamespaceMode::New => Some(LinuxNamespaceBuilder::default().typ(typ).build()?),
        NamespaceMode::Join(path) => Some(
            LinuxNamespaceBuilder::default()
                .typ(typ)
                .path(path.clone())
                .build()?,
        ),
    })
}

fn linux_resources(plan: &ContainerPlan) -> Result<oci_spec::runtime::LinuxResources, BundleError> {
    let r = &plan.resources;
    let device = if plan.privileged {
        LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .access("rwm")
            .build()?
    } else {
        // Deny everything; runc appends the default devices (null, zero,
        // full, random, urandom, tty, ptmx, pts) after this rule.
        LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()?
    };
    let mut cpu = LinuxCpuBuilder::default();
    if let Some(s) = r.cpu_shares {
        cpu = cpu.shares(s);
    }
    if let Some(q) = r.cpu_quota_us {
        cpu = cpu.quota(q);
    }
    if let Some(p) = r.cpu_period_us {
        cpu = cpu.period(p);
    }
    let mut memory = LinuxMemoryBuilder::default();
    if let Some(l) = r.memory_limit_bytes {
        memory = memory.limit(l);
    }
    if let Some(s) = r.memory_swap_bytes {
        memory = memory.swap(s);
    }
    let mut res = LinuxResourcesBuilder::default()
        .devices(vec![device])
        .cpu(cpu.build()?)
        .memory(memory.build()?);
    if let Some(p) = r.pids_limit {
        res = res.pids(LinuxPidsBuilder::default().limit(p).build()?);
    }
    Ok(res.build()?)
}

/// The OCI runtime spec of a planned container.
///
/// # Errors
/// Only [`BundleError::Spec`], when oci-spec refuses a value (e.g. a mount
/// destination that is not absolute).
pub fn spec(plan: &ContainerPlan) -> Result<Spec, BundleError> {
    let caps: oci_spec::runtime::Capabilities = plan.capabilities.iter().copied().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(oci_spec::runtime::Capabilities::new())
        .ambient(oci_spec::runtime::Capabilities::new())
        .build()?;
    let user = UserBuilder::default()
        .uid(plan.user.uid)
        .gid(plan.user.gid)
        .additional_gids(plan.user.additional_gids.clone())
        .build()?;
    let env: Vec<String> = plan.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut process = ProcessBuilder::default()
        .terminal(plan.terminal)
        .user(user)
        .args(plan.args.clone())
        .env(env)
        .cwd(plan.cwd.clone())
        .capabilities(capabilities)
        .no_new_privileges(plan.no_new_privileges)
        .rlimits(Vec::new());
    if let Some(adj) = plan.oom_score_adj {
        process = process.oom_score_adj(adj);
    }
    let ns = &plan.namespaces;
    let namespaces: Vec<_> = [
        namespace(LinuxNamespaceType::Pid, &ns.pid)?,
        namespace(LinuxNamespaceType::Network, &ns.network)?,
        namespace(LinuxNamespaceType::Ipc, &ns.ipc)?,
        namespace(LinuxNamespaceType::Uts, &ns.uts)?,
        namespace(LinuxNamespaceType::Mount, &NamespaceMode::New)?,
        namespace(LinuxNamespaceType::Cgroup, &NamespaceMode::New)?,
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(&plan.cgroups_path))
        .resources(linux_resources(plan)?)
        .sysctl(
            plan.sysctls
                .clone()
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    if plan.privileged {
        linux = linux
            .masked_paths(Vec::<String>::new())
            .readonly_paths(Vec::<String>::new());
    } else {
        linux = linux
            .masked_paths(opts(&MASKED_PATHS))
            .readonly_paths(opts(&READONLY_PATHS));
    }
    if plan.seccomp == Some(SeccompMode::RuntimeDefault) && !plan.privileged {
        linux = linux.seccomp(seccomp::runtime_default(&plan.capabilities)?);
    }
    // A shared or slave volume needs the rootfs mount to propagate as well.
    let props: Vec<Propagation> = plan.mounts.iter().map(|m| m.propagation).collect();
    if props.contains(&Propagation::Bidirectional) {
        linux = linux.rootfs_propagation("rshared");
    } else if props.contains(&Propagation::HostToContainer) {
        linux = linux.rootfs_propagation("rslave");
    }
    let mut spec = SpecBuilder::default()
        .version("1.0.2-dev")
        .root(
            RootBuilder::default()
                .path(plan.rootfs.clone())
                .readonly(plan.readonly_rootfs)
                .build()?,
        )
        .mounts(mounts(plan)?)
        .process(process.build()?)
        .linux(linux.build()?)
        .annotations(std::collections::HashMap::new());
    if let Some(h) = &plan.hostname {
        spec = spec.hostname(h.clone());
    }
    Ok(spec.build()?)
}

/// Write `spec` as `<dir>/config.json` (creating `dir`), atomically: a
/// reader sees the old file or the whole new one.
pub fn write_bundle(dir: &Path, spec: &Spec) -> Result<PathBuf, BundleError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BundleError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    let json = serde_json::to_vec_pretty(spec)
        .map_err(|e| BundleError::Spec(oci_spec::OciSpecError::SerDe(e)))?;
    let tmp = dir.join(".config.json.tmp");
    let path = dir.join("config.json");
    std::fs::write(&tmp, json).map_err(err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(err(&path))?;
    Ok(path)
}
