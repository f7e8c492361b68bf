//! The SVD-xt VAE against the golden `vae` fixture (loaded with the real loader), its
//! full-size key list, chunked decoding, and typed errors.

mod common;

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use burn::tensor::{Distribution, Tensor};
use common::{TestBackend, assert_case_passes, golden, reference_keys};
use sonic_core::models::vae::{
    AutoencoderKLTemporalDecoderConfig, DEFAULT_DECODE_CHUNK_SIZE, VaeError, load_vae,
};
use sonic_core::weights::{LoadError, LoadOptions, param_specs};
use sonic_parity::Case;

type B = TestBackend;

#[test]
fn vae_matches_reference() {
    let report = assert_case_passes("vae");
    assert_eq!(report.comparisons.len(), 4);
}

/// `fixtures/golden/keys/vae_keys.tsv` as key -> shape.
fn real_keys() -> BTreeMap<String, Vec<usize>> {
    reference_keys("vae_keys.tsv")
        .into_iter()
        .map(|spec| (spec.key, spec.shape))
        .collect()
}

#[test]
fn full_size_keys_and_shapes_match_the_released_file() {
    let model = AutoencoderKLTemporalDecoderConfig::svd_xt().init::<B>(&common::device());
    let ours: BTreeMap<String, Vec<usize>> = param_specs::<B, _>(&model)
        .into_iter()
        .map(|s| (s.key, s.shape))
        .collect();
    let real = real_keys();
    assert_eq!(real.len(), 374);
    let missing: Vec<_> = real.keys().filter(|k| !ours.contains_key(*k)).collect();
    let extra: Vec<_> = ours.keys().filter(|k| !real.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    for (key, shape) in &real {
        assert_eq!(&ours[key], shape, "{key}");
    }
    let parameters: usize = ours.values().map(|s| s.iter().product::<usize>()).sum();
    assert_eq!(parameters, 97_742_847, "SVD-xt VAE parameter count");
}

#[test]
fn config_is_read_from_the_diffusers_json() {
    let config = AutoencoderKLTemporalDecoderConfig::from_diffusers_json(
        golden("vae").join("vae/config.json"),
    )
    .unwrap();
    assert_eq!(config.block_out_channels, vec![32, 64, 32, 32]);
    assert_eq!(config.layers_per_block, 2);
    assert_eq!(config.latent_channels, 4);
    assert_eq!(config.scaling_factor, 0.18215);
    assert_eq!(config.spatial_scale(), 8);
}

fn fixture_model() -> sonic_core::models::vae::AutoencoderKLTemporalDecoder<B> {
    load_vae::<B>(
        golden("vae").join("vae"),
        LoadOptions::default(),
        &common::device(),
    )
    .unwrap()
    .0
}

#[test]
fn chunked_decode_treats_each_chunk_as_its_own_clip() {
    let model = fixture_model();
    let case = Case::open(golden("vae")).unwrap();
    let device = common::device();
    let z: Tensor<B, 4> = case.input("z", &device).unwrap(); // 5 frames
    let scaled = z.clone().mul_scalar(model.scaling_factor());

    // A chunk of 8 holds all 5 frames: the same as one decode(z, 5), up to the scaling.
    let whole = model
        .decode_latents(scaled.clone(), DEFAULT_DECODE_CHUNK_SIZE)
        .unwrap();
    let reference = model.decode(z.clone(), 5).unwrap();
    whole.clone().into_data().assert_approx_eq::<f32>(
        &reference.into_data(),
        burn::tensor::Tolerance::absolute(1e-4),
    );

    // Chunks of 2: frames 0-1, 2-3, 4, each decoded on its own.
    let chunks: Vec<_> = model
        .decode_latents_chunked(scaled, NonZeroUsize::new(2).unwrap())
        .unwrap()
        .collect();
    assert_eq!(
        chunks.iter().map(|c| c.start).collect::<Vec<_>>(),
        [0, 2, 4]
    );
    for chunk in &chunks {
        let len = chunk.frames.dims()[0];
        let own = model
            .decode(z.clone().narrow(0, chunk.start, len), len)
            .unwrap();
        chunk
            .frames
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&own.into_data(), burn::tensor::Tolerance::absolute(1e-4));
    }
    // ... and the chunk borders change the result (the temporal context is cut there).
    let first = chunks[0].frames.clone();
    let diff = first.sub(whole.narrow(0, 0, 2)).abs().max().into_scalar();
    assert!(
        diff > 1e-3,
        "chunking should change border frames, max diff {diff}"
    );
}

#[test]
fn bad_inputs_are_typed_errors() {
    let model = fixture_model();
    let device = common::device();
    let z = Tensor::<B, 4>::random([6, 4, 2, 2], Distribution::Default, &device);
    assert_eq!(
        model.decode(z.clone(), 4).unwrap_err(),
        VaeError::FrameCount {
            frames: 6,
            num_frames: 4
        }
    );
    assert!(matches!(
        model.decode(z.clone().narrow(1, 0, 3), 6),
        Err(VaeError::Channels {
            expected: 4,
            found: 3,
            ..
        })
    ));
    let image = Tensor::<B, 4>::zeros([1, 3, 4, 64], &device);
    assert!(matches!(
        model.encode(image),
        Err(VaeError::Size { min: 8, .. })
    ));
}

#[test]
fn missing_or_wrong_files_are_typed_errors() {
    let device = common::device();
    let dir = std::env::temp_dir().join(format!("sonic-vae-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        golden("vae").join("vae/config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    let err = load_vae::<B>(&dir, LoadOptions::default(), &device).unwrap_err();
    assert!(matches!(err, LoadError::Io { .. }), "{err}");

    // The tiny weights under the full-size config: a key mismatch naming both shapes.
    let err = sonic_core::models::vae::load_vae_file::<B>(
        &AutoencoderKLTemporalDecoderConfig::svd_xt(),
        golden("vae").join("vae/diffusion_pytorch_model.fp16.safetensors"),
        LoadOptions::default(),
        &device,
    )
    .unwrap_err();
    let LoadError::KeyMismatch { problems, .. } = &err else {
        panic!("expected a key mismatch, got {err}");
    };
    assert!(err.to_string().contains("encoder.conv_in.weight"), "{err}");
    assert!(!problems.is_empty());

    std::fs::write(dir.join("config.json"), r#"{"block_out_channels": [30]}"#).unwrap();
    let err = load_vae::<B>(&dir, LoadOptions::default(), &device).unwrap_err();
    assert!(matches!(err, LoadError::Config { .. }), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fp16_weights_load_as_f16_on_request_and_decode_close_to_f32() {
    use burn::tensor::DType;
    let device = common::device();
    let (model, report) = load_vae::<B>(
        golden("vae").join("vae"),
        LoadOptions::with_dtype(DType::F16),
        &device,
    )
    .unwrap();
    assert_eq!(report.stored_dtypes.get("F16"), Some(&374));
    assert_eq!(model.decoder.conv_in.weight.val().dtype(), DType::F16);

    let case = Case::open(golden("vae")).unwrap();
    let z: Tensor<B, 4> = case.input("z", &device).unwrap();
    let decoded = model.decode(z, 5).unwrap();
    assert_eq!(decoded.dtype(), DType::F16);
    let got = decoded
        .cast(DType::F32)
        .into_data()
        .into_vec::<f32>()
        .unwrap();
    let expected = case.tensor("decoded").unwrap().to_f32_vec();
    let max_diff = got
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    // The CPU backend accumulates f16 convolutions in f32; GPU kernels may accumulate in f16
    // (0.026 measured on WGPU/lavapipe).
    let bound = if cfg!(any(feature = "test-wgpu", feature = "test-cuda")) {
        5e-2
    } else {
        2e-2
    };
    assert!(
        max_diff < bound,
        "f16 decode differs from the f32 reference by {max_diff} (bound {bound})"
    );
}

#[test]
fn chunked_decode_reproduces_the_pipelines_decoded_frames() {
    // pipeline_e2e decodes its 33 final latents with decode_chunk_size 8: chunks of 8, 8, 8, 8
    // and 1 frame, then `(x * 0.5 + 0.5).clamp(0, 1)` (Sonic's test()).
    use sonic_parity::ParityOptions;
    let device = common::device();
    let model = fixture_model();
    let case = Case::open(golden("pipeline_e2e")).unwrap();
    let latents: Tensor<B, 5> = case.input("latents_after_step_3", &device).unwrap();
    let [batch, frames, c, h, w] = latents.dims();
    let latents = latents.reshape([batch * frames, c, h, w]);
    let to_video = |decoded: Tensor<B, 4>| {
        let [n, channels, height, width] = decoded.dims();
        decoded
            .mul_scalar(0.5)
            .add_scalar(0.5)
            .clamp(0.0, 1.0)
            .reshape([1, n, channels, height, width])
            .swap_dims(1, 2) // [1, 3, N, H, W]
    };
    // The case's tolerance (abs 1e-2) is for the whole pipeline; the decode alone is held to
    // 1/50 of it (abs 2e-4), tight enough to tell chunk borders apart.
    let run = common::parity_options();
    let options = ParityOptions {
        tolerance_scale: 0.02 * run.tolerance_scale,
        ..run
    };

    let chunks = model
        .decode_latents_chunked(latents.clone(), DEFAULT_DECODE_CHUNK_SIZE)
        .unwrap();
    assert_eq!(chunks.len(), 5);
    let decoded = Tensor::cat(chunks.map(|chunk| chunk.frames).collect(), 0); // [N, 3, H, W]
    let mut report = common::new_report_with(&case, &options);
    report
        .check_tensor(&case, "decoded_frames", to_video(decoded))
        .unwrap();
    common::assert_passed(&report);

    // One temporal context for all 33 frames is measurably different.
    let unchunked = model
        .decode(latents.mul_scalar(1.0 / model.scaling_factor()), frames)
        .unwrap();
    let mut report = common::new_report_with(&case, &options);
    report
        .check_tensor(&case, "decoded_frames", to_video(unchunked))
        .unwrap();
    assert!(
        !report.passed(),
        "an unchunked decode should differ:\n{report}"
    );
}
