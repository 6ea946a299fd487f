//! Pulls from a real registry: Debian's docker-registry on 127.0.0.1,
//! images pushed with skopeo from archives the builder wrote.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use skiff_image::build::{ImageBuilder, Layer};
use skiff_image::pull::{auth_from_docker_config, PullOptions, PullPolicy, RegistryAuth};
use skiff_image::{Error, ImageStore};

/// bcrypt of "skiff-secret" (user "skiff"), for the registry's htpasswd.
const HTPASSWD: &str = "skiff:$2a$05$skiffimagetestsaltsaleAXxBXJzDEPIv9Xz5jUtI23CfKJZnnaa\n";

/// A docker-registry process on 127.0.0.1, killed on drop.
struct Registry {
    child: Child,
    addr: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_registry(dir: &Path, with_auth: bool) -> Registry {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut cfg = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
        dir.join("data").display()
    );
    if with_auth {
        let htpasswd = dir.join("htpasswd");
        std::fs::write(&htpasswd, HTPASSWD).unwrap();
        cfg.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
            htpasswd.display()
        ));
    }
    let cfg_path = dir.join("config.yml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&cfg_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry (Debian package docker-registry) must be installed");
    let reg = Registry { child, addr };
    for _ in 0..200 {
        if let Ok(mut s) = TcpStream::connect(&reg.addr) {
            let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
            let mut buf = [0u8; 12];
            if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") {
                return reg;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("docker-registry did not come up on {}", reg.addr);
}

fn skopeo_push(archive: &Path, dest: &str, creds: Option<&str>, all: bool) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
    if all {
        cmd.arg("--all");
    }
    if let Some(c) = creds {
        cmd.args(["--dest-creds", c]);
    }
    let out = cmd
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("docker://{dest}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tmpdir(test: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("skiff-image-{test}-{}-", std::process::id()))
        .tempdir_in("/tmp")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_from_a_local_registry_by_tag_digest_and_platform() {
    let tmp = tmpdir("pull");
    let reg = start_registry(tmp.path(), false).await;
    let opts = PullOptions {
        insecure_registries: vec![reg.addr.clone()],
    };
    let archive = tmp.path().join("bb.tar");
    let built = ImageBuilder::busybox()
        .unwrap()
        .layer(Layer::new().file("/etc/motd", "pulled\n", 0o644))
        .cmd(["cat", "/etc/motd"])
        .write_oci_archive(&archive, None)
        .unwrap();
    skopeo_push(&archive, &format!("{}/test/bb:1", reg.addr), None, false);

    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let name = format!("{}/test/bb:1", reg.addr);
    let img = store
        .pull(&name, &RegistryAuth::Anonymous, &opts)
        .await
        .unwrap();
    assert_eq!(img.id, built.config_digest.to_string());
    assert_eq!(img.references, vec![name.clone()]);
    assert_eq!(
        std::fs::read_to_string(img.layers[1].join("etc/motd")).unwrap(),
        "pulled\n"
    );
    assert!(img.layers[0].join("bin/busybox").is_file());
    assert_eq!(store.resolve(&name).unwrap().unwrap().id, img.id);
    // By digest, as a pod spec pins it.
    let by_digest = img.repo_digests[0].clone();
    assert!(by_digest.starts_with(&format!("{}/test/bb@sha256:", reg.addr)));
    let again = store
        .pull(&by_digest, &RegistryAuth::Anonymous, &opts)
        .await
        .unwrap();
    assert_eq!(again.id, img.id);
    assert_eq!(store.list().unwrap().len(), 1);

    // A multi-platform index resolves to this host's platform.
    let multi = tmp.path().join("multi.tar");
    let mbuilt = ImageBuilder::new()
        .layer(Layer::new().file("/m", "m", 0o644))
        .multi_platform(true)
        .write_oci_archive(&multi, None)
        .unwrap();
    skopeo_push(&multi, &format!("{}/test/multi:1", reg.addr), None, true);
    let m = store
        .pull(
            &format!("{}/test/multi:1", reg.addr),
            &RegistryAuth::Anonymous,
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(m.id, mbuilt.config_digest.to_string());
    assert_eq!(m.repo_digests.len(), 2, "index and platform manifest");

    // Pull policies: local images need no registry unless Always.
    let local = tmp.path().join("local.tar");
    ImageBuilder::new()
        .layer(Layer::new().file("/l", "l", 0o644))
        .write_oci_archive(&local, Some("local/only:1"))
        .unwrap();
    store.import(&local, None).unwrap();
    let none = RegistryAuth::Anonymous;
    for policy in [PullPolicy::IfNotPresent, PullPolicy::Never] {
        store
            .ensure("local/only:1", policy, &none, &opts)
            .await
            .unwrap();
    }
    let err = store
        .ensure("local/absent:1", PullPolicy::Never, &none, &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    let img2 = store
        .ensure(&name, PullPolicy::Always, &none, &opts)
        .await
        .unwrap();
    assert_eq!(img2.id, img.id);

    // Unknown images fail with the registry's reason.
    let err = store
        .pull(
            &format!("{}/test/nope:1", reg.addr),
            &RegistryAuth::Anonymous,
            &opts,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Registry { .. }), "{err}");
    assert!(err.to_string().to_lowercase().contains("unknown"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_with_credentials_from_a_docker_config() {
    let tmp = tmpdir("pullauth");
    let reg = start_registry(tmp.path(), true).await;
    let opts = PullOptions {
        insecure_registries: vec![reg.addr.clone()],
    };
    let archive = tmp.path().join("img.tar");
    let built = ImageBuilder::new()
        .layer(Layer::new().file("/secret", "s", 0o600))
        .write_oci_archive(&archive, None)
        .unwrap();
    let name = format!("{}/private/img:1", reg.addr);
    skopeo_push(&archive, &name, Some("skiff:skiff-secret"), false);

    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let err = store
        .pull(&name, &RegistryAuth::Anonymous, &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Registry { .. }), "{err}");

    // An imagePullSecret's .dockerconfigjson.
    let docker_config = format!(
        r#"{{"auths":{{"{}":{{"username":"skiff","password":"skiff-secret"}}}}}}"#,
        reg.addr
    );
    let auth = auth_from_docker_config(docker_config.as_bytes(), &name).unwrap();
    let img = store.pull(&name, &auth, &opts).await.unwrap();
    assert_eq!(img.id, built.config_digest.to_string());
    let wrong = RegistryAuth::Basic("skiff".into(), "wrong".into());
    let err = store
        .pull(&format!("{}/private/img:2", reg.addr), &wrong, &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Registry { .. }), "{err}");
}
