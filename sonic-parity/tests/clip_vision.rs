//! The CLIP vision tower against the golden fixture, loaded with the real loader from the
//! fp16 file (into f32 by default, or kept in f16 on request).

mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::Backend;
use burn::tensor::{DType, Tensor};
use common::{TestBackend, assert_case_passes, golden};
use sonic_core::models::clip::{ClipError, ClipVisionConfig, load_clip_vision_dir};
use sonic_core::weights::LoadOptions;

#[test]
fn clip_vision_matches_reference() {
    let report = assert_case_passes("clip_vision");
    // The preprocessing (resized_224_uint8, pixel_values, ...) and the model outputs.
    assert_eq!(report.comparisons.len(), 5);
}

#[derive(Default)]
struct Dtypes(Vec<DType>);

impl<B: Backend> ModuleVisitor<B> for Dtypes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push(param.val().dtype());
    }
}

fn dtypes<M: Module<TestBackend>>(module: &M) -> Vec<DType> {
    let mut visitor = Dtypes::default();
    module.visit(&mut visitor);
    visitor.0
}

#[test]
fn fp16_file_loads_as_f32_or_f16() {
    let dir = golden("clip_vision").join("image_encoder");
    let device = common::device();
    let (model, report) =
        load_clip_vision_dir::<TestBackend>(&dir, LoadOptions::default(), &device).unwrap();
    assert!(report.file.ends_with("model.fp16.safetensors"));
    assert_eq!(report.stored_dtypes.get("F16"), Some(&40));
    assert!(dtypes(&model).iter().all(|d| *d == DType::F32));

    let (model, _) =
        load_clip_vision_dir::<TestBackend>(&dir, LoadOptions::with_dtype(DType::F16), &device)
            .unwrap();
    let kinds = dtypes(&model);
    assert_eq!(kinds.len(), 40);
    assert!(kinds.iter().all(|d| *d == DType::F16));
}

#[test]
fn wrong_image_size_is_a_typed_error() {
    let device = common::device();
    let config =
        ClipVisionConfig::from_hf_config(golden("clip_vision").join("image_encoder/config.json"))
            .unwrap();
    assert_eq!(config.num_positions(), 257);
    let model = config.init::<TestBackend>(&device);
    let err = model
        .forward(Tensor::zeros([1, 3, 112, 112], &device))
        .unwrap_err();
    assert_eq!(
        err,
        ClipError::InputShape {
            channels: 3,
            size: 224,
            found: vec![1, 3, 112, 112]
        }
    );
}

#[test]
fn runs_in_f16() {
    // f16 keeps 11 significant bits: measured max errors 1.5e-3 (image_embeds) and 6.6e-3
    // (last_hidden_state) on this case; 500x the f32 tolerances leaves a margin of 3x and more.
    let options = sonic_parity::ParityOptions {
        dtype: Some(DType::F16),
        tolerance_scale: 500.0,
    };
    let report =
        sonic_parity::run_case::<TestBackend>(golden("clip_vision"), &common::device(), &options)
            .unwrap();
    assert!(report.passed(), "{report}");
}
