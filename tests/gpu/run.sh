#!/usr/bin/env bash
# Everything the CUDA path needs a GPU for, in one command, on a machine with an NVIDIA GPU and
# its driver:
#   1. the core: conversion kernels against their CPU reference in every layout, a host's
#      stream, the VACE pipeline on the GPU against the CPU and diffusers (f32) and in bf16;
#   2. the OpenFX test host passing device images and a stream, and a GStreamer pipeline with
#      CUDA memory (the `cuda` test of each plugin);
#   3. a timing: `soragen generate`, 81 frames at 832x480, on the GPU. Set SORAGEN_GPU_MODEL to
#      a real model folder (e.g. Wan2.1-VACE-1.3B-diffusers) to time it; else the tiny model runs
#      at that size, which times the VAE and the plumbing but not a real transformer.
# It runs the binaries in .gpu-pack/pack.tar.xz (tests/gpu/pack.sh), building the pack first if
# there is none (that needs cargo and the network). On a machine with neither, such as the lent
# device machine: run tests/gpu/pack.sh here, then `tests/gpu/run.sh` there with `.gpu-pack`
# carried. The CUDA libraries (NVRTC, cuBLAS, cuRAND 13) are taken from the machine (a CUDA
# toolkit, or the NVIDIA wheels of its Python), else installed from PyPI.
# A GPU test that skips fails the run. Without a GPU it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! { command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; }; then
  echo "tests/gpu/run.sh: no NVIDIA GPU here (nvidia-smi finds none): nothing to run"
  exit 0
fi
nvidia-smi -L
[ -f .gpu-pack/pack.tar.xz ] || tests/gpu/pack.sh

pack="$(mktemp -d)"
trap 'rm -rf "$pack"' EXIT
python3 -m tarfile -e .gpu-pack/pack.tar.xz "$pack"
manifest() { awk -v key="$1" '$1 == key { sub(/^[^ ]+ /, ""); print }' "$pack/manifest"; }
echo "pack: $(manifest commit), nvcc $(manifest nvcc), sm_$(manifest compute_cap)"

# The test binaries find their fixtures through the build root compiled into them.
root="$(manifest root)"
if [ "$(realpath -m "$root")" != "$PWD" ]; then
  if [ -e "$root" ] && [ "$(realpath "$root")" != "$PWD" ]; then
    echo "tests/gpu/run.sh: the pack was built in $root, which here is something else" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$root")"
  ln -sfn "$PWD" "$root"
fi
mkdir -p "target/$(manifest target)/tmp"

# NVRTC, cuBLAS and cuRAND of CUDA 13, where the machine has them; else from PyPI.
cuda_libraries=""
for library in libnvrtc.so.13 libcublas.so.13 libcurand.so.10; do
  ldconfig -p | grep -q "$library " && continue
  found="$(find /usr/local/cuda*/lib64 /usr/local/cuda*/targets/*/lib \
    $(python3 -c 'import nvidia; print(*nvidia.__path__)' 2>/dev/null) \
    -name "$library" 2>/dev/null | head -1 || true)"
  if [ -z "$found" ]; then
    . .ci/cuda-toolchain.sh
    cuda_runtime_libraries
    cuda_libraries=""
    break
  fi
  cuda_libraries="$cuda_libraries:$(dirname "$found")"
done
export LD_LIBRARY_PATH="$pack/lib$cuda_libraries${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# GStreamer: the packed plugins alone, and a registry of their own.
export GST_PLUGIN_SYSTEM_PATH_1_0="$pack/gstreamer" GST_PLUGIN_PATH_1_0="" \
  GST_PLUGIN_SCANNER_1_0="$pack/gstreamer/gst-plugin-scanner" GST_REGISTRY_1_0="$pack/registry.bin"

log="$pack/log"
# Runs a packed test binary from its package's folder (as cargo does). The GPU tests are
# #[ignore]d in plain `cargo test` and run here with --include-ignored; they fail without a GPU
# rather than skip. A "skipped" in the output still fails the run, as a guard.
run_test() {
  local folder="$1" binary="$2"
  shift 2
  echo "-- $binary $*"
  (cd "$folder" && "$pack/bin/$binary" "$@" 2>&1) | tee "$log"
  if grep -q "skipped" "$log"; then
    echo "tests/gpu/run.sh: a GPU test skipped on this GPU machine" >&2
    exit 1
  fi
}

echo "== 1. core"
run_test crates/core soragen-core-lib device
run_test crates/core soragen-core-gpu --include-ignored --nocapture --test-threads 1

echo "== 2. hosts"
run_test ofx-plugin soragen-ofx-cuda --include-ignored --skip without_a_gpu --nocapture --test-threads 1
run_test gst-plugin gst-plugin-soragen-cuda --include-ignored --nocapture --test-threads 1

echo "== 3. timing"
model="${SORAGEN_GPU_MODEL:-models/tiny}"
for steps in 1 5; do
  start=$(date +%s.%N)
  # (stderr both shown and kept: a fallback to the CPU would time the CPU.)
  { SORAGEN_DEVICE=cuda "$pack/bin/soragen" generate --model "$model" \
      --prompt "a harbour at dawn, boats" --frames 81 --width 832 --height 480 --steps "$steps" \
      --seed 0 --output "$pack/$steps.y4m" 2>&1 1>&3 | tee "$log" >&2; } 3>&1
  end=$(date +%s.%N)
  if grep -q "running on the CPU" "$log"; then
    echo "the cuda build fell back to the CPU: no timing on the GPU" >&2
    exit 1
  fi
  seconds[$steps]=$(awk "BEGIN { printf \"%.2f\", $end - $start }")
done
# Two step counts: the difference is 4 steps of the transformer (with guidance), the rest is
# loading, encoding and the VAE decode.
echo "model: $model (the CLI of the pack: test profile)"
echo "81 frames at 832x480, 1 step: ${seconds[1]} s; 5 steps: ${seconds[5]} s;" \
  "per step: $(awk "BEGIN { printf \"%.3f\", (${seconds[5]} - ${seconds[1]}) / 4 }") s"
