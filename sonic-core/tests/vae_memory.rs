//! Peak host memory of the temporal VAE decoder, counted by a global allocator (the CPU
//! backend keeps tensors on the heap). One test function: the counter is process-wide, so
//! nothing else may run beside it. Findings are written up in `docs/vae.md`.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::tensor::{Distribution, Tensor};
use common::TestBackend;
use sonic_core::models::vae::{AutoencoderKLTemporalDecoder, AutoencoderKLTemporalDecoderConfig};

type B = TestBackend;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(size: usize) {
    let now = CURRENT.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak heap growth (bytes) while `f` runs, above what was allocated when it started.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
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
