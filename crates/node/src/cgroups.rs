//! Pod and container cgroups on cgroup v1 (including the hybrid layout,
//! with cgroup2 at `/sys/fs/cgroup/unified`) and on pure cgroup v2.
//!
//! Layout: a node-level parent (`skiff` by default) holds one cgroup per
//! pod, `<parent>/pod<uid>`, which skiff creates and sizes (the kubelet's
//! pod-level limits, see [`crate::bundle::pod_resources`]); each container's
//! cgroup, `<parent>/pod<uid>/<container id>`, is runc's: its spec names the
//! path ([`Cgroups::container_path`]) and runc's cgroupfs driver creates it
//! in every hierarchy, with the container's limits. On v1 the same relative
//! path exists under each controller's mount; on v2 it is one directory.
//!
//! Stats follow cAdvisor: cumulative CPU time, and the memory working set
//! (usage minus inactive file pages). OOM kills are counted per cgroup, so
//! the runtime can tell an OOMKilled container from one that exited; read
//! the count before `runc delete` removes the container's cgroup.
//!
//! Everything here reads and writes small cgroupfs files; only
//! [`Cgroups::remove_pod`] waits (for killed processes to leave).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::bundle::PodResources;

/// Errors of cgroup management.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup filesystem found in {mountinfo}")]
    NoCgroupFs { mountinfo: PathBuf },
    #[error("the {controller} controller is not available")]
    NoController { controller: &'static str },
    #[error("{what} {name:?} cannot be used in a cgroup path")]
    InvalidName { what: &'static str, name: String },
    #[error("cgroup filesystem access to {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unexpected content in {path}: {content:?}")]
    Parse { path: PathBuf, content: String },
    #[error("cgroup {path} still has processes after {waited:?}")]
    Busy { path: PathBuf, waited: Duration },
}

type Result<T, E = CgroupError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One mounted v1 hierarchy: its mount point and the controllers bound to
/// it (`name=systemd` for a named one, empty for the hybrid cgroup2 mount).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount: PathBuf,
    pub controllers: Vec<String>,
}

/// How the host mounts cgroups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Cgroup v1 hierarchies (plus, on a hybrid host, the cgroup2 mount with
    /// no controllers of interest).
    V1 { hierarchies: Vec<Hierarchy> },
    /// One cgroup2 hierarchy.
    V2 { root: PathBuf },
}

impl Layout {
    /// Read the layout from a `/proc/self/mountinfo` text: a cgroup2 mount
    /// with no v1 hierarchy beside it is pure v2; otherwise every cgroup
    /// (v1) and cgroup2 mount is a hierarchy of a v1 (or hybrid) host.
    pub fn from_mountinfo(text: &str) -> Option<Layout> {
        let mut v1 = Vec::new();
        let mut v2 = Vec::new();
        for line in text.lines() {
            // Fields: id parent major:minor root mountpoint options
            // [optional...] - fstype source superoptions
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount = left.split(' ').nth(4);
            let mut r = right.split(' ');
            let (fstype, _source, sopts) = (r.next(), r.next(), r.next().unwrap_or(""));
            let Some(mount) = mount.map(unescape) else {
                continue;
            };
            match fstype {
                Some("cgroup") => {
                    let controllers = sopts
                        .split(',')
                        .filter(|o| KNOWN_V1.contains(o) || o.starts_with("name="))
                        .map(String::from)
                        .collect();
                    v1.push(Hierarchy {
                        mount: PathBuf::from(mount),
                        controllers,
                    });
                }
                Some("cgroup2") => v2.push(PathBuf::from(mount)),
                _ => {}
            }
        }
        if v1.is_empty() {
            return v2.into_iter().next().map(|root| Layout::V2 { root });
        }
        v1.extend(v2.into_iter().map(|mount| Hierarchy {
            mount,
            controllers: Vec::new(),
        }));
        Some(Layout::V1 { hierarchies: v1 })
    }

    /// Every directory tree a cgroup path lives in.
    fn roots(&self) -> Vec<&Path> {
        match self {
            Layout::V1 { hierarchies } => hierarchies.iter().map(|h| h.mount.as_path()).collect(),
            Layout::V2 { root } => vec![root.as_path()],
        }
    }

    /// The mount of a v1 controller.
    fn v1_mount(&self, controller: &'static str) -> Result<&Path> {
        match self {
            Layout::V1 { hierarchies } => hierarchies
                .iter()
                .find(|h| h.controllers.iter().any(|c| c == controller))
                .map(|h| h.mount.as_path())
                .ok_or(CgroupError::NoController { controller }),
            Layout::V2 { .. } => Err(CgroupError::NoController { controller }),
        }
    }
}

const KNOWN_V1: [&str; 13] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "net_cls",
    "net_prio",
    "perf_event",
    "hugetlb",
    "rdma",
];

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let code: String = chars.clone().take(3).collect();
            if code.len() == 3 {
                if let Ok(v) = u8::from_str_radix(&code, 8) {
                    out.push(char::from(v));
                    for _ in 0..3 {
                        chars.next();
                    }
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

/// CPU and memory use of one cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Cumulative CPU time of every task, ever, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory charged to the cgroup (page cache included).
    pub memory_usage_bytes: u64,
    /// `memory_usage_bytes` minus inactive file pages (what `kubectl top`
    /// and the kubelet's evictions look at).
    pub memory_working_set_bytes: u64,
    /// Processes the kernel OOM-killed in this cgroup (and, on v2, below).
    pub oom_kills: u64,
}

/// A cumulative CPU reading and when it was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuSample {
    pub usage_ns: u64,
    pub at: Instant,
}

impl CpuSample {
    /// The average use between `earlier` and `self` in millicores (1000 is
    /// one CPU busy all the time); `None` unless `self` is later. A counter
    /// that went back (the cgroup was recreated) counts from zero.
    pub fn millicores_since(&self, earlier: &CpuSample) -> Option<u64> {
        let elapsed = self.at.checked_duration_since(earlier.at)?.as_nanos();
        if elapsed == 0 {
            return None;
        }
        let used = u128::from(
            self.usage_ns
                .checked_sub(earlier.usage_ns)
                .unwrap_or(self.usage_ns),
        );
        u64::try_from(used * 1000 / elapsed).ok()
    }
}

/// cgroup v2 `cpu.weight` for v1 `cpu.shares` (the mapping runc and the
/// kubelet use: [2, 262144] onto [1, 10000]).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// The pod and container cgroups of one node.
#[derive(Clone, Debug)]
pub struct Cgroups {
    layout: Layout,
    parent: String,
}

fn check_name(what: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(CgroupError::InvalidName {
            what,
            name: name.to_string(),
        })
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(io_err(path))
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(io_err(path))
}

fn parse_u64(path: &Path, text: &str) -> Result<u64> {
    text.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content: text.chars().take(100).collect(),
    })
}

/// The value of `key` in a flat-keyed file (`memory.stat`, `cpu.stat`,
/// `memory.events`, `memory.oom_control`).
fn keyed(path: &Path, key: &str) -> Result<Option<u64>> {
    let text = read(path)?;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        if f.next() == Some(key) {
            return f.next().map(|v| parse_u64(path, v)).transpose();
        }
    }
    Ok(None)
}

fn mkdir(path: &Path) -> Result<()> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

impl Cgroups {
    /// Detect the host's layout from `/proc/self/mountinfo`; pods go under
    /// `parent` (a single path component, e.g. `skiff`).
    pub fn detect(parent: &str) -> Result<Self> {
        let mountinfo = Path::new("/proc/self/mountinfo");
        let text = read(mountinfo)?;
        let layout = Layout::from_mountinfo(&text).ok_or_else(|| CgroupError::NoCgroupFs {
            mountinfo: mountinfo.to_path_buf(),
        })?;
        Self::with_layout(layout, parent)
    }

    /// Use a known layout.
    pub fn with_layout(layout: Layout, parent: &str) -> Result<Self> {
        check_name("cgroup parent", parent)?;
        Ok(Self {
            layout,
            parent: parent.to_string(),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Whether the host is pure cgroup v2.
    pub fn is_v2(&self) -> bool {
        matches!(self.layout, Layout::V2 { .. })
    }

    /// Whether swap is accounted, so a container's memory limit can also
    /// forbid swap (runc's `memory.swap`).
    pub fn swap_accounting(&self) -> bool {
        match &self.layout {
            Layout::V1 { .. } => self
                .layout
                .v1_mount("memory")
                .map(|m| m.join("memory.memsw.limit_in_bytes").exists())
                .unwrap_or(false),
            // runc on v2 turns "swap = limit" into memory.swap.max = 0 and
            // skips it quietly where the kernel has no swap accounting.
            Layout::V2 { .. } => true,
        }
    }

    /// The pod's cgroup path, relative to each hierarchy: `/<parent>/pod<uid>`.
    pub fn pod_path(&self, pod_uid: &str) -> Result<String> {
        check_name("pod uid", pod_uid)?;
        Ok(format!("/{}/pod{pod_uid}", self.parent))
    }

    /// The `cgroupsPath` to give runc for a container:
    /// `/<parent>/pod<uid>/<container id>`.
    pub fn container_path(&self, pod_uid: &str, container_id: &str) -> Result<String> {
        check_name("container id", container_id)?;
        Ok(format!("{}/{container_id}", self.pod_path(pod_uid)?))
    }

    fn dir(root: &Path, rel: &str) -> PathBuf {
        root.join(rel.trim_start_matches('/'))
    }

    /// Create (or update) the pod's cgroup with `limits`. Idempotent.
    ///
    /// # Errors
    /// [`CgroupError::Io`] when a directory or limit cannot be written (a
    /// memory limit below the current use is refused by the kernel).
    pub fn create_pod(&self, pod_uid: &str, limits: &PodResources) -> Result<()> {
        let rel = self.pod_path(pod_uid)?;
        match &self.layout {
            Layout::V1 { .. } => self.create_pod_v1(&rel, limits),
            Layout::V2 { root } => self.create_pod_v2(root, &rel, limits),
        }
    }

    fn create_pod_v1(&self, rel: &str, limits: &PodResources) -> Result<()> {
        // Only the controllers with pod-level settings or stats; runc
        // creates the container's directories (and their parents) in the
        // other hierarchies, and removal walks all of them.
        for controller in ["cpu", "cpuacct", "memory", "pids"] {
            let mount = self.layout.v1_mount(controller)?;
            mkdir(&mount.join(&self.parent))?;
            mkdir(&Self::dir(mount, rel))?;
        }
        let cpu = Self::dir(self.layout.v1_mount("cpu")?, rel);
        write(&cpu.join("cpu.shares"), &limits.cpu_shares.to_string())?;
        write(
            &cpu.join("cpu.cfs_period_us"),
            &limits.cpu_period_us.to_string(),
        )?;
        write(
            &cpu.join("cpu.cfs_quota_us"),
            &limits.cpu_quota_us.unwrap_or(-1).to_string(),
        )?;
        let mem = Self::dir(self.layout.v1_mount("memory")?, rel);
        let limit = limits
            .memory_limit_bytes
            .map_or_else(|| "-1".to_string(), |b| b.to_string());
        write(&mem.join("memory.limit_in_bytes"), &limit)?;
        let pids = Self::dir(self.layout.v1_mount("pids")?, rel);
        write(
            &pids.join("pids.max"),
            &limits
                .pids_limit
                .map_or_else(|| "max".to_string(), |p| p.to_string()),
        )?;
        Ok(())
    }

    fn enable_controllers(dir: &Path) -> Result<()> {
        let available = read(&dir.join("cgroup.controllers"))?;
        let wanted: Vec<String> = available
            .split_whitespace()
            .filter(|c| matches!(*c, "cpu" | "cpuset" | "memory" | "pids" | "io" | "hugetlb"))
            .map(|c| format!("+{c}"))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        write(&dir.join("cgroup.subtree_control"), &wanted.join(" "))
    }

    fn create_pod_v2(&self, root: &Path, rel: &str, limits: &PodResources) -> Result<()> {
        Self::enable_controllers(root)?;
        let parent = root.join(&self.parent);
        mkdir(&parent)?;
        Self::enable_controllers(&parent)?;
        let pod = Self::dir(root, rel);
        mkdir(&pod)?;
        // The containers below need the controllers delegated to them.
        Self::enable_controllers(&pod)?;
        write(
            &pod.join("cpu.weight"),
            &shares_to_weight(limits.cpu_shares).to_string(),
        )?;
        let quota = limits
            .cpu_quota_us
            .map_or_else(|| "max".to_string(), |q| q.to_string());
        write(
            &pod.join("cpu.max"),
            &format!("{quota} {}", limits.cpu_period_us),
        )?;
        write(
            &pod.join("memory.max"),
            &limits
                .memory_limit_bytes
                .map_or_else(|| "max".to_string(), |b| b.to_string()),
        )?;
        write(
            &pod.join("pids.max"),
            &limits
                .pids_limit
                .map_or_else(|| "max".to_string(), |p| p.to_string()),
        )?;
        Ok(())
    }

    fn stats_at(&self, rel: &str) -> Result<CgroupStats> {
        match &self.layout {
            Layout::V1 { .. } => {
                let acct = Self::dir(self.layout.v1_mount("cpuacct")?, rel);
                let cpu_path = acct.join("cpuacct.usage");
                let cpu_usage_ns = parse_u64(&cpu_path, &read(&cpu_path)?)?;
                let mem = Self::dir(self.layout.v1_mount("memory")?, rel);
                let usage_path = mem.join("memory.usage_in_bytes");
                let usage = parse_u64(&usage_path, &read(&usage_path)?)?;
                let inactive = keyed(&mem.join("memory.stat"), "total_inactive_file")?.unwrap_or(0);
                let oom_kills = keyed(&mem.join("memory.oom_control"), "oom_kill")?.unwrap_or(0);
                Ok(CgroupStats {
                    cpu_usage_ns,
                    memory_usage_bytes: usage,
                    memory_working_set_bytes: usage.saturating_sub(inactive),
                    oom_kills,
                })
            }
            Layout::V2 { root } => {
                let dir = Self::dir(root, rel);
                let usage_usec = keyed(&dir.join("cpu.stat"), "usage_usec")?.unwrap_or(0);
                let current = dir.join("memory.current");
                let usage = parse_u64(&current, &read(&current)?)?;
                let inactive = keyed(&dir.join("memory.stat"), "inactive_file")?.unwrap_or(0);
                let oom_kills = keyed(&dir.join("memory.events"), "oom_kill")?.unwrap_or(0);
                Ok(CgroupStats {
                    cpu_usage_ns: usage_usec.saturating_mul(1000),
                    memory_usage_bytes: usage,
                    memory_working_set_bytes: usage.saturating_sub(inactive),
                    oom_kills,
                })
            }
        }
    }

    /// CPU, memory and OOM kills of the whole pod.
    pub fn pod_stats(&self, pod_uid: &str) -> Result<CgroupStats> {
        self.stats_at(&self.pod_path(pod_uid)?)
    }

    /// CPU, memory and OOM kills of one container (while runc's cgroup for
    /// it exists).
    pub fn container_stats(&self, pod_uid: &str, container_id: &str) -> Result<CgroupStats> {
        self.stats_at(&self.container_path(pod_uid, container_id)?)
    }

    /// How many processes the kernel OOM-killed in the container's cgroup.
    pub fn oom_kills(&self, pod_uid: &str, container_id: &str) -> Result<u64> {
        let rel = self.container_path(pod_uid, container_id)?;
        match &self.layout {
            Layout::V1 { .. } => {
                let mem = Self::dir(self.layout.v1_mount("memory")?, &rel);
                Ok(keyed(&mem.join("memory.oom_control"), "oom_kill")?.unwrap_or(0))
            }
            Layout::V2 { root } => {
                Ok(keyed(&Self::dir(root, &rel).join("memory.events"), "oom_kill")?.unwrap_or(0))
            }
        }
    }

    /// The uids of the pods that have a cgroup under the parent in any
    /// hierarchy (to find orphans after a restart).
    pub fn list_pods(&self) -> Result<Vec<String>> {
        let mut uids = std::collections::BTreeSet::new();
        for root in self.layout.roots() {
            let parent = root.join(&self.parent);
            let entries = match std::fs::read_dir(&parent) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&parent)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io_err(&parent))?;
                let name = entry.file_name();
                if let Some(uid) = name.to_str().and_then(|n| n.strip_prefix("pod")) {
                    if entry.path().is_dir() && !uid.is_empty() {
                        uids.insert(uid.to_string());
                    }
                }
            }
        }
        Ok(uids.into_iter().collect())
    }

    /// Remove the pod's cgroups in every hierarchy, containers first. Any
    /// process still inside is SIGKILLed (v2: `cgroup.kill`), and removal
    /// waits up to `timeout` for them to go. Missing cgroups are fine.
    ///
    /// # Errors
    /// [`CgroupError::Busy`] if processes survive `timeout`;
    /// [`CgroupError::Io`] for other failures.
    pub async fn remove_pod(&self, pod_uid: &str, timeout: Duration) -> Result<()> {
        let rel = self.pod_path(pod_uid)?;
        let trees: Vec<PathBuf> = self
            .layout
            .roots()
            .into_iter()
            .map(|r| Self::dir(r, &rel))
            .filter(|d| d.is_dir())
            .collect();
        let start = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            let mut live = 0;
            for tree in &trees {
                live += kill_tree(tree)?;
            }
            if live == 0 {
                break;
            }
            if start.elapsed() >= timeout {
                let path = trees.first().cloned().unwrap_or_default();
                return Err(CgroupError::Busy {
                    path,
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        for tree in &trees {
            remove_tree(tree)?;
        }
        Ok(())
    }
}

/// Subdirectories of a cgroup directory, deepest first, then itself.
fn post_order(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        if entry.file_type().map_err(io_err(dir))?.is_dir() {
            post_order(&entry.path(), out)?;
        }
    }
    out.push(dir.to_path_buf());
    Ok(())
}

/// Kill every process in the tree; the number of processes seen.
fn kill_tree(tree: &Path) -> Result<usize> {
    let mut dirs = Vec::new();
    post_order(tree, &mut dirs)?;
    let kill_file = tree.join("cgroup.kill");
    let mut seen = 0;
    for dir in &dirs {
        // A frozen task keeps a SIGKILL pending until thawed.
        let freezer = dir.join("freezer.state");
        if freezer.exists() && read(&freezer)?.trim() != "THAWED" {
            write(&freezer, "THAWED")?;
        }
        let procs = dir.join("cgroup.procs");
        let text = match std::fs::read_to_string(&procs) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&procs)(e)),
        };
        for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            seen += 1;
            if kill_file.exists() {
                continue;
            }
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                // ESRCH: it exited in between, which is what we want.
                match rustix::process::kill_process(pid, rustix::process::Signal::KILL) {
                    Ok(()) | Err(rustix::io::Errno::SRCH) => {}
                    Err(e) => return Err(io_err(&procs)(e.into())),
                }
            }
        }
    }
    if seen > 0 && kill_file.exists() {
        write(&kill_file, "1")?;
    }
    Ok(seen)
}

/// rmdir the tree, children first (cgroupfs directories hold only
/// pseudo-files, so rmdir is the whole removal).
fn remove_tree(tree: &Path) -> Result<()> {
    let mut dirs = Vec::new();
    post_order(tree, &mut dirs)?;
    for dir in dirs {
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&dir)(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn detects_hybrid_and_v2() {
        let Some(Layout::V1 { hierarchies }) = Layout::from_mountinfo(HYBRID) else {
            panic!("not v1");
        };
        assert_eq!(hierarchies.len(), 6);
        assert_eq!(hierarchies[0].controllers, vec!["cpu"]);
        assert_eq!(hierarchies[4].controllers, vec!["name=systemd"]);
        assert_eq!(
            hierarchies[5].mount,
            PathBuf::from("/sys/fs/cgroup/unified")
        );
        let v2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            Layout::from_mountinfo(v2),
            Some(Layout::V2 {
                root: "/sys/fs/cgroup".into()
            })
        );
        let combined =
            "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let layout = Layout::from_mountinfo(combined).unwrap();
        assert_eq!(
            layout.v1_mount("cpuacct").unwrap(),
            Path::new("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert!(Layout::from_mountinfo("1 0 0:1 / / rw - ext4 /dev/sda rw\n").is_none());
        assert_eq!(unescape("/a\\040b"), "/a b");
    }

    #[test]
    fn paths_and_names() {
        let cg = Cgroups::with_layout(Layout::from_mountinfo(HYBRID).unwrap(), "skiff").unwrap();
        assert_eq!(cg.pod_path("1234-ab").unwrap(), "/skiff/pod1234-ab");
        assert_eq!(
            cg.container_path("1234-ab", "c1").unwrap(),
            "/skiff/pod1234-ab/c1"
        );
        assert!(cg.pod_path("../x").is_err());
        assert!(cg.container_path("u", "a/b").is_err());
        assert!(cg.container_path("u", "..").is_err());
        assert!(Cgroups::with_layout(Layout::V2 { root: "/x".into() }, "a/b").is_err());
    }

    #[test]
    fn weights_and_millicores() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        let t0 = Instant::now();
        let a = CpuSample {
            usage_ns: 1_000_000_000,
            at: t0,
        };
        let b = CpuSample {
            usage_ns: 1_500_000_000,
            at: t0 + Duration::from_secs(2),
        };
        assert_eq!(b.millicores_since(&a), Some(250));
        assert_eq!(a.millicores_since(&b), None);
        assert_eq!(a.millicores_since(&a), None);
    }
}
