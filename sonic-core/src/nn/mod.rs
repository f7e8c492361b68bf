//! Building blocks shared by several models.

pub mod attention;
pub mod embeddings;
pub mod norm;
pub mod resample;
pub mod resnet;
