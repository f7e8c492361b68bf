//! The output edge: encoding and muxing N RGB frames (and their audio) into an MP4 in memory.
//!
//! Sizes: `fixture` 8 frames of 64x64, `medium` (`fixtures/medium.json` `mp4_medium`) 25 frames
//! of 512x512 with 16 kHz mono audio of the same length (one second of Sonic's output).

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use common::{Size, medium, num, nums, sizes};
use sonic_media::video::{AudioTrack, Mp4Writer, VideoOptions};

/// Smoothly moving colour gradients: encodes like natural video, unlike noise.
fn frames(count: usize, width: usize, height: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|t| {
            let mut rgb = Vec::with_capacity(width * height * 3);
            for y in 0..height {
                for x in 0..width {
                    rgb.push(((x + 2 * t) * 255 / width) as u8);
                    rgb.push(((y + t) * 255 / height) as u8);
                    rgb.push((((x + y) / 2 + 3 * t) % 256) as u8);
                }
            }
            rgb
        })
        .collect()
}

fn mp4(c: &mut Criterion) {
    let mut group = c.benchmark_group("mp4_encode");
    for size in sizes() {
        let (count, [h, w], fps, rate) = match size {
            Size::Fixture => (8, [64, 64], 25.0, 16_000),
            Size::Medium => {
                let input = &medium()["mp4_medium"]["input"];
                let hw = nums(input, "frame_hw");
                let fps = input["fps"].as_f64().expect("fps");
                (
                    num(input, "frames"),
                    [hw[0], hw[1]],
                    fps,
                    num(input, "audio_sample_rate"),
                )
            }
            Size::Real => continue,
        };
        let video = frames(count, w, h);
        let samples = (count as f64 / fps * rate as f64) as usize;
        let audio: Vec<f32> = (0..samples)
            .map(|i| 0.3 * (i as f32 * 0.05).sin())
            .collect();
        let options = VideoOptions {
            fps,
            ..VideoOptions::default()
        };
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(BenchmarkId::new("host", size.name()), |b| {
            b.iter(|| {
                let track = AudioTrack::mono(audio.clone(), rate as u32);
                let mut writer =
                    Mp4Writer::new(Vec::new(), w as u32, h as u32, &options, Some(track))
                        .expect("writer");
                for frame in &video {
                    writer.push_frame(frame).expect("frame");
                }
                black_box(writer.finish().expect("finish"))
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = media;
    config = common::criterion();
    targets = mp4
}
criterion_main!(media);
