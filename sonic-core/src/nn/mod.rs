//! Building blocks shared by several models.

pub mod attention;
