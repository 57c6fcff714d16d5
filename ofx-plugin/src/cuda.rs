//! OpenFX's CUDA render extension. An effect declares CUDA render and CUDA stream support; a
//! host that supports them too may then set `kOfxImageEffectPropCudaEnabled` on a render, and
//! every image's data of that render is CUDA device memory.
//!
//! This build renders on the CPU only: it declares both unsupported, so hosts send host memory.
//! A host that sends a CUDA render anyway gets `kOfxStatGPURenderFailed` and a message, and no
//! image of that render is touched (its data pointers are not host memory).

use soragen_ofx_ffi::sys::*;
use soragen_ofx_ffi::{PropertySet, Result};

use crate::render::Failure;

/// Declares on an effect descriptor what this build can render on the GPU.
pub fn describe(props: PropertySet) -> Result<()> {
    props.set_string(kOfxImageEffectPropCudaRenderSupported, "false")?;
    props.set_string(kOfxImageEffectPropCudaStreamSupported, "false")
}

/// Refuses a render whose images are CUDA device memory, before anything reads them.
pub fn refuse_device_images(args: PropertySet) -> std::result::Result<(), Failure> {
    if args.bool(kOfxImageEffectPropCudaEnabled).unwrap_or(false) {
        return Err(Failure::Gpu(
            "the host sent a CUDA render, but this build of Soragen renders on the CPU only: turn GPU rendering off for Soragen's effects".into(),
        ));
    }
    Ok(())
}
