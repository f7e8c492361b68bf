//! Runtime dtype helpers.

use burn::prelude::Backend;
use burn::tensor::{DType, Tensor};

/// `x` in `dtype`, cast only when it differs (so an f32 input meets f16 weights the way
/// PyTorch's `.to(dtype)` prepares it).
pub fn cast_to<B: Backend, const D: usize>(x: Tensor<B, D>, dtype: DType) -> Tensor<B, D> {
    if x.dtype() == dtype { x } else { x.cast(dtype) }
}
