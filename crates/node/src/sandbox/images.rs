//! Container root filesystems from the node's image store (`skiff-image`).

use std::path::Path;
use std::sync::Arc;

use skiff_image::ImageStore;

use super::{ImageError, ImageSource, PreparedImage};

/// The image store as the runtime's [`ImageSource`].
#[derive(Debug, Clone)]
pub struct StoreImages {
    store: Arc<ImageStore>,
}

impl StoreImages {
    pub fn new(store: Arc<ImageStore>) -> StoreImages {
        StoreImages { store }
    }
}

#[async_trait::async_trait]
impl ImageSource for StoreImages {
    async fn prepare(
        &self,
        image: &str,
        pull_policy: &str,
        dir: &Path,
    ) -> Result<PreparedImage, ImageError> {
        let store = self.store.clone();
        let image = image.to_string();
        let policy = pull_policy.to_string();
        let dir = dir.to_path_buf();
        let joined = tokio::task::spawn_blocking(move || {
            if skiff_image::reference::normalize(&image).is_err() {
                return Err(ImageError {
                    reason: "InvalidImageName".into(),
                    message: format!("Failed to apply default image tag {image:?}: couldn't parse image name {image:?}: invalid reference format"),
                });
            }
            let found = store.resolve(&image).map_err(|e| ImageError {
                reason: "ErrImagePull".into(),
                message: format!("reading the image store: {e}"),
            })?;
            let Some(found) = found else {
                return Err(if policy == "Never" {
                    ImageError {
                        reason: "ErrImageNeverPull".into(),
                        message: format!(
                            "Container image {image:?} is not present with pull policy of Never"
                        ),
                    }
                } else {
                    ImageError {
                        reason: "ErrImagePull".into(),
                        message: format!(
                            "failed to pull and unpack image {image:?}: not found in the node's image store (import it with `skiff image import`)"
                        ),
                    }
                });
            };
            let rootfs = skiff_image::mount::mount_rootfs(&found, &dir).map_err(|e| ImageError {
                reason: "CreateContainerError".into(),
                message: format!("mounting the root filesystem: {e}"),
            })?;
            Ok(PreparedImage {
                rootfs,
                image_id: found
                    .repo_digests
                    .first()
                    .cloned()
                    .unwrap_or_else(|| found.id.clone()),
                config: Some(found.config),
            })
        })
        .await;
        match joined {
            Ok(r) => r,
            Err(e) => Err(ImageError {
                reason: "ErrImagePull".into(),
                message: e.to_string(),
            }),
        }
    }

    async fn release(&self, dir: &Path) {
        let dir = dir.to_path_buf();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = skiff_image::mount::unmount_rootfs(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "unmounting a container root filesystem failed");
            }
        })
        .await;
    }
}
