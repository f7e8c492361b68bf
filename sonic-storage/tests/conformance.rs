//! One conformance suite, run against every store: memory, a local directory, and an S3 server
//! (in-process s3s over s3s-fs, which checks SigV4 signatures, or `SONIC_TEST_S3_ENDPOINT`'s) in
//! path style and in virtual-hosted style (the addressing Aliyun OSS requires).
//!
//! The cases are the public functions of `sonic_storage::integration` (what users run against
//! their own buckets); the `conformance!` macro instantiates all of them per store, so test
//! names read `s3_virtual_hosted::signed_urls` and so on.

mod common;

use common::{Fixture, local_dir, memory, s3};
use sonic_storage::Addressing;

/// Each case of `sonic_storage::integration` on a fixture's storage.
mod suite {
    use std::time::Duration;

    use sonic_storage::{Addressing, JobRef, integration};

    use super::Fixture;

    macro_rules! cases {
        ($($case:ident),* $(,)?) => {$(
            pub async fn $case(f: &Fixture) {
                integration::$case(&f.storage).await;
            }
        )*};
    }

    cases!(
        put_get_head,
        uploads_from_file_and_stream,
        range_reads,
        list_jobs_and_delete,
        multipart_upload,
        create_only_never_overwrites,
        manifest_round_trip,
        invalid_ids_and_keys_are_refused,
        retention_sweep,
        missing_objects_are_not_found,
    );

    /// The shared case, then: the URLs are signed for the addressing the store was built with.
    pub async fn signed_urls(f: &Fixture) {
        integration::signed_urls(&f.storage, f.http.as_ref()).await;
        let Some(addressing) = f.addressing else {
            assert!(f.http.is_none(), "{}", f.name);
            return;
        };
        // The case stored this job's video.
        let job = JobRef::parse("acme", "job-10").unwrap();
        let signed = f
            .storage
            .sign_video(&job, Duration::from_secs(60))
            .await
            .unwrap();
        let host = signed.url.host_str().unwrap();
        match addressing {
            Addressing::VirtualHosted => {
                assert_eq!(host, "sonic-outputs.s3.sonic.test", "{}", f.name);
                assert!(
                    signed.url.path().starts_with("/run-"),
                    "{}: {}",
                    f.name,
                    signed.url
                );
            }
            _ => {
                assert_eq!(host, "127.0.0.1", "{}", f.name);
                assert!(
                    signed.url.path().starts_with("/sonic-outputs/"),
                    "{}: {}",
                    f.name,
                    signed.url
                );
            }
        }
    }
}

/// Instantiates every case of the suite for one store.
macro_rules! conformance {
    ($($store:ident => $fixture:expr;)*) => {$(
        mod $store {
            use super::*;
            conformance!(@cases $fixture;
                put_get_head,
                uploads_from_file_and_stream,
                range_reads,
                list_jobs_and_delete,
                multipart_upload,
                create_only_never_overwrites,
                manifest_round_trip,
                invalid_ids_and_keys_are_refused,
                signed_urls,
                retention_sweep,
                missing_objects_are_not_found,
            );
        }
    )*};
    (@cases $fixture:expr; $($case:ident,)*) => {$(
        #[tokio::test]
        async fn $case() {
            let fixture: Fixture = $fixture;
            suite::$case(&fixture).await;
        }
    )*};
}

conformance! {
    memory => memory();
    local_dir => local_dir();
    s3_path_style => s3(Addressing::Path);
    s3_virtual_hosted => s3(Addressing::VirtualHosted);
}
