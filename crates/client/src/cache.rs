//! A watch-fed cache with the indexes controllers need (by namespace and by
//! controlling owner), filled by a task of its own so a controller can wait
//! until the first list is complete before it reconciles anything (a
//! controller acting on a half-filled cache would create duplicates).
//!
//! [`Cache::spawn`] runs kube-runtime's `watcher` (list, then watch with
//! resume; relist on 410 and after errors, with backoff) and hands back the
//! cache plus a stream of every object that changed, suitable for
//! `Controller::owns_stream` / `watches_stream`.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

struct Inner<K> {
    objects: HashMap<String, Arc<K>>,
    by_namespace: HashMap<String, HashSet<String>>,
    by_owner: HashMap<String, HashSet<String>>,
    /// Objects of a relist in progress; swapped in when it completes.
    relist: Option<Vec<Arc<K>>>,
}

impl<K> Default for Inner<K> {
    fn default() -> Self {
        Inner {
            objects: HashMap::new(),
            by_namespace: HashMap::new(),
            by_owner: HashMap::new(),
            relist: None,
        }
    }
}

fn key_of<K: Resource>(obj: &K) -> String {
    match obj.namespace() {
        Some(ns) => format!("{ns}/{}", obj.name_any()),
        None => obj.name_any(),
    }
}

/// The controlling owner's uid; objects without one are indexed under `""`
/// (so [`Cache::orphans`] is cheap).
fn owner_of<K: Resource>(obj: &K) -> Option<String> {
    Some(
        crate::objects::controller_of(obj.meta())
            .map(|r| r.uid.clone())
            .unwrap_or_default(),
    )
}

impl<K: Resource> Inner<K> {
    fn insert(&mut self, obj: Arc<K>) {
        let key = key_of(obj.as_ref());
        if let Some(old) = self.objects.get(&key).cloned() {
            self.unindex(&key, old.as_ref());
        }
        self.by_namespace
            .entry(obj.namespace().unwrap_or_default())
            .or_default()
            .insert(key.clone());
        if let Some(owner) = owner_of(obj.as_ref()) {
            self.by_owner.entry(owner).or_default().insert(key.clone());
        }
        self.objects.insert(key, obj);
    }

    fn unindex(&mut self, key: &str, obj: &K) {
        let ns = obj.namespace().unwrap_or_default();
        if let Some(set) = self.by_namespace.get_mut(&ns) {
            set.remove(key);
            if set.is_empty() {
                self.by_namespace.remove(&ns);
            }
        }
        if let Some(owner) = owner_of(obj) {
            if let Some(set) = self.by_owner.get_mut(&owner) {
                set.remove(key);
                if set.is_empty() {
                    self.by_owner.remove(&owner);
                }
            }
        }
    }

    fn remove(&mut self, obj: &K) {
        let key = key_of(obj);
        if let Some(old) = self.objects.remove(&key) {
            self.unindex(&key, old.as_ref());
        }
    }
}

/// Where changed objects go: one channel per consumer.
type Subscribers<K> = Arc<std::sync::Mutex<Vec<mpsc::UnboundedSender<K>>>>;

/// A cache of one kind of object.
pub struct Cache<K> {
    inner: Arc<RwLock<Inner<K>>>,
    ready: watch::Receiver<bool>,
    subscribers: Subscribers<K>,
}

impl<K> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Cache {
            inner: Arc::clone(&self.inner),
            ready: self.ready.clone(),
            subscribers: Arc::clone(&self.subscribers),
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl<K> Debug for Cache<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").finish_non_exhaustive()
    }
}

impl<K> Cache<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    /// Start watching `api` with `config` until `shutdown`. Returns the cache
    /// and the stream of changed objects (every applied or deleted object, as
    /// it arrives).
    pub fn spawn(
        api: Api<K>,
        config: watcher::Config,
        shutdown: CancellationToken,
    ) -> (
        Cache<K>,
        impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    ) {
        let inner: Arc<RwLock<Inner<K>>> = Arc::new(RwLock::new(Inner::default()));
        let (ready_tx, ready) = watch::channel(false);
        let (tx, rx) = mpsc::unbounded_channel::<K>();
        let subscribers: Subscribers<K> = Arc::new(std::sync::Mutex::new(vec![tx]));
        let cache = Cache {
            inner: Arc::clone(&inner),
            ready,
            subscribers: Arc::clone(&subscribers),
        };
        tokio::spawn(async move {
            let mut events = watcher(api, config).default_backoff().boxed();
            loop {
                let ev = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    ev = events.next() => ev,
                };
                let Some(ev) = ev else { return };
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        tracing::debug!(error = %e, "cache watch error (retrying)");
                        continue;
                    }
                };
                // Applied and sent under the subscribers' lock, so a consumer
                // subscribing meanwhile sees either the new state in its
                // replay or the change itself (or both: triggers are idempotent).
                let mut subs = lock(&subscribers);
                let touched = apply(&inner, ev);
                if touched.ready {
                    let _ = ready_tx.send(true); // receivers may be gone; fine
                }
                for obj in touched.objects {
                    // A consumer that went away is dropped.
                    subs.retain(|tx| tx.send(obj.clone()).is_ok());
                }
            }
        });
        let stream = tokio_stream_from(rx).map(Ok);
        (cache, stream)
    }

    /// Another consumer's stream of changes, starting with every object the
    /// cache holds now (so its owners are all reconciled once).
    pub fn subscribe(&self) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel::<K>();
        let mut subs = lock(&self.subscribers);
        for obj in self.all() {
            let _ = tx.send(obj.as_ref().clone()); // the receiver is right here
        }
        subs.push(tx);
        drop(subs);
        tokio_stream_from(rx).map(Ok)
    }

    /// Wait until the first full list has been loaded (or `shutdown`).
    pub async fn wait_ready(&self) {
        let mut r = self.ready.clone();
        let _ = r.wait_for(|v| *v).await; // an Err means the watcher task ended
    }

    /// Whether the first full list has been loaded.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    fn read<R>(&self, f: impl FnOnce(&Inner<K>) -> R) -> R {
        match self.inner.read() {
            Ok(g) => f(&g),
            Err(p) => f(&p.into_inner()),
        }
    }

    /// The object `namespace/name` (or `name` for cluster-scoped kinds).
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        let key = match namespace {
            Some(ns) => format!("{ns}/{name}"),
            None => name.to_string(),
        };
        self.read(|i| i.objects.get(&key).cloned())
    }

    /// Every object controlled by the owner with `uid` (`""`: no controller).
    pub fn owned_by(&self, uid: &str) -> Vec<Arc<K>> {
        self.read(|i| {
            i.by_owner
                .get(uid)
                .map(|keys| {
                    keys.iter()
                        .filter_map(|k| i.objects.get(k).cloned())
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    /// Objects in `namespace` that no controller owns (adoption candidates).
    pub fn orphans(&self, namespace: &str) -> Vec<Arc<K>> {
        self.owned_by("")
            .into_iter()
            .filter(|o| o.namespace().as_deref() == Some(namespace))
            .collect()
    }

    /// Every object in `namespace`.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.read(|i| {
            i.by_namespace
                .get(namespace)
                .map(|keys| {
                    keys.iter()
                        .filter_map(|k| i.objects.get(k).cloned())
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    /// Every object.
    pub fn all(&self) -> Vec<Arc<K>> {
        self.read(|i| i.objects.values().cloned().collect())
    }

    /// How many objects the cache holds.
    pub fn len(&self) -> usize {
        self.read(|i| i.objects.len())
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Touched<K> {
    objects: Vec<K>,
    ready: bool,
}

fn apply<K>(inner: &RwLock<Inner<K>>, ev: Event<K>) -> Touched<K>
where
    K: Resource + Clone,
{
    let mut guard = match inner.write() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let mut touched = Touched {
        objects: Vec::new(),
        ready: false,
    };
    match ev {
        Event::Apply(obj) => {
            guard.insert(Arc::new(obj.clone()));
            touched.objects.push(obj);
        }
        Event::Delete(obj) => {
            guard.remove(&obj);
            touched.objects.push(obj);
        }
        Event::Init => guard.relist = Some(Vec::new()),
        Event::InitApply(obj) => {
            let obj = Arc::new(obj);
            match guard.relist.as_mut() {
                Some(buf) => buf.push(obj),
                None => guard.insert(obj),
            }
        }
        Event::InitDone => {
            let fresh = guard.relist.take().unwrap_or_default();
            let old: Vec<Arc<K>> = guard.objects.values().cloned().collect();
            let mut rebuilt = Inner::default();
            for obj in &fresh {
                rebuilt.insert(Arc::clone(obj));
            }
            // Everything that appeared, changed or vanished across the relist
            // is reported, so owners of vanished objects are reconciled too.
            for obj in old {
                let key = key_of(obj.as_ref());
                match rebuilt.objects.get(&key) {
                    Some(now) if now.resource_version() == obj.resource_version() => {}
                    Some(_) => {}
                    None => touched.objects.push(obj.as_ref().clone()),
                }
            }
            for obj in &fresh {
                let key = key_of(obj.as_ref());
                let unchanged = guard
                    .objects
                    .get(&key)
                    .is_some_and(|o| o.resource_version() == obj.resource_version());
                if !unchanged {
                    touched.objects.push(obj.as_ref().clone());
                }
            }
            *guard = rebuilt;
            touched.ready = true;
        }
    }
    touched
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Caches shared by every controller of one leadership term: one watch and
/// one copy of each kind, however many controllers read it (as client-go's
/// shared informers).
pub struct Informers {
    client: kube::Client,
    shutdown: CancellationToken,
    caches: std::sync::Mutex<HashMap<std::any::TypeId, Box<dyn std::any::Any + Send>>>,
}

impl Debug for Informers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informers").finish_non_exhaustive()
    }
}

impl Informers {
    /// Caches that stop when `shutdown` is cancelled.
    pub fn new(client: kube::Client, shutdown: CancellationToken) -> Self {
        Informers {
            client,
            shutdown,
            caches: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The shared cache of every `K` in the cluster and a change stream of
    /// the caller's own (see [`Cache::spawn`] and [`Cache::subscribe`]).
    pub fn all<K>(
        &self,
    ) -> (
        Cache<K>,
        impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    )
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    {
        let mut caches = lock(&self.caches);
        let id = std::any::TypeId::of::<K>();
        if let Some(c) = caches.get(&id).and_then(|b| b.downcast_ref::<Cache<K>>()) {
            let c = c.clone();
            drop(caches);
            let stream = c.subscribe().boxed();
            return (c, stream);
        }
        let (c, stream) = Cache::spawn(
            Api::all(self.client.clone()),
            watcher::Config::default(),
            self.shutdown.clone(),
        );
        caches.insert(id, Box::new(c.clone()));
        (c, stream.boxed())
    }
}
