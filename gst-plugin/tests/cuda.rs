//! The `cuda` build's CUDA memory path. Caps and the fallbacks without a GPU are tested
//! everywhere; the pipeline in CUDA memory needs a GPU and GStreamer's CUDA elements
//! (`cudaupload`, `cudadownload` from gstreamer1.0-plugins-bad) and says why it skips without
//! them. `tests/gpu/run.sh` runs this file on a GPU machine.
#![cfg(feature = "cuda")]

use std::sync::{Arc, Mutex, Once};

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
    caps.iter_with_features()
        .any(|(_, features)| features.contains(CUDA))
}

#[test]
fn the_templates_offer_rgba_and_bgra_in_cuda_memory_first() {
    init();
    for (element, pads) in [
        ("soragen", &["sink", "src"][..]),
        ("soragensrc", &["src"][..]),
    ] {
        let factory = gst::ElementFactory::find(element).unwrap();
        for &name in pads {
            let template = factory
                .static_pad_templates()
                .into_iter()
                .find(|t| t.name_template() == name)
                .unwrap();
            let caps = template.caps();
            let (first, features) = caps.iter_with_features().next().unwrap();
            assert!(features.contains(CUDA), "{element} {name}: {caps}");
            let formats: Vec<String> = first
                .get::<gst::List>("format")
                .unwrap()
                .iter()
                .map(|f| f.get().unwrap())
                .collect();
            assert_eq!(formats, ["RGBA", "BGRA"], "{element} {name}");
            assert_eq!(caps.size(), 2, "then every format in system memory: {caps}");
        }
    }
}

/// `soragen` with `properties`, its model on the CPU, in PAUSED.
fn paused_on_the_cpu(properties: &str) -> gst::Element {
    init();
    let element = gst::parse::launch(&format!(
        "soragen device=cpu model={TINY_MODEL} {properties}"
    ))
    .unwrap();
    element.set_state(gst::State::Paused).unwrap();
    element
}

#[test]
fn cuda_memory_is_offered_only_when_the_model_is_on_a_gpu() {
    init();
    // Before the model loads, as the templates say: gst-launch links CUDA caps then.
    let unloaded = gst::parse::launch(&format!(
        "soragen device=cpu mode=extend-forward model={TINY_MODEL}"
    ))
    .unwrap();
    let sink = unloaded.static_pad("sink").unwrap();
    assert!(has_cuda(&sink.query_caps(None)));
    // From READY the device is open (and shared, were it a GPU): on the CPU, no CUDA memory.
    unloaded.set_state(gst::State::Ready).unwrap();
    assert!(!has_cuda(&sink.query_caps(None)));
    unloaded.set_state(gst::State::Null).unwrap();
    assert!(has_cuda(&sink.query_caps(None)));
    let generating = paused_on_the_cpu("mode=extend-forward");
    let caps = generating.static_pad("sink").unwrap().query_caps(None);
    assert!(!has_cuda(&caps) && !caps.is_empty(), "{caps}");
    generating.set_state(gst::State::Null).unwrap();
    // Passthrough never touches frames: any memory goes through.
    let passthrough = paused_on_the_cpu("mode=passthrough");
    assert!(has_cuda(
        &passthrough.static_pad("src").unwrap().query_caps(None)
    ));
    passthrough.set_state(gst::State::Null).unwrap();
}

#[test]
fn cuda_caps_without_a_gpu_model_refuse_negotiation_with_the_reason() {
    init();
    let element = gst::parse::launch(&format!(
        "soragen mode=extend-forward device=cpu model={TINY_MODEL}"
    ))
    .unwrap();
    let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    h.set_src_caps_str(
        "video/x-raw(memory:CUDAMemory),format=RGBA,width=32,height=32,framerate=16/1",
    );
    h.play();
    assert_eq!(
        h.push(gst::Buffer::with_size(32 * 32 * 4).unwrap()),
        Err(gst::FlowError::NotNegotiated)
    );
    let message = bus
        .pop_filtered(&[gst::MessageType::Error])
        .expect("an error on the bus");
    let gst::MessageView::Error(error) = message.view() else {
        unreachable!()
    };
    let text = error.error().to_string();
    assert!(
        text.contains("CUDA memory need the model on a GPU")
            && text.contains("the model runs on the CPU"),
        "{text}"
    );
}

#[test]
fn text_to_video_offers_cuda_memory_only_when_the_model_is_on_a_gpu() {
    init();
    let source = format!("soragensrc name=s device=cpu num-frames=1 steps=1 model={TINY_MODEL}");
    let error = run(&format!(
        "{source} ! video/x-raw(memory:CUDAMemory),width=16,height=16 ! fakesink name=sink"
    ))
    .err()
    .expect("CUDA memory cannot be negotiated with the model on the CPU");
    assert!(
        error.contains("not-negotiated") || error.contains("not negotiated"),
        "{error}"
    );
    // The same source in system memory.
    let output = run(&format!(
        "{source} ! video/x-raw,format=RGBA,width=16,height=16 ! fakesink name=sink"
    ))
    .unwrap();
    assert!(!has_cuda(&output.caps), "{}", output.caps);
    assert_eq!((output.frames.len(), output.generated), (1, 1));
}

/// What a pipeline with our element `s` and a `fakesink` named `sink` made.
struct Output {
    /// Each buffer the sink got, as bytes.
    frames: Vec<Vec<u8>>,
    /// How many of our buffers carry the generated meta.
    generated: usize,
    /// Our source pad's caps.
    caps: gst::Caps,
}

/// Runs `description` to EOS, or says what error it stopped with.
fn run(description: &str) -> Result<Output, String> {
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Bin>()
        .unwrap();
    let (frames, generated) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(0)));
    let ours = pipeline.by_name("s").unwrap().static_pad("src").unwrap();
    let marked = generated.clone();
    ours.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buffer) = info.buffer()
            && gst::meta::CustomMeta::from_buffer(buffer, GENERATED_META).is_ok()
        {
            *marked.lock().unwrap() += 1;
        }
        gst::PadProbeReturn::Ok
    });
    let received = frames.clone();
    pipeline
        .by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                received
                    .lock()
                    .unwrap()
                    .push(buffer.map_readable().unwrap().to_vec());
            }
            gst::PadProbeReturn::Ok
        });
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let message = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(300),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS or an error");
    let caps = ours.current_caps();
    pipeline.set_state(gst::State::Null).unwrap();
    if let gst::MessageView::Error(error) = message.view() {
        return Err(format!("{} ({:?})", error.error(), error.debug()));
    }
    let frames = std::mem::take(&mut *frames.lock().unwrap());
    let generated = *generated.lock().unwrap();
    Ok(Output {
        frames,
        generated,
        caps: caps.expect("negotiated caps"),
    })
}

/// What a GPU pipeline needs: a GPU and GStreamer's CUDA elements. The tests that need them
/// are ignored by default and fail where either is missing.
fn require_gpu_pipeline() {
    use soragen_core::device::{DeviceRequest, open_device};
    init();
    if let Err(reason) = open_device(DeviceRequest::Cuda(0)) {
        panic!("this test needs a GPU: {reason}");
    }
    for name in ["cudaupload", "cudadownload"] {
        assert!(
            gst::ElementFactory::find(name).is_some(),
            "this test needs the {name} element (gstreamer1.0-plugins-bad)"
        );
    }
}

#[test]
#[ignore = "needs a GPU: tests/gpu/run.sh runs it"]
fn a_pipeline_in_cuda_memory_extends_on_the_gpu_as_in_system_memory() {
    require_gpu_pipeline();
    let extend = |upload: &str, download: &str| {
        run(&format!(
            "videotestsrc num-buffers=5 ! video/x-raw,format=RGBA,width=32,height=32,framerate=16/1 ! {upload} \
             soragen name=s mode=extend-forward frames=3 context-frames=2 steps=2 device=cuda:0 model={TINY_MODEL} ! \
             {download} video/x-raw,format=RGBA ! fakesink name=sink"
        ))
        .unwrap()
    };
    let on_gpu = extend("cudaupload !", "cudadownload !");
    assert!(
        has_cuda(&on_gpu.caps),
        "negotiated in CUDA memory: {}",
        on_gpu.caps
    );
    assert_eq!((on_gpu.frames.len(), on_gpu.generated), (8, 3));
    // The same model on the same GPU, frames in system memory: the GPU conversions are exact.
    let in_system_memory = extend("", "");
    assert!(!has_cuda(&in_system_memory.caps));
    assert!(
        on_gpu.frames == in_system_memory.frames,
        "CUDA memory and system memory outputs differ"
    );
}

#[test]
#[ignore = "needs a GPU: tests/gpu/run.sh runs it"]
fn text_to_video_writes_cuda_memory_as_in_system_memory() {
    require_gpu_pipeline();
    let generate = |caps: &str, download: &str| {
        run(&format!(
            "soragensrc name=s num-frames=5 steps=2 seed=7 device=cuda:0 model={TINY_MODEL} ! \
             {caps},format=RGBA,width=32,height=32,framerate=16/1 ! {download} fakesink name=sink"
        ))
        .unwrap()
    };
    let on_gpu = generate("video/x-raw(memory:CUDAMemory)", "cudadownload !");
    assert!(
        has_cuda(&on_gpu.caps),
        "negotiated in CUDA memory: {}",
        on_gpu.caps
    );
    assert_eq!((on_gpu.frames.len(), on_gpu.generated), (5, 5));
    let in_system_memory = generate("video/x-raw", "");
    assert!(
        on_gpu.frames == in_system_memory.frames,
        "CUDA memory and system memory outputs differ"
    );
}
