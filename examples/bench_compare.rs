//! The sonic side of `bench/compare/compare.py`: loads one stage exactly as the comparison
//! script wrote it (weights in the released layout, inputs in `inputs.safetensors`), times
//! its forward, writes the output for the script's agreement check, and prints the times as
//! one JSON line.
//!
//! ```sh
//! cargo run --release --example bench_compare -- --dir WORK/unet_forward-medium \
//!     --warmup 2 --repeats 7 --device cpu
//! ```
//!
//! The stage directory holds `stage.json` (`{"stage": ..., "size": ..., <stage parameters>}`),
//! `inputs.safetensors` (f32 tensors) and the weights (`whisper/`, `image_encoder/`, `vae/`,
//! `unet/config.json` + `unet.pth`, `weights.pth`, `flownet.pkl`). Threads: `RAYON_NUM_THREADS`.
//! `--device` is a [`BackendChoice`] device (`cpu`, `wgpu`, `cuda:0`: build with the matching
//! cargo feature); the precision is f32.

use std::collections::HashMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::Backend;
use burn::tensor::{Tensor, TensorData};
use serde_json::Value;

use sonic::backends::{BackendChoice, BackendFn};
use sonic_core::models::audio_adapters::{
    Audio2BucketConfig, Audio2TokenConfig, load_audio2bucket, load_audio2token,
};
use sonic_core::models::clip::load_clip_vision_dir;
use sonic_core::models::rife::{RifeConfig, load_rife};
use sonic_core::models::unet::{FaceMask, UNetConfig, UNetInput, load_unet};
use sonic_core::models::vae::load_vae;
use sonic_core::models::whisper::load_whisper_encoder_dir;
use sonic_core::sampler::{
    Conditioning, EulerEdmScheduler, MaskedUNet, Sampler, SamplerConfig, Unobserved,
};
use sonic_core::weights::LoadOptions;
use sonic_media::audio::LogMelExtractor;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

struct Args {
    dir: PathBuf,
    warmup: usize,
    repeats: usize,
    device: String,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        dir: PathBuf::new(),
        warmup: 2,
        repeats: 7,
        device: "cpu".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => args.dir = value()?.into(),
            "--warmup" => args.warmup = value()?.parse()?,
            "--repeats" => args.repeats = value()?.parse()?,
            "--device" => args.device = value()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if args.dir.as_os_str().is_empty() {
        return Err("--dir is required".into());
    }
    Ok(args)
}

/// The f32 tensors of `inputs.safetensors`, as shapes and values.
struct Inputs(HashMap<String, (Vec<usize>, Vec<f32>)>);

impl Inputs {
    fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)?;
        let file = safetensors::SafeTensors::deserialize(&bytes)?;
        let mut map = HashMap::new();
        for (name, view) in file.tensors() {
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(format!("{name}: expected F32, got {:?}", view.dtype()).into());
            }
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            map.insert(name, (view.shape().to_vec(), values));
        }
        Ok(Self(map))
    }

    fn host(&self, name: &str) -> Result<&(Vec<usize>, Vec<f32>)> {
        self.0
            .get(name)
            .ok_or_else(|| format!("input `{name}` missing").into())
    }

    fn tensor<B: Backend, const D: usize>(
        &self,
        name: &str,
        device: &B::Device,
    ) -> Result<Tensor<B, D>> {
        let (shape, values) = self.host(name)?;
        if shape.len() != D {
            return Err(format!("input `{name}` has shape {shape:?}, expected {D} dims").into());
        }
        Ok(Tensor::from_data(
            TensorData::new(values.clone(), shape.clone()),
            device,
        ))
    }
}

/// Writes `output` as the only tensor of `output.safetensors`.
fn write_output(dir: &Path, shape: Vec<usize>, values: Vec<f32>) -> Result<()> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &bytes)?;
    safetensors::serialize_to_file([("output", view)], None, &dir.join("output.safetensors"))?;
    Ok(())
}

fn tensor_output<B: Backend, const D: usize>(dir: &Path, t: Tensor<B, D>) -> Result<()> {
    let shape = t.dims().to_vec();
    let values = t
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| format!("{e:?}"))?;
    write_output(dir, shape, values)
}

/// Runs `f` `warmup` times untimed, then `repeats` times timed (each run waits for the
/// backend); returns the times and the last output.
fn time<T>(
    warmup: usize,
    repeats: usize,
    mut f: impl FnMut() -> Result<T>,
    sync: impl Fn(),
) -> Result<(Vec<f64>, T)> {
    for _ in 0..warmup {
        f()?;
        sync();
    }
    let mut times = Vec::with_capacity(repeats);
    let mut last = None;
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        let out = f()?;
        sync();
        times.push(start.elapsed().as_secs_f64());
        last = Some(out);
    }
    Ok((times, last.expect("at least one run")))
}

fn num(v: &Value, key: &str) -> Result<usize> {
    v[key]
        .as_u64()
        .map(|n| n as usize)
        .ok_or_else(|| format!("`{key}` missing in stage.json").into())
}

fn run<B: Backend>(args: &Args, device: &B::Device) -> Result<Vec<f64>> {
    let dir = &args.dir;
    let stage: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("stage.json"))?)?;
    let inputs = Inputs::read(&dir.join("inputs.safetensors"))?;
    let options = LoadOptions::default();
    let sync = || B::sync(device).expect("backend sync");
    let (w, r) = (args.warmup, args.repeats);
    let name = stage["stage"].as_str().ok_or("`stage` missing")?;
    let times = match name {
        "log_mel" => {
            let extractor = LogMelExtractor::whisper();
            let wave = &inputs.host("waveform")?.1;
            let (times, mel) = time(w, r, || Ok(extractor.extract(wave)), || {})?;
            write_output(dir, vec![mel.n_mels, mel.n_frames], mel.data)?;
            times
        }
        "whisper_encoder" => {
            let (model, _) = load_whisper_encoder_dir::<B>(dir.join("whisper"), options, device)?;
            let mel: Tensor<B, 3> = inputs.tensor("mel", device)?;
            let (times, out) = time(w, r, || Ok(model.forward(mel.clone())?), sync)?;
            tensor_output(dir, out.hidden_states)?;
            times
        }
        "audio2token" => {
            let c = &stage["config"];
            let config = Audio2TokenConfig::new()
                .with_seq_len(num(c, "seq_len")?)
                .with_blocks(num(c, "blocks")?)
                .with_channels(num(c, "channels")?)
                .with_intermediate_dim(num(c, "intermediate_dim")?)
                .with_output_dim(num(c, "output_dim")?)
                .with_context_tokens(num(c, "context_tokens")?);
            let (model, _) =
                load_audio2token::<B>(&config, dir.join("weights.pth"), options, device)?;
            let window: Tensor<B, 5> = inputs.tensor("window", device)?;
            let (times, out) = time(w, r, || Ok(model.forward(window.clone())), sync)?;
            tensor_output(dir, out)?;
            times
        }
        "audio2bucket" => {
            let c = &stage["config"];
            let config = Audio2BucketConfig::new()
                .with_seq_len(num(c, "seq_len")?)
                .with_blocks(num(c, "blocks")?)
                .with_channels(num(c, "channels")?)
                .with_clip_channels(num(c, "clip_channels")?)
                .with_intermediate_dim(num(c, "intermediate_dim")?)
                .with_output_dim(num(c, "output_dim")?)
                .with_context_tokens(num(c, "context_tokens")?);
            let (model, _) =
                load_audio2bucket::<B>(&config, dir.join("weights.pth"), options, device)?;
            let window: Tensor<B, 5> = inputs.tensor("window", device)?;
            let clip: Tensor<B, 2> = inputs.tensor("clip", device)?;
            let (times, out) = time(
                w,
                r,
                || Ok(model.forward(window.clone(), clip.clone())),
                sync,
            )?;
            tensor_output(dir, out)?;
            times
        }
        "clip" => {
            let (model, _) = load_clip_vision_dir::<B>(dir.join("image_encoder"), options, device)?;
            let pixels: Tensor<B, 4> = inputs.tensor("pixels", device)?;
            let (times, out) = time(w, r, || Ok(model.forward(pixels.clone())?), sync)?;
            tensor_output(dir, out.image_embeds)?;
            times
        }
        "vae_encode" => {
            let (model, _) = load_vae::<B>(dir.join("vae"), options, device)?;
            let images: Tensor<B, 4> = inputs.tensor("images", device)?;
            let (times, out) = time(w, r, || Ok(model.encode(images.clone())?), sync)?;
            tensor_output(dir, out.mean)?;
            times
        }
        "vae_decode" => {
            let (model, _) = load_vae::<B>(dir.join("vae"), options, device)?;
            let z: Tensor<B, 4> = inputs.tensor("z", device)?;
            let frames = num(&stage, "frames")?;
            let (times, out) = time(w, r, || Ok(model.decode(z.clone(), frames)?), sync)?;
            tensor_output(dir, out)?;
            times
        }
        "unet_forward" | "sampler_step" => {
            let config = UNetConfig::from_diffusers_file(dir.join("unet/config.json"))?
                .with_audio_tokens(num(&stage, "audio_tokens")?);
            let (model, _) = load_unet::<B>(&config, dir.join("unet.pth"), options, device)?;
            let mask = FaceMask::from_tensor(inputs.tensor::<B, 4>("mask", device)?)?;
            if name == "unet_forward" {
                let sample: Tensor<B, 5> = inputs.tensor("sample", device)?;
                let timestep: Tensor<B, 1> = inputs.tensor("timestep", device)?;
                let clip: Tensor<B, 3> = inputs.tensor("clip", device)?;
                let audio: Tensor<B, 3> = inputs.tensor("audio", device)?;
                let ids: Tensor<B, 2> = inputs.tensor("ids", device)?;
                let run = || {
                    Ok(model.forward(
                        UNetInput::new(
                            sample.clone(),
                            timestep.clone(),
                            clip.clone(),
                            audio.clone(),
                            ids.clone(),
                        )
                        .with_face_mask(&mask),
                    ))
                };
                let (times, out) = time(w, r, run, sync)?;
                tensor_output(dir, out)?;
                times
            } else {
                let frames = num(&stage, "frames")?;
                let conditioning = Conditioning::new(
                    inputs.tensor("image_embeds", device)?,
                    inputs.tensor("audio_cond", device)?,
                    inputs.tensor("audio_uncond", device)?,
                    inputs.tensor("image_latents", device)?,
                    vec![[20.0, 18.0]; frames],
                )?;
                let sampler = Sampler::new(
                    SamplerConfig::sonic().with_frames_per_batch(frames),
                    EulerEdmScheduler::svd_xt(25)?,
                )?;
                let latents: Tensor<B, 5> = inputs.tensor("latents", device)?;
                let run = || {
                    let mut denoiser = MaskedUNet::new(&model, &mask);
                    Ok(sampler.step(
                        0,
                        latents.clone(),
                        &conditioning,
                        &mut denoiser,
                        &mut Unobserved,
                    )?)
                };
                let (times, out) = time(w, r, run, sync)?;
                tensor_output(dir, out)?;
                times
            }
        }
        "rife_pair" => {
            let config = RifeConfig::new().with_c(num(&stage, "c")?);
            let (model, _) = load_rife::<B>(&config, dir.join("flownet.pkl"), options, device)?;
            let frame0: Tensor<B, 4> = inputs.tensor("frame0", device)?;
            let frame1: Tensor<B, 4> = inputs.tensor("frame1", device)?;
            let run = || Ok(model.forward(frame0.clone(), frame1.clone()).merged);
            let (times, out) = time(w, r, run, sync)?;
            tensor_output(dir, out)?;
            times
        }
        other => return Err(format!("unknown stage `{other}`").into()),
    };
    Ok(times)
}

/// [`run`] on the backend `--device` names.
struct RunStage<'a>(&'a Args);

impl BackendFn for RunStage<'_> {
    type Output = Result<Vec<f64>>;

    fn run<B: Backend>(self, device: B::Device, _dtype: burn::tensor::DType) -> Self::Output {
        run::<B>(self.0, &device)
    }
}

fn main() -> Result<()> {
    let args = parse_args()?;
    // f32 on every device: the comparison checks the outputs against PyTorch's f32 ones.
    let choice = BackendChoice::parse(&args.device, "f32")?;
    let times = choice.run(RunStage(&args))??;
    println!("{}", serde_json::json!({ "times_s": times }));
    Ok(())
}
