//! audio2token and audio2bucket against the golden fixtures, loaded with the real loaders.

mod common;

use common::{TestBackend, assert_case_passes, device, golden};
use sonic_core::models::audio_adapters::{Audio2TokenConfig, load_audio2token};
use sonic_core::weights::{KeyProblem, LoadError, LoadOptions};

#[test]
fn audio2token_matches_reference() {
    let report = assert_case_passes("audio2token");
    assert_eq!(report.comparisons.len(), 2);
}

#[test]
fn audio2bucket_matches_reference() {
    let report = assert_case_passes("audio2bucket");
    assert_eq!(report.comparisons.len(), 3);
}

#[test]
fn wrong_shape_names_key_and_both_shapes() {
    // The fixture file holds a tiny model; the released config expects full-size tensors.
    let err = load_audio2token::<TestBackend>(
        &Audio2TokenConfig::sonic(),
        golden("audio2token").join("audio2token.pth"),
        LoadOptions::default(),
        &device(),
    )
    .unwrap_err();
    let LoadError::KeyMismatch { problems, .. } = &err else {
        panic!("expected a key mismatch, got {err}");
    };
    assert!(problems.contains(&KeyProblem::Shape {
        key: "proj1.weight".into(),
        expected: vec![1024, 19200],
        found: vec![64, 960],
    }));
    assert!(err.to_string().contains("proj1.weight"), "{err}");
}
