//! Decoding audio files (WAV, MP3, FLAC, AAC/M4A, Ogg Vorbis) to mono samples with symphonia.

use std::io::Cursor;

use symphonia::core::codecs::CodecParameters;
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, Track, TrackType};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;

use super::mp4_edit::{EditWindow, audio_edit_window};
use crate::{AudioLimits, LongAudio, MediaError};

/// Decoded audio, mixed to one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    /// Mono samples in `[-1, 1]`: the mean of the channels, like `librosa.load(mono=True)`.
    pub samples: Vec<f32>,
    /// Sample rate of `samples` in Hz (the file's own rate).
    pub sample_rate: u32,
    /// Number of channels in the file before the mix.
    pub channels: usize,
    /// `Some(limit)` when the audio was longer than the limit and was cut there
    /// ([`LongAudio::Cut`]); `None` when `samples` is the whole file. A caller should tell its
    /// user (the pipeline turns it into a warning).
    pub truncated_at_secs: Option<f64>,
}

impl DecodedAudio {
    /// Duration in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate)
    }
}

/// Decodes a whole audio file held in memory and mixes it to mono, within the default
/// [`AudioLimits`] (0.2 s to 400 s, longer refused; 4 kHz to 384 kHz).
///
/// `name` is used in error messages and, through its extension, as a hint for the container
/// (the content is probed either way). Encoder priming is removed: MP3 (LAME/Xing gapless
/// info) and Ogg Vorbis by symphonia itself, AAC in MP4/M4A from the track's edit list, so
/// that an M4A decodes to the same length as the WAV it was made from. Raw ADTS `.aac` carries
/// no priming information and keeps its priming samples.
///
/// A truncated file (a WAV whose data chunk ends early, an MP3 cut mid-frame) decodes as far as
/// its data goes: the packets that are whole are kept, and an error comes only when no sample
/// at all could be decoded.
///
/// # Errors
/// [`MediaError::Empty`] for no bytes, [`MediaError::Unsupported`] for a container or codec
/// this build does not decode, [`MediaError::SampleRate`] for a rate outside the limits,
/// [`MediaError::AudioTooLong`] for audio over the duration limit, [`MediaError::AudioDecode`]
/// for corrupt data, [`MediaError::NonFiniteAudio`] for a NaN or infinite sample (float PCM),
/// [`MediaError::NoAudio`] when no sample comes out, [`MediaError::AudioTooShort`] for less than
/// 0.2 s.
pub fn decode_audio(bytes: &[u8], name: &str) -> Result<DecodedAudio, MediaError> {
    decode_audio_with(bytes, name, &AudioLimits::default())
}

/// [`decode_audio`] within the given limits.
///
/// Audio shorter than [`AudioLimits::min_duration_secs`] is refused after decoding (a short
/// file is cheap to decode): too short a clip would give a video whose audio track holds no
/// whole AAC frame.
///
/// The sample rate and the duration the container declares (WAV's data chunk, FLAC's
/// STREAMINFO, MP3's Xing/VBRI frame count, MP4's track duration) are checked before a packet
/// is decoded. The duration limit is applied again while decoding, so a stream whose header
/// says nothing (streamed WAV, ADTS) or lies stops at the limit: it is refused there
/// ([`LongAudio::Refuse`]) or cut there with [`DecodedAudio::truncated_at_secs`] set
/// ([`LongAudio::Cut`]). Either way at most the limit's worth of samples is ever held.
///
/// # Errors
/// Those of [`decode_audio`].
pub fn decode_audio_with(
    bytes: &[u8],
    name: &str,
    limits: &AudioLimits,
) -> Result<DecodedAudio, MediaError> {
    let Opened {
        mut format,
        track_id,
        params,
        ..
    } = open(bytes, name, limits)?;
    let decode_err = |source: SymphoniaError| decode_error(name, source);
    let checks = Checks { name, limits };
    let (rate_err, too_long, rate_ok) = (
        |rate| checks.rate_err(rate),
        |seconds, declared| checks.too_long(seconds, declared),
        |rate| checks.rate_ok(rate),
    );
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(decode_err)?;

    let mut interleaved: Vec<f32> = Vec::new();
    let mut samples: Vec<f32> = Vec::new();
    let mut sample_rate = params.sample_rate.unwrap_or(0);
    let mut channels = params.channels.as_ref().map_or(0, |c| c.count());
    let mut truncated_at_secs = None;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // A file cut short ends its last packet early: keep what was decoded.
            Err(SymphoniaError::IoError(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof && !samples.is_empty() =>
            {
                break;
            }
            Err(e) => return Err(decode_err(e)),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buffer = decoder.decode(&packet).map_err(decode_err)?;
        let frames = buffer.frames();
        if frames == 0 {
            continue;
        }
        let spec = buffer.spec();
        if spec.rate() != sample_rate || samples.is_empty() {
            if !rate_ok(spec.rate()) {
                return Err(rate_err(spec.rate()));
            }
            if !samples.is_empty() {
                return Err(MediaError::Unsupported {
                    name: name.into(),
                    reason: format!(
                        "the sample rate changes from {sample_rate} Hz to {} Hz",
                        spec.rate()
                    ),
                });
            }
        }
        sample_rate = spec.rate();
        channels = spec.channels().count().max(1);
        interleaved.clear();
        buffer.copy_to_vec_interleaved(&mut interleaved);
        let start = samples.len();
        mix_to_mono(&interleaved, channels, &mut samples);
        // Float PCM can hold NaN or infinities, which would poison the features and the track.
        if let Some(at) = samples[start..].iter().position(|s| !s.is_finite()) {
            return Err(MediaError::NonFiniteAudio {
                name: name.into(),
                index: start + at,
            });
        }
        // The limit, applied while decoding: whatever the header said, stop there.
        let max_frames = usize::try_from(limits.max_frames(sample_rate)).unwrap_or(usize::MAX);
        if samples.len() > max_frames {
            if limits.long_audio() == LongAudio::Refuse {
                return Err(too_long(
                    samples.len() as f64 / f64::from(sample_rate),
                    false,
                ));
            }
            samples.truncate(max_frames);
            truncated_at_secs = Some(limits.max_duration_secs());
            break;
        }
    }

    if samples.is_empty() || sample_rate == 0 {
        return Err(MediaError::NoAudio { name: name.into() });
    }
    if let Some(window) = audio_edit_window(bytes) {
        apply_edit_window(&mut samples, sample_rate, window);
        if samples.is_empty() {
            return Err(MediaError::NoAudio { name: name.into() });
        }
    }
    let seconds = samples.len() as f64 / f64::from(sample_rate);
    if seconds < limits.min_duration_secs() {
        return Err(MediaError::AudioTooShort {
            name: name.into(),
            seconds,
            min_secs: limits.min_duration_secs(),
        });
    }
    Ok(DecodedAudio {
        samples,
        sample_rate,
        channels,
        truncated_at_secs,
    })
}

/// What an audio file's container declares, read without decoding a packet (see
/// [`probe_audio`]).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct AudioHeader {
    /// The declared sample rate, if the container gives one.
    pub sample_rate: Option<u32>,
    /// The declared channel count, if the container gives one.
    pub channels: Option<usize>,
    /// The declared duration in seconds, if the container gives one (a streamed WAV or raw
    /// ADTS does not).
    pub declared_secs: Option<f64>,
}

impl AudioHeader {
    /// Bytes of the decoded samples (interleaved f32 plus the mono mix), when the header
    /// declares rate and duration; `limit_secs` caps the duration (decoding stops there).
    pub fn decoded_bytes(&self, limit_secs: f64) -> Option<u64> {
        let rate = f64::from(self.sample_rate?);
        let seconds = self.declared_secs?.min(limit_secs).max(0.0);
        let channels = self.channels.unwrap_or(1).max(1) as f64;
        Some(((channels + 1.0) * rate * seconds * 4.0) as u64)
    }
}

/// Reads an audio file's container header only: format, codec, sample rate and declared
/// duration are checked against `limits` as [`decode_audio_with`] checks them, without
/// decoding a packet, so that what decoding costs is known first (the pipeline checks its
/// memory budget with it).
///
/// # Errors
/// Those of [`decode_audio_with`] that the header can show: [`MediaError::Empty`],
/// [`MediaError::Unsupported`], [`MediaError::AudioDecode`] (an unreadable container),
/// [`MediaError::SampleRate`], [`MediaError::AudioTooLong`] (declared, with
/// [`LongAudio::Refuse`]).
pub fn probe_audio(
    bytes: &[u8],
    name: &str,
    limits: &AudioLimits,
) -> Result<AudioHeader, MediaError> {
    open(bytes, name, limits).map(|opened| opened.header)
}

/// The limit errors of one input.
struct Checks<'a> {
    name: &'a str,
    limits: &'a AudioLimits,
}

impl Checks<'_> {
    fn rate_ok(&self, rate: u32) -> bool {
        (self.limits.min_sample_rate()..=self.limits.max_sample_rate()).contains(&rate)
    }

    fn rate_err(&self, rate: u32) -> MediaError {
        MediaError::SampleRate {
            name: self.name.into(),
            rate,
            min: self.limits.min_sample_rate(),
            max: self.limits.max_sample_rate(),
        }
    }

    fn too_long(&self, seconds: f64, declared: bool) -> MediaError {
        MediaError::AudioTooLong {
            name: self.name.into(),
            seconds,
            declared,
            limit_secs: self.limits.max_duration_secs(),
        }
    }
}

/// A container whose header passed the checks, ready to decode.
struct Opened<'a> {
    format: Box<dyn symphonia::core::formats::FormatReader + 'a>,
    track_id: u32,
    params: symphonia::core::codecs::audio::AudioCodecParameters,
    header: AudioHeader,
}

fn decode_error(name: &str, source: SymphoniaError) -> MediaError {
    match source {
        SymphoniaError::Unsupported(reason) => MediaError::Unsupported {
            name: name.into(),
            reason: reason.into(),
        },
        source => MediaError::AudioDecode {
            name: name.into(),
            source,
        },
    }
}

fn open<'a>(bytes: &'a [u8], name: &str, limits: &AudioLimits) -> Result<Opened<'a>, MediaError> {
    if bytes.is_empty() {
        return Err(MediaError::Empty { name: name.into() });
    }
    let decode_err = |source: SymphoniaError| decode_error(name, source);
    let checks = Checks { name, limits };
    let (rate_err, too_long, rate_ok) = (
        |rate| checks.rate_err(rate),
        |seconds, declared| checks.too_long(seconds, declared),
        |rate| checks.rate_ok(rate),
    );

    if let Some(reason) = wav_header_problem(bytes) {
        return Err(MediaError::Unsupported {
            name: name.into(),
            reason,
        });
    }

    let mut hint = Hint::new();
    if let Some(ext) = std::path::Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
    {
        hint.with_extension(ext);
    }
    let stream = MediaSourceStream::new(
        Box::new(Cursor::new(bytes)),
        MediaSourceStreamOptions::default(),
    );
    // symphonia 0.6.1's RIFF reader has panicked on malformed headers (overflowing arithmetic
    // with overflow checks on); `wav_header_problem` refuses the cases known, and a panic
    // left in a container reader becomes a typed error here rather than the caller's crash.
    let probed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        symphonia::default::get_probe().probe(
            &hint,
            stream,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
    }))
    .map_err(|_| MediaError::Unsupported {
        name: name.into(),
        reason: "the container's header is malformed (the reader gave up on it)".into(),
    })?;
    let format = probed.map_err(decode_err)?;

    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| MediaError::Unsupported {
            name: name.into(),
            reason: "no audio track".into(),
        })?;
    let track_id = track.id;
    let Some(CodecParameters::Audio(params)) = track.codec_params.clone() else {
        return Err(MediaError::Unsupported {
            name: name.into(),
            reason: "the audio track has no codec parameters".into(),
        });
    };
    // Checks from the header, before any packet is decoded.
    if let Some(rate) = params.sample_rate
        && !rate_ok(rate)
    {
        return Err(rate_err(rate));
    }
    if let Some(seconds) = declared_secs(track, params.sample_rate)
        && seconds > limits.max_duration_secs()
        && limits.long_audio() == LongAudio::Refuse
    {
        return Err(too_long(seconds, true));
    }
    let header = AudioHeader {
        sample_rate: params.sample_rate,
        channels: params.channels.as_ref().map(|c| c.count()),
        declared_secs: declared_secs(track, params.sample_rate),
    };
    Ok(Opened {
        format,
        track_id,
        params,
        header,
    })
}

/// The most channels a WAV may declare (symphonia's RIFF reader maps at most 26 positions).
const MAX_WAV_CHANNELS: u16 = 26;

/// A WAV `fmt ` chunk that symphonia 0.6.1's RIFF reader would overflow on (it multiplies the
/// declared channel count by the sample width in `u16` before checking it, which panics with
/// overflow checks on), found by the `wav_header_edges` fuzz target. Checked here first.
fn wav_header_problem(bytes: &[u8]) -> Option<String> {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let mut at = 12usize;
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        // Every `fmt ` chunk, not only the first: a file with two (the fuzz target
        // `audio_mutated_files` made one) may have symphonia read the other.
        if &header[..4] == b"fmt " {
            let channels = bytes.get(at + 10..at + 12)?;
            let channels = u16::from_le_bytes([channels[0], channels[1]]);
            if !(1..=MAX_WAV_CHANNELS).contains(&channels) {
                return Some(format!(
                    "the WAV declares {channels} channels (1 to {MAX_WAV_CHANNELS} are supported)"
                ));
            }
        }
        // Chunks are padded to an even length.
        at = at.checked_add(8)?.checked_add(len)?.checked_add(len & 1)?;
    }
    None
}

/// The duration the container declares for `track`, in seconds, if it declares one.
fn declared_secs(track: &Track, sample_rate: Option<u32>) -> Option<f64> {
    if let (Some(frames), Some(rate)) = (track.num_frames, sample_rate)
        && rate > 0
    {
        return Some(frames as f64 / f64::from(rate));
    }
    let (duration, base) = (track.duration?, track.time_base?);
    Some(duration.get() as f64 * f64::from(base.numer.get()) / f64::from(base.denom.get()))
}

/// Appends the channel mean of each interleaved frame (librosa's `to_mono`).
fn mix_to_mono(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    if channels == 1 {
        out.extend_from_slice(interleaved);
        return;
    }
    let scale = 1.0 / channels as f32;
    out.extend(
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() * scale),
    );
}

/// Keeps the samples an MP4 edit list presents: drops the encoder priming at the front and the
/// padding at the end.
fn apply_edit_window(samples: &mut Vec<f32>, sample_rate: u32, window: EditWindow) {
    let to_samples = |ticks: u64, timescale: u32| -> usize {
        if timescale == 0 {
            return 0;
        }
        ((u128::from(ticks) * u128::from(sample_rate) + u128::from(timescale) / 2)
            / u128::from(timescale)) as usize
    };
    let start = to_samples(window.media_time, window.media_timescale).min(samples.len());
    samples.drain(..start);
    if let Some((duration, timescale)) = window.duration {
        let keep = to_samples(duration, timescale);
        if keep > 0 && keep < samples.len() {
            samples.truncate(keep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stereo_mix_is_the_channel_mean() {
        let mut out = Vec::new();
        mix_to_mono(&[1.0, 0.0, 0.5, -0.5], 2, &mut out);
        assert_eq!(out, vec![0.5, 0.0]);
    }

    #[test]
    fn edit_window_trims_priming_and_padding() {
        let mut s: Vec<f32> = (0..5000).map(|i| i as f32).collect();
        apply_edit_window(
            &mut s,
            16_000,
            EditWindow {
                media_time: 1024,
                media_timescale: 16_000,
                duration: Some((2000, 16_000)),
            },
        );
        assert_eq!(s.len(), 2000);
        assert_eq!(s[0], 1024.0);
    }

    #[test]
    fn empty_input_is_a_typed_error() {
        assert!(matches!(
            decode_audio(&[], "a.wav"),
            Err(MediaError::Empty { name }) if name == "a.wav"
        ));
    }
}
