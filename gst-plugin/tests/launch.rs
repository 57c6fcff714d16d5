//! The built plugin in the real tools: `gst-inspect-1.0` lists it, `gst-launch-1.0` runs every
//! mode with `videotestsrc` and the tiny model, and we count the buffers reaching `fakesink`,
//! read their timestamps and events, and count the frames a clock-synchronised sink drops.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::TINY_MODEL;

/// A folder holding only the plugin cargo built for this test (its `deps/` folder holds every
/// other shared library too, which GStreamer would try to load), plus a fresh registry.
fn plugin_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let deps = std::env::current_exe()
            .unwrap()
            .parent()
            .unwrap()
            .to_path_buf();
        let built = deps.join("libgstsoragen.so");
        assert!(
            built.is_file(),
            "cargo builds the cdylib next to the test: {}",
            built.display()
        );
        let dir = std::env::temp_dir().join(format!("soragen-gst-plugin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&built, dir.join("libgstsoragen.so")).unwrap();
        dir
    })
}

fn gst_tool(tool: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let dir = plugin_dir();
    // A hung pipeline fails the test instead of stalling the suite.
    Command::new("timeout")
        .arg("120")
        .arg(tool)
        .args(args)
        .env("GST_PLUGIN_PATH", dir)
        .env("GST_REGISTRY", dir.join("registry.bin"))
        .envs(envs.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{tool} must be installed (gstreamer1.0-tools): {e}"))
}

/// Runs a pipeline; returns its output and how many buffers reached the fakesink.
fn launch(pipeline: &str) -> (Output, usize) {
    launch_with(pipeline, &[])
}

/// [`launch`] with extra environment variables.
fn launch_with(pipeline: &str, envs: &[(&str, &str)]) -> (Output, usize) {
    launch_flagged(&["-v"], pipeline, envs)
}

/// [`launch`] with gst-launch-1.0's `flags` (`-v` for the fakesink's messages, `-m` for every
/// bus message).
fn launch_flagged(flags: &[&str], pipeline: &str, envs: &[(&str, &str)]) -> (Output, usize) {
    let mut args = flags.to_vec();
    args.extend(pipeline.split_whitespace());
    let output = gst_tool("gst-launch-1.0", &args, envs);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let buffers = stdout
        .lines()
        .filter(|l| l.contains("last-message = chain"))
        .count();
    (output, buffers)
}

fn assert_buffers(pipeline: &str, expected: usize) {
    let (output, buffers) = launch(pipeline);
    assert!(
        output.status.success(),
        "{pipeline}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(buffers, expected, "{pipeline}");
}

fn source(count: u32, format: &str) -> String {
    format!(
        "videotestsrc num-buffers={count} ! video/x-raw,format={format},width=32,height=32,framerate=16/1"
    )
}

const SINK: &str = "fakesink silent=false";

fn inspect(name: &str) -> String {
    let output = gst_tool("gst-inspect-1.0", &["--no-colors", name], &[]);
    assert!(
        output.status.success(),
        "gst-inspect-1.0 {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn gst_inspect_documents_both_elements() {
    let soragen = inspect("soragen");
    for expected in [
        "Filter/Effect/Video",
        "passthrough",
        "extend-forward",
        "extend-backward",
        "insert",
        "replace-background",
        "context-frames",
        "negative-prompt",
        "processing-latency",
        "insert-at",
        "Range: 1 - 1000 Default: 50",
        "\"auto\" (the GPU in a CUDA build when one opens, else the CPU), \"cpu\", or \"cuda:N\"",
        "SINK template: 'mask'",
        "format: { (string)RGBA, (string)RGBx, (string)BGRA, (string)BGRx, (string)RGB, (string)I420, (string)NV12 }",
    ] {
        assert!(
            soragen.contains(expected),
            "missing {expected:?} in\n{soragen}"
        );
    }
    let source = inspect("soragensrc");
    assert!(
        source.contains("Source/Video") && source.contains("num-frames"),
        "{source}"
    );
}

#[test]
fn passthrough_lets_every_frame_through() {
    assert_buffers(&format!("{} ! soragen ! {SINK}", source(5, "I420")), 5);
}

#[test]
fn extend_forward_adds_frames_after_the_last() {
    assert_buffers(
        &format!(
            "{} ! soragen mode=extend-forward frames=3 context-frames=2 steps=2 model={TINY_MODEL} ! {SINK}",
            source(5, "NV12")
        ),
        8,
    );
}

#[test]
fn extend_backward_adds_frames_before_the_first() {
    assert_buffers(
        &format!(
            "{} ! soragen mode=extend-backward frames=3 context-frames=2 steps=2 model={TINY_MODEL} ! {SINK}",
            source(5, "BGRx")
        ),
        8,
    );
}

#[test]
fn insert_fills_the_boundary_concat_makes() {
    let piece = source(3, "RGB");
    assert_buffers(
        &format!(
            "concat name=c ! soragen mode=insert frames=2 context-frames=2 steps=2 model={TINY_MODEL} ! {SINK} {piece} ! c. {piece} ! c."
        ),
        8,
    );
}

#[test]
fn replace_background_keeps_every_frame() {
    // Without a mask pad the alpha marks the background: a transparent test card has one.
    let transparent = source(5, "RGBA").replace(
        "videotestsrc ",
        "videotestsrc pattern=solid-color foreground-color=0x00000000 ",
    );
    assert_buffers(
        &format!(
            "{transparent} ! soragen mode=replace-background frames=2 steps=2 model={TINY_MODEL} ! {SINK}"
        ),
        5,
    );
    // Opaque frames and no mask: nothing to replace is an error on the bus, not a silent
    // pass-through.
    let (output, _) = launch(&format!(
        "{} ! soragen mode=replace-background frames=2 steps=2 model={TINY_MODEL} ! {SINK}",
        source(5, "RGBA")
    ));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("marks no background"),
        "{stderr}"
    );
}

#[test]
fn replace_background_takes_masks_from_a_second_pad() {
    let mask = "videotestsrc num-buffers=5 pattern=white ! video/x-raw,format=GRAY8,width=32,height=32,framerate=16/1";
    assert_buffers(
        &format!(
            // The mask pad first: until it exists, the video pad offers only formats with alpha.
            "soragen name=s mode=replace-background frames=2 steps=2 model={TINY_MODEL} ! {SINK} {mask} ! s.mask {} ! s.sink",
            source(5, "RGB")
        ),
        5,
    );
}

#[test]
fn soragensrc_generates_the_requested_frames() {
    assert_buffers(
        &format!(
            "soragensrc num-frames=5 steps=2 model={TINY_MODEL} ! video/x-raw,format=I420,width=32,height=32 ! {SINK}"
        ),
        5,
    );
}

#[test]
fn a_bad_model_stops_the_pipeline_with_an_error() {
    let (output, _) = launch(&format!(
        "{} ! soragen mode=extend-forward model=/nonexistent ! {SINK}",
        source(5, "RGBA")
    ));
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    assert!(
        text.contains("Cannot load the model /nonexistent"),
        "{text}"
    );
}

#[test]
fn a_repository_id_is_looked_up_in_the_hugging_face_cache() {
    let cache = std::env::temp_dir().join(format!("soragen-gst-empty-hub-{}", std::process::id()));
    std::fs::create_dir_all(&cache).unwrap();
    let envs = [
        ("HF_HUB_CACHE", cache.to_str().unwrap()),
        ("HF_HUB_OFFLINE", "1"),
    ];
    let pipeline = format!(
        "{} ! soragen mode=extend-forward model=nobody/no-such-model ! {SINK}",
        source(5, "RGBA")
    );
    let (output, _) = launch_with(&pipeline, &envs);
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    assert!(
        text.contains("Cannot load the model nobody/no-such-model"),
        "{text}"
    );
    assert!(text.contains("offline"), "{text}");
}

#[test]
fn an_out_of_range_value_is_refused_with_a_warning() {
    let (output, buffers) = launch(&format!("{} ! soragen steps=0 ! {SINK}", source(2, "RGBA")));
    assert!(output.status.success());
    assert_eq!(buffers, 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("steps"), "{stderr}");
}

/// What reached a `fakesink silent=false` under `-v`, in order.
#[derive(Debug, PartialEq)]
enum Seen {
    /// A buffer and its PTS in ns.
    Buffer(u64),
    /// An event by its type name (`segment`, `eos`, ...).
    Event(String),
}

fn seen_by_the_sink(stdout: &str) -> Vec<Seen> {
    stdout
        .lines()
        .filter_map(|line| {
            let (_, message) = line.split_once("last-message = ")?;
            if message.starts_with("chain") {
                let pts = message.split_once("pts: ")?.1.split_once(',')?.0;
                let (h, rest) = pts.split_once(':')?;
                let (m, s) = rest.split_once(':')?;
                let (s, ns) = s.split_once('.')?;
                let seconds = h.parse::<u64>().ok()? * 3600
                    + m.parse::<u64>().ok()? * 60
                    + s.parse::<u64>().ok()?;
                Some(Seen::Buffer(
                    seconds * 1_000_000_000 + ns.parse::<u64>().ok()?,
                ))
            } else {
                let kind = message.split_once("(type: ")?.1.split_once(' ')?.0;
                Some(Seen::Event(kind.to_owned()))
            }
        })
        .collect()
}

/// One segment before the first buffer, buffer n at n × den / num s (to within the 1 ns a
/// single rounding leaves: durations added up drift further), EOS after the last one.
fn assert_grid_then_eos(pipeline: &str, frames: u64, (num, den): (u64, u64)) {
    let (output, _) = launch(pipeline);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{pipeline}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Vec<Seen> = seen_by_the_sink(&stdout)
        .into_iter()
        .filter(|s| !matches!(s, Seen::Event(kind) if ["stream-start", "caps", "tag"].contains(&kind.as_str())))
        .collect();
    let shape: Vec<&str> = seen
        .iter()
        .map(|s| match s {
            Seen::Buffer(_) => "buffer",
            Seen::Event(kind) => kind,
        })
        .collect();
    let mut expected = vec!["segment"];
    expected.extend(std::iter::repeat_n("buffer", frames as usize));
    expected.push("eos");
    assert_eq!(shape, expected, "{pipeline}");
    let pts = seen.iter().filter_map(|s| match s {
        Seen::Buffer(pts) => Some(*pts),
        Seen::Event(_) => None,
    });
    for (n, pts) in (0u64..).zip(pts) {
        // |pts - n × den / num| < 1 ns, in integers.
        let exact = n * den * 1_000_000_000;
        assert!(
            (pts * num).abs_diff(exact) < num,
            "frame {n} at {pts} ns is off the {num}/{den} grid: {pipeline}"
        );
    }
}

/// On 557ab08 extend-backward at 29.97 fps put frame 2 at 66733332 ns (durations added up).
#[test]
fn extensions_keep_the_frame_grid_and_end_with_eos() {
    // 29.97 fps (NV12) and 24 fps (I420): frame n at n × den / num s, never a rounded duration
    // added up (frame 5 at 24 fps is 208333333 ns).
    assert_grid_then_eos(
        &format!(
            "videotestsrc num-buffers=5 ! video/x-raw,format=NV12,width=32,height=32,framerate=30000/1001 ! soragen mode=extend-backward frames=3 context-frames=2 steps=2 model={TINY_MODEL} ! {SINK}"
        ),
        8,
        (30000, 1001),
    );
    assert_grid_then_eos(
        &format!(
            "videotestsrc num-buffers=5 ! video/x-raw,format=I420,width=32,height=32,framerate=24/1 ! soragen mode=extend-forward frames=4 context-frames=2 steps=2 model={TINY_MODEL} ! {SINK}"
        ),
        9,
        (24, 1),
    );
}

/// A live insert (8 frames at 1 s into 3 s of I420 at 16 fps) into a clock-synchronised sink
/// that drops what comes more than 20 ms late, with no queue after soragen. Returns the frames
/// rendered and dropped (the sink posts a QoS message for each frame it drops).
fn live_insert(processing_latency: &str) -> (usize, usize) {
    let pipeline = format!(
        "videotestsrc is-live=true num-buffers=48 pattern=ball ! video/x-raw,format=I420,width=64,height=48,framerate=16/1 ! \
         soragen mode=insert frames=8 context-frames=2 steps=2 processing-latency={processing_latency} model={TINY_MODEL} insert-at=<(guint64)1000000000> ! \
         fakesink silent=false sync=true qos=true max-lateness=20000000"
    );
    let (output, rendered) = launch_flagged(&["-v", "-m"], &pipeline, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{pipeline}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dropped = stdout
        .lines()
        .filter(|l| l.contains("from element \"fakesink0\" (qos)"))
        .count();
    eprintln!(
        "live insert, processing-latency={processing_latency}: {rendered} rendered, {dropped} dropped"
    );
    (rendered, dropped)
}

/// On 557ab08 (generation on the streaming thread) the sink dropped 7 of the 56 frames.
#[test]
fn a_live_insert_with_the_documented_latency_drops_nothing_without_a_queue() {
    // The budget in the latency, as the README's live example gives it: every frame on time.
    assert_eq!(live_insert("2000000000"), (56, 0));
    // Without it the generated frames come late and the sink drops them: the count is real.
    let (_, dropped) = live_insert("0");
    assert!(dropped > 0, "no budget, yet nothing late");
}

/// GStreamer's behaviour, which the README's advice rests on (passes on 557ab08 too).
#[test]
fn gst_plugin_path_takes_a_folder_holding_only_the_plugin() {
    let dir = plugin_dir();
    let file = dir.join("libgstsoragen.so");
    // A folder holding only the plugin: found, and nothing blacklisted.
    let blacklist = gst_tool("gst-inspect-1.0", &["-b"], &[]);
    let listed = String::from_utf8_lossy(&blacklist.stdout);
    assert!(
        listed.contains("Total count: 0 blacklisted files"),
        "{listed}"
    );
    assert!(inspect("soragen").contains("Soragen generative video"));
    // GStreamer 1.22 scans only folders in GST_PLUGIN_PATH: a file there is not loaded...
    let registry =
        std::env::temp_dir().join(format!("soragen-gst-file-{}.bin", std::process::id()));
    let by_file = [
        ("GST_PLUGIN_PATH", file.to_str().unwrap()),
        ("GST_REGISTRY", registry.to_str().unwrap()),
    ];
    let output = gst_tool("gst-inspect-1.0", &["soragen"], &by_file);
    assert!(!output.status.success(), "a plugin file in GST_PLUGIN_PATH");
    // ... but the tools load one file with --gst-plugin-load (what the README says).
    let load = format!("--gst-plugin-load={}", file.display());
    let output = gst_tool("gst-inspect-1.0", &[&load, "soragen"], &by_file);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("Soragen generative video"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_file(registry);
}
