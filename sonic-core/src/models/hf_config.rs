//! Reading the `config.json` that Hugging Face libraries write beside their weights.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::ConfigError;
use crate::weights::LoadError;

/// Parses `path` as JSON into `T` (unknown keys ignored, as transformers does).
pub(crate) fn read<T: DeserializeOwned>(path: &Path) -> Result<T, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| invalid(path, e.into()))
}

/// The first of `names` that exists in `dir`, or an `Io` not-found error naming them all.
pub(crate) fn first_existing(dir: &Path, names: &[&str]) -> Result<PathBuf, LoadError> {
    names
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| LoadError::Io {
            file: dir.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no weight file (looked for {})", names.join(", ")),
            ),
        })
}

/// A `LoadError::Config` for `file`.
pub(crate) fn invalid(file: &Path, source: ConfigError) -> LoadError {
    LoadError::Config {
        file: file.to_path_buf(),
        source,
    }
}
