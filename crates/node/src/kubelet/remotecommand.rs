//! exec and attach over the WebSocket channel protocol (`v5.channel.k8s.io`,
//! or `v4.channel.k8s.io`). Every binary message starts with a channel byte:
//!
//! | channel | direction | content |
//! |---|---|---|
//! | 0 | client → node | stdin |
//! | 1, 2 | node → client | stdout, stderr |
//! | 3 | node → client | the final `metav1.Status` JSON |
//! | 4 | client → node | terminal size `{"Width":w,"Height":h}` |
//! | 255 | client → node | v5 only: the channel in the next byte is closed (`FF 00`: stdin EOF) |
//!
//! After the status the node sends a close frame (1000).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequest, Path, Request, State};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{bad_request, flag, runtime_error_response, Kubelet};
use crate::runtime::{ExecRequest, RuntimeError, TerminalSize};

/// The current channel protocol (stdin EOF via the close channel).
pub const V5: &str = "v5.channel.k8s.io";
/// The previous one (no way to close stdin alone).
pub const V4: &str = "v4.channel.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// Bytes buffered between the socket and the process per stream.
pub(super) const STREAM_BUFFER: usize = 64 * 1024;
/// How long output may keep draining after the command ended (a process that
/// left a child holding its stdout open must not hold the session for ever).
pub(super) const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(10);

/// What the client asked for in the query.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Streams {
    pub(super) command: Vec<String>,
    pub(super) stdin: bool,
    pub(super) stdout: bool,
    pub(super) stderr: bool,
    pub(super) tty: bool,
}

impl Streams {
    /// kubectl sends `stdin=true`; the upstream API server forwards the same
    /// flags as `input=1`, `output=1`, `error=1`. Both spellings are read.
    fn parse(query: &str) -> Streams {
        let mut s = Streams::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "command" => s.command.push(v.into_owned()),
                "stdin" | "input" => s.stdin = flag(&v),
                "stdout" | "output" => s.stdout = flag(&v),
                "stderr" | "error" => s.stderr = flag(&v),
                "tty" => s.tty = flag(&v),
                _ => {}
            }
        }
        // With a terminal, stderr is merged into stdout (as the kubelet does).
        if s.tty {
            s.stderr = false;
        }
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Exec,
    Attach,
}

pub(super) async fn exec(
    state: State<Arc<Kubelet>>,
    path: Path<(String, String, String, String)>,
    req: Request,
) -> Response {
    serve(state, path, req, Action::Exec).await
}

pub(super) async fn attach(
    state: State<Arc<Kubelet>>,
    path: Path<(String, String, String, String)>,
    req: Request,
) -> Response {
    serve(state, path, req, Action::Attach).await
}

async fn serve(
    State(k): State<Arc<Kubelet>>,
    Path((namespace, pod, uid, container)): Path<(String, String, String, String)>,
    req: Request,
    action: Action,
) -> Response {
    let streams = Streams::parse(req.uri().query().unwrap_or(""));
    if action == Action::Exec && streams.command.is_empty() {
        return bad_request("you must specify at least one command for the container");
    }
    if !(streams.stdin || streams.stdout || streams.stderr) {
        return bad_request("you must specify at least 1 of stdin, stdout, stderr");
    }
    if k.runtime.pod_status(&uid).await.is_none() {
        return runtime_error_response(&RuntimeError::PodNotFound(format!("{namespace}/{pod}")));
    }
    if super::portforward::wants_upgrade_to(req.headers(), "SPDY/3.1") {
        let target = super::remotecommand_spdy::Target {
            runtime: k.runtime.clone(),
            uid,
            container,
            streams,
            action,
        };
        return super::remotecommand_spdy::serve(req, target, k.shutdown.clone());
    }
    let ws = match WebSocketUpgrade::from_request(req, &()).await {
        Ok(ws) => ws.protocols([V5, V4]),
        Err(rejection) => {
            return bad_request(&format!(
                "unable to upgrade connection: {} (this node speaks WebSocket {V5} and {V4}, and SPDY/3.1)",
                rejection.body_text()
            ))
        }
    };
    let v5 = match ws.selected_protocol().and_then(|p| p.to_str().ok()) {
        Some(V5) => true,
        Some(_) => false,
        None => {
            return bad_request(&format!(
                "unable to upgrade connection: no supported WebSocket subprotocol offered (supported: {V5}, {V4})"
            ))
        }
    };
    let shutdown = k.shutdown.clone();
    ws.on_upgrade(move |socket| async move {
        let session = Session {
            k,
            uid,
            container,
            streams,
            action,
            v5,
        };
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = session.run(socket) => {}
        }
    })
}

struct Session {
    k: Arc<Kubelet>,
    uid: String,
    container: String,
    streams: Streams,
    action: Action,
    v5: bool,
}

fn framed(channel: u8, payload: &[u8]) -> Message {
    let mut b = BytesMut::with_capacity(payload.len() + 1);
    b.put_u8(channel);
    b.put_slice(payload);
    Message::Binary(b.freeze())
}

/// Copy `from` to the socket as messages on `channel` until EOF.
async fn pump(mut from: impl AsyncRead + Unpin, channel: u8, out: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out
                    .send(framed(channel, buf.get(..n).unwrap_or_default()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

impl Session {
    async fn run(self, socket: WebSocket) {
        let (mut ws_tx, mut ws_rx) = socket.split();
        let (out, mut out_rx) = mpsc::channel::<Message>(32);
        let mut tasks = JoinSet::new();
        // The only writer of the socket: output, then the status, then close.
        let writer = tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                let closing = matches!(m, Message::Close(_));
                if ws_tx.send(m).await.is_err() || closing {
                    break;
                }
            }
            let _ = ws_tx.flush().await; // the client may be gone already
        });

        let mut request = ExecRequest {
            command: self.streams.command.clone(),
            tty: self.streams.tty,
            stdin: None,
            stdout: None,
            stderr: None,
            resize: None,
        };
        let mut stdin_writer = None;
        if self.streams.stdin {
            let (ours, theirs) = tokio::io::duplex(STREAM_BUFFER);
            request.stdin = Some(Box::pin(theirs));
            stdin_writer = Some(ours);
        }
        let mut drains = JoinSet::new();
        for (wanted, channel, slot) in [
            (self.streams.stdout, STDOUT, &mut request.stdout),
            (self.streams.stderr, STDERR, &mut request.stderr),
        ] {
            if wanted {
                let (ours, theirs) = tokio::io::duplex(STREAM_BUFFER);
                *slot = Some(Box::pin(theirs));
                drains.spawn(pump(ours, channel, out.clone()));
            }
        }
        let mut resize_tx = None;
        if self.streams.tty {
            let (tx, rx) = mpsc::channel(4);
            request.resize = Some(rx);
            resize_tx = Some(tx);
        }

        // Client -> process: stdin bytes, resizes, v5 close signals.
        let v5 = self.v5;
        tasks.spawn(async move {
            while let Some(Ok(m)) = ws_rx.next().await {
                let data: Bytes = match m {
                    Message::Binary(b) => b,
                    Message::Close(_) => break,
                    _ => continue,
                };
                let Some((&channel, payload)) = data.split_first() else {
                    continue;
                };
                match channel {
                    STDIN => {
                        if let Some(w) = stdin_writer.as_mut() {
                            if w.write_all(payload).await.is_err() {
                                stdin_writer = None;
                            }
                        }
                    }
                    RESIZE => {
                        if let (Some(tx), Some(size)) = (&resize_tx, parse_resize(payload)) {
                            // A full queue only drops an intermediate size.
                            let _ = tx.try_send(size);
                        }
                    }
                    CLOSE if v5 => match payload.first() {
                        Some(&STDIN) => {
                            if let Some(mut w) = stdin_writer.take() {
                                let _ = w.shutdown().await; // EOF for the process
                            }
                        }
                        Some(&RESIZE) => resize_tx = None,
                        _ => {}
                    },
                    _ => {}
                }
            }
            // The client is gone (or detached): the process sees stdin EOF.
            if let Some(mut w) = stdin_writer.take() {
                let _ = w.shutdown().await; // the process may be gone already
            }
        });

        let status = match self.action {
            Action::Exec => {
                let result = self
                    .k
                    .runtime
                    .exec(&self.uid, &self.container, request)
                    .await;
                exec_status(&self.streams.command, result)
            }
            Action::Attach => {
                let result = self
                    .k
                    .runtime
                    .attach(&self.uid, &self.container, request)
                    .await;
                attach_status(result)
            }
        };
        // Output written before the exit goes out before the status.
        let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, async {
            while drains.join_next().await.is_some() {}
        })
        .await; // past the deadline the rest is dropped
        drains.abort_all();
        let _ = out.send(framed(ERROR, status.to_string().as_bytes())).await; // the writer ends only when the client is gone
        let _ = out
            .send(Message::Close(Some(CloseFrame {
                code: 1000,
                reason: "".into(),
            })))
            .await; // as above
        drop(out);
        let _ = writer.await; // a panicked writer has nothing left to send
        tasks.abort_all();
    }
}

pub(super) fn parse_resize(payload: &[u8]) -> Option<TerminalSize> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    Some(TerminalSize {
        width: u16::try_from(v.get("Width")?.as_u64()?).ok()?,
        height: u16::try_from(v.get("Height")?.as_u64()?).ok()?,
    })
}

/// The status the kubelet writes on channel 3 for an exec.
pub(super) fn exec_status(command: &[String], result: Result<i32, RuntimeError>) -> Value {
    match result {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(e) => internal(format!("error executing command in container: {e}")),
    }
}

pub(super) fn attach_status(result: Result<(), RuntimeError>) -> Value {
    match result {
        Ok(()) => json!({"metadata": {}, "status": "Success"}),
        Err(e) => internal(format!("error attaching to container: {e}")),
    }
}

fn internal(message: String) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {message}"),
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn streams_from_query() {
        let s = Streams::parse(
            "command=sh&command=-c&command=echo+hi&stdin=true&stdout=true&stderr=true&tty=true",
        );
        assert_eq!(s.command, ["sh", "-c", "echo hi"]);
        assert!(s.stdin && s.stdout && s.tty);
        assert!(!s.stderr, "stderr is merged into stdout under a tty");
        let s = Streams::parse("input=1&output=1&error=1");
        assert!(s.stdin && s.stdout && s.stderr && !s.tty);
    }

    #[test]
    fn resize_messages() {
        assert_eq!(
            parse_resize(br#"{"Width":100,"Height":30}"#),
            Some(TerminalSize {
                width: 100,
                height: 30
            })
        );
        assert_eq!(parse_resize(b"{\"Width\":-1,\"Height\":3}"), None);
        assert_eq!(parse_resize(b"garbage"), None);
    }

    #[test]
    fn exit_status_shapes() {
        let ok = exec_status(&[], Ok(0));
        assert_eq!(ok["status"], "Success");
        let failed = exec_status(&["false".into()], Ok(3));
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
        let err = exec_status(&[], Err(RuntimeError::Unsupported("no processes".into())));
        assert_eq!(err["reason"], "InternalError");
        assert_eq!(
            err["message"],
            "Internal error occurred: error executing command in container: no processes"
        );
    }
}
