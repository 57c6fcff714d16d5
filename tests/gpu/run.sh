#!/usr/bin/env bash
# Everything the CUDA path needs a GPU for, in one command, on a machine with an NVIDIA GPU, its
# driver and network access to crates.io and PyPI:
#   1. the core: conversion kernels against their CPU reference in every layout, a host's
#      stream, the VACE pipeline on the GPU against the CPU and diffusers (f32) and in bf16;
#   2. the OpenFX test host passing device images and a stream, and a GStreamer pipeline with
#      CUDA memory (the `cuda` test of each plugin);
#   3. a timing: `soragen generate`, 81 frames at 832x480, on the GPU. Set SORAGEN_GPU_MODEL to
#      a real model folder (e.g. Wan2.1-VACE-1.3B-diffusers) to time it; else the tiny model runs
#      at that size, which times the VAE and the plumbing but not a real transformer.
# Without a GPU it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! { command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; }; then
  echo "tests/gpu/run.sh: no NVIDIA GPU here (nvidia-smi finds none): nothing to run"
  exit 0
fi
nvidia-smi -L
. .ci/cuda-toolchain.sh
cuda_toolchain runtime

echo "== 1. core"
cargo test --release -p soragen-core --features cuda --lib device
cargo test --release -p soragen-core --features cuda --test gpu -- --nocapture --test-threads 1

echo "== 2. hosts"
for test in ofx-plugin/tests/cuda.rs:soragen-ofx gst-plugin/tests/cuda.rs:gst-plugin-soragen; do
  file="${test%%:*}" package="${test##*:}"
  if [ -f "$file" ]; then
    cargo test --release -p "$package" --features cuda --test cuda -- --nocapture --test-threads 1
  else
    echo "not yet written: $file"
  fi
done

echo "== 3. timing"
cargo build --release -p soragen-cli --features cuda
model="${SORAGEN_GPU_MODEL:-models/tiny}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for steps in 1 5; do
  start=$(date +%s.%N)
  # cuda_toolchain builds for an explicit target (run-time loading of the CUDA libraries).
  # (stderr both shown and kept: a fallback to the CPU would time the CPU.)
  { SORAGEN_DEVICE=cuda "target/$CARGO_BUILD_TARGET/release/soragen" generate --model "$model" \
      --prompt "a harbour at dawn, boats" --frames 81 --width 832 --height 480 --steps "$steps" \
      --seed 0 --output "$out/$steps.y4m" 2>&1 1>&3 | tee "$out/stderr" >&2; } 3>&1
  end=$(date +%s.%N)
  if grep -q "running on the CPU" "$out/stderr"; then
    echo "the cuda build fell back to the CPU: no timing on the GPU" >&2
    exit 1
  fi
  seconds[$steps]=$(awk "BEGIN { printf \"%.2f\", $end - $start }")
done
# Two step counts: the difference is 4 steps of the transformer (with guidance), the rest is
# loading, encoding and the VAE decode.
echo "model: $model"
echo "81 frames at 832x480, 1 step: ${seconds[1]} s; 5 steps: ${seconds[5]} s;" \
  "per step: $(awk "BEGIN { printf \"%.3f\", (${seconds[5]} - ${seconds[1]}) / 4 }") s"
