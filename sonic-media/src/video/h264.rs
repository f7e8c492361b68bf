//! H.264 encoding of RGB frames with OpenH264 (built from its bundled source).

use openh264::OpenH264API;
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, QpRange,
    RateControlMode, UsageType, VuiConfig,
};
use openh264::formats::YUVSlices;

use crate::MediaError;

/// One encoded access unit (Annex B byte stream).
pub(crate) struct EncodedFrame {
    pub data: Vec<u8>,
    pub keyframe: bool,
}

/// An OpenH264 encoder fed with RGB frames of a fixed (even) size.
pub(crate) struct H264Encoder {
    encoder: Encoder,
    yuv: Vec<u8>,
    width: usize,
    height: usize,
}

impl H264Encoder {
    /// Every frame is coded at quantiser `qp` (0 best .. 51 worst); one keyframe every
    /// `keyframe_interval` frames so players can seek.
    pub fn new(
        width: u32,
        height: u32,
        fps: f64,
        qp: u8,
        keyframe_interval: u32,
    ) -> Result<Self, MediaError> {
        // Quality-mode rate control pinned to one QP, with a bit budget far above what any QP
        // >= 10 needs at these sizes, so it never has to skip a frame. (Skipping must stay
        // enabled: OpenH264 prints a warning to stderr otherwise.)
        let config = EncoderConfig::new()
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Quality)
            .bitrate(BitRate::from_bps(50_000_000))
            .max_frame_rate(FrameRate::from_hz(fps as f32))
            .skip_frames(true)
            .complexity(Complexity::High)
            .qp(QpRange::new(qp, qp))
            .intra_frame_period(IntraFramePeriod::from_num_frames(keyframe_interval))
            .num_threads(1)
            .vui(VuiConfig::bt601());
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| MediaError::VideoEncode(e.to_string()))?;
        Ok(Self {
            encoder,
            yuv: vec![0; width as usize * height as usize * 3 / 2],
            width: width as usize,
            height: height as usize,
        })
    }

    /// Encodes one `width x height` RGB frame (row-major, 3 bytes a pixel, `stride` bytes a
    /// row; extra columns and rows are ignored).
    pub fn encode(&mut self, rgb: &[u8], stride: usize) -> Result<EncodedFrame, MediaError> {
        let (w, h) = (self.width, self.height);
        rgb_to_i420(rgb, stride, w, h, &mut self.yuv);
        let (y, uv) = self.yuv.split_at(w * h);
        let (u, v) = uv.split_at(w * h / 4);
        let frame = YUVSlices::new((y, u, v), (w, h), (w, w / 2, w / 2));
        let stream = self
            .encoder
            .encode(&frame)
            .map_err(|e| MediaError::VideoEncode(e.to_string()))?;
        if matches!(stream.frame_type(), FrameType::Skip | FrameType::Invalid) {
            return Err(MediaError::VideoEncode(
                "the rate control skipped a frame".into(),
            ));
        }
        Ok(EncodedFrame {
            keyframe: matches!(stream.frame_type(), FrameType::IDR | FrameType::I),
            data: stream.to_vec(),
        })
    }
}

/// BT.601 limited-range RGB -> YUV 4:2:0 (chroma averaged over each 2x2 block), with the
/// usual 8-bit integer coefficients and rounding.
fn rgb_to_i420(rgb: &[u8], stride: usize, width: usize, height: usize, yuv: &mut [u8]) {
    let (y_plane, rest) = yuv.split_at_mut(width * height);
    let (u_plane, v_plane) = rest.split_at_mut((width / 2) * (height / 2));
    let px = |x: usize, y: usize| {
        let at = y * stride + x * 3;
        (
            i32::from(rgb[at]),
            i32::from(rgb[at + 1]),
            i32::from(rgb[at + 2]),
        )
    };
    for y in 0..height {
        for x in 0..width {
            let (r, g, b) = px(x, y);
            y_plane[y * width + x] = (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8;
        }
    }
    for cy in 0..height / 2 {
        for cx in 0..width / 2 {
            let (mut r, mut g, mut b) = (0, 0, 0);
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let p = px(2 * cx + dx, 2 * cy + dy);
                r += p.0;
                g += p.1;
                b += p.2;
            }
            // Sums of 4 pixels: divide by 4 inside the rounding term.
            let u = ((-38 * r - 74 * g + 112 * b + 512) >> 10) + 128;
            let v = ((112 * r - 94 * g - 18 * b + 512) >> 10) + 128;
            u_plane[cy * (width / 2) + cx] = u.clamp(0, 255) as u8;
            v_plane[cy * (width / 2) + cx] = v.clamp(0, 255) as u8;
        }
    }
}
