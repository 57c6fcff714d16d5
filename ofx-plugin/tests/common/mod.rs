//! Shared by the host-profile tests: the bundle under test, one host per test process, and
//! instance set-up on the tiny model.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use soragen_ofx_ffi::sys::*;
use soragen_ofx_host::{Components, Depth, Footage, Host, Instance, Pixels, Profile, Setup, Value};

pub const EXTEND: &str = "org.soragen.Extend";
pub const INSERT: &str = "org.soragen.Insert";
pub const REPLACE_BACKGROUND: &str = "org.soragen.ReplaceBackground";
pub const GENERATE: &str = "org.soragen.Generate";

pub const SIZE: (usize, usize) = (32, 32);

pub fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/tiny")
        .canonicalize()
        .expect("models/tiny")
}

/// Environment variable naming a built `Soragen.ofx.bundle` (e.g. packaging/ofx/bundle.sh's
/// release bundle) for every test to load instead of this build's cdylib.
pub const BUNDLE_ENV: &str = "SORAGEN_OFX_BUNDLE";

/// The bundle under test: `SORAGEN_OFX_BUNDLE`, else `Soragen.ofx.bundle` laid out as
/// packaging/ofx does around the cdylib cargo built for this test (next to the test binary in
/// `deps/`).
pub fn bundle() -> PathBuf {
    if let Some(given) = std::env::var_os(BUNDLE_ENV) {
        return PathBuf::from(given);
    }
    let test_binary = std::env::current_exe().unwrap();
    let built = test_binary.parent().unwrap().join("libsoragen_ofx.so");
    assert!(built.is_file(), "{} not built", built.display());
    let bundle = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ofx-{}", std::process::id()))
        .join("Soragen.ofx.bundle");
    let binary_dir = bundle.join("Contents/Linux-x86-64");
    std::fs::create_dir_all(&binary_dir).unwrap();
    // A hard link, not a copy: a debug build of the plugin is hundreds of megabytes, and every
    // test process lays out its own bundle. Removed again when the process has loaded it.
    let binary = binary_dir.join("Soragen.ofx");
    if std::fs::hard_link(&built, &binary).is_err() {
        std::fs::copy(&built, &binary).unwrap();
    }
    bundle
}

/// Removes the bundle `bundle()` laid out for this process (a loaded library stays mapped).
fn remove_own_bundle(bundle: &Path) {
    if std::env::var_os(BUNDLE_ENV).is_none()
        && let Some(folder) = bundle.parent()
    {
        let _ = std::fs::remove_dir_all(folder);
    }
}

/// The one host of this test process (a plugin binary is loaded once per process).
pub fn host(profile: Profile) -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        // The model parameter's default comes from here, read when the effects are described.
        // SAFETY: set before any thread of this process reads the environment.
        unsafe { std::env::set_var("SORAGEN_MODEL", tiny_model()) };
        let bundle = bundle();
        let host = Host::load(&bundle, profile).expect("bundle loads");
        remove_own_bundle(&bundle);
        host
    })
}

pub fn footage(
    first: i64,
    count: usize,
    depth: Depth,
    components: Components,
    unique_ids: bool,
    seed: u32,
) -> Footage {
    Footage::synthetic(first, count, SIZE, depth, components, unique_ids, seed)
}

pub fn setup(
    context: &'static CStr,
    inputs: Vec<(&'static CStr, Footage)>,
    depth: Depth,
    components: Components,
) -> Setup {
    Setup {
        context,
        inputs,
        depth,
        components,
        project: SIZE,
        effect_range: None,
        frame_rate: 25.0,
    }
}

/// Tiny, quick generation settings.
pub fn quick(instance: &Instance, frames: i32, context: i32) {
    instance.set("steps", Value::Int(2));
    instance.set("guidance", Value::Double(1.0));
    instance.set("frames", Value::Int(frames));
    instance.set("contextFrames", Value::Int(context));
    instance.set_text("prompt", "a red kite over the sea");
}

pub const SOURCE: &CStr = kOfxImageEffectSimpleSourceClipName;

/// Every image lent during the test was given back.
pub fn assert_all_released(instance: &Instance) {
    let log = instance.log();
    assert_eq!(log.lent, log.released, "images fetched but not released");
}

/// A generated frame: fully opaque where the format has alpha, not all black.
pub fn assert_generated(pixels: &Pixels) {
    assert!(
        pixels.data.iter().any(|&b| b != 0),
        "generated frame is black"
    );
    if pixels.components == Components::Rgba {
        let opaque: Vec<u8> = match pixels.depth {
            Depth::Byte => vec![255],
            Depth::Short => u16::MAX.to_ne_bytes().to_vec(),
            Depth::Float => 1.0f32.to_ne_bytes().to_vec(),
        };
        let bytes = pixels.depth.bytes();
        for pixel in pixels.data.chunks_exact(4 * bytes) {
            assert_eq!(
                &pixel[3 * bytes..],
                &opaque[..],
                "generated pixels are opaque"
            );
        }
    }
}
