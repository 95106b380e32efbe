//! Bearer tokens with roles for the admin API, stored hashed (argon2) in etcd.
//!
//! A token reads `hft_<id>_<secret>`: the id finds its record at
//! `/hft/<cluster>/tokens/<id>` (name, role, expiry and the argon2 hash of the secret);
//! the secret is shown once, when the token is created, and never stored. Argon2 is slow
//! on purpose, so a verified token is remembered (by its SHA-256) for a few seconds:
//! steady authenticated traffic costs a hash lookup, and a revoked or changed token
//! stops working within that time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::coord::{Coord, CoordError, now_ns};

/// What a token may do; each role includes the ones below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads: status, positions, fills, config.
    Viewer,
    /// Viewer + trading actions: engage a kill switch, enable/disable strategies.
    Trader,
    /// Everything: release kill switches, book fills by hand, membership, config.
    Admin,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Trader => "trader",
            Role::Admin => "admin",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "trader" => Ok(Role::Trader),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("unknown role {s:?}: use viewer, trader or admin")),
        }
    }
}

/// A token's record in etcd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public part of the token.
    pub id: String,
    /// Whose it is (shown in the audit trail).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Expiry, ns since the epoch (0: never).
    pub expires: u64,
    /// Argon2 PHC string of the secret.
    pub hash: String,
}

/// Who made a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Token name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No, malformed, unknown, wrong or expired token: 401.
    Unauthenticated(String),
    /// A valid token whose role is too low: 403.
    Forbidden(String),
}

fn random_hex(n: usize) -> Result<String, CoordError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| CoordError::Malformed {
        key: "random".into(),
        why: format!("the OS random source failed: {e}"),
    })?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Creates a token and stores its record; returns the token (shown once) and record.
pub async fn create_token(
    coord: &mut Coord,
    name: &str,
    role: Role,
    ttl: Option<Duration>,
) -> Result<(String, TokenRecord), CoordError> {
    let id = random_hex(4)?;
    let secret = random_hex(24)?;
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| CoordError::Malformed {
        key: "random".into(),
        why: e.to_string(),
    })?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| CoordError::Malformed {
        key: "salt".into(),
        why: e.to_string(),
    })?;
    let hash = argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map_err(|e| CoordError::Malformed {
            key: "argon2".into(),
            why: e.to_string(),
        })?
        .to_string();
    let record = TokenRecord {
        id: id.clone(),
        name: name.to_owned(),
        role,
        expires: ttl.map_or(0, |t| now_ns().saturating_add(t.as_nanos() as u64)),
        hash,
    };
    coord.put_json(&format!("tokens/{id}"), &record).await?;
    Ok((format!("hft_{id}_{secret}"), record))
}

/// Checks bearer tokens against the records in etcd.
pub struct Authenticator {
    coord: tokio::sync::Mutex<Coord>,
    cache: Mutex<HashMap<[u8; 32], (Principal, u64, Instant)>>,
    remember: Duration,
}

impl Authenticator {
    /// Authenticates against `coord`'s token records; verified tokens are remembered
    /// for `remember`.
    pub fn new(coord: Coord, remember: Duration) -> Self {
        Self {
            coord: tokio::sync::Mutex::new(coord),
            cache: Mutex::new(HashMap::new()),
            remember,
        }
    }

    /// Who `authorization` (the header's value) is, if it grants `need`.
    pub async fn check(
        &self,
        authorization: Option<&str>,
        need: Role,
    ) -> Result<Principal, Denied> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Denied::Unauthenticated(
                    "missing bearer token: send `Authorization: Bearer <token>` (hft reads \
                     HFT_TOKEN)"
                        .into(),
                )
            })?
            .trim();
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(&key).cloned())
            .filter(|(_, _, at)| at.elapsed() < self.remember);
        let (who, expires) = match cached {
            Some((p, exp, _)) => (p, exp),
            None => {
                let (p, exp) = self.verify(token).await?;
                if let Ok(mut c) = self.cache.lock() {
                    c.insert(key, (p.clone(), exp, Instant::now()));
                }
                (p, exp)
            }
        };
        if expires != 0 && now_ns() >= expires {
            return Err(Denied::Unauthenticated(format!(
                "token of {} has expired; create a new one with `hft token create`",
                who.name
            )));
        }
        if who.role < need {
            return Err(Denied::Forbidden(format!(
                "{} has role {}, this needs {need}",
                who.name, who.role
            )));
        }
        Ok(who)
    }

    async fn verify(&self, token: &str) -> Result<(Principal, u64), Denied> {
        let bad = || Denied::Unauthenticated("invalid token".into());
        let rest = token.strip_prefix("hft_").ok_or_else(bad)?;
        let (id, secret) = rest.split_once('_').ok_or_else(bad)?;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let rec: Option<TokenRecord> = self
            .coord
            .lock()
            .await
            .get_json(&format!("tokens/{id}"))
            .await
            .map_err(|e| Denied::Unauthenticated(format!("cannot check the token: {e}")))?;
        let rec = rec.ok_or_else(bad)?;
        // Argon2 takes tens of ms by design: off the async workers.
        let (secret, hash) = (secret.to_owned(), rec.hash.clone());
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                argon2::Argon2::default()
                    .verify_password(secret.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        if !ok {
            return Err(bad());
        }
        Ok((
            Principal {
                name: rec.name,
                role: rec.role,
            },
            rec.expires,
        ))
    }
}
