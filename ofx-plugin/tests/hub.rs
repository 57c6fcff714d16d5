//! The Model parameter takes a Hugging Face repository id, found in the Hugging Face cache (a
//! folder laid out like it, here, offline). One test in this process: it sets the environment
//! the plugin reads.

mod common;

use common::*;
use soragen_ofx_ffi::sys::*;
use soragen_ofx_host::{Components, Depth, Profile};

#[test]
fn a_repository_id_in_the_hugging_face_cache_serves_as_the_model() {
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("hub-{}", std::process::id()));
    let repo = cache.join("models--soragen--tiny");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(repo.join("snapshots")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    std::os::unix::fs::symlink(tiny_model(), repo.join("snapshots/0123abcd")).unwrap();
    // SAFETY: set before the host loads the plugin and before any render; the only test here.
    unsafe {
        std::env::set_var("HF_HUB_CACHE", &cache);
        std::env::set_var("HF_HUB_OFFLINE", "1");
    }

    let host = common::host(Profile::RESOLVE);
    let instance = host
        .instance(
            EXTEND,
            setup(
                kOfxImageEffectContextGeneral,
                vec![(
                    SOURCE,
                    footage(0, 4, Depth::Float, Components::Rgba, false, 23),
                )],
                Depth::Float,
                Components::Rgba,
            ),
        )
        .unwrap();
    quick(&instance, 2, 2);
    instance.set_text("model", "soragen/tiny");
    assert_generated(&instance.render(4.0).unwrap());

    instance.set_text("model", "soragen/absent");
    instance.set("seed", soragen_ofx_host::Value::Int(7));
    assert_eq!(instance.render(4.0), Err(kOfxStatFailed));
    let message = instance
        .log()
        .messages
        .last()
        .cloned()
        .expect("an error message")
        .text;
    assert!(
        message.contains("soragen/absent")
            && message.contains("soragen/tiny")
            && message.contains("offline"),
        "{message}"
    );
    assert_all_released(&instance);
}
