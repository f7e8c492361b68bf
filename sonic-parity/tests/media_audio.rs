//! Audio in: parity with the `log_mel` fixture, every supported format decodes, bad input gives
//! typed errors (including mutated bytes), and the timeline.
//!
//! The compressed test files are made at test time from the fixture's WAV with ffmpeg, so the
//! tests that use them are `#[ignore]`d (`.ci/run` runs them with `--ignored`); run without
//! ffmpeg, they fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{assert_case_passes, golden};
use proptest::prelude::*;
use sonic_media::MediaError;
use sonic_media::audio::{
    AudioTimeline, LogMelExtractor, TimelineOptions, decode_audio, load_speech, resample,
};
use sonic_parity::read_io;

fn speech_wav() -> PathBuf {
    golden("log_mel").join("speech.wav")
}

/// The fixture speech converted by ffmpeg into every supported format (once per test binary).
fn encoded_files() -> &'static Vec<(String, Vec<u8>)> {
    static FILES: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let formats: [(&str, &[&str]); 6] = [
            ("speech.mp3", &["-c:a", "libmp3lame", "-b:a", "64k"]),
            ("speech.flac", &["-c:a", "flac"]),
            ("speech.m4a", &["-c:a", "aac", "-b:a", "64k"]),
            ("speech.aac", &["-c:a", "aac", "-b:a", "64k", "-f", "adts"]),
            ("speech.ogg", &["-c:a", "libvorbis", "-q:a", "4"]),
            // Stereo at 44.1 kHz: exercises the mono mix and a second resampling ratio.
            (
                "speech_stereo_44k.wav",
                &["-ac", "2", "-ar", "44100", "-c:a", "pcm_s16le"],
            ),
        ];
        formats
            .iter()
            .map(|(name, args)| {
                let out = dir.path().join(name);
                ffmpeg(&speech_wav(), args, &out);
                (name.to_string(), std::fs::read(&out).expect("encoded file"))
            })
            .collect()
    })
}

fn ffmpeg(input: &Path, args: &[&str], output: &Path) {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(input)
        .args(args)
        .arg(output)
        .status()
        .expect("ffmpeg must be installed (apt-get install ffmpeg)");
    assert!(status.success(), "ffmpeg failed for {}", output.display());
}

fn reference_waveform() -> Vec<f32> {
    let io = read_io(&golden("log_mel").join("io.safetensors")).unwrap();
    io["waveform_16k"].to_f32_vec()
}

#[test]
fn log_mel_matches_reference() {
    let report = assert_case_passes("log_mel");
    // filters, window, features, audio_len, mp3 length + waveform, wav waveform
    assert_eq!(report.comparisons.len(), 7, "{report}");
}

#[test]
fn resampler_is_close_to_soxr_hq() {
    let ours = load_speech(&std::fs::read(speech_wav()).unwrap(), "speech.wav").unwrap();
    let reference = reference_waveform();
    assert_eq!(ours.len(), reference.len());
    let (mut err, mut sig, mut max) = (0.0f64, 0.0f64, 0.0f32);
    for (a, b) in ours.iter().zip(&reference) {
        err += f64::from(a - b).powi(2);
        sig += f64::from(*b).powi(2);
        max = max.max((a - b).abs());
    }
    let snr = 10.0 * (sig / err).log10();
    assert!(max <= 2.5e-4, "max |error| {max}");
    assert!(snr >= 75.0, "SNR {snr} dB");
    // The log-mel of our waveform vs the reference features: close, but not within the
    // fixture's 5e-4 everywhere (the end-to-end test starts from the recorded features).
    let io = read_io(&golden("log_mel").join("io.safetensors")).unwrap();
    let expected = io["input_features"].to_f32_vec();
    let got = LogMelExtractor::whisper().extract(&ours).data;
    let worst = got
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 3e-3, "log-mel max |error| {worst}");
}

#[test]
#[ignore = "needs ffmpeg: apt-get install ffmpeg"]
fn every_format_decodes_to_the_same_speech() {
    let wav = decode_audio(&std::fs::read(speech_wav()).unwrap(), "speech.wav").unwrap();
    assert_eq!(
        (wav.sample_rate, wav.channels, wav.samples.len()),
        (22_050, 1, 58_688)
    );
    let reference = resample(&wav.samples, wav.sample_rate, 16_000).unwrap();
    for (name, bytes) in encoded_files() {
        let decoded = decode_audio(bytes, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let speech = resample(&decoded.samples, decoded.sample_rate, 16_000).unwrap();
        let expected_channels = if name.contains("stereo") { 2 } else { 1 };
        assert_eq!(decoded.channels, expected_channels, "{name}");
        // Priming is trimmed: every container gives the WAV's length, except raw ADTS, which
        // carries no priming information (ffmpeg's encoder primes with 1024 samples).
        // (M4A: the edit list's duration is in ffmpeg's 1 ms movie timescale: +-16 samples.
        // ADTS: 1024 samples of priming in front, up to one frame of padding behind.)
        let len_16k = speech.len() as i64;
        let (low, high) = if name.ends_with(".aac") {
            (
                reference.len() as i64 + 743,
                reference.len() as i64 + 2 * 743 + 16,
            )
        } else {
            (reference.len() as i64 - 16, reference.len() as i64 + 16)
        };
        assert!(
            (low..=high).contains(&len_16k),
            "{name}: {len_16k} samples at 16 kHz, expected {low}..={high}"
        );
        // Same content, aligned: high correlation at lag 0 (lossy codecs lose the highs).
        let lead = if name.ends_with(".aac") { 743 } else { 0 };
        let (mut xy, mut xx, mut yy) = (0.0f64, 0.0f64, 0.0f64);
        for (a, b) in speech[lead..].iter().zip(&reference) {
            xy += f64::from(*a) * f64::from(*b);
            xx += f64::from(*a).powi(2);
            yy += f64::from(*b).powi(2);
        }
        let correlation = xy / (xx * yy).sqrt();
        assert!(correlation > 0.95, "{name}: correlation {correlation}");
    }
}

#[test]
#[ignore = "needs ffmpeg: apt-get install ffmpeg"]
fn m4a_priming_is_trimmed() {
    let wav = decode_audio(&std::fs::read(speech_wav()).unwrap(), "speech.wav").unwrap();
    let (_, m4a) = encoded_files()
        .iter()
        .find(|(n, _)| n == "speech.m4a")
        .unwrap();
    let decoded = decode_audio(m4a, "speech.m4a").unwrap();
    // The priming (1024 samples for ffmpeg's encoder) is cut exactly; the end is cut at the
    // edit list's duration, which ffmpeg writes in milliseconds (so within 1 ms = 22 samples).
    let extra = decoded.samples.len() as i64 - wav.samples.len() as i64;
    assert!((0..=22).contains(&extra), "{extra} extra samples");
    // Aligned at the start: the best lag of the cross-correlation is 0.
    let lag_error = |lag: usize| -> f64 {
        (2000..50_000)
            .map(|i| f64::from(decoded.samples[i + lag] - wav.samples[i]).powi(2))
            .sum()
    };
    let best = (0..40).min_by(|&a, &b| lag_error(a).total_cmp(&lag_error(b)));
    assert_eq!(best, Some(0));
}

#[test]
#[ignore = "needs ffmpeg: apt-get install ffmpeg"]
fn bad_input_gives_typed_errors() {
    assert!(matches!(
        decode_audio(&[], "empty.wav"),
        Err(MediaError::Empty { .. })
    ));
    let png = std::fs::read(golden("clip_vision").join("portrait.png")).unwrap();
    assert!(matches!(
        decode_audio(&png, "portrait.png"),
        Err(MediaError::Unsupported { .. })
    ));
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert!(matches!(
        decode_audio(&noise, "noise.bin"),
        Err(MediaError::Unsupported { .. })
    ));
    // A WAV cut inside its header, and one whose format chunk is garbage.
    let wav = std::fs::read(speech_wav()).unwrap();
    let cut = decode_audio(&wav[..30], "cut.wav").unwrap_err();
    assert!(
        matches!(
            cut,
            MediaError::AudioDecode { .. } | MediaError::Unsupported { .. }
        ),
        "{cut}"
    );
    let mut bad_fmt = wav.clone();
    bad_fmt[20..36].fill(0xff);
    let err = decode_audio(&bad_fmt, "bad.wav").unwrap_err();
    assert!(err.to_string().contains("bad.wav"), "{err}");
    // Truncated compressed files: a typed error or fewer samples, never a panic.
    for (name, bytes) in encoded_files() {
        for keep in [bytes.len() / 3, bytes.len() / 2, bytes.len() - 7] {
            match decode_audio(&bytes[..keep], name) {
                Ok(d) => assert!(!d.samples.is_empty()),
                Err(e) => assert!(e.to_string().contains(name.as_str()), "{e}"),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Mutated bytes (flipped, zeroed, cut) never panic a decoder.
    #[test]
    #[ignore = "needs ffmpeg: apt-get install ffmpeg"]
    fn mutated_files_never_panic(
        file in 0usize..6,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..24),
        cut in any::<prop::sample::Index>(),
    ) {
        let (name, bytes) = &encoded_files()[file];
        let mut bytes = bytes.clone();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let keep = cut.index(bytes.len()).max(1);
        let result = decode_audio(&bytes[..keep], name);
        if let Err(e) = result {
            prop_assert!(e.to_string().contains(name.as_str()));
        }
    }
}

#[test]
fn timeline_of_the_fixture_speech() {
    let waveform = reference_waveform();
    let timeline = AudioTimeline::new(waveform.len(), &TimelineOptions::default()).unwrap();
    assert_eq!(timeline.audio_len(), 66);
    assert_eq!(timeline.generated_frames(), 33);
    assert_eq!(timeline.output_frames(true), 65);
    // A 0.25 s lip-sync offset delays the features by exactly 25 log-mel frames (10 ms hop).
    let shifted = AudioTimeline::new(
        waveform.len(),
        &TimelineOptions {
            lip_sync_offset: 0.25,
            ..Default::default()
        },
    )
    .unwrap();
    let extractor = LogMelExtractor::whisper();
    let base = extractor.extract(&timeline.model_waveform(&waveform));
    let late = extractor.extract(&shifted.model_waveform(&waveform));
    let frames = base.n_frames;
    // Compare one mel band in the middle of the speech, away from the chunk's edges.
    let band = 20;
    for t in 100..200 {
        let a = base.data[band * frames + t];
        let b = late.data[band * frames + t + 25];
        assert!((a - b).abs() < 1e-4, "frame {t}: {a} vs {b}");
    }
}
