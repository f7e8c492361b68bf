//! The audio front end: Whisper log-mel, the Whisper encoder, audio2token and audio2bucket.
//!
//! Sizes: `fixture` (the golden cases' tiny configs; 2.7 s of audio), `medium` (the released
//! configs: 30 s log-mel, whisper-tiny, the real audio adapters on one 25-frame window).
//! See `benches/common/mod.rs` for the environment switches.

#[macro_use]
mod common;

use std::hint::black_box;

use burn::prelude::Backend;
use burn::tensor::Tensor;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

use common::{Size, golden, golden_config, medium, num, randn, sizes, sync};
use sonic_core::models::audio_adapters::{Audio2BucketConfig, Audio2TokenConfig};
use sonic_core::models::whisper::WhisperEncoderConfig;
use sonic_media::audio::LogMelExtractor;

/// A speech-like test signal: a few harmonics with a slow vibrato and a little noise.
fn waveform(samples: usize) -> Vec<f32> {
    let mut noise = 0x2545_f491_u32;
    (0..samples)
        .map(|i| {
            let t = i as f32 / 16_000.0;
            let f0 = 140.0 + 20.0 * (2.0 * std::f32::consts::PI * 3.0 * t).sin();
            let voice: f32 = (1..6)
                .map(|h| (2.0 * std::f32::consts::PI * f0 * h as f32 * t).sin() / h as f32)
                .sum();
            noise ^= noise << 13;
            noise ^= noise >> 17;
            noise ^= noise << 5;
            0.3 * voice + 0.01 * (noise as f32 / u32::MAX as f32 - 0.5)
        })
        .collect()
}

/// Log-mel is host code: it runs once, not per backend.
fn log_mel(c: &mut Criterion) {
    let extractor = LogMelExtractor::whisper();
    let mut group = c.benchmark_group("log_mel");
    for size in sizes() {
        let samples = match size {
            // The golden case's 16 kHz waveform length.
            Size::Fixture => 42_586,
            Size::Medium => {
                let input = &medium()["log_mel_real"]["input"];
                num(input, "seconds") * num(input, "sample_rate")
            }
            Size::Real => continue,
        };
        let wave = waveform(samples);
        group.bench_function(BenchmarkId::new("host", size.name()), |b| {
            b.iter(|| black_box(extractor.extract(black_box(&wave))))
        });
    }
    group.finish();
}

fn whisper<B: Backend>(c: &mut Criterion, backend: &str, device: &B::Device) {
    let mut group = c.benchmark_group("whisper_encoder");
    for size in sizes() {
        let config = match size {
            Size::Fixture => WhisperEncoderConfig::from_hf_config(
                golden("whisper_encoder").join("whisper/config.json"),
            )
            .expect("fixture whisper config"),
            Size::Medium => WhisperEncoderConfig::whisper_tiny(),
            Size::Real => continue,
        };
        let model = config.init::<B>(device);
        let mel = randn::<B, 3>([1, config.num_mel_bins, config.input_frames()], device);
        group.bench_function(BenchmarkId::new(backend, size.name()), |b| {
            b.iter(|| {
                let out = model.forward(mel.clone()).expect("whisper input");
                sync::<B>(device);
                black_box(out)
            })
        });
    }
    group.finish();
}

fn adapters_configs(size: Size) -> Option<(Audio2TokenConfig, Audio2BucketConfig, usize)> {
    let token = |c: &serde_json::Value| {
        Audio2TokenConfig::new()
            .with_seq_len(num(c, "seq_len"))
            .with_blocks(num(c, "blocks"))
            .with_channels(num(c, "channels"))
            .with_intermediate_dim(num(c, "intermediate_dim"))
            .with_output_dim(num(c, "output_dim"))
            .with_context_tokens(num(c, "context_tokens"))
    };
    let bucket = |c: &serde_json::Value| {
        Audio2BucketConfig::new()
            .with_seq_len(num(c, "seq_len"))
            .with_blocks(num(c, "blocks"))
            .with_channels(num(c, "channels"))
            .with_clip_channels(num(c, "clip_channels"))
            .with_intermediate_dim(num(c, "intermediate_dim"))
            .with_output_dim(num(c, "output_dim"))
            .with_context_tokens(num(c, "context_tokens"))
    };
    match size {
        // The golden cases run 6 frames.
        Size::Fixture => Some((
            token(&golden_config("audio2token")),
            bucket(&golden_config("audio2bucket")),
            6,
        )),
        Size::Medium => {
            let entry = &medium()["audio_adapters_real"];
            Some((
                token(&entry["audio2token"]),
                bucket(&entry["audio2bucket"]),
                num(&entry["input"], "frames"),
            ))
        }
        Size::Real => None,
    }
}

fn adapters<B: Backend>(c: &mut Criterion, backend: &str, device: &B::Device) {
    let mut group = c.benchmark_group("audio2token");
    for size in sizes() {
        let Some((config, _, frames)) = adapters_configs(size) else {
            continue;
        };
        let model = config.init::<B>(device);
        let window = randn::<B, 5>(
            [1, frames, config.seq_len, config.blocks, config.channels],
            device,
        );
        group.bench_function(BenchmarkId::new(backend, size.name()), |b| {
            b.iter(|| {
                let out = model.forward(window.clone());
                sync::<B>(device);
                black_box(out)
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("audio2bucket");
    for size in sizes() {
        let Some((_, config, frames)) = adapters_configs(size) else {
            continue;
        };
        let model = config.init::<B>(device);
        let window = randn::<B, 5>(
            [1, frames, config.seq_len, config.blocks, config.channels],
            device,
        );
        let clip: Tensor<B, 2> = randn([1, config.clip_channels], device);
        group.bench_function(BenchmarkId::new(backend, size.name()), |b| {
            b.iter(|| {
                let out = model.buckets(window.clone(), clip.clone());
                sync::<B>(device);
                black_box(out)
            })
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    log_mel(c);
    for_each_backend!(c, whisper);
    for_each_backend!(c, adapters);
}

criterion_group! {
    name = audio;
    config = common::criterion();
    targets = benches
}
criterion_main!(audio);
