//! Shared by the pipeline tests: the tiny fixture models, inputs and parameters.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use burn::tensor::{DType, TensorData};
use sonic::pipeline::{FaceSpec, GenerationParams, NamedBytes, SonicModels, WeightsLayout};

/// The CPU backend the tests run on.
pub type B = burn::backend::Flex;

/// `fixtures/golden/<case>`.
pub fn golden(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/golden")
        .join(case)
}

/// The demo layout: the fixtures' tiny random weights.
pub fn demo_layout() -> WeightsLayout {
    WeightsLayout::demo(golden("")).expect("demo layout")
}

/// The tiny models, loaded once per test binary.
pub fn models() -> &'static SonicModels<B> {
    static MODELS: OnceLock<SonicModels<B>> = OnceLock::new();
    MODELS.get_or_init(|| {
        SonicModels::<B>::load(&demo_layout(), DType::F32, &Default::default()).expect("load")
    })
}

/// `pipeline_e2e`'s fixed face box, `[x, y, w, h]`.
pub const FACE_BOX: FaceSpec = FaceSpec::Box {
    x: 18.6,
    y: 12.3,
    width: 27.2,
    height: 33.9,
};

/// The fixture's settings (64x64, 4 steps) with its face box.
pub fn fixture_params() -> GenerationParams {
    GenerationParams {
        min_resolution: 64,
        inference_steps: 4,
        face: FACE_BOX,
        ..GenerationParams::default()
    }
}

/// The bundled sample portrait.
pub fn portrait() -> NamedBytes {
    let path = golden("pipeline_e2e").join("portrait.png");
    NamedBytes::new("portrait.png", std::fs::read(path).expect("portrait"))
}

/// The bundled sample speech (2.66 s, 22.05 kHz).
pub fn speech() -> NamedBytes {
    let path = golden("pipeline_e2e").join("speech.wav");
    NamedBytes::new("speech.wav", std::fs::read(path).expect("speech"))
}

/// A 16-bit mono WAV of `seconds` of the sample speech repeated.
pub fn long_speech(seconds: f64) -> NamedBytes {
    let bytes = std::fs::read(golden("pipeline_e2e").join("speech.wav")).unwrap();
    let (rate, samples) = parse_wav(&bytes);
    let n = (seconds * rate as f64) as usize;
    let repeated: Vec<i16> = samples.iter().copied().cycle().take(n).collect();
    NamedBytes::new(format!("speech-{seconds}s.wav"), wav(rate, &repeated))
}

/// A 16-bit mono WAV.
pub fn wav(rate: u32, samples: &[i16]) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
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

/// Rate and samples of a 16-bit mono PCM WAV.
fn parse_wav(bytes: &[u8]) -> (u32, Vec<i16>) {
    let rate = u32::from_le_bytes(bytes[24..28].try_into().unwrap());
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        if id == b"data" {
            let data = &bytes[pos + 8..pos + 8 + len];
            return (
                rate,
                data.chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect(),
            );
        }
        pos += 8 + len + (len & 1);
    }
    panic!("no data chunk");
}

/// A PNG of a plain grey picture (no face in it).
pub fn grey_picture(width: u32, height: u32) -> NamedBytes {
    let image = image::RgbImage::from_pixel(width, height, image::Rgb([128, 128, 128]));
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    NamedBytes::new("grey.png", png)
}

/// Values of recorded data as f32.
pub fn values(data: &TensorData) -> Vec<f32> {
    data.clone().convert::<f32>().into_vec::<f32>().unwrap()
}
