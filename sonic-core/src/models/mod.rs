//! The neural components, one file (or folder) per model family.

pub mod audio_adapters;
pub mod unet;
pub mod vae;
