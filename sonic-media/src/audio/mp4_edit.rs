//! The edit list of an MP4/M4A audio track, read directly from the boxes.
//!
//! symphonia's MP4 reader parses but does not apply edit lists, so AAC priming (1024 samples
//! for ffmpeg's encoder, 2048 for FDK, 2112 for Apple's) would stay in front of the audio and
//! shift it against the video. This module finds the first non-empty edit of the first sound
//! track: its `media_time` is the priming, its `segment_duration` the playable length.

/// The part of an audio track's media timeline that its edit list presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EditWindow {
    /// First presented media tick (the priming), in `media_timescale` units.
    pub media_time: u64,
    /// Ticks per second of the track's media (`mdhd`).
    pub media_timescale: u32,
    /// Presented duration and its timescale (the movie's, `mvhd`), when the edit gives one.
    pub duration: Option<(u64, u32)>,
}

/// Reads the edit window of the first sound track of an MP4 file, if the bytes are an MP4 file
/// that has one. Malformed boxes yield `None`, never a panic.
pub(crate) fn audio_edit_window(bytes: &[u8]) -> Option<EditWindow> {
    let mut top = Boxes::new(bytes);
    let (kind, _) = top.next()?;
    if &kind != b"ftyp" {
        return None;
    }
    let moov = Boxes::new(bytes).find(|(k, _)| k == b"moov")?.1;
    let movie_timescale = Boxes::new(moov)
        .find(|(k, _)| k == b"mvhd")
        .and_then(|(_, b)| timescale_of(b, 12, 20))?;
    Boxes::new(moov)
        .filter(|(k, _)| k == b"trak")
        .find_map(|(_, trak)| sound_track_window(trak, movie_timescale))
}

fn sound_track_window(trak: &[u8], movie_timescale: u32) -> Option<EditWindow> {
    let mdia = child(trak, b"mdia")?;
    let handler = child(mdia, b"hdlr")?;
    if handler.get(8..12)? != b"soun" {
        return None;
    }
    let media_timescale = timescale_of(child(mdia, b"mdhd")?, 12, 20)?;
    let elst = child(child(trak, b"edts")?, b"elst")?;
    let version = *elst.first()?;
    let count = be_u32(elst, 4)? as usize;
    let entry_len = if version == 1 { 20 } else { 12 };
    (0..count.min(64)).find_map(|i| {
        let at = 8 + i * entry_len;
        let (duration, media_time) = if version == 1 {
            (be_u64(elst, at)?, be_u64(elst, at + 8)? as i64)
        } else {
            (
                u64::from(be_u32(elst, at)?),
                i64::from(be_u32(elst, at + 4)? as i32),
            )
        };
        // media_time -1 is an empty edit (a pause before the track starts): not priming.
        (media_time >= 0).then_some(EditWindow {
            media_time: media_time as u64,
            media_timescale,
            duration: (duration > 0).then_some((duration, movie_timescale)),
        })
    })
}

/// The timescale field of a full box (`mvhd`, `mdhd`) at `v0` or `v1` bytes in.
fn timescale_of(full_box: &[u8], v0: usize, v1: usize) -> Option<u32> {
    let at = if *full_box.first()? == 1 { v1 } else { v0 };
    be_u32(full_box, at).filter(|&t| t > 0)
}

fn child<'a>(parent: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    Boxes::new(parent)
        .find(|(k, _)| k == kind)
        .map(|(_, body)| body)
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Iterates the boxes of a byte range: `(type, body)`; stops at the first malformed header.
struct Boxes<'a> {
    rest: &'a [u8],
}

impl<'a> Boxes<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }
}

impl<'a> Iterator for Boxes<'a> {
    type Item = ([u8; 4], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let size32 = be_u32(self.rest, 0)?;
        let kind: [u8; 4] = self.rest.get(4..8)?.try_into().ok()?;
        let (header, size) = match size32 {
            0 => (8, self.rest.len()),
            1 => (16, usize::try_from(be_u64(self.rest, 8)?).ok()?),
            n => (8, n as usize),
        };
        if size < header || size > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let body = &self.rest[header..size];
        self.rest = &self.rest[size..];
        Some((kind, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    fn full(version: u8, fields: &[u32]) -> Vec<u8> {
        let mut out = vec![version, 0, 0, 0];
        for f in fields {
            out.extend_from_slice(&f.to_be_bytes());
        }
        out
    }

    #[test]
    fn finds_priming_and_duration_of_the_sound_track() {
        let hdlr = mp4_box(b"hdlr", &[0, 0, 0, 0, 0, 0, 0, 0, b's', b'o', b'u', b'n']);
        let mdhd = mp4_box(b"mdhd", &full(0, &[0, 0, 44_100, 0]));
        let mdia = mp4_box(b"mdia", &[mdhd, hdlr].concat());
        let elst = mp4_box(b"elst", &full(0, &[1, 1000, 1024, 0x0001_0000]));
        let trak = mp4_box(b"trak", &[mp4_box(b"edts", &elst), mdia].concat());
        let mvhd = mp4_box(b"mvhd", &full(0, &[0, 0, 1000, 0]));
        let file = [
            mp4_box(b"ftyp", b"M4A \0\0\0\0"),
            mp4_box(b"moov", &[mvhd, trak].concat()),
        ]
        .concat();
        assert_eq!(
            audio_edit_window(&file),
            Some(EditWindow {
                media_time: 1024,
                media_timescale: 44_100,
                duration: Some((1000, 1000)),
            })
        );
        // Every truncation parses without panicking.
        for len in 0..file.len() {
            let _ = audio_edit_window(&file[..len]);
        }
    }

    #[test]
    fn non_mp4_bytes_have_no_window() {
        assert_eq!(audio_edit_window(b"RIFF\x24\0\0\0WAVEfmt "), None);
        assert_eq!(audio_edit_window(&[0, 0, 0, 1, 0, 0, 0, 0]), None);
    }
}
