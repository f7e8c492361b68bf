//! Sonic's UNet against the golden fixtures (loaded with the real loader), the face-mask
//! resampling, and the full-size checkpoint layout.

mod common;

use common::{TestBackend, assert_case_passes, golden, reference_keys};
use sonic_core::models::unet::{FaceMask, UNetConfig, UNetInput, load_unet};
use sonic_core::nn::attention::AttentionChunking;
use sonic_core::weights::{LoadError, LoadOptions, param_specs};
use sonic_parity::Case;

#[test]
fn unet_matches_reference() {
    let report = assert_case_passes("unet");
    // output, 2 embeddings, 4 down blocks, mid block, first up block.
    assert_eq!(report.comparisons.len(), 9, "{report}");
}

/// The model's chunking reaches every attention: with a budget of 8192 scores (16 query rows
/// per chunk in the 16x16 spatial self-attention, single entries in the 8x8 one, batches of
/// pixels in the temporal ones) the output still matches the reference.
#[test]
fn tightly_chunked_unet_matches_reference() {
    let device = common::device();
    let case = Case::open(golden("unet")).unwrap();
    let config = UNetConfig::from_diffusers_file(case.file("unet/config.json"))
        .unwrap()
        .with_audio_tokens(4);
    let (model, report) = load_unet::<TestBackend>(
        &config,
        case.file("unet.pth"),
        LoadOptions::default(),
        &device,
    )
    .unwrap();
    assert_eq!(report.loaded, 1492);
    let model = model.with_attention_chunking(AttentionChunking::new(8192));
    let mask = FaceMask::from_tensor(
        case.input::<TestBackend, 4>("ip_adapter_mask", &device)
            .unwrap(),
    )
    .unwrap();
    let output = model.forward(
        UNetInput::new(
            case.input("sample", &device).unwrap(),
            case.input("timestep", &device).unwrap(),
            case.input("clip_context", &device).unwrap(),
            case.input("audio_context", &device).unwrap(),
            case.input("added_time_ids", &device).unwrap(),
        )
        .with_face_mask(&mask),
    );
    let mut parity = common::new_report(&case);
    parity.check_tensor(&case, "output", output).unwrap();
    common::assert_passed(&parity);
}

#[test]
fn mask_downsample_matches_reference() {
    let report = assert_case_passes("mask_downsample");
    assert_eq!(report.comparisons.len(), 10, "{report}");
}

/// Names, shapes and order of the released `unet.pth` (`keys/unet_pth_keys.tsv`), from the
/// lazily initialised full-size model: nothing of its 1.5 B parameters is allocated.
#[test]
fn full_size_keys_and_shapes_match_the_release() {
    let expected: Vec<(String, Vec<usize>)> = reference_keys("unet_pth_keys.tsv")
        .into_iter()
        .map(|spec| (spec.key, spec.shape))
        .collect();
    assert_eq!(expected.len(), 1492);

    let model = UNetConfig::svd_xt().init::<TestBackend>(&common::device());
    let got: Vec<(String, Vec<usize>)> = param_specs(&model)
        .into_iter()
        .map(|spec| (spec.key, spec.shape))
        .collect();
    for (i, (got, want)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "parameter {i}");
    }
    assert_eq!(got.len(), expected.len());
    let parameters: usize = got.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    assert_eq!(parameters, 1_575_741_162);
}

#[test]
fn fixture_config_is_read_from_the_diffusers_file() {
    let config = UNetConfig::from_diffusers_file(golden("unet").join("unet/config.json")).unwrap();
    assert_eq!(config.block_out_channels, vec![32, 64, 32, 32]);
    assert_eq!(config.num_attention_heads, vec![2, 2, 1, 2]);
    assert_eq!(config.cross_attention_dim, 16);
    assert_eq!(config.projection_class_embeddings_input_dim, 24);
    assert_eq!(UNetConfig::svd_xt().audio_tokens, 32);
}

#[test]
fn released_config_rejects_the_tiny_file_naming_both_shapes() {
    let err = load_unet::<TestBackend>(
        &UNetConfig::svd_xt(),
        golden("unet").join("unet.pth"),
        LoadOptions::default(),
        &common::device(),
    )
    .unwrap_err();
    let LoadError::KeyMismatch { problems, .. } = &err else {
        panic!("expected a key mismatch, got {err}");
    };
    // Every tensor but the scalar mix factors differs in shape.
    assert!(problems.len() > 1000, "{err}");
    assert!(err.to_string().contains("conv_in.weight"), "{err}");
}

#[test]
fn invalid_config_is_a_typed_error() {
    let config = UNetConfig::svd_xt().with_num_attention_heads(vec![5, 10, 20]);
    let err = load_unet::<TestBackend>(
        &config,
        golden("unet").join("unet.pth"),
        LoadOptions::default(),
        &common::device(),
    )
    .unwrap_err();
    assert!(matches!(err, LoadError::Config { .. }), "{err}");
    assert!(
        UNetConfig::from_diffusers_json(r#"{"in_channels": 8}"#).is_err(),
        "missing fields"
    );
}

#[test]
fn chunking_is_configurable_on_the_model() {
    let model = UNetConfig::svd_xt().init::<TestBackend>(&common::device());
    assert_eq!(model.attention_chunking(), AttentionChunking::default());
    let model = model.with_attention_chunking(AttentionChunking::new(1 << 20));
    assert_eq!(model.attention_chunking().max_scores, 1 << 20);
    assert_eq!(model.token_grids(64, 64), vec![4096, 1024, 256, 64]);
}
