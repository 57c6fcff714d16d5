//! Reference images and image to video in a HostSupport-like host (every context, optional
//! clips connected or not): the optional Reference input on every effect with its Reference
//! Frame parameter, and Generate's optional Image input (the still is frame 0, bit-identical).
//! Resolve, Nuke and MLT have their own checks in resolve.rs, nuke.rs and mlt.rs.

mod common;

use std::ffi::CStr;

use common::*;
use soragen_ofx_ffi::sys::*;
use soragen_ofx_host::{Components, Depth, Footage, Pixels, Profile, Value};

const REFERENCE: &CStr = c"Reference";
const IMAGE: &CStr = c"Image";

fn host() -> &'static soragen_ofx_host::Host {
    common::host(Profile::HOSTSUPPORT)
}

/// A reference clip of another size than the source (references may be any size).
fn reference(first: i64, count: usize, seed: u32) -> Footage {
    Footage::synthetic(
        first,
        count,
        (24, 40),
        Depth::Float,
        Components::Rgba,
        false,
        seed,
    )
}

/// The frames `times` of `effect` in `context` with `inputs`, quick settings and then `tune`.
fn render(
    effect: &str,
    context: &'static CStr,
    inputs: Vec<(&'static CStr, Footage)>,
    frames: i32,
    tune: impl Fn(&soragen_ofx_host::Instance),
    times: std::ops::Range<i64>,
) -> Vec<Pixels> {
    let mut setup = setup(context, inputs, Depth::Float, Components::Rgba);
    if effect == GENERATE {
        setup.effect_range = Some((0.0, 2.0 * frames as f64 - 1.0));
    }
    let instance = host().instance(effect, setup).unwrap();
    quick(&instance, frames, 2);
    tune(&instance);
    let out = times
        .map(|t| {
            instance
                .render(t as f64)
                .unwrap_or_else(|s| panic!("{effect} frame {t}: {s} {:?}", instance.log()))
        })
        .collect();
    assert_all_released(&instance);
    out
}

#[test]
fn every_effect_declares_an_optional_reference_and_generate_an_optional_image() {
    let host = host();
    for id in host.identifiers() {
        let descriptor = host.describe(&id).unwrap();
        for context in descriptor
            .props
            .strings(kOfxImageEffectPropSupportedContexts)
        {
            let context = Box::leak(std::ffi::CString::new(context).unwrap().into_boxed_c_str());
            // The host refuses a context whose extra clips are not optional (lib.rs).
            let described = host.describe_in_context(&id, context).unwrap();
            let clips = described.clips.lock().unwrap();
            let optional = |name: &CStr| {
                clips
                    .iter()
                    .find(|c| c.name.as_str() == name.to_str().unwrap())
                    .map(|c| c.props.int(kOfxImageClipPropOptional))
            };
            assert_eq!(optional(REFERENCE), Some(Some(1)), "{id} {context:?}");
            let image = optional(IMAGE);
            if id == GENERATE {
                assert_eq!(image, Some(Some(1)), "{context:?}");
            } else {
                assert_eq!(image, None, "{id} {context:?}");
            }
        }
    }
}

/// Extend with a Reference clip: the generated frames change, the kept ones do not; Reference
/// Frame picks the frame (asked for in GetFramesNeeded, counted from the clip's own start);
/// unconnected, nothing is asked of the Reference clip.
#[test]
fn a_reference_changes_extend_and_reference_frame_picks_it() {
    let source = footage(0, 5, Depth::Float, Components::Rgba, false, 21);
    let pick = reference(10, 3, 70);
    // Frame 2 of `pick` alone, as a one-frame clip somewhere else on the timeline.
    let alone = Footage {
        frames: [(40, pick.frames[&12].clone())].into(),
        unique_ids: false,
    };
    let extend = |reference: Option<Footage>, frame: i32| {
        let mut inputs = vec![(SOURCE, source.clone())];
        inputs.extend(reference.map(|r| (REFERENCE, r)));
        render(
            EXTEND,
            kOfxImageEffectContextFilter,
            inputs,
            3,
            |i| i.set("referenceFrame", Value::Int(frame)),
            3..8,
        )
    };
    let without = extend(None, 0);
    let first = extend(Some(pick.clone()), 0);
    let third = extend(Some(pick.clone()), 2);
    let third_alone = extend(Some(alone), 0);
    for frames in [&without, &first, &third] {
        assert_eq!(
            frames[..2],
            [source.frames[&3].clone(), source.frames[&4].clone()]
        );
        frames[2..].iter().for_each(assert_generated);
    }
    assert_ne!(
        without[2..],
        first[2..],
        "the reference changes the new frames"
    );
    assert_ne!(
        first[2..],
        third[2..],
        "Reference Frame picks another frame"
    );
    assert_eq!(
        third, third_alone,
        "frame 2 of the clip is that frame's image"
    );

    let instance = host()
        .instance(
            EXTEND,
            setup(
                kOfxImageEffectContextGeneral,
                vec![(SOURCE, source.clone()), (REFERENCE, pick.clone())],
                Depth::Float,
                Components::Rgba,
            ),
        )
        .unwrap();
    quick(&instance, 3, 2);
    instance.set("referenceFrame", Value::Int(2));
    let needed = instance.frames_needed(6.0).unwrap();
    assert_eq!(needed["Reference"], [12.0, 12.0]);
    assert!(
        !instance
            .frames_needed(2.0)
            .unwrap()
            .contains_key("Reference"),
        "a kept frame reads no reference"
    );
    // Past the clip's end: the user's to fix, said in the effect's message.
    instance.set("referenceFrame", Value::Int(3));
    assert_eq!(instance.render(6.0), Err(kOfxStatFailed));
    let message = instance.log().messages.last().cloned().expect("a message");
    assert!(message.text.contains("Reference Frame 3"), "{message:?}");
    assert_all_released(&instance);

    let unconnected = host()
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
    quick(&unconnected, 3, 2);
    assert_eq!(
        unconnected
            .frames_needed(6.0)
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["Source"]
    );
}

/// Insert (as a transition and in General) and Replace Background take the reference too.
#[test]
fn insert_and_replace_background_take_a_reference() {
    let (a, b) = (
        footage(0, 6, Depth::Float, Components::Rgba, false, 2),
        footage(0, 6, Depth::Float, Components::Rgba, false, 40),
    );
    let look = reference(0, 1, 90);
    for context in [
        kOfxImageEffectContextTransition,
        kOfxImageEffectContextGeneral,
    ] {
        let (from, to) = if context == kOfxImageEffectContextTransition {
            (c"SourceFrom", c"SourceTo")
        } else {
            (SOURCE, c"Next")
        };
        let insert = |reference: Option<Footage>| {
            let mut inputs = vec![(from, a.clone()), (to, b.clone())];
            inputs.extend(reference.map(|r| (REFERENCE, r)));
            render(INSERT, context, inputs, 3, |_| {}, 6..9)
        };
        let (without, with) = (insert(None), insert(Some(look.clone())));
        with.iter().for_each(assert_generated);
        assert_ne!(without, with, "{context:?}");
    }
    let replace = |reference: Option<Footage>| {
        let mut inputs = vec![(SOURCE, a.clone())];
        inputs.extend(reference.map(|r| (REFERENCE, r)));
        render(
            REPLACE_BACKGROUND,
            kOfxImageEffectContextFilter,
            inputs,
            4,
            |_| {},
            0..2,
        )
    };
    assert_ne!(replace(None), replace(Some(look)));
}

/// Generate with an Image: frame 0 is the still as the host gave it (float, bit for bit), the
/// rest are generated from it, also in a second window; with a Reference as well, the new
/// frames change again. Without the Image it is text to video as before.
#[test]
fn generate_with_an_image_keeps_the_still_as_frame_0() {
    let still = Footage {
        frames: [(
            7,
            Pixels::synthetic(32, 32, Depth::Float, Components::Rgba, 33),
        )]
        .into(),
        unique_ids: false,
    };
    for context in [
        kOfxImageEffectContextGenerator,
        kOfxImageEffectContextGeneral,
    ] {
        let generate = |inputs: Vec<(&'static CStr, Footage)>| {
            // Frames is the clip's length: the still, then 7 new frames.
            render(GENERATE, context, inputs, 8, |_| {}, 0..8)
        };
        let text = generate(vec![]);
        let animated = generate(vec![(IMAGE, still.clone())]);
        let referenced = generate(vec![
            (IMAGE, still.clone()),
            (REFERENCE, reference(0, 1, 5)),
        ]);
        assert_eq!(
            animated[0], still.frames[&7],
            "{context:?}: the still, bit-identical"
        );
        assert_eq!(referenced[0], still.frames[&7]);
        animated[1..].iter().for_each(assert_generated);
        assert!(
            animated[1..].iter().all(|f| *f != still.frames[&7]),
            "new frames are new"
        );
        assert_ne!(text, animated, "{context:?}: the still conditions the clip");
        assert_ne!(animated[1..], referenced[1..], "{context:?}");
        assert_ne!(
            text[0], still.frames[&7],
            "without the Image, frame 0 is generated"
        );
    }
}
