//! A pod's volumes, under `<pod dir>/volumes/<name>`, and its containers'
//! `volumeMounts` as bind mounts.
//!
//! - `emptyDir`: a directory (mode 0777); `medium: Memory` is a tmpfs
//!   (`sizeLimit` its size) unmounted by [`teardown`].
//! - `configMap`, `secret`, `downwardAPI`, `projected`: files written like
//!   the kubelet's atomic writer ([`write_atomic`]): the files live in a
//!   timestamped `..<time>` directory, `..data` points at it, and each
//!   user-visible name is a symlink through `..data`. An update writes a new
//!   directory and swaps `..data` with a rename, so a container that mounts
//!   the whole volume sees either the old or the new files, never a mix.
//!   Secrets and projected volumes live on a tmpfs (never on disk).
//! - `hostPath`: the host path itself, after the `type` check.
//!
//! Updates: [`resync`] runs for each pod with such file volumes and every
//! [`RESYNC_PERIOD`] re-reads their ConfigMaps and Secrets (and the pod,
//! for downward API labels and annotations), rewriting a volume only when
//! its content changed. A `subPath` mount of one of these volumes binds the
//! file itself, so, as in Kubernetes, it does not see updates.
//!
//! Projected service account tokens are requested with a TokenRequest
//! (`serviceaccounts/<sa>/token`, bound to the pod) once per volume; when
//! the API server refuses (skiff's does not serve that subresource yet) the
//! token file is left out and the rest of the volume is mounted.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, KeyToPath, Pod, ServiceAccountTokenProjection, Volume,
};

use super::env::{field_value, resource_value, ConfigError, Objects, PodFacts};
use super::Node;
use crate::bundle::{BindMount, Propagation};

/// How often mounted ConfigMaps, Secrets and downward API files are
/// re-synced into running pods (the kubelet takes up to about a minute).
pub(crate) const RESYNC_PERIOD: Duration = Duration::from_secs(3);

/// Files of a volume: relative path → (content, mode).
pub(crate) type Payload = BTreeMap<String, (Vec<u8>, u32)>;

const DEFAULT_MODE: u32 = 0o644;

fn volumes_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join("volumes")
}

/// Whether the volume is one written from API objects (always read-only).
fn is_file_volume(v: &Volume) -> bool {
    v.config_map.is_some()
        || v.secret.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
}

fn safe_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}

/// Set up every volume of the pod (idempotent; file volumes are re-written
/// when their content changed). The error is the `FailedMount` message.
pub(crate) async fn setup(
    pod: &Pod,
    pod_dir: &Path,
    objects: &mut Objects<'_>,
    facts: &PodFacts,
) -> Result<(), String> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for v in &volumes {
        setup_volume(pod, pod_dir, v, objects, facts)
            .await
            .map_err(|e| format!("MountVolume.SetUp failed for volume {:?} : {e}", v.name))?;
    }
    Ok(())
}

async fn setup_volume(
    pod: &Pod,
    pod_dir: &Path,
    v: &Volume,
    objects: &mut Objects<'_>,
    facts: &PodFacts,
) -> Result<(), String> {
    if !safe_name(&v.name) {
        return Err("invalid volume name".into());
    }
    let dir = volumes_dir(pod_dir).join(&v.name);
    if let Some(ed) = &v.empty_dir {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        if ed.medium.as_deref() == Some("Memory") {
            let limit = ed
                .size_limit
                .as_ref()
                .and_then(|q| crate::quantity::bytes(&q.0))
                .filter(|b| *b > 0);
            mount_tmpfs(&dir, Some(memory_volume_size(pod, facts, limit)), 0o777)?;
        }
        let gid = fs_group(pod);
        let mode = if gid.is_some() { 0o2777 } else { 0o777 };
        std::os::unix::fs::chown(&dir, None, gid).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    if let Some(hp) = &v.host_path {
        return check_host_path(&hp.path, hp.type_.as_deref().unwrap_or_default());
    }
    if !is_file_volume(v) {
        return Err("this volume type is not supported by the skiff node".into());
    }
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    if v.secret.is_some() || v.projected.is_some() {
        mount_tmpfs(&dir, None, 0o755)?;
    }
    let payload = payload(pod, v, &dir, objects, facts, true).await?;
    write_atomic(&dir, &payload, fs_group(pod))
        .map_err(|e| format!("writing the volume's files: {e}"))?;
    Ok(())
}

/// The size of a memory-backed emptyDir, as the kubelet sizes it: its
/// `sizeLimit`, at most what the pod may use (the sum of its containers'
/// memory limits when all have one, else node allocatable).
fn memory_volume_size(pod: &Pod, facts: &PodFacts, limit: Option<u64>) -> u64 {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let limits: Option<Vec<u64>> = containers
        .iter()
        .map(|c| {
            let q = c.resources.as_ref()?.limits.as_ref()?.get("memory")?;
            crate::quantity::bytes(&q.0)
        })
        .collect();
    let pod_max = limits
        .filter(|l| !l.is_empty())
        .map_or(facts.memory_bytes, |l| l.iter().sum::<u64>())
        .min(facts.memory_bytes);
    limit.map_or(pod_max, |l| l.min(pod_max))
}

/// A tmpfs on `dir` unless one is there already.
fn mount_tmpfs(dir: &Path, size: Option<u64>, mode: u32) -> Result<(), String> {
    if skiff_image::mount::is_mount_point(dir) {
        return Ok(());
    }
    let mut options = format!("mode={mode:o}");
    if let Some(s) = size {
        options.push_str(&format!(",size={s}"));
    }
    use nix::mount::MsFlags;
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(|e| format!("mounting a tmpfs on {}: {e}", dir.display()))
}

/// The kubelet's `hostPath.type` checks (and creation for `...OrCreate`).
fn check_host_path(path: &str, typ: &str) -> Result<(), String> {
    let p = Path::new(path);
    let meta = std::fs::metadata(p).ok();
    let fail = |what: &str| Err(format!("hostPath type check failed: {path} is not {what}"));
    match typ {
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_none() => {
            std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| e.to_string())
        }
        "Directory" | "DirectoryOrCreate" => match meta {
            Some(m) if m.is_dir() => Ok(()),
            _ => fail("a directory"),
        },
        "FileOrCreate" if meta.is_none() => std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(p)
            .and_then(|f| f.set_permissions(std::fs::Permissions::from_mode(0o644)))
            .map_err(|e| e.to_string()),
        "File" | "FileOrCreate" => match meta {
            Some(m) if m.is_file() => Ok(()),
            _ => fail("a file"),
        },
        "Socket" => match meta {
            Some(m) if m.file_type().is_socket() => Ok(()),
            _ => fail("a socket file"),
        },
        "CharDevice" => match meta {
            Some(m) if m.file_type().is_char_device() => Ok(()),
            _ => fail("a character device"),
        },
        "BlockDevice" => match meta {
            Some(m) if m.file_type().is_block_device() => Ok(()),
            _ => fail("a block device"),
        },
        other => Err(format!("invalid HostPathType {other:?}")),
    }
}

fn mode_of(mode: Option<i32>, default: u32) -> u32 {
    mode.and_then(|m| u32::try_from(m).ok())
        .map_or(default, |m| m & 0o777)
}

/// Keys of a ConfigMap or Secret as files: all of them, or `items`.
fn keyed(
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    optional: bool,
    missing: impl Fn(&str) -> String,
    out: &mut Payload,
) -> Result<(), String> {
    let Some(data) = data else {
        return Ok(());
    };
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                out.insert(k, (v, default_mode));
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(v) => {
                        out.insert(
                            item.path.clone(),
                            (v.clone(), mode_of(item.mode, default_mode)),
                        );
                    }
                    None if optional => {}
                    None => return Err(missing(&item.key)),
                }
            }
        }
    }
    Ok(())
}

fn downward(
    pod: &Pod,
    facts: &PodFacts,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    out: &mut Payload,
) -> Result<(), String> {
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            field_value(pod, facts, &f.field_path, true)
        } else if let Some(r) = &item.resource_field_ref {
            resource_value(
                pod,
                facts,
                r.container_name.as_deref().unwrap_or_default(),
                &r.resource,
                r.divisor.as_ref().map(|d| d.0.as_str()),
            )
        } else {
            Ok(String::new())
        }
        .map_err(|e: ConfigError| e.0)?;
        out.insert(
            item.path.clone(),
            (value.into_bytes(), mode_of(item.mode, default_mode)),
        );
    }
    Ok(())
}

/// The files of a configMap, secret, downwardAPI or projected volume.
async fn payload(
    pod: &Pod,
    v: &Volume,
    dir: &Path,
    objects: &mut Objects<'_>,
    facts: &PodFacts,
    fetch_tokens: bool,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    let cm_missing = |k: &str| format!("configmap references non-existent config key: {k}");
    let secret_missing = |k: &str| format!("references non-existent secret key: {k}");
    if let Some(c) = &v.config_map {
        let optional = c.optional.unwrap_or(false);
        let data = objects
            .config_map_data(&c.name, optional)
            .await
            .map_err(|e| e.0)?;
        let mode = mode_of(c.default_mode, DEFAULT_MODE);
        keyed(data, c.items.as_ref(), mode, optional, cm_missing, &mut out)?;
    } else if let Some(s) = &v.secret {
        let optional = s.optional.unwrap_or(false);
        let name = s.secret_name.clone().unwrap_or_default();
        let data = objects
            .secret_data(&name, optional)
            .await
            .map_err(|e| e.0)?;
        let mode = mode_of(s.default_mode, DEFAULT_MODE);
        keyed(
            data,
            s.items.as_ref(),
            mode,
            optional,
            secret_missing,
            &mut out,
        )?;
    } else if let Some(d) = &v.downward_api {
        let mode = mode_of(d.default_mode, DEFAULT_MODE);
        downward(
            pod,
            facts,
            d.items.as_deref().unwrap_or_default(),
            mode,
            &mut out,
        )?;
    } else if let Some(p) = &v.projected {
        let mode = mode_of(p.default_mode, DEFAULT_MODE);
        for source in p.sources.iter().flatten() {
            if let Some(c) = &source.config_map {
                let optional = c.optional.unwrap_or(false);
                let data = objects
                    .config_map_data(&c.name, optional)
                    .await
                    .map_err(|e| e.0)?;
                keyed(data, c.items.as_ref(), mode, optional, cm_missing, &mut out)?;
            }
            if let Some(s) = &source.secret {
                let optional = s.optional.unwrap_or(false);
                let data = objects
                    .secret_data(&s.name, optional)
                    .await
                    .map_err(|e| e.0)?;
                keyed(
                    data,
                    s.items.as_ref(),
                    mode,
                    optional,
                    secret_missing,
                    &mut out,
                )?;
            }
            if let Some(d) = &source.downward_api {
                downward(
                    pod,
                    facts,
                    d.items.as_deref().unwrap_or_default(),
                    mode,
                    &mut out,
                )?;
            }
            if let Some(t) = &source.service_account_token {
                if let Some(token) = service_account_token(pod, dir, t, objects, fetch_tokens).await
                {
                    out.insert(t.path.clone(), (token, mode));
                }
            }
        }
    }
    Ok(out)
}

/// The token already in the volume, or a new one from a TokenRequest bound
/// to the pod; `None` when the API server gives none.
async fn service_account_token(
    pod: &Pod,
    dir: &Path,
    t: &ServiceAccountTokenProjection,
    objects: &Objects<'_>,
    fetch: bool,
) -> Option<Vec<u8>> {
    if let Ok(current) = std::fs::read(dir.join("..data").join(&t.path)) {
        return Some(current);
    }
    if !fetch {
        return None;
    }
    let client = objects.client()?;
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    use k8s_openapi::api::authentication::v1::{
        BoundObjectReference, TokenRequest, TokenRequestSpec,
    };
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: t
                .audience
                .clone()
                .into_iter()
                .filter(|a| !a.is_empty())
                .collect(),
            expiration_seconds: Some(t.expiration_seconds.unwrap_or(3600)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let api: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(client.clone(), objects.namespace());
    match api
        .create_token_request(&sa, &kube::api::PostParams::default(), &request)
        .await
    {
        Ok(r) => r.status.map(|s| s.token.into_bytes()),
        Err(e) => {
            tracing::warn!(
                serviceaccount = %sa,
                error = %e,
                "no service account token for a projected volume; mounting the rest"
            );
            None
        }
    }
}

fn valid_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.starts_with("..")
        && Path::new(path)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// The pod's `securityContext.fsGroup`.
fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec
        .as_ref()?
        .security_context
        .as_ref()?
        .fs_group
        .and_then(|g| u32::try_from(g).ok())
}

/// Write `payload` into `dir` atomically (see the module docs); `Ok(false)`
/// when the files there are the same already. `dir` must exist. With an
/// fsGroup the files belong to that group and are group-readable, as the
/// kubelet sets a volume's ownership.
pub(crate) fn write_atomic(
    dir: &Path,
    payload: &Payload,
    gid: Option<u32>,
) -> std::io::Result<bool> {
    if let Some(bad) = payload.keys().find(|p| !valid_relative(p)) {
        return Err(std::io::Error::other(format!("invalid file path {bad:?}")));
    }
    let grouped: Payload;
    let payload = match gid {
        None => payload,
        Some(_) => {
            grouped = payload
                .iter()
                .map(|(k, (b, m))| (k.clone(), (b.clone(), m | 0o440)))
                .collect();
            &grouped
        }
    };
    let data_link = dir.join("..data");
    let old = std::fs::read_link(&data_link).ok();
    if let Some(old) = &old {
        if same_files(&dir.join(old), payload) {
            user_links(dir, payload)?;
            return Ok(false);
        }
    }
    let now = k8s_openapi::jiff::Timestamp::now();
    let stamp = format!(
        "..{}.{:09}",
        now.strftime("%Y_%m_%d_%H_%M_%S"),
        now.subsec_nanosecond()
    );
    let mut name = stamp.clone();
    let mut n = 0;
    loop {
        match std::fs::create_dir(dir.join(&name)) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => {
                n += 1;
                name = format!("{stamp}{n}");
            }
            Err(e) => return Err(e),
        }
    }
    let data_dir = dir.join(&name);
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755))?;
    for (path, (bytes, mode)) in payload {
        let file = data_dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, bytes)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))?;
        if gid.is_some() {
            std::os::unix::fs::chown(&file, None, gid)?;
        }
    }
    if gid.is_some() {
        std::os::unix::fs::chown(&data_dir, None, gid)?;
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&name, &tmp)?;
    std::fs::rename(&tmp, &data_link)?;
    user_links(dir, payload)?;
    if let Some(old) = old.filter(|o| o.as_os_str() != name.as_str()) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

/// Whether `data_dir` holds exactly `payload`.
fn same_files(data_dir: &Path, payload: &Payload) -> bool {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                walk(base, &e.path(), out)?;
            } else if let Ok(rel) = e.path().strip_prefix(base) {
                out.push(rel.to_path_buf());
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    if walk(data_dir, data_dir, &mut files).is_err() || files.len() != payload.len() {
        return false;
    }
    payload.iter().all(|(path, (bytes, mode))| {
        let f = data_dir.join(path);
        let same_mode =
            std::fs::metadata(&f).is_ok_and(|m| m.permissions().mode() & 0o777 == *mode);
        same_mode && std::fs::read(&f).is_ok_and(|b| &b == bytes)
    })
}

/// The user-visible names (`<top>` → `..data/<top>`), and no others.
fn user_links(dir: &Path, payload: &Payload) -> std::io::Result<()> {
    let tops: BTreeSet<&str> = payload.keys().filter_map(|p| p.split('/').next()).collect();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(top), &link)?;
        }
    }
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("..") || tops.contains(name) {
            continue;
        }
        if e.file_type().is_ok_and(|t| t.is_symlink()) {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// The container's `volumeMounts` as bind mounts (`env` expands
/// `subPathExpr`).
pub(crate) fn container_mounts(
    pod: &Pod,
    container: &Container,
    pod_dir: &Path,
    env: &[(String, String)],
) -> Result<Vec<BindMount>, ConfigError> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut out = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let v = volumes.iter().find(|v| v.name == m.name).ok_or_else(|| {
            ConfigError(format!(
                "cannot find volume {:?} to mount into container {:?}",
                m.name, container.name
            ))
        })?;
        if !safe_name(&v.name) {
            return Err(ConfigError(format!("invalid volume name {:?}", v.name)));
        }
        let (base, always_ro) = match &v.host_path {
            Some(hp) => (PathBuf::from(&hp.path), false),
            None => (volumes_dir(pod_dir).join(&v.name), is_file_volume(v)),
        };
        let sub = match (&m.sub_path, &m.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => Some(s.clone()),
            (_, Some(e)) if !e.is_empty() => Some(crate::bundle::expand(e, |n| {
                env.iter()
                    .rev()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.as_str())
            })),
            _ => None,
        };
        let source = match sub {
            None => base,
            Some(sub) => sub_path(&base, &sub, always_ro).map_err(|e| {
                ConfigError(format!(
                    "failed to prepare subPath for volumeMount {:?} of container {:?}: {e}",
                    m.name, container.name
                ))
            })?,
        };
        out.push(BindMount {
            source,
            destination: m.mount_path.clone(),
            read_only: m.read_only.unwrap_or(false) || always_ro,
            propagation: Propagation::from_k8s(m.mount_propagation.as_deref()),
        });
    }
    Ok(out)
}

/// `base/sub`, resolved (a file volume's symlinks lead to the current
/// file) and checked to stay inside the volume; created as a directory
/// when missing in a writable volume, as the kubelet does.
fn sub_path(base: &Path, sub: &str, file_volume: bool) -> Result<PathBuf, String> {
    if !valid_relative(sub) {
        return Err(format!("invalid subPath {sub:?}"));
    }
    let path = base.join(sub);
    if std::fs::symlink_metadata(&path).is_err() {
        if file_volume {
            return Err(format!("subPath {sub:?} does not exist in the volume"));
        }
        std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
    }
    let real = path.canonicalize().map_err(|e| e.to_string())?;
    let root = base.canonicalize().map_err(|e| e.to_string())?;
    if !real.starts_with(&root) {
        return Err(format!("subPath {sub:?} leads outside the volume"));
    }
    Ok(real)
}

/// Unmount what [`setup`] mounted for the pod (tmpfs volumes), deepest
/// first; called before the pod's directory is removed.
pub(crate) fn teardown(pod_dir: &Path) {
    let Ok(root) = volumes_dir(pod_dir).canonicalize() else {
        return;
    };
    for (p, e) in super::unmount_under(&root) {
        tracing::warn!(path = %p.display(), error = %e, "unmounting a volume failed");
    }
}

/// What [`resync`] asks its pod worker each round: `None` once the worker
/// is gone (the loop ends), `Some(None)` to skip a round (no sandbox yet,
/// or stopping), else the current pod and its addresses.
pub(crate) type Current = Option<Option<(Arc<Pod>, Vec<IpAddr>)>>;

/// Keep the pod's ConfigMap, Secret, downward API and projected volumes in
/// step with the API every [`RESYNC_PERIOD`], for as long as `current`
/// gives a pod. Only volumes already set up are rewritten (their directory
/// exists), so nothing is recreated under a pod being removed.
pub(crate) async fn resync<F>(node: Arc<Node>, pod_dir: PathBuf, current: F)
where
    F: Fn() -> Current + Send + 'static,
{
    loop {
        tokio::time::sleep(RESYNC_PERIOD).await;
        let Some(now) = current() else { return };
        let Some((pod, ips)) = now else { continue };
        let volumes: Vec<Volume> = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(is_file_volume)
            .filter(|v| safe_name(&v.name))
            .collect();
        if volumes.is_empty() {
            return; // a pod's volumes never change
        }
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let mut objects = Objects::new(node.client.as_ref(), &namespace);
        let facts = PodFacts::gather(&node, &pod, &ips).await;
        for v in &volumes {
            let dir = volumes_dir(&pod_dir).join(&v.name);
            if std::fs::read_link(dir.join("..data")).is_err() {
                continue;
            }
            match payload(&pod, v, &dir, &mut objects, &facts, false).await {
                Ok(p) => match write_atomic(&dir, &p, fs_group(&pod)) {
                    Ok(true) => tracing::debug!(volume = %v.name, "volume updated"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(volume = %v.name, error = %e, "volume update failed"),
                },
                // As the kubelet: a source that went away keeps the files.
                Err(e) => tracing::debug!(volume = %v.name, error = %e, "volume not re-synced"),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn files(entries: &[(&str, &str, u32)]) -> Payload {
        entries
            .iter()
            .map(|(p, c, m)| (p.to_string(), (c.as_bytes().to_vec(), *m)))
            .collect()
    }

    #[test]
    fn atomic_writer_swaps_data_and_keeps_links() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        assert!(write_atomic(
            dir,
            &files(&[("a", "1", 0o644), ("sub/b", "2", 0o400)]),
            None
        )
        .unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        assert!(std::fs::symlink_metadata(dir.join("a"))
            .unwrap()
            .file_type()
            .is_symlink());
        let mode = std::fs::metadata(dir.join("sub/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);
        let first = std::fs::read_link(dir.join("..data")).unwrap();
        // Same content: nothing written.
        assert!(!write_atomic(
            dir,
            &files(&[("a", "1", 0o644), ("sub/b", "2", 0o400)]),
            None
        )
        .unwrap());
        assert_eq!(std::fs::read_link(dir.join("..data")).unwrap(), first);
        // New content: a new data dir, the old one gone, stale links removed.
        assert!(write_atomic(dir, &files(&[("a", "3", 0o644)]), None).unwrap());
        let second = std::fs::read_link(dir.join("..data")).unwrap();
        assert_ne!(first, second);
        assert!(!dir.join(&first).exists());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "3");
        assert!(std::fs::symlink_metadata(dir.join("sub")).is_err());
        assert!(write_atomic(dir, &files(&[("../x", "1", 0o644)]), None).is_err());
        assert!(write_atomic(dir, &files(&[("..data", "1", 0o644)]), None).is_err());
    }

    #[test]
    fn an_fs_group_owns_the_files_and_reads_them() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        assert!(write_atomic(dir, &files(&[("k", "v", 0o400)]), Some(4321)).unwrap());
        let meta = std::fs::metadata(dir.join("k")).unwrap();
        assert_eq!(meta.gid(), 4321);
        assert_eq!(meta.permissions().mode() & 0o777, 0o440);
        // Unchanged content with the same group: nothing rewritten.
        assert!(!write_atomic(dir, &files(&[("k", "v", 0o400)]), Some(4321)).unwrap());
    }

    #[test]
    fn memory_volumes_are_sized_by_limit_and_pod() {
        let pod = |limits: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({
                "spec": {"containers": [
                    {"name": "a", "resources": {"limits": limits.clone()}},
                    {"name": "b", "resources": {"limits": limits}}
                ]}
            }))
            .unwrap()
        };
        let facts = PodFacts {
            memory_bytes: 1 << 30,
            ..Default::default()
        };
        let limited = pod(serde_json::json!({"memory": "64Mi"}));
        let open = pod(serde_json::json!({}));
        assert_eq!(memory_volume_size(&limited, &facts, None), 128 << 20);
        assert_eq!(
            memory_volume_size(&limited, &facts, Some(16 << 20)),
            16 << 20
        );
        assert_eq!(
            memory_volume_size(&limited, &facts, Some(4 << 30)),
            128 << 20
        );
        assert_eq!(memory_volume_size(&open, &facts, None), 1 << 30);
    }

    #[test]
    fn host_path_types() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("d");
        let f = tmp.path().join("f");
        let ds = d.to_str().unwrap();
        let fs = f.to_str().unwrap();
        assert!(check_host_path(ds, "Directory")
            .unwrap_err()
            .contains("is not a directory"));
        check_host_path(ds, "DirectoryOrCreate").unwrap();
        assert!(d.is_dir());
        check_host_path(ds, "Directory").unwrap();
        check_host_path(fs, "FileOrCreate").unwrap();
        assert!(f.is_file());
        assert!(check_host_path(ds, "File")
            .unwrap_err()
            .contains("is not a file"));
        assert!(check_host_path(fs, "Socket").is_err());
        assert!(check_host_path(fs, "Bogus").is_err());
    }

    #[test]
    fn sub_paths_stay_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("v");
        std::fs::create_dir(&base).unwrap();
        std::os::unix::fs::symlink("/etc", base.join("out")).unwrap();
        assert!(sub_path(&base, "new/dir", false).unwrap().is_dir());
        assert!(sub_path(&base, "out", false).is_err());
        assert!(sub_path(&base, "../v", false).is_err());
        assert!(sub_path(&base, "missing", true).is_err());
    }
}
