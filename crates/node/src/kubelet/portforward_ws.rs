//! Port-forward over the `v4.channel.k8s.io` WebSocket protocol, as kube-rs
//! and the Python client speak it: the ports are in the query (`ports=` from
//! the API, `port=` as the kubelet names it), port *i* gets data channel `2i`
//! and error channel `2i+1`, and the node's first message on each channel is
//! the port number (2 bytes, little endian). One connection per port per
//! session; the session ends when every forward has ended.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::runtime::NodeRuntime;

/// The WebSocket subprotocol.
pub(super) const PROTOCOL: &str = "v4.channel.k8s.io";
/// At most this many ports per session (each takes two channel ids < 255).
const MAX_PORTS: usize = 64;
const STREAM_BUFFER: usize = 64 * 1024;

/// The ports asked for in `query`.
pub(super) fn ports(query: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == "ports" || k == "port" {
            for p in v.split(',') {
                let port = p
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("invalid port {p:?}"))?;
                ports.push(port);
            }
        }
    }
    if ports.len() > MAX_PORTS {
        return Err(format!(
            "at most {MAX_PORTS} ports per port-forward session"
        ));
    }
    Ok(ports)
}

fn framed(channel: u8, payload: &[u8]) -> Message {
    let mut b = BytesMut::with_capacity(payload.len() + 1);
    b.put_u8(channel);
    b.put_slice(payload);
    Message::Binary(b.freeze())
}

/// Serve one session until every forward ended or the client went away.
pub(super) async fn session(
    socket: WebSocket,
    ports: Vec<u16>,
    runtime: Arc<dyn NodeRuntime>,
    uid: String,
    pod: String,
) {
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (out, mut out_rx) = mpsc::channel::<Message>(32);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if ws_tx.send(m).await.is_err() {
                return;
            }
        }
        let _ = ws_tx.close().await; // the client may be gone already
    });
    let mut forwards = JoinSet::new();
    let mut inputs = Vec::with_capacity(ports.len());
    for (i, port) in ports.iter().copied().enumerate() {
        // i < MAX_PORTS, so both channel ids fit a byte.
        let data = u8::try_from(2 * i).unwrap_or(u8::MAX);
        let error = data.saturating_add(1);
        let (ours, theirs) = tokio::io::duplex(STREAM_BUFFER);
        let (mut our_read, our_write) = tokio::io::split(ours);
        inputs.push(Some(our_write));
        for ch in [data, error] {
            let _ = out.send(framed(ch, &port.to_le_bytes())).await; // writer gone: ending anyway
        }
        let (runtime, uid, pod, out) = (runtime.clone(), uid.clone(), pod.clone(), out.clone());
        forwards.spawn(async move {
            let pump_out = out.clone();
            let pump = async move {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match our_read.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let m = framed(data, buf.get(..n).unwrap_or_default());
                            if pump_out.send(m).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            };
            let forward = runtime.port_forward(&uid, port, Box::new(theirs));
            let (result, ()) = tokio::join!(forward, pump);
            if let Err(e) = result {
                let msg = format!("error forwarding port {port} to pod {pod}, uid {uid}: {e}");
                let _ = out.send(framed(error, msg.as_bytes())).await; // as above
            }
        });
    }
    loop {
        tokio::select! {
            m = ws_rx.next() => {
                let data: Bytes = match m {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => continue,
                };
                let Some((&channel, payload)) = data.split_first() else { continue };
                if channel % 2 != 0 {
                    continue;
                }
                let slot = inputs.get_mut(usize::from(channel / 2));
                if let Some(slot @ Some(_)) = slot {
                    let failed = match slot.as_mut() {
                        Some(w) => w.write_all(payload).await.is_err(),
                        None => false,
                    };
                    if failed {
                        *slot = None;
                    }
                }
            }
            r = forwards.join_next() => if r.is_none() { break },
        }
    }
    // The client is done (or every forward is): end the rest.
    for w in inputs.iter_mut().filter_map(Option::take) {
        let mut w = w;
        let _ = w.shutdown().await; // the forward may have ended
    }
    forwards.abort_all();
    drop(out);
    let _ = writer.await; // nothing left to send if it panicked
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ports_from_either_spelling() {
        assert_eq!(ports("ports=8080&ports=9090").unwrap(), vec![8080, 9090]);
        assert_eq!(ports("port=80,81").unwrap(), vec![80, 81]);
        assert_eq!(ports("").unwrap(), Vec::<u16>::new());
        assert!(ports("ports=0").is_err());
        assert!(ports("ports=http").is_err());
    }
}
