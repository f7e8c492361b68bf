//! The full-size modules have exactly the parameter names and shapes of the released
//! checkpoints (`fixtures/golden/keys/*.tsv`, dumped from the PyTorch modules), in the same
//! order. The modules are built lazily: no parameter is allocated (checked).

mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::Backend;
use burn::tensor::Tensor;
use common::{TestBackend, reference_keys};
use sonic_core::models::audio_adapters::{Audio2BucketConfig, Audio2TokenConfig};
use sonic_core::models::clip::ClipVisionConfig;
use sonic_core::models::whisper::WhisperEncoderConfig;
use sonic_core::weights::param_specs;

#[derive(Default)]
struct CountInitialized {
    initialized: usize,
    total: usize,
}

impl<B: Backend> ModuleVisitor<B> for CountInitialized {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.total += 1;
        self.initialized += usize::from(param.is_initialized());
    }
}

fn assert_keys<M: Module<TestBackend>>(module: M, file: &str) {
    let expected = reference_keys(file);
    let got = param_specs::<TestBackend, M>(&module);
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "{file}: parameter {i} differs");
    }
    assert_eq!(got.len(), expected.len(), "{file}: parameter count");
    let mut count = CountInitialized::default();
    module.visit(&mut count);
    assert_eq!(count.total, expected.len());
    assert_eq!(count.initialized, 0, "{file}: parameters were allocated");
}

#[test]
fn whisper_tiny_encoder_keys_match_release() {
    let module = WhisperEncoderConfig::whisper_tiny().init::<TestBackend>(&common::device());
    assert_keys(module, "whisper_encoder_keys.tsv");
}

#[test]
fn clip_vit_h_keys_match_release() {
    let module = ClipVisionConfig::vit_h_14().init::<TestBackend>(&common::device());
    assert_keys(module, "clip_image_encoder_keys.tsv");
}

#[test]
fn audio2token_keys_match_release() {
    let module = Audio2TokenConfig::sonic().init::<TestBackend>(&common::device());
    assert_keys(module, "audio2token_keys.tsv");
}

#[test]
fn audio2bucket_keys_match_release() {
    let module = Audio2BucketConfig::sonic().init::<TestBackend>(&common::device());
    assert_keys(module, "audio2bucket_keys.tsv");
}
