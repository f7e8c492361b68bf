//! Host memory of a whole demo job (the fixtures' tiny models, 64x64) on 5 s and on 60 s of
//! speech, counted by a global allocator (the CPU backend keeps tensors on the heap). One test
//! function: the counter is process-wide, so nothing else may run beside it. The numbers are
//! reported in `docs/pipeline.md` ("Memory").
//!
//! What it shows: decoded and interpolated frames stream to the encoder, so the 60 s job's peak
//! is above the 5 s job's by the clip-length data only (waveforms, log-mel, Whisper states,
//! latents of all frames, the encoded MP4), not by its 1 499 frames; and the pre-flight estimate
//! is an upper bound of what the job allocates.

mod common;

use common::{FACE_BOX, demo_layout, long_speech, portrait};
use sonic::backends::BackendChoice;
use sonic::pipeline::{GenerationParams, JobOutcome, JobRequest, Pipeline};
use sonic::storage::{InputKind, JobRef, Storage};

#[path = "../sonic-parity/tests/heap/mod.rs"]
mod heap;

const MIB: u64 = 1 << 20;

/// Runs a one-step demo job on `seconds` of speech; returns the outcome and the peak heap
/// (bytes, loaded models included) while it ran.
fn job_peak(
    runtime: &tokio::runtime::Runtime,
    pipeline: &Pipeline,
    seconds: f64,
) -> (JobOutcome, u64) {
    let job = JobRef::parse("memory", &format!("speech-{seconds}s")).unwrap();
    let params = GenerationParams {
        min_resolution: 64,
        inference_steps: 1,
        face: FACE_BOX,
        ..GenerationParams::default()
    };
    runtime.block_on(async {
        let storage = pipeline.storage();
        storage
            .put_input(&job, InputKind::Image, "png", portrait().bytes.to_vec())
            .await
            .unwrap();
        storage
            .put_input(
                &job,
                InputKind::Audio,
                "wav",
                long_speech(seconds).bytes.to_vec(),
            )
            .await
            .unwrap();
        heap::reset_peak();
        let outcome = pipeline
            .generate(&JobRequest::new(job, params))
            .await
            .unwrap();
        (outcome, heap::peak() as u64)
    })
}

#[test]
fn a_60_s_job_needs_little_more_memory_than_a_5_s_job() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // A folder store: the stored inputs and video are files, not heap.
    let dir = tempfile::tempdir().unwrap();
    let store = Storage::open(dir.path().to_str().unwrap()).unwrap();
    let cpu = BackendChoice::parse("cpu", "f32").unwrap();
    let pipeline = Pipeline::with_weights(cpu, store, &demo_layout()).unwrap();

    let (short, short_peak) = job_peak(&runtime, &pipeline, 5.0);
    let (long, long_peak) = job_peak(&runtime, &pipeline, 60.0);
    // 5 s: 62 frames -> 123 after RIFE -> 125 written; 60 s: 750 -> 1 499 -> 1 500.
    assert_eq!(short.summary.frames, 125);
    assert_eq!(long.summary.frames, 1500);

    // Measured (debug build, CPU, f32): 53.2 MiB for 5 s, 66.4 MiB for 60 s (docs/pipeline.md).
    // The stated bound: 12x the audio costs at most 1.5x the memory.
    assert!(
        long_peak * 2 <= short_peak * 3,
        "60 s peak {} MiB > 1.5 x the 5 s peak {} MiB",
        long_peak / MIB,
        short_peak / MIB
    );
    // The growth is the clip-length data the estimate names, not the frames: holding the
    // 1 499 interpolated frames (64x64 RGB f32) alone would take 70 MiB more.
    let growth = long_peak - short_peak;
    let frames = 1499 * 64 * 64 * 3 * 4;
    assert!(growth * 3 < frames, "grew by {} MiB", growth / MIB);
    let clip_growth = long.estimate.clip_length - short.estimate.clip_length;
    assert!(
        growth < clip_growth,
        "grew by {growth} B, estimate {clip_growth} B"
    );
    // The pre-flight estimate is an upper bound of the job's heap (models included).
    assert!(
        short_peak < short.estimate.total,
        "{short_peak} > {:?}",
        short.estimate
    );
    assert!(
        long_peak < long.estimate.total,
        "{long_peak} > {:?}",
        long.estimate
    );
}
