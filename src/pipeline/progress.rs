//! Progress reports (stage, step, window, ETA) and cancellation.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The stages of a job, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Stage {
    /// Reading the inputs from the store.
    Download,
    /// Hashing the checkpoint files (first job only; then cached).
    Checksums,
    /// Decoding the picture and the audio, face, crop, resize, log-mel features.
    Preprocess,
    /// CLIP image embedding and VAE encoding of the portrait.
    EncodeImage,
    /// Whisper, audio tokens and motion buckets.
    EncodeAudio,
    /// The denoising loop (UNet windows).
    Denoise,
    /// VAE decoding, RIFE interpolation and H.264/AAC encoding, streamed frame by frame.
    Decode,
    /// Writing the video and the manifest to the store.
    Upload,
}

impl Stage {
    /// The stage's name in manifests and logs (`denoise`, `decode` ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Download => "download",
            Self::Checksums => "checksums",
            Self::Preprocess => "preprocess",
            Self::EncodeImage => "encode_image",
            Self::EncodeAudio => "encode_audio",
            Self::Denoise => "denoise",
            Self::Decode => "decode",
            Self::Upload => "upload",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One progress report.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Progress {
    /// The running stage.
    pub stage: Stage,
    /// Units of the stage done: UNet windows in [`Stage::Denoise`], generated frames in
    /// [`Stage::Decode`], 0 or 1 elsewhere.
    pub done: u64,
    /// Units of the stage in all.
    pub total: u64,
    /// Denoising step (0-based) of the last window, in [`Stage::Denoise`].
    pub step: Option<usize>,
    /// Number of denoising steps.
    pub num_steps: usize,
    /// Window (0-based, within its step) just finished, in [`Stage::Denoise`].
    pub window: Option<usize>,
    /// Windows per step.
    pub windows_per_step: usize,
    /// Time spent in the stage so far.
    pub elapsed: Duration,
    /// Estimated time left in the stage, from its rate so far (`None` before the first unit).
    pub eta: Option<Duration>,
}

impl Progress {
    /// A report at the start of `stage`.
    pub(crate) fn start(stage: Stage, total: u64) -> Self {
        Self {
            stage,
            done: 0,
            total,
            step: None,
            num_steps: 0,
            window: None,
            windows_per_step: 0,
            elapsed: Duration::ZERO,
            eta: None,
        }
    }

    /// Fraction of the stage done, in `[0, 1]`.
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.done as f64 / self.total as f64
        }
    }
}

/// Receives progress reports; called on the thread that computes, so keep it quick.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Times a stage and estimates what is left of it.
#[derive(Debug)]
pub(crate) struct StageClock {
    report: Progress,
    started: Instant,
}

impl StageClock {
    pub(crate) fn new(stage: Stage, total: u64) -> Self {
        Self {
            report: Progress::start(stage, total),
            started: Instant::now(),
        }
    }

    pub(crate) fn with_steps(mut self, num_steps: usize, windows_per_step: usize) -> Self {
        self.report.num_steps = num_steps;
        self.report.windows_per_step = windows_per_step;
        self
    }

    /// The report after `done` units (and optionally a step and window).
    pub(crate) fn advance(
        &mut self,
        done: u64,
        step: Option<usize>,
        window: Option<usize>,
    ) -> Progress {
        let elapsed = self.started.elapsed();
        self.report.done = done.min(self.report.total);
        self.report.step = step.or(self.report.step);
        self.report.window = window.or(self.report.window);
        self.report.elapsed = elapsed;
        self.report.eta = (done > 0).then(|| {
            let left = self.report.total.saturating_sub(done) as f64;
            elapsed.mul_f64(left / done as f64)
        });
        self.report
    }

    pub(crate) fn current(&self) -> Progress {
        self.report
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Asks a running job to stop. Clones share the flag; the job checks it before every UNet
/// window, every decoded chunk and between stages, and stops with
/// [`PipelineError::Cancelled`](super::PipelineError::Cancelled) (no video is written).
#[derive(Debug, Clone, Default)]
pub struct CancellationToken(Arc<AtomicBool>);

impl CancellationToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_follows_the_rate() {
        let mut clock = StageClock::new(Stage::Denoise, 10).with_steps(5, 2);
        assert_eq!(clock.current().eta, None);
        std::thread::sleep(Duration::from_millis(20));
        let p = clock.advance(5, Some(2), Some(0));
        let eta = p.eta.unwrap();
        // Half done: the rest takes about as long as what was done.
        assert!(eta >= p.elapsed.mul_f64(0.99) && eta <= p.elapsed.mul_f64(1.01));
        assert_eq!((p.step, p.window, p.fraction()), (Some(2), Some(0), 0.5));
    }

    #[test]
    fn cancellation_is_shared() {
        let token = CancellationToken::new();
        let clone = token.clone();
        assert!(!clone.is_cancelled());
        token.cancel();
        assert!(clone.is_cancelled());
    }
}
