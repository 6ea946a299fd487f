//! Authentication as a middleware layer: bearer tokens map to a [`UserInfo`] that
//! later layers (tenancy, RBAC, fairness) and handlers read from the request
//! extensions.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The authenticated identity of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn admin() -> Self {
        UserInfo {
            username: "skiff-admin".into(),
            uid: "skiff-admin".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }
    /// The controllers and node agents running inside the server process.
    pub fn controller_manager() -> Self {
        UserInfo {
            username: "system:skiff-controller-manager".into(),
            uid: "system:skiff-controller-manager".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }
    pub fn anonymous() -> Self {
        UserInfo {
            username: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
        }
    }
}

/// Static bearer tokens → users; service account JWTs when a signer is set.
#[derive(Debug, Default, Clone)]
pub struct Authenticator {
    tokens: HashMap<String, UserInfo>,
    service_accounts: Option<ServiceAccountTokens>,
}

/// What checking a service account token needs: the key and the store.
#[derive(Clone)]
struct ServiceAccountTokens {
    signer: Arc<crate::sa_token::TokenSigner>,
    rest: Arc<crate::rest::Rest>,
}

impl std::fmt::Debug for ServiceAccountTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountTokens")
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>, user: UserInfo) -> Self {
        self.tokens.insert(token.into(), user);
        self
    }

    /// Also accept service account tokens signed by `signer` whose objects
    /// still exist in `rest`'s store.
    #[must_use]
    pub fn with_service_account_tokens(
        mut self,
        signer: Arc<crate::sa_token::TokenSigner>,
        rest: Arc<crate::rest::Rest>,
    ) -> Self {
        self.service_accounts = Some(ServiceAccountTokens { signer, rest });
        self
    }

    pub fn authenticate(&self, authorization: Option<&str>) -> Option<UserInfo> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        self.tokens.get(token).cloned()
    }

    /// [`Authenticator::authenticate`], then service account tokens.
    pub async fn authenticate_request(&self, authorization: Option<&str>) -> Option<UserInfo> {
        if let Some(u) = self.authenticate(authorization) {
            return Some(u);
        }
        let sa = self.service_accounts.as_ref()?;
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        if !crate::sa_token::looks_like_jwt(token) {
            return None;
        }
        match crate::sa_token::authenticate(&sa.signer, &sa.rest, token).await {
            Ok(u) => Some(u),
            Err(e) => {
                tracing::debug!(error = %e, "service account token refused");
                None
            }
        }
    }
}

/// Paths anonymous clients may read (as Kubernetes' `system:public-info-viewer`).
fn public(path: &str) -> bool {
    matches!(
        path,
        "/healthz"
            | "/livez"
            | "/readyz"
            | "/version"
            | "/healthz/ping"
            | "/livez/ping"
            | "/readyz/ping"
    )
}

pub async fn layer(
    State(auth): State<Arc<Authenticator>>,
    mut req: Request,
    next: Next,
) -> Response {
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let user = match auth.authenticate_request(header).await {
        Some(u) => u,
        None if public(req.uri().path()) => UserInfo::anonymous(),
        None => {
            return ApiError::Unauthorized {
                message: "Unauthorized".into(),
            }
            .into_response()
        }
    };
    req.extensions_mut().insert(user);
    next.run(req).await
}
