//! The store on disk and its query API.
//!
//! ```text
//! <root>/
//!   lock                 flock: shared while adding content, exclusive for gc
//!   index.lock           flock: exclusive around read-modify-write of images.json
//!   images.json          images (by config digest) and references (name -> image)
//!   blobs/sha256/<hex>   manifests, configs and layer blobs, verified on write
//!   layers/<hex>/fs      a layer unpacked once (keyed by its diff ID), an overlay lowerdir
//!   layers/<hex>/meta.json
//!   tmp/                 files and layers being written; renamed into place when complete
//! ```
//!
//! Writers (import, remove) hold the shared `lock` and take `index.lock`
//! only to update `images.json`; gc holds `lock` exclusively, so it never
//! sees a half-imported image. Readers take no lock: `images.json` is
//! replaced atomically. The locks are `flock`s on freshly opened files, so
//! they order threads of one process as well as separate processes (a
//! `skiff image import` next to a running server).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::image::ImageConfiguration;
use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, IoContext, Result};
use crate::reference;
use crate::unpack;

const INDEX_FILE: &str = "images.json";

/// An image in the store, ready for the runtime.
#[derive(Debug, Clone)]
pub struct Image {
    /// The image ID: the digest of its config, `sha256:<hex>`.
    pub id: String,
    /// Normalized tag references pointing at it (`docker.io/library/busybox:latest`).
    pub references: Vec<String>,
    /// `repository@sha256:<manifest digest>` forms it is known by.
    pub repo_digests: Vec<String>,
    /// The image configuration (entrypoint, cmd, env, user, ...).
    pub config: ImageConfiguration,
    /// The diff IDs of its layers, bottom first.
    pub diff_ids: Vec<String>,
    /// The unpacked layer directories, bottom first (overlay lowerdirs).
    pub layers: Vec<PathBuf>,
    /// Bytes of file content in its unpacked layers.
    pub size: u64,
}

/// What a garbage collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// IDs of untagged, unused images whose records were dropped.
    pub images_removed: Vec<String>,
    pub blobs_removed: usize,
    pub layers_removed: usize,
    /// Bytes of blobs and layer files deleted.
    pub bytes_freed: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct IndexDoc {
    #[serde(default)]
    pub images: BTreeMap<String, ImageRecord>,
    /// Normalized tag reference -> image ID.
    #[serde(default)]
    pub refs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    /// Manifest digests this image was imported from.
    #[serde(default)]
    pub manifests: BTreeSet<String>,
    #[serde(default)]
    pub repo_digests: BTreeSet<String>,
    pub layers: Vec<LayerRecord>,
    /// Unix seconds of the first import.
    #[serde(default)]
    pub created: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LayerRecord {
    /// The layer blob as stored (possibly compressed).
    pub blob: String,
    pub diff_id: String,
    pub size: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct LayerMeta {
    diff_id: String,
    size: u64,
}

/// A held flock; released when dropped.
pub(crate) struct Lock {
    _file: fs::File,
}

/// A content-addressed OCI image store rooted at one directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// Open (creating if needed) the store at `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        for sub in ["blobs/sha256", "layers", "tmp"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).ctx("creating", &p)?;
        }
        let root = root.canonicalize().ctx("resolving", &root)?;
        Ok(Self { root })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// The unpacked directory of the layer with this diff ID.
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex()).join("fs")
    }

    pub(crate) fn tmp_path(&self, what: &str) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("{what}-{}", uuid::Uuid::new_v4().simple()))
    }

    pub(crate) fn lock(&self, name: &str, exclusive: bool) -> Result<Lock> {
        let path = self.root.join(name);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .ctx("opening lock", &path)?;
        let op = if exclusive {
            FlockOperation::LockExclusive
        } else {
            FlockOperation::LockShared
        };
        rustix::fs::flock(file.as_fd(), op).ctx("locking", &path)?;
        Ok(Lock { _file: file })
    }

    /// Hold this while adding content that is not referenced yet (gc waits).
    pub(crate) fn content_lock(&self) -> Result<Lock> {
        self.lock("lock", false)
    }

    /// Store a blob from a reader. With `expected`, the content must hash to
    /// it; without, the computed digest names the blob. Written to a temp
    /// file, synced, then renamed into place.
    pub(crate) fn put_blob(
        &self,
        expected: Option<&Digest>,
        mut reader: impl Read,
        what: &str,
    ) -> Result<(Digest, u64)> {
        if let Some(d) = expected {
            let p = self.blob_path(d);
            if let Ok(m) = fs::metadata(&p) {
                // Already stored (verified when it was written): the caller
                // skips the unread bytes (tar does so by itself).
                return Ok((d.clone(), m.len()));
            }
        }
        let tmp = self.tmp_path("blob");
        let result = (|| {
            let f = fs::File::create(&tmp).ctx("creating", &tmp)?;
            let mut w = HashingWriter::new(io::BufWriter::new(f));
            io::copy(&mut reader, &mut w).ctx("writing", &tmp)?;
            let (buf, digest, n) = w.finish();
            let f = buf
                .into_inner()
                .map_err(|e| e.into_error())
                .ctx("writing", &tmp)?;
            if let Some(want) = expected {
                if *want != digest {
                    return Err(Error::DigestMismatch {
                        what: what.to_string(),
                        expected: want.to_string(),
                        actual: digest.to_string(),
                    });
                }
            }
            f.sync_all().ctx("syncing", &tmp)?;
            let dst = self.blob_path(&digest);
            fs::rename(&tmp, &dst).ctx("renaming into", &dst)?;
            Ok((digest, n))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Move a downloaded file into the blob store if it hashes to
    /// `expected` (the file is removed either way).
    pub(crate) fn adopt_blob(&self, expected: &Digest, file: &Path) -> Result<()> {
        let result = (|| {
            let f = fs::File::open(file).ctx("opening", file)?;
            let (actual, _) = crate::digest::HashingReader::new(f)
                .finish()
                .ctx("reading", file)?;
            if actual != *expected {
                return Err(Error::DigestMismatch {
                    what: format!("downloaded blob {expected}"),
                    expected: expected.to_string(),
                    actual: actual.to_string(),
                });
            }
            fs::File::open(file)
                .and_then(|f| f.sync_all())
                .ctx("syncing", file)?;
            let dst = self.blob_path(expected);
            fs::rename(file, &dst).ctx("renaming into", &dst)
        })();
        if result.is_err() {
            let _ = fs::remove_file(file);
        }
        result
    }

    /// Read a whole (small) blob.
    pub(crate) fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(digest);
        fs::read(&p).ctx("reading blob", &p)
    }

    /// Unpack a layer blob once: if the layer with this diff ID is already
    /// unpacked, just report its size. Otherwise unpack into a temp dir,
    /// check the uncompressed content hashes to `diff_id`, sync, and rename
    /// into place (losing a race to another unpacker is fine).
    pub(crate) fn ensure_layer(&self, blob: &Digest, diff_id: &Digest) -> Result<u64> {
        let final_dir = self.root.join("layers").join(diff_id.hex());
        if let Some(size) = read_layer_meta(&final_dir) {
            return Ok(size);
        }
        let tmp = self.tmp_path("layer");
        let result = (|| {
            let fs_dir = tmp.join("fs");
            fs::create_dir_all(&fs_dir).ctx("creating", &fs_dir)?;
            let stream = unpack::decompressed(&self.blob_path(blob))?;
            let unpacked = unpack::unpack_layer(stream, &fs_dir, &diff_id.to_string())?;
            if unpacked.diff_id != *diff_id {
                return Err(Error::DigestMismatch {
                    what: format!("uncompressed layer {blob}"),
                    expected: diff_id.to_string(),
                    actual: unpacked.diff_id.to_string(),
                });
            }
            let meta = serde_json::to_vec(&LayerMeta {
                diff_id: diff_id.to_string(),
                size: unpacked.size,
            })
            .map_err(|source| Error::Json {
                what: "layer metadata".into(),
                source,
            })?;
            let meta_path = tmp.join("meta.json");
            fs::write(&meta_path, meta).ctx("writing", &meta_path)?;
            // One syncfs makes every unpacked file durable before the rename
            // publishes the layer.
            let dir = fs::File::open(&tmp).ctx("opening", &tmp)?;
            rustix::fs::syncfs(dir.as_fd()).ctx("syncing", &tmp)?;
            match fs::rename(&tmp, &final_dir) {
                Ok(()) => Ok(unpacked.size),
                Err(e) => match read_layer_meta(&final_dir) {
                    Some(size) => {
                        let _ = fs::remove_dir_all(&tmp);
                        Ok(size) // someone else unpacked it meanwhile
                    }
                    None => Err(e).ctx("renaming into", &final_dir),
                },
            }
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    pub(crate) fn load_index(&self) -> Result<IndexDoc> {
        let p = self.root.join(INDEX_FILE);
        match fs::read(&p) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| Error::Json {
                what: format!("reading {}", p.display()),
                source,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(IndexDoc::default()),
            Err(e) => Err(e).ctx("reading", &p),
        }
    }

    fn save_index(&self, doc: &IndexDoc) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(doc).map_err(|source| Error::Json {
            what: "writing the image index".into(),
            source,
        })?;
        let dst = self.root.join(INDEX_FILE);
        let tmp = self.tmp_path("index");
        let result = (|| {
            let mut f = fs::File::create(&tmp).ctx("creating", &tmp)?;
            f.write_all(&bytes).ctx("writing", &tmp)?;
            f.sync_all().ctx("syncing", &tmp)?;
            fs::rename(&tmp, &dst).ctx("renaming into", &dst)?;
            fs::File::open(&self.root)
                .and_then(|d| d.sync_all())
                .ctx("syncing", &self.root)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Read-modify-write `images.json` under the index lock.
    pub(crate) fn update_index<T>(&self, f: impl FnOnce(&mut IndexDoc) -> Result<T>) -> Result<T> {
        let _guard = self.lock("index.lock", true)?;
        let mut doc = self.load_index()?;
        let out = f(&mut doc)?;
        self.save_index(&doc)?;
        Ok(out)
    }

    /// Record an imported image and point `names` at it. Tags move from
    /// whatever image they pointed at before, as with `docker load`.
    pub(crate) fn commit_image(
        &self,
        id: &Digest,
        manifests: &[Digest],
        names: &[reference::Reference],
        layers: Vec<LayerRecord>,
    ) -> Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.update_index(|doc| {
            let rec = doc
                .images
                .entry(id.to_string())
                .or_insert_with(|| ImageRecord {
                    created: now,
                    ..Default::default()
                });
            rec.layers = layers;
            for m in manifests {
                rec.manifests.insert(m.to_string());
                for n in names {
                    rec.repo_digests
                        .insert(format!("{}@{m}", reference::repository(n)));
                }
            }
            for n in names {
                if let Some(tag) = reference::tagged(n) {
                    doc.refs.insert(tag, id.to_string());
                }
            }
            Ok(())
        })
    }

    /// Find the image a reference names: a tag (`busybox`, normalized), a
    /// `name@sha256:<manifest>` digest reference, an image ID
    /// (`sha256:<hex>`) or an unambiguous ID prefix of 12+ hex characters.
    pub fn resolve(&self, reference: &str) -> Result<Option<Image>> {
        let doc = self.load_index()?;
        match find_id(&doc, reference)? {
            Some(id) => self.image_from(&doc, &id).map(Some),
            None => Ok(None),
        }
    }

    /// Every image in the store, by ID.
    pub fn list(&self) -> Result<Vec<Image>> {
        let doc = self.load_index()?;
        doc.images
            .keys()
            .map(|id| self.image_from(&doc, id))
            .collect()
    }

    fn image_from(&self, doc: &IndexDoc, id: &str) -> Result<Image> {
        let rec = doc
            .images
            .get(id)
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        let config_digest = Digest::parse(id)?;
        let bytes = self.read_blob(&config_digest)?;
        let config: ImageConfiguration =
            serde_json::from_slice(&bytes).map_err(|source| Error::Json {
                what: format!("image config {id}"),
                source,
            })?;
        let mut layers = Vec::with_capacity(rec.layers.len());
        for l in &rec.layers {
            layers.push(self.layer_dir(&Digest::parse(&l.diff_id)?));
        }
        Ok(Image {
            id: id.to_string(),
            references: doc
                .refs
                .iter()
                .filter(|(_, v)| v.as_str() == id)
                .map(|(k, _)| k.clone())
                .collect(),
            repo_digests: rec.repo_digests.iter().cloned().collect(),
            config,
            diff_ids: rec.layers.iter().map(|l| l.diff_id.clone()).collect(),
            layers,
            size: rec.layers.iter().map(|l| l.size).sum(),
        })
    }

    /// Diff IDs (hex) of the layers that mounted overlays on this host
    /// stack, from `/proc/self/mountinfo`: what running containers use.
    pub fn mounted_layers(&self) -> HashSet<String> {
        mounted_layers(&self.root.join("layers"))
    }

    /// Record that the container whose directory is `container_dir` uses
    /// `image`. Its overlay is mounted by the OCI runtime inside the
    /// container's own mount namespace, where this host's mountinfo does not
    /// show it, so [`gc`](Self::gc) keeps the image and its layers while the
    /// lease exists and `container_dir` does; [`unlease`](Self::unlease)
    /// ends it.
    pub fn lease(&self, image: &Image, container_dir: &Path) -> Result<()> {
        let _shared = self.lock("lock", false)?; // not while gc runs
        let dir = self.root.join("leases");
        fs::create_dir_all(&dir).ctx("creating", &dir)?;
        let lease = Lease {
            dir: container_dir.to_path_buf(),
            image: image.id.clone(),
            layers: image.diff_ids.clone(),
        };
        let bytes = serde_json::to_vec(&lease)
            .map_err(|e| Error::Malformed(format!("encoding a lease: {e}")))?;
        let path = lease_path(&dir, container_dir);
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, bytes).ctx("writing", &tmp)?;
        fs::rename(&tmp, &path).ctx("renaming", &tmp)?;
        Ok(())
    }

    /// End the lease of `container_dir` (fine when there is none).
    pub fn unlease(&self, container_dir: &Path) -> Result<()> {
        let path = lease_path(&self.root.join("leases"), container_dir);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).ctx("removing", &path),
            _ => Ok(()),
        }
    }

    /// Image IDs and layer diff IDs (hex) held by leases whose container
    /// directory still exists; the others are stale and removed.
    pub fn leased(&self) -> (HashSet<String>, HashSet<String>) {
        let (mut images, mut layers) = (HashSet::new(), HashSet::new());
        let dir = self.root.join("leases");
        let Ok(entries) = fs::read_dir(&dir) else {
            return (images, layers);
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                continue;
            }
            let Some(lease) = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Lease>(&b).ok())
            else {
                let _ = fs::remove_file(&path);
                continue;
            };
            if !lease.dir.exists() {
                let _ = fs::remove_file(&path);
                continue;
            }
            images.insert(lease.image);
            layers.extend(
                lease
                    .layers
                    .iter()
                    .map(|d| d.trim_start_matches("sha256:").to_string()),
            );
        }
        (images, layers)
    }

    /// Untag: drop the reference. Given an image ID (or a digest
    /// reference), drop every tag of that image and the image record.
    /// Content goes at the next [`gc`](Self::gc). Returns what was removed.
    pub fn remove(&self, reference: &str) -> Result<Vec<String>> {
        let _content = self.content_lock()?;
        self.update_index(|doc| {
            let id =
                find_id(doc, reference)?.ok_or_else(|| Error::NotFound(reference.to_string()))?;
            let by_tag = !looks_like_id(reference)
                && reference::parse(reference)
                    .map(|r| r.digest().is_none())
                    .unwrap_or(false);
            let mut removed = Vec::new();
            if by_tag {
                let tag = reference::normalize(reference)?;
                doc.refs.remove(&tag);
                removed.push(tag);
            } else {
                doc.refs.retain(|k, v| {
                    let hit = *v == id;
                    if hit {
                        removed.push(k.clone());
                    }
                    !hit
                });
                doc.images.remove(&id);
                removed.push(id);
            }
            Ok(removed)
        })
    }

    /// Remove untagged images not in `in_use` (image IDs), then every blob
    /// and unpacked layer no remaining image references, and leftovers of
    /// interrupted writes. Layers that a mounted overlay on this host uses
    /// are kept whatever the index says.
    pub fn gc(&self, in_use: &HashSet<String>) -> Result<GcReport> {
        let _excl = self.lock("lock", true)?;
        let mut report = GcReport::default();
        let (leased_images, leased_layers) = self.leased();
        let doc = self.update_index(|doc| {
            let tagged: HashSet<String> = doc.refs.values().cloned().collect();
            let drop: Vec<String> = doc
                .images
                .keys()
                .filter(|id| {
                    !tagged.contains(*id) && !in_use.contains(*id) && !leased_images.contains(*id)
                })
                .cloned()
                .collect();
            for id in &drop {
                doc.images.remove(id);
            }
            report.images_removed = drop;
            Ok(doc.clone())
        })?;

        let mut blobs = HashSet::new();
        let mut layers: HashSet<String> = mounted_layers(&self.root.join("layers"));
        layers.extend(leased_layers);
        for (id, rec) in &doc.images {
            blobs.insert(id.trim_start_matches("sha256:").to_string());
            for m in &rec.manifests {
                blobs.insert(m.trim_start_matches("sha256:").to_string());
            }
            for l in &rec.layers {
                blobs.insert(l.blob.trim_start_matches("sha256:").to_string());
                layers.insert(l.diff_id.trim_start_matches("sha256:").to_string());
            }
        }

        let blob_dir = self.root.join("blobs/sha256");
        for entry in fs::read_dir(&blob_dir).ctx("listing", &blob_dir)? {
            let entry = entry.ctx("listing", &blob_dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !blobs.contains(&name) {
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(entry.path()).ctx("removing", entry.path())?;
                report.blobs_removed += 1;
                report.bytes_freed += len;
            }
        }
        let layer_dir = self.root.join("layers");
        for entry in fs::read_dir(&layer_dir).ctx("listing", &layer_dir)? {
            let entry = entry.ctx("listing", &layer_dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !layers.contains(&name) {
                // Move it out of layers/ first: a half-deleted layer must
                // never look unpacked.
                let trash = self.tmp_path("trash");
                fs::rename(entry.path(), &trash).ctx("moving", entry.path())?;
                report.bytes_freed += disk_usage(&trash);
                report.layers_removed += 1;
            }
        }
        // Nothing is being written while we hold the lock exclusively.
        let tmp = self.root.join("tmp");
        for entry in fs::read_dir(&tmp).ctx("listing", &tmp)? {
            let entry = entry.ctx("listing", &tmp)?;
            let p = entry.path();
            let res = if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            res.ctx("removing", &p)?;
        }
        Ok(report)
    }
}

/// One container's use of an image (see [`ImageStore::lease`]).
#[derive(Serialize, Deserialize)]
struct Lease {
    dir: PathBuf,
    image: String,
    layers: Vec<String>,
}

fn lease_path(leases: &Path, container_dir: &Path) -> PathBuf {
    let key = Digest::of(container_dir.as_os_str().as_encoded_bytes());
    leases.join(format!("{}.json", key.hex()))
}

fn read_layer_meta(dir: &Path) -> Option<u64> {
    let bytes = fs::read(dir.join("meta.json")).ok()?;
    let meta: LayerMeta = serde_json::from_slice(&bytes).ok()?;
    Some(meta.size)
}

fn looks_like_id(s: &str) -> bool {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    (s.starts_with("sha256:") || hex.len() >= 12)
        && hex.len() <= 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn find_id(doc: &IndexDoc, reference: &str) -> Result<Option<String>> {
    let reference = reference.trim();
    if looks_like_id(reference) {
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        let hits: Vec<&String> = doc
            .images
            .keys()
            .filter(|id| id.trim_start_matches("sha256:").starts_with(hex))
            .collect();
        match hits.as_slice() {
            [one] => return Ok(Some((*one).clone())),
            [] if reference.starts_with("sha256:") => {
                // A manifest digest also names its image.
                return Ok(doc
                    .images
                    .iter()
                    .find(|(_, r)| r.manifests.contains(reference))
                    .map(|(id, _)| id.clone()));
            }
            [] => {} // maybe a name made of hex characters
            _ => return Err(Error::Ambiguous(reference.to_string())),
        }
    }
    let r = reference::parse(reference)?;
    if let Some(d) = r.digest() {
        let want = format!("{}@{d}", reference::repository(&r));
        return Ok(doc
            .images
            .iter()
            .find(|(_, rec)| rec.repo_digests.contains(&want))
            .map(|(id, _)| id.clone()));
    }
    Ok(reference::tagged(&r).and_then(|t| doc.refs.get(&t).cloned()))
}

/// Layer directory names (diff ID hex) under `layers_root` that mounted
/// overlays on this host use as lowerdirs, per /proc/self/mountinfo.
fn mounted_layers(layers_root: &Path) -> HashSet<String> {
    let mut out = HashSet::new();
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return out;
    };
    let prefix = format!("{}/", layers_root.display());
    for line in info.lines() {
        let Some((_, tail)) = line.split_once(" - ") else {
            continue;
        };
        if !tail.starts_with("overlay ") {
            continue;
        }
        let mut rest = tail;
        while let Some(pos) = rest.find(&prefix) {
            rest = rest.get(pos + prefix.len()..).unwrap_or_default();
            let hex: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
            if hex.len() == 64 {
                out.insert(hex);
            }
        }
    }
    out
}

/// Bytes of regular files under `p`, then remove it.
fn disk_usage(p: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        let Ok(m) = fs::symlink_metadata(p) else {
            return 0;
        };
        if m.is_dir() {
            fs::read_dir(p)
                .map(|rd| rd.flatten().map(|e| walk(&e.path())).sum())
                .unwrap_or(0)
        } else if m.is_file() {
            m.len()
        } else {
            0
        }
    }
    let n = walk(p);
    let _ = fs::remove_dir_all(p);
    n
}
