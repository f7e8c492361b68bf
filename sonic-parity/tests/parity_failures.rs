//! `run_case` (what the `parity` example runs) fails loudly on a wrong checkpoint: a perturbed
//! weight fails the tolerance, and a missing, extra or mis-shaped key cannot load at all.

mod common;

use std::path::{Path, PathBuf};

use common::{TestBackend, golden};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use sonic_core::weights::{KeyProblem, LoadError};
use sonic_parity::{ParityError, ParityOptions, run_case};

/// Copies a case directory (recursively) into a fresh temporary directory.
fn copy_case(case: &str) -> (tempfile::TempDir, PathBuf) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join(case);
    copy(&golden(case), &dir);
    (temp, dir)
}

/// Rewrites a safetensors file, letting `edit` change the (name, dtype, shape, bytes) list.
fn rewrite(path: &Path, edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>)) {
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                view.dtype(),
                view.shape().to_vec(),
                view.data().to_vec(),
            )
        })
        .collect();
    edit(&mut tensors);
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            (
                name.clone(),
                TensorView::new(*dtype, shape.clone(), data).unwrap(),
            )
        })
        .collect::<Vec<_>>();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn run(dir: &Path) -> Result<sonic_parity::ParityReport, ParityError> {
    run_case::<TestBackend>(dir, &common::device(), &ParityOptions::default())
}

#[test]
fn one_perturbed_weight_fails_the_whisper_case() {
    let (_temp, dir) = copy_case("whisper_encoder");
    assert!(run(&dir).unwrap().passed(), "the copy passes unchanged");
    rewrite(&dir.join("whisper/model.safetensors"), |tensors| {
        let (_, _, _, data) = tensors
            .iter_mut()
            .find(|(name, ..)| name == "model.encoder.layers.1.fc2.bias")
            .unwrap();
        let value = f32::from_le_bytes(data[..4].try_into().unwrap()) + 0.01;
        data[..4].copy_from_slice(&value.to_le_bytes());
    });
    let report = run(&dir).unwrap();
    assert!(!report.passed(), "{report}");
    let failing: Vec<_> = report
        .comparisons
        .iter()
        .filter(|c| !c.passed())
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(failing, ["last_hidden_state", "hidden_states_stacked"]);
    assert!(report.to_string().contains("FAIL"), "{report}");
}

#[test]
fn one_perturbed_fp16_weight_fails_the_clip_case() {
    let (_temp, dir) = copy_case("clip_vision");
    rewrite(
        &dir.join("image_encoder/model.fp16.safetensors"),
        |tensors| {
            let (_, dtype, _, data) = tensors
                .iter_mut()
                .find(|(name, ..)| name == "vision_model.embeddings.class_embedding")
                .unwrap();
            assert_eq!(*dtype, Dtype::F16);
            let value = half::f16::from_le_bytes([data[0], data[1]]).to_f32() + 0.05;
            data[..2].copy_from_slice(&half::f16::from_f32(value).to_le_bytes());
        },
    );
    let report = run(&dir).unwrap();
    assert!(!report.passed(), "{report}");
}

#[test]
fn missing_extra_and_misshaped_keys_are_a_key_mismatch() {
    let (_temp, dir) = copy_case("whisper_encoder");
    rewrite(&dir.join("whisper/model.safetensors"), |tensors| {
        tensors.retain(|(name, ..)| name != "model.encoder.layers.1.fc2.bias");
        // Whisper's k_proj has no bias: a file with one has a key the model does not take.
        tensors.push((
            "model.encoder.layers.0.self_attn.k_proj.bias".into(),
            Dtype::F32,
            vec![32],
            vec![0; 32 * 4],
        ));
        let (_, _, shape, data) = tensors
            .iter_mut()
            .find(|(name, ..)| name == "model.encoder.conv1.weight")
            .unwrap();
        *shape = vec![32, 80, 1];
        data.truncate(32 * 80 * 4);
    });
    let err = run(&dir).unwrap_err();
    let ParityError::Load(LoadError::KeyMismatch { problems, .. }) = &err else {
        panic!("expected a key mismatch, got {err}");
    };
    assert_eq!(problems.len(), 3, "{err}");
    assert!(problems.contains(&KeyProblem::Missing {
        key: "layers.1.fc2.bias".into(),
        expected: vec![32],
    }));
    assert!(problems.contains(&KeyProblem::Unexpected {
        key: "model.encoder.layers.0.self_attn.k_proj.bias".into(),
        found: vec![32],
    }));
    assert!(problems.contains(&KeyProblem::Shape {
        key: "model.encoder.conv1.weight".into(),
        expected: vec![32, 80, 3],
        found: vec![32, 80, 1],
    }));
}

#[test]
fn unknown_component_is_an_error() {
    let (_temp, dir) = copy_case("whisper_encoder");
    let config = dir.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("\"whisper_encoder\"", "\"whisper_decoder\""),
    )
    .unwrap();
    let err = run(&dir).unwrap_err();
    assert!(
        matches!(&err, ParityError::UnknownComponent { component, .. } if component == "whisper_decoder"),
        "{err}"
    );
}
