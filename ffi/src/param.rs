use std::ffi::{CStr, c_char, c_int};

use crate::host::Host;
use crate::property::{PropertySet, suite_fn};
use crate::status::{Result, Status};
use crate::sys::*;

/// The parameters of a descriptor (to define) or an instance (to read).
#[derive(Clone, Copy)]
pub struct ParamSet {
    handle: OfxParamSetHandle,
    host: &'static Host,
}

/// One parameter of an instance.
#[derive(Clone, Copy)]
pub struct Param {
    handle: OfxParamHandle,
    pub properties: PropertySet,
    host: &'static Host,
}

impl ParamSet {
    pub(crate) fn new(handle: OfxParamSetHandle, host: &'static Host) -> Result<Self> {
        if handle.is_null() {
            Err(Status::ERR_BAD_HANDLE)
        } else {
            Ok(Self { handle, host })
        }
    }

    /// Defines a parameter of type `kind` (`kOfxParamType...`); returns its properties.
    pub fn define(&self, kind: &CStr, name: &CStr) -> Result<PropertySet> {
        let mut props = std::ptr::null_mut();
        // SAFETY: the handle is live for this action.
        Status::check(unsafe {
            suite_fn!(self.host.param, paramDefine)(
                self.handle,
                kind.as_ptr(),
                name.as_ptr(),
                &mut props,
            )
        })?;
        PropertySet::new(props, self.host.property)
    }

    pub fn param(&self, name: &CStr) -> Result<Param> {
        let (mut param, mut props) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: the handle is live for this action.
        Status::check(unsafe {
            suite_fn!(self.host.param, paramGetHandle)(
                self.handle,
                name.as_ptr(),
                &mut param,
                &mut props,
            )
        })?;
        if param.is_null() {
            return Err(Status::ERR_BAD_HANDLE);
        }
        Ok(Param {
            handle: param,
            properties: PropertySet::new(props, self.host.property)?,
            host: self.host,
        })
    }
}

impl Param {
    /// Integer, boolean and choice parameters.
    pub fn int(&self, time: f64) -> Result<i32> {
        let mut value: c_int = 0;
        // SAFETY: these parameter types take one `int*` after the time.
        Status::check(unsafe {
            suite_fn!(self.host.param, paramGetValueAtTime)(
                self.handle,
                time,
                &mut value as *mut c_int,
            )
        })?;
        Ok(value)
    }

    pub fn bool(&self, time: f64) -> Result<bool> {
        Ok(self.int(time)? != 0)
    }

    pub fn double(&self, time: f64) -> Result<f64> {
        let mut value = 0.0f64;
        // SAFETY: a double parameter takes one `double*` after the time.
        Status::check(unsafe {
            suite_fn!(self.host.param, paramGetValueAtTime)(
                self.handle,
                time,
                &mut value as *mut f64,
            )
        })?;
        Ok(value)
    }

    pub fn string(&self, time: f64) -> Result<String> {
        let mut value: *mut c_char = std::ptr::null_mut();
        // SAFETY: a string parameter takes one `char**` after the time; the host keeps the
        // string alive until the next call and we copy it at once.
        unsafe {
            Status::check(suite_fn!(self.host.param, paramGetValueAtTime)(
                self.handle,
                time,
                &mut value as *mut *mut c_char,
            ))?;
            if value.is_null() {
                return Ok(String::new());
            }
            Ok(CStr::from_ptr(value).to_string_lossy().into_owned())
        }
    }
}
