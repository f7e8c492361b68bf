//! Checking an uploaded portrait or speech file before anything is stored.
//!
//! [`check_input`] refuses, as problem details naming the part at fault (`image` or `audio`):
//!
//! | what | status | `type` slug |
//! |------|--------|-------------|
//! | over [`InputLimits`] | 413 | `too-large` |
//! | no byte at all | 422 | `empty-input` |
//! | content of no accepted format (a GIF, a PDF, Ogg Opus ...) | 422 | `unsupported-format` |
//! | a picture given as `audio`, a recording given as `image` | 422 | `wrong-kind` |
//! | a file name whose extension says another format (a PNG named `voice.wav`) | 422 | `content-mismatch` |
//! | truncated or corrupt data (the decoder's error is in the detail) | 422 | `unreadable-input` |
//! | a picture declaring more pixels than the pipeline decodes | 422 | `picture-too-large` |
//! | audio shorter than the pipeline accepts | 422 | `audio-too-short` |
//! | audio at a sample rate the pipeline refuses | 422 | `unsupported-sample-rate` |
//!
//! The format is sniffed from the content's magic bytes, the file's structure is checked for a
//! cut (sonic-media decodes a truncated file as far as it goes), then the whole file is decoded
//! with sonic-media under the limits the pipeline uses, so what is stored is what a worker can
//! read whole. Decoding is CPU-bound (a 400 s recording takes a moment): call [`check_input`]
//! from a blocking task.

use sonic_media::MediaError;
use sonic_media::{AudioLimits, LongAudio};
use sonic_storage::InputKind;

use crate::problem::Problem;

const MIB: u64 = 1024 * 1024;

/// Size limits of uploads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputLimits {
    /// The largest portrait, in bytes (default 20 MiB).
    pub max_image_bytes: u64,
    /// The largest speech recording, in bytes (default 50 MiB).
    pub max_audio_bytes: u64,
}

impl Default for InputLimits {
    fn default() -> Self {
        Self {
            max_image_bytes: 20 * MIB,
            max_audio_bytes: 50 * MIB,
        }
    }
}

impl InputLimits {
    /// The largest upload of `kind`, in bytes.
    pub fn max_bytes(&self, kind: InputKind) -> u64 {
        match kind {
            InputKind::Image => self.max_image_bytes,
            InputKind::Audio => self.max_audio_bytes,
            // A kind added later gets the stricter of the two limits.
            _ => self.max_image_bytes.min(self.max_audio_bytes),
        }
    }
}

/// What a checked input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedInput {
    /// The canonical extension it is stored under (`png`, `jpg`, `webp`, `wav`, `mp3`, `flac`,
    /// `m4a`, `aac`, `ogg`).
    pub ext: &'static str,
    /// Its content type (`image/png`, `audio/wav` ...).
    pub content_type: &'static str,
}

/// The formats an input may have: what sonic-media decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Png,
    Jpeg,
    WebP,
    Wav,
    Mp3,
    Flac,
    Ogg,
    /// AAC (or another codec) in an MP4/M4A container.
    M4a,
    /// Raw ADTS AAC.
    Aac,
}

impl Format {
    fn kind(self) -> InputKind {
        match self {
            Self::Png | Self::Jpeg | Self::WebP => InputKind::Image,
            _ => InputKind::Audio,
        }
    }

    fn ext(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::WebP => "webp",
            Self::Wav => "wav",
            Self::Mp3 => "mp3",
            Self::Flac => "flac",
            Self::Ogg => "ogg",
            Self::M4a => "m4a",
            Self::Aac => "aac",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::WebP => "image/webp",
            Self::Wav => "audio/wav",
            Self::Mp3 => "audio/mpeg",
            Self::Flac => "audio/flac",
            Self::Ogg => "audio/ogg",
            Self::M4a => "audio/mp4",
            Self::Aac => "audio/aac",
        }
    }

    /// What the content is, for messages ("a PNG picture").
    fn describe(self) -> &'static str {
        match self {
            Self::Png => "a PNG picture",
            Self::Jpeg => "a JPEG picture",
            Self::WebP => "a WebP picture",
            Self::Wav => "a WAV recording",
            Self::Mp3 => "an MP3 recording",
            Self::Flac => "a FLAC recording",
            Self::Ogg => "an Ogg recording",
            Self::M4a => "an MP4/M4A recording",
            Self::Aac => "an ADTS AAC recording",
        }
    }

    /// The format a (lowercase) file extension names, aliases included.
    fn from_ext(ext: &str) -> Option<Self> {
        Some(match ext {
            "png" => Self::Png,
            "jpg" | "jpeg" | "jpe" | "jfif" => Self::Jpeg,
            "webp" => Self::WebP,
            "wav" | "wave" => Self::Wav,
            "mp3" => Self::Mp3,
            "flac" => Self::Flac,
            "ogg" | "oga" => Self::Ogg,
            "m4a" | "mp4" => Self::M4a,
            "aac" => Self::Aac,
            _ => return None,
        })
    }
}

/// The extensions accepted for `kind`, for messages.
fn accepted(kind: InputKind) -> &'static str {
    match kind {
        InputKind::Image => ".png, .jpg (.jpeg), .webp",
        InputKind::Audio => ".wav, .mp3, .flac, .m4a (.mp4), .aac, .ogg",
        _ => "none",
    }
}

/// What the kind's content is called, for messages.
fn kind_noun(kind: InputKind) -> &'static str {
    match kind {
        InputKind::Image => "a picture",
        InputKind::Audio => "a recording",
        _ => "an input",
    }
}

/// The extension of the last path component of `filename` (browsers may send
/// `C:\fakepath\face.png`), lowercased; `None` without one.
fn extension_of(filename: &str) -> Option<String> {
    let name = filename.rsplit(['/', '\\']).next().unwrap_or(filename);
    let (_, ext) = name.rsplit_once('.')?;
    (!ext.is_empty()).then(|| ext.to_ascii_lowercase())
}

fn unsupported(kind: InputKind, detail: String) -> Problem {
    Problem::invalid(
        "unsupported-format",
        "Unsupported format",
        kind.stem(),
        detail,
    )
}

/// The extension under which an input named `filename` is stored: lowercase and canonical
/// (`png`; `jpg` for `.jpg`/`.jpeg`; `webp`; `wav`; `mp3`; `flac`; `m4a` for `.m4a`/`.mp4`;
/// `aac` for raw ADTS; `ogg` for `.ogg`/`.oga`), or a 422 problem (`unsupported-format`,
/// field `image` or `audio`) naming the accepted extensions.
///
/// Only the name is looked at; [`check_input`] looks at the content.
pub fn ext_for(kind: InputKind, filename: &str) -> Result<&'static str, Problem> {
    let Some(ext) = extension_of(filename) else {
        return Err(unsupported(
            kind,
            format!(
                "`{filename}` has no extension; accepted for `{}`: {}",
                kind.stem(),
                accepted(kind)
            ),
        ));
    };
    match Format::from_ext(&ext) {
        Some(format) if format.kind() == kind => Ok(format.ext()),
        Some(format) => Err(unsupported(
            kind,
            format!(
                "`.{ext}` is the extension of {}, not of {}; accepted for `{}`: {}",
                format.describe(),
                kind_noun(kind),
                kind.stem(),
                accepted(kind)
            ),
        )),
        None => Err(unsupported(
            kind,
            format!(
                "`.{ext}` is not an accepted extension for `{}`; accepted: {}",
                kind.stem(),
                accepted(kind)
            ),
        )),
    }
}

/// What the magic bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sniffed {
    Known(Format),
    /// A recognised format that sonic-media does not decode ("a GIF picture").
    Unsupported(&'static str),
    Unknown,
}

/// An MPEG audio frame header at `b`: Layer III (MP3) or ADTS (AAC).
fn mpeg_sync(b: &[u8]) -> Option<Sniffed> {
    let (&b0, &b1) = (b.first()?, b.get(1)?);
    if b0 != 0xFF || b1 & 0xE0 != 0xE0 {
        return None;
    }
    let layer = (b1 >> 1) & 0b11;
    if layer == 0 {
        // ADTS: a 12-bit sync word, layer 00.
        return (b1 & 0xF0 == 0xF0).then_some(Sniffed::Known(Format::Aac));
    }
    let version = (b1 >> 3) & 0b11;
    let bitrate = b.get(2).map(|b2| b2 >> 4);
    if version == 0b01 || bitrate == Some(0b1111) {
        return None;
    }
    Some(match layer {
        0b01 => Sniffed::Known(Format::Mp3),
        _ => Sniffed::Unsupported("MPEG layer I/II audio"),
    })
}

/// The format of `bytes` from its magic bytes.
fn sniff(bytes: &[u8]) -> Sniffed {
    let at = |range: std::ops::Range<usize>| bytes.get(range).unwrap_or(&[]);
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Sniffed::Known(Format::Png);
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Sniffed::Known(Format::Jpeg);
    }
    if bytes.starts_with(b"RIFF") {
        return match at(8..12) {
            b"WEBP" => Sniffed::Known(Format::WebP),
            b"WAVE" => Sniffed::Known(Format::Wav),
            b"AVI " => Sniffed::Unsupported("an AVI video"),
            _ => Sniffed::Unknown,
        };
    }
    if bytes.starts_with(b"RF64") {
        return Sniffed::Unsupported("an RF64 (64-bit WAV) recording");
    }
    if bytes.starts_with(b"fLaC") {
        return Sniffed::Known(Format::Flac);
    }
    if bytes.starts_with(b"OggS") {
        // The first page holds the codec's identification header.
        return if at(28..36) == b"OpusHead" {
            Sniffed::Unsupported("an Ogg Opus recording")
        } else {
            Sniffed::Known(Format::Ogg)
        };
    }
    if at(4..8) == b"ftyp" {
        return match at(8..12) {
            b"heic" | b"heix" | b"heim" | b"heis" | b"hevc" | b"hevx" | b"mif1" | b"msf1" => {
                Sniffed::Unsupported("a HEIF/HEIC picture")
            }
            b"avif" | b"avis" => Sniffed::Unsupported("an AVIF picture"),
            b"crx " => Sniffed::Unsupported("a Canon raw picture"),
            _ => Sniffed::Known(Format::M4a),
        };
    }
    if bytes.starts_with(b"ID3") {
        // An ID3v2 tag (syncsafe size), then the stream it tags.
        let size = at(6..10)
            .iter()
            .fold(0usize, |size, &b| (size << 7) | usize::from(b & 0x7F));
        let footer = if at(5..6).first().is_some_and(|f| f & 0x10 != 0) {
            10
        } else {
            0
        };
        let rest = bytes.get(10 + size + footer..).unwrap_or(&[]);
        if rest.starts_with(b"fLaC") {
            return Sniffed::Known(Format::Flac);
        }
        return match mpeg_sync(rest) {
            Some(Sniffed::Known(Format::Aac)) => Sniffed::Known(Format::Aac),
            // An ID3 tag is an MP3's, whatever follows (the decoder judges the frames).
            _ => Sniffed::Known(Format::Mp3),
        };
    }
    if let Some(sniffed) = mpeg_sync(bytes) {
        return sniffed;
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Sniffed::Unsupported("a GIF picture");
    }
    if bytes.starts_with(b"BM") && bytes.len() >= 26 && at(6..10) == [0, 0, 0, 0] {
        return Sniffed::Unsupported("a BMP picture");
    }
    if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        return Sniffed::Unsupported("a TIFF picture");
    }
    if bytes.starts_with(b"FORM") && matches!(at(8..12), b"AIFF" | b"AIFC") {
        return Sniffed::Unsupported("an AIFF recording");
    }
    if bytes.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return Sniffed::Unsupported("a Matroska/WebM file");
    }
    if bytes.starts_with(b"%PDF") {
        return Sniffed::Unsupported("a PDF document");
    }
    Sniffed::Unknown
}

/// "21.3 MiB", "20 MiB", "512 KiB", "17 bytes".
fn human_bytes(bytes: u64) -> String {
    let (value, unit) = if bytes >= MIB {
        (bytes as f64 / MIB as f64, "MiB")
    } else if bytes >= 1024 {
        (bytes as f64 / 1024.0, "KiB")
    } else {
        return format!("{bytes} bytes");
    };
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {unit}")
}

/// An error and its sources, `: `-separated (sonic-media's decode errors keep the decoder's
/// own message in their source).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn unreadable(kind: InputKind, detail: impl Into<String>) -> Problem {
    Problem::invalid("unreadable-input", "Unreadable input", kind.stem(), detail)
}

/// A decoder's refusal as a problem of the field `kind.stem()`.
fn media_problem(kind: InputKind, err: &MediaError) -> Problem {
    let detail = error_chain(err);
    let (slug, title) = match err {
        MediaError::Unsupported { .. } => ("unsupported-format", "Unsupported format"),
        MediaError::PictureTooLarge { .. } => ("picture-too-large", "Picture too large"),
        MediaError::AudioTooShort { .. } => ("audio-too-short", "Audio too short"),
        MediaError::AudioTooLong { .. } => ("audio-too-long", "Audio too long"),
        MediaError::SampleRate { .. } => ("unsupported-sample-rate", "Unsupported sample rate"),
        _ => return unreadable(kind, detail),
    };
    Problem::invalid(slug, title, kind.stem(), detail)
}

/// Where a WAV ends short of what its chunks declare: the data chunk holding fewer bytes than
/// its header says, or the file ending inside a chunk header before the data chunk.
/// (sonic-media decodes a truncated WAV as far as its data goes, by design; an upload should
/// be whole.) A streamed WAV (data size `0xFFFFFFFF`) declares no length and passes.
fn wav_truncation(bytes: &[u8]) -> Option<String> {
    let mut at = 12usize;
    loop {
        let Some(header) = bytes.get(at..at + 8) else {
            return Some(format!(
                "the WAV ends after {} bytes, before its data chunk (truncated)",
                bytes.len()
            ));
        };
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let body = at + 8;
        let present = bytes.len() - body;
        if &header[..4] == b"data" {
            if size != u32::MAX && (present as u64) < u64::from(size) {
                return Some(format!(
                    "the WAV's data chunk declares {size} bytes of samples but the file holds \
                     only {present} (truncated: {} of {} bytes in all)",
                    bytes.len(),
                    body as u64 + u64::from(size)
                ));
            }
            return None;
        }
        // Chunks are padded to an even length.
        let next = body as u64 + u64::from(size) + u64::from(size & 1);
        if next > bytes.len() as u64 {
            let id = String::from_utf8_lossy(&header[..4]).into_owned();
            return Some(format!(
                "the WAV ends inside its `{}` chunk, before its data chunk (truncated)",
                id.escape_debug()
            ));
        }
        at = next as usize;
    }
}

/// Where a JPEG ends without its end-of-image marker after its last scan (zune-jpeg decodes a
/// cut JPEG to a picture grey at the bottom, without an error).
fn jpeg_truncation(bytes: &[u8]) -> Option<String> {
    let Some(last_scan) = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]) else {
        return Some(format!(
            "the JPEG ends after {} bytes, before its image data (truncated)",
            bytes.len()
        ));
    };
    let whole = bytes[last_scan..].windows(2).any(|w| w == [0xFF, 0xD9]);
    (!whole).then(|| {
        format!(
            "the JPEG ends after {} bytes without its end-of-image marker (truncated)",
            bytes.len()
        )
    })
}

/// Where a PNG ends before its `IEND` chunk is whole (the decoder accepts a PNG cut inside
/// `IEND`).
fn png_truncation(bytes: &[u8]) -> Option<String> {
    let mut at = 8usize;
    loop {
        let Some(header) = bytes.get(at..at + 8) else {
            return Some(format!(
                "the PNG ends after {} bytes, before its `IEND` chunk (truncated)",
                bytes.len()
            ));
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        // Length, type, data and CRC.
        let next = at as u64 + 12 + u64::from(len);
        if next > bytes.len() as u64 {
            let id = String::from_utf8_lossy(&header[4..8]).into_owned();
            return Some(format!(
                "the PNG ends inside its `{}` chunk (truncated: {} bytes)",
                id.escape_debug(),
                bytes.len()
            ));
        }
        if &header[4..8] == b"IEND" {
            return None;
        }
        at = next as usize;
    }
}

/// Where a WebP holds fewer bytes than its RIFF header declares (the decoder accepts a WebP
/// missing its last byte).
fn webp_truncation(bytes: &[u8]) -> Option<String> {
    let size = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let declared = u64::from(size) + 8;
    (declared > bytes.len() as u64).then(|| {
        format!(
            "the WebP declares {declared} bytes but the file holds only {} (truncated)",
            bytes.len()
        )
    })
}

/// Where an MP4/M4A ends inside a top-level box (symphonia reports a file cut before its
/// `moov` index as an unsupported format).
fn mp4_truncation(bytes: &[u8]) -> Option<String> {
    let mut at = 0u64;
    let len = bytes.len() as u64;
    while at < len {
        let start = at as usize;
        let Some(header) = bytes.get(start..start + 8) else {
            return Some(format!(
                "the MP4 ends inside a box header after {len} bytes (truncated)"
            ));
        };
        let size = u64::from(u32::from_be_bytes([
            header[0], header[1], header[2], header[3],
        ]));
        let size = match size {
            // The last box, to the end of the file.
            0 => return None,
            1 => {
                let large = bytes.get(start + 8..start + 16)?;
                u64::from_be_bytes(large.try_into().ok()?)
            }
            size => size,
        };
        if size < 8 {
            // Not a box: leave the judgement to the decoder.
            return None;
        }
        if at + size > len {
            let id = String::from_utf8_lossy(&header[4..8]).into_owned();
            return Some(format!(
                "the MP4's `{}` box declares {size} bytes but the file ends {} bytes into it \
                 (truncated)",
                id.escape_debug(),
                len - at
            ));
        }
        at += size;
    }
    None
}

/// Where an Ogg stream ends inside a page (the decoder decodes a cut Ogg as far as it goes).
fn ogg_truncation(bytes: &[u8]) -> Option<String> {
    let mut at = 0usize;
    while at < bytes.len() {
        if bytes.get(at..at + 4)? != b"OggS" {
            // Not a page: leave the judgement to the decoder.
            return None;
        }
        let truncated = || {
            Some(format!(
                "the Ogg stream ends inside a page after {} bytes (truncated)",
                bytes.len()
            ))
        };
        let Some(&segments) = bytes.get(at + 26) else {
            return truncated();
        };
        let table = at + 27;
        let Some(lacing) = bytes.get(table..table + usize::from(segments)) else {
            return truncated();
        };
        let body: usize = lacing.iter().map(|&l| usize::from(l)).sum();
        let next = table + usize::from(segments) + body;
        if next > bytes.len() {
            return truncated();
        }
        at = next;
    }
    None
}

/// Whether an MP3's first frame carries a Xing/Info/VBRI frame count (then the duration its
/// header declares is exact; without one, symphonia estimates it from the file size).
fn mp3_counts_frames(bytes: &[u8]) -> bool {
    let start = if bytes.starts_with(b"ID3") && bytes.len() >= 10 {
        let size = bytes[6..10]
            .iter()
            .fold(0usize, |size, &b| (size << 7) | usize::from(b & 0x7F));
        10 + size + if bytes[5] & 0x10 != 0 { 10 } else { 0 }
    } else {
        0
    };
    let Some(frame) = bytes.get(start..) else {
        return false;
    };
    let head = &frame[..frame.len().min(200)];
    head.windows(4)
        .any(|w| w == b"Xing" || w == b"Info" || w == b"VBRI")
}

/// Where the content is cut short, from its structure, before decoding.
fn truncation(format: Format, bytes: &[u8]) -> Option<String> {
    match format {
        Format::Png => png_truncation(bytes),
        Format::Jpeg => jpeg_truncation(bytes),
        Format::WebP => webp_truncation(bytes),
        Format::Wav => wav_truncation(bytes),
        Format::M4a => mp4_truncation(bytes),
        Format::Ogg => ogg_truncation(bytes),
        // FLAC and MP3 are checked after decoding, against their declared length; raw ADTS
        // declares none and decodes frame by frame.
        Format::Flac | Format::Mp3 | Format::Aac => None,
    }
}

/// Whether `format`'s header declares its length exactly (FLAC's STREAMINFO sample count, an
/// MP3's Xing/Info/VBRI frame count), so that decoding less than that means a cut file.
fn declares_exact_length(format: Format, bytes: &[u8]) -> bool {
    match format {
        Format::Flac => true,
        Format::Mp3 => mp3_counts_frames(bytes),
        _ => false,
    }
}

/// Checks an uploaded input of `kind` and says what it is, or why it is refused (see the
/// module's table).
///
/// In order: the size against `limits` (413 `too-large`), emptiness (422 `empty-input`), the
/// format sniffed from the magic bytes (PNG, JPEG, WebP; WAV, MP3, FLAC, Ogg, MP4/M4A, ADTS
/// AAC; else 422 `unsupported-format`), its kind (a PNG as `audio`: 422 `wrong-kind`), the
/// file name's extension against the content (a PNG named `voice.wav`: 422
/// `content-mismatch`; a name without extension, or with an extension of no media format
/// such as `.bin`, is not held against the content), then the structure is checked for a cut
/// (a PNG ending before its `IEND` chunk is whole, a JPEG without its end-of-image marker, a
/// WebP, WAV or MP4 holding less than its headers declare, an Ogg stream ending inside a page)
/// and the whole file is decoded with sonic-media under the pipeline's limits; for FLAC, and
/// for MP3 with a Xing/Info/VBRI frame count, decoding less than the declared length is a cut
/// too. Truncated or corrupt data is 422 `unreadable-input` with the decoder's error (or what
/// is missing) in the detail. sonic-media itself decodes cut files as far as their data goes
/// (by design, for its pipeline), so these checks are ours. A raw ADTS AAC stream declares no
/// length: one cut between frames cannot be told apart from a shorter recording.
///
/// `filename: None` takes the format from the content alone. The result is the canonical
/// extension and content type of the *content*.
pub fn check_input(
    kind: InputKind,
    filename: Option<&str>,
    bytes: &[u8],
    limits: &InputLimits,
) -> Result<CheckedInput, Problem> {
    let field = kind.stem();
    let max = limits.max_bytes(kind);
    if bytes.len() as u64 > max {
        return Err(Problem::too_large(
            field,
            format!(
                "the {field} is {}, over the limit of {}",
                human_bytes(bytes.len() as u64),
                human_bytes(max)
            ),
        ));
    }
    if bytes.is_empty() {
        return Err(Problem::invalid(
            "empty-input",
            "Empty input",
            field,
            format!("the {field} is empty (0 bytes)"),
        ));
    }
    let named = filename.map(|name| name.rsplit(['/', '\\']).next().unwrap_or(name));
    let format = match sniff(bytes) {
        Sniffed::Known(format) => format,
        Sniffed::Unsupported(what) => {
            return Err(unsupported(
                kind,
                format!(
                    "the {field} is {what}, which is not supported; accepted: {}",
                    accepted(kind)
                ),
            ));
        }
        Sniffed::Unknown => {
            return Err(unsupported(
                kind,
                format!(
                    "the {field} is of no accepted format (its first bytes match none); \
                     accepted: {}",
                    accepted(kind)
                ),
            ));
        }
    };
    if format.kind() != kind {
        let named_as = named.map_or(String::new(), |name| format!(" (`{name}`)"));
        return Err(Problem::invalid(
            "wrong-kind",
            "Wrong kind of input",
            field,
            format!(
                "the {field}{named_as} is {}, not {}; accepted for `{field}`: {}",
                format.describe(),
                kind_noun(kind),
                accepted(kind)
            ),
        ));
    }
    if let (Some(name), Some(ext)) = (named, named.and_then(extension_of))
        && let Some(said) = Format::from_ext(&ext)
        && said != format
    {
        return Err(Problem::invalid(
            "content-mismatch",
            "Content does not match the file name",
            field,
            format!(
                "`{name}` is named as {} but holds {}; rename it `.{}` or send the file you \
                 meant",
                said.describe(),
                format.describe(),
                format.ext()
            ),
        ));
    }

    let name = format!("{field}.{}", format.ext());
    if let Some(reason) = truncation(format, bytes) {
        return Err(unreadable(kind, format!("{name}: {reason}")));
    }
    match format.kind() {
        InputKind::Image => {
            sonic_media::image::decode_image(bytes, &name)
                .map_err(|err| media_problem(kind, &err))?;
        }
        _ => {
            // The pipeline's limits (400 s at most), except that longer audio is not refused
            // here: a job asking for a `duration` uses only its start. Decoding stops at the
            // cap either way.
            let audio_limits = AudioLimits::default().with_long_audio(LongAudio::Cut);
            let decoded = sonic_media::audio::decode_audio_with(bytes, &name, &audio_limits)
                .map_err(|err| media_problem(kind, &err))?;
            if decoded.truncated_at_secs.is_none() && declares_exact_length(format, bytes) {
                let declared = sonic_media::audio::probe_audio(bytes, &name, &audio_limits)
                    .ok()
                    .and_then(|header| header.declared_secs);
                let seconds = decoded.duration_secs();
                if let Some(declared) = declared
                    && seconds + 0.05 + declared * 0.01 < declared
                {
                    return Err(unreadable(
                        kind,
                        format!(
                            "{name}: the audio declares {declared:.3} s but only {seconds:.3} s \
                             decode (truncated)"
                        ),
                    ));
                }
            }
        }
    }
    Ok(CheckedInput {
        ext: format.ext(),
        content_type: format.content_type(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn asset(name: &str) -> Vec<u8> {
        let path = format!("{}/../sonic-cli/assets/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn portrait() -> Vec<u8> {
        asset("portrait.png")
    }

    fn speech() -> Vec<u8> {
        asset("speech.wav")
    }

    fn check(kind: InputKind, name: Option<&str>, bytes: &[u8]) -> Result<CheckedInput, Problem> {
        check_input(kind, name, bytes, &InputLimits::default())
    }

    /// The problem's slug, status and field.
    fn refused(result: Result<CheckedInput, Problem>) -> (String, StatusCode, String, String) {
        let problem = result.expect_err("refused");
        let slug = problem
            .kind
            .strip_prefix("urn:sonic:problem:")
            .unwrap()
            .to_owned();
        (
            slug,
            problem.status(),
            problem.field.clone().unwrap_or_default(),
            problem.detail,
        )
    }

    /// A 16-bit mono PCM WAV of `samples` at `rate`.
    fn wav(rate: u32, samples: &[i16]) -> Vec<u8> {
        let data_len = (samples.len() * 2) as u32;
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data_len).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes()); // PCM
        out.extend_from_slice(&1u16.to_le_bytes()); // mono
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * 2).to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_len.to_le_bytes());
        for s in samples {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }

    fn tone(rate: u32, seconds: f64) -> Vec<i16> {
        let n = (f64::from(rate) * seconds) as usize;
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16
            })
            .collect()
    }

    /// The portrait re-encoded through sonic-media's `image` types (the format comes from the
    /// file name's extension).
    fn portrait_as(ext: &str) -> Vec<u8> {
        let picture = sonic_media::image::decode_image(&portrait(), "portrait.png").unwrap();
        // One file per call: tests run in parallel and two of them re-encode the same format.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "sonic-http-inputs-{}-{call}.{ext}",
            std::process::id()
        ));
        picture.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).ok();
        bytes
    }

    #[test]
    fn the_fixtures_are_accepted_with_their_canonical_ext_and_type() {
        let image = check(InputKind::Image, Some("portrait.png"), &portrait()).unwrap();
        assert_eq!(
            image,
            CheckedInput {
                ext: "png",
                content_type: "image/png"
            }
        );
        let audio = check(InputKind::Audio, Some("speech.wav"), &speech()).unwrap();
        assert_eq!(
            audio,
            CheckedInput {
                ext: "wav",
                content_type: "audio/wav"
            }
        );
        // Without a name, or under an upper-case or foreign (non-media) name: the content decides.
        assert_eq!(check(InputKind::Image, None, &portrait()).unwrap(), image);
        assert_eq!(
            check(
                InputKind::Image,
                Some("C:\\fakepath\\FACE.PNG"),
                &portrait()
            )
            .unwrap(),
            image
        );
        assert_eq!(
            check(InputKind::Audio, Some("blob"), &speech()).unwrap(),
            audio
        );
        assert_eq!(
            check(InputKind::Audio, Some("upload.bin"), &speech()).unwrap(),
            audio
        );
    }

    #[test]
    fn jpeg_and_webp_portraits_are_accepted() {
        let jpeg = portrait_as("jpg");
        assert!(jpeg.starts_with(&[0xFF, 0xD8, 0xFF]));
        let checked = check(InputKind::Image, Some("face.jpeg"), &jpeg).unwrap();
        assert_eq!((checked.ext, checked.content_type), ("jpg", "image/jpeg"));
        let webp = portrait_as("webp");
        assert_eq!(&webp[8..12], b"WEBP");
        let checked = check(InputKind::Image, Some("face.webp"), &webp).unwrap();
        assert_eq!((checked.ext, checked.content_type), ("webp", "image/webp"));
        // A JPEG named .png is a mismatch.
        let (slug, status, field, _) = refused(check(InputKind::Image, Some("face.png"), &jpeg));
        assert_eq!(
            (slug.as_str(), status, field.as_str()),
            (
                "content-mismatch",
                StatusCode::UNPROCESSABLE_ENTITY,
                "image"
            )
        );
    }

    #[test]
    fn a_picture_given_as_audio_is_the_wrong_kind() {
        let (slug, status, field, detail) =
            refused(check(InputKind::Audio, Some("voice.wav"), &portrait()));
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field, "audio");
        assert_eq!(slug, "wrong-kind");
        assert!(detail.contains("PNG"), "{detail}");
        let (slug, status, field, _) = refused(check(InputKind::Image, None, &speech()));
        assert_eq!(
            (slug.as_str(), status, field.as_str()),
            ("wrong-kind", StatusCode::UNPROCESSABLE_ENTITY, "image")
        );
    }

    #[test]
    fn a_name_that_says_another_format_is_a_content_mismatch() {
        // The right kind, the wrong name: a PNG portrait named voice.wav, a WAV named face.png.
        let (slug, _, field, detail) =
            refused(check(InputKind::Image, Some("voice.wav"), &portrait()));
        assert_eq!(
            (slug.as_str(), field.as_str()),
            ("content-mismatch", "image")
        );
        assert!(
            detail.contains("voice.wav") && detail.contains("PNG"),
            "{detail}"
        );
        let (slug, _, field, _) = refused(check(InputKind::Audio, Some("face.png"), &speech()));
        assert_eq!(
            (slug.as_str(), field.as_str()),
            ("content-mismatch", "audio")
        );
        let (slug, _, _, _) = refused(check(InputKind::Audio, Some("speech.mp3"), &speech()));
        assert_eq!(slug, "content-mismatch");
    }

    #[test]
    fn a_truncated_png_is_unreadable() {
        let png = portrait();
        // 60 %, inside IDAT's CRC, inside IEND (the decoder alone accepts the last two), the
        // signature and a bit.
        for keep in [
            png.len() * 6 / 10,
            png.len() - 20,
            png.len() - 4,
            png.len() - 1,
            40,
        ] {
            let (slug, status, field, detail) =
                refused(check(InputKind::Image, Some("portrait.png"), &png[..keep]));
            assert_eq!(
                (slug.as_str(), status, field.as_str()),
                (
                    "unreadable-input",
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "image"
                ),
                "{keep} bytes: {detail}"
            );
            assert!(detail.starts_with("image.png: the PNG ends"), "{detail}");
        }
    }

    #[test]
    fn a_corrupt_png_carries_the_decoders_error() {
        let mut png = portrait();
        // Garble the pixel data (past the IHDR chunk, inside IDAT): the CRC or zlib fails.
        let idat = png.windows(4).position(|w| w == b"IDAT").unwrap();
        for b in &mut png[idat + 8..idat + 40] {
            *b ^= 0x5A;
        }
        let (slug, _, field, detail) = refused(check(InputKind::Image, None, &png));
        assert_eq!(
            (slug.as_str(), field.as_str()),
            ("unreadable-input", "image")
        );
        // sonic-media's words, then the decoder's own.
        assert!(
            detail.starts_with("image.png: cannot decode picture: ") && detail.len() > 36,
            "{detail}"
        );
    }

    #[test]
    fn a_truncated_jpeg_or_webp_is_unreadable() {
        for ext in ["jpg", "webp"] {
            let bytes = portrait_as(ext);
            // The decoders alone accept a JPEG without its end marker and a WebP less a byte.
            for keep in [bytes.len() * 6 / 10, bytes.len() - 2, bytes.len() - 1] {
                let (slug, _, field, detail) =
                    refused(check(InputKind::Image, None, &bytes[..keep]));
                assert_eq!(
                    (slug.as_str(), field.as_str()),
                    ("unreadable-input", "image"),
                    "{ext} {keep}: {detail}"
                );
                assert!(detail.contains("truncated"), "{detail}");
            }
        }
    }

    #[test]
    fn cut_mp4_and_ogg_structures_are_found() {
        // MP4: ftyp, then an mdat declaring more than there is.
        let mut mp4 = b"\0\0\0\x14ftypM4A \0\0\0\0M4A ".to_vec();
        mp4.extend_from_slice(&[0, 0, 0x10, 0]);
        mp4.extend_from_slice(b"mdat");
        mp4.resize(mp4.len() + 100, 0);
        assert!(mp4_truncation(&mp4).unwrap().contains("`mdat`"));
        assert_eq!(mp4_truncation(&mp4[..20]), None);
        let (slug, _, _, _) = refused(check(InputKind::Audio, Some("a.m4a"), &mp4));
        assert_eq!(slug, "unreadable-input");
        // A 64-bit box size, and a last box running to the end (size 0).
        let mut large = mp4[..20].to_vec();
        large.extend_from_slice(&[0, 0, 0, 1]);
        large.extend_from_slice(b"mdat");
        large.extend_from_slice(&24u64.to_be_bytes());
        large.extend_from_slice(&[7; 8]);
        assert_eq!(mp4_truncation(&large), None);
        assert!(mp4_truncation(&large[..large.len() - 1]).is_some());
        let mut open = mp4[..20].to_vec();
        open.extend_from_slice(b"\0\0\0\0mdat\x01\x02");
        assert_eq!(mp4_truncation(&open), None);
        // Ogg: two pages, the second cut.
        let page = |body: &[u8]| {
            let mut page = b"OggS\0\0".to_vec();
            page.resize(26, 0);
            page.push(1);
            page.push(body.len() as u8);
            page.extend_from_slice(body);
            page
        };
        let mut ogg = page(b"\x01vorbis");
        ogg.extend(page(&[9; 50]));
        assert_eq!(ogg_truncation(&ogg), None);
        assert!(ogg_truncation(&ogg[..ogg.len() - 1]).is_some());
        assert!(ogg_truncation(&ogg[..40]).is_some());
        let (slug, _, _, detail) = refused(check(InputKind::Audio, None, &ogg[..ogg.len() - 10]));
        assert_eq!(slug, "unreadable-input", "{detail}");
    }

    #[test]
    fn a_truncated_wav_is_unreadable() {
        let wav = speech();
        // 60 % of the file, a header only, and the file less its last sample.
        for keep in [wav.len() * 6 / 10, 44, wav.len() - 1, 30] {
            let (slug, status, field, detail) =
                refused(check(InputKind::Audio, Some("speech.wav"), &wav[..keep]));
            assert_eq!(
                (slug.as_str(), status, field.as_str()),
                (
                    "unreadable-input",
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "audio"
                ),
                "{keep} bytes: {detail}"
            );
            assert!(detail.contains("truncated"), "{detail}");
        }
        // sonic-media itself decodes the 60 % as far as it goes: the check is ours.
        assert!(sonic_media::audio::decode_audio(&wav[..wav.len() * 6 / 10], "cut.wav").is_ok());
    }

    #[test]
    fn a_corrupt_wav_carries_the_decoders_error() {
        let mut bad = wav(16_000, &tone(16_000, 1.0));
        bad[20] = 0x55; // format tag 0x0055 (MP3 in WAV): not decoded
        let (slug, _, field, detail) = refused(check(InputKind::Audio, None, &bad));
        assert_eq!(field, "audio");
        assert!(
            slug == "unsupported-format" || slug == "unreadable-input",
            "{slug}: {detail}"
        );
        assert!(detail.starts_with("audio.wav: "), "{detail}");
    }

    #[test]
    fn the_pipeline_audio_limits_apply() {
        let short = wav(16_000, &tone(16_000, 0.05));
        let (slug, _, field, detail) = refused(check(InputKind::Audio, None, &short));
        assert_eq!(
            (slug.as_str(), field.as_str()),
            ("audio-too-short", "audio"),
            "{detail}"
        );
        let slow = wav(1_000, &tone(1_000, 2.0));
        let (slug, _, _, detail) = refused(check(InputKind::Audio, None, &slow));
        assert_eq!(slug, "unsupported-sample-rate", "{detail}");
        // A synthetic 16 kHz second passes.
        let fine = wav(16_000, &tone(16_000, 1.0));
        assert_eq!(check(InputKind::Audio, None, &fine).unwrap().ext, "wav");
    }

    #[test]
    fn oversize_is_413_naming_the_field() {
        let limits = InputLimits {
            max_image_bytes: 1024,
            max_audio_bytes: 4096,
        };
        let problem = check_input(InputKind::Image, Some("p.png"), &portrait(), &limits)
            .expect_err("too large");
        assert_eq!(problem.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(problem.kind, "urn:sonic:problem:too-large");
        assert_eq!(problem.field.as_deref(), Some("image"));
        assert!(problem.detail.contains("1 KiB"), "{}", problem.detail);
        let problem =
            check_input(InputKind::Audio, None, &speech(), &limits).expect_err("too large");
        assert_eq!(problem.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(problem.field.as_deref(), Some("audio"));
        // At the limit exactly is fine.
        let exact = InputLimits {
            max_image_bytes: portrait().len() as u64,
            ..limits
        };
        assert!(check_input(InputKind::Image, None, &portrait(), &exact).is_ok());
    }

    #[test]
    fn defaults_are_20_and_50_mib() {
        let limits = InputLimits::default();
        assert_eq!(limits.max_bytes(InputKind::Image), 20 * 1024 * 1024);
        assert_eq!(limits.max_bytes(InputKind::Audio), 50 * 1024 * 1024);
    }

    #[test]
    fn empty_is_422() {
        for kind in [InputKind::Image, InputKind::Audio] {
            let (slug, status, field, _) = refused(check(kind, Some("x.png"), &[]));
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(slug, "empty-input");
            assert_eq!(field, kind.stem());
        }
    }

    #[test]
    fn unknown_or_unsupported_content_is_unsupported_format() {
        let (slug, status, field, _) =
            refused(check(InputKind::Image, Some("x.png"), b"hello, world"));
        assert_eq!(
            (slug.as_str(), status, field.as_str()),
            (
                "unsupported-format",
                StatusCode::UNPROCESSABLE_ENTITY,
                "image"
            )
        );
        let (slug, _, _, detail) = refused(check(InputKind::Image, None, b"GIF89a\x01\x00"));
        assert_eq!(slug, "unsupported-format");
        assert!(detail.contains("GIF"), "{detail}");
        let mut opus = b"OggS\0\x02".to_vec();
        opus.resize(28, 0);
        opus.extend_from_slice(b"OpusHead\x01\x01");
        let (slug, _, field, detail) = refused(check(InputKind::Audio, None, &opus));
        assert_eq!(
            (slug.as_str(), field.as_str()),
            ("unsupported-format", "audio")
        );
        assert!(detail.contains("Opus"), "{detail}");
        let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
        let (slug, _, _, detail) = refused(check(InputKind::Image, None, heic));
        assert_eq!(slug, "unsupported-format", "{detail}");
    }

    #[test]
    fn magic_bytes_name_the_format() {
        let cases: &[(&[u8], Sniffed)] = &[
            (
                b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
                Sniffed::Known(Format::Png),
            ),
            (
                b"\xFF\xD8\xFF\xE0\0\x10JFIF\0",
                Sniffed::Known(Format::Jpeg),
            ),
            (b"RIFF\x24\0\0\0WEBPVP8 ", Sniffed::Known(Format::WebP)),
            (b"RIFF\x24\0\0\0WAVEfmt ", Sniffed::Known(Format::Wav)),
            (
                b"ID3\x04\0\0\0\0\0\x05\0\0\0\0\0\xFF\xFB\x90",
                Sniffed::Known(Format::Mp3),
            ),
            (b"\xFF\xFB\x90\x64", Sniffed::Known(Format::Mp3)),
            (b"\xFF\xF3\x80\xC4", Sniffed::Known(Format::Mp3)),
            (b"\xFF\xF1\x50\x80", Sniffed::Known(Format::Aac)),
            (b"fLaC\0\0\0\x22", Sniffed::Known(Format::Flac)),
            (b"ID3\x04\0\0\0\0\0\0fLaC", Sniffed::Known(Format::Flac)),
            (b"OggS\0\x02\0\0\0\0\0\0\0\0", Sniffed::Known(Format::Ogg)),
            (b"\0\0\0\x20ftypM4A \0\0\0\0", Sniffed::Known(Format::M4a)),
            (b"\0\0\0\x18ftypisom\0\0\x02\0", Sniffed::Known(Format::M4a)),
            (
                b"\0\0\0\x1cftypavif\0\0\0\0",
                Sniffed::Unsupported("an AVIF picture"),
            ),
            (
                b"\xFF\xFD\x90\x64",
                Sniffed::Unsupported("MPEG layer I/II audio"),
            ),
            (b"RIFF\x24\0\0\0XXXX", Sniffed::Unknown),
            (b"\xFF\xFF\xFF\xFF", Sniffed::Unknown),
            (b"MZ\x90\0", Sniffed::Unknown),
            (b"", Sniffed::Unknown),
        ];
        for (bytes, expected) in cases {
            assert_eq!(sniff(bytes), *expected, "{bytes:02x?}");
        }
    }

    #[test]
    fn the_mp3_fixture_is_accepted_when_present() {
        // The golden fixtures are in the repository, not in the published crate.
        let path = format!(
            "{}/../fixtures/golden/log_mel/speech.mp3",
            env!("CARGO_MANIFEST_DIR")
        );
        let Ok(mp3) = std::fs::read(path) else {
            return;
        };
        let checked = check(InputKind::Audio, Some("speech.MP3"), &mp3).unwrap();
        assert_eq!((checked.ext, checked.content_type), ("mp3", "audio/mpeg"));
        let (slug, _, _, _) = refused(check(InputKind::Audio, Some("speech.wav"), &mp3));
        assert_eq!(slug, "content-mismatch");
        // Its Info frame counts the frames: a cut MP3 decodes, but short of that count.
        assert!(mp3_counts_frames(&mp3));
        let cut = &mp3[..mp3.len() * 6 / 10];
        assert!(sonic_media::audio::decode_audio(cut, "cut.mp3").is_ok());
        let (slug, _, field, detail) = refused(check(InputKind::Audio, None, cut));
        assert_eq!(
            (slug.as_str(), field.as_str()),
            ("unreadable-input", "audio"),
            "{detail}"
        );
        assert!(detail.contains("truncated"), "{detail}");
    }

    #[test]
    fn ext_for_gives_the_canonical_extension() {
        assert_eq!(ext_for(InputKind::Image, "FACE.PNG").unwrap(), "png");
        assert_eq!(ext_for(InputKind::Image, "me.jpeg").unwrap(), "jpg");
        assert_eq!(ext_for(InputKind::Image, "me.JPG").unwrap(), "jpg");
        assert_eq!(ext_for(InputKind::Image, "x.webp").unwrap(), "webp");
        assert_eq!(
            ext_for(InputKind::Image, "C:\\fakepath\\x.png").unwrap(),
            "png"
        );
        assert_eq!(ext_for(InputKind::Audio, "talk.Wav").unwrap(), "wav");
        assert_eq!(ext_for(InputKind::Audio, "talk.mp3").unwrap(), "mp3");
        assert_eq!(ext_for(InputKind::Audio, "talk.flac").unwrap(), "flac");
        assert_eq!(ext_for(InputKind::Audio, "talk.mp4").unwrap(), "m4a");
        assert_eq!(ext_for(InputKind::Audio, "talk.m4a").unwrap(), "m4a");
        assert_eq!(ext_for(InputKind::Audio, "talk.aac").unwrap(), "aac");
        assert_eq!(ext_for(InputKind::Audio, "talk.oga").unwrap(), "ogg");
        for (kind, name) in [
            (InputKind::Image, "face"),
            (InputKind::Image, "face."),
            (InputKind::Image, "face.exe"),
            (InputKind::Image, "face.gif"),
            (InputKind::Image, "voice.wav"),
            (InputKind::Audio, "face.png"),
            (InputKind::Audio, "talk.exe"),
            (InputKind::Audio, "dir.wav/talk"),
        ] {
            let problem = ext_for(kind, name).expect_err(name);
            assert_eq!(problem.status(), StatusCode::UNPROCESSABLE_ENTITY, "{name}");
            assert_eq!(
                problem.kind, "urn:sonic:problem:unsupported-format",
                "{name}"
            );
            assert_eq!(problem.field.as_deref(), Some(kind.stem()), "{name}");
            assert!(
                problem.detail.contains(accepted(kind)),
                "{name}: {}",
                problem.detail
            );
        }
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(17), "17 bytes");
        assert_eq!(human_bytes(1024), "1 KiB");
        assert_eq!(human_bytes(20 * MIB), "20 MiB");
        assert_eq!(human_bytes(21 * MIB + MIB / 3), "21.3 MiB");
    }
}
