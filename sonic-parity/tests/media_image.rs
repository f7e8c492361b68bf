//! Portrait in: parity with `image_preprocess` and the preprocessing of `clip_vision`, decoding
//! of every format with EXIF orientation, typed errors, and face detection.

mod common;

use std::io::Cursor;
use std::path::PathBuf;

use common::{assert_case_passes, golden};
use image::{ImageFormat, RgbImage};
use proptest::prelude::*;
use sonic_media::MediaError;
use sonic_media::face::{FaceDetector, FaceRegion, SeetaFaceDetector, locate_face};
use sonic_media::image::{FaceBox, decode_image, resize_lanczos};

#[test]
fn image_preprocess_matches_reference() {
    let report = assert_case_passes("image_preprocess");
    // Both pictures: decode, ref_img, face_mask, two crop boxes; plus b's CLIP input.
    assert_eq!(report.comparisons.len(), 11, "{report}");
    // PIL's Lanczos is reproduced exactly, not just within the 1-2 level slack.
    for c in &report.comparisons {
        assert!(c.max_abs < 1e-6, "{c}");
    }
}

#[test]
fn clip_preprocessing_matches_reference() {
    let report = assert_case_passes("clip_vision");
    let names: Vec<&str> = report.comparisons.iter().map(|c| c.name.as_str()).collect();
    for name in ["image_uint8", "resized_224_uint8", "pixel_values"] {
        assert!(names.contains(&name), "{names:?}");
    }
    let resized = report
        .comparisons
        .iter()
        .find(|c| c.name == "resized_224_uint8")
        .unwrap();
    assert_eq!(resized.max_abs, 0.0, "Lanczos 224 is bit-exact: {resized}");
}

fn test_picture() -> RgbImage {
    RgbImage::from_fn(6, 4, |x, y| {
        image::Rgb([(x * 40) as u8, (y * 60) as u8, 200])
    })
}

fn encode(picture: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    picture.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A JPEG with an EXIF APP1 segment carrying `orientation`, inserted after SOI.
fn jpeg_with_orientation(picture: &RgbImage, orientation: u16) -> Vec<u8> {
    let jpeg = encode(picture, ImageFormat::Jpeg);
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec(); // big-endian TIFF, IFD at 8
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xff, 0xe1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn png_jpeg_webp_decode() {
    let picture = test_picture();
    for format in [ImageFormat::Png, ImageFormat::WebP] {
        let decoded = decode_image(&encode(&picture, format), "p").unwrap();
        assert_eq!(decoded, picture, "{format:?} is lossless");
    }
    let jpeg = decode_image(&encode(&picture, ImageFormat::Jpeg), "p.jpg").unwrap();
    assert_eq!(jpeg.dimensions(), (6, 4));
    let worst = jpeg
        .as_raw()
        .iter()
        .zip(picture.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(worst < 40, "JPEG error {worst}");
}

#[test]
fn exif_orientation_is_honoured() {
    let picture = test_picture();
    let upright = decode_image(&jpeg_with_orientation(&picture, 1), "o1.jpg").unwrap();
    assert_eq!(upright.dimensions(), (6, 4));
    // 6 = the camera was turned 90 degrees clockwise: decoding rotates back to portrait.
    let rotated = decode_image(&jpeg_with_orientation(&picture, 6), "o6.jpg").unwrap();
    assert_eq!(rotated.dimensions(), (4, 6));
    assert_eq!(rotated, image::imageops::rotate90(&upright));
}

#[test]
fn bad_pictures_give_typed_errors() {
    assert!(matches!(
        decode_image(&[], "e.png"),
        Err(MediaError::Empty { .. })
    ));
    // A GIF header (the format is recognised, then refused).
    let gif = b"GIF89a\x06\x00\x04\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff;".to_vec();
    assert!(matches!(
        decode_image(&gif, "a.gif"),
        Err(MediaError::Unsupported { .. })
    ));
    assert!(matches!(
        decode_image(b"definitely not a picture", "x.png"),
        Err(MediaError::Unsupported { .. })
    ));
    let png = std::fs::read(golden("image_preprocess").join("image_a.png")).unwrap();
    let err = decode_image(&png[..png.len() / 2], "half.png").unwrap_err();
    assert!(matches!(err, MediaError::ImageDecode { .. }), "{err}");
    assert!(err.to_string().contains("half.png"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Mutated PNG, JPEG and WebP bytes never panic the decoder.
    #[test]
    fn mutated_pictures_never_panic(
        format in 0usize..3,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        cut in any::<prop::sample::Index>(),
    ) {
        let format = [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::WebP][format];
        let mut bytes = encode(&test_picture(), format);
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let keep = cut.index(bytes.len()).max(1);
        if let Err(e) = decode_image(&bytes[..keep], "fuzz") {
            prop_assert!(e.to_string().contains("fuzz"));
        }
    }
}

#[test]
fn lanczos_upscale_keeps_edges_sharp_and_in_range() {
    let picture = RgbImage::from_fn(8, 8, |x, _| image::Rgb([if x < 4 { 0 } else { 255 }; 3]));
    let big = resize_lanczos(&picture, 32, 32);
    assert_eq!(big.dimensions(), (32, 32));
    assert_eq!(big.get_pixel(0, 0).0, [0; 3]);
    assert_eq!(big.get_pixel(31, 31).0, [255; 3]);
}

#[test]
fn faces_are_found_or_named_as_missing() {
    let detector = SeetaFaceDetector::bundled().unwrap();
    // The fixture portraits are synthetic drawings: no detector face. Sonic's callers then
    // pass a box or ask for the whole frame.
    let portrait = decode_image(
        &std::fs::read(golden("pipeline_e2e").join("portrait.png")).unwrap(),
        "portrait.png",
    )
    .unwrap();
    let blank = RgbImage::from_pixel(200, 160, image::Rgb([90, 90, 90]));
    assert!(detector.detect(&blank).unwrap().is_empty());
    let err = locate_face(&blank, "blank.png", &detector, FaceRegion::Detect).unwrap_err();
    assert!(matches!(&err, MediaError::NoFaceDetected { name } if name == "blank.png"));
    let given = FaceBox::new(18.6, 12.3, 27.2, 33.9);
    assert_eq!(
        locate_face(
            &portrait,
            "portrait.png",
            &detector,
            FaceRegion::Given(given)
        )
        .unwrap(),
        given
    );
    assert_eq!(
        locate_face(&portrait, "portrait.png", &detector, FaceRegion::WholeFrame).unwrap(),
        FaceBox::new(0.0, 0.0, 64.0, 64.0)
    );
}

/// rustface's own test photo (a group of people), from the crate package cargo unpacked to
/// build this crate (not copied into this repository).
fn rustface_test_photo() -> PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let registry = cargo_home.join("registry/src");
    std::fs::read_dir(&registry)
        .unwrap_or_else(|e| panic!("{}: {e}", registry.display()))
        .filter_map(Result::ok)
        .map(|index| index.path().join("rustface-0.1.7/test.png"))
        .find(|p| p.exists())
        .expect("the rustface 0.1.7 package is unpacked in the cargo registry")
}

#[test]
fn seetaface_finds_real_faces_and_picks_the_largest() {
    let bytes = std::fs::read(rustface_test_photo()).unwrap();
    let photo = decode_image(&bytes, "test.png").unwrap();
    let photo = image::imageops::resize(&photo, 833, 568, image::imageops::FilterType::Triangle);
    let detector = SeetaFaceDetector::bundled().unwrap();
    let faces = detector.detect(&photo).unwrap();
    assert!(faces.len() >= 3, "{} faces: {faces:?}", faces.len());
    let chosen = locate_face(&photo, "test.png", &detector, FaceRegion::Detect).unwrap();
    assert!(faces.iter().all(|f| f.area() <= chosen.area()));
    assert!(chosen.width >= 20.0 && chosen.x >= 0.0 && chosen.x + chosen.width <= 833.0);
}
