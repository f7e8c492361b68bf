//! Hostile inputs refused from their headers: a decompression-bomb PNG and lying WAVs are
//! refused with a typed error in under 2 s and under 200 MiB of peak heap (a counting global
//! allocator, this binary only); a stream whose header says nothing stops at the duration
//! limit; a truncated WAV decodes as far as it goes; a very short clip is refused.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sonic_media::audio::{decode_audio, decode_audio_with, load_speech};
use sonic_media::image::{decode_image, decode_image_with};
use sonic_media::{AudioLimits, ImageLimits, LongAudio, MediaError, PictureLimit};

#[path = "../../sonic-parity/tests/heap/mod.rs"]
mod heap;

const MIB: usize = 1 << 20;
/// The bounds of the issue: a refused input costs less than this heap and this time.
const HEAP_BOUND: usize = 200 * MIB;
const TIME_BOUND: Duration = Duration::from_secs(2);

/// The heap counters are process-wide: the tests of this binary run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `f`, returning its result, the peak heap above the baseline and the time it took.
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize, Duration) {
    let base = heap::reset_peak();
    let start = Instant::now();
    let out = f();
    let elapsed = start.elapsed();
    (out, heap::peak().saturating_sub(base), elapsed)
}

fn assert_cheap(what: &str, peak: usize, elapsed: Duration) {
    assert!(
        peak < HEAP_BOUND,
        "{what}: peak heap {} MiB, bound {} MiB",
        peak / MIB,
        HEAP_BOUND / MIB
    );
    assert!(
        elapsed < TIME_BOUND,
        "{what}: took {elapsed:?}, bound {TIME_BOUND:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// A real decompression bomb: a valid PNG of `side` x `side` black RGB pixels. The image data
// (a zero filter byte and `3 side` zero bytes per row) is one dynamic-Huffman deflate block in
// which a match of 258 bytes at distance 1 costs 2 bits, so 20000 x 20000 pixels (1.2 GB) take
// about 1.2 MB. Built by hand so that making it costs nothing either.

struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn new() -> Self {
        Self {
            out: Vec::new(),
            acc: 0,
            n: 0,
        }
    }
    /// `count` bits of `value`, least significant first (deflate's header fields).
    fn put(&mut self, value: u64, count: u32) {
        self.acc |= value << self.n;
        self.n += count;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }
    /// A Huffman code, most significant bit first.
    fn code(&mut self, code: u64, len: u32) {
        for i in (0..len).rev() {
            self.put((code >> i) & 1, 1);
        }
    }
    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// A raw deflate stream of `total` zero bytes.
fn deflate_zeros(total: u64) -> Vec<u8> {
    let mut b = Bits::new();
    b.put(1, 1); // last block
    b.put(2, 2); // dynamic Huffman
    b.put(29, 5); // HLIT: 286 literal/length codes
    b.put(1, 5); // HDIST: 2 distance codes
    b.put(14, 4); // HCLEN: 18 code-length codes
    // Code-length code lengths, in deflate's order 16 17 18 0 8 7 9 6 10 5 11 4 12 3 13 2 14 1:
    // symbol 18 (a run of zeros) gets 1 bit, symbols 1 and 2 get 2 bits.
    for len in [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2] {
        b.put(len, 3);
    }
    // Canonical codes of that alphabet: 18 -> 0, 1 -> 10, 2 -> 11.
    let (run, one, two) = ((0, 1), (0b10, 2), (0b11, 2));
    let zeros = |b: &mut Bits, count: u64| {
        b.code(run.0, run.1);
        b.put(count - 11, 7);
    };
    // Literal/length lengths: 0 -> 2, 1..=255 -> 0, 256 -> 2, 257..=284 -> 0, 285 -> 1.
    b.code(two.0, two.1);
    zeros(&mut b, 138);
    zeros(&mut b, 117);
    b.code(two.0, two.1);
    zeros(&mut b, 28);
    b.code(one.0, one.1);
    // Distance lengths: codes 0 and 1 -> 1 bit.
    b.code(one.0, one.1);
    b.code(one.0, one.1);
    // Canonical codes: 285 (length 258) -> 0, literal 0 -> 10, end -> 11; distance 1 -> 0.
    b.code(0b10, 2);
    let mut left = total - 1;
    while left >= 258 {
        b.put(0, 2);
        left -= 258;
    }
    for _ in 0..left {
        b.code(0b10, 2);
    }
    b.code(0b11, 2);
    b.finish()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = png.len();
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = crc32(&png[start..]);
    png.extend_from_slice(&crc.to_be_bytes());
}

fn black_png(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no interlace
    chunk(&mut png, b"IHDR", &ihdr);
    let total = u64::from(height) * (1 + 3 * u64::from(width));
    let mut zlib = vec![0x78, 0x01];
    zlib.extend(deflate_zeros(total));
    let adler = ((total % 65_521) << 16) | 1; // Adler-32 of zeros: a = 1, b = n
    zlib.extend_from_slice(&(adler as u32).to_be_bytes());
    chunk(&mut png, b"IDAT", &zlib);
    chunk(&mut png, b"IEND", &[]);
    png
}

#[test]
fn the_bomb_generator_makes_valid_pictures() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (w, h) in [(1, 1), (64, 48), (300, 7)] {
        let picture = decode_image(&black_png(w, h), "black.png").unwrap();
        assert_eq!(picture.dimensions(), (w, h));
        assert!(picture.pixels().all(|p| p.0 == [0, 0, 0]));
    }
}

#[test]
fn a_png_bomb_is_refused_from_its_header() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bomb = black_png(20_000, 20_000);
    assert!(
        (1_000_000..1_300_000).contains(&bomb.len()),
        "{} bytes",
        bomb.len()
    );
    let (result, peak, elapsed) = measured(|| decode_image(&bomb, "bomb.png"));
    assert_cheap("bomb.png", peak, elapsed);
    match result {
        Err(MediaError::PictureTooLarge {
            name,
            width: 20_000,
            height: 20_000,
            limit: PictureLimit::Width(8192),
        }) => assert_eq!(name, "bomb.png"),
        other => panic!("expected PictureTooLarge, got {other:?}"),
    }
    // Under the side limits but over the pixel count: refused the same way, naming that limit.
    let wide = black_png(8000, 6000);
    let err = decode_image(&wide, "wide.png").unwrap_err();
    assert!(
        matches!(
            err,
            MediaError::PictureTooLarge {
                limit: PictureLimit::Pixels(40_000_000),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("8000x6000"), "{err}");
    // The limits are the caller's: a smaller cap refuses a small picture, a larger one admits.
    let small = black_png(640, 480);
    let tight = ImageLimits::default().with_max_size(512, 512);
    assert!(matches!(
        decode_image_with(&small, "small.png", &tight),
        Err(MediaError::PictureTooLarge {
            limit: PictureLimit::Width(512),
            ..
        })
    ));
    assert!(decode_image_with(&small, "small.png", &ImageLimits::default()).is_ok());
}

// ---------------------------------------------------------------------------------------------
// WAVs with chosen headers.

/// A 16-bit PCM mono WAV whose RIFF and data chunk lengths say `declared_bytes` of data, holding
/// `data` (which may be shorter or longer than declared). `u32::MAX` is a streamed WAV's "unknown".
fn wav(rate: u32, declared_bytes: u32, data: &[i16]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    let riff = if declared_bytes == u32::MAX {
        u32::MAX
    } else {
        declared_bytes.saturating_add(36)
    };
    out.extend_from_slice(&riff.to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&declared_bytes.to_le_bytes());
    for s in data {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

fn tone(samples: usize, rate: u32) -> Vec<i16> {
    (0..samples)
        .map(|i| {
            let t = i as f32 / rate as f32;
            (8000.0 * (t * 220.0 * std::f32::consts::TAU).sin()) as i16
        })
        .collect()
}

#[test]
fn a_wav_declaring_4000_s_is_refused_from_its_header() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // 8 KB: 4000 samples at 1 Hz, i.e. 4000 s (64 million samples once at 16 kHz).
    let slow = wav(1, 8000, &tone(4000, 1));
    assert!(slow.len() < 8200);
    let (result, peak, elapsed) = measured(|| load_speech(&slow, "slow.wav"));
    assert_cheap("slow.wav", peak, elapsed);
    match result {
        Err(MediaError::SampleRate {
            rate: 1, min: 4000, ..
        }) => {}
        other => panic!("expected SampleRate, got {other:?}"),
    }
    // The same file with the sample-rate floor lifted: refused on its declared duration.
    let any_rate = AudioLimits::default().with_sample_rates(1, 384_000);
    let (result, peak, elapsed) = measured(|| decode_audio_with(&slow, "slow.wav", &any_rate));
    assert_cheap("slow.wav (any rate)", peak, elapsed);
    match result {
        Err(MediaError::AudioTooLong {
            seconds,
            declared: true,
            limit_secs,
            ..
        }) => {
            assert_eq!((seconds, limit_secs), (4000.0, 400.0));
        }
        other => panic!("expected AudioTooLong, got {other:?}"),
    }
    // 8 KB at 16 kHz whose header declares 4000 s (128 MB of data): refused before decoding.
    let liar = wav(16_000, 128_000_000, &tone(4000, 16_000));
    let (result, peak, elapsed) = measured(|| load_speech(&liar, "liar.wav"));
    assert_cheap("liar.wav", peak, elapsed);
    let err = result.unwrap_err();
    assert!(
        matches!(err, MediaError::AudioTooLong { declared: true, seconds, .. } if seconds == 4000.0),
        "{err:?}"
    );
    assert!(err.to_string().contains("liar.wav"), "{err}");
    assert!(err.to_string().contains("400 s"), "{err}");
}

#[test]
fn a_stream_without_a_length_stops_at_the_limit() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // A streamed WAV (lengths u32::MAX, "unknown") holding 4000 s at 4 kHz.
    let rate = 4000;
    let stream = wav(rate, u32::MAX, &tone(4000 * rate as usize, rate));
    let (result, peak, elapsed) = measured(|| decode_audio(&stream, "stream.wav"));
    assert_cheap("stream.wav", peak, elapsed);
    match result {
        Err(MediaError::AudioTooLong {
            declared: false,
            seconds,
            ..
        }) => assert!((400.0..401.0).contains(&seconds), "{seconds}"),
        other => panic!("expected AudioTooLong, got {other:?}"),
    }
    // Asked to cut instead: the first 400 s, and the result says it was cut.
    let cut = AudioLimits::default().with_long_audio(LongAudio::Cut);
    let (result, peak, elapsed) = measured(|| decode_audio_with(&stream, "stream.wav", &cut));
    assert_cheap("stream.wav (cut)", peak, elapsed);
    let decoded = result.unwrap();
    assert_eq!(decoded.samples.len(), 400 * rate as usize);
    assert_eq!(decoded.truncated_at_secs, Some(400.0));
    // A file that declares its length and is over it is cut the same way.
    let long = wav(rate, 2 * 500 * rate, &tone(500 * rate as usize, rate));
    let decoded = decode_audio_with(&long, "long.wav", &cut).unwrap();
    assert_eq!(decoded.samples.len(), 400 * rate as usize);
    assert_eq!(decoded.truncated_at_secs, Some(400.0));
    // Under the limit nothing is cut, and the result says so.
    let short = wav(16_000, 32_000, &tone(16_000, 16_000));
    let decoded = decode_audio_with(&short, "short.wav", &cut).unwrap();
    assert_eq!(decoded.samples.len(), 16_000);
    assert_eq!(decoded.truncated_at_secs, None);
}

#[test]
fn a_truncated_wav_decodes_as_far_as_it_goes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Declares 2 s at 16 kHz, holds 1 s and half a sample.
    let mut cut = wav(16_000, 64_000, &tone(16_000, 16_000));
    cut.push(0x12);
    let decoded = decode_audio(&cut, "cut.wav").unwrap();
    assert_eq!(decoded.sample_rate, 16_000);
    let expected: Vec<f32> = tone(16_000, 16_000)
        .iter()
        .map(|&s| f32::from(s) / 32768.0)
        .collect();
    // Whole packets are kept; at most the last partial packet is lost.
    assert!(
        decoded.samples.len() <= 16_000 && decoded.samples.len() >= 16_000 - 4096,
        "{} samples",
        decoded.samples.len()
    );
    assert_eq!(decoded.samples[..], expected[..decoded.samples.len()]);
    assert_eq!(decoded.truncated_at_secs, None);
    // Cut inside the header: nothing to decode, a typed error.
    let err = decode_audio(&cut[..30], "cut.wav").unwrap_err();
    assert!(
        matches!(
            err,
            MediaError::AudioDecode { .. } | MediaError::Unsupported { .. }
        ),
        "{err:?}"
    );
}

#[test]
fn a_clip_shorter_than_the_minimum_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // 0.1 s: the video would last 3 frames at 25 fps and its audio track hold no AAC frame.
    let clip = wav(16_000, 3200, &tone(1600, 16_000));
    match decode_audio(&clip, "blip.wav") {
        Err(MediaError::AudioTooShort {
            name,
            seconds,
            min_secs,
        }) => {
            assert_eq!(name, "blip.wav");
            assert!((seconds - 0.1).abs() < 1e-9, "{seconds}");
            assert_eq!(min_secs, 0.2);
        }
        other => panic!("expected AudioTooShort, got {other:?}"),
    }
    let err = load_speech(&clip, "blip.wav").unwrap_err();
    assert!(err.to_string().contains("0.2 s"), "{err}");
    // The caller may lower the minimum.
    let any = AudioLimits::default().with_min_duration_secs(0.0);
    assert_eq!(
        decode_audio_with(&clip, "blip.wav", &any)
            .unwrap()
            .samples
            .len(),
        1600
    );
}

/// The minimum is enough: a clip of exactly 0.2 s, at the lowest AAC rate the track keeps
/// (8 kHz) and at 16 kHz, gives an MP4 (25 fps, as many frames as the pipeline writes) whose
/// audio track decodes to samples.
#[test]
fn a_clip_at_the_minimum_has_an_audio_track() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use sonic_media::video::{AudioTrack, Mp4Writer, VideoOptions};
    for rate in [8000u32, 16_000] {
        let n = (0.2 * f64::from(rate)) as usize;
        let clip = wav(rate, 2 * n as u32, &tone(n, rate));
        let decoded = decode_audio(&clip, "min.wav").unwrap();
        let frames = (decoded.duration_secs() * 25.0).round() as usize;
        let mut mp4 = Vec::new();
        let mut writer = Mp4Writer::new(
            std::io::Cursor::new(&mut mp4),
            32,
            32,
            &VideoOptions::default(),
            Some(AudioTrack::mono(decoded.samples, rate)),
        )
        .unwrap();
        for _ in 0..frames {
            writer.push_frame(&[90u8; 32 * 32 * 3]).unwrap();
        }
        let summary = writer.finish().unwrap();
        assert!(summary.audio_frames >= 1, "{rate} Hz: {summary:?}");
        let track = decode_audio_with(
            &mp4,
            "min.mp4",
            &AudioLimits::default().with_min_duration_secs(0.0),
        )
        .unwrap();
        assert!(
            track.samples.len() >= 1024,
            "{rate} Hz: {}",
            track.samples.len()
        );
    }
}
