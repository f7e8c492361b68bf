//! Filling a job's [`JobManifest`]: parameters and seed up front, then the inputs read, the
//! checkpoint digests, stage timings, and the video or the error.

use std::time::Duration;

use sonic_storage::{JobFailure, JobManifest, JobRef, ObjectInfo, Sha256Digest};

use super::component::Component;
use super::params::GenerationParams;

/// Builds the manifest of one job as it runs.
#[derive(Debug, Clone)]
pub(crate) struct ManifestRecorder {
    manifest: JobManifest,
}

impl ManifestRecorder {
    /// A manifest in status `created` with the parameters (defaults filled in, so the record
    /// says exactly what ran) and the seed.
    pub(crate) fn new(job: &JobRef, params: &GenerationParams) -> Self {
        let mut manifest = JobManifest::new(job.clone());
        manifest.parameters = serde_json::to_value(params).expect("parameters serialise to JSON");
        manifest.seed = Some(params.seed);
        Self { manifest }
    }

    /// The next run of a job whose manifest exists: `created` becomes `running` as the first
    /// attempt; `running`, `failed` or `cancelled` starts the next attempt
    /// ([`JobManifest::mark_resumed`]). The parameters and seed are this run's; the inputs
    /// are recorded again as they are read.
    pub(crate) fn take_over(mut manifest: JobManifest, params: &GenerationParams) -> Self {
        if manifest.status == sonic_storage::JobStatus::Created {
            manifest.mark_running();
        } else {
            manifest.mark_resumed();
        }
        manifest.parameters = serde_json::to_value(params).expect("parameters serialise to JSON");
        manifest.seed = Some(params.seed);
        manifest.inputs.clear();
        manifest.checkpoints.clear();
        Self { manifest }
    }

    /// Records what the user should know about the result.
    pub(crate) fn warnings(&mut self, warnings: &[String]) {
        self.manifest.warnings.extend_from_slice(warnings);
    }

    pub(crate) fn manifest(&self) -> &JobManifest {
        &self.manifest
    }

    pub(crate) fn manifest_mut(&mut self) -> &mut JobManifest {
        &mut self.manifest
    }

    /// Records an input object read by the job.
    pub(crate) fn input(&mut self, info: &ObjectInfo, role: &str, store_url: &str) {
        self.manifest.inputs.push(info.record(role, store_url));
    }

    /// Records the checkpoint digests under their components' names.
    pub(crate) fn checkpoints(&mut self, digests: Vec<(Component, Sha256Digest)>) {
        self.manifest.checkpoints.extend(
            digests
                .into_iter()
                .map(|(component, d)| (component.name().to_owned(), d)),
        );
    }

    /// Adds time spent in `stage`.
    pub(crate) fn timing(&mut self, stage: &str, elapsed: Duration) {
        self.manifest.record_timing(stage, elapsed);
    }

    /// The manifest of a job that wrote `video`.
    pub(crate) fn succeed(&mut self, video: &ObjectInfo, store_url: &str) -> JobManifest {
        self.manifest.outputs.push(video.record("video", store_url));
        self.manifest.mark_succeeded();
        self.manifest.clone()
    }

    /// The manifest of a job that failed.
    pub(crate) fn fail(&mut self, failure: JobFailure) -> JobManifest {
        self.manifest.mark_failed(failure);
        self.manifest.clone()
    }

    /// The manifest of a job that was cancelled (`failure` says where).
    pub(crate) fn cancel(&mut self, failure: JobFailure) -> JobManifest {
        self.manifest.mark_cancelled(failure);
        self.manifest.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_zero_and_parameters_are_recorded() {
        let params = GenerationParams {
            seed: 0,
            ..Default::default()
        };
        let job = JobRef::parse("t", "j").unwrap();
        let mut recorder = ManifestRecorder::new(&job, &params);
        recorder.timing("denoise", Duration::from_millis(1500));
        let manifest = recorder.fail(JobFailure::new("boom"));
        assert_eq!(manifest.seed, Some(0));
        assert_eq!(manifest.parameters["inference_steps"], 25);
        assert_eq!(manifest.timings["denoise"], 1.5);
        assert_eq!(manifest.error.unwrap().message, "boom");
    }

    /// Writes `manifest` to a memory store and reads it back.
    fn through_storage(manifest: &JobManifest) -> JobManifest {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let storage = sonic_storage::Storage::open("memory://").unwrap();
            storage.write_manifest(manifest).await.unwrap();
            storage.read_manifest(&manifest.job_ref()).await.unwrap()
        })
    }

    proptest::proptest! {
        /// Stage timings and float parameters read back bit-identical (serde_json's
        /// `float_roundtrip`: without it 1.144014537 reads back as 1.1440145369999999).
        #[test]
        fn floats_round_trip_bit_identically(
            nanos in proptest::collection::vec(0u64..=10_000_000_000_000, 1..8),
            seconds in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO,
            expand_ratio in 0.0f64..=5.0,
            dynamic_scale in 0.0f32..=4.0,
        ) {
            let params = GenerationParams { expand_ratio, dynamic_scale, ..Default::default() };
            let job = JobRef::parse("t", "floats").unwrap();
            let mut recorder = ManifestRecorder::new(&job, &params);
            for (i, n) in nanos.iter().enumerate() {
                recorder.timing(&format!("stage{i}"), Duration::from_nanos(*n));
            }
            recorder.manifest_mut().timings.insert("raw".into(), seconds);
            let written = recorder.manifest().clone();
            let read = through_storage(&written);
            for (stage, value) in &written.timings {
                proptest::prop_assert_eq!(value.to_bits(), read.timings[stage].to_bits(), "{}", stage);
            }
            let back: GenerationParams = serde_json::from_value(read.parameters.clone()).unwrap();
            proptest::prop_assert_eq!(back.expand_ratio.to_bits(), expand_ratio.to_bits());
            proptest::prop_assert_eq!(back.dynamic_scale.to_bits(), dynamic_scale.to_bits());
            proptest::prop_assert_eq!(read, written);
        }
    }

    #[test]
    fn the_flaky_timing_reads_back_exactly() {
        let job = JobRef::parse("t", "timing").unwrap();
        let mut recorder = ManifestRecorder::new(&job, &GenerationParams::default());
        recorder
            .manifest_mut()
            .timings
            .insert("denoise".into(), 1.144014537);
        let read = through_storage(recorder.manifest());
        assert_eq!(read.timings["denoise"].to_bits(), 1.144014537f64.to_bits());
    }
}
