//! The end-to-end fixture: a real `skiff server` on a free port with a temporary
//! data dir, and helpers to drive it with the real kubectl.
#![allow(dead_code)]

pub mod node;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub url: String,
    listen: String,
    extra_args: Vec<String>,
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_skiff")
}

impl Server {
    /// Start a server on a free port with a fresh data dir.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Start a server with extra `skiff server` arguments (kept across restarts),
    /// e.g. `&["--history-seconds", "10"]`.
    pub fn start_with(extra_args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Server {
            child: None,
            kubeconfig: dir.path().join("admin.kubeconfig"),
            dir,
            url: String::new(),
            listen: "127.0.0.1:0".into(),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        };
        s.spawn();
        s
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn spawn(&mut self) {
        const LISTENING: &str = "skiff API server listening on ";
        // Lines from earlier runs (before a restart) must not count.
        let before = self.log().matches(LISTENING).count();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        // A real node only where a test asks for one (`Server::start_node`).
        let node_args: &[&str] = if self.extra_args.iter().any(|a| a == "--node") {
            &[]
        } else {
            &["--node", "none"]
        };
        let child = Command::new(binary())
            .args(["server", "--listen", &self.listen, "--data-dir"])
            .arg(self.dir.path())
            .args(node_args)
            .args(&self.extra_args)
            .env("SKIFF_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start skiff server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            // The last "listening on" line belongs to the current process once
            // there is one more than before it started; the kubeconfig line
            // follows it when the server is ready.
            if let Some(line) = text.lines().rev().find(|l| l.starts_with(LISTENING)) {
                let starts = text.matches(LISTENING).count();
                let ready = text.matches("kubeconfig: ").count();
                if starts > before && ready >= starts {
                    self.url = line.trim_start_matches(LISTENING).to_string();
                    // Restarts reuse the same port.
                    self.listen = self.url.trim_start_matches("https://").to_string();
                    return;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("skiff server exited with {status} before listening; log:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "server did not start in time; log:\n{text}"
            );
            poll_interval(Duration::from_millis(20));
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
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache_dir());
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
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
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

    /// Run kubectl with stdin and require failure; returns stderr.
    #[track_caller]
    pub fn fails_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl_stdin(args, stdin);
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// The admin bearer token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("admin.token"))
            .expect("token")
            .trim()
            .to_string()
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A raw HTTPS request with curl (for status-code and body assertions).
    /// Returns (code, body).
    pub fn curl(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> (u16, String) {
        let r = self.curl_full(method, path, &[], content_type, body);
        (r.code, r.body)
    }

    /// A raw HTTPS request with extra request headers (`"Name: value"`);
    /// returns the status code, the response headers and the body.
    pub fn curl_full(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> CurlReply {
        self.endpoint()
            .curl_full(method, path, headers, content_type, body)
    }

    /// What a client needs to reach this server, detached from the
    /// `Server` (e.g. for a thread that keeps writing while the test kills it).
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            url: self.url.clone(),
            token: self.token(),
            ca: self.ca_path(),
        }
    }

    /// `curl` with a JSON value as the body (`application/json`); the reply
    /// body is parsed as JSON (`Value::Null` if it is not JSON).
    pub fn curl_json(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("encode body"));
        let (code, text) = self.curl(
            method,
            path,
            bytes.as_ref().map(|_| "application/json"),
            bytes.as_deref(),
        );
        (
            code,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// `kubectl get <args> -o json`, parsed.
    #[track_caller]
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let out = self.ok(&all);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("kubectl {all:?} printed invalid JSON ({e}):\n{out}"))
    }

    /// Create a Namespace through `kubectl create -f -` (JSON body, unlike
    /// `kubectl create ns`, which sends protobuf).
    #[track_caller]
    pub fn create_ns(&self, name: &str) {
        self.ok_stdin(&["create", "-f", "-"], &format!("{{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{{\"name\":\"{name}\"}}}}"));
    }

    /// Create a ConfigMap with `data` in `namespace` through `kubectl create -f -`.
    #[track_caller]
    pub fn create_cm(&self, namespace: &str, name: &str, data: &[(&str, &str)]) {
        let data: serde_json::Map<String, serde_json::Value> = data
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        let cm = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": data,
        });
        self.ok_stdin(&["create", "-f", "-"], &cm.to_string());
    }

    /// Start kubectl in the background; its stdout and stderr are collected
    /// while it runs. The process is killed when the handle is dropped.
    pub fn spawn_kubectl(&self, args: &[&str]) -> Background {
        Background::spawn(self.kubectl_cmd().args(args))
    }
}

/// URL, bearer token and CA of a server.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub url: String,
    pub token: String,
    pub ca: PathBuf,
}

impl Endpoint {
    /// A raw HTTPS request with extra request headers (`"Name: value"`);
    /// returns the status code (0 if no response), the response headers and the body.
    pub fn curl_full(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> CurlReply {
        let head = tempfile::NamedTempFile::new().expect("header file");
        let mut c = Command::new("curl");
        c.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method])
            .arg("-D")
            .arg(head.path())
            .arg("--cacert")
            .arg(&self.ca)
            .arg("-H")
            .arg(format!("Authorization: Bearer {}", self.token));
        if let Some(ct) = content_type {
            c.arg("-H").arg(format!("Content-Type: {ct}"));
        }
        for h in headers {
            c.arg("-H").arg(h);
        }
        if body.is_some() {
            c.args(["--data-binary", "@-"]);
        }
        c.arg(format!("{}{path}", self.url));
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("curl");
        if let Some(b) = body {
            // The server may answer (413) and close before reading everything.
            let _ = child.stdin.take().expect("stdin").write_all(b);
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("curl output");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        CurlReply {
            code: code.trim().parse().unwrap_or(0),
            headers: std::fs::read_to_string(head.path()).unwrap_or_default(),
            body: body.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A raw HTTP reply.
#[derive(Debug)]
pub struct CurlReply {
    pub code: u16,
    /// The raw response header block(s), as curl wrote them.
    pub headers: String,
    pub body: String,
    pub stderr: String,
}

impl CurlReply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// Values of the response header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }
}

/// A background process whose output is collected by reader threads.
pub struct Background {
    child: Child,
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Background {
    pub fn spawn(cmd: &mut Command) -> Background {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut readers = Vec::new();
        let pipes: [(Box<dyn std::io::Read + Send>, _); 2] = [
            (
                Box::new(child.stdout.take().expect("stdout")),
                stdout.clone(),
            ),
            (
                Box::new(child.stderr.take().expect("stderr")),
                stderr.clone(),
            ),
        ];
        for (mut pipe, buf) in pipes {
            readers.push(std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                loop {
                    match pipe.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf
                            .lock()
                            .expect("buffer")
                            .push_str(&String::from_utf8_lossy(&chunk[..n])),
                    }
                }
            }));
        }
        Background {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("buffer").clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("buffer").clone()
    }

    /// Whether the process has exited, and with which code.
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Wait (bounded) for the process to exit; panics with its output on timeout.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_exit() {
                for r in self.readers.drain(..) {
                    let _ = r.join(); // the pipes close with the process
                }
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "process did not exit in {timeout:?}\nstdout: {}\nstderr: {}",
                    self.stdout(),
                    self.stderr()
                );
            }
            poll_interval(Duration::from_millis(20));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill(); // may have exited already
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if self.extra_args.iter().any(|a| a == "--node") {
            // Containers outlive the server by design: remove them, their
            // mounts, namespaces, cgroups and bridge.
            let _ = Command::new(binary())
                .args(["node", "reset", "--data-dir"])
                .arg(self.dir.path())
                .args(self.node_args())
                .status();
        }
    }
}

static NODES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Server {
    /// Start a server whose real node runs pods on this machine (runc, CNI),
    /// with a pod range, bridge and cgroup parent of its own so tests run in
    /// parallel; `extra` are more `skiff server` arguments.
    pub fn start_node(extra: &[&str]) -> Server {
        let n = NODES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let pid = std::process::id();
        let cidr = format!("10.{}.{}.0/24", 200 + pid % 50, n % 256);
        let bridge = format!("skt{}n{}", pid % 100_000, n);
        let cgroup = format!("skiff-test-{pid}-{n}");
        let mut args = vec![
            "--node",
            "on",
            "--pod-cidr",
            &cidr,
            "--node-bridge",
            &bridge,
            "--cgroup-parent",
            &cgroup,
        ];
        args.extend_from_slice(extra);
        Server::start_with(&args)
    }

    /// The value of a `skiff server` argument this server was started with.
    pub fn arg(&self, flag: &str) -> Option<String> {
        let i = self.extra_args.iter().position(|a| a == flag)?;
        self.extra_args.get(i + 1).cloned()
    }

    /// The node arguments this server was started with (for `skiff node reset`).
    fn node_args(&self) -> Vec<String> {
        ["--node-bridge", "--cgroup-parent", "--oci-runtime"]
            .into_iter()
            .filter_map(|flag| Some([flag.to_string(), self.arg(flag)?]))
            .flatten()
            .collect()
    }

    /// Put an image archive into this server's image store (`skiff image import`).
    pub fn import_image(&self, archive: &Path) {
        let out = Command::new(binary())
            .args(["image", "import", "--data-dir"])
            .arg(self.dir.path())
            .arg(archive)
            .output()
            .expect("skiff image import");
        assert!(
            out.status.success(),
            "skiff image import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The pause between two polls of a condition in these synchronous helpers.
/// Every caller re-checks a condition in a bounded loop; the pause only
/// keeps the loop from spinning, it never stands in for synchronization.
#[allow(clippy::disallowed_methods)]
fn poll_interval(d: Duration) {
    std::thread::sleep(d);
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
        poll_interval(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}; last observed: {last}");
}

/// Write `content` to a file in `dir` and return its path.
pub fn write_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write file");
    p
}
