//! Building the HTTP stores: S3 and OSS (feature `s3`), GCS (`gcp`), Azure (`azure`).

use std::sync::Arc;

use object_store::ClientOptions;

use crate::bucket::Bucket;
use crate::config::StoreConfig;
use crate::content_type;
use crate::error::{Result, StorageError};

/// Installs `ring` as rustls' process-wide crypto provider unless one is installed already.
/// reqwest is built without a provider of its own (so no aws-lc C build), and would refuse to
/// build a TLS client without one.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another thread installing a provider is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The configured client options, with the content type of every known extension as the
/// default for keys with that suffix.
fn client_options(config: &StoreConfig) -> ClientOptions {
    content_type::BY_EXTENSION.iter().fold(
        config.transport.client.clone(),
        |options, (extension, content_type)| {
            options.with_content_type_for_suffix(*extension, *content_type)
        },
    )
}

#[cfg(feature = "s3")]
fn invalid(config: &StoreConfig, reason: impl Into<String>) -> StorageError {
    StorageError::InvalidConfig {
        url: config.display_url(),
        reason: reason.into(),
        source: None,
    }
}

fn build_error(config: &StoreConfig, source: object_store::Error) -> StorageError {
    StorageError::InvalidConfig {
        url: config.display_url(),
        reason: "the store could not be configured".into(),
        source: Some(Box::new(source)),
    }
}

/// The credentials file of an S3 (or with `oss` an OSS) store: none with explicit credentials,
/// else the configured one, else the one the environment (`env`) names.
#[cfg(feature = "s3")]
fn credentials_file(
    s3: &crate::S3Options,
    oss: bool,
    env: impl Fn(&str) -> Option<String>,
) -> Option<crate::CredentialsFile> {
    let variable = if oss {
        crate::OSS_CREDENTIALS_FILE_ENV
    } else {
        crate::S3_CREDENTIALS_FILE_ENV
    };
    match &s3.credentials {
        Some(_) => None,
        None => s3
            .credentials_file
            .clone()
            .or_else(|| env(variable).map(crate::CredentialsFile::new)),
    }
}

/// An `s3://` store, or with `oss` an Aliyun OSS store through its S3-compatible API.
#[cfg(feature = "s3")]
pub(crate) fn s3(
    config: &StoreConfig,
    bucket: &str,
    prefix: Option<&str>,
    oss: bool,
) -> Result<Bucket> {
    use object_store::aws::{AmazonS3Builder, S3CopyIfNotExists};

    use crate::config::{Addressing, bucket_endpoint, env_first, oss_region_from_endpoint};

    ensure_crypto_provider();
    let s3 = &config.s3;
    let with_scheme = |endpoint: String| {
        if endpoint.contains("://") {
            endpoint
        } else {
            format!("https://{endpoint}")
        }
    };

    let (endpoint, region) = if oss {
        let endpoint = s3.endpoint.clone().or_else(|| env_first(&["OSS_ENDPOINT"]));
        let region = s3
            .region
            .clone()
            .or_else(|| env_first(&["OSS_REGION"]))
            .or_else(|| endpoint.as_deref().and_then(oss_region_from_endpoint));
        let endpoint = match (endpoint, &region) {
            (Some(endpoint), _) => with_scheme(endpoint),
            (None, Some(region)) => format!("https://oss-{region}.aliyuncs.com"),
            (None, None) => {
                return Err(invalid(
                    config,
                    "an oss:// store needs an endpoint (`?endpoint=oss-cn-beijing.aliyuncs.com` \
                     or OSS_ENDPOINT) or a region (`?region=cn-beijing` or OSS_REGION)",
                ));
            }
        };
        let region = region
            .or_else(|| oss_region_from_endpoint(&endpoint))
            .ok_or_else(|| {
                invalid(
                    config,
                    format!("cannot tell the OSS region from `{endpoint}`; set `region`"),
                )
            })?;
        (Some(endpoint), region)
    } else {
        let endpoint = s3
            .endpoint
            .clone()
            .or_else(|| env_first(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]))
            .map(with_scheme);
        let region = s3
            .region
            .clone()
            .or_else(|| env_first(&["AWS_REGION", "AWS_DEFAULT_REGION"]))
            .unwrap_or_else(|| "us-east-1".to_owned());
        (endpoint, region)
    };

    let virtual_hosted = match (oss, s3.addressing) {
        (true, Addressing::Path) => {
            return Err(invalid(
                config,
                "Aliyun OSS only serves virtual-hosted style requests; drop `addressing=path`",
            ));
        }
        (true, _) | (false, Addressing::VirtualHosted) => true,
        (false, Addressing::Path) => false,
        (false, _) => endpoint.is_none(),
    };
    let allow_http = endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));

    // OSS gets no AWS_* settings from the environment, only its own.
    let mut builder = if oss {
        AmazonS3Builder::new()
    } else {
        AmazonS3Builder::from_env()
    };
    builder = builder
        .with_bucket_name(bucket)
        .with_region(&region)
        .with_client_options(client_options(config).with_allow_http(allow_http))
        .with_retry(config.transport.retry.clone())
        .with_virtual_hosted_style_request(virtual_hosted)
        .with_copy_if_not_exists(if oss {
            S3CopyIfNotExists::HeaderWithStatus(
                "x-oss-forbid-overwrite".into(),
                "true".into(),
                http::StatusCode::CONFLICT,
            )
        } else {
            S3CopyIfNotExists::Multipart
        });
    if let Some(endpoint) = &endpoint {
        let endpoint = if virtual_hosted {
            bucket_endpoint(endpoint, bucket).map_err(|reason| invalid(config, reason))?
        } else {
            endpoint.clone()
        };
        builder = builder.with_endpoint(endpoint);
    }

    // Credentials, first found wins: explicit, the credentials file (configured, then named by
    // the environment), then the environment (OSS variables, or object_store's AWS chain).
    if s3.credentials.is_some() && s3.credentials_file.is_some() {
        return Err(invalid(
            config,
            "both explicit credentials and a credentials file are set; keep one",
        ));
    }
    if let Some(file) = credentials_file(s3, oss, |name| env_first(&[name])) {
        let provider = crate::FileCredentialProvider::new(file)?;
        builder = builder.with_credentials(Arc::new(provider));
    } else {
        let credentials = s3.credentials.clone().or_else(|| {
            oss.then(|| {
                let id = env_first(&["OSS_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_ID"])?;
                let secret =
                    env_first(&["OSS_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"])?;
                let token = env_first(&["OSS_SESSION_TOKEN", "ALIBABA_CLOUD_SECURITY_TOKEN"]);
                let credentials = crate::Credentials::new(id, secret);
                Some(match token {
                    Some(token) => credentials.with_session_token(token),
                    None => credentials,
                })
            })
            .flatten()
        });
        match credentials {
            Some(c) => {
                builder = builder
                    .with_access_key_id(c.access_key_id)
                    .with_secret_access_key(c.secret_access_key);
                if let Some(token) = c.session_token {
                    builder = builder.with_token(token);
                }
            }
            None if oss => {
                return Err(invalid(
                    config,
                    "no OSS credentials: set OSS_ACCESS_KEY_ID and OSS_ACCESS_KEY_SECRET (plus \
                     OSS_SESSION_TOKEN for STS credentials), name a credentials file \
                     (SONIC_OSS_CREDENTIALS_FILE or `credentials_file`) or pass them in S3Options",
                ));
            }
            // AmazonS3Builder::from_env found them (AWS_ACCESS_KEY_ID, AWS_SESSION_TOKEN, web
            // identity, container or instance credentials; the last three are fetched again
            // before they expire).
            None => {}
        }
    }

    let store = Arc::new(builder.build().map_err(|e| build_error(config, e))?);
    Ok(
        Bucket::from_object_store(store.clone(), config.display_url())
            .with_signer(store)
            .with_key_prefix(prefix)
            .with_timeout_limits(
                config.transport.connect_timeout(),
                config.transport.request_timeout(),
            ),
    )
}

/// A `gs://` store; credentials from the environment (`GOOGLE_SERVICE_ACCOUNT`,
/// `GOOGLE_APPLICATION_CREDENTIALS` ...).
#[cfg(feature = "gcp")]
pub(crate) fn gcs(config: &StoreConfig, bucket: &str, prefix: Option<&str>) -> Result<Bucket> {
    use object_store::gcp::GoogleCloudStorageBuilder;

    ensure_crypto_provider();
    let store = Arc::new(
        GoogleCloudStorageBuilder::from_env()
            .with_bucket_name(bucket)
            .with_client_options(client_options(config))
            .with_retry(config.transport.retry.clone())
            .build()
            .map_err(|e| build_error(config, e))?,
    );
    Ok(
        Bucket::from_object_store(store.clone(), config.display_url())
            .with_signer(store)
            .with_key_prefix(prefix)
            .with_timeout_limits(
                config.transport.connect_timeout(),
                config.transport.request_timeout(),
            ),
    )
}

/// An `az://` store; account and credentials from the environment (`AZURE_STORAGE_ACCOUNT_NAME`,
/// `AZURE_STORAGE_ACCOUNT_KEY` ...).
#[cfg(feature = "azure")]
pub(crate) fn azure(config: &StoreConfig, container: &str, prefix: Option<&str>) -> Result<Bucket> {
    use object_store::azure::MicrosoftAzureBuilder;

    ensure_crypto_provider();
    let store = Arc::new(
        MicrosoftAzureBuilder::from_env()
            .with_container_name(container)
            .with_client_options(client_options(config))
            .with_retry(config.transport.retry.clone())
            .build()
            .map_err(|e| build_error(config, e))?,
    );
    Ok(
        Bucket::from_object_store(store.clone(), config.display_url())
            .with_signer(store)
            .with_key_prefix(prefix)
            .with_timeout_limits(
                config.transport.connect_timeout(),
                config.transport.request_timeout(),
            ),
    )
}

#[cfg(all(test, feature = "s3"))]
mod tests {
    use super::*;
    use crate::{Credentials, CredentialsFile, S3Options};

    #[test]
    fn the_credentials_file_comes_from_the_config_then_the_environment() {
        let env = |name: &str| match name {
            "SONIC_S3_CREDENTIALS_FILE" => Some("/env/s3.json".to_owned()),
            "SONIC_OSS_CREDENTIALS_FILE" => Some("/env/oss.json".to_owned()),
            _ => None,
        };
        let none = |_: &str| None;
        let mut options = S3Options::default();
        assert_eq!(
            credentials_file(&options, false, env),
            Some(CredentialsFile::new("/env/s3.json"))
        );
        assert_eq!(
            credentials_file(&options, true, env),
            Some(CredentialsFile::new("/env/oss.json"))
        );
        assert_eq!(credentials_file(&options, false, none), None);

        options.credentials_file = Some(CredentialsFile::new("/config.json"));
        assert_eq!(
            credentials_file(&options, false, env),
            Some(CredentialsFile::new("/config.json"))
        );
        assert_eq!(
            credentials_file(&options, true, env),
            Some(CredentialsFile::new("/config.json"))
        );

        // Explicit credentials win over the environment's file.
        let explicit = S3Options {
            credentials: Some(Credentials::new("A", "S")),
            ..S3Options::default()
        };
        assert_eq!(credentials_file(&explicit, false, env), None);
    }

    #[test]
    fn a_missing_credentials_file_fails_the_open_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.json");
        let config = StoreConfig::from_url("s3://b/p?endpoint=http://127.0.0.1:9&region=us-east-1")
            .unwrap()
            .with_credentials_file(missing.as_path());
        match s3(&config, "b", Some("p"), false) {
            Err(StorageError::CredentialsFile { path, .. }) => assert_eq!(path, missing),
            Err(other) => panic!("expected CredentialsFile, got {other:?}"),
            Ok(_) => panic!("opened with a missing credentials file"),
        }
    }
}
