//! A reference case directory: `config.json` + `io.safetensors` (+ weight files).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::Deserialize;

use super::ParityError;

/// Pass criterion for one tensor: `|got - ref| <= abs + rel * |ref|`, elementwise.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Tolerance {
    /// Absolute part.
    pub abs: f64,
    /// Relative part.
    pub rel: f64,
}

impl Tolerance {
    /// A tolerance from its two parts.
    pub const fn new(abs: f64, rel: f64) -> Self {
        Self { abs, rel }
    }

    /// Both parts multiplied by `factor` (e.g. for reduced precision).
    pub fn scaled(self, factor: f64) -> Self {
        Self {
            abs: self.abs * factor,
            rel: self.rel * factor,
        }
    }
}

/// Element data of a host tensor.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum HostData {
    /// 32-bit floats (every float tensor of the fixtures).
    F32(Vec<f32>),
    /// 64-bit integers (lengths, indices).
    I64(Vec<i64>),
    /// Bytes (images as H x W x 3).
    U8(Vec<u8>),
}

/// A tensor held on the host, as stored in `io.safetensors`.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Elements in row-major order.
    pub data: HostData,
}

impl HostTensor {
    /// A float tensor.
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self {
            shape,
            data: HostData::F32(data),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements converted to f32 (integers and bytes as their value).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            HostData::F32(v) => v.clone(),
            HostData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            HostData::U8(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// Elements converted to i64 (floats truncated).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            HostData::F32(v) => v.iter().map(|&x| x as i64).collect(),
            HostData::I64(v) => v.clone(),
            HostData::U8(v) => v.iter().map(|&x| x as i64).collect(),
        }
    }

    /// A float tensor of rank `D` on `device` (f32 values, backend's default float dtype).
    ///
    /// # Panics
    /// If the stored rank is not `D` (a bug in the caller's fixture handling).
    pub fn to_tensor<B: Backend, const D: usize>(&self, device: &B::Device) -> Tensor<B, D> {
        assert_eq!(
            self.shape.len(),
            D,
            "tensor of shape {:?} read as rank {D}",
            self.shape
        );
        Tensor::from_data(
            TensorData::new(self.to_f32_vec(), self.shape.clone()),
            device,
        )
    }

    /// Reads a float tensor back from a device (converted to f32).
    pub fn from_tensor<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Self {
        let shape = tensor.dims().to_vec();
        let data = tensor
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("converted to f32");
        Self::f32(shape, data)
    }
}

#[derive(Debug, Deserialize)]
struct RawConfig {
    component: String,
    tolerance: Tolerance,
    #[serde(default)]
    per_tensor_tolerance: BTreeMap<String, Tolerance>,
}

/// A reference case: what it runs, its tolerances, and its stored tensors.
#[derive(Debug, Clone)]
pub struct Case {
    dir: PathBuf,
    component: String,
    config: serde_json::Value,
    tolerance: Tolerance,
    per_tensor: BTreeMap<String, Tolerance>,
    tensors: BTreeMap<String, HostTensor>,
}

impl Case {
    /// Opens a case directory in the layout of the golden fixtures.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, ParityError> {
        let dir = dir.as_ref().to_path_buf();
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|source| ParityError::Io {
            file: config_path.clone(),
            source,
        })?;
        let config: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ParityError::Invalid {
                file: config_path.clone(),
                message: e.to_string(),
            })?;
        let raw: RawConfig =
            serde_json::from_value(config.clone()).map_err(|e| ParityError::Invalid {
                file: config_path.clone(),
                message: e.to_string(),
            })?;
        let tensors = read_io(&dir.join("io.safetensors"))?;
        Ok(Self {
            dir,
            component: raw.component,
            config,
            tolerance: raw.tolerance,
            per_tensor: raw.per_tensor_tolerance,
            tensors,
        })
    }

    /// The case directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A path inside the case directory.
    pub fn file(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// The component this case checks (`config.json` `component`).
    pub fn component(&self) -> &str {
        &self.component
    }

    /// The whole `config.json`.
    pub fn config(&self) -> &serde_json::Value {
        &self.config
    }

    /// The module's constructor config (`config.json` `config`), deserialised.
    pub fn module_config<T: serde::de::DeserializeOwned>(&self) -> Result<T, ParityError> {
        serde_json::from_value(self.config["config"].clone()).map_err(|e| ParityError::Invalid {
            file: self.dir.join("config.json"),
            message: format!("`config`: {e}"),
        })
    }

    /// Tolerance of one tensor: its override, else the case's.
    pub fn tolerance(&self, name: &str) -> Tolerance {
        self.per_tensor.get(name).copied().unwrap_or(self.tolerance)
    }

    /// Names of the stored tensors.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// A stored tensor.
    pub fn tensor(&self, name: &str) -> Result<&HostTensor, ParityError> {
        self.tensors
            .get(name)
            .ok_or_else(|| ParityError::MissingTensor {
                case: self.dir.clone(),
                name: name.to_string(),
            })
    }

    /// A stored float tensor on `device`.
    pub fn input<B: Backend, const D: usize>(
        &self,
        name: &str,
        device: &B::Device,
    ) -> Result<Tensor<B, D>, ParityError> {
        let t = self.tensor(name)?;
        if t.shape.len() != D {
            return Err(ParityError::Invalid {
                file: self.dir.join("io.safetensors"),
                message: format!("`{name}` has shape {:?}, expected rank {D}", t.shape),
            });
        }
        Ok(t.to_tensor(device))
    }
}

/// Reads every tensor of a safetensors file into host memory.
pub fn read_io(path: &Path) -> Result<BTreeMap<String, HostTensor>, ParityError> {
    let bytes = std::fs::read(path).map_err(|source| ParityError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    let invalid = |message: String| ParityError::Invalid {
        file: path.to_path_buf(),
        message,
    };
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| invalid(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data = match view.dtype() {
            safetensors::Dtype::F32 => HostData::F32(
                raw.chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                    .collect(),
            ),
            safetensors::Dtype::F64 => HostData::F32(
                raw.chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                    .collect(),
            ),
            safetensors::Dtype::I64 => HostData::I64(
                raw.chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect(),
            ),
            safetensors::Dtype::U8 => HostData::U8(raw.to_vec()),
            other => return Err(invalid(format!("`{name}`: unsupported dtype {other:?}"))),
        };
        out.insert(
            name.clone(),
            HostTensor {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(out)
}
