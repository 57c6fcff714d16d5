use std::ffi::{CStr, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::RwLock;

use crate::effect::ImageEffect;
use crate::host::Host;
use crate::property::PropertySet;
use crate::status::{Result, Status};
use crate::sys::*;

/// The host given to `OfxSetHost`/`setHost`, with the address it came from so that repeated
/// calls with the same host reuse it.
static HOST: RwLock<Option<(usize, &'static Host)>> = RwLock::new(None);

/// Stores the host for every later action. Call from `OfxSetHost` and each `OfxPlugin::setHost`;
/// never panics.
///
/// # Safety
/// `host` must be the pointer the host passed to that entry point.
pub unsafe fn set_host(host: *const OfxHost) -> OfxStatus {
    catch_unwind(|| {
        let mut slot = HOST.write().unwrap_or_else(|e| e.into_inner());
        if slot.is_some_and(|(address, _)| address == host as usize) {
            return kOfxStatOK;
        }
        // SAFETY: `host` is what the host passed to the plugin's entry point.
        match unsafe { Host::from_raw(host) } {
            Ok(fetched) => {
                // One Host per distinct host pointer for the life of the process: hosts call
                // this once or a few times, and actions may still hold the previous one.
                *slot = Some((host as usize, Box::leak(Box::new(fetched))));
                kOfxStatOK
            }
            Err(status) => status.0,
        }
    })
    .unwrap_or(kOfxStatFailed)
}

/// The actions Soragen answers; everything else is `Other` (reply default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Load,
    Unload,
    Describe,
    DescribeInContext,
    CreateInstance,
    DestroyInstance,
    GetClipPreferences,
    GetFramesNeeded,
    GetTimeDomain,
    GetRegionOfDefinition,
    GetRegionsOfInterest,
    IsIdentity,
    Render,
    PurgeCaches,
    InstanceChanged,
    Other,
}

impl Action {
    fn from_name(name: &CStr) -> Self {
        let table: [(&CStr, Action); 15] = [
            (kOfxActionLoad, Action::Load),
            (kOfxActionUnload, Action::Unload),
            (kOfxActionDescribe, Action::Describe),
            (
                kOfxImageEffectActionDescribeInContext,
                Action::DescribeInContext,
            ),
            (kOfxActionCreateInstance, Action::CreateInstance),
            (kOfxActionDestroyInstance, Action::DestroyInstance),
            (
                kOfxImageEffectActionGetClipPreferences,
                Action::GetClipPreferences,
            ),
            (
                kOfxImageEffectActionGetFramesNeeded,
                Action::GetFramesNeeded,
            ),
            (kOfxImageEffectActionGetTimeDomain, Action::GetTimeDomain),
            (
                kOfxImageEffectActionGetRegionOfDefinition,
                Action::GetRegionOfDefinition,
            ),
            (
                kOfxImageEffectActionGetRegionsOfInterest,
                Action::GetRegionsOfInterest,
            ),
            (kOfxImageEffectActionIsIdentity, Action::IsIdentity),
            (kOfxImageEffectActionRender, Action::Render),
            (kOfxActionPurgeCaches, Action::PurgeCaches),
            (kOfxActionInstanceChanged, Action::InstanceChanged),
        ];
        table
            .into_iter()
            .find(|(n, _)| *n == name)
            .map_or(Action::Other, |(_, a)| a)
    }
}

/// One action call as the plugin sees it.
pub struct Call {
    pub action: Action,
    /// The descriptor or instance the action is about (absent for Load and Unload).
    pub effect: Option<ImageEffect>,
    pub in_args: Option<PropertySet>,
    pub out_args: Option<PropertySet>,
}

impl Call {
    /// The effect, or ErrBadHandle for an action that must have one.
    pub fn effect(&self) -> Result<ImageEffect> {
        self.effect.ok_or(Status::ERR_BAD_HANDLE)
    }

    pub fn in_args(&self) -> Result<PropertySet> {
        self.in_args.ok_or(Status::ERR_BAD_HANDLE)
    }

    pub fn out_args(&self) -> Result<PropertySet> {
        self.out_args.ok_or(Status::ERR_BAD_HANDLE)
    }
}

/// Runs `handler` for one `mainEntry` call: wraps the handles, turns its result into a status,
/// and turns a panic into `kOfxStatFailed` so that nothing unwinds into the host.
///
/// # Safety
/// The arguments must be those the host passed to the plugin's `mainEntry`.
pub unsafe fn dispatch(
    action: *const c_char,
    handle: *const c_void,
    in_args: OfxPropertySetHandle,
    out_args: OfxPropertySetHandle,
    handler: impl FnOnce(Call) -> Result<()>,
) -> OfxStatus {
    catch_unwind(AssertUnwindSafe(|| {
        let Some((_, host)) = *HOST.read().unwrap_or_else(|e| e.into_inner()) else {
            return kOfxStatErrMissingHostFeature;
        };
        if action.is_null() {
            return kOfxStatErrBadHandle;
        }
        // SAFETY: the host passes a NUL-terminated action name.
        let action = Action::from_name(unsafe { CStr::from_ptr(action) });
        let call = Call {
            action,
            effect: ImageEffect::new(handle as OfxImageEffectHandle, host),
            in_args: PropertySet::new(in_args, host.property).ok(),
            out_args: PropertySet::new(out_args, host.property).ok(),
        };
        match handler(call) {
            Ok(()) => kOfxStatOK,
            Err(status) => status.0,
        }
    }))
    .unwrap_or(kOfxStatFailed)
}

#[cfg(test)]
mod tests {
    use std::ffi::c_int;

    use super::*;

    /// Suites whose functions are all absent: enough for a host the layer accepts.
    // SAFETY: a suite is a struct of Option<fn> fields, for which all zeroes is all None.
    static PROPERTY: OfxPropertySuiteV1 = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    static EFFECT: OfxImageEffectSuiteV1 = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    static PARAM: OfxParameterSuiteV1 = unsafe { std::mem::zeroed() };

    unsafe extern "C" fn fetch_suite(
        _host: OfxPropertySetHandle,
        name: *const c_char,
        _version: c_int,
    ) -> *const c_void {
        // SAFETY: the layer passes NUL-terminated suite names.
        let name = unsafe { CStr::from_ptr(name) };
        if name == kOfxPropertySuite {
            &PROPERTY as *const _ as *const c_void
        } else if name == kOfxImageEffectSuite {
            &EFFECT as *const _ as *const c_void
        } else if name == kOfxParameterSuite {
            &PARAM as *const _ as *const c_void
        } else {
            std::ptr::null()
        }
    }

    #[test]
    fn panics_and_errors_become_statuses_and_never_unwind_into_the_host() {
        // SAFETY: NULL is what a broken host might pass; the layer must refuse it.
        assert_eq!(unsafe { set_host(std::ptr::null()) }, kOfxStatErrBadHandle);
        let host = Box::leak(Box::new(OfxHost {
            host: std::ptr::null_mut(),
            fetchSuite: Some(fetch_suite),
        }));
        // SAFETY: a host whose suites exist.
        assert_eq!(unsafe { set_host(host) }, kOfxStatOK);
        let run = |handler: &dyn Fn(Call) -> Result<()>| {
            let action = kOfxImageEffectActionRender.as_ptr();
            // SAFETY: NULL handles, as the layer must tolerate.
            unsafe {
                dispatch(
                    action,
                    std::ptr::null(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    handler,
                )
            }
        };
        assert_eq!(
            run(&|call| {
                assert_eq!(call.action, Action::Render);
                assert!(
                    call.effect().is_err() && call.in_args().is_err(),
                    "NULL handles are refused"
                );
                Ok(())
            }),
            kOfxStatOK
        );
        assert_eq!(run(&|_| panic!("a bug in an action")), kOfxStatFailed);
        assert_eq!(run(&|_| Err(Status::ERR_MEMORY)), kOfxStatErrMemory);
        assert_eq!(run(&|_| Err(Status::REPLY_DEFAULT)), kOfxStatReplyDefault);
    }
}
