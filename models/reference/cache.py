"""Parity fixtures for step caching: diffusers' First Block Cache
(`transformer.enable_cache(FirstBlockCacheConfig(threshold=...))`) on the tiny VACE pipeline,
writing, in the layout of pipeline.py's cases,

    models/fixtures/cache/<case>/
        video/*.png, mask/*.png, latents.safetensors, request.json, expected.safetensors
        decisions.json     per cache context ("cond", "uncond"): for each step whether the
                           remaining blocks ran ("computed") or were skipped ("skipped"), and
                           the relative difference of the first block's residual that decided it

    python models/reference/cache.py

The thresholds are chosen so that some steps are skipped and some computed, and (extend) so
that the "cond" and "uncond" contexts skip different steps (each has its own state);
the recorded differences let the test check that no decision sits on the threshold.
"""
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from common import FIXTURES
from diffusers import WanVACEPipeline
from diffusers.hooks import FirstBlockCacheConfig
from diffusers.hooks.first_block_cache import FBCHeadBlockHook

from pipeline import masks_for
from tiny_model import ROOT

CASES = {
    # Extend-forward shaped on the shared tiny model, with guidance (two cache contexts).
    "first_block_extend": dict(frames=5, height=32, width=32, steps=12, guidance=5.0, threshold=0.505,
                               mask="tail", prompt="waves breaking on a rocky shore at sunset",
                               negative="blurry, low quality"),
    # Without guidance: only the "cond" context; a higher threshold skips more.
    "first_block_no_guidance": dict(frames=5, height=32, width=32, steps=8, guidance=1.0,
                                    threshold=0.6, mask="tail", prompt="a forest path in autumn",
                                    negative=""),
}


def record_decisions():
    """Wraps diffusers' decision so that each one is logged with its context and difference."""
    log = []
    original = FBCHeadBlockHook._should_compute_remaining_blocks

    def logged(self, residual):
        state = self.state_manager.get_state()
        diff = None
        if state.head_block_residual is not None:
            prev = state.head_block_residual
            diff = ((residual - prev).abs().mean() / prev.abs().mean()).item()
        decision = original(self, residual)
        log.append((self.state_manager.context.name, decision, diff))
        return decision

    FBCHeadBlockHook._should_compute_remaining_blocks = logged
    return log


def main() -> None:
    log = record_decisions()
    for name, case in CASES.items():
        log.clear()
        out = FIXTURES / "cache" / name
        shutil.rmtree(out, ignore_errors=True)
        (out / "video").mkdir(parents=True)
        (out / "mask").mkdir()
        pipe = WanVACEPipeline.from_pretrained(ROOT / "tiny", torch_dtype=torch.float32)
        pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=case["threshold"]))
        f, h, w = case["frames"], case["height"], case["width"]
        rng = np.random.default_rng(len(name))
        frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(f)]
        masks = masks_for(case["mask"], f, h, w)
        for i in range(f):
            Image.fromarray(frames[i]).save(out / "video" / f"{i:05}.png")
            Image.fromarray(masks[i]).save(out / "mask" / f"{i:05}.png")
        latent_frames = (f - 1) // pipe.vae_scale_factor_temporal + 1
        latents = torch.randn(1, pipe.vae.config.z_dim, latent_frames, h // pipe.vae_scale_factor_spatial,
                              w // pipe.vae_scale_factor_spatial, generator=torch.Generator().manual_seed(7))
        save_file({"latents": latents.contiguous()}, str(out / "latents.safetensors"))
        result = pipe(video=[Image.fromarray(a) for a in frames],
                      mask=[Image.fromarray(m).convert("RGB") for m in masks], prompt=case["prompt"],
                      negative_prompt=case["negative"], height=h, width=w, num_frames=f,
                      num_inference_steps=case["steps"], guidance_scale=case["guidance"],
                      latents=latents, output_type="np").frames
        save_file({"frames": torch.from_numpy(np.ascontiguousarray(result[0])).float()},
                  str(out / "expected.safetensors"))
        request = {k: case[k] for k in ("prompt", "negative", "steps", "guidance", "threshold")}
        request["model"] = str(Path("..") / ".." / ".." / "tiny")
        (out / "request.json").write_text(json.dumps(request, indent=1) + "\n")
        decisions = {}
        for context, computed, diff in log:
            decisions.setdefault(context, []).append(
                {"decision": "computed" if computed else "skipped", "difference": diff})
        (out / "decisions.json").write_text(json.dumps(decisions, indent=1) + "\n")
        summary = {c: "".join("C" if d["decision"] == "computed" else "s" for d in v)
                   for c, v in decisions.items()}
        print(name, result.shape, summary,
              {c: [None if d["difference"] is None else round(d["difference"], 4) for d in v]
               for c, v in decisions.items()})


if __name__ == "__main__":
    main()
