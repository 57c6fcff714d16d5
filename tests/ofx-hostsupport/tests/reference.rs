//! The optional Reference and Image inputs in the OpenFX association's HostSupport: the library
//! accepts the extra optional clips in the Filter and Generator contexts, connects them like any
//! input, and the plugin uses them (a reference changes Extend's new frames; Generate's first
//! frame is the Image's still, bit for bit).

mod common;

use common::*;
use soragen_ofx_hostsupport::{Build, Depth, Host, Profile, Setup, Value};

fn host() -> &'static Host {
    common::host(Profile {
        build: Build::Plain,
        without_gpu_properties: false,
    })
}

fn setup(context: &str, inputs: Vec<(&str, soragen_ofx_hostsupport::Footage)>, last: f64) -> Setup {
    Setup {
        context: context.to_string(),
        width: WIDTH,
        height: HEIGHT,
        depth: Depth::Float,
        inputs: inputs
            .into_iter()
            .map(|(name, footage)| (name.to_string(), footage))
            .collect(),
        output_range: (0.0, last),
        duration: last + 1.0,
    }
}

#[test]
fn a_reference_changes_extend_in_filter() {
    let host = host();
    let source = footage(0, 5, 3);
    let extend = |inputs| {
        let instance = host
            .instance(EXTEND, &setup(FILTER, inputs, 7.0))
            .unwrap_or_else(|e| panic!("instance: {e}"));
        quick(&instance, 3, 2);
        instance.set("referenceFrame", Value::Int(1)).unwrap();
        let needed = instance.frames_needed(6.0).unwrap();
        let frames: Vec<Vec<u8>> = (4..8).map(|t| instance.render(t as f64).unwrap()).collect();
        let log = instance.log();
        assert_eq!(log.lent, log.released);
        (needed, frames, log.fetched)
    };
    // HostSupport fills in its default range for every clip, so nothing asked shows as nothing
    // fetched.
    let (_, without, fetched) = extend(vec![("Source", source.clone())]);
    assert!(
        fetched.iter().all(|(clip, _)| clip != "Reference"),
        "{fetched:?}"
    );
    let (needed, with, fetched) = extend(vec![
        ("Source", source.clone()),
        ("Reference", footage(20, 2, 9)),
    ]);
    assert_eq!(
        needed["Reference"],
        [21.0, 21.0],
        "Reference Frame 1 of a clip from 20"
    );
    assert!(
        fetched
            .iter()
            .any(|(clip, t)| clip == "Reference" && *t == 21.0)
    );
    assert_eq!(with[0], source.at(4), "the source's last frame kept");
    with[1..]
        .iter()
        .for_each(|f| assert_generated(f, "extend with a reference"));
    assert_ne!(
        without[1..],
        with[1..],
        "the reference changes the new frames"
    );
}

#[test]
fn generate_starts_from_the_image_input() {
    let host = host();
    let still = footage(5, 1, 11);
    let instance = host
        .instance(
            GENERATE,
            &setup(GENERATOR, vec![("Image", still.clone())], 3.0),
        )
        .unwrap_or_else(|e| panic!("instance: {e}"));
    quick(&instance, 4, 1);
    assert!(
        instance.render(0.0).unwrap() == still.at(5),
        "frame 0 is the still, bit for bit"
    );
    for t in 1..4 {
        let frame = instance.render(t as f64).unwrap();
        assert_generated(&frame, "animated");
        assert!(frame != still.at(5));
    }
}
