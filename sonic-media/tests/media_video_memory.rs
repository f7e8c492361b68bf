//! Peak heap of writing a 60 s, 512x512, 25 fps video with 16 kHz audio, measured by a
//! counting global allocator (this test binary only).
//!
//! Bound: the writer keeps the *encoded* bitstream until `finish` (fast start needs the index
//! before the media data) but never a raw frame. So the peak heap is at most the bytes of the
//! finished file plus a constant (encoder state, one frame in flight, the audio handed over):
//! asserted as `peak <= file size + 8 MiB` and `peak <= 16 MiB`, against the 1.18 GB that
//! the 1500 raw frames would take. (OpenH264's and FDK AAC's own C allocations are outside
//! Rust's allocator; they are fixed-size per encoder.)

use sonic_media::video::{AudioTrack, Mp4Writer, VideoOptions};

#[path = "../../sonic-parity/tests/heap/mod.rs"]
mod heap;

const MIB: usize = 1 << 20;

/// Counts the bytes written without keeping them.
struct CountingSink(u64);

impl std::io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn sixty_seconds_at_512_stay_under_the_bound() {
    let (side, fps, seconds) = (512usize, 25usize, 60usize);
    let frames = fps * seconds;
    // Speech-like audio: a 200 Hz tone with a slow 4 Hz envelope.
    let audio: Vec<f32> = (0..16_000 * seconds)
        .map(|i| {
            let t = i as f32 / 16_000.0;
            0.3 * (t * 200.0 * std::f32::consts::TAU).sin()
                * (t * 4.0 * std::f32::consts::TAU).sin().abs()
        })
        .collect();
    // A static gradient, and a soft bright bar that moves every frame.
    let background: Vec<u8> = (0..side * side * 3)
        .map(|i| ((i / 3 % side + i / 3 / side) / 4) as u8)
        .collect();
    let mut frame = background.clone();

    let baseline = heap::reset_peak();
    let mut writer = Mp4Writer::new(
        CountingSink(0),
        side as u32,
        side as u32,
        &VideoOptions::default(),
        Some(AudioTrack::mono(audio, 16_000)),
    )
    .unwrap();
    for n in 0..frames {
        frame.copy_from_slice(&background);
        let x0 = (n * 2) % (side - 64);
        for y in 200..300 {
            for x in x0..x0 + 64 {
                let edge = (x - x0).min(x0 + 63 - x).min(16) as u32;
                let at = (y * side + x) * 3;
                for c in 0..3 {
                    let v = u32::from(frame[at + c]);
                    frame[at + c] = ((v * (16 - edge) + 230 * edge) / 16) as u8;
                }
            }
        }
        writer.push_frame(&frame).unwrap();
    }
    let summary = writer.finish().unwrap();
    let peak = heap::peak() - baseline;

    assert_eq!(summary.frames as usize, frames);
    let raw = frames * side * side * 3;
    assert!(raw > 1000 * MIB);
    let file = summary.bytes as usize;
    assert!(
        peak <= file + 8 * MIB && peak <= 16 * MIB,
        "peak heap {:.1} MiB for a {:.1} MiB file",
        peak as f64 / MIB as f64,
        file as f64 / MIB as f64
    );
    // Printed only when run with --nocapture; the assertions above are what count.
    println!(
        "peak heap {:.1} MiB, file {:.1} MiB, raw frames {:.0} MiB",
        peak as f64 / MIB as f64,
        file as f64 / MIB as f64,
        raw as f64 / MIB as f64
    );
}
