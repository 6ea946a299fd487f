//! Kubernetes Events (core/v1, the kind `kubectl describe` and `kubectl events`
//! read), recorded the way client-go's recorder does: fire and forget through a
//! bounded queue (a full queue drops the event rather than slowing the caller),
//! and repeats of the same event on the same object bump `count` and
//! `lastTimestamp` on the existing Event instead of creating a new one.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::mpsc;

/// How many events may wait to be written before new ones are dropped.
const QUEUE: usize = 4096;
/// How many distinct (object, reason, message) entries are remembered for
/// aggregation before the memory is cleared.
const REMEMBERED: usize = 8192;

/// `Normal` or `Warning`, the two event types Kubernetes knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

struct Pending {
    object: ObjectReference,
    kind: EventType,
    reason: String,
    message: String,
}

/// Events one object may get in a burst, and how fast that allowance refills
/// (client-go's EventSourceObjectSpamFilter: 25, then one per 5 minutes).
const SPAM_BURST: f64 = 25.0;
const SPAM_REFILL_PER_SEC: f64 = 1.0 / 300.0;
/// Objects remembered by the spam filter before it starts afresh.
const SPAM_REMEMBERED: usize = 16384;

/// Per-object token buckets, so one object (a ReplicaSet creating a thousand
/// pods) cannot flood the event store.
#[derive(Default)]
struct SpamFilter {
    buckets: HashMap<String, (f64, std::time::Instant)>,
}

impl SpamFilter {
    fn allow(&mut self, object: &ObjectReference) -> bool {
        let key = format!(
            "{}/{}/{}/{}",
            object.kind.as_deref().unwrap_or_default(),
            object.namespace.as_deref().unwrap_or_default(),
            object.name.as_deref().unwrap_or_default(),
            object.uid.as_deref().unwrap_or_default()
        );
        if self.buckets.len() >= SPAM_REMEMBERED && !self.buckets.contains_key(&key) {
            self.buckets.clear();
        }
        let now = std::time::Instant::now();
        let (tokens, last) = self.buckets.entry(key).or_insert((SPAM_BURST, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * SPAM_REFILL_PER_SEC)
            .min(SPAM_BURST);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Records events for one component (`deployment-controller`, `default-scheduler`, …).
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Pending>,
    spam: std::sync::Arc<std::sync::Mutex<SpamFilter>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder whose writer task runs until every clone is dropped.
    /// `host` fills `source.host` (node agents set their node name).
    pub fn new(client: Client, component: impl Into<String>, host: Option<String>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = Writer {
            client,
            component: component.into(),
            host,
            seen: HashMap::new(),
        };
        tokio::spawn(writer.run(rx));
        Recorder {
            tx,
            spam: Default::default(),
        }
    }

    /// Queue an event about `object`. Never blocks and never fails: a full
    /// queue, or an object over its event allowance, drops the event.
    pub fn record(&self, object: ObjectReference, kind: EventType, reason: &str, message: &str) {
        let allowed = match self.spam.lock() {
            Ok(mut f) => f.allow(&object),
            Err(p) => p.into_inner().allow(&object),
        };
        if !allowed {
            tracing::trace!(reason, "event over the object's allowance, dropped");
            return;
        }
        let pending = Pending {
            object,
            kind,
            reason: reason.to_string(),
            message: message.to_string(),
        };
        if self.tx.try_send(pending).is_err() {
            tracing::debug!(reason, "event queue full, event dropped");
        }
    }

    /// Shorthand for [`Recorder::record`] on a typed object.
    pub fn publish<K>(&self, obj: &K, kind: EventType, reason: &str, message: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        self.record(reference(obj), kind, reason, message);
    }
}

/// An ObjectReference naming `obj` (kind, apiVersion, namespace, name, uid,
/// resourceVersion), as involvedObject wants it.
pub fn reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        namespace: obj.namespace(),
        name: Some(obj.name_any()),
        uid: obj.uid(),
        resource_version: obj.resource_version(),
        field_path: None,
    }
}

#[derive(Hash, PartialEq, Eq)]
struct Key {
    uid: String,
    namespace: String,
    name: String,
    kind: EventType,
    reason: String,
    message: String,
}

struct Writer {
    client: Client,
    component: String,
    host: Option<String>,
    /// Aggregation memory: key → (event name, count so far).
    seen: HashMap<Key, (String, i32)>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Pending>) {
        while let Some(p) = rx.recv().await {
            if let Err(e) = self.write(p).await {
                tracing::debug!(error = %e, "writing an event failed");
            }
        }
    }

    async fn write(&mut self, p: Pending) -> Result<(), kube::Error> {
        // Events about cluster-scoped objects (Nodes) live in `default`, as upstream.
        let namespace = p
            .object
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let now = Time(Timestamp::now());
        let key = Key {
            uid: p.object.uid.clone().unwrap_or_default(),
            namespace: namespace.clone(),
            name: p.object.name.clone().unwrap_or_default(),
            kind: p.kind,
            reason: p.reason.clone(),
            message: p.message.clone(),
        };
        if let Some((name, count)) = self.seen.get(&key).cloned() {
            let patch = serde_json::json!({
                "count": count + 1,
                "lastTimestamp": now,
            });
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    self.seen.insert(key, (name, count + 1));
                    return Ok(());
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {} // expired: write a new one
                Err(e) => return Err(e),
            }
        }
        let object_name = p.object.name.clone().unwrap_or_default();
        let nanos = now.0.as_nanosecond();
        let name = format!("{object_name}.{nanos:x}");
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace),
                ..Default::default()
            },
            involved_object: p.object,
            reason: Some(p.reason),
            message: Some(p.message),
            type_: Some(p.kind.as_str().to_string()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: self.host.clone(),
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone().unwrap_or_else(|| self.component.clone())),
            ..Default::default()
        };
        api.create(&PostParams::default(), &event).await?;
        if self.seen.len() >= REMEMBERED {
            self.seen.clear();
        }
        self.seen.insert(key, (name, 1));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_object_gets_a_burst_then_waits() {
        let mut f = SpamFilter::default();
        let a = ObjectReference {
            kind: Some("ReplicaSet".into()),
            name: Some("a".into()),
            ..Default::default()
        };
        let b = ObjectReference {
            name: Some("b".into()),
            ..a.clone()
        };
        let allowed = (0..100).filter(|_| f.allow(&a)).count();
        assert_eq!(allowed, 25);
        assert!(f.allow(&b), "another object has its own allowance");
    }
}
