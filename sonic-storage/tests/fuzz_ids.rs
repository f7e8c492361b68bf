//! A bounded fuzz suite of job ids and object keys (proptest; `cargo fuzz` needs a nightly
//! compiler): hostile strings never panic the validators, every refusal is a typed
//! [`StorageError::InvalidId`] or [`StorageError::InvalidKey`], the validators agree with an
//! independent statement of the rule, and every key built from accepted ids is itself a valid
//! key under the job's prefix.
//!
//! Targets (`cargo test -p sonic-storage --test fuzz_ids <name>`): `job_ids`, `job_keys`,
//! `object_keys`, `serde_ids`. Cases per target: `SONIC_FUZZ_CASES` (default 256); time per
//! target: `SONIC_FUZZ_SECS` (default 60). proptest records failures in
//! `proptest-regressions/fuzz_ids.txt` and replays them first; `regressions` keeps the inputs
//! that once failed, or that the issue tracker reported, as plain cases.

use proptest::prelude::*;
use sonic_storage::{
    InputKind, JobRef, MAX_ID_LEN, MAX_KEY_LEN, ObjectKey, StorageError, TenantId,
};

#[path = "../../sonic-parity/tests/fuzz_budget/mod.rs"]
mod fuzz_budget;

/// Where this suite records (and first replays) the failures it finds; committed.
const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proptest-regressions/fuzz_ids.txt"
);

/// The id rule, stated independently of the crate: 1..=128 bytes of ASCII letters, digits,
/// `-`, `_`, `.`, starting with a letter or digit, no `..`.
fn id_is_valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && !s.contains("..")
}

/// Strings that reach the interesting cases: mostly the id alphabet, with separators, dots,
/// percent signs, spaces, controls and non-ASCII mixed in; sometimes anything at all.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9._\\-]{0,12}",
        3 => "[a-z0-9./\\\\%#~ \\x00\\n\u{e9}\u{202e}-]{0,10}",
        1 => "[a-z]{120,140}",
        1 => any::<String>(),
    ]
}

fn check_key(key: &ObjectKey) -> Result<(), TestCaseError> {
    let again = ObjectKey::new(key.as_str());
    prop_assert!(again.is_ok(), "{key:?} does not revalidate: {again:?}");
    prop_assert!(key.as_str().len() <= MAX_KEY_LEN);
    prop_assert!(
        key.segments()
            .all(|s| !s.is_empty() && s != "." && s != "..")
    );
    Ok(())
}

#[test]
fn job_ids() {
    fuzz_budget::fuzz(REGRESSIONS, (hostile(), hostile()), |(tenant, job)| {
        match JobRef::parse(&tenant, &job) {
            Ok(job_ref) => {
                prop_assert!(id_is_valid(&tenant) && id_is_valid(&job));
                prop_assert_eq!(job_ref.tenant.as_str(), tenant.as_str());
                prop_assert_eq!(job_ref.job.as_str(), job.as_str());
                prop_assert_eq!(job_ref.to_string(), format!("{tenant}/{job}"));
            }
            Err(StorageError::InvalidId { value, .. }) => {
                prop_assert!(!id_is_valid(&tenant) || !id_is_valid(&job));
                // The refused value is the first invalid one, as given.
                let first_bad = if id_is_valid(&tenant) { &job } else { &tenant };
                prop_assert_eq!(&value, first_bad);
            }
            Err(other) => prop_assert!(false, "not an InvalidId: {other:?}"),
        }
        Ok(())
    });
}

#[test]
fn job_keys() {
    fuzz_budget::fuzz(
        REGRESSIONS,
        (
            "[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}",
            "[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}",
            hostile(),
            hostile(),
        ),
        |(tenant, job, ext, name)| {
            let Ok(job_ref) = JobRef::parse(&tenant, &job) else {
                // The regex admits `..`; those are refused, and that is checked by `job_ids`.
                prop_assert!(tenant.contains("..") || job.contains(".."));
                return Ok(());
            };
            let inputs = job_ref.input_prefix();
            let outputs = job_ref.output_prefix();
            for key in [
                &inputs,
                &outputs,
                &job_ref.video_key(),
                &job_ref.manifest_key(),
            ] {
                check_key(key)?;
            }
            prop_assert_eq!(inputs.segments().count(), 3);
            prop_assert!(job_ref.video_key().starts_with(&outputs));
            prop_assert!(!job_ref.video_key().starts_with(&inputs));
            for kind in [InputKind::Image, InputKind::Audio] {
                match job_ref.input_key(kind, &ext) {
                    Ok(key) => {
                        prop_assert!(
                            !ext.is_empty()
                                && ext.len() <= 8
                                && ext.bytes().all(|b| b.is_ascii_alphanumeric())
                        );
                        check_key(&key)?;
                        prop_assert!(key.starts_with(&inputs));
                        prop_assert_eq!(key.extension(), Some(ext.as_str()));
                    }
                    Err(e) => prop_assert!(matches!(e, StorageError::InvalidKey { .. }), "{e:?}"),
                }
            }
            match job_ref.output_key(&name) {
                Ok(key) => {
                    check_key(&key)?;
                    prop_assert!(key.starts_with(&outputs));
                    prop_assert_eq!(key.file_name(), name.as_str());
                    prop_assert_eq!(key.segments().count(), 4);
                }
                Err(e) => prop_assert!(matches!(e, StorageError::InvalidKey { .. }), "{e:?}"),
            }
            Ok(())
        },
    );
}

#[test]
fn object_keys() {
    fuzz_budget::fuzz(
        REGRESSIONS,
        (prop::collection::vec(hostile(), 1..6), hostile()),
        |(parts, segment)| {
            let raw = parts.join("/");
            match ObjectKey::new(raw.as_str()) {
                Ok(key) => {
                    check_key(&key)?;
                    prop_assert_eq!(key.as_str(), raw.as_str());
                    prop_assert!(key.starts_with(&key));
                    let _ = (key.file_name(), key.extension());
                    match key.join(&segment) {
                        Ok(joined) => {
                            check_key(&joined)?;
                            prop_assert!(joined.starts_with(&key));
                            prop_assert_eq!(joined.file_name(), segment.as_str());
                        }
                        Err(e) => {
                            prop_assert!(matches!(e, StorageError::InvalidKey { .. }), "{e:?}")
                        }
                    }
                    // A key is never a prefix of a sibling that merely extends its last segment.
                    if let Ok(longer) = ObjectKey::new(format!("{raw}x")) {
                        prop_assert!(!longer.starts_with(&key));
                    }
                }
                Err(e) => prop_assert!(matches!(e, StorageError::InvalidKey { .. }), "{e:?}"),
            }
            Ok(())
        },
    );
}

#[test]
fn serde_ids() {
    fuzz_budget::fuzz(REGRESSIONS, (hostile(), hostile()), |(tenant, job)| {
        let json = serde_json::json!({ "tenant": tenant, "job": job }).to_string();
        let parsed = serde_json::from_str::<JobRef>(&json);
        let direct = JobRef::parse(&tenant, &job);
        prop_assert_eq!(parsed.is_ok(), direct.is_ok(), "{}", json);
        if let Ok(job_ref) = parsed {
            let back = serde_json::to_string(&job_ref).unwrap();
            prop_assert_eq!(serde_json::from_str::<JobRef>(&back).unwrap(), job_ref);
        }
        Ok(())
    });
}

/// Hostile ids tried by hand against `generate` (issue 13) and inputs that once failed here.
#[test]
fn regressions() {
    for bad in [
        "",
        ".",
        "..",
        "../etc",
        "a/../b",
        "-rf",
        "a b",
        "a\u{0}",
        "caf\u{e9}",
        "\u{202e}gpj.exe",
        "%2e%2e",
        "con:",
        "job~1",
        "a#b",
    ] {
        assert!(
            matches!(TenantId::new(bad), Err(StorageError::InvalidId { .. })),
            "{bad:?}"
        );
        assert!(JobRef::parse("acme", bad).is_err(), "{bad:?}");
    }
    let longest = "x".repeat(MAX_ID_LEN);
    let job = JobRef::parse(&longest, &longest).unwrap();
    assert!(job.manifest_key().as_str().len() < MAX_KEY_LEN);
    assert!(ObjectKey::new(job.manifest_key().as_str()).is_ok());
}
