//! The stage-observer hook: named intermediate tensors of a run, for parity tests and
//! debugging.
//!
//! Names and layouts follow the `pipeline_e2e` reference case
//! (`fixtures/golden/pipeline_e2e/README.md`); tensors recorded once per window or per chunk
//! arrive one call at a time, in execution order:
//!
//! | name | shape | when |
//! |---|---|---|
//! | `ref_img`, `face_mask` | `[3, H, W]` | once |
//! | `input_features` | `[80, 3000 K]` | once |
//! | `whisper_hidden_states_used` | `[1, 2 audio_len, blocks, d]` | once |
//! | `clip_image_embeds` | `[1, clip_dim]` | once |
//! | `audio2token_input` / `audio2bucket_input` | `[N, 10, blocks, d]` / `[N, 50, 1, d]` | once |
//! | `audio_tokens_cond`, `audio_tokens_uncond` | `[N, tokens, dim]` | once |
//! | `audio2bucket_raw`, `motion_buckets` | `[N, 2, 1]` | once |
//! | `motion_buckets_scaled` | `[N, 1, 2, 1]` | once |
//! | `vae_encode_mean`, `ref_image_latents` | `[1, 4, h, w]` | once |
//! | `image_latents` | `[3, 4, h, w]` | once |
//! | `image_embeddings_cfg`, `audio_prompts_cfg` | `[3, N, 1, clip_dim]`, `[3, N, tokens, dim]` | once |
//! | `latent_noise`, `initial_latents` | `[1, N, 4, h, w]` | once |
//! | `timesteps`, `guidance_scale1`, `guidance_scale2` | `[steps]` | once |
//! | `window_frame_indices` (i64) | `[25]` | per window |
//! | `window_index_start` (i64), `window_timestep` | `[1]` | per window |
//! | `window_added_time_ids` | `[3, 3]` | per window |
//! | `window_clip_context`, `window_audio_context` | `[75, 1, clip_dim]`, `[75, tokens, dim]` | per window |
//! | `window_unet_output` | `[3, 25, 4, h, w]` | per window |
//! | `window_v_guided`, `window_latents_after_step` | `[25, 4, h, w]` | per window |
//! | `latents_after_step_{i}` | `[1, N, 4, h, w]` | per step |
//! | `decoded_frames` | `[chunk, 3, H, W]` in `[0, 1]` | per VAE chunk |
//! | `rife_middle_frames` | `[1, 3, H, W]` | per interpolated frame |

use std::collections::BTreeMap;

use burn::prelude::Backend;
use burn::tensor::{Tensor, TensorData};

/// Receives named intermediate tensors of a run.
///
/// [`StageObserver::wants`] is asked first: a tensor nobody wants is never read back from the
/// device, so an observer that wants nothing costs nothing.
pub trait StageObserver: Send {
    /// Whether [`StageObserver::record`] should be called for `name`.
    fn wants(&self, name: &str) -> bool {
        let _ = name;
        true
    }

    /// One intermediate tensor (read back to the host, in its compute dtype).
    fn record(&mut self, name: &str, tensor: TensorData);
}

/// A [`StageObserver`] that keeps everything it is given (or only the names it was told to
/// keep), in order.
#[derive(Debug, Default)]
pub struct StageRecorder {
    only: Option<Vec<String>>,
    /// Every recorded tensor by name, in the order recorded.
    pub tensors: BTreeMap<String, Vec<TensorData>>,
}

impl StageRecorder {
    /// Records every stage.
    pub fn all() -> Self {
        Self::default()
    }

    /// Records only `names`.
    pub fn only<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Self {
            only: Some(names.into_iter().map(Into::into).collect()),
            tensors: BTreeMap::new(),
        }
    }

    /// The tensors recorded under `name` (empty if none).
    pub fn get(&self, name: &str) -> &[TensorData] {
        self.tensors.get(name).map_or(&[], Vec::as_slice)
    }
}

impl StageObserver for StageRecorder {
    fn wants(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == name))
    }

    fn record(&mut self, name: &str, tensor: TensorData) {
        self.tensors
            .entry(name.to_owned())
            .or_default()
            .push(tensor);
    }
}

/// Optional observer plumbing used inside the pipeline.
pub(crate) struct Stages<'a> {
    observer: Option<&'a mut dyn StageObserver>,
}

impl<'a> Stages<'a> {
    pub(crate) fn new(observer: Option<&'a mut dyn StageObserver>) -> Self {
        Self { observer }
    }

    pub(crate) fn wants(&self, name: &str) -> bool {
        self.observer.as_ref().is_some_and(|o| o.wants(name))
    }

    /// Records `tensor()` under `name` if wanted (the closure runs only then).
    pub(crate) fn tensor<B: Backend, const D: usize>(
        &mut self,
        name: &str,
        tensor: impl FnOnce() -> Tensor<B, D>,
    ) {
        if self.wants(name) {
            let data = tensor().into_data();
            self.data(name, data);
        }
    }

    /// Records host data under `name` if wanted.
    pub(crate) fn data(&mut self, name: &str, data: TensorData) {
        if let Some(observer) = self.observer.as_mut()
            && observer.wants(name)
        {
            observer.record(name, data);
        }
    }
}
