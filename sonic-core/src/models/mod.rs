//! The neural components, one file (or folder) per model family.

pub mod audio_adapters;
pub mod clip;
mod config_error;
mod hf_config;
pub mod rife;
pub mod unet;
pub mod vae;
pub mod whisper;

pub use config_error::ConfigError;
