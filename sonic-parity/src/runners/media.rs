//! Media front-end cases: `log_mel` (audio decode, resampling, Whisper log-mel), and the
//! picture preprocessing of `image_preprocess` and `clip_vision`.

use image::RgbImage;

use crate::{Case, Comparison, HostTensor, ParityError, ParityReport, Tolerance};
use sonic_media::audio::{AudioTimeline, LogMelExtractor, TimelineOptions, load_speech};
use sonic_media::image::{
    FaceBox, PortraitOptions, clip_normalise, decode_image, preprocess_portrait, resize_lanczos,
    square_crop_box,
};

/// Max |error| accepted between our 16 kHz waveform and librosa's (soxr_hq) one. The case's
/// own 1e-4 assumes libsoxr; rubato's filter of soxr's shape lands at 1.5e-4 (78 dB SNR),
/// ten times closer than soxr's own `soxr_vhq` is to `soxr_hq` (1.6e-3) on this file.
pub const RESAMPLER_TOLERANCE: Tolerance = Tolerance::new(2.5e-4, 0.0);

fn component_err(e: impl std::fmt::Display) -> ParityError {
    ParityError::Component(e.to_string())
}

fn read(case: &Case, file: &str) -> Result<Vec<u8>, ParityError> {
    let path = case.file(file);
    std::fs::read(&path).map_err(|source| ParityError::Io { file: path, source })
}

fn host(shape: Vec<usize>, data: Vec<f32>) -> HostTensor {
    HostTensor::f32(shape, data)
}

fn image_tensor(image: &RgbImage) -> HostTensor {
    let (w, h) = image.dimensions();
    host(
        vec![h as usize, w as usize, 3],
        image.as_raw().iter().map(|&v| f32::from(v)).collect(),
    )
}

/// `whisper_log_mel`: the mel filters, the window, the features of the stored waveform, the
/// frame count, and our decode + resample of `speech.wav` / `speech.mp3`.
pub(super) fn log_mel(case: &Case, report: &mut ParityReport) -> Result<(), ParityError> {
    let extractor = LogMelExtractor::whisper();
    let bins = extractor.config().frequency_bins();
    let mels = extractor.config().n_mels;
    report.check(
        case,
        "mel_filters",
        &host(vec![bins, mels], extractor.mel_filters().to_vec()),
    )?;
    report.check(
        case,
        "hann_window_400",
        &host(vec![extractor.window().len()], extractor.window().to_vec()),
    )?;

    let waveform = case.tensor("waveform_16k")?.to_f32_vec();
    let features = extractor.extract(&waveform);
    report.check(
        case,
        "input_features",
        &host(vec![1, features.n_mels, features.n_frames], features.data),
    )?;
    let frames = |samples: usize| -> Result<HostTensor, ParityError> {
        let t = AudioTimeline::new(samples, &TimelineOptions::default()).map_err(component_err)?;
        Ok(host(vec![1], vec![t.audio_len() as f32]))
    };
    report.check(case, "audio_len", &frames(waveform.len())?)?;

    // Decoding + resampling. MP3 within the case's tolerance; WAV within ours (see above).
    let mp3 = load_speech(&read(case, "speech.mp3")?, "speech.mp3").map_err(component_err)?;
    report.check(case, "audio_len_from_mp3", &frames(mp3.len())?)?;
    report.check(case, "waveform_16k_from_mp3", &host(vec![mp3.len()], mp3))?;
    let wav = load_speech(&read(case, "speech.wav")?, "speech.wav").map_err(component_err)?;
    report.comparisons.push(Comparison::new(
        "waveform_16k (rubato vs soxr_hq)",
        &wav,
        &[wav.len()],
        case.tensor("waveform_16k")?,
        RESAMPLER_TOLERANCE.scaled(report.tolerance_scale),
    ));
    Ok(())
}

#[derive(serde::Deserialize)]
struct PreprocessCall {
    image: String,
    bbox_xywh: [f64; 4],
    image_size: u32,
    area: f64,
}

/// `image_preprocess`: decode, face mask, Lanczos resize, normalisation, CLIP input and the
/// square crop boxes, for both pictures of the case.
pub(super) fn image_preprocess(case: &Case, report: &mut ParityReport) -> Result<(), ParityError> {
    let calls: Vec<PreprocessCall> =
        serde_json::from_value(case.config()["config"]["calls"].clone()).map_err(|e| {
            ParityError::Invalid {
                file: case.file("config.json"),
                message: format!("`config.calls`: {e}"),
            }
        })?;
    for call in &calls {
        // image_a.png -> tensors a_*
        let prefix = call
            .image
            .trim_end_matches(".png")
            .trim_start_matches("image_");
        let picture =
            decode_image(&read(case, &call.image)?, &call.image).map_err(component_err)?;
        report.check(
            case,
            &format!("{prefix}_image_uint8"),
            &image_tensor(&picture),
        )?;
        let [x, y, w, h] = call.bbox_xywh;
        let face = FaceBox::new(x, y, w, h);
        let options = PortraitOptions {
            min_resolution: call.image_size,
            mask_area: call.area,
        };
        let t = preprocess_portrait(&picture, &face, &options).map_err(component_err)?;
        let (hh, ww) = (t.height as usize, t.width as usize);
        report.check(
            case,
            &format!("{prefix}_ref_img"),
            &host(vec![3, hh, ww], t.ref_image),
        )?;
        report.check(
            case,
            &format!("{prefix}_face_mask"),
            &host(vec![3, hh, ww], t.face_mask),
        )?;
        let clip_name = format!("{prefix}_clip_images");
        if case.tensor_names().any(|n| n == clip_name) {
            report.check(case, &clip_name, &host(vec![3, 224, 224], t.clip_pixels))?;
        }
        for (ratio, suffix) in [(0.5, "0p5"), (1.0, "1p0")] {
            let b = square_crop_box(&face, ratio, picture.width(), picture.height())
                .map_err(component_err)?;
            report.check(
                case,
                &format!("{prefix}_crop_bbox_expand{suffix}"),
                &host(
                    vec![4],
                    vec![b.x1 as f32, b.y1 as f32, b.x2 as f32, b.y2 as f32],
                ),
            )?;
        }
    }
    Ok(())
}

/// The preprocessing tensors of `clip_vision`: `portrait.png` decoded, resized to 224x224 with
/// Lanczos, and CLIP-normalised. (The CLIP model's own outputs are the CLIP runner's.)
pub(super) fn clip_preprocessing(
    case: &Case,
    report: &mut ParityReport,
) -> Result<(), ParityError> {
    let picture =
        decode_image(&read(case, "portrait.png")?, "portrait.png").map_err(component_err)?;
    report.check(case, "image_uint8", &image_tensor(&picture))?;
    let resized = resize_lanczos(&picture, 224, 224);
    report.check(case, "resized_224_uint8", &image_tensor(&resized))?;
    report.check(
        case,
        "pixel_values",
        &host(vec![1, 3, 224, 224], clip_normalise(&resized)),
    )?;
    Ok(())
}
