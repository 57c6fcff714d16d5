use std::ffi::CStr;

use crate::status::{Result, Status};
use crate::sys::*;

/// The host application: the suites the plugin uses. Suites are fetched once
/// in `OfxSetHost`/`setHost`; the host keeps them alive while the binary is loaded.
pub struct Host {
    pub(crate) property: &'static OfxPropertySuiteV1,
    pub(crate) effect: &'static OfxImageEffectSuiteV1,
    pub(crate) param: &'static OfxParameterSuiteV1,
    pub(crate) message_v2: Option<&'static OfxMessageSuiteV2>,
    pub(crate) message_v1: Option<&'static OfxMessageSuiteV1>,
    pub(crate) progress_v2: Option<&'static OfxProgressSuiteV2>,
    pub(crate) progress_v1: Option<&'static OfxProgressSuiteV1>,
}

// SAFETY: the suites are tables of function pointers the host publishes for every thread.
unsafe impl Send for Host {}
// SAFETY: as for Send; the host makes its suites callable from any thread at once.
unsafe impl Sync for Host {}

unsafe fn fetch<T>(host: &OfxHost, name: &CStr, version: i32) -> Option<&'static T> {
    let fetch = host.fetchSuite?;
    // SAFETY: per the OFX API the returned pointer, when not NULL, is a suite of that name and
    // version that lives as long as the host.
    unsafe { (fetch(host.host, name.as_ptr(), version) as *const T).as_ref() }
}

impl Host {
    /// # Safety
    /// `host` must be the pointer the host passed to `OfxSetHost` or `OfxPlugin::setHost`.
    pub(crate) unsafe fn from_raw(host: *const OfxHost) -> Result<Self> {
        // SAFETY: the caller passes the host's own pointer.
        let host = unsafe { host.as_ref() }.ok_or(Status::ERR_BAD_HANDLE)?;
        // SAFETY: `host` is the host's own, whose fetchSuite `fetch` calls as the API says.
        unsafe {
            let property: &OfxPropertySuiteV1 =
                fetch(host, kOfxPropertySuite, 1).ok_or(Status::ERR_MISSING_HOST_FEATURE)?;
            Ok(Self {
                property,
                effect: fetch(host, kOfxImageEffectSuite, 1)
                    .ok_or(Status::ERR_MISSING_HOST_FEATURE)?,
                param: fetch(host, kOfxParameterSuite, 1)
                    .ok_or(Status::ERR_MISSING_HOST_FEATURE)?,
                message_v2: fetch(host, kOfxMessageSuite, 2),
                message_v1: fetch(host, kOfxMessageSuite, 1),
                progress_v2: fetch(host, kOfxProgressSuite, 2),
                progress_v1: fetch(host, kOfxProgressSuite, 1),
            })
        }
    }
}
