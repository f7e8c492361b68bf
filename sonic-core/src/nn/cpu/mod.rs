//! Hand-written CPU kernels for the ops that dominate a generation on burn's `Flex` backend.
//!
//! burn-flex runs every convolution as a layout change, tiled im2col copies and a GEMM per
//! tile, and GroupNorm + SiLU as about eight separate memory passes with an allocation each
//! (docs/performance.md, "Where sonic loses"). With the `flex` feature (which `sonic-backends`'
//! `cpu` feature turns on), the model's convolutions and normalisations first try the kernels
//! here, and fall back to burn's own ops for every other backend, dtype or geometry:
//!
//! - [`conv`]: stride-1 convolutions as *shifted GEMMs* on the zero-padded NCHW input: one
//!   `gemm` call per kernel tap, reading the padded input in place (no im2col copy, no
//!   NCHW/NHWC conversion), accumulating into the output chunk while it stays in cache;
//!   small planes gather columns instead; RIFE's 4x4 stride-2 transposed convolutions run as
//!   one 2x2 convolution for their four output phases.
//! - [`prelu`]: PReLU with per-channel slopes in one pass (RIFE).
//! - [`layout`]: permuted views (head splits, frame/token transposes) materialised by rows
//!   or tiles instead of burn-flex's element-by-element walk.
//! - the GEGLU gate `a * gelu(g)` in one vectorised pass (burn-flex calls the scalar `erff`
//!   per element, then multiplies in a second pass).
//! - one-pass element-wise mixes: the spatio-temporal blend (whose temporal branch is a
//!   permuted view) and the audio cross-attention's `audio * mask * scale + clip`, which
//!   burn-flex runs as broadcast ops through its element-by-element iterator.
//! - [`sdpa`]: unmasked attention as two GEMMs per block of query rows with a
//!   vectorised softmax between them (burn-flex's calls libm's `expf` per score).
//! - [`matmul`]: products with few rows (the audio adapters' projections) through an AVX-512
//!   micro-kernel that streams the weight a few rows at a time.
//! - [`norm`]: GroupNorm with the affine parameters and an optional SiLU in one kernel: two
//!   read passes for the statistics and one write pass.
//!
//! The dispatch is a type check: the backend is `burn::backend::Flex` and the tensor a
//! contiguous f32 one. Nothing else changes for the callers; the parity suites run through
//! these kernels on the CPU and through burn's ops on the other backends.
//!
//! `SONIC_CPU_KERNELS=burn` in the environment (read once per process) sends everything to
//! burn's ops instead: the benches use it to measure the kernels against burn-flex in one run.

#[cfg(feature = "flex")]
pub(crate) mod conv;
#[cfg(feature = "flex")]
pub(crate) mod layout;
#[cfg(feature = "flex")]
pub(crate) mod matmul;
#[cfg(feature = "flex")]
pub(crate) mod norm;
#[cfg(feature = "flex")]
pub(crate) mod sdpa;
#[cfg(feature = "flex")]
mod vector;

#[cfg(feature = "flex")]
pub(crate) use flex::{
    attention, audio_mix, blend, contiguous, from_flex, gelu, gelu_gate, is_flex, linear,
    linear_columns, prelu, to_flex,
};

/// A pointer into an output buffer that rayon tasks share; each task writes a disjoint part
/// of it (the kernels that use it say which).
#[cfg(feature = "flex")]
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub(crate) *mut f32);
// SAFETY: only handed to tasks that write disjoint index ranges of the buffer.
#[cfg(feature = "flex")]
unsafe impl Send for SharedMut {}
#[cfg(feature = "flex")]
unsafe impl Sync for SharedMut {}

#[cfg(feature = "flex")]
impl SharedMut {
    /// The pointer (a method, so that closures capture the `Send` wrapper, not its field).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// `len` deterministic values spread over `[-amplitude, amplitude]` (a multiplicative hash of
/// the index and `seed`): the kernels' unit-test inputs.
#[cfg(all(test, feature = "flex"))]
pub(crate) fn test_values(len: usize, seed: u32, amplitude: f32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let h = (i as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed.wrapping_mul(40_503));
            ((h >> 8) % 2001) as f32 / 1000.0 * amplitude - amplitude
        })
        .collect()
}

/// Without the `flex` feature: `x` as it is.
#[cfg(not(feature = "flex"))]
pub(crate) fn contiguous<B: burn::prelude::Backend, const D: usize>(
    x: burn::tensor::Tensor<B, D>,
) -> burn::tensor::Tensor<B, D> {
    x
}

/// Without the `flex` feature: burn's GELU.
#[cfg(not(feature = "flex"))]
pub(crate) fn gelu<B: burn::prelude::Backend, const D: usize>(
    x: burn::tensor::Tensor<B, D>,
) -> burn::tensor::Tensor<B, D> {
    burn::tensor::activation::gelu(x)
}

/// Without the `flex` feature: burn's PReLU.
#[cfg(not(feature = "flex"))]
pub(crate) fn prelu<B: burn::prelude::Backend, const D: usize>(
    x: burn::tensor::Tensor<B, D>,
    alpha: burn::tensor::Tensor<B, 1>,
) -> burn::tensor::Tensor<B, D> {
    burn::tensor::activation::prelu(x, alpha)
}

/// Without the `flex` feature: `None` (burn's attention runs).
#[cfg(not(feature = "flex"))]
pub(crate) fn attention<B: burn::prelude::Backend>(
    _q: &burn::tensor::Tensor<B, 4>,
    _k: &burn::tensor::Tensor<B, 4>,
    _v: &burn::tensor::Tensor<B, 4>,
    _scale: Option<f64>,
) -> Option<burn::tensor::Tensor<B, 4>> {
    None
}

/// Without the `flex` feature: `layer.forward(x)`.
#[cfg(not(feature = "flex"))]
pub(crate) fn linear<B: burn::prelude::Backend, const D: usize>(
    layer: &burn::nn::Linear<B>,
    x: burn::tensor::Tensor<B, D>,
) -> burn::tensor::Tensor<B, D> {
    layer.forward(x)
}

#[cfg(feature = "flex")]
mod flex {
    use std::any::{Any, TypeId};
    use std::sync::OnceLock;

    use burn::prelude::Backend;
    use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
    use burn_flex::{Flex, FlexTensor};

    /// A contiguous f32 tensor of the `Flex` backend, taken out of its `Tensor` wrapper.
    pub(crate) struct FlexF32(FlexTensor);

    impl FlexF32 {
        /// The values, in row-major order.
        pub(crate) fn values(&self) -> &[f32] {
            self.0
                .as_slice::<f32>()
                .expect("FlexF32 is contiguous f32 by construction")
        }
    }

    /// Whether the kernels are on: unless `SONIC_CPU_KERNELS` is `burn`.
    fn enabled() -> bool {
        static ENABLED: OnceLock<bool> = OnceLock::new();
        *ENABLED.get_or_init(|| {
            let on = std::env::var("SONIC_CPU_KERNELS").map_or(true, |v| v != "burn");
            tracing::debug!(on, "sonic's CPU kernels (SONIC_CPU_KERNELS)");
            on
        })
    }

    /// Whether `B` is `Flex` and the kernels are on.
    pub(crate) fn is_flex<B: Backend>() -> bool {
        TypeId::of::<B>() == TypeId::of::<Flex>() && enabled()
    }

    /// `x` as a [`FlexF32`] when `B` is `Flex`, `x` is a contiguous f32 tensor and the kernels
    /// are on; otherwise `x` back, untouched, for the generic path.
    pub(crate) fn to_flex<B: Backend, const D: usize>(
        x: Tensor<B, D>,
    ) -> Result<FlexF32, Tensor<B, D>> {
        if TypeId::of::<B>() != TypeId::of::<Flex>() || x.dtype() != DType::F32 || !enabled() {
            return Err(x);
        }
        match x.into_primitive() {
            TensorPrimitive::Float(primitive) => {
                let boxed: Box<dyn Any> = Box::new(primitive);
                let tensor = *boxed
                    .downcast::<FlexTensor>()
                    .expect("B is Flex, so its float primitive is a FlexTensor");
                if tensor.as_slice::<f32>().is_some() {
                    Ok(FlexF32(tensor))
                } else {
                    Err(from_primitive(tensor))
                }
            }
            quantized => Err(Tensor::from_primitive(quantized)),
        }
    }

    /// `x` with contiguous storage: on `Flex` (f32, kernels on), a permuted view is copied by
    /// [`super::layout::contiguous`]; everything else is returned as it is (other backends
    /// handle views themselves).
    pub(crate) fn contiguous<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
        if TypeId::of::<B>() != TypeId::of::<Flex>() || x.dtype() != DType::F32 || !enabled() {
            return x;
        }
        let dims = x.dims();
        match x.into_primitive() {
            TensorPrimitive::Float(primitive) => {
                let boxed: Box<dyn Any> = Box::new(primitive);
                let tensor = *boxed
                    .downcast::<FlexTensor>()
                    .expect("B is Flex, so its float primitive is a FlexTensor");
                let layout = tensor.layout();
                if tensor.as_slice::<f32>().is_some() || layout.strides().iter().any(|&s| s < 0) {
                    return from_primitive(tensor);
                }
                let values = super::layout::contiguous(
                    tensor.storage::<f32>(),
                    &dims,
                    layout.strides(),
                    layout.start_offset(),
                );
                from_flex(values, dims)
            }
            quantized => Tensor::from_primitive(quantized),
        }
    }

    /// `layer.forward(x)`; on `Flex` (f32, contiguous, kernels on) through
    /// [`super::matmul::few_rows`] when `x` has at most [`super::matmul::MAX_ROWS`] rows and
    /// [`super::matmul::many_rows`] otherwise.
    ///
    /// # Shapes
    /// - `x`: `[..., d_input]`
    /// - returns `[..., d_output]`
    pub(crate) fn linear<B: Backend, const D: usize>(
        layer: &burn::nn::Linear<B>,
        x: Tensor<B, D>,
    ) -> Tensor<B, D> {
        let dims = x.dims();
        let [k, n] = layer.weight.dims();
        let m: usize = dims[..D - 1].iter().product();
        if !is_flex::<B>() || dims[D - 1] != k || m == 0 {
            return layer.forward(x);
        }
        let Ok(weight) = to_flex(layer.weight.val()) else {
            return layer.forward(x);
        };
        let bias = match layer.bias.as_ref().map(|bias| to_flex(bias.val())) {
            None => None,
            Some(Ok(bias)) => Some(bias),
            Some(Err(_)) => return layer.forward(x),
        };
        let x = match to_flex(x) {
            Ok(x) => x,
            Err(x) => return layer.forward(x),
        };
        let bias = bias.as_ref().map(FlexF32::values);
        let out = if m <= super::matmul::MAX_ROWS {
            super::matmul::few_rows(x.values(), weight.values(), bias, m, k, n)
        } else {
            None
        }
        .unwrap_or_else(|| super::matmul::many_rows(x.values(), weight.values(), n, bias, m, k, n));
        let mut shape = dims;
        shape[D - 1] = n;
        from_flex(out, shape)
    }

    /// `x · weight[:, start..start + n] + bias[start..start + n]` (a column range of a linear
    /// layer's weight, read in place: GEGLU's halves) through [`super::matmul::many_rows`] on
    /// `Flex` (f32, contiguous, kernels on), or `None`.
    ///
    /// # Shapes
    /// - `x`: `[m, k]`
    /// - `weight`: `[k, width]`, `bias`: `[width]`, `start + n <= width`
    /// - returns `[m, n]`
    pub(crate) fn linear_columns<B: Backend>(
        x: &Tensor<B, 2>,
        weight: &Tensor<B, 2>,
        bias: Option<&Tensor<B, 1>>,
        start: usize,
        n: usize,
    ) -> Option<Tensor<B, 2>> {
        let [m, k] = x.dims();
        let [wk, width] = weight.dims();
        if wk != k || start + n > width || bias.is_some_and(|b| b.dims() != [width]) {
            return None;
        }
        let x = to_flex(x.clone()).ok()?;
        let weight = to_flex(weight.clone()).ok()?;
        let bias = match bias {
            Some(bias) => Some(to_flex(bias.clone()).ok()?),
            None => None,
        };
        let weight = weight.values().get(start..)?;
        let bias = bias.as_ref().map(|b| &b.values()[start..start + n]);
        let out = super::matmul::many_rows(x.values(), weight, width, bias, m, k, n);
        Some(from_flex(out, [m, n]))
    }

    /// `softmax(q kᵀ · scale) v` (no mask; `scale` defaults to `1/sqrt(head_dim)`) through
    /// [`super::sdpa::attention`] on `Flex` (f32, contiguous, kernels on), or `None`.
    ///
    /// # Shapes
    /// - `q`: `[batch, heads, len_q, head_dim]`
    /// - `k`: `[batch, heads, len_k, head_dim]`
    /// - `v`: `[batch, heads, len_k, v_dim]`
    /// - returns `[batch, heads, len_q, v_dim]`
    pub(crate) fn attention<B: Backend>(
        q: &Tensor<B, 4>,
        k: &Tensor<B, 4>,
        v: &Tensor<B, 4>,
        scale: Option<f64>,
    ) -> Option<Tensor<B, 4>> {
        let [batch, heads, len_q, head_dim] = q.dims();
        let [kb, kh, len_k, kd] = k.dims();
        let [vb, vh, vl, v_dim] = v.dims();
        if !is_flex::<B>()
            || [kb, kh, kd] != [batch, heads, head_dim]
            || [vb, vh, vl] != [batch, heads, len_k]
            || len_k == 0
        {
            return None;
        }
        let (q, k, v) = (
            to_flex(q.clone()).ok()?,
            to_flex(k.clone()).ok()?,
            to_flex(v.clone()).ok()?,
        );
        let scale = scale.unwrap_or_else(|| 1.0 / (head_dim as f64).sqrt()) as f32;
        let heads_shape = super::sdpa::Heads {
            groups: batch * heads,
            len_q,
            len_k,
            head_dim,
            v_dim,
        };
        let out = super::sdpa::attention(q.values(), k.values(), v.values(), heads_shape, scale);
        Some(from_flex(out, [batch, heads, len_q, v_dim]))
    }

    /// GELU (PyTorch's exact form) in one vectorised pass on `Flex` (f32, contiguous, kernels
    /// on; burn-flex calls the scalar `erff` per element), burn's GELU otherwise.
    pub(crate) fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
        let dims = x.dims();
        match to_flex(x) {
            Ok(x) => {
                use rayon::prelude::*;
                const CHUNK: usize = 1 << 14;
                let src = x.values();
                let mut out = vec![0f32; src.len()];
                out.par_chunks_mut(CHUNK)
                    .zip(src.par_chunks(CHUNK))
                    .for_each(|(d, s)| super::vector::gelu_into(s, d));
                from_flex(out, dims)
            }
            Err(x) => burn::tensor::activation::gelu(x),
        }
    }

    /// PReLU, `x` where `x >= 0` and `alpha[c] * x` elsewhere with `c` the index along
    /// dimension 1 (or one `alpha` for every element), in one vectorised pass on `Flex` (f32,
    /// contiguous, kernels on; burn-flex walks the broadcast `alpha` element by element, which
    /// was a third of RIFE's time), burn's `prelu` otherwise. Same values as burn's, bit for bit.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, ...]`
    /// - `alpha`: `[channels]` or `[1]`
    pub(crate) fn prelu<B: Backend, const D: usize>(
        x: Tensor<B, D>,
        alpha: Tensor<B, 1>,
    ) -> Tensor<B, D> {
        let dims = x.dims();
        let [slopes] = alpha.dims();
        let channels = if D >= 2 { dims[1] } else { 1 };
        if slopes != 1 && slopes != channels {
            return burn::tensor::activation::prelu(x, alpha);
        }
        let Ok(a) = to_flex(alpha.clone()) else {
            return burn::tensor::activation::prelu(x, alpha);
        };
        let x = match to_flex(x) {
            Ok(x) => x,
            Err(x) => return burn::tensor::activation::prelu(x, alpha),
        };
        use rayon::prelude::*;
        let (src, a) = (x.values(), a.values());
        // One run of equal slope: the elements after dimension 1 (everything, for one slope).
        let run = if slopes == 1 {
            src.len().max(1)
        } else {
            dims[2..].iter().product::<usize>().max(1)
        };
        let mut out = vec![0f32; src.len()];
        out.par_chunks_mut(run)
            .zip(src.par_chunks(run))
            .enumerate()
            .with_min_len((1 << 14) / run + 1)
            .for_each(|(i, (d, s))| super::vector::prelu_into(s, a[i % slopes], d));
        from_flex(out, dims)
    }

    /// `a * gelu(g)` in one pass on `Flex` (f32, contiguous, same shape), or `None`.
    pub(crate) fn gelu_gate<B: Backend, const D: usize>(
        a: &Tensor<B, D>,
        g: &Tensor<B, D>,
    ) -> Option<Tensor<B, D>> {
        let dims = a.dims();
        if g.dims() != dims {
            return None;
        }
        let (a, g) = (to_flex(a.clone()).ok()?, to_flex(g.clone()).ok()?);
        let out = zip_map(a.values(), g.values(), super::vector::gelu_gate);
        Some(from_flex(out, dims))
    }

    /// `alpha * spatial + (1 - alpha) * temporal` in one pass on `Flex` (f32, same shape; the
    /// temporal branch may be a permuted view, copied by rows first), or `None`.
    pub(crate) fn blend<B: Backend, const D: usize>(
        spatial: &Tensor<B, D>,
        temporal: &Tensor<B, D>,
        alpha: f32,
    ) -> Option<Tensor<B, D>> {
        let dims = spatial.dims();
        if temporal.dims() != dims {
            return None;
        }
        let s = to_flex(spatial.clone()).ok()?;
        let t = to_flex(contiguous(temporal.clone())).ok()?;
        let beta = 1.0 - alpha;
        let out = zip_map(s.values(), t.values(), |s, t, d| {
            for ((d, &s), &t) in d.iter_mut().zip(s).zip(t) {
                *d = s * alpha + t * beta;
            }
        });
        Some(from_flex(out, dims))
    }

    /// The audio cross-attention's output mix, `audio * mask * scale + clip`, in one pass on
    /// `Flex`, or `None`.
    ///
    /// # Shapes
    /// - `audio`: `[g, q, c]`
    /// - `mask`: `[1, q, 1]` (per query)
    /// - `clip`: `[g, 1, c]` (broadcast over the queries) or `[g, q, c]`
    pub(crate) fn audio_mix<B: Backend>(
        audio: &Tensor<B, 3>,
        mask: Option<&Tensor<B, 3>>,
        scale: f32,
        clip: &Tensor<B, 3>,
    ) -> Option<Tensor<B, 3>> {
        let [g, q, c] = audio.dims();
        let [cg, cq, cc] = clip.dims();
        if cg != g || cc != c || (cq != 1 && cq != q) {
            return None;
        }
        if mask.is_some_and(|mask| mask.dims() != [1, q, 1]) {
            return None;
        }
        let a = to_flex(audio.clone()).ok()?;
        let m = match mask {
            Some(mask) => Some(to_flex(mask.clone()).ok()?),
            None => None,
        };
        let k = to_flex(clip.clone()).ok()?;
        let (a, k) = (a.values(), k.values());
        let m = m.as_ref().map(|m| m.values());
        let mut out = vec![0f32; g * q * c];
        use rayon::prelude::*;
        out.par_chunks_mut(c).enumerate().for_each(|(row, d)| {
            let (gi, qi) = (row / q, row % q);
            let src = &a[row * c..(row + 1) * c];
            let clip_row = if cq == 1 { gi } else { row };
            let add = &k[clip_row * c..(clip_row + 1) * c];
            match m {
                // Same order as the composed ops: ((audio * mask) * scale) + clip.
                Some(m) => {
                    let mq = m[qi];
                    for ((d, &v), &ad) in d.iter_mut().zip(src).zip(add) {
                        *d = v * mq * scale + ad;
                    }
                }
                None => {
                    for ((d, &v), &ad) in d.iter_mut().zip(src).zip(add) {
                        *d = v * scale + ad;
                    }
                }
            }
        });
        Some(from_flex(out, [g, q, c]))
    }

    /// `f(a_chunk, b_chunk, out_chunk)` over matching chunks of two equally long slices, in
    /// parallel: the element-wise kernels' common loop.
    fn zip_map(a: &[f32], b: &[f32], f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync) -> Vec<f32> {
        use rayon::prelude::*;
        const CHUNK: usize = 1 << 14;
        debug_assert_eq!(a.len(), b.len());
        let mut out = vec![0f32; a.len()];
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(d, (a, b))| f(a, b, d));
        out
    }

    fn from_primitive<B: Backend, const D: usize>(tensor: FlexTensor) -> Tensor<B, D> {
        let boxed: Box<dyn Any> = Box::new(tensor);
        let primitive = *boxed
            .downcast::<B::FloatTensorPrimitive>()
            .expect("only called when B is Flex");
        Tensor::from_primitive(TensorPrimitive::Float(primitive))
    }

    /// A tensor of `B` (which is `Flex`: only called after a successful [`to_flex`]) holding
    /// `values` in row-major order with `shape`.
    pub(crate) fn from_flex<B: Backend, const D: usize>(
        values: Vec<f32>,
        shape: [usize; D],
    ) -> Tensor<B, D> {
        from_primitive(FlexTensor::from_data(TensorData::new(values, shape)))
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::{Tensor, TensorData};

    fn tensor<const D: usize>(len: usize, seed: u32, shape: [usize; D]) -> Tensor<Flex, D> {
        let values = super::test_values(len, seed, 2.0);
        Tensor::from_data(TensorData::new(values, shape), &Default::default())
    }

    #[test]
    fn prelu_matches_burns_per_channel_and_shared_slopes() {
        let x = tensor(2 * 5 * 3 * 7, 1, [2, 5, 3, 7]);
        for alpha in [tensor(5, 2, [5]), tensor(1, 3, [1])] {
            let want = burn::tensor::activation::prelu(x.clone(), alpha.clone());
            let got = super::prelu(x.clone(), alpha);
            assert_eq!(got.dims(), want.dims());
            assert_eq!(got.into_data(), want.into_data(), "bit for bit");
        }
        // A permuted view (not contiguous) goes to burn's op and still agrees.
        let view = x.clone().swap_dims(2, 3);
        let alpha = tensor(5, 4, [5]);
        let want = burn::tensor::activation::prelu(view.clone(), alpha.clone());
        assert_eq!(super::prelu(view, alpha).into_data(), want.into_data());
    }
}
