//! Video out: a written MP4 is checked with ffprobe/ffmpeg (streams, frame count, fps, duration,
//! PSNR of the frames, the position of a click in the audio) and played to the end by headless
//! Chromium. The tests need `ffmpeg` (with ffprobe) or `chromium`, so they are `#[ignore]`d
//! (run them with `cargo test -p sonic-media --test media_video -- --ignored`; `.ci/run` does);
//! run without the program, they fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use sonic_media::MediaError;
use sonic_media::video::{AudioTrack, Mp4Writer, VideoOptions, VideoQuality, VideoSummary};

const RATE: u32 = 16_000;

/// A smooth moving picture like a face video: a gradient background and a soft bright blob
/// drifting right.
fn frame(index: usize, width: usize, height: usize) -> Vec<u8> {
    let mut rgb = vec![0u8; width * height * 3];
    let cx = 16.0 + (index as f64 * 1.5) % (width as f64 - 32.0).max(1.0);
    let cy = height as f64 / 2.0;
    for y in 0..height {
        for x in 0..width {
            let at = (y * width + x) * 3;
            let d2 = (x as f64 - cx).powi(2) + (y as f64 - cy).powi(2);
            let blob = (-d2 / 120.0).exp();
            let base = [
                40.0 + 150.0 * x as f64 / width as f64,
                60.0 + 120.0 * y as f64 / height as f64,
                120.0,
            ];
            let glow = [230.0, 190.0, 150.0];
            for c in 0..3 {
                rgb[at + c] = (base[c] * (1.0 - blob) + glow[c] * blob).round() as u8;
            }
        }
    }
    rgb
}

/// Speech-like silence with one click (a 1 ms 4 kHz burst) starting at `click_at` seconds.
fn click_track(seconds: f64, click_at: f64) -> Vec<f32> {
    let len = (seconds * f64::from(RATE)) as usize;
    let start = (click_at * f64::from(RATE)) as usize;
    let mut samples = vec![0.0f32; len];
    for i in 0..16 {
        let phase = 2.0 * std::f64::consts::PI * 4000.0 * i as f64 / f64::from(RATE);
        samples[start + i] = (0.9 * phase.sin()) as f32;
    }
    samples
}

fn write(
    path: &Path,
    frames: usize,
    (width, height): (usize, usize),
    options: &VideoOptions,
    audio: Option<AudioTrack>,
) -> (VideoSummary, Vec<Vec<u8>>) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut writer = Mp4Writer::new(file, width as u32, height as u32, options, audio).unwrap();
    let mut written = Vec::new();
    for i in 0..frames {
        let rgb = frame(i, width, height);
        writer.push_frame(&rgb).unwrap();
        written.push(rgb);
    }
    (writer.finish().unwrap(), written)
}

fn tool(name: &str) -> Command {
    let mut c = Command::new(name);
    c.args(["-hide_banner", "-loglevel", "error"]);
    c
}

fn run(mut command: Command, what: &str) -> Vec<u8> {
    let out = command.output().unwrap_or_else(|e| {
        panic!("{what}: cannot run ({e}); install ffmpeg: apt-get install ffmpeg")
    });
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn ffprobe(path: &Path) -> serde_json::Value {
    let mut c = tool("ffprobe");
    c.args([
        "-count_frames",
        "-show_streams",
        "-show_format",
        "-of",
        "json",
    ])
    .arg(path);
    serde_json::from_slice(&run(c, "ffprobe")).unwrap()
}

fn decoded_frames(path: &Path, width: usize, height: usize) -> Vec<Vec<u8>> {
    let mut c = tool("ffmpeg");
    c.arg("-i")
        .arg(path)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]);
    run(c, "ffmpeg video decode")
        .chunks_exact(width * height * 3)
        .map(<[u8]>::to_vec)
        .collect()
}

fn decoded_audio(path: &Path) -> Vec<f32> {
    let mut c = tool("ffmpeg");
    c.arg("-i")
        .arg(path)
        .args(["-vn", "-f", "s16le", "-ac", "1", "-ar", "16000", "-"]);
    run(c, "ffmpeg audio decode")
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect()
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0f64.powi(2) / mse.max(1e-12)).log10()
}

fn top_level_boxes(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push(String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned());
        if size < 8 {
            break;
        }
        at += size;
    }
    out
}

struct Written {
    _dir: tempfile::TempDir,
    path: PathBuf,
    summary: VideoSummary,
    frames: Vec<Vec<u8>>,
}

/// 60 frames (2.4 s at 25 fps) of 96x64 with a click at 1.0 s in 3 s of 16 kHz audio.
fn standard_video() -> Written {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.mp4");
    let audio = AudioTrack::mono(click_track(3.0, 1.0), RATE);
    let (summary, frames) = write(&path, 60, (96, 64), &VideoOptions::default(), Some(audio));
    Written {
        _dir: dir,
        path,
        summary,
        frames,
    }
}

#[test]
#[ignore = "needs ffmpeg: apt-get install ffmpeg"]
fn ffprobe_sees_h264_and_aac_with_the_right_timing() {
    let v = standard_video();
    assert_eq!(v.summary.frames, 60);
    assert_eq!(
        v.summary.audio_delay_samples, 2048,
        "FDK AAC-LC delay at 16 kHz"
    );
    let probe = ffprobe(&v.path);
    let streams = probe["streams"].as_array().unwrap();
    let video = streams.iter().find(|s| s["codec_type"] == "video").unwrap();
    let audio = streams.iter().find(|s| s["codec_type"] == "audio").unwrap();
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(video["width"], 96);
    assert_eq!(video["height"], 64);
    assert_eq!(video["r_frame_rate"], "25/1");
    assert_eq!(video["nb_read_frames"], "60");
    let video_duration: f64 = video["duration"].as_str().unwrap().parse().unwrap();
    assert!(
        (video_duration - 2.4).abs() < 1e-3,
        "video {video_duration} s"
    );
    assert_eq!(audio["codec_name"], "aac");
    assert_eq!(audio["sample_rate"], "16000");
    assert_eq!(audio["channels"], 1);
    // The audio is cut at the video's end (to whole 64 ms AAC frames): 2.4 s -> 37 frames.
    let audio_duration: f64 = audio["duration"].as_str().unwrap().parse().unwrap();
    assert!(
        audio_duration <= 2.4 + 1e-3 && audio_duration > 2.4 - 0.064,
        "audio {audio_duration} s"
    );
    assert_eq!(v.summary.audio_frames, 37);
    let total: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((total - 2.4).abs() < 1e-3, "file {total} s");
    // Fast start: the index comes before the media data.
    let boxes = top_level_boxes(&std::fs::read(&v.path).unwrap());
    let moov = boxes.iter().position(|b| b == "moov").unwrap();
    let mdat = boxes.iter().position(|b| b == "mdat").unwrap();
    assert_eq!(boxes[0], "ftyp");
    assert!(moov < mdat, "{boxes:?}");
}

#[test]
#[ignore = "needs ffmpeg: apt-get install ffmpeg"]
fn decoded_frames_are_close_to_the_written_ones() {
    let v = standard_video();
    let decoded = decoded_frames(&v.path, 96, 64);
    assert_eq!(decoded.len(), v.frames.len());
    let worst = decoded
        .iter()
        .zip(&v.frames)
        .map(|(d, w)| psnr(d, w))
        .fold(f64::INFINITY, f64::min);
    assert!(worst > 38.0, "worst frame PSNR {worst:.1} dB");
}

#[test]
#[ignore = "needs ffmpeg: apt-get install ffmpeg"]
fn the_click_lands_where_it_was_put() {
    let v = standard_video();
    let audio = decoded_audio(&v.path);
    let (peak, _) = audio.iter().enumerate().fold((0, 0.0f32), |best, (i, &s)| {
        if s.abs() > best.1 { (i, s.abs()) } else { best }
    });
    let at = peak as f64 / f64::from(RATE);
    // The burst's largest sample is within its first millisecond.
    assert!(
        (at - 1.0005).abs() < 0.005,
        "click decoded at {at:.4} s, put at 1.0000 s"
    );
}

#[test]
#[ignore = "needs ffmpeg: apt-get install ffmpeg"]
fn short_audio_is_padded_with_silence_to_the_video_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.mp4");
    // 0.5 s of sound under 2 s of video, at 44.1 kHz stereo.
    let samples: Vec<f32> = (0..22_050 * 2)
        .map(|i| ((i / 2) as f32 * 0.05).sin() * 0.5)
        .collect();
    let audio = AudioTrack {
        samples,
        sample_rate: 44_100,
        channels: 2,
    };
    let (summary, _) = write(&path, 50, (64, 64), &VideoOptions::default(), Some(audio));
    // 2 s at 44.1 kHz = 88200 samples = 86 whole AAC frames.
    assert_eq!(summary.audio_frames, 86);
    let probe = ffprobe(&path);
    let audio = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .unwrap()
        .clone();
    assert_eq!(audio["channels"], 2);
    assert_eq!(audio["sample_rate"], "44100");
}

#[test]
#[ignore = "needs ffmpeg: apt-get install ffmpeg"]
fn quality_setting_trades_size_for_fidelity() {
    let dir = tempfile::tempdir().unwrap();
    let sizes: Vec<(u64, f64)> = [VideoQuality::HIGH, VideoQuality::LOW]
        .iter()
        .map(|&quality| {
            let path = dir.path().join(format!("q{}.mp4", quality.0));
            let options = VideoOptions {
                quality,
                ..Default::default()
            };
            let (summary, frames) = write(&path, 25, (64, 64), &options, None);
            let decoded = decoded_frames(&path, 64, 64);
            let mean = decoded
                .iter()
                .zip(&frames)
                .map(|(d, w)| psnr(d, w))
                .sum::<f64>()
                / 25.0;
            (summary.bytes, mean)
        })
        .collect();
    assert!(sizes[0].0 > sizes[1].0, "{sizes:?}");
    assert!(sizes[0].1 > sizes[1].1, "{sizes:?}");
}

#[test]
#[ignore = "needs ffmpeg: apt-get install ffmpeg"]
fn odd_sizes_fps_and_bad_frames() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.mp4");
    let options = VideoOptions {
        fps: 12.5,
        ..Default::default()
    };
    // 65x49 frames are cropped to 64x48.
    let file = std::fs::File::create(&path).unwrap();
    let mut writer = Mp4Writer::new(file, 65, 49, &options, None).unwrap();
    let err = writer.push_frame(&[0u8; 10]).unwrap_err();
    assert!(
        matches!(err, MediaError::FrameSize { index: 0, .. }),
        "{err}"
    );
    for i in 0..5 {
        let mut rgb = frame(i, 65, 49);
        rgb.truncate(65 * 49 * 3);
        writer.push_frame(&rgb).unwrap();
    }
    let summary = writer.finish().unwrap();
    assert_eq!((summary.width, summary.height, summary.frames), (64, 48, 5));
    let probe = ffprobe(&path);
    let video = &probe["streams"][0];
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(64), Some(48))
    );
    assert_eq!(video["r_frame_rate"], "25/2");
    for bad in [
        VideoOptions {
            fps: 0.0,
            ..Default::default()
        },
        VideoOptions {
            quality: VideoQuality(52),
            ..Default::default()
        },
    ] {
        assert!(matches!(
            Mp4Writer::new(Vec::new(), 64, 64, &bad, None),
            Err(MediaError::InvalidParameter { .. })
        ));
    }
    assert!(Mp4Writer::new(Vec::new(), 1, 64, &VideoOptions::default(), None).is_err());
    let stereo_ragged = AudioTrack {
        samples: vec![0.0; 3],
        sample_rate: RATE,
        channels: 2,
    };
    assert!(
        Mp4Writer::new(
            Vec::new(),
            64,
            64,
            &VideoOptions::default(),
            Some(stereo_ragged)
        )
        .is_err()
    );
}

/// Serves `files` on 127.0.0.1 until a request for `/result?...` arrives; returns the port and
/// a receiver for that query string.
fn serve(
    files: Vec<(&'static str, &'static str, Vec<u8>)>,
) -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(200) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            if let Some(query) = path.strip_prefix("/result?") {
                let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
                let _ = tx.send(query.to_string());
                return;
            }
            match files.iter().find(|(name, _, _)| path == format!("/{name}")) {
                Some((_, mime, body)) => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {mime}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(body);
                }
                None => {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
            }
        }
    });
    (port, rx)
}

#[test]
#[ignore = "needs chromium: apt-get install chromium"]
fn chromium_plays_the_video_to_the_end() {
    let v = standard_video();
    let page = r#"<!doctype html><html><body>
<video id="v" src="out.mp4" muted playsinline preload="auto"></video>
<script>
const v = document.getElementById('v');
const report = m => fetch('/result?' + encodeURIComponent(m));
v.addEventListener('error', () => report('error ' + (v.error && v.error.code)));
v.addEventListener('ended', () => report('ended ' + v.duration + ' ' + v.currentTime));
v.addEventListener('loadedmetadata', () => v.play().catch(e => report('play-failed ' + e)));
</script></body></html>"#;
    let (port, result) = serve(vec![
        ("play.html", "text/html", page.as_bytes().to_vec()),
        ("out.mp4", "video/mp4", std::fs::read(&v.path).unwrap()),
    ]);
    let profile = tempfile::tempdir().unwrap();
    let mut chromium = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--autoplay-policy=no-user-gesture-required",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://127.0.0.1:{port}/play.html"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromium must be installed (apt-get install chromium)");
    let outcome = result.recv_timeout(std::time::Duration::from_secs(60));
    let _ = chromium.kill();
    let _ = chromium.wait();
    let outcome = outcome.expect("Chromium reported nothing within 60 s");
    let outcome = outcome.replace("%20", " ");
    let mut words = outcome.split(' ');
    assert_eq!(words.next(), Some("ended"), "playback: {outcome}");
    let duration: f64 = words.next().unwrap().parse().unwrap();
    let position: f64 = words.next().unwrap().parse().unwrap();
    assert!(
        (duration - 2.4).abs() < 0.01,
        "Chromium reports {duration} s"
    );
    assert!(
        (position - 2.4).abs() < 0.05,
        "playback stopped at {position} s"
    );
}
