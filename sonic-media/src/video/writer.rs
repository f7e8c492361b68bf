//! The streaming MP4 writer: RGB frames in as they are produced, H.264 + AAC MP4 out.

use std::io::Write;

use muxide::api::{AacProfile, AudioCodec, Muxer, MuxerBuilder, VideoCodec};

use super::aac::{AacEncoder, FRAME_SAMPLES};
use super::h264::H264Encoder;
use crate::MediaError;

/// H.264 quality: the quantiser every frame is coded with (0 best .. 51 worst, like x264's
/// CRF scale). Each step of 6 roughly halves the bitrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoQuality(pub u8);

impl VideoQuality {
    /// Visually transparent talking heads (about what Sonic's `-crf 18` gives): QP 20.
    pub const HIGH: Self = Self(20);
    /// Smaller files, slight softening: QP 26.
    pub const MEDIUM: Self = Self(26);
    /// Previews: QP 32.
    pub const LOW: Self = Self(32);
}

impl Default for VideoQuality {
    fn default() -> Self {
        Self::HIGH
    }
}

/// Settings of the written video.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoOptions {
    /// Frames per second (Sonic writes 25 after RIFE interpolation).
    pub fps: f64,
    /// H.264 quality.
    pub quality: VideoQuality,
    /// Seconds between keyframes (seek points).
    pub keyframe_interval_secs: f64,
    /// AAC bitrate in bits per second per channel.
    pub audio_bitrate: u32,
}

impl Default for VideoOptions {
    fn default() -> Self {
        Self {
            fps: 25.0,
            quality: VideoQuality::HIGH,
            keyframe_interval_secs: 2.0,
            audio_bitrate: 64_000,
        }
    }
}

/// The sound of the video: interleaved samples in `[-1, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioTrack {
    /// Interleaved samples (`channels` per frame).
    pub samples: Vec<f32>,
    /// Sample rate in Hz (an AAC rate: 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100,
    /// 48000, ...).
    pub sample_rate: u32,
    /// 1 or 2.
    pub channels: u16,
}

impl AudioTrack {
    /// A mono track.
    pub fn mono(samples: Vec<f32>, sample_rate: u32) -> Self {
        Self {
            samples,
            sample_rate,
            channels: 1,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoSummary {
    /// Video frames written.
    pub frames: u64,
    /// Width of the video (the frame width rounded down to even).
    pub width: u32,
    /// Height of the video (the frame height rounded down to even).
    pub height: u32,
    /// Video duration in seconds (`frames / fps`).
    pub duration_secs: f64,
    /// AAC frames written (1024 samples each).
    pub audio_frames: u64,
    /// Bytes written to the sink.
    pub bytes: u64,
    /// The AAC encoder delay removed from the audio track, in samples (2048 for FDK AAC-LC).
    pub audio_delay_samples: usize,
}

struct AudioState {
    encoder: AacEncoder,
    samples: Vec<f32>,
    sample_rate: u32,
    channels: usize,
    /// Sample frames (per channel) handed to the encoder so far.
    fed: usize,
}

/// Writes an H.264 + AAC MP4, one frame at a time.
///
/// Frames are encoded as they are pushed; only the encoded bitstream is kept until
/// [`finish`](Self::finish), which writes `ftyp`, `moov` (the index, in front: fast start)
/// and `mdat` to the sink. Memory therefore grows with the *encoded* size (about 1 MB per
/// minute at 512x512 and the default quality) and never holds raw frames. The audio track is
/// encoded alongside the frames and cut at the video's end (to the last whole 64 ms AAC frame
/// at 16 kHz); the AAC encoder delay is compensated (see the `aac` module).
///
/// Frames of odd width or height are cropped by one column or row (H.264 4:2:0 needs even
/// sizes).
pub struct Mp4Writer<W: Write> {
    muxer: Muxer<W>,
    video: H264Encoder,
    frame_width: u32,
    frame_height: u32,
    width: u32,
    height: u32,
    fps: f64,
    frames: u64,
    audio: Option<AudioState>,
}

impl<W: Write> std::fmt::Debug for Mp4Writer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mp4Writer")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("fps", &self.fps)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl<W: Write> Mp4Writer<W> {
    /// Opens a writer for frames of `frame_width x frame_height` RGB pixels.
    ///
    /// # Errors
    /// [`MediaError::InvalidParameter`] for a size below 2x2, a non-positive fps, a quality
    /// above 51, or an audio track with 0 or more than 2 channels or a ragged sample count;
    /// encoder errors if OpenH264 or FDK AAC refuse the settings.
    pub fn new(
        sink: W,
        frame_width: u32,
        frame_height: u32,
        options: &VideoOptions,
        audio: Option<AudioTrack>,
    ) -> Result<Self, MediaError> {
        let (width, height) = super::check_frame_size(frame_width, frame_height)?;
        if !(options.fps.is_finite() && options.fps > 0.0 && options.fps <= 240.0) {
            return Err(MediaError::invalid(
                "fps",
                format!("{} is not in (0, 240]", options.fps),
            ));
        }
        if options.quality.0 > 51 {
            return Err(MediaError::invalid(
                "quality",
                format!("QP {} is above 51", options.quality.0),
            ));
        }
        let keyframe_interval = (options.keyframe_interval_secs * options.fps)
            .round()
            .clamp(1.0, 10_000.0) as u32;
        let video = H264Encoder::new(
            width,
            height,
            options.fps,
            options.quality.0,
            keyframe_interval,
        )?;

        let mut builder = MuxerBuilder::new(sink)
            .video(VideoCodec::H264, width, height, options.fps)
            .with_fast_start(true);
        let audio = match audio {
            None => None,
            Some(track) => {
                let channels = usize::from(track.channels);
                if !(1..=2).contains(&channels) || track.samples.len() % channels != 0 {
                    return Err(MediaError::invalid(
                        "audio track",
                        format!(
                            "{} samples in {} channels (1 or 2 channels, whole frames)",
                            track.samples.len(),
                            track.channels
                        ),
                    ));
                }
                let bitrate = options
                    .audio_bitrate
                    .saturating_mul(track.channels.into())
                    .min(6 * track.sample_rate * u32::from(track.channels));
                let encoder = AacEncoder::new(track.sample_rate, channels, bitrate)?;
                builder = builder.audio(
                    AudioCodec::Aac(AacProfile::Lc),
                    track.sample_rate,
                    track.channels,
                );
                Some(AudioState {
                    encoder,
                    samples: track.samples,
                    sample_rate: track.sample_rate,
                    channels,
                    fed: 0,
                })
            }
        };
        let muxer = builder.build().map_err(MediaError::Mux)?;
        Ok(Self {
            muxer,
            video,
            frame_width,
            frame_height,
            width,
            height,
            fps: options.fps,
            frames: 0,
            audio,
        })
    }

    /// Frames pushed so far.
    pub fn frames_written(&self) -> u64 {
        self.frames
    }

    /// Encodes and queues one frame: `frame_width * frame_height * 3` bytes of RGB, row-major.
    ///
    /// # Errors
    /// [`MediaError::FrameSize`] for a buffer of another size; encoder and muxer errors.
    pub fn push_frame(&mut self, rgb: &[u8]) -> Result<(), MediaError> {
        let expected = self.frame_width as usize * self.frame_height as usize * 3;
        if rgb.len() != expected {
            return Err(MediaError::FrameSize {
                index: self.frames,
                width: self.frame_width,
                height: self.frame_height,
                got_width: self.frame_width,
                got_height: (rgb.len() / (self.frame_width as usize * 3).max(1)) as u32,
                got_bytes: rgb.len(),
            });
        }
        let encoded = self.video.encode(rgb, self.frame_width as usize * 3)?;
        let pts = self.frames as f64 / self.fps;
        self.muxer
            .write_video(pts, &encoded.data, encoded.keyframe)
            .map_err(MediaError::Mux)?;
        self.frames += 1;
        // Audio up to the end of this frame: every AAC frame completed here ends inside the
        // video, so nothing past the video's end is ever written.
        let until = self.video_samples();
        self.feed_audio(until, false)?;
        Ok(())
    }

    /// Sample frames of audio (per channel) that the video written so far covers.
    fn video_samples(&self) -> usize {
        self.audio.as_ref().map_or(0, |a| {
            (self.frames as f64 / self.fps * f64::from(a.sample_rate)).floor() as usize
        })
    }

    /// Feeds the encoder up to sample frame `until` (silence past the track's end); with
    /// `exact`, stops as soon as every AAC frame inside `until` is written.
    fn feed_audio(&mut self, until: usize, exact: bool) -> Result<(), MediaError> {
        let Some(audio) = self.audio.as_mut() else {
            return Ok(());
        };
        let muxer = &mut self.muxer;
        let rate = f64::from(audio.sample_rate);
        let wanted = (until / FRAME_SAMPLES) as u64;
        let mut sink = |frame: &[u8], index: u64| -> Result<(), MediaError> {
            if index >= wanted {
                return Ok(());
            }
            let pts = (index * FRAME_SAMPLES as u64) as f64 / rate;
            muxer.write_audio(pts, frame).map_err(MediaError::Mux)
        };
        let step = if exact { FRAME_SAMPLES } else { usize::MAX };
        while audio.encoder.delivered < wanted && (audio.fed < until || exact) {
            let end = audio
                .fed
                .saturating_add(step)
                .min(if exact { usize::MAX } else { until });
            // [fed, end) = the track's samples in range, then silence past its end.
            let available = audio.samples.len() / audio.channels;
            let real_start = audio.fed.min(available);
            let real_end = end.min(available);
            let real = audio.samples[real_start * audio.channels..real_end * audio.channels]
                .iter()
                .copied();
            let silence =
                std::iter::repeat_n(0.0, (end - audio.fed.max(real_end)) * audio.channels);
            let mut index = audio.encoder.delivered;
            audio.encoder.push(real.chain(silence), &mut |frame| {
                let r = sink(frame, index);
                index += 1;
                r
            })?;
            audio.fed = end;
            if !exact {
                break;
            }
        }
        Ok(())
    }

    /// Encodes the rest of the audio up to the video's end, writes the index and the media data,
    /// and flushes the sink.
    ///
    /// # Errors
    /// Encoder, muxer and I/O errors; finishing a writer with no frame is a muxer error.
    pub fn finish(mut self) -> Result<VideoSummary, MediaError> {
        let until = self.video_samples();
        self.feed_audio(until, true)?;
        let audio_frames = self.audio.as_ref().map_or(0, |a| {
            a.encoder.delivered.min((until / FRAME_SAMPLES) as u64)
        });
        let stats = self
            .muxer
            .finish_in_place_with_stats()
            .map_err(MediaError::Mux)?;
        let mut sink = self.muxer.into_writer();
        sink.flush().map_err(MediaError::Io)?;
        Ok(VideoSummary {
            frames: self.frames,
            width: self.width,
            height: self.height,
            duration_secs: self.frames as f64 / self.fps,
            audio_frames,
            bytes: stats.bytes_written,
            audio_delay_samples: self.audio.as_ref().map_or(0, |a| a.encoder.delay),
        })
    }
}
