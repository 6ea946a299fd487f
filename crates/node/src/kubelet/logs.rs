//! `GET /containerLogs/{ns}/{pod}/{uid}/{container}`: a container's output as
//! a plain (chunked) body, streamed while `follow` lasts.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{header, HeaderValue, StatusCode};
use k8s_openapi::jiff::Timestamp;

use super::{bad_request, flag, runtime_error_response, Kubelet};
use crate::runtime::{ContainerState, LogOptions};

pub(super) async fn serve(
    State(k): State<Arc<Kubelet>>,
    Path((_namespace, pod, uid, container)): Path<(String, String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let options = match parse_options(query.as_deref().unwrap_or(""), Timestamp::now()) {
        Ok(o) => o,
        Err(msg) => return bad_request(&msg),
    };
    if let Err(msg) = check_container(&k, &uid, &pod, &container, options.previous).await {
        return bad_request(&msg);
    }
    match k.runtime.logs(&uid, &container, options).await {
        Ok(stream) => {
            let body = Body::from_stream(stream.map(|chunk| chunk.map(bytes::Bytes::from)));
            let mut r = (StatusCode::OK, body).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            r
        }
        Err(e) => runtime_error_response(&e),
    }
}

/// The kubelet's checks before it opens a log (`validateContainerLogStatus`):
/// a container that never ran has no log yet, and `previous` needs a
/// terminated earlier run. Pods the runtime does not know fall through to
/// [`crate::runtime::NodeRuntime::logs`], which reports them.
async fn check_container(
    k: &Kubelet,
    uid: &str,
    pod: &str,
    container: &str,
    previous: bool,
) -> Result<(), String> {
    let Some(status) = k.runtime.pod_status(uid).await else {
        return Ok(());
    };
    let Some(c) = status
        .containers
        .iter()
        .chain(status.init_containers.iter())
        .find(|c| c.name == container)
    else {
        return Ok(());
    };
    if previous {
        return match c.last_state {
            Some(_) => Ok(()),
            None => Err(format!(
                "previous terminated container {container:?} in pod {pod:?} not found"
            )),
        };
    }
    match &c.state {
        ContainerState::Running { .. } | ContainerState::Terminated(_) => Ok(()),
        // Waiting after a run (back-off): the log of the last run.
        ContainerState::Waiting { .. } if c.last_state.is_some() => Ok(()),
        ContainerState::Waiting { reason, .. } => Err(match reason.as_str() {
            "ErrImagePull" => {
                format!("container {container:?} in pod {pod:?} is waiting to start: image can't be pulled")
            }
            "ImagePullBackOff" => format!(
                "container {container:?} in pod {pod:?} is waiting to start: trying and failing to pull image"
            ),
            r => format!("container {container:?} in pod {pod:?} is waiting to start: {r}"),
        }),
    }
}

/// The query as the kubelet reads it. `sinceSeconds` is turned into an
/// absolute time against `now`.
fn parse_options(query: &str, now: Timestamp) -> Result<LogOptions, String> {
    let mut o = LogOptions::default();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "follow" => o.follow = flag(&v),
            "previous" => o.previous = flag(&v),
            "timestamps" => o.timestamps = flag(&v),
            "tailLines" => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| format!("invalid tailLines {v:?}: not an integer"))?;
                // Negative means "all", as for the kubelet.
                o.tail_lines = u64::try_from(n).ok();
            }
            "limitBytes" => {
                let n: u64 =
                    v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("invalid limitBytes {v:?}: must be greater than 0")
                    })?;
                o.limit_bytes = Some(n);
            }
            "sinceSeconds" => {
                let n: u64 =
                    v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("invalid sinceSeconds {v:?}: must be greater than 0")
                    })?;
                let since = now
                    .checked_sub(Duration::from_secs(n))
                    .map_err(|_| format!("invalid sinceSeconds {v:?}: out of range"))?;
                o.since = Some(since);
            }
            "sinceTime" => {
                let t: Timestamp = v
                    .parse()
                    .map_err(|_| format!("invalid sinceTime {v:?}: not an RFC 3339 time"))?;
                o.since = Some(t);
            }
            _ => {}
        }
    }
    Ok(o)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn options_from_query() {
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let o = parse_options(
            "follow=true&tailLines=5&timestamps=1&previous=false&limitBytes=100&sinceSeconds=60",
            now,
        )
        .unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!(o.tail_lines, Some(5));
        assert_eq!(o.limit_bytes, Some(100));
        assert_eq!(o.since, Some("2026-01-01T00:00:00Z".parse().unwrap()));
        let o = parse_options("sinceTime=2025-05-05T10:00:00Z&tailLines=-1", now).unwrap();
        assert_eq!(o.since, Some("2025-05-05T10:00:00Z".parse().unwrap()));
        assert_eq!(o.tail_lines, None);
    }

    #[test]
    fn bad_options_are_named() {
        let now = Timestamp::UNIX_EPOCH;
        assert!(parse_options("tailLines=x", now)
            .unwrap_err()
            .contains("tailLines"));
        assert!(parse_options("limitBytes=0", now)
            .unwrap_err()
            .contains("limitBytes"));
        assert!(parse_options("sinceTime=yesterday", now)
            .unwrap_err()
            .contains("sinceTime"));
    }
}
