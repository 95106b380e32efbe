//! The cluster's state in etcd: the configuration (typed, validated, versioned) and the
//! node registry (a lease per node, kept alive; a node that loses it fences itself).
//!
//! Key layout under `/hft/<cluster>/` (see `docs/cluster.md`):
//! - `config` — the cluster's configuration overlay (TOML, the same schema as the files);
//! - `config-history/<revision>` — every version written, with who and when;
//! - `nodes/<id>` — a live node's registration (JSON), bound to the node's lease.
//!
//! The etcd client lives here rather than in hft-config so that the crates that only
//! read files (backtester, fuzz targets) do not build gRPC.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a coordination call failed.
#[derive(Debug, Error)]
pub enum CoordError {
    /// No etcd endpoint answered.
    #[error(
        "cannot reach etcd at {endpoints} after {waited:?}: {last}. Start etcd (Debian: \
         etcd-server) or pass the right --etcd URLS"
    )]
    Unreachable {
        /// The endpoints tried.
        endpoints: String,
        /// How long it tried.
        waited: Duration,
        /// The last error.
        last: String,
    },
    /// etcd refused or failed a request.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// A configuration was invalid; nothing was written.
    #[error("configuration refused, nothing written: {0}")]
    Invalid(String),
    /// The configuration changed since the revision the caller expected.
    #[error(
        "configuration changed since revision {expected} (now {current}); get it again, \
         re-apply your change and retry"
    )]
    Conflict {
        /// The revision the caller based its change on.
        expected: i64,
        /// The revision in etcd.
        current: i64,
    },
    /// A value in etcd is not what hft wrote (edited by hand?).
    #[error("etcd key {key}: {why}")]
    Malformed {
        /// The key.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// Asked for a configuration version that is not in the history.
    #[error("no configuration revision {0} in the history; see `hft config history`")]
    NoSuchRevision(i64),
}

/// A version of the cluster configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigVersion {
    /// etcd revision that wrote it (use it as `--expect-revision`).
    pub revision: i64,
    /// The overlay text.
    pub text: String,
}

/// One entry of the configuration history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// etcd revision of the change.
    pub revision: i64,
    /// Who made it.
    pub who: String,
    /// When, ns since the epoch.
    pub ts: u64,
    /// What was written.
    pub text: String,
}

/// A node's registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node id.
    pub id: u64,
    /// Admin API address.
    pub admin: String,
    /// Ledger address, if it runs a member.
    pub ledger: Option<String>,
    /// Control channel address (the placement leader's failure detector), if it takes
    /// assignments.
    #[serde(default)]
    pub control: Option<String>,
    /// When it registered, ns since the epoch.
    pub since: u64,
}

/// Runs `f` again while etcd answers with a transient error (no leader, a leader
/// change, a dropped connection) until `within` has passed: an etcd cluster that is
/// electing is not a reason for a node to give up. Other errors return at once.
pub async fn retry_transient<T, F, Fut>(within: Duration, mut f: F) -> Result<T, CoordError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CoordError>>,
{
    let end = Instant::now() + within;
    let mut backoff = Duration::from_millis(50);
    loop {
        match f().await {
            Err(CoordError::Etcd(e)) if Instant::now() + backoff < end => {
                tracing::warn!(error = %e, retry_in = ?backoff, "etcd busy; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            r => return r,
        }
    }
}

/// Wall-clock time, ns since the epoch: the timestamps of etcd records and ledger
/// commands made by operators.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

/// A connection to the cluster's etcd.
#[derive(Clone)]
pub struct Coord {
    pub(crate) client: Client,
    cluster: String,
    /// The member endpoints, for work that must route around a dead member at once
    /// (lease renewal).
    endpoints: Vec<String>,
}

impl Coord {
    /// Connects, retrying with backoff (100 ms doubling to 2 s) until `within` has
    /// passed.
    pub async fn connect(
        endpoints: &[String],
        cluster: &str,
        within: Duration,
    ) -> Result<Self, CoordError> {
        let start = Instant::now();
        let mut backoff = Duration::from_millis(100);
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5));
        loop {
            let attempt = async {
                let mut c = Client::connect(endpoints, Some(opts.clone())).await?;
                c.status().await?;
                Ok::<_, etcd_client::Error>(c)
            };
            let last = match tokio::time::timeout(Duration::from_secs(3), attempt).await {
                Ok(Ok(client)) => {
                    return Ok(Self {
                        client,
                        cluster: cluster.to_owned(),
                        endpoints: endpoints.to_vec(),
                    });
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer within 3 s".to_owned(),
            };
            if start.elapsed() + backoff > within {
                return Err(CoordError::Unreachable {
                    endpoints: endpoints.join(","),
                    waited: start.elapsed(),
                    last,
                });
            }
            tracing::warn!(endpoints = %endpoints.join(","), error = %last, retry_in = ?backoff, "etcd unreachable; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// The full key of `rest` in this cluster's namespace.
    pub fn key(&self, rest: &str) -> String {
        format!("/hft/{}/{rest}", self.cluster)
    }

    /// Stores `value` as JSON at `rest` (under the cluster's prefix).
    pub async fn put_json<T: Serialize>(
        &mut self,
        rest: &str,
        value: &T,
    ) -> Result<(), CoordError> {
        let key = self.key(rest);
        let v = serde_json::to_vec(value).map_err(|e| CoordError::Malformed {
            key: key.clone(),
            why: e.to_string(),
        })?;
        self.client.put(key, v, None).await?;
        Ok(())
    }

    /// The JSON value at `rest`, if any; a value that is not what hft writes there is an
    /// error naming the key.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &mut self,
        rest: &str,
    ) -> Result<Option<T>, CoordError> {
        let key = self.key(rest);
        let r = self.client.get(key.clone(), None).await?;
        r.kvs()
            .first()
            .map(|kv| {
                serde_json::from_slice(kv.value()).map_err(|e| CoordError::Malformed {
                    key: key.clone(),
                    why: e.to_string(),
                })
            })
            .transpose()
    }

    /// Every JSON value under `prefix` (in key order).
    pub async fn list_json<T: serde::de::DeserializeOwned>(
        &mut self,
        prefix: &str,
    ) -> Result<Vec<T>, CoordError> {
        let r = self
            .client
            .get(
                self.key(prefix),
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_sort(SortTarget::Key, SortOrder::Ascend),
                ),
            )
            .await?;
        r.kvs()
            .iter()
            .map(|kv| {
                serde_json::from_slice(kv.value()).map_err(|e| CoordError::Malformed {
                    key: kv.key_str().unwrap_or("?").to_owned(),
                    why: e.to_string(),
                })
            })
            .collect()
    }

    /// Every JSON value under `prefix` with the rest of its key after the prefix; a
    /// value that does not parse is logged with its key and skipped.
    pub async fn list_json_keyed<T: serde::de::DeserializeOwned>(
        &mut self,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, CoordError> {
        let full = self.key(prefix);
        let r = self
            .client
            .get(full.clone(), Some(GetOptions::new().with_prefix()))
            .await?;
        let mut out = Vec::new();
        for kv in r.kvs() {
            let key = kv.key_str().unwrap_or("?").to_owned();
            match serde_json::from_slice(kv.value()) {
                Ok(v) => out.push((key.strip_prefix(&full).unwrap_or(&key).to_owned(), v)),
                Err(e) => {
                    tracing::warn!(%key, error = %e, "etcd value ignored: not what hft writes there")
                }
            }
        }
        Ok(out)
    }

    /// Deletes the key at `rest`; whether it existed.
    pub async fn delete(&mut self, rest: &str) -> Result<bool, CoordError> {
        Ok(self.client.delete(self.key(rest), None).await?.deleted() > 0)
    }

    /// Records that ledger member `id` founded the ledger (`ledger/founded/<id>`);
    /// false when it had already done so. A founder that starts on an empty disk and
    /// finds its record lost its log since: it must join the ledger that exists rather
    /// than found a second one with the founders as voters.
    pub async fn claim_founding(&mut self, id: u64) -> Result<bool, CoordError> {
        let key = self.key(&format!("ledger/founded/{id}"));
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, now_ns().to_string(), None)]);
        Ok(self.client.txn(txn).await?.succeeded())
    }

    /// Records that ledger member `id` holds a log (`ledger/held/<id>`): should it start
    /// on an empty disk later, it lost that log, and the leader may still count entries
    /// of it as the member's own.
    pub async fn mark_held(&mut self, id: u64) -> Result<(), CoordError> {
        self.stamp(&format!("ledger/held/{id}")).await
    }

    /// Puts the time now at `rest`.
    async fn stamp(&mut self, rest: &str) -> Result<(), CoordError> {
        let key = self.key(rest);
        self.client.put(key, now_ns().to_string(), None).await?;
        Ok(())
    }

    /// Whether ledger member `id` has held a log ([`Coord::mark_held`]).
    pub async fn held_log(&mut self, id: u64) -> Result<bool, CoordError> {
        let key = self.key(&format!("ledger/held/{id}"));
        Ok(!self.client.get(key, None).await?.kvs().is_empty())
    }

    /// Records that ledger member `id` lost its log and waits, voting for no one, to be
    /// removed and added back (`ledger/rejoining/<id>`): the operator does both.
    pub async fn mark_rejoining(&mut self, id: u64) -> Result<(), CoordError> {
        self.stamp(&format!("ledger/rejoining/{id}")).await
    }

    /// Members marked by [`Coord::mark_rejoining`] whose mark is still there (the
    /// operator deletes a mark once it has handled it).
    pub async fn rejoining(&mut self) -> Result<Vec<u64>, CoordError> {
        let marks: Vec<(String, u64)> = self.list_json_keyed("ledger/rejoining/").await?;
        Ok(marks
            .into_iter()
            .filter_map(|(k, _)| k.parse().ok())
            .collect())
    }

    /// The current configuration overlay and its revision (None before the first set).
    pub async fn config_get(&mut self) -> Result<Option<ConfigVersion>, CoordError> {
        let key = self.key("config");
        let r = self.client.get(key.clone(), None).await?;
        let Some(kv) = r.kvs().first() else {
            return Ok(None);
        };
        let text = kv.value_str().map_err(|e| CoordError::Malformed {
            key: key.clone(),
            why: format!("not UTF-8: {e}"),
        })?;
        Ok(Some(ConfigVersion {
            revision: kv.mod_revision(),
            text: text.to_owned(),
        }))
    }

    /// Validates `text` as a configuration overlay (the schema of the files) and
    /// writes it if the stored configuration is still at `expect` (0: none yet;
    /// `None`: whatever it is). Records the change in the history. Returns the new
    /// revision.
    pub async fn config_set(
        &mut self,
        text: &str,
        expect: Option<i64>,
        who: &str,
    ) -> Result<i64, CoordError> {
        hft_config::load_str("the new configuration", text, std::iter::empty())
            .map_err(|e| CoordError::Invalid(e.to_string()))?;
        let key = self.key("config");
        let current = self.config_get().await?.map_or(0, |v| v.revision);
        let base = expect.unwrap_or(current);
        let ts = now_ns();
        // Both puts of the transaction get its revision: the history record's create
        // revision is the configuration's mod revision, which `rollback` names. Keyed
        // by the revision it replaces, which the compare-and-swap makes unique and
        // ordered (a wall clock could step back or repeat).
        let history_key = self.key(&format!("config-history/{base:020}"));
        let record = serde_json::json!({ "who": who, "ts": ts, "text": text }).to_string();
        let txn = Txn::new()
            .when([Compare::mod_revision(key.clone(), CompareOp::Equal, base)])
            .and_then([
                TxnOp::put(key.clone(), text, None),
                TxnOp::put(history_key, record, None),
            ]);
        let r = self.client.txn(txn).await?;
        if !r.succeeded() {
            let now = self.config_get().await?.map_or(0, |v| v.revision);
            return Err(CoordError::Conflict {
                expected: base,
                current: now,
            });
        }
        let rev = r.header().map_or(0, |h| h.revision());
        self.audit(
            who,
            "config.set",
            serde_json::json!({ "revision": base }),
            serde_json::json!({ "revision": rev, "text": text }),
        )
        .await?;
        Ok(rev)
    }

    /// The configuration history, oldest first.
    pub async fn config_history(&mut self) -> Result<Vec<HistoryEntry>, CoordError> {
        let prefix = self.key("config-history/");
        let r = self
            .client
            .get(
                prefix.clone(),
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_sort(SortTarget::Key, SortOrder::Ascend),
                ),
            )
            .await?;
        #[derive(Deserialize)]
        struct Record {
            who: String,
            ts: u64,
            text: String,
        }
        r.kvs()
            .iter()
            .map(|kv| {
                let rec = serde_json::from_slice::<Record>(kv.value()).map_err(|e| {
                    CoordError::Malformed {
                        key: kv.key_str().unwrap_or("?").to_owned(),
                        why: format!("not a configuration history record: {e}"),
                    }
                })?;
                Ok(HistoryEntry {
                    revision: kv.create_revision(),
                    who: rec.who,
                    ts: rec.ts,
                    text: rec.text,
                })
            })
            .collect()
    }

    /// The configuration as written at `revision`.
    pub async fn config_at(&mut self, revision: i64) -> Result<HistoryEntry, CoordError> {
        self.config_history()
            .await?
            .into_iter()
            .find(|h| h.revision == revision)
            .ok_or(CoordError::NoSuchRevision(revision))
    }

    /// Registers node `info.id` under a lease of `ttl` and keeps it alive from a
    /// background task. The returned registration's `fenced` flag turns true when the
    /// lease cannot be renewed before it would expire: from then on the node must not
    /// trade, because another node may already own its work.
    pub async fn register(
        &mut self,
        info: &NodeInfo,
        ttl: Duration,
    ) -> Result<Registration, CoordError> {
        let ttl_s = ttl.as_secs().max(1) as i64;
        // The lease may start counting when it is granted: fencing counts from before
        // the request, and from the TTL etcd actually granted.
        let asked = Instant::now();
        let granted = self.client.lease_grant(ttl_s, None).await?;
        let lease = granted.id();
        let ttl_s = granted.ttl().clamp(1, ttl_s);
        let key = self.key(&format!("nodes/{}", info.id));
        let value = serde_json::to_string(info).map_err(|e| CoordError::Malformed {
            key: key.clone(),
            why: e.to_string(),
        })?;
        self.client
            .put(
                key.clone(),
                value,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await?;
        let fenced = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(keep_alive(
            self.endpoints.clone(),
            lease,
            Duration::from_secs(ttl_s as u64),
            fenced.clone(),
            info.id,
            asked,
        ));
        Ok(Registration {
            key,
            lease,
            fenced,
            task,
            client: self.client.clone(),
        })
    }

    /// Registered nodes.
    pub async fn nodes(&mut self) -> Result<Vec<NodeInfo>, CoordError> {
        self.list_json("nodes/").await
    }
}

/// Changes of the cluster configuration, in revision order.
pub struct ConfigChanges {
    stream: etcd_client::WatchStream,
    key: String,
    pending: std::collections::VecDeque<(i64, String)>,
}

impl ConfigChanges {
    /// The next stored version (revision, text); None when the watch ends.
    pub async fn next(&mut self) -> Result<Option<(i64, String)>, CoordError> {
        loop {
            if let Some(v) = self.pending.pop_front() {
                return Ok(Some(v));
            }
            let Some(resp) = self.stream.message().await? else {
                return Ok(None);
            };
            for ev in resp.events() {
                if ev.event_type() != etcd_client::EventType::Put {
                    continue;
                }
                let Some(kv) = ev.kv() else { continue };
                match kv.value_str() {
                    Ok(t) => self.pending.push_back((kv.mod_revision(), t.to_owned())),
                    Err(e) => self.pending.push_back((
                        kv.mod_revision(),
                        // Not text at all: the loader refuses it, naming the key.
                        format!("# etcd key {} is not UTF-8: {e}\n!", self.key),
                    )),
                }
            }
        }
    }
}

impl Coord {
    /// Watches the configuration key from revision `from`.
    pub async fn watch_config(&self, from: i64) -> Result<ConfigChanges, CoordError> {
        let key = self.key("config");
        let stream = self
            .client
            .clone()
            .watch(
                key.clone(),
                Some(etcd_client::WatchOptions::new().with_start_revision(from.max(1))),
            )
            .await?;
        Ok(ConfigChanges {
            stream,
            key,
            pending: std::collections::VecDeque::new(),
        })
    }
}

/// One entry of the tamper-evident audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the trail, from 1.
    pub seq: u64,
    /// When, ns since the epoch.
    pub ts: u64,
    /// Who (token name, or the CLI user for configuration changes).
    pub who: String,
    /// What was done (`config.set`, `kill.engage`, `ledger.members`, ...).
    pub action: String,
    /// State before, where known (JSON).
    pub before: serde_json::Value,
    /// The change requested / state after (JSON).
    pub after: serde_json::Value,
    /// Hash of the previous record (hex; zeros for the first).
    pub prev: String,
    /// SHA-256 over `prev` and this record's other fields (hex).
    pub hash: String,
}

impl AuditRecord {
    fn digest(&self) -> String {
        let mut h = sha2::Sha256::new();
        use sha2::Digest as _;
        let body = serde_json::json!([
            self.seq,
            self.ts,
            self.who,
            self.action,
            self.before,
            self.after,
            self.prev
        ]);
        h.update(body.to_string().as_bytes());
        hft_ledger::member::hex(&h.finalize())
    }
}

/// Where the audit trail does not hold together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tampered {
    /// The first bad record (or the missing one).
    pub seq: u64,
    /// What is wrong.
    pub why: String,
}

const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl Coord {
    /// Appends to the audit trail: the record is chained to the previous one by hash,
    /// and the head moves in the same transaction, so concurrent writers (nodes, CLIs)
    /// never fork the chain.
    pub async fn audit(
        &mut self,
        who: &str,
        action: &str,
        before: serde_json::Value,
        after: serde_json::Value,
    ) -> Result<AuditRecord, CoordError> {
        let head_key = self.key("audit-head");
        for _ in 0..20 {
            let r = self.client.get(head_key.clone(), None).await?;
            let (head, head_rev): (Option<AuditRecord>, i64) = match r.kvs().first() {
                Some(kv) => (
                    Some(serde_json::from_slice(kv.value()).map_err(|e| {
                        CoordError::Malformed {
                            key: head_key.clone(),
                            why: e.to_string(),
                        }
                    })?),
                    kv.mod_revision(),
                ),
                None => (None, 0),
            };
            let mut rec = AuditRecord {
                seq: head.as_ref().map_or(1, |h| h.seq + 1),
                ts: now_ns(),
                who: who.to_owned(),
                action: action.to_owned(),
                before: before.clone(),
                after: after.clone(),
                prev: head.map_or_else(|| ZERO_HASH.to_owned(), |h| h.hash),
                hash: String::new(),
            };
            rec.hash = rec.digest();
            let json = serde_json::to_string(&rec).map_err(|e| CoordError::Malformed {
                key: head_key.clone(),
                why: e.to_string(),
            })?;
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    head_key.clone(),
                    CompareOp::Equal,
                    head_rev,
                )])
                .and_then([
                    TxnOp::put(head_key.clone(), json.clone(), None),
                    TxnOp::put(self.key(&format!("audit/{:020}", rec.seq)), json, None),
                ]);
            if self.client.txn(txn).await?.succeeded() {
                return Ok(rec);
            }
        }
        Err(CoordError::Malformed {
            key: head_key,
            why: "the audit head kept moving; too many concurrent writers".into(),
        })
    }

    /// The audit trail, oldest first.
    pub async fn audit_trail(&mut self) -> Result<Vec<AuditRecord>, CoordError> {
        self.list_json("audit/").await
    }

    /// Checks the trail: records numbered 1..n without gaps, each hash matching its
    /// content and naming its predecessor, the head naming the last.
    pub async fn audit_verify(&mut self) -> Result<Result<usize, Tampered>, CoordError> {
        let trail = self.audit_trail().await?;
        let head: Option<AuditRecord> = self.get_json("audit-head").await?;
        let mut prev = ZERO_HASH.to_owned();
        for (k, r) in trail.iter().enumerate() {
            let want = k as u64 + 1;
            let bad = |why: String| Ok(Err(Tampered { seq: want, why }));
            if r.seq != want {
                return bad(format!("record {want} is missing (found {} next)", r.seq));
            }
            if r.prev != prev {
                return bad("does not chain to the record before it".into());
            }
            if r.digest() != r.hash {
                return bad("its content does not match its hash (edited)".into());
            }
            prev = r.hash.clone();
        }
        match head {
            Some(h) if h.seq != trail.len() as u64 || h.hash != prev => Ok(Err(Tampered {
                seq: h.seq,
                why: format!(
                    "the head names record {} but the trail ends at {}",
                    h.seq,
                    trail.len()
                ),
            })),
            None if !trail.is_empty() => Ok(Err(Tampered {
                seq: trail.len() as u64,
                why: "the head is missing".into(),
            })),
            _ => Ok(Ok(trail.len())),
        }
    }
}

/// A node's live registration.
pub struct Registration {
    /// Its key.
    pub key: String,
    /// Its lease.
    pub lease: i64,
    /// True once the lease may have expired: the node must stop trading.
    pub fenced: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    client: Client,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.task.abort();
        // A clean stop gives the node's work up at once instead of after the TTL.
        let (mut client, lease) = (self.client.clone(), self.lease);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = client.lease_revoke(lease).await;
            });
        }
    }
}

/// Renews the lease every third of its TTL, and fences the node as soon as the time
/// since the last confirmed renewal reaches two thirds of the TTL: etcd may expire the
/// lease at the TTL, and the node must have stopped before anyone else can take its
/// work over. The fence is a timer of its own, so a renewal stuck in a timeout cannot
/// delay it.
async fn keep_alive(
    endpoints: Vec<String>,
    lease: i64,
    ttl: Duration,
    fenced: Arc<AtomicBool>,
    node: u64,
    origin: Instant,
) {
    let every = ttl / 3;
    let deadline = ttl - ttl / 3;
    // One attempt may take this long before the next member is tried.
    let attempt = (ttl / 6).max(Duration::from_millis(100));
    let confirmed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let watchdog = {
        let (confirmed, fenced) = (confirmed.clone(), fenced.clone());
        AbortOnDrop(tokio::spawn(async move {
            loop {
                let last = origin + Duration::from_nanos(confirmed.load(Ordering::SeqCst));
                let due = last + deadline;
                if Instant::now() >= due {
                    // The lease is lost and the engines still trade: a stall here is
                    // what the venue's epoch fencing must make harmless.
                    // Armed as `return(MS)`: the watchdog task stalls MS ms (and only it).
                    #[cfg(feature = "failpoints")]
                    if let Some(Some(ms)) = fail::eval("coord::lease-lost", |arg| {
                        arg.and_then(|a| a.parse::<u64>().ok())
                    }) {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    fenced.store(true, Ordering::SeqCst);
                    tracing::error!(node, lease, since = ?last.elapsed(), "etcd lease not renewed in time: node fenced (stops trading)");
                    return;
                }
                tokio::time::sleep_until(due.into()).await;
            }
        }))
    };
    // A client per member: when the member renewing the lease dies (or etcd elects),
    // the next one is tried at once instead of waiting for a balanced channel to notice.
    let opts = ConnectOptions::new()
        .with_connect_timeout(attempt)
        .with_timeout(attempt);
    let mut clients: Vec<Option<Client>> = endpoints.iter().map(|_| None).collect();
    let mut at = 0usize;
    let mut session: Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)> = None;
    while !fenced.load(Ordering::SeqCst) {
        let n = endpoints.len().max(1);
        if session.is_none() {
            let ep = &endpoints[at % n];
            if clients[at % n].is_none() {
                clients[at % n] = tokio::time::timeout(
                    attempt,
                    Client::connect([ep.as_str()], Some(opts.clone())),
                )
                .await
                .ok()
                .and_then(Result::ok);
            }
            if let Some(c) = clients[at % n].as_mut() {
                session = tokio::time::timeout(attempt, c.lease_keep_alive(lease))
                    .await
                    .ok()
                    .and_then(Result::ok);
            }
        }
        let mut renewed = false;
        if let Some((keeper, stream)) = session.as_mut() {
            // The lease runs from when etcd renewed it, which is after the request left:
            // counting from the send is the safe side.
            let sent = origin.elapsed().as_nanos() as u64;
            let round = async {
                keeper.keep_alive().await?;
                stream.message().await
            };
            match tokio::time::timeout(attempt, round).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {
                    confirmed.store(sent, Ordering::SeqCst);
                    renewed = true;
                }
                Ok(Ok(Some(_))) => {
                    // TTL 0: etcd says the lease is gone; nothing brings it back.
                    fenced.store(true, Ordering::SeqCst);
                    tracing::error!(node, lease, "etcd lease expired: node fenced");
                }
                _ => session = None,
            }
        }
        if renewed {
            tokio::time::sleep(every.saturating_sub(Duration::from_millis(10))).await;
        } else {
            // That member failed: drop its client and try the next one now.
            clients[at % n] = None;
            at += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Fenced for good: a node rejoins with a new registration (and a new epoch), never
    // by renewing the lease it may already have lost.
    drop(watchdog);
}

/// Aborts the fence timer when the keep-alive task is aborted (a clean stop), so a
/// stopped node does not report itself fenced.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
