//! Loading the released checkpoints: lazy files, strict key/shape checks, dtype conversion.
//!
//! Every model has a `load_*` function built on these pieces: open the file as a
//! [`Checkpoint`], rename or drop keys with [`Checkpoint::map_keys`] (the remap table stays tiny
//! because module field names mirror the checkpoint keys), then [`load_module`]. Anything that
//! does not line up is a [`LoadError::KeyMismatch`] naming each key and both shapes.

mod checkpoint;
mod loader;

pub use checkpoint::{Checkpoint, CheckpointFormat, KeyAction};
pub use loader::{LoadOptions, LoadReport, ParamSpec, check_keys, load_module, param_specs};

use std::path::PathBuf;

/// One key that does not line up between a module and a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyProblem {
    /// The module needs this key; the file does not have it.
    Missing {
        /// Checkpoint key.
        key: String,
        /// Shape the module expects (PyTorch layout).
        expected: Vec<usize>,
    },
    /// The file has this key; no module parameter takes it.
    Unexpected {
        /// Key as written in the file.
        key: String,
        /// Shape stored in the file.
        found: Vec<usize>,
    },
    /// Both have the key with different shapes.
    Shape {
        /// Key as written in the file.
        key: String,
        /// Shape the module expects (PyTorch layout).
        expected: Vec<usize>,
        /// Shape stored in the file.
        found: Vec<usize>,
    },
}

impl std::fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing { key, expected } => {
                write!(f, "missing `{key}` (module expects {expected:?})")
            }
            Self::Unexpected { key, found } => {
                write!(
                    f,
                    "unexpected `{key}` {found:?} (no module parameter takes it)"
                )
            }
            Self::Shape {
                key,
                expected,
                found,
            } => write!(
                f,
                "`{key}`: module expects {expected:?}, file has {found:?}"
            ),
        }
    }
}

/// Why a checkpoint could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be opened or read.
    #[error("cannot read {}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid checkpoint (corrupt, truncated, unsupported dtype).
    #[error("{}: {message}", file.display())]
    Format {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Keys or shapes of the file do not match the module.
    #[error("{}: {} key problem(s): {}", file.display(), problems.len(), summarize(problems))]
    KeyMismatch {
        /// The file.
        file: PathBuf,
        /// Every problem found.
        problems: Vec<KeyProblem>,
    },
    /// A configuration file beside the weights is missing or invalid.
    #[error("{}: invalid config", file.display())]
    Config {
        /// The config file (or the weights file whose config was refused).
        file: PathBuf,
        /// What is wrong.
        #[source]
        source: crate::models::ConfigError,
    },
}

fn summarize(problems: &[KeyProblem]) -> String {
    const SHOWN: usize = 5;
    let mut s = problems
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > SHOWN {
        s.push_str(&format!("; and {} more", problems.len() - SHOWN));
    }
    s
}
