//! Peak host memory of the temporal VAE decoder, counted by a global allocator (the CPU
//! backend keeps tensors on the heap). One test function: the counter is process-wide, so
//! nothing else may run beside it. Findings are written up in `docs/vae.md`.

mod common;

use std::num::NonZeroUsize;

use burn::tensor::{Distribution, Tensor};
use common::TestBackend;
use sonic_core::models::vae::{AutoencoderKLTemporalDecoder, AutoencoderKLTemporalDecoderConfig};

type B = TestBackend;

mod heap;

/// Peak heap growth (bytes) while `f` runs, above what was allocated when it started.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = heap::reset_peak();
    let out = f();
    (out, heap::peak().saturating_sub(base))
}

const MIB: f64 = (1 << 20) as f64;

/// `fixtures/medium.json` `vae_decode_medium`: block_out_channels [64, 128, 256, 256].
fn medium() -> AutoencoderKLTemporalDecoder<B> {
    let model = AutoencoderKLTemporalDecoderConfig::new()
        .with_block_out_channels(vec![64, 128, 256, 256])
        .init::<B>(&common::device());
    // Materialise the lazily initialised weights outside the measurements.
    let z = Tensor::<B, 4>::zeros([1, 4, 1, 1], &common::device());
    model.decode(z, 1).unwrap();
    model
}

#[test]
fn decoder_peak_memory_is_bounded_by_one_chunk() {
    let model = medium();
    let device = common::device();
    let latents = |frames, side| {
        Tensor::<B, 4>::random(
            [frames, 4, side, side],
            Distribution::Normal(0.0, 1.0),
            &device,
        )
    };

    // One 8-frame chunk at 16x16 latents (128x128 pixels), the medium benchmark size.
    let z = latents(8, 16);
    let (frames, peak_chunk) = peak_during(|| model.decode(z, 8).unwrap());
    assert_eq!(frames.dims(), [8, 3, 128, 128]);
    drop(frames);
    // The largest activation: the last level's upsampled input, 8 frames x 128 channels x
    // 128 x 128 x f32 (64 MiB); docs/vae.md explains the measured ~3.1x.
    let largest = 8 * 128 * 128 * 128 * 4;
    let ratio = peak_chunk as f64 / largest as f64;
    assert!(
        (2.0..5.0).contains(&ratio),
        "one chunk peaked at {:.1} MiB = {ratio:.2} x the largest activation ({:.1} MiB)",
        peak_chunk as f64 / MIB,
        largest as f64 / MIB
    );

    // Streaming 4 chunks of 2 frames (8x8 latents): the peak is that of one chunk, whatever
    // the clip length, because each decoded chunk is dropped before the next is decoded.
    let chunk = NonZeroUsize::new(2).unwrap();
    let one = latents(2, 8);
    let (_, peak_one) = peak_during(|| model.decode_latents(one, chunk).unwrap());
    let long = latents(8, 8);
    let (chunks, peak_stream) = peak_during(|| {
        let mut chunks = 0;
        for decoded in model.decode_latents_chunked(long, chunk).unwrap() {
            assert_eq!(decoded.frames.dims(), [2, 3, 64, 64]);
            chunks += 1; // a pipeline would encode the frames to the MP4 here
        }
        chunks
    });
    assert_eq!(chunks, 4);
    assert!(
        (peak_stream as f64) < 1.2 * peak_one as f64,
        "streaming 4 chunks peaked at {:.1} MiB, one chunk at {:.1} MiB",
        peak_stream as f64 / MIB,
        peak_one as f64 / MIB
    );
    // Holding the whole clip in one context costs about 4x as much.
    let whole = latents(8, 8);
    let (_, peak_whole) = peak_during(|| model.decode(whole, 8).unwrap());
    assert!(
        peak_whole as f64 > 2.5 * peak_one as f64,
        "decoding 8 frames at once peaked at {:.1} MiB, a 2-frame chunk at {:.1} MiB",
        peak_whole as f64 / MIB,
        peak_one as f64 / MIB
    );
}
