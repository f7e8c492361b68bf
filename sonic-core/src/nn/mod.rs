//! Building blocks shared by several models.

pub mod attention;
pub mod dtype;
pub mod self_attention;
