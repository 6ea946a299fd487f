//! Expectations, as upstream's ReplicaSet controller keeps them: after a
//! controller creates or deletes children it must not act on a cache that does
//! not show those writes yet, or it would create (or delete) them twice. The
//! names written are remembered per owner until the cache shows them (or, for
//! deletions, stops showing them); until then the owner's reconcile waits.
//! Entries older than five minutes are dropped, so a lost watch event cannot
//! wedge an owner for ever.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Entry {
    adds: HashSet<String>,
    dels: HashSet<String>,
    since: Option<Instant>,
}

/// Pending creations and deletions per owner key (e.g. `namespace/name`).
#[derive(Default)]
pub struct Expectations {
    inner: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for Expectations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expectations").finish_non_exhaustive()
    }
}

impl Expectations {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> R) -> R {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// `name` was created for `key`; wait until the cache has it.
    pub fn expect_create(&self, key: &str, name: &str) {
        self.with(|m| {
            let e = m.entry(key.to_string()).or_default();
            e.since.get_or_insert_with(Instant::now);
            e.adds.insert(name.to_string());
        });
    }

    /// `name` was deleted for `key`; wait until the cache no longer has it.
    pub fn expect_delete(&self, key: &str, name: &str) {
        self.with(|m| {
            let e = m.entry(key.to_string()).or_default();
            e.since.get_or_insert_with(Instant::now);
            e.dels.insert(name.to_string());
        });
    }

    /// Whether the cache (asked through `present`) shows every write made for
    /// `key`. Names the cache already reflects are forgotten.
    pub fn satisfied(&self, key: &str, present: impl Fn(&str) -> bool) -> bool {
        self.with(|m| {
            let Some(e) = m.get_mut(key) else {
                return true;
            };
            e.adds.retain(|n| !present(n));
            e.dels.retain(|n| present(n));
            let expired = e.since.is_some_and(|s| s.elapsed() > TIMEOUT);
            if e.adds.is_empty() && e.dels.is_empty() || expired {
                m.remove(key);
                return true;
            }
            false
        })
    }

    /// Drop everything remembered for `key` (the owner is gone).
    pub fn forget(&self, key: &str) {
        self.with(|m| {
            m.remove(key);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_creations_and_deletions_to_show() {
        let e = Expectations::new();
        assert!(e.satisfied("ns/a", |_| false));
        e.expect_create("ns/a", "p1");
        e.expect_delete("ns/a", "p0");
        assert!(!e.satisfied("ns/a", |n| n == "p0"));
        // p1 shows up, p0 is still there.
        assert!(!e.satisfied("ns/a", |n| n == "p0" || n == "p1"));
        // p0 is gone.
        assert!(e.satisfied("ns/a", |n| n == "p1"));
        assert!(e.satisfied("ns/a", |_| false));
    }
}
