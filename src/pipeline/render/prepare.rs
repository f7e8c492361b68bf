//! Stage 1, on the host: decode the audio (16 kHz, timeline, log-mel) and the picture (face,
//! crop, resize, face mask, CLIP input).

use sonic_core::models::unet::FaceMask;
use sonic_media::audio::{
    AudioHeader, AudioTimeline, DEFAULT_STEP_CAP, LogMel, LogMelExtractor, SAMPLE_RATE,
    SAMPLES_PER_STEP, TimelineOptions, decode_audio_with, probe_audio, resample,
};
use sonic_media::face::{FaceDetector, locate_face};
use sonic_media::image::{
    FaceBox, PictureHeader, PortraitOptions, crop, decode_image_with, preprocess_portrait,
    probe_image, square_crop_box,
};
use sonic_media::video::{AudioTrack, check_frame_size};
use sonic_media::{AudioLimits, ImageLimits, LongAudio};

use super::{NamedBytes, host};
use crate::pipeline::error::PipelineError;
use crate::pipeline::frames::frames_for;
use crate::pipeline::params::{GenerationParams, MAX_DURATION_SECS};
use crate::pipeline::stages::{StageTensor, Stages};

/// Sonic's face-mask enlargement (`sonic.yaml` `area`).
const MASK_AREA: f64 = 1.1;

/// AAC sample rates the MP4 writer takes as they are (others get the 16 kHz waveform).
const AAC_RATES: [u32; 9] = [
    8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000,
];

/// Everything preprocessing derives from the inputs, on the host.
pub(super) struct Prepared {
    pub(super) model_width: usize,
    pub(super) model_height: usize,
    pub(super) output_size: (u32, u32),
    pub(super) face: FaceBox,
    pub(super) ref_image: Vec<f32>,
    pub(super) face_mask: FaceMask,
    pub(super) clip_pixels: Vec<f32>,
    pub(super) mel: LogMel,
    pub(super) timeline: AudioTimeline,
    pub(super) track: AudioTrack,
    pub(super) audio_samples: usize,
    pub(super) picture_pixels: u64,
    /// What the user should know about the result (audio cut at the cap ...).
    pub(super) warnings: Vec<String>,
}

/// What the inputs' headers declare, read before either is decoded.
pub(super) struct InputHeaders {
    pub(super) picture: PictureHeader,
    pub(super) audio: AudioHeader,
}

impl InputHeaders {
    /// Bytes the decoded audio will take, when the header says (decoding stops at the cap).
    pub(super) fn audio_bytes(&self) -> u64 {
        self.audio.decoded_bytes(MAX_DURATION_SECS).unwrap_or(0)
    }
}

/// The audio limits of a job: over [`MAX_DURATION_SECS`] is refused (from the header when it
/// declares its length), unless the job asked for a duration, which uses only the start: then
/// decoding stops at the cap.
fn audio_limits(params: &GenerationParams) -> AudioLimits {
    let long_audio = if params.duration.is_some() {
        LongAudio::Cut
    } else {
        LongAudio::Refuse
    };
    AudioLimits::default()
        .with_max_duration_secs(MAX_DURATION_SECS)
        .with_long_audio(long_audio)
}

/// Reads both headers and checks what they show (format, size, sample rate, declared
/// duration, and with `keep_resolution` the video size) before anything is decoded.
pub(super) fn read_headers(
    params: &GenerationParams,
    picture: &NamedBytes,
    audio: &NamedBytes,
) -> Result<InputHeaders, PipelineError> {
    let picture_header = probe_image(&picture.bytes, &picture.name, &ImageLimits::default())?;
    let audio_header = probe_audio(&audio.bytes, &audio.name, &audio_limits(params))?;
    if params.keep_resolution && !params.crop {
        // The video will be the picture's own size (EXIF rotation swaps the sides, which the
        // check treats alike).
        check_frame_size(picture_header.width, picture_header.height).map_err(|source| {
            PipelineError::OutputSize {
                keep_resolution: true,
                source,
            }
        })?;
    }
    Ok(InputHeaders {
        picture: picture_header,
        audio: audio_header,
    })
}

impl Prepared {
    /// Frames of the written video: enough to cover the audio used (within half a frame).
    /// Sonic writes `2N - 1` frames and cuts the audio to them (`ffmpeg -shortest`), losing
    /// up to 120 ms of the end; here the last frame is held instead.
    pub(super) fn output_frames(&self, params: &GenerationParams) -> u64 {
        let capped = (DEFAULT_STEP_CAP * SAMPLES_PER_STEP) as f64 / f64::from(SAMPLE_RATE);
        let seconds = (self.timeline.samples() as f64 / f64::from(SAMPLE_RATE)).min(capped);
        frames_for(seconds, params.output_fps())
    }
}

/// Host-side preprocessing of both inputs.
pub(super) fn prepare(
    params: &GenerationParams,
    picture: &NamedBytes,
    audio: &NamedBytes,
    features: Option<LogMel>,
    detector: &dyn FaceDetector,
    stages: &mut Stages<'_>,
) -> Result<Prepared, PipelineError> {
    // Audio: the file's own samples for the track, 16 kHz for the model.
    let mut warnings = Vec::new();
    let decoded = decode_audio_with(&audio.bytes, &audio.name, &audio_limits(params))?;
    if let Some(at) = decoded.truncated_at_secs {
        tracing::warn!(input = %audio.name, at_secs = at, "audio cut at the duration cap");
        warnings.push(format!(
            "{}: the audio is longer than {at} s, the most a job takes: only its first {at} s were used",
            audio.name
        ));
    }
    let waveform = resample(&decoded.samples, decoded.sample_rate, SAMPLE_RATE)?;
    let timeline = AudioTimeline::new(
        waveform.len(),
        &TimelineOptions {
            max_duration: params.duration,
            lip_sync_offset: params.lip_sync_offset,
            ..TimelineOptions::default()
        },
    )?;
    if timeline.generated_frames() == 0 {
        return Err(PipelineError::AudioTooShort {
            name: audio.name.clone(),
            seconds: timeline.samples() as f64 / f64::from(SAMPLE_RATE),
            min_seconds: 0.08,
        });
    }
    let mel = match features {
        Some(features) => features,
        None => LogMelExtractor::whisper().extract(&timeline.model_waveform(&waveform)),
    };
    stages.data(
        StageTensor::InputFeatures,
        host(mel.data.clone(), [mel.n_mels, mel.n_frames]),
    );
    let audio_samples = decoded.samples.len();
    let track = if AAC_RATES.contains(&decoded.sample_rate) {
        AudioTrack::mono(decoded.samples, decoded.sample_rate)
    } else {
        AudioTrack::mono(waveform, SAMPLE_RATE)
    };

    // Picture: face, optional square crop around it, model-size tensors.
    let image = decode_image_with(&picture.bytes, &picture.name, &ImageLimits::default())?;
    let picture_pixels = u64::from(image.width()) * u64::from(image.height());
    let face = locate_face(&image, &picture.name, detector, params.face.region())?;
    let (image, face) = if params.crop {
        let (w, h) = image.dimensions();
        let crop_box = square_crop_box(&face, params.expand_ratio, w, h)?;
        let cropped = crop(&image, crop_box)?;
        // The crop's clamped origin; the box moves with the picture.
        let (x0, y0) = (
            crop_box.x1.clamp(0, i64::from(w)) as f64,
            crop_box.y1.clamp(0, i64::from(h)) as f64,
        );
        let face = FaceBox::new(face.x - x0, face.y - y0, face.width, face.height);
        (cropped, face)
    } else {
        (image, face)
    };
    let output_size = (image.width() & !1, image.height() & !1);
    let portrait = preprocess_portrait(
        &image,
        &face,
        &PortraitOptions {
            min_resolution: params.min_resolution,
            mask_area: MASK_AREA,
        },
    )?;
    let (width, height) = (portrait.width as usize, portrait.height as usize);
    stages.data(
        StageTensor::RefImg,
        host(portrait.ref_image.clone(), [3, height, width]),
    );
    stages.data(
        StageTensor::FaceMask,
        host(portrait.face_mask.clone(), [3, height, width]),
    );
    let face_mask = FaceMask::new(portrait.face_mask[..width * height].to_vec(), height, width)?;
    let output_size = if params.keep_resolution {
        output_size
    } else {
        (portrait.width, portrait.height)
    };
    // Before any model runs: a size the encoder refuses would fail only after denoising.
    let output_size = check_frame_size(output_size.0, output_size.1).map_err(|source| {
        PipelineError::OutputSize {
            keep_resolution: params.keep_resolution,
            source,
        }
    })?;
    Ok(Prepared {
        model_width: width,
        model_height: height,
        output_size,
        face,
        ref_image: portrait.ref_image,
        face_mask,
        clip_pixels: portrait.clip_pixels,
        mel,
        timeline,
        track,
        audio_samples,
        picture_pixels,
        warnings,
    })
}
