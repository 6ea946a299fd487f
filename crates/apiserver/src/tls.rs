//! The cluster CA and the serving certificate, generated on first start with
//! rcgen and kept in the data dir.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Errors while preparing TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading or writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("generating certificates: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("loading {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Paths and PEM of the PKI in the data dir.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_cert_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

fn read(path: &Path) -> Result<Option<String>, TlsError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TlsError::Io {
            path: path.into(),
            source,
        }),
    }
}

/// Write a file readable only by its owner, synced to disk.
pub(crate) fn write_private(path: &Path, data: &str) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| TlsError::Io {
        path: path.into(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(data.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Load the CA and serving certificate from `dir`, generating whatever is
/// missing. The serving certificate is re-issued when `sans` gains a name.
pub fn ensure_pki(dir: &Path, sans: &[String]) -> Result<Pki, TlsError> {
    let ca_crt = dir.join("ca.crt");
    let ca_key = dir.join("ca.key");
    let (ca_pem, ca_key_pem) = match (read(&ca_crt)?, read(&ca_key)?) {
        (Some(c), Some(k)) => (c, k),
        _ => {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::default();
            params
                .distinguished_name
                .push(DnType::CommonName, "skiff-ca");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            params.not_before = rcgen::date_time_ymd(2024, 1, 1);
            params.not_after = rcgen::date_time_ymd(2124, 1, 1);
            let cert = params.self_signed(&key)?;
            let (c, k) = (cert.pem(), key.serialize_pem());
            write_private(&ca_key, &k)?;
            write_private(&ca_crt, &c)?;
            (c, k)
        }
    };
    let srv_crt = dir.join("apiserver.crt");
    let srv_key = dir.join("apiserver.key");
    let srv_sans = dir.join("apiserver.sans");
    let wanted = sans.join(",");
    if let (Some(c), Some(k), Some(s)) = (read(&srv_crt)?, read(&srv_key)?, read(&srv_sans)?) {
        if s == wanted {
            return Ok(Pki {
                ca_cert_pem: ca_pem,
                server_cert_pem: c,
                server_key_pem: k,
            });
        }
    }
    let ca_keypair = KeyPair::from_pem(&ca_key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_keypair)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "skiff-apiserver");
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    params.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => s.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()?;
    let cert = params.signed_by(&key, &issuer)?;
    let (c, k) = (cert.pem(), key.serialize_pem());
    write_private(&srv_key, &k)?;
    write_private(&srv_crt, &c)?;
    write_private(&srv_sans, &wanted)?;
    Ok(Pki {
        ca_cert_pem: ca_pem,
        server_cert_pem: c,
        server_key_pem: k,
    })
}

/// A rustls server config offering HTTP/2 and HTTP/1.1.
pub fn server_config(pki: &Pki) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let invalid = |m: &str| TlsError::Invalid {
        path: PathBuf::from("apiserver.crt"),
        message: m.into(),
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut pki.server_cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(&e.to_string()))?;
    let key = rustls_pemfile::private_key(&mut pki.server_key_pem.as_bytes())
        .map_err(|e| invalid(&e.to_string()))?
        .ok_or_else(|| invalid("no private key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
