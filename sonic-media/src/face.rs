//! Finding the face box of a portrait.
//!
//! Sonic uses YOLOv5m-face; this crate defines a [`FaceDetector`] trait and ships a SeetaFace
//! frontal detector ([`SeetaFaceDetector`], via `rustface`, model bundled) as the default. The
//! largest face wins. [`locate_face`] applies the caller's choice: detect, a given box, or the
//! whole frame.

use image::RgbImage;

use super::MediaError;
use super::image::FaceBox;

/// Something that finds faces in a picture.
pub trait FaceDetector: Send + Sync {
    /// Every face found in `image`, as `[x, y, w, h]` boxes in pixels (any order).
    ///
    /// # Errors
    /// Implementations report their own failures as [`MediaError`]; finding no face is not an
    /// error (an empty list).
    fn detect(&self, image: &RgbImage) -> Result<Vec<FaceBox>, MediaError>;
}

/// How the face region of a portrait is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaceRegion {
    /// Run the detector; the largest face wins.
    Detect,
    /// Use this box.
    Given(FaceBox),
    /// Use the whole picture (for pictures where no detector finds the face).
    WholeFrame,
}

/// The face box of `image` according to `region`.
///
/// # Errors
/// [`MediaError::NoFaceDetected`] naming `name` when detection finds nothing,
/// [`MediaError::FaceBoxOutside`] for a given box that does not overlap the picture (a box
/// partly outside is kept: the crop clamps it), [`MediaError::InvalidParameter`] for a given
/// box without a positive, finite size, and the detector's own errors.
pub fn locate_face(
    image: &RgbImage,
    name: &str,
    detector: &dyn FaceDetector,
    region: FaceRegion,
) -> Result<FaceBox, MediaError> {
    match region {
        FaceRegion::Given(face) => {
            check_inside(&face, image.width(), image.height(), name)?;
            Ok(face)
        }
        FaceRegion::WholeFrame => Ok(FaceBox::whole(image.width(), image.height())),
        FaceRegion::Detect => largest_face(&detector.detect(image)?)
            .ok_or_else(|| MediaError::NoFaceDetected { name: name.into() }),
    }
}

/// Refuses a face box that is not a finite box of positive size, or that does not overlap the
/// `width` x `height` picture: such a box would render a video with no face in it.
///
/// # Errors
/// [`MediaError::InvalidParameter`] or [`MediaError::FaceBoxOutside`].
pub fn check_inside(face: &FaceBox, width: u32, height: u32, name: &str) -> Result<(), MediaError> {
    let values = [face.x, face.y, face.width, face.height];
    if !values.iter().all(|v| v.is_finite()) || face.width <= 0.0 || face.height <= 0.0 {
        return Err(MediaError::invalid(
            "face box",
            format!("({face}) is not a box with a positive size"),
        ));
    }
    let overlap_w = (face.x + face.width).min(f64::from(width)) - face.x.max(0.0);
    let overlap_h = (face.y + face.height).min(f64::from(height)) - face.y.max(0.0);
    if overlap_w <= 0.0 || overlap_h <= 0.0 {
        return Err(MediaError::FaceBoxOutside {
            name: name.into(),
            face: *face,
            width,
            height,
        });
    }
    Ok(())
}

/// The face with the largest area (the first of equals).
pub fn largest_face(faces: &[FaceBox]) -> Option<FaceBox> {
    faces
        .iter()
        .copied()
        .fold(None, |best: Option<FaceBox>, f| match best {
            Some(b) if b.area() >= f.area() => Some(b),
            _ => Some(f),
        })
}

/// The SeetaFace frontal model shipped with this crate (BSD-2-Clause, see
/// `assets/seetaface/README.md`).
static SEETA_MODEL: &[u8] = include_bytes!("../assets/seetaface/seeta_fd_frontal_v1.0.bin");

/// SeetaFace's frontal face detector (rustface), the default [`FaceDetector`].
#[derive(Clone)]
pub struct SeetaFaceDetector {
    model: rustface::Model,
    min_face_size: u32,
    score_threshold: f64,
}

impl std::fmt::Debug for SeetaFaceDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeetaFaceDetector")
            .field("min_face_size", &self.min_face_size)
            .field("score_threshold", &self.score_threshold)
            .finish_non_exhaustive()
    }
}

impl SeetaFaceDetector {
    /// The detector with the bundled model, faces of at least 20 pixels, score threshold 2.0
    /// (rustface's example settings).
    ///
    /// # Errors
    /// [`MediaError::FaceModel`] if the model cannot be parsed (not with the bundled bytes).
    pub fn bundled() -> Result<Self, MediaError> {
        Self::from_model_bytes(SEETA_MODEL)
    }

    /// The detector with a SeetaFace model read from `bytes`.
    ///
    /// # Errors
    /// [`MediaError::FaceModel`] if the bytes are not a SeetaFace FuSt model.
    pub fn from_model_bytes(bytes: &[u8]) -> Result<Self, MediaError> {
        let model = rustface::read_model(bytes).map_err(MediaError::FaceModel)?;
        Ok(Self {
            model,
            min_face_size: 20,
            score_threshold: 2.0,
        })
    }

    /// Sets the smallest face side searched for, in pixels (at least 20).
    pub fn with_min_face_size(mut self, pixels: u32) -> Self {
        self.min_face_size = pixels.max(20);
        self
    }

    /// Sets the cascade score a window needs to count as a face.
    pub fn with_score_threshold(mut self, threshold: f64) -> Self {
        self.score_threshold = threshold;
        self
    }
}

impl FaceDetector for SeetaFaceDetector {
    fn detect(&self, image: &RgbImage) -> Result<Vec<FaceBox>, MediaError> {
        let (w, h) = image.dimensions();
        // rustface panics on pictures smaller than its 20-pixel window.
        if w < self.min_face_size || h < self.min_face_size {
            return Ok(Vec::new());
        }
        let gray: Vec<u8> = image
            .pixels()
            .map(|p| {
                let [r, g, b] = p.0;
                ((299 * u32::from(r) + 587 * u32::from(g) + 114 * u32::from(b) + 500) / 1000) as u8
            })
            .collect();
        let mut detector = rustface::create_detector_with_model(self.model.clone());
        detector.set_min_face_size(self.min_face_size);
        detector.set_score_thresh(self.score_threshold);
        detector.set_pyramid_scale_factor(0.8);
        detector.set_slide_window_step(4, 4);
        let faces = detector.detect(&rustface::ImageData::new(&gray, w, h));
        Ok(faces
            .iter()
            .map(|f| {
                let b = f.bbox();
                // Clip to the picture: the cascade may report boxes hanging over the edge.
                let x0 = f64::from(b.x().max(0));
                let y0 = f64::from(b.y().max(0));
                let x1 = (f64::from(b.x()) + f64::from(b.width())).min(f64::from(w));
                let y1 = (f64::from(b.y()) + f64::from(b.height())).min(f64::from(h));
                FaceBox::new(x0, y0, (x1 - x0).max(1.0), (y1 - y0).max(1.0))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<FaceBox>);
    impl FaceDetector for Fixed {
        fn detect(&self, _: &RgbImage) -> Result<Vec<FaceBox>, MediaError> {
            Ok(self.0.clone())
        }
    }

    #[test]
    fn largest_face_wins() {
        let small = FaceBox::new(0.0, 0.0, 10.0, 10.0);
        let big = FaceBox::new(5.0, 5.0, 30.0, 20.0);
        let img = RgbImage::new(64, 64);
        let found = locate_face(
            &img,
            "p.png",
            &Fixed(vec![small, big, small]),
            FaceRegion::Detect,
        );
        assert_eq!(found.unwrap(), big);
    }

    #[test]
    fn no_face_names_the_picture_unless_a_box_is_given() {
        let img = RgbImage::new(64, 48);
        let none = Fixed(Vec::new());
        let err = locate_face(&img, "me.jpg", &none, FaceRegion::Detect).unwrap_err();
        assert!(matches!(&err, MediaError::NoFaceDetected { name } if name == "me.jpg"));
        assert!(err.to_string().contains("me.jpg"));
        let given = FaceBox::new(1.0, 2.0, 3.0, 4.0);
        assert_eq!(
            locate_face(&img, "me.jpg", &none, FaceRegion::Given(given)).unwrap(),
            given
        );
        assert_eq!(
            locate_face(&img, "me.jpg", &none, FaceRegion::WholeFrame).unwrap(),
            FaceBox::new(0.0, 0.0, 64.0, 48.0)
        );
    }

    /// Finding 6 of issue #13: `--face-box 1000,1000,10,10` on a 64x64 picture rendered.
    #[test]
    fn a_given_box_outside_the_picture_is_refused_with_both_sizes() {
        let img = RgbImage::new(64, 64);
        let none = Fixed(Vec::new());
        let outside = FaceBox::new(1000.0, 1000.0, 10.0, 10.0);
        let err = locate_face(&img, "me.png", &none, FaceRegion::Given(outside)).unwrap_err();
        assert!(
            matches!(&err, MediaError::FaceBoxOutside { face, width: 64, height: 64, .. } if *face == outside),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("x 1000 y 1000 width 10 height 10"), "{text}");
        assert!(text.contains("64x64"), "{text}");
        // Touching the edge only (no overlap) is outside too; partly inside is kept.
        let edge = FaceBox::new(64.0, 0.0, 10.0, 10.0);
        assert!(locate_face(&img, "me.png", &none, FaceRegion::Given(edge)).is_err());
        let partly = FaceBox::new(-5.0, 60.0, 10.0, 10.0);
        assert_eq!(
            locate_face(&img, "me.png", &none, FaceRegion::Given(partly)).unwrap(),
            partly
        );
        let nan = FaceBox::new(f64::NAN, 0.0, 10.0, 10.0);
        assert!(matches!(
            locate_face(&img, "me.png", &none, FaceRegion::Given(nan)),
            Err(MediaError::InvalidParameter { .. })
        ));
    }

    #[test]
    fn bundled_model_loads_and_tiny_pictures_have_no_face() {
        let detector = SeetaFaceDetector::bundled().unwrap();
        assert!(detector.detect(&RgbImage::new(8, 8)).unwrap().is_empty());
        assert!(detector.detect(&RgbImage::new(64, 64)).unwrap().is_empty());
    }
}
