//! The scheduling queue, after upstream's: pods waiting to be tried
//! (active, FIFO), pods that failed and wait out a backoff, and pods no node
//! could take (unschedulable) until something in the cluster changes, or
//! for at most [`UNSCHEDULABLE_MAX`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use super::cache::PodKey;

/// Backoff after the first failed attempt; doubles per attempt.
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// The longest backoff.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long an unschedulable pod waits for a cluster change before it is
/// tried again anyway.
pub const UNSCHEDULABLE_MAX: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Active,
    /// Being scheduled or bound.
    InFlight,
    Backoff(Instant),
    Unschedulable(Instant),
}

#[derive(Debug)]
struct Entry {
    pod: Arc<Pod>,
    state: State,
    attempts: u32,
    fingerprint: u64,
}

/// What of a pending pod can change whether it fits: its spec (generation)
/// and labels. Status-only updates (including the scheduler's own
/// condition writes) leave it unchanged.
fn fingerprint(pod: &Pod) -> u64 {
    let mut h = DefaultHasher::new();
    pod.metadata.uid.hash(&mut h);
    pod.metadata.generation.hash(&mut h);
    pod.metadata.labels.hash(&mut h);
    h.finish()
}

fn backoff(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(16);
    BACKOFF_INITIAL.saturating_mul(1u32 << exp).min(BACKOFF_MAX)
}

#[derive(Debug, Default)]
pub struct Queue {
    entries: HashMap<PodKey, Entry>,
    /// Keys in Active state, oldest first (may hold stale keys; checked on pop).
    active: VecDeque<PodKey>,
    unschedulable: HashSet<PodKey>,
    /// The unschedulable pods with required pod affinity: a newly assigned
    /// pod may be the one they wait for.
    waiting_for_pods: HashSet<PodKey>,
    backoff: HashSet<PodKey>,
}

impl Queue {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Whether some pod is ready to be tried now.
    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    fn activate(&mut self, key: &str) {
        if let Some(e) = self.entries.get_mut(key) {
            if e.state != State::Active {
                self.unschedulable.remove(key);
                self.waiting_for_pods.remove(key);
                self.backoff.remove(key);
                e.state = State::Active;
                self.active.push_back(key.to_string());
            }
        }
    }

    /// A pending pod was added or updated.
    pub fn upsert(&mut self, key: &str, pod: Arc<Pod>) {
        let fp = fingerprint(&pod);
        match self.entries.get_mut(key) {
            None => {
                self.entries.insert(
                    key.to_string(),
                    Entry {
                        pod,
                        state: State::Active,
                        attempts: 0,
                        fingerprint: fp,
                    },
                );
                self.active.push_back(key.to_string());
            }
            Some(e) => {
                let changed = e.fingerprint != fp;
                e.pod = pod;
                e.fingerprint = fp;
                if changed && matches!(e.state, State::Unschedulable(_) | State::Backoff(_)) {
                    self.activate(key);
                }
            }
        }
    }

    /// The pod is gone, bound, or no longer ours.
    pub fn remove(&mut self, key: &str) {
        if self.entries.remove(key).is_some() {
            self.unschedulable.remove(key);
            self.waiting_for_pods.remove(key);
            self.backoff.remove(key);
        }
    }

    /// The next pod to try (it is in flight until [`Queue::done`] or removal).
    pub fn pop(&mut self) -> Option<(PodKey, Arc<Pod>)> {
        while let Some(key) = self.active.pop_front() {
            if let Some(e) = self.entries.get_mut(&key) {
                if e.state == State::Active {
                    e.state = State::InFlight;
                    let pod = e.pod.clone();
                    return Some((key, pod));
                }
            }
        }
        None
    }

    /// The pod fits nowhere: wait for a cluster change.
    pub fn unschedulable(&mut self, key: &str, now: Instant) {
        if let Some(e) = self.entries.get_mut(key) {
            e.attempts = e.attempts.saturating_add(1);
            e.state = State::Unschedulable(now);
            self.unschedulable.insert(key.to_string());
            let needs_pods = e
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.affinity.as_ref())
                .and_then(|a| a.pod_affinity.as_ref())
                .and_then(|pa| {
                    pa.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .is_some_and(|terms| !terms.is_empty());
            if needs_pods {
                self.waiting_for_pods.insert(key.to_string());
            }
        }
    }

    /// A pod was assigned to a node: pods waiting for pod affinity may fit now.
    pub fn pod_assigned(&mut self, now: Instant) {
        if self.waiting_for_pods.is_empty() {
            return;
        }
        let keys: Vec<PodKey> = self.waiting_for_pods.drain().collect();
        for key in keys {
            self.wake(&key, now);
        }
    }

    /// An unschedulable pod goes back to active, or to backoff if its
    /// backoff has not passed yet.
    fn wake(&mut self, key: &str, now: Instant) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        let State::Unschedulable(since) = e.state else {
            return;
        };
        let ready = since + backoff(e.attempts);
        if ready <= now {
            self.activate(key);
        } else {
            e.state = State::Backoff(ready);
            self.unschedulable.remove(key);
            self.waiting_for_pods.remove(key);
            self.backoff.insert(key.to_string());
        }
    }

    /// Binding failed: try again after a backoff.
    pub fn retry_later(&mut self, key: &str, now: Instant) {
        if let Some(e) = self.entries.get_mut(key) {
            e.attempts = e.attempts.saturating_add(1);
            e.state = State::Backoff(now + backoff(e.attempts));
            self.backoff.insert(key.to_string());
        }
    }

    /// Something changed that may let unschedulable pods fit: each goes back
    /// to active, or to backoff if its backoff has not passed yet.
    pub fn cluster_changed(&mut self, now: Instant) {
        let keys: Vec<PodKey> = self.unschedulable.iter().cloned().collect();
        for key in keys {
            self.wake(&key, now);
        }
    }

    /// Move pods whose backoff has passed, and pods unschedulable for longer
    /// than [`UNSCHEDULABLE_MAX`], to active.
    pub fn tick(&mut self, now: Instant) {
        let due: Vec<PodKey> = self
            .backoff
            .iter()
            .filter(|k| {
                self.entries
                    .get(*k)
                    .is_some_and(|e| matches!(e.state, State::Backoff(t) if t <= now))
            })
            .cloned()
            .collect();
        for k in due {
            self.activate(&k);
        }
        let stale: Vec<PodKey> = self
            .unschedulable
            .iter()
            .filter(|k| {
                self.entries.get(*k).is_some_and(
                    |e| matches!(e.state, State::Unschedulable(t) if now.duration_since(t) >= UNSCHEDULABLE_MAX),
                )
            })
            .cloned()
            .collect();
        for k in stale {
            self.activate(&k);
        }
    }

    /// Every pending pod's key.
    pub fn keys(&self) -> Vec<PodKey> {
        self.entries.keys().cloned().collect()
    }

    /// The pod stored for `key`.
    pub fn pod(&self, key: &str) -> Option<Arc<Pod>> {
        self.entries.get(key).map(|e| e.pod.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn pod(uid: &str, generation: i64) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                uid: Some(uid.into()),
                generation: Some(generation),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    #[test]
    fn fifo_and_in_flight() {
        let mut q = Queue::default();
        q.upsert("ns/a", pod("a", 1));
        q.upsert("ns/b", pod("b", 1));
        assert_eq!(q.pop().map(|(k, _)| k).as_deref(), Some("ns/a"));
        // An update while in flight does not queue it twice.
        q.upsert("ns/a", pod("a", 2));
        assert_eq!(q.pop().map(|(k, _)| k).as_deref(), Some("ns/b"));
        assert!(q.pop().is_none());
        q.remove("ns/a");
        assert!(!q.contains("ns/a"));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn unschedulable_waits_for_a_change_or_the_period() {
        let mut q = Queue::default();
        let t0 = Instant::now();
        q.upsert("ns/a", pod("a", 1));
        q.pop();
        q.unschedulable("ns/a", t0);
        // A status-only update does not requeue.
        q.upsert("ns/a", pod("a", 1));
        assert!(q.pop().is_none());
        q.tick(t0 + Duration::from_secs(1));
        assert!(q.pop().is_none());
        // A cluster change after the backoff requeues.
        q.cluster_changed(t0 + Duration::from_secs(2));
        assert!(q.pop().is_some());
        q.unschedulable("ns/a", t0);
        // A cluster change inside the backoff waits it out.
        q.cluster_changed(t0);
        assert!(q.pop().is_none());
        q.tick(t0 + Duration::from_secs(3));
        assert!(q.pop().is_some());
        q.unschedulable("ns/a", t0);
        q.tick(t0 + UNSCHEDULABLE_MAX);
        assert!(q.pop().is_some());
        // A spec change requeues at once.
        q.unschedulable("ns/a", t0);
        q.upsert("ns/a", pod("a", 2));
        assert!(q.pop().is_some());
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(30), BACKOFF_MAX);
    }
}
