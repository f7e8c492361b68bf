//! The shared diffusers building blocks (`nn::resnet`, `nn::resample`) against diffusers 0.29
//! outputs of the same blocks with the same weights (`fixtures/generated/nn_blocks`).

mod common;

use burn::module::Module;
use burn::tensor::Tensor;
use common::{TestBackend, generated};
use sonic_core::nn::resample::{Downsample2DConfig, DownsamplePadding, Upsample2DConfig};
use sonic_core::nn::resnet::{
    MergeStrategy, ResnetBlock2DConfig, SpatioTemporalResBlockConfig, TemporalResnetBlockConfig,
};
use sonic_core::weights::{Checkpoint, LoadOptions, load_module};
use sonic_parity::Case;

type B = TestBackend;

fn case() -> Case {
    Case::open(generated("nn_blocks")).expect("nn_blocks fixture")
}

/// Loads the block stored under `name.` in the fixture's weights with the real loader.
fn load<M: Module<B>>(module: M, name: &str) -> M {
    let checkpoint = Checkpoint::open(generated("nn_blocks").join("weights.safetensors"))
        .and_then(|c| c.select_prefix(&format!("{name}."), "another block"))
        .expect("fixture weights");
    load_module(module, &checkpoint, LoadOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .0
}

fn input<const D: usize>(case: &Case, name: &str) -> Tensor<B, D> {
    case.input(name, &common::device())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn assert_matches<const D: usize>(case: &Case, name: &str, got: Tensor<B, D>) {
    let mut report = common::new_report(case);
    report
        .check_tensor(case, &format!("{name}.out"), got)
        .unwrap();
    common::assert_passed(&report);
}

#[test]
fn resnet_block_2d_with_time_embedding_and_shortcut() {
    let case = case();
    let block = load(
        ResnetBlock2DConfig::new(32, 64)
            .with_temb_channels(Some(16))
            .init(&common::device()),
        "resnet2d_temb",
    );
    assert!(block.conv_shortcut.is_some());
    let out = block.forward(
        input(&case, "resnet2d_temb.x"),
        Some(input(&case, "resnet2d_temb.temb")),
    );
    assert_matches(&case, "resnet2d_temb", out);
}

#[test]
fn resnet_block_2d_without_time_embedding() {
    let case = case();
    let block = load(
        ResnetBlock2DConfig::new(64, 64).init(&common::device()),
        "resnet2d",
    );
    assert!(block.conv_shortcut.is_none() && block.time_emb_proj.is_none());
    let out = block.forward(input(&case, "resnet2d.x"), None);
    assert_matches(&case, "resnet2d", out);
}

#[test]
fn temporal_resnet_block() {
    let case = case();
    let block = load(
        TemporalResnetBlockConfig::new(32, 32)
            .with_temb_channels(Some(16))
            .with_eps(1e-5)
            .init(&common::device()),
        "temporal_resnet",
    );
    let out = block.forward(
        input(&case, "temporal_resnet.x"),
        Some(input(&case, "temporal_resnet.temb")),
    );
    assert_matches(&case, "temporal_resnet", out);
}

#[test]
fn spatio_temporal_block_as_in_the_unet() {
    let case = case();
    let config = SpatioTemporalResBlockConfig::new(32, 64)
        .with_temb_channels(Some(16))
        .with_eps(1e-5);
    assert_eq!(config.merge_strategy, MergeStrategy::LearnedWithImages);
    let block = load(config.init(&common::device()), "st_unet");
    let out = block.forward(
        input(&case, "st_unet.x"),
        Some(input(&case, "st_unet.temb")),
        3,
    );
    assert_matches(&case, "st_unet", out);
}

#[test]
fn spatio_temporal_block_as_in_the_vae_decoder() {
    let case = case();
    let block = load(
        SpatioTemporalResBlockConfig::vae_decoder(64, 32).init(&common::device()),
        "st_vae",
    );
    let out = block.forward(input(&case, "st_vae.x"), None, 5);
    assert_matches(&case, "st_vae", out);
}

#[test]
fn mixing_direction_matters() {
    // The same weights with the mix not switched must NOT match: the fixture's mix factors are
    // far from 0, so this catches a swapped blend.
    let case = case();
    let block = load(
        SpatioTemporalResBlockConfig::vae_decoder(64, 32)
            .with_switch_spatial_to_temporal_mix(false)
            .init(&common::device()),
        "st_vae",
    );
    let out = block.forward(input(&case, "st_vae.x"), None, 5);
    let mut report = common::new_report(&case);
    report.check_tensor(&case, "st_vae.out", out).unwrap();
    assert!(
        !report.passed(),
        "an unswitched mix should differ:\n{report}"
    );
}

#[test]
fn downsample_symmetric_padding() {
    let case = case();
    let down = load(
        Downsample2DConfig::new(32, 48).init(&common::device()),
        "down_symmetric",
    );
    let out = down.forward(input(&case, "down_symmetric.x"));
    assert_eq!(out.dims(), [2, 48, 4, 5]);
    assert_matches(&case, "down_symmetric", out);
}

#[test]
fn downsample_bottom_right_padding() {
    let case = case();
    let down = load(
        Downsample2DConfig::new(32, 48)
            .with_padding(DownsamplePadding::BottomRight)
            .init(&common::device()),
        "down_bottom_right",
    );
    let out = down.forward(input(&case, "down_bottom_right.x"));
    assert_eq!(out.dims(), [2, 48, 3, 4]);
    assert_matches(&case, "down_bottom_right", out);
}

#[test]
fn upsample_doubles_or_follows_the_requested_size() {
    let case = case();
    let up = load(Upsample2DConfig::new(32, 48).init(&common::device()), "up");
    assert_matches(&case, "up", up.forward(input(&case, "up.x"), None));
    assert_matches(
        &case,
        "up_sized",
        up.forward(input(&case, "up_sized.x"), Some([7, 9])),
    );
}

#[test]
fn safetensors_header_length_starting_with_0x80_is_not_a_pickle() {
    // This fixture's header is 0x1e80 bytes long, so its first byte is a pickle's PROTO opcode.
    let path = generated("nn_blocks").join("weights.safetensors");
    let first = std::fs::read(&path).unwrap()[0];
    assert_eq!(first, 0x80);
    let checkpoint = Checkpoint::open(&path).unwrap();
    assert_eq!(
        checkpoint.format(),
        sonic_core::weights::CheckpointFormat::Safetensors
    );
}
