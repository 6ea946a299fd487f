//! Leader election on a coordination.k8s.io/v1 Lease, after client-go's
//! leaderelection package: candidates try to take or renew the Lease every
//! `retry_period`; a holder that has not renewed for `lease_duration` (as seen
//! by the candidate's own clock, so clock skew between hosts does not matter)
//! may be replaced; updates carry the resourceVersion so two candidates can
//! never both win. A leader that cannot renew within `renew_deadline` stops
//! leading (its work is cancelled) before anyone else may take over, and one
//! that shuts down releases the Lease so a standby takes over at once.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// Timings, with client-go's defaults.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// A Lease in `kube-system` named `name`, held under a fresh identity
    /// (host name, process id and a random suffix).
    pub fn new(name: &str) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "skiff".into());
        let suffix: u32 = rand::random();
        LeaderConfig {
            namespace: "kube-system".into(),
            name: name.into(),
            identity: format!("{host}_{}_{suffix:08x}", std::process::id()),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// One candidate.
pub struct LeaderElector {
    api: Api<Lease>,
    cfg: LeaderConfig,
    /// The last record seen (holder, renewTime, transitions) and when we saw it change.
    observed: Option<(String, Option<MicroTime>)>,
    observed_at: Instant,
}

enum Attempt {
    Held,
    HeldByOther,
}

impl LeaderElector {
    pub fn new(client: Client, cfg: LeaderConfig) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: None,
            observed_at: Instant::now(),
        }
    }

    /// The identity this candidate holds the Lease under.
    pub fn identity(&self) -> &str {
        &self.cfg.identity
    }

    /// Campaign until `shutdown`; each time this candidate becomes leader, run
    /// `lead` with a token that is cancelled when leadership is lost (or on
    /// shutdown), and wait for it to return before campaigning again.
    pub async fn run<F, Fut>(mut self, shutdown: CancellationToken, mut lead: F)
    where
        F: FnMut(CancellationToken) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            // Campaign.
            loop {
                match self.try_acquire_or_renew().await {
                    Ok(Attempt::Held) => break,
                    Ok(Attempt::HeldByOther) => {}
                    Err(e) => tracing::debug!(error = %e, "leader election attempt failed"),
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(self.cfg.retry_period) => {}
                }
            }
            tracing::info!(lease = %self.cfg.name, identity = %self.cfg.identity, "became leader");
            let leading = shutdown.child_token();
            let work = lead(leading.clone());
            tokio::pin!(work);
            let mut last_renew = Instant::now();
            let mut finished = false;
            loop {
                tokio::select! {
                    _ = &mut work => { finished = true; break; }
                    _ = tokio::time::sleep(self.cfg.retry_period) => {}
                }
                if shutdown.is_cancelled() {
                    break;
                }
                match self.try_acquire_or_renew().await {
                    Ok(Attempt::Held) => last_renew = Instant::now(),
                    Ok(Attempt::HeldByOther) => {
                        tracing::warn!(lease = %self.cfg.name, "leadership taken over by another candidate");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "renewing the leader lease failed");
                        if last_renew.elapsed() >= self.cfg.renew_deadline {
                            break;
                        }
                    }
                }
            }
            leading.cancel();
            if !finished {
                work.await;
            }
            tracing::info!(lease = %self.cfg.name, "stopped leading");
            if shutdown.is_cancelled() {
                self.release().await;
                return;
            }
        }
    }

    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let secs = i32::try_from(self.cfg.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let mine = |acquired: Option<MicroTime>, transitions: i32| LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(secs),
            acquire_time: acquired,
            renew_time: Some(now.clone()),
            lease_transitions: Some(transitions),
            ..Default::default()
        };
        let current = match self.api.get_opt(&self.cfg.name).await? {
            Some(l) => l,
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.cfg.name.clone()),
                        namespace: Some(self.cfg.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(mine(Some(now.clone()), 0)),
                };
                return match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(Attempt::Held),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::HeldByOther),
                    Err(e) => Err(e),
                };
            }
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let record = (holder.clone(), spec.renew_time.clone());
        if self.observed.as_ref() != Some(&record) {
            self.observed = Some(record);
            self.observed_at = Instant::now();
        }
        let held_by_me = holder == self.cfg.identity;
        let their_duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.cfg.lease_duration);
        if !held_by_me && !holder.is_empty() && self.observed_at.elapsed() < their_duration {
            return Ok(Attempt::HeldByOther);
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        let new_spec = if held_by_me {
            mine(spec.acquire_time.clone(), transitions)
        } else {
            mine(Some(now.clone()), transitions + 1)
        };
        let mut lease = current;
        lease.spec = Some(new_spec);
        // `replace` sends metadata.resourceVersion: a concurrent winner makes this a 409.
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(l) => {
                let s = l.spec.unwrap_or_default();
                self.observed = Some((s.holder_identity.unwrap_or_default(), s.renew_time));
                self.observed_at = Instant::now();
                Ok(Attempt::Held)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::HeldByOther),
            Err(e) => Err(e),
        }
    }

    /// Give the Lease up (empty holder, 1 s duration) so a standby need not
    /// wait for it to expire.
    async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.cfg.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        if let Err(e) = self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            tracing::debug!(error = %e, "releasing the leader lease failed");
        }
    }
}
