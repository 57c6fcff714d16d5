"""Parity fixtures for the whole VACE pipeline: diffusers' WanVACEPipeline run on tiny random
models with given initial latents, writing for each case

    models/fixtures/pipeline/<case>/
        model/ (or the shared models/tiny)   the model folder
        video/*.png, mask/*.png               inputs (masks: 0 = keep, 255 = generate)
        references/*.png                      reference images (reference_* cases), in order
        latents.safetensors                   `latents`, the initial noise
        request.json                          prompt, negative prompt, steps, guidance, model path
        expected.safetensors                  `frames` f32 [F, H, W, 3] in [0, 1]

    python models/reference/pipeline.py [CASE ...]      (all cases without names)

The reference_* cases reuse an earlier case's model folder (loaded with from_pretrained) and
pass `reference_images`: references of odd sizes and aspects, fitted by diffusers (Lanczos to
multiples of 8, bilinear into the frame, centred on white).
"""
import sys
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from common import FIXTURES
from diffusers import WanVACEPipeline

from tiny_model import ROOT, TINY, build_pipeline

CASES = {
    # Extend-forward shaped: two kept frames, then frames to generate; shared tiny model.
    "tiny_extend": dict(config=None, frames=5, height=32, width=32, steps=3, guidance=5.0,
                        mask="tail", prompt="waves breaking on a rocky shore at sunset",
                        negative="blurry, low quality"),
    # Background-replacement shaped: a kept rectangle in every frame; no guidance.
    "wide_background": dict(config={**TINY, "heads": 3, "head_dim": 12, "layers": 2, "ffn": 40,
                                    "vace_layers": [0, 1], "text_dim": 24, "text_layers": 3,
                                    "vae_base": 8, "vae_res": 2, "flow_shift": 5.0, "solver_order": 3},
                            frames=9, height=32, width=48, steps=4, guidance=1.0, mask="box",
                            prompt="  a forest path in autumn,\n leaves &amp; fog ", negative=""),
    # One frame, insert-shaped mask in a single-frame clip; odd latent patch grid.
    "single_frame": dict(config={**TINY, "heads": 4, "head_dim": 8, "layers": 4, "ffn": 48,
                                 "vace_layers": [0, 1, 3], "vae_mult": [1, 2, 2, 1],
                                 "flow_shift": 1.0, "solver_order": 1},
                         frames=1, height=48, width=16, steps=2, guidance=3.0, mask="left",
                         prompt="a cat sleeping on a windowsill", negative="static"),
}

# One, two and three references, a mask of each kind, each on an earlier case's model;
# reference sizes (width, height) chosen to hit every path of the fitting: sides not multiples
# of 8 (Lanczos first), downscaling, upscaling, exact size, letterbox and pillarbox.
REFERENCE_CASES = {
    "reference_one": dict(base="tiny_extend", references=[(20, 44)]),
    "reference_two": dict(base="wide_background", references=[(64, 24), (13, 27)]),
    # 9 frames, not single_frame's 1: diffusers pads the mask with
    # zeros_like(mask[:, :references]), which has fewer frames than references when the clip
    # has fewer latent frames than that, and then fails (we pad one frame per reference).
    "reference_three": dict(base="single_frame", frames=9, references=[(16, 48), (100, 37), (8, 8)]),
}


def reference_images(name: str, sizes) -> list:
    rng = np.random.default_rng(100 + len(name))
    images = []
    for w, h in sizes:
        # A smooth gradient plus noise: structure for the resamplers, not only noise.
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1), 128 + 0 * x], axis=-1)
        noise = rng.integers(-40, 41, (h, w, 3))
        images.append(Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)))
    return images


def masks_for(kind: str, frames: int, height: int, width: int) -> np.ndarray:
    mask = np.zeros((frames, height, width), dtype=np.uint8)
    if kind == "tail":
        mask[2:] = 255
    elif kind == "box":
        mask[:] = 255
        mask[:, height // 4: 3 * height // 4, width // 3: 2 * width // 3] = 0
    elif kind == "left":
        mask[:, :, : width // 2] = 255
    return mask


def main() -> None:
    only = set(sys.argv[1:])
    for name, case in CASES.items():
        if only and name not in only:
            continue
        out = FIXTURES / "pipeline" / name
        shutil.rmtree(out, ignore_errors=True)
        (out / "video").mkdir(parents=True)
        (out / "mask").mkdir()
        if case["config"] is None:
            # Same seed and config as tiny_model.py: the very model in models/tiny.
            pipe = build_pipeline(TINY)
        else:
            model_dir = out / "model"
            pipe = build_pipeline(case["config"], seed=len(name))
            pipe.save_pretrained(model_dir, safe_serialization=True)
        f, h, w = case["frames"], case["height"], case["width"]
        rng = np.random.default_rng(len(name))
        frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(f)]
        masks = masks_for(case["mask"], f, h, w)
        video = [Image.fromarray(a) for a in frames]
        mask = [Image.fromarray(m).convert("RGB") for m in masks]
        for i in range(f):
            video[i].save(out / "video" / f"{i:05}.png")
            Image.fromarray(masks[i]).save(out / "mask" / f"{i:05}.png")
        z = pipe.vae.config.z_dim
        latent_frames = (f - 1) // pipe.vae_scale_factor_temporal + 1
        latents = torch.randn(1, z, latent_frames, h // pipe.vae_scale_factor_spatial,
                              w // pipe.vae_scale_factor_spatial, generator=torch.Generator().manual_seed(7))
        save_file({"latents": latents.contiguous()}, str(out / "latents.safetensors"))
        result = pipe(video=video, mask=mask, prompt=case["prompt"], negative_prompt=case["negative"],
                      height=h, width=w, num_frames=f, num_inference_steps=case["steps"],
                      guidance_scale=case["guidance"], latents=latents, output_type="np").frames
        save_file({"frames": torch.from_numpy(np.ascontiguousarray(result[0])).float()},
                  str(out / "expected.safetensors"))
        request = {k: case[k] for k in ("prompt", "negative", "steps", "guidance")}
        request["model"] = str(Path("..") / ".." / ".." / "tiny") if case["config"] is None else "model"
        (out / "request.json").write_text(json.dumps(request, indent=1) + "\n")
        print(name, result.shape, float(result.min()), float(result.max()))
    for name, ref in REFERENCE_CASES.items():
        if only and name not in only:
            continue
        reference_case(name, ref)


def reference_case(name: str, ref: dict) -> None:
    base = CASES[ref["base"]]
    out = FIXTURES / "pipeline" / name
    shutil.rmtree(out, ignore_errors=True)
    for sub in ("video", "mask", "references"):
        (out / sub).mkdir(parents=True)
    model = (ROOT / "tiny") if base["config"] is None else (FIXTURES / "pipeline" / ref["base"] / "model")
    pipe = WanVACEPipeline.from_pretrained(model, torch_dtype=torch.float32)
    f, h, w = ref.get("frames", base["frames"]), base["height"], base["width"]
    rng = np.random.default_rng(len(name))
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(f)]
    masks = masks_for(base["mask"], f, h, w)
    for i in range(f):
        Image.fromarray(frames[i]).save(out / "video" / f"{i:05}.png")
        Image.fromarray(masks[i]).save(out / "mask" / f"{i:05}.png")
    refs = reference_images(name, ref["references"])
    for i, image in enumerate(refs):
        image.save(out / "references" / f"{i:05}.png")
    z = pipe.vae.config.z_dim
    # One latent frame more per reference: diffusers asks for num_frames + 4 per reference.
    latent_frames = (f - 1) // pipe.vae_scale_factor_temporal + 1 + len(refs)
    latents = torch.randn(1, z, latent_frames, h // pipe.vae_scale_factor_spatial,
                          w // pipe.vae_scale_factor_spatial, generator=torch.Generator().manual_seed(7))
    save_file({"latents": latents.contiguous()}, str(out / "latents.safetensors"))
    result = pipe(video=[Image.fromarray(a) for a in frames],
                  mask=[Image.fromarray(m).convert("RGB") for m in masks], reference_images=refs,
                  prompt=base["prompt"], negative_prompt=base["negative"], height=h, width=w,
                  num_frames=f, num_inference_steps=base["steps"], guidance_scale=base["guidance"],
                  latents=latents, output_type="np").frames
    assert result.shape[1] == f, result.shape
    save_file({"frames": torch.from_numpy(np.ascontiguousarray(result[0])).float()},
              str(out / "expected.safetensors"))
    request = {k: base[k] for k in ("prompt", "negative", "steps", "guidance")}
    request["model"] = (str(Path("..") / ".." / ".." / "tiny") if base["config"] is None
                        else str(Path("..") / ref["base"] / "model"))
    (out / "request.json").write_text(json.dumps(request, indent=1) + "\n")
    print(name, result.shape, float(result.min()), float(result.max()))


if __name__ == "__main__":
    main()
