//! The Whisper audio encoder (whisper-tiny in Sonic), returning every hidden state.
//!
//! Reference: transformers 4.43.2 `WhisperEncoder` (`models/whisper/modeling_whisper.py`), called
//! by Sonic's `sonic.py` `test()` as `encoder(x, output_hidden_states=True).hidden_states`
//! stacked on dim 2. Checkpoint: `openai/whisper-tiny` `model.safetensors` (or
//! `pytorch_model.bin`), a `WhisperForConditionalGeneration` file whose encoder keys are
//! `model.encoder.*`.

use std::path::Path;

use crate::nn::cpu::gelu;
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{
    Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig1d,
};
use burn::prelude::Backend;
use burn::tensor::{DType, Tensor};
use serde::Deserialize;

use super::{ConfigError, hf_config};
use crate::nn::dtype::cast_to;
use crate::nn::self_attention::{SelfAttention, SelfAttentionConfig};
use crate::weights::{Checkpoint, LoadError, LoadOptions, LoadReport, load_module};

/// Weight file names tried by [`load_whisper_encoder_dir`], in order.
pub const WHISPER_WEIGHT_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];

/// Why the encoder refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WhisperError {
    /// The log-mel input has the wrong number of mel bins.
    #[error("Whisper encoder expects {expected} mel bins, got {found}")]
    MelBins {
        /// Bins the encoder was built for.
        expected: usize,
        /// Bins of the input.
        found: usize,
    },
    /// The log-mel input is not exactly one 30 s window (transformers raises the same).
    #[error("Whisper encoder expects exactly {expected} mel frames (one 30 s window), got {found}")]
    Frames {
        /// `2 * max_source_positions`.
        expected: usize,
        /// Frames of the input.
        found: usize,
    },
}

/// Configuration of [`WhisperEncoder`]; field names are those of transformers'
/// `WhisperConfig` (only the encoder's).
#[derive(Config, Debug, PartialEq)]
pub struct WhisperEncoderConfig {
    /// Mel bins of the log-mel input.
    #[config(default = 80)]
    pub num_mel_bins: usize,
    /// Model width.
    #[config(default = 384)]
    pub d_model: usize,
    /// Transformer layers.
    #[config(default = 4)]
    pub encoder_layers: usize,
    /// Attention heads per layer.
    #[config(default = 6)]
    pub encoder_attention_heads: usize,
    /// Hidden width of the feed-forward block.
    #[config(default = 1536)]
    pub encoder_ffn_dim: usize,
    /// Output positions per window (the input has twice as many mel frames).
    #[config(default = 1500)]
    pub max_source_positions: usize,
}

/// The keys of a transformers `config.json` the encoder needs; defaults are `WhisperConfig`'s.
#[derive(Deserialize)]
struct HfWhisperConfig {
    #[serde(default = "defaults::num_mel_bins")]
    num_mel_bins: usize,
    #[serde(default = "defaults::d_model")]
    d_model: usize,
    #[serde(default = "defaults::encoder_layers")]
    encoder_layers: usize,
    #[serde(default = "defaults::encoder_attention_heads")]
    encoder_attention_heads: usize,
    #[serde(default = "defaults::encoder_ffn_dim")]
    encoder_ffn_dim: usize,
    #[serde(default = "defaults::max_source_positions")]
    max_source_positions: usize,
    #[serde(default = "defaults::activation_function")]
    activation_function: String,
}

mod defaults {
    pub fn num_mel_bins() -> usize {
        80
    }
    pub fn d_model() -> usize {
        384
    }
    pub fn encoder_layers() -> usize {
        4
    }
    pub fn encoder_attention_heads() -> usize {
        6
    }
    pub fn encoder_ffn_dim() -> usize {
        1536
    }
    pub fn max_source_positions() -> usize {
        1500
    }
    pub fn activation_function() -> String {
        "gelu".into()
    }
}

impl WhisperEncoderConfig {
    /// whisper-tiny, as Sonic uses it: `openai/whisper-tiny` `config.json` (`d_model` 384,
    /// `encoder_layers` 4, `encoder_attention_heads` 6, `encoder_ffn_dim` 1536,
    /// `num_mel_bins` 80, `max_source_positions` 1500).
    pub fn whisper_tiny() -> Self {
        Self::new()
    }

    /// Reads the encoder's settings from a transformers `config.json` (missing keys take
    /// `WhisperConfig`'s defaults, as transformers does). Only `activation_function: "gelu"`
    /// is supported.
    pub fn from_hf_config(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let raw: HfWhisperConfig = hf_config::read(path)?;
        if raw.activation_function != "gelu" {
            return Err(hf_config::invalid(
                path,
                ConfigError::unsupported(
                    "activation_function",
                    &raw.activation_function,
                    "\"gelu\"",
                ),
            ));
        }
        if raw.encoder_attention_heads == 0
            || !raw.d_model.is_multiple_of(raw.encoder_attention_heads)
        {
            return Err(hf_config::invalid(
                path,
                ConfigError::invalid(
                    "encoder_attention_heads",
                    raw.encoder_attention_heads,
                    format!("must divide `d_model` {}", raw.d_model),
                ),
            ));
        }
        Ok(Self {
            num_mel_bins: raw.num_mel_bins,
            d_model: raw.d_model,
            encoder_layers: raw.encoder_layers,
            encoder_attention_heads: raw.encoder_attention_heads,
            encoder_ffn_dim: raw.encoder_ffn_dim,
            max_source_positions: raw.max_source_positions,
        })
    }

    /// Mel frames of one input window: `2 * max_source_positions` (conv2 has stride 2).
    pub fn input_frames(&self) -> usize {
        2 * self.max_source_positions
    }

    /// Builds the module (lazily initialised).
    pub fn init<B: Backend>(&self, device: &B::Device) -> WhisperEncoder<B> {
        let d = self.d_model;
        WhisperEncoder {
            conv1: Conv1dConfig::new(self.num_mel_bins, d, 3)
                .with_padding(PaddingConfig1d::Explicit(1, 1))
                .init(device),
            conv2: Conv1dConfig::new(d, d, 3)
                .with_stride(2)
                .with_padding(PaddingConfig1d::Explicit(1, 1))
                .init(device),
            embed_positions: EmbeddingConfig::new(self.max_source_positions, d).init(device),
            layers: (0..self.encoder_layers)
                .map(|_| self.init_layer(device))
                .collect(),
            layer_norm: LayerNormConfig::new(d).init(device),
            num_mel_bins: self.num_mel_bins,
            max_source_positions: self.max_source_positions,
        }
    }

    fn init_layer<B: Backend>(&self, device: &B::Device) -> WhisperEncoderLayer<B> {
        let d = self.d_model;
        WhisperEncoderLayer {
            // OpenAI's Whisper has no key bias.
            self_attn: SelfAttentionConfig::new(d, self.encoder_attention_heads)
                .with_key_bias(false)
                .init(device),
            self_attn_layer_norm: LayerNormConfig::new(d).init(device),
            fc1: LinearConfig::new(d, self.encoder_ffn_dim).init(device),
            fc2: LinearConfig::new(self.encoder_ffn_dim, d).init(device),
            final_layer_norm: LayerNormConfig::new(d).init(device),
        }
    }
}

/// One pre-LN transformer layer of the encoder.
#[derive(Module, Debug)]
pub struct WhisperEncoderLayer<B: Backend> {
    /// Self-attention (k_proj without bias).
    pub self_attn: SelfAttention<B>,
    /// LayerNorm before the attention.
    pub self_attn_layer_norm: LayerNorm<B>,
    /// Feed-forward in.
    pub fc1: Linear<B>,
    /// Feed-forward out.
    pub fc2: Linear<B>,
    /// LayerNorm before the feed-forward block.
    pub final_layer_norm: LayerNorm<B>,
}

impl<B: Backend> WhisperEncoderLayer<B> {
    /// # Shapes
    /// - `x`: `[batch, positions, d_model]`
    /// - returns `[batch, positions, d_model]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = x.clone() + self.self_attn.forward(self.self_attn_layer_norm.forward(x));
        let h = gelu(crate::nn::cpu::linear(
            &self.fc1,
            self.final_layer_norm.forward(x.clone()),
        ));
        let x = x + crate::nn::cpu::linear(&self.fc2, h);
        if x.dtype() == DType::F16 {
            // transformers clamps f16 activations that overflowed to +-(f16::MAX - 1000); on
            // finite values at most that large the clamp is the identity.
            let bound = 65504.0 - 1000.0;
            x.clamp(-bound, bound)
        } else {
            x
        }
    }
}

/// The encoder's hidden states for a batch of 30 s windows.
#[derive(Debug, Clone)]
pub struct WhisperEncoderOutput<B: Backend> {
    /// Every hidden state, stacked on dim 2 as Sonic stacks them: index 0 is the embedding
    /// output (conv stem + positions), `1..layers` the outputs of layers `1..layers`, and the
    /// last one the final `layer_norm` of the last layer's output.
    /// `[batch, positions, layers + 1, d_model]`.
    pub hidden_states: Tensor<B, 4>,
}

impl<B: Backend> WhisperEncoderOutput<B> {
    /// transformers' `last_hidden_state` (= the last stacked state).
    /// `[batch, positions, d_model]`.
    pub fn last_hidden_state(&self) -> Tensor<B, 3> {
        let [batch, positions, states, d] = self.hidden_states.dims();
        self.hidden_states
            .clone()
            .narrow(2, states - 1, 1)
            .reshape([batch, positions, d])
    }
}

/// The Whisper encoder: conv stem, learned positions, pre-LN transformer layers, final norm.
#[derive(Module, Debug)]
pub struct WhisperEncoder<B: Backend> {
    /// Mel bins -> width, kernel 3, padding 1.
    pub conv1: Conv1d<B>,
    /// Width -> width, kernel 3, stride 2, padding 1 (halves the frame rate to 50 Hz).
    pub conv2: Conv1d<B>,
    /// Positional table (sinusoidal values in the released file, loaded as weights).
    pub embed_positions: Embedding<B>,
    /// Transformer layers.
    pub layers: Vec<WhisperEncoderLayer<B>>,
    /// Final LayerNorm.
    pub layer_norm: LayerNorm<B>,
    num_mel_bins: usize,
    max_source_positions: usize,
}

impl<B: Backend> WhisperEncoder<B> {
    /// Mel frames of one input window (3000 for whisper-tiny).
    pub fn input_frames(&self) -> usize {
        2 * self.max_source_positions
    }

    /// Mel bins of the input.
    pub fn num_mel_bins(&self) -> usize {
        self.num_mel_bins
    }

    /// Output positions per window (1500: one per 20 ms).
    pub fn positions(&self) -> usize {
        self.max_source_positions
    }

    /// Hidden states returned per position: embedding output + one per layer.
    pub fn num_hidden_states(&self) -> usize {
        self.layers.len() + 1
    }

    /// Encodes log-mel windows and returns every hidden state.
    ///
    /// The input is cast to the weights' dtype first.
    ///
    /// # Shapes
    /// - `input_features`: `[batch, num_mel_bins, 2 * max_source_positions]`
    /// - returns hidden states `[batch, max_source_positions, layers + 1, d_model]`
    ///
    /// # Errors
    /// [`WhisperError`] when the input is not `num_mel_bins` x `2 * max_source_positions`.
    pub fn forward(
        &self,
        input_features: Tensor<B, 3>,
    ) -> Result<WhisperEncoderOutput<B>, WhisperError> {
        let [_, bins, frames] = input_features.dims();
        if bins != self.num_mel_bins {
            return Err(WhisperError::MelBins {
                expected: self.num_mel_bins,
                found: bins,
            });
        }
        if frames != self.input_frames() {
            return Err(WhisperError::Frames {
                expected: self.input_frames(),
                found: frames,
            });
        }
        let positions = self.embed_positions.weight.val(); // [positions, d]
        let x = cast_to(input_features, positions.dtype());
        let x = gelu(self.conv1.forward(x)); // [b, d, frames]
        let x = gelu(self.conv2.forward(x)); // [b, d, positions]
        let mut x = x.swap_dims(1, 2) + positions.unsqueeze_dim::<3>(0); // [b, positions, d]

        let mut states = Vec::with_capacity(self.layers.len() + 1);
        for layer in &self.layers {
            states.push(x.clone());
            x = layer.forward(x);
        }
        states.push(self.layer_norm.forward(x));
        let hidden_states = Tensor::stack::<4>(states, 2); // [b, positions, layers + 1, d]
        Ok(WhisperEncoderOutput { hidden_states })
    }
}

/// Loads the encoder from a whisper weight file: `model.safetensors` or `pytorch_model.bin`
/// of `openai/whisper-tiny` (keys `model.encoder.*`), or a `WhisperModel` file (keys
/// `encoder.*`). The decoder's keys are reported as deliberately not loaded.
pub fn load_whisper_encoder<B: Backend>(
    config: &WhisperEncoderConfig,
    path: impl AsRef<Path>,
    options: LoadOptions,
    device: &B::Device,
) -> Result<(WhisperEncoder<B>, LoadReport), LoadError> {
    const UNUSED: &str = "decoder / LM head: Sonic uses only the Whisper encoder";
    let checkpoint = Checkpoint::open(path)?;
    let prefix = ["model.encoder.", "encoder."]
        .into_iter()
        .find(|prefix| checkpoint.keys().any(|key| key.starts_with(prefix)));
    let checkpoint = match prefix {
        Some(prefix) => checkpoint.select_prefix(prefix, UNUSED)?,
        // A bare encoder state dict: the strict check names whatever does not fit.
        None => checkpoint,
    };
    load_module(config.init(device), &checkpoint, options)
}

/// Loads the encoder from a Hugging Face model directory: `config.json` and the first of
/// [`WHISPER_WEIGHT_FILES`] present.
pub fn load_whisper_encoder_dir<B: Backend>(
    dir: impl AsRef<Path>,
    options: LoadOptions,
    device: &B::Device,
) -> Result<(WhisperEncoder<B>, LoadReport), LoadError> {
    let dir = dir.as_ref();
    let config = WhisperEncoderConfig::from_hf_config(dir.join("config.json"))?;
    let weights = hf_config::first_existing(dir, &WHISPER_WEIGHT_FILES)?;
    load_whisper_encoder(&config, weights, options, device)
}
