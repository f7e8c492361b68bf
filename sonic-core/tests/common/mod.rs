//! Shared by the integration tests: the test backend and the fixture paths.
#![allow(dead_code)]

use std::path::PathBuf;

use sonic_core::parity::{ParityOptions, ParityReport, run_case};

/// The backend the parity tests run on (the CPU backend).
pub type TestBackend = burn::backend::Flex;

/// The golden fixtures copied into the repository (see `fixtures/golden/README.md`).
pub fn golden(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/golden")
        .join(case)
}

/// Runs a golden case on the test backend and asserts every tensor is within tolerance.
pub fn assert_case_passes(case: &str) -> ParityReport {
    let device = Default::default();
    let report = run_case::<TestBackend>(golden(case), &device, &ParityOptions::default())
        .unwrap_or_else(|e| panic!("case {case} could not run: {e}"));
    assert!(report.passed(), "{report}");
    report
}

/// Reference data generated for this repository (see `fixtures/generated/README.md`).
pub fn generated(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/generated")
        .join(case)
}
