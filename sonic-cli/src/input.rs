//! The portrait and speech files a command reads, or the demo's bundled samples.

use std::path::Path;

use sonic_service::UploadInput;

/// One input file: its bytes and extension.
#[derive(Debug)]
pub(crate) struct Input {
    pub(crate) bytes: Vec<u8>,
    pub(crate) ext: String,
}

impl Input {
    /// The file at `path`; its extension names the format hint and the stored key.
    pub(crate) fn read(path: &Path) -> Result<Self, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| format!("{} has no extension (png, wav ...)", path.display()))?;
        Ok(Self { bytes, ext })
    }

    /// The file at `path`, or when there is none the bundled `sample` with extension `ext`.
    pub(crate) fn or_sample(path: Option<&Path>, sample: &[u8], ext: &str) -> Result<Self, String> {
        match path {
            Some(path) => Self::read(path),
            None => Ok(Self {
                bytes: sample.to_vec(),
                ext: ext.into(),
            }),
        }
    }
}

impl From<Input> for UploadInput {
    fn from(input: Input) -> Self {
        UploadInput {
            bytes: input.bytes.into(),
            ext: input.ext,
        }
    }
}
