//! Watch: a chunked stream of `{"type": ..., "object": ...}` JSON lines, fed by the
//! store's watch, filtered by selectors, with optional initial events and bookmarks.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{json, Value};
use skiff_store::{EventKind, Revision};
use tokio_util::sync::CancellationToken;

use crate::content::Output;
use crate::error::ApiError;
use crate::object;
use crate::query::{ListParams, RvMatch};
use crate::registry::Resource;
use crate::rest::Rest;
use crate::table;

/// How a watch event's object is rendered.
#[derive(Clone)]
struct Render {
    res: Arc<Resource>,
    output: Output,
    params: ListParams,
    /// What the selectors read (metadata and the selected fields), so events
    /// are tested without parsing whole objects.
    selected: crate::sparse::Paths,
}

impl Render {
    fn event(&self, kind: &str, obj: &Value, first: bool) -> Bytes {
        let object = match self.output {
            Output::Object => obj.clone(),
            Output::PartialMetadata => table::partial_metadata(obj),
            Output::Table => table::table(
                &self.res,
                std::slice::from_ref(obj),
                self.params.include_object,
                json!({"resourceVersion": object::resource_version(obj).unwrap_or("")}),
                first,
            ),
        };
        let mut line =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    /// `{"type":<kind>,"object":<object bytes>}` plus newline, without re-encoding.
    fn raw_event(kind: &str, object: &[u8]) -> Bytes {
        let mut line = Vec::with_capacity(object.len() + kind.len() + 24);
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(kind.as_bytes());
        line.extend_from_slice(b"\",\"object\":");
        line.extend_from_slice(object);
        line.extend_from_slice(b"}\n");
        Bytes::from(line)
    }

    fn bookmark(&self, rv: Revision, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.0.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({"kind": self.res.def.kind, "apiVersion": self.res.def.api_version(), "metadata": meta});
        let mut line =
            serde_json::to_vec(&json!({"type": "BOOKMARK", "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }
}

fn error_event(e: &ApiError) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// The state of one watch response body.
struct Feed {
    rest: Arc<Rest>,
    render: Render,
    /// Lines ready to send (initial events, a final error).
    pending: VecDeque<Bytes>,
    stream: Option<skiff_store::WatchStream>,
    first: bool,
    last: Revision,
    deadline: Pin<Box<tokio::time::Sleep>>,
    bookmarks: tokio::time::Interval,
    /// Created once: a fresh `cancelled()` per event would register and
    /// unregister a waiter on the shared token for every line of every watch.
    shutdown: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
}

impl Feed {
    /// The next line of the body; `None` ends the response.
    async fn next_line(&mut self) -> Option<Bytes> {
        if let Some(b) = self.pending.pop_front() {
            return Some(b);
        }
        let allow_bookmarks = self.render.params.allow_bookmarks;
        loop {
            let stream = self.stream.as_mut()?;
            tokio::select! {
                _ = &mut self.deadline => return None,
                _ = &mut self.shutdown => return None,
                _ = self.bookmarks.tick(), if allow_bookmarks => {
                    return Some(self.render.bookmark(self.last, false));
                }
                ev = stream.next() => {
                    let ev = match ev? {
                        Ok(ev) => ev,
                        Err(e) => {
                            // The stream ends after the error event.
                            self.stream = None;
                            return Some(error_event(&ApiError::from(e)));
                        }
                    };
                    self.last = ev.revision();
                    if let Some(line) = translate(&self.render, &self.rest, &ev, self.first) {
                        self.first = false;
                        return Some(line);
                    }
                }
            }
        }
    }
}

/// Start a watch. Returns the response body as a stream of encoded lines. It is
/// driven by the connection itself (no task per watch) and ends when the client
/// goes away, the timeout passes, the store stream ends or `shutdown` fires.
pub async fn start(
    rest: Arc<Rest>,
    res: Arc<Resource>,
    namespace: Option<String>,
    params: ListParams,
    output: Output,
    shutdown: CancellationToken,
) -> Result<impl Stream<Item = Bytes> + Send + 'static, ApiError> {
    Rest::check_field_selector(&res, &params)?;
    let ns = if res.def.namespaced {
        namespace.clone()
    } else {
        None
    };
    let prefix = res.prefix(ns.as_deref());
    let selected = crate::sparse::Paths::new(
        ["metadata.name", "metadata.namespace", "metadata.labels"]
            .into_iter()
            .chain(params.fields.reqs.iter().map(|(f, _, _)| source_path(f))),
    );
    let render = Render {
        res: res.clone(),
        output,
        params: params.clone(),
        selected,
    };

    // rv unset or "0": synthetic ADDED events for the current state, then changes.
    let rv = params.resource_version.unwrap_or_default();
    let wants_initial = match params.send_initial_events {
        Some(v) => v,
        None => rv.0 == 0,
    };
    let mut pending = VecDeque::new();
    let mut from = rv;
    let mut first = true;
    if wants_initial {
        let page = rest
            .list(
                &res,
                ns.as_deref(),
                &ListParams {
                    limit: None,
                    continue_token: None,
                    rv_match: Some(RvMatch::NotOlderThan),
                    resource_version: None,
                    ..params.clone()
                },
            )
            .await?;
        from = page.resource_version;
        for obj in &page.items {
            pending.push_back(render.event("ADDED", obj, first));
            first = false;
        }
    } else if rv.0 == 0 {
        from = rest.store.current_revision().await?;
    }
    if params.send_initial_events == Some(true) && params.allow_bookmarks {
        pending.push_back(render.bookmark(from, true));
    }
    let stream = match rest.store.watch(&prefix, from).await {
        Ok(s) => Some(s),
        Err(e) => {
            pending.push_back(error_event(&ApiError::from(e)));
            None
        }
    };
    let timeout = Duration::from_secs(
        params
            .timeout_seconds
            .unwrap_or_else(|| 1800 + rand::random::<u64>() % 1800),
    );
    let period = Duration::from_secs(60);
    let feed = Feed {
        rest,
        render,
        pending,
        stream,
        first,
        last: from,
        deadline: Box::pin(tokio::time::sleep(timeout)),
        bookmarks: tokio::time::interval_at(tokio::time::Instant::now() + period, period),
        shutdown: Box::pin(shutdown.cancelled_owned()),
    };
    Ok(futures::stream::unfold(feed, |mut feed| async move {
        let line = feed.next_line().await?;
        Some((line, feed))
    }))
}

/// Where in the object a field-selector field's value comes from: the field's
/// own path, except for the two fields upstream names differently.
fn source_path(field: &str) -> &str {
    match field {
        "status.successful" => "status.succeeded", // Jobs
        "source" => "source.component",            // Events
        other => other,
    }
}

/// Store event → watch event, honouring selectors: an object that starts
/// matching is ADDED, one that stops matching is DELETED.
fn translate(render: &Render, rest: &Rest, ev: &skiff_store::Event, first: bool) -> Option<Bytes> {
    let res = &render.res;
    let selective = !render.params.labels.is_empty() || !render.params.fields.is_empty();
    // The common case (plain JSON, no selectors) never parses the object.
    if render.output == Output::Object && !selective {
        let kind = match (ev.kind, &ev.prev) {
            (EventKind::Delete, _) => "DELETED",
            (EventKind::Put, None) => "ADDED",
            (EventKind::Put, Some(_)) => "MODIFIED",
        };
        return Rest::raw(res, &ev.kv)
            .ok()
            .map(|b| Render::raw_event(kind, &b));
    }
    // Selectors only read metadata and the selected fields: test skeletons.
    let skeleton = |kv: &skiff_store::KeyValue| render.selected.sparse(&kv.value);
    let matches = |o: &Value| rest.matches(res, o, &render.params);
    let kind = match ev.kind {
        EventKind::Delete => matches(&skeleton(&ev.kv)?).then_some("DELETED")?,
        EventKind::Put => {
            let now_in = matches(&skeleton(&ev.kv)?);
            let was_in = ev
                .prev
                .as_ref()
                .and_then(skeleton)
                .as_ref()
                .is_some_and(matches);
            match (was_in, now_in) {
                (false, true) => "ADDED",
                (true, true) => "MODIFIED",
                (true, false) => "DELETED",
                (false, false) => return None,
            }
        }
    };
    if render.output == Output::Object {
        return Rest::raw(res, &ev.kv)
            .ok()
            .map(|b| Render::raw_event(kind, &b));
    }
    let new = Rest::decode(res, &ev.kv).ok()?;
    Some(render.event(kind, &new, first))
}
