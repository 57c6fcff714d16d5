//! The bundle in a Resolve-like host: Filter, General, Transition and Generator contexts;
//! Float, Short and Byte; V2 message and progress suites; no unique image identifiers (the
//! plugin hashes pixels); rows top-down in memory (negative row bytes); unconnected optional
//! inputs reported as connected.

mod common;

use common::*;
use soragen_ofx_ffi::sys::*;
use soragen_ofx_host::{Components, Depth, Profile, RectI, Stop, Value};

fn host() -> &'static soragen_ofx_host::Host {
    common::host(Profile::RESOLVE)
}

#[test]
fn every_effect_is_described_under_soragen_with_ranged_and_hinted_parameters() {
    let host = host();
    assert_eq!(
        host.identifiers(),
        [EXTEND, INSERT, REPLACE_BACKGROUND, GENERATE]
    );
    for id in host.identifiers() {
        let descriptor = host.describe(&id).unwrap();
        assert_eq!(
            descriptor
                .props
                .string(kOfxImageEffectPluginPropGrouping)
                .as_deref(),
            Some("Soragen")
        );
        assert_eq!(
            descriptor.props.int(kOfxImageEffectPropTemporalClipAccess),
            Some(1)
        );
        let depths = descriptor
            .props
            .strings(kOfxImageEffectPropSupportedPixelDepths);
        assert_eq!(
            depths,
            ["OfxBitDepthFloat", "OfxBitDepthShort", "OfxBitDepthByte"]
        );
        for context in descriptor
            .props
            .strings(kOfxImageEffectPropSupportedContexts)
        {
            let context = std::ffi::CString::new(context).unwrap();
            let described = host
                .describe_in_context(&id, Box::leak(context.into_boxed_c_str()))
                .unwrap();
            for clip in described
                .clips
                .lock()
                .unwrap()
                .iter()
                .filter(|c| c.name != "Output")
            {
                assert_eq!(
                    clip.props.int(kOfxImageEffectPropTemporalClipAccess),
                    Some(1),
                    "{id} {}",
                    clip.name
                );
            }
            for (name, param) in described.params.params.lock().unwrap().iter() {
                let props = &param.props;
                assert!(
                    props
                        .string(kOfxParamPropHint)
                        .is_some_and(|h| !h.is_empty()),
                    "{id}: {name} has no hint"
                );
                if param.kind == "OfxParamTypeInteger" || param.kind == "OfxParamTypeDouble" {
                    for range in [
                        kOfxParamPropMin,
                        kOfxParamPropMax,
                        kOfxParamPropDisplayMin,
                        kOfxParamPropDisplayMax,
                    ] {
                        assert!(
                            props.get(&range.to_string_lossy()).is_some(),
                            "{id}: {name} lacks {range:?}"
                        );
                    }
                }
            }
            let model = described.params.find("model").expect("model parameter");
            let default = model.props.string(kOfxParamPropDefault).unwrap();
            assert_eq!(
                default,
                tiny_model().to_str().unwrap(),
                "model defaults to SORAGEN_MODEL"
            );
            let prompt = described.params.find("prompt").unwrap();
            assert_eq!(
                prompt.props.string(kOfxParamPropStringMode).as_deref(),
                Some("OfxParamStringIsMultiLine")
            );
        }
    }
    let replace = host
        .describe_in_context(REPLACE_BACKGROUND, kOfxImageEffectContextFilter)
        .unwrap();
    let mask = replace.clip("Mask").expect("mask input");
    assert_eq!(
        (
            mask.props.int(kOfxImageClipPropOptional),
            mask.props.int(kOfxImageClipPropIsMask)
        ),
        (Some(1), Some(1))
    );
    assert!(replace.params.find("useMask").is_some());
    let transition = host
        .describe_in_context(INSERT, kOfxImageEffectContextTransition)
        .unwrap();
    assert!(transition.clip("SourceFrom").is_some() && transition.clip("SourceTo").is_some());
    assert!(transition.params.find("Transition").is_some());
}

/// Extend in General at every depth: the output runs `frames` past the source, source frames
/// come out bit-identical, and the generated window is made once and served from the cache.
#[test]
fn extend_general_runs_past_the_source_at_every_depth() {
    let host = host();
    for depth in [Depth::Float, Depth::Short, Depth::Byte] {
        let source = footage(0, 6, depth, Components::Rgba, false, 1);
        let instance = host
            .instance(
                EXTEND,
                setup(
                    kOfxImageEffectContextGeneral,
                    vec![(SOURCE, source.clone())],
                    depth,
                    Components::Rgba,
                ),
            )
            .unwrap();
        quick(&instance, 4, 3);
        assert_eq!(instance.time_domain().unwrap(), Some((0.0, 9.0)));
        let prefs = instance.clip_preferences().unwrap();
        assert_eq!(
            prefs[&kOfxImageEffectFrameVarying.to_string_lossy().to_string()],
            vec![Value::Int(1)]
        );

        assert_eq!(instance.frames_needed(2.0).unwrap()["Source"], [2.0, 2.0]);
        assert_eq!(
            instance.frames_needed(7.0).unwrap()["Source"],
            [2.0, 5.0],
            "the last context frames: three 1/16 s apart at 25 fps span four source frames"
        );
        for t in 0..6 {
            assert_eq!(
                instance.render(t as f64).unwrap(),
                source.frames[&t],
                "{depth:?} frame {t} kept bit-identical"
            );
        }
        assert_eq!(
            instance.log().progress_starts,
            0,
            "kept frames need no generation"
        );
        for t in 6..10 {
            assert_generated(&instance.render(t as f64).unwrap());
        }
        let log = instance.log();
        assert_eq!(
            log.progress_starts, 1,
            "{depth:?}: one generation for the whole window"
        );
        assert_eq!(log.progress_updates, 2, "one progress update per step");
        let fetched: Vec<f64> = log
            .fetched
            .iter()
            .filter(|(c, _)| c == "Source")
            .map(|(_, t)| *t)
            .skip(6)
            .collect();
        assert_eq!(
            fetched,
            [2.0, 3.0, 4.0, 5.0].repeat(4),
            "each render reads exactly the window's context frames"
        );
        assert_all_released(&instance);
        assert!(instance.render(10.0).is_err(), "no frame past the window");
        assert!(
            instance
                .log()
                .messages
                .iter()
                .any(|m| m.text.contains("raise Frames"))
        );
    }
}

/// Extend in Filter with RGB and partial render windows: each window of a frame equals that
/// part of the whole frame.
#[test]
fn extend_filter_renders_windows_smaller_than_the_frame() {
    let host = host();
    let source = footage(10, 5, Depth::Byte, Components::Rgb, false, 7);
    let instance = host
        .instance(
            EXTEND,
            setup(
                kOfxImageEffectContextFilter,
                vec![(SOURCE, source.clone())],
                Depth::Byte,
                Components::Rgb,
            ),
        )
        .unwrap();
    quick(&instance, 3, 2);
    assert_eq!(
        instance.time_domain().unwrap(),
        None,
        "only General answers the time domain"
    );
    let whole = instance.render(16.0).unwrap();
    assert_generated(&whole);
    let window = RectI {
        x1: 5,
        y1: 3,
        x2: 21,
        y2: 30,
    };
    let part = instance.render_window(16.0, window).unwrap();
    assert_eq!(part.region(window), whole.region(window));
    assert_eq!(
        instance.log().regions_of_interest["Source"],
        [0.0, 0.0, 32.0, 32.0],
        "generation reads whole frames"
    );
    let kept = instance.render_window(12.0, window).unwrap();
    assert_eq!(kept.region(window), source.frames[&12].region(window));
    assert_eq!(instance.log().progress_starts, 1);
    assert_all_released(&instance);

    instance.set("direction", Value::Int(1));
    let before = instance.render(8.0).unwrap();
    assert_generated(&before);
    assert_eq!(
        instance.log().frames_needed["Source"],
        [10.0, 12.0],
        "extending backwards reads the first frames (two 1/16 s apart at 25 fps span three)"
    );
}

#[test]
fn re_renders_hit_the_cache_until_a_setting_changes_or_caches_are_purged() {
    let host = host();
    let instance = host
        .instance(
            EXTEND,
            setup(
                kOfxImageEffectContextGeneral,
                vec![(
                    SOURCE,
                    footage(0, 4, Depth::Float, Components::Rgba, false, 3),
                )],
                Depth::Float,
                Components::Rgba,
            ),
        )
        .unwrap();
    quick(&instance, 2, 2);
    let first = instance.render(4.0).unwrap();
    assert_eq!(instance.render(4.0).unwrap(), first);
    assert_eq!(instance.render(5.0).map(|_| ()), Ok(()));
    assert_eq!(
        instance.log().progress_starts,
        1,
        "scrubbing the window costs nothing"
    );
    instance.set_text("prompt", "a red kite over the sea");
    assert_eq!(instance.render(4.0).unwrap(), first);
    assert_eq!(
        instance.log().progress_starts,
        1,
        "setting an equal value hits the cache"
    );
    instance.set("seed", Value::Int(99));
    instance.render(4.0).unwrap();
    assert_eq!(
        instance.log().progress_starts,
        2,
        "a new seed generates again"
    );
    assert_eq!(instance.purge_caches(), kOfxStatOK);
    instance.render(4.0).unwrap();
    assert_eq!(
        instance.log().progress_starts,
        3,
        "purged caches generate again"
    );
}

#[test]
fn abort_and_cancel_stop_within_a_step_and_cache_nothing() {
    let host = host();
    let instance = host
        .instance(
            EXTEND,
            setup(
                kOfxImageEffectContextGeneral,
                vec![(
                    SOURCE,
                    footage(0, 4, Depth::Float, Components::Rgba, false, 5),
                )],
                Depth::Float,
                Components::Rgba,
            ),
        )
        .unwrap();
    quick(&instance, 2, 2);
    instance.set("steps", Value::Int(4));
    instance.stop(Stop {
        abort_after: Some(1),
        cancel_after: None,
    });
    assert_eq!(instance.render(4.0), Err(kOfxStatFailed));
    assert_eq!(
        instance.log().progress_updates,
        1,
        "abort seen before the next step"
    );
    instance.stop(Stop {
        abort_after: None,
        cancel_after: Some(3),
    });
    assert_eq!(instance.render(4.0), Err(kOfxStatFailed));
    assert_eq!(
        instance.log().progress_updates,
        3,
        "a cancelled progress bar stops at once"
    );
    assert!(
        instance.log().messages.is_empty(),
        "a cancel is not an error"
    );
    instance.stop(Stop::default());
    assert_generated(&instance.render(4.0).unwrap());
    let log = instance.log();
    assert_eq!(
        (log.progress_starts, log.progress_updates),
        (3, 7),
        "nothing half-done was cached"
    );
    assert_all_released(&instance);
}

#[test]
fn errors_arrive_through_the_message_suite_and_the_host_keeps_running() {
    let host = host();
    let instance = host
        .instance(
            EXTEND,
            setup(
                kOfxImageEffectContextGeneral,
                vec![(
                    SOURCE,
                    footage(0, 4, Depth::Byte, Components::Rgba, false, 9),
                )],
                Depth::Byte,
                Components::Rgba,
            ),
        )
        .unwrap();
    quick(&instance, 2, 2);
    instance.set_text("model", "/nonexistent/wan-vace");
    assert_eq!(instance.render(5.0), Err(kOfxStatFailed));
    let message = instance
        .log()
        .messages
        .last()
        .cloned()
        .expect("an error message");
    assert_eq!(
        (message.kind.as_str(), message.persistent),
        ("OfxMessageError", true)
    );
    assert!(
        message.text.contains("/nonexistent/wan-vace"),
        "{}",
        message.text
    );
    instance.set_text("model", "");
    assert_eq!(instance.render(5.0), Err(kOfxStatFailed));
    assert!(
        instance
            .log()
            .messages
            .last()
            .unwrap()
            .text
            .contains("no model")
    );
    instance.set_text("model", tiny_model().to_str().unwrap());
    assert_generated(&instance.render(5.0).unwrap());
    assert!(
        instance.log().messages.is_empty(),
        "a good render clears the error"
    );
    assert_all_released(&instance);
}

/// Transition: the frames between two clips, as long as the transition, from the frames
/// around it.
#[test]
fn insert_transition_fills_the_transition_from_both_clips() {
    let host = host();
    let inputs = vec![
        (
            kOfxImageEffectTransitionSourceFromClipName,
            footage(0, 20, Depth::Short, Components::Rgba, false, 11),
        ),
        (
            kOfxImageEffectTransitionSourceToClipName,
            footage(0, 30, Depth::Short, Components::Rgba, false, 40),
        ),
    ];
    let mut setup = setup(
        kOfxImageEffectContextTransition,
        inputs,
        Depth::Short,
        Components::Rgba,
    );
    setup.effect_range = Some((10.0, 14.0));
    let instance = host.instance(INSERT, setup).unwrap();
    quick(&instance, 99, 2);
    let needed = instance.frames_needed(12.0).unwrap();
    assert_eq!(
        (needed["SourceFrom"].clone(), needed["SourceTo"].clone()),
        (vec![7.0, 9.0], vec![15.0, 17.0]),
        "two context frames 1/16 s apart at 25 fps span three source frames on each side"
    );
    let frames: Vec<_> = (10..=14)
        .map(|t| instance.render(t as f64).unwrap())
        .collect();
    frames.iter().for_each(assert_generated);
    assert_eq!(
        instance.log().progress_starts,
        1,
        "one generation for the transition"
    );
    // The host's Transition parameter picks the frame (floor(position * length)), whatever the time.
    for (position, frame) in [(0.0, 0), (0.6, 3), (0.999, 4), (1.0, 4)] {
        instance.pin_transition(Some(position));
        assert_eq!(
            instance.render(11.0).unwrap(),
            frames[frame],
            "position {position}"
        );
    }
    instance.pin_transition(None);
    assert_eq!(
        instance.log().progress_starts,
        1,
        "all from the one generation"
    );
    assert_all_released(&instance);
}

/// Replace Background from the source's alpha (Resolve reports the unconnected mask as
/// connected, so "use mask" stays off): the subject's pixels come out bit-identical.
#[test]
fn replace_background_keeps_the_subject_bit_identical() {
    let host = host();
    let source = footage(0, 3, Depth::Float, Components::Rgba, false, 21);
    let instance = host
        .instance(
            REPLACE_BACKGROUND,
            setup(
                kOfxImageEffectContextFilter,
                vec![(SOURCE, source.clone())],
                Depth::Float,
                Components::Rgba,
            ),
        )
        .unwrap();
    quick(&instance, 5, 1);
    instance.set("maskDilation", Value::Int(0));
    instance.set("maskFeather", Value::Int(0));
    assert_eq!(
        instance
            .frames_needed(1.0)
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["Source"],
        "the mask is not read while Use Mask is off"
    );
    for t in 0..3 {
        let out = instance.render(t as f64).unwrap();
        let subject = RectI {
            x1: 12,
            y1: 12,
            x2: 20,
            y2: 20,
        };
        assert_eq!(
            out.region(subject),
            source.frames[&t].region(subject),
            "frame {t}: subject kept exactly"
        );
        assert_ne!(
            out.region(RectI {
                x1: 0,
                y1: 0,
                x2: 4,
                y2: 4
            }),
            source.frames[&t].region(RectI {
                x1: 0,
                y1: 0,
                x2: 4,
                y2: 4
            })
        );
    }
    assert_eq!(instance.log().progress_starts, 1);
    instance.set("useMask", Value::Int(1));
    assert_eq!(
        instance.render(0.0),
        Err(kOfxStatFailed),
        "Use Mask with nothing behind the mask input"
    );
    assert!(
        instance
            .log()
            .messages
            .last()
            .unwrap()
            .text
            .contains("Mask")
    );
    assert_all_released(&instance);
}

#[test]
fn generate_makes_frames_from_the_prompt_window_by_window() {
    let host = host();
    let mut setup = setup(
        kOfxImageEffectContextGenerator,
        vec![],
        Depth::Float,
        Components::Rgba,
    );
    setup.effect_range = Some((0.0, 9.0));
    let instance = host.instance(GENERATE, setup).unwrap();
    // 10 frames in windows of 5 after 1 frame of context: 0..5, then 5..8 and 8..10.
    quick(&instance, 10, 1);
    instance.set("windowFrames", Value::Int(5));
    let prefs = instance.clip_preferences().unwrap();
    assert_eq!(
        prefs["OfxImageClipPropComponents_Output"],
        vec![Value::str("OfxImageComponentRGBA")]
    );
    let frames: Vec<_> = (0..5).map(|t| instance.render(t as f64).unwrap()).collect();
    frames.iter().for_each(assert_generated);
    assert_eq!(
        frames[0].bounds,
        RectI {
            x1: 0,
            y1: 0,
            x2: 32,
            y2: 32
        }
    );
    assert_eq!(instance.log().progress_starts, 1);
    instance.render(6.0).unwrap();
    assert_eq!(instance.log().progress_starts, 2, "the next window");
}

/// A render scale below 1 (Resolve's proxy and preview renders) and Draft Quality both render
/// drafts: the Fast sampling (the distill-4 preset: 4 steps, no guidance), at the size the host
/// asks for.
#[test]
fn scaled_renders_and_draft_quality_are_drafts() {
    let host = host();
    let instance = host
        .instance(
            EXTEND,
            setup(
                kOfxImageEffectContextGeneral,
                vec![(
                    SOURCE,
                    footage(0, 4, Depth::Float, Components::Rgba, false, 13),
                )],
                Depth::Float,
                Components::Rgba,
            ),
        )
        .unwrap();
    quick(&instance, 2, 2);
    instance.set("steps", Value::Int(6));
    let half = instance.render_scaled(4.0, 0.5).unwrap();
    assert_eq!(
        half.bounds,
        RectI {
            x1: 0,
            y1: 0,
            x2: 16,
            y2: 16
        }
    );
    assert_generated(&half);
    assert_eq!(
        instance.log().progress_updates,
        4,
        "a half-scale render runs distill-4's 4 steps"
    );
    assert_generated(&instance.render(4.0).unwrap());
    assert_eq!(
        instance.log().progress_updates,
        10,
        "full scale: all steps, not the draft from the cache"
    );
    instance.set("draft", Value::Int(1));
    instance.render(4.0).unwrap();
    assert_eq!(
        instance.log().progress_updates,
        14,
        "Draft Quality: distill-4's 4 steps"
    );
    assert_all_released(&instance);
}

/// A LoRA adapter of `models/fixtures/lora` (made for the tiny model).
fn adapter(name: &str) -> String {
    format!(
        "{}/../models/fixtures/lora/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The LoRA parameter (with its strength) and the Fast sampling change the frames; Fast runs
/// 4 steps. An adapter that does not fit the model is an error through the message suite that
/// names the key, and the host keeps running.
#[test]
fn lora_and_fast_sampling_change_the_frames_and_a_bad_adapter_is_an_error() {
    let host = host();
    let instance = host
        .instance(
            EXTEND,
            setup(
                kOfxImageEffectContextGeneral,
                vec![(
                    SOURCE,
                    footage(0, 4, Depth::Float, Components::Rgba, false, 21),
                )],
                Depth::Float,
                Components::Rgba,
            ),
        )
        .unwrap();
    quick(&instance, 2, 2);
    let base = instance.render(4.0).unwrap();
    instance.set_text("lora", &adapter("wan_ab.safetensors"));
    instance.set("loraStrength", Value::Double(0.5));
    let adapted = instance.render(4.0).unwrap();
    assert_generated(&adapted);
    assert!(
        adapted.data != base.data,
        "the adapter did not change the frames"
    );
    instance.set_text("lora", "");
    let updates = instance.log().progress_updates;
    instance.set("sampling", Value::Int(1));
    let fast = instance.render(4.0).unwrap();
    assert!(fast.data != base.data, "Fast did not change the frames");
    assert_eq!(
        instance.log().progress_updates - updates,
        4,
        "Fast: 4 steps"
    );
    instance.set("sampling", Value::Int(0));

    let bad = std::env::temp_dir().join(format!(
        "soragen-ofx-bad-lora-{}.safetensors",
        std::process::id()
    ));
    let key = "transformer.blocks.9.attn1.to_q.lora_A.weight";
    let tensors = std::collections::HashMap::from([
        (
            key.to_string(),
            candle_core::Tensor::zeros((2, 32), candle_core::DType::F32, &candle_core::Device::Cpu)
                .unwrap(),
        ),
        (
            "transformer.blocks.9.attn1.to_q.lora_B.weight".to_string(),
            candle_core::Tensor::zeros((32, 2), candle_core::DType::F32, &candle_core::Device::Cpu)
                .unwrap(),
        ),
    ]);
    candle_core::safetensors::save(&tensors, &bad).unwrap();
    instance.set_text("lora", bad.to_str().unwrap());
    assert_eq!(instance.render(4.0), Err(kOfxStatFailed));
    let message = instance
        .log()
        .messages
        .last()
        .cloned()
        .expect("an error message");
    assert_eq!(message.kind, "OfxMessageError");
    assert!(message.text.contains(key), "{}", message.text);
    std::fs::remove_file(&bad).unwrap();
    instance.set_text("lora", "");
    assert_generated(&instance.render(4.0).unwrap());
    assert_all_released(&instance);
}

/// Resolve reports unconnected optional inputs as connected (with no frame range): an
/// unconnected Reference or Image is no reference and no still, and nothing is asked of it;
/// a connected one (a clip on the timeline, with its range) is used, at every depth.
#[test]
fn unconnected_reference_and_image_look_connected_and_change_nothing() {
    let host = host();
    for depth in [Depth::Byte, Depth::Short, Depth::Float] {
        let source = footage(0, 4, depth, Components::Rgba, false, 12);
        let look = soragen_ofx_host::Footage::synthetic(
            0,
            2,
            (20, 36),
            depth,
            Components::Rgba,
            false,
            60,
        );
        let extend = |inputs: Vec<(&'static std::ffi::CStr, soragen_ofx_host::Footage)>| {
            let instance = host
                .instance(
                    EXTEND,
                    setup(
                        kOfxImageEffectContextFilter,
                        inputs,
                        depth,
                        Components::Rgba,
                    ),
                )
                .unwrap();
            quick(&instance, 2, 2);
            instance.set("referenceFrame", Value::Int(1));
            let needed: Vec<String> = instance.frames_needed(4.0).unwrap().into_keys().collect();
            let frames: Vec<_> = (4..6).map(|t| instance.render(t as f64).unwrap()).collect();
            assert_all_released(&instance);
            (needed, frames)
        };
        let (needed, without) = extend(vec![(SOURCE, source.clone())]);
        assert_eq!(needed, ["Source"], "{depth:?}");
        without.iter().for_each(assert_generated);
        let (needed, with) = extend(vec![(SOURCE, source.clone()), (c"Reference", look)]);
        assert_eq!(needed, ["Reference", "Source"], "{depth:?}");
        assert_ne!(without, with, "{depth:?}: the connected reference is used");

        let still = footage(3, 1, depth, Components::Rgba, false, 44);
        let generate = |inputs| {
            let mut setup = setup(
                kOfxImageEffectContextGenerator,
                inputs,
                depth,
                Components::Rgba,
            );
            setup.effect_range = Some((0.0, 2.0));
            let instance = host.instance(GENERATE, setup).unwrap();
            quick(&instance, 3, 1);
            (0..3)
                .map(|t| instance.render(t as f64).unwrap())
                .collect::<Vec<_>>()
        };
        let text = generate(vec![]);
        text.iter().for_each(assert_generated);
        let animated = generate(vec![(c"Image", still.clone())]);
        assert_eq!(
            animated[0], still.frames[&3],
            "{depth:?}: the still, bit-identical"
        );
        assert_ne!(text[1..], animated[1..]);
    }
}
