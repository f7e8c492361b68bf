//! RIFE HDv3 against the golden `rife` case, the released key list, and the RIFE stage of
//! `pipeline_e2e`.

mod common;

use burn::tensor::{DType, Tensor, Tolerance};
use common::{TestBackend as B, assert_case_passes, golden, reference_keys};
use sonic_core::models::rife::{
    BLOCK_TEA_DROPPED, FrameInterpolator, RifeConfig, RifeError, load_rife, rife_key_action,
};
use sonic_core::weights::{KeyAction, KeyProblem, LoadError, LoadOptions, ParamSpec, param_specs};
use sonic_parity::Case;

fn tiny() -> RifeConfig {
    RifeConfig::new().with_c(16)
}

#[test]
fn rife_matches_reference() {
    let report = assert_case_passes("rife");
    assert_eq!(report.comparisons.len(), 4, "{report}");
}

#[test]
fn full_size_parameters_match_the_released_key_list() {
    let model = RifeConfig::sonic().init::<B>(&common::device());
    let specs = param_specs::<B, _>(&model);
    let (mut kept, mut dropped) = (Vec::new(), Vec::new());
    for ParamSpec { key, shape } in reference_keys("rife_keys.tsv") {
        // The file stores every key behind the DataParallel prefix.
        match rife_key_action(&format!("module.{key}")) {
            KeyAction::Keep(path) => kept.push(ParamSpec { key: path, shape }),
            KeyAction::Drop(reason) => dropped.push((key, reason)),
        }
    }
    assert_eq!(kept.len() + dropped.len(), 160);
    assert_eq!(specs, kept, "names, shapes and order");
    assert_eq!(dropped.len(), 40);
    assert!(
        dropped
            .iter()
            .all(|(k, r)| k.starts_with("block_tea.") && *r == BLOCK_TEA_DROPPED)
    );
}

#[test]
fn loader_accounts_for_every_key() {
    let (_, report) = load_rife::<B>(
        &tiny(),
        golden("rife").join("flownet.pkl"),
        LoadOptions::default(),
        &common::device(),
    )
    .unwrap();
    assert_eq!(report.loaded, 120);
    assert_eq!(report.dropped.len(), 40);
    assert!(
        report
            .dropped
            .iter()
            .all(|(k, _)| k.starts_with("module.block_tea."))
    );
}

#[test]
fn wrong_width_names_key_and_both_shapes() {
    let err = load_rife::<B>(
        &RifeConfig::sonic(),
        golden("rife").join("flownet.pkl"),
        LoadOptions::default(),
        &common::device(),
    )
    .unwrap_err();
    let LoadError::KeyMismatch { problems, .. } = &err else {
        panic!("expected a key mismatch, got {err}");
    };
    assert!(problems.contains(&KeyProblem::Shape {
        key: "module.block0.conv0.0.0.weight".into(),
        expected: vec![45, 11, 3, 3],
        found: vec![8, 11, 3, 3],
    }));
}

fn tiny_model() -> sonic_core::models::rife::IfNet<B> {
    load_rife::<B>(
        &tiny(),
        golden("rife").join("flownet.pkl"),
        LoadOptions::default(),
        &common::device(),
    )
    .unwrap()
    .0
}

#[test]
fn interpolator_streams_and_refuses_bad_frames() {
    let device = common::device();
    let mut interpolator = FrameInterpolator::new(tiny_model());
    let frame = || Tensor::<B, 4>::full([1, 3, 32, 48], 0.5, &device);
    assert_eq!(interpolator.push(frame()).unwrap().len(), 1);
    assert_eq!(interpolator.push(frame()).unwrap().len(), 2);
    assert_eq!(interpolator.push(frame()).unwrap().len(), 2);
    assert_eq!(interpolator.frames_out(), 5);
    let err = interpolator
        .push(Tensor::zeros([1, 3, 32, 32], &device))
        .unwrap_err();
    assert!(
        matches!(err, RifeError::FrameShape { index: 3, .. }),
        "{err}"
    );
    // The failed frame is not consumed.
    assert_eq!(interpolator.push(frame()).unwrap().len(), 2);

    let mut fresh = FrameInterpolator::new(interpolator.finish());
    for bad in [[1, 3, 40, 48], [1, 4, 32, 48], [2, 3, 32, 48]] {
        assert!(matches!(
            fresh.push(Tensor::zeros(bad, &device)),
            Err(RifeError::FrameShape { index: 0, .. })
        ));
    }
}

#[test]
fn pipeline_rife_stage_matches_reference() {
    // pipeline_e2e's RIFE midpoints from its decoded frames (33 frames -> 32 midpoints).
    let case = Case::open(golden("pipeline_e2e")).unwrap();
    let device = common::device();
    let c = case.config()["config"]["component_configs"]["rife"]["c"]
        .as_u64()
        .unwrap();
    let config = RifeConfig::new().with_c(c as usize);
    let (model, _) = load_rife::<B>(
        &config,
        golden("rife").join("flownet.pkl"),
        LoadOptions::default(),
        &device,
    )
    .unwrap();
    let decoded: Tensor<B, 5> = case.input("decoded_frames", &device).unwrap();
    let frames = decoded.dims()[2];
    let mut interpolator = FrameInterpolator::new(model);
    let mut out = Vec::new();
    for t in 0..frames {
        out.extend(
            interpolator
                .push(decoded.clone().narrow(2, t, 1).squeeze_dim::<4>(2))
                .unwrap(),
        );
    }
    assert_eq!(
        out.len() as i64,
        case.tensor("num_final_frames").unwrap().to_i64_vec()[0]
    );
    let middles: Vec<_> = out.iter().skip(1).step_by(2).cloned().collect();
    let mut report = common::new_report(&case);
    report
        .check_tensor(&case, "rife_middle_frames", Tensor::stack::<5>(middles, 2))
        .unwrap();
    // Input frames pass through unchanged.
    let kept: Vec<_> = out.iter().step_by(2).cloned().collect();
    Tensor::stack::<5>(kept, 2)
        .into_data()
        .assert_eq(&decoded.into_data(), true);
    common::assert_passed(&report);
}

#[test]
fn half_precision_weights_and_frames() {
    let case = Case::open(golden("rife")).unwrap();
    let device = common::device();
    let load = |options| {
        load_rife::<B>(
            &tiny(),
            golden("rife").join("flownet.pkl"),
            options,
            &device,
        )
        .unwrap()
        .0
    };
    let frame0: Tensor<B, 4> = case.input("frame0", &device).unwrap();
    let frame1: Tensor<B, 4> = case.input("frame1", &device).unwrap();
    let full = load(LoadOptions::default()).forward(frame0.clone(), frame1.clone());
    let half = load(LoadOptions::with_dtype(DType::F16))
        .forward(frame0.cast(DType::F16), frame1.cast(DType::F16));
    assert_eq!(half.merged.dtype(), DType::F16);
    half.merged
        .cast(DType::F32)
        .into_data()
        .assert_approx_eq::<f32>(&full.merged.into_data(), Tolerance::absolute(2e-2));
}
