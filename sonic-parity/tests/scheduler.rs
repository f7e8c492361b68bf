//! The Euler/EDM scheduler against the golden `scheduler` case (diffusers 0.29.0
//! `EulerDiscreteScheduler` with SVD-xt's config).

mod common;

use common::{assert_case_passes, golden};
use sonic_core::sampler::{EulerEdmScheduler, SchedulerConfig};

#[test]
fn scheduler_matches_reference() {
    let report = assert_case_passes("scheduler");
    // 4 schedule tensors x 2 step counts, step outputs x 2, add_noise.
    assert_eq!(report.comparisons.len(), 11, "{report}");
}

#[test]
fn released_config_file_is_the_svd_xt_preset() {
    let path = golden("scheduler").join("scheduler/scheduler_config.json");
    assert_eq!(
        SchedulerConfig::from_file(path).unwrap(),
        SchedulerConfig::svd_xt()
    );
}

#[test]
fn reference_doc_sigmas_for_25_steps() {
    // sonic_reference.md §3.5, computed with the reference.
    let expected = [
        700.0, 545.729, 421.569, 322.454, 244.023, 182.547, 134.854, 98.267, 70.541, 49.810,
        34.537, 23.468, 15.590, 10.097, 6.354, 3.870, 2.269, 1.273, 0.678, 0.339, 0.157, 0.0664,
        0.0248, 0.00788, 0.002, 0.0,
    ];
    let s = EulerEdmScheduler::svd_xt(25).unwrap();
    for (got, want) in s.sigmas().iter().zip(expected) {
        // The doc rounds to 3-4 significant digits.
        assert!((got - want).abs() <= 5e-3 * want, "{got} vs {want}");
    }
}
