//! Service account tokens: the `serviceaccounts/<name>/token` subresource
//! (TokenRequest) and the authenticator for the JWTs it issues, as
//! kube-apiserver's TokenREST and its service-account token authenticator.
//!
//! Tokens are ES256 JWTs signed with a P-256 key generated once and kept in the
//! data dir (`sa.key`). Their claims follow upstream's: `iss`, `sub`
//! (`system:serviceaccount:<ns>:<name>`), `aud`, `exp`, `iat`, `nbf`, `jti` and
//! a private `kubernetes.io` claim naming the namespace, the service account and
//! the object the token is bound to. A token authenticates while its signature,
//! issuer, audience and lifetime are valid, its service account still exists
//! with the same uid and the object it is bound to (pod, secret, node) does too.
//! The issuer discovery documents (`/.well-known/openid-configuration`,
//! `/openid/v1/jwks`) publish the public key.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use skiff_resources::FieldError;

use crate::auth::UserInfo;
use crate::content;
use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::rest::Rest;

/// The issuer, and the audience of tokens that ask for none, as a cluster set up
/// with `--service-account-issuer=https://kubernetes.default.svc.cluster.local`.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Token lifetime when the request names none (upstream's defaulting).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Shortest lifetime a TokenRequest may ask for (upstream's validation).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// Longest lifetime a TokenRequest may ask for (upstream's validation: 2^32 s).
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// File in the data dir holding the PKCS#8 PEM signing key.
pub const KEY_FILE: &str = "sa.key";

/// Errors loading or using the signing key.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("reading or writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("service account signing key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("signing a token: {0}")]
    Sign(jsonwebtoken::errors::Error),
}

/// A reference to the object a claim names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// The private `kubernetes.io` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
}

/// The claims of a service account token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub iss: String,
    pub jti: String,
    pub sub: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

impl Claims {
    /// Claims for `namespace/name` (uid `sa_uid`) valid from `now` for
    /// `expiration_seconds`; bindings are added by the caller.
    pub fn new(
        issuer: &str,
        audiences: Vec<String>,
        namespace: &str,
        name: &str,
        sa_uid: &str,
        now: i64,
        expiration_seconds: i64,
    ) -> Self {
        Claims {
            aud: audiences,
            exp: now.saturating_add(expiration_seconds),
            iat: now,
            nbf: now,
            iss: issuer.to_string(),
            jti: uuid::Uuid::new_v4().to_string(),
            sub: username(namespace, name),
            kubernetes: KubernetesClaims {
                namespace: namespace.to_string(),
                serviceaccount: ObjectRef {
                    name: name.to_string(),
                    uid: sa_uid.to_string(),
                },
                pod: None,
                secret: None,
                node: None,
            },
        }
    }
}

/// `system:serviceaccount:<ns>:<name>`.
pub fn username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The identity a valid token for `claims` authenticates as.
pub fn user_of(claims: &Claims) -> UserInfo {
    let k = &claims.kubernetes;
    UserInfo {
        username: username(&k.namespace, &k.serviceaccount.name),
        uid: k.serviceaccount.uid.clone(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", k.namespace),
            "system:authenticated".into(),
        ],
    }
}

/// Signs and verifies service account tokens.
pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    /// Uncompressed P-256 point (0x04 || x || y).
    public_point: Vec<u8>,
    issuer: String,
    audiences: Vec<String>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

impl TokenSigner {
    /// Load `sa.key` from `dir`, generating a P-256 key on first use; the
    /// issuer is [`DEFAULT_ISSUER`], which is also the API audience.
    pub fn load_or_create(dir: &Path) -> Result<Self, TokenError> {
        let path = dir.join(KEY_FILE);
        let pem =
            match std::fs::read_to_string(&path) {
                Ok(p) => p,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                        .map_err(|e| TokenError::Key {
                            path: path.clone(),
                            message: e.to_string(),
                        })?;
                    let pem = key.serialize_pem();
                    crate::tls::write_private(&path, &pem).map_err(|e| TokenError::Key {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                    pem
                }
                Err(source) => return Err(TokenError::Io { path, source }),
            };
        Self::from_pem(&pem, DEFAULT_ISSUER, vec![DEFAULT_ISSUER.to_string()]).map_err(|message| {
            TokenError::Key {
                path: path.clone(),
                message,
            }
        })
    }

    /// A signer from a PKCS#8 PEM P-256 key.
    pub fn from_pem(pem: &str, issuer: &str, audiences: Vec<String>) -> Result<Self, String> {
        let key = rcgen::KeyPair::from_pem(pem).map_err(|e| e.to_string())?;
        if !key.is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256) {
            return Err("not an ECDSA P-256 key".into());
        }
        let public_point = key.public_key_raw().to_vec();
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            &rcgen::PublicKeyData::subject_public_key_info(&key),
        );
        Ok(TokenSigner {
            encoding: EncodingKey::from_ec_der(&key.serialize_der()),
            decoding: DecodingKey::from_ec_der(&public_point),
            kid: b64url(digest.as_ref()),
            public_point,
            issuer: issuer.to_string(),
            audiences,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The API server's audiences: tokens must name one of them.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The compact JWS of `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(TokenError::Sign)
    }

    /// The claims of `token` if its signature, issuer, audience (one of the API
    /// server's) and lifetime (a minute of leeway, as upstream) are valid.
    /// Whether its objects still exist is [`authenticate`]'s job.
    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        let mut v = Validation::new(Algorithm::ES256);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&self.audiences);
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &v).map(|d| d.claims)
    }

    /// `/openid/v1/jwks`.
    pub fn jwks(&self) -> Value {
        let (x, y) = match self.public_point.as_slice() {
            [0x04, rest @ ..] if rest.len() == 64 => rest.split_at(32),
            _ => (&[][..], &[][..]),
        };
        json!({"keys": [{
            "use": "sig",
            "kty": "EC",
            "kid": self.kid,
            "crv": "P-256",
            "alg": "ES256",
            "x": b64url(x),
            "y": b64url(y),
        }]})
    }

    /// `/.well-known/openid-configuration`.
    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/openid/v1/jwks", self.issuer.trim_end_matches('/')),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }
}

/// Whether a bearer token could be a JWT (three dot-separated parts), so the
/// cheap static-token lookup can stay first.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

fn uid_of(obj: &Value) -> &str {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Read an object; `Ok(None)` when it does not exist.
async fn lookup(
    rest: &Rest,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> ApiResult<Option<Value>> {
    let Some(res) = rest.registry.snapshot().get("", "v1", plural) else {
        return Err(ApiError::internal(format!("{plural} are not registered")));
    };
    match rest.get(&res, namespace, name).await {
        Ok(v) => Ok(Some(v)),
        Err(ApiError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Why a token was refused (logged at debug; the client only sees 401).
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("{kind} {name:?} is gone or was recreated")]
    Gone { kind: &'static str, name: String },
    #[error("looking up {0}")]
    Lookup(String),
}

async fn still_there(
    rest: &Rest,
    kind: &'static str,
    plural: &str,
    namespace: Option<&str>,
    r: &ObjectRef,
    now: i64,
) -> Result<(), Rejected> {
    let obj = lookup(rest, plural, namespace, &r.name)
        .await
        .map_err(|e| Rejected::Lookup(e.to_string()))?;
    let gone = || Rejected::Gone {
        kind,
        name: r.name.clone(),
    };
    let obj = obj.ok_or_else(gone)?;
    if uid_of(&obj) != r.uid {
        return Err(gone());
    }
    // Upstream: a pod deleted (gracefully) more than a minute ago no longer
    // vouches for its tokens.
    if let Some(ts) = obj
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    {
        if ts.timestamp() < now - 60 {
            return Err(gone());
        }
    }
    Ok(())
}

/// Authenticate a bearer token issued by [`create`].
pub async fn authenticate(
    signer: &TokenSigner,
    rest: &Rest,
    token: &str,
) -> Result<UserInfo, Rejected> {
    let claims = signer.verify(token)?;
    let k = &claims.kubernetes;
    let ns = Some(k.namespace.as_str());
    let now = chrono::Utc::now().timestamp();
    still_there(
        rest,
        "ServiceAccount",
        "serviceaccounts",
        ns,
        &k.serviceaccount,
        now,
    )
    .await?;
    if let Some(p) = &k.pod {
        still_there(rest, "Pod", "pods", ns, p, now).await?;
    }
    if let Some(s) = &k.secret {
        still_there(rest, "Secret", "secrets", ns, s, now).await?;
    }
    if let Some(n) = &k.node {
        // A pod-bound token names the pod's node for information only.
        if k.pod.is_none() {
            still_there(rest, "Node", "nodes", None, n, now).await?;
        }
    }
    Ok(user_of(&claims))
}

const GROUP: &str = "authentication.k8s.io";

fn invalid(name: &str, errors: Vec<FieldError>) -> ApiError {
    ApiError::Invalid {
        kind: "TokenRequest".into(),
        group: GROUP.into(),
        name: name.into(),
        errors,
    }
}

/// The requested lifetime after defaulting, checked as upstream's
/// ValidateTokenRequest.
fn expiration_seconds(spec: &Value) -> ApiResult<i64> {
    let field = "spec.expirationSeconds";
    let secs = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(v) => v.as_i64().ok_or_else(|| {
            invalid(
                "",
                vec![FieldError::invalid(
                    field,
                    v.clone(),
                    "must be an integer number of seconds",
                )],
            )
        })?,
    };
    if secs < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            "",
            vec![FieldError::invalid(
                field,
                json!(secs),
                "may not specify a duration less than 10 minutes",
            )],
        ));
    }
    if secs > MAX_EXPIRATION_SECONDS {
        return Err(invalid(
            "",
            vec![FieldError::invalid(
                field,
                json!(secs),
                "may not specify a duration larger than 2^32 seconds",
            )],
        ));
    }
    Ok(secs)
}

fn audiences(spec: &Value, signer: &TokenSigner) -> ApiResult<Vec<String>> {
    let Some(list) = spec.get("audiences").filter(|v| !v.is_null()) else {
        return Ok(signer.audiences().to_vec());
    };
    let Some(items) = list.as_array() else {
        return Err(invalid(
            "",
            vec![FieldError::invalid(
                "spec.audiences",
                list.clone(),
                "must be a list of strings",
            )],
        ));
    };
    let mut out = Vec::new();
    for (i, a) in items.iter().enumerate() {
        match a.as_str() {
            Some(s) if !s.is_empty() => out.push(s.to_string()),
            _ => {
                return Err(invalid(
                    "",
                    vec![FieldError::invalid(
                        format!("spec.audiences[{i}]"),
                        a.clone(),
                        "must be a non-empty string",
                    )],
                ))
            }
        }
    }
    if out.is_empty() {
        return Ok(signer.audiences().to_vec());
    }
    Ok(out)
}

fn bad_request(message: String) -> ApiError {
    ApiError::BadRequest { message }
}

/// Check the bound object as upstream's TokenREST and record it in `claims`.
async fn bind(
    rest: &Rest,
    namespace: &str,
    sa_name: &str,
    reference: &Value,
    claims: &mut KubernetesClaims,
) -> ApiResult<()> {
    let str_of = |k: &str| {
        reference
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (api_version, kind, name, uid) = (
        str_of("apiVersion"),
        str_of("kind"),
        str_of("name"),
        str_of("uid"),
    );
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), api_version.clone()),
    };
    let (plural, ns) = match (group.as_str(), kind.as_str()) {
        ("", "Pod") => ("pods", Some(namespace)),
        ("", "Secret") => ("secrets", Some(namespace)),
        ("", "Node") => ("nodes", None),
        _ => {
            return Err(bad_request(format!(
                "cannot bind token to object of type {group}/{version}, Kind={kind}"
            )))
        }
    };
    if name.is_empty() {
        return Err(invalid(
            "",
            vec![FieldError::required(
                "spec.boundObjectRef.name",
                "name of the bound object is required",
            )],
        ));
    }
    let Some(obj) = lookup(rest, plural, ns, &name).await? else {
        return Err(ApiError::not_found("", plural, &name));
    };
    let found = ObjectRef {
        name: name.clone(),
        uid: uid_of(&obj).to_string(),
    };
    match kind.as_str() {
        "Pod" => {
            let pod_sa = obj
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("default");
            if pod_sa != sa_name {
                return Err(bad_request(format!("cannot bind token for serviceaccount {sa_name:?} to pod running with different serviceaccount name.")));
            }
            if let Some(node) = obj
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                // As upstream, a node that does not exist (any more) is
                // still named, without a uid.
                let n = lookup(rest, "nodes", None, node).await?;
                claims.node = Some(ObjectRef {
                    name: node.to_string(),
                    uid: n.as_ref().map(uid_of).unwrap_or("").to_string(),
                });
            }
            claims.pod = Some(found.clone());
        }
        "Secret" => claims.secret = Some(found.clone()),
        _ => claims.node = Some(found.clone()),
    }
    if !uid.is_empty() && uid != found.uid {
        return Err(ApiError::Conflict {
            message: format!("Operation cannot be fulfilled on {kind} \"{name}\": the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"),
            details: Some(crate::error::Details {
                name,
                group,
                kind,
                uid: None,
            }),
        });
    }
    Ok(())
}

/// `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`.
pub async fn create(
    signer: &TokenSigner,
    rest: &Rest,
    namespace: &str,
    name: &str,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let bytes = crate::handlers::read_body(body).await?;
    let req = content::decode_body(&content::content_type(headers), &bytes)?;
    if !req.is_object() {
        return Err(ApiError::bad_request(
            "the body must be an authentication.k8s.io/v1 TokenRequest",
        ));
    }
    match req.get("kind").and_then(Value::as_str) {
        None | Some("") | Some("TokenRequest") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "the kind of the body must be TokenRequest, got {other:?}"
            )))
        }
    }
    let body_name = object::name(&req);
    if !body_name.is_empty() && body_name != name {
        return Err(invalid(
            name,
            vec![FieldError::invalid(
                "metadata.name",
                json!(body_name),
                "must match the service account name if specified",
            )],
        ));
    }
    let body_ns = req
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !body_ns.is_empty() && body_ns != namespace {
        return Err(invalid(
            name,
            vec![FieldError::invalid(
                "metadata.namespace",
                json!(body_ns),
                "must match the service account namespace if specified",
            )],
        ));
    }
    let Some(sa) = lookup(rest, "serviceaccounts", Some(namespace), name).await? else {
        return Err(ApiError::not_found("", "serviceaccounts", name));
    };
    let empty = json!({});
    let spec = req.get("spec").unwrap_or(&empty);
    let auds = audiences(spec, signer)?;
    let expiration = expiration_seconds(spec)?;
    let now = chrono::Utc::now();
    let mut claims = Claims::new(
        signer.issuer(),
        auds.clone(),
        namespace,
        name,
        uid_of(&sa),
        now.timestamp(),
        expiration,
    );
    let bound = spec.get("boundObjectRef").filter(|v| !v.is_null());
    if let Some(reference) = bound {
        bind(rest, namespace, name, reference, &mut claims.kubernetes).await?;
    }
    let token = signer
        .sign(&claims)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let expires = chrono::DateTime::from_timestamp(claims.exp, 0)
        .unwrap_or(now)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut out_spec = json!({"audiences": auds, "expirationSeconds": expiration});
    if let Some(r) = bound {
        out_spec["boundObjectRef"] = r.clone();
    }
    let out = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid_of(&sa),
            "creationTimestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        },
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": expires},
    });
    let mut r = (
        StatusCode::CREATED,
        serde_json::to_vec(&out).unwrap_or_default(),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        TokenSigner::from_pem(
            &key.serialize_pem(),
            DEFAULT_ISSUER,
            vec![DEFAULT_ISSUER.to_string()],
        )
        .unwrap()
    }

    fn claims(now: i64, aud: &[&str]) -> Claims {
        Claims::new(
            DEFAULT_ISSUER,
            aud.iter().map(|s| s.to_string()).collect(),
            "team",
            "builder",
            "sa-uid",
            now,
            DEFAULT_EXPIRATION_SECONDS,
        )
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn signed_claims_round_trip_with_upstream_names() {
        let s = signer();
        let mut c = claims(now(), &[DEFAULT_ISSUER]);
        c.kubernetes.pod = Some(ObjectRef {
            name: "p".into(),
            uid: "pod-uid".into(),
        });
        let token = s.sign(&c).unwrap();
        assert_eq!(s.verify(&token).unwrap(), c);
        // The payload uses upstream's claim names.
        let payload = token.split('.').nth(1).unwrap();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        let v: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v["sub"], "system:serviceaccount:team:builder");
        assert_eq!(v["kubernetes.io"]["serviceaccount"]["uid"], "sa-uid");
        assert_eq!(v["kubernetes.io"]["pod"]["name"], "p");
        assert!(v["kubernetes.io"].get("secret").is_none());
        assert_eq!(
            v["exp"].as_i64().unwrap() - v["iat"].as_i64().unwrap(),
            3600
        );
        // The header names the key published in the JWKS.
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(
            Some(s.jwks()["keys"][0]["kid"].as_str().unwrap().to_string()),
            header.kid
        );
    }

    #[test]
    fn the_user_is_the_service_account() {
        let u = user_of(&claims(now(), &[DEFAULT_ISSUER]));
        assert_eq!(u.username, "system:serviceaccount:team:builder");
        assert_eq!(u.uid, "sa-uid");
        assert_eq!(
            u.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:team",
                "system:authenticated"
            ]
        );
    }

    #[test]
    fn expired_tokens_are_refused() {
        let s = signer();
        let t = s
            .sign(&claims(now() - 2 * 3600, &[DEFAULT_ISSUER]))
            .unwrap();
        assert!(s.verify(&t).is_err());
    }

    #[test]
    fn tokens_not_yet_valid_are_refused() {
        let s = signer();
        let t = s.sign(&claims(now() + 600, &[DEFAULT_ISSUER])).unwrap();
        assert!(s.verify(&t).is_err());
    }

    #[test]
    fn other_audiences_are_refused_but_one_match_suffices() {
        let s = signer();
        let other = s.sign(&claims(now(), &["vault"])).unwrap();
        assert!(s.verify(&other).is_err());
        let both = s.sign(&claims(now(), &["vault", DEFAULT_ISSUER])).unwrap();
        assert!(s.verify(&both).is_ok());
    }

    #[test]
    fn other_issuers_and_keys_and_edits_are_refused() {
        let s = signer();
        let mut c = claims(now(), &[DEFAULT_ISSUER]);
        c.iss = "https://elsewhere".into();
        assert!(s.verify(&s.sign(&c).unwrap()).is_err());

        let good = s.sign(&claims(now(), &[DEFAULT_ISSUER])).unwrap();
        assert!(signer().verify(&good).is_err(), "signed by another key");

        // Swap the payload for one naming another service account.
        let mut forged = claims(now(), &[DEFAULT_ISSUER]);
        forged.kubernetes.serviceaccount.name = "admin".into();
        let forged_payload = s.sign(&forged).unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        let other: Vec<&str> = forged_payload.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], other[1], parts[2]);
        assert!(s.verify(&tampered).is_err());

        // alg "none" is never accepted.
        let none = format!("{}.{}.", b64url(br#"{"alg":"none","typ":"JWT"}"#), parts[1]);
        assert!(s.verify(&none).is_err());
    }

    #[test]
    fn the_key_is_generated_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = TokenSigner::load_or_create(dir.path()).unwrap();
        let b = TokenSigner::load_or_create(dir.path()).unwrap();
        let t = a.sign(&claims(now(), &[DEFAULT_ISSUER])).unwrap();
        assert!(b.verify(&t).is_ok());
        assert_eq!(a.jwks(), b.jwks());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
    }

    #[test]
    fn expiration_defaults_and_bounds() {
        assert_eq!(expiration_seconds(&json!({})).unwrap(), 3600);
        assert_eq!(
            expiration_seconds(&json!({"expirationSeconds": 600})).unwrap(),
            600
        );
        for bad in [599, -1, (1i64 << 32) + 1] {
            match expiration_seconds(&json!({ "expirationSeconds": bad })) {
                Err(ApiError::Invalid { errors, .. }) => {
                    assert_eq!(errors[0].field, "spec.expirationSeconds")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn no_audience_means_the_api_audiences() {
        let s = signer();
        assert_eq!(audiences(&json!({}), &s).unwrap(), [DEFAULT_ISSUER]);
        assert_eq!(
            audiences(&json!({"audiences": ["vault"]}), &s).unwrap(),
            ["vault"]
        );
        assert!(audiences(&json!({"audiences": [""]}), &s).is_err());
    }

    #[test]
    fn jwks_publishes_the_public_point() {
        let s = signer();
        let k = &s.jwks()["keys"][0];
        let x = k["x"].as_str().unwrap();
        let y = k["y"].as_str().unwrap();
        // The published key verifies tokens.
        let key = DecodingKey::from_ec_components(x, y).unwrap();
        let t = s.sign(&claims(now(), &[DEFAULT_ISSUER])).unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&[DEFAULT_ISSUER]);
        assert!(jsonwebtoken::decode::<Claims>(&t, &key, &v).is_ok());
        assert_eq!(
            s.openid_configuration()["jwks_uri"],
            format!("{DEFAULT_ISSUER}/openid/v1/jwks")
        );
    }
}
