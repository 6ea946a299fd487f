//! The end-to-end fixture: a real `skiff server` on a free port with a temporary
//! data dir, and helpers to drive it with the real kubectl.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub url: String,
    listen: String,
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_skiff")
}

impl Server {
    /// Start a server on a free port with a fresh data dir.
    pub fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Server { child: None, kubeconfig: dir.path().join("admin.kubeconfig"), dir, url: String::new(), listen: "127.0.0.1:0".into() };
        s.spawn();
        s
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("log file");
        let child = Command::new(binary())
            .args(["server", "--listen", &self.listen, "--data-dir"])
            .arg(self.dir.path())
            .env("SKIFF_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start skiff server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            // The last "listening on" line belongs to the current process.
            if let Some(line) = text.lines().rev().find(|l| l.starts_with("skiff API server listening on ")) {
                let starts = text.matches("skiff API server listening on ").count();
                let expected = text.matches("kubeconfig: ").count();
                if starts >= 1 && expected >= starts {
                    self.url = line.trim_start_matches("skiff API server listening on ").to_string();
                    // Restarts reuse the same port.
                    self.listen = self.url.trim_start_matches("https://").to_string();
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("skiff server exited with {status} before listening; log:\n{text}");
            }
            assert!(Instant::now() < deadline, "server did not start in time; log:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL the server (no shutdown path runs).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port and data dir.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("kube-cache")
    }

    /// A kubectl command bound to this server.
    pub fn kubectl_cmd(&self) -> Command {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig").arg(&self.kubeconfig).arg("--cache-dir").arg(self.cache_dir());
        c.env_remove("KUBECONFIG");
        c
    }

    /// Run kubectl with `args`; returns the output whatever the exit code.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd().args(args).output().expect("run kubectl")
    }

    /// Run kubectl with `stdin`.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .kubectl_cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
        child.wait_with_output().expect("kubectl output")
    }

    /// Run kubectl and require success; returns stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run kubectl with stdin and require success.
    #[track_caller]
    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl_stdin(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run kubectl and require failure; returns stderr.
    #[track_caller]
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// The admin bearer token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("admin.token")).expect("token").trim().to_string()
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A raw HTTPS request with curl (for status-code and body assertions).
    /// Returns (code, body).
    pub fn curl(&self, method: &str, path: &str, content_type: Option<&str>, body: Option<&[u8]>) -> (u16, String) {
        let mut c = Command::new("curl");
        c.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method])
            .arg("--cacert")
            .arg(self.ca_path())
            .arg("-H")
            .arg(format!("Authorization: Bearer {}", self.token()));
        if let Some(ct) = content_type {
            c.arg("-H").arg(format!("Content-Type: {ct}"));
        }
        if body.is_some() {
            c.args(["--data-binary", "@-"]);
        }
        c.arg(format!("{}{path}", self.url));
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("curl");
        if let Some(b) = body {
            child.stdin.take().expect("stdin").write_all(b).expect("write body");
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("curl output");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Poll `f` until it returns `Some`, or panic after `timeout` with the last
/// observation from `describe`.
#[track_caller]
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match f() {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}; last observed: {last}");
}

/// Write `content` to a file in `dir` and return its path.
pub fn write_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write file");
    p
}
