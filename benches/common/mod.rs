//! Shared by the bench binaries: size tiers, quick mode, backends, random inputs and the
//! configurations of every size.
//!
//! # Environment
//! - `SONIC_BENCH_QUICK=1`: fixture sizes only and short measurements (CI smoke runs; add
//!   criterion's `--test` to run each bench once without timing).
//! - `SONIC_BENCH_SIZES=fixture,medium,real`: the size tiers to run (default `fixture,medium`;
//!   `real` is the released model at the real compute shape: meant for GPUs).
#![allow(dead_code)] // each bench binary uses a different part

use std::path::PathBuf;
use std::time::Duration;

use burn::prelude::Backend;
use burn::tensor::{Distribution, Tensor};
use criterion::Criterion;
use serde_json::Value;

use sonic_core::models::clip::ClipVisionConfig;
use sonic_core::models::unet::{DownBlockType, UNetConfig, UpBlockType};
use sonic_core::models::vae::AutoencoderKLTemporalDecoderConfig;

/// A size tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// The golden fixtures' tiny configs and shapes (`fixtures/golden/*/config.json`).
    Fixture,
    /// `fixtures/medium.json`: the shapes the PyTorch comparison uses.
    Medium,
    /// The released configs at the real compute shape (512x512, 25 frames, batch 3).
    Real,
}

impl Size {
    /// The name used in bench ids.
    pub fn name(self) -> &'static str {
        match self {
            Size::Fixture => "fixture",
            Size::Medium => "medium",
            Size::Real => "real",
        }
    }
}

/// Whether `SONIC_BENCH_QUICK` asks for a smoke run.
pub fn quick() -> bool {
    std::env::var("SONIC_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The size tiers to run (see the module docs).
pub fn sizes() -> Vec<Size> {
    if quick() {
        return vec![Size::Fixture];
    }
    let spec = std::env::var("SONIC_BENCH_SIZES").unwrap_or_else(|_| "fixture,medium".into());
    spec.split(',')
        .map(|s| match s.trim() {
            "fixture" => Size::Fixture,
            "medium" => Size::Medium,
            "real" => Size::Real,
            other => panic!("SONIC_BENCH_SIZES: unknown size `{other}` (fixture, medium, real)"),
        })
        .collect()
}

/// Criterion settings: few samples (model forwards take up to seconds on 2 cores), shorter
/// still in quick mode.
pub fn criterion() -> Criterion {
    let c = Criterion::default().sample_size(10);
    if quick() {
        c.warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(200))
    } else {
        c.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5))
    }
    .configure_from_args()
}

/// Runs `$bench::<Backend>(c, "name", &device)` on each benched backend: the CPU always, and
/// the first WGPU adapter / CUDA device when the `wgpu` / `cuda` feature is on and one is
/// present (`cargo bench --features cuda`), in f32. Bench ids carry the backend name.
#[allow(unused_macros)] // the host-only benches (media, storage) use none
macro_rules! for_each_backend {
    ($c:expr, $bench:ident) => {{
        $bench::<burn::backend::Flex>($c, "cpu", &Default::default());
        #[cfg(feature = "wgpu")]
        if let Some(device) =
            common::gpu::<sonic::backends::Wgpu>(sonic::backends::Device::Wgpu(None))
        {
            $bench::<sonic::backends::Wgpu>($c, "wgpu", &device);
        }
        #[cfg(feature = "cuda")]
        if let Some(device) = common::gpu::<sonic::backends::Cuda>(sonic::backends::Device::Cuda(0))
        {
            $bench::<sonic::backends::Cuda>($c, "cuda", &device);
        }
    }};
}

/// burn's device for a GPU `device` in f32, or `None` (with the reason on stderr: a bench
/// binary, not library code) when it is absent.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub fn gpu<B: sonic::backends::SelectableBackend>(
    device: sonic::backends::Device,
) -> Option<B::Device> {
    let choice = sonic::backends::BackendChoice::new(device, sonic::backends::Precision::F32)
        .and_then(|choice| choice.burn_device::<B>());
    match choice {
        Ok(device) => Some(device),
        Err(error) => {
            eprintln!("not benching {device}: {error}");
            None
        }
    }
}

/// Waits for the backend's queued work (GPU backends run asynchronously).
pub fn sync<B: Backend>(device: &B::Device) {
    B::sync(device).expect("backend sync");
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A golden case directory.
pub fn golden(case: &str) -> PathBuf {
    repo().join("fixtures/golden").join(case)
}

/// `fixtures/medium.json`.
pub fn medium() -> Value {
    let path = repo().join("fixtures/medium.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// The `config` object of a golden case's `config.json`.
pub fn golden_config(case: &str) -> Value {
    let path = golden(case).join("config.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    value["config"].clone()
}

/// A `usize` field of a JSON object.
pub fn num(value: &Value, key: &str) -> usize {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {value}")) as usize
}

/// A `[usize]` field of a JSON object.
pub fn nums(value: &Value, key: &str) -> Vec<usize> {
    value[key]
        .as_array()
        .unwrap_or_else(|| panic!("`{key}` is not an array in {value}"))
        .iter()
        .map(|v| v.as_u64().expect("a number") as usize)
        .collect()
}

/// Standard normal values of a shape.
pub fn randn<B: Backend, const D: usize>(shape: [usize; D], device: &B::Device) -> Tensor<B, D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// Uniform values in `[lo, hi)`.
pub fn uniform<B: Backend, const D: usize>(
    shape: [usize; D],
    lo: f64,
    hi: f64,
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::random(shape, Distribution::Uniform(lo, hi), device)
}

/// UNet config and input shape of a size.
#[derive(Debug, Clone)]
pub struct UNetShape {
    /// Model configuration.
    pub config: UNetConfig,
    /// Batch (3 guidance branches).
    pub batch: usize,
    /// Frames per window.
    pub frames: usize,
    /// Latent height and width.
    pub latent_hw: [usize; 2],
    /// CLIP tokens per frame.
    pub clip_tokens: usize,
    /// Audio tokens per frame.
    pub audio_tokens: usize,
}

/// The UNet of a size.
pub fn unet_shape(size: Size) -> UNetShape {
    match size {
        Size::Fixture => {
            let config = UNetConfig::from_diffusers_file(golden("unet").join("unet/config.json"))
                .expect("fixture UNet config");
            let case = golden_config("unet");
            let tokens = case["add_ip_adapters"]["num_adapter_embeds"][0]
                .as_u64()
                .expect("num_adapter_embeds") as usize;
            let hw = nums(&case, "latent_hw");
            UNetShape {
                config: config.with_audio_tokens(tokens),
                batch: 3,
                frames: num(&case, "frames"),
                latent_hw: [hw[0], hw[1]],
                clip_tokens: 1,
                audio_tokens: tokens,
            }
        }
        Size::Medium => {
            let medium = medium();
            let entry = &medium["unet_medium"];
            let config = medium_unet_config(&entry["config"]);
            let input = &entry["input"];
            let hw = nums(input, "latent_hw");
            let audio_tokens = num(input, "audio_tokens");
            UNetShape {
                config: config.with_audio_tokens(audio_tokens),
                batch: num(input, "batch"),
                frames: num(input, "frames"),
                latent_hw: [hw[0], hw[1]],
                clip_tokens: num(input, "clip_tokens"),
                audio_tokens,
            }
        }
        Size::Real => UNetShape {
            config: UNetConfig::svd_xt(),
            batch: 3,
            frames: 25,
            latent_hw: [64, 64],
            clip_tokens: 1,
            audio_tokens: 32,
        },
    }
}

/// A diffusers UNet config written as JSON in `medium.json`.
pub fn medium_unet_config(config: &Value) -> UNetConfig {
    let down = config["down_block_types"]
        .as_array()
        .expect("down_block_types")
        .iter()
        .map(|t| match t.as_str() {
            Some("CrossAttnDownBlockSpatioTemporal") => {
                DownBlockType::CrossAttnDownBlockSpatioTemporal
            }
            Some("DownBlockSpatioTemporal") => DownBlockType::DownBlockSpatioTemporal,
            other => panic!("down block type {other:?}"),
        })
        .collect();
    let up = config["up_block_types"]
        .as_array()
        .expect("up_block_types")
        .iter()
        .map(|t| match t.as_str() {
            Some("UpBlockSpatioTemporal") => UpBlockType::UpBlockSpatioTemporal,
            Some("CrossAttnUpBlockSpatioTemporal") => UpBlockType::CrossAttnUpBlockSpatioTemporal,
            other => panic!("up block type {other:?}"),
        })
        .collect();
    UNetConfig::new()
        .with_in_channels(num(config, "in_channels"))
        .with_out_channels(num(config, "out_channels"))
        .with_block_out_channels(nums(config, "block_out_channels"))
        .with_layers_per_block(num(config, "layers_per_block"))
        .with_num_attention_heads(nums(config, "num_attention_heads"))
        .with_cross_attention_dim(num(config, "cross_attention_dim"))
        .with_addition_time_embed_dim(num(config, "addition_time_embed_dim"))
        .with_projection_class_embeddings_input_dim(num(
            config,
            "projection_class_embeddings_input_dim",
        ))
        .with_num_frames(num(config, "num_frames"))
        .with_transformer_layers_per_block(num(config, "transformer_layers_per_block"))
        .with_down_block_types(down)
        .with_up_block_types(up)
}

/// A VAE config from `block_out_channels`, `layers_per_block`, `latent_channels`.
pub fn vae_config(config: &Value) -> AutoencoderKLTemporalDecoderConfig {
    AutoencoderKLTemporalDecoderConfig::new()
        .with_block_out_channels(nums(config, "block_out_channels"))
        .with_layers_per_block(num(config, "layers_per_block"))
        .with_latent_channels(num(config, "latent_channels"))
}

/// VAE decode: config, frames per chunk, latent size.
pub fn vae_decode_shape(size: Size) -> (AutoencoderKLTemporalDecoderConfig, usize, [usize; 2]) {
    match size {
        Size::Fixture => (vae_config(&golden_config("vae")), 5, [8, 8]),
        Size::Medium => {
            let entry = &medium()["vae_decode_medium"];
            let hw = nums(&entry["input"], "latent_hw");
            (
                vae_config(&entry["config"]),
                num(&entry["input"], "frames"),
                [hw[0], hw[1]],
            )
        }
        Size::Real => (AutoencoderKLTemporalDecoderConfig::svd_xt(), 8, [64, 64]),
    }
}

/// VAE encode: config, images, image size.
pub fn vae_encode_shape(size: Size) -> (AutoencoderKLTemporalDecoderConfig, usize, [usize; 2]) {
    match size {
        Size::Fixture => (vae_config(&golden_config("vae")), 1, [64, 64]),
        Size::Medium => {
            let entry = &medium()["vae_encode_medium"];
            let hw = nums(&entry["input"], "image_hw");
            (
                vae_config(&entry["config"]),
                num(&entry["input"], "images"),
                [hw[0], hw[1]],
            )
        }
        Size::Real => (AutoencoderKLTemporalDecoderConfig::svd_xt(), 1, [512, 512]),
    }
}

/// CLIP vision config of a size.
pub fn clip_config(size: Size) -> ClipVisionConfig {
    let from = |c: &Value| {
        ClipVisionConfig::new()
            .with_hidden_size(num(c, "hidden_size"))
            .with_intermediate_size(num(c, "intermediate_size"))
            .with_num_hidden_layers(num(c, "num_hidden_layers"))
            .with_num_attention_heads(num(c, "num_attention_heads"))
            .with_projection_dim(num(c, "projection_dim"))
            .with_image_size(num(c, "image_size"))
            .with_patch_size(num(c, "patch_size"))
    };
    match size {
        Size::Fixture => from(&golden_config("clip_vision")),
        Size::Medium => from(&medium()["clip_medium"]["config"]),
        Size::Real => ClipVisionConfig::vit_h_14(),
    }
}

/// RIFE width and frame size of a size.
pub fn rife_shape(size: Size) -> (usize, [usize; 2]) {
    match size {
        Size::Fixture => {
            let c = golden_config("rife");
            let hw = nums(&c, "frame_hw");
            (num(&c, "c"), [hw[0], hw[1]])
        }
        Size::Medium => {
            let entry = &medium()["rife_medium"];
            let hw = nums(&entry["input"], "frame_hw");
            (num(&entry["config"], "c"), [hw[0], hw[1]])
        }
        Size::Real => (90, [512, 512]),
    }
}
