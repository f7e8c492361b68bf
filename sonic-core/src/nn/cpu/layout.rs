//! Materialising a permuted view (`swap_dims`, `permute`) as a contiguous tensor.
//!
//! burn-flex copies a view that does not collapse to two dimensions one element at a time
//! through a generic strided iterator (`StridedIter`: ~9% of a medium UNet forward, in the
//! head splits and the frame/token transposes). Here the view's dimensions are collapsed the
//! same way, then the last two are copied per outer index: whole rows with `copy_from_slice`
//! when the last dimension is dense, 16x16 tiles otherwise, in parallel over the outer
//! indices.

use rayon::prelude::*;

/// The elements of the view (`shape`, `strides` in elements, `offset`) over `src`, in
/// row-major order.
///
/// # Panics
/// If a stride is negative or the view reaches outside `src`.
pub(crate) fn contiguous(
    src: &[f32],
    shape: &[usize],
    strides: &[isize],
    offset: usize,
) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let mut dst = vec![0f32; n];
    if n == 0 {
        return dst;
    }
    assert!(
        strides.iter().all(|&s| s >= 0),
        "contiguous: negative strides"
    );
    let (shape, strides) = collapse(shape, strides);
    let reach = offset
        + shape
            .iter()
            .zip(&strides)
            .map(|(&d, &s)| (d - 1) * s)
            .sum::<usize>();
    assert!(
        reach < src.len(),
        "contiguous: view reaches {reach}, buffer has {}",
        src.len()
    );
    // Views of rank <= 2 are [1, 1, ..] padded to two dimensions.
    let rank = shape.len();
    let (rows, cols) = match rank {
        0 => (1, 1),
        1 => (1, shape[0]),
        _ => (shape[rank - 2], shape[rank - 1]),
    };
    let (rs, cs) = match rank {
        0 => (0, 0),
        1 => (0, strides[0]),
        _ => (strides[rank - 2], strides[rank - 1]),
    };
    let outer_shape = &shape[..rank.saturating_sub(2)];
    let outer_strides = &strides[..rank.saturating_sub(2)];
    let plane = rows * cols;
    let copy_plane = |index: usize, dst: &mut [f32]| {
        // The outer index's offset, by the odometer of the outer dimensions.
        let mut rem = index;
        let mut base = offset;
        for (&d, &s) in outer_shape.iter().zip(outer_strides).rev() {
            base += (rem % d) * s;
            rem /= d;
        }
        copy_2d(src, base, rows, cols, rs, cs, dst);
    };
    if plane >= 1 << 15 || n < 1 << 14 {
        // Large planes: split each plane by rows; tiny tensors: not worth the threads.
        dst.chunks_mut(plane)
            .enumerate()
            .for_each(|(i, d)| copy_plane(i, d));
    } else {
        dst.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(i, d)| copy_plane(i, d));
    }
    dst
}

/// Drops size-1 dimensions and merges neighbours that are contiguous with each other.
fn collapse(shape: &[usize], strides: &[isize]) -> (Vec<usize>, Vec<usize>) {
    let mut out_shape: Vec<usize> = Vec::with_capacity(shape.len());
    let mut out_strides: Vec<usize> = Vec::with_capacity(shape.len());
    for (&d, &s) in shape.iter().zip(strides) {
        if d == 1 {
            continue;
        }
        let s = s as usize;
        match (out_shape.last_mut(), out_strides.last_mut()) {
            (Some(pd), Some(ps)) if *ps == s * d => {
                *pd *= d;
                *ps = s;
            }
            _ => {
                out_shape.push(d);
                out_strides.push(s);
            }
        }
    }
    (out_shape, out_strides)
}

/// `dst[r * cols + c] = src[base + r * rs + c * cs]`.
fn copy_2d(
    src: &[f32],
    base: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
    dst: &mut [f32],
) {
    if cs == 1 {
        for (r, row) in dst.chunks_exact_mut(cols).enumerate() {
            let start = base + r * rs;
            row.copy_from_slice(&src[start..start + cols]);
        }
        return;
    }
    const TILE: usize = 16;
    for r0 in (0..rows).step_by(TILE) {
        let r1 = (r0 + TILE).min(rows);
        for c0 in (0..cols).step_by(TILE) {
            let c1 = (c0 + TILE).min(cols);
            for r in r0..r1 {
                let row = &mut dst[r * cols + c0..r * cols + c1];
                let start = base + r * rs;
                for (k, v) in row.iter_mut().enumerate() {
                    *v = src[start + (c0 + k) * cs];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row-major elements of `x` (`[d0, d1, ..]`, contiguous) permuted by `axes`.
    fn permuted(x: &[f32], shape: &[usize], axes: &[usize]) -> (Vec<f32>, Vec<usize>, Vec<isize>) {
        let mut strides = vec![1isize; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * shape[i + 1] as isize;
        }
        let new_shape: Vec<usize> = axes.iter().map(|&a| shape[a]).collect();
        let new_strides: Vec<isize> = axes.iter().map(|&a| strides[a]).collect();
        // The reference: walk every output index.
        let n = x.len();
        let mut out = Vec::with_capacity(n);
        let mut idx = vec![0usize; shape.len()];
        for _ in 0..n {
            let off: isize = idx
                .iter()
                .zip(&new_strides)
                .map(|(&i, &s)| i as isize * s)
                .sum();
            out.push(x[off as usize]);
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < new_shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        (out, new_shape, new_strides)
    }

    #[test]
    fn every_permutation_of_a_4d_tensor_matches_the_element_walk() {
        let shape = [3, 5, 17, 19];
        let x: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|i| i as f32)
            .collect();
        let perms = [
            [0, 1, 2, 3],
            [0, 2, 1, 3],
            [0, 2, 3, 1],
            [0, 3, 1, 2],
            [3, 2, 1, 0],
            [1, 0, 3, 2],
            [2, 0, 3, 1],
        ];
        for axes in perms {
            let (want, s, st) = permuted(&x, &shape, &axes);
            assert_eq!(contiguous(&x, &s, &st, 0), want, "{axes:?}");
        }
    }

    #[test]
    fn large_planes_offsets_and_unit_dimensions() {
        let shape = [2, 1, 300, 130];
        let x: Vec<f32> = (0..2 * 300 * 130 + 7).map(|i| i as f32).collect();
        let (want, s, st) = permuted(&x[7..], &shape, &[0, 1, 3, 2]);
        assert_eq!(contiguous(&x, &s, &st, 7), want);
        assert_eq!(contiguous(&x, &[], &[], 3), vec![3.0]);
        assert_eq!(contiguous(&x, &[4], &[2], 1), vec![1.0, 3.0, 5.0, 7.0]);
        assert!(contiguous(&x, &[0, 5], &[5, 1], 0).is_empty());
    }

    #[test]
    #[should_panic(expected = "reaches")]
    fn a_view_past_the_buffer_is_refused() {
        contiguous(&[0.0; 10], &[3, 4], &[4, 1], 0);
    }
}
