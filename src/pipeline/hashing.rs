//! SHA-256 of the checkpoint files for the manifest, streamed (a 1 MiB buffer, never the
//! whole file) and cached by (path, size, modification time), so a worker hashes its 10 GB
//! of weights once, not once per job.
//!
//! The cache lives in memory for the life of the [`ChecksumCache`]; given a file it is also
//! persisted there as JSON, so separate processes (the CLI) reuse it. A file whose size or
//! modification time changed is hashed again.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sonic_storage::Sha256Digest;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    size: u64,
    modified_ns: u128,
    sha256: Sha256Digest,
}

/// Cached SHA-256 digests of files.
#[derive(Debug, Default)]
pub struct ChecksumCache {
    entries: Mutex<BTreeMap<PathBuf, Entry>>,
    file: Option<PathBuf>,
}

impl ChecksumCache {
    /// A cache kept in memory only.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// A cache also kept in the JSON file `path` (read now if it exists; an unreadable file
    /// starts an empty cache). Writes that fail are logged and otherwise ignored: the cache
    /// is an optimisation.
    pub fn persistent(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let entries = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Self {
            entries: Mutex::new(entries),
            file: Some(path),
        }
    }

    /// The SHA-256 of `path`: from the cache when its size and modification time are
    /// unchanged, else read through once.
    ///
    /// # Errors
    /// The I/O error of reading the file.
    pub fn sha256(&self, path: &Path) -> std::io::Result<Sha256Digest> {
        let key = std::fs::canonicalize(path)?;
        let meta = std::fs::metadata(&key)?;
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let size = meta.len();
        if let Some(entry) = self.lock().get(&key)
            && entry.size == size
            && entry.modified_ns == modified_ns
        {
            return Ok(entry.sha256);
        }
        tracing::info!(file = %key.display(), size, "hashing checkpoint");
        let sha256 = hash_file(&key)?;
        let snapshot = {
            let mut entries = self.lock();
            entries.insert(
                key,
                Entry {
                    size,
                    modified_ns,
                    sha256,
                },
            );
            entries.clone()
        };
        self.save(&snapshot);
        Ok(sha256)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<PathBuf, Entry>> {
        // A panic while holding the lock leaves a consistent map (inserts are atomic).
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self, entries: &BTreeMap<PathBuf, Entry>) {
        let Some(path) = &self.file else { return };
        let write = || -> std::io::Result<()> {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            let dir = dir.unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)?;
            let mut temp = tempfile::NamedTempFile::new_in(dir)?;
            serde_json::to_writer_pretty(&mut temp, entries)?;
            temp.persist(path).map_err(|e| e.error)?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::warn!(file = %path.display(), error = %e, "cannot save the checksum cache");
        }
    }
}

/// SHA-256 of a file, read in 1 MiB blocks.
pub fn hash_file(path: &Path) -> std::io::Result<Sha256Digest> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(Sha256Digest(hasher.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.bin");
        std::fs::write(&file, b"weights").unwrap();
        let cache_file = dir.path().join("cache.json");
        let cache = ChecksumCache::persistent(&cache_file);
        let first = cache.sha256(&file).unwrap();
        assert_eq!(first, Sha256Digest::of(b"weights"));
        // A new cache reads the persisted digest.
        let reloaded = ChecksumCache::persistent(&cache_file);
        assert_eq!(reloaded.lock().len(), 1);
        assert_eq!(reloaded.sha256(&file).unwrap(), first);
        // A different size is hashed again.
        std::fs::write(&file, b"other weights").unwrap();
        assert_eq!(
            reloaded.sha256(&file).unwrap(),
            Sha256Digest::of(b"other weights")
        );
    }
}
