//! Strict loading of a [`Checkpoint`] into a burn module.
//!
//! Module paths follow the checkpoint keys (field names mirror PyTorch's), so the only
//! translation needed is burn-nn's own naming and layout:
//! - `Linear.weight` is `[in, out]` in burn and `[out, in]` in PyTorch (transposed on load);
//! - norm layers call their affine parameters `gamma`/`beta` (PyTorch: `weight`/`bias`);
//! - `PRelu.alpha` is PyTorch's `weight`.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::Backend;
use burn::tensor::{DType, Tensor, TensorData};

use super::{Checkpoint, KeyProblem, LoadError};

/// A parameter of a module as a checkpoint names and shapes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// Checkpoint key (PyTorch naming), e.g. `down_blocks.0.resnets.0.conv1.weight`.
    pub key: String,
    /// Shape in PyTorch layout.
    pub shape: Vec<usize>,
}

/// How to convert tensors while loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadOptions {
    /// Float dtype of the loaded parameters; `None` uses the device's default float dtype
    /// (f32 unless changed with `burn::tensor::set_default_dtypes`), whatever the file stores.
    pub dtype: Option<DType>,
}

impl LoadOptions {
    /// Loads every float parameter as `dtype` (e.g. an fp16 file into f32, or f32 into bf16).
    pub fn with_dtype(dtype: DType) -> Self {
        Self { dtype: Some(dtype) }
    }
}

/// What a successful load did.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    /// The file the tensors came from.
    pub file: std::path::PathBuf,
    /// Number of tensors loaded into the module.
    pub loaded: usize,
    /// Total number of scalar parameters loaded.
    pub parameters: usize,
    /// Keys of the file deliberately not loaded, with the reason.
    pub dropped: Vec<(String, String)>,
    /// Stored dtypes of the loaded tensors with their counts, e.g. `F16: 374`.
    pub stored_dtypes: BTreeMap<String, usize>,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} tensors, {} parameters",
            self.file.display(),
            self.loaded,
            self.parameters
        )?;
        for (dtype, count) in &self.stored_dtypes {
            write!(f, ", {count} stored as {dtype}")?;
        }
        if !self.dropped.is_empty() {
            write!(f, ", {} deliberately not loaded", self.dropped.len())?;
        }
        Ok(())
    }
}

/// Lists a module's parameters with checkpoint names and PyTorch-layout shapes.
///
/// Uses the parameters' lazy shapes: a module built with `config.init(&device)` is not
/// materialised, so this works for the full-size models without allocating their weights.
pub fn param_specs<B: Backend, M: Module<B>>(module: &M) -> Vec<ParamSpec> {
    let mut visitor = SpecVisitor::default();
    module.visit(&mut visitor);
    visitor.specs
}

/// Loads every parameter of `module` from `checkpoint`, strictly.
///
/// Fails with [`LoadError::KeyMismatch`] naming every key that is missing from the file,
/// left over in the file, or shaped differently (both shapes given), before any tensor data is
/// read. Keys dropped on purpose with [`Checkpoint::map_keys`] are reported, not loaded.
pub fn load_module<B: Backend, M: Module<B>>(
    module: M,
    checkpoint: &Checkpoint,
    options: LoadOptions,
) -> Result<(M, LoadReport), LoadError> {
    let specs = param_specs::<B, M>(&module);
    check_keys(&specs, checkpoint)?;

    let mut mapper = LoadMapper::<B> {
        checkpoint,
        options,
        path: Vec::new(),
        containers: Vec::new(),
        error: None,
        loaded: 0,
        parameters: 0,
        stored_dtypes: BTreeMap::new(),
        _backend: std::marker::PhantomData,
    };
    let module = module.map(&mut mapper);
    if let Some(error) = mapper.error {
        return Err(error);
    }
    let report = LoadReport {
        file: checkpoint.path().to_path_buf(),
        loaded: mapper.loaded,
        parameters: mapper.parameters,
        dropped: checkpoint
            .dropped()
            .iter()
            .map(|(k, r)| (k.clone(), r.to_string()))
            .collect(),
        stored_dtypes: mapper.stored_dtypes,
    };
    tracing::info!(%report, "loaded checkpoint");
    Ok((module, report))
}

/// Compares a module's expected keys and shapes with a checkpoint's, without reading data.
pub fn check_keys(specs: &[ParamSpec], checkpoint: &Checkpoint) -> Result<(), LoadError> {
    let mut problems = Vec::new();
    let mut expected = BTreeMap::new();
    for spec in specs {
        expected.insert(spec.key.as_str(), spec);
        match checkpoint.shape(&spec.key) {
            None => problems.push(KeyProblem::Missing {
                key: spec.key.clone(),
                expected: spec.shape.clone(),
            }),
            Some(found) if found != spec.shape => problems.push(KeyProblem::Shape {
                key: checkpoint.original_key(&spec.key).to_string(),
                expected: spec.shape.clone(),
                found,
            }),
            Some(_) => {}
        }
    }
    for key in checkpoint.keys() {
        if !expected.contains_key(key) {
            problems.push(KeyProblem::Unexpected {
                key: checkpoint.original_key(key).to_string(),
                found: checkpoint.shape(key).unwrap_or_default(),
            });
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LoadError::KeyMismatch {
            file: checkpoint.path().to_path_buf(),
            problems,
        })
    }
}

/// burn-nn naming -> checkpoint naming for one parameter.
fn checkpoint_name(container: &str, param: &str) -> String {
    let norm = matches!(
        container,
        "Struct:LayerNorm"
            | "Struct:GroupNorm"
            | "Struct:BatchNorm"
            | "Struct:InstanceNorm"
            | "Struct:RmsNorm"
    );
    match (norm, container, param) {
        (true, _, "gamma") => "weight".into(),
        (true, _, "beta") => "bias".into(),
        (_, "Struct:PRelu", "alpha") => "weight".into(),
        _ => param.into(),
    }
}

fn is_linear_weight(container: &str, param: &str) -> bool {
    container == "Struct:Linear" && param == "weight"
}

/// Tracks the module path the derive macros report while visiting or mapping.
#[derive(Default)]
struct PathTracker {
    path: Vec<String>,
    containers: Vec<String>,
}

impl PathTracker {
    fn enter(&mut self, name: &str, container: &str) {
        self.containers.push(container.to_string());
        // Enum variants (heterogeneous stages) are not part of PyTorch keys.
        if !container.starts_with("Enum:") {
            self.path.push(name.to_string());
        }
    }

    fn exit(&mut self, container: &str) {
        self.containers.pop();
        if !container.starts_with("Enum:") {
            self.path.pop();
        }
    }

    /// (checkpoint key, is a Linear weight) of the parameter currently visited.
    fn key(&self) -> (String, bool) {
        let container = self.containers.last().map(String::as_str).unwrap_or("");
        let (parents, param) = match self.path.split_last() {
            Some((last, parents)) => (parents, last.as_str()),
            None => (&[][..], ""),
        };
        let mut parts: Vec<String> = parents.to_vec();
        parts.push(checkpoint_name(container, param));
        (parts.join("."), is_linear_weight(container, param))
    }
}

#[derive(Default)]
struct SpecVisitor {
    tracker: PathTracker,
    specs: Vec<ParamSpec>,
}

impl SpecVisitor {
    fn push(&mut self, shape: Vec<usize>) {
        let (key, linear) = self.tracker.key();
        let shape = if linear {
            shape.into_iter().rev().collect()
        } else {
            shape
        };
        self.specs.push(ParamSpec { key, shape });
    }
}

impl<B: Backend> ModuleVisitor<B> for SpecVisitor {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.tracker.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.tracker.exit(container_type);
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.push(param.lazy_shape().to_vec());
    }
}

struct LoadMapper<'a, B: Backend> {
    checkpoint: &'a Checkpoint,
    options: LoadOptions,
    path: Vec<String>,
    containers: Vec<String>,
    error: Option<LoadError>,
    loaded: usize,
    parameters: usize,
    stored_dtypes: BTreeMap<String, usize>,
    _backend: std::marker::PhantomData<B>,
}

impl<B: Backend> LoadMapper<'_, B> {
    fn tracker_key(&self) -> (String, bool) {
        PathTracker {
            path: self.path.clone(),
            containers: self.containers.clone(),
        }
        .key()
    }

    fn load<const D: usize>(
        &mut self,
        key: &str,
        linear: bool,
        target_dtype: DType,
        device: &B::Device,
    ) -> Result<Tensor<B, D>, LoadError> {
        let entry = self
            .checkpoint
            .entry(key)
            .ok_or_else(|| LoadError::KeyMismatch {
                file: self.checkpoint.path().to_path_buf(),
                problems: vec![KeyProblem::Missing {
                    key: key.to_string(),
                    expected: Vec::new(),
                }],
            })?;
        let data = self.checkpoint.read_entry(entry)?;
        *self
            .stored_dtypes
            .entry(format!("{:?}", data.dtype))
            .or_default() += 1;
        self.parameters += data.num_elements();
        let data = convert_dtype(data, target_dtype).map_err(|message| LoadError::Format {
            file: self.checkpoint.path().to_path_buf(),
            message: format!("tensor `{key}`: {message}"),
        })?;
        // Transposed on the host so the device holds a contiguous `[in, out]` weight: a
        // transposed view is slower, and burn 0.21's fused GPU matmul computes `x @ w + b`
        // wrongly for a one-row `x` when `w` is a transposed view (docs/backends.md).
        let data = if linear {
            transpose_2d(data).map_err(|message| LoadError::Format {
                file: self.checkpoint.path().to_path_buf(),
                message: format!("tensor `{key}`: {message}"),
            })?
        } else {
            data
        };
        Ok(Tensor::<B, D>::from_data(data, (device, target_dtype)))
    }
}

/// `[rows, cols]` -> `[cols, rows]`, elements moved as they are (any dtype).
fn transpose_2d(data: TensorData) -> Result<TensorData, String> {
    let &[rows, cols] = data.shape.as_slice() else {
        return Err(format!(
            "expected a 2-d Linear weight, found shape {:?}",
            data.shape
        ));
    };
    // Typed, not as bytes: a byte vector would be copied once more by burn into an aligned
    // allocation (every page faulted in twice). `convert_dtype` has made it a float already.
    match data.dtype {
        DType::F32 => transpose_typed::<f32>(&data, rows, cols),
        DType::F64 => transpose_typed::<f64>(&data, rows, cols),
        DType::F16 => transpose_typed::<half::f16>(&data, rows, cols),
        DType::BF16 => transpose_typed::<half::bf16>(&data, rows, cols),
        dtype => Err(format!(
            "a Linear weight must be a float tensor, found {dtype:?}"
        )),
    }
}

fn transpose_typed<E: burn::tensor::Element>(
    data: &TensorData,
    rows: usize,
    cols: usize,
) -> Result<TensorData, String> {
    let src = data
        .as_slice::<E>()
        .map_err(|e| format!("cannot read the weight as {:?}: {e:?}", data.dtype))?;
    Ok(TensorData::new(
        transpose_tiled(src, rows, cols),
        [cols, rows],
    ))
}

/// The transpose of a row-major `[rows, cols]` matrix, in square tiles so that both the reads
/// and the writes stay within a few cache lines per row (a released UNet has ~1,000 Linear
/// weights, up to 5120 x 1280, transposed once at load).
///
/// # Panics
/// If `src` does not hold `rows * cols` elements.
fn transpose_tiled<E: Copy>(src: &[E], rows: usize, cols: usize) -> Vec<E> {
    const TILE: usize = 32;
    assert_eq!(
        src.len(),
        rows * cols,
        "transpose of a [{rows}, {cols}] matrix"
    );
    let mut out = Vec::with_capacity(rows * cols);
    let slots = &mut out.spare_capacity_mut()[..rows * cols];
    for r0 in (0..rows).step_by(TILE) {
        let r1 = (r0 + TILE).min(rows);
        for c0 in (0..cols).step_by(TILE) {
            let c1 = (c0 + TILE).min(cols);
            for r in r0..r1 {
                let row = &src[r * cols..(r + 1) * cols];
                for c in c0..c1 {
                    slots[c * rows + r].write(row[c]);
                }
            }
        }
    }
    // SAFETY: the tiles cover every (r, c) once, so all `rows * cols` slots were written.
    unsafe { out.set_len(rows * cols) };
    out
}

impl<B: Backend> ModuleMapper<B> for LoadMapper<'_, B> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.containers.push(container_type.to_string());
        if !container_type.starts_with("Enum:") {
            self.path.push(name.to_string());
        }
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.containers.pop();
        if !container_type.starts_with("Enum:") {
            self.path.pop();
        }
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if self.error.is_some() {
            return param;
        }
        let (key, linear) = self.tracker_key();
        let device = param.lazy_device();
        // Default: the device's default float dtype (f32 unless set, e.g. by sonic-backends).
        let target_dtype = self.options.dtype.unwrap_or_else(|| {
            burn::tensor::get_device_settings::<B>(&device)
                .float_dtype
                .into()
        });
        match self.load::<D>(&key, linear, target_dtype, &device) {
            Ok(tensor) => {
                self.loaded += 1;
                let id = param.id;
                param.transform_for_load(tensor, id)
            }
            Err(e) => {
                self.error = Some(e);
                param
            }
        }
    }
}

/// Converts float data between f64/f32/f16/bf16 (through f32 when both differ from it).
fn convert_dtype(data: TensorData, target: DType) -> Result<TensorData, String> {
    if data.dtype == target {
        return Ok(data);
    }
    let is_float = |d: DType| matches!(d, DType::F64 | DType::F32 | DType::F16 | DType::BF16);
    if !is_float(data.dtype) || !is_float(target) {
        return Err(format!(
            "cannot load a {:?} tensor as {:?}",
            data.dtype, target
        ));
    }
    Ok(data.convert_dtype(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_2d_moves_elements_of_every_float_width() {
        let data = TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3]);
        let t = transpose_2d(data).unwrap();
        assert_eq!(t.shape.as_slice(), &[3, 2]);
        assert_eq!(
            t.to_vec::<f32>().unwrap(),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );

        let half: Vec<half::f16> = [1.0f32, 2.0, 3.0, 4.0].map(half::f16::from_f32).to_vec();
        let t = transpose_2d(TensorData::new(half, [1, 4])).unwrap();
        assert_eq!(t.shape.as_slice(), &[4, 1]);
        assert_eq!(t.dtype, DType::F16);

        // Larger than a tile in both directions, not a multiple of it.
        let (rows, cols) = (45, 70);
        let values: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let t = transpose_2d(TensorData::new(values, [rows, cols])).unwrap();
        assert_eq!(t.shape.as_slice(), &[cols, rows]);
        let t = t.to_vec::<f32>().unwrap();
        for r in 0..rows {
            for c in 0..cols {
                assert_eq!(t[c * rows + r], (r * cols + c) as f32, "({r}, {c})");
            }
        }

        let err = transpose_2d(TensorData::new(vec![1i16; 6], [2, 3])).unwrap_err();
        assert!(err.contains("I16"), "{err}");

        let err = transpose_2d(TensorData::new(vec![1.0f32; 8], [2, 2, 2])).unwrap_err();
        assert!(err.contains("[2, 2, 2]"), "{err}");
    }
}
