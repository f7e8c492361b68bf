//! Matrix products with few rows, `[m, k] x [k, n]` for `m` up to [`MAX_ROWS`]: the audio
//! adapters' projections (one row per video frame), whose weights are hundreds of megabytes
//! read once per call; and [`many_rows`], `gemm` straight into the output for the rest.
//!
//! `gemm` (which burn-flex calls) runs these shapes at 30-45 GFLOP/s on one AVX-512 core:
//! with so few rows it keeps the weight unpacked and walks it down its columns, 256 rows of
//! `k` per block, one cache line from each of 256 pages at a time, which the hardware
//! prefetchers do not follow (docs/performance.md, "Few-row products"). Here the weight is
//! read in blocks of [`KC`] rows: each micro-kernel call takes a `[KC, 32]` tile of it, a
//! `[rows, KC]` strip of `a` (at most 12 rows, broadcast one value at a time) and keeps the
//! `[rows, 32]` tile of the output in registers. The tiles of one block of rows sweep the
//! weight's columns left to right, so only `KC` rows stream at once. Measured on the
//! adapters' shapes (m = 25): 1.5-2x `gemm`'s speed.
//!
//! AVX-512F only (checked at run time); [`few_rows`] returns `None` elsewhere and the caller
//! runs burn's matmul.

#[cfg(target_arch = "x86_64")]
use super::SharedMut;
use rayon::prelude::*;

/// The most rows [`few_rows`] takes; more rows reuse each weight tile enough for `gemm`'s
/// packed kernels.
pub(crate) const MAX_ROWS: usize = 48;

/// Rows of the weight per block: the number of weight rows streaming at once.
#[cfg(target_arch = "x86_64")]
const KC: usize = 32;
/// Columns per block of the output a task sweeps before the next block of `k`.
#[cfg(target_arch = "x86_64")]
const NC: usize = 4096;
/// Columns per micro-kernel tile (two 16-lane vectors).
#[cfg(target_arch = "x86_64")]
const NR: usize = 32;
/// Most rows per micro-kernel call (24 accumulators of the 32 registers).
#[cfg(target_arch = "x86_64")]
const MR: usize = 12;

/// `a · b + bias`, row-major `[m, n]`, for `a` row-major `[m, k]`, `b` a `[k, n]` matrix
/// with unit column stride and row stride `b_row_stride` (a column range of a wider matrix:
/// GEGLU's halves) and `bias` `[n]`, by one `gemm` call writing straight into the output with
/// the bias as its starting value: the products with many rows (the UNet's projections and
/// feed-forwards). burn-flex's matmul allocates its output through a zeroed byte buffer that
/// it then copies to realign (a tenth of the UNet's profile), and adds the bias in a second
/// pass.
///
/// # Panics
/// If the slices are too short for `m`, `k`, `n` and `b_row_stride`, or `b_row_stride < n`.
pub(crate) fn many_rows(
    a: &[f32],
    b: &[f32],
    b_row_stride: usize,
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f32> {
    assert_eq!(a.len(), m * k, "a is [m, k]");
    assert!(b_row_stride >= n, "b's rows overlap");
    if k > 0 && n > 0 {
        assert!(
            b.len() >= (k - 1) * b_row_stride + n,
            "b is [k, n] with the row stride"
        );
    }
    let mut out = match bias {
        Some(bias) => {
            assert_eq!(bias.len(), n, "bias is [n]");
            let mut out = Vec::with_capacity(m * n);
            for _ in 0..m {
                out.extend_from_slice(bias);
            }
            out
        }
        None => vec![0f32; m * n],
    };
    if m == 0 || n == 0 || k == 0 {
        return out;
    }
    let parallelism = if rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `out` is `[m, n]` row-major, `a` `[m, k]` row-major, `b` `k` rows of `n`
    // values `b_row_stride` apart; the asserts above keep every access within the slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            bias.is_some(),
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            b_row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    out
}

/// `a · b + bias`, row-major `[m, n]`, for `a` row-major `[m, k]`, `b` row-major `[k, n]`
/// and `bias` `[n]`; `None` when the CPU has no AVX-512F or `m` is 0 or above [`MAX_ROWS`].
///
/// # Panics
/// If the slices' lengths do not match `m`, `k` and `n`.
pub(crate) fn few_rows(
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
) -> Option<Vec<f32>> {
    assert_eq!(a.len(), m * k, "a is [m, k]");
    assert_eq!(b.len(), k * n, "b is [k, n]");
    if let Some(bias) = bias {
        assert_eq!(bias.len(), n, "bias is [n]");
    }
    if m == 0 || m > MAX_ROWS || k == 0 || n == 0 {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return None;
        }
        let mut out = vec![0f32; m * n];
        // Tasks own disjoint column ranges (whole tiles), as many as there are threads.
        let tiles = n.div_ceil(NR);
        let tasks = rayon::current_num_threads().clamp(1, tiles);
        let per_task = tiles.div_ceil(tasks);
        let out_ptr = SharedMut(out.as_mut_ptr());
        (0..tasks).into_par_iter().for_each(|task| {
            let start = (task * per_task * NR).min(n);
            let end = ((task + 1) * per_task * NR).min(n);
            if start < end {
                // SAFETY: AVX-512F was detected above; the task writes only columns
                // `start..end` of `out`, which is `[m, n]` as `few_rows_avx512` expects.
                unsafe { few_rows_avx512(a, b, out_ptr, m, k, n, start, end) };
            }
        });
        if let Some(bias) = bias {
            out.par_chunks_mut(n).for_each(|row| {
                for (o, &v) in row.iter_mut().zip(bias) {
                    *o += v;
                }
            });
        }
        Some(out)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// Columns `start..end` of `out = a · b` (`out` row-major `[m, n]`, overwritten).
///
/// # Safety
/// The CPU has AVX-512F; `out` points to `m * n` floats of which no other thread touches
/// columns `start..end`; `a` is `[m, k]`, `b` is `[k, n]`, `start <= end <= n`.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn few_rows_avx512(
    a: &[f32],
    b: &[f32],
    out: SharedMut,
    m: usize,
    k: usize,
    n: usize,
    start: usize,
    end: usize,
) {
    // Rows per call, balanced: 25 rows run as 9 + 8 + 8, not 12 + 12 + 1.
    let per_call = m.div_ceil(m.div_ceil(MR));
    let mut j0 = start;
    while j0 < end {
        let j1 = (j0 + NC).min(end);
        let mut k0 = 0;
        while k0 < k {
            let kc = KC.min(k - k0);
            let mut j = j0;
            while j < j1 {
                let cols = NR.min(j1 - j);
                let mut i = 0;
                while i < m {
                    let rows = per_call.min(m - i);
                    // SAFETY: the tile `[i..i + rows, j..j + cols]` of `out`, rows
                    // `k0..k0 + kc` of `b` and the matching strip of `a` are in bounds.
                    unsafe {
                        tile(
                            rows,
                            Tile {
                                kc,
                                a: a.as_ptr().add(i * k + k0),
                                lda: k,
                                b: b.as_ptr().add(k0 * n + j),
                                ldb: n,
                                c: out.0.add(i * n + j),
                                ldc: n,
                                cols,
                                accumulate: k0 > 0,
                            },
                        )
                    };
                    i += rows;
                }
                j += cols;
            }
            k0 += kc;
        }
        j0 = j1;
    }
}

/// One micro-kernel call's operands.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Tile {
    /// Depth of the product.
    kc: usize,
    /// `rows x kc` strip of `a`, row stride `lda`.
    a: *const f32,
    lda: usize,
    /// `kc x cols` tile of `b`, row stride `ldb`.
    b: *const f32,
    ldb: usize,
    /// `rows x cols` tile of the output, row stride `ldc`.
    c: *mut f32,
    ldc: usize,
    /// 1..=32 columns.
    cols: usize,
    /// Add to the output tile (a later block of `k`) instead of overwriting it.
    accumulate: bool,
}

/// [`kernel`] instantiated for `rows` (1..=12).
///
/// # Safety
/// As [`kernel`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile(rows: usize, t: Tile) {
    macro_rules! rows {
        ($($r:literal)*) => {
            match rows {
                // SAFETY: forwarded from the caller.
                $($r => unsafe { kernel::<$r>(t) },)*
                _ => unreachable!("1..=MR rows per call"),
            }
        };
    }
    rows!(1 2 3 4 5 6 7 8 9 10 11 12)
}

/// `c[R, cols] (+)= a[R, kc] · b[kc, cols]` with the output tile in `2 R` registers.
///
/// # Safety
/// The CPU has AVX-512F; every pointer in `t` covers its tile (`R` rows of `a` and `c`, `kc`
/// rows of `b`, `t.cols` columns).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn kernel<const R: usize>(t: Tile) {
    use std::arch::x86_64::*;
    // Lanes of the second vector: all of them for a full tile, fewer at the right edge.
    let (m0, m1): (__mmask16, __mmask16) = if t.cols >= NR {
        (0xFFFF, 0xFFFF)
    } else if t.cols > 16 {
        (0xFFFF, (1u32 << (t.cols - 16)).wrapping_sub(1) as u16)
    } else {
        ((1u32 << t.cols).wrapping_sub(1) as u16, 0)
    };
    // SAFETY (all the block): loads and stores stay in the tiles the caller vouched for;
    // masked lanes are not accessed.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        if t.accumulate {
            for (r, acc) in acc.iter_mut().enumerate() {
                let c = t.c.add(r * t.ldc);
                acc[0] = _mm512_maskz_loadu_ps(m0, c);
                acc[1] = _mm512_maskz_loadu_ps(m1, c.add(16));
            }
        }
        for p in 0..t.kc {
            let b = t.b.add(p * t.ldb);
            let b0 = _mm512_maskz_loadu_ps(m0, b);
            let b1 = _mm512_maskz_loadu_ps(m1, b.add(16));
            for (r, acc) in acc.iter_mut().enumerate() {
                let a = _mm512_set1_ps(*t.a.add(r * t.lda + p));
                acc[0] = _mm512_fmadd_ps(a, b0, acc[0]);
                acc[1] = _mm512_fmadd_ps(a, b1, acc[1]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let c = t.c.add(r * t.ldc);
            _mm512_mask_storeu_ps(c, m0, acc[0]);
            _mm512_mask_storeu_ps(c.add(16), m1, acc[1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, in f64.
    fn reference(
        a: &[f32],
        b: &[f32],
        bias: Option<&[f32]>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut acc = bias.map_or(0.0, |bias| f64::from(bias[j]));
                for p in 0..k {
                    acc += f64::from(a[i * k + p]) * f64::from(b[p * n + j]);
                }
                out[i * n + j] = acc as f32;
            }
        }
        out
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        crate::nn::cpu::test_values(len, seed, 1.0)
    }

    #[test]
    fn matches_the_definition_on_ragged_shapes() {
        let avx512 = cfg!(target_arch = "x86_64") && std::arch::is_x86_feature_detected!("avx512f");
        // Rows 1..=48 (balanced groups, one-row calls), k across block edges (31, 32, 33,
        // 100), n with right-edge tiles of 1, 16, 17 and 31 columns and several tasks.
        for &(m, k, n) in &[
            (1, 31, 1),
            (2, 32, 16),
            (3, 33, 17),
            (12, 100, 31),
            (13, 64, 32),
            (25, 100, 97),
            (48, 65, 4096 + 48),
        ] {
            let (a, b, bias) = (values(m * k, 1), values(k * n, 2), values(n, 3));
            for bias in [None, Some(bias.as_slice())] {
                let got = few_rows(&a, &b, bias, m, k, n);
                assert_eq!(
                    got.is_some(),
                    avx512,
                    "{m}x{k}x{n}: taken exactly when AVX-512F is there"
                );
                let Some(got) = got else { continue };
                let want = reference(&a, &b, bias, m, k, n);
                for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{m}x{k}x{n} bias {}: [{}, {}] = {g}, want {w}",
                        bias.is_some(),
                        idx / n,
                        idx % n
                    );
                }
            }
        }
    }

    #[test]
    fn many_rows_matches_the_definition_on_a_column_range_of_a_wider_weight() {
        for &(m, k, n, width, start) in &[
            (1, 1, 1, 1, 0),
            (49, 17, 33, 33, 0),
            (300, 64, 40, 80, 40),
            (77, 129, 5, 16, 7),
            (0, 8, 4, 4, 0),
        ] {
            let (a, wide, wide_bias) = (values(m * k, 4), values(k * width, 5), values(width, 6));
            // The column range as its own dense matrix, for the definition.
            let b: Vec<f32> = (0..k)
                .flat_map(|p| wide[p * width + start..p * width + start + n].to_vec())
                .collect();
            let bias = &wide_bias[start..start + n];
            for bias in [None, Some(bias)] {
                let got = many_rows(&a, &wide[start..], width, bias, m, k, n);
                let want = reference(&a, &b, bias, m, k, n);
                assert_eq!(got.len(), want.len());
                for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{m}x{k}x{n} at {idx}: {g}, want {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn refuses_shapes_it_does_not_cover() {
        let a = values(49 * 8, 1);
        let b = values(8 * 8, 2);
        assert!(
            few_rows(&a, &b, None, 49, 8, 8).is_none(),
            "49 rows go to gemm"
        );
        assert!(
            few_rows(&[], &[], None, 0, 8, 0).is_none(),
            "empty products go to burn"
        );
    }
}
