//! The picture and frame models: CLIP image embedding, VAE encode, one VAE decode chunk and
//! one RIFE pair.
//!
//! Sizes: `fixture` (the golden cases' tiny configs), `medium` (`fixtures/medium.json`:
//! `clip_medium`, `vae_encode_medium`, `vae_decode_medium`, `rife_medium`), `real` (the
//! released configs at 512x512, opt-in). See `benches/common/mod.rs`.

#[macro_use]
mod common;

use std::hint::black_box;

use burn::prelude::Backend;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

use common::{
    clip_config, randn, rife_shape, sizes, sync, uniform, vae_decode_shape, vae_encode_shape,
};
use sonic_core::models::rife::RifeConfig;

fn clip<B: Backend>(c: &mut Criterion, backend: &str, device: &B::Device) {
    let mut group = c.benchmark_group("clip");
    for size in sizes() {
        let config = clip_config(size);
        let model = config.init::<B>(device);
        let pixels = randn::<B, 4>([1, 3, config.image_size, config.image_size], device);
        group.bench_function(BenchmarkId::new(backend, size.name()), |b| {
            b.iter(|| {
                let out = model.forward(pixels.clone()).expect("CLIP input");
                sync::<B>(device);
                black_box(out)
            })
        });
    }
    group.finish();
}

fn vae<B: Backend>(c: &mut Criterion, backend: &str, device: &B::Device) {
    let mut group = c.benchmark_group("vae_encode");
    for size in sizes() {
        let (config, images, [h, w]) = vae_encode_shape(size);
        let model = config.init::<B>(device);
        let pixels = uniform::<B, 4>([images, 3, h, w], -1.0, 1.0, device);
        group.bench_function(BenchmarkId::new(backend, size.name()), |b| {
            b.iter(|| {
                let out = model.encode(pixels.clone()).expect("VAE input");
                sync::<B>(device);
                black_box(out)
            })
        });
    }
    group.finish();

    // One chunk of the streaming decode: `decode(z, num_frames = chunk)`.
    let mut group = c.benchmark_group("vae_decode_chunk");
    for size in sizes() {
        let (config, frames, [h, w]) = vae_decode_shape(size);
        let model = config.init::<B>(device);
        let z = randn::<B, 4>([frames, config.latent_channels, h, w], device);
        group.bench_function(BenchmarkId::new(backend, size.name()), |b| {
            b.iter(|| {
                let out = model.decode(z.clone(), frames).expect("VAE latents");
                sync::<B>(device);
                black_box(out)
            })
        });
    }
    group.finish();
}

fn rife<B: Backend>(c: &mut Criterion, backend: &str, device: &B::Device) {
    let mut group = c.benchmark_group("rife_pair");
    for size in sizes() {
        let (width, [h, w]) = rife_shape(size);
        let model = RifeConfig::new().with_c(width).init::<B>(device);
        let frame0 = uniform::<B, 4>([1, 3, h, w], 0.0, 1.0, device);
        let frame1 = uniform::<B, 4>([1, 3, h, w], 0.0, 1.0, device);
        group.bench_function(BenchmarkId::new(backend, size.name()), |b| {
            b.iter(|| {
                let out = model.forward(frame0.clone(), frame1.clone());
                sync::<B>(device);
                black_box(out)
            })
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    for_each_backend!(c, clip);
    for_each_backend!(c, vae);
    for_each_backend!(c, rife);
}

criterion_group! {
    name = vision;
    config = common::criterion();
    targets = benches
}
criterion_main!(vision);
