//! The Whisper encoder against the golden fixture, loaded with the real loaders from
//! `model.safetensors` and from `pytorch_model.bin`.

mod common;

use burn::tensor::Tensor;
use common::{TestBackend, assert_case_passes, golden};
use sonic_core::models::ConfigError;
use sonic_core::models::whisper::{
    WhisperEncoderConfig, WhisperError, load_whisper_encoder, load_whisper_encoder_dir,
};
use sonic_core::weights::{LoadError, LoadOptions};
use sonic_parity::Case;

#[test]
fn whisper_encoder_matches_reference() {
    let report = assert_case_passes("whisper_encoder");
    assert_eq!(report.comparisons.len(), 2);
}

#[test]
fn safetensors_load_reports_the_dropped_decoder() {
    let dir = golden("whisper_encoder").join("whisper");
    let (_, report) =
        load_whisper_encoder_dir::<TestBackend>(&dir, LoadOptions::default(), &common::device())
            .unwrap();
    assert_eq!(report.loaded, 37);
    assert!(report.file.ends_with("model.safetensors"));
    assert_eq!(report.dropped.len(), 89 - 37);
    assert!(
        report
            .dropped
            .iter()
            .all(|(key, reason)| key.starts_with("model.decoder.") && reason.contains("decoder")),
        "{:?}",
        report.dropped
    );
}

#[test]
fn pytorch_bin_loads_the_same_encoder() {
    // A model directory holding only config.json + pytorch_model.bin (see
    // fixtures/whisper_pytorch_bin/README.md).
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        golden("whisper_encoder").join("whisper/config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    std::fs::copy(
        golden("../whisper_pytorch_bin/pytorch_model.bin"),
        dir.path().join("pytorch_model.bin"),
    )
    .unwrap();
    let device = common::device();
    let (model, report) =
        load_whisper_encoder_dir::<TestBackend>(dir.path(), LoadOptions::default(), &device)
            .unwrap();
    assert!(report.file.ends_with("pytorch_model.bin"));
    assert_eq!((report.loaded, report.dropped.len()), (37, 52));

    let case = Case::open(golden("whisper_encoder")).unwrap();
    let mel: Tensor<TestBackend, 3> = case.input("input_features", &device).unwrap();
    let output = model.forward(mel).unwrap();
    let mut parity = common::new_report(&case);
    parity
        .check_tensor(&case, "hidden_states_stacked", output.hidden_states)
        .unwrap();
    common::assert_passed(&parity);
}

#[test]
fn input_must_be_one_30s_window() {
    let device = common::device();
    let config =
        WhisperEncoderConfig::from_hf_config(golden("whisper_encoder").join("whisper/config.json"))
            .unwrap();
    assert_eq!((config.d_model, config.encoder_layers), (32, 2));
    let model = config.init::<TestBackend>(&device);
    let err = model
        .forward(Tensor::zeros([1, 80, 2999], &device))
        .unwrap_err();
    assert_eq!(
        err,
        WhisperError::Frames {
            expected: 3000,
            found: 2999
        }
    );
    let err = model
        .forward(Tensor::zeros([1, 64, 3000], &device))
        .unwrap_err();
    assert_eq!(
        err,
        WhisperError::MelBins {
            expected: 80,
            found: 64
        }
    );
}

#[test]
fn unsupported_activation_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, r#"{"d_model": 32, "activation_function": "relu"}"#).unwrap();
    let err = WhisperEncoderConfig::from_hf_config(&path).unwrap_err();
    assert!(
        matches!(
            &err,
            LoadError::Config {
                source: ConfigError::Unsupported { field: "activation_function", value, .. },
                ..
            } if value.contains("relu")
        ),
        "{err}"
    );
}

#[test]
fn full_size_config_against_tiny_file_names_both_shapes() {
    let err = load_whisper_encoder::<TestBackend>(
        &WhisperEncoderConfig::whisper_tiny(),
        golden("whisper_encoder").join("whisper/model.safetensors"),
        LoadOptions::default(),
        &common::device(),
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("conv1.weight") && message.contains("[384, 80, 3]"),
        "{message}"
    );
    assert!(message.contains("[32, 80, 3]"), "{message}");
}
