//! The bundle in a host like the OpenFX association's HostSupport library as it ships (and
//! Natron, built on it): every context, no OpenFX 1.5 GPU render properties (getting or setting
//! them is `kOfxStatErrUnknown`), frame ranges on the clips only, the effect's duration on the
//! instance.

mod common;

use common::*;
use soragen_core::video::{Frame, Video};
use soragen_ofx_ffi::sys::*;
use soragen_ofx_host::{Components, Depth, Pixels, Profile, Value};

fn host() -> &'static soragen_ofx_host::Host {
    common::host(Profile::HOSTSUPPORT)
}

#[test]
fn every_effect_is_described_in_every_context_without_the_gpu_properties() {
    let host = host();
    assert_eq!(
        host.identifiers(),
        [EXTEND, INSERT, REPLACE_BACKGROUND, GENERATE]
    );
    for id in host.identifiers() {
        let descriptor = host
            .describe(&id)
            .unwrap_or_else(|status| panic!("{id}: Describe failed with {status}"));
        assert!(
            !descriptor
                .props
                .knows("OfxImageEffectPropCudaRenderSupported")
        );
        for context in descriptor
            .props
            .strings(kOfxImageEffectPropSupportedContexts)
        {
            let context = Box::leak(std::ffi::CString::new(context).unwrap().into_boxed_c_str());
            host.describe_in_context(&id, context)
                .unwrap_or_else(|status| panic!("{id} {context:?}: {status}"));
        }
    }
}

#[test]
fn extend_in_filter_keeps_the_source_and_generates_past_it_from_the_clip_range() {
    let host = host();
    let source = footage(0, 5, Depth::Float, Components::Rgba, false, 21);
    let instance = host
        .instance(
            EXTEND,
            setup(
                kOfxImageEffectContextFilter,
                vec![(SOURCE, source.clone())],
                Depth::Float,
                Components::Rgba,
            ),
        )
        .unwrap();
    quick(&instance, 3, 2);
    for t in 0..5 {
        assert_eq!(
            instance.render(t as f64).unwrap(),
            source.frames[&t],
            "frame {t} kept bit-identical"
        );
    }
    assert_eq!(
        instance.frames_needed(6.0).unwrap()["Source"],
        [2.0, 4.0],
        "the clip's last frames (two 1/16 s apart at 25 fps span three), from its own range"
    );
    let generated: Vec<Pixels> = (5..8).map(|t| instance.render(t as f64).unwrap()).collect();
    generated.iter().for_each(assert_generated);
    assert!(
        generated
            .iter()
            .all(|g| !source.frames.values().any(|s| s == g)),
        "new frames are not source frames"
    );
    assert_ne!(generated[0], generated[1]);
    assert_all_released(&instance);
}

/// The transition's frames come from its Output clip's range (HostSupport gives no frame range
/// on the instance, only on clips).
#[test]
fn insert_as_a_transition_fills_the_output_range() {
    let host = host();
    let (a, b) = (
        footage(0, 20, Depth::Byte, Components::Rgba, false, 2),
        footage(0, 30, Depth::Byte, Components::Rgba, false, 40),
    );
    let mut setup = setup(
        kOfxImageEffectContextTransition,
        vec![(c"SourceFrom", a), (c"SourceTo", b)],
        Depth::Byte,
        Components::Rgba,
    );
    setup.effect_range = Some((10.0, 14.0));
    let instance = host.instance(INSERT, setup).unwrap();
    quick(&instance, 3, 2);
    let needed = instance.frames_needed(12.0).unwrap();
    assert_eq!(
        (needed["SourceFrom"].clone(), needed["SourceTo"].clone()),
        (vec![7.0, 9.0], vec![15.0, 17.0]),
        "two context frames 1/16 s apart at 25 fps span three source frames on each side"
    );
    let frames: Vec<Pixels> = (10..15)
        .map(|t| instance.render(t as f64).unwrap())
        .collect();
    frames.iter().for_each(assert_generated);
    assert_eq!(
        instance.log().progress_starts,
        1,
        "one generation for the transition"
    );
}

fn to_frame(pixels: &Pixels) -> Frame {
    let rgb: Vec<u8> = pixels
        .data
        .chunks_exact(4 * 4)
        .flat_map(|p| {
            (0..3).map(move |c| {
                (f32::from_ne_bytes(p[4 * c..4 * c + 4].try_into().unwrap()).clamp(0.0, 1.0)
                    * 255.0)
                    .round() as u8
            })
        })
        .collect();
    Frame::from_8bit(&rgb, None)
}

/// A generated clip longer than a model window is made window after window, each reading the
/// previous window's last frames (the core's windows, as the CLI makes them): no window repeats
/// another, and the seam between them is no worse than a cut between two ordinary frames of the
/// first window.
#[test]
fn generate_makes_a_long_clip_window_after_window() {
    let host = host();
    let mut setup = setup(
        kOfxImageEffectContextGenerator,
        vec![],
        Depth::Float,
        Components::Rgba,
    );
    setup.effect_range = Some((0.0, 19.0));
    let instance = host.instance(GENERATE, setup).unwrap();
    // 20 frames in the core's windows of 9 after 2 frames of context: 0..9, 9..16, 16..20.
    quick(&instance, 20, 2);
    instance.set("windowFrames", Value::Int(9));
    let frames: Vec<Pixels> = (0..20)
        .map(|t| instance.render(t as f64).unwrap())
        .collect();
    frames.iter().for_each(assert_generated);
    for first in [9, 16] {
        assert_ne!(
            frames[first], frames[0],
            "the window from {first} repeats window 0"
        );
    }
    assert_eq!(
        instance.log().progress_starts,
        3,
        "three windows, each generated once"
    );
    assert!(
        instance.render(20.0).is_err(),
        "Frames is the clip's length"
    );
    let video = Video {
        frames: frames.iter().map(to_frame).collect(),
        ..Video::new(SIZE.0, SIZE.1, None)
    };
    for cut in [9, 16] {
        let seam = soragen_core::tasks::seam(&video, cut, cut - 4..cut);
        println!("seam at {cut}: {seam:?}");
        assert!(
            seam.colour < 3.0,
            "the colour jumps at the seam {cut}: {seam:?}"
        );
    }
}

#[test]
fn replace_background_in_general_reads_its_window_from_the_clip_range() {
    let host = host();
    let source = footage(0, 6, Depth::Float, Components::Rgba, false, 9);
    let instance = host
        .instance(
            REPLACE_BACKGROUND,
            setup(
                kOfxImageEffectContextGeneral,
                vec![(SOURCE, source.clone())],
                Depth::Float,
                Components::Rgba,
            ),
        )
        .unwrap();
    // The core's windows of 5 over 6 frames: 0..5, then 5..6 after frame 4 as made by the first.
    quick(&instance, 4, 1);
    instance.set("windowFrames", Value::Int(5));
    assert_eq!(
        instance.frames_needed(5.0).unwrap()["Source"],
        [5.0, 5.0],
        "the last window reads its own frames (and the first window's result)"
    );
    assert_generated(&instance.render(5.0).unwrap());
    assert_all_released(&instance);
}
