//! [`Component`]: the models and configurations the pipeline loads, by name.

use std::fmt;

/// One part of the weights: a model checkpoint or the scheduler's configuration.
///
/// Its [`Display`](fmt::Display) (and [`Component::name`]) is the name the manifest records the
/// checkpoint digest under: `unet`, `vae`, `image_encoder`, `whisper`, `audio2token`,
/// `audio2bucket`, `rife`, `scheduler`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Component {
    /// Sonic's UNet (`Sonic/unet.pth`, configured by SVD-xt's `unet/config.json`).
    Unet,
    /// SVD-xt's temporal VAE (`vae/`).
    Vae,
    /// SVD-xt's CLIP image encoder (`image_encoder/`).
    ImageEncoder,
    /// The Whisper-tiny encoder (`whisper-tiny/`).
    Whisper,
    /// Sonic's audio-to-token adapter (`Sonic/audio2token.pth`).
    Audio2Token,
    /// Sonic's audio-to-motion-bucket adapter (`Sonic/audio2bucket.pth`).
    Audio2Bucket,
    /// RIFE HDv3, the frame interpolator (`RIFE/flownet.pkl`).
    Rife,
    /// SVD-xt's Euler/EDM schedule (`scheduler/scheduler_config.json`).
    Scheduler,
}

impl Component {
    /// Every component, in loading order.
    pub const ALL: [Component; 8] = [
        Self::Whisper,
        Self::Audio2Token,
        Self::Audio2Bucket,
        Self::ImageEncoder,
        Self::Vae,
        Self::Unet,
        Self::Rife,
        Self::Scheduler,
    ];

    /// The component's name (`unet`, `image_encoder` ...), as in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unet => "unet",
            Self::Vae => "vae",
            Self::ImageEncoder => "image_encoder",
            Self::Whisper => "whisper",
            Self::Audio2Token => "audio2token",
            Self::Audio2Bucket => "audio2bucket",
            Self::Rife => "rife",
            Self::Scheduler => "scheduler",
        }
    }

    /// Where the released file comes from, in words (for error messages).
    pub fn origin(self) -> &'static str {
        match self {
            Self::Unet | Self::Audio2Token | Self::Audio2Bucket | Self::Rife => {
                "Sonic's checkpoints: huggingface.co/LeonJoe13/Sonic (CC BY-NC-SA 4.0)"
            }
            Self::Vae | Self::ImageEncoder | Self::Scheduler => {
                "huggingface.co/stabilityai/stable-video-diffusion-img2vid-xt"
            }
            Self::Whisper => "huggingface.co/openai/whisper-tiny",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_displayed() {
        let mut names: Vec<&str> = Component::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Component::ALL.len());
        assert_eq!(Component::ImageEncoder.to_string(), "image_encoder");
        assert!(Component::Rife.origin().contains("LeonJoe13/Sonic"));
    }
}
