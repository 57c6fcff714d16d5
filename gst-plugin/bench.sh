#!/bin/sh
# Pass-through throughput of `soragen` against `identity` on the same pipeline.
# Usage: gst-plugin/bench.sh [buffers] [runs]    (from the repository root)
# Small frames make per-buffer overhead dominate; 1080p shows a realistic stream.
# The plugin is built optimised in the dev profile (its dependencies already are there), which
# saves a release build of the whole model stack; `cargo test` rebuilds it afterwards.
set -eu
buffers=${1:-100000}
runs=${2:-5}
cargo rustc -q -p gst-plugin-soragen --lib --crate-type cdylib -- -C opt-level=3
plugin_dir=$(mktemp -d)
trap 'rm -rf "$plugin_dir"' EXIT
cp target/debug/libgstsoragen.so "$plugin_dir/"
export GST_PLUGIN_PATH="$plugin_dir" GST_REGISTRY="$plugin_dir/registry.bin"

# Seconds one run takes, as gst-launch-1.0 reports it.
run() {
    gst-launch-1.0 videotestsrc num-buffers="$1" pattern=black ! "video/x-raw,format=I420,width=$2,height=$3,framerate=30/1" \
        ! $4 ! fakesink sync=false \
        | sed -n 's/^Execution ended after \([0-9]*\):\([0-9]*\):\([0-9.]*\)$/\1 \2 \3/p' \
        | awk '{ printf "%.4f\n", $1 * 3600 + $2 * 60 + $3 }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

bench() { # buffers width height
    : > "$plugin_dir/identity"; : > "$plugin_dir/soragen"; : > "$plugin_dir/insert"
    i=0
    while [ $i -lt "$runs" ]; do
        run "$1" "$2" "$3" identity >> "$plugin_dir/identity"
        run "$1" "$2" "$3" soragen >> "$plugin_dir/soragen"
        # Insert mode with no boundary in the stream: frames pass through, the latest kept as context.
        run "$1" "$2" "$3" "soragen mode=insert model=models/tiny" >> "$plugin_dir/insert"
        i=$((i + 1))
    done
    identity=$(median < "$plugin_dir/identity")
    soragen=$(median < "$plugin_dir/soragen")
    insert=$(median < "$plugin_dir/insert")
    echo "$1 buffers ${2}x$3 I420 (median of $runs): identity ${identity}s," \
        "soragen passthrough ${soragen}s ($(echo "$identity $soragen" | awk '{ printf "%.1f", 100 * $1 / $2 }')% of identity's throughput)," \
        "soragen insert (no boundary) ${insert}s ($(echo "$identity $insert" | awk '{ printf "%.1f", 100 * $1 / $2 }')%)"
}

bench "$buffers" 64 64
bench $((buffers / 100)) 1920 1080
