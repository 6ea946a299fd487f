//! Pulling images from OCI/Docker registries over the distribution API
//! (oci-client), into the same store as imports.
//!
//! Every manifest and blob is checked against its digest before it is
//! stored; a multi-platform index resolves to this host's platform
//! (linux/amd64 here). The image is recorded under the reference's tag and
//! under `repository@<digest>` for both the index and the manifest digest,
//! so `name@sha256:<either>` resolves to it.

use std::collections::HashMap;

use base64::Engine as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::Client;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

pub use oci_client::secrets::RegistryAuth;

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::import::pick_platform;
use crate::reference::{self, Reference};
use crate::store::{Image, ImageStore, LayerRecord};

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Registries (`host[:port]`, as in the reference) spoken to over plain
    /// HTTP instead of HTTPS.
    pub insecure_registries: Vec<String>,
}

/// A container's `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// Parse the Kubernetes spelling; empty means the default for `reference`.
    pub fn parse(policy: &str, reference: &str) -> Self {
        match policy {
            "Always" => PullPolicy::Always,
            "IfNotPresent" => PullPolicy::IfNotPresent,
            "Never" => PullPolicy::Never,
            _ => Self::default_for(reference),
        }
    }

    /// Kubernetes' default: `Always` for `:latest` or an untagged name,
    /// else `IfNotPresent` (a digest pins the content, so `IfNotPresent`).
    pub fn default_for(reference: &str) -> Self {
        match reference::parse(reference) {
            Ok(r) if r.digest().is_none() && r.tag() == Some("latest") => PullPolicy::Always,
            _ => PullPolicy::IfNotPresent,
        }
    }
}

const MANIFEST_TYPES: [&str; 4] = [
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

fn registry_err(r: &Reference) -> impl Fn(oci_client::errors::OciDistributionError) -> Error + '_ {
    move |e| Error::Registry {
        reference: r.whole(),
        message: e.to_string(),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Malformed(format!("store task failed: {e}")))?
}

impl ImageStore {
    /// Pull `reference` from its registry into the store and return it.
    pub async fn pull(
        &self,
        reference: &str,
        auth: &RegistryAuth,
        opts: &PullOptions,
    ) -> Result<Image> {
        // reqwest is built without a default TLS provider; use ring, as the
        // rest of skiff does (a no-op when one is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let r = reference::parse(reference)?;
        let protocol = if opts.insecure_registries.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(opts.insecure_registries.clone())
        };
        let client = Client::new(ClientConfig {
            protocol,
            ..Default::default()
        });
        let err = registry_err(&r);

        let store = self.clone();
        let lock = blocking(move || store.content_lock()).await?;

        // The manifest the reference names (maybe an index), by digest.
        let (top_bytes, _) = client
            .pull_manifest_raw(&r, auth, &MANIFEST_TYPES)
            .await
            .map_err(&err)?;
        let top = Digest::of(&top_bytes);
        if let Some(want) = r.digest() {
            check(want, &top, "manifest")?;
        }
        self.put_blob(Some(&top), top_bytes.as_ref(), "manifest")?;
        let mut manifests = vec![top.clone()];
        let mut bytes = top_bytes.to_vec();
        if is_index(&bytes)? {
            let index: ImageIndex = parse_json(&bytes, "image index")?;
            let pick = Digest::parse(pick_platform(&index)?.digest().as_ref())?;
            let pinned = r.clone_with_digest(pick.to_string());
            let (b, _) = client
                .pull_manifest_raw(&pinned, auth, &MANIFEST_TYPES)
                .await
                .map_err(&err)?;
            check(&pick.to_string(), &Digest::of(&b), "platform manifest")?;
            self.put_blob(Some(&pick), b.as_ref(), "manifest")?;
            manifests.push(pick);
            bytes = b.to_vec();
        }
        let manifest: ImageManifest = parse_json(&bytes, "image manifest")?;

        let config_digest = Digest::parse(manifest.config().digest().as_ref())?;
        let mut config_bytes = Vec::new();
        client
            .pull_blob(&r, config_digest.to_string().as_str(), &mut config_bytes)
            .await
            .map_err(&err)?;
        self.put_blob(Some(&config_digest), config_bytes.as_slice(), "config")?;
        let config: ImageConfiguration = parse_json(&config_bytes, "image config")?;
        let diff_ids = config.rootfs().diff_ids().clone();
        if diff_ids.len() != manifest.layers().len() {
            return Err(Error::Malformed(format!(
                "config {config_digest} lists {} diff IDs for {} layers",
                diff_ids.len(),
                manifest.layers().len()
            )));
        }

        let mut plan = Vec::new();
        for (layer, diff_id) in manifest.layers().iter().zip(&diff_ids) {
            let blob = Digest::parse(layer.digest().as_ref())?;
            let diff_id = Digest::parse(diff_id)?;
            let unpacked = self.layer_dir(&diff_id).exists();
            if !unpacked && !self.blob_path(&blob).exists() {
                let tmp = self.tmp_path("pull");
                let mut f = tokio::fs::File::create(&tmp).await.ctx("creating", &tmp)?;
                let res = client
                    .pull_blob(&r, blob.to_string().as_str(), &mut f)
                    .await;
                let flushed = f.flush().await;
                drop(f);
                if let Err(e) = res {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(err(e));
                }
                flushed.ctx("writing", &tmp)?;
                let (store, b) = (self.clone(), blob.clone());
                blocking(move || store.adopt_blob(&b, &tmp)).await?;
            }
            plan.push((blob, diff_id));
        }

        let store = self.clone();
        let names = vec![r.clone()];
        let image = blocking(move || {
            let mut layers = Vec::new();
            for (blob, diff_id) in plan {
                let size = store.ensure_layer(&blob, &diff_id)?;
                layers.push(LayerRecord {
                    blob: blob.to_string(),
                    diff_id: diff_id.to_string(),
                    size,
                });
            }
            store.commit_image(&config_digest, &manifests, &names, layers)?;
            drop(lock);
            store
                .resolve(&config_digest.to_string())?
                .ok_or_else(|| Error::NotFound(config_digest.to_string()))
        })
        .await?;
        tracing::info!(reference = %r, image = %image.id, "pulled image");
        Ok(image)
    }
}

impl ImageStore {
    /// The image for a container: pulled or taken from the store as the
    /// policy says. With `Never` and no such image: [`Error::NotFound`]
    /// (the kubelet's ErrImageNeverPull).
    pub async fn ensure(
        &self,
        reference: &str,
        policy: PullPolicy,
        auth: &RegistryAuth,
        opts: &PullOptions,
    ) -> Result<Image> {
        if policy != PullPolicy::Always {
            let store = self.clone();
            let r = reference.to_string();
            if let Some(img) = blocking(move || store.resolve(&r)).await? {
                return Ok(img);
            }
            if policy == PullPolicy::Never {
                return Err(Error::NotFound(reference.to_string()));
            }
        }
        self.pull(reference, auth, opts).await
    }
}

fn check(want: &str, got: &Digest, what: &str) -> Result<()> {
    if want == got.to_string() {
        Ok(())
    } else {
        Err(Error::DigestMismatch {
            what: what.to_string(),
            expected: want.to_string(),
            actual: got.to_string(),
        })
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Json {
        what: what.to_string(),
        source,
    })
}

fn is_index(bytes: &[u8]) -> Result<bool> {
    let v: serde_json::Value = parse_json(bytes, "manifest")?;
    Ok(v.get("manifests").is_some())
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The registry part of a docker config key (`https://index.docker.io/v1/`,
/// `127.0.0.1:5000`, `http://host/x`), normalized like references.
fn key_registry(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

/// Credentials for `reference`'s registry from a docker config
/// (`~/.docker/config.json`, or an imagePullSecret's `.dockerconfigjson`);
/// anonymous when it has none for that registry.
pub fn auth_from_docker_config(config_json: &[u8], reference: &str) -> Result<RegistryAuth> {
    let r = reference::parse(reference)?;
    let cfg: DockerConfig = parse_json(config_json, "docker config")?;
    let want = r.registry().to_ascii_lowercase();
    for (key, entry) in cfg.auths {
        if key_registry(&key) != want {
            continue;
        }
        if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            return Ok(RegistryAuth::Basic(u.clone(), p.clone()));
        }
        if let Some(a) = entry.auth {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .map_err(|e| Error::Malformed(format!("docker config auth for {key}: {e}")))?;
            let text = String::from_utf8_lossy(&raw);
            if let Some((u, p)) = text.split_once(':') {
                return Ok(RegistryAuth::Basic(u.to_string(), p.to_string()));
            }
        }
    }
    Ok(RegistryAuth::Anonymous)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_credentials() {
        let cfg = br#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},
            "127.0.0.1:5000":{"username":"u","password":"p:w"}
        }}"#;
        let basic = |u: &str, p: &str| format!("{:?}", RegistryAuth::Basic(u.into(), p.into()));
        let got = |r: &str| format!("{:?}", auth_from_docker_config(cfg, r).unwrap());
        assert_eq!(got("busybox"), basic("user", "pass"));
        assert_eq!(got("127.0.0.1:5000/x:1"), basic("u", "p:w"));
        assert_eq!(got("quay.io/x"), format!("{:?}", RegistryAuth::Anonymous));
        assert!(auth_from_docker_config(b"nope", "busybox").is_err());
    }

    #[test]
    fn default_pull_policy_like_kubernetes() {
        assert_eq!(PullPolicy::default_for("busybox"), PullPolicy::Always);
        assert_eq!(
            PullPolicy::default_for("busybox:latest"),
            PullPolicy::Always
        );
        assert_eq!(
            PullPolicy::default_for("busybox:1.36"),
            PullPolicy::IfNotPresent
        );
        let pinned =
            "busybox@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(PullPolicy::default_for(pinned), PullPolicy::IfNotPresent);
        assert_eq!(PullPolicy::parse("Never", "busybox"), PullPolicy::Never);
        assert_eq!(PullPolicy::parse("", "x:1"), PullPolicy::IfNotPresent);
    }
}
