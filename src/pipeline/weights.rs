//! Where the checkpoints are: the layout of the released files (`--weights DIR`) and the demo
//! layout of the tiny random weights in `fixtures/golden`.
//!
//! Released layout (the tree Sonic's README asks for under `checkpoints/`):
//!
//! ```text
//! DIR/
//! ├── Sonic/unet.pth, audio2token.pth, audio2bucket.pth        LeonJoe13/Sonic
//! ├── RIFE/flownet.pkl                                          LeonJoe13/Sonic
//! ├── stable-video-diffusion-img2vid-xt/                        stabilityai/stable-video-diffusion-img2vid-xt
//! │   ├── vae/config.json, diffusion_pytorch_model.fp16.safetensors
//! │   ├── image_encoder/config.json, model.fp16.safetensors
//! │   ├── unet/config.json          (the config only: the weights are Sonic's unet.pth)
//! │   └── scheduler/scheduler_config.json
//! └── whisper-tiny/config.json, model.safetensors               openai/whisper-tiny
//! ```

use std::path::{Path, PathBuf};

use sonic_core::models::audio_adapters::{Audio2BucketConfig, Audio2TokenConfig};
use sonic_core::models::clip::CLIP_WEIGHT_FILES;
use sonic_core::models::rife::RifeConfig;
use sonic_core::models::vae::{WEIGHTS_FILE, WEIGHTS_FILE_FP16};
use sonic_core::models::whisper::WHISPER_WEIGHT_FILES;

use super::component::Component;

/// Sub-folder of the SVD-xt files in the released layout.
pub const SVD_DIR: &str = "stable-video-diffusion-img2vid-xt";

/// Audio tokens per frame of the released audio adapter (`add_ip_adapters(unet, [32], ...)`).
pub const RELEASED_AUDIO_TOKENS: usize = 32;

/// Why a weights layout is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WeightsError {
    /// A file of the layout is missing.
    #[error("{component}: {} not found ({})", path.display(), component.origin())]
    Missing {
        /// The component the file belongs to.
        component: Component,
        /// The file or folder looked for.
        path: PathBuf,
    },
    /// The hub has no such file in that repository (HTTP 404).
    #[error("{component}: `{file}` not found in the hub repository `{repo}`")]
    HubMissing {
        /// The component the file belongs to.
        component: Component,
        /// The repository (`LeonJoe13/Sonic` ...).
        repo: String,
        /// The file's path in the repository (`Sonic/unet.pth` ...).
        file: String,
    },
    /// Offline (`HF_HUB_OFFLINE`, [`HubSource::offline`](super::HubSource::offline)) and
    /// the file is not in the hub cache.
    #[error(
        "{component}: `{file}` of `{repo}` is not in the hub cache {} and the hub is offline",
        cache.display()
    )]
    HubNotCached {
        /// The component the file belongs to.
        component: Component,
        /// The repository.
        repo: String,
        /// The file's path in the repository.
        file: String,
        /// The cache folder looked in.
        cache: PathBuf,
    },
    /// Fetching a file from the hub failed (network, server, cache folder).
    #[error("{component}: fetching `{file}` of `{repo}` from the hub failed")]
    Hub {
        /// The component the file belongs to.
        component: Component,
        /// The repository.
        repo: String,
        /// The file's path in the repository.
        file: String,
        /// What went wrong (the hub client's error).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A configuration file could not be read or parsed.
    #[error("{}: {message}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Every file the pipeline loads, and the settings of the models whose checkpoints carry no
/// configuration (the audio adapters, RIFE, the UNet's audio tokens).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WeightsLayout {
    /// Sonic's UNet (`Sonic/unet.pth`).
    pub unet: PathBuf,
    /// The diffusers UNet config (`stable-video-diffusion-img2vid-xt/unet/config.json`).
    pub unet_config: PathBuf,
    /// Audio tokens per frame of the audio adapter (32 in the release).
    pub unet_audio_tokens: usize,
    /// `Sonic/audio2token.pth`.
    pub audio2token: PathBuf,
    /// Its architecture (`AudioProjModel(seq_len=10, blocks=5, channels=384, ...)` in Sonic).
    pub audio2token_config: Audio2TokenConfig,
    /// `Sonic/audio2bucket.pth`.
    pub audio2bucket: PathBuf,
    /// Its architecture.
    pub audio2bucket_config: Audio2BucketConfig,
    /// `RIFE/flownet.pkl`.
    pub rife: PathBuf,
    /// Its architecture (`c` = 90 in the release).
    pub rife_config: RifeConfig,
    /// The diffusers `vae/` folder (config + weights).
    pub vae_dir: PathBuf,
    /// The transformers `image_encoder/` folder (config + weights).
    pub image_encoder_dir: PathBuf,
    /// The `whisper-tiny/` folder (config + weights).
    pub whisper_dir: PathBuf,
    /// `scheduler/scheduler_config.json`.
    pub scheduler_config: PathBuf,
}

impl WeightsLayout {
    /// The released checkpoints under `dir`, the tree Sonic's README asks for:
    ///
    /// ```text
    /// dir/
    /// ├── Sonic/unet.pth, audio2token.pth, audio2bucket.pth        LeonJoe13/Sonic
    /// ├── RIFE/flownet.pkl                                          LeonJoe13/Sonic
    /// ├── stable-video-diffusion-img2vid-xt/                        stabilityai/stable-video-diffusion-img2vid-xt
    /// │   ├── vae/config.json, diffusion_pytorch_model.fp16.safetensors
    /// │   ├── image_encoder/config.json, model.fp16.safetensors
    /// │   ├── unet/config.json          (the config only: the weights are Sonic's unet.pth)
    /// │   └── scheduler/scheduler_config.json
    /// └── whisper-tiny/config.json, model.safetensors               openai/whisper-tiny
    /// ```
    ///
    /// Nothing is read until [`WeightsLayout::check`] or loading.
    pub fn released(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        let svd = dir.join(SVD_DIR);
        Self {
            unet: dir.join("Sonic/unet.pth"),
            unet_config: svd.join("unet/config.json"),
            unet_audio_tokens: RELEASED_AUDIO_TOKENS,
            audio2token: dir.join("Sonic/audio2token.pth"),
            audio2token_config: Audio2TokenConfig::sonic(),
            audio2bucket: dir.join("Sonic/audio2bucket.pth"),
            audio2bucket_config: Audio2BucketConfig::sonic(),
            rife: dir.join("RIFE/flownet.pkl"),
            rife_config: RifeConfig::sonic(),
            vae_dir: svd.join("vae"),
            image_encoder_dir: svd.join("image_encoder"),
            whisper_dir: dir.join("whisper-tiny"),
            scheduler_config: svd.join("scheduler/scheduler_config.json"),
        }
    }

    /// The tiny random weights of the reference fixtures (`fixtures/golden`, the files the
    /// `pipeline_e2e` case lists): same formats and key names as the release, tiny widths.
    /// The adapter, RIFE and audio-token settings come from the module cases' `config.json`.
    ///
    /// # Errors
    /// [`WeightsError::Config`] when a case config is missing or malformed.
    pub fn demo(golden: impl AsRef<Path>) -> Result<Self, WeightsError> {
        let golden = golden.as_ref();
        let unet_case = read_json(&golden.join("unet/config.json"))?;
        let unet_audio_tokens = unet_case["config"]["add_ip_adapters"]["num_adapter_embeds"][0]
            .as_u64()
            .ok_or_else(|| WeightsError::Config {
                path: golden.join("unet/config.json"),
                message: "no `config.add_ip_adapters.num_adapter_embeds[0]`".into(),
            })? as usize;
        Ok(Self {
            unet: golden.join("unet/unet.pth"),
            unet_config: golden.join("unet/unet/config.json"),
            unet_audio_tokens,
            audio2token: golden.join("audio2token/audio2token.pth"),
            audio2token_config: module_config(&golden.join("audio2token/config.json"))?,
            audio2bucket: golden.join("audio2bucket/audio2bucket.pth"),
            audio2bucket_config: module_config(&golden.join("audio2bucket/config.json"))?,
            rife: golden.join("rife/flownet.pkl"),
            rife_config: module_config(&golden.join("rife/config.json"))?,
            vae_dir: golden.join("vae/vae"),
            image_encoder_dir: golden.join("clip_vision/image_encoder"),
            whisper_dir: golden.join("whisper_encoder/whisper"),
            scheduler_config: golden.join("scheduler/scheduler/scheduler_config.json"),
        })
    }

    /// The checkpoint files by component (the manifest records their digests under
    /// [`Component::name`]), resolved the way the loaders pick them.
    ///
    /// # Errors
    /// [`WeightsError::Missing`] for the first file that does not exist.
    pub fn checkpoint_files(&self) -> Result<Vec<(Component, PathBuf)>, WeightsError> {
        use Component::*;
        Ok(vec![
            (Unet, file(Unet, &self.unet)?),
            (Audio2Token, file(Audio2Token, &self.audio2token)?),
            (Audio2Bucket, file(Audio2Bucket, &self.audio2bucket)?),
            (Rife, file(Rife, &self.rife)?),
            (
                Vae,
                first_of(Vae, &self.vae_dir, &[WEIGHTS_FILE_FP16, WEIGHTS_FILE])?,
            ),
            (
                ImageEncoder,
                first_of(ImageEncoder, &self.image_encoder_dir, &CLIP_WEIGHT_FILES)?,
            ),
            (
                Whisper,
                first_of(Whisper, &self.whisper_dir, &WHISPER_WEIGHT_FILES)?,
            ),
        ])
    }

    /// Checks that every file of the layout exists (weights and configs), before anything is
    /// loaded.
    ///
    /// # Errors
    /// [`WeightsError::Missing`] naming the first missing file and where to get it.
    pub fn check(&self) -> Result<(), WeightsError> {
        self.checkpoint_files()?;
        for (component, path) in [
            (Component::Unet, &self.unet_config),
            (Component::Vae, &self.vae_dir.join("config.json")),
            (
                Component::ImageEncoder,
                &self.image_encoder_dir.join("config.json"),
            ),
            (Component::Whisper, &self.whisper_dir.join("config.json")),
            (Component::Scheduler, &self.scheduler_config),
        ] {
            file(component, path)?;
        }
        Ok(())
    }
}

fn file(component: Component, path: &Path) -> Result<PathBuf, WeightsError> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(WeightsError::Missing {
            component,
            path: path.to_path_buf(),
        })
    }
}

fn first_of(component: Component, dir: &Path, names: &[&str]) -> Result<PathBuf, WeightsError> {
    names
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| WeightsError::Missing {
            component,
            path: dir.join(names[0]),
        })
}

fn read_json(path: &Path) -> Result<serde_json::Value, WeightsError> {
    let text = std::fs::read_to_string(path).map_err(|e| WeightsError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| WeightsError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The `config` object of a fixture case's `config.json`, as a model config.
fn module_config<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, WeightsError> {
    serde_json::from_value(read_json(path)?["config"].clone()).map_err(|e| WeightsError::Config {
        path: path.to_path_buf(),
        message: format!("`config`: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden")
    }

    #[test]
    fn demo_layout_is_complete() {
        let layout = WeightsLayout::demo(golden()).unwrap();
        layout.check().unwrap();
        assert_eq!(layout.unet_audio_tokens, 4);
        assert_eq!(layout.rife_config.c, 16);
        assert_eq!(layout.audio2token_config.context_tokens, 4);
        let files = layout.checkpoint_files().unwrap();
        assert_eq!(files.len(), 7);
        assert!(
            files[4]
                .1
                .ends_with("diffusion_pytorch_model.fp16.safetensors")
        );
    }

    #[test]
    fn released_layout_names_the_missing_file() {
        let layout = WeightsLayout::released("/nonexistent/checkpoints");
        assert_eq!(
            layout.unet,
            PathBuf::from("/nonexistent/checkpoints/Sonic/unet.pth")
        );
        match layout.check() {
            Err(error @ WeightsError::Missing { component, .. }) => {
                assert_eq!(component, Component::Unet);
                assert!(error.to_string().contains("LeonJoe13/Sonic"), "{error}");
            }
            other => panic!("{other:?}"),
        }
    }
}
