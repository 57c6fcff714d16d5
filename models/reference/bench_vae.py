"""VAE benchmark, Soragen against diffusers, side by side on this machine:

    python models/reference/bench_vae.py [--threads N] [--repeats R] [--sizes 480p,720p,1080p]

Builds the benchmark VAE (the Wan2.1 VAE architecture, `AutoencoderKLWan()`'s defaults: base 96,
multipliers 1, 2, 4, 4, z 16; random weights) and runs, each in its own process with the same
thread count (Soragen: the `bench_vae` example; diffusers: this script with `--child`):

- encode and decode times on the VACE benchmark's clip (17 frames at 128x128, 5 latent frames),
  median of R runs after a warm-up;
- the decode's peak memory (the process's peak RSS, from `wait4`) at 480p, 720p and 1080p
  working sizes, on whole frames and in diffusers' default tiles (`enable_tiling()`: 256 x 256
  pixels every 192), on one latent frame (one output frame: the activations of a frame, not of
  a 4-frame chunk), next to a process that only loads the weights and inputs.

Writes its section of BENCHMARKS.md.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from bench import REPO, median_seconds, replace_section

SIZES = {"480p": (832, 480), "720p": (1280, 720), "1080p": (1920, 1088)}
TIMED_FRAMES, TIMED_SIDE = 17, 128
MEMORY_LATENT_FRAMES = 1


def child(folder, inputs, mode, tiles, repeats):
    """The diffusers side of one measurement, with the arguments of the `bench_vae` example."""
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan.from_pretrained(folder).eval()
    if tiles == "tiled":
        vae.enable_tiling()
    tensors = load_file(inputs)

    def run():
        with torch.no_grad():
            if mode == "encode":
                vae.encode(tensors["video"]).latent_dist.mode()
            else:
                vae.decode(tensors["latents"]).sample

    seconds = None
    if mode != "load":
        seconds = median_seconds(repeats, run) if repeats > 1 else timed_once(run)
    print(json.dumps({"seconds": seconds, "threads": torch.get_num_threads()}))


def timed_once(run):
    import time
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def measured(command, env):
    """Runs `command`; its JSON output and peak RSS in MiB."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{command[0]} failed with {status}")
    return json.loads(out), usage.ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--workdir", default="/tmp/soragen-bench-vae")
    parser.add_argument("--child", nargs=5, metavar=("VAE", "INPUTS", "MODE", "TILES", "REPEATS"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        folder, inputs, mode, tiles, repeats = args.child
        return child(folder, inputs, mode, tiles, int(repeats))

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    from diffusers import AutoencoderKLWan
    torch.manual_seed(0)
    AutoencoderKLWan().eval().save_pretrained(work / "vae")
    gen = torch.Generator().manual_seed(0)
    timed = work / "timed.safetensors"
    latent_side = TIMED_SIDE // 8
    save_file({"video": torch.rand(1, 3, TIMED_FRAMES, TIMED_SIDE, TIMED_SIDE, generator=gen) * 2 - 1,
               "latents": torch.randn(1, 16, (TIMED_FRAMES - 1) // 4 + 1, latent_side, latent_side,
                                      generator=gen)}, str(timed))

    subprocess.run(["cargo", "build", "--release", "-q", "-p", "soragen-models", "--example", "bench_vae"],
                   cwd=REPO, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    threads = str(args.threads)
    env = {**os.environ, "RAYON_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
    sides = {
        "Soragen": [str(target / "release/examples/bench_vae")],
        "diffusers": [sys.executable, __file__, "--threads", threads, "--child"],
    }

    def run(side, inputs, mode, tiles, repeats):
        command = sides[side] + [str(work / "vae"), str(inputs), mode, tiles, str(repeats)]
        result, peak = measured(command, env)
        print(f"{side} {Path(inputs).stem} {mode} {tiles}: {result['seconds']} s, peak RSS {peak:.0f} MiB",
              flush=True)
        return result["seconds"], peak

    load_before = os.getloadavg()[0]
    times = {(side, mode): run(side, timed, mode, "whole", args.repeats)[0]
             for mode in ("encode", "decode") for side in sides}
    sizes = [s for s in args.sizes.split(",") if s]
    memory = {}
    for name in sizes:
        width, height = SIZES[name]
        inputs = work / f"{name}.safetensors"
        save_file({"latents": torch.randn(1, 16, MEMORY_LATENT_FRAMES, height // 8, width // 8,
                                          generator=gen)}, str(inputs))
        for side in sides:
            for tiles in ("whole", "tiled"):
                memory[(name, side, tiles)] = run(side, inputs, "decode", tiles, 1)
    baseline = {side: run(side, timed, "load", "whole", 1)[1] for side in sides}
    load_after = os.getloadavg()[0]

    time_rows = "\n".join(
        f"| VAE {mode} | {times[('Soragen', mode)]:.3f} s | {times[('diffusers', mode)]:.3f} s | "
        f"{times[('Soragen', mode)] / times[('diffusers', mode)]:.2f} |" for mode in ("encode", "decode"))
    memory_rows = "\n".join(
        f"| {name} ({SIZES[name][0]}x{SIZES[name][1]}) | "
        + " | ".join(f"{memory[(name, side, tiles)][1]:.0f} MiB ({memory[(name, side, tiles)][0]:.0f} s)"
                     for side in sides for tiles in ("whole", "tiled")) + " |"
        for name in sizes)
    import diffusers
    report = f"""## VAE: encode and decode, and the decode's peak memory by working size, Soragen vs diffusers

Measured by `python models/reference/bench_vae.py --threads {args.threads} --repeats {args.repeats}`:
Soragen (the `bench_vae` example, release build) and diffusers {diffusers.__version__} / torch
{torch.__version__}, each a process of its own, side by side on one machine
({platform.processor() or platform.machine()}, {os.cpu_count()} cores), {args.threads} threads each,
float32 on the CPU. The machine's 1-minute load average was {load_before:.1f} before and
{load_after:.1f} after the run (other work shares it when that exceeds the {args.threads} threads
used here): compare the ratios, measured side by side, more than the seconds.

The Wan2.1 VAE architecture (`AutoencoderKLWan()`'s defaults: base 96, multipliers 1, 2, 4, 4,
z 16), random weights.

Times: encode of {TIMED_FRAMES} frames at {TIMED_SIDE}x{TIMED_SIDE} and decode of its
{(TIMED_FRAMES - 1) // 4 + 1} latent frames, whole frames, median of {args.repeats} runs after a
warm-up.

| what | Soragen | diffusers | ratio (Soragen / diffusers) |
| --- | --- | --- | --- |
{time_rows}

Peak memory of a process that only decodes {MEMORY_LATENT_FRAMES} latent frame (one output
frame) at each working size (peak RSS, whole process; in brackets the decode's seconds, one
run), on whole frames and in diffusers' default tiles (`enable_tiling()`: 256 x 256 pixels every
192, blended over 64). A process that only loads the weights and inputs peaks at
{baseline['Soragen']:.0f} MiB (Soragen) and {baseline['diffusers']:.0f} MiB (diffusers, with torch
and the Python runtime).

| working size | Soragen, whole | Soragen, tiled | diffusers, whole | diffusers, tiled |
| --- | --- | --- | --- | --- |
{memory_rows}
"""
    replace_section(REPO / "BENCHMARKS.md", report)
    print(report)


if __name__ == "__main__":
    main()
