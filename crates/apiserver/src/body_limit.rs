//! Body layer: writes are read in full (up to [`crate::content::MAX_BODY`]) before anything
//! else looks at the request. A reply sent while a client is still uploading
//! makes HTTP/2 reset the stream, which clients report as a transport error
//! instead of the Status they should see (e.g. a 401 or 404 for a POST), so the
//! body is consumed first; anything larger gets 413 at once.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::Method;

pub async fn layer(req: Request, next: Next) -> Response {
    let has_body = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if !has_body || req.headers().contains_key(http::header::UPGRADE) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    match crate::handlers::read_body(body).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(e) => e.into_response(),
    }
}
