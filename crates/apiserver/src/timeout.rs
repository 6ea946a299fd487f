//! Request timeout layer: every request but watches, connection upgrades and the
//! streaming pod subresources (`log`, `exec`, `attach`, `portforward`) gets
//! at most [`REQUEST_TIMEOUT`] (or the client's `timeout` query parameter, if
//! shorter), then a 504 `Timeout` Status.

use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::request_info::{RequestInfo, Verb};

/// Kubernetes' default `--request-timeout`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Go duration strings as clients send them in `?timeout=` (`32s`, `1m0s`, `500ms`).
fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += match unit.as_str() {
            "h" => n * 3600.0,
            "m" => n * 60.0,
            "s" => n,
            "ms" => n / 1000.0,
            _ => return None,
        };
    }
    if !num.is_empty() {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

pub async fn layer(req: Request, next: Next) -> Response {
    let long_running = match req.extensions().get::<RequestInfo>() {
        Some(RequestInfo::Resource(r)) => {
            r.verb == Verb::Watch
                || crate::pod_streams::handles(r)
                || r.subresource.is_some()
                    && r.verb == Verb::Get
                    && req.headers().contains_key(http::header::UPGRADE)
        }
        _ => false,
    } || req.headers().contains_key(http::header::UPGRADE);
    if long_running {
        return next.run(req).await;
    }
    let asked = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "timeout")
            .and_then(|(_, v)| parse_go_duration(&v))
    });
    let limit = asked
        .filter(|d| !d.is_zero())
        .map_or(REQUEST_TIMEOUT, |d| d.min(REQUEST_TIMEOUT));
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::Timeout {
            message: format!("the request did not complete within {}s", limit.as_secs()),
        }
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("32s"), Some(Duration::from_secs(32)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("abc"), None);
        assert_eq!(parse_go_duration("5"), None);
    }
}
