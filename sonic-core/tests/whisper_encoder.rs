//! The Whisper encoder against the golden fixture, loaded with the real loader.

mod common;

use burn::tensor::Tensor;
use common::{TestBackend, assert_case_passes, golden};
use sonic_core::models::whisper::{
    WhisperEncoderConfig, WhisperError, load_whisper_encoder, load_whisper_encoder_dir,
};
use sonic_core::weights::LoadOptions;

#[test]
fn whisper_encoder_matches_reference() {
    let report = assert_case_passes("whisper_encoder");
    assert_eq!(report.comparisons.len(), 2);
}
