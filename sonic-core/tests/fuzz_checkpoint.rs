//! A bounded fuzz suite of the checkpoint readers (proptest; `cargo fuzz` needs a nightly
//! compiler): safetensors headers and PyTorch zip/pickle files, mutated, must open to a
//! consistent [`Checkpoint`] or give a typed [`LoadError`] naming the file, never panic.
//!
//! Targets (`cargo test -p sonic-core --test fuzz_checkpoint <name>`):
//! - `safetensors_mutated_headers`: byte edits in the JSON header of a small safetensors file.
//! - `safetensors_random_headers`: headers built from random dtypes, shapes, offsets and
//!   lengths.
//! - `pytorch_mutated_files`: edits near the front (local headers, the pickle) and the back
//!   (the zip's central directory) of `fixtures/golden/audio2token/audio2token.pth`.
//! - `pytorch_random_pickles`: random bytes behind a pickle protocol marker (the legacy
//!   `torch.save` path).
//!
//! Every tensor of a checkpoint that opens is also read, and its byte count checked against its
//! shape and dtype. Cases per target: `SONIC_FUZZ_CASES` (default 256); time per target:
//! `SONIC_FUZZ_SECS` (default 60). proptest records failures in
//! `proptest-regressions/fuzz_checkpoint.txt` and replays them first (no failure found so far);
//! `seeds_open` checks that the unmutated seeds open and read.

use std::io::Write;
use std::sync::OnceLock;

use burn::tensor::DType;
use proptest::prelude::*;
use proptest::sample::Index;
use sonic_core::weights::{Checkpoint, LoadError};

#[path = "../../sonic-parity/tests/fuzz_budget/mod.rs"]
mod fuzz_budget;

/// Where this suite records (and first replays) the failures it finds; committed.
const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proptest-regressions/fuzz_checkpoint.txt"
);

fn dtype_size(dtype: DType) -> Option<usize> {
    Some(match dtype {
        DType::F64 | DType::I64 => 8,
        DType::F32 | DType::I32 => 4,
        DType::F16 | DType::BF16 => 2,
        DType::U8 => 1,
        _ => return None,
    })
}

/// Writes `bytes` to a temporary file and checks what the checkpoint reader makes of it.
fn check(bytes: &[u8], suffix: &str) -> Result<(), TestCaseError> {
    let mut file = tempfile::Builder::new()
        .suffix(suffix)
        .tempfile()
        .expect("temp file");
    file.write_all(bytes).expect("write");
    file.flush().expect("flush");
    let path = file.path().to_path_buf();
    let shown = path.display().to_string();
    let names_file = |e: &LoadError| e.to_string().contains(&shown);
    match Checkpoint::open(&path) {
        Ok(checkpoint) => {
            let keys: Vec<String> = checkpoint.keys().map(str::to_owned).collect();
            prop_assert_eq!(keys.len(), checkpoint.len());
            for key in keys {
                let shape = checkpoint.shape(&key);
                let dtype = checkpoint.dtype(&key);
                prop_assert!(shape.is_some() && dtype.is_some(), "{key}");
                match checkpoint.read(&key) {
                    Ok(data) => {
                        prop_assert_eq!(data.shape.to_vec(), shape.unwrap());
                        if let Some(size) = dtype_size(data.dtype) {
                            let elements: usize = data.shape.iter().product();
                            prop_assert_eq!(data.bytes.len(), elements * size, "{}", key);
                        }
                    }
                    Err(e) => prop_assert!(names_file(&e), "{e}"),
                }
            }
        }
        Err(e) => prop_assert!(names_file(&e), "{e}"),
    }
    Ok(())
}

/// A safetensors file: the header JSON (padded with spaces to a multiple of 8) and the data.
fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut header = header.as_bytes().to_vec();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend_from_slice(data);
    out
}

fn small_safetensors() -> Vec<u8> {
    safetensors(
        r#"{"__metadata__":{"format":"pt"},"a.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"a.bias":{"dtype":"F16","shape":[3],"data_offsets":[24,30]},"b":{"dtype":"I64","shape":[],"data_offsets":[30,38]}}"#,
        &(0..38u8).collect::<Vec<_>>(),
    )
}

fn pth() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/golden/audio2token/audio2token.pth");
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

fn edits() -> impl Strategy<Value = Vec<(Index, u8)>> {
    prop::collection::vec((any::<Index>(), any::<u8>()), 1..12)
}

const DTYPES: &[&str] = &[
    "F32", "F16", "BF16", "F64", "I64", "I32", "U8", "I8", "BOOL", "F8_E4M3", "U64", "X",
];

#[test]
fn safetensors_mutated_headers() {
    fuzz_budget::fuzz(REGRESSIONS, (edits(), any::<Index>()), |(edits, cut)| {
        let mut bytes = small_safetensors();
        let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        for (at, value) in edits {
            let i = at.index(header_end);
            bytes[i] = value;
        }
        let keep = cut.index(bytes.len() + 1).max(bytes.len() - 16);
        check(&bytes[..keep], ".safetensors")?;
        Ok(())
    });
}

#[test]
fn safetensors_random_headers() {
    fuzz_budget::fuzz(
        REGRESSIONS,
        (
            prop::collection::vec(
                (
                    0..DTYPES.len(),
                    prop::collection::vec(prop_oneof![0u64..5, any::<u64>()], 0..5),
                    prop_oneof![0u64..64, any::<u64>()],
                    prop_oneof![0u64..64, any::<u64>()],
                ),
                0..4,
            ),
            0usize..96,
            prop_oneof![Just(None), Just(Some(0u64)), any::<u64>().prop_map(Some)],
        ),
        |(tensors, data_len, lie)| {
            let entries: Vec<String> = tensors
            .iter()
            .enumerate()
            .map(|(i, (dtype, shape, begin, end))| {
                format!(
                    r#""t{i}":{{"dtype":"{}","shape":{shape:?},"data_offsets":[{begin},{end}]}}"#,
                    DTYPES[*dtype]
                )
            })
            .collect();
            let mut bytes =
                safetensors(&format!("{{{}}}", entries.join(",")), &vec![7u8; data_len]);
            if let Some(len) = lie {
                // A header length that does not match the header.
                bytes[..8].copy_from_slice(&len.to_le_bytes());
            }
            check(&bytes, ".safetensors")?;
            Ok(())
        },
    );
}

#[test]
fn pytorch_mutated_files() {
    fuzz_budget::fuzz(
        REGRESSIONS,
        (edits(), any::<bool>(), any::<Index>()),
        |(edits, at_end, cut)| {
            let mut bytes = pth().to_vec();
            let window = 4096.min(bytes.len());
            let base = if at_end { bytes.len() - window } else { 0 };
            for (at, value) in edits {
                bytes[base + at.index(window)] = value;
            }
            let keep = cut.index(bytes.len() + 1).max(bytes.len() - 64);
            check(&bytes[..keep], ".pth")?;
            Ok(())
        },
    );
}

#[test]
fn pytorch_random_pickles() {
    fuzz_budget::fuzz(
        REGRESSIONS,
        (2u8..6, prop::collection::vec(any::<u8>(), 0..512)),
        |(protocol, body)| {
            let mut bytes = vec![0x80, protocol];
            bytes.extend(body);
            check(&bytes, ".pkl")?;
            Ok(())
        },
    );
}

#[test]
fn seeds_open() {
    for (bytes, suffix) in [
        (small_safetensors(), ".safetensors"),
        (pth().to_vec(), ".pth"),
    ] {
        let mut file = tempfile::Builder::new().suffix(suffix).tempfile().unwrap();
        file.write_all(&bytes).unwrap();
        let checkpoint = Checkpoint::open(file.path()).unwrap();
        assert!(!checkpoint.is_empty());
        for key in checkpoint.keys() {
            checkpoint.read(key).unwrap();
        }
    }
}
