//! The denoiser: one UNet forward over a window (3 guidance branches batched), and one
//! sampler step (the window's model input, the UNet, guidance and the Euler update).
//!
//! Sizes: `fixture` (the golden UNet case: batch 3, 6 frames, 16x16 latents), `medium`
//! (`fixtures/medium.json` `unet_medium`: batch 3, 8 frames, 16x16 latents), `real` (SVD-xt
//! with the audio adapter: batch 3, 25 frames, 64x64 latents; opt-in). See
//! `benches/common/mod.rs`.

#[macro_use]
mod common;

use std::hint::black_box;

use burn::prelude::Backend;
use burn::tensor::Tensor;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

use common::{UNetShape, randn, sizes, sync, unet_shape, uniform};
use sonic_core::models::unet::{FaceMask, UNetInput};
use sonic_core::sampler::{
    Conditioning, EulerEdmScheduler, MaskedUNet, Sampler, SamplerConfig, Unobserved,
};

/// A face mask over the middle of the picture (latents are 1/8 of the pixels), as the
/// pipeline passes one.
fn face_mask(latent_hw: [usize; 2]) -> FaceMask {
    let (h, w) = (latent_hw[0] * 8, latent_hw[1] * 8);
    let pixels = (0..h * w)
        .map(|i| {
            let (y, x) = (i / w, i % w);
            let inside = y >= h / 4 && y < 3 * h / 4 && x >= w / 4 && x < 3 * w / 4;
            if inside { 1.0 } else { 0.0 }
        })
        .collect();
    FaceMask::new(pixels, h, w).expect("a valid mask")
}

struct Inputs<B: Backend> {
    sample: Tensor<B, 5>,
    timestep: Tensor<B, 1>,
    clip: Tensor<B, 3>,
    audio: Tensor<B, 3>,
    added_time_ids: Tensor<B, 2>,
}

fn inputs<B: Backend>(shape: &UNetShape, device: &B::Device) -> Inputs<B> {
    let c = &shape.config;
    let [h, w] = shape.latent_hw;
    let (b, f, d) = (shape.batch, shape.frames, c.cross_attention_dim);
    Inputs {
        sample: randn([b, f, c.in_channels, h, w], device),
        timestep: Tensor::from_floats([0.8f32], device),
        clip: randn([b * f, shape.clip_tokens, d], device),
        audio: randn([b * f, shape.audio_tokens, d], device),
        added_time_ids: Tensor::from_floats(
            [
                [12.5f32, 20.0, 18.0],
                [12.5, 20.0, 18.0],
                [12.5, 20.0, 18.0],
            ],
            device,
        )
        .narrow(0, 0, b),
    }
}

fn unet_forward<B: Backend>(c: &mut Criterion, backend: &str, device: &B::Device) {
    let mut group = c.benchmark_group("unet_forward");
    for size in sizes() {
        let shape = unet_shape(size);
        let model = shape.config.init::<B>(device);
        let x = inputs::<B>(&shape, device);
        let mask = face_mask(shape.latent_hw);
        group.bench_function(BenchmarkId::new(backend, size.name()), |b| {
            b.iter(|| {
                let out = model.forward(
                    UNetInput::new(
                        x.sample.clone(),
                        x.timestep.clone(),
                        x.clip.clone(),
                        x.audio.clone(),
                        x.added_time_ids.clone(),
                    )
                    .with_face_mask(&mask),
                );
                sync::<B>(device);
                black_box(out)
            })
        });
    }
    group.finish();
}

fn sampler_step<B: Backend>(c: &mut Criterion, backend: &str, device: &B::Device) {
    let mut group = c.benchmark_group("sampler_step");
    for size in sizes() {
        let shape = unet_shape(size);
        let config = &shape.config;
        let [h, w] = shape.latent_hw;
        let frames = shape.frames;
        let latent_channels = config.out_channels;
        let model = config.init::<B>(device);
        let mask = face_mask(shape.latent_hw);
        let d = config.cross_attention_dim;
        let conditioning = Conditioning::new(
            randn([1, d], device),
            randn([frames, shape.audio_tokens, d], device),
            randn([1, shape.audio_tokens, d], device),
            randn([1, latent_channels, h, w], device),
            vec![[20.0, 18.0]; frames],
        )
        .expect("conditioning");
        // One window covering the clip: one UNet call per step, like a 25-frame clip.
        let sampler = Sampler::new(
            SamplerConfig::sonic().with_frames_per_batch(frames),
            EulerEdmScheduler::svd_xt(25).expect("schedule"),
        )
        .expect("sampler");
        let latents = uniform::<B, 5>([1, frames, latent_channels, h, w], -1.0, 1.0, device)
            .mul_scalar(sampler.scheduler().init_noise_sigma());
        group.bench_function(BenchmarkId::new(backend, size.name()), |b| {
            b.iter(|| {
                let mut denoiser = MaskedUNet::new(&model, &mask);
                let out = sampler
                    .step(
                        0,
                        latents.clone(),
                        &conditioning,
                        &mut denoiser,
                        &mut Unobserved,
                    )
                    .expect("sampler step");
                sync::<B>(device);
                black_box(out)
            })
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    for_each_backend!(c, unet_forward);
    for_each_backend!(c, sampler_step);
}

criterion_group! {
    name = unet;
    config = common::criterion();
    targets = benches
}
criterion_main!(unet);
