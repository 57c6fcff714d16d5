//! The bundle in a HostSupport without the OpenFX 1.5 GPU render properties (CUDA, Metal,
//! OpenCL), as the current upstream library is built without `OFX_SUPPORTS_OPENGLRENDER` and as
//! Natron's has it: the host removes them from every property set it makes, so getting or setting
//! them answers `kOfxStatErrUnknown`. They are optional: every effect must describe and render.

mod common;

use soragen_ofx_hostsupport::{Build, Host, Profile};

fn host() -> &'static Host {
    common::host(Profile {
        build: Build::Plain,
        without_gpu_properties: true,
    })
}

hostsupport_tests!(host());
