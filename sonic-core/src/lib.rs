//! # sonic-core
//!
//! The Sonic talking-head model (Tencent + Zhejiang University, CVPR 2025) defined once in
//! [burn](https://burn.dev), generic over the backend, plus the media edges around it.
//!
//! - [`audio_conditioning`]: log-mel features -> per-frame audio tokens and motion buckets.
//! - [`models`]: Whisper-tiny encoder, audio2token, audio2bucket, CLIP ViT-H/14, SVD-xt VAE and
//!   UNet (with Sonic's audio cross-attention), RIFE.
//! - [`weights`]: strict loading of the released checkpoints as they are.
//! - [`nn`]: building blocks shared by several models (memory-bounded attention, embeddings).
//! - [`media`]: audio and portrait decoding and preprocessing, face detection, the MP4 writer.
//! - [`sampler`]: the Euler/EDM schedule and Sonic's shifted-window denoising loop.
//! - [`parity`]: running a component against a reference case of the Python implementation.
#![warn(missing_docs)]

pub mod audio_conditioning;
pub mod media;
pub mod models;
pub mod nn;
pub mod parity;
pub mod sampler;
pub mod weights;
