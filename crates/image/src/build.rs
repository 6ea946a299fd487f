//! Building small test images from host files, without a registry.
//!
//! ```no_run
//! use skiff_image::build::{ImageBuilder, Layer};
//! let built = ImageBuilder::busybox()?
//!     .layer(Layer::new().file("/etc/motd", "hi\n", 0o644).whiteout("/etc/group"))
//!     .cmd(["sh", "-c", "cat /etc/motd"])
//!     .write_oci_archive("/tmp/x.oci.tar".as_ref(), Some("example.com/test:1"))?;
//! println!("image id {}", built.config_digest);
//! # Ok::<(), skiff_image::Error>(())
//! ```
//!
//! Layers are deterministic (fixed mtime, sorted as given), so the same
//! layer built twice has the same digest and two images built with it
//! share it in the store.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use flate2::write::GzEncoder;
use oci_spec::image::{
    Arch, ConfigBuilder, DescriptorBuilder, ImageConfiguration, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, Os, PlatformBuilder, RootFsBuilder,
};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::unpack::Compression;

/// The mtime of every entry the builder writes.
pub const MTIME: u64 = 1_700_000_000;
/// Where Debian's busybox-static puts the binary.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

#[derive(Debug, Clone)]
enum Entry {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        data: Vec<u8>,
        mode: u32,
        uid: u64,
        gid: u64,
    },
    Symlink {
        path: String,
        target: String,
    },
    Hardlink {
        path: String,
        target: String,
    },
}

/// One layer's entries, written in the order given.
#[derive(Debug, Clone, Default)]
pub struct Layer {
    entries: Vec<Entry>,
}

fn rel(path: &str) -> String {
    path.trim_start_matches('/').to_string()
}

impl Layer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A directory.
    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        self.entries.push(Entry::Dir {
            path: rel(path),
            mode,
        });
        self
    }

    /// A regular file owned by root.
    pub fn file(self, path: &str, data: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.file_owned(path, data, mode, 0, 0)
    }

    /// A regular file with an owner.
    pub fn file_owned(
        mut self,
        path: &str,
        data: impl Into<Vec<u8>>,
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> Self {
        self.entries.push(Entry::File {
            path: rel(path),
            data: data.into(),
            mode,
            uid,
            gid,
        });
        self
    }

    /// A copy of a host file (its mode kept) at `path`.
    pub fn host_file(self, path: &str, src: &Path) -> Result<Self> {
        let data = fs::read(src).ctx("reading", src)?;
        let mode = fs::metadata(src).ctx("stat", src)?.permissions().mode() & 0o7777;
        Ok(self.file(path, data, mode))
    }

    /// A symlink `path -> target`.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.entries.push(Entry::Symlink {
            path: rel(path),
            target: target.to_string(),
        });
        self
    }

    /// A hard link `path` to the earlier entry `target` of this layer.
    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        self.entries.push(Entry::Hardlink {
            path: rel(path),
            target: rel(target),
        });
        self
    }

    /// Hide `path` of lower layers (an OCI `.wh.<name>` file).
    pub fn whiteout(self, path: &str) -> Self {
        let p = rel(path);
        let (dir, name) = match p.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n.to_string()),
            None => (String::new(), p),
        };
        self.file(&format!("{dir}.wh.{name}"), Vec::new(), 0o644)
    }

    /// Hide everything lower layers have in `dir` (an opaque marker).
    pub fn opaque(self, dir: &str) -> Self {
        let d = rel(dir);
        let marker = if d.is_empty() {
            ".wh..wh..opq".to_string()
        } else {
            format!("{d}/.wh..wh..opq")
        };
        self.file(&marker, Vec::new(), 0o644)
    }

    /// The uncompressed layer tar.
    pub fn to_tar(&self) -> Result<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        let io = |e| Error::Io {
            op: "building layer tar",
            path: "<memory>".into(),
            source: e,
        };
        for e in &self.entries {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(MTIME);
            h.set_uid(0);
            h.set_gid(0);
            match e {
                Entry::Dir { path, mode } => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(*mode);
                    h.set_size(0);
                    b.append_data(&mut h, format!("{path}/"), std::io::empty())
                        .map_err(io)?;
                }
                Entry::File {
                    path,
                    data,
                    mode,
                    uid,
                    gid,
                } => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(*mode);
                    h.set_uid(*uid);
                    h.set_gid(*gid);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, path, data.as_slice()).map_err(io)?;
                }
                Entry::Symlink { path, target } => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    b.append_link(&mut h, path, target).map_err(io)?;
                }
                Entry::Hardlink { path, target } => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_mode(0o644);
                    h.set_size(0);
                    b.append_link(&mut h, path, target).map_err(io)?;
                }
            }
        }
        b.into_inner().map_err(io)
    }
}

/// The names of busybox's applets, from the host binary (a fixed list if
/// it cannot say).
fn busybox_applets(busybox: &Path) -> Vec<String> {
    let listed = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty() && !l.contains('/'))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if !listed.is_empty() {
        return listed;
    }
    [
        "sh", "ls", "cat", "echo", "sleep", "env", "id", "ps", "mkdir", "rm", "cp", "mv", "true",
        "false", "hostname", "touch", "grep", "sed", "head", "tail", "wc", "date", "kill", "ln",
        "chmod", "uname", "whoami", "test", "printf", "nc", "wget", "httpd", "stat", "readlink",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A layer with the host's static busybox at /bin/busybox, a symlink per
/// applet in /bin, and a minimal /etc, /tmp, /root.
pub fn busybox_layer() -> Result<Layer> {
    let bb = Path::new(HOST_BUSYBOX);
    let mut l = Layer::new()
        .dir("/bin", 0o755)
        .dir("/etc", 0o755)
        .dir("/root", 0o700)
        .dir("/tmp", 0o1777)
        .dir("/var", 0o755)
        .dir("/proc", 0o555)
        .dir("/sys", 0o555)
        .dir("/dev", 0o755)
        .host_file("/bin/busybox", bb)?
        .file(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            0o644,
        )
        .file("/etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644);
    for applet in busybox_applets(bb) {
        if applet != "busybox" {
            l = l.symlink(&format!("/bin/{applet}"), "busybox");
        }
    }
    Ok(l)
}

/// Archive members: (path, bytes).
type Files = Vec<(String, Vec<u8>)>;

#[derive(Debug, Clone)]
enum LayerSrc {
    Built(Layer),
    Raw(Vec<u8>),
}

/// An image under construction.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    layers: Vec<LayerSrc>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Vec<String>,
    working_dir: Option<String>,
    user: Option<String>,
    exposed_ports: Vec<String>,
    labels: HashMap<String, String>,
    compression: Compression,
    multi_platform: bool,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// What was built: the digests a test checks against the store.
#[derive(Debug, Clone)]
pub struct Built {
    /// The image ID.
    pub config_digest: Digest,
    /// The (linux/host-arch) manifest's digest.
    pub manifest_digest: Digest,
    /// Layer blob digests as written in the OCI layout, bottom first.
    pub layer_digests: Vec<Digest>,
    /// Uncompressed layer digests, bottom first.
    pub diff_ids: Vec<Digest>,
}

struct Blobs {
    config: Vec<u8>,
    manifest: Vec<u8>,
    layers: Vec<Vec<u8>>,
    tars: Vec<Vec<u8>>,
    built: Built,
    /// Extra blobs (the other platform's config and manifest, the nested index).
    extra: Vec<Vec<u8>>,
    /// The descriptor index.json points at: (media type, digest, size).
    top: (MediaType, Digest, u64),
}

fn oci_err(what: &str) -> impl Fn(oci_spec::OciSpecError) -> Error + '_ {
    move |source| Error::Oci {
        what: what.to_string(),
        source,
    }
}

fn oci_digest(d: &Digest) -> Result<oci_spec::image::Digest> {
    d.to_string().parse().map_err(oci_err("digest"))
}

fn json<T: serde::Serialize>(v: &T, what: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|source| Error::Json {
        what: what.to_string(),
        source,
    })
}

impl ImageBuilder {
    /// An empty image (no layers) with `PATH` set.
    pub fn new() -> Self {
        Self {
            layers: Vec::new(),
            entrypoint: None,
            cmd: None,
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            working_dir: None,
            user: None,
            exposed_ports: Vec::new(),
            labels: HashMap::new(),
            compression: Compression::Gzip,
            multi_platform: false,
        }
    }

    /// An image whose first layer is [`busybox_layer`], running `sh`.
    pub fn busybox() -> Result<Self> {
        Ok(Self::new().layer(busybox_layer()?).cmd(["sh"]))
    }

    /// Add a layer on top.
    pub fn layer(mut self, layer: Layer) -> Self {
        self.layers.push(LayerSrc::Built(layer));
        self
    }

    /// Add a layer given as raw uncompressed tar bytes (for malformed layers in tests).
    pub fn raw_layer(mut self, tar: Vec<u8>) -> Self {
        self.layers.push(LayerSrc::Raw(tar));
        self
    }

    pub fn entrypoint<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.entrypoint = Some(args.into_iter().map(Into::into).collect());
        self
    }

    pub fn cmd<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.cmd = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Add `KEY=value` to the environment.
    pub fn env(mut self, kv: &str) -> Self {
        self.env.push(kv.to_string());
        self
    }

    pub fn working_dir(mut self, dir: &str) -> Self {
        self.working_dir = Some(dir.to_string());
        self
    }

    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_string());
        self
    }

    /// Expose a port, e.g. `8080/tcp`.
    pub fn expose(mut self, port: &str) -> Self {
        self.exposed_ports.push(port.to_string());
        self
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.to_string(), v.to_string());
        self
    }

    /// gzip the layers of OCI layouts (default true). Docker archives are
    /// always uncompressed, as `docker save` writes them.
    pub fn gzip(mut self, on: bool) -> Self {
        self.compression = if on {
            Compression::Gzip
        } else {
            Compression::None
        };
        self
    }

    /// zstd-compress the layers of OCI layouts.
    pub fn zstd(mut self) -> Self {
        self.compression = Compression::Zstd;
        self
    }

    /// Point index.json at a nested multi-platform index (linux/arm64 and
    /// this host's platform) instead of the manifest itself.
    pub fn multi_platform(mut self, on: bool) -> Self {
        self.multi_platform = on;
        self
    }

    fn config_for(&self, arch: Arch, diff_ids: &[Digest]) -> Result<ImageConfiguration> {
        let mut c = ConfigBuilder::default();
        c = c.env(self.env.clone());
        if let Some(e) = &self.entrypoint {
            c = c.entrypoint(e.clone());
        }
        if let Some(e) = &self.cmd {
            c = c.cmd(e.clone());
        }
        if let Some(w) = &self.working_dir {
            c = c.working_dir(w.clone());
        }
        if let Some(u) = &self.user {
            c = c.user(u.clone());
        }
        if !self.exposed_ports.is_empty() {
            c = c.exposed_ports(self.exposed_ports.clone());
        }
        if !self.labels.is_empty() {
            c = c.labels(self.labels.clone());
        }
        let config = c.build().map_err(oci_err("image config"))?;
        let rootfs = RootFsBuilder::default()
            .typ("layers")
            .diff_ids(diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>())
            .build()
            .map_err(oci_err("rootfs"))?;
        ImageConfigurationBuilder::default()
            .architecture(arch)
            .os(Os::Linux)
            .config(config)
            .rootfs(rootfs)
            .build()
            .map_err(oci_err("image configuration"))
    }

    fn manifest_for(&self, config: &[u8], layers: &[Vec<u8>]) -> Result<Vec<u8>> {
        let layer_type = match self.compression {
            Compression::Gzip => MediaType::ImageLayerGzip,
            Compression::Zstd => MediaType::ImageLayerZstd,
            Compression::None => MediaType::ImageLayer,
        };
        let mut descs = Vec::new();
        for l in layers {
            descs.push(
                DescriptorBuilder::default()
                    .media_type(layer_type.clone())
                    .digest(oci_digest(&Digest::of(l))?)
                    .size(l.len() as u64)
                    .build()
                    .map_err(oci_err("layer descriptor"))?,
            );
        }
        let config_desc = DescriptorBuilder::default()
            .media_type(MediaType::ImageConfig)
            .digest(oci_digest(&Digest::of(config))?)
            .size(config.len() as u64)
            .build()
            .map_err(oci_err("config descriptor"))?;
        let m = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config_desc)
            .layers(descs)
            .build()
            .map_err(oci_err("manifest"))?;
        json(&m, "manifest")
    }

    fn blobs(&self) -> Result<Blobs> {
        let mut tars = Vec::new();
        for l in &self.layers {
            tars.push(match l {
                LayerSrc::Built(l) => l.to_tar()?,
                LayerSrc::Raw(t) => t.clone(),
            });
        }
        let diff_ids: Vec<Digest> = tars.iter().map(|t| Digest::of(t)).collect();
        let layers: Vec<Vec<u8>> = match self.compression {
            Compression::Gzip => tars.iter().map(|t| gzip(t)).collect::<Result<_>>()?,
            Compression::Zstd => tars
                .iter()
                .map(|t| {
                    ruzstd::encoding::compress_to_vec(
                        t.as_slice(),
                        ruzstd::encoding::CompressionLevel::Fastest,
                    )
                })
                .collect(),
            Compression::None => tars.clone(),
        };
        let config = json(&self.config_for(Arch::default(), &diff_ids)?, "config")?;
        let manifest = self.manifest_for(&config, &layers)?;
        let built = Built {
            config_digest: Digest::of(&config),
            manifest_digest: Digest::of(&manifest),
            layer_digests: layers.iter().map(|l| Digest::of(l)).collect(),
            diff_ids: diff_ids.clone(),
        };
        let mut extra = Vec::new();
        let mut top = (
            MediaType::ImageManifest,
            built.manifest_digest.clone(),
            manifest.len() as u64,
        );
        if self.multi_platform {
            let other_arch = if Arch::default() == Arch::ARM64 {
                Arch::Amd64
            } else {
                Arch::ARM64
            };
            let other_config = json(&self.config_for(other_arch.clone(), &diff_ids)?, "config")?;
            let other_manifest = self.manifest_for(&other_config, &layers)?;
            let mut descs = Vec::new();
            for (m, arch) in [(&other_manifest, other_arch), (&manifest, Arch::default())] {
                descs.push(
                    DescriptorBuilder::default()
                        .media_type(MediaType::ImageManifest)
                        .digest(oci_digest(&Digest::of(m))?)
                        .size(m.len() as u64)
                        .platform(
                            PlatformBuilder::default()
                                .architecture(arch)
                                .os(Os::Linux)
                                .build()
                                .map_err(oci_err("platform"))?,
                        )
                        .build()
                        .map_err(oci_err("descriptor"))?,
                );
            }
            let index = ImageIndexBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageIndex)
                .manifests(descs)
                .build()
                .map_err(oci_err("index"))?;
            let index = json(&index, "index")?;
            top = (
                MediaType::ImageIndex,
                Digest::of(&index),
                index.len() as u64,
            );
            extra = vec![other_config, other_manifest, index];
        }
        Ok(Blobs {
            config,
            manifest,
            layers,
            tars,
            built,
            extra,
            top,
        })
    }

    /// The OCI layout's files: (path, bytes).
    fn oci_files(&self, ref_name: Option<&str>) -> Result<(Files, Built)> {
        let b = self.blobs()?;
        let mut desc = DescriptorBuilder::default()
            .media_type(b.top.0.clone())
            .digest(oci_digest(&b.top.1)?)
            .size(b.top.2);
        if let Some(name) = ref_name {
            desc = desc.annotations(HashMap::from([(
                "org.opencontainers.image.ref.name".to_string(),
                name.to_string(),
            )]));
        }
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![desc.build().map_err(oci_err("descriptor"))?])
            .build()
            .map_err(oci_err("index"))?;
        let mut files = vec![
            (
                "oci-layout".to_string(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            ("index.json".to_string(), json(&index, "index.json")?),
        ];
        let mut seen = std::collections::HashSet::new();
        for blob in [&b.config, &b.manifest]
            .into_iter()
            .chain(b.layers.iter())
            .chain(b.extra.iter())
        {
            let d = Digest::of(blob);
            if seen.insert(d.clone()) {
                files.push((format!("blobs/sha256/{}", d.hex()), blob.clone()));
            }
        }
        Ok((files, b.built))
    }

    /// Write an OCI image layout directory.
    pub fn write_oci_dir(&self, dir: &Path, ref_name: Option<&str>) -> Result<Built> {
        let (files, built) = self.oci_files(ref_name)?;
        for (p, bytes) in files {
            let path = dir.join(p);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).ctx("creating", parent)?;
            }
            fs::write(&path, bytes).ctx("writing", &path)?;
        }
        Ok(built)
    }

    /// Write an OCI image layout as a tar (`oci-archive`), named `ref_name`
    /// in its `org.opencontainers.image.ref.name` annotation.
    pub fn write_oci_archive(&self, path: &Path, ref_name: Option<&str>) -> Result<Built> {
        let (files, built) = self.oci_files(ref_name)?;
        write_tar(path, &files)?;
        Ok(built)
    }

    /// Write a `docker save` archive (manifest.json with RepoTags, the
    /// config as `<hex>.json`, layers as `<diff id hex>/layer.tar`).
    pub fn write_docker_archive(&self, path: &Path, repo_tags: &[&str]) -> Result<Built> {
        let b = self.blobs()?;
        let config_name = format!("{}.json", b.built.config_digest.hex());
        let layer_names: Vec<String> = b
            .built
            .diff_ids
            .iter()
            .map(|d| format!("{}/layer.tar", d.hex()))
            .collect();
        let manifest = serde_json::json!([{
            "Config": config_name,
            "RepoTags": repo_tags,
            "Layers": layer_names,
        }]);
        let mut files = vec![
            (
                "manifest.json".to_string(),
                json(&manifest, "manifest.json")?,
            ),
            (config_name, b.config.clone()),
        ];
        let mut seen = std::collections::HashSet::new();
        for (name, tar) in layer_names.iter().zip(&b.tars) {
            if seen.insert(name.clone()) {
                files.push((name.clone(), tar.clone()));
            }
        }
        write_tar(path, &files)?;
        // The store knows a docker archive's layers by their uncompressed digests.
        let mut built = b.built;
        built.layer_digests = built.diff_ids.clone();
        Ok(built)
    }
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data)
        .and_then(|_| enc.finish())
        .ctx("compressing", "<memory>")
}

fn write_tar(path: &Path, files: &Files) -> Result<()> {
    let f = fs::File::create(path).ctx("creating", path)?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(f));
    for (name, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_mtime(MTIME);
        h.set_size(bytes.len() as u64);
        b.append_data(&mut h, name, bytes.as_slice())
            .ctx("writing", path)?;
    }
    let w = b.into_inner().ctx("writing", path)?;
    w.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .ctx("writing", path)
}
