use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tempfile::TempDir;

use super::{SqliteOptions, SqliteStore};
use crate::contract::{self, Harness};
use crate::metrics::Statement;
use crate::{Revision, Store};

struct Sqlite {
    dir: TempDir,
    opts: SqliteOptions,
}

impl Sqlite {
    fn new(opts: SqliteOptions) -> Self {
        Sqlite {
            dir: tempfile::tempdir().unwrap(),
            opts,
        }
    }

    fn open_store(&self) -> SqliteStore {
        SqliteStore::open(&self.dir.path().join("store.db"), self.opts.clone()).unwrap()
    }
}

#[async_trait]
impl Harness for Sqlite {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(self.open_store())
    }

    fn prefix(&self) -> String {
        "/registry/contract/".to_owned()
    }
}

/// One `#[tokio::test]` per contract function, for the default options and for
/// a two-event history ring, which sends nearly every replay to the log table.
macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        mod default_options {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let h = super::Sqlite::new(super::SqliteOptions::default());
                    crate::contract::$name(&h).await;
                }
            )*
        }
        mod tiny_history_ring {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let h = super::Sqlite::new(super::SqliteOptions::default().history_events(2));
                    crate::contract::$name(&h).await;
                }
            )*
        }
    };
}

contract_tests!(
    crud,
    cas_conflicts,
    cas_race_has_one_winner,
    revision_survives_restart,
    list_pagination,
    list_at_old_revision,
    compaction,
    watch_replay_then_live,
    watch_prefix_filter,
    watch_from_now,
    event_content,
    concurrent_writers,
);

/// The contract again, on a file that a second store writes to all along (the
/// shape of two `skiff server` processes on one store): every revision,
/// CAS check and watch of the store under test must allow for the other
/// store's commits. `list_pagination` is left out: it compares a list's
/// revision with `current_revision()`, which another writer may move between.
struct SharedFile {
    inner: Sqlite,
    noise: tokio::task::JoinHandle<()>,
}

impl SharedFile {
    fn new() -> Self {
        let inner = Sqlite::new(SqliteOptions::default());
        let other = inner.open_store();
        let noise = tokio::spawn(async move {
            for i in 0u64.. {
                let key = format!("/noise/{}", i % 16);
                let written = match other.create(&key, Bytes::from_static(b"n")).await {
                    Ok(r) => other.update(&key, Bytes::from_static(b"m"), r).await,
                    Err(_) => other.delete(&key, None).await.map(|(r, _)| r),
                };
                written.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        SharedFile { inner, noise }
    }
}

impl Drop for SharedFile {
    fn drop(&mut self) {
        self.noise.abort();
    }
}

#[async_trait]
impl Harness for SharedFile {
    async fn open(&self) -> Arc<dyn Store> {
        self.inner.open().await
    }

    fn prefix(&self) -> String {
        self.inner.prefix()
    }
}

mod shared_file {
    macro_rules! shared_file_tests {
        ($($name:ident),* $(,)?) => {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let h = super::SharedFile::new();
                    crate::contract::$name(&h).await;
                }
            )*
        };
    }

    shared_file_tests!(
        crud,
        cas_conflicts,
        cas_race_has_one_winner,
        revision_survives_restart,
        list_at_old_revision,
        compaction,
        watch_replay_then_live,
        watch_prefix_filter,
        watch_from_now,
        event_content,
        concurrent_writers,
    );
}

#[tokio::test]
async fn contract_list_names_every_function() {
    let names: Vec<&str> = contract::all().into_iter().map(|(name, _)| name).collect();
    assert_eq!(names.len(), 12);
    // Running through the boxed form works too.
    let h = Sqlite::new(SqliteOptions::default());
    let (_, crud) = contract::all().into_iter().next().unwrap();
    crud(&h).await;
}

async fn next_within(stream: &mut crate::WatchStream) -> Option<crate::Result<crate::Event>> {
    tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("watch stream neither yielded nor ended within 30s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_watcher_stream_ends_and_rewatch_recovers() {
    let h = Sqlite::new(SqliteOptions::default().watch_lag(8).history_events(8));
    let store = h.open_store();
    let start = store
        .create("/other", Bytes::from_static(b"x"))
        .await
        .unwrap();
    let mut stream = store.watch("/lag/", Revision(0)).await.unwrap();
    let mut acked = Vec::new();
    for i in 0..100 {
        acked.push(
            store
                .create(&format!("/lag/{i:03}"), Bytes::from_static(b"x"))
                .await
                .unwrap(),
        );
    }
    // The watcher never polled while 100 events went by: its stream ends
    // instead of buffering without bound.
    let mut delivered = Vec::new();
    while let Some(event) = next_within(&mut stream).await {
        delivered.push(event.unwrap().revision());
    }
    assert!(delivered.len() < acked.len());
    // Re-watching from the last revision seen replays the rest from the log.
    let resume = delivered.last().copied().unwrap_or(start);
    let mut stream = store.watch("/lag/", resume).await.unwrap();
    let mut rest = Vec::new();
    while rest.last() != acked.last() {
        rest.push(next_within(&mut stream).await.unwrap().unwrap().revision());
    }
    delivered.extend(rest);
    assert_eq!(delivered, acked);
}

#[tokio::test]
async fn dropping_the_store_ends_watch_streams() {
    let h = Sqlite::new(SqliteOptions::default());
    let store = h.open_store();
    let mut stream = store.watch("/", Revision(0)).await.unwrap();
    drop(store);
    assert!(next_within(&mut stream).await.is_none());
}

#[tokio::test]
async fn statements_are_timed() {
    let h = Sqlite::new(SqliteOptions::default());
    let store = h.open_store();
    store
        .create("/m/a", Bytes::from_static(b"x"))
        .await
        .unwrap();
    store.get("/m/a").await.unwrap();
    let snapshot = store.metrics().snapshot();
    let insert = snapshot
        .iter()
        .find(|s| s.statement == Statement::InsertLog)
        .unwrap();
    assert_eq!((insert.count, insert.errors), (1, 0));
    assert_eq!(insert.buckets.iter().sum::<u64>(), 1);
    assert!(insert.total > Duration::ZERO);
    let get = snapshot
        .iter()
        .find(|s| s.statement == Statement::GetCurrent)
        .unwrap();
    // One CAS check in the writer, one read.
    assert_eq!(get.count, 2);
    assert!(snapshot.iter().any(|s| s.statement == Statement::Commit));
    assert_eq!(store.metrics().batches(), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_commits() {
    let h = Sqlite::new(SqliteOptions::default());
    let store = Arc::new(h.open_store());
    let metrics = store.metrics();
    let dyn_store: Arc<dyn Store> = store.clone();
    crate::measure_create_rate(dyn_store, "/g/", 32, 640, 16)
        .await
        .unwrap();
    let (batches, writes) = metrics.batches();
    assert_eq!(writes, 640);
    // Not a timing assertion: batching can only merge, never lose writes.
    assert!(batches <= writes && batches > 0);
    tracing::info!(batches, writes, "group commit");
}

/// Environment variable that turns `durability_child` into the writer process.
const CHILD_DB: &str = "SKIFF_STORE_DURABILITY_CHILD_DB";

/// The child side of `acknowledged_writes_survive_kill_9`: writes keys from
/// several tasks and prints each acknowledged revision, until killed. Does
/// nothing in a normal test run.
#[test]
fn durability_child() {
    let Some(path) = std::env::var_os(CHILD_DB) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = Arc::new(
            SqliteStore::open(std::path::Path::new(&path), SqliteOptions::default()).unwrap(),
        );
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..8 {
            let store = Arc::clone(&store);
            tasks.spawn(async move {
                // Bounded in case nobody kills us.
                for i in 0..20_000 {
                    let key = format!("/durable/{w}/{i:06}");
                    let rev = store
                        .create(&key, Bytes::from(key.clone().into_bytes()))
                        .await
                        .unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {key} {rev}").unwrap();
                    out.flush().unwrap();
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sqlite::tests::durability_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked: Vec<(String, Revision)> = Vec::new();
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let mut parts = line.split(' ');
        if let (Some("ACK"), Some(key), Some(rev), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        {
            if let Ok(rev) = rev.parse() {
                acked.push((key.to_owned(), Revision(rev)));
            }
        }
        if !killed && acked.len() >= 500 {
            // SIGKILL on unix: no destructors, no flush, mid-batch.
            child.kill().unwrap();
            killed = true;
        }
    }
    child.wait().unwrap();
    assert!(
        killed,
        "child ended after {} acks without being killed",
        acked.len()
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
        let max = acked.iter().map(|(_, r)| *r).max().unwrap();
        assert!(store.current_revision().await.unwrap() >= max);
        for (key, rev) in &acked {
            let kv = store
                .get(key)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged {key} at {rev} lost"));
            assert_eq!(kv.mod_revision, *rev, "{key}");
            assert_eq!(kv.value.as_ref(), key.as_bytes());
        }
    });
}

fn log_rows(h: &Sqlite) -> Vec<(String, i64, bool)> {
    let conn = rusqlite::Connection::open(h.dir.path().join("store.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT key, id, deleted FROM log ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[tokio::test]
async fn compaction_keeps_only_what_later_reads_need() {
    let h = Sqlite::new(SqliteOptions::default());
    let store = h.open_store();
    let x = |s: &'static str| Bytes::from_static(s.as_bytes());
    let a1 = store.create("/c/a", x("1")).await.unwrap();
    let b1 = store.create("/c/b", x("1")).await.unwrap();
    let first = b1;
    store.compact(first).await.unwrap();
    // Nothing superseded yet.
    assert_eq!(log_rows(&h).len(), 2);

    // `a` is superseded after the first compaction point by a row that is
    // below the second one; `b` is deleted; `c` is created and deleted.
    let a2 = store.update("/c/a", x("2"), a1).await.unwrap();
    let a3 = store.update("/c/a", x("3"), a2).await.unwrap();
    store.delete("/c/b", None).await.unwrap();
    store.create("/c/c", x("1")).await.unwrap();
    let (second, _) = store.delete("/c/c", None).await.unwrap();
    let a4 = store.update("/c/a", x("4"), a3).await.unwrap();
    store.compact(second).await.unwrap();

    let rows = log_rows(&h);
    let ids: Vec<i64> = rows.iter().map(|r| r.1).collect();
    assert_eq!(ids, vec![a3.0 as i64, a4.0 as i64], "{rows:?}");
    // `a4`'s previous value survived for watch replay from the compaction point.
    let mut w = store.watch("/c/", second).await.unwrap();
    let e = next_within(&mut w).await.unwrap().unwrap();
    assert_eq!(e.prev.map(|kv| kv.mod_revision), Some(a3));
    // A new write after compacting away the newest rows still gets a fresh revision.
    store.compact(a4).await.unwrap();
    let (gone, _) = store.delete("/c/a", None).await.unwrap();
    store.compact(gone).await.unwrap();
    assert!(log_rows(&h).is_empty());
    drop(store);
    let store = h.open_store();
    assert!(store.create("/c/d", x("1")).await.unwrap() > gone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_the_log_spans_many_pages() {
    let h = Sqlite::new(SqliteOptions::default().history_events(4));
    let store = Arc::new(h.open_store());
    let start = store
        .create("/other", Bytes::from_static(b"x"))
        .await
        .unwrap();
    let dyn_store: Arc<dyn Store> = store.clone();
    crate::measure_create_rate(dyn_store, "/pages/", 8, 1500, 8)
        .await
        .unwrap();
    let last = store.current_revision().await.unwrap();
    let mut stream = store.watch("/pages/", start).await.unwrap();
    let mut expected = start.0 + 1;
    while expected <= last.0 {
        let event = next_within(&mut stream).await.unwrap().unwrap();
        assert_eq!(event.revision(), Revision(expected));
        expected += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_is_retried_write_by_write() {
    // A trigger makes the insert of one key fail in SQL, as a full disk or an
    // I/O error would fail a whole batch.
    let h = Sqlite::new(SqliteOptions::default());
    let store = Arc::new(h.open_store());
    let side = rusqlite::Connection::open(h.dir.path().join("store.db")).unwrap();
    side.execute_batch(
        "CREATE TRIGGER reject_bad BEFORE INSERT ON log WHEN NEW.key = '/x/bad' \
         BEGIN SELECT RAISE(ABORT, 'rejected by the test'); END;",
    )
    .unwrap();
    // Holding the write lock while the writes queue up makes them share a
    // batch (likely, not certain: the assertions hold either way).
    side.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for key in ["/x/a", "/x/bad", "/x/b", "/x/c"] {
        let store = Arc::clone(&store);
        tasks.spawn(async move { (key, store.create(key, Bytes::from_static(b"v")).await) });
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    side.execute_batch("COMMIT").unwrap();
    let mut good = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            ("/x/bad", outcome) => assert!(
                matches!(outcome, Err(crate::Error::Backend(_))),
                "{outcome:?}"
            ),
            (key, outcome) => good.push((key, outcome.unwrap())),
        }
    }
    assert_eq!(good.len(), 3);
    for (key, revision) in &good {
        assert_eq!(
            store.get(key).await.unwrap().unwrap().mod_revision,
            *revision
        );
    }
    assert_eq!(store.get("/x/bad").await.unwrap(), None);
    let insert = store
        .metrics()
        .snapshot()
        .into_iter()
        .find(|s| s.statement == Statement::InsertLog)
        .unwrap();
    assert!(insert.errors >= 1);
    // Nothing was skipped: the next write gets the next revision.
    let max = good.iter().map(|(_, r)| *r).max().unwrap();
    let next = store
        .create("/x/d", Bytes::from_static(b"v"))
        .await
        .unwrap();
    assert_eq!(next, Revision(max.0 + 1));
}
