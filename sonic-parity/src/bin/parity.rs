//! Runs reference cases (the layout of `fixtures/golden/<case>`: `config.json`, `io.safetensors`,
//! weight files) through [`sonic_parity::run_case`] and prints the max abs / rel error of
//! every output tensor.
//!
//! ```sh
//! cargo run --release -p sonic-parity --bin parity -- fixtures/golden/whisper_encoder [more case dirs] [--device cpu] [--dtype f32]
//! cargo run --release -p sonic-parity --features wgpu --bin parity -- fixtures/golden/* --device wgpu --dtype f16
//! ```
//!
//! `--device` takes `cpu` (default), `wgpu`, `wgpu:N`, `cuda`, `cuda:N` or `auto`; the backend
//! must be compiled in (`--features wgpu` / `cuda`). `--dtype` takes `f32` (default), `f16` or
//! `bf16`: weights and inputs are converted to it and the tolerances scaled by
//! [`sonic_parity::tolerance_scale`].
//!
//! A directory is a case when it holds a `config.json`. A directory that does not is replaced
//! by its subdirectories that are cases (`parity fixtures/golden` runs every golden case), or,
//! with none, skipped with a note on stderr (`fixtures/golden/*/` names `keys/` too); a path
//! that does not exist is a case that cannot run.
//!
//! Exit status: 0 when every tensor and check of every case is within tolerance, 1 when one is
//! not, 2 when a case cannot run (unknown component, unreadable files, weights that do not
//! load), no case was given, or the arguments are wrong.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::prelude::Backend;
use burn::tensor::DType;
use sonic::backends::{BackendChoice, BackendFn, Device, Precision};
use sonic_parity::{ParityOptions, components, run_case};

const USAGE: &str =
    "usage: parity <case dir>... [--device cpu|wgpu[:N]|cuda[:N]|auto] [--dtype f32|f16|bf16]";

#[derive(Debug, PartialEq)]
struct Args {
    cases: Vec<PathBuf>,
    /// `None`: `auto`, the fastest device present.
    device: Option<Device>,
    precision: Precision,
}

impl Args {
    fn options(&self) -> ParityOptions {
        ParityOptions::for_dtype(self.precision.dtype())
    }
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut cases = Vec::new();
    let mut device = Some(Device::Cpu);
    let mut precision = Precision::F32;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--device" => {
                device = match args.next().as_deref() {
                    Some("auto") => None,
                    Some(text) => Some(text.parse().map_err(|e| format!("{e}"))?),
                    None => return Err("--device needs a value".into()),
                }
            }
            "--dtype" => {
                precision = match args.next() {
                    Some(text) => text.parse().map_err(|e| format!("{e}"))?,
                    None => return Err("--dtype needs a value".into()),
                }
            }
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
            dir => cases.push(PathBuf::from(dir)),
        }
    }
    if cases.is_empty() {
        return Err("no case directory given".into());
    }
    Ok(Args {
        cases,
        device,
        precision,
    })
}

/// How a run ended, worst case first when several are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Passed,
    OutOfTolerance,
    CannotRun,
}

impl Outcome {
    fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Self::Passed => 0,
            Self::OutOfTolerance => 1,
            Self::CannotRun => 2,
        })
    }
}

/// The case directories named by `dirs` (see the module docs), with a note on stderr for each
/// directory skipped.
fn case_dirs(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let is_case = |dir: &std::path::Path| dir.join("config.json").is_file();
    let mut cases = Vec::new();
    for dir in dirs {
        if is_case(dir) || !dir.is_dir() {
            cases.push(dir.clone());
            continue;
        }
        let mut inner: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| is_case(path))
            .collect();
        if inner.is_empty() {
            eprintln!(
                "{}: not a case directory (no config.json) and holds none: skipped",
                dir.display()
            );
        }
        inner.sort();
        cases.extend(inner);
    }
    cases
}

fn run_all<B: Backend>(args: &Args, device: &B::Device) -> Outcome {
    let mut outcome = Outcome::Passed;
    for dir in &args.cases {
        let this = match run_case::<B>(dir, device, &args.options()) {
            Ok(report) => {
                print!("{report}");
                if report.passed() {
                    Outcome::Passed
                } else {
                    Outcome::OutOfTolerance
                }
            }
            Err(error) => {
                eprint!("{}: cannot run: {error}", dir.display());
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    eprint!(": {cause}");
                    source = cause.source();
                }
                eprintln!();
                Outcome::CannotRun
            }
        };
        outcome = outcome.max(this);
    }
    outcome
}

/// [`run_all`] on the backend a [`BackendChoice`] picked at run time.
struct RunAll<'a>(&'a Args);

impl BackendFn for RunAll<'_> {
    type Output = Outcome;

    fn run<B: Backend>(self, device: B::Device, _dtype: DType) -> Outcome {
        run_all::<B>(self.0, &device)
    }
}

fn run(args: impl IntoIterator<Item = String>) -> Outcome {
    let args = match parse_args(args) {
        Ok(mut args) => {
            args.cases = case_dirs(&args.cases);
            if args.cases.is_empty() {
                eprintln!("error: no case directory among the arguments");
                return Outcome::CannotRun;
            }
            args
        }
        Err(message) => {
            if !message.is_empty() {
                eprintln!("error: {message}");
            }
            eprintln!("{USAGE}\ncomponents: {}", components().join(", "));
            return Outcome::CannotRun;
        }
    };
    let choice = match args.device {
        Some(device) => BackendChoice::new(device, args.precision),
        None => {
            BackendChoice::auto().and_then(|auto| BackendChoice::new(auto.device(), args.precision))
        }
    };
    match choice.and_then(|choice| choice.run(RunAll(&args))) {
        Ok(outcome) => outcome,
        Err(error) => {
            eprintln!("error: {error}");
            Outcome::CannotRun
        }
    }
}

fn main() -> ExitCode {
    run(std::env::args().skip(1)).exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden(case: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/golden")
            .join(case)
    }

    fn run_dirs(dirs: &[PathBuf]) -> Outcome {
        run(dirs.iter().map(|d| d.display().to_string()))
    }

    #[test]
    fn arguments() {
        let parse = |args: &[&str]| parse_args(args.iter().map(|a| a.to_string()));
        let args = parse(&["a", "--device", "cpu", "b"]).unwrap();
        assert_eq!(args.cases, [PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(
            (args.device, args.precision),
            (Some(Device::Cpu), Precision::F32)
        );
        assert_eq!(args.options(), ParityOptions::for_dtype(DType::F32));
        let args = parse(&["a", "--device", "wgpu:1", "--dtype", "bf16"]).unwrap();
        assert_eq!(
            (args.device, args.precision),
            (Some(Device::Wgpu(Some(1))), Precision::Bf16)
        );
        assert_eq!(parse(&["a", "--device", "auto"]).unwrap().device, None);
        assert!(
            parse(&["a", "--device", "tpu"])
                .unwrap_err()
                .contains("`tpu`")
        );
        assert!(parse(&["a", "--dtype", "f8"]).unwrap_err().contains("`f8`"));
        assert!(parse(&["--device"]).is_err());
        assert!(parse(&["a", "--dtype"]).is_err());
        assert!(parse(&[]).is_err());
    }

    /// Every subdirectory of `fixtures/golden`, as the shell expands `fixtures/golden/*/`.
    fn golden_subdirectories() -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(golden(""))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_dir())
            .collect();
        dirs.sort();
        dirs
    }

    #[test]
    fn case_directories_are_found() {
        let dirs = golden_subdirectories();
        let cases: Vec<PathBuf> = dirs
            .iter()
            .filter(|d| d.join("config.json").is_file())
            .cloned()
            .collect();
        assert_eq!(cases.len(), 12, "{cases:?}");
        assert!(cases.contains(&golden("pipeline_e2e")));
        // `keys/` is no case and is skipped; the parent stands for its cases.
        assert!(dirs.contains(&golden("keys")));
        assert_eq!(case_dirs(&dirs), cases);
        assert_eq!(case_dirs(&[golden("")]), cases);
        assert!(case_dirs(&[golden("keys")]).is_empty());
        assert_eq!(run_dirs(&[golden("keys")]), Outcome::CannotRun);
    }

    #[test]
    fn every_golden_case_passes() {
        // `parity fixtures/golden/*/`: every case, `pipeline_e2e` included.
        assert_eq!(run_dirs(&golden_subdirectories()), Outcome::Passed);
    }

    /// A copy of `pipeline_e2e` in a temporary directory, its weight paths made absolute (the
    /// fixtures' own files), with `io.safetensors` changed by `edit(name, data)` per tensor.
    fn pipeline_copy(edit: impl Fn(&str, &mut [u8])) -> tempfile::TempDir {
        let source = golden("pipeline_e2e");
        let dir = tempfile::tempdir().unwrap();
        for file in ["portrait.png", "speech.wav"] {
            std::fs::copy(source.join(file), dir.path().join(file)).unwrap();
        }
        let text = std::fs::read_to_string(source.join("config.json")).unwrap();
        let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
        let weights = config["config"]["weights"].as_object_mut().unwrap();
        assert_eq!(weights.len(), 9);
        for path in weights.values_mut() {
            let absolute = source.join(path.as_str().unwrap());
            assert!(absolute.exists(), "{}", absolute.display());
            *path = absolute.display().to_string().into();
        }
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();

        let io = std::fs::read(source.join("io.safetensors")).unwrap();
        let mut edited = io.clone();
        let tensors = safetensors::SafeTensors::deserialize(&io).unwrap();
        for (name, view) in tensors.tensors() {
            let start = view.data().as_ptr() as usize - io.as_ptr() as usize;
            edit(&name, &mut edited[start..start + view.data().len()]);
        }
        std::fs::write(dir.path().join("io.safetensors"), edited).unwrap();
        dir
    }

    #[test]
    fn perturbed_pipeline_case_is_out_of_tolerance() {
        // The first decoded pixel 0.5 off (its tolerance is 1e-2); nothing else changed.
        let copy = pipeline_copy(|name, data| {
            if name == "decoded_frames" {
                let value = f32::from_le_bytes(data[..4].try_into().unwrap()) + 0.5;
                data[..4].copy_from_slice(&value.to_le_bytes());
            }
        });
        let outcome = run_dirs(&[copy.path().to_path_buf()]);
        assert_eq!(outcome, Outcome::OutOfTolerance);
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn device_not_compiled_in_cannot_run() {
        let case = golden("whisper_encoder").display().to_string();
        let outcome = run([case, "--device".into(), "cuda:0".into()]);
        assert_eq!(outcome, Outcome::CannotRun);
    }

    #[test]
    fn missing_case_cannot_run() {
        let cases = [golden("whisper_encoder"), golden("no_such_case")];
        assert_eq!(run_dirs(&cases), Outcome::CannotRun);
    }

    #[test]
    fn perturbed_checkpoint_is_out_of_tolerance() {
        // A copy of the CLIP case whose last stored weight (safetensors keeps data in name
        // order: the last element of `visual_projection.weight`) is set to 4.0 (f16 0x4400).
        let dir = std::env::temp_dir().join(format!("sonic-parity-example-{}", std::process::id()));
        let case = dir.join("clip_vision");
        std::fs::create_dir_all(case.join("image_encoder")).unwrap();
        for file in [
            "config.json",
            "io.safetensors",
            "portrait.png",
            "image_encoder/config.json",
            "image_encoder/model.fp16.safetensors",
        ] {
            std::fs::copy(golden("clip_vision").join(file), case.join(file)).unwrap();
        }
        let weights = case.join("image_encoder/model.fp16.safetensors");
        let mut bytes = std::fs::read(&weights).unwrap();
        let end = bytes.len();
        bytes[end - 2..].copy_from_slice(&[0x00, 0x44]);
        std::fs::write(&weights, bytes).unwrap();
        let outcome = run_dirs(std::slice::from_ref(&case));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(outcome, Outcome::OutOfTolerance);
        assert_eq!(
            Outcome::Passed.max(Outcome::OutOfTolerance),
            Outcome::OutOfTolerance
        );
    }
}
