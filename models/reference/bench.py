"""VACE benchmark, Soragen against diffusers, side by side on this machine:

    python models/reference/bench.py [--threads N] [--repeats R]

Builds a small but real-shaped random model (transformer dim 256 = 2 heads x 128, 8 layers,
VACE at 0, 2, 4, 6; the real Wan2.1 VAE architecture) for 17 frames at 128x128, and times
one full denoising step (transformer + VACE with guidance: two forwards and the scheduler
step) and one VAE decode in diffusers (torch, float32) and in Soragen (the `bench_vace`
example, float32), on the same weights and inputs and the same thread count. Writes the
numbers, their ratios and peak memory (each process's peak RSS) to BENCHMARKS.md.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from tiny_model import TINY, build_pipeline

REPO = Path(__file__).resolve().parents[2]
BENCH = {**TINY, "heads": 2, "head_dim": 128, "layers": 8, "ffn": 1024, "vace_layers": [0, 2, 4, 6],
         "text_dim": 64, "text_layers": 1, "text_heads": 2, "vae_base": 96, "vae_mult": [1, 2, 4, 4],
         "vae_res": 2, "vae_temporal": [False, True, True]}
FRAMES, HEIGHT, WIDTH = 17, 128, 128
PROMPT = "a harbour at dawn, the camera pans slowly over fishing boats"
NEGATIVE = "blurry, low quality"


def median_seconds(repeats, run):
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_diffusers(pipe, inputs, repeats):
    video, mask, latents = inputs["video"], inputs["mask"], inputs["latents"]
    with torch.no_grad():
        cond, uncond = pipe.encode_prompt(PROMPT, NEGATIVE, do_classifier_free_guidance=True,
                                          max_sequence_length=512, device=torch.device("cpu"))
        context = pipe.prepare_video_latents(video, mask, [[]], None, torch.device("cpu"))
        context = torch.cat([context, pipe.prepare_masks(mask, [[]], None)], dim=1)
        scales = torch.ones(len(BENCH["vace_layers"]))
        pipe.scheduler.set_timesteps(50)
        t = pipe.scheduler.timesteps[0]

        def step():
            pipe.scheduler._step_index = None
            pipe.scheduler.model_outputs = [None] * pipe.scheduler.config.solver_order
            pipe.scheduler.lower_order_nums = 0
            pipe.scheduler.last_sample = None
            timestep = t.expand(1)
            kwargs = dict(hidden_states=latents, timestep=timestep, control_hidden_states=context,
                          control_hidden_states_scale=scales, return_dict=False)
            c = pipe.transformer(encoder_hidden_states=cond, **kwargs)[0]
            u = pipe.transformer(encoder_hidden_states=uncond, **kwargs)[0]
            pipe.scheduler.step(u + 5.0 * (c - u), t, latents, return_dict=False)

        def decode():
            mean = torch.tensor(pipe.vae.config.latents_mean).view(1, -1, 1, 1, 1)
            inv_std = 1.0 / torch.tensor(pipe.vae.config.latents_std).view(1, -1, 1, 1, 1)
            frames = pipe.vae.decode(latents / inv_std + mean, return_dict=False)[0]
            pipe.video_processor.postprocess_video(frames, output_type="np")

        return {"step_s": median_seconds(repeats, step), "decode_s": median_seconds(repeats, decode),
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "threads": torch.get_num_threads()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default="/tmp/soragen-bench")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)

    pipe = build_pipeline(BENCH, seed=1)
    pipe.save_pretrained(work / "model", safe_serialization=True)
    gen = torch.Generator().manual_seed(0)
    video = torch.rand(1, 3, FRAMES, HEIGHT, WIDTH, generator=gen) * 2 - 1
    mask = torch.zeros(1, 1, FRAMES, HEIGHT, WIDTH)
    mask[:, :, FRAMES // 2:] = 1.0
    latents = torch.randn(1, 16, (FRAMES - 1) // 4 + 1, HEIGHT // 8, WIDTH // 8, generator=gen)
    inputs = {"video": video, "mask": mask, "latents": latents}
    save_file({k: v.contiguous() for k, v in inputs.items()}, str(work / "inputs.safetensors"))

    subprocess.run(["cargo", "build", "--release", "-q", "-p", "soragen-core", "--example", "bench_vace"],
                   cwd=REPO, check=True)
    env = {**os.environ, "RAYON_NUM_THREADS": str(args.threads)}
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    ours = json.loads(subprocess.run(
        [str(target / "release/examples/bench_vace"), str(work / "model"),
         str(work / "inputs.safetensors"), str(args.repeats)],
        env=env, check=True, capture_output=True, text=True).stdout)
    theirs = time_diffusers(pipe, inputs, args.repeats)

    tokens = ((FRAMES - 1) // 4 + 1) * (HEIGHT // 16) * (WIDTH // 16)
    rows = [("denoising step (2 forwards + UniPC)", "step_s"), ("VAE decode", "decode_s")]
    table = "\n".join(
        f"| {name} | {ours[key]:.3f} s | {theirs[key]:.3f} s | {ours[key] / theirs[key]:.2f} |"
        for name, key in rows)
    import diffusers
    report = f"""## VACE: one denoising step and one VAE decode, Soragen vs diffusers

Measured by `python models/reference/bench.py --threads {args.threads} --repeats {args.repeats}`
(median of {args.repeats} runs after a warm-up), Soragen and diffusers {diffusers.__version__} /
torch {torch.__version__} side by side on one machine ({platform.processor() or platform.machine()},
{os.cpu_count()} cores), {args.threads} threads each, float32 on the CPU.

Config: transformer dim 256 (2 heads x 128), 8 layers, ffn 1024, VACE layers 0, 2, 4, 6;
the Wan2.1 VAE architecture (base 96, multipliers 1, 2, 4, 4); {FRAMES} frames at
{WIDTH}x{HEIGHT} -> {tokens} tokens; guidance 5 (two transformer forwards per step).

| what | Soragen | diffusers | ratio (Soragen / diffusers) |
| --- | --- | --- | --- |
{table}

Peak memory (whole process, peak RSS): Soragen {ours['peak_rss_mib']:.0f} MiB, diffusers
{theirs['peak_rss_mib']:.0f} MiB (the diffusers process also holds torch and the Python runtime).

Where the step's time goes: matrix products. Per sample and block (8 main + 4 VACE blocks, two
samples for guidance), diffusers multiplies 497 M MACs: the feed-forward 168 M, self-attention
136 M (projections 84 M, scores and values 52 M), cross-attention 193 M of which 151 M are the
keys and values of the 512 text tokens and the attention over them. Soragen computes the
text keys and values once per generation (`WanVace::conditioning`) instead of in every
forward, and stores the prompt's padding tokens (identical zero embeddings, hence identical
keys and values) as one key weighted by their count, so its cross-attention attends to the
prompt's own tokens plus one: 349 M MACs per sample and block, 30% fewer. The linear layers
run as single `gemm` calls with the bias and residual added in the product, and attention
runs per head and block of queries on the rayon pool, its output written in place.
"""
    replace_section(REPO / "BENCHMARKS.md", report)
    print(report)


def replace_section(path: Path, section: str) -> None:
    """Replaces this benchmark's section of BENCHMARKS.md (from its heading to the next `## `),
    keeping the other benchmarks' sections."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    heading = section.splitlines()[0]
    start = text.find(heading)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + ("\n" + text[end + 1:] if end >= 0 else "")
    path.write_text(text)


if __name__ == "__main__":
    main()
