//! The bounded runner of the fuzz suites (`sonic-media/tests/fuzz_media.rs`,
//! `sonic-core/tests/fuzz_checkpoint.rs`, `sonic-storage/tests/fuzz_ids.rs`), shared through
//! `#[path]` like `../heap`. See docs/reliability.md.
#![allow(dead_code)] // each suite uses a different part

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestRunner};

/// `name`'s value as a number, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// `SONIC_FUZZ_CASES` cases (default 256); failures are recorded (and replayed first) in
/// `regressions`, a committed file.
pub fn config(regressions: &'static str) -> ProptestConfig {
    ProptestConfig {
        cases: u32::try_from(env_u64("SONIC_FUZZ_CASES", 256)).unwrap_or(u32::MAX),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        ..ProptestConfig::default()
    }
}

/// Runs `test` on values of `strategy`: `SONIC_FUZZ_CASES` cases (default 256), or fewer when
/// `SONIC_FUZZ_SECS` (default 60) run out first. The cases run in chunks of 16 so that the time
/// bound holds; a failure is shrunk, recorded in `regressions` and reported.
pub fn fuzz<S>(
    regressions: &'static str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let deadline = Instant::now() + Duration::from_secs(env_u64("SONIC_FUZZ_SECS", 60));
    let total = config(regressions).cases;
    let mut done = 0;
    while done < total && Instant::now() < deadline {
        let chunk = (total - done).min(16);
        let mut runner = TestRunner::new(ProptestConfig {
            cases: chunk,
            ..config(regressions)
        });
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("{e}");
        }
        done += chunk;
    }
}
