//! Whole-pipeline parity with the golden `pipeline_e2e` case: the tiny models run
//! `SonicModels::render` with the case's face box, its injected `latent_noise` and its
//! recorded `input_features` (our 16 kHz resampler is within 1.5e-4 of librosa's, outside the
//! features' tolerance; see docs/media.md), and every recorded stage is compared within the
//! case's tolerances: preprocessing, audio features, tokens, buckets, embeddings, latents,
//! every step and window, decoded frames and RIFE midpoints. The MP4 is checked too.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::Cursor;

use burn::tensor::TensorData;
use common::{fixture_params, golden, models, portrait, speech, values};
use sonic::pipeline::{CancellationToken, RenderControl, RenderInputs, StageRecorder};
use sonic_media::audio::LogMel;
use sonic_media::face::SeetaFaceDetector;
use sonic_parity::{Case, HostData, HostTensor, ParityOptions, ParityReport};

fn host(data: &TensorData) -> HostTensor {
    HostTensor::f32(data.shape.to_vec(), values(data))
}

/// Stacks same-shaped records on a new first axis.
fn stack(records: &[TensorData]) -> HostTensor {
    assert!(!records.is_empty());
    let mut shape = vec![records.len()];
    shape.extend(records[0].shape.iter().copied());
    HostTensor::f32(shape, records.iter().flat_map(values).collect())
}

/// `[frames, c, h, w]` -> `[1, c, frames, h, w]` (the reference's video layout).
fn frames_to_video(frames: &HostTensor) -> HostTensor {
    let [n, c, h, w] = frames.shape[..] else {
        panic!("{:?}", frames.shape)
    };
    let src = frames.to_f32_vec();
    let plane = h * w;
    let mut out = vec![0.0; src.len()];
    for f in 0..n {
        for ch in 0..c {
            let from = (f * c + ch) * plane;
            let to = (ch * n + f) * plane;
            out[to..to + plane].copy_from_slice(&src[from..from + plane]);
        }
    }
    HostTensor::f32(vec![1, c, n, h, w], out)
}

fn concat(records: &[TensorData]) -> HostTensor {
    let mut shape = records[0].shape.to_vec();
    shape[0] = records.iter().map(|r| r.shape[0]).sum();
    HostTensor::f32(shape, records.iter().flat_map(values).collect())
}

#[test]
fn pipeline_matches_the_reference_stage_by_stage() {
    let case = Case::open(golden("pipeline_e2e")).unwrap();
    let features = case.tensor("input_features").unwrap();
    let mel = LogMel {
        data: features.to_f32_vec(),
        n_mels: features.shape[0],
        n_frames: features.shape[1],
    };
    let noise = case.tensor("latent_noise").unwrap();
    let inputs = RenderInputs::new(portrait(), speech())
        .with_features(mel)
        .with_noise(TensorData::new(noise.to_f32_vec(), noise.shape.clone()));
    let mut recorder = StageRecorder::all();
    let detector = SeetaFaceDetector::bundled().unwrap();
    let mut mp4 = Vec::new();
    let output = models()
        .render(
            &fixture_params(),
            inputs,
            Cursor::new(&mut mp4),
            RenderControl {
                progress: None,
                cancel: CancellationToken::new(),
                stages: Some(&mut recorder),
                face_detector: &detector,
            },
        )
        .unwrap();

    let mut report = ParityReport::new(&case, "flex".into(), &ParityOptions::default());
    let once = [
        "ref_img",
        "face_mask",
        "input_features",
        "whisper_hidden_states_used",
        "clip_image_embeds",
        "audio2token_input",
        "audio_tokens_cond",
        "audio_tokens_uncond",
        "audio2bucket_input",
        "audio2bucket_raw",
        "motion_buckets",
        "motion_buckets_scaled",
        "vae_encode_mean",
        "ref_image_latents",
        "image_latents",
        "image_embeddings_cfg",
        "audio_prompts_cfg",
        "latent_noise",
        "timesteps",
        "guidance_scale1",
        "guidance_scale2",
        "initial_latents",
        "latents_after_step_0",
        "latents_after_step_1",
        "latents_after_step_2",
        "latents_after_step_3",
    ];
    for name in once {
        let records = recorder.get(name);
        assert_eq!(records.len(), 1, "{name} recorded {} times", records.len());
        report.check(&case, name, &host(&records[0])).unwrap();
    }
    for name in [
        "window_timestep",
        "window_added_time_ids",
        "window_v_guided",
        "window_latents_after_step",
    ] {
        let records = recorder.get(name);
        assert_eq!(records.len(), 8, "{name}");
        let mut stacked = stack(records);
        if name == "window_timestep" {
            stacked.shape = vec![8];
        }
        report.check(&case, name, &stacked).unwrap();
    }
    // Step 0 (the first two windows): the UNet's raw branches and its contexts.
    for (ours, theirs) in [
        ("window_unet_output", "step0_unet_output"),
        ("window_clip_context", "step0_clip_context"),
        ("window_audio_context", "step0_audio_context"),
    ] {
        report
            .check(&case, theirs, &stack(&recorder.get(ours)[..2]))
            .unwrap();
    }
    let decoded = frames_to_video(&concat(recorder.get("decoded_frames")));
    report.check(&case, "decoded_frames", &decoded).unwrap();
    let middles = frames_to_video(&concat(recorder.get("rife_middle_frames")));
    report.check(&case, "rife_middle_frames", &middles).unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(report.comparisons.len(), 35);

    // The window layout is exact.
    let indices: Vec<i64> = recorder
        .get("window_frame_indices")
        .iter()
        .flat_map(|d| d.clone().into_vec::<i64>().unwrap())
        .collect();
    assert_eq!(
        indices,
        case.tensor("window_frame_indices").unwrap().to_i64_vec()
    );
    let starts: Vec<i64> = recorder
        .get("window_index_start")
        .iter()
        .flat_map(|d| d.clone().into_vec::<i64>().unwrap())
        .collect();
    assert_eq!(starts, vec![0, 25, -7, 18, -14, 11, -21, 4]);

    // The video: N = 33 generated, 2N - 1 = 65 after RIFE, the last held to cover the
    // 2.66 s of audio (67 frames at 25 fps), H.264 + AAC.
    let HostData::I64(n) = &case.tensor("num_frames").unwrap().data else {
        panic!()
    };
    assert_eq!(output.generated_frames as i64, n[0]);
    assert_eq!(output.video.frames, 67);
    let audio_secs = 42_586.0 / 16_000.0;
    assert!((output.video.duration_secs - audio_secs).abs() <= 1.0 / 25.0);
    assert_eq!((output.video.width, output.video.height), (64, 64));
    assert!(output.video.audio_frames > 0);
    assert_eq!(&mp4[4..8], b"ftyp");
    assert_eq!(mp4.len() as u64, output.video.bytes);
}
