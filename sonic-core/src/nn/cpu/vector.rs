//! Element-wise loops compiled for the CPU's vector extensions, picked at run time.
//!
//! The crate is built for baseline x86-64 (SSE2), where these loops would run 4 lanes wide
//! with scalar `exp`. Each kernel is written once as an `#[inline(always)]` body; [`dispatch`]
//! instantiates it inside `#[target_feature]` functions (AVX-512, AVX2 + FMA), where LLVM
//! vectorises it 16 or 8 lanes wide, and picks one with `is_x86_feature_detected!`.

/// Runs `$body` (an expression using the given bindings) compiled for the best vector
/// extension the CPU has.
macro_rules! dispatch {
    (|$($arg:ident: $ty:ty),*| $body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")]
            unsafe fn v4($($arg: $ty),*) { $body }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn v3($($arg: $ty),*) { $body }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has the features `v4` is compiled for.
                unsafe { v4($($arg),*) }
            } else if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has the features `v3` is compiled for.
                unsafe { v3($($arg),*) }
            } else {
                $body
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body
        }
    }};
}
pub(crate) use dispatch;

/// `e^x` to within ~2 ulp for `x` in `[-87, 88]` (clamped outside), branch-free so it
/// vectorises: `x = n ln 2 + r` with `|r| <= ln 2 / 2`, a degree-6 polynomial for `e^r`
/// (Cephes' `expf` coefficients) and `2^n` built in the exponent bits.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_2e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let e_r = p * r * r + r + 1.0;
    // `n` is a whole number in [-126, 127] for every x but NaN (whose NaN goes on through
    // `r`). Bounded again (`max`/`min` return the other operand for NaN), the unchecked
    // conversion is exact and, unlike `as` (saturating, NaN to 0: scalar code), vectorises
    // to one instruction.
    // SAFETY: the bounded value is finite and within i32's range.
    #[allow(clippy::manual_clamp)] // `clamp` keeps NaN, which the conversion must not see.
    let n_int: i32 = unsafe { n.max(-126.0).min(127.0).to_int_unchecked() };
    let two_n = f32::from_bits(((n_int + 127) as u32) << 23);
    e_r * two_n
}

/// `x * sigmoid(x)`, as `x / (1 + e^-x)`.
#[inline(always)]
pub(crate) fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// `erf(x)` to within 4e-7 absolute (a few f32 ulp of 1): Eigen's rational approximation on `[-4, 4]`
/// (odd degree-13 numerator, even degree-8 denominator), ±1 outside, branch-free.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = -2.726_142_3e-10_f32;
    let p = p * x2 + 2.770_681_4e-8;
    let p = p * x2 - 2.101_024e-6;
    let p = p * x2 - 5.692_506_4e-5;
    let p = p * x2 - 7.349_906_3e-4;
    let p = p * x2 - 2.954_6e-3;
    let p = p * x2 - 1.609_603_3e-2;
    let p = p * x;
    let q = -1.456_607_2e-5_f32;
    let q = q * x2 - 2.133_740_6e-4;
    let q = q * x2 - 1.682_827e-3;
    let q = q * x2 - 7.373_329e-3;
    let q = q * x2 - 1.426_474e-2;
    p / q
}

/// GELU as PyTorch's default (`approximate="none"`): `x / 2 * (1 + erf(x / sqrt 2))`.
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `dst[i] = a[i] * gelu(g[i])` (the GEGLU gate).
pub(crate) fn gelu_gate(a: &[f32], g: &[f32], dst: &mut [f32]) {
    dispatch!(|a: &[f32], g: &[f32], dst: &mut [f32]| {
        for ((d, &a), &g) in dst.iter_mut().zip(a).zip(g) {
            *d = a * gelu(g);
        }
    })
}

/// `dst[i] = gelu(src[i])`.
pub(crate) fn gelu_into(src: &[f32], dst: &mut [f32]) {
    dispatch!(|src: &[f32], dst: &mut [f32]| {
        for (d, &x) in dst.iter_mut().zip(src) {
            *d = gelu(x);
        }
    })
}

/// PReLU with one slope for the whole slice: `x` where `x >= 0`, `alpha * x` elsewhere (the
/// formula of burn's and PyTorch's `prelu`, so the values are the same bit for bit).
pub(crate) fn prelu_into(src: &[f32], alpha: f32, dst: &mut [f32]) {
    dispatch!(|src: &[f32], alpha: f32, dst: &mut [f32]| {
        for (d, &x) in dst.iter_mut().zip(src) {
            *d = if x >= 0.0 { x } else { alpha * x };
        }
    })
}

/// Every `len`-long row of `rows` replaced by its softmax, `e^(x - max) / sum`: a max pass,
/// an exp-and-sum pass and a scaling pass, each 16 lanes wide.
pub(crate) fn softmax_rows(rows: &mut [f32], len: usize) {
    debug_assert!(len > 0 && rows.len().is_multiple_of(len));
    dispatch!(|rows: &mut [f32], len: usize| {
        for row in rows.chunks_exact_mut(len) {
            let mut lanes = [f32::NEG_INFINITY; 16];
            let mut chunks = row.chunks_exact(16);
            for chunk in &mut chunks {
                for (lane, &v) in lanes.iter_mut().zip(chunk) {
                    *lane = if v > *lane { v } else { *lane };
                }
            }
            let max = chunks
                .remainder()
                .iter()
                .chain(&lanes)
                .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
            let mut sums = [0f32; 16];
            let mut chunks = row.chunks_exact_mut(16);
            for chunk in &mut chunks {
                for (sum, v) in sums.iter_mut().zip(chunk.iter_mut()) {
                    *v = exp(*v - max);
                    *sum += *v;
                }
            }
            let mut total = 0f32;
            for v in chunks.into_remainder() {
                *v = exp(*v - max);
                total += *v;
            }
            let inv = 1.0 / (sums.iter().sum::<f32>() + total);
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    })
}

/// The sum of `values`, accumulated in 16 f32 lanes per block of 4096 and across blocks in
/// f64 (vectorised, and exact enough for millions of elements).
#[inline(always)]
pub(crate) fn sum(values: &[f32]) -> f64 {
    sum_of(values, |v| v)
}

/// The sum of `(v - mean)^2` over `values`, accumulated as [`sum`] does.
#[inline(always)]
pub(crate) fn sum_sq_dev(values: &[f32], mean: f32) -> f64 {
    sum_of(values, |v| (v - mean) * (v - mean))
}

#[inline(always)]
fn sum_of(values: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut total = 0f64;
    for block in values.chunks(4096) {
        let mut lanes = [0f32; 16];
        let mut chunks = block.chunks_exact(16);
        for chunk in &mut chunks {
            for (lane, &v) in lanes.iter_mut().zip(chunk) {
                *lane += f(v);
            }
        }
        let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
        total += lanes.iter().map(|&l| f64::from(l)).sum::<f64>() + f64::from(tail);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_to_a_few_ulp() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp(x), x.exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-200.0) >= 0.0 && exp(-200.0) < 1e-37);
        assert!(exp(200.0).is_finite());
        assert!(exp(f32::NAN).is_nan(), "NaN goes through");
    }

    #[test]
    fn silu_matches_the_definition() {
        for x in [
            -100.0f32, -10.0, -1.5, -1e-3, 0.0, 1e-3, 0.7, 3.0, 25.0, 100.0,
        ] {
            let want = x / (1.0 + (-x).exp());
            assert!(
                (silu(x) - want).abs() <= 1e-6 * want.abs().max(1e-30),
                "{x}"
            );
        }
    }

    #[test]
    fn erf_and_gelu_match_the_definition() {
        let mut worst = 0f64;
        let mut x = -6.0f32;
        while x < 6.0 {
            let want = libm_erf(f64::from(x));
            worst = worst.max((f64::from(erf(x)) - want).abs());
            let gelu_want = 0.5 * f64::from(x) * (1.0 + libm_erf(f64::from(x) / 2f64.sqrt()));
            // Near -inf `1 + erf` cancels in f32 and the rational erf is off by ~1.5e-7 at
            // 4: under 1e-6 absolute there (the activations it feeds are O(1)).
            assert!(
                (f64::from(gelu(x)) - gelu_want).abs() < 1e-6 + 2e-7 * gelu_want.abs(),
                "gelu({x}) = {} vs {gelu_want}",
                gelu(x)
            );
            x += 0.001_3;
        }
        assert!(worst < 5e-7, "worst absolute erf error {worst}");
        let (a, g) = ([1.0, 2.0, -3.0], [0.5, -1.0, 2.0]);
        let mut dst = [0.0; 3];
        gelu_gate(&a, &g, &mut dst);
        for i in 0..3 {
            assert!((dst[i] - a[i] * gelu(g[i])).abs() < 1e-7);
        }
    }

    /// erf in f64 by its Maclaurin series (|x| < 3) and the continued fraction of erfc above.
    fn libm_erf(x: f64) -> f64 {
        let ax = x.abs();
        let r = if ax < 3.0 {
            let (mut term, mut sum, mut n) = (ax, ax, 0.0);
            loop {
                n += 1.0;
                term *= -ax * ax / n;
                let add = term / (2.0 * n + 1.0);
                sum += add;
                if add.abs() < 1e-17 {
                    break;
                }
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
            let mut f = ax;
            for k in (1..60).rev() {
                f = ax + (k as f64 / 2.0) / f;
            }
            1.0 - (-ax * ax).exp() / std::f64::consts::PI.sqrt() / f
        };
        r.copysign(x)
    }

    #[test]
    fn softmax_rows_match_the_definition() {
        // Row lengths with and without a 16-lane tail; large offsets (the max is subtracted).
        for len in [1usize, 5, 16, 37, 1500] {
            let mut rows: Vec<f32> = (0..3 * len)
                .map(|i| ((i * 7919) % 1013) as f32 * 0.02 - 10.0 + (i / len) as f32 * 50.0)
                .collect();
            let want: Vec<f64> = rows
                .chunks(len)
                .flat_map(|row| {
                    let max = row
                        .iter()
                        .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
                    let e: Vec<f64> = row.iter().map(|&v| (f64::from(v) - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    e.into_iter().map(move |e| e / sum)
                })
                .collect();
            softmax_rows(&mut rows, len);
            for (i, (&got, &want)) in rows.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(got) - want).abs() <= 1e-6 * want + 1e-9,
                    "len {len}, [{i}]: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn sums_are_accurate_over_a_million_values() {
        let values: Vec<f32> = (0..1_000_003)
            .map(|i| ((i % 1000) as f32) * 1e-3 + 1.0)
            .collect();
        let want: f64 = values.iter().map(|&v| f64::from(v)).sum();
        assert!((sum(&values) - want).abs() / want < 1e-6);
        let mean = (want / values.len() as f64) as f32;
        let want_sq: f64 = values.iter().map(|&v| f64::from(v - mean).powi(2)).sum();
        assert!((sum_sq_dev(&values, mean) - want_sq).abs() / want_sq < 1e-5);
    }
}
