//! Sample-rate conversion to the 16 kHz that Whisper expects (rubato).
//!
//! The reference resamples with `librosa.load(path, sr=16000)`, i.e. libsoxr's `soxr_hq`: a
//! linear-phase low-pass whose passband ends at 91.3% and whose stopband starts at 100% of the
//! output Nyquist rate. libsoxr's multi-stage design is not reproducible outside itself, so this
//! module uses rubato's windowed-sinc resampler with a filter of the same shape: its -6 dB
//! point in the middle of soxr's transition band (95.7%) and a Blackman-Harris window long
//! enough (264 input samples) for the same transition width. The filter delay is trimmed and the
//! output sized exactly as librosa sizes it (`ceil(len * to / from)` samples).
//!
//! On the `log_mel` fixture (22.05 kHz speech) this reproduces librosa's waveform to a max
//! abs error of about 1.3e-4 (80 dB SNR); see `docs/media.md`.

use rubato::audioadapter_buffers::direct::SequentialSliceOfVecs;
use rubato::{
    Async, FixedAsync, Resampler, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

use super::decode::{DecodedAudio, decode_audio};
use crate::MediaError;

/// The sample rate of everything downstream of decoding (Whisper's rate).
pub const SAMPLE_RATE: u32 = 16_000;

/// Input samples per resampler call (bounds its working memory).
const CHUNK: usize = 4096;

/// The windowed-sinc filter matched to soxr_hq (see the module docs): 264 taps,
/// Blackman-Harris, -6 dB at 95.68% of the lower Nyquist rate, 1024 interpolated phases.
fn sinc_parameters() -> SincInterpolationParameters {
    SincInterpolationParameters {
        sinc_len: 264,
        f_cutoff: Some(0.9568),
        oversampling_factor: 4096,
        interpolation: SincInterpolationType::Cubic,
        window: WindowFunction::BlackmanHarris,
    }
}

/// Converts mono `samples` from `from` Hz to `to` Hz.
///
/// Returns exactly `ceil(samples.len() * to / from)` samples (librosa's length), aligned with
/// the input (the filter delay is removed). Equal rates return the input unchanged.
///
/// # Errors
/// [`MediaError::InvalidParameter`] for a zero rate, [`MediaError::Resample`] if rubato fails.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, MediaError> {
    if from == 0 || to == 0 {
        return Err(MediaError::invalid(
            "sample rate",
            format!("{from} Hz -> {to} Hz: rates must be positive"),
        ));
    }
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let fail = |message: String| MediaError::Resample { from, to, message };
    let out_len = (samples.len() as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
    let parameters = sinc_parameters();
    let mut resampler = Async::<f64>::new_sinc(
        f64::from(to) / f64::from(from),
        1.0,
        &parameters,
        CHUNK,
        1,
        FixedAsync::Input,
    )
    .map_err(|e| fail(e.to_string()))?;

    // rubato trims a whole number of output samples of filter delay, which leaves output k at
    // input time k * from / to + (delay + 1) * from / to - sinc_len / 2 (minus 1/oversampling).
    // Padding the input with `lead` zeros and dropping `skip` more outputs cancels that offset
    // exactly: choose the smallest `skip` that makes the offset a whole number of inputs.
    let (from64, to64) = (u64::from(from), u64::from(to));
    let delay = resampler.output_delay() as u64 + 1;
    let half = (parameters.sinc_len / 2) as u64;
    let skip = (0..to64)
        .find(|e| ((delay + e) * from64).is_multiple_of(to64))
        .expect("e = to - delay % to always works");
    let lead = ((delay + skip) * from64 / to64)
        .checked_sub(half)
        .ok_or_else(|| fail("filter delay shorter than half the filter".into()))?
        as usize;
    let tail = parameters.sinc_len;

    let mut padded = vec![0.0f64; lead + samples.len() + tail];
    for (dst, &s) in padded[lead..].iter_mut().zip(samples) {
        *dst = f64::from(s);
    }
    let input = vec![padded];
    let input_len = input[0].len();
    let capacity = resampler.process_all_needed_output_len(input_len);
    let mut output = vec![vec![0.0f64; capacity]];
    let adapter_in =
        SequentialSliceOfVecs::new(&input, 1, input_len).map_err(|e| fail(e.to_string()))?;
    let mut adapter_out = SequentialSliceOfVecs::new_mut(&mut output, 1, capacity)
        .map_err(|e| fail(e.to_string()))?;
    let (_, produced) = resampler
        .process_all_into_buffer(&adapter_in, &mut adapter_out, input_len, None)
        .map_err(|e| fail(e.to_string()))?;

    let skip = skip as usize;
    let end = produced.min(skip + out_len);
    let mut out: Vec<f32> = output[0][skip.min(end)..end]
        .iter()
        .map(|&s| s as f32)
        .collect();
    out.resize(out_len, 0.0);
    Ok(out)
}

/// Decodes an audio file and returns it as 16 kHz mono, like `librosa.load(path, sr=16000)`.
///
/// # Errors
/// Those of [`decode_audio`] and [`resample`].
pub fn load_speech(bytes: &[u8], name: &str) -> Result<Vec<f32>, MediaError> {
    let DecodedAudio {
        samples,
        sample_rate,
        ..
    } = decode_audio(bytes, name)?;
    resample(&samples, sample_rate, SAMPLE_RATE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_length_is_librosas() {
        for (len, from) in [(58_688usize, 22_050u32), (1, 44_100), (999, 48_000)] {
            let x = vec![0.25f32; len];
            let y = resample(&x, from, SAMPLE_RATE).unwrap();
            assert_eq!(y.len(), (len * 16_000).div_ceil(from as usize));
        }
    }

    #[test]
    fn a_low_tone_keeps_amplitude_and_phase() {
        let from = 44_100u32;
        let tone = |t: f64| (2.0 * std::f64::consts::PI * 440.0 * t).sin();
        let x: Vec<f32> = (0..44_100)
            .map(|i| tone(i as f64 / f64::from(from)) as f32)
            .collect();
        let y = resample(&x, from, SAMPLE_RATE).unwrap();
        // Away from the edges the output is the same tone sampled at 16 kHz.
        let worst = (2000..14_000)
            .map(|i| (f64::from(y[i]) - tone(i as f64 / 16_000.0)).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-3, "max error {worst}");
    }

    #[test]
    fn zero_rate_is_rejected() {
        assert!(matches!(
            resample(&[0.0], 0, 16_000),
            Err(MediaError::InvalidParameter { .. })
        ));
    }
}
