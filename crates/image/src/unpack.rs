//! Unpacking one layer into a directory usable as an overlayfs lowerdir.
//!
//! OCI whiteouts become overlayfs whiteouts while unpacking: `.wh.<name>`
//! turns into a 0/0 character device called `<name>`, and `.wh..wh..opq`
//! sets `trusted.overlay.opaque=y` on its directory. Ownership, modes,
//! mtimes, symlinks, hardlinks (within the layer), device nodes and
//! extended attributes are kept. No entry may land outside the layer
//! directory: `..` components, links leading out and writes through a
//! symlink that points outside are refused.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{FileType, Mode, XattrFlags, CWD};
use tar::{Archive, EntryType};

use crate::digest::{Digest, HashingReader};
use crate::error::{Error, IoContext, Result};

/// The prefix OCI layers use for whiteout files.
const WHITEOUT_PREFIX: &str = ".wh.";
/// The name of the opaque-directory marker.
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The overlayfs xattr that makes a directory opaque.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What unpacking a layer produced.
#[derive(Debug, Clone)]
pub struct Unpacked {
    /// sha256 of the uncompressed tar stream (the layer's diff ID).
    pub diff_id: Digest,
    /// Bytes of regular-file content in the layer.
    pub size: u64,
}

/// The compression of a layer blob, told from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Sniff the compression from a blob's leading bytes.
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Open a layer blob decompressed, whatever its compression.
pub fn decompressed(path: &Path) -> Result<Box<dyn Read>> {
    let mut f = fs::File::open(path).ctx("opening", path)?;
    let mut head = [0u8; 4];
    let n = read_up_to(&mut f, &mut head).ctx("reading", path)?;
    let head = head.get(..n).unwrap_or_default().to_vec();
    let chained = io::Cursor::new(head.clone()).chain(f);
    Ok(match Compression::sniff(&head) {
        Compression::None => Box::new(chained),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(chained)),
        Compression::Zstd => Box::new(ruzstd::decoding::StreamingDecoder::new(chained).map_err(
            |e| Error::Io {
                op: "decompressing zstd",
                path: path.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
            },
        )?),
    })
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(buf.get_mut(n..).unwrap_or_default())? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Unpack the (uncompressed) layer tar read from `tar_stream` into `dst`,
/// an existing empty directory. `layer` names the layer in errors.
pub fn unpack_layer(tar_stream: impl Read, dst: &Path, layer: &str) -> Result<Unpacked> {
    let mut hashing = HashingReader::new(tar_stream);
    let size = unpack_entries(&mut hashing, dst, layer)?;
    let (diff_id, _) = hashing.finish().ctx("reading layer", dst)?;
    Ok(Unpacked { diff_id, size })
}

fn unpack_entries(stream: &mut impl Read, dst: &Path, layer: &str) -> Result<u64> {
    let root = dst.canonicalize().ctx("resolving", dst)?;
    let mut archive = Archive::new(stream);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false); // set below, filtered
    archive.set_overwrite(true);
    archive.set_mask(0);
    let escape = |p: &str| Error::PathEscape {
        layer: layer.to_string(),
        path: p.to_string(),
    };
    let tar_err = |e: io::Error| Error::Io {
        op: "reading layer tar",
        path: dst.to_path_buf(),
        source: e,
    };

    let mut size = 0u64;
    // Directories are applied last, deepest first, so their modes never stop
    // children from being created and their mtimes are final.
    let mut directories = Vec::new();
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let raw = entry.path().map_err(tar_err)?.into_owned();
        let shown = raw.display().to_string();
        let Some(rel) = clean_relative(&raw) else {
            return Err(escape(&shown));
        };
        if rel.as_os_str().is_empty() {
            continue; // the layer root itself
        }
        let name = rel
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let parent_rel = rel.parent().unwrap_or(Path::new(""));

        if name == OPAQUE_MARKER {
            let dir = ensure_dir(&root, parent_rel).map_err(|_| escape(&shown))?;
            rustix::fs::lsetxattr(&dir, OPAQUE_XATTR, b"y", XattrFlags::empty())
                .ctx("setting opaque xattr on", &dir)?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.starts_with(WHITEOUT_PREFIX) {
                continue; // other aufs metadata (.wh..wh.plnk and the like)
            }
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(escape(&shown)); // `.wh...` would whiteout the parent
            }
            let dir = ensure_dir(&root, parent_rel).map_err(|_| escape(&shown))?;
            let target = dir.join(hidden);
            remove_any(&target)?;
            rustix::fs::mknodat(CWD, &target, FileType::CharacterDevice, Mode::empty(), 0)
                .ctx("creating whiteout", &target)?;
            continue;
        }

        let kind = entry.header().entry_type();
        if kind == EntryType::Directory {
            ensure_dir(&root, parent_rel).map_err(|_| escape(&shown))?;
            directories.push(entry);
            continue;
        }
        let parent = ensure_dir(&root, parent_rel).map_err(|_| escape(&shown))?;
        let target = parent.join(&name);
        match kind {
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                make_node(&entry, &target, kind)?;
            }
            EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(tar_err)?
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                let Some(link_rel) = clean_relative(&link) else {
                    return Err(escape(&link.display().to_string()));
                };
                let src = root.join(&link_rel);
                let src_parent = src.parent().unwrap_or(&root);
                let inside = src_parent
                    .canonicalize()
                    .map(|p| p.starts_with(&root))
                    .unwrap_or(false);
                if !inside || link_rel.as_os_str().is_empty() {
                    return Err(escape(&link.display().to_string()));
                }
                remove_any(&target)?;
                fs::hard_link(&src, &target).ctx("hard linking", &target)?;
            }
            _ => {
                if kind.is_file() || kind == EntryType::Continuous || kind == EntryType::GNUSparse {
                    size += entry.header().size().unwrap_or(0);
                }
                let xattrs = pax_xattrs(&mut entry);
                if !entry.unpack_in(&root).map_err(tar_err)? {
                    return Err(escape(&shown));
                }
                if !kind.is_symlink() {
                    for (k, v) in xattrs {
                        rustix::fs::lsetxattr(&target, k.as_str(), &v, XattrFlags::empty())
                            .ctx("setting xattr on", &target)?;
                    }
                }
            }
        }
    }

    directories.sort_by(|a, b| b.path_bytes().cmp(&a.path_bytes()));
    for mut dir in directories {
        let raw = dir.path().map_err(tar_err)?.into_owned();
        let rel = clean_relative(&raw).unwrap_or_default();
        let target = root.join(&rel);
        let xattrs = pax_xattrs(&mut dir);
        if !dir.unpack_in(&root).map_err(tar_err)? {
            return Err(escape(&raw.display().to_string()));
        }
        for (k, v) in xattrs {
            rustix::fs::lsetxattr(&target, k.as_str(), &v, XattrFlags::empty())
                .ctx("setting xattr on", &target)?;
        }
        if let Ok(mtime) = dir.header().mtime() {
            let when = SystemTime::UNIX_EPOCH + Duration::from_secs(mtime);
            let f = fs::File::open(&target).ctx("opening", &target)?;
            f.set_modified(when).ctx("setting mtime of", &target)?;
        }
    }
    Ok(size)
}

/// The path as relative components, or None if it climbs out (`..`).
/// Leading `/` and `.` are dropped, as tar tools do.
fn clean_relative(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return None,
            Component::Normal(n) => out.push(n),
        }
    }
    Some(out)
}

/// Make sure the directory `rel` exists under `root` (creating missing parts
/// 0755 root-owned; a later directory entry sets the real mode) and return
/// its path. A component that is a symlink is followed only if it stays
/// inside `root`; anything else that is not a directory is an error.
fn ensure_dir(root: &Path, rel: &Path) -> io::Result<PathBuf> {
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        let next = cur.join(c);
        match fs::symlink_metadata(&next) {
            Ok(m) if m.is_dir() => cur = next,
            Ok(m) if m.file_type().is_symlink() => {
                let real = next.canonicalize()?;
                if !real.starts_with(root) || !real.is_dir() {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        "symlink leads outside the layer",
                    ));
                }
                cur = real;
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "not a directory",
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&next)?;
                fs::set_permissions(&next, fs::Permissions::from_mode(0o755))?;
                cur = next;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(cur)
}

fn remove_any(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).ctx("removing", p),
        Ok(_) => fs::remove_file(p).ctx("removing", p),
        Err(_) => Ok(()),
    }
}

fn make_node<R: Read>(entry: &tar::Entry<'_, R>, target: &Path, kind: EntryType) -> Result<()> {
    let h = entry.header();
    let mode = h.mode().unwrap_or(0o644) & 0o7777;
    let (ft, dev) = match kind {
        EntryType::Char | EntryType::Block => {
            let major = h.device_major().ok().flatten().unwrap_or(0);
            let minor = h.device_minor().ok().flatten().unwrap_or(0);
            let ft = if kind == EntryType::Char {
                FileType::CharacterDevice
            } else {
                FileType::BlockDevice
            };
            (ft, rustix::fs::makedev(major, minor))
        }
        _ => (FileType::Fifo, 0),
    };
    remove_any(target)?;
    rustix::fs::mknodat(CWD, target, ft, Mode::from_raw_mode(mode), dev)
        .ctx("creating node", target)?;
    let uid = h
        .uid()
        .ok()
        .and_then(|u| u32::try_from(u).ok())
        .unwrap_or(0);
    let gid = h
        .gid()
        .ok()
        .and_then(|g| u32::try_from(g).ok())
        .unwrap_or(0);
    std::os::unix::fs::lchown(target, Some(uid), Some(gid)).ctx("chown", target)?;
    // mknod applies the umask; set the mode exactly.
    fs::set_permissions(target, fs::Permissions::from_mode(mode)).ctx("chmod", target)?;
    Ok(())
}

/// The entry's extended attributes (PAX `SCHILY.xattr.*`), without the
/// overlayfs ones: a layer must not steer overlayfs.
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts.flatten() {
            if let Ok(key) = ext.key() {
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    if !name.starts_with("trusted.overlay.") {
                        out.push((name.to_string(), ext.value_bytes().to_vec()));
                    }
                }
            }
        }
    }
    out
}
