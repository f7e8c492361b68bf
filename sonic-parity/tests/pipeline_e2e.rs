//! Whole-pipeline parity with the golden `pipeline_e2e` case, through the same code path as
//! the `parity` command ([`run_case`]): the tiny models run `SonicModels::render` with the
//! case's settings, face box, injected `latent_noise` and recorded `input_features` (our
//! 16 kHz resampler is within 1.5e-4 of librosa's, outside the features' tolerance; see
//! docs/media.md), and every tensor the case holds is compared within its tolerance:
//! preprocessing, audio features, tokens, buckets, embeddings, latents, every step and window,
//! decoded frames and RIFE midpoints. The MP4 is checked too.

mod common;

use common::{TestBackend, assert_passed, device, golden, parity_options};
use sonic_parity::{Case, run_case};

#[test]
fn pipeline_matches_the_reference_stage_by_stage() {
    let case = Case::open(golden("pipeline_e2e")).unwrap();
    let report = run_case::<TestBackend>(golden("pipeline_e2e"), &device(), &parity_options())
        .unwrap_or_else(|e| panic!("pipeline_e2e could not run: {e}"));
    assert_passed(&report);

    // Every stored tensor was compared, the exact ones (window layout, frame counts) included.
    let compared: Vec<&str> = report.comparisons.iter().map(|c| c.name.as_str()).collect();
    let stored: Vec<&str> = case.tensor_names().collect();
    assert_eq!(compared, stored);
    assert_eq!(compared.len(), 43);
    for exact in [
        "window_frame_indices",
        "window_index_start",
        "window_step",
        "window_index",
        "audio_len",
        "num_frames",
        "num_final_frames",
    ] {
        let c = report.comparisons.iter().find(|c| c.name == exact).unwrap();
        assert_eq!(c.max_abs, 0.0, "{c}");
    }

    // The video: N = 33 generated, 2N - 1 = 65 after RIFE, the last held to cover the
    // 2.66 s of audio (67 frames at 25 fps), H.264 + AAC, 64x64.
    let checks: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        checks,
        [
            "model_size",
            "mp4",
            "video_size",
            "video_audio_track",
            "video_duration"
        ]
    );
    let duration = &report.checks[4];
    assert!(duration.detail.starts_with("67 frames, "), "{duration}");
}
