"""Parity fixtures for `diffusers.AutoencoderKLWan` (Wan2.1 VAE).

Each case is a tiny random VAE saved with `save_pretrained`, plus `io.safetensors` holding:
    enc{i}.video    [B, 3, F, H, W] in [-1, 1]    enc{i}.latents  posterior mode (mean), un-normalised
    dec{i}.latents  [B, z, T, h, w] random        dec{i}.video    `vae.decode(z).sample` (clamped)
    norm.latents, norm.normalized, norm.denormalized   the Wan pipelines' latent (de)normalisation
Encode and decode run through the reference's chunked, feature-cached path (first frame alone, then
chunks of 4 on encode; one latent frame at a time on decode).

A case with `tiling` also runs the same inputs after `vae.enable_tiling(**tiling)` (spatial tiles,
blended over their overlap) into `tiled_enc{i}.latents` and `tiled_dec{i}.video`, and writes the
tiling to `tiling.json`.

    python vae.py [CASE ...]     # all cases when none is named
"""
import json
import sys

import torch
from diffusers import AutoencoderKLWan

from common import case_dir, save_io, seeded

CASES = {
    # One spatial+temporal downsample, batch of 2.
    "two_level": dict(
        config=dict(base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, attn_scales=[],
                    temperal_downsample=[True], scale_factor_temporal=2, scale_factor_spatial=2),
        encode=[(2, 5, 16, 24), (1, 9, 16, 16)],
        decode=[(2, 3, 8, 12), (1, 1, 6, 4)],
    ),
    # Temporal downsample at the high-resolution level only (decoder upsamples in time late),
    # a separate decoder width.
    "three_level": dict(
        config=dict(base_dim=8, decoder_base_dim=6, z_dim=8, dim_mult=[1, 2, 2], num_res_blocks=2,
                    attn_scales=[], temperal_downsample=[True, False],
                    scale_factor_temporal=2, scale_factor_spatial=4),
        encode=[(1, 9, 32, 16), (1, 1, 16, 16)],
        decode=[(1, 4, 8, 4), (1, 2, 3, 5)],
    ),
    # The Wan2.1 layout (dim_mult [1,2,4,4], temporal [F,T,T], z 16, published latent stats), narrow.
    "wan21_like": dict(
        config=dict(base_dim=4, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                    temperal_downsample=[False, True, True]),
        encode=[(1, 13, 16, 24), (1, 1, 16, 16), (1, 5, 24, 16)],
        decode=[(1, 4, 2, 3), (1, 1, 2, 2), (1, 3, 3, 2)],
    ),
    # Temporal downsampling in the first two levels, none in the last.
    "early_temporal": dict(
        config=dict(base_dim=6, z_dim=4, dim_mult=[1, 1, 2, 2], num_res_blocks=1, attn_scales=[],
                    temperal_downsample=[True, True, False]),
        encode=[(1, 9, 16, 24), (1, 5, 16, 16)],
        decode=[(1, 3, 2, 3), (1, 2, 1, 2)],
    ),
    # attn_scales adds attention blocks to the encoder's down blocks, which the reference encoder
    # cannot run (it passes the feature cache to them: TypeError); the decoder ignores attn_scales.
    # Decode only: checks the tensor names load and that decoding is unaffected.
    "encoder_attention": dict(
        config=dict(base_dim=4, z_dim=4, dim_mult=[1, 2, 2], num_res_blocks=1, attn_scales=[1.0, 0.5],
                    temperal_downsample=[False, True], scale_factor_temporal=2, scale_factor_spatial=4),
        encode=[],
        decode=[(1, 3, 4, 4)],
    ),
    # The Wan2.1 layout under diffusers' tiling with small tiles: several overlapping tiles in
    # both directions, taller than wide tiles (32 x 48 pixels every 24 x 32), and frame sizes
    # that are not multiples of the stride (the last tiles are shorter and narrower).
    "tiled": dict(
        config=dict(base_dim=4, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1, attn_scales=[],
                    temperal_downsample=[False, True, True]),
        tiling=dict(tile_sample_min_height=32, tile_sample_min_width=48,
                    tile_sample_stride_height=24, tile_sample_stride_width=32),
        encode=[(1, 5, 80, 88)],
        decode=[(1, 2, 10, 11)],
    ),
}


def randomise(vae: AutoencoderKLWan, gen: torch.Generator) -> None:
    """Non-trivial norm gains and biases so that every parameter changes the output."""
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.endswith("gamma"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


def build_case(name: str, spec: dict, seed: int) -> None:
    gen = seeded(seed)
    z_dim = spec["config"]["z_dim"]
    config = dict(spec["config"])
    if z_dim != 16:
        config["latents_mean"] = (0.5 * torch.randn(z_dim, generator=gen)).tolist()
        config["latents_std"] = (0.5 + torch.rand(z_dim, generator=gen) * 2.5).tolist()
    vae = AutoencoderKLWan(**config).eval()
    randomise(vae, gen)
    directory = case_dir("vae", name)
    vae.save_pretrained(directory)

    tensors = {}
    with torch.no_grad():
        for i, (b, f, h, w) in enumerate(spec["encode"]):
            video = torch.rand((b, 3, f, h, w), generator=gen) * 2.0 - 1.0
            tensors[f"enc{i}.video"] = video
            tensors[f"enc{i}.latents"] = vae.encode(video).latent_dist.mode()
        for i, (b, t, h, w) in enumerate(spec["decode"]):
            latents = torch.randn((b, z_dim, t, h, w), generator=gen)
            video = vae.decode(latents).sample
            clamped = (video.abs() >= 1.0).float().mean().item()
            print(f"{name} dec{i}: video {tuple(video.shape)}, std {video.std().item():.3f}, clamped fraction {clamped:.3f}")
            tensors[f"dec{i}.latents"] = latents
            tensors[f"dec{i}.video"] = video

        if "tiling" in spec:
            vae.enable_tiling(**spec["tiling"])
            for i, _ in enumerate(spec["encode"]):
                tensors[f"tiled_enc{i}.latents"] = vae.encode(tensors[f"enc{i}.video"]).latent_dist.mode()
            for i, _ in enumerate(spec["decode"]):
                tiled = vae.decode(tensors[f"dec{i}.latents"]).sample
                difference = (tiled - tensors[f"dec{i}.video"]).abs().max().item()
                print(f"{name} tiled dec{i}: max |tiled - untiled| {difference:.3e}")
                tensors[f"tiled_dec{i}.video"] = tiled
            vae.disable_tiling()
            (directory / "tiling.json").write_text(json.dumps(spec["tiling"], indent=2) + "\n")

        # The Wan pipelines' arithmetic: (z - mean) * (1 / std) and z / (1 / std) + mean, in f32.
        latents = tensors["dec0.latents"].clone()
        mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32).view(1, z_dim, 1, 1, 1)
        inv_std = 1.0 / torch.tensor(vae.config.latents_std, dtype=torch.float32).view(1, z_dim, 1, 1, 1)
        normalized = (latents - mean) * inv_std
        tensors["norm.latents"] = latents
        tensors["norm.normalized"] = normalized
        tensors["norm.denormalized"] = normalized / inv_std + mean
    save_io(directory, tensors)


def main(names: list) -> None:
    unknown = set(names) - set(CASES)
    if unknown:
        sys.exit(f"unknown cases {sorted(unknown)}; cases: {list(CASES)}")
    # A case's seed is its place in CASES, so building some cases leaves the others as they were.
    for seed, (name, spec) in enumerate(CASES.items()):
        if not names or name in names:
            build_case(name, spec, seed)


if __name__ == "__main__":
    main(sys.argv[1:])
