//! [`WeightsSource`]: where a pipeline's weights come from (a released-layout folder, the demo
//! layout, the Hugging Face hub, or a layout already resolved), and [`HubSource`], the hub
//! route: the released files fetched with `hf-hub` into the hub's cache.

use std::path::{Path, PathBuf};

use hf_hub::api::tokio::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use sonic_core::models::audio_adapters::{Audio2BucketConfig, Audio2TokenConfig};
use sonic_core::models::clip::CLIP_WEIGHT_FILES;
use sonic_core::models::rife::RifeConfig;
use sonic_core::models::vae::{WEIGHTS_FILE, WEIGHTS_FILE_FP16};
use sonic_core::models::whisper::WHISPER_WEIGHT_FILES;

use super::component::Component;
use super::weights::{RELEASED_AUDIO_TOKENS, WeightsError, WeightsLayout};

/// Environment variable naming the weights of [`WeightsSource::from_env`] (and so of
/// [`Pipeline::from_env`](super::Pipeline::from_env)): a folder in the released layout,
/// `demo:DIR` for the demo layout of `DIR`, or `hub` for the Hugging Face hub
/// ([`HubSource::from_env`]). Unset or empty: `./checkpoints`.
pub const WEIGHTS_ENV: &str = "SONIC_WEIGHTS";

/// The hub repository of Sonic's checkpoints (`Sonic/*.pth`) and RIFE (`RIFE/flownet.pkl`).
pub const SONIC_REPO: &str = "LeonJoe13/Sonic";
/// The hub repository of SVD-xt (VAE, image encoder, UNet config, scheduler config).
pub const SVD_REPO: &str = "stabilityai/stable-video-diffusion-img2vid-xt";
/// The hub repository of Whisper-tiny.
pub const WHISPER_REPO: &str = "openai/whisper-tiny";

/// The public hub.
pub const HUB_ENDPOINT: &str = "https://huggingface.co";

/// Where the weights come from.
///
/// ```no_run
/// use sonic::pipeline::{HubSource, WeightsSource};
///
/// let folder = WeightsSource::released("checkpoints");
/// let hub = WeightsSource::Hub(HubSource::new("/var/cache/huggingface/hub"));
/// # let _ = (folder, hub);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WeightsSource {
    /// The released files under a folder, laid out as Sonic's README asks
    /// ([`WeightsLayout::released`]).
    Released(PathBuf),
    /// The tiny random weights of a fixtures folder ([`WeightsLayout::demo`]).
    Demo(PathBuf),
    /// The released files from the Hugging Face hub, through its local cache.
    Hub(HubSource),
    /// A layout resolved already (or built by hand).
    Layout(Box<WeightsLayout>),
}

impl WeightsSource {
    /// [`WeightsSource::Released`] of `dir`.
    pub fn released(dir: impl Into<PathBuf>) -> Self {
        Self::Released(dir.into())
    }

    /// [`WeightsSource::Demo`] of `dir`.
    pub fn demo(dir: impl Into<PathBuf>) -> Self {
        Self::Demo(dir.into())
    }

    /// From [`WEIGHTS_ENV`] (`SONIC_WEIGHTS`): a folder in the released layout, `demo:DIR`,
    /// or `hub` ([`HubSource::from_env`]); unset or empty, `./checkpoints`.
    pub fn from_env() -> Self {
        Self::from_var(
            std::env::var(WEIGHTS_ENV).ok().as_deref(),
            HubSource::from_env,
        )
    }

    fn from_var(value: Option<&str>, hub: impl FnOnce() -> HubSource) -> Self {
        match value.map(str::trim).filter(|v| !v.is_empty()) {
            None => Self::released("checkpoints"),
            Some(v) if v.eq_ignore_ascii_case("hub") => Self::Hub(hub()),
            Some(v) => match v.strip_prefix("demo:") {
                Some(dir) => Self::demo(dir),
                None => Self::released(v),
            },
        }
    }

    /// The layout: paths only for a folder; for the hub, every file fetched (or found in the
    /// cache) first.
    ///
    /// # Errors
    /// [`WeightsError::Config`] for a demo folder without its case configs; the `Hub*`
    /// errors of [`HubSource::fetch`].
    pub async fn resolve(&self) -> Result<WeightsLayout, WeightsError> {
        match self {
            Self::Hub(hub) => hub.fetch().await,
            other => other.resolve_local(),
        }
    }

    /// [`WeightsSource::resolve`] from synchronous code (also inside a tokio runtime: the hub
    /// is fetched on a thread of its own). Blocks until the files are there.
    ///
    /// # Errors
    /// As [`WeightsSource::resolve`].
    pub fn resolve_blocking(&self) -> Result<WeightsLayout, WeightsError> {
        match self {
            Self::Hub(hub) => hub.fetch_blocking(),
            other => other.resolve_local(),
        }
    }

    fn resolve_local(&self) -> Result<WeightsLayout, WeightsError> {
        match self {
            Self::Released(dir) => Ok(WeightsLayout::released(dir)),
            Self::Demo(dir) => WeightsLayout::demo(dir),
            Self::Layout(layout) => Ok((**layout).clone()),
            Self::Hub(_) => unreachable!("the hub is resolved by `HubSource::fetch`"),
        }
    }
}

impl From<WeightsLayout> for WeightsSource {
    fn from(layout: WeightsLayout) -> Self {
        Self::Layout(Box::new(layout))
    }
}

/// The released files on the Hugging Face hub: [`SONIC_REPO`], [`SVD_REPO`] and
/// [`WHISPER_REPO`] at revision `main`, fetched with the `hf-hub` crate into its cache (the
/// layout `huggingface-cli` uses, so files it downloaded are found too).
///
/// Offline-safe: a file already in the cache is used without any network request; with
/// [`HubSource::offline`] set, nothing is requested and a file not in the cache is
/// [`WeightsError::HubNotCached`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubSource {
    /// The hub's address (default [`HUB_ENDPOINT`]).
    pub endpoint: String,
    /// The cache folder (the hub cache: `models--{org}--{name}/{blobs,refs,snapshots}`).
    pub cache_dir: PathBuf,
    /// Use the cache only, never the network.
    pub offline: bool,
    /// The access token, for gated or private repositories.
    pub token: Option<String>,
}

impl HubSource {
    /// The public hub, cached in `cache_dir`, online.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            endpoint: HUB_ENDPOINT.to_owned(),
            cache_dir: cache_dir.into(),
            offline: false,
            token: None,
        }
    }

    /// The hub's own variables: `HF_ENDPOINT` (the address), `HF_HUB_CACHE` or `HF_HOME`
    /// (the cache is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`),
    /// `HF_HUB_OFFLINE` (`1`, `true`, `yes` or `on`: cache only) and `HF_TOKEN`.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let cache_dir = var("HF_HUB_CACHE")
            .map(PathBuf::from)
            .or_else(|| var("HF_HOME").map(|home| Path::new(&home).join("hub")))
            .unwrap_or_else(|| {
                std::env::home_dir()
                    .unwrap_or_default()
                    .join(".cache/huggingface/hub")
            });
        let mut hub = Self::new(cache_dir);
        if let Some(endpoint) = var("HF_ENDPOINT") {
            hub.endpoint = endpoint;
        }
        hub.offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        hub.token = var("HF_TOKEN");
        hub
    }

    /// Another hub address (a mirror, a local server).
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into().trim_end_matches('/').to_owned();
        self
    }

    /// Another cache folder.
    pub fn with_cache_dir(mut self, cache_dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = cache_dir.into();
        self
    }

    /// Cache only (`true`) or the network for what the cache lacks (`false`).
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// An access token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Every file of the released layout, from the cache or fetched into it, as a
    /// [`WeightsLayout`] of paths in the cache (with the released settings of
    /// [`WeightsLayout::released`]).
    ///
    /// # Errors
    /// [`WeightsError::HubMissing`] naming the repository and the file the hub does not
    /// have, [`WeightsError::HubNotCached`] offline, [`WeightsError::Hub`] for any other
    /// failure (network, server, cache folder).
    pub async fn fetch(&self) -> Result<WeightsLayout, WeightsError> {
        let hub = Fetcher::new(self)?;
        use Component::*;
        let unet = hub.file(Unet, SONIC_REPO, &["Sonic/unet.pth"]).await?;
        let audio2token = hub
            .file(Audio2Token, SONIC_REPO, &["Sonic/audio2token.pth"])
            .await?;
        let audio2bucket = hub
            .file(Audio2Bucket, SONIC_REPO, &["Sonic/audio2bucket.pth"])
            .await?;
        let rife = hub.file(Rife, SONIC_REPO, &["RIFE/flownet.pkl"]).await?;
        let unet_config = hub.file(Unet, SVD_REPO, &["unet/config.json"]).await?;
        let vae_dir = hub
            .folder(Vae, SVD_REPO, "vae", &[WEIGHTS_FILE_FP16, WEIGHTS_FILE])
            .await?;
        let image_encoder_dir = hub
            .folder(ImageEncoder, SVD_REPO, "image_encoder", &CLIP_WEIGHT_FILES)
            .await?;
        let whisper_dir = hub
            .folder(Whisper, WHISPER_REPO, "", &WHISPER_WEIGHT_FILES)
            .await?;
        let scheduler_config = hub
            .file(Scheduler, SVD_REPO, &["scheduler/scheduler_config.json"])
            .await?;
        Ok(WeightsLayout {
            unet,
            unet_config,
            unet_audio_tokens: RELEASED_AUDIO_TOKENS,
            audio2token,
            audio2token_config: Audio2TokenConfig::sonic(),
            audio2bucket,
            audio2bucket_config: Audio2BucketConfig::sonic(),
            rife,
            rife_config: RifeConfig::sonic(),
            vae_dir,
            image_encoder_dir,
            whisper_dir,
            scheduler_config,
        })
    }

    /// [`HubSource::fetch`] from synchronous code, on a thread with its own runtime.
    ///
    /// # Errors
    /// As [`HubSource::fetch`].
    pub fn fetch_blocking(&self) -> Result<WeightsLayout, WeightsError> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| self.error(Component::Unet, SONIC_REPO, "", e))?;
                    runtime.block_on(self.fetch())
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    fn error(
        &self,
        component: Component,
        repo: &str,
        file: &str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> WeightsError {
        WeightsError::Hub {
            component,
            repo: repo.to_owned(),
            file: file.to_owned(),
            source: Box::new(source),
        }
    }
}

/// One fetch: the hub client and its cache.
struct Fetcher<'a> {
    source: &'a HubSource,
    api: hf_hub::api::tokio::Api,
    cache: Cache,
}

impl<'a> Fetcher<'a> {
    fn new(source: &'a HubSource) -> Result<Self, WeightsError> {
        let cache = Cache::new(source.cache_dir.clone());
        let mut builder = ApiBuilder::from_cache(cache.clone())
            .with_endpoint(source.endpoint.clone())
            .with_progress(false);
        if source.token.is_some() {
            builder = builder.with_token(source.token.clone());
        }
        let api = builder
            .build()
            .map_err(|e| source.error(Component::Unet, SONIC_REPO, "", e))?;
        Ok(Self { source, api, cache })
    }

    fn repo(repo: &str) -> Repo {
        Repo::with_revision(repo.to_owned(), RepoType::Model, "main".to_owned())
    }

    /// The first of `candidates` (paths in `repo`) in the cache, else the first the hub has.
    async fn file(
        &self,
        component: Component,
        repo: &str,
        candidates: &[&str],
    ) -> Result<PathBuf, WeightsError> {
        let cached = self.cache.repo(Self::repo(repo));
        if let Some(path) = candidates.iter().find_map(|file| cached.get(file)) {
            tracing::debug!(%component, repo, file = %path.display(), "weights from the hub cache");
            return Ok(path);
        }
        if self.source.offline {
            return Err(WeightsError::HubNotCached {
                component,
                repo: repo.to_owned(),
                file: candidates[0].to_owned(),
                cache: self.source.cache_dir.clone(),
            });
        }
        let remote = self.api.repo(Self::repo(repo));
        for file in candidates {
            tracing::info!(%component, repo, file, endpoint = %self.source.endpoint, "fetching from the hub");
            match remote.download(file).await {
                Ok(path) => return Ok(path),
                Err(ApiError::RequestError(e)) if e.status().map(|s| s.as_u16()) == Some(404) => {}
                Err(e) => return Err(self.source.error(component, repo, file, e)),
            }
        }
        Err(WeightsError::HubMissing {
            component,
            repo: repo.to_owned(),
            file: candidates[0].to_owned(),
        })
    }

    /// A model folder (`dir` in `repo`): its `config.json` and the first weights file of
    /// `weights`; the folder of the cache snapshot that holds them.
    async fn folder(
        &self,
        component: Component,
        repo: &str,
        dir: &str,
        weights: &[&str],
    ) -> Result<PathBuf, WeightsError> {
        let in_dir = |name: &str| {
            if dir.is_empty() {
                name.to_owned()
            } else {
                format!("{dir}/{name}")
            }
        };
        let config = self
            .file(component, repo, &[in_dir("config.json").as_str()])
            .await?;
        let candidates: Vec<String> = weights.iter().map(|name| in_dir(name)).collect();
        let candidates: Vec<&str> = candidates.iter().map(String::as_str).collect();
        let weights = self.file(component, repo, &candidates).await?;
        let folder = config.parent().map(Path::to_path_buf).unwrap_or_default();
        if weights.parent() != Some(folder.as_path()) {
            // The two came from different snapshots (the repository moved on between them).
            return Err(WeightsError::Config {
                path: weights,
                message: format!(
                    "not in the snapshot folder {} of its config: clear the cache of `{repo}` and fetch again",
                    folder.display()
                ),
            });
        }
        Ok(folder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weights_variable_picks_the_source() {
        let hub = || HubSource::new("/cache");
        assert_eq!(
            WeightsSource::from_var(None, hub),
            WeightsSource::released("checkpoints")
        );
        assert_eq!(
            WeightsSource::from_var(Some(" "), hub),
            WeightsSource::released("checkpoints")
        );
        assert_eq!(
            WeightsSource::from_var(Some("/w"), hub),
            WeightsSource::released("/w")
        );
        assert_eq!(
            WeightsSource::from_var(Some("demo:fixtures/golden"), hub),
            WeightsSource::demo("fixtures/golden")
        );
        assert_eq!(
            WeightsSource::from_var(Some("hub"), hub),
            WeightsSource::Hub(HubSource::new("/cache"))
        );
    }

    #[test]
    fn offline_without_a_cache_names_the_repository_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubSource::new(dir.path())
            .with_endpoint("http://127.0.0.1:9")
            .with_offline(true);
        match hub.fetch_blocking() {
            Err(WeightsError::HubNotCached {
                component,
                repo,
                file,
                ..
            }) => {
                assert_eq!(component, Component::Unet);
                assert_eq!(
                    (repo.as_str(), file.as_str()),
                    (SONIC_REPO, "Sonic/unet.pth")
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
