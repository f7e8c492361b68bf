#!/usr/bin/env python3
"""Side-by-side timing of sonic and the PyTorch reference, stage by stage, in one run.

For every stage and size this script
1. builds the reference module (diffusers 0.29 / transformers 4.43 / Sonic's own modules) with
   seeded random weights and the configuration of that size (``fixtures/medium.json`` or the
   golden fixtures' configs),
2. writes its weights in the released file layout and its inputs to a work directory,
3. times the PyTorch forward (``--warmup`` untimed runs, then ``--repeats`` timed ones),
4. runs ``examples/bench_compare.rs``, which loads the same files with sonic's real loaders and
   times the same forward on the same inputs the same way,
5. checks that both produced the same output (max abs difference), so both sides time the
   same computation,
and finally prints one table: medians, the ratio sonic / PyTorch (below 1: sonic is faster),
the FLOP count of the stage (torch's FlopCounterMode: matmuls, convolutions, attention) and
the achieved FLOP/s.

Both sides run with the same thread count (``--threads``, default the ``threads`` of
``fixtures/medium.json``): ``torch.set_num_threads`` and ``RAYON_NUM_THREADS``. The stages
alternate between the two sides, so a change of machine load hits both alike.

Outputs must agree: a stage whose sonic output differs from PyTorch's by more than
``--rtol`` times the output's largest magnitude is marked MISMATCH and the script exits 1.

Requirements (see bench/compare/README.md and docs/performance.md): a Rust toolchain, and a venv
with

    pip install torch --index-url https://download.pytorch.org/whl/cpu
    pip install diffusers==0.29.0 transformers==4.43.2 safetensors einops omegaconf

plus a checkout of Sonic's source (github.com/jixiaozhong/Sonic) given by ``--sonic-src`` or
``SONIC_REF_SRC``: its audio adapters, UNet (with the audio IP-adapter) and RIFE modules are
imported from there as they are (nothing of it is copied into this repository).

    python bench/compare/compare.py --sonic-src /path/to/Sonic
    python bench/compare/compare.py --sizes medium --stages unet_forward,vae_decode
    python bench/compare/compare.py --sizes released   # released widths, small shapes (CPU; UNet ~7 GB RAM)
    python bench/compare/compare.py --sizes real --torch-device cuda --sonic-device cuda:0 \
        --cargo-features cuda
"""

import argparse
import gc
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STAGES = [
    "log_mel",
    "whisper_encoder",
    "audio2token",
    "audio2bucket",
    "clip",
    "vae_encode",
    "vae_decode",
    "unet_forward",
    "sampler_step",
    "rife_pair",
]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="fixture,medium",
                   help="comma list of fixture, medium, released (the released configs at small shapes, "
                        "CPU), real (the released configs at the real compute shapes, GPU)")
    p.add_argument("--stages", default=",".join(STAGES), help="comma list of stages")
    p.add_argument("--threads", type=int, default=None, help="threads on both sides (default: medium.json)")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per stage and side")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs before timing")
    p.add_argument("--sonic-src", default=os.environ.get("SONIC_REF_SRC"), help="Sonic source checkout")
    p.add_argument("--work", default=None, help="work directory (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--torch-device", default="cpu", help="cpu or cuda")
    p.add_argument("--sonic-device", default="cpu", help="the backend of bench_compare: cpu, wgpu, cuda")
    p.add_argument("--cargo-features", default="", help="extra cargo features for bench_compare (wgpu, cuda)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--no-build", action="store_true", help="use the already built bench_compare")
    p.add_argument("--rtol", type=float, default=1e-3,
                   help="largest allowed max|sonic - torch| / max|torch| per stage")
    return p.parse_args()


# ---------------------------------------------------------------------------------------------
# Shapes


def load_medium():
    return json.loads((REPO / "fixtures/medium.json").read_text())


def golden_config(case):
    return json.loads((REPO / "fixtures/golden" / case / "config.json").read_text())["config"]


def unet_shape(size, medium):
    if size == "fixture":
        case = golden_config("unet")
        config = dict(case["unet_config"])
        return dict(config=config, batch=3, frames=case["frames"], latent_hw=case["latent_hw"],
                    clip_tokens=1, audio_tokens=case["add_ip_adapters"]["num_adapter_embeds"][0])
    if size == "medium":
        entry = medium["unet_medium"]
        return dict(config=dict(entry["config"]), **entry["input"])
    # The released SVD-xt UNet (diffusers' defaults are SVD's) with Sonic's adapter.
    config = dict(in_channels=8, out_channels=4, block_out_channels=[320, 640, 1280, 1280],
                  layers_per_block=2, num_attention_heads=[5, 10, 20, 20], cross_attention_dim=1024,
                  addition_time_embed_dim=256, projection_class_embeddings_input_dim=768, num_frames=25,
                  transformer_layers_per_block=1,
                  down_block_types=["CrossAttnDownBlockSpatioTemporal"] * 3 + ["DownBlockSpatioTemporal"],
                  up_block_types=["UpBlockSpatioTemporal"] + ["CrossAttnUpBlockSpatioTemporal"] * 3)
    if size == "released":
        # The released widths at a CPU-sized shape: 3 guidance branches x 4 frames x 8x8 latents.
        return dict(config=config, batch=3, frames=4, latent_hw=[8, 8], clip_tokens=1, audio_tokens=32)
    return dict(config=config, batch=3, frames=25, latent_hw=[64, 64], clip_tokens=1, audio_tokens=32)


def vae_config(size, medium, key):
    if size == "fixture":
        c = golden_config("vae")
        return dict(block_out_channels=c["block_out_channels"], layers_per_block=c["layers_per_block"],
                    latent_channels=c["latent_channels"])
    if size == "medium":
        return dict(medium[key]["config"])
    # "released" and "real": the released SVD-xt VAE.
    return dict(block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=4)


# ---------------------------------------------------------------------------------------------
# Stages: each returns (run, inputs, output_of, rust_params) after writing its weights to `dir`.


class Stage:
    """One stage at one size, built on the PyTorch side."""

    def __init__(self, name, size, run, inputs, output, params, check=True):
        self.name, self.size, self.run, self.inputs = name, size, run, inputs
        self.output, self.params, self.check = output, params, check


def build(name, size, d, ctx):
    import numpy as np
    import torch
    from safetensors.torch import save_file

    medium, dev = ctx["medium"], ctx["device"]
    g = torch.Generator().manual_seed(1234)

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(dev)

    def to_dev(m):
        return m.to(dev).eval()

    if name == "log_mel":
        from transformers import WhisperFeatureExtractor

        if size == "real":
            return None
        # "released": the same 30 s as "medium" (the front end has no weights).
        n = 42_586 if size == "fixture" else (medium["log_mel_real"]["input"]["seconds"] * 16000)
        t = np.arange(n, dtype=np.float32) / 16000.0
        wave = (0.3 * np.sin(2 * np.pi * 140.0 * t) + 0.05 * np.sin(2 * np.pi * 1130.0 * t)).astype(np.float32)
        fe = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, hop_length=160, chunk_length=30, n_fft=400)

        def run(w):
            # Sonic's get_audio_feature: one extractor call per 30 s window (torch STFT path).
            return fe(w, sampling_rate=16000, return_tensors="pt").input_features[0]

        return Stage(name, size, run, [wave], lambda out: out,
                     dict(inputs=["waveform"]), check=True), {"waveform": torch.from_numpy(wave)}

    if name == "whisper_encoder":
        from transformers import WhisperConfig, WhisperModel

        if size == "fixture":
            c = golden_config("whisper_encoder")
            config = WhisperConfig(**{k: v for k, v in c.items()})
        elif size in ("medium", "released"):
            # whisper-tiny's encoder (the released size).
            config = WhisperConfig(d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536,
                                   decoder_layers=1, decoder_attention_heads=6, decoder_ffn_dim=1536,
                                   num_mel_bins=80, max_source_positions=1500)
        else:
            return None
        torch.manual_seed(1)
        encoder = to_dev(WhisperModel(config).encoder)
        wdir = d / "whisper"
        wdir.mkdir()
        config.to_json_file(wdir / "config.json")
        save_file({f"encoder.{k}": v.contiguous().cpu() for k, v in encoder.state_dict().items()},
                  wdir / "model.safetensors")
        mel = randn(1, 80, 3000)

        def run(x):
            return torch.stack(encoder(x, output_hidden_states=True).hidden_states, dim=2)

        return Stage(name, size, run, [mel], lambda out: out, dict(inputs=["mel"])), {"mel": mel}

    if name in ("audio2token", "audio2bucket"):
        sys.path.insert(0, ctx["sonic_src"])
        from src.models.audio_adapter.audio_proj import AudioProjModel
        from src.models.audio_adapter.audio_to_bucket import Audio2bucketModel

        if size == "fixture":
            config, frames = golden_config(name), 6
        elif size in ("medium", "released"):
            # The released adapters' configs.
            entry = medium["audio_adapters_real"]
            config, frames = dict(entry[name]), entry["input"]["frames"]
        else:
            return None
        torch.manual_seed(2)
        window = randn(1, frames, config["seq_len"], config["blocks"], config["channels"])
        if name == "audio2token":
            model = to_dev(AudioProjModel(**config))
            torch.save(model.state_dict(), d / "weights.pth")
            return (Stage(name, size, lambda w: model(w), [window], lambda out: out,
                          dict(inputs=["window"], config=config)), {"window": window})
        model = to_dev(Audio2bucketModel(**config))
        torch.save(model.state_dict(), d / "weights.pth")
        clip = randn(1, config["clip_channels"])

        def run(w, c):
            # Batched over frames like sonic (the reference loops one frame at a time).
            frames = w.shape[1]
            return model(w, c.expand(frames, -1)).reshape(1, frames, config["context_tokens"], config["output_dim"])

        return (Stage(name, size, run, [window, clip], lambda out: out,
                      dict(inputs=["window", "clip"], config=config)), {"window": window, "clip": clip})

    if name == "clip":
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        if size == "fixture":
            c = golden_config("clip_vision")
        elif size == "medium":
            c = medium["clip_medium"]["config"]
        else:  # "released" and "real": CLIP ViT-H/14 at its only size, 224x224.
            c = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                     projection_dim=1024, image_size=224, patch_size=14, num_channels=3, hidden_act="gelu",
                     layer_norm_eps=1e-5)
        torch.manual_seed(3)
        model = to_dev(CLIPVisionModelWithProjection(CLIPVisionConfig(**c)))
        model.save_pretrained(d / "image_encoder", safe_serialization=True)
        pixels = randn(1, 3, c["image_size"], c["image_size"])
        return (Stage(name, size, lambda x: model(x).image_embeds, [pixels], lambda out: out,
                      dict(inputs=["pixels"])), {"pixels": pixels})

    if name in ("vae_encode", "vae_decode"):
        from diffusers import AutoencoderKLTemporalDecoder

        key = "vae_encode_medium" if name == "vae_encode" else "vae_decode_medium"
        c = vae_config(size, medium, key)
        torch.manual_seed(4)
        vae = to_dev(AutoencoderKLTemporalDecoder(
            block_out_channels=tuple(c["block_out_channels"]),
            down_block_types=("DownEncoderBlock2D",) * len(c["block_out_channels"]),
            layers_per_block=c["layers_per_block"], latent_channels=c["latent_channels"]))
        vae.save_pretrained(d / "vae", safe_serialization=True)
        if name == "vae_encode":
            if size == "fixture":
                images, hw = 1, [64, 64]
            elif size == "medium":
                images, hw = medium[key]["input"]["images"], medium[key]["input"]["image_hw"]
            elif size == "released":
                images, hw = 1, [64, 64]
            else:
                images, hw = 1, [512, 512]
            x = (torch.rand(images, 3, *hw, generator=g) * 2 - 1).to(dev)
            return (Stage(name, size, lambda x: vae.encode(x).latent_dist.mean, [x], lambda out: out,
                          dict(inputs=["images"])), {"images": x})
        if size == "fixture":
            frames, hw = 5, [8, 8]
        elif size == "medium":
            frames, hw = medium[key]["input"]["frames"], medium[key]["input"]["latent_hw"]
        elif size == "released":
            frames, hw = 2, [8, 8]
        else:
            frames, hw = 8, [64, 64]
        z = randn(frames, c["latent_channels"], *hw)
        return (Stage(name, size, lambda z: vae.decode(z, num_frames=frames).sample, [z], lambda out: out,
                      dict(inputs=["z"], frames=frames)), {"z": z})

    if name in ("unet_forward", "sampler_step"):
        sys.path.insert(0, ctx["sonic_src"])
        from src.models.base.unet_spatio_temporal_condition import (UNetSpatioTemporalConditionModel,
                                                                     add_ip_adapters)

        s = unet_shape(size, medium)
        config = s["config"]
        torch.manual_seed(5)
        unet = UNetSpatioTemporalConditionModel(**config)
        add_ip_adapters(unet, [s["audio_tokens"]], [1.0])
        unet = to_dev(unet)
        udir = d / "unet"
        udir.mkdir()
        unet.save_config(udir)
        torch.save(unet.state_dict(), d / "unet.pth")
        b, f = s["batch"], s["frames"]
        h, w = s["latent_hw"]
        dim = config["cross_attention_dim"]
        mask = torch.zeros(1, 1, 8 * h, 8 * w)
        mask[..., 2 * h:6 * h, 2 * w:6 * w] = 1.0
        mask = mask.to(dev)
        params = dict(audio_tokens=s["audio_tokens"], batch=b, frames=f)
        if name == "unet_forward":
            sample = randn(b, f, config["in_channels"], h, w)
            timestep = torch.tensor([0.8]).to(dev)
            clip = randn(b * f, s["clip_tokens"], dim)
            audio = randn(b * f, s["audio_tokens"], dim)
            ids = torch.tensor([[12.5, 20.0, 18.0]] * b).to(dev)

            def run(sample, timestep, clip, audio, ids, mask):
                return unet(sample, timestep, encoder_hidden_states=(clip, [audio]),
                            cross_attention_kwargs={"ip_adapter_masks": [mask]}, added_time_ids=ids,
                            return_dict=False)[0]

            inputs = dict(sample=sample, timestep=timestep, clip=clip, audio=audio, ids=ids, mask=mask)
            return (Stage(name, size, run, list(inputs.values()), lambda out: out,
                          dict(params, inputs=list(inputs))), inputs)

        # One Euler step of SonicPipeline's loop over one window covering the clip.
        from diffusers import EulerDiscreteScheduler

        sched_config = json.loads((REPO / "fixtures/golden/scheduler/scheduler/scheduler_config.json").read_text())
        scheduler = EulerDiscreteScheduler.from_config(sched_config)
        c_lat = config["out_channels"]
        latents = randn(1, f, c_lat, h, w)
        image_latents = randn(1, c_lat, h, w)
        image_embeds = randn(1, dim)
        audio_cond = randn(f, s["audio_tokens"], dim)
        audio_uncond = randn(1, s["audio_tokens"], dim)

        def run(latents, image_latents, image_embeds, audio_cond, audio_uncond, mask):
            scheduler.set_timesteps(25, device=dev)
            t = scheduler.timesteps[0]
            model_in = scheduler.scale_model_input(torch.cat([latents] * 3), t)
            cond_lat = torch.cat([torch.zeros_like(image_latents), image_latents, image_latents])
            model_in = torch.cat([model_in, cond_lat.unsqueeze(1).expand(-1, f, -1, -1, -1)], dim=2)
            e = image_embeds.reshape(1, 1, 1, dim)
            clip = torch.cat([torch.zeros_like(e), e, e]).expand(3, f, 1, dim).flatten(0, 1)
            un = audio_uncond.expand(f, -1, -1)
            audio = torch.cat([un, un, audio_cond])
            ids = torch.tensor([[12.5, 20.0, 18.0]] * 3, device=dev)
            v = unet(model_in, t, encoder_hidden_states=(clip, [audio]),
                     cross_attention_kwargs={"ip_adapter_masks": [mask]}, added_time_ids=ids,
                     return_dict=False)[0]
            u, i, c = v.chunk(3)
            v = u + 2.0 * (i - u) + 7.5 * (c - i)
            return scheduler.step(v, t, latents).prev_sample

        inputs = dict(latents=latents, image_latents=image_latents, image_embeds=image_embeds,
                      audio_cond=audio_cond, audio_uncond=audio_uncond, mask=mask)
        return (Stage(name, size, run, list(inputs.values()), lambda out: out,
                      dict(params, inputs=list(inputs))), inputs)

    if name == "rife_pair":
        sys.path.insert(0, ctx["sonic_src"])
        from src.utils.RIFE.IFNet_HDv3 import IFBlock, IFNet

        if size == "fixture":
            c = golden_config("rife")
            width, hw = c["c"], c["frame_hw"]
        elif size == "medium":
            width, hw = medium["rife_medium"]["config"]["c"], medium["rife_medium"]["input"]["frame_hw"]
        elif size == "released":
            width, hw = medium["rife_medium"]["config"]["c"], [64, 64]  # c=90, the released flownet
        else:
            width, hw = 90, [512, 512]
        torch.manual_seed(6)
        net = IFNet()
        if width != 90:
            net.block0, net.block1, net.block2 = (IFBlock(11, c=width) for _ in range(3))
            net.block_tea = IFBlock(14, c=width)
        net = to_dev(net)
        # Small flows, as the golden case does: a random flow head would warp far outside.
        with torch.no_grad():
            for block in (net.block0, net.block1, net.block2):
                block.conv1[2].weight.mul_(0.05)
                block.conv1[2].bias.mul_(0.05)
        torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, d / "flownet.pkl")
        f0 = torch.rand(1, 3, *hw, generator=g).to(dev)
        f1 = torch.rand(1, 3, *hw, generator=g).to(dev)
        return (Stage(name, size, lambda a, b: net(torch.cat((a, b), 1), [4, 2, 1])[2][2], [f0, f1],
                      lambda out: out, dict(inputs=["frame0", "frame1"], c=width)),
                {"frame0": f0, "frame1": f1})

    raise ValueError(f"unknown stage {name}")


# ---------------------------------------------------------------------------------------------
# Timing


def time_torch(stage, warmup, repeats, device):
    import torch

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode():
        for _ in range(warmup):
            out = stage.run(*stage.inputs)
        sync()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = stage.run(*stage.inputs)
            sync()
            times.append(time.perf_counter() - t0)
    return times, out


def count_flops(stage):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    try:
        # (FlopCounterMode counts nothing under inference_mode.)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            stage.run(*stage.inputs)
        return int(counter.get_total_flops())
    except Exception as e:  # some stages (numpy front end) have nothing torch counts
        print(f"  flop counter failed on {stage.name}: {e}", file=sys.stderr)
        return 0


def log_mel_flops(samples):
    """Analytic count of Whisper's log-mel on 30 s windows: a 400-point real FFT per frame
    (~2.5 N log2 N), the power spectrum, and the dense 201x80 mel projection (the reference's
    matmul; sonic skips the zeros of the filter bank)."""
    windows = max(1, math.ceil(samples / 480_000))
    frames = 3000 * windows
    fft = 2.5 * 400 * math.log2(400)
    return int(frames * (fft + 3 * 201 + 2 * 201 * 80 + 80 * 10))


def machine():
    info = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                info["cpu"] = line.split(":", 1)[1].strip()
    except OSError:
        pass
    info["cpus"] = os.cpu_count()
    return info


def main():
    args = parse_args()
    medium = load_medium()
    threads = args.threads or medium.get("threads", 2)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch
    import diffusers
    import transformers
    import numpy as np

    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    # Exact f32 math on both sides (no TF32 on GPUs).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    stages = [s for s in args.stages.split(",") if s]
    sizes = [s for s in args.sizes.split(",") if s]
    needs_sonic = {"audio2token", "audio2bucket", "unet_forward", "sampler_step", "rife_pair"}
    if needs_sonic & set(stages):
        if not args.sonic_src or not Path(args.sonic_src, "src/models/base").is_dir():
            sys.exit("Sonic's source is needed (--sonic-src or SONIC_REF_SRC): a checkout of "
                     "github.com/jixiaozhong/Sonic")
        args.sonic_src = str(Path(args.sonic_src).resolve())

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="sonic-compare-"))
    work.mkdir(parents=True, exist_ok=True)

    features = ["--features", args.cargo_features] if args.cargo_features else []
    if not args.no_build:
        print("building examples/bench_compare (release) ...", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "--example", "bench_compare", *features],
                       cwd=REPO, check=True)
    binary = REPO / "target/release/examples/bench_compare"
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))

    ctx = {"medium": medium, "device": args.torch_device, "sonic_src": args.sonic_src}
    rows = []
    for size in sizes:
        for name in stages:
            d = work / f"{name}-{size}"
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
            built = build(name, size, d, ctx)
            if built is None:
                continue
            stage, tensors = built
            print(f"{name} [{size}]: PyTorch ...", file=sys.stderr)
            from safetensors.torch import save_file

            save_file({k: v.detach().contiguous().cpu().float() for k, v in tensors.items()}, d / "inputs.safetensors")
            torch_times, out = time_torch(stage, args.warmup, args.repeats, args.torch_device)
            out = out.detach().float().cpu()
            flops = log_mel_flops(len(stage.inputs[0])) if name == "log_mel" else count_flops(stage)
            (d / "stage.json").write_text(json.dumps(dict(stage=name, size=size, **stage.params)))
            check = stage.check
            # Free the PyTorch model (its weights are on disk) before sonic loads its own copy: at the
            # released widths the UNet alone is ~6 GB in f32.
            del stage, built, tensors
            gc.collect()
            if args.torch_device == "cuda":
                torch.cuda.empty_cache()

            print(f"{name} [{size}]: sonic ...", file=sys.stderr)
            proc = subprocess.run([str(binary), "--dir", str(d), "--warmup", str(args.warmup),
                                   "--repeats", str(args.repeats), "--device", args.sonic_device],
                                  env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stdout, proc.stderr, file=sys.stderr)
                rows.append(dict(stage=name, size=size, error=proc.stderr.strip()[-500:]))
                continue
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            diff = None
            if check:
                from safetensors.torch import load_file

                got = load_file(d / "output.safetensors")["output"]
                if got.shape == out.shape:
                    diff = float((got - out).abs().max())
                    scale = float(out.abs().max())
                else:
                    diff, scale = float("nan"), 0.0
                    print(f"  shape mismatch: sonic {tuple(got.shape)} vs torch {tuple(out.shape)}", file=sys.stderr)
            agree = None
            if diff is not None:
                agree = bool(diff <= args.rtol * max(scale, 1e-6))
                if not agree:
                    print(f"  MISMATCH: max abs diff {diff} > {args.rtol} x {scale}", file=sys.stderr)
            t_med = statistics.median(torch_times)
            s_med = statistics.median(result["times_s"])
            rows.append(dict(stage=name, size=size, torch_s=t_med, sonic_s=s_med, ratio=s_med / t_med,
                             flops=flops, torch_times_s=torch_times, sonic_times_s=result["times_s"],
                             max_abs_diff=diff, output_max_abs=scale if check else None, agree=agree,
                             load=os.getloadavg()[0]))
            r = rows[-1]
            print(f"  torch {t_med * 1e3:.2f} ms, sonic {s_med * 1e3:.2f} ms, ratio {r['ratio']:.2f}, "
                  f"diff {diff}", file=sys.stderr)

    versions = dict(torch=torch.__version__, diffusers=diffusers.__version__,
                    transformers=transformers.__version__, numpy=np.__version__,
                    sonic=subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                         capture_output=True, text=True).stdout.strip())
    report = dict(machine=machine(), versions=versions, threads=threads, repeats=args.repeats,
                  warmup=args.warmup, torch_device=args.torch_device, sonic_device=args.sonic_device,
                  rows=rows)
    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    if not args.keep and not args.work:
        shutil.rmtree(work, ignore_errors=True)
    failed = [r for r in rows if "error" in r or r.get("agree") is False]
    if failed:
        sys.exit(f"{len(failed)} stage(s) failed or disagree: "
                 + ", ".join(f"{r['stage']}[{r['size']}]" for r in failed))


def print_table(report):
    print(f"machine: {report['machine'].get('cpu', '?')}, {report['threads']} threads; "
          f"torch {report['versions']['torch']} ({report['torch_device']}), sonic {report['versions']['sonic']} "
          f"({report['sonic_device']}); median of {report['repeats']} runs")
    print("| stage | size | PyTorch ms | sonic ms | sonic / PyTorch | GFLOP | PyTorch GFLOP/s | sonic GFLOP/s | max abs diff | load |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in report["rows"]:
        if "error" in r:
            print(f"| {r['stage']} | {r['size']} | error: {r['error'][:80]} |")
            continue
        gf = r["flops"] / 1e9
        tp = gf / r["torch_s"] if gf else 0.0
        sp = gf / r["sonic_s"] if gf else 0.0
        diff = "n/a" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}"
        if r.get("agree") is False:
            diff += " MISMATCH"
        print(f"| {r['stage']} | {r['size']} | {r['torch_s'] * 1e3:.2f} | {r['sonic_s'] * 1e3:.2f} | "
              f"{r['ratio']:.2f} | {gf:.3f} | {tp:.1f} | {sp:.1f} | {diff} | {r['load']:.2f} |")


if __name__ == "__main__":
    main()
