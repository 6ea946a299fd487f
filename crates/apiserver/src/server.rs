//! Assembling the API server: the layer stack, TLS, the accept loop and graceful
//! shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use skiff_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Authenticator, UserInfo};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::rest::Rest;
use crate::state::ApiState;
use crate::tls;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bootstrap: {0}")]
    Bootstrap(String),
}

/// What the binary configures.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Extra names/IPs for the serving certificate.
    pub extra_sans: Vec<String>,
    /// The store's statement timings, exposed on `/metrics` when given.
    pub store_metrics: Option<Arc<skiff_store::StoreMetrics>>,
}

/// A started server.
pub struct RunningServer {
    pub local_addr: SocketAddr,
    pub kubeconfig_path: PathBuf,
    pub state: Arc<ApiState>,
    /// The full router (every layer, authentication included) for clients in
    /// this process: controllers and node agents call it without a socket.
    pub router: Router,
    /// A per-process token naming the in-process components
    /// (`system:skiff-controller-manager`); never written to disk.
    pub internal_token: String,
    tasks: TaskTracker,
}

impl RunningServer {
    /// Wait until the accept loop and all connections have finished (after the
    /// shutdown token was cancelled).
    pub async fn wait(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// The router with every layer, in order. Order matters: the panic catcher wraps
/// everything so a bug answers 500 instead of dropping the connection;
/// authentication runs before anything that reads the user; metrics sit closest
/// to the handlers so they see the final status of every authenticated request
/// (the metrics layer also resolves the `RequestInfo` the timeout layer reads).
pub fn app(state: Arc<ApiState>, auth: Arc<Authenticator>) -> Router {
    Router::new()
        .fallback(crate::handlers::dispatch)
        .with_state(state.clone())
        // The timeout sits inside metrics so timed-out requests are counted as 504s.
        .layer(axum::middleware::from_fn(crate::timeout::layer))
        .layer(axum::middleware::from_fn_with_state(
            state,
            crate::metrics::layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            auth,
            crate::auth::layer,
        ))
        // Outside authentication: even a rejected write has its body read first.
        .layer(axum::middleware::from_fn(crate::body_limit::layer))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
}

fn panic_response(
    _err: Box<dyn std::any::Any + Send + 'static>,
) -> http::Response<axum::body::Body> {
    tracing::error!("handler panicked");
    axum::response::IntoResponse::into_response(crate::error::ApiError::internal(
        "handler panicked",
    ))
}

fn load_or_create_token(dir: &std::path::Path) -> Result<String, ServerError> {
    let path = dir.join("admin.token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(ServerError::Io { path, source }),
    }
    let token: String = (0..32)
        .map(|_| format!("{:x}", rand::random::<u8>() & 0xf))
        .collect();
    crate::tls::write_private(&path, &token).map_err(|e| match e {
        crate::tls::TlsError::Io { path, source } => ServerError::Io { path, source },
        other => ServerError::Tls(other),
    })?;
    Ok(token)
}

/// Start serving. Returns once the listener is bound, the kubeconfig written and
/// the bootstrap objects exist.
pub async fn start(
    cfg: ServerConfig,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
) -> Result<RunningServer, ServerError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| ServerError::Io {
        path: cfg.data_dir.clone(),
        source,
    })?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: cfg.listen,
        source,
    })?;

    let mut sans = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
    ];
    let ip = local_addr.ip().to_string();
    if !sans.contains(&ip) && !local_addr.ip().is_unspecified() {
        sans.push(ip);
    }
    sans.extend(cfg.extra_sans.iter().cloned());
    let pki = tls::ensure_pki(&cfg.data_dir, &sans)?;
    let tls_cfg = tls::server_config(&pki)?;
    let token = load_or_create_token(&cfg.data_dir)?;
    let signer = Arc::new(
        crate::sa_token::TokenSigner::load_or_create(&cfg.data_dir)
            .map_err(|e| ServerError::Bootstrap(e.to_string()))?,
    );

    let registry = Arc::new(Registry::new(skiff_resources::builtin_resources()));
    let rest = Arc::new(Rest::new(store, registry));
    let metrics = Arc::new(Metrics::new().with_store(cfg.store_metrics.clone()));
    let host = if local_addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        local_addr.ip().to_string()
    };
    let server_address = format!("{host}:{}", local_addr.port());
    let state = Arc::new(ApiState::new(
        rest.clone(),
        metrics,
        shutdown.clone(),
        server_address.clone(),
    ));
    state.set_token_signer(signer.clone());

    crate::bootstrap::run(&rest)
        .await
        .map_err(|e| ServerError::Bootstrap(e.to_string()))?;
    crate::crds::load(&rest)
        .await
        .map_err(|e| ServerError::Bootstrap(e.to_string()))?;

    let kubeconfig_path = cfg.data_dir.join("admin.kubeconfig");
    let server_url = if local_addr.is_ipv6() {
        format!("https://[{host}]:{}", local_addr.port())
    } else {
        format!("https://{host}:{}", local_addr.port())
    };
    crate::kubeconfig::write(&kubeconfig_path, &server_url, &pki.ca_cert_pem, &token).map_err(
        |source| ServerError::Io {
            path: kubeconfig_path.clone(),
            source,
        },
    )?;

    let internal_token: String = (0..48)
        .map(|_| format!("{:x}", rand::random::<u8>() & 0xf))
        .collect();
    let auth = Arc::new(
        Authenticator::default()
            .with_token(token, UserInfo::admin())
            .with_token(internal_token.clone(), UserInfo::controller_manager())
            .with_service_account_tokens(signer, rest.clone()),
    );
    let router = app(state.clone(), auth);
    let app_router = router.clone();
    let tasks = TaskTracker::new();
    crate::crds::spawn_controller(rest.clone(), shutdown.clone(), &tasks);
    crate::lifecycle::spawn(rest.clone(), shutdown.clone(), &tasks);
    crate::cluster_ip::spawn_repair(rest.store.clone(), shutdown.clone(), &tasks);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_cfg);
    let conn_tasks = tasks.clone();
    let stop = shutdown.clone();
    tasks.spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = stop.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true); // latency only; failure is harmless
            let acceptor = acceptor.clone();
            let router = router.clone();
            let stop = stop.clone();
            conn_tasks.spawn(async move {
                let tls = match tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    acceptor.accept(tcp),
                )
                .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let svc = TowerToHyperService::new(router);
                let builder = auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
                tokio::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(%peer, error = %e, "connection ended with error");
                        }
                    }
                    _ = stop.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await; // best effort drain
                    }
                }
            });
        }
    });
    tracing::info!(%local_addr, kubeconfig = %kubeconfig_path.display(), "skiff API server listening");
    Ok(RunningServer {
        local_addr,
        kubeconfig_path,
        state,
        router: app_router,
        internal_token,
        tasks,
    })
}
