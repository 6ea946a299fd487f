//! The node's container supervisor: one small process per node (our own
//! binary, re-executed as `skiff supervise`) instead of a shim per
//! container. It starts containers with `runc run -d`, is their parent (a
//! child subreaper, so container init processes are re-parented to it when
//! runc exits), copies their stdout/stderr into CRI log files and records
//! how they exit. It runs in its own session, so the agent (or the whole
//! `skiff server`) can stop and start again: running containers, their
//! logs and exit codes stay with the supervisor, and the agent re-adopts
//! them by asking it.
//!
//! The agent talks to it over a Unix socket, one JSON request line per
//! connection, answered by one JSON line (or, for `subscribe`, a line per
//! container exit until the connection closes).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, oneshot};

use super::crilog::{LogWriter, Stream};

/// Errors of the supervisor and of talking to it.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("supervisor i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("supervisor protocol: {0}")]
    Protocol(String),
    #[error("{0}")]
    Failed(String),
}

/// How the supervisor runs.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Its directory: socket, pid file, own log.
    pub root: PathBuf,
    /// The OCI runtime binary (`runc`).
    pub runtime: PathBuf,
    /// `--root` for the OCI runtime's state.
    pub runtime_root: PathBuf,
    /// Rotate a container log when it reaches this size.
    pub log_max_bytes: u64,
    /// Log files kept per container run (the live one included).
    pub log_max_files: usize,
}

/// The socket of the supervisor rooted at `root`.
pub fn socket_path(root: &Path) -> PathBuf {
    root.join("supervisor.sock")
}

/// A container to start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StartSpec {
    /// The OCI runtime's container id.
    pub id: String,
    pub bundle: PathBuf,
    /// Its CRI log file.
    pub log_path: PathBuf,
    /// Keep a pipe to its stdin open (for `attach`).
    #[serde(default)]
    pub stdin: bool,
    /// The OCI runtime and its `--root`, if not the supervisor's default
    /// (a RuntimeClass handler).
    #[serde(default)]
    pub runtime: Option<(PathBuf, PathBuf)>,
}

/// How a container's init process ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExitInfo {
    /// The exit code, or 128 + the signal number for a killed process.
    pub code: i32,
    pub signal: Option<i32>,
    pub finished_at: Timestamp,
}

/// A container the supervisor knows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContainerRecord {
    pub id: String,
    pub pid: i32,
    pub started_at: Timestamp,
    pub log_path: PathBuf,
    /// Set once the process has ended and its output is all in the log.
    pub exit: Option<ExitInfo>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Ping,
    Start(StartSpec),
    List,
    /// Drop the record of an exited container.
    Forget {
        id: String,
    },
    Subscribe,
    /// Stop when no container runs any more.
    Shutdown,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
enum Reply {
    Ok { pid: u32 },
    Started(ContainerRecord),
    Failed { message: String },
    Containers { containers: Vec<ContainerRecord> },
    Exit(ContainerRecord),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

#[derive(Default)]
struct State {
    containers: HashMap<String, ContainerRecord>,
    /// Container pid -> id, for running containers.
    by_pid: HashMap<i32, String>,
    /// Processes we wait for ourselves (the runtime CLI): pid -> waiter.
    waiters: HashMap<i32, oneshot::Sender<ExitInfo>>,
    /// Exits of processes nobody claimed yet (a container that ended before
    /// its pid file was read).
    unclaimed: HashMap<i32, ExitInfo>,
    /// Containers whose process ended, waiting for their output to drain.
    exited: HashMap<String, ExitInfo>,
    /// Output copiers still running per container.
    copiers: HashMap<String, usize>,
    shutting_down: bool,
}

struct Supervisor {
    config: SupervisorConfig,
    state: Mutex<State>,
    exits: broadcast::Sender<ContainerRecord>,
    quit: tokio::sync::Notify,
}

fn exit_info(status: WaitStatus) -> Option<(i32, ExitInfo)> {
    let now = Timestamp::now();
    match status {
        WaitStatus::Exited(pid, code) => Some((
            pid.as_raw(),
            ExitInfo {
                code,
                signal: None,
                finished_at: now,
            },
        )),
        WaitStatus::Signaled(pid, sig, _) => Some((
            pid.as_raw(),
            ExitInfo {
                code: 128 + sig as i32,
                signal: Some(sig as i32),
                finished_at: now,
            },
        )),
        _ => None,
    }
}

impl Supervisor {
    /// Reap every child that ended.
    fn reap(&self) {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(s) => s,
            };
            let Some((pid, info)) = exit_info(status) else {
                continue;
            };
            let mut st = lock(&self.state);
            if let Some(tx) = st.waiters.remove(&pid) {
                let _ = tx.send(info);
            } else if let Some(id) = st.by_pid.remove(&pid) {
                st.exited.insert(id.clone(), info);
                self.maybe_finish(&mut st, &id);
            } else {
                st.unclaimed.insert(pid, info);
            }
        }
    }

    /// A container is done once its process ended and its output drained.
    fn maybe_finish(&self, st: &mut State, id: &str) {
        if st.copiers.get(id).copied().unwrap_or(0) > 0 {
            return;
        }
        let Some(info) = st.exited.remove(id) else {
            return;
        };
        if let Some(rec) = st.containers.get_mut(id) {
            rec.exit = Some(info);
            let _ = self.exits.send(rec.clone());
        }
        self.check_quit(st);
    }

    fn check_quit(&self, st: &State) {
        if st.shutting_down && st.containers.values().all(|c| c.exit.is_some()) {
            self.quit.notify_one();
        }
    }

    async fn start(self: &Arc<Self>, spec: StartSpec) -> Reply {
        {
            let st = lock(&self.state);
            if let Some(rec) = st.containers.get(&spec.id) {
                return Reply::Started(rec.clone());
            }
        }
        let pid_file = spec.bundle.join("init.pid");
        let _ = std::fs::remove_file(&pid_file);
        let (runtime, runtime_root) = spec.runtime.clone().unwrap_or_else(|| {
            (
                self.config.runtime.clone(),
                self.config.runtime_root.clone(),
            )
        });
        let mut cmd = std::process::Command::new(&runtime);
        cmd.arg("--root")
            .arg(&runtime_root)
            .args(["run", "--detach", "--pid-file"])
            .arg(&pid_file)
            .arg("--bundle")
            .arg(&spec.bundle)
            .arg(&spec.id)
            .stdin(if spec.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (tx, rx) = oneshot::channel();
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Reply::Failed {
                    message: format!("running {}: {e}", runtime.display()),
                }
            }
        };
        // Nothing awaits between spawn and here, so the reaper cannot have
        // taken this exit yet (one thread).
        let runc_pid = i32::try_from(child.id()).unwrap_or(-1);
        {
            let mut st = lock(&self.state);
            if let Some(info) = st.unclaimed.remove(&runc_pid) {
                let _ = tx.send(info);
            } else {
                st.waiters.insert(runc_pid, tx);
            }
        }
        let stdout = child.stdout.take().map(OwnedFd::from);
        let stderr = child.stderr.take().map(OwnedFd::from);
        let stdin = child.stdin.take().map(OwnedFd::from);
        drop(child); // reaped by `reap`, never waited through std
        let runc_exit = match rx.await {
            Ok(info) => info,
            Err(_) => {
                return Reply::Failed {
                    message: "the runtime process vanished".into(),
                }
            }
        };
        if runc_exit.code != 0 {
            // Nothing started: whatever is in the pipes is the runtime's error.
            let mut message = String::new();
            for fd in [stderr, stdout].into_iter().flatten() {
                if let Ok(text) = drain(fd).await {
                    message.push_str(text.trim());
                }
            }
            if message.is_empty() {
                message = format!(
                    "{} exited with {}",
                    runtime.display(),
                    runc_exit.code
                );
            }
            return Reply::Failed {
                message: clean_runc_error(&message),
            };
        }
        drop(stdin); // attach is not kept yet: the container sees EOF
        let pid = match std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            Some(p) => p,
            None => {
                return Reply::Failed {
                    message: format!("no pid in {}", pid_file.display()),
                }
            }
        };
        let writer = match LogWriter::open(
            &spec.log_path,
            self.config.log_max_bytes,
            self.config.log_max_files,
        ) {
            Ok(w) => Arc::new(Mutex::new(w)),
            Err(e) => {
                return Reply::Failed {
                    message: format!("opening log {}: {e}", spec.log_path.display()),
                }
            }
        };
        let rec = ContainerRecord {
            id: spec.id.clone(),
            pid,
            started_at: Timestamp::now(),
            log_path: spec.log_path.clone(),
            exit: None,
        };
        {
            let mut st = lock(&self.state);
            st.containers.insert(spec.id.clone(), rec.clone());
            let streams = [(stdout, Stream::Stdout), (stderr, Stream::Stderr)];
            let mut n = 0;
            for (fd, stream) in streams {
                let Some(fd) = fd else { continue };
                n += 1;
                let me = self.clone();
                let writer = writer.clone();
                let id = spec.id.clone();
                tokio::spawn(async move { me.copy(id, fd, stream, writer).await });
            }
            st.copiers.insert(spec.id.clone(), n);
            if let Some(info) = st.unclaimed.remove(&pid) {
                st.exited.insert(spec.id.clone(), info);
            } else {
                st.by_pid.insert(pid, spec.id.clone());
            }
        }
        Reply::Started(rec)
    }

    async fn copy(
        self: Arc<Self>,
        id: String,
        fd: OwnedFd,
        stream: Stream,
        writer: Arc<Mutex<LogWriter>>,
    ) {
        match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
            Ok(mut rx) => {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match rx.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if let Err(e) = lock(&writer).write(stream, &buf[..n]) {
                                tracing::warn!(container = %id, error = %e, "writing the container log failed");
                            }
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "reading container output failed")
            }
        }
        let _ = lock(&writer).finish(stream);
        let mut st = lock(&self.state);
        if let Some(n) = st.copiers.get_mut(&id) {
            *n = n.saturating_sub(1);
        }
        self.maybe_finish(&mut st, &id);
    }

    async fn serve(self: Arc<Self>, conn: UnixStream) -> Result<(), SupervisorError> {
        let (read, mut write) = conn.into_split();
        let mut lines = BufReader::new(read).lines();
        let Some(line) = lines.next_line().await? else {
            return Ok(());
        };
        let req: Request =
            serde_json::from_str(&line).map_err(|e| SupervisorError::Protocol(e.to_string()))?;
        let reply = match req {
            Request::Ping => Reply::Ok {
                pid: std::process::id(),
            },
            Request::Start(spec) => self.start(spec).await,
            Request::List => Reply::Containers {
                containers: lock(&self.state).containers.values().cloned().collect(),
            },
            Request::Forget { id } => {
                let mut st = lock(&self.state);
                if st.containers.get(&id).is_some_and(|c| c.exit.is_some()) {
                    st.containers.remove(&id);
                    st.copiers.remove(&id);
                }
                Reply::Ok {
                    pid: std::process::id(),
                }
            }
            Request::Shutdown => {
                let mut st = lock(&self.state);
                st.shutting_down = true;
                self.check_quit(&st);
                Reply::Ok {
                    pid: std::process::id(),
                }
            }
            Request::Subscribe => {
                let mut rx = self.exits.subscribe();
                send(
                    &mut write,
                    &Reply::Ok {
                        pid: std::process::id(),
                    },
                )
                .await?;
                loop {
                    tokio::select! {
                        ev = rx.recv() => match ev {
                            Ok(rec) => send(&mut write, &Reply::Exit(rec)).await?,
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                // The agent re-lists after a gap; closing tells it so.
                                return Ok(());
                            }
                            Err(broadcast::error::RecvError::Closed) => return Ok(()),
                        },
                        l = lines.next_line() => if l?.is_none() { return Ok(()) },
                    }
                }
            }
        };
        send(&mut write, &reply).await
    }
}

async fn send<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    reply: &Reply,
) -> Result<(), SupervisorError> {
    let mut line =
        serde_json::to_vec(reply).map_err(|e| SupervisorError::Protocol(e.to_string()))?;
    line.push(b'\n');
    w.write_all(&line).await?;
    w.flush().await?;
    Ok(())
}

/// Read a pipe whose writers are all gone (bounded in time and size).
async fn drain(fd: OwnedFd) -> std::io::Result<String> {
    let mut rx = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        while buf.len() < 64 * 1024 {
            match rx.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), read).await;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// runc prints logrus-style lines (`time="…" level=error msg="…"`): keep
/// the messages.
fn clean_runc_error(text: &str) -> String {
    let mut msgs = Vec::new();
    for line in text.lines() {
        if let Some(i) = line.find("msg=") {
            let m = &line[i + 4..];
            let m = m
                .strip_prefix('"')
                .map_or(m, |s| s.rsplit_once('"').map_or(s, |(inner, _)| inner));
            msgs.push(m.replace("\\\"", "\"").replace("\\n", " "));
        } else if !line.trim().is_empty() {
            msgs.push(line.trim().to_string());
        }
    }
    msgs.join("; ")
}

/// Run the supervisor until it is told to shut down with no container left.
/// Blocks; call it from the `skiff supervise` entry point only (it becomes
/// a session leader and the subreaper of its process tree).
pub fn run(config: SupervisorConfig) -> Result<(), SupervisorError> {
    let _ = nix::unistd::setsid();
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| SupervisorError::Failed(format!("PR_SET_CHILD_SUBREAPER: {e}")))?;
    std::fs::create_dir_all(&config.root)?;
    std::fs::create_dir_all(&config.runtime_root)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let sock = socket_path(&config.root);
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock)?;
        std::fs::write(
            config.root.join("supervisor.pid"),
            std::process::id().to_string(),
        )?;
        let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let (exits, _) = broadcast::channel(4096);
        let sup = Arc::new(Supervisor {
            config,
            state: Mutex::new(State::default()),
            exits,
            quit: tokio::sync::Notify::new(),
        });
        loop {
            tokio::select! {
                _ = sigchld.recv() => sup.reap(),
                _ = sigterm.recv() => {
                    let mut st = lock(&sup.state);
                    st.shutting_down = true;
                    sup.check_quit(&st);
                }
                _ = sup.quit.notified() => break,
                conn = listener.accept() => {
                    let (conn, _) = conn?;
                    let me = sup.clone();
                    tokio::spawn(async move {
                        if let Err(e) = me.serve(conn).await {
                            tracing::debug!(error = %e, "supervisor connection ended");
                        }
                    });
                }
            }
        }
        let _ = std::fs::remove_file(&sock);
        Ok(())
    })
}

/// The agent's side of the socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(root: &Path) -> Client {
        Client {
            socket: socket_path(root),
        }
    }

    async fn call(&self, req: &Request) -> Result<Reply, SupervisorError> {
        let conn = UnixStream::connect(&self.socket).await?;
        let (read, mut write) = conn.into_split();
        let mut line =
            serde_json::to_vec(req).map_err(|e| SupervisorError::Protocol(e.to_string()))?;
        line.push(b'\n');
        write.write_all(&line).await?;
        let mut lines = BufReader::new(read).lines();
        let reply = lines
            .next_line()
            .await?
            .ok_or_else(|| SupervisorError::Protocol("no reply".into()))?;
        serde_json::from_str(&reply).map_err(|e| SupervisorError::Protocol(e.to_string()))
    }

    /// The supervisor's pid, if it answers.
    pub async fn ping(&self) -> Result<u32, SupervisorError> {
        match self.call(&Request::Ping).await? {
            Reply::Ok { pid } => Ok(pid),
            other => Err(SupervisorError::Protocol(format!("unexpected {other:?}"))),
        }
    }

    /// Start a container; returns its record (the existing one if it was
    /// started before).
    pub async fn start(&self, spec: StartSpec) -> Result<ContainerRecord, SupervisorError> {
        match self.call(&Request::Start(spec)).await? {
            Reply::Started(rec) => Ok(rec),
            Reply::Failed { message } => Err(SupervisorError::Failed(message)),
            other => Err(SupervisorError::Protocol(format!("unexpected {other:?}"))),
        }
    }

    pub async fn list(&self) -> Result<Vec<ContainerRecord>, SupervisorError> {
        match self.call(&Request::List).await? {
            Reply::Containers { containers } => Ok(containers),
            other => Err(SupervisorError::Protocol(format!("unexpected {other:?}"))),
        }
    }

    pub async fn forget(&self, id: &str) -> Result<(), SupervisorError> {
        self.call(&Request::Forget { id: id.into() })
            .await
            .map(|_| ())
    }

    /// Ask it to exit once no container runs.
    pub async fn shutdown(&self) -> Result<(), SupervisorError> {
        self.call(&Request::Shutdown).await.map(|_| ())
    }

    /// Container exits as they happen, until the connection drops (then
    /// re-list: exits may have been missed).
    pub async fn subscribe(
        &self,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<ContainerRecord>, SupervisorError> {
        let conn = UnixStream::connect(&self.socket).await?;
        let (read, mut write) = conn.into_split();
        let mut line = serde_json::to_vec(&Request::Subscribe)
            .map_err(|e| SupervisorError::Protocol(e.to_string()))?;
        line.push(b'\n');
        write.write_all(&line).await?;
        let mut lines = BufReader::new(read).lines();
        match lines.next_line().await? {
            Some(first) if first.contains("\"ok\"") => {}
            other => return Err(SupervisorError::Protocol(format!("subscribe: {other:?}"))),
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let _keep = write; // closing it would end the subscription
            while let Ok(Some(l)) = lines.next_line().await {
                if let Ok(Reply::Exit(rec)) = serde_json::from_str::<Reply>(&l) {
                    if tx.send(rec).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_errors_are_readable() {
        let text = "time=\"2026-12-03T07:00:00Z\" level=error msg=\"runc run failed: unable to start container process: exec: \\\"nope\\\": executable file not found in $PATH\"\n";
        assert_eq!(
            clean_runc_error(text),
            "runc run failed: unable to start container process: exec: \"nope\": executable file not found in $PATH"
        );
    }
}
