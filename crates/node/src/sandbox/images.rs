//! Container root filesystems from the node's image store (`skiff-image`),
//! pulled from registries as `imagePullPolicy` says, with the pod's
//! `imagePullSecrets`, and the store's garbage collection.
//!
//! Pulls: one at a time per image reference (a second pod wanting the same
//! image waits for the first pull and then finds the content there), any
//! number of different images at once. Registries on loopback addresses
//! (`127.0.0.0/8`, `::1`, `localhost`) are spoken to over plain HTTP by
//! default, as dockerd does; more plain-HTTP registries are a setting.
//!
//! Image GC ([`GcPolicy`]): every `period` (5 minutes), and after a pull
//! that leaves the image filesystem above the high-water mark, images that are
//! neither tagged nor used by a container of this node are removed with
//! their blobs and unpacked layers. When the image filesystem is more than
//! `high_percent` full, unused images, tagged or not, go too, least recently
//! used first, until it is estimated at `low_percent` (the kubelet's image
//! GC, with its 85%/80% defaults); images used in the last `min_age` stay.
//! In use are the images of the root filesystems this source mounted and
//! not yet released, any image whose layers are all stacked by a mounted
//! overlay (containers re-adopted after an agent restart), and images
//! pulled or handed out within `min_age` (not mounted yet). Images pulled
//! by digest only are untagged in the store, so the periodic pass removes
//! them once no container uses them (they are pulled again when needed).

use crate::lock;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use skiff_image::pull::{auth_from_docker_config, PullOptions, PullPolicy, RegistryAuth};
use skiff_image::{GcReport, Image, ImageStore};

use super::{ImageError, ImageRequest, ImageSource, PreparedImage};

/// When the node collects image garbage.
#[derive(Debug, Clone)]
pub struct GcPolicy {
    /// How often to look (untagged unused images always go).
    pub period: Duration,
    /// Above this much use of the image filesystem (percent), unused
    /// tagged images go too, least recently used first...
    pub high_percent: u8,
    /// ... until use is estimated at this (percent).
    pub low_percent: u8,
    /// Images used (or pulled) more recently than this are never removed.
    pub min_age: Duration,
}

impl Default for GcPolicy {
    fn default() -> Self {
        GcPolicy {
            period: Duration::from_secs(300),
            high_percent: 85,
            low_percent: 80,
            min_age: Duration::from_secs(120),
        }
    }
}

/// How the node's image source pulls and collects.
#[derive(Debug, Clone)]
pub struct ImageSettings {
    /// Registries (`host[:port]`) spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Loopback registries over plain HTTP too (default: yes).
    pub insecure_loopback: bool,
    pub gc: GcPolicy,
}

impl Default for ImageSettings {
    fn default() -> Self {
        ImageSettings {
            insecure_registries: Vec::new(),
            insecure_loopback: true,
            gc: GcPolicy::default(),
        }
    }
}

/// What one image collection did.
#[derive(Debug, Clone, Default)]
pub struct ImageGcReport {
    /// Image IDs kept because containers use them.
    pub in_use: Vec<String>,
    /// Tagged images removed to get under the high-water mark.
    pub evicted: Vec<String>,
    /// What the store's collection removed (untagged images, content).
    pub store: GcReport,
}

struct Inner {
    store: Arc<ImageStore>,
    settings: ImageSettings,
    /// One pull at a time per normalized reference.
    pulls: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Container directory -> image ID of the root filesystem mounted there.
    mounted: Mutex<HashMap<PathBuf, String>>,
    /// Image ID -> when a container last got it (or it was pulled).
    last_used: Mutex<HashMap<String, Instant>>,
    started: Instant,
    /// Held while a collection runs (one at a time).
    collecting: Mutex<()>,
}

/// The image store as the runtime's [`ImageSource`].
#[derive(Clone)]
pub struct StoreImages {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StoreImages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreImages")
            .field("store", &self.inner.store.root())
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl StoreImages {
    /// The default settings; inside a Tokio runtime the periodic image GC
    /// starts too (it ends when the last clone is dropped).
    pub fn new(store: Arc<ImageStore>) -> StoreImages {
        StoreImages::with_settings(store, ImageSettings::default())
    }

    pub fn with_settings(store: Arc<ImageStore>, settings: ImageSettings) -> StoreImages {
        let images = StoreImages {
            inner: Arc::new(Inner {
                store,
                settings,
                pulls: Mutex::new(HashMap::new()),
                mounted: Mutex::new(HashMap::new()),
                last_used: Mutex::new(HashMap::new()),
                started: Instant::now(),
                collecting: Mutex::new(()),
            }),
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(gc_loop(Arc::downgrade(&images.inner)));
        }
        images
    }

    /// The IDs of the images containers use now.
    pub async fn in_use(&self) -> HashSet<String> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || in_use(&inner))
            .await
            .unwrap_or_default()
    }

    /// One image collection now, by the policy in the settings.
    pub async fn collect_garbage(&self) -> Result<ImageGcReport, skiff_image::Error> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || collect(&inner))
            .await
            .map_err(|e| skiff_image::Error::Malformed(format!("image gc task: {e}")))?
    }

    /// After a pull: collect now (in the background) if the image
    /// filesystem is above the high-water mark.
    fn collect_if_full(&self) {
        let high = f64::from(self.inner.settings.gc.high_percent);
        let full = fs_usage(self.inner.store.root()).is_some_and(|(p, _)| p > high);
        if full {
            let inner = self.inner.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = collect(&inner) {
                    tracing::warn!(error = %e, "image gc failed");
                }
            });
        }
    }

    fn options_for(&self, reference: &skiff_image::reference::Reference) -> PullOptions {
        let mut insecure = self.inner.settings.insecure_registries.clone();
        if self.inner.settings.insecure_loopback && is_loopback_registry(reference.registry()) {
            insecure.push(reference.registry().to_string());
        }
        PullOptions {
            insecure_registries: insecure,
        }
    }

    fn pull_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.inner.pulls)
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    async fn resolve(&self, image: &str) -> Result<Option<Image>, skiff_image::Error> {
        let store = self.inner.store.clone();
        let image = image.to_string();
        tokio::task::spawn_blocking(move || store.resolve(&image))
            .await
            .map_err(|e| skiff_image::Error::Malformed(format!("image store task: {e}")))?
    }

    /// The image, from the store or the registry, with the kubelet's events.
    async fn obtain(&self, req: &ImageRequest<'_>) -> Result<Image, ImageError> {
        let image = req.image;
        let events = req.events;
        let Ok(reference) = skiff_image::reference::parse(image) else {
            let message = format!("Failed to apply default image tag {image:?}: couldn't parse image name {image:?}: invalid reference format");
            events(true, "InspectFailed", &message);
            return Err(ImageError {
                reason: "InvalidImageName".into(),
                message,
            });
        };
        let policy = PullPolicy::parse(req.pull_policy, image);
        let store_err = |e: skiff_image::Error| ImageError {
            reason: "ErrImagePull".into(),
            message: format!("reading the image store: {e}"),
        };
        if policy != PullPolicy::Always {
            if let Some(found) = self.resolve(image).await.map_err(store_err)? {
                lock(&self.inner.last_used).insert(found.id.clone(), Instant::now());
                events(
                    false,
                    "Pulled",
                    &format!("Container image {image:?} already present on machine"),
                );
                return Ok(found);
            }
            if policy == PullPolicy::Never {
                let message =
                    format!("Container image {image:?} is not present with pull policy of Never");
                events(true, "ErrImageNeverPull", &message);
                return Err(ImageError {
                    reason: "ErrImageNeverPull".into(),
                    message,
                });
            }
        }
        let auths = credentials(req, &reference).await;
        let opts = self.options_for(&reference);
        let asked = Instant::now();
        let pull_lock = self.pull_lock(&reference.whole());
        let _pulling = pull_lock.lock().await;
        if policy == PullPolicy::IfNotPresent {
            // Pulled by another container while this one waited.
            if let Some(found) = self.resolve(image).await.map_err(store_err)? {
                lock(&self.inner.last_used).insert(found.id.clone(), Instant::now());
                events(
                    false,
                    "Pulled",
                    &format!("Container image {image:?} already present on machine"),
                );
                return Ok(found);
            }
        }
        events(false, "Pulling", &format!("Pulling image {image:?}"));
        let began = Instant::now();
        let mut last_err = None;
        for auth in &auths {
            match self.inner.store.ensure(image, policy, auth, &opts).await {
                Ok(found) => {
                    events(
                        false,
                        "Pulled",
                        &format!(
                            "Successfully pulled image {image:?} in {:.3?} ({:.3?} including waiting). Image size: {} bytes.",
                            began.elapsed(),
                            asked.elapsed(),
                            found.size
                        ),
                    );
                    lock(&self.inner.last_used).insert(found.id.clone(), Instant::now());
                    self.collect_if_full();
                    return Ok(found);
                }
                Err(e) => last_err = Some(e),
            }
        }
        let reason = last_err.map_or_else(|| "no credentials".to_string(), |e| e.to_string());
        let message = format!("Failed to pull image {image:?}: {reason}");
        events(true, "Failed", &message);
        Err(ImageError {
            reason: "ErrImagePull".into(),
            message,
        })
    }
}

/// `127.0.0.1:5000`, `localhost`, `[::1]:5000`.
fn is_loopback_registry(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.split(':').next().unwrap_or(registry),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Credentials to try, in order: those the pod's imagePullSecrets hold for
/// the image's registry, else anonymous. Secrets that cannot be read are
/// reported (`FailedToRetrieveImagePullSecret`) and skipped, as the kubelet
/// does.
async fn credentials(
    req: &ImageRequest<'_>,
    reference: &skiff_image::reference::Reference,
) -> Vec<RegistryAuth> {
    let mut out = Vec::new();
    let (Some(pod), Some(client)) = (req.pod, req.client) else {
        return vec![RegistryAuth::Anonymous];
    };
    let names: Vec<String> = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.as_ref())
        .map(|l| l.iter().map(|r| r.name.clone()).collect())
        .unwrap_or_default();
    if names.is_empty() {
        return vec![RegistryAuth::Anonymous];
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
    let mut missing = Vec::new();
    for name in names.iter().filter(|n| !n.is_empty()) {
        let secret = match api.get_opt(name).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                missing.push(name.clone());
                continue;
            }
            Err(e) => {
                tracing::warn!(secret = %name, error = %e, "reading an image pull secret failed");
                missing.push(name.clone());
                continue;
            }
        };
        for config in docker_configs(&secret) {
            match auth_from_docker_config(&config, &reference.whole()) {
                Ok(RegistryAuth::Anonymous) => {}
                Ok(auth) => out.push(auth),
                Err(e) => {
                    tracing::warn!(secret = %name, error = %e, "an image pull secret does not parse")
                }
            }
        }
    }
    if !missing.is_empty() {
        (req.events)(
            true,
            "FailedToRetrieveImagePullSecret",
            &format!(
                "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                missing.join(", ")
            ),
        );
    }
    if out.is_empty() {
        out.push(RegistryAuth::Anonymous);
    }
    out
}

/// The docker configs (`{"auths": ...}`) a secret holds: the
/// `.dockerconfigjson` of `kubernetes.io/dockerconfigjson` secrets and the
/// older `.dockercfg` (the `auths` map alone) of `kubernetes.io/dockercfg`.
fn docker_configs(secret: &Secret) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let Some(data) = secret.data.as_ref() else {
        return out;
    };
    if let Some(b) = data.get(".dockerconfigjson") {
        out.push(b.0.clone());
    }
    if let Some(b) = data.get(".dockercfg") {
        if let Ok(auths) = serde_json::from_slice::<serde_json::Value>(&b.0) {
            if let Ok(v) = serde_json::to_vec(&serde_json::json!({ "auths": auths })) {
                out.push(v);
            }
        }
    }
    out
}

/// `imageID` for the status: the repo digest of the image's repository
/// (`127.0.0.1:5000/x@sha256:…`) where there is one, else the image ID.
fn image_id_of(found: &Image, image: &str) -> String {
    let repo = skiff_image::reference::parse(image)
        .map(|r| skiff_image::reference::repository(&r))
        .unwrap_or_default();
    found
        .repo_digests
        .iter()
        .find(|d| d.split('@').next() == Some(repo.as_str()))
        .or_else(|| found.repo_digests.first())
        .cloned()
        .unwrap_or_else(|| found.id.clone())
}

fn in_use(inner: &Inner) -> HashSet<String> {
    let mut ids: HashSet<String> = lock(&inner.mounted).values().cloned().collect();
    // Just pulled or found for a container that is not mounted yet.
    let min_age = inner.settings.gc.min_age;
    ids.extend(
        lock(&inner.last_used)
            .iter()
            .filter(|(_, t)| t.elapsed() < min_age)
            .map(|(id, _)| id.clone()),
    );
    let mut layers = inner.store.mounted_layers();
    let (leased_images, leased_layers) = inner.store.leased();
    ids.extend(leased_images);
    layers.extend(leased_layers);
    if let Ok(images) = inner.store.list() {
        for img in images {
            let all_mounted = !img.diff_ids.is_empty()
                && img
                    .diff_ids
                    .iter()
                    .all(|d| layers.contains(d.trim_start_matches("sha256:")));
            if all_mounted {
                ids.insert(img.id);
            }
        }
    }
    ids
}

/// Percent of the filesystem holding `path` in use, and bytes of its size.
fn fs_usage(path: &Path) -> Option<(f64, u64)> {
    let st = rustix::fs::statvfs(path).ok()?;
    if st.f_blocks == 0 {
        return None;
    }
    let used = st.f_blocks.saturating_sub(st.f_bfree) as f64;
    Some((
        used * 100.0 / st.f_blocks as f64,
        st.f_blocks.saturating_mul(st.f_frsize),
    ))
}

fn collect(inner: &Inner) -> Result<ImageGcReport, skiff_image::Error> {
    let _one = lock(&inner.collecting);
    let policy = &inner.settings.gc;
    let in_use = in_use(inner);
    let mut report = ImageGcReport {
        in_use: in_use.iter().cloned().collect(),
        ..Default::default()
    };
    report.in_use.sort();
    if let Some((percent, size)) = fs_usage(inner.store.root()) {
        if percent > f64::from(policy.high_percent) {
            // Bytes to free to get down to the low mark (estimated from the
            // images' unpacked sizes; shared layers make it generous).
            let excess = (percent - f64::from(policy.low_percent)).max(0.0) / 100.0;
            let mut to_free = (excess * size as f64) as u64;
            let last_used = lock(&inner.last_used).clone();
            let mut candidates: Vec<(Instant, Image)> = inner
                .store
                .list()?
                .into_iter()
                .filter(|img| !in_use.contains(&img.id))
                .map(|img| {
                    let t = last_used.get(&img.id).copied().unwrap_or(inner.started);
                    (t, img)
                })
                .filter(|(t, _)| t.elapsed() >= policy.min_age)
                .collect();
            candidates.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
            for (_, img) in candidates {
                if to_free == 0 {
                    break;
                }
                inner.store.remove(&img.id)?;
                tracing::info!(image = %img.id, references = ?img.references, "image gc: removed an unused image (disk above the high-water mark)");
                to_free = to_free.saturating_sub(img.size.max(1));
                lock(&inner.last_used).remove(&img.id);
                report.evicted.push(img.id);
            }
        }
    }
    report.store = inner.store.gc(&in_use)?;
    if !report.store.images_removed.is_empty() || report.store.bytes_freed > 0 {
        tracing::info!(
            images = report.store.images_removed.len(),
            bytes = report.store.bytes_freed,
            "image gc"
        );
    }
    Ok(report)
}

async fn gc_loop(inner: Weak<Inner>) {
    let period = match inner.upgrade() {
        Some(i) => i.settings.gc.period,
        None => return,
    };
    loop {
        tokio::time::sleep(period).await;
        let Some(i) = inner.upgrade() else { return };
        let done = tokio::task::spawn_blocking(move || collect(&i)).await;
        match done {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "image gc failed"),
            Err(e) => tracing::warn!(error = %e, "image gc task failed"),
        }
    }
}

#[async_trait::async_trait]
impl ImageSource for StoreImages {
    async fn prepare(&self, request: ImageRequest<'_>) -> Result<PreparedImage, ImageError> {
        let found = self.obtain(&request).await?;
        let image_id = image_id_of(&found, request.image);
        let dir = request.dir.to_path_buf();
        let id = found.id.clone();
        let config = found.config.clone();
        let store = self.inner.store.clone();
        let mounted = tokio::task::spawn_blocking(move || {
            // The lease first: the overlay is invisible to the host's mountinfo.
            store.lease(&found, &dir)?;
            skiff_image::mount::plan_rootfs(&found, &dir)
        })
        .await;
        let rootfs = match mounted {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                return Err(ImageError {
                    reason: "CreateContainerError".into(),
                    message: format!("mounting the root filesystem: {e}"),
                })
            }
            Err(e) => {
                return Err(ImageError {
                    reason: "CreateContainerError".into(),
                    message: format!("mounting the root filesystem: {e}"),
                })
            }
        };
        lock(&self.inner.mounted).insert(request.dir.to_path_buf(), id.clone());
        lock(&self.inner.last_used).insert(id, Instant::now());
        Ok(PreparedImage {
            rootfs: rootfs.path,
            overlay: rootfs.overlay,
            layers: rootfs.layers,
            image_id,
            config: Some(config),
        })
    }

    async fn release(&self, dir: &Path) {
        let owned = dir.to_path_buf();
        let store = self.inner.store.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = skiff_image::mount::unmount_rootfs(&owned) {
                tracing::warn!(dir = %owned.display(), error = %e, "unmounting a container root filesystem failed");
            }
            if let Err(e) = store.unlease(&owned) {
                tracing::warn!(dir = %owned.display(), error = %e, "ending an image lease failed");
            }
        })
        .await;
        if let Some(id) = lock(&self.inner.mounted).remove(dir) {
            lock(&self.inner.last_used).insert(id, Instant::now());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use skiff_image::build::{ImageBuilder, Layer};

    #[test]
    fn loopback_registries() {
        assert!(is_loopback_registry("127.0.0.1:5000"));
        assert!(is_loopback_registry("127.3.4.5"));
        assert!(is_loopback_registry("localhost:443"));
        assert!(is_loopback_registry("[::1]:5000"));
        assert!(!is_loopback_registry("docker.io"));
        assert!(!is_loopback_registry("10.0.0.1:5000"));
        assert!(!is_loopback_registry("localhost.example.com"));
    }

    #[test]
    fn secrets_of_both_docker_types() {
        let mut s = Secret::default();
        let cfg = br#"{"auths":{"127.0.0.1:5000":{"username":"a","password":"b"}}}"#;
        let old = br#"{"127.0.0.1:6000":{"auth":"Yzpk"}}"#;
        s.data = Some(
            [
                (
                    ".dockerconfigjson".to_string(),
                    k8s_openapi::ByteString(cfg.to_vec()),
                ),
                (
                    ".dockercfg".to_string(),
                    k8s_openapi::ByteString(old.to_vec()),
                ),
            ]
            .into(),
        );
        let configs = docker_configs(&s);
        assert_eq!(configs.len(), 2);
        let a = auth_from_docker_config(&configs[0], "127.0.0.1:5000/x:1").unwrap();
        assert_eq!(a, RegistryAuth::Basic("a".into(), "b".into()));
        let b = auth_from_docker_config(&configs[1], "127.0.0.1:6000/x:1").unwrap();
        assert_eq!(b, RegistryAuth::Basic("c".into(), "d".into()));
    }

    fn tmpdir(test: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("skiff-images-{test}-{}-", std::process::id()))
            .tempdir_in("/tmp")
            .unwrap()
    }

    fn import(store: &ImageStore, dir: &Path, name: &str, content: &str) -> String {
        let archive = dir.join(format!("{content}.tar"));
        let built = ImageBuilder::new()
            .layer(Layer::new().file(&format!("/{content}"), content, 0o644))
            .write_oci_archive(&archive, Some(name))
            .unwrap();
        store.import(&archive, None).unwrap();
        built.config_digest.to_string()
    }

    /// Whether the prepared image has `path` (the overlay itself is mounted
    /// only inside containers).
    fn readable(p: &PreparedImage, path: &str) -> bool {
        skiff_image::layers::read_file(&p.layers, path, 1 << 10)
            .unwrap()
            .is_some()
    }

    /// Unmounts on drop, so a failed assertion leaves no mount behind.
    struct Released(PathBuf);

    impl Drop for Released {
        fn drop(&mut self) {
            let _ = skiff_image::mount::unmount_rootfs(&self.0);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gc_keeps_what_containers_use_and_evicts_lru_when_full() {
        let tmp = tmpdir("gc");
        let store = Arc::new(ImageStore::open(tmp.path().join("store")).unwrap());
        let used = import(&store, tmp.path(), "gc/used:1", "used");
        let tagged = import(&store, tmp.path(), "gc/tagged:1", "tagged");
        let untagged = import(&store, tmp.path(), "gc/untagged:1", "untagged");
        store.remove("gc/untagged:1").unwrap();

        // Far from full: only the untagged image goes.
        let images = StoreImages::with_settings(store.clone(), ImageSettings::default());
        let dir = tmp.path().join("c1");
        std::fs::create_dir_all(&dir).unwrap();
        let _guard = Released(dir.clone());
        let no_events = |_: bool, _: &str, _: &str| {};
        let prepared = images
            .prepare(ImageRequest {
                image: "gc/used:1",
                pull_policy: "IfNotPresent",
                pod: None,
                client: None,
                dir: &dir,
                events: &no_events,
            })
            .await
            .unwrap();
        assert!(readable(&prepared, "/used"));
        assert!(images.in_use().await.contains(&used));
        let r = images.collect_garbage().await.unwrap();
        assert_eq!(r.store.images_removed, vec![untagged.clone()]);
        assert!(r.evicted.is_empty());
        assert!(store.resolve(&tagged).unwrap().is_some());

        // "Full" (a high-water mark of 0%): the unused tagged image goes,
        // the one a container uses stays.
        let settings = ImageSettings {
            gc: GcPolicy {
                high_percent: 0,
                low_percent: 0,
                min_age: Duration::ZERO,
                ..GcPolicy::default()
            },
            ..ImageSettings::default()
        };
        let full = StoreImages::with_settings(store.clone(), settings);
        let r = full.collect_garbage().await.unwrap();
        assert_eq!(r.evicted, vec![tagged.clone()]);
        assert!(r.in_use.contains(&used), "{r:?}");
        assert!(store.resolve(&tagged).unwrap().is_none());
        assert!(store.resolve("gc/used:1").unwrap().is_some());
        assert!(readable(&prepared, "/used"));

        // Released, the last image can go as well.
        images.release(&dir).await;
        let r = full.collect_garbage().await.unwrap();
        assert_eq!(r.evicted, vec![used]);
        assert!(store.list().unwrap().is_empty());
    }
}
