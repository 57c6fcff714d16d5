use std::ffi::{CStr, CString, c_char, c_int, c_void};

use crate::status::{Result, Status};
use crate::sys::*;

/// A host property set (descriptor, instance, clip, image, parameter or action arguments),
/// valid for the action call it came with.
#[derive(Clone, Copy)]
pub struct PropertySet {
    handle: OfxPropertySetHandle,
    suite: &'static OfxPropertySuiteV1,
}

fn c_string(value: &str) -> CString {
    // Interior NULs cannot cross the C API: cut the string there rather than fail.
    let bytes = value.as_bytes();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    CString::new(&bytes[..end]).expect("no NUL before end")
}

macro_rules! suite_fn {
    ($suite:expr, $name:ident) => {
        $suite.$name.ok_or(Status::ERR_MISSING_HOST_FEATURE)?
    };
}
pub(crate) use suite_fn;

impl PropertySet {
    pub(crate) fn new(
        handle: OfxPropertySetHandle,
        suite: &'static OfxPropertySuiteV1,
    ) -> Result<Self> {
        if handle.is_null() {
            Err(Status::ERR_BAD_HANDLE)
        } else {
            Ok(Self { handle, suite })
        }
    }

    pub(crate) fn raw(&self) -> OfxPropertySetHandle {
        self.handle
    }

    pub fn set_string(&self, name: &CStr, value: &str) -> Result<()> {
        self.set_string_at(name, 0, value)
    }

    pub fn set_string_at(&self, name: &CStr, index: usize, value: &str) -> Result<()> {
        let value = c_string(value);
        // SAFETY: the handle is live for this action; the host copies the string.
        Status::check(unsafe {
            suite_fn!(self.suite, propSetString)(
                self.handle,
                name.as_ptr(),
                index as c_int,
                value.as_ptr(),
            )
        })
    }

    /// Sets every value of a multi-valued string property (contexts, depths, ...).
    pub fn set_strings(&self, name: &CStr, values: &[&CStr]) -> Result<()> {
        for (index, value) in values.iter().enumerate() {
            // SAFETY: as in set_string_at.
            Status::check(unsafe {
                suite_fn!(self.suite, propSetString)(
                    self.handle,
                    name.as_ptr(),
                    index as c_int,
                    value.as_ptr(),
                )
            })?;
        }
        Ok(())
    }

    pub fn set_int(&self, name: &CStr, value: i32) -> Result<()> {
        self.set_int_at(name, 0, value)
    }

    pub fn set_int_at(&self, name: &CStr, index: usize, value: i32) -> Result<()> {
        // SAFETY: the handle is live for this action.
        Status::check(unsafe {
            suite_fn!(self.suite, propSetInt)(self.handle, name.as_ptr(), index as c_int, value)
        })
    }

    pub fn set_bool(&self, name: &CStr, value: bool) -> Result<()> {
        self.set_int(name, value as i32)
    }

    pub fn set_double(&self, name: &CStr, value: f64) -> Result<()> {
        self.set_double_at(name, 0, value)
    }

    pub fn set_double_at(&self, name: &CStr, index: usize, value: f64) -> Result<()> {
        // SAFETY: the handle is live for this action.
        Status::check(unsafe {
            suite_fn!(self.suite, propSetDouble)(self.handle, name.as_ptr(), index as c_int, value)
        })
    }

    pub fn set_doubles(&self, name: &CStr, values: &[f64]) -> Result<()> {
        for (index, value) in values.iter().enumerate() {
            self.set_double_at(name, index, *value)?;
        }
        Ok(())
    }

    /// Sets a property whose name is built at run time (per-clip out-args of some actions).
    pub fn set_doubles_named(&self, name: &str, values: &[f64]) -> Result<()> {
        self.set_doubles(&c_string(name), values)
    }

    pub fn set_string_named(&self, name: &str, value: &str) -> Result<()> {
        self.set_string(&c_string(name), value)
    }

    pub fn string(&self, name: &CStr) -> Result<String> {
        self.string_at(name, 0)
    }

    pub fn string_at(&self, name: &CStr, index: usize) -> Result<String> {
        let mut value: *mut c_char = std::ptr::null_mut();
        // SAFETY: the handle is live; the host keeps the returned string alive at least until
        // the next call on this property set, and we copy it at once.
        unsafe {
            Status::check(suite_fn!(self.suite, propGetString)(
                self.handle,
                name.as_ptr(),
                index as c_int,
                &mut value,
            ))?;
            if value.is_null() {
                return Ok(String::new());
            }
            Ok(CStr::from_ptr(value).to_string_lossy().into_owned())
        }
    }

    /// Every value of a multi-valued string property.
    pub fn strings(&self, name: &CStr) -> Result<Vec<String>> {
        (0..self.dimension(name)?)
            .map(|i| self.string_at(name, i))
            .collect()
    }

    pub fn int(&self, name: &CStr) -> Result<i32> {
        self.int_at(name, 0)
    }

    pub fn int_at(&self, name: &CStr, index: usize) -> Result<i32> {
        let mut value: c_int = 0;
        // SAFETY: the handle is live for this action.
        Status::check(unsafe {
            suite_fn!(self.suite, propGetInt)(
                self.handle,
                name.as_ptr(),
                index as c_int,
                &mut value,
            )
        })?;
        Ok(value)
    }

    pub fn bool(&self, name: &CStr) -> Result<bool> {
        Ok(self.int(name)? != 0)
    }

    pub fn double(&self, name: &CStr) -> Result<f64> {
        self.double_at(name, 0)
    }

    pub fn double_at(&self, name: &CStr, index: usize) -> Result<f64> {
        let mut value = 0.0;
        // SAFETY: the handle is live for this action.
        Status::check(unsafe {
            suite_fn!(self.suite, propGetDouble)(
                self.handle,
                name.as_ptr(),
                index as c_int,
                &mut value,
            )
        })?;
        Ok(value)
    }

    pub fn doubles<const N: usize>(&self, name: &CStr) -> Result<[f64; N]> {
        let mut values = [0.0; N];
        for (i, v) in values.iter_mut().enumerate() {
            *v = self.double_at(name, i)?;
        }
        Ok(values)
    }

    pub fn ints<const N: usize>(&self, name: &CStr) -> Result<[i32; N]> {
        let mut values = [0; N];
        for (i, v) in values.iter_mut().enumerate() {
            *v = self.int_at(name, i)?;
        }
        Ok(values)
    }

    pub fn pointer(&self, name: &CStr) -> Result<*mut c_void> {
        let mut value: *mut c_void = std::ptr::null_mut();
        // SAFETY: the handle is live for this action.
        Status::check(unsafe {
            suite_fn!(self.suite, propGetPointer)(self.handle, name.as_ptr(), 0, &mut value)
        })?;
        Ok(value)
    }

    pub fn dimension(&self, name: &CStr) -> Result<usize> {
        let mut count: c_int = 0;
        // SAFETY: the handle is live for this action.
        Status::check(unsafe {
            suite_fn!(self.suite, propGetDimension)(self.handle, name.as_ptr(), &mut count)
        })?;
        Ok(count.max(0) as usize)
    }
}
