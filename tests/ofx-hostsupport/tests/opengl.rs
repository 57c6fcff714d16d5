//! The bundle in HostSupport built with `OFX_SUPPORTS_OPENGLRENDER` (OpenGL render suite,
//! `kOfxImageEffectPropOpenGLRenderSupported`, texture images; the plugin renders on the CPU
//! there all the same).

mod common;

use soragen_ofx_hostsupport::{Build, Host, Profile};

fn host() -> &'static Host {
    common::host(Profile {
        build: Build::OpenGl,
        without_gpu_properties: false,
    })
}

hostsupport_tests!(host());
