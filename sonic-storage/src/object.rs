//! Plain data types shared by every store: object metadata, put options, digests, signed URLs.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Result, StorageError};
use crate::key::ObjectKey;
use crate::manifest::ObjectRecord;

/// What an object is, as far as the store (and this crate) knows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectInfo {
    /// The key, relative to the store's root.
    pub key: ObjectKey,
    /// Size in bytes.
    pub size: u64,
    /// When the store last wrote it (`None` right after an upload, where stores do not say).
    pub last_modified: Option<DateTime<Utc>>,
    /// The store's entity tag, if it has one.
    pub e_tag: Option<String>,
    /// The store's version id, if the bucket is versioned.
    pub version: Option<String>,
    /// The content type: as stored, or guessed from the key's extension on stores that keep no
    /// attributes (the local directory).
    pub content_type: Option<String>,
    /// SHA-256 of the bytes, where this crate saw them all: after an upload or
    /// [`ObjectStorageExt::get_to_file`](crate::ObjectStorageExt::get_to_file). Not stored
    /// with the object; [`JobManifest`](crate::JobManifest) records it.
    pub sha256: Option<Sha256Digest>,
}

impl ObjectInfo {
    /// Metadata for `key`; the optional fields start empty.
    pub fn new(key: ObjectKey, size: u64) -> Self {
        Self {
            key,
            size,
            last_modified: None,
            e_tag: None,
            version: None,
            content_type: None,
            sha256: None,
        }
    }

    /// The manifest record of this object, in the role `role` (`image`, `audio`, `video` ...)
    /// of the store at `store_url` (see [`ObjectStorage::store_url`](crate::ObjectStorage::store_url)).
    pub fn record(&self, role: impl Into<String>, store_url: impl Into<String>) -> ObjectRecord {
        ObjectRecord {
            role: role.into(),
            store: store_url.into(),
            key: self.key.clone(),
            size: self.size,
            sha256: self.sha256,
            e_tag: self.e_tag.clone(),
            version: self.version.clone(),
            content_type: self.content_type.clone(),
        }
    }
}

/// Whether a put may replace an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WriteMode {
    /// Replace any object at the key (atomically: readers see the old or the new object).
    #[default]
    Overwrite,
    /// Fail with [`StorageError::AlreadyExists`] if the key exists; never overwrite. Enforced
    /// by the store itself (conditional put or conditional copy), not by a racy check.
    CreateOnly,
}

/// Options for a put.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutOptions {
    /// Overwrite or create-only.
    pub mode: WriteMode,
    /// The content type to store; `None` guesses it from the key's extension
    /// (`application/octet-stream` when unknown).
    pub content_type: Option<String>,
}

impl PutOptions {
    /// Overwrite, content type from the key.
    pub fn overwrite() -> Self {
        Self::default()
    }

    /// Create-only, content type from the key.
    pub fn create_only() -> Self {
        Self {
            mode: WriteMode::CreateOnly,
            content_type: None,
        }
    }

    /// Sets the content type.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }
}

/// A SHA-256 digest, shown and serialized as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest;
        Self(sha2::Sha256::digest(bytes).into())
    }

    /// The 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", self.to_hex())
    }
}

impl FromStr for Sha256Digest {
    type Err = StorageError;
    fn from_str(s: &str) -> Result<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|e| StorageError::InvalidArgument {
            argument: "sha256",
            reason: format!("{s:?} is not 64 hex digits: {e}"),
        })?;
        Ok(Self(bytes))
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The HTTP method a signed URL allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignedMethod {
    /// Download the object (share a result).
    Get,
    /// Upload the object (a client uploads its input directly).
    Put,
}

impl SignedMethod {
    #[cfg(feature = "_http")]
    pub(crate) fn http(self) -> object_store::signer::Method {
        match self {
            SignedMethod::Get => object_store::signer::Method::GET,
            SignedMethod::Put => object_store::signer::Method::PUT,
        }
    }
}

/// A pre-signed URL: anyone holding it may do `method` on one object until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignedUrl {
    /// The URL, signature included.
    pub url: Url,
    /// What it allows.
    pub method: SignedMethod,
    /// When it stops working (the store refuses it after this instant).
    pub expires_at: DateTime<Utc>,
}

/// A stream of downloaded bytes.
pub type DownloadStream = BoxStream<'static, Result<bytes::Bytes>>;

/// An object being downloaded: its metadata and its bytes.
#[non_exhaustive]
pub struct Download {
    /// The object's metadata.
    pub info: ObjectInfo,
    /// The byte range being delivered (the whole object unless a range was asked for).
    pub range: Range<u64>,
    /// The bytes of `range`, in order.
    pub stream: DownloadStream,
}

impl Download {
    /// Assembles a download (for [`ObjectStorage`](crate::ObjectStorage) implementations).
    pub fn new(info: ObjectInfo, range: Range<u64>, stream: DownloadStream) -> Self {
        Self {
            info,
            range,
            stream,
        }
    }
}

impl fmt::Debug for Download {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Download")
            .field("info", &self.info)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_hex_round_trip() {
        let d = Sha256Digest::of(b"abc");
        assert_eq!(
            d.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.to_hex().parse::<Sha256Digest>().unwrap(), d);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Sha256Digest>(&json).unwrap(), d);
        assert!("xyz".parse::<Sha256Digest>().is_err());
    }
}
