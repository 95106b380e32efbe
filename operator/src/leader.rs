//! Leader election between operator replicas on a `coordination.k8s.io/v1` Lease, as
//! client-go's `leaderelection` does it: the leader renews the lease every few seconds;
//! another replica takes it over only after it has seen the same lease record, unchanged,
//! for a whole lease duration. Expiry is judged on the candidate's own monotonic clock
//! from when it last saw the record change, not on the holder's timestamps, so clock skew
//! between nodes cannot make two replicas lead at once. Every write carries the
//! `resourceVersion` it read, so of two candidates racing for a free lease one wins and
//! the other gets a conflict.
//!
//! No maintained crate does this for kube 5 (kube-leader-election and kube-lease-manager
//! pin older kube releases, which would link a second kube).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

/// What a round of the election found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// This replica holds the lease (it took or renewed it).
    Leading,
    /// Another replica holds it (or won a race for it this round).
    Following {
        /// The holder, as the lease names it.
        holder: String,
    },
}

/// One replica's candidacy for one lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// The lease record last seen (its resource version) and when it was first seen.
    observed: Mutex<Option<(String, Instant)>>,
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl Elector {
    /// A candidate `identity` (the pod name) for the lease `name` of `api`'s namespace,
    /// held for `duration` between renewals.
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
            observed: Mutex::new(None),
        }
    }

    /// The lease duration as the Lease states it.
    fn duration_secs(&self) -> i32 {
        i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX)
    }

    fn spec(&self, acquired: k8s_openapi::jiff::Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration_secs()),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One round: creates the lease if there is none, renews it if this replica holds
    /// it, takes it over once its holder has let it lapse; follows otherwise. `now` is
    /// taken after the lease is read (tests pass a fixed one), so a slow read cannot
    /// make a lease look older than it is.
    pub async fn round(&self, now: Option<Instant>) -> Result<Outcome, kube::Error> {
        let read = self.api.get_opt(&self.name).await?;
        let now = now.unwrap_or_else(Instant::now);
        let Some(mut lease) = read else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(k8s_openapi::jiff::Timestamp::now(), 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Outcome::Leading),
                Err(e) if is_conflict(&e) => Ok(Outcome::Following {
                    holder: String::new(),
                }),
                Err(e) => Err(e),
            };
        };
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let seen_since = {
            let mut observed = self.observed.lock().unwrap_or_else(|p| p.into_inner());
            match &*observed {
                Some((v, at)) if *v == version => *at,
                _ => {
                    *observed = Some((version, now));
                    now
                }
            }
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let held = spec
            .lease_duration_seconds
            .map_or(self.duration, |s| Duration::from_secs(s.max(1) as u64));
        let lapsed = holder.is_empty() || now.duration_since(seen_since) >= held;
        let spec = if holder == self.identity {
            LeaseSpec {
                renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
                lease_duration_seconds: Some(self.duration_secs()),
                ..spec
            }
        } else if lapsed {
            self.spec(
                k8s_openapi::jiff::Timestamp::now(),
                spec.lease_transitions.unwrap_or(0).saturating_add(1),
            )
        } else {
            return Ok(Outcome::Following { holder });
        };
        lease.spec = Some(spec);
        // The resource version read is sent back: a write by anyone since is a conflict.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Outcome::Leading),
            Err(e) if is_conflict(&e) => Ok(Outcome::Following { holder }),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up if this replica holds it (at shutdown), so that a standby
    /// takes over at its next round instead of after a whole lease duration.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            // Someone wrote it since: it is no longer ours to give.
            Err(e) if is_conflict(&e) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// A round that gives up after `limit`: the API client itself sets no read
    /// timeout, and a round that hangs must not hang the election with it.
    async fn bounded(&self, limit: Duration) -> Result<Outcome, String> {
        match tokio::time::timeout(limit, self.round(None)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {limit:?}")),
        }
    }

    /// Returns once this replica leads (a round every `retry`).
    pub async fn acquire(&self, retry: Duration) {
        loop {
            match self.bounded(self.duration).await {
                Ok(Outcome::Leading) => return,
                Ok(Outcome::Following { holder }) => {
                    tracing::info!(lease = %self.name, holder = %holder, "following");
                }
                Err(e) => tracing::warn!(lease = %self.name, error = %e, "leader election"),
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Renews the lease every `retry` while this replica leads; returns (an error) once
    /// another took it, or no renewal succeeded for `deadline`. The caller must stop
    /// reconciling then: another replica may already be leading.
    pub async fn keep(&self, retry: Duration, deadline: Duration) -> anyhow::Error {
        // When the last successful renewal was sent: the lease runs from then.
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(retry).await;
            let sent = Instant::now();
            let left = deadline.saturating_sub(sent.duration_since(renewed));
            match self.bounded(left.max(Duration::from_millis(1))).await {
                Ok(Outcome::Leading) => renewed = sent,
                Ok(Outcome::Following { holder }) => {
                    return anyhow::anyhow!("lease {} taken over by {holder}", self.name);
                }
                Err(e) if renewed.elapsed() >= deadline => {
                    return anyhow::anyhow!(
                        "lease {} not renewed for {deadline:?}: {e}",
                        self.name
                    );
                }
                Err(e) => tracing::warn!(lease = %self.name, error = %e, "lease renewal"),
            }
        }
    }
}
