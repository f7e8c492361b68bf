//! # sonic
//!
//! One portrait and one speech recording in, a lip-synced talking-head MP4 out: the Sonic model
//! (Tencent + Zhejiang University, CVPR 2025) re-implemented on [burn](https://burn.dev), with
//! every input and output in object storage.
//!
//! - [`core`]: the model graph and its weights ([`sonic_core`]).
//! - [`media`]: audio, pictures, faces and the MP4 writer ([`sonic_media`]).
//! - [`storage`]: object storage for jobs ([`sonic_storage`]).
//! - [`backends`]: compute backend selection ([`sonic_backends`]).
//! - [`pipeline`]: the generation pipeline, [`Pipeline`] (`Pipeline::new(backend, store)`).
#![warn(missing_docs)]

pub mod pipeline;

pub use pipeline::{GenerationParams, JobRequest, Pipeline, PipelineError};

pub use sonic_backends as backends;
pub use sonic_core as core;
pub use sonic_media as media;
pub use sonic_storage as storage;
