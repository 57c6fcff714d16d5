# Sourced by .ci/run and the tests/gpu scripts: `cuda_toolchain` puts CUDA 13 from PyPI (a venv
# in target/cuda-toolchain) on PATH, tells cudarc which version it is, and makes every cuda build
# a run-time loading build (below). `cuda_toolchain runtime`, or `cuda_runtime_libraries` alone
# (no compiler, no Rust: for a machine that only runs a build), adds the libraries a cuda build
# loads (NVRTC, cuBLAS, cuRAND) to LD_LIBRARY_PATH; the driver's libcuda comes with the driver.

cuda_venv=target/cuda-toolchain

# Installs the given CUDA wheels into the venv; prints where CUDA 13's files land.
cuda_wheels() {
  [ -x "$cuda_venv/bin/pip" ] || python3 -m venv "$cuda_venv"
  "$cuda_venv/bin/pip" install -q --disable-pip-version-check "$@" >&2
  echo "$("$cuda_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu13"
}

cuda_runtime_libraries() {
  local root
  root="$(cuda_wheels nvidia-cuda-nvrtc==13.0.88 nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35)"
  export LD_LIBRARY_PATH="$root/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

cuda_toolchain() {
  local root
  root="$(cuda_wheels nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85)"
  export CUDA_ROOT="$root" CUDA_PATH="$root" PATH="$root/bin:$PATH"
  # CUDA 13.0, the oldest CUDA 13: nvcc writes candle's kernels as PTX of its own ISA version, and
  # a driver refuses PTX newer than it is, so this build runs on every CUDA 13 driver (the oldest
  # device.rs accepts; .ci/run checks the PTX's version). NVRTC, which compiles gpu/convert.cu at
  # run time, likewise. cudarc's bindings then ask the driver for CUDA 13.0's functions only.
  # (nvcc's wheel asks for nvidia-nvvm, its front end, unpinned: pinned here, or the newest
  # front end writes PTX that this ptxas rejects.)
  export CUDARC_CUDA_VERSION=13000

  # Load the CUDA libraries at run time instead of linking them, so that a cuda build starts, and
  # falls back to the CPU, where there is no NVIDIA driver. candle 0.11.1 turns on cudarc's
  # `dynamic-linking` (DT_NEEDED on libcuda.so.1, NVRTC, cuBLAS, cuRAND) and cudarc's build
  # script refuses `dynamic-loading` beside it, but cudarc's code only asks for
  # `dynamic-loading`, and with an explicit --target build scripts do not get the target's
  # rustflags. So cudarc compiles in loading mode (dlopen on first use), its build script still
  # asks the linker for -lcuda and the rest, and rustc's --as-needed drops them, unreferenced.
  # Empty stand-ins for those libraries let the link find them where no driver is. No other crate
  # in the dependency graph reads that feature. Binaries land in target/<host triple>/<profile>.
  if [ -n "${RUSTFLAGS:-}${CARGO_ENCODED_RUSTFLAGS:-}" ]; then
    echo "cuda_toolchain: unset RUSTFLAGS: it would replace the flags of the run-time loading build" >&2
    return 1
  fi
  local host stubs lib
  host="$(rustc -vV | sed -n 's/^host: //p')"
  stubs="$PWD/$cuda_venv/stubs"
  mkdir -p "$stubs"
  : >"$stubs/empty.c"
  for lib in cuda nvrtc cublas cublasLt curand; do
    [ -f "$stubs/lib$lib.so" ] || cc -shared -o "$stubs/lib$lib.so" "$stubs/empty.c"
  done
  # candle-kernels links its MoE kernels (libmoe.a, called from candle's quantized code) and
  # -lcudart for them: the static CUDA runtime serves that without a libcudart.so to load (it
  # opens the driver's libcuda itself, when first used).
  echo "INPUT($root/lib/libcudart_static.a)" >"$stubs/libcudart.so"
  export CARGO_BUILD_TARGET="$host"
  export "CARGO_TARGET_$(echo "$host" | tr 'a-z.-' 'A-Z__')_RUSTFLAGS=--cfg feature=\"dynamic-loading\" -L native=$stubs"

  if [ "${1:-}" = runtime ]; then
    cuda_runtime_libraries
  fi
}
