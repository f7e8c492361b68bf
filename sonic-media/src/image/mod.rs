//! Portrait in: decoding with EXIF orientation, Sonic's square crop, PIL-exact Lanczos
//! resizing, and the reference image, face mask and CLIP input tensors.
//!
//! ```no_run
//! use sonic_media::image::{FaceBox, PortraitOptions, decode_image, preprocess_portrait};
//! # fn main() -> Result<(), sonic_media::MediaError> {
//! let picture = decode_image(&std::fs::read("portrait.jpg").unwrap(), "portrait.jpg")?;
//! let face = FaceBox::new(120.0, 80.0, 200.0, 240.0);
//! let tensors = preprocess_portrait(&picture, &face, &PortraitOptions::default())?;
//! assert_eq!(tensors.width % 64, 0);
//! # Ok(()) }
//! ```

mod decode;
mod lanczos;
mod preprocess;

pub use decode::{PictureHeader, decode_image, decode_image_with, probe_image};
pub use lanczos::resize_lanczos;
pub use preprocess::{
    CLIP_MEAN, CLIP_SIZE, CLIP_STD, CropBox, FaceBox, MAX_MODEL_SIDE, PortraitOptions,
    PortraitTensors, clip_input, clip_normalise, crop, face_mask_image, model_size,
    preprocess_portrait, square_crop_box, to_signed_tensor, to_unit_tensor,
};
