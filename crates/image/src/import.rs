//! Importing images from OCI image layouts (a directory, or a tar of one,
//! optionally gzipped) and docker-archive tars (`docker save`).
//!
//! Names: the caller's `name` wins (only for an archive holding one image);
//! otherwise an OCI layout names an image by its `io.containerd.image.name`
//! annotation, else by `org.opencontainers.image.ref.name` read as a
//! reference (`busybox:1.36` -> `docker.io/library/busybox:1.36`); a docker
//! archive by its `RepoTags`. An image with no name is stored untagged
//! (reachable by ID; `prune` removes it).

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::image::{
    Arch, Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType, Os,
};
use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::reference::{self, Reference};
use crate::store::{Image, ImageStore, LayerRecord};
use crate::unpack;

/// The annotation containerd (and docker 25+) put the full name in.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI layout's per-manifest name annotation.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Nested index depth accepted before the layout is called malformed.
const MAX_INDEX_DEPTH: usize = 4;
/// Top-level documents larger than this are refused.
const MAX_DOC: u64 = 16 << 20;

/// Where an archive's files are.
enum Source {
    /// An unpacked layout directory.
    Dir(PathBuf),
    /// A tar already streamed into the store: its files by path, and the
    /// top-level documents in memory.
    Tar {
        files: HashMap<String, Digest>,
        docs: HashMap<String, Vec<u8>>,
    },
}

impl Source {
    fn doc(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Source::Dir(d) => {
                let p = d.join(name);
                match fs::read(&p) {
                    Ok(b) => Ok(Some(b)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e).ctx("reading", p),
                }
            }
            Source::Tar { docs, .. } => Ok(docs.get(name).cloned()),
        }
    }

    /// Make sure the file at `rel` is in the store and return its digest,
    /// checking it against `expected` when given.
    fn blob(&self, store: &ImageStore, rel: &str, expected: Option<&Digest>) -> Result<Digest> {
        let rel = clean(rel);
        match self {
            Source::Dir(d) => {
                let p = d.join(&rel);
                if !p.starts_with(d) || rel.split('/').any(|c| c == "..") {
                    return Err(Error::Malformed(format!("path {rel:?} leaves the layout")));
                }
                let f = fs::File::open(&p).ctx("opening", &p)?;
                Ok(store.put_blob(expected, f, &rel)?.0)
            }
            Source::Tar { files, .. } => {
                if let Some(d) = files.get(&rel) {
                    if let Some(want) = expected {
                        if want != d {
                            return Err(Error::DigestMismatch {
                                what: rel,
                                expected: want.to_string(),
                                actual: d.to_string(),
                            });
                        }
                    }
                    return Ok(d.clone());
                }
                match expected {
                    Some(d) if store.blob_path(d).exists() => Ok(d.clone()),
                    _ => Err(Error::Malformed(format!(
                        "{rel} is missing from the archive"
                    ))),
                }
            }
        }
    }

    /// A blob named by digest (OCI layouts keep them at blobs/<alg>/<hex>).
    fn by_digest(&self, store: &ImageStore, d: &Digest) -> Result<Digest> {
        self.blob(store, &format!("blobs/sha256/{}", d.hex()), Some(d))
    }
}

/// One image found in an archive.
struct Plan {
    names: Vec<Reference>,
    manifest: Option<Digest>,
    config: Digest,
    layers: Vec<Digest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl ImageStore {
    /// Import every image in the archive or layout at `path`. `name` names
    /// the image (it must hold exactly one). Returns the imported images.
    pub fn import(&self, path: &Path, name: Option<&str>) -> Result<Vec<Image>> {
        let name = name.map(reference::parse).transpose()?;
        let _content = self.content_lock()?;
        let source = if path.is_dir() {
            Source::Dir(path.to_path_buf())
        } else {
            scan_tar(self, path)?
        };
        let not_archive = |reason: &str| Error::NotAnArchive {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let mut plans = if let (Some(_), Some(index)) =
            (source.doc("oci-layout")?, source.doc("index.json")?)
        {
            plan_oci(self, &source, &index)?
        } else if let Some(manifest) = source.doc("manifest.json")? {
            plan_docker(self, &source, &manifest)?
        } else {
            return Err(not_archive(
                "no oci-layout + index.json (OCI layout) or manifest.json (docker archive)",
            ));
        };
        if let Some(n) = name {
            if plans.len() != 1 {
                return Err(Error::NameForManyImages(plans.len()));
            }
            for p in &mut plans {
                p.names = vec![n.clone()];
            }
        }

        let mut out = Vec::new();
        for plan in plans {
            let config_bytes = self.read_blob(&plan.config)?;
            let config: ImageConfiguration =
                serde_json::from_slice(&config_bytes).map_err(|source| Error::Json {
                    what: format!("image config {}", plan.config),
                    source,
                })?;
            let diff_ids = config.rootfs().diff_ids();
            if diff_ids.len() != plan.layers.len() {
                return Err(Error::Malformed(format!(
                    "config {} lists {} diff IDs for {} layers",
                    plan.config,
                    diff_ids.len(),
                    plan.layers.len()
                )));
            }
            let mut layers = Vec::with_capacity(plan.layers.len());
            for (blob, diff_id) in plan.layers.iter().zip(diff_ids) {
                let diff_id = Digest::parse(diff_id)?;
                let size = self.ensure_layer(blob, &diff_id)?;
                layers.push(LayerRecord {
                    blob: blob.to_string(),
                    diff_id: diff_id.to_string(),
                    size,
                });
            }
            self.commit_image(&plan.config, plan.manifest.as_slice(), &plan.names, layers)?;
            tracing::info!(image = %plan.config, names = ?plan.names.iter().map(|n| n.whole()).collect::<Vec<_>>(), "imported image");
            let image = self
                .resolve(&plan.config.to_string())?
                .ok_or_else(|| Error::NotFound(plan.config.to_string()))?;
            out.push(image);
        }
        Ok(out)
    }
}

fn clean(p: &str) -> String {
    let mut s = p;
    loop {
        if let Some(r) = s.strip_prefix("./") {
            s = r;
        } else if let Some(r) = s.strip_prefix('/') {
            s = r;
        } else {
            break;
        }
    }
    s.to_string()
}

/// Stream a tar (plain or gzipped) into the store in one pass: every
/// regular file becomes a blob (files at `blobs/sha256/<hex>` must hash to
/// their name), the top-level documents stay in memory, and symlinks
/// (docker save links repeated layers) map to their targets' blobs.
fn scan_tar(store: &ImageStore, path: &Path) -> Result<Source> {
    let not_archive = |reason: String| Error::NotAnArchive {
        path: path.to_path_buf(),
        reason,
    };
    let stream = unpack::decompressed(path)?;
    let mut archive = tar::Archive::new(stream);
    let mut files = HashMap::new();
    let mut docs = HashMap::new();
    let mut links = Vec::new();
    let entries = archive.entries().map_err(|e| not_archive(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| not_archive(e.to_string()))?;
        let rel = clean(
            &entry
                .path()
                .map_err(|e| not_archive(e.to_string()))?
                .to_string_lossy(),
        );
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            if let Ok(Some(target)) = entry.link_name() {
                let target = target.to_string_lossy().into_owned();
                let resolved = if kind.is_symlink() {
                    let base = Path::new(&rel).parent().unwrap_or(Path::new(""));
                    normalize_join(base, &target)
                } else {
                    clean(&target)
                };
                links.push((rel, resolved));
            }
            continue;
        }
        if !kind.is_file() && kind != tar::EntryType::Continuous {
            continue;
        }
        match rel.as_str() {
            "oci-layout" | "index.json" | "manifest.json" | "repositories" => {
                let mut buf = Vec::new();
                (&mut entry)
                    .take(MAX_DOC)
                    .read_to_end(&mut buf)
                    .map_err(|e| not_archive(e.to_string()))?;
                docs.insert(rel, buf);
            }
            _ if rel.ends_with("/VERSION") || rel.ends_with("/json") => {} // legacy docker metadata
            _ => {
                let expected = rel.strip_prefix("blobs/sha256/").and_then(Digest::from_hex);
                let (d, _) = store.put_blob(expected.as_ref(), &mut entry, &rel)?;
                files.insert(rel, d);
            }
        }
    }
    for (from, to) in links {
        if let Some(d) = files.get(&to).cloned() {
            files.insert(from, d);
        }
    }
    if docs.is_empty() && files.is_empty() {
        return Err(not_archive("empty or not a tar archive".into()));
    }
    Ok(Source::Tar { files, docs })
}

/// `base/target` with `.` and `..` resolved lexically (never above the root).
fn normalize_join(base: &Path, target: &str) -> String {
    let mut parts: Vec<String> = if target.starts_with('/') {
        Vec::new()
    } else {
        base.components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect()
    };
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other.to_string()),
        }
    }
    parts.join("/")
}

fn oci_digest(d: &oci_spec::image::Digest) -> Result<Digest> {
    Digest::parse(d.as_ref())
}

fn is_index(desc: &Descriptor) -> bool {
    match desc.media_type() {
        MediaType::ImageIndex => true,
        MediaType::Other(s) => s == "application/vnd.docker.distribution.manifest.list.v2+json",
        _ => false,
    }
}

fn plan_oci(store: &ImageStore, src: &Source, index: &[u8]) -> Result<Vec<Plan>> {
    let index: ImageIndex = serde_json::from_slice(index).map_err(|source| Error::Json {
        what: "index.json".into(),
        source,
    })?;
    let mut plans: Vec<Plan> = Vec::new();
    for desc in index.manifests() {
        let names = desc_names(desc);
        let (manifest_digest, manifest) = resolve_manifest(store, src, desc, 0)?;
        let Some(manifest) = manifest else {
            continue; // not an image (an attestation or another artifact)
        };
        let config = src.by_digest(store, &oci_digest(manifest.config().digest())?)?;
        let mut layers = Vec::new();
        for l in manifest.layers() {
            layers.push(src.by_digest(store, &oci_digest(l.digest())?)?);
        }
        // Several names for one manifest: one plan with all of them.
        if let Some(p) = plans
            .iter_mut()
            .find(|p| p.manifest.as_ref() == Some(&manifest_digest))
        {
            p.names.extend(names);
        } else {
            plans.push(Plan {
                names,
                manifest: Some(manifest_digest),
                config,
                layers,
            });
        }
    }
    if plans.is_empty() {
        return Err(Error::Malformed(
            "the OCI layout holds no image manifest".into(),
        ));
    }
    Ok(plans)
}

fn desc_names(desc: &Descriptor) -> Vec<Reference> {
    let Some(ann) = desc.annotations() else {
        return Vec::new();
    };
    let raw = ann.get(CONTAINERD_NAME).or_else(|| ann.get(REF_NAME));
    match raw.map(|s| reference::parse(s)) {
        Some(Ok(r)) => vec![r],
        Some(Err(e)) => {
            tracing::warn!(error = %e, "ignoring an image name in the layout");
            Vec::new()
        }
        None => Vec::new(),
    }
}

/// Follow a descriptor down nested indexes to this platform's manifest.
/// Returns the manifest digest and the manifest (None: not an image).
fn resolve_manifest(
    store: &ImageStore,
    src: &Source,
    desc: &Descriptor,
    depth: usize,
) -> Result<(Digest, Option<ImageManifest>)> {
    if depth > MAX_INDEX_DEPTH {
        return Err(Error::Malformed("image indexes nested too deeply".into()));
    }
    let digest = src.by_digest(store, &oci_digest(desc.digest())?)?;
    let bytes = store.read_blob(&digest)?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: format!("manifest {digest}"),
            source,
        })?;
    if is_index(desc) || value.get("manifests").is_some() {
        let index: ImageIndex = serde_json::from_value(value).map_err(|source| Error::Json {
            what: format!("image index {digest}"),
            source,
        })?;
        let pick = pick_platform(&index)?;
        return resolve_manifest(store, src, pick, depth + 1);
    }
    if value.get("layers").is_none() || value.get("config").is_none() {
        return Ok((digest, None));
    }
    let manifest: ImageManifest = serde_json::from_value(value).map_err(|source| Error::Json {
        what: format!("image manifest {digest}"),
        source,
    })?;
    let config_type = manifest.config().media_type();
    let is_image = matches!(config_type, MediaType::ImageConfig)
        || matches!(config_type, MediaType::Other(s) if s == "application/vnd.docker.container.image.v1+json");
    Ok((digest, is_image.then_some(manifest)))
}

/// This host's (linux/<arch>) manifest in a multi-platform index; the only
/// entry if there is one without a platform.
pub(crate) fn pick_platform(index: &ImageIndex) -> Result<&Descriptor> {
    let (os, arch) = (Os::default(), Arch::default());
    index
        .manifests()
        .iter()
        .find(|d| {
            d.platform()
                .as_ref()
                .is_some_and(|p| *p.os() == os && *p.architecture() == arch)
        })
        .or_else(|| match index.manifests().as_slice() {
            [only] if only.platform().is_none() => Some(only),
            _ => None,
        })
        .ok_or_else(|| Error::NoPlatform(format!("{os}/{arch}")))
}

fn plan_docker(store: &ImageStore, src: &Source, manifest: &[u8]) -> Result<Vec<Plan>> {
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(manifest).map_err(|source| Error::Json {
            what: "manifest.json".into(),
            source,
        })?;
    if entries.is_empty() {
        return Err(Error::Malformed("manifest.json lists no image".into()));
    }
    let mut plans = Vec::new();
    for e in entries {
        let config = src.blob(store, &e.config, None)?;
        let mut layers = Vec::new();
        for l in &e.layers {
            layers.push(src.blob(store, l, None)?);
        }
        let mut names = Vec::new();
        for t in e.repo_tags.unwrap_or_default() {
            names.push(reference::parse(&t)?);
        }
        plans.push(Plan {
            names,
            manifest: None,
            config,
            layers,
        });
    }
    Ok(plans)
}
