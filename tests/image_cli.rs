//! `skiff image` end to end: the built binary against a real store.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use skiff_image::build::{ImageBuilder, Layer};

fn skiff(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("image")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("SKIFF_DATA_DIR")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn image_import_ls_rm_prune() {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("skiff-image-cli-{}-", std::process::id()))
        .tempdir_in("/tmp")
        .unwrap();
    let data = tmp.path().join("data");
    let oci = tmp.path().join("bb.oci.tar");
    let docker = tmp.path().join("app.docker.tar");
    let unnamed = tmp.path().join("unnamed.oci.tar");
    let bb = ImageBuilder::busybox()
        .unwrap()
        .write_oci_archive(&oci, Some("example.com/cli/busybox:1"))
        .unwrap();
    let app = ImageBuilder::busybox()
        .unwrap()
        .layer(Layer::new().file("/app", "app\n", 0o755))
        .write_docker_archive(&docker, &["app:v2"])
        .unwrap();
    ImageBuilder::new()
        .layer(Layer::new().file("/x", "x", 0o644))
        .write_oci_archive(&unnamed, None)
        .unwrap();

    let out = ok(&skiff(&data, &["import", oci.to_str().unwrap()]));
    assert!(out.contains("imported example.com/cli/busybox:1"), "{out}");
    assert!(out.contains(&bb.config_digest.to_string()), "{out}");
    // Several processes importing at once (and the same image again).
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_skiff"))
                .args(["image", "import"])
                .arg(&docker)
                .arg("--data-dir")
                .arg(&data)
                .output()
        })
        .collect();
    for c in children {
        ok(&c.unwrap());
    }
    let out = ok(&skiff(
        &data,
        &["import", unnamed.to_str().unwrap(), "--name", "named:later"],
    ));
    assert!(out.contains("docker.io/library/named:later"), "{out}");

    let ls = ok(&skiff(&data, &["ls"]));
    let lines: Vec<&str> = ls.lines().collect();
    assert!(lines[0].starts_with("REFERENCE"), "{ls}");
    assert!(
        lines[0].contains("IMAGE ID") && lines[0].contains("SIZE"),
        "{ls}"
    );
    assert_eq!(lines.len(), 4, "{ls}");
    let app_row = lines
        .iter()
        .find(|l| l.starts_with("docker.io/library/app:v2"))
        .unwrap();
    assert!(app_row.contains(&app.config_digest.hex()[..12]), "{ls}");
    assert!(
        !app_row.contains(&app.config_digest.hex()[..13]),
        "short id: {ls}"
    );
    assert!(app_row.trim_end().ends_with("MB"), "{ls}");
    assert!(ls.contains("example.com/cli/busybox:1"), "{ls}");

    let out = ok(&skiff(&data, &["rm", "app:v2", "named:later"]));
    assert!(out.contains("untagged docker.io/library/app:v2"), "{out}");
    let ls = ok(&skiff(&data, &["ls"]));
    assert!(!ls.contains("app:v2"), "{ls}");
    assert!(ls.contains("<none>"), "{ls}");
    let out = ok(&skiff(&data, &["prune"]));
    assert!(out.contains("removed 2 images"), "{out}");
    let ls = ok(&skiff(&data, &["ls"]));
    assert_eq!(ls.lines().count(), 2, "{ls}");
    assert!(ls.contains("example.com/cli/busybox:1"), "{ls}");

    // Bad input: a clear message and a non-zero exit.
    let text = tmp.path().join("notes.txt");
    std::fs::write(&text, "hello\n".repeat(200)).unwrap();
    let err = failed(&skiff(&data, &["import", text.to_str().unwrap()]));
    assert!(err.contains("not an image archive"), "{err}");
    let err = failed(&skiff(&data, &["rm", "no/such:image"]));
    assert!(err.contains("not found"), "{err}");
    let err = failed(&skiff(&data, &["import", "/nonexistent/x.tar"]));
    assert!(err.contains("/nonexistent/x.tar"), "{err}");
}

/// A docker-registry process on 127.0.0.1, killed on drop.
struct Registry(std::process::Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn image_pull_from_a_local_registry() {
    use std::io::{Read, Write};
    let tmp = tempfile::Builder::new()
        .prefix(&format!("skiff-image-clipull-{}-", std::process::id()))
        .tempdir_in("/tmp")
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = tmp.path().join("registry.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            tmp.path().join("registry").display()
        ),
    )
    .unwrap();
    let _registry = Registry(
        Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut up = false;
    for _ in 0..200 {
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
            let mut buf = [0u8; 8];
            if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") {
                up = true;
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(up, "docker-registry did not start on {addr}");

    let archive = tmp.path().join("bb.tar");
    let built = ImageBuilder::busybox()
        .unwrap()
        .write_oci_archive(&archive, None)
        .unwrap();
    let pushed = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("docker://{addr}/cli/bb:1"))
        .output()
        .unwrap();
    assert!(pushed.status.success(), "{pushed:?}");

    let data = tmp.path().join("data");
    let pull = |reference: String| {
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["image", "pull", &reference, "--insecure-registry", &addr])
            .arg("--data-dir")
            .arg(&data)
            .env("HOME", tmp.path())
            .output()
            .unwrap()
    };
    let out = ok(&pull(format!("{addr}/cli/bb:1")));
    assert!(out.contains(&built.config_digest.to_string()), "{out}");
    let ls = ok(&skiff(&data, &["ls"]));
    assert!(ls.contains(&format!("{addr}/cli/bb:1")), "{ls}");
    let err = failed(&pull(format!("{addr}/cli/missing:1")));
    assert!(err.to_lowercase().contains("unknown"), "{err}");
}

#[tokio::test]
async fn image_import_killed_midway_leaves_a_consistent_store() {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("skiff-image-clikill-{}-", std::process::id()))
        .tempdir_in("/tmp")
        .unwrap();
    let data = tmp.path().join("data");
    let archive = tmp.path().join("big.tar");
    // Incompressible-ish content so the import takes a while.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let big: Vec<u8> = (0..48 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    ImageBuilder::new()
        .gzip(false)
        .layer(Layer::new().file("/big", big, 0o644))
        .layer(Layer::new().file("/small", "s", 0o644))
        .write_oci_archive(&archive, Some("big:1"))
        .unwrap();
    for delay_ms in [20, 150, 400] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["image", "import"])
            .arg(&archive)
            .arg("--data-dir")
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        let _ = child.kill(); // SIGKILL, wherever it is
        let _ = child.wait();
        // Whatever the moment: the image is either listed whole or not at all.
        let ls = ok(&skiff(&data, &["ls"]));
        if ls.contains("docker.io/library/big:1") {
            let layers = data.join("images/layers");
            for e in std::fs::read_dir(&layers).unwrap() {
                assert!(e.unwrap().path().join("meta.json").exists());
            }
            ok(&skiff(&data, &["rm", "big:1"]));
        }
        ok(&skiff(&data, &["prune"]));
        assert_eq!(
            std::fs::read_dir(data.join("images/layers"))
                .unwrap()
                .count(),
            0,
            "prune removes what a killed import left"
        );
    }
    let out = ok(&skiff(&data, &["import", archive.to_str().unwrap()]));
    assert!(out.contains("big:1"), "{out}");
    ok(&skiff(&data, &["prune"]));
    assert_eq!(
        std::fs::read_dir(data.join("images/tmp")).unwrap().count(),
        0
    );
    let big = std::fs::metadata(
        std::fs::read_dir(data.join("images/layers"))
            .unwrap()
            .map(|e| e.unwrap().path().join("fs/big"))
            .find(|p| p.exists())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(big.len(), 48 << 20);
}
