//! The bundle in the OpenFX association's HostSupport, built from the openfx-sys 0.1.0 sources
//! as they come (default defines: no OpenGL render). Those sources define the GPU render
//! properties on descriptors, instances and the host unconditionally.

mod common;

use soragen_ofx_hostsupport::{Build, Host, Profile};

fn host() -> &'static Host {
    common::host(Profile {
        build: Build::Plain,
        without_gpu_properties: false,
    })
}

hostsupport_tests!(host());

#[test]
fn extend_at_byte_depth() {
    common::extend_at_byte_depth(host());
}

#[test]
fn abort_and_cancel_stop_a_render() {
    common::abort_and_cancel_stop_a_render(host());
}
