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
//! container exit until the connection closes; for `attach`, frames of
//! the container's stdio, see [`super::attach`]).

use crate::lock;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use k8s_openapi::jiff::Timestamp;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::attach::{self, Pty};
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
    /// Close its stdin when the first attach that wrote to it ends.
    #[serde(default)]
    pub stdin_once: bool,
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
    /// Stream the container's stdio over this connection.
    Attach {
        id: String,
        /// The client sends stdin.
        #[serde(default)]
        stdin: bool,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
enum Reply {
    Ok {
        pid: u32,
    },
    Started(ContainerRecord),
    Failed {
        message: String,
    },
    Containers {
        containers: Vec<ContainerRecord>,
    },
    Exit(ContainerRecord),
    /// Frames follow.
    Attached {
        tty: bool,
        stdin: bool,
    },
}

/// What an attach found: whether the container has a terminal and an
/// open stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachInfo {
    pub tty: bool,
    pub stdin: bool,
}

/// Input for a container's stdin.
enum StdinMsg {
    Data(Vec<u8>),
    /// End of input (stdinOnce): the pipe closes.
    Close,
}

/// The live stdio of a running container.
struct Attachable {
    tty: bool,
    /// Output as it is read, to attached clients (none attached: dropped).
    output: broadcast::Sender<(Stream, Bytes)>,
    /// Its stdin, while open.
    stdin: Option<mpsc::Sender<StdinMsg>>,
    stdin_once: bool,
    pty: Option<Arc<Pty>>,
}

/// Output chunks an attach client may fall behind by before it is dropped.
const ATTACH_BACKLOG: usize = 128;
/// How long an attach client may take to accept one frame.
const ATTACH_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a copier reads container output.
enum Source {
    Pipe(OwnedFd),
    Pty(Arc<Pty>),
}

enum Sink {
    Pipe(tokio::net::unix::pipe::Sender),
    Pty(Arc<Pty>),
}

/// Write what attach clients send to the container's stdin, in order,
/// until it is closed or every sender is gone.
async fn feed_stdin(mut sink: Sink, mut rx: mpsc::Receiver<StdinMsg>) {
    while let Some(msg) = rx.recv().await {
        let result = match (&mut sink, msg) {
            (_, StdinMsg::Close) => return,
            (Sink::Pipe(p), StdinMsg::Data(d)) => p.write_all(&d).await,
            (Sink::Pty(p), StdinMsg::Data(d)) => p.write_all(&d).await,
        };
        if result.is_err() {
            return; // nobody reads it any more
        }
    }
}

/// `process.terminal` of the bundle's `config.json`.
fn bundle_terminal(bundle: &Path) -> bool {
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["process"]["terminal"].as_bool())
        .unwrap_or(false)
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
    /// Stdio of running containers, for attach.
    attach: HashMap<String, Attachable>,
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
        st.attach.remove(id);
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
        let tty = bundle_terminal(&spec.bundle);
        let mut cmd = std::process::Command::new(&runtime);
        cmd.arg("--root")
            .arg(&runtime_root)
            .args(["run", "--detach", "--pid-file"])
            .arg(&pid_file)
            .arg("--bundle")
            .arg(&spec.bundle);
        // With a terminal, runc sends its master to this socket.
        let mut console = None;
        if tty {
            let path = self.console_socket();
            let _ = std::fs::remove_file(&path);
            let listener = match UnixListener::bind(&path) {
                Ok(l) => l,
                Err(e) => {
                    return Reply::Failed {
                        message: format!("console socket {}: {e}", path.display()),
                    }
                }
            };
            cmd.arg("--console-socket").arg(&path);
            let remove = path.clone();
            let task = tokio::spawn(async move {
                let got =
                    tokio::time::timeout(Duration::from_secs(60), attach::recv_console(&listener))
                        .await;
                let _ = std::fs::remove_file(&path);
                match got {
                    Ok(r) => r,
                    Err(_) => Err(std::io::Error::other("runc sent no terminal")),
                }
            });
            console = Some((remove, task));
        }
        cmd.arg(&spec.id)
            .stdin(if spec.stdin && !tty {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (tx, rx) = oneshot::channel();
        let t_spawn = std::time::Instant::now();
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                if let Some((path, task)) = console {
                    task.abort();
                    let _ = std::fs::remove_file(path);
                }
                return Reply::Failed {
                    message: format!("running {}: {e}", runtime.display()),
                };
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
        tracing::debug!(id = %spec.id, ms = t_spawn.elapsed().as_secs_f64() * 1e3, "runtime run returned");
        if runc_exit.code != 0 {
            if let Some((path, task)) = console.take() {
                task.abort();
                let _ = std::fs::remove_file(path);
            }
            // Nothing started: whatever is in the pipes is the runtime's error.
            let mut message = String::new();
            for fd in [stderr, stdout].into_iter().flatten() {
                if let Ok(text) = drain(fd).await {
                    message.push_str(text.trim());
                }
            }
            if message.is_empty() {
                message = format!("{} exited with {}", runtime.display(), runc_exit.code);
            }
            return Reply::Failed {
                message: clean_runc_error(&message),
            };
        }
        // runc has exited: it sent the terminal's master or never will.
        let pty = match console.take() {
            None => None,
            Some((path, task)) => {
                let got = tokio::time::timeout(Duration::from_secs(5), task).await;
                let _ = std::fs::remove_file(path);
                match got {
                    Ok(Ok(Ok(fd))) => match Pty::new(fd) {
                        Ok(p) => Some(Arc::new(p)),
                        Err(e) => {
                            return Reply::Failed {
                                message: format!("the container's terminal: {e}"),
                            }
                        }
                    },
                    Ok(Ok(Err(e))) => {
                        return Reply::Failed {
                            message: format!("receiving the container's terminal: {e}"),
                        }
                    }
                    Ok(Err(_)) | Err(_) => {
                        return Reply::Failed {
                            message: "the runtime sent no terminal".into(),
                        }
                    }
                }
            }
        };
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
        let (output, _) = broadcast::channel(ATTACH_BACKLOG);
        let sink = match (&pty, stdin) {
            (Some(p), _) if spec.stdin => Some(Sink::Pty(p.clone())),
            (None, Some(fd)) => tokio::net::unix::pipe::Sender::from_owned_fd(fd)
                .ok()
                .map(Sink::Pipe),
            _ => None,
        };
        let stdin = sink.map(|sink| {
            let (tx, rx) = mpsc::channel(16);
            tokio::spawn(feed_stdin(sink, rx));
            tx
        });
        {
            let mut st = lock(&self.state);
            st.containers.insert(spec.id.clone(), rec.clone());
            st.attach.insert(
                spec.id.clone(),
                Attachable {
                    tty: pty.is_some(),
                    output: output.clone(),
                    stdin,
                    stdin_once: spec.stdin_once,
                    pty: pty.clone(),
                },
            );
            let mut sources = vec![
                (stdout.map(Source::Pipe), Stream::Stdout),
                (stderr.map(Source::Pipe), Stream::Stderr),
            ];
            if let Some(p) = pty {
                // The terminal is the container's stdout and stderr.
                sources.push((Some(Source::Pty(p)), Stream::Stdout));
            }
            let mut n = 0;
            for (source, stream) in sources {
                let Some(source) = source else { continue };
                n += 1;
                let me = self.clone();
                let writer = writer.clone();
                let id = spec.id.clone();
                let output = output.clone();
                tokio::spawn(async move { me.copy(id, source, stream, writer, output).await });
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

    /// Copy output into the log and to attached clients, as it is read.
    async fn copy(
        self: Arc<Self>,
        id: String,
        source: Source,
        stream: Stream,
        writer: Arc<Mutex<LogWriter>>,
        output: broadcast::Sender<(Stream, Bytes)>,
    ) {
        let mut pipe = None;
        let mut pty = None;
        match source {
            Source::Pipe(fd) => match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
                Ok(rx) => pipe = Some(rx),
                Err(e) => {
                    tracing::warn!(container = %id, error = %e, "reading container output failed")
                }
            },
            Source::Pty(p) => pty = Some(p),
        }
        if pipe.is_some() || pty.is_some() {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let read = match (&mut pipe, &pty) {
                    (Some(rx), _) => rx.read(&mut buf).await,
                    (None, Some(p)) => p.read(&mut buf).await,
                    (None, None) => Ok(0),
                };
                let data = match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.get(..n).unwrap_or_default(),
                };
                if let Err(e) = lock(&writer).write(stream, data) {
                    tracing::warn!(container = %id, error = %e, "writing the container log failed");
                }
                if output.receiver_count() > 0 {
                    // Never waits: a client that falls behind is dropped.
                    let _ = output.send((stream, Bytes::copy_from_slice(data)));
                }
            }
        }
        drop(pty);
        let _ = lock(&writer).finish(stream);
        let mut st = lock(&self.state);
        if let Some(n) = st.copiers.get_mut(&id) {
            *n = n.saturating_sub(1);
        }
        self.maybe_finish(&mut st, &id);
    }

    /// A fresh path for a `--console-socket` (short: socket paths are
    /// limited to 108 bytes).
    fn console_socket(&self) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.config.root.join(format!("console-{n}.sock"))
    }

    /// An attach that wrote to stdin ended: with stdinOnce (and no
    /// terminal, as containerd does), stdin closes for good.
    fn stdin_ended(&self, id: &str) {
        let closing = {
            let mut st = lock(&self.state);
            match st.attach.get_mut(id) {
                Some(a) if a.stdin_once && !a.tty => a.stdin.take(),
                _ => None,
            }
        };
        if let Some(tx) = closing {
            // After the input already queued.
            tokio::spawn(async move {
                let _ = tx.send(StdinMsg::Close).await;
            });
        }
    }

    /// Serve an attach: the container's output as it is read goes to the
    /// client, its input to the container, until the output ends or the
    /// client leaves or falls behind. When the client's stdin ends, a
    /// stdinOnce container without a terminal gets EOF and the output goes
    /// on until it ends; otherwise the attach ends there (as containerd's).
    async fn attach(
        self: Arc<Self>,
        id: String,
        want_stdin: bool,
        mut read: BufReader<OwnedReadHalf>,
        mut write: OwnedWriteHalf,
    ) -> Result<(), SupervisorError> {
        let found = {
            let st = lock(&self.state);
            st.attach
                .get(&id)
                .map(|a| (a.output.subscribe(), a.tty, a.stdin.clone(), a.pty.clone()))
        };
        let Some((mut rx, tty, stdin, pty)) = found else {
            let message = format!("container {id} is not running");
            return send(&mut write, &Reply::Failed { message }).await;
        };
        let reply = Reply::Attached {
            tty,
            stdin: stdin.is_some(),
        };
        send(&mut write, &reply).await?;
        let writes_stdin = want_stdin && stdin.is_some();
        let closes_stdin = writes_stdin && {
            let st = lock(&self.state);
            st.attach.get(&id).is_some_and(|a| a.stdin_once && !a.tty)
        };
        let me = self.clone();
        let input_id = id.clone();
        let mut input = tokio::spawn(async move {
            let mut stdin = if want_stdin { stdin } else { None };
            while let Ok(Some((kind, payload))) = attach::read_frame(&mut read).await {
                match kind {
                    attach::STDIN => {
                        if let Some(tx) = &stdin {
                            if tx.send(StdinMsg::Data(payload)).await.is_err() {
                                stdin = None;
                            }
                        }
                    }
                    attach::STDIN_EOF => match stdin.take() {
                        Some(_) if closes_stdin => me.stdin_ended(&input_id),
                        Some(_) => return, // detach
                        None => {}         // no stdin to end
                    },
                    attach::RESIZE => {
                        if let (Some(p), Some(size)) = (&pty, attach::parse_resize(&payload)) {
                            p.resize(size);
                        }
                    }
                    _ => {}
                }
            }
        });
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Ok((stream, data)) => {
                        let kind = match stream {
                            Stream::Stdout => attach::STDOUT,
                            Stream::Stderr => attach::STDERR,
                        };
                        let sent = tokio::time::timeout(
                            ATTACH_WRITE_TIMEOUT,
                            attach::write_frame(&mut write, kind, &data),
                        )
                        .await;
                        if !matches!(sent, Ok(Ok(()))) {
                            break; // gone or stuck
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::info!(container = %id, missed, "dropping an attach client that fell behind");
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = &mut input => break, // the client closed its side
            }
        }
        input.abort();
        if writes_stdin {
            self.stdin_ended(&id);
        }
        Ok(())
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
            Request::Attach { id, stdin } => {
                return self.attach(id, stdin, lines.into_inner(), write).await
            }
            Request::List => Reply::Containers {
                containers: lock(&self.state).containers.values().cloned().collect(),
            },
            Request::Forget { id } => {
                let mut st = lock(&self.state);
                if st.containers.get(&id).is_some_and(|c| c.exit.is_some()) {
                    st.containers.remove(&id);
                    st.copiers.remove(&id);
                    st.attach.remove(&id);
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

    /// Attach to container `id`'s stdio: the connection then carries
    /// frames ([`super::attach`]); closing it detaches.
    pub async fn attach(
        &self,
        id: &str,
        stdin: bool,
    ) -> Result<(AttachInfo, BufReader<OwnedReadHalf>, OwnedWriteHalf), SupervisorError> {
        let conn = UnixStream::connect(&self.socket).await?;
        let (read, mut write) = conn.into_split();
        let req = Request::Attach {
            id: id.into(),
            stdin,
        };
        let mut line =
            serde_json::to_vec(&req).map_err(|e| SupervisorError::Protocol(e.to_string()))?;
        line.push(b'\n');
        write.write_all(&line).await?;
        let mut read = BufReader::new(read);
        let mut first = String::new();
        read.read_line(&mut first).await?;
        match serde_json::from_str::<Reply>(&first) {
            Ok(Reply::Attached { tty, stdin }) => Ok((AttachInfo { tty, stdin }, read, write)),
            Ok(Reply::Failed { message }) => Err(SupervisorError::Failed(message)),
            other => Err(SupervisorError::Protocol(format!("attach: {other:?}"))),
        }
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_attach_client_that_never_reads_does_not_hold_up_the_log() {
        use std::io::Write;
        let dir = tempfile::Builder::new()
            .prefix("attach-copy-")
            .tempdir()
            .unwrap();
        let sup = Arc::new(Supervisor {
            config: SupervisorConfig {
                root: dir.path().to_path_buf(),
                runtime: "runc".into(),
                runtime_root: dir.path().join("runc"),
                log_max_bytes: 1 << 30,
                log_max_files: 1,
            },
            state: Mutex::new(State::default()),
            exits: broadcast::channel(4).0,
            quit: tokio::sync::Notify::new(),
        });
        let log = dir.path().join("c.log");
        let writer = Arc::new(Mutex::new(LogWriter::open(&log, 1 << 30, 1).unwrap()));
        // Subscribed like an attached client, and never read.
        let (output, mut stuck) = broadcast::channel(ATTACH_BACKLOG);
        let (r, mut w) = std::io::pipe().unwrap();
        let pad = "x".repeat(100);
        let line = move |i: usize| format!("line {i:05} {pad}");
        let feeder = std::thread::spawn(move || {
            for i in 0..20_000 {
                writeln!(w, "{}", line(i)).unwrap();
            }
        });
        sup.clone()
            .copy(
                "c".into(),
                Source::Pipe(r.into()),
                Stream::Stdout,
                writer,
                output,
            )
            .await;
        feeder.join().unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.lines().count(), 20_000);
        let last = text.lines().last().unwrap();
        assert!(
            last.ends_with(&format!(" stdout F line 19999 {}", "x".repeat(100))),
            "{last}"
        );
        // The client fell behind (and is dropped by its connection task).
        assert!(matches!(
            stuck.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }

    #[test]
    fn runc_errors_are_readable() {
        let text = "time=\"2026-12-03T07:00:00Z\" level=error msg=\"runc run failed: unable to start container process: exec: \\\"nope\\\": executable file not found in $PATH\"\n";
        assert_eq!(
            clean_runc_error(text),
            "runc run failed: unable to start container process: exec: \"nope\": executable file not found in $PATH"
        );
    }
}
