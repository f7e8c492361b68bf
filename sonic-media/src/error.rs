//! The error type of the media edges.

/// Why decoding, preprocessing or encoding media failed.
///
/// Every variant names the input (`name`: a file name or object key chosen by the caller) so that
/// a message read in a job log says which file was bad.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The input holds no byte at all.
    #[error("{name}: the file is empty")]
    Empty {
        /// The input's name.
        name: String,
    },
    /// The container or codec is not one this build decodes (WAV, MP3, FLAC, AAC/M4A, Ogg
    /// Vorbis for audio; PNG, JPEG, WebP for pictures).
    #[error("{name}: unsupported format: {reason}")]
    Unsupported {
        /// The input's name.
        name: String,
        /// What is unsupported, as the decoder says it.
        reason: String,
    },
    /// The audio is malformed: corrupt or truncated data.
    #[error("{name}: cannot decode audio: {source}")]
    AudioDecode {
        /// The input's name.
        name: String,
        /// The decoder's error.
        #[source]
        source: symphonia::core::errors::Error,
    },
    /// The audio decoded, but to no sample.
    #[error("{name}: the audio holds no sample")]
    NoAudio {
        /// The input's name.
        name: String,
    },
    /// The picture is malformed: corrupt or truncated data.
    #[error("{name}: cannot decode picture: {source}")]
    ImageDecode {
        /// The input's name.
        name: String,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
    /// The face detector found no face and the caller supplied neither a box nor asked for the
    /// whole frame.
    #[error(
        "{name}: no face detected (supply a face box, or use the whole frame as the face region)"
    )]
    NoFaceDetected {
        /// The picture's name.
        name: String,
    },
    /// A parameter is out of its range.
    #[error("invalid {parameter}: {message}")]
    InvalidParameter {
        /// The parameter's name.
        parameter: &'static str,
        /// What is wrong with its value.
        message: String,
    },
    /// Resampling failed.
    #[error("resampling {from} Hz -> {to} Hz failed: {message}")]
    Resample {
        /// Input rate.
        from: u32,
        /// Output rate.
        to: u32,
        /// The resampler's message.
        message: String,
    },
    /// The face detector's model could not be read.
    #[error("cannot read the face detector model: {0}")]
    FaceModel(#[source] std::io::Error),
    /// The H.264 encoder failed.
    #[error("H.264 encoder: {0}")]
    VideoEncode(String),
    /// The AAC encoder failed.
    #[error("AAC encoder: {0}")]
    AudioEncode(String),
    /// A pushed frame does not have the size the writer was opened with.
    #[error(
        "frame {index} is {got_width}x{got_height} RGB ({got_bytes} bytes), the video is {width}x{height}"
    )]
    FrameSize {
        /// Index of the frame (0-based).
        index: u64,
        /// Expected width.
        width: u32,
        /// Expected height.
        height: u32,
        /// Width of the pushed frame.
        got_width: u32,
        /// Height of the pushed frame.
        got_height: u32,
        /// Bytes of the pushed frame.
        got_bytes: usize,
    },
    /// The MP4 muxer rejected a sample or could not write the file.
    #[error("MP4 muxer: {0}")]
    Mux(#[source] muxide::api::MuxerError),
    /// Writing the output failed.
    #[error("writing the video: {0}")]
    Io(#[source] std::io::Error),
}

impl MediaError {
    pub(crate) fn invalid(parameter: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidParameter {
            parameter,
            message: message.into(),
        }
    }
}
