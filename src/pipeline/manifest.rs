//! Filling a job's [`JobManifest`]: parameters and seed up front, then the inputs read, the
//! checkpoint digests, stage timings, and the video or the error.

use std::time::Duration;

use sonic_storage::{JobFailure, JobManifest, JobRef, ObjectInfo, Sha256Digest};

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

    /// Records the checkpoint digests by name.
    pub(crate) fn checkpoints(&mut self, digests: Vec<(&'static str, Sha256Digest)>) {
        self.manifest
            .checkpoints
            .extend(digests.into_iter().map(|(name, d)| (name.to_owned(), d)));
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
}
