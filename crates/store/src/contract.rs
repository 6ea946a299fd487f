//! The behaviour every [`Store`] backend must show, as async test functions.
//!
//! A backend's tests call each function with a [`Harness`] that opens the
//! backend under test, e.g. one `#[tokio::test]` per function. The functions
//! only compare revisions with each other and with what the store returned, so
//! they also hold on a backend shared with other writers, as long as every test
//! gets its own key prefix ([`Harness::prefix`]).
//!
//! These are test helpers: they panic on any deviation.
#![allow(clippy::unwrap_used)] // test support code: a panic is the failure report

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::{Error, Event, EventKind, KeyValue, ListOptions, Revision, Store, WatchStream};

/// How long any single awaited store call may take before the test fails.
const STEP: Duration = Duration::from_secs(30);

/// Opens the backend under test.
#[async_trait]
pub trait Harness: Send + Sync {
    /// Open the store. Calling this again after every store it returned has been
    /// dropped must open the same data again (a restart).
    async fn open(&self) -> Arc<dyn Store>;

    /// A key prefix no other test uses, ending in `/`.
    fn prefix(&self) -> String;
}

fn value(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn next_event(stream: &mut WatchStream) -> Option<Event> {
    match tokio::time::timeout(STEP, stream.next()).await {
        Ok(Some(Ok(event))) => Some(event),
        Ok(Some(Err(e))) => panic!("watch stream failed: {e}"),
        Ok(None) => None,
        Err(_) => panic!("no watch event within {STEP:?}"),
    }
}

/// Read events until one at or past `until` arrives; panics if the stream ends first.
async fn events_until(stream: &mut WatchStream, until: Revision) -> Vec<Event> {
    let mut events = Vec::new();
    while events.last().is_none_or(|e: &Event| e.revision() < until) {
        match next_event(stream).await {
            Some(event) => events.push(event),
            None => panic!(
                "watch stream ended before revision {until}; last seen {:?}",
                events.last().map(Event::revision)
            ),
        }
    }
    events
}

/// A revision to watch from, made by a write outside the test's prefix, so that
/// it is never `Revision(0)` ("from now") even on an empty store.
async fn baseline(store: &Arc<dyn Store>, prefix: &str) -> Revision {
    let key = format!("{}.baseline", prefix.trim_end_matches('/'));
    match store.create(&key, value("x")).await {
        Ok(revision) => revision,
        Err(Error::AlreadyExists { .. }) => store.current_revision().await.unwrap(),
        Err(e) => panic!("baseline write failed: {e}"),
    }
}

fn revisions(events: &[Event]) -> Vec<Revision> {
    events.iter().map(Event::revision).collect()
}

/// Create, get, update, delete, and the errors of each.
pub async fn crud(h: &dyn Harness) {
    let store = h.open().await;
    let p = h.prefix();
    let key = format!("{p}a");

    let r1 = store.create(&key, value("v1")).await.unwrap();
    let got = store.get(&key).await.unwrap().unwrap();
    assert_eq!(
        got,
        KeyValue {
            key: key.clone(),
            value: value("v1"),
            create_revision: r1,
            mod_revision: r1
        }
    );
    assert!(matches!(
        store.create(&key, value("again")).await,
        Err(Error::AlreadyExists { key: k }) if k == key
    ));

    let r2 = store.update(&key, value("v2"), r1).await.unwrap();
    assert!(r2 > r1);
    let got = store.get(&key).await.unwrap().unwrap();
    assert_eq!(
        (got.value, got.create_revision, got.mod_revision),
        (value("v2"), r1, r2)
    );
    assert_eq!(store.count(&p).await.unwrap(), 1);

    let (r3, deleted) = store.delete(&key, Some(r2)).await.unwrap();
    assert!(r3 > r2);
    assert_eq!(
        deleted,
        KeyValue {
            key: key.clone(),
            value: value("v2"),
            create_revision: r1,
            mod_revision: r2
        }
    );
    assert_eq!(store.get(&key).await.unwrap(), None);
    assert_eq!(store.count(&p).await.unwrap(), 0);
    assert!(store.current_revision().await.unwrap() >= r3);

    let missing = format!("{p}missing");
    assert!(matches!(
        store.update(&missing, value("x"), r1).await,
        Err(Error::NotFound { key: k }) if k == missing
    ));
    assert!(matches!(
        store.delete(&missing, None).await,
        Err(Error::NotFound { .. })
    ));

    // A deleted key can be created again, with a fresh create revision.
    let r4 = store.create(&key, value("v3")).await.unwrap();
    let got = store.get(&key).await.unwrap().unwrap();
    assert_eq!((got.create_revision, got.mod_revision), (r4, r4));
    // Unconditional delete.
    let (r5, _) = store.delete(&key, None).await.unwrap();
    assert!(r5 > r4);
}

/// Update and delete with a stale expected revision fail with `Conflict` and
/// change nothing.
pub async fn cas_conflicts(h: &dyn Harness) {
    let store = h.open().await;
    let key = format!("{}k", h.prefix());
    let r1 = store.create(&key, value("v1")).await.unwrap();
    let r2 = store.update(&key, value("v2"), r1).await.unwrap();

    match store.update(&key, value("stale"), r1).await {
        Err(Error::Conflict {
            key: k,
            expected,
            current,
        }) => {
            assert_eq!((k, expected, current), (key.clone(), r1, r2));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    match store.delete(&key, Some(r1)).await {
        Err(Error::Conflict {
            expected, current, ..
        }) => assert_eq!((expected, current), (r1, r2)),
        other => panic!("expected Conflict, got {other:?}"),
    }
    let got = store.get(&key).await.unwrap().unwrap();
    assert_eq!((got.value, got.mod_revision), (value("v2"), r2));
}

/// Many writers racing on one key with the same expected revision: exactly one
/// wins, even when the backend commits them together.
pub async fn cas_race_has_one_winner(h: &dyn Harness) {
    let store = h.open().await;
    let key = format!("{}race", h.prefix());
    let r1 = store.create(&key, value("v0")).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let store = Arc::clone(&store);
        let key = key.clone();
        tasks.spawn(async move { store.update(&key, value(&format!("w{i}")), r1).await });
    }
    let mut winners = Vec::new();
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(rev) => winners.push(rev),
            Err(Error::Conflict { current, .. }) => assert!(current > r1),
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one CAS winner");
    assert_eq!(
        store.get(&key).await.unwrap().unwrap().mod_revision,
        winners[0]
    );
}

/// The revision survives a restart and is never handed out again, even when
/// the newest log entries were compacted away.
pub async fn revision_survives_restart(h: &dyn Harness) {
    let p = h.prefix();
    let (r1, r_last) = {
        let store = h.open().await;
        let r1 = store.create(&format!("{p}a"), value("1")).await.unwrap();
        let r2 = store
            .update(&format!("{p}a"), value("2"), r1)
            .await
            .unwrap();
        store.create(&format!("{p}b"), value("1")).await.unwrap();
        let (r_last, _) = store.delete(&format!("{p}b"), None).await.unwrap();
        assert!(r2 < r_last);
        // The last write is a delete; compacting it drops its tombstone.
        store.compact(r_last).await.unwrap();
        (r1, r_last)
    };
    let store = h.open().await;
    assert!(store.current_revision().await.unwrap() >= r_last);
    assert!(store.compacted_revision().await.unwrap() >= r_last);
    let got = store.get(&format!("{p}a")).await.unwrap().unwrap();
    assert_eq!((got.value, got.create_revision), (value("2"), r1));
    assert_eq!(store.get(&format!("{p}b")).await.unwrap(), None);
    let r_new = store.create(&format!("{p}c"), value("1")).await.unwrap();
    assert!(
        r_new > r_last,
        "revision {r_new} reused after restart (last was {r_last})"
    );

    // History after the compaction point replays after a restart.
    let mut w = store.watch(&p, r_last).await.unwrap();
    assert_eq!(next_event(&mut w).await.unwrap().revision(), r_new);
}

/// Key order, `limit`, `start_after` and `remaining`, and the prefix boundary.
pub async fn list_pagination(h: &dyn Harness) {
    let store = h.open().await;
    let p = h.prefix();
    // Written out of order; a sibling prefix that shares the leading bytes.
    for i in [3, 9, 0, 7, 1, 8, 2, 6, 4, 5] {
        store
            .create(&format!("{p}items/{i:02}"), value(&i.to_string()))
            .await
            .unwrap();
    }
    store
        .create(&format!("{p}itemsx/00"), value("other"))
        .await
        .unwrap();
    store
        .create(&format!("{p}item"), value("other"))
        .await
        .unwrap();
    let prefix = format!("{p}items/");

    let all = store.list(&prefix, ListOptions::default()).await.unwrap();
    let keys: Vec<String> = all.items.iter().map(|kv| kv.key.clone()).collect();
    let expected: Vec<String> = (0..10).map(|i| format!("{prefix}{i:02}")).collect();
    assert_eq!(keys, expected);
    assert_eq!(all.remaining, 0);
    assert_eq!(all.revision, store.current_revision().await.unwrap());

    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let opts = ListOptions {
            revision: Some(all.revision),
            start_after: cursor.clone(),
            limit: Some(3),
        };
        let page = store.list(&prefix, opts).await.unwrap();
        pages += 1;
        seen.extend(page.items.iter().map(|kv| kv.key.clone()));
        assert_eq!(page.remaining as usize, 10 - seen.len());
        assert_eq!(page.revision, all.revision);
        if page.remaining == 0 {
            break;
        }
        cursor = page.items.last().map(|kv| kv.key.clone());
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, 4);

    let page = store
        .list(
            &prefix,
            ListOptions {
                limit: Some(4),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((page.items.len(), page.remaining), (4, 6));
    let page = store
        .list(
            &prefix,
            ListOptions {
                limit: Some(10),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((page.items.len(), page.remaining), (10, 0));
    assert_eq!(store.count(&prefix).await.unwrap(), 10);
}

/// A list at an older revision shows the state as it was then.
pub async fn list_at_old_revision(h: &dyn Harness) {
    let store = h.open().await;
    let p = h.prefix();
    let ra = store.create(&format!("{p}a"), value("a1")).await.unwrap();
    let rb = store.create(&format!("{p}b"), value("b1")).await.unwrap();
    let old = rb;
    store
        .update(&format!("{p}a"), value("a2"), ra)
        .await
        .unwrap();
    store.delete(&format!("{p}b"), None).await.unwrap();
    let rc = store.create(&format!("{p}c"), value("c1")).await.unwrap();

    let then = store
        .list(
            &p,
            ListOptions {
                revision: Some(old),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(then.revision, old);
    assert_eq!(
        then.items,
        vec![
            KeyValue {
                key: format!("{p}a"),
                value: value("a1"),
                create_revision: ra,
                mod_revision: ra
            },
            KeyValue {
                key: format!("{p}b"),
                value: value("b1"),
                create_revision: rb,
                mod_revision: rb
            },
        ]
    );
    let paged = store
        .list(
            &p,
            ListOptions {
                revision: Some(old),
                limit: Some(1),
                start_after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!((paged.items.len(), paged.remaining), (1, 1));

    let now = store.list(&p, ListOptions::default()).await.unwrap();
    let keys: Vec<(&str, &[u8])> = now
        .items
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_ref()))
        .collect();
    assert_eq!(
        keys,
        vec![
            (format!("{p}a").as_str(), &b"a2"[..]),
            (format!("{p}c").as_str(), &b"c1"[..])
        ]
    );
    assert!(now.revision >= rc);

    let future = Revision(now.revision.0 + 1000);
    match store
        .list(
            &p,
            ListOptions {
                revision: Some(future),
                ..Default::default()
            },
        )
        .await
    {
        Err(Error::FutureRevision { requested, .. }) => assert_eq!(requested, future),
        other => panic!("expected FutureRevision, got {other:?}"),
    }
}

/// After `compact(rev)`, older revisions answer `Compacted` for list and watch;
/// `rev` itself and the latest state still work.
pub async fn compaction(h: &dyn Harness) {
    let store = h.open().await;
    let p = h.prefix();
    let ra = store.create(&format!("{p}a"), value("a1")).await.unwrap();
    let ra2 = store
        .update(&format!("{p}a"), value("a2"), ra)
        .await
        .unwrap();
    let rb = store.create(&format!("{p}b"), value("b1")).await.unwrap();
    let (rbd, _) = store.delete(&format!("{p}b"), None).await.unwrap();
    let rc = store.create(&format!("{p}c"), value("c1")).await.unwrap();
    let mid = rc;
    let ra3 = store
        .update(&format!("{p}a"), value("a3"), ra2)
        .await
        .unwrap();

    store.compact(mid).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), mid);
    // Compacting to an older revision is a no-op; to a future one an error.
    store.compact(rb).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), mid);
    let future = Revision(store.current_revision().await.unwrap().0 + 1000);
    assert!(matches!(
        store.compact(future).await,
        Err(Error::FutureRevision { .. })
    ));

    for old in [ra, rbd, Revision(mid.0 - 1)] {
        match store
            .list(
                &p,
                ListOptions {
                    revision: Some(old),
                    ..Default::default()
                },
            )
            .await
        {
            Err(Error::Compacted {
                requested,
                compacted,
            }) => assert_eq!((requested, compacted), (old, mid)),
            other => panic!("list at {old}: expected Compacted, got {other:?}"),
        }
        match store.watch(&p, old).await {
            Err(Error::Compacted {
                requested,
                compacted,
            }) => assert_eq!((requested, compacted), (old, mid)),
            Err(e) => panic!("watch from {old}: expected Compacted, got {e}"),
            Ok(_) => panic!("watch from {old}: expected Compacted, got a stream"),
        }
    }

    let at_mid = store
        .list(
            &p,
            ListOptions {
                revision: Some(mid),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let state: Vec<(String, Revision)> = at_mid
        .items
        .iter()
        .map(|kv| (kv.key.clone(), kv.mod_revision))
        .collect();
    assert_eq!(state, vec![(format!("{p}a"), ra2), (format!("{p}c"), rc)]);

    let latest = store.list(&p, ListOptions::default()).await.unwrap();
    let state: Vec<(String, Revision)> = latest
        .items
        .iter()
        .map(|kv| (kv.key.clone(), kv.mod_revision))
        .collect();
    assert_eq!(state, vec![(format!("{p}a"), ra3), (format!("{p}c"), rc)]);

    // Watching from the compaction point replays what followed it, with the
    // previous value that was itself at or below the point.
    let mut w = store.watch(&p, mid).await.unwrap();
    let e = next_event(&mut w).await.unwrap();
    assert_eq!((e.kind, e.revision()), (EventKind::Put, ra3));
    assert_eq!(
        e.prev.map(|kv| (kv.value, kv.mod_revision)),
        Some((value("a2"), ra2))
    );
}

/// A watch from a past revision replays history, then follows live writes made
/// concurrently, with no gap and no duplicate.
pub async fn watch_replay_then_live(h: &dyn Harness) {
    let store = h.open().await;
    let p = h.prefix();
    let mut acked = Vec::new();
    for i in 0..20 {
        acked.push(
            store
                .create(&format!("{p}k{i:03}"), value("0"))
                .await
                .unwrap(),
        );
    }
    let after = acked[4];

    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = Arc::clone(&store);
            let p = p.clone();
            tokio::spawn(async move {
                let mut revs = Vec::new();
                for i in 0..40 {
                    let key = format!("{p}w{w}/{i:03}");
                    let r = store.create(&key, value("1")).await.unwrap();
                    revs.push(r);
                    revs.push(store.update(&key, value("2"), r).await.unwrap());
                }
                revs
            })
        })
        .collect();
    let mut stream = store.watch(&p, after).await.unwrap();
    for writer in writers {
        acked.extend(writer.await.unwrap());
    }
    let expected: BTreeSet<Revision> = acked.into_iter().filter(|r| *r > after).collect();
    let last = *expected.iter().next_back().unwrap();
    let got = revisions(&events_until(&mut stream, last).await);
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "events out of order or duplicated"
    );
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), expected);
}

/// A watch only sees keys under its prefix, whether replayed or live.
pub async fn watch_prefix_filter(h: &dyn Harness) {
    let store = h.open().await;
    let p = h.prefix();
    let start = baseline(&store, &p).await;
    let r1 = store.create(&format!("{p}a/1"), value("x")).await.unwrap();
    store.create(&format!("{p}ab/1"), value("x")).await.unwrap();
    store.create(&format!("{p}b/1"), value("x")).await.unwrap();
    let r2 = store.create(&format!("{p}a/2"), value("x")).await.unwrap();

    let mut replay = store.watch(&format!("{p}a/"), start).await.unwrap();
    let mut live = store.watch(&format!("{p}a/"), r2).await.unwrap();
    store.create(&format!("{p}ab/2"), value("x")).await.unwrap();
    let r3 = store.create(&format!("{p}a/3"), value("x")).await.unwrap();

    let got = revisions(&events_until(&mut replay, r3).await);
    assert_eq!(got, vec![r1, r2, r3]);
    let got = revisions(&events_until(&mut live, r3).await);
    assert_eq!(got, vec![r3]);
}

/// `Revision(0)` watches from now: nothing written before the call.
pub async fn watch_from_now(h: &dyn Harness) {
    let store = h.open().await;
    let p = h.prefix();
    store
        .create(&format!("{p}before"), value("x"))
        .await
        .unwrap();
    let mut stream = store.watch(&p, Revision(0)).await.unwrap();
    let r = store
        .create(&format!("{p}after"), value("x"))
        .await
        .unwrap();
    let e = next_event(&mut stream).await.unwrap();
    assert_eq!((e.revision(), e.kv.key), (r, format!("{p}after")));
}

/// Delete events carry the last value with the delete's revision; put events
/// carry the previous value of an update.
pub async fn event_content(h: &dyn Harness) {
    let store = h.open().await;
    let p = h.prefix();
    let key = format!("{p}k");
    let start = baseline(&store, &p).await;
    let mut live = store.watch(&p, start).await.unwrap();
    let r1 = store.create(&key, value("v1")).await.unwrap();
    let r2 = store.update(&key, value("v2"), r1).await.unwrap();
    let (r3, _) = store.delete(&key, Some(r2)).await.unwrap();

    let kv = |v: &str, modr: Revision| KeyValue {
        key: key.clone(),
        value: value(v),
        create_revision: r1,
        mod_revision: modr,
    };
    let expected = vec![
        Event {
            kind: EventKind::Put,
            kv: kv("v1", r1),
            prev: None,
        },
        Event {
            kind: EventKind::Put,
            kv: kv("v2", r2),
            prev: Some(kv("v1", r1)),
        },
        Event {
            kind: EventKind::Delete,
            kv: kv("v2", r3),
            prev: Some(kv("v2", r2)),
        },
    ];
    assert_eq!(events_until(&mut live, r3).await, expected);
    // The same events, replayed from history.
    let mut replay = store.watch(&p, start).await.unwrap();
    assert_eq!(events_until(&mut replay, r3).await, expected);
}

/// Many concurrent writers all get distinct revisions, and each write is
/// readable at its revision.
pub async fn concurrent_writers(h: &dyn Harness) {
    let store = h.open().await;
    let p = h.prefix();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..16 {
        let store = Arc::clone(&store);
        let p = p.clone();
        tasks.spawn(async move {
            let mut out = Vec::new();
            for i in 0..25 {
                let key = format!("{p}{w:02}/{i:03}");
                out.push((key.clone(), store.create(&key, value("x")).await.unwrap()));
            }
            out
        });
    }
    let mut writes = Vec::new();
    while let Some(done) = tasks.join_next().await {
        writes.extend(done.unwrap());
    }
    let distinct: BTreeSet<Revision> = writes.iter().map(|(_, r)| *r).collect();
    assert_eq!(distinct.len(), writes.len(), "revisions handed out twice");
    assert!(store.current_revision().await.unwrap() >= *distinct.iter().next_back().unwrap());
    let listed = store.list(&p, ListOptions::default()).await.unwrap();
    assert_eq!(listed.items.len(), writes.len());
    for (key, rev) in writes {
        assert_eq!(store.get(&key).await.unwrap().unwrap().mod_revision, rev);
    }
}

/// Every contract function with its name, for backends that want to loop.
pub fn all() -> Vec<(&'static str, ContractFn)> {
    vec![
        ("crud", |h| Box::pin(crud(h))),
        ("cas_conflicts", |h| Box::pin(cas_conflicts(h))),
        ("cas_race_has_one_winner", |h| {
            Box::pin(cas_race_has_one_winner(h))
        }),
        ("revision_survives_restart", |h| {
            Box::pin(revision_survives_restart(h))
        }),
        ("list_pagination", |h| Box::pin(list_pagination(h))),
        ("list_at_old_revision", |h| {
            Box::pin(list_at_old_revision(h))
        }),
        ("compaction", |h| Box::pin(compaction(h))),
        ("watch_replay_then_live", |h| {
            Box::pin(watch_replay_then_live(h))
        }),
        ("watch_prefix_filter", |h| Box::pin(watch_prefix_filter(h))),
        ("watch_from_now", |h| Box::pin(watch_from_now(h))),
        ("event_content", |h| Box::pin(event_content(h))),
        ("concurrent_writers", |h| Box::pin(concurrent_writers(h))),
    ]
}

/// One contract function, boxed.
pub type ContractFn =
    for<'a> fn(
        &'a dyn Harness,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;
