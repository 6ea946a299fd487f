//! `skiff image`: the node's image store from the command line. It works
//! next to a running server (the store locks itself).

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use skiff_image::pull::{auth_from_docker_config, PullOptions, RegistryAuth};
use skiff_image::ImageStore;

#[derive(Args, Debug)]
pub struct ImageArgs {
    /// Where skiff keeps its state (default: ~/.skiff); images are in <data-dir>/images.
    #[arg(long, env = "SKIFF_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Subcommand, Debug)]
enum ImageCommand {
    /// Import images from OCI layouts (a directory or a tar of one) or
    /// docker-archive tars (`docker save`), gzipped or not.
    Import {
        /// Archives or layout directories.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Name the image (for an archive holding one image; overrides its own names).
        #[arg(long)]
        name: Option<String>,
    },
    /// Pull an image from a registry (OCI distribution API).
    Pull {
        reference: String,
        /// A registry (`host:port`) to reach over plain HTTP (repeatable).
        #[arg(long = "insecure-registry")]
        insecure_registries: Vec<String>,
        /// Credentials from this docker config (default: ~/.docker/config.json if present).
        #[arg(long)]
        docker_config: Option<PathBuf>,
        /// Registry user name (with --password; overrides the docker config).
        #[arg(long, requires = "password")]
        username: Option<String>,
        #[arg(long, env = "SKIFF_REGISTRY_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// List images: one row per reference, `<none>` for untagged ones.
    #[command(alias = "list")]
    Ls {
        /// Show full image IDs.
        #[arg(long)]
        no_trunc: bool,
    },
    /// Remove references (by name, name@digest or image ID); prune frees the data.
    #[command(alias = "rmi")]
    Rm {
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Delete untagged images and content nothing references. Layers a
    /// mounted container rootfs uses are kept.
    Prune,
}

pub fn run(args: ImageArgs, default_data_dir: PathBuf) -> anyhow::Result<()> {
    let root = args.data_dir.unwrap_or(default_data_dir).join("images");
    let store = ImageStore::open(&root)
        .with_context(|| format!("opening the image store {}", root.display()))?;
    match args.command {
        ImageCommand::Import { files, name } => {
            if name.is_some() && files.len() > 1 {
                anyhow::bail!(
                    "--name applies to one archive, but {} were given",
                    files.len()
                );
            }
            for f in files {
                let images = store
                    .import(&f, name.as_deref())
                    .with_context(|| format!("importing {}", f.display()))?;
                for img in images {
                    let names = if img.references.is_empty() {
                        "<none>".to_string()
                    } else {
                        img.references.join(", ")
                    };
                    println!("imported {names} ({})", img.id);
                }
            }
        }
        ImageCommand::Pull {
            reference,
            insecure_registries,
            docker_config,
            username,
            password,
        } => {
            let auth = match (username, password) {
                (Some(u), Some(p)) => RegistryAuth::Basic(u, p),
                _ => {
                    let path = docker_config.or_else(|| {
                        std::env::var_os("HOME")
                            .map(|h| PathBuf::from(h).join(".docker/config.json"))
                            .filter(|p| p.exists())
                    });
                    match path {
                        Some(p) => {
                            let bytes = std::fs::read(&p)
                                .with_context(|| format!("reading {}", p.display()))?;
                            auth_from_docker_config(&bytes, &reference)?
                        }
                        None => RegistryAuth::Anonymous,
                    }
                }
            };
            let opts = PullOptions {
                insecure_registries,
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let img = rt.block_on(store.pull(&reference, &auth, &opts))?;
            println!("pulled {} ({})", img.references.join(", "), img.id);
        }
        ImageCommand::Ls { no_trunc } => {
            let mut rows = Vec::new();
            for img in store.list()? {
                let id = if no_trunc {
                    img.id.clone()
                } else {
                    img.id
                        .trim_start_matches("sha256:")
                        .chars()
                        .take(12)
                        .collect()
                };
                let size = human_size(img.size);
                if img.references.is_empty() {
                    rows.push(["<none>".to_string(), id, size]);
                } else {
                    for r in &img.references {
                        rows.push([r.clone(), id.clone(), size.clone()]);
                    }
                }
            }
            rows.sort();
            let header = ["REFERENCE".to_string(), "IMAGE ID".into(), "SIZE".into()];
            let width = |i: usize| {
                rows.iter()
                    .chain([&header])
                    .map(|r| r[i].len())
                    .max()
                    .unwrap_or(0)
            };
            let (w0, w1) = (width(0), width(1));
            for r in [&header].into_iter().chain(rows.iter()) {
                println!("{:<w0$}   {:<w1$}   {}", r[0], r[1], r[2]);
            }
        }
        ImageCommand::Rm { references } => {
            let mut failed = false;
            for r in references {
                match store.remove(&r) {
                    Ok(removed) => {
                        for x in removed {
                            println!("untagged {x}");
                        }
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                anyhow::bail!("some images were not removed");
            }
        }
        ImageCommand::Prune => {
            let r = store.gc(&HashSet::new())?;
            for id in &r.images_removed {
                println!("deleted {id}");
            }
            println!(
                "removed {} images, {} blobs, {} layers; freed {}",
                r.images_removed.len(),
                r.blobs_removed,
                r.layers_removed,
                human_size(r.bytes_freed)
            );
        }
    }
    Ok(())
}

/// Sizes as `docker images` prints them (powers of 1000).
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + UNITS.get(unit).copied().unwrap_or("B")
    }
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(2_145_000), "2.145MB");
        assert_eq!(human_size(1_000), "1kB");
    }
}
