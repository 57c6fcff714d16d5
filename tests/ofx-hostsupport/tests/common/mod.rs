//! Shared by the HostSupport test binaries: the bundle under test, the one host of the test
//! process, synthetic footage, and each effect rendered in each context it offers, checked
//! frame by frame.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use soragen_ofx_hostsupport::{Depth, Footage, Host, Instance, Profile, Setup, Value, status};

pub const EXTEND: &str = "org.soragen.Extend";
pub const INSERT: &str = "org.soragen.Insert";
pub const REPLACE_BACKGROUND: &str = "org.soragen.ReplaceBackground";
pub const GENERATE: &str = "org.soragen.Generate";

pub const FILTER: &str = "OfxImageEffectContextFilter";
pub const GENERAL: &str = "OfxImageEffectContextGeneral";
pub const TRANSITION: &str = "OfxImageEffectContextTransition";
pub const GENERATOR: &str = "OfxImageEffectContextGenerator";

pub const WIDTH: usize = 32;
pub const HEIGHT: usize = 32;

/// The contexts each effect offers.
pub const EFFECTS: [(&str, &[&str]); 4] = [
    (EXTEND, &[FILTER, GENERAL]),
    (INSERT, &[TRANSITION, GENERAL]),
    (REPLACE_BACKGROUND, &[FILTER, GENERAL]),
    (GENERATE, &[GENERATOR, GENERAL]),
];

pub fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/tiny")
        .canonicalize()
        .expect("models/tiny")
}

/// Environment variable naming a built `Soragen.ofx.bundle` (e.g. packaging/ofx/bundle.sh's
/// release bundle) to load instead of this build's cdylib.
pub const BUNDLE_ENV: &str = "SORAGEN_OFX_BUNDLE";

/// The folder HostSupport scans: it holds `Soragen.ofx.bundle`, either the one
/// `SORAGEN_OFX_BUNDLE` names (linked in) or one laid out as packaging/ofx does around the cdylib
/// cargo built for this test (next to the test binary in `deps/`), under
/// `CARGO_TARGET_TMPDIR`.
pub fn plugin_folder() -> PathBuf {
    let folder =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hostsupport-{}", std::process::id()));
    let bundle = folder.join("Soragen.ofx.bundle");
    std::fs::create_dir_all(&folder).unwrap();
    if let Some(given) = std::env::var_os(BUNDLE_ENV) {
        std::os::unix::fs::symlink(
            Path::new(&given)
                .canonicalize()
                .expect("SORAGEN_OFX_BUNDLE exists"),
            &bundle,
        )
        .unwrap();
        return folder;
    }
    let test_binary = std::env::current_exe().unwrap();
    let built = test_binary.parent().unwrap().join("libsoragen_ofx.so");
    assert!(built.is_file(), "{} not built", built.display());
    let binary_dir = bundle.join("Contents/Linux-x86-64");
    std::fs::create_dir_all(&binary_dir).unwrap();
    // A hard link where it can (the library is hundreds of MB in a debug build).
    let binary = binary_dir.join("Soragen.ofx");
    if std::fs::hard_link(&built, &binary).is_err() {
        std::fs::copy(&built, &binary).unwrap();
    }
    folder
}

/// The one host of this test process (HostSupport's plugin cache is a singleton, and a plugin
/// binary is loaded once per process).
pub fn host(profile: Profile) -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    let host = HOST.get_or_init(|| {
        // The model parameter's default comes from here, read when the effects are described.
        // SAFETY: set before the plugin is loaded, the only reader of it.
        unsafe { std::env::set_var("SORAGEN_MODEL", tiny_model()) };
        Host::load(&plugin_folder(), profile).expect("HostSupport loads")
    });
    assert_eq!(host.profile, profile, "one profile per test binary");
    host
}

/// `count` float RGBA frames from `first`, each different (a gradient, a moving square and
/// seeded noise), opaque.
pub fn footage(first: i64, count: usize, seed: u32) -> Footage {
    footage_with(first, count, seed, false)
}

/// Whether (x, y) is in the subject: a disc in the middle.
pub fn subject(x: usize, y: usize) -> bool {
    let (fx, fy) = (x as f32 / WIDTH as f32, y as f32 / HEIGHT as f32);
    (fx - 0.5).powi(2) + (fy - 0.5).powi(2) < 0.09
}

/// Like [`footage`], with the subject in the alpha channel (1 inside, 0 around): the matte
/// Replace Background keeps when Use Mask is off.
pub fn matted(first: i64, count: usize, seed: u32) -> Footage {
    footage_with(first, count, seed, true)
}

fn footage_with(first: i64, count: usize, seed: u32, matte: bool) -> Footage {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 1000) as f32 / 1000.0
    };
    let frames = (0..count)
        .map(|i| {
            let mut frame = Vec::with_capacity(WIDTH * HEIGHT * 16);
            for y in 0..HEIGHT {
                for x in 0..WIDTH {
                    let square = (x / 8 + i) % 4 == 0 && y / 8 == (seed as usize + i) % 4;
                    let r = if square { 0.9 } else { x as f32 / WIDTH as f32 };
                    let g = y as f32 / HEIGHT as f32;
                    let b = 0.2 + 0.1 * noise();
                    let a = if !matte || subject(x, y) { 1.0f32 } else { 0.0 };
                    for v in [r, g, b, a] {
                        frame.extend_from_slice(&v.to_ne_bytes());
                    }
                }
            }
            frame
        })
        .collect();
    Footage { first, frames }
}

/// Tiny, quick generation settings.
pub fn quick(instance: &Instance, frames: i32, context: i32) {
    let set = |name, value| {
        instance
            .set(name, value)
            .unwrap_or_else(|e| panic!("setting {name}: {e}"))
    };
    set("steps", Value::Int(2));
    set("guidance", Value::Double(1.0));
    set("frames", Value::Int(frames));
    set("contextFrames", Value::Int(context));
    set("prompt", Value::Text("a red kite over the sea"));
}

pub fn floats(frame: &[u8]) -> impl Iterator<Item = f32> + '_ {
    frame
        .chunks_exact(4)
        .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// A generated frame: finite, not all black, opaque.
pub fn assert_generated(frame: &[u8], what: &str) {
    let values: Vec<f32> = floats(frame).collect();
    assert!(
        values.iter().all(|v| v.is_finite()),
        "{what}: non-finite pixels"
    );
    assert!(
        values.iter().any(|&v| v != 0.0),
        "{what}: generated frame is black"
    );
    assert!(
        values.chunks_exact(4).all(|p| p[3] == 1.0),
        "{what}: generated pixels are opaque"
    );
}

/// A frame with a new background: the source's subject pixels bit for bit, finite pixels
/// elsewhere.
pub fn assert_subject_kept(frame: &[u8], source: &[u8], what: &str) {
    assert!(
        floats(frame).all(|v| v.is_finite()),
        "{what}: non-finite pixels"
    );
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            let pixel = (y * WIDTH + x) * 16..(y * WIDTH + x + 1) * 16;
            if subject(x, y) {
                assert!(
                    frame[pixel.clone()] == source[pixel],
                    "{what}: subject pixel ({x}, {y}) kept bit for bit"
                );
            }
        }
    }
}

/// One effect in one context, as a host sets it up: inputs, the output's frame range and the
/// effect's duration; then what each output time must be.
pub struct Case {
    pub setup: Setup,
    /// Settings: (frames, context frames).
    pub settings: (i32, i32),
    /// The time domain the plugin must answer in General.
    pub domain: Option<(f64, f64)>,
    /// Output times that are input frames unchanged: (time, clip, clip time).
    pub kept: Vec<(i64, &'static str, i64)>,
    /// Output times that are new frames.
    pub generated: Vec<i64>,
    /// Transition: the Transition parameter at each generated frame (k/n), as a host animates it.
    pub transition: bool,
    /// Replace Background: new frames keep the Source frame's subject bit for bit.
    pub keeps_subject: bool,
}

fn setup(context: &str, inputs: Vec<(&str, Footage)>, output_range: (f64, f64)) -> Setup {
    Setup {
        context: context.to_string(),
        width: WIDTH,
        height: HEIGHT,
        depth: Depth::Float,
        inputs: inputs
            .into_iter()
            .map(|(name, footage)| (name.to_string(), footage))
            .collect(),
        output_range,
        duration: output_range.1 - output_range.0 + 1.0,
    }
}

/// The case for `effect` in `context`, small: 32x32 frames, a few frames.
pub fn case(effect: &str, context: &str) -> Case {
    let general = context == GENERAL;
    match effect {
        // Six source frames, four new ones after them. In Filter the output is as long as the
        // effect on the timeline (the clip ends before it); in General it is the time domain.
        EXTEND => Case {
            setup: setup(context, vec![("Source", footage(0, 6, 1))], (0.0, 9.0)),
            settings: (4, 2),
            domain: general.then_some((0.0, 9.0)),
            kept: (0..6).map(|t| (t, "Source", t)).collect(),
            generated: (6..10).collect(),
            transition: false,
            keeps_subject: false,
        },
        // Three frames between two clips: SourceFrom ends at 9, SourceTo goes on after 12.
        INSERT if context == TRANSITION => Case {
            setup: setup(
                context,
                vec![
                    ("SourceFrom", footage(0, 10, 2)),
                    ("SourceTo", footage(0, 20, 3)),
                ],
                (10.0, 12.0),
            ),
            settings: (3, 2),
            domain: None,
            kept: vec![],
            generated: (10..13).collect(),
            transition: true,
            keeps_subject: false,
        },
        // General: Source (0..5), three new frames, then Next (its frames 0..5 at 9..14).
        INSERT => Case {
            setup: setup(
                context,
                vec![("Source", footage(0, 6, 4)), ("Next", footage(0, 6, 5))],
                (0.0, 14.0),
            ),
            settings: (3, 2),
            domain: Some((0.0, 14.0)),
            kept: (0..6)
                .map(|t| (t, "Source", t))
                .chain((0..6).map(|t| (t + 9, "Next", t)))
                .collect(),
            generated: (6..9).collect(),
            transition: false,
            keeps_subject: false,
        },
        // Every frame of the source with a new background around its subject, one window of four.
        REPLACE_BACKGROUND => Case {
            setup: setup(context, vec![("Source", matted(0, 4, 6))], (0.0, 3.0)),
            settings: (4, 2),
            domain: general.then_some((0.0, 3.0)),
            kept: vec![],
            generated: (0..4).collect(),
            transition: false,
            keeps_subject: true,
        },
        // Four frames from nothing, one window.
        GENERATE => Case {
            setup: setup(context, vec![], (0.0, 3.0)),
            settings: (4, 2),
            domain: general.then_some((0.0, 3.0)),
            kept: vec![],
            generated: (0..4).collect(),
            transition: false,
            keeps_subject: false,
        },
        _ => panic!("no effect {effect}"),
    }
}

/// Renders every output time of the case and checks it: status OK, kept frames bit-identical
/// to their input frames, new frames unlike each other and unlike every input frame, every
/// image given back.
pub fn render_case(host: &Host, effect: &str, context: &str) {
    let case = case(effect, context);
    let what = format!("{effect} in {context}");
    let instance = host
        .instance(effect, &case.setup)
        .unwrap_or_else(|e| panic!("{what}: instance: {e}"));
    quick(&instance, case.settings.0, case.settings.1);
    // Generated windows are cached per process by content and settings: a seed of each context's
    // own makes each case generate (and report progress) instead of reusing another's window.
    let seed = context.bytes().map(i32::from).sum::<i32>();
    instance
        .set("seed", Value::Int(seed))
        .unwrap_or_else(|e| panic!("{what}: seed: {e}"));
    if case.keeps_subject {
        // The matte as it is: no grown or soft edge around the subject.
        for param in ["maskDilation", "maskFeather"] {
            instance
                .set(param, Value::Int(0))
                .unwrap_or_else(|e| panic!("{what}: {param}: {e}"));
        }
    }
    let domain = instance
        .time_domain()
        .unwrap_or_else(|e| panic!("{what}: GetTimeDomain: {e}"));
    if context == GENERAL {
        assert_eq!(domain, case.domain, "{what}: time domain");
    }
    let input = |clip: &str, time: i64| -> Vec<u8> {
        let (_, footage) = case
            .setup
            .inputs
            .iter()
            .find(|(name, _)| name == clip)
            .unwrap();
        footage.at(time).to_vec()
    };
    for &(time, clip, clip_time) in &case.kept {
        let needed = instance
            .frames_needed(time as f64)
            .unwrap_or_else(|e| panic!("{what}: GetFramesNeeded at {time}: {e}"));
        assert_eq!(
            needed.get(clip),
            Some(&vec![clip_time as f64, clip_time as f64]),
            "{what}: a kept frame reads only itself"
        );
        let frame = instance
            .render(time as f64)
            .unwrap_or_else(|e| panic!("{what}: render {time}: {e}"));
        assert!(
            frame == input(clip, clip_time),
            "{what}: frame {time} is {clip} frame {clip_time} bit for bit"
        );
    }
    let mut generated: Vec<Vec<u8>> = Vec::new();
    let n = case.generated.len();
    for (k, &time) in case.generated.iter().enumerate() {
        if case.transition {
            instance
                .set("Transition", Value::Double(k as f64 / n as f64))
                .unwrap_or_else(|e| panic!("{what}: Transition: {e}"));
        }
        let needed = instance
            .frames_needed(time as f64)
            .unwrap_or_else(|e| panic!("{what}: GetFramesNeeded at {time}: {e}"));
        for (clip, _) in &case.setup.inputs {
            if clip != "Mask" {
                assert!(
                    needed.get(clip).is_some_and(|r| !r.is_empty()),
                    "{what}: frame {time} reads {clip}: {needed:?}"
                );
            }
        }
        let frame = instance
            .render(time as f64)
            .unwrap_or_else(|e| panic!("{what}: render {time}: {e}"));
        if case.keeps_subject {
            assert_subject_kept(
                &frame,
                &input("Source", time),
                &format!("{what} frame {time}"),
            );
        } else {
            assert_generated(&frame, &format!("{what} frame {time}"));
        }
        generated.push(frame);
    }
    for (i, a) in generated.iter().enumerate() {
        for (j, b) in generated.iter().enumerate().skip(i + 1) {
            assert!(
                a != b,
                "{what}: new frames {} and {} are identical",
                case.generated[i],
                case.generated[j]
            );
        }
        for (clip, footage) in &case.setup.inputs {
            for (t, frame) in footage.frames.iter().enumerate() {
                assert!(
                    a != frame,
                    "{what}: new frame {} is {clip} frame {}",
                    case.generated[i],
                    footage.first + t as i64
                );
            }
        }
    }
    let log = instance.log();
    assert_eq!(
        log.lent, log.released,
        "{what}: every image fetched was released"
    );
    assert!(
        log.progress_starts >= 1 && log.progress_updates >= 1,
        "{what}: progress reported: {log:?}"
    );
    assert_eq!(log.persistent, None, "{what}: no error left");
}

/// What the plugin cannot do fails with a persistent error message, and the host goes on.
pub fn impossible_cases_fail_with_a_message(host: &Host) {
    let case = case(EXTEND, GENERAL);
    let instance = host.instance(EXTEND, &case.setup).expect("instance");
    quick(&instance, 4, 2);
    let failure = instance.render(12.0).expect_err("no frame past Frames");
    assert_eq!(failure.status, status::FAILED, "{failure}");
    let message = failure.persistent.expect("a persistent message");
    assert!(
        message.starts_with("OfxMessageError") && message.contains("raise Frames"),
        "{message}"
    );

    instance
        .set("model", Value::Text("/nonexistent/wan-vace"))
        .unwrap();
    let failure = instance.render(7.0).expect_err("no such model");
    assert_eq!(failure.status, status::FAILED, "{failure}");
    assert!(
        failure
            .persistent
            .as_deref()
            .is_some_and(|m| m.contains("/nonexistent/wan-vace")),
        "{failure}"
    );

    instance
        .set("model", Value::Text(tiny_model().to_str().unwrap()))
        .unwrap();
    assert_generated(
        &instance
            .render(7.0)
            .unwrap_or_else(|e| panic!("a good model renders again: {e}")),
        "after the error",
    );
    assert_eq!(
        instance.log().persistent,
        None,
        "a good render clears the message"
    );
}

/// Every effect is found and described in HostSupport, in every context it offers.
pub fn describes_all_four_effects(host: &Host) {
    assert_eq!(
        host.identifiers(),
        [EXTEND, INSERT, REPLACE_BACKGROUND, GENERATE]
    );
    for (id, contexts) in EFFECTS {
        let description = host.describe(id).unwrap();
        let mut expected: Vec<&str> = contexts.to_vec();
        expected.sort();
        assert_eq!(
            description.contexts, expected,
            "{id}: Describe succeeded with its contexts (none: Describe failed; stderr says why)"
        );
        assert_eq!(description.grouping, "Soragen");
        assert!(description.temporal_clip_access);
        assert!(
            description.depths.iter().any(|d| d == "OfxBitDepthFloat"),
            "{id}: {:?}",
            description.depths
        );
        for context in contexts {
            let described = host
                .describe_in_context(id, context)
                .unwrap_or_else(|e| panic!("{id} in {context}: {e}"));
            let clips: Vec<&str> = described.clips.iter().map(|c| c.name.as_str()).collect();
            assert!(clips.contains(&"Output"), "{id} in {context}: {clips:?}");
            for (name, _) in &case(id, context).setup.inputs {
                assert!(
                    clips.contains(&name.as_str()),
                    "{id} in {context}: no {name} clip in {clips:?}"
                );
            }
            for param in ["model", "prompt", "steps", "frames"] {
                assert!(
                    described.params.iter().any(|(name, _)| name == param),
                    "{id} in {context}: no {param} parameter"
                );
            }
        }
    }
}

/// Declares the tests every profile runs.
#[macro_export]
macro_rules! hostsupport_tests {
    ($host:expr) => {
        #[test]
        fn describes_all_four_effects() {
            common::describes_all_four_effects($host);
        }
        #[test]
        fn extend_in_filter() {
            common::render_case($host, common::EXTEND, common::FILTER);
        }
        #[test]
        fn extend_in_general() {
            common::render_case($host, common::EXTEND, common::GENERAL);
        }
        #[test]
        fn insert_in_transition() {
            common::render_case($host, common::INSERT, common::TRANSITION);
        }
        #[test]
        fn insert_in_general() {
            common::render_case($host, common::INSERT, common::GENERAL);
        }
        #[test]
        fn replace_background_in_filter() {
            common::render_case($host, common::REPLACE_BACKGROUND, common::FILTER);
        }
        #[test]
        fn replace_background_in_general() {
            common::render_case($host, common::REPLACE_BACKGROUND, common::GENERAL);
        }
        #[test]
        fn generate_in_generator() {
            common::render_case($host, common::GENERATE, common::GENERATOR);
        }
        #[test]
        fn generate_in_general() {
            common::render_case($host, common::GENERATE, common::GENERAL);
        }
        #[test]
        fn impossible_cases_fail_with_a_message() {
            common::impossible_cases_fail_with_a_message($host);
        }
    };
}

/// The frames of `footage` as 8-bit RGBA.
pub fn to_bytes(footage: &Footage) -> Footage {
    let frames = footage
        .frames
        .iter()
        .map(|frame| {
            floats(frame)
                .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
                .collect()
        })
        .collect();
    Footage {
        first: footage.first,
        frames,
    }
}

/// Extend in General on 8-bit frames: source frames bit-identical, new frames opaque and new.
pub fn extend_at_byte_depth(host: &Host) {
    let mut case = case(EXTEND, GENERAL);
    case.setup.depth = Depth::Byte;
    case.setup.inputs = case
        .setup
        .inputs
        .iter()
        .map(|(name, footage)| (name.clone(), to_bytes(footage)))
        .collect();
    let source = case.setup.inputs[0].1.clone();
    let instance = host
        .instance(EXTEND, &case.setup)
        .unwrap_or_else(|e| panic!("instance: {e}"));
    quick(&instance, 4, 2);
    for t in 0..6 {
        assert!(
            instance
                .render(t as f64)
                .unwrap_or_else(|e| panic!("render {t}: {e}"))
                == source.at(t),
            "frame {t} bit for bit"
        );
    }
    let new: Vec<Vec<u8>> = (6..10)
        .map(|t| {
            instance
                .render(t as f64)
                .unwrap_or_else(|e| panic!("render {t}: {e}"))
        })
        .collect();
    for (i, frame) in new.iter().enumerate() {
        assert!(
            frame.chunks_exact(4).all(|p| p[3] == 255),
            "new frame {i} opaque"
        );
        assert!(
            new[i + 1..].iter().all(|other| other != frame)
                && source.frames.iter().all(|s| s != frame),
            "new frame {i} is new"
        );
    }
    let log = instance.log();
    assert_eq!(log.lent, log.released);
}

/// The image effect suite's abort and the progress suite's cancel stop a render, which fails
/// without leaving the instance broken.
pub fn abort_and_cancel_stop_a_render(host: &Host) {
    let case = case(EXTEND, GENERAL);
    let instance = host
        .instance(EXTEND, &case.setup)
        .unwrap_or_else(|e| panic!("instance: {e}"));
    quick(&instance, 4, 2);
    instance.set("steps", Value::Int(3)).unwrap();
    instance.stop(true, None);
    let failure = instance.render(7.0).expect_err("aborted");
    assert_eq!(
        failure.status,
        status::FAILED,
        "an aborted render fails: {failure}"
    );
    let aborted = instance.log();
    assert!(
        aborted.progress_starts == 1 && aborted.progress_updates < 3,
        "stopped before the last step: {aborted:?}"
    );
    instance.stop(false, Some(aborted.progress_updates + 1));
    let failure = instance.render(7.0).expect_err("cancelled");
    assert_eq!(
        failure.status,
        status::FAILED,
        "a cancelled render fails: {failure}"
    );
    let cancelled = instance.log();
    assert_eq!(
        cancelled.progress_updates,
        aborted.progress_updates + 1,
        "stopped at the cancelling update"
    );
    instance.stop(false, None);
    assert_generated(
        &instance
            .render(7.0)
            .unwrap_or_else(|e| panic!("renders once let go: {e}")),
        "after abort and cancel",
    );
    let log = instance.log();
    assert_eq!(
        log.progress_starts, log.progress_ends,
        "every progress bar closed"
    );
    assert_eq!(log.lent, log.released);
}
