//! Bearer tokens with roles for the admin API, stored hashed in etcd.
//!
//! A token reads `hft_<id>_<secret>`: the id finds its record at
//! `/hft/<cluster>/tokens/<id>` (name, role, expiry and the SHA-256 of the secret); the
//! secret is shown once, when the token is created, and never stored. The secret is 192
//! random bits, so a fast hash is as safe as a slow one (nobody can search 2^192
//! secrets); a slow password hash (argon2) would only make every check cost tens of ms
//! of CPU, which a loaded node, whose API threads yield to trading, pays in seconds, kill
//! switch calls included. Records written by earlier versions hold an argon2 hash and
//! are still accepted. A verified token is remembered (by its SHA-256) for a few
//! seconds: steady authenticated traffic costs a map lookup, and a revoked or changed
//! token stops working within that time.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use hft_ledger::member::hex;
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
    /// `sha256:<hex>` of the secret (or, from earlier versions, its argon2 PHC string).
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
    Ok(hex(&b))
}

/// What a record keeps of a secret: its SHA-256, hex, with the scheme's name.
fn secret_hash(secret: &str) -> String {
    format!("{SHA256_SCHEME}{}", hex(&Sha256::digest(secret.as_bytes())))
}

/// The prefix of a record's hash that names SHA-256.
const SHA256_SCHEME: &str = "sha256:";

/// Whether `secret` is the one `hash` was made from. SHA-256 hashes are compared in
/// constant time; an argon2 PHC string (a record from an earlier version) is verified
/// with argon2, off the async workers.
async fn secret_matches(secret: &str, hash: &str) -> bool {
    if hash.starts_with(SHA256_SCHEME) {
        let want = secret_hash(secret);
        return want.len() == hash.len()
            && want
                .bytes()
                .zip(hash.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
    }
    let (secret, hash) = (secret.to_owned(), hash.to_owned());
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|parsed| {
            argon2::Argon2::default()
                .verify_password(secret.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
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
    let hash = secret_hash(&secret);
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
        let ok = secret_matches(secret, &rec.hash).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_sha256_record_accepts_its_secret_and_nothing_else() {
        let secret = random_hex(24).unwrap();
        let hash = secret_hash(&secret);
        assert!(
            hash.starts_with("sha256:") && hash.len() == 7 + 64,
            "{hash}"
        );
        assert!(block_on(secret_matches(&secret, &hash)));
        let mut other = secret.clone().into_bytes();
        other[0] = if other[0] == b'0' { b'1' } else { b'0' };
        let other = String::from_utf8(other).unwrap();
        for (s, h) in [
            (other.as_str(), hash.as_str()),
            (&secret[1..], hash.as_str()),
            ("", hash.as_str()),
            (secret.as_str(), &hash[..hash.len() - 1]),
            (secret.as_str(), "sha256:"),
            (secret.as_str(), ""),
            (secret.as_str(), "md5:0123"),
        ] {
            assert!(!block_on(secret_matches(s, h)), "{s:?} against {h:?}");
        }
    }

    /// Tokens created by earlier versions hold an argon2 hash; they keep working.
    #[test]
    fn an_argon2_record_from_an_earlier_version_still_verifies() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let secret = random_hex(24).unwrap();
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let hash = argon2::Argon2::default()
            .hash_password(secret.as_bytes(), &salt)
            .unwrap()
            .to_string();
        assert!(hash.starts_with("$argon2"), "{hash}");
        assert!(block_on(secret_matches(&secret, &hash)));
        assert!(!block_on(secret_matches(&secret[1..], &hash)));
        assert!(!block_on(secret_matches(&secret, "$argon2id$garbage")));
    }
}
