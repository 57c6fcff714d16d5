//! Out of memory: a generation that would not fit is refused before it starts, with
//! `kOfxStatErrMemory` and a message, and the host keeps running. One test in this process: it
//! changes the environment the plugin reads.

mod common;

use common::*;
use soragen_ofx_ffi::sys::*;
use soragen_ofx_host::{Components, Depth, Profile};

#[test]
fn a_generation_beyond_the_memory_limit_is_refused_with_err_memory_and_a_message() {
    let host = common::host(Profile::RESOLVE);
    let source = footage(0, 4, Depth::Float, Components::Rgba, false, 17);
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

    let set_limit = |value: Option<&str>| {
        // SAFETY: this test is the only one in its process, and no render runs meanwhile.
        unsafe {
            match value {
                Some(value) => std::env::set_var("SORAGEN_MAX_MEMORY", value),
                None => std::env::remove_var("SORAGEN_MAX_MEMORY"),
            }
        }
    };
    set_limit(Some("1M"));
    assert_eq!(instance.render(4.0), Err(kOfxStatErrMemory));
    let message = instance
        .log()
        .messages
        .last()
        .cloned()
        .expect("an error message");
    assert_eq!(
        (message.kind.as_str(), message.persistent),
        ("OfxMessageError", true)
    );
    assert!(
        message.text.contains("not enough memory")
            && message.text.contains("SORAGEN_MAX_MEMORY allows 0.0 GiB"),
        "{}",
        message.text
    );
    assert_eq!(
        instance.log().progress_starts,
        0,
        "refused before generating anything"
    );
    assert_eq!(
        instance.render(1.0).unwrap(),
        source.frames[&1],
        "kept frames need no generation and still render"
    );

    set_limit(Some("lots"));
    assert_eq!(instance.render(4.0), Err(kOfxStatFailed));
    assert!(
        instance
            .log()
            .messages
            .last()
            .unwrap()
            .text
            .contains("SORAGEN_MAX_MEMORY=lots is not a size")
    );

    set_limit(Some("64G"));
    assert_generated(&instance.render(4.0).unwrap());
    assert!(
        instance.log().messages.is_empty(),
        "a good render clears the error"
    );
    set_limit(None);
    assert_generated(&instance.render(5.0).unwrap());
    assert_eq!(instance.log().progress_starts, 1);
    assert_all_released(&instance);
}
