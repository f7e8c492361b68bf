//! Stride-1 convolutions as shifted GEMMs on the zero-padded NCHW input.
//!
//! For a kernel `kh x kw` and the input zero-padded to `hp x wp` per channel plane, output
//! pixel `(y, x)` of channel `o` is `sum over taps (ky, kx) and channels c of
//! W[o, c, ky, kx] * P[c, (y + ky) * wp + (x + kx)]`. Numbering the outputs over the padded
//! width, `j = y * wp + x`, every tap reads the padded planes at `j + ky * wp + kx`: for a
//! fixed tap that is a `cin x n` matrix with row stride `hp * wp` and column stride 1 — the
//! padded input itself, at an offset. So the convolution is one `[cout, cin] x [cin, n]` GEMM
//! per tap, accumulated into the output, with no im2col copy. The `wp - ow` columns past the
//! right edge of each row (`x >= ow`) are computed and dropped when the output is cropped:
//! 2 of every 18 at 16x16, 2 of 66 at 64x64.
//!
//! The work is split into chunks of `j` (per batch entry), small enough that the output chunk
//! stays in cache across the taps, run in parallel with rayon; each chunk's GEMMs run
//! single-threaded unless there are fewer chunks than threads.

use std::borrow::Cow;

use super::SharedMut;
use gemm::{Parallelism, gemm};
use rayon::prelude::*;

/// The shapes of one convolution: input `[batch, cin, h, w]`, weight `[cout, cin, kh, kw]`,
/// symmetric zero padding `(ph, pw)`, stride 1, dilation 1, one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub batch: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub ph: usize,
    pub pw: usize,
}

impl Geometry {
    /// The output's spatial size, or `None` when the kernel is larger than the padded input.
    pub(crate) fn output_hw(&self) -> Option<(usize, usize)> {
        let (hp, wp) = (self.h + 2 * self.ph, self.w + 2 * self.pw);
        (hp >= self.kh && wp >= self.kw).then(|| (hp + 1 - self.kh, wp + 1 - self.kw))
    }
}

/// The convolution of `x` (`[batch, cin, h, w]`, row-major) with `weight`
/// (`[cout, cin, kh, kw]`) plus `bias` (`[cout]`), row-major `[batch, cout, oh, ow]`.
///
/// # Panics
/// If the slices do not have the lengths `g` implies or the kernel does not fit (callers
/// check [`Geometry::output_hw`]).
pub(crate) fn conv2d(x: &[f32], weight: &[f32], bias: Option<&[f32]>, g: &Geometry) -> Vec<f32> {
    let Geometry {
        batch,
        cin,
        h,
        w,
        cout,
        kh,
        kw,
        ..
    } = *g;
    let (oh, ow) = g.output_hw().expect("kernel larger than the padded input");
    assert_eq!(x.len(), batch * cin * h * w, "conv2d input length");
    assert_eq!(weight.len(), cout * cin * kh * kw, "conv2d weight length");
    if let Some(bias) = bias {
        assert_eq!(bias.len(), cout, "conv2d bias length");
    }
    if use_columns(oh, ow) {
        conv2d_columns(x, weight, bias, g, oh, ow)
    } else {
        conv2d_shifted(x, weight, bias, g, oh, ow)
    }
}

/// The convolution as one GEMM per tap over the zero-padded input: output position
/// `(y, x)` of tap `(ky, kx)` reads the padded plane shifted by `ky * wp + kx`, so each tap's
/// product reads the input in place, without a gathered copy.
fn conv2d_shifted(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    g: &Geometry,
    oh: usize,
    ow: usize,
) -> Vec<f32> {
    let Geometry {
        batch,
        cin,
        h,
        w,
        cout,
        kh,
        kw,
        ph,
        pw,
    } = *g;
    let (hp, wp) = (h + 2 * ph, w + 2 * pw);
    let plane = hp * wp;
    let taps = kh * kw;
    // Output positions over the padded width; the last row's dropped columns read up to
    // `kw - 1` elements past the last plane.
    let n_total = oh * wp;
    let slack = kw - 1;

    // Weights as one [cout, cin] matrix per tap.
    let taps_weight: Cow<[f32]> = if taps == 1 {
        Cow::Borrowed(weight)
    } else {
        let mut t = vec![0f32; taps * cout * cin];
        t.par_chunks_mut(cout * cin)
            .enumerate()
            .for_each(|(tap, dst)| {
                for (o, row) in dst.chunks_exact_mut(cin).enumerate() {
                    let src = &weight[o * cin * taps..(o + 1) * cin * taps];
                    for (c, v) in row.iter_mut().enumerate() {
                        *v = src[c * taps + tap];
                    }
                }
            });
        Cow::Owned(t)
    };

    // The zero-padded input (the input itself when there is nothing to pad or overread).
    let padded: Cow<[f32]> = if ph == 0 && pw == 0 && slack == 0 {
        Cow::Borrowed(x)
    } else {
        let mut p = vec![0f32; batch * cin * plane + slack];
        p[..batch * cin * plane]
            .par_chunks_mut(plane)
            .zip(x.par_chunks(h * w))
            .for_each(|(dst, src)| {
                for (y, row) in src.chunks_exact(w).enumerate() {
                    let start = (y + ph) * wp + pw;
                    dst[start..start + w].copy_from_slice(row);
                }
            });
        Cow::Owned(p)
    };

    let threads = rayon::current_num_threads().max(1);
    let chunk = chunk_len(n_total, cout, batch, threads);
    let chunks = n_total.div_ceil(chunk);
    let inner = if batch * chunks < threads {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    let cropped = ow != wp;
    let mut out = vec![0f32; batch * cout * n_total];
    let out_ptr = SharedMut(out.as_mut_ptr());
    let out_ptr = &out_ptr;
    let (lhs_all, rhs_all) = (taps_weight.as_ptr() as usize, padded.as_ptr() as usize);
    (0..batch * chunks).into_par_iter().for_each(|task| {
        let (b, c) = (task / chunks, task % chunks);
        let j0 = c * chunk;
        let n = chunk.min(n_total - j0);
        // SAFETY: the destination is rows `b * cout .. (b + 1) * cout` of `out`, columns
        // `j0 .. j0 + n`: in bounds, and disjoint from every other task's. The right-hand
        // side reads `cin` rows of `n` elements starting `ky * wp + kx + j0` into batch entry
        // `b`'s planes: the last one ends at most `kw - 1` past the planes, which `slack`
        // covers. The left-hand side is tap `tap`'s `[cout, cin]` matrix.
        unsafe {
            let dst = out_ptr.0.add(b * cout * n_total + j0);
            for tap in 0..taps {
                let (ky, kx) = (tap / kw, tap % kw);
                let lhs = (lhs_all as *const f32).add(tap * cout * cin);
                let rhs = (rhs_all as *const f32).add(b * cin * plane + ky * wp + kx + j0);
                gemm(
                    cout,
                    n,
                    cin,
                    dst,
                    1,
                    n_total as isize,
                    tap > 0,
                    lhs,
                    1,
                    cin as isize,
                    rhs,
                    1,
                    plane as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    inner,
                );
            }
            if let (Some(bias), false) = (bias, cropped) {
                for (o, &bo) in bias.iter().enumerate() {
                    let row = std::slice::from_raw_parts_mut(dst.add(o * n_total), n);
                    row.iter_mut().for_each(|v| *v += bo);
                }
            }
        }
    });
    if !cropped {
        return out;
    }
    let mut cropped_out = vec![0f32; batch * cout * oh * ow];
    cropped_out
        .par_chunks_mut(oh * ow)
        .zip(out.par_chunks(n_total))
        .enumerate()
        .for_each(|(i, (dst, src))| {
            let bo = bias.map_or(0.0, |bias| bias[i % cout]);
            for (d, s) in dst.chunks_exact_mut(ow).zip(src.chunks_exact(wp)) {
                for (d, &s) in d.iter_mut().zip(&s[..ow]) {
                    *d = s + bo;
                }
            }
        });
    cropped_out
}

/// Whether the column path ([`conv2d_columns`]) suits this convolution better than shifted
/// GEMMs: small planes, where one GEMM per tap and image has too few columns (4x4 latents give
/// 24 padded columns per image) and repacks the whole weight for each.
///
/// Measured on one core (Intel Xeon family 6 model 207, AVX-512; the UNet's 3x3 convolutions
/// over 24 images), GFLOP/s shifted vs columns: 4x4 256->256 26.3 vs 42.9, 2x2 256->256 13.2
/// vs 29.9, 8x8 128->128 48.3 vs 37.9, 16x16 128->64 52.9 vs 34.6: at 4x4 and 2x2 the column
/// path runs 1.6-2.3x faster, at 8x8 and 16x16 the shifted GEMMs 1.1-1.5x.
fn use_columns(oh: usize, ow: usize) -> bool {
    oh * ow <= COLUMNS_MAX_PLANE
}

/// The largest output plane (`oh * ow`) that takes the column path.
const COLUMNS_MAX_PLANE: usize = 32;

/// The convolution as one GEMM per chunk of output positions taken across the whole batch:
/// the chunk's `[cin * kh * kw, n]` columns are gathered (im2col) into a buffer that stays in
/// cache, multiplied by the weight read as it is stored (`[cout, cin * kh * kw]`), and the
/// `[cout, n]` product scattered into the NCHW output with the bias.
fn conv2d_columns(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    g: &Geometry,
    oh: usize,
    ow: usize,
) -> Vec<f32> {
    let Geometry {
        batch,
        cin,
        h,
        w,
        cout,
        kh,
        kw,
        ph,
        pw,
    } = *g;
    let taps = kh * kw;
    let depth = cin * taps;
    let out_plane = oh * ow;
    let total = batch * out_plane;
    let threads = rayon::current_num_threads().max(1);
    // At most 256 positions (the gathered block, `depth * n` floats, stays within L2 for the
    // UNet's widths), at least 16, and two tasks per thread when there are that many.
    let chunk = total
        .div_ceil(2 * threads)
        .clamp(16, 256)
        .div_ceil(16)
        .saturating_mul(16)
        .min(total)
        .max(1);
    let chunks = total.div_ceil(chunk);
    let mut out = vec![0f32; batch * cout * out_plane];
    let out_ptr = SharedMut(out.as_mut_ptr());
    (0..chunks).into_par_iter().for_each(|task| {
        let q0 = task * chunk;
        let n = chunk.min(total - q0);
        let mut cols = vec![0f32; depth * n];
        // Gather: row `c * taps + ky * kw + kx`, column `q - q0` holds
        // x[b, c, y + ky - ph, x + kx - pw] (zero outside the input) for position
        // q = (b * oh + y) * ow + x.
        for (r, row) in cols.chunks_exact_mut(n).enumerate() {
            let (c, tap) = (r / taps, r % taps);
            let (ky, kx) = (tap / kw, tap % kw);
            let mut q = q0;
            while q < q0 + n {
                let (b, p) = (q / out_plane, q % out_plane);
                let (y, x0) = (p / ow, p % ow);
                let seg = (ow - x0).min(q0 + n - q);
                let dst = &mut row[q - q0..q - q0 + seg];
                let iy = (y + ky).wrapping_sub(ph);
                if iy < h {
                    let src = &x[((b * cin + c) * h + iy) * w..][..w];
                    for (i, d) in dst.iter_mut().enumerate() {
                        let ix = (x0 + i + kx).wrapping_sub(pw);
                        *d = if ix < w { src[ix] } else { 0.0 };
                    }
                }
                q += seg;
            }
        }
        let mut prod = vec![0f32; cout * n];
        // SAFETY: `prod` is `[cout, n]` row-major, `weight` `[cout, depth]`, `cols`
        // `[depth, n]`; every pointer and stride stays within those slices.
        unsafe {
            gemm(
                cout,
                n,
                depth,
                prod.as_mut_ptr(),
                1,
                n as isize,
                false,
                weight.as_ptr(),
                1,
                depth as isize,
                cols.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
        // Scatter by runs of positions within one image.
        let out_ptr = out_ptr.get();
        let mut q = q0;
        while q < q0 + n {
            let (b, p) = (q / out_plane, q % out_plane);
            let seg = (out_plane - p).min(q0 + n - q);
            for o in 0..cout {
                let bo = bias.map_or(0.0, |bias| bias[o]);
                let src = &prod[o * n + q - q0..][..seg];
                // SAFETY: image `b`, channel `o`, positions `p .. p + seg` of one plane: in
                // bounds, and every position belongs to exactly one task's chunk.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(out_ptr.add((b * cout + o) * out_plane + p), seg)
                };
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = s + bo;
                }
            }
            q += seg;
        }
    });
    out
}

/// How many output positions one task computes: at most ~256 KiB of output (so the chunk
/// stays in L2 across the taps), at least 64 positions, and small enough to give every thread
/// two tasks when the batch alone does not.
fn chunk_len(n_total: usize, cout: usize, batch: usize, threads: usize) -> usize {
    let cache_cap = (65_536 / cout.max(1)).max(64);
    let per_batch = (2 * threads).div_ceil(batch.max(1)).max(1);
    let for_threads = n_total.div_ceil(per_batch).max(64);
    let len = cache_cap.min(for_threads).min(n_total).max(1);
    // Whole vector registers where possible.
    if len >= 16 && len < n_total {
        len.div_ceil(16) * 16
    } else {
        len
    }
}

/// The transposed convolution with kernel 4x4, stride 2 and padding 1 (RIFE's x2 upsampling
/// heads) of `x` (`[batch, cin, h, w]`) with `weight` (`[cin, cout, 4, 4]`, PyTorch's
/// layout) plus `bias` (`[cout]`): row-major `[batch, cout, 2h, 2w]`.
///
/// Output row `2m + py` only sees input rows `m - 1 + py` and `m + py` (through kernel rows
/// `3 - py` and `1 - py`), and the same for columns: each of the four output phases
/// `(py, px)` is a 2x2 stride-1 convolution of the input. All four share the input, so they
/// run as one 2x2 convolution with padding 1 and `4 * cout` output channels ([`conv2d`]:
/// phase `(py, px)` is output `(m + py, n + px)` of channel block `2 * py + px`), and the
/// phases are interleaved into the output with the bias. The work is the transposed
/// convolution's own (16 products per input and output channel pair), with no scatter-add.
///
/// # Panics
/// If the slices do not have the lengths the shapes imply.
pub(crate) fn conv_transpose2d_k4s2(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    [batch, cin, h, w]: [usize; 4],
    cout: usize,
) -> Vec<f32> {
    assert_eq!(
        x.len(),
        batch * cin * h * w,
        "conv_transpose2d input length"
    );
    assert_eq!(
        weight.len(),
        cin * cout * 16,
        "conv_transpose2d weight length"
    );
    if let Some(bias) = bias {
        assert_eq!(bias.len(), cout, "conv_transpose2d bias length");
    }
    // Kernel row (or column) of tap `d` of phase `p`: 3, 1 for phase 0 and 2, 0 for phase 1.
    let k = |p: usize, d: usize| 3 - p - 2 * d;
    let phases_cout = 4 * cout;
    let mut phase_weight = vec![0f32; phases_cout * cin * 4];
    phase_weight
        .par_chunks_mut(cin * 4)
        .enumerate()
        .for_each(|(po, dst)| {
            let (phase, o) = (po / cout, po % cout);
            let (py, px) = (phase / 2, phase % 2);
            for (c, taps) in dst.chunks_exact_mut(4).enumerate() {
                for (tap, v) in taps.iter_mut().enumerate() {
                    let (dy, dx) = (tap / 2, tap % 2);
                    *v = weight[((c * cout + o) * 4 + k(py, dy)) * 4 + k(px, dx)];
                }
            }
        });
    let g = Geometry {
        batch,
        cin,
        h,
        w,
        cout: phases_cout,
        kh: 2,
        kw: 2,
        ph: 1,
        pw: 1,
    };
    let phases = conv2d(x, &phase_weight, None, &g);
    let (ph_h, ph_w) = (h + 1, w + 1);
    let (oh, ow) = (2 * h, 2 * w);
    let mut out = vec![0f32; batch * cout * oh * ow];
    out.par_chunks_mut(oh * ow)
        .enumerate()
        .for_each(|(bo, dst)| {
            let (b, o) = (bo / cout, bo % cout);
            let bias = bias.map_or(0.0, |bias| bias[o]);
            for (oy, row) in dst.chunks_exact_mut(ow).enumerate() {
                let (m, py) = (oy / 2, oy % 2);
                let src = |px: usize| {
                    let plane = (b * phases_cout + (2 * py + px) * cout + o) * ph_h * ph_w;
                    &phases[plane + (m + py) * ph_w + px..][..w]
                };
                let (even, odd) = (src(0), src(1));
                for ((pair, &e), &d) in row.chunks_exact_mut(2).zip(even).zip(odd) {
                    pair[0] = e + bias;
                    pair[1] = d + bias;
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one output at a time.
    fn reference(x: &[f32], weight: &[f32], bias: Option<&[f32]>, g: &Geometry) -> Vec<f32> {
        let (oh, ow) = g.output_hw().unwrap();
        let mut out = vec![0f32; g.batch * g.cout * oh * ow];
        for b in 0..g.batch {
            for o in 0..g.cout {
                for y in 0..oh {
                    for xo in 0..ow {
                        let mut acc = bias.map_or(0.0, |bias| f64::from(bias[o]));
                        for c in 0..g.cin {
                            for ky in 0..g.kh {
                                for kx in 0..g.kw {
                                    let (iy, ix) = (y + ky, xo + kx);
                                    if iy < g.ph
                                        || ix < g.pw
                                        || iy >= g.h + g.ph
                                        || ix >= g.w + g.pw
                                    {
                                        continue;
                                    }
                                    let xv =
                                        x[((b * g.cin + c) * g.h + iy - g.ph) * g.w + ix - g.pw];
                                    let wv = weight[((o * g.cin + c) * g.kh + ky) * g.kw + kx];
                                    acc += f64::from(xv) * f64::from(wv);
                                }
                            }
                        }
                        out[((b * g.cout + o) * oh + y) * ow + xo] = acc as f32;
                    }
                }
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_the_definition_for_every_kernel_shape_and_padding() {
        let cases = [
            // (batch, cin, h, w, cout, kh, kw, ph, pw)
            (2, 3, 7, 5, 4, 3, 3, 1, 1),
            (1, 5, 6, 6, 3, 3, 3, 0, 0),
            (3, 4, 8, 9, 6, 1, 1, 0, 0),
            (2, 6, 5, 12, 5, 3, 1, 1, 0),
            (1, 2, 9, 4, 3, 7, 7, 3, 3),
            (2, 3, 4, 4, 2, 2, 3, 1, 0),
            (1, 1, 1, 1, 1, 1, 1, 0, 0),
            (4, 17, 11, 13, 19, 3, 3, 1, 1),
            // Chunks of the column path that span images and rows, and several tasks.
            (40, 6, 4, 4, 7, 3, 3, 1, 1),
            (70, 5, 2, 2, 4, 3, 3, 1, 1),
            (9, 4, 8, 3, 5, 3, 1, 1, 0),
        ];
        for (i, &(batch, cin, h, w, cout, kh, kw, ph, pw)) in cases.iter().enumerate() {
            let g = Geometry {
                batch,
                cin,
                h,
                w,
                cout,
                kh,
                kw,
                ph,
                pw,
            };
            let x = values(batch * cin * h * w, i as u32);
            let weight = values(cout * cin * kh * kw, 100 + i as u32);
            let bias = values(cout, 200 + i as u32);
            let (oh, ow) = g.output_hw().unwrap();
            for bias in [None, Some(&bias[..])] {
                let want = reference(&x, &weight, bias, &g);
                let paths = [
                    ("dispatched", conv2d(&x, &weight, bias, &g)),
                    ("shifted", conv2d_shifted(&x, &weight, bias, &g, oh, ow)),
                    ("columns", conv2d_columns(&x, &weight, bias, &g, oh, ow)),
                ];
                for (path, got) in paths {
                    assert_eq!(got.len(), want.len(), "case {i} {path}");
                    for (k, (a, b)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                            "case {i} {path} {g:?} at {k}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }

    /// The transposed convolution's definition: every input pixel scatters its kernel.
    fn transposed_reference(
        x: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        [batch, cin, h, w]: [usize; 4],
        cout: usize,
    ) -> Vec<f32> {
        let (oh, ow) = (2 * h, 2 * w);
        let mut out = vec![0f64; batch * cout * oh * ow];
        for b in 0..batch {
            for o in 0..cout {
                for c in 0..cin {
                    for iy in 0..h {
                        for ix in 0..w {
                            let xv = f64::from(x[((b * cin + c) * h + iy) * w + ix]);
                            for ky in 0..4 {
                                for kx in 0..4 {
                                    let (oy, ox) = (2 * iy + ky, 2 * ix + kx);
                                    if oy < 1 || ox < 1 || oy > oh || ox > ow {
                                        continue;
                                    }
                                    let wv = f64::from(weight[((c * cout + o) * 4 + ky) * 4 + kx]);
                                    out[((b * cout + o) * oh + oy - 1) * ow + ox - 1] += xv * wv;
                                }
                            }
                        }
                    }
                }
            }
        }
        out.iter()
            .enumerate()
            .map(|(i, &v)| {
                (v + bias.map_or(0.0, |bias| f64::from(bias[(i / (oh * ow)) % cout]))) as f32
            })
            .collect()
    }

    #[test]
    fn transposed_k4s2_matches_the_definition() {
        for (i, &(batch, cin, h, w, cout)) in [
            (1, 1, 1, 1, 1),
            (2, 3, 5, 4, 2),
            (1, 6, 9, 7, 5),
            // Planes of the column path (2x3 phases) and of the shifted path.
            (3, 4, 2, 3, 3),
            (1, 8, 16, 12, 4),
        ]
        .iter()
        .enumerate()
        {
            let shape = [batch, cin, h, w];
            let x = values(batch * cin * h * w, 300 + i as u32);
            let weight = values(cin * cout * 16, 400 + i as u32);
            let bias = values(cout, 500 + i as u32);
            for bias in [None, Some(&bias[..])] {
                let want = transposed_reference(&x, &weight, bias, shape, cout);
                let got = conv_transpose2d_k4s2(&x, &weight, bias, shape, cout);
                assert_eq!(got.len(), want.len(), "case {i}");
                for (k, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                        "case {i} at {k}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn chunks_cover_the_output_and_respect_the_cache_cap() {
        for (n, cout, batch, threads) in [
            (288, 320, 75, 2),
            (16_640, 128, 1, 2),
            (5, 3, 1, 8),
            (100_000, 4, 2, 1),
        ] {
            let c = chunk_len(n, cout, batch, threads);
            assert!(c >= 1 && c <= n.max(1));
            assert!(c * cout <= 65_536 + 16 * cout || c <= 64);
        }
    }

    #[test]
    fn geometry_refuses_a_kernel_larger_than_the_padded_input() {
        let g = Geometry {
            batch: 1,
            cin: 1,
            h: 2,
            w: 2,
            cout: 1,
            kh: 5,
            kw: 1,
            ph: 1,
            pw: 0,
        };
        assert_eq!(g.output_hw(), None);
    }
}
