//! Decoding audio files (WAV, MP3, FLAC, AAC/M4A, Ogg Vorbis) to mono samples with symphonia.

use std::io::Cursor;

use symphonia::core::codecs::CodecParameters;
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;

use super::mp4_edit::{EditWindow, audio_edit_window};
use crate::MediaError;

/// Decoded audio, mixed to one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    /// Mono samples in `[-1, 1]`: the mean of the channels, like `librosa.load(mono=True)`.
    pub samples: Vec<f32>,
    /// Sample rate of `samples` in Hz (the file's own rate).
    pub sample_rate: u32,
    /// Number of channels in the file before the mix.
    pub channels: usize,
}

impl DecodedAudio {
    /// Duration in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate)
    }
}

/// Decodes a whole audio file held in memory and mixes it to mono.
///
/// `name` is used in error messages and, through its extension, as a hint for the container
/// (the content is probed either way). Encoder priming is removed: MP3 (LAME/Xing gapless
/// info) and Ogg Vorbis by symphonia itself, AAC in MP4/M4A from the track's edit list, so
/// that an M4A decodes to the same length as the WAV it was made from. Raw ADTS `.aac` carries
/// no priming information and keeps its priming samples.
///
/// # Errors
/// [`MediaError::Empty`] for no bytes, [`MediaError::Unsupported`] for a container or codec
/// this build does not decode, [`MediaError::AudioDecode`] for corrupt or truncated data,
/// [`MediaError::NoAudio`] when no sample comes out.
pub fn decode_audio(bytes: &[u8], name: &str) -> Result<DecodedAudio, MediaError> {
    if bytes.is_empty() {
        return Err(MediaError::Empty { name: name.into() });
    }
    let decode_err = |source: SymphoniaError| match source {
        SymphoniaError::Unsupported(reason) => MediaError::Unsupported {
            name: name.into(),
            reason: reason.into(),
        },
        source => MediaError::AudioDecode {
            name: name.into(),
            source,
        },
    };

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
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            stream,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(decode_err)?;

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
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(decode_err)?;

    let mut interleaved: Vec<f32> = Vec::new();
    let mut samples: Vec<f32> = Vec::new();
    let mut sample_rate = params.sample_rate.unwrap_or(0);
    let mut channels = params.channels.as_ref().map_or(0, |c| c.count());
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
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
        sample_rate = spec.rate();
        channels = spec.channels().count().max(1);
        interleaved.clear();
        buffer.copy_to_vec_interleaved(&mut interleaved);
        mix_to_mono(&interleaved, channels, &mut samples);
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
    Ok(DecodedAudio {
        samples,
        sample_rate,
        channels,
    })
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
