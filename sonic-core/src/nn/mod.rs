//! Building blocks shared by several models.

pub mod attention;
pub mod conv;
pub(crate) mod cpu;
pub mod dtype;
pub mod embeddings;
pub mod norm;
pub mod resample;
pub mod resnet;
pub mod self_attention;
