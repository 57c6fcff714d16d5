//! Reference images and image to video in the GStreamer elements, on the tiny model:
//! `soragensrc image=` animates a still (frame 0 bit-identical), `reference=` on both elements
//! changes what is generated, as do stills on `reference_%u` pads, and an unreadable file or
//! a pad without an image is an error on the bus. The last test runs the built plugin in
//! `gst-launch-1.0`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use gst::prelude::*;
use gst_check::Harness;
use soragen_core::video::{Frame, Video, write_png_dir};

const TINY_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/tiny");
const SIZE: u32 = 32;
/// The still's size: not the stream's, nor soragensrc's default.
const STILL: (usize, usize) = (48, 32);

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstsoragen::plugin_register_static().unwrap();
    });
}

/// A folder of its own for each test's files.
fn folder(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("gst-reference-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `width` x `height` PNG image with a pattern of its own (`seed`); returns its path and RGB.
fn image(dir: &Path, name: &str, (width, height): (usize, usize), seed: u8) -> (PathBuf, Vec<u8>) {
    let rgb: Vec<u8> = (0..width * height * 3)
        .map(|i| ((i * 7 + (i / (width * 3)) * 13) as u8).wrapping_mul(seed | 1))
        .collect();
    let mut video = Video::new(width, height, None);
    video.frames.push(Frame::from_8bit(&rgb, None));
    let out = dir.join(name);
    write_png_dir(&video, &out).unwrap();
    (out.join("00000.png"), rgb)
}

fn element_harness(description: &str) -> Harness {
    init();
    let element = gst::parse::launch(description).unwrap();
    let src = element.static_pad("src").is_some().then_some("src");
    let sink = element.static_pad("sink").is_some().then_some("sink");
    Harness::with_element(&element, sink, src)
}

fn bytes(buffer: &gst::Buffer) -> Vec<u8> {
    buffer.map_readable().unwrap().as_slice().to_vec()
}

/// soragensrc's clip in RGB with `properties`.
fn source_clip(properties: &str, frames: usize, size: (usize, usize)) -> Vec<Vec<u8>> {
    let mut h = element_harness(&format!(
        "soragensrc model={TINY_MODEL} steps=2 num-frames={frames} prompt=\"a kite\" seed=3 {properties}"
    ));
    h.set_sink_caps_str("video/x-raw,format=RGB,width=[1,2000],height=[1,2000],framerate=16/1");
    h.play();
    let clip: Vec<_> = (0..frames).map(|_| bytes(&h.pull().unwrap())).collect();
    let caps = h.sinkpad().unwrap().current_caps().unwrap();
    let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
    assert_eq!(
        (info.width() as usize, info.height() as usize),
        size,
        "{properties}"
    );
    clip
}

#[test]
fn soragensrc_animates_an_image_keeping_it_as_frame_0() {
    let dir = folder("animate");
    let (still, rgb) = image(&dir, "still", STILL, 5);
    let (face, _) = image(&dir, "face", (20, 30), 9);
    let animated = source_clip(&format!("image={}", still.display()), 5, STILL);
    assert_eq!(animated[0], rgb, "frame 0 is the still, bit for bit");
    assert!(animated[1..].iter().all(|f| *f != rgb), "then new frames");
    assert_ne!(animated[1], animated[2]);
    let referenced = source_clip(
        &format!("image={} reference={}", still.display(), face.display()),
        5,
        STILL,
    );
    assert_eq!(referenced[0], rgb);
    assert_ne!(
        animated[1..],
        referenced[1..],
        "the reference changes the new frames"
    );
}

#[test]
fn soragensrc_reference_changes_text_to_video() {
    let dir = folder("text");
    let (a, _) = image(&dir, "a", (16, 16), 3);
    let (b, _) = image(&dir, "b", (40, 24), 11);
    let clip = |properties: &str| {
        let mut h = element_harness(&format!(
            "soragensrc model={TINY_MODEL} steps=2 num-frames=3 prompt=\"a kite\" seed=3 {properties}"
        ));
        h.set_sink_caps_str(&format!(
            "video/x-raw,format=RGBA,width={SIZE},height={SIZE},framerate=16/1"
        ));
        h.play();
        (0..3)
            .map(|_| bytes(&h.pull().unwrap()))
            .collect::<Vec<_>>()
    };
    let without = clip("");
    let one = clip(&format!("reference={}", a.display()));
    let two = clip(&format!("reference=\"{};{}\"", a.display(), b.display()));
    assert_ne!(without, one);
    assert_ne!(one, two, "the second reference counts too");
    assert_eq!(
        one,
        clip(&format!("reference={}", a.display())),
        "deterministic"
    );
}

/// Frame `index` of a test stream: RGBA, timestamped at 16 fps.
fn frame(index: u64) -> gst::Buffer {
    let data: Vec<u8> = (0..SIZE * SIZE * 4)
        .map(|i| (i as u64 * 3 + index * 17) as u8)
        .collect();
    let mut buffer = gst::Buffer::from_mut_slice(data);
    let b = buffer.get_mut().unwrap();
    let frame = gst::ClockTime::from_nseconds(62_500_000);
    b.set_pts(frame * index);
    b.set_duration(frame);
    buffer
}

#[test]
fn soragen_extends_with_references() {
    let dir = folder("extend");
    let (face, _) = image(&dir, "face", (24, 40), 7);
    let extend = |properties: &str| {
        let mut h = element_harness(&format!(
            "soragen model={TINY_MODEL} steps=2 mode=extend-forward frames=3 context-frames=2 prompt=\"a harbour\" seed=7 {properties}"
        ));
        h.set_src_caps_str(&format!(
            "video/x-raw,format=RGBA,width={SIZE},height={SIZE},framerate=16/1"
        ));
        h.play();
        for index in 0..4 {
            h.push(frame(index)).unwrap();
        }
        assert!(h.push_event(gst::event::Eos::new()));
        (0..7)
            .map(|_| bytes(&h.pull().unwrap()))
            .collect::<Vec<_>>()
    };
    let without = extend("");
    let with = extend(&format!("reference={}", face.display()));
    assert_eq!(without[..4], with[..4], "the stream's own frames pass");
    assert_ne!(
        without[4..],
        with[4..],
        "the reference changes the new frames"
    );
    let element = gst::ElementFactory::make("soragen")
        .property("reference", "a.png;b c.png")
        .build()
        .unwrap();
    assert_eq!(
        element.property::<Option<String>>("reference").as_deref(),
        Some("a.png;b c.png")
    );
}

/// The stream `soragen_extends_with_references` extends, with `properties` and one
/// `reference_%u` pad per still in `pads` (RGB and size), whose image comes after the video has
/// ended: the generation waits for it. Each pad gets a second, different buffer, which it drops.
fn extend_with_pads(properties: &str, pads: &[(&[u8], (usize, usize))]) -> Vec<Vec<u8>> {
    let mut h = element_harness(&format!(
        "soragen model={TINY_MODEL} steps=2 mode=extend-forward frames=3 context-frames=2 prompt=\"a harbour\" seed=7 {properties}"
    ));
    h.set_src_caps_str(&format!(
        "video/x-raw,format=RGBA,width={SIZE},height={SIZE},framerate=16/1"
    ));
    let element = h.element().unwrap();
    let mut stills: Vec<Harness> = pads
        .iter()
        .map(|_| Harness::with_element(&element, Some("reference_%u"), None))
        .collect();
    h.play();
    for index in 0..4 {
        h.push(frame(index)).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    for (still, (rgb, (width, height))) in stills.iter_mut().zip(pads) {
        still.set_src_caps_str(&format!(
            "video/x-raw,format=RGB,width={width},height={height},framerate=0/1"
        ));
        still.push(gst::Buffer::from_slice(rgb.to_vec())).unwrap();
        let other: Vec<u8> = rgb.iter().map(|v| v ^ 0x55).collect();
        still.push(gst::Buffer::from_slice(other)).unwrap();
        assert!(still.push_event(gst::event::Eos::new()));
    }
    (0..7).map(|_| bytes(&h.pull().unwrap())).collect()
}

/// `reference_%u` pads give the same references as the `reference` property, after its images.
#[test]
fn soragen_reference_pads_take_one_still_each_after_the_property() {
    let dir = folder("pads");
    // Widths whose RGB rows need no padding (GStreamer aligns RGB rows to 4 bytes).
    let (face_path, face) = image(&dir, "face", (24, 40), 7);
    let (hat_path, hat) = image(&dir, "hat", (16, 16), 3);
    let both = format!(
        "reference=\"{};{}\"",
        face_path.display(),
        hat_path.display()
    );
    let by_property = extend_with_pads(&both, &[]);
    let by_pads = extend_with_pads("", &[(&face, (24, 40)), (&hat, (16, 16))]);
    assert_eq!(
        by_pads, by_property,
        "pads in order, as the property's list"
    );
    let mixed = extend_with_pads(
        &format!("reference={}", face_path.display()),
        &[(&hat, (16, 16))],
    );
    assert_eq!(mixed, by_property, "the property's images, then the pads'");
    assert_ne!(
        extend_with_pads("", &[(&hat, (16, 16))]),
        by_property,
        "each still counts"
    );
}

/// A reference pad that ends without an image, or is not linked, fails the generation with
/// a bus error naming the pad; nothing waits forever.
#[test]
fn a_reference_pad_without_an_image_is_an_error() {
    for linked in [true, false] {
        let mut h = element_harness(&format!(
            "soragen model={TINY_MODEL} steps=2 mode=extend-forward frames=3 prompt=a"
        ));
        let element = h.element().unwrap();
        let bus = gst::Bus::new();
        element.set_bus(Some(&bus));
        let mut still = linked.then(|| Harness::with_element(&element, Some("reference_%u"), None));
        if !linked {
            assert_eq!(
                element.request_pad_simple("reference_%u").unwrap().name(),
                "reference_0"
            );
        }
        h.set_src_caps_str(&format!(
            "video/x-raw,format=RGBA,width={SIZE},height={SIZE},framerate=16/1"
        ));
        h.play();
        if let Some(still) = still.as_mut() {
            still.set_src_caps_str("video/x-raw,format=RGB,width=16,height=16,framerate=0/1");
            assert!(still.push_event(gst::event::Eos::new()));
        }
        for index in 0..4 {
            h.push(frame(index)).unwrap();
        }
        h.push_event(gst::event::Eos::new());
        let message = bus
            .timed_pop_filtered(gst::ClockTime::from_seconds(60), &[gst::MessageType::Error])
            .expect("an error on the bus");
        let gst::MessageView::Error(error) = message.view() else {
            unreachable!()
        };
        let text = error.error().to_string();
        let expected = if linked {
            "ended without an image"
        } else {
            "is not linked"
        };
        assert!(
            text.contains("reference_0") && text.contains(expected),
            "{text}"
        );
    }
}

/// An unreadable reference or image stops the element from starting, with the file named in
/// the bus error.
#[test]
fn an_unreadable_file_is_an_error_at_start() {
    init();
    let dir = folder("unreadable");
    let missing = dir.join("missing.png");
    let not_png = dir.join("noise.png");
    std::fs::write(&not_png, b"not a png").unwrap();
    for (factory, property, path) in [
        ("soragen", "reference", &missing),
        ("soragen", "reference", &not_png),
        ("soragensrc", "reference", &missing),
        ("soragensrc", "image", &not_png),
    ] {
        let element = gst::ElementFactory::make(factory)
            .property("model", TINY_MODEL)
            .build()
            .unwrap();
        if factory == "soragen" {
            element.set_property_from_str("mode", "extend-forward");
        }
        element.set_property(property, path.display().to_string());
        let bus = gst::Bus::new();
        element.set_bus(Some(&bus));
        assert!(
            element.set_state(gst::State::Paused).is_err(),
            "{factory} {property}"
        );
        let message = bus
            .pop_filtered(&[gst::MessageType::Error])
            .expect("an error on the bus");
        let gst::MessageView::Error(error) = message.view() else {
            unreachable!()
        };
        let text = error.error().to_string();
        assert!(
            text.contains(property) && text.contains(&path.display().to_string()),
            "{factory}: {text}"
        );
        element.set_state(gst::State::Null).unwrap();
    }
}

/// `gst-launch-1.0 soragensrc image=... reference=...` with the built plugin: the first frame
/// written to a raw file is the still.
#[test]
fn gst_launch_animates_a_still_with_a_reference() {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let dir = folder("launch");
    // Only our plugin in the plugin path (deps/ holds every other library too).
    std::fs::copy(deps.join("libgstsoragen.so"), dir.join("libgstsoragen.so")).unwrap();
    let (still, rgb) = image(&dir, "still", STILL, 5);
    let (face, _) = image(&dir, "face", (20, 30), 9);
    let launch = |reference: Option<&Path>, raw: &Path| {
        let mut args = vec![
            "soragensrc".to_string(),
            format!("model={TINY_MODEL}"),
            "steps=2".into(),
            "num-frames=5".into(),
            "prompt=a".into(),
            format!("image={}", still.display()),
        ];
        args.extend(reference.map(|r| format!("reference={}", r.display())));
        args.extend([
            "!".into(),
            "video/x-raw,format=RGB,framerate=16/1".into(),
            "!".into(),
            "filesink".into(),
            format!("location={}", raw.display()),
        ]);
        let output = Command::new("timeout")
            .arg("120")
            .arg("gst-launch-1.0")
            .args(&args)
            .env("GST_PLUGIN_PATH", &dir)
            .env("GST_REGISTRY", dir.join("registry.bin"))
            .output()
            .expect("gst-launch-1.0 (gstreamer1.0-tools)");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::read(raw).unwrap()
    };
    let without = launch(None, &dir.join("plain.rgb"));
    let raw = dir.join("out.rgb");
    let written = launch(Some(&face), &raw);
    assert_ne!(without, written, "the reference changes the clip");
    assert_eq!(written.len(), 5 * rgb.len(), "5 frames at the still's size");
    assert_eq!(written[..rgb.len()], rgb[..], "frame 0 is the still");
    assert_ne!(written[rgb.len()..2 * rgb.len()], rgb[..]);
}
