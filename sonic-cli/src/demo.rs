//! The files of `sonic generate --demo`, embedded in the binary: the tiny random weights of the
//! reference fixtures and a sample portrait and speech clip.
//!
//! The weights are the files [`WeightsLayout::demo`] reads from `fixtures/golden` (the
//! `pipeline_e2e` case's set). At run time they are written into a private temporary folder,
//! laid out as in `fixtures/golden`, and loaded through the normal loaders; the folder is
//! removed when the [`DemoWeights`] is dropped. Nothing is read from the source tree.

use sonic::pipeline::{FaceSpec, GenerationParams, WeightsLayout};
use tempfile::TempDir;

/// The demo's portrait (see `assets/README.md`).
pub const PORTRAIT: &[u8] = include_bytes!("../assets/portrait.png");
/// The demo's speech (see `assets/README.md`).
pub const SPEECH: &[u8] = include_bytes!("../assets/speech.wav");

/// The face box of the demo portrait (the `pipeline_e2e` fixture's fixed box).
pub const FACE: FaceSpec = FaceSpec::Box {
    x: 18.6,
    y: 12.3,
    width: 27.2,
    height: 33.9,
};

/// The short side of the model input the demo weights were made for.
pub const MIN_RESOLUTION: u32 = 64;

/// The demo's parameters: the demo weights' size, and the bundled portrait's face box, or the
/// whole frame on a picture of the user's (`own_picture`: the random weights find no face
/// anyway); Sonic's settings otherwise.
pub fn params(own_picture: bool) -> GenerationParams {
    GenerationParams {
        min_resolution: MIN_RESOLUTION,
        face: if own_picture {
            FaceSpec::WholeFrame
        } else {
            FACE
        },
        ..GenerationParams::default()
    }
}

/// `(path under fixtures/golden, bytes)` for each listed file.
macro_rules! golden {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!("../../fixtures/golden/", $path)) as &[u8])),*]
    };
}

/// Every file [`WeightsLayout::demo`] reads: the weights, their configs and the module cases'
/// `config.json` (the adapter, RIFE and audio-token settings).
pub const WEIGHT_FILES: &[(&str, &[u8])] = golden!(
    "unet/config.json",
    "unet/unet.pth",
    "unet/unet/config.json",
    "audio2token/config.json",
    "audio2token/audio2token.pth",
    "audio2bucket/config.json",
    "audio2bucket/audio2bucket.pth",
    "rife/config.json",
    "rife/flownet.pkl",
    "vae/vae/config.json",
    "vae/vae/diffusion_pytorch_model.fp16.safetensors",
    "clip_vision/image_encoder/config.json",
    "clip_vision/image_encoder/model.fp16.safetensors",
    "whisper_encoder/whisper/config.json",
    "whisper_encoder/whisper/model.safetensors",
    "scheduler/scheduler/scheduler_config.json",
);

/// The demo weights unpacked into a private temporary folder (removed on drop).
#[derive(Debug)]
pub struct DemoWeights {
    layout: WeightsLayout,
    /// Held for its `Drop`, which removes the folder: it lives as long as the paths in `layout`.
    _dir: TempDir,
}

impl DemoWeights {
    /// Writes the embedded weights into a new private folder under the system's temporary
    /// folder and checks that the layout is complete.
    ///
    /// # Errors
    /// A message naming the folder or file that could not be written, or the layout problem.
    pub fn unpack() -> Result<Self, String> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("sonic-demo-");
        // Private: only this user may read or replace the weights the job loads.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
        let dir = builder.tempdir().map_err(|e| {
            format!(
                "cannot create a temporary folder for the demo weights in {}: {e}",
                std::env::temp_dir().display()
            )
        })?;
        Self::unpack_into(dir)
    }

    fn unpack_into(dir: TempDir) -> Result<Self, String> {
        for (name, bytes) in WEIGHT_FILES {
            let path = dir.path().join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            std::fs::write(&path, bytes)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        let layout = WeightsLayout::demo(dir.path()).map_err(|e| crate::report(&e))?;
        layout.check().map_err(|e| crate::report(&e))?;
        Ok(Self { layout, _dir: dir })
    }

    /// The layout of the unpacked weights.
    pub fn layout(&self) -> &WeightsLayout {
        &self.layout
    }

    /// The folder they are in.
    #[cfg(test)]
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_weights_unpack_into_a_complete_layout_and_are_removed() {
        let weights = DemoWeights::unpack().unwrap();
        let dir = weights.dir().to_path_buf();
        assert!(weights.layout().unet.starts_with(&dir));
        assert_eq!(weights.layout().unet_audio_tokens, 4);
        assert_eq!(weights.layout().checkpoint_files().unwrap().len(), 7);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the folder is private: {mode:o}");
        }
        drop(weights);
        assert!(!dir.exists());
    }

    #[test]
    fn the_samples_are_a_png_and_a_wav() {
        assert_eq!(&PORTRAIT[1..4], b"PNG");
        assert_eq!(&SPEECH[..4], b"RIFF");
        assert_eq!(&SPEECH[8..12], b"WAVE");
    }
}
