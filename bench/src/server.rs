//! The server under test: `skiff server` started on a free port with a fresh
//! data dir, and a kube-rs client for it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

pub struct Server {
    child: tokio::process::Child,
    pub pid: u32,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub url: String,
    pub startup: Duration,
}

impl Server {
    /// Start `binary server` on a free port with a fresh data dir and `extra` arguments.
    pub async fn start(binary: &Path, extra: &[&str]) -> Result<Server> {
        ensure!(
            binary.exists(),
            "{} not found: run `cargo build --release --bin skiff` (bench/run.sh does)",
            binary.display()
        );
        let dir = tempfile::tempdir()?;
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path)?;
        let began = Instant::now();
        let child = tokio::process::Command::new(binary)
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            // The API and scale benchmarks measure the control plane: no
            // real node (it would also outlive the server by design).
            .args(if extra.contains(&"--node") {
                &[][..]
            } else {
                &["--node", "none"][..]
            })
            .args(extra)
            // The default log level, as `make run` uses.
            .env_remove("SKIFF_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("server has no pid")?;
        let mut server = Server {
            child,
            pid,
            kubeconfig: PathBuf::new(),
            url: String::new(),
            dir,
            startup: Duration::ZERO,
        };
        let deadline = began + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let url = text
                .lines()
                .find_map(|l| l.strip_prefix("skiff API server listening on "));
            let kubeconfig = text.lines().find_map(|l| l.strip_prefix("kubeconfig: "));
            if let (Some(url), Some(kubeconfig)) = (url, kubeconfig) {
                server.url = url.trim().to_owned();
                server.kubeconfig = PathBuf::from(kubeconfig.trim());
                server.startup = began.elapsed();
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("skiff server exited with {status} before listening:\n{text}");
            }
            ensure!(
                Instant::now() < deadline,
                "skiff server did not listen within 60 s:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kill the server; return its log and its data dir.
    pub async fn stop(mut self) -> (String, tempfile::TempDir) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        (log, self.dir)
    }
}

pub async fn client(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    Ok(kube::Client::try_from(config)?)
}
