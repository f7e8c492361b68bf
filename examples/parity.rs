//! Runs reference cases (the layout of `fixtures/golden/<case>`: `config.json`, `io.safetensors`,
//! weight files) through [`sonic::core::parity::run_case`] and prints the max abs / rel error of
//! every output tensor.
//!
//! ```sh
//! cargo run --release --example parity -- fixtures/golden/whisper_encoder [more case dirs] [--device cpu]
//! ```
//!
//! Exit status: 0 when every tensor of every case is within tolerance, 1 when a tensor is not,
//! 2 when a case cannot run (unknown component, unreadable files, weights that do not load) or
//! the arguments are wrong.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::prelude::Backend;
use sonic::core::parity::{ParityOptions, components, run_case};

const USAGE: &str = "usage: parity <case dir>... [--device cpu]";

/// Where the cases run. One variant per backend; `cpu` is burn's Flex backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceArg {
    Cpu,
}

#[derive(Debug, PartialEq)]
struct Args {
    cases: Vec<PathBuf>,
    device: DeviceArg,
    options: ParityOptions,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut cases = Vec::new();
    let mut device = DeviceArg::Cpu;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--device" => {
                device = match args.next().as_deref() {
                    Some("cpu") => DeviceArg::Cpu,
                    Some(other) => return Err(format!("unknown device `{other}` (known: cpu)")),
                    None => return Err("--device needs a value".into()),
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
        options: ParityOptions::default(),
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

fn run_all<B: Backend>(args: &Args, device: &B::Device) -> Outcome {
    let mut outcome = Outcome::Passed;
    for dir in &args.cases {
        let this = match run_case::<B>(dir, device, &args.options) {
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

fn run(args: impl IntoIterator<Item = String>) -> Outcome {
    let args = match parse_args(args) {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("error: {message}");
            }
            eprintln!("{USAGE}\ncomponents: {}", components().join(", "));
            return Outcome::CannotRun;
        }
    };
    match args.device {
        DeviceArg::Cpu => run_all::<burn::backend::Flex>(&args, &Default::default()),
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
            .join("fixtures/golden")
            .join(case)
    }

    fn run_dirs(dirs: &[PathBuf]) -> Outcome {
        run(dirs.iter().map(|d| d.display().to_string()))
    }

    #[test]
    fn arguments() {
        let args = parse_args(["a".into(), "--device".into(), "cpu".into(), "b".into()]).unwrap();
        assert_eq!(args.cases, [PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(args.device, DeviceArg::Cpu);
        assert!(parse_args(["a".into(), "--device".into(), "tpu".into()]).is_err());
        assert!(parse_args(["--device".into()]).is_err());
        assert!(parse_args(Vec::<String>::new()).is_err());
    }

    #[test]
    fn passing_cases_exit_zero() {
        let cases = [golden("whisper_encoder"), golden("clip_vision")];
        assert_eq!(run_dirs(&cases), Outcome::Passed);
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
