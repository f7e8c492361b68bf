//! Jobs through `Pipeline` and object storage with the tiny fixture models: outputs and
//! manifest of a finished job, seed 0, no face, out-of-range parameters, cancellation (by the
//! token and by dropping the `generate` future), the memory budget, create-only claims, the
//! weights' typed errors. Short audio and one step keep it quick.

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use burn::tensor::DType;
use common::{FACE_BOX, golden, grey_picture, long_speech, portrait, values};
use sonic::backends::BackendChoice;
use sonic::pipeline::{
    CancellationToken, Claim, Component, FaceSpec, GenerationParams, JobControl, JobInputs,
    JobRequest, NamedBytes, Pipeline, PipelineError, Progress, Stage, StageRecorder, WeightsError,
    WeightsSource,
};
use sonic::storage::{
    InputKind, JobManifest, JobRef, JobStatus, ObjectKey, ObjectStorageExt, PutOptions, Storage,
    StorageError,
};
use sonic_core::sampler::seeded_noise;
use sonic_media::MediaError;

/// The tiny models, loaded once; each test gets its own in-memory store.
fn pipeline() -> Pipeline {
    static PIPELINE: OnceLock<Pipeline> = OnceLock::new();
    PIPELINE
        .get_or_init(|| {
            let cpu = BackendChoice::parse("cpu", "f32").unwrap();
            Pipeline::builder(cpu, Storage::open("memory://").unwrap())
                .weights(WeightsSource::demo(golden("")))
                .build()
                .unwrap()
        })
        .clone()
        .with_storage(Storage::open("memory://").unwrap())
}

/// 1 s of speech: 12 frames, one window per step.
fn quick_params() -> GenerationParams {
    GenerationParams {
        min_resolution: 64,
        inference_steps: 1,
        face: FACE_BOX,
        ..GenerationParams::default()
    }
}

async fn upload(pipeline: &Pipeline, job: &JobRef, picture: sonic::pipeline::NamedBytes) {
    let storage = pipeline.storage();
    storage
        .put_input(job, InputKind::Image, "png", picture.bytes.to_vec())
        .await
        .unwrap();
    storage
        .put_input(
            job,
            InputKind::Audio,
            "wav",
            long_speech(1.0).bytes.to_vec(),
        )
        .await
        .unwrap();
}

fn recorded_progress() -> (JobControl, Arc<Mutex<Vec<Progress>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let control = JobControl::default().with_progress(move |p| sink.lock().unwrap().push(*p));
    (control, seen)
}

async fn video_exists(pipeline: &Pipeline, job: &JobRef) -> bool {
    pipeline
        .storage()
        .outputs()
        .exists(&job.video_key())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_writes_its_video_and_manifest_and_honours_seed_zero() {
    let pipeline = pipeline();
    let job = JobRef::parse("acme", "seed-zero").unwrap();
    upload(&pipeline, &job, portrait()).await;
    let params = GenerationParams {
        seed: 0,
        ..quick_params()
    };
    let recorder = Arc::new(Mutex::new(StageRecorder::only(["latent_noise"])));
    let (control, progress) = recorded_progress();
    let outcome = pipeline
        .generate_with(
            &JobRequest::new(job.clone(), params),
            control.with_stages(recorder.clone()),
        )
        .await
        .unwrap();

    // Seed 0 is used (not replaced by a default) and recorded.
    let noise = recorder.lock().unwrap().get("latent_noise")[0].clone();
    let shape: [usize; 5] = noise.shape.to_vec().try_into().unwrap();
    assert_eq!(shape, [1, 12, 4, 8, 8]);
    let device = Default::default();
    let seed0 = seeded_noise::<common::B, 5>(0, shape, DType::F32, &device).into_data();
    let seed1 = seeded_noise::<common::B, 5>(1, shape, DType::F32, &device).into_data();
    assert_eq!(values(&noise), values(&seed0));
    assert_ne!(values(&noise), values(&seed1));
    let stored = pipeline.storage().read_manifest(&job).await.unwrap();
    assert_eq!(stored.seed, Some(0));
    assert_eq!(stored.parameters["seed"], 0);
    assert_eq!(stored, outcome.manifest);

    // Outputs, inputs, checkpoints and timings are recorded.
    assert_eq!(stored.status, JobStatus::Succeeded);
    assert_eq!(stored.outputs.len(), 1);
    assert_eq!(stored.outputs[0].key, job.video_key());
    assert!(stored.outputs[0].sha256.is_some());
    assert_eq!(stored.inputs.len(), 2);
    assert!(stored.inputs.iter().all(|r| r.sha256.is_some()));
    let names: Vec<&str> = stored.checkpoints.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "audio2bucket",
            "audio2token",
            "image_encoder",
            "rife",
            "unet",
            "vae",
            "whisper"
        ]
    );
    for stage in [
        "download",
        "checksums",
        "preprocess",
        "denoise",
        "vae_decode",
        "upload",
    ] {
        assert!(stored.timings.contains_key(stage), "no timing for {stage}");
    }
    let video = pipeline
        .storage()
        .outputs()
        .get_bytes(&job.video_key())
        .await
        .unwrap();
    assert_eq!(video.len() as u64, outcome.summary.bytes);
    assert_eq!(&video[4..8], b"ftyp");
    // 1 s of audio: 23 frames after RIFE, 25 to cover the second.
    assert_eq!(outcome.summary.frames, 25);

    // Progress: every stage in order, the loop's single window, ETA at the end.
    let progress = progress.lock().unwrap().clone();
    let mut stages: Vec<Stage> = progress.iter().map(|p| p.stage).collect();
    stages.dedup();
    assert_eq!(
        stages,
        [
            Stage::Download,
            Stage::Checksums,
            Stage::Preprocess,
            Stage::EncodeImage,
            Stage::EncodeAudio,
            Stage::Denoise,
            Stage::Decode,
            Stage::Upload
        ]
    );
    let last_window = progress
        .iter()
        .rfind(|p| p.stage == Stage::Denoise)
        .unwrap();
    assert_eq!(
        (
            last_window.step,
            last_window.window,
            last_window.done,
            last_window.total
        ),
        (Some(0), Some(0), 1, 1)
    );
    assert_eq!(last_window.eta, Some(std::time::Duration::ZERO));

    // The job is claimed: running it again is refused and changes nothing.
    let again = pipeline
        .generate(&JobRequest::new(job.clone(), quick_params()))
        .await;
    assert!(matches!(
        again,
        Err(PipelineError::Storage(StorageError::AlreadyExists { .. }))
    ));
    assert_eq!(
        pipeline.storage().read_manifest(&job).await.unwrap(),
        stored
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_face_is_a_typed_error_recorded_in_the_manifest() {
    let pipeline = pipeline();
    let job = JobRef::parse("acme", "no-face").unwrap();
    upload(&pipeline, &job, grey_picture(64, 64)).await;
    let params = GenerationParams {
        face: FaceSpec::Detect,
        ..quick_params()
    };
    let err = pipeline
        .generate(&JobRequest::new(job.clone(), params))
        .await
        .unwrap_err();
    let PipelineError::NoFaceDetected { name } = &err else {
        panic!("expected NoFaceDetected, got {err}")
    };
    assert_eq!(name, "inputs/acme/no-face/image.png");
    assert!(!video_exists(&pipeline, &job).await);
    let manifest = pipeline.storage().read_manifest(&job).await.unwrap();
    assert_eq!(manifest.status, JobStatus::Failed);
    assert!(manifest.error.unwrap().message.contains("no face detected"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_parameters_are_refused_before_any_work() {
    let pipeline = pipeline();
    for (params, name) in [
        (
            GenerationParams {
                inference_steps: 0,
                ..quick_params()
            },
            "inference_steps",
        ),
        (
            GenerationParams {
                audio_guidance: f32::INFINITY,
                ..quick_params()
            },
            "audio_guidance",
        ),
        (
            GenerationParams {
                min_resolution: 32,
                ..quick_params()
            },
            "min_resolution",
        ),
    ] {
        let job = JobRef::parse("acme", &format!("bad-{name}")).unwrap();
        upload(&pipeline, &job, portrait()).await;
        let (control, progress) = recorded_progress();
        let err = pipeline
            .generate_with(&JobRequest::new(job.clone(), params), control)
            .await
            .unwrap_err();
        match &err {
            PipelineError::InvalidParameter(sonic::pipeline::ParamError::OutOfRange {
                parameter,
                ..
            }) => assert_eq!(*parameter, name),
            other => panic!("{name}: {other}"),
        }
        // Not even the inputs were read.
        assert!(progress.lock().unwrap().is_empty(), "{name}");
        assert!(!video_exists(&pipeline, &job).await);
        let manifest = pipeline.storage().read_manifest(&job).await.unwrap();
        assert_eq!(manifest.status, JobStatus::Failed);
        assert!(manifest.error.unwrap().message.contains(name));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_leaves_no_video_object() {
    let pipeline = pipeline();
    let job = JobRef::parse("acme", "cancelled").unwrap();
    upload(&pipeline, &job, portrait()).await;
    let token = CancellationToken::new();
    let cancel = token.clone();
    let denoising = Arc::new(Mutex::new(0usize));
    let seen = denoising.clone();
    // Cancel as soon as the loop starts: the first window is refused.
    let control = JobControl::default()
        .with_cancel(token)
        .with_progress(move |p| {
            if p.stage == Stage::Denoise {
                *seen.lock().unwrap() += 1;
                cancel.cancel();
            }
        });
    let err = pipeline
        .generate_with(&JobRequest::new(job.clone(), quick_params()), control)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PipelineError::Cancelled {
                stage: Stage::Denoise
            }
        ),
        "{err}"
    );
    // Only the loop's start was reported: no window ran.
    assert_eq!(*denoising.lock().unwrap(), 1);
    assert!(!video_exists(&pipeline, &job).await);
    let outputs = pipeline
        .storage()
        .outputs()
        .list_all(Some(&job.output_prefix()))
        .await
        .unwrap();
    assert_eq!(outputs.len(), 1, "only the manifest: {outputs:?}");
    let manifest = pipeline.storage().read_manifest(&job).await.unwrap();
    assert_eq!(manifest.status, JobStatus::Cancelled);
    assert!(manifest.error.unwrap().message.contains("cancelled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_generate_cancels_the_job_and_records_cancelled() {
    let pipeline = pipeline();
    let job = JobRef::parse("acme", "dropped").unwrap();
    upload(&pipeline, &job, portrait()).await;
    let first_report = Arc::new(tokio::sync::Notify::new());
    let notify = first_report.clone();
    let reports = Arc::new(Mutex::new(0usize));
    let count = reports.clone();
    let control = JobControl::default().with_progress(move |_| {
        *count.lock().unwrap() += 1;
        notify.notify_one();
    });
    let request = JobRequest::new(job.clone(), quick_params());
    {
        let generate = pipeline.generate_with(&request, control);
        tokio::select! {
            result = generate => panic!("the job ended before it was dropped: {result:?}"),
            () = first_report.notified() => {}
        }
        // The future is dropped here, after the first progress report.
    }

    // The job's task stops at its next check and records `cancelled` (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(120);
    let manifest = loop {
        let manifest = pipeline.storage().read_manifest(&job).await.unwrap();
        if manifest.status != JobStatus::Running {
            break manifest;
        }
        assert!(
            Instant::now() < deadline,
            "still running 120 s after the drop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(manifest.status, JobStatus::Cancelled, "{manifest:?}");
    assert!(
        manifest
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("cancelled"),
        "{manifest:?}"
    );
    assert!(manifest.finished_at.is_some());
    assert!(!video_exists(&pipeline, &job).await);
    assert!(manifest.outputs.is_empty());
    // It stopped early: not every stage reported.
    assert!(*reports.lock().unwrap() >= 1);
    assert!(!manifest.timings.contains_key("upload"), "{manifest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_the_memory_budget_is_refused_before_step_one() {
    let pipeline = pipeline();
    let job = JobRef::parse("acme", "too-big").unwrap();
    upload(&pipeline, &job, portrait()).await;
    let params = GenerationParams {
        memory_budget: Some(1 << 20),
        ..quick_params()
    };
    let (control, progress) = recorded_progress();
    let err = pipeline
        .generate_with(&JobRequest::new(job.clone(), params), control)
        .await
        .unwrap_err();
    let PipelineError::MemoryBudget { estimate, budget } = &err else {
        panic!("expected MemoryBudget, got {err}")
    };
    assert_eq!(*budget, 1 << 20);
    assert!(estimate.total > *budget);
    // Refused from the headers, before the inputs were decoded.
    assert_eq!(estimate.peak_stage, "decode_picture", "{estimate:?}");
    assert!(estimate.weights > 0 && estimate.clip_length > 0);
    assert!(err.to_string().contains("memory budget"), "{err}");
    // The models never ran.
    let progress = progress.lock().unwrap().clone();
    assert!(progress.iter().all(|p| p.stage < Stage::EncodeImage));
    assert!(!video_exists(&pipeline, &job).await);

    // Enough to decode the inputs, not to run: refused by the whole estimate, after
    // preprocessing and still before any model.
    let job = JobRef::parse("acme", "decodes").unwrap();
    upload(&pipeline, &job, portrait()).await;
    let params = GenerationParams {
        memory_budget: Some(estimate.total + 1),
        ..quick_params()
    };
    let (control, progress) = recorded_progress();
    let err = pipeline
        .generate_with(&JobRequest::new(job.clone(), params), control)
        .await
        .unwrap_err();
    let PipelineError::MemoryBudget { estimate, .. } = &err else {
        panic!("expected MemoryBudget, got {err}")
    };
    assert_ne!(estimate.peak_stage, "decode_picture", "{estimate:?}");
    assert!(estimate.stage("decode_picture") > 0, "{estimate:?}");
    let progress = progress.lock().unwrap().clone();
    assert!(progress.iter().all(|p| p.stage < Stage::EncodeImage));

    // The same job within a budget above the estimate runs.
    let job = JobRef::parse("acme", "fits").unwrap();
    upload(&pipeline, &job, portrait()).await;
    let params = GenerationParams {
        memory_budget: Some(estimate.total + (1 << 20)),
        ..quick_params()
    };
    pipeline
        .generate(&JobRequest::new(job.clone(), params))
        .await
        .unwrap();
}

#[test]
fn missing_weights_name_the_file() {
    let cpu = BackendChoice::parse("cpu", "f32").unwrap();
    let layout = sonic::pipeline::WeightsLayout::released("/nonexistent/checkpoints");
    let err =
        Pipeline::with_weights(cpu, Storage::open("memory://").unwrap(), &layout).unwrap_err();
    assert!(
        matches!(
            err,
            PipelineError::Weights(WeightsError::Missing {
                component: Component::Unet,
                ..
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("Sonic/unet.pth"), "{err}");
    assert!(err.to_string().contains("LeonJoe13/Sonic"), "{err}");
}

#[test]
fn the_builder_defaults_to_the_checkpoints_folder() {
    // `Pipeline::new` is `Pipeline::builder(..).build()`: `./checkpoints`, whatever
    // `SONIC_WEIGHTS` says (only `Pipeline::from_env` reads it).
    let cpu = BackendChoice::parse("cpu", "f32").unwrap();
    let builder = Pipeline::builder(cpu, Storage::open("memory://").unwrap());
    let debug = format!("{builder:?}");
    assert!(
        debug.contains(r#"weights: Released("checkpoints")"#),
        "{debug}"
    );
}

/// Runs `params` on `picture` and 1 s of speech and returns the error, checking that no model
/// ran (no progress past preprocessing), no video was written and the failure was recorded.
async fn refused_before_compute(
    name: &str,
    picture: NamedBytes,
    params: GenerationParams,
) -> PipelineError {
    let pipeline = pipeline();
    let job = JobRef::parse("acme", name).unwrap();
    upload(&pipeline, &job, picture).await;
    let (control, progress) = recorded_progress();
    let err = pipeline
        .generate_with(&JobRequest::new(job.clone(), params), control)
        .await
        .unwrap_err();
    let progress = progress.lock().unwrap().clone();
    assert!(
        progress.iter().all(|p| p.stage < Stage::EncodeImage),
        "{name}: a model ran before the refusal: {err}"
    );
    assert!(!video_exists(&pipeline, &job).await);
    let manifest = pipeline.storage().read_manifest(&job).await.unwrap();
    assert_eq!(manifest.status, JobStatus::Failed, "{name}");
    err
}

/// Finding 5 of issue #13: a 4032x3024 picture with `keep_resolution` failed only after
/// denoising (OpenH264's "max resolution 3840x2160"), a 1x1 one with "invalid frame size 0x0".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_size_the_encoder_refuses_is_refused_before_any_model_runs() {
    for (name, width, height) in [("phone-photo", 4032, 3024), ("one-pixel", 1, 1)] {
        let params = GenerationParams {
            keep_resolution: true,
            face: FaceSpec::WholeFrame,
            ..quick_params()
        };
        let err = refused_before_compute(name, grey_picture(width, height), params).await;
        let PipelineError::OutputSize {
            keep_resolution: true,
            source:
                MediaError::VideoSize {
                    width: w,
                    height: h,
                    ..
                },
        } = &err
        else {
            panic!("{name}: expected OutputSize, got {err:?}")
        };
        assert_eq!((*w, *h), (width, height));
        assert!(err.to_string().contains("keep_resolution"), "{err}");
    }
}

/// Finding 6 of issue #13: `--face-box 1000,1000,10,10` on a 64x64 picture rendered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_face_box_outside_the_picture_is_refused_before_any_model_runs() {
    for crop in [false, true] {
        let params = GenerationParams {
            face: FaceSpec::Box {
                x: 1000.0,
                y: 1000.0,
                width: 10.0,
                height: 10.0,
            },
            crop,
            ..quick_params()
        };
        let name = format!("outside-{crop}");
        let err = refused_before_compute(&name, grey_picture(64, 64), params).await;
        assert!(
            matches!(
                &err,
                PipelineError::Media(MediaError::FaceBoxOutside {
                    width: 64,
                    height: 64,
                    ..
                })
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(!text.contains("CropBox"), "no raw Debug text: {text}");
        assert!(text.contains("64x64"), "{text}");
    }
}

/// Finding 3 of issue #13: audio over the 400 s cap was cut without telling the user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_cut_at_the_cap_is_a_warning_in_the_outcome_and_the_manifest() {
    let pipeline = pipeline();
    let job = JobRef::parse("acme", "long-audio").unwrap();
    let storage = pipeline.storage();
    storage
        .put_input(&job, InputKind::Image, "png", portrait().bytes.to_vec())
        .await
        .unwrap();
    // 401 s at 4 kHz of quiet noise (3.2 MB), of which the job uses the first second.
    let samples: Vec<i16> = (0..401 * 4000u64)
        .map(|i| ((i * 7919) % 200) as i16 - 100)
        .collect();
    storage
        .put_input(&job, InputKind::Audio, "wav", common::wav(4000, &samples))
        .await
        .unwrap();
    let params = GenerationParams {
        duration: Some(1.0),
        ..quick_params()
    };
    let outcome = pipeline
        .generate(&JobRequest::new(job.clone(), params))
        .await
        .unwrap();
    assert_eq!(outcome.warnings.len(), 1, "{:?}", outcome.warnings);
    assert!(
        outcome.warnings[0].contains("400"),
        "{:?}",
        outcome.warnings
    );
    let manifest = storage.read_manifest(&job).await.unwrap();
    assert_eq!(manifest.warnings, outcome.warnings);

    // Without a duration the same audio is refused from its header.
    let job = JobRef::parse("acme", "long-audio-refused").unwrap();
    storage
        .put_input(&job, InputKind::Image, "png", portrait().bytes.to_vec())
        .await
        .unwrap();
    storage
        .put_input(&job, InputKind::Audio, "wav", common::wav(4000, &samples))
        .await
        .unwrap();
    let err = pipeline
        .generate(&JobRequest::new(job, quick_params()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PipelineError::Media(MediaError::AudioTooLong { declared: true, .. })
        ),
        "{err:?}"
    );
}

/// Finding 1 of issue #13: a second `image.*` was silently preferred. Two inputs of a kind are
/// refused unless the job names its inputs by key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_are_read_by_exact_key_and_two_of_a_kind_are_refused() {
    let pipeline = pipeline();
    let job = JobRef::parse("acme", "two-pictures").unwrap();
    upload(&pipeline, &job, portrait()).await;
    let storage = pipeline.storage();
    storage
        .put_input(&job, InputKind::Image, "jpg", b"not read".to_vec())
        .await
        .unwrap();
    let err = pipeline
        .generate(&JobRequest::new(job.clone(), quick_params()))
        .await
        .unwrap_err();
    let PipelineError::Storage(StorageError::AmbiguousInput { keys, .. }) = &err else {
        panic!("expected AmbiguousInput, got {err:?}")
    };
    assert_eq!(
        keys,
        &[
            "inputs/acme/two-pictures/image.jpg",
            "inputs/acme/two-pictures/image.png"
        ]
    );

    // Named by key (any key, here a shared library of portraits), the job runs.
    let job = JobRef::parse("acme", "by-key").unwrap();
    let image = ObjectKey::new("library/portraits/me.png").unwrap();
    let audio = ObjectKey::new("library/speech/hello.wav").unwrap();
    storage
        .inputs()
        .put(&image, portrait().bytes.to_vec(), PutOptions::overwrite())
        .await
        .unwrap();
    storage
        .inputs()
        .put(
            &audio,
            long_speech(1.0).bytes.to_vec(),
            PutOptions::overwrite(),
        )
        .await
        .unwrap();
    let request = JobRequest::new(job.clone(), quick_params()).with_inputs(JobInputs {
        image: image.clone(),
        audio,
    });
    let outcome = pipeline.generate(&request).await.unwrap();
    assert_eq!(outcome.manifest.inputs[0].key, image);
}

/// `Claim::Existing`: a manifest the caller created (status `created`) runs as attempt 1, a
/// failed job as the next attempt, a succeeded one is refused untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_claim_takes_over_the_manifest() {
    let pipeline = pipeline();
    let storage = pipeline.storage();
    let job = JobRef::parse("acme", "pre-claimed").unwrap();
    storage
        .create_manifest(&JobManifest::new(job.clone()))
        .await
        .unwrap();
    upload(&pipeline, &job, portrait()).await;
    let request = JobRequest::new(job.clone(), quick_params()).with_claim(Claim::Existing);
    let outcome = pipeline.generate(&request).await.unwrap();
    assert_eq!(outcome.manifest.attempt, 1);
    assert_eq!(outcome.manifest.status, JobStatus::Succeeded);
    let before = storage.read_manifest(&job).await.unwrap();
    let err = pipeline.generate(&request).await.unwrap_err();
    assert!(
        matches!(err, PipelineError::AlreadySucceeded { .. }),
        "{err:?}"
    );
    assert_eq!(storage.read_manifest(&job).await.unwrap(), before);

    // A failed job (no face) runs again as attempt 2 once it can succeed.
    let job = JobRef::parse("acme", "retried").unwrap();
    upload(&pipeline, &job, grey_picture(64, 64)).await;
    let detect = GenerationParams {
        face: FaceSpec::Detect,
        ..quick_params()
    };
    pipeline
        .generate(&JobRequest::new(job.clone(), detect))
        .await
        .unwrap_err();
    let request = JobRequest::new(job.clone(), quick_params()).with_claim(Claim::Existing);
    let outcome = pipeline.generate(&request).await.unwrap();
    assert_eq!(outcome.manifest.attempt, 2);
    assert!(outcome.manifest.error.is_none());
}
