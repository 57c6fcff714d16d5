#!/bin/sh
# Builds Soragen.ofx.bundle (the OpenFX plugin) and optionally installs it.
#
#   packaging/ofx/bundle.sh [--debug] [--cuda] [--install]
#
# --cuda builds with the cargo feature `cuda`, after `. .ci/cuda-toolchain.sh && cuda_toolchain`
# (a run-time loading build, see README.md's CUDA: it loads without the NVIDIA driver).
# Release builds are stripped (strip from binutils, or $STRIP). The bundle lands in target/ofx/Soragen.ofx.bundle. --install copies it into the first folder
# of OFX_PLUGIN_PATH, or /usr/OFX/Plugins when that is unset (which usually needs root).
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
profile=release
install=no
features=
for arg in "$@"; do
    case "$arg" in
        --debug) profile=debug ;;
        --install) install=yes ;;
        --cuda) features="--features cuda" ;;
        *) echo "usage: $0 [--debug] [--cuda] [--install]" >&2; exit 2 ;;
    esac
done

case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) arch=Linux-x86-64; library=libsoragen_ofx.so; strip_flags=--strip-unneeded ;;
    Linux-aarch64) arch=Linux-arm-64; library=libsoragen_ofx.so; strip_flags=--strip-unneeded ;;
    Darwin-*) arch=MacOS; library=libsoragen_ofx.dylib; strip_flags=-x ;;
    *) echo "unsupported platform $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac

if [ -n "$features" ] && [ -z "${CARGO_BUILD_TARGET:-}" ]; then
    echo "--cuda: run '. .ci/cuda-toolchain.sh && cuda_toolchain' first" >&2
    exit 2
fi

cd "$root"
if [ "$profile" = release ]; then
    cargo build --release -p soragen-ofx $features
else
    cargo build -p soragen-ofx $features
fi
target=${CARGO_TARGET_DIR:-$root/target}
# An explicit target (cuda_toolchain sets one) puts the build in target/<triple>/<profile>.
built="$target${CARGO_BUILD_TARGET:+/$CARGO_BUILD_TARGET}/$profile"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

bundle="$target/ofx/Soragen.ofx.bundle"
rm -rf "$bundle"
mkdir -p "$bundle/Contents/$arch" "$bundle/Contents/Resources"
cp "$built/$library" "$bundle/Contents/$arch/Soragen.ofx"
if [ "$profile" = release ]; then
    # Symbols and debug information are for developers; hosts need the exported entry points only.
    "${STRIP:-strip}" $strip_flags "$bundle/Contents/$arch/Soragen.ofx"
fi
sed "s/@VERSION@/$version/g" "$root/packaging/ofx/Info.plist.in" > "$bundle/Contents/Info.plist"
# Hosts show Resources/<plugin identifier>.png next to each effect.
python3 "$root/packaging/ofx/icon.py" "$bundle/Contents/Resources" \
    org.soragen.Extend org.soragen.Insert org.soragen.ReplaceBackground org.soragen.Generate
echo "built $bundle"

if [ "$install" = yes ]; then
    destination=${OFX_PLUGIN_PATH:-/usr/OFX/Plugins}
    destination=${destination%%:*}
    mkdir -p "$destination"
    rm -rf "$destination/Soragen.ofx.bundle"
    cp -R "$bundle" "$destination/"
    echo "installed into $destination (restart the host; Resolve also caches plugin scans)"
fi
