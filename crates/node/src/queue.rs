//! A de-duplicating work queue, as client-go's workqueue: a key added while
//! queued is queued once; a key added while a worker holds it is handed out
//! again after the worker is done (never to two workers at once).

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

#[derive(Default)]
struct Inner {
    queue: VecDeque<String>,
    dirty: HashSet<String>,
    processing: HashSet<String>,
}

/// Keys waiting for a worker.
#[derive(Default)]
pub struct WorkQueue {
    inner: Mutex<Inner>,
    notify: Notify,
}

impl std::fmt::Debug for WorkQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkQueue").finish_non_exhaustive()
    }
}

impl WorkQueue {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Queue `key` (once).
    pub fn add(&self, key: &str) {
        let mut q = self.lock();
        if q.dirty.contains(key) {
            return;
        }
        q.dirty.insert(key.to_string());
        if !q.processing.contains(key) {
            q.queue.push_back(key.to_string());
            drop(q);
            self.notify.notify_one();
        }
    }

    /// The next key; the caller must call [`WorkQueue::done`] with it.
    pub async fn get(&self) -> String {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut q = self.lock();
                if let Some(key) = q.queue.pop_front() {
                    q.dirty.remove(&key);
                    q.processing.insert(key.clone());
                    let more = !q.queue.is_empty();
                    drop(q);
                    if more {
                        // Pass the wake-up on to another idle worker.
                        self.notify.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    /// The worker is finished with `key`.
    pub fn done(&self, key: &str) {
        let mut q = self.lock();
        q.processing.remove(key);
        if q.dirty.contains(key) {
            q.queue.push_back(key.to_string());
            drop(q);
            self.notify.notify_one();
        }
    }

    /// Keys waiting (not counting those being worked on).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dedups_and_requeues_after_done() {
        let q = WorkQueue::default();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let a = q.get().await;
        assert_eq!(a, "a");
        q.add("a"); // while processing: held back
        assert_eq!(q.get().await, "b");
        assert!(q.is_empty());
        q.done("a");
        assert_eq!(q.get().await, "a");
        q.done("a");
        q.done("b");
        assert!(q.is_empty());
    }
}
