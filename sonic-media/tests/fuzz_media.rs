//! A bounded fuzz suite of the media front ends (proptest; `cargo fuzz` needs a nightly
//! compiler). Each target feeds random or mutated bytes to a decoder and asserts that it never
//! panics and returns either a sane value or a typed [`MediaError`] that names the input.
//!
//! Targets (run one with `cargo test -p sonic-media --test fuzz_media <name>`):
//! - `audio_random_bytes`: random bytes, bare or behind each container's magic number.
//! - `audio_mutated_files`: mutated WAV, MP3, FLAC and MP4/AAC files.
//! - `wav_header_edges`: WAVs built from random header fields (rates, channels, bit depths,
//!   chunk lengths that lie) and random data lengths.
//! - `mp4_header_edges`: mutations confined to the boxes in front of the media data of an MP4
//!   written by this crate (its `moov`: track, sample tables, edit list).
//! - `picture_mutated_files`: mutated PNG, JPEG and WebP, decoded and, when they decode,
//!   preprocessed around a face box.
//!
//! Cases per target: `SONIC_FUZZ_CASES` (default 256); time per target: `SONIC_FUZZ_SECS`
//! (default 60; the run stops between chunks of 16 cases once it is spent). Inputs that once
//! failed are kept in `sonic-media/fuzz-corpus/` and replayed by `corpus_replays`; proptest also
//! records new failures in `proptest-regressions/fuzz_media.txt` and replays them first.

use std::io::Cursor;
use std::sync::OnceLock;

use image::{ImageFormat, RgbImage};
use proptest::prelude::*;
use proptest::sample::Index;
use sonic_media::audio::{DecodedAudio, decode_audio};
use sonic_media::image::{FaceBox, PortraitOptions, decode_image, preprocess_portrait};
use sonic_media::video::{AudioTrack, Mp4Writer, VideoOptions};
use sonic_media::{AudioLimits, ImageLimits, MediaError};

// ---------------------------------------------------------------------------------------------
// Budget.

#[path = "../../sonic-parity/tests/fuzz_budget/mod.rs"]
mod fuzz_budget;

/// Where this suite records (and first replays) the failures it finds; committed.
const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proptest-regressions/fuzz_media.txt"
);

// ---------------------------------------------------------------------------------------------
// Seeds: the bundled fixtures and files made here (no external tool).

fn golden(path: &str) -> Vec<u8> {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/golden")
        .join(path);
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// A 16-bit PCM WAV.
fn wav(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
    let data = (samples.len() * 2) as u32;
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(data + 36).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes());
    out.extend_from_slice(&(2 * channels).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

fn tone(n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| (6000.0 * (i as f32 * 0.07).sin() * (i as f32 * 0.001).cos()) as i16)
        .collect()
}

/// MSB-first bit writer (FLAC's order).
struct BitsMsb {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitsMsb {
    fn put(&mut self, value: u64, count: u32) {
        for i in (0..count).rev() {
            self.acc = (self.acc << 1) | ((value >> i) & 1);
            self.n += 1;
            if self.n == 8 {
                self.out.push(self.acc as u8);
                self.acc = 0;
                self.n = 0;
            }
        }
    }
}

fn crc8(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |mut crc, &b| {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
        crc
    })
}

fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |mut crc, &b| {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x8005
            } else {
                crc << 1
            };
        }
        crc
    })
}

/// A mono 16-bit FLAC at 16 kHz with verbatim subframes (valid, uncompressed).
fn flac(samples: &[i16]) -> Vec<u8> {
    const BLOCK: usize = 1024;
    let mut out = b"fLaC".to_vec();
    // STREAMINFO, the last metadata block.
    out.extend_from_slice(&[0x80, 0, 0, 34]);
    let mut info = BitsMsb {
        out: Vec::new(),
        acc: 0,
        n: 0,
    };
    info.put(BLOCK as u64, 16);
    info.put(BLOCK as u64, 16);
    info.put(0, 24);
    info.put(0, 24);
    info.put(16_000, 20);
    info.put(0, 3); // channels - 1
    info.put(15, 5); // bits per sample - 1
    info.put(samples.len() as u64, 36);
    info.put(0, 64);
    info.put(0, 64); // no MD5
    out.extend(info.out);
    for (index, block) in samples.chunks(BLOCK).enumerate() {
        let mut frame = BitsMsb {
            out: Vec::new(),
            acc: 0,
            n: 0,
        };
        frame.put(0b11_1111_1111_1110, 14); // sync
        frame.put(0, 1);
        frame.put(0, 1); // fixed block size
        frame.put(0b0111, 4); // block size: 16-bit (n - 1) at the end of the header
        frame.put(0b0101, 4); // 16 kHz
        frame.put(0, 4); // mono
        frame.put(0b100, 3); // 16 bits per sample
        frame.put(0, 1);
        assert!(index < 128, "the UTF-8 frame number is one byte here");
        frame.put(index as u64, 8);
        frame.put(block.len() as u64 - 1, 16);
        let crc = crc8(&frame.out);
        frame.put(u64::from(crc), 8);
        frame.put(0, 1);
        frame.put(0b000001, 6); // verbatim
        frame.put(0, 1);
        for &s in block {
            frame.put(u64::from(s as u16), 16);
        }
        let mut bytes = frame.out;
        let crc = crc16(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        out.extend(bytes);
    }
    out
}

/// A 0.5 s MP4 (64x64 H.264, 16 kHz AAC) written by this crate.
fn mp4() -> Vec<u8> {
    let audio: Vec<f32> = tone(8000).iter().map(|&s| f32::from(s) / 32768.0).collect();
    let mut out = Vec::new();
    let mut writer = Mp4Writer::new(
        Cursor::new(&mut out),
        64,
        64,
        &VideoOptions::default(),
        Some(AudioTrack::mono(audio, 16_000)),
    )
    .unwrap();
    let frame = vec![128u8; 64 * 64 * 3];
    for _ in 0..12 {
        writer.push_frame(&frame).unwrap();
    }
    writer.finish().unwrap();
    out
}

/// Audio seeds: name (its extension is the container hint) and bytes.
fn audio_seeds() -> &'static [(&'static str, Vec<u8>)] {
    static SEEDS: OnceLock<Vec<(&'static str, Vec<u8>)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let speech = golden("log_mel/speech.wav");
        vec![
            ("speech.wav", speech[..speech.len().min(16_044)].to_vec()),
            ("speech.mp3", golden("log_mel/speech.mp3")),
            ("tone.flac", flac(&tone(4000))),
            ("stereo.wav", wav(44_100, 2, &tone(26_460))),
            ("tone.mp4", mp4()),
        ]
    })
}

fn encode(picture: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    picture.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// Picture seeds: the fixture portrait as PNG, JPEG and WebP.
fn picture_seeds() -> &'static [(&'static str, Vec<u8>)] {
    static SEEDS: OnceLock<Vec<(&'static str, Vec<u8>)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let png = golden("clip_vision/portrait.png");
        let picture = decode_image(&png, "portrait.png").unwrap();
        let small = image::imageops::thumbnail(&picture, 48, 40);
        vec![
            ("portrait.png", png),
            ("portrait.jpg", encode(&picture, ImageFormat::Jpeg)),
            ("small.webp", encode(&small, ImageFormat::WebP)),
            ("small.png", encode(&small, ImageFormat::Png)),
        ]
    })
}

// ---------------------------------------------------------------------------------------------
// Checks.

/// One edit of a mutation.
#[derive(Debug, Clone)]
enum Edit {
    Set(Index, u8),
    Flip(Index, u8),
    Remove(Index, Index),
    Duplicate(Index, Index),
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, v)| Edit::Set(i, v)),
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Edit::Flip(i, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, n)| Edit::Remove(i, n)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, n)| Edit::Duplicate(i, n)),
    ]
}

/// Applies `edits` within `bytes[..window]` (the whole file when `window` is its length).
fn mutate(bytes: &mut Vec<u8>, edits: &[Edit], window: usize) {
    for edit in edits {
        let span = window.min(bytes.len());
        if span == 0 {
            return;
        }
        match *edit {
            Edit::Set(ref i, v) => {
                let at = i.index(span);
                bytes[at] = v;
            }
            Edit::Flip(ref i, bit) => {
                let at = i.index(span);
                bytes[at] ^= 1 << bit;
            }
            Edit::Remove(ref i, ref n) => {
                let at = i.index(span);
                let len = n.index(64.min(span - at) + 1);
                bytes.drain(at..at + len);
            }
            Edit::Duplicate(ref i, ref n) => {
                let at = i.index(span);
                let len = n.index(64.min(span - at) + 1);
                let copy = bytes[at..at + len].to_vec();
                bytes.splice(at..at, copy);
            }
        }
    }
}

/// What every audio decode must satisfy: a sane value within the default limits, or a typed
/// error naming the input.
fn check_audio(result: Result<DecodedAudio, MediaError>, name: &str) -> Result<(), TestCaseError> {
    match result {
        Ok(decoded) => {
            let limits = AudioLimits::default();
            prop_assert!(!decoded.samples.is_empty());
            prop_assert!(
                (limits.min_sample_rate()..=limits.max_sample_rate())
                    .contains(&decoded.sample_rate),
                "rate {}",
                decoded.sample_rate
            );
            prop_assert!(decoded.duration_secs() <= limits.max_duration_secs() + 1e-6);
            prop_assert!(decoded.channels >= 1);
            prop_assert!(decoded.samples.iter().all(|s| s.is_finite()));
        }
        Err(e) => {
            let message = e.to_string();
            prop_assert!(message.contains(name), "{message:?} does not name {name}");
        }
    }
    Ok(())
}

fn check_picture(bytes: &[u8], name: &str) -> Result<(), TestCaseError> {
    match decode_image(bytes, name) {
        Ok(picture) => {
            let (w, h) = picture.dimensions();
            prop_assert!(ImageLimits::default().check(w, h).is_none(), "{w}x{h}");
            // A face box in the middle of the picture, as the pipeline would pass it.
            let face = FaceBox::new(
                f64::from(w) / 4.0,
                f64::from(h) / 4.0,
                (f64::from(w) / 2.0).max(1.0),
                (f64::from(h) / 2.0).max(1.0),
            );
            let options = PortraitOptions {
                min_resolution: 64,
                ..PortraitOptions::default()
            };
            match preprocess_portrait(&picture, &face, &options) {
                Ok(tensors) => {
                    prop_assert_eq!(tensors.width % 64, 0);
                    prop_assert_eq!(tensors.height % 64, 0);
                    let pixels = 3 * tensors.width as usize * tensors.height as usize;
                    prop_assert_eq!(tensors.ref_image.len(), pixels);
                    prop_assert_eq!(tensors.face_mask.len(), pixels);
                    prop_assert!(tensors.ref_image.iter().all(|v| v.is_finite()));
                    prop_assert!(tensors.clip_pixels.iter().all(|v| v.is_finite()));
                }
                Err(e) => prop_assert!(
                    matches!(e, MediaError::InvalidParameter { .. }),
                    "preprocess of a decoded {w}x{h} picture: {e}"
                ),
            }
        }
        Err(e) => {
            let message = e.to_string();
            prop_assert!(message.contains(name), "{message:?} does not name {name}");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Targets.

/// The first bytes of each container, so random data reaches each demuxer.
const MAGICS: &[(&str, &[u8])] = &[
    ("x.bin", b""),
    ("x.wav", b"RIFF\xff\xff\xff\xffWAVEfmt "),
    ("x.flac", b"fLaC\x00\x00\x00\x22"),
    ("x.mp3", b"\xff\xfb\x90\x64"),
    ("x.mp3", b"ID3\x04\x00\x00\x00\x00\x00\x00"),
    ("x.ogg", b"OggS\x00\x02"),
    ("x.m4a", b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00"),
    ("x.aac", b"\xff\xf1\x50\x80"),
];

#[test]
fn audio_random_bytes() {
    fuzz_budget::fuzz(
        REGRESSIONS,
        (0..MAGICS.len(), prop::collection::vec(any::<u8>(), 0..2048)),
        |(magic, tail)| {
            let (name, head) = MAGICS[magic];
            let mut bytes = head.to_vec();
            bytes.extend(tail);
            check_audio(decode_audio(&bytes, name), name)?;
            Ok(())
        },
    );
}

#[test]
fn audio_mutated_files() {
    fuzz_budget::fuzz(
        REGRESSIONS,
        (
            0usize..5,
            prop::collection::vec(edit_strategy(), 1..16),
            any::<bool>(),
            any::<Index>(),
        ),
        |(seed, edits, header_only, cut)| {
            let (name, bytes) = &audio_seeds()[seed];
            let mut bytes = bytes.clone();
            let window = if header_only { 512 } else { bytes.len() };
            mutate(&mut bytes, &edits, window);
            let keep = cut.index(bytes.len() + 1).max(bytes.len() / 2);
            bytes.truncate(keep);
            check_audio(decode_audio(&bytes, name), name)?;
            Ok(())
        },
    );
}

#[test]
fn wav_header_edges() {
    fuzz_budget::fuzz(
        REGRESSIONS,
        (
            prop_oneof![Just(1u16), Just(3), Just(0xfffe), any::<u16>()],
            prop_oneof![Just(1u16), Just(2), 0u16..10, any::<u16>()],
            prop_oneof![
                Just(16_000u32),
                Just(1),
                Just(0),
                1u32..1_000_000,
                any::<u32>()
            ],
            prop_oneof![Just(16u16), Just(8), Just(24), Just(32), any::<u16>()],
            prop_oneof![Just(16u32), Just(18), Just(40), any::<u32>()],
            prop_oneof![Just(u32::MAX), Just(0), any::<u32>()],
            prop::collection::vec(any::<u8>(), 0..4096),
        ),
        |(format_tag, channels, rate, bits, fmt_len, data_len, data)| {
            let mut bytes = b"RIFF".to_vec();
            bytes.extend_from_slice(&data_len.saturating_add(36).to_le_bytes());
            bytes.extend_from_slice(b"WAVEfmt ");
            bytes.extend_from_slice(&fmt_len.to_le_bytes());
            bytes.extend_from_slice(&format_tag.to_le_bytes());
            bytes.extend_from_slice(&channels.to_le_bytes());
            bytes.extend_from_slice(&rate.to_le_bytes());
            let block = u32::from(channels).wrapping_mul(u32::from(bits) / 8);
            bytes.extend_from_slice(&rate.wrapping_mul(block).to_le_bytes());
            bytes.extend_from_slice(&(block as u16).to_le_bytes());
            bytes.extend_from_slice(&bits.to_le_bytes());
            if fmt_len > 16 && fmt_len < 64 {
                bytes.resize(bytes.len() + fmt_len as usize - 16, 0);
            }
            bytes.extend_from_slice(b"data");
            bytes.extend_from_slice(&data_len.to_le_bytes());
            bytes.extend(data);
            check_audio(decode_audio(&bytes, "edge.wav"), "edge.wav")?;
            Ok(())
        },
    );
}

#[test]
fn mp4_header_edges() {
    fuzz_budget::fuzz(
        REGRESSIONS,
        (prop::collection::vec(edit_strategy(), 1..12),),
        |(edits,)| {
            let (name, bytes) = &audio_seeds()[4];
            let mut bytes = bytes.clone();
            // The writer puts the index in front: mutate the boxes before `mdat`.
            let mdat = bytes
                .windows(4)
                .position(|w| w == b"mdat")
                .unwrap_or(bytes.len());
            mutate(&mut bytes, &edits, mdat);
            check_audio(decode_audio(&bytes, name), name)?;
            Ok(())
        },
    );
}

#[test]
fn picture_mutated_files() {
    fuzz_budget::fuzz(
        REGRESSIONS,
        (
            0usize..4,
            prop::collection::vec(edit_strategy(), 1..12),
            any::<bool>(),
            any::<Index>(),
        ),
        |(seed, edits, header_only, cut)| {
            let (name, bytes) = &picture_seeds()[seed];
            let mut bytes = bytes.clone();
            let window = if header_only { 256 } else { bytes.len() };
            mutate(&mut bytes, &edits, window);
            let keep = cut.index(bytes.len() + 1).max(bytes.len() / 2);
            bytes.truncate(keep);
            check_picture(&bytes, name)?;
            Ok(())
        },
    );
}

#[test]
fn seeds_decode() {
    for (name, bytes) in audio_seeds() {
        let decoded = decode_audio(bytes, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(decoded.duration_secs() > 0.09, "{name}");
    }
    for (name, bytes) in picture_seeds() {
        decode_image(bytes, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// Inputs that once failed (panicked or misbehaved), replayed every run: `fuzz-corpus/audio/*`
/// through the audio decoder, `fuzz-corpus/picture/*` through picture decode and preprocess.
#[test]
fn corpus_replays() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus");
    let mut replayed = 0;
    for (dir, is_audio) in [("audio", true), ("picture", false)] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap();
            let outcome = if is_audio {
                check_audio(decode_audio(&bytes, &name), &name)
            } else {
                check_picture(&bytes, &name)
            };
            if let Err(e) = outcome {
                panic!("{}: {e}", path.display());
            }
            replayed += 1;
        }
    }
    assert!(replayed > 0, "fuzz-corpus/ holds no input");
}

/// Found by `wav_header_edges`: float PCM holding NaN or infinity decoded to non-finite samples,
/// which would have reached the features and the AAC encoder. Now a typed error.
#[test]
fn float_wav_with_nan_is_refused() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz-corpus/audio/fuzz-float-nan.wav");
    let bytes = std::fs::read(&path).unwrap();
    match decode_audio(&bytes, "nan.wav") {
        Err(MediaError::NonFiniteAudio { name, index: 2 }) => assert_eq!(name, "nan.wav"),
        other => panic!("expected NonFiniteAudio at sample 2, got {other:?}"),
    }
}

/// Found by `wav_header_edges`: a WAV declaring 21846 channels of 24 bits panicked inside
/// symphonia 0.6.1's RIFF reader (`num_channels * (bits / 8)` overflows `u16`). Now refused as
/// unsupported before symphonia reads it.
#[test]
fn wav_with_too_many_channels_is_refused() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz-corpus/audio/fuzz-wav-21846-channels.wav");
    let bytes = std::fs::read(&path).unwrap();
    match decode_audio(&bytes, "many.wav") {
        Err(MediaError::Unsupported { name, reason }) => {
            assert_eq!(name, "many.wav");
            assert!(reason.contains("21846 channels"), "{reason}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}
