//! The bundle in a Nuke-like host: Filter and General contexts only, float images only, V1
//! message and progress suites, unique image identifiers, rows bottom-up in memory.

mod common;

use common::*;
use soragen_ofx_ffi::sys::*;
use soragen_ofx_host::{Components, Depth, Profile, Value};

fn host() -> &'static soragen_ofx_host::Host {
    common::host(Profile::NUKE)
}

/// Insert in General (Nuke's home for it): clip A, the new frames, then clip B.
#[test]
fn insert_general_runs_a_then_new_frames_then_b() {
    let host = host();
    let (a, b) = (
        footage(0, 5, Depth::Float, Components::Rgba, true, 2),
        footage(0, 6, Depth::Float, Components::Rgba, true, 50),
    );
    let instance = host
        .instance(
            INSERT,
            setup(
                kOfxImageEffectContextGeneral,
                vec![(SOURCE, a.clone()), (c"Next", b.clone())],
                Depth::Float,
                Components::Rgba,
            ),
        )
        .unwrap();
    quick(&instance, 3, 2);
    assert_eq!(instance.time_domain().unwrap(), Some((0.0, 13.0)));
    let needed = instance.frames_needed(6.0).unwrap();
    assert_eq!(
        (needed["Source"].clone(), needed["Next"].clone()),
        (vec![2.0, 4.0], vec![0.0, 2.0]),
        "two context frames 1/16 s apart at 25 fps span three source frames"
    );
    assert_eq!(instance.render(4.0).unwrap(), a.frames[&4]);
    for t in 5..8 {
        assert_generated(&instance.render(t as f64).unwrap());
    }
    assert_eq!(
        instance.render(8.0).unwrap(),
        b.frames[&0],
        "B starts after the new frames"
    );
    assert_eq!(instance.render(13.0).unwrap(), b.frames[&5]);
    assert_eq!(instance.log().progress_starts, 1);
    assert_all_released(&instance);
}

/// Generate has a General variant for hosts without the Generator context.
#[test]
fn generate_works_in_general_without_inputs() {
    let host = host();
    let instance = host
        .instance(
            GENERATE,
            setup(
                kOfxImageEffectContextGeneral,
                vec![],
                Depth::Float,
                Components::Rgba,
            ),
        )
        .unwrap();
    quick(&instance, 5, 1);
    assert_eq!(instance.time_domain().unwrap(), Some((0.0, 4.0)));
    for t in 0..5 {
        assert_generated(&instance.render(t as f64).unwrap());
    }
    assert_eq!(
        instance.log().progress_starts,
        1,
        "progress through the V1 suite"
    );
}

#[test]
fn extend_and_replace_background_in_float_with_errors_through_message_v1() {
    let host = host();
    let source = footage(0, 4, Depth::Float, Components::Rgba, true, 8);
    let extend = host
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
    quick(&extend, 2, 2);
    assert_eq!(extend.render(1.0).unwrap(), source.frames[&1]);
    assert_generated(&extend.render(5.0).unwrap());
    extend.set_text("model", "/nonexistent/model");
    assert_eq!(extend.render(5.0), Err(kOfxStatFailed));
    let message = extend
        .log()
        .messages
        .last()
        .cloned()
        .expect("message through V1");
    assert!(
        !message.persistent && message.text.contains("/nonexistent/model"),
        "{message:?}"
    );

    let replace = host
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
    quick(&replace, 4, 1);
    replace.set("useMask", Value::Int(1));
    // Nuke reports the unconnected mask as unconnected: the source's alpha is used.
    assert_eq!(
        replace
            .frames_needed(2.0)
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["Source"]
    );
    assert_generated(&replace.render(2.0).unwrap());
    assert_all_released(&replace);
}

#[test]
fn a_missing_input_is_reported_not_crashed_on() {
    let host = host();
    let a = footage(0, 5, Depth::Float, Components::Rgba, true, 2);
    let instance = host
        .instance(
            INSERT,
            setup(
                kOfxImageEffectContextGeneral,
                vec![(SOURCE, a)],
                Depth::Float,
                Components::Rgba,
            ),
        )
        .unwrap();
    quick(&instance, 3, 2);
    assert_eq!(
        instance.time_domain().unwrap(),
        None,
        "no length without the Next clip"
    );
    assert_eq!(instance.render(6.0), Err(kOfxStatFailed));
    let message = instance
        .log()
        .messages
        .last()
        .cloned()
        .expect("an error message");
    assert!(message.text.contains("Next input"), "{message:?}");
    assert_eq!(instance.log().progress_starts, 0);
}

/// In Nuke the Reference and Image inputs are node inputs (General context, float): a
/// connected Reference changes Extend's new frames, and Generate starts from the Image.
#[test]
fn reference_and_image_are_node_inputs_in_general() {
    let host = host();
    let source = footage(0, 4, Depth::Float, Components::Rgba, true, 8);
    let look = footage(0, 1, Depth::Float, Components::Rgba, true, 77);
    let extend = |inputs| {
        let instance = host
            .instance(
                EXTEND,
                setup(
                    kOfxImageEffectContextGeneral,
                    inputs,
                    Depth::Float,
                    Components::Rgba,
                ),
            )
            .unwrap();
        quick(&instance, 2, 2);
        (3..6)
            .map(|t| instance.render(t as f64).unwrap())
            .collect::<Vec<_>>()
    };
    let without = extend(vec![(SOURCE, source.clone())]);
    let with = extend(vec![(SOURCE, source.clone()), (c"Reference", look.clone())]);
    assert_eq!(with[0], source.frames[&3]);
    assert_ne!(without[1..], with[1..]);

    let still = footage(0, 1, Depth::Float, Components::Rgba, true, 31);
    let instance = host
        .instance(
            GENERATE,
            setup(
                kOfxImageEffectContextGeneral,
                vec![(c"Image", still.clone()), (c"Reference", look)],
                Depth::Float,
                Components::Rgba,
            ),
        )
        .unwrap();
    quick(&instance, 3, 1);
    assert_eq!(instance.time_domain().unwrap(), Some((0.0, 2.0)));
    assert_eq!(
        instance.render(0.0).unwrap(),
        still.frames[&0],
        "the still, bit-identical"
    );
    for t in 1..3 {
        let frame = instance.render(t as f64).unwrap();
        assert_generated(&frame);
        assert_ne!(frame, still.frames[&0]);
    }
    assert_all_released(&instance);
}
