//! What a server allows: links, limits, rates, origins, default parameters.

use std::time::Duration;

use crate::inputs::InputLimits;
use crate::ratelimit::RateLimit;

/// The API's settings. `ApiConfig::default()` documents every default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApiConfig {
    /// How long a video's signed link works (2 hours, the seed's example).
    pub link_expiry: Duration,
    /// How long a presigned upload URL works (15 minutes).
    pub upload_expiry: Duration,
    /// The largest portrait and speech file accepted (20 MiB and 50 MiB).
    pub limits: InputLimits,
    /// The largest JSON body (64 KiB).
    pub json_limit: usize,
    /// How long a request body may take to arrive (5 minutes), e.g. a multipart upload.
    pub upload_timeout: Duration,
    /// Requests per key (`None`: unlimited). Default: [`RateLimit::default`], 20/s, bursts of 40.
    pub rate_limit: Option<RateLimit>,
    /// Origins allowed to call the API from a browser page elsewhere (CORS). Empty, the
    /// default: no CORS headers, so only same-origin pages (the one at `/`) can.
    pub cors_origins: Vec<String>,
    /// Parameters that apply under what a request gives (`sonic serve --demo` puts the demo
    /// weights' size and face box here). Empty by default.
    pub default_parameters: serde_json::Map<String, serde_json::Value>,
    /// Jobs per page of `GET /v1/jobs` when the request does not say (50); at most 200.
    pub page_size: usize,
    /// A comment on open event streams this often, so proxies keep them (15 s).
    pub keep_alive: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            link_expiry: Duration::from_secs(2 * 3600),
            upload_expiry: Duration::from_secs(15 * 60),
            limits: InputLimits::default(),
            json_limit: 64 * 1024,
            upload_timeout: Duration::from_secs(300),
            rate_limit: Some(RateLimit::default()),
            cors_origins: Vec::new(),
            default_parameters: serde_json::Map::new(),
            page_size: 50,
            keep_alive: Duration::from_secs(15),
        }
    }
}

/// The most jobs one page of `GET /v1/jobs` holds.
pub const MAX_PAGE_SIZE: usize = 200;
