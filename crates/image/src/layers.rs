//! Reading a file of an image through its unpacked layers, as overlayfs
//! would show it, without mounting anything: the node reads `/etc/passwd`
//! and `/etc/group` of an image this way while the container's rootfs is
//! mounted only inside the container's own mount namespace.
//!
//! Each path component is looked up in the layers top first: a whiteout
//! (0/0 character device) hides the name and everything below it; a miss
//! goes on to the next layer unless the parent directory in this layer is
//! opaque (`trusted.overlay.opaque=y`) or is not a directory there.
//! Symbolic links are followed in the merged view (absolute targets from
//! the image root, `..` never above it, at most 40 links), never through
//! the host's file system: every layer lookup refuses symlinks.

use std::collections::VecDeque;
use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::unpack::OPAQUE_XATTR;

/// Symbolic links followed in one lookup at most (as Linux' MAXSYMLINKS).
const MAX_LINKS: usize = 40;

/// What one layer has at a relative path.
enum Entry {
    /// Nothing here; lower layers may have it.
    Missing,
    /// Nothing here, and lower layers are hidden (whiteout, opaque parent,
    /// a non-directory on the way).
    Hidden,
    Dir,
    File,
    Symlink(PathBuf),
    /// A device, FIFO or socket.
    Other,
}

fn open_in(layer: &Path, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    let root = rustix::fs::open(
        layer,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::openat2(
        &root,
        rel,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS | ResolveFlags::BENEATH,
    )
}

fn is_opaque(layer: &Path, dir: &Path) -> bool {
    if dir.as_os_str().is_empty() {
        return false;
    }
    // The directory was just checked to be reached without symlinks.
    let mut buf = [0u8; 2];
    rustix::fs::lgetxattr(layer.join(dir), OPAQUE_XATTR, &mut buf)
        .map(|n| buf.get(..n) == Some(b"y".as_slice()))
        .unwrap_or(false)
}

fn entry(layer: &Path, rel: &Path) -> std::io::Result<Entry> {
    let fd = match open_in(layer, rel, OFlags::PATH) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => {
            let parent = rel.parent().unwrap_or(Path::new(""));
            return Ok(if is_opaque(layer, parent) {
                Entry::Hidden
            } else {
                Entry::Missing
            });
        }
        // A symlink or a non-directory on the way: in this layer the parent
        // is no directory, so it hides whatever lower layers have.
        Err(Errno::LOOP) | Err(Errno::NOTDIR) | Err(Errno::XDEV) => return Ok(Entry::Hidden),
        Err(e) => return Err(e.into()),
    };
    let st = rustix::fs::fstat(&fd)?;
    Ok(match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => Entry::Dir,
        FileType::RegularFile => Entry::File,
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(&fd, "", Vec::new())?;
            Entry::Symlink(PathBuf::from(
                <std::ffi::OsString as OsStringExt>::from_vec(target.into_bytes()),
            ))
        }
        FileType::CharacterDevice if st.st_rdev == 0 => Entry::Hidden,
        _ => Entry::Other,
    })
}

/// The first layer (top first) with something at `rel`, and what.
fn lookup(layers: &[PathBuf], rel: &Path) -> std::io::Result<Option<(usize, Entry)>> {
    for (i, layer) in layers.iter().enumerate() {
        match entry(layer, rel)? {
            Entry::Missing => continue,
            Entry::Hidden => return Ok(None),
            found => return Ok(Some((i, found))),
        }
    }
    Ok(None)
}

fn components(p: &Path) -> impl Iterator<Item = String> + '_ {
    p.components().filter_map(|c| match c {
        std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
        std::path::Component::ParentDir => Some("..".into()),
        _ => None,
    })
}

/// Read the regular file at `path` (in-image, absolute or not) of the image
/// whose unpacked layer directories are `layers`, **top first**. `None`
/// when there is no such file (missing, whited out, a directory or a
/// device); files larger than `max` bytes are an error.
///
/// # Errors
/// I/O errors of the layer directories, a symlink loop, a file over `max`.
pub fn read_file(layers: &[PathBuf], path: &str, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut todo: VecDeque<String> = components(Path::new(path)).collect();
    let mut at = PathBuf::new();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            at.pop();
            continue;
        }
        let candidate = at.join(&c);
        match lookup(layers, &candidate)? {
            None => return Ok(None),
            Some((_, Entry::Dir)) => at = candidate,
            Some((_, Entry::Symlink(target))) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(std::io::Error::other(format!(
                        "too many levels of symbolic links resolving {path}"
                    )));
                }
                if target.is_absolute() {
                    at = PathBuf::new();
                }
                for (k, t) in components(&target).enumerate() {
                    todo.insert(k, t);
                }
            }
            Some((i, Entry::File)) if todo.is_empty() => {
                let Some(layer) = layers.get(i) else {
                    return Ok(None);
                };
                let fd = open_in(layer, &candidate, OFlags::RDONLY | OFlags::NONBLOCK)?;
                let mut data = Vec::new();
                fs::File::from(fd)
                    .take(max.saturating_add(1))
                    .read_to_end(&mut data)?;
                if data.len() as u64 > max {
                    return Err(std::io::Error::other(format!(
                        "{path} of the image is larger than {max} bytes"
                    )));
                }
                return Ok(Some(data));
            }
            Some(_) => return Ok(None), // a file mid-path, a device, a directory at the end
        }
    }
    Ok(None) // the path named a directory
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn layer(root: &Path, name: &str) -> PathBuf {
        let p = root.join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }

    fn write(layer: &Path, rel: &str, text: &str) {
        let p = layer.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn read(layers: &[PathBuf], path: &str) -> Option<String> {
        read_file(layers, path, 1 << 20)
            .unwrap()
            .map(|d| String::from_utf8(d).unwrap())
    }

    #[test]
    fn upper_layers_win_and_misses_fall_through() {
        let t = tempfile::tempdir().unwrap();
        let (low, up) = (layer(t.path(), "low"), layer(t.path(), "up"));
        write(&low, "etc/passwd", "low");
        write(&low, "etc/group", "low group");
        write(&up, "etc/passwd", "up");
        let layers = vec![up, low];
        assert_eq!(read(&layers, "/etc/passwd").as_deref(), Some("up"));
        assert_eq!(read(&layers, "etc/group").as_deref(), Some("low group"));
        assert_eq!(read(&layers, "/etc/shadow"), None);
        assert_eq!(read(&layers, "/etc"), None, "a directory is not a file");
        assert_eq!(read(&layers, "/etc/passwd/x"), None);
    }

    #[test]
    fn symlinks_resolve_in_the_merged_view_and_stay_inside() {
        let t = tempfile::tempdir().unwrap();
        let (low, up) = (layer(t.path(), "low"), layer(t.path(), "up"));
        write(&low, "usr/etc/passwd", "real");
        fs::create_dir_all(up.join("x")).unwrap();
        symlink("/usr/etc", up.join("etc")).unwrap();
        symlink("../../../../../usr/etc/passwd", up.join("x/rel")).unwrap();
        // A link whose host meaning would escape the layer.
        write(t.path(), "secret", "host");
        symlink(t.path().join("secret"), up.join("abs")).unwrap();
        symlink("loop", up.join("loop")).unwrap();
        let layers = vec![up, low];
        assert_eq!(read(&layers, "/etc/passwd").as_deref(), Some("real"));
        assert_eq!(read(&layers, "/x/rel").as_deref(), Some("real"));
        assert_eq!(read(&layers, "/abs"), None);
        assert!(read_file(&layers, "/loop", 10).is_err());
    }

    #[test]
    fn files_over_the_limit_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let l = layer(t.path(), "l");
        write(&l, "big", "0123456789");
        assert!(read_file(std::slice::from_ref(&l), "/big", 9).is_err());
        assert_eq!(read_file(&[l], "/big", 10).unwrap().unwrap().len(), 10);
    }

    #[test]
    fn whiteouts_and_opaque_directories_hide_lower_layers() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: whiteouts need root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let (low, up) = (layer(t.path(), "low"), layer(t.path(), "up"));
        write(&low, "etc/passwd", "low");
        write(&low, "etc/group", "low");
        write(&low, "opt/a", "low");
        fs::create_dir_all(up.join("etc")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            up.join("etc/passwd"),
            FileType::CharacterDevice,
            Mode::empty(),
            0,
        )
        .unwrap();
        fs::create_dir_all(up.join("opt")).unwrap();
        rustix::fs::lsetxattr(
            up.join("opt"),
            OPAQUE_XATTR,
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        // A file where the lower layer has a directory hides its content.
        write(&low, "srv/x", "low");
        write(&up, "srv", "file");
        let layers = vec![up, low];
        assert_eq!(read(&layers, "/etc/passwd"), None);
        assert_eq!(read(&layers, "/etc/group").as_deref(), Some("low"));
        assert_eq!(read(&layers, "/opt/a"), None);
        assert_eq!(read(&layers, "/srv/x"), None);
    }
}
