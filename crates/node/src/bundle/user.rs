//! Users and groups of a container image: `/etc/passwd` and `/etc/group`
//! read through the image's layers (the container's overlay is mounted only
//! inside the container). The files come from the image, so every path
//! component (symlinks included) is resolved as if the image were `/`
//! (`skiff_image::layers`): a link to `/etc/shadow` or `../../` never
//! reaches the host. Reads are bounded.

use std::path::PathBuf;

use super::BundleError;

/// The most of `/etc/passwd` or `/etc/group` we read (a hostile image may
/// ship a huge one).
const MAX_FILE_BYTES: u64 = 4 << 20;

/// One `/etc/passwd` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// One `/etc/group` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Read a file of the image by its in-container path, through its layer
/// directories (top first); `None` when it does not exist.
fn read_in_layers(layers: &[PathBuf], path: &str) -> Result<Option<String>, BundleError> {
    let top = layers.first().cloned().unwrap_or_default();
    skiff_image::layers::read_file(layers, path, MAX_FILE_BYTES)
        .map(|d| d.map(|b| String::from_utf8_lossy(&b).into_owned()))
        .map_err(|source| BundleError::Rootfs {
            path: top.join(path.trim_start_matches('/')),
            source,
        })
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?.trim();
            let _password = f.next()?;
            let uid = f.next()?.trim().parse().ok()?;
            let gid = f.next()?.trim().parse().ok()?;
            Some(PasswdEntry {
                name: name.to_string(),
                uid,
                gid,
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?.trim();
            let _password = f.next()?;
            let gid = f.next()?.trim().parse().ok()?;
            let members = f
                .next()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(String::from)
                .collect();
            Some(GroupEntry {
                name: name.to_string(),
                gid,
                members,
            })
        })
        .collect()
}

/// The users and groups of one rootfs, read once.
#[derive(Clone, Debug, Default)]
pub struct ImageUsers {
    pub passwd: Vec<PasswdEntry>,
    pub groups: Vec<GroupEntry>,
}

impl ImageUsers {
    /// Read `/etc/passwd` and `/etc/group` of the image whose layer
    /// directories are `layers` (top first; a complete rootfs is one
    /// layer). Missing files are empty lists.
    pub fn read(layers: &[PathBuf]) -> Result<Self, BundleError> {
        Ok(Self {
            passwd: read_in_layers(layers, "/etc/passwd")?
                .map(|t| parse_passwd(&t))
                .unwrap_or_default(),
            groups: read_in_layers(layers, "/etc/group")?
                .map(|t| parse_group(&t))
                .unwrap_or_default(),
        })
    }

    fn by_uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.passwd.iter().find(|e| e.uid == uid)
    }

    /// Resolve an image `User` string (`""`, `name`, `uid`, `uid:gid`,
    /// `name:group`, …) to `(uid, gid, user name if known)`. A numeric user
    /// missing from `/etc/passwd` is fine (gid 0); a named one is an error.
    pub fn resolve(&self, user: &str) -> Result<(u32, u32, Option<String>), BundleError> {
        let (u, g) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user, None),
        };
        let (uid, mut gid, name) = if u.is_empty() {
            let e = self.by_uid(0);
            (0, e.map_or(0, |e| e.gid), e.map(|e| e.name.clone()))
        } else if let Ok(uid) = u.parse::<u32>() {
            let e = self.by_uid(uid);
            (uid, e.map_or(0, |e| e.gid), e.map(|e| e.name.clone()))
        } else {
            let e = self.passwd.iter().find(|e| e.name == u).ok_or_else(|| {
                BundleError::UnknownUser {
                    user: u.to_string(),
                }
            })?;
            (e.uid, e.gid, Some(e.name.clone()))
        };
        if let Some(g) = g.filter(|g| !g.is_empty()) {
            gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => {
                    self.groups
                        .iter()
                        .find(|e| e.name == g)
                        .ok_or_else(|| BundleError::UnknownGroup {
                            group: g.to_string(),
                        })?
                        .gid
                }
            };
        }
        Ok((uid, gid, name))
    }

    /// The primary gid of `uid` from `/etc/passwd`, 0 when it is not listed.
    pub fn primary_gid(&self, uid: u32) -> u32 {
        self.by_uid(uid).map_or(0, |e| e.gid)
    }

    /// The name of `uid` from `/etc/passwd`.
    pub fn name_of(&self, uid: u32) -> Option<String> {
        self.by_uid(uid).map(|e| e.name.clone())
    }

    /// The gids of the groups that list `name` as a member (other than a
    /// group named like the user itself), in file order.
    pub fn member_gids(&self, name: &str) -> Vec<u32> {
        self.groups
            .iter()
            .filter(|g| g.name != name && g.members.iter().any(|m| m == name))
            .map(|g| g.gid)
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::Builder::new()
            .prefix("skiff-bundle-user-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n# comment\nnobody:x:65534:65534::/:/bin/false\napp:x:1000:1001::/home/app:/bin/sh\nbroken\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwheel:x:10:root,app\napp:x:1001:app\nstaff:x:50:app\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn resolves_user_strings() {
        let dir = rootfs();
        let users = ImageUsers::read(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(users.resolve("").unwrap(), (0, 0, Some("root".into())));
        assert_eq!(
            users.resolve("app").unwrap(),
            (1000, 1001, Some("app".into()))
        );
        assert_eq!(
            users.resolve("1000").unwrap(),
            (1000, 1001, Some("app".into()))
        );
        assert_eq!(users.resolve("4242").unwrap(), (4242, 0, None));
        assert_eq!(users.resolve("4242:7").unwrap(), (4242, 7, None));
        assert_eq!(
            users.resolve("app:staff").unwrap(),
            (1000, 50, Some("app".into()))
        );
        assert_eq!(users.resolve("nobody:0").unwrap().1, 0);
        assert_eq!(
            users.resolve("ghost").unwrap_err().to_string(),
            "unable to find user ghost: no matching entries in passwd file"
        );
        assert_eq!(
            users.resolve("app:ghosts").unwrap_err().to_string(),
            "unable to find group ghosts: no matching entries in group file"
        );
        assert_eq!(users.member_gids("app"), vec![10, 50]);
        assert_eq!(users.member_gids("root"), vec![10]);
    }

    #[test]
    fn symlinks_stay_inside_the_rootfs() {
        let dir = rootfs();
        let host = tempfile::Builder::new()
            .prefix("skiff-bundle-host-")
            .tempdir()
            .unwrap();
        std::fs::write(host.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();
        std::fs::remove_file(dir.path().join("etc/passwd")).unwrap();
        // An absolute link to a host file resolves inside the rootfs, where
        // there is no such file.
        std::os::unix::fs::symlink(host.path().join("passwd"), dir.path().join("etc/passwd"))
            .unwrap();
        let users = ImageUsers::read(&[dir.path().to_path_buf()]).unwrap();
        assert!(users.passwd.is_empty());
        // So does a relative one climbing out.
        std::fs::remove_file(dir.path().join("etc/passwd")).unwrap();
        let depth = dir.path().components().count();
        let up = "../".repeat(depth + 2);
        let rel = format!("{up}{}", host.path().join("passwd").display());
        std::os::unix::fs::symlink(rel, dir.path().join("etc/passwd")).unwrap();
        let users = ImageUsers::read(&[dir.path().to_path_buf()]).unwrap();
        assert!(users.passwd.is_empty());
        // A link inside the rootfs is followed.
        std::fs::remove_file(dir.path().join("etc/passwd")).unwrap();
        std::fs::write(dir.path().join("etc/passwd.real"), "u:x:7:8::/:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd.real", dir.path().join("etc/passwd")).unwrap();
        let users = ImageUsers::read(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(users.resolve("u").unwrap(), (7, 8, Some("u".into())));
    }
}
