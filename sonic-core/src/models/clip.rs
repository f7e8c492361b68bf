//! The CLIP ViT-H/14 vision tower with its projection: the portrait's identity embedding.
//!
//! Reference: transformers 4.43.2 `CLIPVisionModelWithProjection`
//! (`models/clip/modeling_clip.py`), loaded by Sonic from the SVD-xt repository's
//! `image_encoder/` with `variant="fp16"`. Sonic uses `image_embeds` (not normalised).

use std::path::Path;

use crate::nn::cpu::gelu;
use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::prelude::Backend;
use burn::tensor::Tensor;
use serde::Deserialize;

use super::{ConfigError, hf_config};
use crate::nn::dtype::cast_to;
use crate::nn::self_attention::{SelfAttention, SelfAttentionConfig};
use crate::weights::{Checkpoint, KeyAction, LoadError, LoadOptions, LoadReport, load_module};

/// Weight file names tried by [`load_clip_vision_dir`], in order: the fp16 variant Sonic
/// loads first.
pub const CLIP_WEIGHT_FILES: [&str; 2] = ["model.fp16.safetensors", "model.safetensors"];

/// Why the vision tower refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClipError {
    /// `pixel_values` is not `[batch, num_channels, image_size, image_size]`.
    #[error("CLIP vision expects pixel values [batch, {channels}, {size}, {size}], got {found:?}")]
    InputShape {
        /// Channels the model was built for.
        channels: usize,
        /// Image side the model was built for.
        size: usize,
        /// Shape of the input.
        found: Vec<usize>,
    },
}

/// Configuration of [`ClipVisionModelWithProjection`]; field names are those of
/// transformers' `CLIPVisionConfig`.
#[derive(Config, Debug, PartialEq)]
pub struct ClipVisionConfig {
    /// Model width.
    #[config(default = 1280)]
    pub hidden_size: usize,
    /// Hidden width of the MLP.
    #[config(default = 5120)]
    pub intermediate_size: usize,
    /// Transformer layers.
    #[config(default = 32)]
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    #[config(default = 16)]
    pub num_attention_heads: usize,
    /// Width of `image_embeds`.
    #[config(default = 1024)]
    pub projection_dim: usize,
    /// Side of the square input image.
    #[config(default = 224)]
    pub image_size: usize,
    /// Side of a square patch (the patch embedding's kernel and stride).
    #[config(default = 14)]
    pub patch_size: usize,
    /// Input channels.
    #[config(default = 3)]
    pub num_channels: usize,
    /// LayerNorm epsilon.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
}

/// The keys of a transformers `config.json` the model needs; defaults are `CLIPVisionConfig`'s
/// (not ViT-H's: a file without a key means what transformers makes of it).
#[derive(Deserialize)]
struct HfClipVisionConfig {
    #[serde(default = "defaults::hidden_size")]
    hidden_size: usize,
    #[serde(default = "defaults::intermediate_size")]
    intermediate_size: usize,
    #[serde(default = "defaults::num_hidden_layers")]
    num_hidden_layers: usize,
    #[serde(default = "defaults::num_attention_heads")]
    num_attention_heads: usize,
    #[serde(default = "defaults::projection_dim")]
    projection_dim: usize,
    #[serde(default = "defaults::image_size")]
    image_size: usize,
    #[serde(default = "defaults::patch_size")]
    patch_size: usize,
    #[serde(default = "defaults::num_channels")]
    num_channels: usize,
    #[serde(default = "defaults::layer_norm_eps")]
    layer_norm_eps: f64,
    #[serde(default = "defaults::hidden_act")]
    hidden_act: String,
}

mod defaults {
    pub fn hidden_size() -> usize {
        768
    }
    pub fn intermediate_size() -> usize {
        3072
    }
    pub fn num_hidden_layers() -> usize {
        12
    }
    pub fn num_attention_heads() -> usize {
        12
    }
    pub fn projection_dim() -> usize {
        512
    }
    pub fn image_size() -> usize {
        224
    }
    pub fn patch_size() -> usize {
        32
    }
    pub fn num_channels() -> usize {
        3
    }
    pub fn layer_norm_eps() -> f64 {
        1e-5
    }
    pub fn hidden_act() -> String {
        "quick_gelu".into()
    }
}

impl ClipVisionConfig {
    /// OpenCLIP ViT-H/14 (laion2B) as shipped in SVD-xt's `image_encoder/config.json`
    /// (`stabilityai/stable-video-diffusion-img2vid-xt`): hidden 1280, 32 layers, 16 heads,
    /// MLP 5120, patch 14, image 224, `hidden_act: "gelu"`, LN eps 1e-5, projection 1024.
    pub fn vit_h_14() -> Self {
        Self::new()
    }

    /// Reads the settings from a transformers `config.json` (a `CLIPVisionConfig`; missing keys
    /// take transformers' defaults). Only `hidden_act: "gelu"` (exact GELU) is supported.
    pub fn from_hf_config(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let raw: HfClipVisionConfig = hf_config::read(path)?;
        if raw.hidden_act != "gelu" {
            return Err(hf_config::invalid(
                path,
                ConfigError::unsupported("hidden_act", &raw.hidden_act, "\"gelu\""),
            ));
        }
        if raw.num_attention_heads == 0 || !raw.hidden_size.is_multiple_of(raw.num_attention_heads)
        {
            return Err(hf_config::invalid(
                path,
                ConfigError::invalid(
                    "num_attention_heads",
                    raw.num_attention_heads,
                    format!("must divide `hidden_size` {}", raw.hidden_size),
                ),
            ));
        }
        if raw.patch_size == 0 || !raw.image_size.is_multiple_of(raw.patch_size) {
            return Err(hf_config::invalid(
                path,
                ConfigError::invalid(
                    "patch_size",
                    raw.patch_size,
                    format!("must divide `image_size` {}", raw.image_size),
                ),
            ));
        }
        Ok(Self {
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            projection_dim: raw.projection_dim,
            image_size: raw.image_size,
            patch_size: raw.patch_size,
            num_channels: raw.num_channels,
            layer_norm_eps: raw.layer_norm_eps,
        })
    }

    /// Tokens per image: one per patch plus the class token (257 for ViT-H/14 at 224).
    pub fn num_positions(&self) -> usize {
        (self.image_size / self.patch_size).pow(2) + 1
    }

    /// Builds the module (lazily initialised).
    pub fn init<B: Backend>(&self, device: &B::Device) -> ClipVisionModelWithProjection<B> {
        let d = self.hidden_size;
        let norm = || {
            LayerNormConfig::new(d)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        let layer = || ClipEncoderLayer {
            self_attn: SelfAttentionConfig::new(d, self.num_attention_heads).init(device),
            layer_norm1: norm(),
            mlp: ClipMlp {
                fc1: LinearConfig::new(d, self.intermediate_size).init(device),
                fc2: LinearConfig::new(self.intermediate_size, d).init(device),
            },
            layer_norm2: norm(),
        };
        let p = self.patch_size;
        ClipVisionModelWithProjection {
            vision_model: ClipVisionTransformer {
                embeddings: ClipVisionEmbeddings {
                    class_embedding: Initializer::Zeros.init([d], device),
                    patch_embedding: Conv2dConfig::new([self.num_channels, d], [p, p])
                        .with_stride([p, p])
                        .with_bias(false)
                        .init(device),
                    position_embedding: EmbeddingConfig::new(self.num_positions(), d).init(device),
                },
                pre_layrnorm: norm(),
                encoder: ClipEncoder {
                    layers: (0..self.num_hidden_layers).map(|_| layer()).collect(),
                },
                post_layernorm: norm(),
            },
            visual_projection: LinearConfig::new(d, self.projection_dim)
                .with_bias(false)
                .init(device),
            num_channels: self.num_channels,
            image_size: self.image_size,
        }
    }
}

/// Patch embedding, class token and learned positions.
#[derive(Module, Debug)]
pub struct ClipVisionEmbeddings<B: Backend> {
    /// The class token prepended to the patches.
    pub class_embedding: Param<Tensor<B, 1>>,
    /// Non-overlapping patches -> width (no bias).
    pub patch_embedding: Conv2d<B>,
    /// One learned vector per token position.
    pub position_embedding: Embedding<B>,
}

impl<B: Backend> ClipVisionEmbeddings<B> {
    /// # Shapes
    /// - `pixel_values`: `[batch, channels, image_size, image_size]`
    /// - returns `[batch, 1 + patches, hidden]`
    pub fn forward(&self, pixel_values: Tensor<B, 4>) -> Tensor<B, 3> {
        let batch = pixel_values.dims()[0];
        let patches = self.patch_embedding.forward(pixel_values); // [b, d, gh, gw]
        let [_, d, gh, gw] = patches.dims();
        let patches = patches.reshape([batch, d, gh * gw]).swap_dims(1, 2); // [b, gh*gw, d]
        let class = self
            .class_embedding
            .val()
            .reshape([1, 1, d])
            .expand([batch, 1, d]);
        let tokens = Tensor::cat(vec![class, patches], 1); // [b, 1 + gh*gw, d]
        tokens + self.position_embedding.weight.val().unsqueeze_dim::<3>(0)
    }
}

/// The MLP of an encoder layer.
#[derive(Module, Debug)]
pub struct ClipMlp<B: Backend> {
    /// Width -> intermediate.
    pub fc1: Linear<B>,
    /// Intermediate -> width.
    pub fc2: Linear<B>,
}

/// One pre-LN transformer layer.
#[derive(Module, Debug)]
pub struct ClipEncoderLayer<B: Backend> {
    /// Self-attention.
    pub self_attn: SelfAttention<B>,
    /// LayerNorm before the attention.
    pub layer_norm1: LayerNorm<B>,
    /// Feed-forward block (exact GELU).
    pub mlp: ClipMlp<B>,
    /// LayerNorm before the MLP.
    pub layer_norm2: LayerNorm<B>,
}

impl<B: Backend> ClipEncoderLayer<B> {
    /// # Shapes
    /// - `x`: `[batch, tokens, hidden]`
    /// - returns `[batch, tokens, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x));
        let h = gelu(crate::nn::cpu::linear(
            &self.mlp.fc1,
            self.layer_norm2.forward(x.clone()),
        ));
        x + crate::nn::cpu::linear(&self.mlp.fc2, h)
    }
}

/// The stack of encoder layers.
#[derive(Module, Debug)]
pub struct ClipEncoder<B: Backend> {
    /// Transformer layers.
    pub layers: Vec<ClipEncoderLayer<B>>,
}

/// The vision transformer (transformers' `CLIPVisionTransformer`).
#[derive(Module, Debug)]
pub struct ClipVisionTransformer<B: Backend> {
    /// Tokens from pixels.
    pub embeddings: ClipVisionEmbeddings<B>,
    /// LayerNorm before the encoder (the checkpoint's spelling, kept).
    pub pre_layrnorm: LayerNorm<B>,
    /// Transformer layers.
    pub encoder: ClipEncoder<B>,
    /// LayerNorm of the class token's output.
    pub post_layernorm: LayerNorm<B>,
}

/// What the vision tower returns.
#[derive(Debug, Clone)]
pub struct ClipVisionOutput<B: Backend> {
    /// `visual_projection(post_layernorm(last_hidden_state[:, 0]))`, not normalised:
    /// `[batch, projection_dim]`.
    pub image_embeds: Tensor<B, 2>,
    /// Output of the last layer (before `post_layernorm`): `[batch, tokens, hidden]`.
    pub last_hidden_state: Tensor<B, 3>,
}

/// `CLIPVisionModelWithProjection`: vision transformer + linear projection of the class token.
#[derive(Module, Debug)]
pub struct ClipVisionModelWithProjection<B: Backend> {
    /// The transformer.
    pub vision_model: ClipVisionTransformer<B>,
    /// Pooled class token -> embedding (no bias).
    pub visual_projection: Linear<B>,
    num_channels: usize,
    image_size: usize,
}

impl<B: Backend> ClipVisionModelWithProjection<B> {
    /// Side of the square input the model expects (224).
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// Embeds preprocessed images (CLIPImageProcessor output).
    ///
    /// The input is cast to the weights' dtype first, as transformers does.
    ///
    /// # Shapes
    /// - `pixel_values`: `[batch, num_channels, image_size, image_size]`
    /// - returns `image_embeds` `[batch, projection_dim]` and `last_hidden_state`
    ///   `[batch, 1 + patches, hidden]`
    ///
    /// # Errors
    /// [`ClipError::InputShape`] for any other input shape.
    pub fn forward(&self, pixel_values: Tensor<B, 4>) -> Result<ClipVisionOutput<B>, ClipError> {
        let [batch, channels, height, width] = pixel_values.dims();
        if channels != self.num_channels || height != self.image_size || width != self.image_size {
            return Err(ClipError::InputShape {
                channels: self.num_channels,
                size: self.image_size,
                found: vec![batch, channels, height, width],
            });
        }
        let vision = &self.vision_model;
        let dtype = vision.embeddings.patch_embedding.weight.val().dtype();
        let x = cast_to(pixel_values, dtype);
        let mut x = vision.pre_layrnorm.forward(vision.embeddings.forward(x)); // [b, tokens, d]
        for layer in &vision.encoder.layers {
            x = layer.forward(x);
        }
        let d = x.dims()[2];
        let pooled = vision
            .post_layernorm
            .forward(x.clone().narrow(1, 0, 1).reshape([batch, d])); // [b, d]
        Ok(ClipVisionOutput {
            image_embeds: self.visual_projection.forward(pooled),
            last_hidden_state: x,
        })
    }
}

/// Loads the model from a `CLIPVisionModelWithProjection` safetensors file (keys
/// `vision_model.*` and `visual_projection.weight`, as in SVD-xt's
/// `image_encoder/model.fp16.safetensors`). A stored `position_ids` buffer (written by
/// transformers before 4.31) is reported as deliberately not loaded.
pub fn load_clip_vision<B: Backend>(
    config: &ClipVisionConfig,
    path: impl AsRef<Path>,
    options: LoadOptions,
    device: &B::Device,
) -> Result<(ClipVisionModelWithProjection<B>, LoadReport), LoadError> {
    let checkpoint = Checkpoint::open(path)?.map_keys(|key| {
        if key == "vision_model.embeddings.position_ids" {
            KeyAction::Drop("buffer of token indices 0..positions, not a weight")
        } else {
            KeyAction::Keep(key.to_string())
        }
    })?;
    load_module(config.init(device), &checkpoint, options)
}

/// Loads the model from a Hugging Face model directory (`image_encoder/`): `config.json` and
/// the first of [`CLIP_WEIGHT_FILES`] present. fp16 files load as
/// [`LoadOptions::dtype`] says (the backend's default float when unset, f32 on CPU).
pub fn load_clip_vision_dir<B: Backend>(
    dir: impl AsRef<Path>,
    options: LoadOptions,
    device: &B::Device,
) -> Result<(ClipVisionModelWithProjection<B>, LoadReport), LoadError> {
    let dir = dir.as_ref();
    let config = ClipVisionConfig::from_hf_config(dir.join("config.json"))?;
    let weights = hf_config::first_existing(dir, &CLIP_WEIGHT_FILES)?;
    load_clip_vision(&config, weights, options, device)
}
