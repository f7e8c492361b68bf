//! Lanczos resizing exactly as Pillow's `Image.resize(size, Image.LANCZOS)` does it for 8-bit
//! RGB (Pillow's `libImaging/Resample.c`), so the reference tensors are reproduced bit for bit.
//!
//! Pillow resamples separably, horizontal pass first (only over the rows the vertical pass
//! needs), rounding each pass to `u8`. Per output pixel it evaluates the Lanczos-3 kernel
//! (`sinc(x) * sinc(x / 3)` on `[-3, 3)`, stretched by the scale when shrinking) in f64 at the
//! input pixel centres, normalises the weights to sum 1, converts them to fixed point with 22
//! fractional bits (rounding half away from zero), accumulates from `1 << 21` (so the final
//! shift rounds) and clips to `[0, 255]`.

use image::RgbImage;

/// Fractional bits of Pillow's 8-bit fixed-point weights (`32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;
/// Lanczos-3 support in input pixels at scale 1.
const SUPPORT: f64 = 3.0;

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

fn lanczos(x: f64) -> f64 {
    if (-SUPPORT..SUPPORT).contains(&x) {
        sinc(x) * sinc(x / SUPPORT)
    } else {
        0.0
    }
}

/// Fixed-point weights of one axis: for output index `i`, the taps start at input
/// `first[i]` and are `weights[i * taps .. i * taps + count[i]]`.
struct AxisWeights {
    taps: usize,
    first: Vec<usize>,
    count: Vec<usize>,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for `in_size -> out_size`.
fn axis_weights(in_size: usize, out_size: usize) -> AxisWeights {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = SUPPORT * filter_scale;
    let taps = support.ceil() as usize * 2 + 1;
    let mut first = Vec::with_capacity(out_size);
    let mut count = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * taps];
    let mut k = vec![0.0f64; taps];
    for i in 0..out_size {
        let center = (i as f64 + 0.5) * scale;
        // C's (int) cast truncates toward zero; negative values are clamped to 0 right after.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin).min(taps);
        let mut sum = 0.0;
        for (x, w) in k.iter_mut().enumerate().take(n) {
            *w = lanczos(((x + xmin) as f64 - center + 0.5) / filter_scale);
            sum += *w;
        }
        for (x, &w) in k.iter().enumerate().take(n) {
            let w = if sum != 0.0 { w / sum } else { w };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            weights[i * taps + x] = if w < 0.0 {
                (fixed - 0.5) as i32
            } else {
                (fixed + 0.5) as i32
            };
        }
        first.push(xmin);
        count.push(n);
    }
    AxisWeights {
        taps,
        first,
        count,
        weights,
    }
}

/// Pillow's `clip8`: the accumulator back to a byte.
fn clip8(acc: i64) -> u8 {
    if acc >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if acc <= 0 {
        0
    } else {
        (acc >> PRECISION_BITS) as u8
    }
}

/// Resizes an RGB image to `width x height` with Pillow's Lanczos filter, bit-exact.
///
/// A same-size resize returns a copy (as Pillow does). Zero target sizes return an empty image.
pub fn resize_lanczos(src: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (in_w, in_h) = (src.width() as usize, src.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    if (out_w, out_h) == (in_w, in_h) {
        return src.clone();
    }
    if out_w == 0 || out_h == 0 || in_w == 0 || in_h == 0 {
        return RgbImage::new(width, height);
    }
    let horizontal = axis_weights(in_w, out_w);
    let vertical = axis_weights(in_h, out_h);

    // Horizontal pass over the rows the vertical pass reads.
    let (rows, row_offset) = if out_w != in_w {
        let (first_row, last_row) = if out_h != in_h {
            let last = out_h - 1;
            (
                vertical.first[0],
                vertical.first[last] + vertical.count[last],
            )
        } else {
            (0, in_h)
        };
        let mut tmp = vec![0u8; (last_row - first_row) * out_w * 3];
        let input = src.as_raw();
        for (r, y) in (first_row..last_row).enumerate() {
            let row = &input[y * in_w * 3..(y + 1) * in_w * 3];
            for x in 0..out_w {
                let k = &horizontal.weights[x * horizontal.taps..];
                let start = horizontal.first[x];
                let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
                for (t, &w) in k.iter().enumerate().take(horizontal.count[x]) {
                    let px = &row[(start + t) * 3..(start + t) * 3 + 3];
                    for c in 0..3 {
                        acc[c] += i64::from(px[c]) * i64::from(w);
                    }
                }
                let dst = &mut tmp[(r * out_w + x) * 3..(r * out_w + x) * 3 + 3];
                for c in 0..3 {
                    dst[c] = clip8(acc[c]);
                }
            }
        }
        (tmp, first_row)
    } else {
        (src.as_raw().clone(), 0)
    };
    if out_h == in_h {
        return RgbImage::from_raw(width, height, rows).expect("sized for the output");
    }

    // Vertical pass.
    let mut out = vec![0u8; out_w * out_h * 3];
    for y in 0..out_h {
        let k = &vertical.weights[y * vertical.taps..];
        let start = vertical.first[y] - row_offset;
        for x in 0..out_w {
            let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
            for (t, &w) in k.iter().enumerate().take(vertical.count[y]) {
                let at = ((start + t) * out_w + x) * 3;
                for c in 0..3 {
                    acc[c] += i64::from(rows[at + c]) * i64::from(w);
                }
            }
            let dst = &mut out[(y * out_w + x) * 3..(y * out_w + x) * 3 + 3];
            for c in 0..3 {
                dst[c] = clip8(acc[c]);
            }
        }
    }
    RgbImage::from_raw(width, height, out).expect("sized for the output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(100, 64), (64, 224), (75, 64), (7, 3)] {
            let a = axis_weights(i, o);
            for x in 0..o {
                let s: i64 = a.weights[x * a.taps..x * a.taps + a.count[x]]
                    .iter()
                    .map(|&w| i64::from(w))
                    .sum();
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= a.taps as i64,
                    "{i}->{o} at {x}"
                );
            }
        }
    }

    #[test]
    fn flat_images_stay_flat() {
        let src = RgbImage::from_pixel(37, 21, image::Rgb([10, 128, 250]));
        let out = resize_lanczos(&src, 64, 13);
        assert!(out.pixels().all(|p| p.0 == [10, 128, 250]));
        assert_eq!(resize_lanczos(&src, 37, 21), src);
    }
}
