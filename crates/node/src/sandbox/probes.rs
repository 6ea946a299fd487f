//! Container probes (startup, readiness, liveness) and lifecycle hook
//! handlers, as the kubelet runs them: exec inside the container (through
//! the OCI runtime), HTTP GET and TCP connect against the pod's address.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ExecAction, GRPCAction, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Readiness,
    Liveness,
}

impl ProbeKind {
    pub fn label(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Liveness => "Liveness",
        }
    }
}

/// The outcome of one check: `Err` carries the failure text for events.
pub type Outcome = Result<(), String>;

/// Where checks run: the container (for exec) and the pod address.
#[derive(Debug, Clone)]
pub struct CheckTarget {
    pub runtime: std::path::PathBuf,
    pub runtime_root: std::path::PathBuf,
    pub container_id: String,
    pub pod_ip: Option<IpAddr>,
}

/// One of a probe's or hook's actions.
pub enum Action<'a> {
    Exec(&'a ExecAction),
    Http(&'a HTTPGetAction),
    Tcp(&'a TCPSocketAction),
    Grpc(&'a GRPCAction),
    Unsupported(&'static str),
}

/// The action of a probe.
pub fn probe_action(p: &Probe) -> Action<'_> {
    if let Some(e) = &p.exec {
        Action::Exec(e)
    } else if let Some(h) = &p.http_get {
        Action::Http(h)
    } else if let Some(t) = &p.tcp_socket {
        Action::Tcp(t)
    } else if let Some(g) = &p.grpc {
        Action::Grpc(g)
    } else {
        Action::Unsupported("probe has no handler")
    }
}

/// The action of a lifecycle hook.
pub fn hook_action(h: &LifecycleHandler) -> Action<'_> {
    if let Some(e) = &h.exec {
        Action::Exec(e)
    } else if let Some(g) = &h.http_get {
        Action::Http(g)
    } else if let Some(t) = &h.tcp_socket {
        Action::Tcp(t)
    } else if h.sleep.is_some() {
        Action::Unsupported("sleep")
    } else {
        Action::Unsupported("hook has no handler")
    }
}

/// A named or numbered port of the container.
fn port_of(container: &Container, port: &IntOrString) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("couldn't find port {name:?} in container"))
        }
    }
}

/// Run `action` once, bounded by `timeout`.
pub async fn check(
    action: &Action<'_>,
    container: &Container,
    target: &CheckTarget,
    timeout: Duration,
) -> Outcome {
    let run = async {
        match action {
            Action::Exec(e) => exec(e, target).await,
            Action::Http(h) => http(h, container, target).await,
            Action::Tcp(t) => tcp(t, container, target).await,
            Action::Grpc(g) => grpc(g, target).await,
            Action::Unsupported(what) => Err((*what).to_string()),
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "command timed out after {}s",
            timeout.as_secs().max(1)
        )),
    }
}

async fn exec(e: &ExecAction, target: &CheckTarget) -> Outcome {
    let command = e.command.clone().unwrap_or_default();
    if command.is_empty() {
        return Err("exec probe has no command".into());
    }
    let out = tokio::process::Command::new(&target.runtime)
        .arg("--root")
        .arg(&target.runtime_root)
        .arg("exec")
        .arg(&target.container_id)
        .args(&command)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        let text = text.trim();
        Err(if text.is_empty() {
            format!(
                "command {command:?} exited with {}",
                out.status.code().unwrap_or(-1)
            )
        } else {
            text.to_string()
        })
    }
}

fn host_of(host: Option<&str>, target: &CheckTarget) -> Result<String, String> {
    match host.filter(|h| !h.is_empty()) {
        Some(h) => Ok(h.to_string()),
        None => target
            .pod_ip
            .map(|ip| ip.to_string())
            .ok_or_else(|| "the pod has no address yet".to_string()),
    }
}

async fn tcp(t: &TCPSocketAction, container: &Container, target: &CheckTarget) -> Outcome {
    let port = port_of(container, &t.port)?;
    let host = host_of(t.host.as_deref(), target)?;
    tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map(|_| ())
        .map_err(|e| format!("dial tcp {host}:{port}: {e}"))
}

async fn http(h: &HTTPGetAction, container: &Container, target: &CheckTarget) -> Outcome {
    let port = port_of(container, &h.port)?;
    let host = host_of(h.host.as_deref(), target)?;
    let https = h
        .scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"));
    let path = h
        .path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into());
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    let url = format!(
        "{}://{host}:{port}{path}",
        if https { "https" } else { "http" }
    );
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("Get {url:?}: dial tcp {host}:{port}: {e}"))?;
    let mut stream: Box<dyn Stream> = if https {
        Box::new(
            tls_connect(tcp, &host)
                .await
                .map_err(|e| format!("Get {url:?}: {e}"))?,
        )
    } else {
        Box::new(tcp)
    };
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    let headers = h.http_headers.clone().unwrap_or_default();
    if !headers
        .iter()
        .any(|hd| hd.name.eq_ignore_ascii_case("host"))
    {
        req.push_str(&format!("Host: {host}:{port}\r\n"));
    }
    if !headers
        .iter()
        .any(|hd| hd.name.eq_ignore_ascii_case("user-agent"))
    {
        req.push_str("User-Agent: kube-probe/1.33\r\n");
    }
    if !headers
        .iter()
        .any(|hd| hd.name.eq_ignore_ascii_case("accept"))
    {
        req.push_str("Accept: */*\r\n");
    }
    for hd in &headers {
        if hd.name.contains(['\r', '\n']) || hd.value.contains(['\r', '\n']) {
            continue;
        }
        req.push_str(&format!("{}: {}\r\n", hd.name, hd.value));
    }
    req.push_str("Connection: close\r\n\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| format!("Get {url:?}: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("Get {url:?}: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("Get {url:?}: malformed HTTP response"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// HTTPS probes do not verify the server's certificate (as the kubelet's).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn tls_connect(
    tcp: tokio::net::TcpStream,
    host: &str,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let name =
        rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())
}

/// The gRPC health checking protocol (`grpc.health.v1.Health/Check`) over
/// HTTP/2 without TLS, as the kubelet's grpc probe.
async fn grpc(g: &GRPCAction, target: &CheckTarget) -> Outcome {
    let port = u16::try_from(g.port).map_err(|_| format!("invalid port {}", g.port))?;
    let host = host_of(None, target)?;
    let addr = format!("{host}:{port}");
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("failed to connect service {addr:?}: {e}"))?;
    let (client, connection) = h2::client::handshake(tcp)
        .await
        .map_err(|e| format!("failed to connect service {addr:?}: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client
        .ready()
        .await
        .map_err(|e| format!("failed to connect service {addr:?}: {e}"))?;
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "kube-probe/1.33")
        .body(())
        .map_err(|e| e.to_string())?;
    // HealthCheckRequest { string service = 1; } in a length-prefixed frame.
    let service = g.service.clone().unwrap_or_default();
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a);
        let mut len = service.len();
        while len >= 0x80 {
            message.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        message.push(len as u8);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap_or(0).to_be_bytes());
    frame.extend_from_slice(&message);
    let (response, mut send) = client
        .send_request(request, false)
        .map_err(|e| format!("health rpc to {addr:?} failed: {e}"))?;
    send.send_data(bytes::Bytes::from(frame), true)
        .map_err(|e| format!("health rpc to {addr:?} failed: {e}"))?;
    let response = response
        .await
        .map_err(|e| format!("health rpc to {addr:?} failed: {e}"))?;
    let (parts, mut body) = response.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| format!("health rpc to {addr:?} failed: {e}"))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.ok().flatten();
    let status = trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| parts.headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if status != "0" {
        let message = trailers
            .as_ref()
            .and_then(|t| t.get("grpc-message"))
            .or_else(|| parts.headers.get("grpc-message"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        return Err(format!(
            "rpc error: code = {status}, desc = {message} (service {addr:?})"
        ));
    }
    // HealthCheckResponse { ServingStatus status = 1; }: SERVING is 1.
    let serving = data
        .get(5..)
        .is_some_and(|m| m.windows(2).any(|w| w == [0x08, 0x01]));
    if serving {
        Ok(())
    } else {
        Err("service unhealthy (responded with \"NOT_SERVING\")".to_string())
    }
}

/// A probe's timing with the Kubernetes defaults.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(p: &Probe) -> Timing {
        let secs = |v: Option<i32>, d: u64| {
            Duration::from_secs(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(d))
        };
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: p
                .success_threshold
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(1)
                .max(1),
            failure_threshold: p
                .failure_threshold
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(3)
                .max(1),
        }
    }
}
