# Sourced by .ci/run and tests/gpu/run.sh: `cuda_toolchain` puts CUDA 13 from PyPI (a venv in
# target/cuda-toolchain) on PATH and tells cudarc which version it is. `cuda_toolchain runtime`
# adds the libraries a cuda build links and loads (NVRTC, cuBLAS, cuRAND) and a link name for
# the driver's libcuda, which only an NVIDIA driver provides.
cuda_toolchain() {
  local toolchain=target/cuda-toolchain
  local wheels=(nvidia-cuda-nvcc==13.5.37 nvidia-cuda-runtime==13.5.37 nvidia-cuda-crt==13.5.37 nvidia-cuda-cccl==13.3.5.0.6)
  if [ "${1:-}" = runtime ]; then
    wheels+=(nvidia-cuda-nvrtc==13.5.37 nvidia-cublas==13.10.0.20 nvidia-curand==10.4.4.72)
  fi
  [ -x "$toolchain/bin/pip" ] || python3 -m venv "$toolchain"
  "$toolchain/bin/pip" install -q --disable-pip-version-check "${wheels[@]}"
  local root
  root="$("$toolchain/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu13"
  export CUDA_ROOT="$root" CUDA_PATH="$root" PATH="$root/bin:$PATH"
  # cudarc 0.19.10 knows CUDA up to 13.4; the wheels are 13.5, which it would refuse by name.
  export CUDARC_CUDA_VERSION=13040
  if [ "${1:-}" = runtime ]; then
    # The wheels ship versioned names only; the linker asks for the plain ones.
    local lib
    for lib in nvrtc cublas cublasLt curand; do
      ln -sf "$(ls "$root"/lib/lib$lib.so.* | head -n 1)" "$root/lib/lib$lib.so"
    done
    local libcuda
    libcuda="$(ldconfig -p | awk '/libcuda\.so\.1 /{print $NF; exit}')"
    if [ -z "$libcuda" ]; then
      echo "no libcuda.so.1: install the NVIDIA driver" >&2
      return 1
    fi
    ln -sf "$libcuda" "$root/lib/libcuda.so"
    export LD_LIBRARY_PATH="$root/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
}
