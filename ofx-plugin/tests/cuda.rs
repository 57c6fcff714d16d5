//! The bundle in a Resolve-like host that renders with CUDA where effects support it. This
//! build renders on the CPU only: its effects declare CUDA render unsupported, so the host
//! sends host memory and the CPU path runs; a CUDA render sent anyway fails with
//! `kOfxStatGPURenderFailed` before any image is read.

mod common;

use common::*;
use soragen_ofx_ffi::sys::*;
use soragen_ofx_host::{Components, Depth, Profile};

fn host() -> &'static soragen_ofx_host::Host {
    common::host(Profile::RESOLVE_CUDA)
}

#[test]
fn effects_declare_no_cuda_render_and_a_cuda_host_renders_them_on_the_cpu() {
    let host = host();
    for id in host.identifiers() {
        let descriptor = host.describe(&id).unwrap();
        assert_eq!(descriptor.props.string(kOfxImageEffectPropCudaRenderSupported).as_deref(), Some("false"), "{id}");
        assert_eq!(descriptor.props.string(kOfxImageEffectPropCudaStreamSupported).as_deref(), Some("false"), "{id}");
    }
    let source = footage(0, 4, Depth::Float, Components::Rgba, false, 31);
    let instance = host.instance(EXTEND, setup(kOfxImageEffectContextGeneral, vec![(SOURCE, source.clone())], Depth::Float, Components::Rgba)).unwrap();
    quick(&instance, 2, 2);
    assert_eq!(instance.render(2.0).unwrap(), source.frames[&2], "kept frames bit-identical");
    assert_generated(&instance.render(5.0).unwrap());
    assert_eq!(instance.log().cuda_renders, 0, "host memory, not CUDA, for effects without CUDA support");
    assert_all_released(&instance);
}

#[test]
fn a_cuda_render_sent_anyway_fails_with_gpu_render_failed_before_reading_an_image() {
    let host = host();
    let source = footage(0, 4, Depth::Float, Components::Rgba, false, 33);
    let instance = host.instance(EXTEND, setup(kOfxImageEffectContextGeneral, vec![(SOURCE, source.clone())], Depth::Float, Components::Rgba)).unwrap();
    quick(&instance, 2, 2);
    instance.force_cuda_renders(true);
    for time in [1.0, 5.0] {
        assert_eq!(instance.render(time), Err(kOfxStatGPURenderFailed), "frame {time}");
    }
    let log = instance.log();
    assert_eq!((log.cuda_renders, log.lent, log.progress_starts), (2, 0, 0), "no image fetched, nothing generated");
    let message = log.messages.last().expect("an error message");
    assert!(message.text.contains("CUDA") && message.text.contains("CPU only"), "{}", message.text);

    instance.force_cuda_renders(false);
    assert_eq!(instance.render(1.0).unwrap(), source.frames[&1], "the host keeps running; CPU renders work");
    assert!(instance.log().messages.is_empty(), "a good render clears the error");
}
