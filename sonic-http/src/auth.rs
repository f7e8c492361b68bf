//! Tenant API keys: bearer tokens, stored only as SHA-256 hashes.
//!
//! A keys file has one entry per line, `TENANT sha256:HEX` (the lowercase hex SHA-256 of the
//! key), and `#` comments:
//!
//! ```text
//! # tenant   hash of its key (sonic api-key --tenant acme)
//! acme       sha256:4f7c...e1
//! ```
//!
//! The tenant of a request is the one its key belongs to, never something the request says.
//! Keys are random 256-bit tokens ([`ApiKeys::generate`]), so one SHA-256 is enough to store
//! them (nothing to brute-force, unlike passwords); lookups are by hash, so a wrong key's
//! timing says nothing about a right one.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};
use sonic_storage::TenantId;

/// Why a keys file or variable cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeysError {
    /// The file cannot be read.
    #[error("cannot read the API keys file {path}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not `TENANT sha256:HEX`.
    #[error("{origin} line {line}: {reason}")]
    Line {
        /// The file, or the variable.
        origin: String,
        /// The line number (1-based).
        line: usize,
        /// What is wrong (the hash itself is never quoted).
        reason: String,
    },
}

/// The tenants' keys (their hashes). The empty set refuses every request.
#[derive(Clone, Default)]
pub struct ApiKeys {
    by_hash: HashMap<[u8; 32], TenantId>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hashes are not secrets, but there is no reason to print them.
        f.debug_struct("ApiKeys")
            .field("keys", &self.by_hash.len())
            .finish()
    }
}

/// A new key and the entry that admits it.
#[derive(Clone, PartialEq, Eq)]
pub struct NewKey {
    /// The bearer token to give the tenant (shown once; the server keeps only its hash).
    pub key: String,
    /// The keys file line: `TENANT sha256:HEX`.
    pub entry: String,
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey")
            .field("key", &"<redacted>")
            .field("entry", &self.entry)
            .finish()
    }
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl ApiKeys {
    /// No keys: every `/v1` request is 401.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses entries (`TENANT sha256:HEX`, one per line or separated by commas; `#` starts a
    /// comment). `origin` names where they came from, for errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, KeysError> {
        let mut keys = Self::default();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let line = line.split('#').next().unwrap_or("");
            for entry in line.split(',') {
                let entry = entry.trim();
                if entry.is_empty() {
                    continue;
                }
                keys.add_entry(entry).map_err(|reason| KeysError::Line {
                    origin: origin.to_owned(),
                    line: number,
                    reason,
                })?;
            }
        }
        Ok(keys)
    }

    fn add_entry(&mut self, entry: &str) -> Result<(), String> {
        let mut parts = entry.split_whitespace();
        let (Some(tenant), Some(digest), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err("expected `TENANT sha256:HEX`".to_owned());
        };
        let tenant = TenantId::new(tenant).map_err(|e| e.to_string())?;
        let hex_digest = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("tenant {tenant}: the hash must start with `sha256:`"))?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut bytes).map_err(|_| {
            format!("tenant {tenant}: the hash must be 64 hex digits after `sha256:`")
        })?;
        if let Some(other) = self.by_hash.insert(bytes, tenant.clone())
            && other != tenant
        {
            return Err(format!(
                "tenants {other} and {tenant} have the same key hash"
            ));
        }
        Ok(())
    }

    /// Reads a keys file.
    pub fn from_file(path: &Path) -> Result<Self, KeysError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Adds another set (a file and the environment).
    pub fn merge(mut self, other: ApiKeys) -> Self {
        self.by_hash.extend(other.by_hash);
        self
    }

    /// Admits `key` for `tenant` (tests, embedding).
    pub fn with_key(mut self, tenant: TenantId, key: &str) -> Self {
        self.by_hash.insert(hash(key), tenant);
        self
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// `true` when no key is configured (every request is refused).
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The tenant whose key `key` is.
    pub fn tenant_of(&self, key: &str) -> Option<&TenantId> {
        self.by_hash.get(&hash(key))
    }

    /// A new random key for `tenant` (256 bits from the OS, `sk_` and 64 hex digits) and its
    /// keys file entry.
    pub fn generate(tenant: &TenantId) -> NewKey {
        let mut random = [0u8; 32];
        random[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        random[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        let key = format!("sk_{}", hex::encode(random));
        let entry = format!("{tenant} sha256:{}", hex::encode(hash(&key)));
        NewKey { key, entry }
    }
}

/// The bearer token of an `Authorization` header value, if it is one.
pub(crate) fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_admitted_by_its_entry_and_no_other_key_is() {
        let acme = TenantId::new("acme").unwrap();
        let new = ApiKeys::generate(&acme);
        assert!(new.key.starts_with("sk_") && new.key.len() == 67);
        let keys = ApiKeys::parse(&format!("# comment\n{}\n\n", new.entry), "test").unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.tenant_of(&new.key), Some(&acme));
        assert_eq!(keys.tenant_of("sk_wrong"), None);
        assert_eq!(keys.tenant_of(&new.key[..66]), None);
        assert!(!format!("{new:?}").contains(&new.key));
    }

    #[test]
    fn entries_separated_by_commas_and_bad_lines_name_their_line() {
        let a = ApiKeys::generate(&TenantId::new("a").unwrap());
        let b = ApiKeys::generate(&TenantId::new("b").unwrap());
        let keys = ApiKeys::parse(&format!("{}, {}", a.entry, b.entry), "SONIC_API_KEYS").unwrap();
        assert_eq!(keys.len(), 2);
        for (text, reason) in [
            ("acme", "expected"),
            ("acme md5:00", "sha256:"),
            ("acme sha256:zz", "64 hex"),
            ("../x sha256:00", "tenant"),
        ] {
            let err = ApiKeys::parse(&format!("\n{text}"), "keys.txt").unwrap_err();
            let message = err.to_string();
            assert!(message.starts_with("keys.txt line 2: "), "{message}");
            assert!(message.contains(reason), "{message}");
        }
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }
}
