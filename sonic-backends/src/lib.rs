//! # sonic-backends
//!
//! Picks the burn backend sonic runs on. (Work in progress: see the backends issue.)
#![warn(missing_docs)]
