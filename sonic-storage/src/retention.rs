//! Retention: deleting objects older than an age under a prefix, with a dry run.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;

use crate::error::{Result, StorageError};
use crate::key::ObjectKey;
use crate::object::ObjectInfo;
use crate::store::ObjectStorage;

/// What a sweep deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepOptions {
    /// Objects last modified more than this long before `now` are swept.
    pub older_than: Duration,
    /// List what would be deleted, delete nothing.
    pub dry_run: bool,
    /// The reference time (default: when the options were made).
    pub now: DateTime<Utc>,
}

impl SweepOptions {
    /// Sweep objects older than `older_than`, for real.
    pub fn older_than(older_than: Duration) -> Self {
        Self {
            older_than,
            dry_run: false,
            now: Utc::now(),
        }
    }

    /// Only list what would be deleted.
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    /// Measures ages from `now` instead of the current time.
    pub fn at(mut self, now: DateTime<Utc>) -> Self {
        self.now = now;
        self
    }
}

/// What a sweep found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// The objects old enough to sweep, sorted by key (deleted unless this was a dry run).
    pub matched: Vec<ObjectInfo>,
    /// How many were deleted (0 in a dry run).
    pub deleted: usize,
    /// Total size of the matched objects in bytes.
    pub bytes: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// Deletes every object under `prefix` in `store` last modified before
/// `options.now - options.older_than` (or, in a dry run, only lists them).
///
/// Objects whose store reports no modification time are kept.
pub async fn sweep(
    store: &dyn ObjectStorage,
    prefix: &ObjectKey,
    options: &SweepOptions,
) -> Result<SweepReport> {
    let age = chrono::Duration::from_std(options.older_than).map_err(|_| {
        StorageError::InvalidArgument {
            argument: "older_than",
            reason: format!("{:?} is too long", options.older_than),
        }
    })?;
    let cutoff = options.now - age;
    let mut matched: Vec<ObjectInfo> = store
        .list(Some(prefix))
        .try_filter(|info| futures::future::ready(info.last_modified.is_some_and(|t| t < cutoff)))
        .try_collect()
        .await?;
    matched.sort_by(|a, b| a.key.cmp(&b.key));
    let bytes = matched.iter().map(|info| info.size).sum();
    let mut deleted = 0;
    if !options.dry_run {
        for info in &matched {
            store.delete(&info.key).await?;
            deleted += 1;
        }
    }
    tracing::info!(store = store.store_url(), prefix = %prefix, matched = matched.len(),
        deleted, bytes, dry_run = options.dry_run, "retention sweep");
    Ok(SweepReport {
        matched,
        deleted,
        bytes,
        dry_run: options.dry_run,
    })
}
