//! Content types for the file kinds a sonic job reads and writes.

/// Known extensions and their content types. Also given to object_store's HTTP clients as
/// per-suffix defaults, so objects it creates without explicit attributes (the server-side copy
/// that finishes a create-only multipart upload on S3) still get the right type.
pub(crate) const BY_EXTENSION: &[(&str, &str)] = &[
    ("mp4", "video/mp4"),
    ("webm", "video/webm"),
    ("mov", "video/quicktime"),
    ("gif", "image/gif"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("webp", "image/webp"),
    ("bmp", "image/bmp"),
    ("wav", "audio/wav"),
    ("mp3", "audio/mpeg"),
    ("m4a", "audio/mp4"),
    ("flac", "audio/flac"),
    ("ogg", "audio/ogg"),
    ("json", "application/json"),
    ("txt", "text/plain; charset=utf-8"),
    ("safetensors", "application/octet-stream"),
];

/// The fallback for unknown extensions.
pub(crate) const OCTET_STREAM: &str = "application/octet-stream";

/// The content type for a key's extension (case-insensitive), or `application/octet-stream`.
pub(crate) fn guess(extension: Option<&str>) -> &'static str {
    extension
        .and_then(|ext| {
            BY_EXTENSION
                .iter()
                .find(|(known, _)| known.eq_ignore_ascii_case(ext))
        })
        .map_or(OCTET_STREAM, |(_, content_type)| content_type)
}

#[cfg(test)]
mod tests {
    #[test]
    fn guesses() {
        assert_eq!(super::guess(Some("MP4")), "video/mp4");
        assert_eq!(super::guess(Some("wav")), "audio/wav");
        assert_eq!(super::guess(Some("xyz")), "application/octet-stream");
        assert_eq!(super::guess(None), "application/octet-stream");
    }
}
