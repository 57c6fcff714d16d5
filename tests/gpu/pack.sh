#!/usr/bin/env bash
# Builds everything tests/gpu/run.sh runs into one file, .gpu-pack/pack.tar.xz, for a GPU machine
# that has no cargo and no network (such as the lent device machine, which is sent the working
# tree and the ignored paths named in its `carry`: name `.gpu-pack`). Needs what .ci/run installs
# plus gstreamer1.0-plugins-bad (GStreamer's CUDA elements), and the network for the CUDA compiler.
#
# The pack holds, stripped of debug information:
#   bin/        the cuda test binaries (core, OpenFX host, GStreamer), the OpenFX plugin beside its
#               test (where the test looks for it) and the `soragen` CLI;
#   gstreamer/  the GStreamer plugins the GPU pipelines use (core elements, videotestsrc, nvcodec's
#               cudaupload/cudadownload) and the plugin scanner;
#   lib/        every shared library those need, from this machine, except the C/C++ runtimes
#               and NVIDIA's (the driver and CUDA libraries come from the GPU machine);
#   manifest    the build root the binaries name (their fixtures are found through it) and commit.
# The test binaries are built in the test profile (our code at opt-level 1, dependencies at 3),
# as `cargo test` builds them; the CLI too, so its timing is of that profile.
set -euo pipefail
cd "$(dirname "$0")/../.."

. .ci/cuda-toolchain.sh
cuda_toolchain
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/gstreamer" "$stage/lib"

# Prints "package target path" for each executable cargo reports in its JSON messages.
executables() {
  python3 -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message.get("executable"):
        # "path+file:///…/core#soragen-core@0.1.0", or "…/name#0.1.0" where the folder is the name
        url, _, fragment = message["package_id"].partition("#")
        package = fragment.split("@")[0] if "@" in fragment else url.rstrip("/").rsplit("/", 1)[-1]
        print(package, message["target"]["name"], message["executable"])
'
}

# Each test binary as bin/<package>-<test> ("lib" for a library's unit tests).
built="$stage/built"
{
  cargo test --features cuda --no-run --message-format=json -p soragen-core --lib --test gpu
  cargo test --features cuda --no-run --message-format=json -p soragen-ofx --test cuda
  cargo test --features cuda --no-run --message-format=json -p gst-plugin-soragen --test cuda
  cargo build --profile test --features cuda --message-format=json -p soragen-cli
} | executables >"$built"
while read -r package target path; do
  case "$package:$target" in
    soragen-core:soragen_core) name=soragen-core-lib ;;
    soragen-cli:soragen) name=soragen ;;
    *) name="$package-$target" ;;
  esac
  cp "$path" "$stage/bin/$name"
  if [ "$package" = soragen-ofx ]; then
    cp "$(dirname "$path")/libsoragen_ofx.so" "$stage/bin/"
  fi
done <"$built"
rm "$built"
for name in soragen-core-lib soragen-core-gpu soragen-ofx-cuda gst-plugin-soragen-cuda soragen libsoragen_ofx.so; do
  [ -f "$stage/bin/$name" ] || { echo "tests/gpu/pack.sh: cargo built no $name" >&2; exit 1; }
done
strip --strip-debug "$stage"/bin/*

plugins="$(pkg-config --variable=pluginsdir gstreamer-1.0)"
for plugin in coreelements videotestsrc nvcodec; do
  if [ ! -f "$plugins/libgst$plugin.so" ]; then
    echo "tests/gpu/pack.sh: no GStreamer plugin $plugin in $plugins (install gstreamer1.0-plugins-bad)" >&2
    exit 1
  fi
  cp "$plugins/libgst$plugin.so" "$stage/gstreamer/"
done
cp "$(pkg-config --variable=pluginscannerdir gstreamer-1.0)/gst-plugin-scanner" "$stage/gstreamer/"
# libgstcuda is opened at run time by the plugin (not linked): name it too.
cuda_library="$(ldconfig -p | awk '/libgstcuda-1\.0\.so\.0 / { print $NF; exit }')"
[ -n "$cuda_library" ] || { echo "tests/gpu/pack.sh: no libgstcuda-1.0.so.0 (install libgstreamer-plugins-bad1.0-0)" >&2; exit 1; }

# The libraries the dynamic loader resolves for all of them, but the C and C++ runtimes (the GPU
# machine's are newer) and anything of NVIDIA's.
{
  echo "$cuda_library"
  for file in "$stage"/bin/* "$stage"/gstreamer/* "$cuda_library"; do
    ldd "$file" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'
  done
} | sort -u | while read -r library; do
  case "$(basename "$library")" in
    ld-linux*|libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libresolv.so*|libutil.so*|libgcc_s.so*|libstdc++.so*) ;;
    libcuda.so*|libnvidia*|libnvrtc*|libcublas*|libcurand*) ;;
    *) cp -L "$library" "$stage/lib/" ;;
  esac
done

{
  echo "root $PWD"
  echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "target $CARGO_BUILD_TARGET"
  echo "nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
  echo "compute_cap $CUDA_COMPUTE_CAP"
} >"$stage/manifest"

mkdir -p .gpu-pack
rm -f .gpu-pack/pack.tar.xz
# Every binary carries the same candle kernels (a 33 MB fatbin) and most of the same code, further
# apart in the tar than xz's default 8 MiB window: a window over the whole tar shares them (48 MiB
# with the default, 18 with this).
tar -C "$stage" -cf - manifest bin gstreamer lib | xz -T2 --lzma2=preset=6,dict=384MiB >.gpu-pack/pack.tar.xz
size=$(stat -c %s .gpu-pack/pack.tar.xz)
echo "tests/gpu/pack.sh: .gpu-pack/pack.tar.xz, $((size / 1024 / 1024)) MiB:"
sed 's/^/  /' "$stage/manifest"
# The device machine takes 64 MiB in all, the working tree (about 14 MiB) included.
if [ "$size" -gt $((48 * 1024 * 1024)) ]; then
  echo "tests/gpu/pack.sh: the pack is over 48 MiB: with the working tree it would not travel to the device machine" >&2
  exit 1
fi
