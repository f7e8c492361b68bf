//! The face mask of the spatial audio cross-attention, resampled to each UNet token grid
//! exactly as Sonic's `IPAdapterMaskProcessor.downsample` (S:src/utils/mask_processer.py).
//!
//! The resampling runs on the host: it is a few thousand bicubic taps per call, and doing it
//! here pins down torch's exact kernel (A = -0.75, `align_corners=False`, clamped borders, no
//! antialiasing) independently of any backend's interpolation.

use burn::prelude::Backend;
use burn::tensor::{DType, Tensor, TensorData};

/// Why a face mask was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FaceMaskError {
    /// The mask has no pixel.
    #[error("face mask is empty ({height}x{width})")]
    Empty {
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
    },
    /// The pixel buffer does not hold `height * width` values.
    #[error("face mask of {height}x{width} needs {} values, got {found}", height * width)]
    Length {
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
        /// Values given.
        found: usize,
    },
    /// A mask tensor is not `[1, 1, H, W]` (one mask for the one audio adapter).
    #[error("face mask tensor must be [1, 1, H, W], got {shape:?}")]
    Shape {
        /// The shape given.
        shape: Vec<usize>,
    },
}

/// A single-channel pixel-space face mask (`face_mask[:, :1]` in Sonic's pipeline).
#[derive(Debug, Clone, PartialEq)]
pub struct FaceMask {
    height: usize,
    width: usize,
    pixels: Vec<f32>,
}

impl FaceMask {
    /// A mask from row-major pixels.
    pub fn new(pixels: Vec<f32>, height: usize, width: usize) -> Result<Self, FaceMaskError> {
        if height == 0 || width == 0 {
            return Err(FaceMaskError::Empty { height, width });
        }
        if pixels.len() != height * width {
            return Err(FaceMaskError::Length {
                height,
                width,
                found: pixels.len(),
            });
        }
        Ok(Self {
            height,
            width,
            pixels,
        })
    }

    /// Reads a `[1, 1, H, W]` mask tensor back to the host (once; reuse the result across
    /// denoising steps).
    pub fn from_tensor<B: Backend>(mask: Tensor<B, 4>) -> Result<Self, FaceMaskError> {
        let [n, c, height, width] = mask.dims();
        if n != 1 || c != 1 {
            return Err(FaceMaskError::Shape {
                shape: vec![n, c, height, width],
            });
        }
        let pixels = mask
            .cast(DType::F32)
            .into_data()
            .into_vec::<f32>()
            .expect("cast to f32");
        Self::new(pixels, height, width)
    }

    /// Rows.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The mask value of each of `num_queries` tokens (row-major token grid), as
    /// `IPAdapterMaskProcessor.downsample` computes it before repeating it over the batch and
    /// the channels: bicubic resize to [`mask_grid`], flatten, zero-pad to `num_queries`.
    pub fn downsample(&self, num_queries: usize) -> Vec<f32> {
        let (grid_h, grid_w) = mask_grid(self.height, self.width, num_queries);
        let mut tokens = resize_bicubic(&self.pixels, self.height, self.width, grid_h, grid_w);
        // mask_w = num_queries // mask_h, so the grid never exceeds num_queries; a smaller grid
        // (aspect ratio that does not fit) is zero-padded like the reference.
        tokens.resize(num_queries, 0.0);
        tokens
    }

    /// [`FaceMask::downsample`] as a device tensor ready to multiply `[n, num_queries, C]`.
    ///
    /// # Shapes
    /// - returns `[1, num_queries, 1]`
    pub fn tokens<B: Backend>(
        &self,
        num_queries: usize,
        device: &B::Device,
        dtype: DType,
    ) -> Tensor<B, 3> {
        let data = TensorData::new(self.downsample(num_queries), [1, num_queries, 1]);
        Tensor::<B, 3>::from_data(data, (device, DType::F32)).cast(dtype)
    }
}

/// The `(mask_h, mask_w)` grid the reference resamples an `height x width` mask to for
/// `num_queries` tokens:
/// `mask_h = int(sqrt(float32(num_queries / (width / height))))`, plus one when it does not
/// divide `num_queries`; `mask_w = num_queries // mask_h`.
///
/// Where the reference would divide by zero (`mask_h` = 0: fewer tokens than the aspect ratio
/// allows, e.g. one token for a landscape mask) `mask_h` is taken as 1.
pub fn mask_grid(height: usize, width: usize, num_queries: usize) -> (usize, usize) {
    let ratio = width as f64 / height as f64;
    let mask_h = ((num_queries as f64 / ratio) as f32).sqrt() as usize;
    let mask_h = mask_h.max(1);
    let mask_h = mask_h + usize::from(!num_queries.is_multiple_of(mask_h));
    (mask_h, num_queries / mask_h)
}

/// torch's `F.interpolate(x, size, mode="bicubic", align_corners=False)` on one channel, in
/// f32 with torch's CPU operation order (rows outer, columns inner).
pub fn resize_bicubic(
    src: &[f32],
    height: usize,
    width: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f32> {
    let rows = cubic_taps(height, out_h);
    let cols = cubic_taps(width, out_w);
    let mut out = Vec::with_capacity(out_h * out_w);
    for (row_idx, row_w) in &rows {
        for (col_idx, col_w) in &cols {
            let mut acc = 0.0f32;
            for (j, (&y, &wy)) in row_idx.iter().zip(row_w).enumerate() {
                let line = &src[y * width..(y + 1) * width];
                let mut inner = line[col_idx[0]] * col_w[0];
                for k in 1..4 {
                    inner += line[col_idx[k]] * col_w[k];
                }
                acc = if j == 0 { inner * wy } else { acc + inner * wy };
            }
            out.push(acc);
        }
    }
    out
}

type Taps = ([usize; 4], [f32; 4]);

/// Source indices (clamped to the border) and weights of each output position along one axis.
fn cubic_taps(input: usize, output: usize) -> Vec<Taps> {
    const A: f32 = -0.75;
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|i| {
            // Half-pixel centres; not clamped at 0 for cubic (torch's `cubic=true`).
            let real = scale * (i as f32 + 0.5) - 0.5;
            let floor = (real.floor() as i64).min(input as i64 - 1);
            let t = (real - floor as f32).clamp(0.0, 1.0);
            let weights = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
            let index = |j: i64| (floor - 1 + j).clamp(0, input as i64 - 1) as usize;
            ([index(0), index(1), index(2), index(3)], weights)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_of_the_512_levels_are_square() {
        for (n, side) in [(4096, 64), (1024, 32), (256, 16), (64, 8)] {
            assert_eq!(mask_grid(512, 512, n), (side, side));
        }
        // A 1024x576 (h x w) portrait mask on its 128x72 latent grid.
        assert_eq!(mask_grid(1024, 576, 128 * 72), (128, 72));
        // Padding branch: 37 tokens for a 64x96 mask -> 5x7 = 35 cells, two zeros appended.
        assert_eq!(mask_grid(64, 96, 37), (5, 7));
    }

    #[test]
    fn same_size_is_identity_and_constant_stays_constant() {
        let src: Vec<f32> = (0..12).map(|i| i as f32).collect();
        assert_eq!(resize_bicubic(&src, 3, 4, 3, 4), src);
        let ones = vec![1.0; 64 * 48];
        for v in resize_bicubic(&ones, 64, 48, 7, 5) {
            assert!((v - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn bad_masks_are_typed_errors() {
        assert_eq!(
            FaceMask::new(vec![], 0, 3),
            Err(FaceMaskError::Empty {
                height: 0,
                width: 3
            })
        );
        assert!(matches!(
            FaceMask::new(vec![0.0; 5], 2, 3),
            Err(FaceMaskError::Length { found: 5, .. })
        ));
    }
}
