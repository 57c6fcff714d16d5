//! The `cuda` build's CUDA memory path. Caps and the fallbacks without a GPU are tested
//! everywhere; the pipeline in CUDA memory needs a GPU and GStreamer's CUDA elements
//! (`cudaupload`, `cudadownload` from gstreamer1.0-plugins-bad) and says why it skips without
//! them. `tests/gpu/run.sh` runs this file on a GPU machine.
#![cfg(feature = "cuda")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};

use gst::prelude::*;
use gst_check::Harness;
use gstsoragen::generation::GENERATED_META;

const TINY_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/tiny");
const CUDA: &str = "memory:CUDAMemory";

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstsoragen::plugin_register_static().unwrap();
    });
}

fn has_cuda(caps: &gst::CapsRef) -> bool {
    caps.iter_with_features().any(|(_, features)| features.contains(CUDA))
}

#[test]
fn the_templates_offer_rgba_and_bgra_in_cuda_memory_first() {
    init();
    let factory = gst::ElementFactory::find("soragen").unwrap();
    for name in ["sink", "src"] {
        let template = factory.static_pad_templates().into_iter().find(|t| t.name_template() == name).unwrap();
        let caps = template.caps();
        let (first, features) = caps.iter_with_features().next().unwrap();
        assert!(features.contains(CUDA), "{name}: {caps}");
        let formats: Vec<String> = first.get::<gst::List>("format").unwrap().iter().map(|f| f.get().unwrap()).collect();
        assert_eq!(formats, ["RGBA", "BGRA"], "{name}");
        assert_eq!(caps.size(), 2, "then every format in system memory: {caps}");
    }
}

/// `soragen` with `properties`, its model on the CPU, in PAUSED.
fn paused_on_the_cpu(properties: &str) -> gst::Element {
    init();
    let element = gst::parse::launch(&format!("soragen device=cpu model={TINY_MODEL} {properties}")).unwrap();
    element.set_state(gst::State::Paused).unwrap();
    element
}

#[test]
fn cuda_memory_is_offered_only_when_the_model_is_on_a_gpu() {
    let generating = paused_on_the_cpu("mode=extend-forward");
    let caps = generating.static_pad("sink").unwrap().query_caps(None);
    assert!(!has_cuda(&caps) && !caps.is_empty(), "{caps}");
    generating.set_state(gst::State::Null).unwrap();
    // Passthrough never touches frames: any memory goes through.
    let passthrough = paused_on_the_cpu("mode=passthrough");
    assert!(has_cuda(&passthrough.static_pad("src").unwrap().query_caps(None)));
    passthrough.set_state(gst::State::Null).unwrap();
}

#[test]
fn cuda_caps_without_a_gpu_model_refuse_negotiation_with_the_reason() {
    init();
    let element = gst::parse::launch(&format!("soragen mode=extend-forward device=cpu model={TINY_MODEL}")).unwrap();
    let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    h.set_src_caps_str("video/x-raw(memory:CUDAMemory),format=RGBA,width=32,height=32,framerate=16/1");
    h.play();
    assert_eq!(h.push(gst::Buffer::with_size(32 * 32 * 4).unwrap()), Err(gst::FlowError::NotNegotiated));
    let message = bus.pop_filtered(&[gst::MessageType::Error]).expect("an error on the bus");
    let gst::MessageView::Error(error) = message.view() else { unreachable!() };
    let text = error.error().to_string();
    assert!(text.contains("CUDA memory need the model on a GPU") && text.contains("the model runs on the CPU"), "{text}");
}

/// Why the GPU pipeline cannot run here, if it cannot.
fn gpu_pipeline_missing() -> Option<String> {
    if let Err(e) = candle_core::Device::new_cuda(0) {
        return Some(format!("no CUDA device ({e})"));
    }
    ["cudaupload", "cudadownload"]
        .into_iter()
        .find(|name| gst::ElementFactory::find(name).is_none())
        .map(|name| format!("no {name} element (install gstreamer1.0-plugins-bad)"))
}

#[test]
fn a_pipeline_in_cuda_memory_extends_on_the_gpu() {
    init();
    if let Some(reason) = gpu_pipeline_missing() {
        eprintln!("skipped: {reason}");
        return;
    }
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=5 ! video/x-raw,format=RGBA,width=32,height=32,framerate=16/1 ! cudaupload ! \
         soragen name=s mode=extend-forward frames=3 context-frames=2 steps=2 device=cuda:0 model={TINY_MODEL} ! \
         cudadownload ! video/x-raw,format=RGBA ! fakesink name=sink"
    ))
    .unwrap()
    .downcast::<gst::Bin>()
    .unwrap();
    let (buffers, generated) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (counted, marked) = (buffers.clone(), generated.clone());
    pipeline.by_name("s").unwrap().static_pad("src").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buffer) = info.buffer() {
            counted.fetch_add(1, Ordering::SeqCst);
            if gst::meta::CustomMeta::from_buffer(buffer, GENERATED_META).is_ok() {
                marked.fetch_add(1, Ordering::SeqCst);
            }
        }
        gst::PadProbeReturn::Ok
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    let message = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(120), &[gst::MessageType::Eos, gst::MessageType::Error])
        .expect("EOS or an error");
    let caps = pipeline.by_name("s").unwrap().static_pad("src").unwrap().current_caps();
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(message.type_(), gst::MessageType::Eos, "{message:?}");
    assert!(caps.as_deref().is_some_and(has_cuda), "negotiated in CUDA memory: {caps:?}");
    assert_eq!((buffers.load(Ordering::SeqCst), generated.load(Ordering::SeqCst)), (8, 3));
}
