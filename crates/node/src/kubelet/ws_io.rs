//! A WebSocket as a byte stream: binary message payloads read as one
//! continuous stream, every write sent as one binary message. This is how
//! client-go tunnels SPDY through a WebSocket (`SPDY/3.1+portforward.k8s.io`):
//! frame boundaries and message boundaries are unrelated.

use std::io;
use std::pin::Pin;

use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use futures::{future, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::{CopyToBytes, SinkWriter, StreamReader};

pub(super) type Reader = Pin<Box<dyn AsyncRead + Send>>;
pub(super) type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// Split `socket` into its reading and writing halves. The reader ends at the
/// peer's close frame; shutting the writer down sends ours.
pub(super) fn split(socket: WebSocket) -> (Reader, Writer) {
    let (sink, stream) = socket.split();
    let messages = stream
        .take_while(|m| future::ready(!matches!(m, Ok(Message::Close(_)))))
        .filter_map(|m| {
            future::ready(match m {
                Ok(Message::Binary(b)) => Some(Ok(b)),
                // Text, ping and pong carry no tunnel bytes (pongs are
                // answered by the WebSocket layer).
                Ok(_) => None,
                Err(e) => Some(Err(io::Error::other(e))),
            })
        });
    let reader = StreamReader::new(Box::pin(messages));
    let sink = sink
        .sink_map_err(io::Error::other)
        .with(|b: Bytes| future::ready(Ok::<_, io::Error>(Message::Binary(b))));
    let writer = SinkWriter::new(CopyToBytes::new(Box::pin(sink)));
    (Box::pin(reader), Box::pin(writer))
}
