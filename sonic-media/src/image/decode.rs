//! Decoding portraits (PNG, JPEG, WebP) to RGB with their EXIF orientation applied.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::{ImageLimits, MediaError};

/// Decodes a PNG, JPEG or WebP picture held in memory to 8-bit RGB, within the default
/// [`ImageLimits`] (8192 px per side, 40 Mpx).
///
/// The format is recognised from the content. The EXIF orientation, when present, is applied,
/// so a phone photo taken upright comes out upright. (The Python reference, PIL's
/// `Image.open`, ignores it; on pictures without an orientation tag both agree.) Alpha is
/// dropped, grey is expanded, 16-bit is reduced to 8-bit, like PIL's `convert('RGB')`.
///
/// # Errors
/// [`MediaError::Empty`], [`MediaError::Unsupported`] for another format,
/// [`MediaError::PictureTooLarge`] for a header declaring a size over the limits (nothing is
/// decoded then), and [`MediaError::ImageDecode`] for corrupt or truncated data.
pub fn decode_image(bytes: &[u8], name: &str) -> Result<RgbImage, MediaError> {
    decode_image_with(bytes, name, &ImageLimits::default())
}

/// What a picture's header declares, read without decoding a pixel (see [`probe_image`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PictureHeader {
    /// Declared width in pixels (before any EXIF rotation).
    pub width: u32,
    /// Declared height in pixels.
    pub height: u32,
}

impl PictureHeader {
    /// Bytes of the decoded 8-bit RGB picture.
    pub fn rgb_bytes(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height) * 3
    }
}

/// Reads a picture's header only: its format is checked and its declared size checked against
/// `limits`, so that what decoding it would cost is known before it is decoded (the pipeline
/// checks its memory budget with it).
///
/// # Errors
/// Those of [`decode_image`], except corrupt pixel data (only the header is read).
pub fn probe_image(
    bytes: &[u8],
    name: &str,
    limits: &ImageLimits,
) -> Result<PictureHeader, MediaError> {
    open(bytes, name, limits).map(|(_, header)| header)
}

/// The decoder of a picture whose format and declared size passed the checks.
fn open<'a>(
    bytes: &'a [u8],
    name: &str,
    limits: &ImageLimits,
) -> Result<(impl ImageDecoder + 'a, PictureHeader), MediaError> {
    if bytes.is_empty() {
        return Err(MediaError::Empty { name: name.into() });
    }
    let format = image::guess_format(bytes).map_err(|_| MediaError::Unsupported {
        name: name.into(),
        reason: "not a PNG, JPEG or WebP picture".into(),
    })?;
    if !matches!(
        format,
        ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP
    ) {
        return Err(MediaError::Unsupported {
            name: name.into(),
            reason: format!("{format:?} pictures are not supported (PNG, JPEG, WebP are)"),
        });
    }
    let decode_err = |source| MediaError::ImageDecode {
        name: name.into(),
        source,
    };
    // Read the header under the allocation budget only, so that an oversized picture is
    // reported with its declared size rather than as `image`'s generic limit error.
    let mut header_limits = image::Limits::default();
    header_limits.max_alloc = Some(limits.max_alloc());
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(header_limits);
    let decoder = reader.into_decoder().map_err(decode_err)?;
    let (width, height) = decoder.dimensions();
    if let Some(limit) = limits.check(width, height) {
        return Err(MediaError::PictureTooLarge {
            name: name.into(),
            width,
            height,
            limit,
        });
    }
    Ok((decoder, PictureHeader { width, height }))
}

/// [`decode_image`] within the given limits.
///
/// The size is read from the header and checked against `limits` before a pixel is decoded, so
/// a decompression bomb (a small file declaring a huge picture) costs only its header; the
/// decoder itself then runs under `image::Limits` built from `limits` (its allocation budget
/// included).
///
/// # Errors
/// Those of [`decode_image`].
pub fn decode_image_with(
    bytes: &[u8],
    name: &str,
    limits: &ImageLimits,
) -> Result<RgbImage, MediaError> {
    let (mut decoder, _) = open(bytes, name, limits)?;
    let decode_err = |source| MediaError::ImageDecode {
        name: name.into(),
        source,
    };
    decoder
        .set_limits(limits.to_image_limits())
        .map_err(decode_err)?;
    let orientation = decoder.orientation().map_err(decode_err)?;
    let mut picture = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    picture.apply_orientation(orientation);
    Ok(picture.into_rgb8())
}
