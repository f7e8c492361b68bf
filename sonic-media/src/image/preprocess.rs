//! Sonic's picture preprocessing (`test_preprocess.py`: `process_bbox`,
//! `image_audio_to_tensor`), reproduced exactly, including Python's rounding rules.

use image::RgbImage;

use super::lanczos::resize_lanczos;
use crate::MediaError;

/// Longest side [`preprocess_portrait`] resizes to.
pub const MAX_MODEL_SIDE: u32 = 8192;
/// CLIP's input side (`CLIPImageProcessor` crop size).
pub const CLIP_SIZE: u32 = 224;
/// OpenAI CLIP normalisation mean (RGB).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI CLIP normalisation standard deviation (RGB).
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// A face box in pixels: top-left corner and size (the detector's `[x, y, w, h]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceBox {
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
}

impl FaceBox {
    /// A box from `[x, y, w, h]`.
    pub const fn new(x: f64, y: f64, width: f64, height: f64) -> Self {
        Self {
            x,
            y,
            width,
            height,
        }
    }

    /// The whole picture as the face region.
    pub fn whole(width: u32, height: u32) -> Self {
        Self::new(0.0, 0.0, f64::from(width), f64::from(height))
    }

    /// Area in square pixels.
    pub fn area(&self) -> f64 {
        self.width * self.height
    }

    fn check(&self) -> Result<(), MediaError> {
        let finite = [self.x, self.y, self.width, self.height]
            .iter()
            .all(|v| v.is_finite());
        if !finite || self.width <= 0.0 || self.height <= 0.0 {
            return Err(MediaError::invalid(
                "face box",
                format!("({self}) is not a box with a positive size"),
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for FaceBox {
    /// `x X y Y width W height H`, in pixels.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "x {} y {} width {} height {}",
            self.x, self.y, self.width, self.height
        )
    }
}

/// A crop rectangle in whole pixels, `[x1, x2) x [y1, y2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    /// Left column (inclusive).
    pub x1: i64,
    /// Top row (inclusive).
    pub y1: i64,
    /// Right column (exclusive).
    pub x2: i64,
    /// Bottom row (exclusive).
    pub y2: i64,
}

impl std::fmt::Display for CropBox {
    /// `columns x1..x2, rows y1..y2`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "columns {}..{}, rows {}..{}",
            self.x1, self.x2, self.y1, self.y2
        )
    }
}

/// Python's `round()` (half to even).
fn py_round(v: f64) -> f64 {
    v.round_ties_even()
}

/// Sonic's `process_bbox`: grows the face box by `expand_ratio` of its size on every side
/// (clamped to the picture), then takes the largest square inside that, moved toward the face
/// centre, with Python's half-to-even rounding. `Sonic.preprocess` uses `expand_ratio` 0.5.
///
/// # Errors
/// [`MediaError::InvalidParameter`] for a degenerate face box or a negative ratio.
pub fn square_crop_box(
    face: &FaceBox,
    expand_ratio: f64,
    width: u32,
    height: u32,
) -> Result<CropBox, MediaError> {
    face.check()?;
    if !(expand_ratio.is_finite() && expand_ratio >= 0.0) {
        return Err(MediaError::invalid(
            "expand_ratio",
            format!("{expand_ratio} is not a non-negative number"),
        ));
    }
    let (w, h) = (f64::from(width), f64::from(height));
    let src = [face.x, face.y, face.x + face.width, face.y + face.height];
    let (bw, bh) = (src[2] - src[0], src[3] - src[1]);
    let exp = [
        (src[0] - expand_ratio * bw).max(0.0),
        (src[1] - expand_ratio * bh).max(0.0),
        (src[2] + expand_ratio * bw).min(w),
        (src[3] + expand_ratio * bh).min(h),
    ];

    let (eh, ew) = (exp[3] - exp[1], exp[2] - exp[0]);
    let (c_h, c_w) = ((exp[1] + exp[3]) / 2.0, (exp[0] + exp[2]) / 2.0);
    let c = eh.min(ew) / 2.0;
    let (c_src_h, c_src_w) = ((src[1] + src[3]) / 2.0, (src[0] + src[2]) / 2.0);
    let d = ((eh - ew) / 2.0).abs();
    let (mut s_h, mut s_w) = (0.0, 0.0);
    if ew < eh {
        s_h = d.min((c_src_h - c_h).abs());
        if c_src_h <= c_h {
            s_h = -s_h;
        }
    } else {
        s_w = d.min((c_src_w - c_w).abs());
        if c_src_w <= c_w {
            s_w = -s_w;
        }
    }
    let (c_h, c_w) = (c_h + s_h, c_w + s_w);
    let (x1, y1, x2, y2) = (c_w - c, c_h - c, c_w + c, c_h + c);
    let side = (x2 - x1).min(y2 - y1);
    let (cc_x, cc_y) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
    Ok(CropBox {
        x1: py_round(cc_x - side / 2.0) as i64,
        y1: py_round(cc_y - side / 2.0) as i64,
        x2: py_round(cc_x + side / 2.0) as i64,
        y2: py_round(cc_y + side / 2.0) as i64,
    })
}

/// Cuts `crop` out of `image` (`img[y1:y2, x1:x2]`, clamped to the picture).
///
/// # Errors
/// [`MediaError::InvalidParameter`] if nothing of the box lies inside the picture.
pub fn crop(image: &RgbImage, crop: CropBox) -> Result<RgbImage, MediaError> {
    let clamp = |v: i64, max: u32| v.clamp(0, i64::from(max)) as u32;
    let (x1, x2) = (clamp(crop.x1, image.width()), clamp(crop.x2, image.width()));
    let (y1, y2) = (
        clamp(crop.y1, image.height()),
        clamp(crop.y2, image.height()),
    );
    if x2 <= x1 || y2 <= y1 {
        return Err(MediaError::invalid(
            "crop box",
            format!(
                "the square crop ({crop}) is outside the {}x{} picture",
                image.width(),
                image.height()
            ),
        ));
    }
    Ok(image::imageops::crop_imm(image, x1, y1, x2 - x1, y2 - y1).to_image())
}

/// The model's input size for a `width x height` picture: the short side scaled to
/// `min_resolution`, then both sides rounded (half to even) to multiples of 64.
pub fn model_size(width: u32, height: u32, min_resolution: u32) -> (u32, u32) {
    let scale = f64::from(min_resolution) / f64::from(width.min(height));
    let round64 = |side: u32| (py_round(f64::from(side) * scale / 64.0) * 64.0) as u32;
    (round64(width), round64(height))
}

/// Sonic's face mask at the picture's own size: 255 inside the face box enlarged `area` times
/// around its (floored) centre, 0 elsewhere, as an RGB picture.
pub fn face_mask_image(width: u32, height: u32, face: &FaceBox, area: f64) -> RgbImage {
    let (x1, y1) = (face.x, face.y);
    let (x2, y2) = (x1 + face.width, y1 + face.height);
    let (ww, hh) = ((x2 - x1) * area, (y2 - y1) * area);
    let centre = [((x2 + x1) / 2.0).floor(), ((y2 + y1) / 2.0).floor()];
    let left = (centre[0] - (ww / 2.0).floor()).max(0.0);
    let top = (centre[1] - (hh / 2.0).floor()).max(0.0);
    let right = (centre[0] + (ww / 2.0).floor()).min(f64::from(width));
    let bottom = (centre[1] + (hh / 2.0).floor()).min(f64::from(height));
    // Python's int() truncates; the slice bounds are then clamped to the picture.
    let clamp = |v: f64, max: u32| (v.trunc().max(0.0) as u32).min(max);
    let (left, right) = (clamp(left, width), clamp(right, width));
    let (top, bottom) = (clamp(top, height), clamp(bottom, height));
    let mut mask = RgbImage::new(width, height);
    for y in top..bottom {
        for x in left..right {
            mask.put_pixel(x, y, image::Rgb([255; 3]));
        }
    }
    mask
}

/// `[3, H, W]` f32 of an RGB picture mapped to `[-1, 1]` (`ToTensor` + `Normalize(0.5, 0.5)`).
pub fn to_signed_tensor(image: &RgbImage) -> Vec<f32> {
    planar(image, |_, v| (f32::from(v) / 255.0 - 0.5) / 0.5)
}

/// `[3, H, W]` f32 of an RGB picture mapped to `[0, 1]` (`ToTensor`).
pub fn to_unit_tensor(image: &RgbImage) -> Vec<f32> {
    planar(image, |_, v| f32::from(v) / 255.0)
}

/// CLIP's input: the picture resized to 224x224 with Lanczos (aspect ratio not kept, as in
/// Sonic), scaled by 1/255 and normalised with [`CLIP_MEAN`] / [`CLIP_STD`]: `[3, 224, 224]`.
pub fn clip_input(image: &RgbImage) -> Vec<f32> {
    clip_normalise(&resize_lanczos(image, CLIP_SIZE, CLIP_SIZE))
}

/// `CLIPImageProcessor` on a picture that is already 224x224 (resize and crop are no-ops):
/// `v * (1/255)` in f64 rounded to f32, then `(x - mean) / std` in f32, `[3, H, W]`.
pub fn clip_normalise(image: &RgbImage) -> Vec<f32> {
    planar(image, |c, v| {
        let x = (f64::from(v) * (1.0 / 255.0)) as f32;
        (x - CLIP_MEAN[c]) / CLIP_STD[c]
    })
}

fn planar(image: &RgbImage, f: impl Fn(usize, u8) -> f32) -> Vec<f32> {
    let plane = image.width() as usize * image.height() as usize;
    let mut out = vec![0.0f32; 3 * plane];
    for (i, px) in image.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = f(c, px.0[c]);
        }
    }
    out
}

/// Options of [`preprocess_portrait`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PortraitOptions {
    /// Short side of the model input before rounding to multiples of 64 (Sonic: 512).
    pub min_resolution: u32,
    /// Enlargement of the face box for the face mask (Sonic's `area`: 1.1).
    pub mask_area: f64,
}

impl Default for PortraitOptions {
    fn default() -> Self {
        Self {
            min_resolution: 512,
            mask_area: 1.1,
        }
    }
}

/// The tensors Sonic derives from the portrait, as host data.
#[derive(Debug, Clone, PartialEq)]
pub struct PortraitTensors {
    /// Model input width (multiple of 64).
    pub width: u32,
    /// Model input height (multiple of 64).
    pub height: u32,
    /// The resized picture (what the VAE encodes).
    pub resized: RgbImage,
    /// `ref_img`: `[3, height, width]` in `[-1, 1]`.
    pub ref_image: Vec<f32>,
    /// `face_mask`: `[3, height, width]` in `[0, 1]` (the pipeline keeps channel 0).
    pub face_mask: Vec<f32>,
    /// `clip_images`: `[3, 224, 224]` CLIP-normalised.
    pub clip_pixels: Vec<f32>,
}

/// Sonic's `image_audio_to_tensor` (picture part): face mask from `face`, Lanczos resize of the
/// picture and the mask to [`model_size`] (skipped when the size is unchanged), the `[-1, 1]`
/// reference image, the mask in `[0, 1]` and the CLIP input.
///
/// # Errors
/// [`MediaError::InvalidParameter`] for a degenerate face box, an empty picture, a
/// `min_resolution` below 64, or a model size above [`MAX_MODEL_SIDE`].
pub fn preprocess_portrait(
    image: &RgbImage,
    face: &FaceBox,
    options: &PortraitOptions,
) -> Result<PortraitTensors, MediaError> {
    face.check()?;
    if options.min_resolution < 64 {
        return Err(MediaError::invalid(
            "min_resolution",
            format!("{} is below 64", options.min_resolution),
        ));
    }
    if !(options.mask_area.is_finite() && options.mask_area > 0.0) {
        return Err(MediaError::invalid(
            "mask_area",
            format!("{} is not a positive factor", options.mask_area),
        ));
    }
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 {
        return Err(MediaError::invalid("picture", "it has no pixel"));
    }
    let (width, height) = model_size(w, h, options.min_resolution);
    // Extreme aspect ratios would ask for gigabytes (a 100:1 strip at 512 -> 51200 x 512).
    if width.max(height) > MAX_MODEL_SIDE {
        return Err(MediaError::invalid(
            "picture",
            format!("{w}x{h} would be resized to {width}x{height} (sides up to {MAX_MODEL_SIDE})"),
        ));
    }
    let mask = face_mask_image(w, h, face, options.mask_area);
    let (resized, mask) = if (width, height) != (w, h) {
        (
            resize_lanczos(image, width, height),
            resize_lanczos(&mask, width, height),
        )
    } else {
        (image.clone(), mask)
    };
    Ok(PortraitTensors {
        width,
        height,
        ref_image: to_signed_tensor(&resized),
        face_mask: to_unit_tensor(&mask),
        clip_pixels: clip_input(&resized),
        resized,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_boxes_match_the_fixture() {
        // fixtures/golden/image_preprocess config: crop_bboxes for expand 0.5 and 1.0.
        let a = FaceBox::new(30.2, 10.6, 34.9, 41.3);
        let b = FaceBox::new(14.5, 30.1, 40.2, 48.8);
        let cb = |x1, y1, x2, y2| CropBox { x1, y1, x2, y2 };
        assert_eq!(
            square_crop_box(&a, 0.5, 100, 75).unwrap(),
            cb(13, 0, 83, 70)
        );
        assert_eq!(
            square_crop_box(&a, 1.0, 100, 75).unwrap(),
            cb(10, 0, 85, 75)
        );
        assert_eq!(
            square_crop_box(&b, 0.5, 70, 130).unwrap(),
            cb(0, 20, 70, 90)
        );
        assert_eq!(
            square_crop_box(&b, 1.0, 70, 130).unwrap(),
            cb(0, 20, 70, 90)
        );
    }

    #[test]
    fn model_sizes_round_half_to_even() {
        assert_eq!(model_size(1920, 1080, 512), (896, 512));
        assert_eq!(model_size(100, 75, 64), (64, 64));
        assert_eq!(model_size(70, 130, 64), (64, 128));
        // 96 / 64 = 1.5 rounds to 2 (even), 160 / 64 = 2.5 rounds to 2 (even).
        assert_eq!(model_size(96, 64, 64), (128, 64));
        assert_eq!(model_size(160, 64, 64), (128, 64));
    }

    #[test]
    fn degenerate_inputs_are_typed_errors() {
        let img = RgbImage::new(8, 8);
        let bad = FaceBox::new(0.0, 0.0, 0.0, 4.0);
        assert!(matches!(
            preprocess_portrait(&img, &bad, &PortraitOptions::default()),
            Err(MediaError::InvalidParameter { .. })
        ));
        assert!(square_crop_box(&FaceBox::new(1.0, 1.0, 2.0, 2.0), f64::NAN, 8, 8).is_err());
        let strip = RgbImage::new(2000, 10);
        assert!(matches!(
            preprocess_portrait(
                &strip,
                &FaceBox::new(0.0, 0.0, 5.0, 5.0),
                &PortraitOptions::default()
            ),
            Err(MediaError::InvalidParameter {
                parameter: "picture",
                ..
            })
        ));
        let outside = CropBox {
            x1: 10,
            y1: 10,
            x2: 20,
            y2: 20,
        };
        assert!(crop(&img, outside).is_err());
    }
}
