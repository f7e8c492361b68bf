//! The per-frame audio windowing of Sonic's `test()` against the end-to-end fixture: from the
//! recorded log-mel features to the audio tokens and motion buckets, with the module cases'
//! weights loaded through the real loaders.

mod common;

use burn::tensor::Tensor;
use common::{TestBackend, golden};
use sonic_core::audio_conditioning::{AudioConditioningError, AudioModels, AudioWindowConfig};
use sonic_core::models::audio_adapters::{
    Audio2BucketConfig, Audio2TokenConfig, load_audio2bucket, load_audio2token,
};
use sonic_core::models::clip::load_clip_vision_dir;
use sonic_core::models::whisper::{WhisperError, load_whisper_encoder_dir};
use sonic_core::weights::LoadOptions;
use sonic_parity::Case;

type B = TestBackend;

struct Fixture {
    case: Case,
    models: AudioModels<B>,
    mel: Tensor<B, 2>,
    audio_len: usize,
}

fn fixture() -> Fixture {
    let device = common::device();
    let case = Case::open(golden("pipeline_e2e")).expect("pipeline_e2e case");
    let weights = |name: &str| {
        let relative = case.config()["config"]["weights"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no weights.{name} in config.json"));
        case.file(relative)
    };
    let component = |name: &str| case.config()["config"]["component_configs"][name].clone();
    let options = LoadOptions::default();
    let (whisper, _) = load_whisper_encoder_dir::<B>(weights("whisper"), options, &device).unwrap();
    let token_config: Audio2TokenConfig = serde_json::from_value(component("audio2token")).unwrap();
    let (audio2token, _) =
        load_audio2token::<B>(&token_config, weights("audio2token"), options, &device).unwrap();
    let bucket_config: Audio2BucketConfig =
        serde_json::from_value(component("audio2bucket")).unwrap();
    let (audio2bucket, _) =
        load_audio2bucket::<B>(&bucket_config, weights("audio2bucket"), options, &device).unwrap();
    let mel = case.input::<B, 2>("input_features", &device).unwrap();
    let audio_len = case.tensor("audio_len").unwrap().to_i64_vec()[0] as usize;
    Fixture {
        models: AudioModels {
            whisper,
            audio2token,
            audio2bucket,
        },
        case,
        mel,
        audio_len,
    }
}

#[test]
fn windowing_matches_reference() {
    let device = common::device();
    let Fixture {
        case,
        models,
        mel,
        audio_len,
    } = fixture();
    // The CLIP embedding from the CLIP case's pixel values (identical to the pipeline's).
    let clip_case = Case::open(golden("clip_vision")).unwrap();
    let (clip, _) = load_clip_vision_dir::<B>(
        golden("clip_vision").join("image_encoder"),
        LoadOptions::default(),
        &device,
    )
    .unwrap();
    let pixels = clip_case.input::<B, 4>("pixel_values", &device).unwrap();
    let clip_embeds = clip.forward(pixels).unwrap().image_embeds;

    // Small batches so that the batched path crosses batch boundaries (33 frames).
    let config = AudioWindowConfig::sonic().with_frames_per_batch(8);
    let states = models.encode(mel, audio_len, &config).unwrap();
    let frames = states.num_frames();
    assert_eq!(frames, 33);
    let conditioning = models.condition(&states, clip_embeds.clone()).unwrap();

    let mut report = common::new_report(&case);
    let mut check =
        |name: &str, tensor: Tensor<B, 4>| report.check_tensor(&case, name, tensor).unwrap();
    check(
        "whisper_hidden_states_used",
        states.hidden_states().unsqueeze_dim(0),
    );
    check("audio2token_input", states.token_windows(0..frames));
    check("audio2bucket_input", states.bucket_windows(0..frames));
    let mut check =
        |name: &str, tensor: Tensor<B, 3>| report.check_tensor(&case, name, tensor).unwrap();
    check("audio_tokens_cond", conditioning.tokens.clone());
    check("audio_tokens_uncond", conditioning.uncond_tokens());
    check("audio2bucket_raw", conditioning.buckets_raw.clone());
    check("motion_buckets", conditioning.motion_buckets());
    report
        .check_tensor(&case, "clip_image_embeds", clip_embeds)
        .unwrap();
    assert_eq!(report.comparisons.len(), 8);
    common::assert_passed(&report);
}

#[test]
fn windows_of_consecutive_30s_chunks_follow_each_other_in_time() {
    let Fixture {
        models,
        mel,
        audio_len,
        ..
    } = fixture();
    let config = AudioWindowConfig::sonic();
    let one = models.encode(mel.clone(), audio_len, &config).unwrap();
    // Two chunks: the second one's tokens start at 1500; ask for tokens reaching into it.
    let two_chunks = Tensor::cat(vec![mel.clone(), mel], 1);
    let long = models.encode(two_chunks, 750 + audio_len, &config).unwrap();
    assert_eq!(long.num_frames(), (750 + audio_len) / 2);
    let second = long.hidden_states().narrow(0, 1500, 2 * audio_len);
    second.into_data().assert_approx_eq::<f32>(
        &one.hidden_states().into_data(),
        burn::tensor::Tolerance::absolute(1e-6),
    );
}

#[test]
fn bad_inputs_are_typed_errors() {
    let device = common::device();
    let Fixture {
        models,
        mel,
        audio_len,
        ..
    } = fixture();
    let config = AudioWindowConfig::sonic();

    let short = mel.clone().narrow(1, 0, 2999);
    assert_eq!(
        models.encode(short, audio_len, &config).unwrap_err(),
        AudioConditioningError::MelFrames {
            frames: 2999,
            window: 3000
        }
    );
    assert_eq!(
        models.encode(mel.clone(), 1, &config).unwrap_err(),
        AudioConditioningError::TooShort {
            audio_len: 1,
            step: 2
        }
    );
    assert_eq!(
        models.encode(mel.clone(), 751, &config).unwrap_err(),
        AudioConditioningError::LongerThanFeatures {
            audio_len: 751,
            needed: 1502,
            available: 1500
        }
    );
    let bins = mel.clone().narrow(0, 0, 79);
    assert!(matches!(
        models.encode(bins, audio_len, &config).unwrap_err(),
        AudioConditioningError::Whisper(WhisperError::MelBins {
            expected: 80,
            found: 79
        })
    ));
    assert!(matches!(
        models
            .encode(mel.clone(), audio_len, &config.clone().with_step(0))
            .unwrap_err(),
        AudioConditioningError::Config(_)
    ));

    let states = models.encode(mel, audio_len, &config).unwrap();
    let wrong_clip = Tensor::<B, 2>::zeros([1, 15], &device);
    assert_eq!(
        models.condition(&states, wrong_clip).unwrap_err(),
        AudioConditioningError::Mismatch {
            what: "audio2bucket input width (audio window + CLIP embedding)",
            expected: 50 * 32 + 16,
            found: 50 * 32 + 15
        }
    );
}
