//! SVD-xt's VAE: diffusers `AutoencoderKLTemporalDecoder` (image encoder + temporal decoder).
//!
//! Sonic encodes the portrait once ([`AutoencoderKLTemporalDecoder::encode`]: the latent mean
//! seeds the initial noise, the mode conditions the UNet) and decodes the generated latents in
//! chunks of [`DEFAULT_DECODE_CHUNK_SIZE`] frames
//! ([`AutoencoderKLTemporalDecoder::decode_latents_chunked`]), each chunk an independent
//! temporal context exactly as the reference's `decode_latents`.
//!
//! Reference: diffusers 0.29 `models/autoencoders/autoencoder_kl_temporal_decoder.py`,
//! `models/autoencoders/vae.py` (`Encoder`, `DiagonalGaussianDistribution`),
//! `models/unets/unet_3d_blocks.py` (`MidBlockTemporalDecoder`, `UpBlockTemporalDecoder`);
//! Sonic `src/pipelines/pipeline_sonic.py` (`decode_latents`). Weights:
//! `stable-video-diffusion-img2vid-xt/vae/diffusion_pytorch_model.fp16.safetensors` with its
//! `config.json` (keys `encoder.*`, `quant_conv.*`, `decoder.*`; no `post_quant_conv`).
//!
//! Layout: [`encoder`] (down path), [`decoder`] (temporal up path), [`attention`] (the
//! mid-block self-attention both use); the shared resnet and resampling blocks are in
//! [`crate::nn`].

pub mod attention;
pub mod decoder;
pub mod encoder;

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::Backend;
use burn::tensor::Tensor;
use serde::Deserialize;

use self::decoder::TemporalDecoder;
use self::encoder::Encoder;
use super::ConfigError;
use crate::nn::conv::conv2d_forward;
use crate::weights::{Checkpoint, LoadError, LoadOptions, LoadReport, load_module};

/// Frames decoded per chunk by Sonic (`decode_chunk_size` in `sonic.yaml`).
pub const DEFAULT_DECODE_CHUNK_SIZE: NonZeroUsize = NonZeroUsize::new(8).unwrap();

/// The config file diffusers writes beside the weights.
pub const CONFIG_FILE: &str = "config.json";
/// The half-precision weights Sonic loads (`variant="fp16"`); preferred by [`load_vae`].
pub const WEIGHTS_FILE_FP16: &str = "diffusion_pytorch_model.fp16.safetensors";
/// The full-precision weights, used by [`load_vae`] when there is no fp16 file.
pub const WEIGHTS_FILE: &str = "diffusion_pytorch_model.safetensors";

/// Configuration of [`AutoencoderKLTemporalDecoder`] (the fields of diffusers' `config.json`
/// that shape the model).
#[derive(Config, Debug, PartialEq)]
pub struct AutoencoderKLTemporalDecoderConfig {
    /// Image channels in.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Image channels out.
    #[config(default = 3)]
    pub out_channels: usize,
    /// Channels of each level, highest resolution first (each a multiple of 32).
    #[config(default = "vec![128, 256, 512, 512]")]
    pub block_out_channels: Vec<usize>,
    /// Resnets per encoder level (the decoder has one more per level).
    #[config(default = 2)]
    pub layers_per_block: usize,
    /// Latent channels.
    #[config(default = 4)]
    pub latent_channels: usize,
    /// Latents are multiplied by this before diffusion and divided by it before decoding.
    #[config(default = 0.18215)]
    pub scaling_factor: f64,
}

impl AutoencoderKLTemporalDecoderConfig {
    /// SVD-xt's VAE (`stabilityai/stable-video-diffusion-img2vid-xt` `vae/config.json`):
    /// block_out_channels `[128, 256, 512, 512]`, 4 `DownEncoderBlock2D`, layers_per_block 2,
    /// latent_channels 4, scaling_factor 0.18215.
    pub fn svd_xt() -> Self {
        Self::new()
    }

    /// Reads a diffusers `config.json` of an `AutoencoderKLTemporalDecoder`; fields it lacks
    /// take diffusers' constructor defaults.
    pub fn from_diffusers_json(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            file: path.to_path_buf(),
            source,
        })?;
        let invalid = |source: ConfigError| LoadError::Config {
            file: path.to_path_buf(),
            source,
        };
        let raw: DiffusersVaeConfig = serde_json::from_str(&text).map_err(|e| invalid(e.into()))?;
        if let Some(class) = &raw.class_name
            && class != "AutoencoderKLTemporalDecoder"
        {
            return Err(invalid(ConfigError::unsupported(
                "_class_name",
                class,
                "AutoencoderKLTemporalDecoder",
            )));
        }
        let config = Self {
            in_channels: raw.in_channels.unwrap_or(3),
            out_channels: raw.out_channels.unwrap_or(3),
            block_out_channels: raw.block_out_channels.unwrap_or_else(|| vec![64]),
            layers_per_block: raw.layers_per_block.unwrap_or(1),
            latent_channels: raw.latent_channels.unwrap_or(4),
            scaling_factor: raw.scaling_factor.unwrap_or(0.18215),
        };
        if let Some(types) = &raw.down_block_types {
            if let Some(other) = types.iter().find(|t| *t != "DownEncoderBlock2D") {
                return Err(invalid(ConfigError::unsupported(
                    "down_block_types",
                    other,
                    "DownEncoderBlock2D",
                )));
            }
            if types.len() != config.block_out_channels.len() {
                return Err(invalid(ConfigError::LengthMismatch {
                    field: "down_block_types",
                    len: types.len(),
                    other: "block_out_channels",
                    other_len: config.block_out_channels.len(),
                }));
            }
        }
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    /// Checks that a model can be built from this config (what [`Self::init`] assumes); the
    /// error names the field and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.block_out_channels.is_empty() {
            return Err(ConfigError::Empty {
                field: "block_out_channels",
            });
        }
        if let Some(c) = self
            .block_out_channels
            .iter()
            .find(|&&c| c == 0 || c % 32 != 0)
        {
            return Err(ConfigError::invalid(
                "block_out_channels",
                c,
                "must be a positive multiple of 32 (GroupNorm groups)",
            ));
        }
        for (name, value) in [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("layers_per_block", self.layers_per_block),
            ("latent_channels", self.latent_channels),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(name, value, "must be at least 1"));
            }
        }
        if !self.scaling_factor.is_finite() || self.scaling_factor == 0.0 {
            return Err(ConfigError::invalid(
                "scaling_factor",
                self.scaling_factor,
                "must be finite and non-zero",
            ));
        }
        Ok(())
    }

    /// Total downsampling factor between pixels and latents (8 for SVD-xt).
    pub fn spatial_scale(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }

    /// Builds the model; parameters are initialised lazily (nothing is allocated until used
    /// or loaded).
    ///
    /// # Panics
    /// If the config is invalid (see [`Self::validate`]); the loaders validate first.
    pub fn init<B: Backend>(&self, device: &B::Device) -> AutoencoderKLTemporalDecoder<B> {
        if let Err(message) = self.validate() {
            panic!("invalid AutoencoderKLTemporalDecoderConfig: {message}");
        }
        let moments = 2 * self.latent_channels;
        AutoencoderKLTemporalDecoder {
            encoder: Encoder::new(self, device),
            quant_conv: Conv2dConfig::new([moments, moments], [1, 1]).init(device),
            decoder: TemporalDecoder::new(self, device),
            in_channels: self.in_channels,
            latent_channels: self.latent_channels,
            spatial_scale: self.spatial_scale(),
            scaling_factor: self.scaling_factor,
        }
    }
}

/// The fields of diffusers' `config.json` that we read (others, such as `sample_size` and
/// `force_upcast`, do not change the computation).
#[derive(Deserialize)]
struct DiffusersVaeConfig {
    #[serde(rename = "_class_name")]
    class_name: Option<String>,
    in_channels: Option<usize>,
    out_channels: Option<usize>,
    down_block_types: Option<Vec<String>>,
    block_out_channels: Option<Vec<usize>>,
    layers_per_block: Option<usize>,
    latent_channels: Option<usize>,
    scaling_factor: Option<f64>,
}

/// Why an input cannot go through the VAE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VaeError {
    /// The channel dimension does not match the model.
    #[error("{input} has {found} channels, the VAE expects {expected} (shape {shape:?})")]
    Channels {
        /// Which input.
        input: &'static str,
        /// Channels the model expects.
        expected: usize,
        /// Channels given.
        found: usize,
        /// Full shape given.
        shape: Vec<usize>,
    },
    /// The spatial size is empty or too small for the encoder's downsampling.
    #[error("{input} of shape {shape:?} is too small: height and width must be at least {min}")]
    Size {
        /// Which input.
        input: &'static str,
        /// Smallest allowed height and width.
        min: usize,
        /// Full shape given.
        shape: Vec<usize>,
    },
    /// The frames are not a whole number of clips.
    #[error("{frames} latent frames are not a positive whole number of clips of {num_frames}")]
    FrameCount {
        /// Frames given.
        frames: usize,
        /// Frames per clip requested.
        num_frames: usize,
    },
}

/// The encoder's diagonal Gaussian over latents (diffusers `DiagonalGaussianDistribution`).
#[derive(Debug, Clone)]
pub struct LatentDistribution<B: Backend> {
    /// Mean, `[n, latent_channels, h/8, w/8]` (Sonic's `latent_dist.mean`).
    pub mean: Tensor<B, 4>,
    /// Log-variance clamped to `[-30, 20]`, same shape.
    pub logvar: Tensor<B, 4>,
}

impl<B: Backend> LatentDistribution<B> {
    /// The mode, which is the mean (Sonic's `latent_dist.mode()`).
    pub fn mode(&self) -> Tensor<B, 4> {
        self.mean.clone()
    }

    /// Standard deviation `exp(logvar / 2)`.
    pub fn std(&self) -> Tensor<B, 4> {
        self.logvar.clone().mul_scalar(0.5).exp()
    }

    /// A sample `mean + std * noise` for standard-normal `noise` of the mean's shape (the
    /// caller owns the random numbers, so runs are reproducible).
    pub fn sample(&self, noise: Tensor<B, 4>) -> Tensor<B, 4> {
        self.mean.clone().add(self.std().mul(noise))
    }
}

/// SVD's VAE: image encoder, `quant_conv`, temporal decoder.
#[derive(Module, Debug)]
pub struct AutoencoderKLTemporalDecoder<B: Backend> {
    /// Image -> moments.
    pub encoder: Encoder<B>,
    /// 1x1 convolution on the moments.
    pub quant_conv: Conv2d<B>,
    /// Latent clips -> frames.
    pub decoder: TemporalDecoder<B>,
    in_channels: usize,
    latent_channels: usize,
    spatial_scale: usize,
    #[module(skip)]
    scaling_factor: f64,
}

impl<B: Backend> AutoencoderKLTemporalDecoder<B> {
    /// The latent scaling factor (0.18215 for SVD-xt).
    pub fn scaling_factor(&self) -> f64 {
        self.scaling_factor
    }

    /// Pixels per latent along each side (8 for SVD-xt).
    pub fn spatial_scale(&self) -> usize {
        self.spatial_scale
    }

    /// Encodes images in `[-1, 1]` to the latent distribution (unscaled: Sonic multiplies
    /// the mean by [`Self::scaling_factor`] for its initial latents).
    ///
    /// The input is cast to the weights' dtype.
    ///
    /// # Shapes
    /// - `images`: `[n, in_channels, h, w]`, `h` and `w` at least [`Self::spatial_scale`]
    /// - returns mean and log-variance `[n, latent_channels, h / 8, w / 8]` (floored per level)
    pub fn encode(&self, images: Tensor<B, 4>) -> Result<LatentDistribution<B>, VaeError> {
        let shape = images.dims();
        if shape[1] != self.in_channels {
            return Err(VaeError::Channels {
                input: "images",
                expected: self.in_channels,
                found: shape[1],
                shape: shape.to_vec(),
            });
        }
        if shape[0] == 0 || shape[2] < self.spatial_scale || shape[3] < self.spatial_scale {
            return Err(VaeError::Size {
                input: "images",
                min: self.spatial_scale,
                shape: shape.to_vec(),
            });
        }
        let images = images.cast(self.encoder.conv_in.weight.val().dtype());
        let moments = conv2d_forward(&self.quant_conv, self.encoder.forward(images));
        let c = self.latent_channels;
        Ok(LatentDistribution {
            mean: moments.clone().narrow(1, 0, c),
            logvar: moments.narrow(1, c, c).clamp(-30.0, 20.0),
        })
    }

    /// Decodes unscaled latents of `n / num_frames` clips (diffusers `decode(z, num_frames)`).
    /// The input is cast to the weights' dtype; the frames come out in it.
    ///
    /// This holds the activations of all `n` frames at once; Sonic decodes through
    /// [`Self::decode_latents_chunked`] instead.
    ///
    /// # Shapes
    /// - `z`: `[n, latent_channels, h, w]`, clip-major (`n` a multiple of `num_frames`)
    /// - returns `[n, out_channels, 8h, 8w]`
    pub fn decode(&self, z: Tensor<B, 4>, num_frames: usize) -> Result<Tensor<B, 4>, VaeError> {
        self.check_latents(&z)?;
        let frames = z.dims()[0];
        if num_frames == 0 || !frames.is_multiple_of(num_frames) {
            return Err(VaeError::FrameCount { frames, num_frames });
        }
        let z = z.cast(self.decoder.conv_in.weight.val().dtype());
        Ok(self.decoder.forward(z, num_frames))
    }

    /// Decodes the diffusion's (scaled) latents chunk by chunk, as Sonic's `decode_latents`:
    /// divide by the scaling factor, then decode `chunk_size` consecutive frames at a time,
    /// each chunk with `num_frames` = its length, i.e. an independent temporal context (the
    /// temporal convolutions zero-pad at chunk borders; the last chunk may be shorter).
    ///
    /// The iterator decodes a chunk only when asked for it and keeps nothing of it, so at
    /// most one chunk of frames (and its activations) is alive while the caller streams
    /// the frames out.
    ///
    /// # Shapes
    /// - `latents`: `[frames, latent_channels, h, w]` (the reference's
    ///   `latents.flatten(0, 1)` of `[batch, frames, ...]`)
    /// - each item: [`DecodedChunk`] with frames `[len, out_channels, 8h, 8w]`
    pub fn decode_latents_chunked(
        &self,
        latents: Tensor<B, 4>,
        chunk_size: NonZeroUsize,
    ) -> Result<DecodeChunks<'_, B>, VaeError> {
        self.check_latents(&latents)?;
        let total = latents.dims()[0];
        Ok(DecodeChunks {
            vae: self,
            latents,
            chunk_size: chunk_size.get(),
            next: 0,
            total,
        })
    }

    /// [`Self::decode_latents_chunked`] collected into one tensor `[frames, out_channels,
    /// 8h, 8w]` (holds every decoded frame: for tests and short clips).
    pub fn decode_latents(
        &self,
        latents: Tensor<B, 4>,
        chunk_size: NonZeroUsize,
    ) -> Result<Tensor<B, 4>, VaeError> {
        let chunks: Vec<_> = self
            .decode_latents_chunked(latents, chunk_size)?
            .map(|c| c.frames)
            .collect();
        Ok(Tensor::cat(chunks, 0))
    }

    fn check_latents(&self, z: &Tensor<B, 4>) -> Result<(), VaeError> {
        let shape = z.dims();
        if shape[1] != self.latent_channels {
            return Err(VaeError::Channels {
                input: "latents",
                expected: self.latent_channels,
                found: shape[1],
                shape: shape.to_vec(),
            });
        }
        if shape[0] == 0 || shape[2] == 0 || shape[3] == 0 {
            return Err(VaeError::Size {
                input: "latents",
                min: 1,
                shape: shape.to_vec(),
            });
        }
        Ok(())
    }
}

/// One decoded chunk of [`DecodeChunks`].
#[derive(Debug, Clone)]
pub struct DecodedChunk<B: Backend> {
    /// Index of the chunk's first frame in the whole clip.
    pub start: usize,
    /// The frames, `[len, out_channels, H, W]`, in `[-1, 1]` (roughly), in the weights' dtype.
    pub frames: Tensor<B, 4>,
}

/// Iterator over the decoded chunks of [`AutoencoderKLTemporalDecoder::decode_latents_chunked`].
#[derive(Debug)]
pub struct DecodeChunks<'a, B: Backend> {
    vae: &'a AutoencoderKLTemporalDecoder<B>,
    latents: Tensor<B, 4>,
    chunk_size: usize,
    next: usize,
    total: usize,
}

impl<B: Backend> Iterator for DecodeChunks<'_, B> {
    type Item = DecodedChunk<B>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.total {
            return None;
        }
        let start = self.next;
        let len = self.chunk_size.min(self.total - start);
        self.next += len;
        tracing::debug!(start, len, total = self.total, "decoding VAE chunk");
        // `1 / scaling_factor * latents`, as the reference (a multiply, not a divide).
        let z = self
            .latents
            .clone()
            .narrow(0, start, len)
            .mul_scalar(1.0 / self.vae.scaling_factor)
            .cast(self.vae.decoder.conv_in.weight.val().dtype());
        Some(DecodedChunk {
            start,
            frames: self.vae.decoder.forward(z, len),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.total - self.next).div_ceil(self.chunk_size);
        (left, Some(left))
    }
}

impl<B: Backend> ExactSizeIterator for DecodeChunks<'_, B> {}

/// Loads the VAE from a diffusers `vae/` folder: `config.json` and
/// `diffusion_pytorch_model.fp16.safetensors` (or, without it,
/// `diffusion_pytorch_model.safetensors`). `options.dtype` picks the dtype the weights are
/// loaded as (an fp16 file loads into f32 or f16 alike).
pub fn load_vae<B: Backend>(
    dir: impl AsRef<Path>,
    options: LoadOptions,
    device: &B::Device,
) -> Result<(AutoencoderKLTemporalDecoder<B>, LoadReport), LoadError> {
    let dir = dir.as_ref();
    let config = AutoencoderKLTemporalDecoderConfig::from_diffusers_json(dir.join(CONFIG_FILE))?;
    let weights = weights_file(dir)?;
    load_vae_file(&config, weights, options, device)
}

/// Loads the VAE weights of one file into a model built from `config` (keys as released,
/// no prefix).
pub fn load_vae_file<B: Backend>(
    config: &AutoencoderKLTemporalDecoderConfig,
    path: impl AsRef<Path>,
    options: LoadOptions,
    device: &B::Device,
) -> Result<(AutoencoderKLTemporalDecoder<B>, LoadReport), LoadError> {
    let path = path.as_ref();
    config.validate().map_err(|source| LoadError::Config {
        file: path.to_path_buf(),
        source,
    })?;
    let checkpoint = Checkpoint::open(path)?;
    load_module(config.init(device), &checkpoint, options)
}

fn weights_file(dir: &Path) -> Result<PathBuf, LoadError> {
    [WEIGHTS_FILE_FP16, WEIGHTS_FILE]
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| LoadError::Io {
            file: dir.join(WEIGHTS_FILE_FP16),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no {WEIGHTS_FILE_FP16} or {WEIGHTS_FILE} in this folder"),
            ),
        })
}
