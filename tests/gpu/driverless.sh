#!/usr/bin/env bash
# The cuda builds where there is no NVIDIA driver, as a user without a GPU installs them: each
# must start, name no CUDA library in its dynamic section, and run on the CPU.
#   1. the CLI: `soragen generate` on the tiny model, one line saying why it runs on the CPU,
#      without a driver and with one too old for CUDA 13;
#   2. the OpenFX bundle: the whole OpenFX test suite (Resolve-, Nuke- and CUDA-host profiles)
#      against the cuda bundle, which must declare CUDA render unsupported and render on the CPU;
#   3. the GStreamer plugin: gst-inspect-1.0 loads it, soragensrc generates frames, and the
#      `cuda` tests of the plugin pass (those that need a GPU are #[ignore]d: run.sh runs them).
# Needs what .ci/run installs, and takes long (a cold cuda build compiles candle's CUDA kernels
# and every dependency again): not part of .ci/run. On a machine with the driver it says so and
# exits 0 (tests/gpu/run.sh is the one to run there).
set -euo pipefail
cd "$(dirname "$0")/../.."

if ldconfig -p | grep -q 'libcuda\.so\.1 '; then
  echo "tests/gpu/driverless.sh: this machine has the NVIDIA driver (libcuda.so.1): nothing to check"
  exit 0
fi

# The cuda builds, in a subshell: cuda_toolchain's settings must not reach the CPU test build below.
(
  . .ci/cuda-toolchain.sh
  cuda_toolchain
  export CUDA_COMPUTE_CAP=90
  cargo build -p soragen-cli --features cuda
  cargo build -p gst-plugin-soragen --features cuda
  packaging/ofx/bundle.sh --debug --cuda
)
host="$(rustc -vV | sed -n 's/^host: //p')"
built="target/$host/debug"
soragen="$built/soragen"
bundle="target/ofx/Soragen.ofx.bundle"
plugin="$built/libgstsoragen.so"

for binary in "$soragen" "$bundle/Contents/Linux-x86-64/Soragen.ofx" "$plugin"; do
  echo "== $binary"
  readelf -d "$binary" | grep NEEDED
  if readelf -d "$binary" | grep -E 'NEEDED.*lib(cuda|cudart|nvrtc|cublas|cublasLt|curand)\.'; then
    echo "$binary links CUDA libraries: it would not start without the NVIDIA driver" >&2
    exit 1
  fi
done

echo "== 1. CLI"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$soragen" generate --model models/tiny --prompt x --frames 1 --width 32 --height 32 --steps 1 \
  --output "$out/x.y4m" 2>"$out/stderr"
cat "$out/stderr"
[ -s "$out/x.y4m" ]
grep -qxF "soragen: running on the CPU: CUDA device 0 did not open: no NVIDIA driver (libcuda.so.1 not found)" "$out/stderr"
[ "$(wc -l <"$out/stderr")" = 1 ]
# A driver too old for CUDA 13 (a stand-in libcuda that reports CUDA 12.4): the same fallback,
# named, before cudarc could panic on a function the old driver lacks.
mkdir "$out/old-driver"
printf 'int cuDriverGetVersion(int *version) { *version = 12040; return 0; }\n' >"$out/old-driver/cuda.c"
cc -shared -fPIC -o "$out/old-driver/libcuda.so.1" "$out/old-driver/cuda.c"
LD_LIBRARY_PATH="$out/old-driver" "$soragen" generate --model models/tiny --prompt x --frames 1 --width 32 \
  --height 32 --steps 1 --output "$out/x.y4m" 2>"$out/stderr"
cat "$out/stderr"
grep -qxF "soragen: running on the CPU: CUDA device 0 did not open: the NVIDIA driver supports CUDA 12.4, this build needs CUDA 13.0 or later (update the driver)" "$out/stderr"
[ "$(wc -l <"$out/stderr")" = 1 ]

echo "== 2. OpenFX"
# A debug bundle is not stripped: the packaging test is for release bundles.
SORAGEN_OFX_BUNDLE="$PWD/$bundle" cargo test -p soragen-ofx -- --skip the_packaged_bundle_is_complete_stripped_and_loads

echo "== 3. GStreamer"
GST_PLUGIN_PATH="$PWD/$built" gst-inspect-1.0 soragen >/dev/null
GST_PLUGIN_PATH="$PWD/$built" gst-launch-1.0 -q soragensrc num-frames=5 steps=2 model="$PWD/models/tiny" ! \
  video/x-raw,format=I420,width=32,height=32 ! fakesink 2>"$out/gst"
cat "$out/gst"
grep -q "running on the CPU" "$out/gst"
(
  . .ci/cuda-toolchain.sh
  cuda_toolchain
  export CUDA_COMPUTE_CAP=90
  cargo test -p gst-plugin-soragen --features cuda --test cuda
)
echo "tests/gpu/driverless.sh: every cuda build starts and runs on the CPU without the driver"
