//! A checkpoint file opened lazily: names, shapes and dtypes up front, data on demand.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use burn::module::ParamId;
use burn::tensor::{DType, Shape, TensorData};
use burn_store::{TensorSnapshot, TensorSnapshotError};

use super::LoadError;

/// The on-disk formats Sonic's released weights come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointFormat {
    /// Hugging Face safetensors (VAE, CLIP image encoder, Whisper).
    Safetensors,
    /// A `torch.save` pickle, zip-based or legacy (`unet.pth`, `audio2token.pth`, `flownet.pkl`,
    /// `pytorch_model.bin`).
    Pytorch,
}

/// What happened to a key of the file when it was mapped onto a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAction {
    /// Keep the tensor under this (possibly renamed) module path.
    Keep(String),
    /// Deliberately leave the tensor out; the reason is reported by the loader.
    Drop(&'static str),
}

/// One tensor entry of a checkpoint.
#[derive(Clone)]
pub(crate) struct Entry {
    /// The key as written in the file.
    pub original: String,
    pub snapshot: TensorSnapshot,
}

/// A weight file opened without reading its tensor data.
///
/// Tensors are read one at a time when a module is loaded from it (see
/// [`load_module`](super::load_module)), so a 6 GB `unet.pth` is never held twice in memory.
pub struct Checkpoint {
    path: PathBuf,
    format: CheckpointFormat,
    /// Module path -> entry, after [`Checkpoint::map_keys`].
    entries: BTreeMap<String, Entry>,
    /// Keys deliberately left out, with the reason.
    dropped: Vec<(String, &'static str)>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("tensors", &self.entries.len())
            .field("dropped", &self.dropped.len())
            .finish()
    }
}

impl Checkpoint {
    /// Opens a safetensors or PyTorch file; the format is detected from the file's first bytes.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let format = detect_format(path)?;
        let entries = match format {
            CheckpointFormat::Safetensors => read_safetensors(path)?,
            CheckpointFormat::Pytorch => read_pytorch(path)?,
        };
        let entries = entries
            .into_iter()
            .map(|(original, snapshot)| (original.clone(), Entry { original, snapshot }))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            format,
            entries,
            dropped: Vec::new(),
        })
    }

    /// The file this checkpoint was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The detected file format.
    pub fn format(&self) -> CheckpointFormat {
        self.format
    }

    /// Number of tensors that will be mapped onto a module (dropped keys excluded).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no tensor is left to map.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Module paths of the tensors, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Shape of the tensor at a module path, as stored in the file.
    pub fn shape(&self, key: &str) -> Option<Vec<usize>> {
        self.entries.get(key).map(|e| e.snapshot.shape.to_vec())
    }

    /// Stored dtype of the tensor at a module path.
    pub fn dtype(&self, key: &str) -> Option<DType> {
        self.entries.get(key).map(|e| e.snapshot.dtype)
    }

    /// Keys deliberately left out by [`Checkpoint::map_keys`], with the reason.
    pub fn dropped(&self) -> &[(String, &'static str)] {
        &self.dropped
    }

    /// Renames or drops keys. Every key goes through `map` exactly once; two keys mapped to the
    /// same path are an error.
    pub fn map_keys(mut self, map: impl Fn(&str) -> KeyAction) -> Result<Self, LoadError> {
        let mut entries = BTreeMap::new();
        for (key, entry) in std::mem::take(&mut self.entries) {
            match map(&key) {
                KeyAction::Keep(new_key) => {
                    if let Some(previous) = entries.insert(new_key.clone(), entry) {
                        return Err(LoadError::Format {
                            file: self.path.clone(),
                            message: format!(
                                "keys `{}` and `{key}` both map to `{new_key}`",
                                previous.original
                            ),
                        });
                    }
                }
                KeyAction::Drop(reason) => self.dropped.push((entry.original, reason)),
            }
        }
        self.entries = entries;
        Ok(self)
    }

    /// Keeps the keys under `prefix` (with the prefix removed) and drops the others with `reason`.
    pub fn select_prefix(self, prefix: &str, reason: &'static str) -> Result<Self, LoadError> {
        self.map_keys(|key| match key.strip_prefix(prefix) {
            Some(rest) => KeyAction::Keep(rest.to_string()),
            None => KeyAction::Drop(reason),
        })
    }

    /// Reads one tensor's data, as stored (no dtype conversion, no layout change).
    pub fn read(&self, key: &str) -> Result<TensorData, LoadError> {
        let entry = self.entries.get(key).ok_or_else(|| LoadError::Format {
            file: self.path.clone(),
            message: format!("no tensor `{key}` in the checkpoint"),
        })?;
        self.read_entry(entry)
    }

    pub(crate) fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    pub(crate) fn read_entry(&self, entry: &Entry) -> Result<TensorData, LoadError> {
        entry.snapshot.to_data().map_err(|e| LoadError::Format {
            file: self.path.clone(),
            message: format!("cannot read tensor `{}`: {e:?}", entry.original),
        })
    }

    pub(crate) fn original_key<'a>(&'a self, key: &'a str) -> &'a str {
        self.entries
            .get(key)
            .map(|e| e.original.as_str())
            .unwrap_or(key)
    }
}

fn detect_format(path: &Path) -> Result<CheckpointFormat, LoadError> {
    let io = |source| LoadError::Io {
        file: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut head = [0u8; 9];
    let n = read_up_to(&mut file, &mut head).map_err(io)?;
    let head = &head[..n];
    // safetensors first: its 8-byte little-endian header length can start with 0x80 or "PK"
    // (a header of 0x..80 or 0x4b50 bytes), which would otherwise read as a pickle or a zip.
    // No torch.save output has `{` at byte 8 (zip: a version field; pickle: the magic number).
    if n == 9 && head[8] == b'{' {
        // safetensors: an 8-byte little-endian header length, then the JSON header.
        return Ok(CheckpointFormat::Safetensors);
    }
    if head.starts_with(b"PK") || head.first() == Some(&0x80) {
        // A zip archive (torch.save since 1.6) or a protocol-2+ pickle (legacy torch.save).
        return Ok(CheckpointFormat::Pytorch);
    }
    Err(LoadError::Format {
        file: path.to_path_buf(),
        message: "neither a safetensors file nor a PyTorch pickle (unrecognised first bytes)"
            .into(),
    })
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn read_pytorch(path: &Path) -> Result<BTreeMap<String, TensorSnapshot>, LoadError> {
    // The raw reader, not `PytorchStore`: the store renumbers non-contiguous indices
    // (`ff.net.2` -> `ff.net.1`), which would break the one-to-one key mapping.
    let reader = burn_store::pytorch::PytorchReader::new(path).map_err(|e| LoadError::Format {
        file: path.to_path_buf(),
        message: format!("cannot read PyTorch checkpoint: {e}"),
    })?;
    Ok(reader.into_tensors().into_iter().collect())
}

fn read_safetensors(path: &Path) -> Result<BTreeMap<String, TensorSnapshot>, LoadError> {
    let file = File::open(path).map_err(|source| LoadError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    // SAFETY: the file is opened read-only and only read through this map; a concurrent
    // truncation by another process would be a user error we cannot guard against.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| LoadError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    let mmap = Arc::new(mmap);
    let format_err = |message: String| LoadError::Format {
        file: path.to_path_buf(),
        message,
    };
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&mmap[..])
        .map_err(|e| format_err(format!("invalid safetensors header: {e}")))?;
    let data_start = 8 + u64::from_le_bytes(mmap[..8].try_into().expect("8 bytes")) as usize;
    let mut out = BTreeMap::new();
    for (name, info) in metadata.tensors() {
        let dtype = match info.dtype {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            safetensors::Dtype::F64 => DType::F64,
            safetensors::Dtype::I64 => DType::I64,
            safetensors::Dtype::I32 => DType::I32,
            safetensors::Dtype::U8 => DType::U8,
            other => {
                return Err(format_err(format!(
                    "tensor `{name}` has unsupported dtype {other:?}"
                )));
            }
        };
        let (begin, end) = info.data_offsets;
        let (begin, end) = (data_start + begin, data_start + end);
        if end > mmap.len() || begin > end {
            return Err(format_err(format!(
                "tensor `{name}` points outside the file (truncated download?)"
            )));
        }
        let shape = info.shape.clone();
        let map = Arc::clone(&mmap);
        let data_shape = shape.clone();
        let data_fn = Rc::new(move || -> Result<TensorData, TensorSnapshotError> {
            Ok(TensorData::from_bytes_vec(
                map[begin..end].to_vec(),
                data_shape.clone(),
                dtype,
            ))
        });
        let snapshot = TensorSnapshot::from_closure(
            data_fn,
            dtype,
            Shape::from(shape),
            name.split('.').map(str::to_string).collect(),
            Vec::new(),
            ParamId::new(),
        );
        out.insert(name.clone(), snapshot);
    }
    Ok(out)
}
