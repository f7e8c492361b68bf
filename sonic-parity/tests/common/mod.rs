//! Shared by the integration tests: the test backend, the fixture paths, the reference key
//! lists and the report helpers.
//!
//! The backend is chosen at build time (CPU by default; `cargo test-wgpu` / `cargo test-cuda`,
//! aliases for `--features test-wgpu` / `test-cuda`), the device and precision at run time
//! from `SONIC_DEVICE` (e.g. `wgpu:1`, `cuda:1`; default: the backend's first device) and
//! `SONIC_DTYPE` (`f32` default, `f16`, `bf16`). See docs/backends.md.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use burn::prelude::Backend;
use burn::tensor::Device;
use sonic_backends::{BackendChoice, SelectableBackend};
use sonic_core::weights::ParamSpec;
use sonic_parity::{Case, ParityOptions, ParityReport, run_case};

/// The backend the parity tests run on (the CPU backend unless a `test-*` feature is on).
#[cfg(not(any(feature = "test-wgpu", feature = "test-cuda")))]
pub type TestBackend = sonic_backends::Cpu;
/// The backend the parity tests run on (`--features test-wgpu`).
#[cfg(all(feature = "test-wgpu", not(feature = "test-cuda")))]
pub type TestBackend = sonic_backends::Wgpu;
/// The backend the parity tests run on (`--features test-cuda`).
#[cfg(feature = "test-cuda")]
pub type TestBackend = sonic_backends::Cuda;

/// The device and precision of this test run, checked once (panics with the reason if the
/// requested device is absent, not this build's backend, or lacks the precision).
pub fn choice() -> &'static (BackendChoice, Device<TestBackend>) {
    static CHOICE: OnceLock<(BackendChoice, Device<TestBackend>)> = OnceLock::new();
    CHOICE.get_or_init(|| {
        let default = <TestBackend as SelectableBackend>::KIND.default_device();
        let choice = BackendChoice::from_env_or(default)
            .unwrap_or_else(|e| panic!("test backend {default}: {e}"));
        // Sets the precision as the device's default float dtype (inputs follow it).
        let device = choice.burn_device::<TestBackend>().unwrap_or_else(|e| {
            panic!(
                "test backend {choice}: {e} (use common::device() rather than \
                 Default::default() in tests, so the precision is set first)"
            )
        });
        (choice, device)
    })
}

/// The device the tests run on, in the run's precision. Use it instead of `Default::default()`.
// The CPU device is `Copy`, the GPU devices are not: one body for all three.
#[allow(clippy::clone_on_copy)]
pub fn device() -> Device<TestBackend> {
    choice().1.clone()
}

/// Parity options for the run's precision (dtype and tolerance scale).
pub fn parity_options() -> ParityOptions {
    ParityOptions::for_dtype(choice().0.dtype())
}

/// The golden fixtures copied into the repository (see `fixtures/golden/README.md`).
pub fn golden(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/golden")
        .join(case)
}

/// The run's backend as reports name it: burn's name and the device and precision chosen
/// (`flex (cpu f32)`).
pub fn backend_name() -> String {
    let (choice, device) = choice();
    format!("{} ({choice})", TestBackend::name(device))
}

/// An empty report for `case` on the run's backend, with the run's precision's tolerances.
pub fn new_report(case: &Case) -> ParityReport {
    new_report_with(case, &parity_options())
}

/// [`new_report`] with other options (e.g. a wider tolerance scale).
pub fn new_report_with(case: &Case, options: &ParityOptions) -> ParityReport {
    ParityReport::new(case, backend_name(), options)
}

/// Prints `report` (shown with `--nocapture`) and asserts it passed, naming the run's device
/// and precision.
pub fn assert_passed(report: &ParityReport) {
    let (choice, _) = choice();
    println!("[{choice}] {report}");
    assert!(report.passed(), "[{choice}] {report}");
}

/// Runs a golden case on the test backend and asserts every tensor is within tolerance.
pub fn assert_case_passes(case: &str) -> ParityReport {
    let device = device();
    let report = run_case::<TestBackend>(golden(case), &device, &parity_options())
        .unwrap_or_else(|e| panic!("case {case} could not run: {e}"));
    assert_passed(&report);
    report
}

/// A reference key list, `fixtures/golden/keys/<file>`: one `key<TAB>(d0, d1, ...)` line per
/// parameter of the released checkpoint, in the file's order.
///
/// # Panics
/// If the file is missing or a line is malformed (naming the file and the line).
pub fn reference_keys(file: &str) -> Vec<ParamSpec> {
    let path = golden("keys").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let malformed = |why: &str| format!("{}:{}: {why}: `{line}`", path.display(), i + 1);
        let (key, shape) = line
            .split_once('\t')
            .unwrap_or_else(|| panic!("{}", malformed("no tab")));
        let dims = shape
            .trim()
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{}", malformed("shape not in parentheses")));
        let shape = dims
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| {
                d.parse()
                    .unwrap_or_else(|_| panic!("{}", malformed("bad dimension")))
            })
            .collect();
        keys.push(ParamSpec {
            key: key.to_string(),
            shape,
        });
    }
    keys
}

/// Reference data generated for this repository (see `fixtures/generated/README.md`).
pub fn generated(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/generated")
        .join(case)
}
