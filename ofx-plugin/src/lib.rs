//! Soragen's OpenFX plugin: the effects Extend, Insert, Replace Background and Generate in one
//! binary (`Soragen.ofx` in `Soragen.ofx.bundle`). Every exported function and action entry
//! catches panics (in `soragen_ofx_ffi::dispatch`/`set_host`): nothing unwinds into the host.

mod cuda;
mod effects;
mod failure;
mod instance;
mod memory;
mod params;
mod pixels;
mod plan;
mod render;

use std::ffi::{c_char, c_int, c_void};

use soragen_ofx_ffi::sys::*;
use soragen_ofx_ffi::{Action, Call, MessageKind, Status};

use crate::effects::EffectKind;

pub use crate::params::MODEL_ENV;

fn handle(kind: EffectKind, call: Call) -> soragen_ofx_ffi::Result<()> {
    let result = answer(kind, &call);
    match result {
        // Answers, not failures; Render reports its own failures with what went wrong.
        Ok(()) | Err(Status::REPLY_DEFAULT) => {}
        Err(_) if call.action == Action::Render => {}
        Err(Status::ERR_UNSUPPORTED) if call.action == Action::DescribeInContext => {}
        Err(status) => {
            // No action fails without a word: the host's log and, on an instance, its message.
            let message = format!(
                "Soragen {}: the host refused a call during {:?} ({status:?})",
                kind.label(),
                call.action
            );
            eprintln!("{message}");
            if let (Ok(effect), true) = (call.effect(), render::is_instance_action(call.action)) {
                let _ = effect.set_persistent_message(MessageKind::Error, &message);
            }
        }
    }
    result
}

fn answer(kind: EffectKind, call: &Call) -> soragen_ofx_ffi::Result<()> {
    match call.action {
        Action::Load | Action::Unload => Ok(()),
        Action::Describe => kind.describe(call.effect()?),
        Action::DescribeInContext => {
            let context = call.in_args()?.string(kOfxImageEffectPropContext)?;
            kind.describe_in_context(
                call.effect()?,
                effects::Context::from_name(&context).ok_or(Status::ERR_UNSUPPORTED)?,
            )
        }
        Action::CreateInstance => instance::create(call.effect()?, kind),
        Action::DestroyInstance => {
            instance::destroy(call.effect()?);
            Ok(())
        }
        Action::GetClipPreferences => render::clip_preferences(call.effect()?, call.out_args()?),
        Action::GetTimeDomain => render::time_domain(call.effect()?, call.out_args()?),
        Action::GetFramesNeeded => {
            render::frames_needed(call.effect()?, call.in_args()?, call.out_args()?)
        }
        Action::GetRegionsOfInterest => {
            render::regions_of_interest(call.effect()?, call.in_args()?, call.out_args()?)
        }
        Action::Render => {
            let effect = call.effect()?;
            failure::report(effect, render::render(effect, call.in_args()?))
        }
        Action::PurgeCaches => {
            instance::get(call.effect()?)?.purge();
            Ok(())
        }
        _ => Err(Status::REPLY_DEFAULT),
    }
}

unsafe extern "C" fn main_entry<const INDEX: usize>(
    action: *const c_char,
    handle_: *const c_void,
    in_args: OfxPropertySetHandle,
    out_args: OfxPropertySetHandle,
) -> OfxStatus {
    // SAFETY: the host's own arguments, passed through.
    unsafe {
        soragen_ofx_ffi::dispatch(action, handle_, in_args, out_args, |call| {
            handle(EffectKind::ALL[INDEX], call)
        })
    }
}

unsafe extern "C" fn set_host(host: *mut OfxHost) {
    // SAFETY: the host's own pointer, passed through.
    unsafe { soragen_ofx_ffi::set_host(host) };
}

const fn plugin<const INDEX: usize>() -> OfxPlugin {
    OfxPlugin {
        pluginApi: kOfxImageEffectPluginApi.as_ptr(),
        apiVersion: 1,
        pluginIdentifier: EffectKind::ALL[INDEX].identifier().as_ptr(),
        pluginVersionMajor: 0,
        pluginVersionMinor: 1,
        setHost: Some(set_host),
        mainEntry: Some(main_entry::<INDEX>),
    }
}

static PLUGINS: [OfxPlugin; 4] = [plugin::<0>(), plugin::<1>(), plugin::<2>(), plugin::<3>()];

#[unsafe(no_mangle)]
pub extern "C" fn OfxGetNumberOfPlugins() -> c_int {
    PLUGINS.len() as c_int
}

#[unsafe(no_mangle)]
pub extern "C" fn OfxGetPlugin(nth: c_int) -> *const OfxPlugin {
    usize::try_from(nth)
        .ok()
        .and_then(|i| PLUGINS.get(i))
        .map_or(std::ptr::null(), |p| p as *const OfxPlugin)
}

/// OpenFX 1.5: the host for every plugin of the binary, before any action.
///
/// # Safety
/// Called by the host with its own `OfxHost`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OfxSetHost(host: *const OfxHost) -> OfxStatus {
    // SAFETY: the host's own pointer, passed through.
    unsafe { soragen_ofx_ffi::set_host(host) }
}
