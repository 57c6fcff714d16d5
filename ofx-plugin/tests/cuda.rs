//! The bundle in a Resolve-like host that renders with CUDA where effects support it.
//!
//! Every build: effects declare CUDA render (and streams) exactly where they can do it, a `cuda`
//! build on a machine with a GPU; elsewhere the host sends host memory and the CPU path runs,
//! and a CUDA render sent anyway fails with `kOfxStatGPURenderFailed` before any image is read.
//! On a GPU (`--features cuda`, run by tests/gpu/run.sh) the host passes device images and a
//! stream, and every output must equal the same render on host memory, bit for bit.

mod common;

use common::*;
use soragen_ofx_ffi::sys::*;
use soragen_ofx_host::{Components, Depth, Profile};

fn host() -> &'static soragen_ofx_host::Host {
    common::host(Profile::RESOLVE_CUDA)
}

/// Whether this build renders CUDA renders here: a `cuda` build on a machine with a GPU.
fn renders_on_gpu() -> bool {
    #[cfg(feature = "cuda")]
    return soragen_core::gpu::cuda_device_count() > 0;
    #[cfg(not(feature = "cuda"))]
    false
}

#[test]
fn effects_declare_cuda_render_exactly_where_they_can_do_it() {
    let host = host();
    let expected = if renders_on_gpu() { "true" } else { "false" };
    for id in host.identifiers() {
        let descriptor = host.describe(&id).unwrap();
        assert_eq!(
            descriptor
                .props
                .string(kOfxImageEffectPropCudaRenderSupported)
                .as_deref(),
            Some(expected),
            "{id}"
        );
        assert_eq!(
            descriptor
                .props
                .string(kOfxImageEffectPropCudaStreamSupported)
                .as_deref(),
            Some(expected),
            "{id}"
        );
    }
}

#[test]
fn without_a_gpu_a_cuda_host_renders_on_the_cpu() {
    assert!(
        !renders_on_gpu(),
        "this test is for machines without a GPU (tests/gpu/run.sh skips it)"
    );
    let host = host();
    let source = footage(0, 4, Depth::Float, Components::Rgba, false, 31);
    let instance = host
        .instance(
            EXTEND,
            setup(
                kOfxImageEffectContextGeneral,
                vec![(SOURCE, source.clone())],
                Depth::Float,
                Components::Rgba,
            ),
        )
        .unwrap();
    quick(&instance, 2, 2);
    assert_eq!(
        instance.render(2.0).unwrap(),
        source.frames[&2],
        "kept frames bit-identical"
    );
    assert_generated(&instance.render(5.0).unwrap());
    assert_eq!(
        instance.log().cuda_renders,
        0,
        "host memory, not CUDA, for effects without CUDA support"
    );
    assert_all_released(&instance);
}

#[test]
fn without_a_gpu_a_cuda_render_sent_anyway_fails_with_gpu_render_failed_before_reading_an_image() {
    // With a GPU the images would have to be device memory; the GPU tests below send those.
    assert!(
        !renders_on_gpu(),
        "this test is for machines without a GPU (tests/gpu/run.sh skips it)"
    );
    let host = host();
    let source = footage(0, 4, Depth::Float, Components::Rgba, false, 33);
    let instance = host
        .instance(
            EXTEND,
            setup(
                kOfxImageEffectContextGeneral,
                vec![(SOURCE, source.clone())],
                Depth::Float,
                Components::Rgba,
            ),
        )
        .unwrap();
    quick(&instance, 2, 2);
    instance.force_cuda_renders(true);
    for time in [1.0, 5.0] {
        assert_eq!(
            instance.render(time),
            Err(kOfxStatGPURenderFailed),
            "frame {time}"
        );
    }
    let log = instance.log();
    assert_eq!(
        (log.cuda_renders, log.lent, log.progress_starts),
        (2, 0, 0),
        "no image fetched, nothing generated"
    );
    let message = log.messages.last().expect("an error message");
    assert!(message.text.contains("CUDA render"), "{}", message.text);

    instance.force_cuda_renders(false);
    assert_eq!(
        instance.render(1.0).unwrap(),
        source.frames[&1],
        "the host keeps running; CPU renders work"
    );
    assert!(
        instance.log().messages.is_empty(),
        "a good render clears the error"
    );
}

#[cfg(feature = "cuda")]
mod gpu {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
    use soragen_core::device::{DeviceRequest, open_device};
    use soragen_ofx_ffi::RectI;
    use soragen_ofx_host::{DeviceMemory, Instance, Setup, Value};

    use super::*;

    /// The host's GPU memory: buffers on a stream of the model's context that is not candle's,
    /// as Resolve's is; `host_stream: false` renders without a stream.
    struct Gpu {
        stream: Arc<CudaStream>,
        host_stream: bool,
        buffers: Mutex<HashMap<usize, CudaSlice<u8>>>,
    }

    impl Gpu {
        fn new(host_stream: bool) -> Arc<Self> {
            let device = open_device(DeviceRequest::Cuda(0)).expect("a GPU");
            let stream = device
                .as_cuda_device()
                .unwrap()
                .cuda_stream()
                .context()
                .new_stream()
                .unwrap();
            Arc::new(Gpu {
                stream,
                host_stream,
                buffers: Mutex::default(),
            })
        }
    }

    impl DeviceMemory for Gpu {
        fn upload(&self, bytes: &[u8]) -> usize {
            let buffer = self.stream.clone_htod(bytes).unwrap();
            self.stream.synchronize().unwrap();
            let address = buffer.device_ptr(&self.stream).0 as usize;
            self.buffers.lock().unwrap().insert(address, buffer);
            address
        }

        fn download(&self, address: usize, bytes: &mut [u8]) {
            let buffers = self.buffers.lock().unwrap();
            self.stream.memcpy_dtoh(&buffers[&address], bytes).unwrap();
            self.stream.synchronize().unwrap();
        }

        fn free(&self, address: usize) {
            self.buffers.lock().unwrap().remove(&address);
        }

        fn stream(&self) -> usize {
            if self.host_stream {
                self.stream.cu_stream() as usize
            } else {
                0
            }
        }
    }

    /// Two instances of one set-up: one renders on the GPU, the other on host memory.
    fn pair(
        effect: &str,
        make: impl Fn() -> Setup,
        configure: impl Fn(&Instance),
        host_stream: bool,
    ) -> (Instance<'static>, Instance<'static>) {
        let host = host();
        let on_gpu = host.instance(effect, make()).unwrap();
        on_gpu.use_device_memory(Gpu::new(host_stream));
        let on_host = host.instance(effect, make()).unwrap();
        // The same host, told to hand this instance host memory.
        on_host.force_cuda_renders(false);
        configure(&on_gpu);
        configure(&on_host);
        (on_gpu, on_host)
    }

    #[test]
    #[ignore = "needs a GPU: tests/gpu/run.sh runs it"]
    fn extend_on_device_images_equals_the_host_memory_render_with_and_without_a_stream() {
        assert!(
            renders_on_gpu(),
            "this test needs a cuda build on a machine with a GPU"
        );
        for host_stream in [true, false] {
            let source = footage(0, 6, Depth::Float, Components::Rgba, false, 41);
            let make = || {
                setup(
                    kOfxImageEffectContextGeneral,
                    vec![(SOURCE, source.clone())],
                    Depth::Float,
                    Components::Rgba,
                )
            };
            let (on_gpu, on_host) = pair(EXTEND, make, |i| quick(i, 4, 3), host_stream);
            for t in 0..10 {
                let expected = if t < 6 {
                    source.frames[&t].clone()
                } else {
                    on_host.render(t as f64).unwrap()
                };
                assert_eq!(
                    on_gpu.render(t as f64).unwrap(),
                    expected,
                    "frame {t}, host stream {host_stream}"
                );
            }
            assert!(on_gpu.log().cuda_renders >= 10);
            assert_all_released(&on_gpu);
            // A render window smaller than the frame (the output image covers only it).
            let window = RectI {
                x1: 4,
                y1: 6,
                x2: 20,
                y2: 30,
            };
            assert_eq!(
                on_gpu.render_window(7.0, window).unwrap(),
                on_host.render_window(7.0, window).unwrap()
            );
        }
    }

    #[test]
    #[ignore = "needs a GPU: tests/gpu/run.sh runs it"]
    fn replace_background_keeps_subject_pixels_bit_identical_on_the_gpu() {
        assert!(
            renders_on_gpu(),
            "this test needs a cuda build on a machine with a GPU"
        );
        let source = footage(0, 3, Depth::Float, Components::Rgba, false, 43);
        let make = || {
            setup(
                kOfxImageEffectContextFilter,
                vec![(SOURCE, source.clone())],
                Depth::Float,
                Components::Rgba,
            )
        };
        let configure = |i: &Instance| {
            quick(i, 5, 1);
            i.set("maskDilation", Value::Int(0));
            i.set("maskFeather", Value::Int(0));
        };
        let (on_gpu, on_host) = pair(REPLACE_BACKGROUND, make, configure, true);
        for t in 0..3 {
            assert_eq!(
                on_gpu.render(t as f64).unwrap(),
                on_host.render(t as f64).unwrap(),
                "frame {t}"
            );
        }
        assert_all_released(&on_gpu);
    }
}
