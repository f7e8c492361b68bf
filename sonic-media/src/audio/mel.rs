//! Whisper's log-mel spectrogram, exactly as transformers' `WhisperFeatureExtractor` (4.43,
//! torch path) computes it for Sonic.
//!
//! Per 30 s chunk (480 000 samples, the last one zero-padded): STFT with n_fft 400, hop 160, a
//! periodic Hann window and reflect padding of 200 samples each side (`torch.stft(center=True)`);
//! power spectrum with the last of the 3001 frames dropped; 80 Slaney-scale, Slaney-normalised
//! mel filters over 0-8 kHz; `log10(max(x, 1e-10))`; `max(x, chunk_max - 8)`; `(x + 4) / 4`.
//! Chunks are concatenated along time, giving `[80, 3000 * chunks]`.
//!
//! The reference computes in f32 (with f32 filters and window); this computes the FFT and the
//! sums in f64 from the same f32 filters and window, which stays well inside the fixture's
//! tolerance (its measured f32-vs-f64 deviation is 4.7e-5).

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

/// Parameters of the log-mel front end (the whisper-tiny `preprocessor_config.json`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogMelConfig {
    /// Input sample rate in Hz.
    pub sample_rate: u32,
    /// FFT length (and window length).
    pub n_fft: usize,
    /// Hop between frames in samples.
    pub hop_length: usize,
    /// Number of mel bands.
    pub n_mels: usize,
    /// Samples per chunk; each chunk is normalised on its own.
    pub chunk_samples: usize,
    /// Highest filter frequency in Hz (the lowest is 0).
    pub max_frequency: f64,
}

impl LogMelConfig {
    /// Whisper's front end (all Whisper sizes with 80 mels): 16 kHz, n_fft 400, hop 160,
    /// 80 mels to 8 kHz, 30 s chunks.
    pub const fn whisper() -> Self {
        Self {
            sample_rate: 16_000,
            n_fft: 400,
            hop_length: 160,
            n_mels: 80,
            chunk_samples: 480_000,
            max_frequency: 8_000.0,
        }
    }

    /// Frames per chunk (3000 for Whisper).
    pub const fn frames_per_chunk(&self) -> usize {
        self.chunk_samples / self.hop_length
    }

    /// Frequency bins of the one-sided spectrum (201 for Whisper).
    pub const fn frequency_bins(&self) -> usize {
        self.n_fft / 2 + 1
    }
}

impl Default for LogMelConfig {
    fn default() -> Self {
        Self::whisper()
    }
}

/// A log-mel spectrogram: `n_mels` rows of `n_frames` values, row-major
/// (the layout of the reference's `(1, 80, 3000 * K)` tensor without the batch axis).
#[derive(Debug, Clone, PartialEq)]
pub struct LogMel {
    /// Values, `data[mel * n_frames + frame]`.
    pub data: Vec<f32>,
    /// Number of mel bands (rows).
    pub n_mels: usize,
    /// Number of frames (columns): `3000 * chunks`.
    pub n_frames: usize,
}

/// One mel filter: its non-zero weights over consecutive frequency bins.
#[derive(Debug, Clone)]
struct MelBand {
    first_bin: usize,
    weights: Vec<f64>,
}

/// Computes Whisper log-mel features; build once, reuse for every clip.
#[derive(Clone)]
pub struct LogMelExtractor {
    config: LogMelConfig,
    window: Vec<f32>,
    filters: Vec<f32>,
    bands: Vec<MelBand>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl std::fmt::Debug for LogMelExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMelExtractor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LogMelExtractor {
    /// An extractor for `config`.
    pub fn new(config: LogMelConfig) -> Self {
        let window = periodic_hann(config.n_fft);
        let filters = slaney_mel_filters(
            config.frequency_bins(),
            config.n_mels,
            config.max_frequency,
            config.sample_rate,
        );
        let bins = config.frequency_bins();
        let bands = (0..config.n_mels)
            .map(|m| {
                let column: Vec<f64> = (0..bins)
                    .map(|k| f64::from(filters[k * config.n_mels + m]))
                    .collect();
                let first = column.iter().position(|&w| w != 0.0).unwrap_or(0);
                let last = column.iter().rposition(|&w| w != 0.0).unwrap_or(0);
                MelBand {
                    first_bin: first,
                    weights: column[first..=last.max(first)].to_vec(),
                }
            })
            .collect();
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(config.n_fft);
        Self {
            config,
            window,
            filters,
            bands,
            fft,
        }
    }

    /// Whisper's extractor ([`LogMelConfig::whisper`]).
    pub fn whisper() -> Self {
        Self::new(LogMelConfig::whisper())
    }

    /// The configuration.
    pub fn config(&self) -> &LogMelConfig {
        &self.config
    }

    /// The analysis window (`torch.hann_window(n_fft)`, periodic), as f32 like the reference.
    pub fn window(&self) -> &[f32] {
        &self.window
    }

    /// The mel filter bank as `[frequency_bins, n_mels]` row-major f32 (the reference's
    /// `WhisperFeatureExtractor.mel_filters` cast to f32).
    pub fn mel_filters(&self) -> &[f32] {
        &self.filters
    }

    /// Log-mel features of a 16 kHz mono waveform: `[n_mels, frames_per_chunk * chunks]` with
    /// `chunks = ceil(len / chunk_samples)` (no frame at all for an empty waveform).
    pub fn extract(&self, waveform: &[f32]) -> LogMel {
        let c = &self.config;
        let frames_per_chunk = c.frames_per_chunk();
        let chunks = waveform.len().div_ceil(c.chunk_samples);
        let n_frames = chunks * frames_per_chunk;
        let mut data = vec![0.0f32; c.n_mels * n_frames];
        for (index, chunk) in waveform.chunks(c.chunk_samples).enumerate() {
            let log_spec = self.chunk_log_mel(chunk);
            for m in 0..c.n_mels {
                let dst = m * n_frames + index * frames_per_chunk;
                data[dst..dst + frames_per_chunk]
                    .copy_from_slice(&log_spec[m * frames_per_chunk..(m + 1) * frames_per_chunk]);
            }
        }
        LogMel {
            data,
            n_mels: c.n_mels,
            n_frames,
        }
    }

    /// `[n_mels, frames_per_chunk]` features of one chunk (zero-padded to `chunk_samples`).
    fn chunk_log_mel(&self, chunk: &[f32]) -> Vec<f32> {
        let c = &self.config;
        let frames = c.frames_per_chunk();
        let pad = c.n_fft / 2;
        // Zero-padded chunk, then reflect padding (torch.stft center=True, pad_mode="reflect").
        let len = c.chunk_samples;
        let mut padded = vec![0.0f64; len + 2 * pad];
        for (dst, &s) in padded[pad..].iter_mut().zip(chunk) {
            *dst = f64::from(s);
        }
        for i in 0..pad {
            padded[pad - 1 - i] = padded[pad + 1 + i];
            padded[pad + len + i] = padded[pad + len - 2 - i];
        }

        let window: Vec<f64> = self.window.iter().map(|&w| f64::from(w)).collect();
        let mut frame_in = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0.0f64; c.frequency_bins()];
        let mut mel = vec![0.0f64; c.n_mels * frames];
        // Frame 3000 of the 3001 STFT frames is dropped by the reference, so never computed.
        for t in 0..frames {
            let start = t * c.hop_length;
            for ((dst, &x), &w) in frame_in
                .iter_mut()
                .zip(&padded[start..start + c.n_fft])
                .zip(&window)
            {
                *dst = x * w;
            }
            self.fft
                .process_with_scratch(&mut frame_in, &mut spectrum, &mut scratch)
                .expect("buffers come from the planner");
            for (p, z) in power.iter_mut().zip(&spectrum) {
                *p = z.norm_sqr();
            }
            for (m, band) in self.bands.iter().enumerate() {
                mel[m * frames + t] = band
                    .weights
                    .iter()
                    .zip(&power[band.first_bin..])
                    .map(|(w, p)| w * p)
                    .sum();
            }
        }

        let mut max = f64::NEG_INFINITY;
        for v in &mut mel {
            *v = v.max(1e-10).log10();
            max = max.max(*v);
        }
        let floor = max - 8.0;
        mel.iter()
            .map(|&v| ((v.max(floor) + 4.0) / 4.0) as f32)
            .collect()
    }
}

/// `torch.hann_window(n)` (periodic): `0.5 - 0.5 cos(2 pi i / n)`.
fn periodic_hann(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos()) as f32)
        .collect()
}

/// Hertz to mel on the Slaney scale (linear below 1 kHz, logarithmic above).
fn hertz_to_mel(hz: f64) -> f64 {
    const MIN_LOG_HZ: f64 = 1000.0;
    const MIN_LOG_MEL: f64 = 15.0;
    let log_step = 27.0 / 6.4f64.ln();
    if hz >= MIN_LOG_HZ {
        MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() * log_step
    } else {
        3.0 * hz / 200.0
    }
}

/// Mel (Slaney scale) to hertz.
fn mel_to_hertz(mel: f64) -> f64 {
    const MIN_LOG_HZ: f64 = 1000.0;
    const MIN_LOG_MEL: f64 = 15.0;
    let log_step = 6.4f64.ln() / 27.0;
    if mel >= MIN_LOG_MEL {
        MIN_LOG_HZ * (log_step * (mel - MIN_LOG_MEL)).exp()
    } else {
        200.0 * mel / 3.0
    }
}

/// transformers' `mel_filter_bank(norm="slaney", mel_scale="slaney")` from 0 Hz to
/// `max_frequency`: triangles between mel-spaced corner frequencies, each scaled by
/// `2 / (upper - lower)`; computed in f64, returned as `[bins, n_mels]` f32.
fn slaney_mel_filters(
    bins: usize,
    n_mels: usize,
    max_frequency: f64,
    sample_rate: u32,
) -> Vec<f32> {
    let mel_max = hertz_to_mel(max_frequency);
    let mel_min = hertz_to_mel(0.0);
    // np.linspace: start + i * step, with the last point exactly the stop.
    let mel_step = (mel_max - mel_min) / (n_mels + 1) as f64;
    let corners: Vec<f64> = (0..n_mels + 2)
        .map(|i| {
            let mel = if i == n_mels + 1 {
                mel_max
            } else {
                mel_min + i as f64 * mel_step
            };
            mel_to_hertz(mel)
        })
        .collect();
    let nyquist = f64::from(sample_rate / 2);
    let bin_step = nyquist / (bins - 1) as f64;
    let fft_freqs: Vec<f64> = (0..bins)
        .map(|k| {
            if k == bins - 1 {
                nyquist
            } else {
                k as f64 * bin_step
            }
        })
        .collect();
    let mut out = vec![0.0f32; bins * n_mels];
    for m in 0..n_mels {
        let (lower, centre, upper) = (corners[m], corners[m + 1], corners[m + 2]);
        let norm = 2.0 / (upper - lower);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let down = -(lower - f) / (centre - lower);
            let up = (upper - f) / (upper - centre);
            out[k * n_mels + m] = (0.0f64.max(down.min(up)) * norm) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_follows_the_chunk_count() {
        let x = LogMelExtractor::whisper();
        assert_eq!(x.extract(&[]).n_frames, 0);
        let one = x.extract(&vec![0.1; 1000]);
        assert_eq!(
            (one.n_mels, one.n_frames, one.data.len()),
            (80, 3000, 240_000)
        );
        assert_eq!(x.extract(&vec![0.0; 480_001]).n_frames, 6000);
    }

    #[test]
    fn silence_is_the_floor() {
        // log10(1e-10) = -10, max - 8 = -10 as well: (x + 4) / 4 = -1.5 everywhere.
        let mel = LogMelExtractor::whisper().extract(&[0.0; 16_000]);
        assert!(mel.data.iter().all(|&v| v == -1.5));
    }

    #[test]
    fn filters_are_slaney_normalised_triangles() {
        let f = slaney_mel_filters(201, 80, 8000.0, 16_000);
        // Every band has weight, and the top band reaches the last bins below 8 kHz.
        for m in 0..80 {
            assert!((0..201).any(|k| f[k * 80 + m] > 0.0), "band {m} is empty");
        }
        assert_eq!(hertz_to_mel(1000.0), 15.0);
        assert!((mel_to_hertz(hertz_to_mel(3210.0)) - 3210.0).abs() < 1e-9);
    }
}
