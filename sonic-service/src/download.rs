//! Inputs given by signed URL: downloaded (bounded) and stored under the job's input prefix, so
//! the render reads them by key like any other input and every later attempt reuses them.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::message::InputUrl;

/// The largest input a worker downloads (the media limits refuse far smaller files anyway).
pub const MAX_DOWNLOAD_BYTES: u64 = 256 * 1024 * 1024;
/// Connect timeout of a download.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Whole-download timeout.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a download failed; [`DownloadError::is_permanent`] tells a refusal from a failure
/// that may pass on a retry. Messages name the URL without its query (no signature).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    /// The server answered with an HTTP error status.
    #[error("downloading {url} was refused: HTTP {status}")]
    Status {
        /// The URL without its query.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The object is larger than the limit.
    #[error("{url} is larger than {limit} bytes")]
    TooLarge {
        /// The URL without its query.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// The URL's path does not end in a known picture or audio extension.
    #[error("cannot tell the format of {url}: its path should end in one of {known}")]
    UnknownFormat {
        /// The URL without its query.
        url: String,
        /// The extensions read.
        known: &'static str,
    },
    /// The connection failed or timed out, or the body broke off.
    #[error("downloading {url} failed")]
    Transport {
        /// The URL without its query.
        url: String,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
}

impl DownloadError {
    /// `true` when retrying cannot help: the server refused (4xx other than 408/429), the
    /// object is too large or of an unknown format.
    pub fn is_permanent(&self) -> bool {
        match self {
            DownloadError::Status { status, .. } => {
                (400..500).contains(status) && *status != 408 && *status != 429
            }
            DownloadError::TooLarge { .. } | DownloadError::UnknownFormat { .. } => true,
            DownloadError::Transport { .. } => false,
        }
    }
}

const PICTURES: [&str; 4] = ["png", "jpg", "jpeg", "webp"];
const SOUNDS: [&str; 7] = ["wav", "mp3", "flac", "m4a", "aac", "ogg", "oga"];

/// The extension of the URL's last path segment, if it is a known picture (`picture`) or audio
/// format.
pub(crate) fn extension(url: &InputUrl, picture: bool) -> Result<String, DownloadError> {
    let ext = url
        .url()
        .path_segments()
        .and_then(|mut segments| segments.next_back())
        .and_then(|name| name.rsplit_once('.'))
        .map(|(_, ext)| ext.to_ascii_lowercase());
    let known: &[&str] = if picture { &PICTURES } else { &SOUNDS };
    match ext {
        Some(ext) if known.contains(&ext.as_str()) => Ok(ext),
        _ => Err(DownloadError::UnknownFormat {
            url: url.redacted(),
            known: if picture {
                "png, jpg, jpeg, webp"
            } else {
                "wav, mp3, flac, m4a, aac, ogg, oga"
            },
        }),
    }
}

/// Downloads `url` (GET), at most `limit` bytes.
pub(crate) async fn download(url: &InputUrl, limit: u64) -> Result<Bytes, DownloadError> {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let shown = url.redacted();
    let transport = |source| DownloadError::Transport {
        url: shown.clone(),
        source,
    };
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(DOWNLOAD_TIMEOUT)
        .build()
        .map_err(transport)?;
    let mut response = client
        .get(url.url().clone())
        .send()
        .await
        .map_err(transport)?;
    let status = response.status();
    if !status.is_success() {
        return Err(DownloadError::Status {
            url: shown,
            status: status.as_u16(),
        });
    }
    let too_large = || DownloadError::TooLarge {
        url: shown.clone(),
        limit,
    };
    if response
        .content_length()
        .is_some_and(|length| length > limit)
    {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_comes_from_the_path_not_the_query() {
        let url =
            InputUrl::parse("https://b.example.com/a/Face.PNG?X-Amz-Signature=x.wav").unwrap();
        assert_eq!(extension(&url, true).unwrap(), "png");
        let err = extension(&url, false).unwrap_err();
        assert!(err.is_permanent());
        assert!(!err.to_string().contains("Signature"), "{err}");
        let none = InputUrl::parse("https://b.example.com/speech").unwrap();
        assert!(extension(&none, false).is_err());
    }

    #[test]
    fn refusals_are_permanent_and_server_trouble_is_not() {
        let status = |status| DownloadError::Status {
            url: "u".into(),
            status,
        };
        assert!(status(403).is_permanent());
        assert!(status(404).is_permanent());
        assert!(!status(429).is_permanent());
        assert!(!status(503).is_permanent());
    }
}
