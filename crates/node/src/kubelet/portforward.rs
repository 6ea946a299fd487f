//! `/portForward/{ns}/{pod}/{uid}`: a SPDY/3.1 session whose streams come in
//! pairs per forwarded connection, as kubectl opens them: first a stream with
//! `streamType: error`, then one with `streamType: data`, both carrying the
//! remote `port` and the same `requestID`. The data stream's bytes go to
//! [`crate::runtime::NodeRuntime::port_forward`]; if that fails, the reason is
//! written on the error stream (kubectl prints it).
//!
//! The session runs over a WebSocket (`SPDY/3.1+portforward.k8s.io`, SPDY
//! frames inside binary messages; what kubectl 1.32 tries first) or over the
//! raw connection after a `POST` with `Upgrade: SPDY/3.1` (its fallback).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequest, Path, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::spdy::{self, header as spdy_header, rst, Frame, FLAG_FIN};
use super::{bad_request, runtime_error_response, status_response, ws_io, Kubelet};
use crate::runtime::{NodeRuntime, RuntimeError};

/// The WebSocket subprotocol of the SPDY tunnel.
pub const SPDY_TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// The stream protocol negotiated with `X-Stream-Protocol-Version`.
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";
const STREAM_PROTOCOL_HEADER: &str = "x-stream-protocol-version";

/// Bytes buffered between a stream and the runtime in each direction.
const STREAM_BUFFER: usize = 64 * 1024;
/// Connections whose stream pair is not complete yet, per session. kubectl
/// opens the two streams back to back, so this only bounds a hostile peer.
const MAX_PENDING_PAIRS: usize = 128;

/// The pod a session forwards to.
struct Target {
    runtime: Arc<dyn NodeRuntime>,
    uid: String,
    /// `namespace/name`, for messages.
    pod: String,
}

pub(super) async fn serve(
    State(k): State<Arc<Kubelet>>,
    Path((namespace, pod, uid)): Path<(String, String, String)>,
    mut req: Request,
) -> Response {
    if k.runtime.pod_status(&uid).await.is_none() {
        return runtime_error_response(&RuntimeError::PodNotFound(format!("{namespace}/{pod}")));
    }
    let target = Arc::new(Target {
        runtime: k.runtime.clone(),
        uid,
        pod: format!("{namespace}/{pod}"),
    });
    let shutdown = k.shutdown.clone();
    if wants_upgrade_to(req.headers(), "websocket") {
        let ports = match super::portforward_ws::ports(req.uri().query().unwrap_or("")) {
            Ok(p) => p,
            Err(msg) => return bad_request(&msg),
        };
        let ws = match WebSocketUpgrade::from_request(req, &()).await {
            Ok(ws) => ws.protocols([SPDY_TUNNEL_PROTOCOL, super::portforward_ws::PROTOCOL]),
            Err(rejection) => return bad_request(&rejection.body_text()),
        };
        return match ws.selected_protocol().and_then(|p| p.to_str().ok()) {
            Some(SPDY_TUNNEL_PROTOCOL) => ws.on_upgrade(move |socket| async move {
                let (reader, writer) = ws_io::split(socket);
                session(reader, writer, target, shutdown).await;
            }),
            Some(_) if ports.is_empty() => bad_request(
                "query parameter \"port\" is required for the v4.channel.k8s.io port-forward protocol",
            ),
            Some(_) => ws.on_upgrade(move |socket| async move {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = super::portforward_ws::session(socket, ports, target.runtime.clone(), target.uid.clone(), target.pod.clone()) => {}
                }
            }),
            None => bad_request(&format!(
                "unable to upgrade: the WebSocket subprotocol must be {SPDY_TUNNEL_PROTOCOL} or {}",
                super::portforward_ws::PROTOCOL
            )),
        };
    }
    if wants_upgrade_to(req.headers(), "SPDY/3.1") {
        let offered: Vec<&str> = req
            .headers()
            .get_all(STREAM_PROTOCOL_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        if !offered.contains(&PORT_FORWARD_PROTOCOL) {
            return status_response(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports [\"{PORT_FORWARD_PROTOCOL}\"]"
                ),
            );
        }
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let (reader, writer) = tokio::io::split(TokioIo::new(upgraded));
                    session(reader, writer, target, shutdown).await;
                }
                Err(e) => tracing::debug!(error = %e, "port-forward upgrade failed"),
            }
        });
        let mut r = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let h = r.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        h.insert(
            STREAM_PROTOCOL_HEADER,
            HeaderValue::from_static(PORT_FORWARD_PROTOCOL),
        );
        return r;
    }
    bad_request(&format!(
        "port-forward needs a connection upgrade: WebSocket with subprotocol {SPDY_TUNNEL_PROTOCOL}, or SPDY/3.1"
    ))
}

pub(super) fn wants_upgrade_to(headers: &HeaderMap, protocol: &str) -> bool {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case(protocol))
}

/// What a data stream's inbound task is told.
enum Inbound {
    Data(Bytes),
    Fin,
}

/// One forwarded connection while its two streams are being opened.
#[derive(Default)]
struct Pair {
    port: u16,
    error_stream: Option<u32>,
    data_stream: Option<u32>,
    /// The runtime's end of the data stream.
    runtime_end: Option<DuplexStream>,
}

struct Session {
    target: Arc<Target>,
    out: mpsc::Sender<Frame>,
    /// Open streams: data streams have an inbound sender, error streams none
    /// (kubectl half-closes them at once; nothing is read from them).
    streams: HashMap<u32, Option<mpsc::Sender<Inbound>>>,
    pairs: HashMap<String, Pair>,
    tasks: JoinSet<()>,
}

/// Serve one SPDY session until the peer goes away (or `shutdown`). Every
/// stream task lives in the session's `JoinSet`, so nothing outlives it.
async fn session<R, W>(reader: R, writer: W, target: Arc<Target>, shutdown: CancellationToken)
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
    let mut s = Session {
        target,
        out,
        streams: HashMap::new(),
        pairs: HashMap::new(),
        tasks: JoinSet::new(),
    };
    s.tasks.spawn(write);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = s.tasks.join_next(), if !s.tasks.is_empty() => {}
            f = frames.next() => match f {
                None => break,
                Some(Err(e)) => {
                    tracing::debug!(pod = %s.target.pod, error = %e, "port-forward session ended");
                    break;
                }
                Some(Ok(Frame::GoAway { .. })) => break,
                Some(Ok(frame)) => s.handle(frame).await,
            },
        }
    }
}

impl Session {
    async fn send(&self, frame: Frame) {
        // A failed send means the writer is gone, i.e. the session is ending.
        let _ = self.out.send(frame).await;
    }

    async fn handle(&mut self, frame: Frame) {
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => self.open(stream_id, flags, &headers).await,
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                let fin = flags & FLAG_FIN != 0;
                match self.streams.get(&stream_id) {
                    Some(Some(tx)) => {
                        if !data.is_empty() {
                            let _ = tx.send(Inbound::Data(data)).await; // gone: stream already closing
                        }
                        if fin {
                            let _ = tx.send(Inbound::Fin).await; // as above
                        }
                    }
                    Some(None) => {}
                    None => {
                        self.send(Frame::RstStream {
                            stream_id,
                            status: rst::INVALID_STREAM,
                        })
                        .await
                    }
                }
                if fin {
                    self.streams.remove(&stream_id);
                }
            }
            Frame::RstStream { stream_id, .. } => {
                self.streams.remove(&stream_id);
                self.pairs.retain(|_, p| {
                    p.data_stream != Some(stream_id) && p.error_stream != Some(stream_id)
                });
            }
            Frame::Ping(id) => self.send(Frame::Ping(id)).await,
            // Replies and headers only matter for streams we open (none);
            // flow control is not used (see the spdy module docs).
            Frame::SynReply { .. }
            | Frame::Headers { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Settings(_)
            | Frame::GoAway { .. }
            | Frame::Unknown(_) => {}
        }
    }

    async fn open(&mut self, stream_id: u32, flags: u8, headers: &spdy::Headers) {
        let port = spdy_header(headers, "port").and_then(|p| p.parse::<u16>().ok());
        let request_id = spdy_header(headers, "requestid").map(str::to_string);
        let kind = spdy_header(headers, "streamtype");
        let (Some(port), Some(request_id), Some(kind @ ("error" | "data"))) =
            (port, request_id, kind)
        else {
            tracing::debug!(
                stream_id,
                ?headers,
                "port-forward stream without valid port, requestID or streamType"
            );
            self.send(Frame::RstStream {
                stream_id,
                status: rst::PROTOCOL_ERROR,
            })
            .await;
            return;
        };
        if self.streams.contains_key(&stream_id)
            || !self.pairs.contains_key(&request_id) && self.pairs.len() >= MAX_PENDING_PAIRS
        {
            self.send(Frame::RstStream {
                stream_id,
                status: rst::REFUSED_STREAM,
            })
            .await;
            return;
        }
        self.send(Frame::SynReply {
            stream_id,
            flags: 0,
            headers: Vec::new(),
        })
        .await;
        let pair = self.pairs.entry(request_id.clone()).or_default();
        pair.port = port;
        if kind == "error" {
            pair.error_stream = Some(stream_id);
            if flags & FLAG_FIN == 0 {
                self.streams.insert(stream_id, None);
            }
        } else {
            pair.data_stream = Some(stream_id);
            let (ours, theirs) = tokio::io::duplex(STREAM_BUFFER);
            pair.runtime_end = Some(theirs);
            let (mut our_read, mut our_write) = tokio::io::split(ours);
            let (tx, mut rx) = mpsc::channel::<Inbound>(16);
            if flags & FLAG_FIN == 0 {
                self.streams.insert(stream_id, Some(tx));
            }
            // Peer -> runtime. Ends on FIN or reset (the sender is dropped),
            // then tells the runtime there is nothing more to read.
            self.tasks.spawn(async move {
                while let Some(Inbound::Data(b)) = rx.recv().await {
                    if our_write.write_all(&b).await.is_err() {
                        break;
                    }
                }
                let _ = our_write.shutdown().await; // the runtime may be gone already
            });
            // Runtime -> peer, then FIN.
            let out = self.out.clone();
            self.tasks.spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match our_read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let data = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                            let frame = Frame::Data {
                                stream_id,
                                flags: 0,
                                data,
                            };
                            if out.send(frame).await.is_err() {
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
            });
        }
        self.start_if_paired(&request_id);
    }

    fn start_if_paired(&mut self, request_id: &str) {
        let complete = self
            .pairs
            .get(request_id)
            .is_some_and(|p| p.error_stream.is_some() && p.data_stream.is_some());
        if !complete {
            return;
        }
        let Some(pair) = self.pairs.remove(request_id) else {
            return;
        };
        let (Some(error_stream), Some(runtime_end)) = (pair.error_stream, pair.runtime_end) else {
            return;
        };
        let port = pair.port;
        let target = self.target.clone();
        let out = self.out.clone();
        self.tasks.spawn(async move {
            let result = target
                .runtime
                .port_forward(&target.uid, port, Box::new(runtime_end))
                .await;
            if let Err(e) = result {
                let message = format!(
                    "error forwarding port {port} to pod {}, uid {}: {e}",
                    target.pod, target.uid
                );
                tracing::debug!(pod = %target.pod, port, error = %e, "port-forward failed");
                let _ = out
                    .send(Frame::Data {
                        stream_id: error_stream,
                        flags: 0,
                        data: Bytes::from(message),
                    })
                    .await; // the session is ending if this fails
            }
            let _ = out
                .send(Frame::Data {
                    stream_id: error_stream,
                    flags: FLAG_FIN,
                    data: Bytes::new(),
                })
                .await; // as above
        });
    }
}
