//! Decoding portraits (PNG, JPEG, WebP) to RGB with their EXIF orientation applied.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::MediaError;

/// Decodes a PNG, JPEG or WebP picture held in memory to 8-bit RGB.
///
/// The format is recognised from the content. The EXIF orientation, when present, is applied,
/// so a phone photo taken upright comes out upright. (The Python reference, PIL's
/// `Image.open`, ignores it; on pictures without an orientation tag both agree.) Alpha is
/// dropped, grey is expanded, 16-bit is reduced to 8-bit, like PIL's `convert('RGB')`.
///
/// # Errors
/// [`MediaError::Empty`], [`MediaError::Unsupported`] for another format, and
/// [`MediaError::ImageDecode`] for corrupt or truncated data.
pub fn decode_image(bytes: &[u8], name: &str) -> Result<RgbImage, MediaError> {
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
    let mut decoder = ImageReader::with_format(Cursor::new(bytes), format)
        .into_decoder()
        .map_err(decode_err)?;
    let orientation = decoder.orientation().map_err(decode_err)?;
    let mut picture = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    picture.apply_orientation(orientation);
    Ok(picture.into_rgb8())
}
