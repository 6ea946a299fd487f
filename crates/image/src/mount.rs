//! Container root filesystems: an image's layers stacked with overlayfs.
//!
//! `<container_dir>/rootfs` is an overlay of the image's unpacked layers
//! (read-only, shared by every container of the image) under
//! `<container_dir>/upper` (this container's changes), with
//! `<container_dir>/work` as overlayfs' work dir.
//!
//! Length limit: the classic `mount(2)` passes all options in one page
//! (4095 bytes), which holds ~40 layers at the default store path
//! (`~/.skiff/images/layers/<64 hex>/fs` is ~90 bytes). Longer stacks are
//! mounted with the new mount API, one `lowerdir+` per layer (Linux 6.8+),
//! where each layer path may be up to 255 bytes. Paths must not contain
//! `:`, `,` or `\` (overlayfs option syntax).

use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

use crate::error::{Error, IoContext, Result};
use crate::store::Image;

/// Bytes the classic mount(2) accepts for the options string.
const PAGE_LIMIT: usize = 4095;

/// The overlay of one container: its directories and option values.
struct Overlay {
    rootfs: PathBuf,
    /// Lower layer directories, top first.
    lowers: Vec<String>,
    upper: String,
    work: String,
}

impl Overlay {
    /// Create `<container_dir>/{upper,work,rootfs}` and check the paths can
    /// be overlayfs options.
    fn new(image: &Image, container_dir: &Path) -> Result<Overlay> {
        let upper = container_dir.join("upper");
        let work = container_dir.join("work");
        let rootfs = container_dir.join("rootfs");
        for d in [&upper, &work, &rootfs] {
            fs::create_dir_all(d).ctx("creating", d)?;
        }
        let rootfs = rootfs.canonicalize().ctx("resolving", &rootfs)?;
        let upper = upper.canonicalize().ctx("resolving", &upper)?;
        let work = work.canonicalize().ctx("resolving", &work)?;
        let mut lowers: Vec<PathBuf> = image.layers.iter().rev().cloned().collect();
        if lowers.is_empty() {
            // overlayfs needs a lower layer; an image without layers gets an empty one.
            let empty = container_dir.join("empty");
            fs::create_dir_all(&empty).ctx("creating", &empty)?;
            lowers.push(empty);
        }
        let fail = |reason: String| Error::Mount {
            path: rootfs.clone(),
            reason,
        };
        let check = |p: &Path| -> Result<String> {
            let s = p
                .to_str()
                .ok_or_else(|| fail(format!("{} is not UTF-8", p.display())))?;
            if s.contains([':', ',', '\\']) {
                return Err(fail(format!("{s} contains ':', ',' or '\\'")));
            }
            Ok(s.to_string())
        };
        let lowers = lowers
            .iter()
            .map(|l| check(l))
            .collect::<Result<Vec<_>>>()?;
        let (upper, work) = (check(&upper)?, check(&work)?);
        Ok(Overlay {
            rootfs,
            lowers,
            upper,
            work,
        })
    }

    /// The options as `mount(2)` takes them (one string).
    fn options(&self) -> String {
        format!(
            "lowerdir={},upperdir={},workdir={}",
            self.lowers.join(":"),
            self.upper,
            self.work
        )
    }
}

/// A container root filesystem as the OCI runtime gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rootfs {
    /// The bundle's `root.path`.
    pub path: PathBuf,
    /// When set, the overlay the runtime must mount on `path` inside the
    /// container's own mount namespace (the bundle's first mount, at `/`),
    /// as `mount(8)`-style options: nothing is mounted on the host, so the
    /// host's mount table does not grow with the containers (every runtime
    /// start copies and scans that table). `None`: `path` already is the
    /// whole root filesystem (a host overlay mount, or a copy).
    pub overlay: Option<Vec<String>>,
    /// The directories to read image files from while the overlay is not
    /// mounted on the host ([`crate::layers::read_file`]), top first.
    pub layers: Vec<PathBuf>,
}

/// Prepare `<container_dir>` for a container of `image`: the overlay's
/// directories, mounted by the OCI runtime inside the container (see
/// [`Rootfs::overlay`]). Where that cannot work (no overlayfs: a copy;
/// options longer than one page: a host mount with the new mount API) the
/// rootfs is made complete here instead.
pub fn plan_rootfs(image: &Image, container_dir: &Path) -> Result<Rootfs> {
    if overlay_available() {
        let o = Overlay::new(image, container_dir)?;
        if o.options().len() <= PAGE_LIMIT && !is_mount_point(&o.rootfs) {
            return Ok(Rootfs {
                path: o.rootfs,
                overlay: Some(vec![
                    format!("lowerdir={}", o.lowers.join(":")),
                    format!("upperdir={}", o.upper),
                    format!("workdir={}", o.work),
                ]),
                layers: o.lowers.iter().map(PathBuf::from).collect(),
            });
        }
    }
    let path = prepare_rootfs(image, container_dir)?;
    Ok(Rootfs {
        layers: vec![path.clone()],
        path,
        overlay: None,
    })
}

/// Mount `image`'s root filesystem at `<container_dir>/rootfs` and return
/// that path. Mounting an already mounted rootfs returns it unchanged.
pub fn mount_rootfs(image: &Image, container_dir: &Path) -> Result<PathBuf> {
    let o = Overlay::new(image, container_dir)?;
    let rootfs = o.rootfs.clone();
    if is_mount_point(&rootfs) {
        return Ok(rootfs);
    }
    let fail = |reason: String| Error::Mount {
        path: rootfs.clone(),
        reason,
    };
    let opts = o.options();
    let (lower_strs, upper_s, work_s) = (&o.lowers, &o.upper, &o.work);
    if opts.len() <= PAGE_LIMIT {
        let data = std::ffi::CString::new(opts).map_err(|e| fail(e.to_string()))?;
        rustix::mount::mount(
            "overlay",
            &rootfs,
            "overlay",
            MountFlags::empty(),
            data.as_c_str(),
        )
        .map_err(|e| fail(format!("mount(2): {e}")))?;
    } else {
        mount_per_layer(lower_strs, upper_s, work_s, &rootfs)
            .map_err(|e| fail(format!("{} layers via lowerdir+: {e}", lower_strs.len())))?;
    }
    tracing::debug!(rootfs = %rootfs.display(), layers = lower_strs.len(), "mounted rootfs");
    Ok(rootfs)
}

/// The new mount API: no limit on the number of layers.
fn mount_per_layer(
    lowers: &[String],
    upper: &str,
    work: &str,
    target: &Path,
) -> rustix::io::Result<()> {
    let fsfd = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for l in lowers {
        rustix::mount::fsconfig_set_string(fsfd.as_fd(), "lowerdir+", l.as_str())?;
    }
    rustix::mount::fsconfig_set_string(fsfd.as_fd(), "upperdir", upper)?;
    rustix::mount::fsconfig_set_string(fsfd.as_fd(), "workdir", work)?;
    rustix::mount::fsconfig_create(fsfd.as_fd())?;
    let mnt = rustix::mount::fsmount(
        fsfd.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::empty(),
    )?;
    rustix::mount::move_mount(
        mnt.as_fd(),
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
}

/// Unmount `<container_dir>/rootfs` and delete the overlay's directories
/// (the container's changes go with them). Idempotent: fine when nothing
/// is mounted, when the directories are gone, or after a crash.
pub fn unmount_rootfs(container_dir: &Path) -> Result<()> {
    let rootfs = container_dir.join("rootfs");
    let Ok(real) = rootfs.canonicalize() else {
        return Ok(()); // nothing there
    };
    // Stacked mounts are possible after a crash between mount and record:
    // take them all off (bounded).
    for _ in 0..16 {
        if !is_mount_point(&real) {
            break;
        }
        if let Err(e) = rustix::mount::unmount(&real, UnmountFlags::empty()) {
            if e == rustix::io::Errno::BUSY {
                rustix::mount::unmount(&real, UnmountFlags::DETACH).ctx("unmounting", &real)?;
            } else if e != rustix::io::Errno::INVAL {
                return Err(e).ctx("unmounting", &real);
            }
        }
    }
    if is_mount_point(&real) {
        return Err(Error::Mount {
            path: real,
            reason: "still mounted after unmounting".into(),
        });
    }
    for sub in ["rootfs", "upper", "work", "empty"] {
        let p = container_dir.join(sub);
        match fs::remove_dir_all(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx("removing", &p),
        }
    }
    Ok(())
}

/// Whether `path` (canonical) is a mount point in this mount namespace.
/// `statx` says so directly (Linux 5.8+: no scan of the mount table, which
/// is long on a node with many pods); older kernels read mountinfo.
pub fn is_mount_point(path: &Path) -> bool {
    use rustix::fs::{AtFlags, StatxAttributes, StatxFlags};
    if let Ok(st) = rustix::fs::statx(
        rustix::fs::CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT,
        StatxFlags::BASIC_STATS,
    ) {
        if st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT) {
            return st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT);
        }
    }
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape(mp) == want)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes.get(i).copied().unwrap_or(0);
        let oct = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|t| u8::from_str_radix(t, 8).ok())
        });
        match (b, oct) {
            (b'\\', Some(v)) => {
                out.push(v);
                i += 4;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether this kernel has overlayfs (listed in /proc/filesystems; a
/// mount attempt loads the module if there is one).
pub fn overlay_available() -> bool {
    fs::read_to_string("/proc/filesystems")
        .map(|s| {
            s.lines()
                .any(|l| l.split_whitespace().last() == Some("overlay"))
        })
        .unwrap_or(false)
}

/// [`mount_rootfs`], or [`copy_rootfs`] when the kernel has no overlayfs.
pub fn prepare_rootfs(image: &Image, container_dir: &Path) -> Result<PathBuf> {
    match mount_rootfs(image, container_dir) {
        Ok(p) => Ok(p),
        Err(e) if !overlay_available() => {
            tracing::warn!(error = %e, "no overlayfs: copying the image instead");
            unmount_rootfs(container_dir)?;
            copy_rootfs(image, container_dir)
        }
        Err(e) => Err(e),
    }
}

/// The fallback where overlayfs is unavailable: a private copy of the
/// image at `<container_dir>/rootfs`, layers applied bottom first with
/// their whiteouts (0/0 character devices delete, opaque directories are
/// emptied first). Ownership, modes, mtimes, symlinks and hardlinks within
/// a layer are kept; extended attributes are not. Slow and disk-hungry by
/// nature; [`unmount_rootfs`] removes it like an overlay.
pub fn copy_rootfs(image: &Image, container_dir: &Path) -> Result<PathBuf> {
    let rootfs = container_dir.join("rootfs");
    if rootfs.exists() {
        remove_any(&rootfs)?;
    }
    fs::create_dir_all(&rootfs).ctx("creating", &rootfs)?;
    for layer in &image.layers {
        let mut links = std::collections::HashMap::new();
        apply_dir(layer, &rootfs, &mut links)?;
    }
    Ok(rootfs)
}

fn remove_any(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).ctx("removing", p),
        Ok(_) => fs::remove_file(p).ctx("removing", p),
        Err(_) => Ok(()),
    }
}

fn copy_meta(src: &fs::Metadata, dst: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::os::unix::fs::lchown(dst, Some(src.uid()), Some(src.gid())).ctx("chown", dst)?;
    if !src.file_type().is_symlink() {
        fs::set_permissions(dst, fs::Permissions::from_mode(src.mode() & 0o7777))
            .ctx("chmod", dst)?;
        if let Ok(mtime) = src.modified() {
            if let Ok(f) = fs::File::open(dst) {
                f.set_modified(mtime).ctx("setting mtime of", dst)?;
            }
        }
    }
    Ok(())
}

/// Copy the layer directory `src` over `dst` (an existing directory).
fn apply_dir(
    src: &Path,
    dst: &Path,
    links: &mut std::collections::HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for entry in fs::read_dir(src).ctx("listing", src)? {
        let entry = entry.ctx("listing", src)?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let meta = fs::symlink_metadata(&from).ctx("stat", &from)?;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            remove_any(&to)?; // a whiteout
            continue;
        }
        if ft.is_dir() {
            let mut buf = [0u8; 2];
            let opaque = rustix::fs::lgetxattr(&from, crate::unpack::OPAQUE_XATTR, &mut buf)
                .map(|n| buf.get(..n) == Some(b"y".as_slice()))
                .unwrap_or(false);
            let is_dir = fs::symlink_metadata(&to)
                .map(|m| m.is_dir())
                .unwrap_or(false);
            if opaque || !is_dir {
                remove_any(&to)?;
            }
            if !to.exists() {
                fs::create_dir(&to).ctx("creating", &to)?;
            }
            apply_dir(&from, &to, links)?;
            copy_meta(&meta, &to)?;
            continue;
        }
        remove_any(&to)?;
        if ft.is_symlink() {
            let target = fs::read_link(&from).ctx("reading link", &from)?;
            std::os::unix::fs::symlink(&target, &to).ctx("symlinking", &to)?;
        } else if ft.is_file() {
            let key = (meta.dev(), meta.ino());
            if meta.nlink() > 1 {
                if let Some(first) = links.get(&key) {
                    fs::hard_link(first, &to).ctx("hard linking", &to)?;
                    continue;
                }
                links.insert(key, to.clone());
            }
            fs::copy(&from, &to).ctx("copying", &from)?;
        } else {
            let kind = if ft.is_char_device() {
                rustix::fs::FileType::CharacterDevice
            } else if ft.is_block_device() {
                rustix::fs::FileType::BlockDevice
            } else if ft.is_fifo() {
                rustix::fs::FileType::Fifo
            } else {
                continue; // sockets are not image content
            };
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &to,
                kind,
                rustix::fs::Mode::from_raw_mode(meta.mode() & 0o7777),
                meta.rdev(),
            )
            .ctx("creating node", &to)?;
        }
        copy_meta(&meta, &to)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert!(is_mount_point(Path::new("/")));
        assert!(!is_mount_point(Path::new("/definitely/not/a/mount")));
    }
}
