//! The bundle in a host like MLT's openfx module (Kdenlive; checked against `melt` 7.40): the
//! Filter context only, 8-bit, no frame ranges on clips, the frame being rendered for any time
//! asked, and a new instance for every frame. What cannot work there fails with a message that
//! names the host's limit, never a silent pass-through.

mod common;

use common::*;
use soragen_ofx_ffi::sys::*;
use soragen_ofx_host::{Components, Depth, Profile};

fn host() -> &'static soragen_ofx_host::Host {
    common::host(Profile::MLT)
}

#[test]
fn extend_fails_with_a_message_that_names_the_missing_frame_range() {
    let host = host();
    let source = footage(0, 5, Depth::Byte, Components::Rgba, false, 3);
    for t in [2.0, 6.0] {
        let instance = host
            .instance(
                EXTEND,
                setup(
                    kOfxImageEffectContextFilter,
                    vec![(SOURCE, source.clone())],
                    Depth::Byte,
                    Components::Rgba,
                ),
            )
            .unwrap();
        quick(&instance, 3, 2);
        assert_eq!(instance.render(t), Err(kOfxStatFailed), "frame {t}");
        let message = instance.log().messages.last().cloned().expect("a message");
        assert!(
            message.text.contains("frame range") && message.text.contains("MLT"),
            "{message:?}"
        );
    }
}

/// Replace Background goes frame by frame there: each frame, from a fresh instance, is the
/// source with a new background, rendered with status OK.
#[test]
fn replace_background_renders_each_frame_on_its_own() {
    let host = host();
    let source = footage(0, 3, Depth::Byte, Components::Rgba, false, 5);
    for t in 0..3 {
        let instance = host
            .instance(
                REPLACE_BACKGROUND,
                setup(
                    kOfxImageEffectContextFilter,
                    vec![(SOURCE, source.clone())],
                    Depth::Byte,
                    Components::Rgba,
                ),
            )
            .unwrap();
        quick(&instance, 4, 1);
        assert_eq!(
            instance.frames_needed(t as f64).unwrap()["Source"],
            [t as f64, t as f64]
        );
        let frame = instance.render(t as f64).unwrap();
        assert_generated(&frame);
        assert_ne!(frame, source.frames[&t], "frame {t} is not passed through");
        assert_all_released(&instance);
    }
}

/// MLT cannot connect the Mask input and hands over opaque frames: with nothing marked as
/// background, Replace Background says so instead of handing the source back as if processed.
#[test]
fn replace_background_on_an_opaque_clip_says_there_is_no_background() {
    let host = host();
    let mut source = footage(0, 2, Depth::Byte, Components::Rgba, false, 7);
    for pixels in source.frames.values_mut() {
        pixels
            .data
            .chunks_exact_mut(4)
            .for_each(|pixel| pixel[3] = 255);
    }
    let instance = host
        .instance(
            REPLACE_BACKGROUND,
            setup(
                kOfxImageEffectContextFilter,
                vec![(SOURCE, source)],
                Depth::Byte,
                Components::Rgba,
            ),
        )
        .unwrap();
    quick(&instance, 4, 1);
    assert_eq!(instance.render(0.0), Err(kOfxStatFailed));
    let message = instance.log().messages.last().cloned().expect("a message");
    assert!(message.text.contains("no background"), "{message:?}");
}

/// MLT cannot connect the optional Reference input that every effect now declares: the
/// effects still load in its Filter context and render as before, asking nothing of it.
#[test]
fn the_optional_reference_input_changes_nothing_where_it_cannot_be_connected() {
    let host = host();
    let described = host
        .describe_in_context(EXTEND, kOfxImageEffectContextFilter)
        .expect("the Filter context takes optional extra inputs");
    assert!(
        described
            .clips
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.name == "Reference" && c.props.int(kOfxImageClipPropOptional) == Some(1))
    );
    let source = footage(0, 1, Depth::Byte, Components::Rgba, false, 5);
    let instance = host
        .instance(
            REPLACE_BACKGROUND,
            setup(
                kOfxImageEffectContextFilter,
                vec![(SOURCE, source.clone())],
                Depth::Byte,
                Components::Rgba,
            ),
        )
        .unwrap();
    quick(&instance, 4, 1);
    let frame = instance.render(0.0).unwrap();
    assert_generated(&frame);
    assert_ne!(frame, source.frames[&0]);
    assert!(
        instance
            .log()
            .fetched
            .iter()
            .all(|(clip, _)| clip == "Source")
    );
    assert_all_released(&instance);
}
