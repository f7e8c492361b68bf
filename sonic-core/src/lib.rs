//! # sonic-core
//!
//! The Sonic talking-head model (Tencent + Zhejiang University, CVPR 2025) defined once in
//! [burn](https://burn.dev), generic over the backend, and the strict loading of its released
//! checkpoints. Pure Rust: the media edges (decoding, faces, the MP4 writer) are in
//! `sonic-media`, the pipeline that joins them in `sonic`.
//!
//! - [`audio_conditioning`]: log-mel features -> per-frame audio tokens and motion buckets.
//! - [`models`]: Whisper-tiny encoder, audio2token, audio2bucket, CLIP ViT-H/14, SVD-xt VAE and
//!   UNet (with Sonic's audio cross-attention), RIFE.
//! - [`weights`]: strict loading of the released checkpoints as they are.
//! - [`nn`]: building blocks shared by several models (memory-bounded attention, embeddings).
//! - [`sampler`]: the Euler/EDM schedule and Sonic's shifted-window denoising loop.
#![warn(missing_docs)]

pub mod audio_conditioning;
pub mod models;
pub mod nn;
pub mod sampler;
pub mod weights;
