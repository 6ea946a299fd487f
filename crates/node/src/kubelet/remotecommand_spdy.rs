//! exec and attach over SPDY/3.1 (`POST` with `Upgrade: SPDY/3.1`): what
//! kubectl falls back to when the WebSocket upgrade fails, and what older Go
//! clients speak. The client opens one stream per channel, named by its
//! `streamType` header (`error`, `stdin`, `stdout`, `stderr`, `resize`); the
//! command starts once every stream the query asked for is open. stdin ends
//! with the stream's FIN; resizes are JSON objects, one per line; the final
//! `metav1.Status` goes on the error stream (protocols v4 and v5 only: the
//! older ones carry plain text there and are not offered).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http::{header, HeaderValue, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::remotecommand::{
    attach_status, exec_status, parse_resize, Action, Streams, DRAIN_AFTER_EXIT, STREAM_BUFFER, V4,
    V5,
};
use super::spdy::{self, header as spdy_header, rst, Frame, FLAG_FIN};
use super::status_response;
use crate::runtime::{ExecRequest, NodeRuntime, TerminalSize};

const STREAM_PROTOCOL_HEADER: &str = "x-stream-protocol-version";
/// A resize line longer than this is not a terminal size.
const MAX_RESIZE_LINE: usize = 1024;

/// What the session runs.
pub(super) struct Target {
    pub(super) runtime: Arc<dyn NodeRuntime>,
    pub(super) uid: String,
    pub(super) container: String,
    pub(super) streams: Streams,
    pub(super) action: Action,
}

/// Answer the upgrade (101 with the negotiated protocol) and run the session
/// on the upgraded connection.
pub(super) fn serve(mut req: Request, target: Target, shutdown: CancellationToken) -> Response {
    let offered: Vec<String> = req
        .headers()
        .get_all(STREAM_PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .collect();
    // The client's order is its preference.
    let Some(chosen) = offered
        .iter()
        .find_map(|p| [V5, V4].into_iter().find(|s| s == p))
    else {
        return status_response(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports [\"{V5}\" \"{V4}\"]"
            ),
        );
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let (reader, writer) = tokio::io::split(TokioIo::new(upgraded));
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = session(reader, writer, target) => {}
                }
            }
            Err(e) => tracing::debug!(error = %e, "exec upgrade failed"),
        }
    });
    let mut r = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    h.insert(STREAM_PROTOCOL_HEADER, HeaderValue::from_static(chosen));
    r
}

/// Where a client stream's bytes go.
enum Sink {
    Stdin(Option<WriteHalf<DuplexStream>>),
    Resize(Vec<u8>),
    /// error, stdout, stderr: nothing is read from them.
    Ignore,
}

type Running = Pin<Box<dyn Future<Output = Value> + Send>>;

async fn session<R, W>(reader: R, writer: W, target: Target)
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let spdy::SessionIo {
        mut frames,
        out,
        write,
    } = match spdy::session_io(reader, writer) {
        Ok(io) => io,
        Err(e) => {
            tracing::warn!(error = %e, "SPDY header compression unavailable");
            return;
        }
    };
    let writer = tokio::spawn(write);

    let s = &target.streams;
    let mut wanted: Vec<&str> = vec!["error"];
    for (on, kind) in [
        (s.stdin, "stdin"),
        (s.stdout, "stdout"),
        (s.stderr, "stderr"),
        (s.tty, "resize"),
    ] {
        if on {
            wanted.push(kind);
        }
    }
    let mut ids: HashMap<&'static str, u32> = HashMap::new();
    let mut sinks: HashMap<u32, Sink> = HashMap::new();
    let mut request = Some(ExecRequest {
        command: s.command.clone(),
        tty: s.tty,
        stdin: None,
        stdout: None,
        stderr: None,
        resize: None,
    });
    let mut resize_tx: Option<mpsc::Sender<TerminalSize>> = None;
    let mut drains = JoinSet::new();
    let mut running: Option<Running> = None;

    let status = loop {
        tokio::select! {
            status = async {
                match running.as_mut() {
                    Some(r) => r.await,
                    None => std::future::pending().await,
                }
            } => break Some(status),
            f = frames.next() => {
                let frame = match f {
                    Some(Ok(f)) => f,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "exec session ended");
                        break None;
                    }
                    None => break None,
                };
                match frame {
                    Frame::SynStream { stream_id, flags, headers, .. } => {
                        let kind = match spdy_header(&headers, "streamtype") {
                            Some("error") => "error",
                            Some("stdin") => "stdin",
                            Some("stdout") => "stdout",
                            Some("stderr") => "stderr",
                            Some("resize") => "resize",
                            _ => "",
                        };
                        if !wanted.contains(&kind) || ids.contains_key(kind) || request.is_none() {
                            let _ = out.send(Frame::RstStream { stream_id, status: rst::PROTOCOL_ERROR }).await;
                            continue;
                        }
                        let _ = out.send(Frame::SynReply { stream_id, flags: 0, headers: Vec::new() }).await;
                        ids.insert(kind, stream_id);
                        let Some(req) = request.as_mut() else { continue };
                        let sink_for = match kind {
                            "stdin" => {
                                let (ours, theirs) = tokio::io::duplex(STREAM_BUFFER);
                                let (_, write) = tokio::io::split(ours);
                                req.stdin = Some(Box::pin(theirs));
                                Sink::Stdin(Some(write))
                            }
                            "stdout" | "stderr" => {
                                let (ours, theirs) = tokio::io::duplex(STREAM_BUFFER);
                                if kind == "stdout" {
                                    req.stdout = Some(Box::pin(theirs));
                                } else {
                                    req.stderr = Some(Box::pin(theirs));
                                }
                                drains.spawn(pump(ours, stream_id, out.clone()));
                                Sink::Ignore
                            }
                            "resize" => {
                                let (tx, rx) = mpsc::channel(4);
                                req.resize = Some(rx);
                                resize_tx = Some(tx);
                                Sink::Resize(Vec::new())
                            }
                            _ => Sink::Ignore,
                        };
                        if flags & FLAG_FIN == 0 {
                            sinks.insert(stream_id, sink_for);
                        } else if let Sink::Stdin(Some(mut w)) = sink_for {
                            let _ = w.shutdown().await; // stdin already at its end
                        }
                        if wanted.iter().all(|k| ids.contains_key(k)) {
                            if let Some(req) = request.take() {
                                running = Some(start(&target, req));
                            }
                        }
                    }
                    Frame::Data { stream_id, flags, data } => {
                        if let Some(sink) = sinks.get_mut(&stream_id) {
                            feed(sink, &data, resize_tx.as_ref()).await;
                        }
                        if flags & FLAG_FIN != 0 {
                            if let Some(Sink::Stdin(Some(mut w))) = sinks.remove(&stream_id) {
                                let _ = w.shutdown().await; // EOF for the process
                            }
                        }
                    }
                    Frame::RstStream { stream_id, .. } => {
                        sinks.remove(&stream_id);
                    }
                    Frame::Ping(id) => {
                        let _ = out.send(Frame::Ping(id)).await;
                    }
                    Frame::GoAway { .. } => break None,
                    _ => {}
                }
            }
        }
    };
    // The client went away before the end: dropping the running future
    // drops the process's streams.
    let Some(status) = status else {
        drop(running);
        drains.abort_all();
        return;
    };
    let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, async {
        while drains.join_next().await.is_some() {}
    })
    .await; // past the deadline the rest is dropped
    drains.abort_all();
    if let Some(&error) = ids.get("error") {
        let _ = out
            .send(Frame::Data {
                stream_id: error,
                flags: FLAG_FIN,
                data: Bytes::from(status.to_string()),
            })
            .await; // the writer is gone only if the client is
    }
    drop(out);
    let _ = writer.await; // flushes everything queued
}

fn start(target: &Target, request: ExecRequest) -> Running {
    let runtime = target.runtime.clone();
    let (uid, container, action) = (target.uid.clone(), target.container.clone(), target.action);
    let command = target.streams.command.clone();
    Box::pin(async move {
        match action {
            Action::Exec => exec_status(&command, runtime.exec(&uid, &container, request).await),
            Action::Attach => attach_status(runtime.attach(&uid, &container, request).await),
        }
    })
}

async fn feed(sink: &mut Sink, data: &[u8], resize: Option<&mpsc::Sender<TerminalSize>>) {
    match sink {
        Sink::Stdin(slot) => {
            let failed = match slot.as_mut() {
                Some(w) => w.write_all(data).await.is_err(),
                None => false,
            };
            if failed {
                *slot = None;
            }
        }
        Sink::Resize(buf) => {
            buf.extend_from_slice(data);
            while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                if let (Some(tx), Some(size)) = (resize, parse_resize(&line)) {
                    // A full queue only drops an intermediate size.
                    let _ = tx.try_send(size);
                }
            }
            if buf.len() > MAX_RESIZE_LINE {
                buf.clear();
            }
        }
        Sink::Ignore => {}
    }
}

/// Copy `from` to the client's stream `stream_id`, then FIN it.
async fn pump(mut from: DuplexStream, stream_id: u32, out: mpsc::Sender<Frame>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let data = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                if out
                    .send(Frame::Data {
                        stream_id,
                        flags: 0,
                        data,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    let _ = out
        .send(Frame::Data {
            stream_id,
            flags: FLAG_FIN,
            data: Bytes::new(),
        })
        .await; // the session is ending if this fails
}
