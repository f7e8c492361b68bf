//! The CLIP vision tower against the golden fixture, loaded with the real loader.

mod common;

use common::{TestBackend, assert_case_passes, golden};

#[test]
fn clip_vision_matches_reference() {
    let report = assert_case_passes("clip_vision");
    assert_eq!(report.comparisons.len(), 2);
}
