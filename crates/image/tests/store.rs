//! The image store through its public API, with real tars, real files,
//! real overlay mounts (root).
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use skiff_image::build::{busybox_layer, ImageBuilder, Layer, MTIME};
use skiff_image::mount::{is_mount_point, mount_rootfs, unmount_rootfs};
use skiff_image::{Error, ImageStore};

fn tmpdir(test: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("skiff-image-{test}-{}-", std::process::id()))
        .tempdir_in("/tmp")
        .unwrap()
}

/// Unmounts (and removes the overlay dirs of) a container dir on drop.
struct MountGuard(PathBuf);
impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = unmount_rootfs(&self.0);
    }
}

fn small_base() -> Layer {
    Layer::new()
        .dir("/etc", 0o755)
        .file("/etc/hostname", "base\n", 0o644)
}

#[test]
fn oci_archive_import_keeps_files_config_and_names() {
    let tmp = tmpdir("oci");
    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let archive = tmp.path().join("img.oci.tar");
    let built = ImageBuilder::busybox()
        .unwrap()
        .layer(
            Layer::new()
                .dir("/srv", 0o750)
                .file_owned("/srv/data.txt", "hello\n", 0o640, 1000, 2000)
                .hardlink("/srv/same.txt", "/srv/data.txt")
                .file("/srv/run.sh", "#!/bin/sh\necho hi\n", 0o4755)
                .symlink("/srv/abs", "/bin/busybox"),
        )
        .entrypoint(["/bin/sh", "-c"])
        .cmd(["echo hello"])
        .env("GREETING=hi")
        .working_dir("/srv")
        .user("1000:2000")
        .expose("8080/tcp")
        .write_oci_archive(&archive, Some("example.com/tools/busybox:1.0"))
        .unwrap();

    let imported = store.import(&archive, None).unwrap();
    assert_eq!(imported.len(), 1);
    let img = store
        .resolve("example.com/tools/busybox:1.0")
        .unwrap()
        .unwrap();
    assert_eq!(img.id, built.config_digest.to_string());
    assert_eq!(img.references, vec!["example.com/tools/busybox:1.0"]);
    assert_eq!(
        img.repo_digests,
        vec![format!(
            "example.com/tools/busybox@{}",
            built.manifest_digest
        )]
    );
    // Other ways to name it.
    let by_digest = format!("example.com/tools/busybox@{}", built.manifest_digest);
    assert_eq!(store.resolve(&by_digest).unwrap().unwrap().id, img.id);
    assert_eq!(store.resolve(&img.id).unwrap().unwrap().id, img.id);
    assert_eq!(store.resolve(&img.id[7..19]).unwrap().unwrap().id, img.id);
    assert!(store
        .resolve("example.com/tools/busybox:2.0")
        .unwrap()
        .is_none());
    assert!(store.resolve("busybox").unwrap().is_none());

    let cfg = img.config.config().as_ref().unwrap();
    assert_eq!(cfg.entrypoint().as_ref().unwrap(), &vec!["/bin/sh", "-c"]);
    assert_eq!(cfg.cmd().as_ref().unwrap(), &vec!["echo hello"]);
    assert!(cfg
        .env()
        .as_ref()
        .unwrap()
        .contains(&"GREETING=hi".to_string()));
    assert_eq!(cfg.working_dir().as_deref(), Some("/srv"));
    assert_eq!(cfg.user().as_deref(), Some("1000:2000"));
    assert_eq!(cfg.exposed_ports().as_ref().unwrap(), &vec!["8080/tcp"]);

    assert_eq!(img.layers.len(), 2);
    assert_eq!(img.diff_ids.len(), 2);
    let (base, top) = (&img.layers[0], &img.layers[1]);
    let bb = fs::metadata(base.join("bin/busybox")).unwrap();
    assert_eq!(bb.len(), fs::metadata("/bin/busybox").unwrap().len());
    assert_eq!(bb.mode() & 0o7777, 0o755);
    assert_eq!(
        fs::read_link(base.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        fs::metadata(base.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert_eq!(
        fs::metadata(base.join("root")).unwrap().mode() & 0o7777,
        0o700
    );

    let data = fs::metadata(top.join("srv/data.txt")).unwrap();
    assert_eq!((data.uid(), data.gid()), (1000, 2000));
    assert_eq!(data.mode() & 0o7777, 0o640);
    assert_eq!(data.mtime(), MTIME as i64);
    let same = fs::metadata(top.join("srv/same.txt")).unwrap();
    assert_eq!(same.ino(), data.ino(), "hard link within the layer");
    assert_eq!(
        fs::metadata(top.join("srv/run.sh")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert_eq!(
        fs::read_link(top.join("srv/abs")).unwrap(),
        Path::new("/bin/busybox")
    );
    let srv = fs::metadata(top.join("srv")).unwrap();
    assert_eq!(srv.mode() & 0o7777, 0o750);
    assert_eq!(
        srv.mtime(),
        MTIME as i64,
        "directory mtimes survive their children"
    );
    assert!(img.size >= bb.len() + 6);
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn docker_archive_import_with_repo_tags() {
    let tmp = tmpdir("docker");
    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let archive = tmp.path().join("img.docker.tar");
    let built = ImageBuilder::busybox()
        .unwrap()
        .layer(small_base())
        .cmd(["sleep", "1"])
        .write_docker_archive(&archive, &["busybox:test", "localhost:5000/bb:1"])
        .unwrap();
    store.import(&archive, None).unwrap();
    let img = store.resolve("busybox:test").unwrap().unwrap();
    assert_eq!(img.id, built.config_digest.to_string());
    assert_eq!(
        img.references,
        vec!["docker.io/library/busybox:test", "localhost:5000/bb:1"]
    );
    assert!(
        img.repo_digests.is_empty(),
        "docker archives carry no manifest digest"
    );
    assert_eq!(
        store
            .resolve("docker.io/library/busybox:test")
            .unwrap()
            .unwrap()
            .id,
        img.id
    );
    assert_eq!(
        store.resolve("localhost:5000/bb:1").unwrap().unwrap().id,
        img.id
    );
    assert_eq!(
        fs::read_to_string(img.layers[1].join("etc/hostname")).unwrap(),
        "base\n"
    );
    // `docker save | gzip` imports too.
    let gz = tmp.path().join("img.docker.tar.gz");
    let mut enc =
        flate2::write::GzEncoder::new(fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    std::io::copy(&mut fs::File::open(&archive).unwrap(), &mut enc).unwrap();
    enc.finish().unwrap();
    let from_gz = store.import(&gz, Some("busybox:gz")).unwrap();
    assert_eq!(from_gz[0].id, img.id);
    assert_eq!(
        store.remove("busybox:gz").unwrap(),
        vec!["docker.io/library/busybox:gz"]
    );

    // The same content as an OCI archive is the same image (same config).
    let oci = tmp.path().join("img.oci.tar");
    let built2 = ImageBuilder::busybox()
        .unwrap()
        .layer(small_base())
        .cmd(["sleep", "1"])
        .write_oci_archive(&oci, None)
        .unwrap();
    assert_eq!(built2.config_digest, built.config_digest);
    let again = store.import(&oci, Some("busybox:oci")).unwrap();
    assert_eq!(again[0].id, img.id);
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn oci_directory_with_nested_multi_platform_index_picks_this_platform() {
    let tmp = tmpdir("multiarch");
    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let dir = tmp.path().join("layout");
    let built = ImageBuilder::new()
        .layer(small_base())
        .gzip(false)
        .multi_platform(true)
        .write_oci_dir(&dir, Some("registry.local/multi:v1"))
        .unwrap();
    let imgs = store.import(&dir, None).unwrap();
    assert_eq!(imgs[0].id, built.config_digest.to_string());
    let img = store.resolve("registry.local/multi:v1").unwrap().unwrap();
    assert_eq!(
        img.config.architecture(),
        &oci_spec::image::Arch::default(),
        "the host's platform was chosen"
    );
}

#[test]
fn whiteouts_and_opaque_dirs_hide_lower_files_in_the_mounted_rootfs() {
    let tmp = tmpdir("whiteout");
    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let archive = tmp.path().join("img.tar");
    ImageBuilder::busybox()
        .unwrap()
        .layer(
            Layer::new()
                .dir("/a", 0o755)
                .file("/a/keep", "keep\n", 0o644)
                .file("/a/gone", "gone\n", 0o644)
                .dir("/d", 0o755)
                .file("/d/x", "x\n", 0o644)
                .dir("/d/sub", 0o755)
                .file("/d/sub/y", "y\n", 0o644),
        )
        .layer(
            Layer::new()
                .whiteout("/a/gone")
                .whiteout("/bin/cat")
                .opaque("/d")
                .file("/d/new", "new\n", 0o644),
        )
        .write_oci_archive(&archive, Some("test/whiteout:1"))
        .unwrap();
    let img = store.import(&archive, None).unwrap().remove(0);
    let top = &img.layers[2];
    // Converted to overlayfs form in the layer directory.
    let wh = fs::symlink_metadata(top.join("a/gone")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!top.join("a/.wh.gone").exists());
    let mut buf = [0u8; 8];
    let n = rustix::fs::lgetxattr(top.join("d"), "trusted.overlay.opaque", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"y");
    assert!(!top.join("d/.wh..wh..opq").exists());

    // Read through the layers without a mount: the same view.
    let top_first: Vec<PathBuf> = img.layers.iter().rev().cloned().collect();
    let read = |p: &str| {
        skiff_image::layers::read_file(&top_first, p, 1 << 20)
            .unwrap()
            .map(|b| String::from_utf8(b).unwrap())
    };
    assert_eq!(read("/a/keep").as_deref(), Some("keep\n"));
    assert_eq!(read("/a/gone"), None);
    assert_eq!(read("/d/x"), None);
    assert_eq!(read("/d/sub/y"), None);
    assert_eq!(read("/d/new").as_deref(), Some("new\n"));

    let container = tmp.path().join("c1");
    let _guard = MountGuard(container.clone());
    let rootfs = mount_rootfs(&img, &container).unwrap();
    assert!(is_mount_point(&rootfs));
    assert_eq!(fs::read_to_string(rootfs.join("a/keep")).unwrap(), "keep\n");
    assert!(
        !rootfs.join("a/gone").exists(),
        "whiteout hides a lower file"
    );
    assert!(rootfs.join("bin/sh").exists());
    assert!(fs::symlink_metadata(rootfs.join("bin/cat")).is_err());
    assert!(
        !rootfs.join("d/x").exists(),
        "opaque dir hides lower contents"
    );
    assert!(!rootfs.join("d/sub").exists());
    assert_eq!(fs::read_to_string(rootfs.join("d/new")).unwrap(), "new\n");
    assert!(fs::metadata(rootfs.join("bin/busybox")).unwrap().is_file());
    // Writes land in the container's upper dir, never in a shared layer.
    fs::write(rootfs.join("a/keep"), "changed\n").unwrap();
    assert_eq!(
        fs::read_to_string(img.layers[1].join("a/keep")).unwrap(),
        "keep\n"
    );
    assert_eq!(
        fs::read_to_string(container.join("upper/a/keep")).unwrap(),
        "changed\n"
    );
    // The copy fallback shows the same tree.
    let copy_dir = tmp.path().join("c2");
    let _guard2 = MountGuard(copy_dir.clone());
    let copied = skiff_image::mount::copy_rootfs(&img, &copy_dir).unwrap();
    assert!(!is_mount_point(&copied));
    assert_eq!(fs::read_to_string(copied.join("a/keep")).unwrap(), "keep\n");
    assert!(fs::symlink_metadata(copied.join("a/gone")).is_err());
    assert!(fs::symlink_metadata(copied.join("bin/cat")).is_err());
    assert_eq!(
        fs::read_link(copied.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert!(!copied.join("d/x").exists() && !copied.join("d/sub").exists());
    assert_eq!(fs::read_to_string(copied.join("d/new")).unwrap(), "new\n");
    let bb = fs::metadata(copied.join("bin/busybox")).unwrap();
    assert_eq!(bb.mode() & 0o7777, 0o755);
    assert_eq!(
        fs::metadata(copied.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    for p in ["a", "d", "bin", "d/new", "etc/passwd"] {
        let (c, o) = (
            fs::metadata(copied.join(p)).unwrap(),
            fs::metadata(rootfs.join(p)).unwrap(),
        );
        assert_eq!(
            (c.mode(), c.uid(), c.gid(), c.mtime()),
            (o.mode(), o.uid(), o.gid(), o.mtime()),
            "{p}: the copy matches the overlay"
        );
    }
    unmount_rootfs(&copy_dir).unwrap();
    assert!(!copied.exists());

    // Idempotent both ways.
    assert_eq!(mount_rootfs(&img, &container).unwrap(), rootfs);
    unmount_rootfs(&container).unwrap();
    assert!(!is_mount_point(&rootfs));
    assert!(!container.join("upper").exists());
    unmount_rootfs(&container).unwrap();
}

#[test]
fn more_layers_than_one_mount_page_holds() {
    let tmp = tmpdir("manylayers");
    let store = ImageStore::open(tmp.path().join("store-with-a-longer-name")).unwrap();
    let archive = tmp.path().join("img.tar");
    let mut b = ImageBuilder::new().gzip(false);
    for i in 0..50 {
        b = b.layer(Layer::new().file(&format!("/f{i}"), format!("{i}\n"), 0o644));
    }
    let img = b
        .write_oci_archive(&archive, Some("test/many:1"))
        .and_then(|_| store.import(&archive, None))
        .unwrap()
        .remove(0);
    let opts: usize = img.layers.iter().map(|l| l.as_os_str().len() + 1).sum();
    assert!(
        opts > 4096,
        "the test must exceed the legacy limit ({opts})"
    );
    let container = tmp.path().join("c");
    let _guard = MountGuard(container.clone());
    let rootfs = mount_rootfs(&img, &container).unwrap();
    assert_eq!(fs::read_to_string(rootfs.join("f0")).unwrap(), "0\n");
    assert_eq!(fs::read_to_string(rootfs.join("f49")).unwrap(), "49\n");
}

fn inode(p: &Path) -> u64 {
    fs::metadata(p).unwrap().ino()
}

#[test]
fn zstd_and_uncompressed_layers() {
    let tmp = tmpdir("zstd");
    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    for (name, builder) in [
        ("zstd", ImageBuilder::new().zstd()),
        ("plain", ImageBuilder::new().gzip(false)),
    ] {
        let archive = tmp.path().join(format!("{name}.tar"));
        let built = builder
            .layer(Layer::new().file("/z", name, 0o644))
            .write_oci_archive(&archive, Some(&format!("test/{name}:1")))
            .unwrap();
        let head = fs::read(store_blob_in(&archive, &built.layer_digests[0])).unwrap();
        let zstd_magic = head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
        assert_eq!(zstd_magic, name == "zstd");
        let img = store.import(&archive, None).unwrap().remove(0);
        assert_eq!(fs::read_to_string(img.layers[0].join("z")).unwrap(), name);
        assert_eq!(img.diff_ids[0], built.diff_ids[0].to_string());
    }
}

/// Unpack one blob of an OCI archive to look at it.
fn store_blob_in(archive: &Path, digest: &skiff_image::Digest) -> PathBuf {
    let out = archive.with_extension("blob");
    let mut a = tar::Archive::new(fs::File::open(archive).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().ends_with(digest.hex()) {
            e.unpack(&out).unwrap();
        }
    }
    out
}

#[test]
fn a_layer_shared_by_two_images_is_unpacked_once() {
    let tmp = tmpdir("shared");
    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let (a, b) = (tmp.path().join("a.tar"), tmp.path().join("b.tar"));
    ImageBuilder::new()
        .layer(busybox_layer().unwrap())
        .layer(Layer::new().file("/a", "a", 0o644))
        .write_oci_archive(&a, Some("test/a:1"))
        .unwrap();
    ImageBuilder::new()
        .layer(busybox_layer().unwrap())
        .layer(Layer::new().file("/b", "b", 0o644))
        .write_docker_archive(&b, &["test/b:1"])
        .unwrap();
    let ia = store.import(&a, None).unwrap().remove(0);
    let before = inode(&ia.layers[0]);
    let marker = ia.layers[0].join("bin/busybox");
    let busybox_ino = inode(&marker);
    let ib = store.import(&b, None).unwrap().remove(0);
    assert_ne!(ia.id, ib.id);
    assert_eq!(ia.layers[0], ib.layers[0]);
    assert_eq!(inode(&ib.layers[0]), before, "not unpacked again");
    assert_eq!(inode(&marker), busybox_ino);
    let layer_dirs = fs::read_dir(store.root().join("layers")).unwrap().count();
    assert_eq!(layer_dirs, 3);
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_rejected() {
    let tmp = tmpdir("digest");
    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let dir = tmp.path().join("layout");
    let built = ImageBuilder::new()
        .layer(small_base())
        .write_oci_dir(&dir, Some("test/bad:1"))
        .unwrap();
    let blob = dir.join("blobs/sha256").join(built.layer_digests[0].hex());
    let mut bytes = fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&blob, bytes).unwrap();
    let err = store.import(&dir, None).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(store.resolve("test/bad:1").unwrap().is_none());
    assert!(!store.blob_path(&built.layer_digests[0]).exists());

    // A layer whose uncompressed content is not the config's diff ID.
    // Rewrite the layout by hand: swap the layer blob for another valid tar.
    let other = Layer::new().file("/other", "o", 0o644).to_tar().unwrap();
    let layout = tmp.path().join("layout2");
    let built = ImageBuilder::new()
        .layer(small_base())
        .gzip(false)
        .write_oci_dir(&layout, Some("test/bad:3"))
        .unwrap();
    let other_digest = skiff_image::Digest::of(&other);
    fs::write(layout.join("blobs/sha256").join(other_digest.hex()), &other).unwrap();
    let manifest_path = layout
        .join("blobs/sha256")
        .join(built.manifest_digest.hex());
    let manifest = fs::read_to_string(&manifest_path)
        .unwrap()
        .replace(built.layer_digests[0].hex(), other_digest.hex())
        .replace(
            &format!("\"size\":{}", small_base().to_tar().unwrap().len()),
            &format!("\"size\":{}", other.len()),
        );
    let new_manifest = skiff_image::Digest::of(manifest.as_bytes());
    fs::write(
        layout.join("blobs/sha256").join(new_manifest.hex()),
        &manifest,
    )
    .unwrap();
    let index = fs::read_to_string(layout.join("index.json"))
        .unwrap()
        .replace(built.manifest_digest.hex(), new_manifest.hex())
        .replace(
            &format!("\"size\":{}", fs::metadata(&manifest_path).unwrap().len()),
            &format!("\"size\":{}", manifest.len()),
        );
    fs::write(layout.join("index.json"), index).unwrap();
    let err = store.import(&layout, None).unwrap_err();
    assert!(
        matches!(&err, Error::DigestMismatch { what, .. } if what.contains("uncompressed")),
        "{err}"
    );
    assert!(!store.layer_dir(&other_digest).exists());
    assert_eq!(
        fs::read_dir(store.root().join("layers")).unwrap().count(),
        0
    );
}

/// A raw tar entry whose name the tar crate's safe setters would refuse.
fn raw_entry(name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    h.set_size(data.len() as u64);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn raw_tar(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = entries.concat();
    out.extend_from_slice(&[0u8; 1024]);
    out
}

#[test]
fn layer_paths_escaping_the_layer_are_refused() {
    let tmp = tmpdir("traversal");
    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let outside_s = outside.to_str().unwrap();
    let secret = tmp.path().join("secret");
    fs::write(&secret, "secret").unwrap();
    let depth = "../".repeat(12);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            raw_tar(&[raw_entry(
                &format!("{depth}{}/pwned", &outside_s[1..]),
                tar::EntryType::Regular,
                None,
                b"x",
            )]),
        ),
        (
            "through-absolute-symlink",
            raw_tar(&[
                raw_entry("evil", tar::EntryType::Symlink, Some(outside_s), b""),
                raw_entry("evil/pwned", tar::EntryType::Regular, None, b"x"),
            ]),
        ),
        (
            "whiteout-through-symlink",
            raw_tar(&[
                raw_entry("evil", tar::EntryType::Symlink, Some(outside_s), b""),
                raw_entry("evil/.wh.pwned", tar::EntryType::Regular, None, b""),
            ]),
        ),
        (
            "whiteout-of-parent",
            raw_tar(&[
                raw_entry("d/", tar::EntryType::Directory, None, b""),
                raw_entry("d/.wh...", tar::EntryType::Regular, None, b""),
            ]),
        ),
        (
            "hardlink-out",
            raw_tar(&[raw_entry(
                "link",
                tar::EntryType::Link,
                Some(&format!("{depth}{}", &secret.to_str().unwrap()[1..])),
                b"",
            )]),
        ),
        (
            "hardlink-absolute",
            raw_tar(&[raw_entry(
                "link",
                tar::EntryType::Link,
                Some(secret.to_str().unwrap()),
                b"",
            )]),
        ),
    ];
    for (name, layer) in cases {
        let archive = tmp.path().join(format!("{name}.tar"));
        ImageBuilder::new()
            .gzip(false)
            .raw_layer(layer)
            .write_oci_archive(&archive, Some(&format!("test/{name}:1")))
            .unwrap();
        let err = store.import(&archive, None).unwrap_err();
        assert!(
            matches!(err, Error::PathEscape { .. }),
            "{name}: {err} {:?}",
            std::error::Error::source(&err).and_then(|e| e.source())
        );
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "{name}");
        assert_eq!(fs::metadata(&secret).unwrap().nlink(), 1, "{name}");
        assert_eq!(
            fs::read_dir(store.root().join("layers")).unwrap().count(),
            0
        );
        assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    }
}

#[test]
fn remove_and_gc_free_space_but_keep_used_images() {
    let tmp = tmpdir("gc");
    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let (a, b) = (tmp.path().join("a.tar"), tmp.path().join("b.tar"));
    ImageBuilder::new()
        .layer(Layer::new().file("/a", vec![b'a'; 100_000], 0o644))
        .write_oci_archive(&a, Some("test/a:1"))
        .unwrap();
    ImageBuilder::new()
        .layer(Layer::new().file("/b", vec![b'b'; 50_000], 0o644))
        .write_oci_archive(&b, Some("test/b:1"))
        .unwrap();
    let ia = store.import(&a, None).unwrap().remove(0);
    let ib = store.import(&b, None).unwrap().remove(0);

    // Nothing to collect while both are tagged.
    let r = store.gc(&HashSet::new()).unwrap();
    assert_eq!(
        (r.images_removed.len(), r.blobs_removed, r.layers_removed),
        (0, 0, 0)
    );

    assert_eq!(
        store.remove("test/a:1").unwrap(),
        vec!["docker.io/test/a:1"]
    );
    assert!(store.resolve("test/a:1").unwrap().is_none());
    // Untagged but in use: kept.
    let r = store.gc(&HashSet::from([ia.id.clone()])).unwrap();
    assert!(r.images_removed.is_empty());
    assert!(ia.layers[0].join("a").exists());
    assert!(store.resolve(&ia.id).unwrap().is_some());
    // No longer in use: gone, with its blobs and its layer.
    let r = store.gc(&HashSet::new()).unwrap();
    assert_eq!(r.images_removed, vec![ia.id.clone()]);
    assert_eq!(r.layers_removed, 1);
    assert_eq!(r.blobs_removed, 3, "config, manifest, layer");
    assert!(r.bytes_freed >= 100_000, "{r:?}");
    assert!(!ia.layers[0].exists());
    assert!(store.resolve(&ia.id).unwrap().is_none());
    let ib2 = store.resolve("test/b:1").unwrap().unwrap();
    assert!(ib2.layers[0].join("b").exists());

    // A mounted rootfs keeps its layers even when the caller forgets it.
    let container = tmp.path().join("c");
    let _guard = MountGuard(container.clone());
    mount_rootfs(&ib, &container).unwrap();
    store.remove(&ib.id).unwrap(); // by ID: tags and record go at once
    let r = store.gc(&HashSet::new()).unwrap();
    assert_eq!((r.blobs_removed, r.layers_removed), (3, 0));
    assert!(container.join("rootfs/b").exists());
    unmount_rootfs(&container).unwrap();
    let r = store.gc(&HashSet::new()).unwrap();
    assert_eq!(r.layers_removed, 1);
    assert_eq!(
        fs::read_dir(store.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert!(matches!(store.remove("test/b:1"), Err(Error::NotFound(_))));
}

#[test]
fn concurrent_imports_of_the_same_image() {
    let tmp = tmpdir("concurrent");
    let root = tmp.path().join("store");
    let archive = tmp.path().join("img.tar");
    let built = ImageBuilder::busybox()
        .unwrap()
        .layer(small_base())
        .write_oci_archive(&archive, Some("test/same:1"))
        .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (root, archive) = (root.clone(), archive.clone());
            std::thread::spawn(move || {
                let store = ImageStore::open(&root).unwrap();
                store.import(&archive, None).unwrap().remove(0).id
            })
        })
        .collect();
    // A gc running meanwhile must not break them.
    let store = ImageStore::open(&root).unwrap();
    store.gc(&HashSet::new()).unwrap();
    for t in threads {
        assert_eq!(t.join().unwrap(), built.config_digest.to_string());
    }
    let images = store.list().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(fs::read_dir(root.join("layers")).unwrap().count(), 2);
    for l in &images[0].layers {
        assert!(l.exists());
    }
    store.gc(&HashSet::new()).unwrap();
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
}

#[test]
fn bad_input_is_reported() {
    let tmp = tmpdir("badinput");
    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let text = tmp.path().join("notes.txt");
    fs::write(&text, "this is not an image\n".repeat(100)).unwrap();
    assert!(matches!(
        store.import(&text, None),
        Err(Error::NotAnArchive { .. })
    ));
    let empty_tar = tmp.path().join("empty.tar");
    fs::write(&empty_tar, [0u8; 1024]).unwrap();
    assert!(matches!(
        store.import(&empty_tar, None),
        Err(Error::NotAnArchive { .. })
    ));
    assert!(store.import(&tmp.path().join("missing.tar"), None).is_err());
    assert!(matches!(
        store.import(&text, Some("Bad::Name")),
        Err(Error::InvalidReference { .. })
    ));
    assert!(store.resolve("nothing:here").unwrap().is_none());
    assert!(matches!(
        store.remove("nothing:here"),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn a_lease_keeps_an_image_while_its_container_directory_exists() {
    let tmp = tmpdir("lease");
    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let archive = tmp.path().join("l.tar");
    ImageBuilder::new()
        .layer(Layer::new().file("/l", "l\n", 0o644))
        .write_oci_archive(&archive, Some("test/l:1"))
        .unwrap();
    let img = store.import(&archive, None).unwrap().remove(0);
    let container = tmp.path().join("c");
    let planned = skiff_image::mount::plan_rootfs(&img, &container).unwrap();
    store.lease(&img, &container).unwrap();
    // Untagged, unmounted on the host, nobody says it is in use: the lease
    // keeps it.
    store.remove(&img.id).unwrap();
    let r = store.gc(&HashSet::new()).unwrap();
    assert_eq!(r.layers_removed, 0, "{r:?}");
    assert!(img.layers[0].join("l").exists());
    assert_eq!(planned.layers, vec![img.layers[0].clone()]);
    if planned.overlay.is_some() {
        assert!(
            !is_mount_point(&planned.path),
            "mounted by the runtime only"
        );
    }
    // The container directory gone (a crash before `unlease`): the lease is stale.
    unmount_rootfs(&container).unwrap();
    fs::remove_dir_all(&container).unwrap();
    let r = store.gc(&HashSet::new()).unwrap();
    assert_eq!(r.layers_removed, 1);
    assert!(!img.layers[0].exists());
    assert_eq!(store.leased(), (HashSet::new(), HashSet::new()));
    store.unlease(&container).unwrap(); // idempotent
}
