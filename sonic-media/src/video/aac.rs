//! AAC-LC encoding with FDK AAC, with the encoder delay removed.
//!
//! An AAC encoder's output is delayed: decoded sample `j` is input sample `j - delay`
//! (FDK AAC-LC: 2048 samples, 128 ms at 16 kHz). MP4 files usually hide this with an edit list,
//! which muxide does not write, so the delay is removed in the bitstream instead: the input is
//! led by `lead` zeros so that `delay + lead` is a whole number of 1024-sample frames, and that
//! many frames are dropped from the front. Frame `m` of what is left then decodes to input
//! samples `[1024 m, 1024 (m + 1))` and is stamped `1024 m / rate`. The price is that the
//! first frame decodes without the overlap of the dropped one: the first 64 ms (at 16 kHz)
//! fade in.

use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};

use crate::MediaError;

/// Samples per channel in one AAC-LC frame.
pub(crate) const FRAME_SAMPLES: usize = 1024;

pub(crate) struct AacEncoder {
    encoder: Encoder,
    channels: usize,
    /// Interleaved i16 input not yet handed to the encoder.
    pending: Vec<i16>,
    /// Encoder output frames still to drop (priming).
    to_drop: usize,
    /// Frames delivered after the drop.
    pub delivered: u64,
    output: Vec<u8>,
    /// The encoder's delay in samples, as it reports it.
    pub delay: usize,
}

impl AacEncoder {
    pub fn new(sample_rate: u32, channels: usize, bitrate: u32) -> Result<Self, MediaError> {
        let err = |e: fdk_aac::enc::EncoderError| MediaError::AudioEncode(e.to_string());
        let encoder = Encoder::new(EncoderParams {
            bit_rate: BitRate::Cbr(bitrate),
            sample_rate,
            transport: Transport::Adts,
            channels: if channels == 2 {
                ChannelMode::Stereo
            } else {
                ChannelMode::Mono
            },
            audio_object_type: AudioObjectType::Mpeg4LowComplexity,
        })
        .map_err(err)?;
        let info = encoder.info().map_err(err)?;
        let delay = info.nDelay as usize;
        let frame = info.frameLength as usize;
        if frame != FRAME_SAMPLES {
            return Err(MediaError::AudioEncode(format!(
                "unexpected frame length {frame}"
            )));
        }
        let lead = (FRAME_SAMPLES - delay % FRAME_SAMPLES) % FRAME_SAMPLES;
        Ok(Self {
            encoder,
            channels,
            pending: vec![0; lead * channels],
            to_drop: (delay + lead) / FRAME_SAMPLES,
            delivered: 0,
            output: vec![0; (info.maxOutBufBytes as usize).max(8192)],
            delay,
        })
    }

    /// Queues interleaved samples in `[-1, 1]`; hands every completed, kept ADTS frame to
    /// `sink` (in order).
    pub fn push(
        &mut self,
        samples: impl IntoIterator<Item = f32>,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), MediaError>,
    ) -> Result<(), MediaError> {
        self.pending.extend(
            samples
                .into_iter()
                .map(|s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16),
        );
        let block = FRAME_SAMPLES * self.channels;
        let mut consumed = 0;
        while self.pending.len() - consumed >= block {
            let info = self
                .encoder
                .encode(&self.pending[consumed..consumed + block], &mut self.output)
                .map_err(|e| MediaError::AudioEncode(e.to_string()))?;
            consumed += info.input_consumed.max(1).min(block);
            if info.output_size > 0 {
                if self.to_drop > 0 {
                    self.to_drop -= 1;
                } else {
                    sink(&self.output[..info.output_size])?;
                    self.delivered += 1;
                }
            }
        }
        self.pending.drain(..consumed);
        Ok(())
    }
}
