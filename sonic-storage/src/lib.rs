//! # sonic-storage
//!
//! Object storage for sonic jobs. (Work in progress: see the foundation issue.)
#![warn(missing_docs)]
