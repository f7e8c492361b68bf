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
    #[error("{name}: cannot decode audio")]
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
    /// The audio is longer than [`AudioLimits::max_duration_secs`](crate::AudioLimits), as its
    /// header declares (`declared: true`, refused before decoding) or as decoding found
    /// (`declared: false`, decoding stopped at the limit).
    #[error(
        "{name}: the audio lasts {}{seconds:.1} s{}, over the limit of {limit_secs} s",
        if *declared { "" } else { "more than " },
        if *declared { " (as its header declares)" } else { "" }
    )]
    AudioTooLong {
        /// The input's name.
        name: String,
        /// The declared duration, or how far decoding went before it stopped.
        seconds: f64,
        /// Whether `seconds` is the duration the header declares.
        declared: bool,
        /// The limit, in seconds.
        limit_secs: f64,
    },
    /// The audio is shorter than [`AudioLimits::min_duration_secs`](crate::AudioLimits): its
    /// video's audio track would hold no whole AAC frame.
    #[error("{name}: the audio lasts {seconds:.3} s, shorter than the minimum of {min_secs} s")]
    AudioTooShort {
        /// The input's name.
        name: String,
        /// The decoded duration.
        seconds: f64,
        /// The minimum, in seconds.
        min_secs: f64,
    },
    /// A decoded sample is NaN or infinite (float PCM holding garbage).
    #[error("{name}: sample {index} is not a finite number (NaN or infinity)")]
    NonFiniteAudio {
        /// The input's name.
        name: String,
        /// Index of the first such sample (after the mono mix).
        index: usize,
    },
    /// The audio's sample rate is outside the accepted range (see
    /// [`AudioLimits::with_sample_rates`](crate::AudioLimits::with_sample_rates)).
    #[error("{name}: the audio's sample rate is {rate} Hz, outside {min}..={max} Hz")]
    SampleRate {
        /// The input's name.
        name: String,
        /// The file's sample rate, in Hz.
        rate: u32,
        /// The lowest accepted rate, in Hz.
        min: u32,
        /// The highest accepted rate, in Hz.
        max: u32,
    },
    /// The picture's header declares a size over one of the [`ImageLimits`](crate::ImageLimits);
    /// nothing was decoded.
    #[error("{name}: the picture declares {width}x{height} pixels, over the {limit}")]
    PictureTooLarge {
        /// The input's name.
        name: String,
        /// The declared width.
        width: u32,
        /// The declared height.
        height: u32,
        /// The limit it is over.
        limit: crate::limits::PictureLimit,
    },
    /// The picture is malformed: corrupt or truncated data.
    #[error("{name}: cannot decode picture")]
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
    /// A given face box does not overlap the picture.
    #[error(
        "{name}: the face box ({face}) lies outside the {width}x{height} picture (boxes are in \
         pixels of the picture, x and y from its top-left corner)"
    )]
    FaceBoxOutside {
        /// The picture's name.
        name: String,
        /// The box.
        face: crate::image::FaceBox,
        /// The picture's width.
        width: u32,
        /// The picture's height.
        height: u32,
    },
    /// The video cannot be encoded at this frame size (see
    /// [`check_frame_size`](crate::video::check_frame_size)).
    #[error("a {width}x{height} video cannot be encoded: {reason}")]
    VideoSize {
        /// The asked width.
        width: u32,
        /// The asked height.
        height: u32,
        /// Which limit, and what to do.
        reason: String,
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
    #[error("cannot read the face detector model")]
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
    #[error("the MP4 muxer failed")]
    Mux(#[source] muxide::api::MuxerError),
    /// Writing the output failed.
    #[error("writing the video failed")]
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
