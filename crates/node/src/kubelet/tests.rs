//! The kubelet router over a real TCP listener, driven by a WebSocket client
//! (tokio-tungstenite), a SPDY client written here and raw HTTP, against a
//! runtime whose exec runs host processes and whose port-forward dials
//! 127.0.0.1: every byte crosses the real protocols.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::spdy::{Codec, Frame, FLAG_FIN};
use crate::runtime::{
    ByteStream, ContainerState, ContainerStatus, ExecRequest, LogOptions, NodeFacts, NodeRuntime,
    PodEvent, PodRuntimeStatus, PodStats, RuntimeError, TerminalSize,
};

const UID: &str = "uid-1";
/// The one pod uid the test runtime does not know.
const UNKNOWN_UID: &str = "other-uid";
/// Every wait in these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(30);

/// A runtime for protocol tests: exec runs the command on the host, port
/// forwarding dials 127.0.0.1:<port>, logs come from a channel the test feeds.
struct HostRuntime {
    /// The state of container `main`.
    state: ContainerState,
    /// Terminal sizes exec received.
    resizes: Mutex<Vec<TerminalSize>>,
    /// The log stream `logs` hands out (once).
    log_lines: Mutex<Option<mpsc::Receiver<Vec<u8>>>>,
}

impl HostRuntime {
    fn new(state: ContainerState) -> Arc<HostRuntime> {
        Arc::new(HostRuntime {
            state,
            resizes: Mutex::new(Vec::new()),
            log_lines: Mutex::new(None),
        })
    }

    fn running() -> Arc<HostRuntime> {
        HostRuntime::new(ContainerState::Running {
            started_at: Timestamp::UNIX_EPOCH,
        })
    }
}

async fn copy_in(
    input: Option<crate::runtime::Input>,
    child_in: Option<tokio::process::ChildStdin>,
) {
    if let (Some(mut from), Some(mut to)) = (input, child_in) {
        let _ = tokio::io::copy(&mut from, &mut to).await;
    }
}

async fn copy_out(from: Option<impl AsyncRead + Unpin>, to: Option<crate::runtime::Output>) {
    if let (Some(mut from), Some(mut to)) = (from, to) {
        let _ = tokio::io::copy(&mut from, &mut to).await;
        let _ = to.shutdown().await;
    }
}

#[async_trait::async_trait]
impl NodeRuntime for HostRuntime {
    fn facts(&self) -> NodeFacts {
        NodeFacts {
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
            pods: 10,
            ephemeral_storage_bytes: 1 << 30,
            architecture: "amd64".into(),
            container_runtime_version: "test://0".into(),
            kernel_version: String::new(),
            os_image: String::new(),
            pod_cidr: None,
        }
    }

    fn subscribe(&self) -> mpsc::UnboundedReceiver<PodEvent> {
        mpsc::unbounded_channel().1
    }

    async fn run_pod(&self, _pod: &Pod) -> Result<bool, RuntimeError> {
        Ok(false)
    }

    async fn stop_pod(&self, _uid: &str, _grace: Duration) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn pod_status(&self, uid: &str) -> Option<PodRuntimeStatus> {
        (uid != UNKNOWN_UID).then(|| PodRuntimeStatus {
            pod_ips: Vec::new(),
            start_time: Timestamp::UNIX_EPOCH,
            init_containers: Vec::new(),
            containers: vec![ContainerStatus {
                name: "main".into(),
                image: "test".into(),
                image_id: "test".into(),
                container_id: None,
                state: self.state.clone(),
                last_state: None,
                restart_count: 0,
                ready: true,
                started: true,
            }],
            settling: false,
        })
    }

    async fn logs(
        &self,
        uid: &str,
        _container: &str,
        _options: LogOptions,
    ) -> Result<ByteStream, RuntimeError> {
        if uid == UNKNOWN_UID {
            return Err(RuntimeError::PodNotFound(uid.into()));
        }
        let rx = self.log_lines.lock().unwrap().take().unwrap();
        Ok(tokio_stream_from(rx))
    }

    async fn exec(
        &self,
        _uid: &str,
        _container: &str,
        request: ExecRequest,
    ) -> Result<i32, RuntimeError> {
        let (program, args) = request
            .command
            .split_first()
            .ok_or_else(|| RuntimeError::Failed("no command".into()))?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        // Input stops mattering once the process is gone.
        let input = tokio::spawn(copy_in(request.stdin, stdin));
        let ((), (), status) = tokio::join!(
            copy_out(stdout, request.stdout),
            copy_out(stderr, request.stderr),
            child.wait(),
        );
        input.abort();
        // Sizes sent before the input the process read are queued by now.
        if let Some(mut rx) = request.resize {
            while let Ok(size) = rx.try_recv() {
                self.resizes.lock().unwrap().push(size);
            }
        }
        Ok(status?.code().unwrap_or(-1))
    }

    async fn port_forward(
        &self,
        _uid: &str,
        port: u16,
        mut stream: Box<dyn crate::runtime::Duplex>,
    ) -> Result<(), RuntimeError> {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).await?;
        tokio::io::copy_bidirectional(&mut stream, &mut conn).await?;
        Ok(())
    }

    async fn stats(&self, _uid: &str) -> Option<PodStats> {
        None
    }
}

fn tokio_stream_from(mut rx: mpsc::Receiver<Vec<u8>>) -> ByteStream {
    Box::pin(futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|o| o.map(Ok))
    }))
}

/// Serve the router on 127.0.0.1:0 for the rest of the test's runtime.
async fn serve(runtime: Arc<HostRuntime>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = super::router(runtime, CancellationToken::new());
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn ws_connect(addr: SocketAddr, path: &str, protocols: &str) -> (Ws, String) {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    let chosen = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (ws, chosen)
}

/// Everything the node sent, by channel, up to its close frame (code too).
async fn read_channels(ws: &mut Ws) -> (HashMap<u8, Vec<u8>>, Option<u16>) {
    let mut by_channel: HashMap<u8, Vec<u8>> = HashMap::new();
    loop {
        let m = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
        match m {
            Some(Ok(Message::Binary(b))) => {
                let (ch, payload) = b.split_first().unwrap();
                by_channel
                    .entry(*ch)
                    .or_default()
                    .extend_from_slice(payload);
            }
            Some(Ok(Message::Close(frame))) => {
                return (by_channel, frame.map(|f| u16::from(f.code)));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("websocket error: {e}"),
            None => return (by_channel, None),
        }
    }
}

fn status_of(channels: &HashMap<u8, Vec<u8>>) -> Value {
    serde_json::from_slice(channels.get(&3).expect("a status on channel 3")).unwrap()
}

fn exec_path(command: &[&str], flags: &str) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for c in command {
        q.append_pair("command", c);
    }
    format!("/exec/ns/p/{UID}/main?{}&{flags}", q.finish())
}

#[tokio::test]
async fn exec_v5_carries_stdin_stdout_stderr_eof_and_the_exit_code() {
    let addr = serve(HostRuntime::running()).await;
    let path = exec_path(
        &["sh", "-c", "cat; echo oops >&2; exit 3"],
        "stdin=true&stdout=true&stderr=true",
    );
    let (mut ws, proto) = ws_connect(addr, &path, "v5.channel.k8s.io").await;
    assert_eq!(proto, "v5.channel.k8s.io");
    ws.send(Message::Binary(Bytes::from_static(b"\x00hello\n")))
        .await
        .unwrap();
    ws.send(Message::Binary(Bytes::from_static(b"\x00world\n")))
        .await
        .unwrap();
    // v5: stdin is closed on its own; cat ends only because of this.
    ws.send(Message::Binary(Bytes::from_static(&[255, 0])))
        .await
        .unwrap();
    let (ch, close) = read_channels(&mut ws).await;
    assert_eq!(ch.get(&1).map(Vec::as_slice), Some(&b"hello\nworld\n"[..]));
    assert_eq!(ch.get(&2).map(Vec::as_slice), Some(&b"oops\n"[..]));
    let status = status_of(&ch);
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    assert_eq!(close, Some(1000));
}

#[tokio::test]
async fn exec_with_a_tty_gets_resizes_and_succeeds() {
    let runtime = HostRuntime::running();
    let addr = serve(runtime.clone()).await;
    let path = exec_path(
        &["sh", "-c", "read line; echo got $line"],
        "stdin=true&stdout=true&stderr=true&tty=true",
    );
    let (mut ws, _) = ws_connect(addr, &path, "v5.channel.k8s.io").await;
    ws.send(Message::Binary(Bytes::from_static(
        b"\x04{\"Width\":100,\"Height\":30}\n",
    )))
    .await
    .unwrap();
    ws.send(Message::Binary(Bytes::from_static(b"\x00x\n")))
        .await
        .unwrap();
    let (ch, close) = read_channels(&mut ws).await;
    assert_eq!(ch.get(&1).map(Vec::as_slice), Some(&b"got x\n"[..]));
    assert_eq!(ch.get(&2), None, "no stderr channel under a tty");
    assert_eq!(status_of(&ch)["status"], "Success");
    assert_eq!(close, Some(1000));
    assert_eq!(
        *runtime.resizes.lock().unwrap(),
        vec![TerminalSize {
            width: 100,
            height: 30
        }]
    );
}

#[tokio::test]
async fn exec_v4_and_errors_before_and_after_the_upgrade() {
    let addr = serve(HostRuntime::running()).await;
    // v4 when that is all the client offers.
    let (mut ws, proto) = ws_connect(
        addr,
        &exec_path(&["echo", "hi"], "stdout=true"),
        "v4.channel.k8s.io",
    )
    .await;
    assert_eq!(proto, "v4.channel.k8s.io");
    let (ch, _) = read_channels(&mut ws).await;
    assert_eq!(ch.get(&1).map(Vec::as_slice), Some(&b"hi\n"[..]));
    assert_eq!(status_of(&ch)["status"], "Success");

    // A command that cannot start: the failure travels on channel 3.
    let (mut ws, _) = ws_connect(
        addr,
        &exec_path(&["/nonexistent/binary"], "stdout=true"),
        "v5.channel.k8s.io",
    )
    .await;
    let (ch, close) = read_channels(&mut ws).await;
    let status = status_of(&ch);
    assert_eq!(status["reason"], "InternalError");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .starts_with("Internal error occurred: error executing command in container: "),
        "{status}"
    );
    assert_eq!(close, Some(1000));

    // attach: this runtime keeps the trait's default.
    let (mut ws, _) = ws_connect(
        addr,
        &format!("/attach/ns/p/{UID}/main?stdout=true"),
        "v5.channel.k8s.io",
    )
    .await;
    let (ch, _) = read_channels(&mut ws).await;
    assert_eq!(
        status_of(&ch)["message"],
        "Internal error occurred: error attaching to container: this runtime cannot attach to containers"
    );

    // Refused before any upgrade, as Status bodies.
    let (code, body) = http_get(addr, &format!("/exec/ns/p/{UID}/main?command=true")).await;
    assert_eq!(code, 400);
    assert_eq!(
        body["message"],
        "you must specify at least 1 of stdin, stdout, stderr"
    );
    let (code, body) = http_get(
        addr,
        &format!("/exec/ns/p/{UNKNOWN_UID}/main?command=true&stdout=1"),
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (404, Some("NotFound")));
    let (code, body) = http_get(
        addr,
        &format!("/exec/ns/p/{UID}/main?command=true&stdout=1"),
    )
    .await;
    assert_eq!(code, 400, "a plain GET is not an upgrade: {body}");
}

/// A plain HTTP/1.0 GET: status code and the body as JSON (Null if not JSON).
async fn http_get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, conn.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn logs_stream_while_following_and_refuse_a_waiting_container() {
    let runtime = HostRuntime::running();
    let (tx, rx) = mpsc::channel(4);
    *runtime.log_lines.lock().unwrap() = Some(rx);
    let addr = serve(runtime).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(
        format!("GET /containerLogs/ns/p/{UID}/main?follow=true HTTP/1.0\r\nHost: x\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut read_until = async |conn: &mut TcpStream, needle: &str| {
        while !String::from_utf8_lossy(&seen).contains(needle) {
            let mut buf = [0u8; 1024];
            let n = tokio::time::timeout(WAIT, conn.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(
                n > 0,
                "stream ended before {needle:?}: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    };
    tx.send(b"line 1\n".to_vec()).await.unwrap();
    let text = read_until(&mut conn, "line 1\n").await;
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    // Still open: a line written later arrives on the same response.
    tx.send(b"line 2\n".to_vec()).await.unwrap();
    read_until(&mut conn, "line 2\n").await;
    // The runtime ends the stream (the container exited): the response ends.
    drop(tx);
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, conn.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();

    // A follower that stops reading releases the runtime's stream.
    let runtime = HostRuntime::running();
    let (tx, rx) = mpsc::channel(4);
    *runtime.log_lines.lock().unwrap() = Some(rx);
    let addr = serve(runtime).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(
        format!("GET /containerLogs/ns/p/{UID}/main?follow=true HTTP/1.0\r\nHost: x\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    tx.send(b"line 1\n".to_vec()).await.unwrap();
    let mut first = [0u8; 1];
    tokio::time::timeout(WAIT, conn.read_exact(&mut first))
        .await
        .unwrap()
        .unwrap();
    drop(conn);
    tokio::time::timeout(WAIT, tx.closed())
        .await
        .expect("the log stream is dropped once the client is gone");

    let waiting = HostRuntime::new(ContainerState::Waiting {
        reason: "ContainerCreating".into(),
        message: None,
    });
    let addr = serve(waiting).await;
    let (code, body) = http_get(addr, &format!("/containerLogs/ns/p/{UID}/main")).await;
    assert_eq!(code, 400);
    assert_eq!(
        body["message"],
        "container \"main\" in pod \"p\" is waiting to start: ContainerCreating"
    );
    let (code, body) = http_get(
        addr,
        &format!("/containerLogs/ns/p/{UID}/main?previous=true"),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(
        body["message"],
        "previous terminated container \"main\" in pod \"p\" not found"
    );
}

/// The client end of a SPDY session, as kubectl drives port-forward.
struct SpdyClient {
    tx: FramedWrite<Box<dyn AsyncWrite + Send + Unpin>, Codec>,
    rx: FramedRead<Box<dyn AsyncRead + Send + Unpin>, Codec>,
}

impl SpdyClient {
    fn new(
        reader: Box<dyn AsyncRead + Send + Unpin>,
        writer: Box<dyn AsyncWrite + Send + Unpin>,
    ) -> SpdyClient {
        SpdyClient {
            tx: FramedWrite::new(writer, Codec::new().unwrap()),
            rx: FramedRead::new(reader, Codec::new().unwrap()),
        }
    }

    async fn open(&mut self, stream_id: u32, kind: &str, port: u16, request: u32) {
        self.tx
            .send(Frame::SynStream {
                stream_id,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: vec![
                    ("streamType".into(), kind.into()),
                    ("port".into(), port.to_string()),
                    ("requestID".into(), request.to_string()),
                ],
            })
            .await
            .unwrap();
    }

    async fn data(&mut self, stream_id: u32, flags: u8, data: &[u8]) {
        self.tx
            .send(Frame::Data {
                stream_id,
                flags,
                data: Bytes::copy_from_slice(data),
            })
            .await
            .unwrap();
    }

    /// Read frames until every stream in `streams` has FINished; returns the
    /// bytes per stream and which streams were replied to.
    async fn collect(&mut self, streams: &[u32]) -> (HashMap<u32, Vec<u8>>, Vec<u32>) {
        let mut data: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut replied = Vec::new();
        let mut done = Vec::new();
        while !streams.iter().all(|s| done.contains(s)) {
            let f = tokio::time::timeout(WAIT, self.rx.next())
                .await
                .unwrap()
                .expect("session open")
                .unwrap();
            match f {
                Frame::SynReply { stream_id, .. } => replied.push(stream_id),
                Frame::Data {
                    stream_id,
                    flags,
                    data: d,
                } => {
                    data.entry(stream_id).or_default().extend_from_slice(&d);
                    if flags & FLAG_FIN != 0 {
                        done.push(stream_id);
                    }
                }
                Frame::RstStream { stream_id, status } => {
                    panic!("stream {stream_id} reset ({status})")
                }
                _ => {}
            }
        }
        (data, replied)
    }
}

/// A TCP server on 127.0.0.1 that answers each connection with `echo:` and
/// everything it read, once the client has finished sending.
async fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                let _ = conn.read_to_end(&mut got).await;
                let _ = conn.write_all(&[b"echo:".as_slice(), &got].concat()).await;
            });
        }
    });
    port
}

/// Three forwarded connections at once, then one to a closed port.
async fn exercise_port_forward(mut c: SpdyClient) {
    let port = echo_server().await;
    // kubectl's order per connection: error stream (half-closed at once),
    // then the data stream.
    for i in 0..3u32 {
        c.open(4 * i + 1, "error", port, i).await;
        c.data(4 * i + 1, FLAG_FIN, b"").await;
        c.open(4 * i + 3, "data", port, i).await;
    }
    for i in (0..3u32).rev() {
        c.data(4 * i + 3, 0, format!("message {i}").as_bytes())
            .await;
        c.data(4 * i + 3, FLAG_FIN, b"").await;
    }
    let streams: Vec<u32> = (0..3u32).flat_map(|i| [4 * i + 1, 4 * i + 3]).collect();
    let (data, replied) = c.collect(&streams).await;
    for s in &streams {
        assert!(
            replied.contains(s),
            "stream {s} got a SYN_REPLY: {replied:?}"
        );
    }
    for i in 0..3u32 {
        assert_eq!(
            String::from_utf8_lossy(
                data.get(&(4 * i + 3))
                    .map(Vec::as_slice)
                    .unwrap_or_default()
            ),
            format!("echo:message {i}")
        );
        assert!(
            data.get(&(4 * i + 1)).is_none_or(Vec::is_empty),
            "no error for {i}"
        );
    }

    // Nothing listens on a port we just freed: the dial error comes back on
    // the error stream, and the data stream is finished.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    c.open(21, "error", closed, 9).await;
    c.data(21, FLAG_FIN, b"").await;
    c.open(23, "data", closed, 9).await;
    let (data, _) = c.collect(&[21, 23]).await;
    let err =
        String::from_utf8_lossy(data.get(&21).map(Vec::as_slice).unwrap_or_default()).into_owned();
    assert!(
        err.starts_with(&format!(
            "error forwarding port {closed} to pod ns/p, uid {UID}: "
        )),
        "{err}"
    );
    assert!(err.to_lowercase().contains("refused"), "{err}");

    c.tx.send(Frame::Ping(7)).await.unwrap();
    loop {
        let f = tokio::time::timeout(WAIT, c.rx.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if f == Frame::Ping(7) {
            break;
        }
    }
}

#[tokio::test]
async fn port_forward_over_the_spdy_websocket_tunnel() {
    let addr = serve(HostRuntime::running()).await;
    let (ws, proto) = ws_connect(
        addr,
        &format!("/portForward/ns/p/{UID}"),
        "SPDY/3.1+portforward.k8s.io",
    )
    .await;
    assert_eq!(proto, "SPDY/3.1+portforward.k8s.io");
    let (sink, stream) = ws.split();
    let reader = tokio_util::io::StreamReader::new(stream.filter_map(|m| async move {
        match m {
            Ok(Message::Binary(b)) => Some(Ok(b)),
            Ok(_) => None,
            Err(e) => Some(Err(std::io::Error::other(e))),
        }
    }));
    let sink = sink
        .sink_map_err(std::io::Error::other)
        .with(|b: Bytes| async move { Ok::<_, std::io::Error>(Message::Binary(b)) });
    let writer = tokio_util::io::SinkWriter::new(tokio_util::io::CopyToBytes::new(sink));
    exercise_port_forward(SpdyClient::new(
        Box::new(Box::pin(reader)),
        Box::new(Box::pin(writer)),
    ))
    .await;
}

#[tokio::test]
async fn port_forward_over_a_spdy_upgrade() {
    let addr = serve(HostRuntime::running()).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(
        format!(
            "POST /portForward/ns/p/{UID} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // The response head, byte by byte so no SPDY byte is consumed with it.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let b = tokio::time::timeout(WAIT, conn.read_u8())
            .await
            .unwrap()
            .unwrap();
        head.push(b);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: spdy/3.1"), "{head}");
    assert!(
        head.contains("x-stream-protocol-version: portforward.k8s.io"),
        "{head}"
    );
    let (r, w) = conn.into_split();
    exercise_port_forward(SpdyClient::new(Box::new(r), Box::new(w))).await;

    // No common stream protocol: 403 before any upgrade.
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(
        format!(
            "POST /portForward/ns/p/{UID} HTTP/1.0\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io.v9\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, conn.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.0 403") || text.starts_with("HTTP/1.1 403"),
        "{text}"
    );
}

/// A TCP server on 127.0.0.1 that answers every line with `echo:<line>`.
async fn line_echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = conn.into_split();
                let mut lines = tokio::io::BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if w.write_all(format!("echo:{line}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn port_forward_over_the_v4_channel_protocol() {
    let addr = serve(HostRuntime::running()).await;
    let open = line_echo_server().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (mut ws, proto) = ws_connect(
        addr,
        &format!("/portForward/ns/p/{UID}?ports={open}&ports={closed}"),
        "v4.channel.k8s.io",
    )
    .await;
    assert_eq!(proto, "v4.channel.k8s.io");
    ws.send(Message::Binary(Bytes::from_static(b"\x00ping\n")))
        .await
        .unwrap();
    let mut by_channel: HashMap<u8, Vec<u8>> = HashMap::new();
    let want_echo = [open.to_le_bytes().as_slice(), b"echo:ping\n"].concat();
    let want_error = format!("error forwarding port {closed} to pod ns/p, uid {UID}: ");
    loop {
        let m = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
        let Some(Ok(Message::Binary(b))) = m else {
            panic!("session ended early: {m:?}, got {by_channel:?}")
        };
        let (ch, payload) = b.split_first().unwrap();
        by_channel
            .entry(*ch)
            .or_default()
            .extend_from_slice(payload);
        let echoed = by_channel.get(&0).is_some_and(|d| *d == want_echo);
        let refused = by_channel.get(&3).is_some_and(|d| {
            String::from_utf8_lossy(d.get(2..).unwrap_or_default()).starts_with(&want_error)
        });
        if echoed && refused {
            break;
        }
    }
    // Every channel starts with its port, little endian.
    assert_eq!(by_channel[&1], open.to_le_bytes());
    assert!(by_channel[&2].starts_with(&closed.to_le_bytes()));
    ws.close(None).await.unwrap();
}

/// A real API server (in process, on 127.0.0.1) whose node `test-node` is
/// served by the kubelet router over `runtime`, with a pod `p` bound to it
/// and marked Running, for the real kubectl.
struct Cluster {
    dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
    shutdown: CancellationToken,
    _server: skiff_apiserver::RunningServer,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Cluster {
    async fn start(runtime: Arc<HostRuntime>) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("streams-kubectl-")
            .tempdir()
            .unwrap();
        let store = skiff_store::SqliteStore::open(
            &dir.path().join("state.db"),
            skiff_store::SqliteOptions::default(),
        )
        .unwrap();
        let shutdown = CancellationToken::new();
        let server = skiff_apiserver::start(
            skiff_apiserver::ServerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                data_dir: dir.path().into(),
                extra_sans: vec![],
                store_metrics: None,
            },
            Arc::new(store),
            shutdown.clone(),
        )
        .await
        .unwrap();
        let nodes = super::InProcessNodes::new();
        nodes.register("test-node", super::router(runtime, shutdown.clone()));
        server.state.set_node_connector(nodes);
        let kube = skiff_client::in_process(server.router.clone(), &server.internal_token).unwrap();
        let pods: kube::Api<Pod> = kube::Api::namespaced(kube, "default");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"nodeName": "test-node", "containers": [{"name": "main", "image": "busybox"}]},
        }))
        .unwrap();
        pods.create(&Default::default(), &pod).await.unwrap();
        pods.patch_status(
            "p",
            &Default::default(),
            &kube::api::Patch::Merge(serde_json::json!({"status": {"phase": "Running"}})),
        )
        .await
        .unwrap();
        Cluster {
            kubeconfig: server.kubeconfig_path.clone(),
            dir,
            shutdown,
            _server: server,
        }
    }

    fn kubectl(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("kubectl");
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .kill_on_drop(true);
        c
    }

    /// Run kubectl to the end (bounded) with `stdin`: (exit code, stdout, stderr).
    async fn run(&self, args: &[&str], stdin: &[u8]) -> (i32, String, String) {
        self.run_env(args, stdin, &[]).await
    }

    async fn run_env(
        &self,
        args: &[&str],
        stdin: &[u8],
        env: &[(&str, &str)],
    ) -> (i32, String, String) {
        let mut child = self
            .kubectl(args)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin).await.unwrap();
        drop(input);
        let out = tokio::time::timeout(WAIT, child.wait_with_output())
            .await
            .expect("kubectl finished")
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_cp_and_port_forward_reach_the_runtime_through_the_api_server() {
    let cluster = Cluster::start(HostRuntime::running()).await;

    let (code, out, err) = cluster
        .run(
            &[
                "exec",
                "-i",
                "p",
                "--",
                "sh",
                "-c",
                "cat; echo oops >&2; exit 3",
            ],
            b"hello through the API server\n",
        )
        .await;
    assert_eq!(out, "hello through the API server\n", "{err}");
    assert!(err.contains("oops"), "{err}");
    assert_eq!(code, 3, "kubectl passes the exit code through: {err}");

    let (code, out, err) = cluster.run(&["exec", "p", "--", "echo", "hi"], b"").await;
    assert_eq!((code, out.as_str()), (0, "hi\n"), "{err}");

    // kubectl's SPDY fallback for exec (what it does when WebSockets fail).
    let spdy = [("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")];
    let (code, out, err) = cluster
        .run_env(
            &[
                "exec",
                "-i",
                "p",
                "--",
                "sh",
                "-c",
                "cat; echo oops >&2; exit 4",
            ],
            b"over SPDY\n",
            &spdy,
        )
        .await;
    assert_eq!(out, "over SPDY\n", "{err}");
    assert!(err.contains("oops"), "{err}");
    assert_eq!(code, 4, "{err}");
    let (code, out, err) = cluster
        .run_env(
            &[
                "exec",
                "-i",
                "-t",
                "p",
                "--",
                "sh",
                "-c",
                "read l; echo got $l",
            ],
            b"t\n",
            &spdy,
        )
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("got t"), "{out} {err}");

    // kubectl cp from the pod is `tar cf -` over exec.
    let src = cluster.dir.path().join("src.txt");
    std::fs::write(&src, "copied bytes\n").unwrap();
    let dst = cluster.dir.path().join("dst.txt");
    let from = format!("default/p:{}", src.display());
    let (code, _, err) = cluster
        .run(&["cp", &from, dst.to_str().unwrap()], b"")
        .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&dst).unwrap(), "copied bytes\n");

    let port = line_echo_server().await;
    let mut pf = cluster
        .kubectl(&["port-forward", "pod/p", &format!(":{port}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(pf.stdout.take().unwrap()).lines();
    let local: u16 = loop {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("kubectl port-forward prints where it listens");
        if let Some(p) = line
            .strip_prefix("Forwarding from 127.0.0.1:")
            .and_then(|rest| rest.split_whitespace().next())
        {
            break p.parse().unwrap();
        }
    };
    for round in 0..2 {
        let mut conn = TcpStream::connect(("127.0.0.1", local)).await.unwrap();
        conn.write_all(format!("ping {round}\n").as_bytes())
            .await
            .unwrap();
        let mut reply = tokio::io::BufReader::new(conn).lines();
        let line = tokio::time::timeout(WAIT, reply.next_line())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(line.as_deref(), Some(format!("echo:ping {round}").as_str()));
    }
    pf.kill().await.unwrap();
}

#[tokio::test]
async fn exec_over_spdy_with_a_tty_and_resizes() {
    let runtime = HostRuntime::running();
    let addr = serve(runtime.clone()).await;
    let path = exec_path(
        &["sh", "-c", "read line; echo got $line"],
        "stdin=true&stdout=true&tty=true",
    );
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nX-Stream-Protocol-Version: v3.channel.k8s.io\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(
            tokio::time::timeout(WAIT, conn.read_u8())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("x-stream-protocol-version: v4.channel.k8s.io"),
        "{head}"
    );
    let (r, w) = conn.into_split();
    let mut c = SpdyClient::new(Box::new(r), Box::new(w));
    // client-go's order: error, stdin, stdout, resize (no stderr under a tty).
    for (id, kind) in [(1, "error"), (3, "stdin"), (5, "stdout"), (7, "resize")] {
        c.tx.send(Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: vec![("streamType".into(), kind.into())],
        })
        .await
        .unwrap();
    }
    // Two sizes split across frames, as a JSON encoder's writes may be.
    c.data(7, 0, b"{\"Width\":80,\"Height\":24}\n{\"Width\":1")
        .await;
    c.data(7, 0, b"20,\"Height\":40}\n").await;
    c.data(3, 0, b"x\n").await;
    let (data, replied) = c.collect(&[1, 5]).await;
    assert_eq!(replied.len(), 4, "{replied:?}");
    assert_eq!(data.get(&5).map(Vec::as_slice), Some(&b"got x\n"[..]));
    let status: Value = serde_json::from_slice(data.get(&1).unwrap()).unwrap();
    assert_eq!(status["status"], "Success");
    assert_eq!(
        *runtime.resizes.lock().unwrap(),
        vec![
            TerminalSize {
                width: 80,
                height: 24
            },
            TerminalSize {
                width: 120,
                height: 40
            }
        ]
    );
}
