//! Property sets and the property suite. Every handle the host gives out as an
//! `OfxPropertySetHandle` points at a `PropSet`.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::sync::Mutex;

use soragen_ofx_ffi::sys::*;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i32),
    Double(f64),
    String(CString),
    Pointer(usize),
}

impl Value {
    pub fn str(s: &str) -> Self {
        Value::String(CString::new(s).expect("no NUL"))
    }
}

/// A property set that has exactly the properties the standard defines on its object: getting,
/// setting or asking the dimension of any other name is `kOfxStatErrUnknown` (HostSupport's
/// answer), and the host itself cannot set one (a panic: the fixture must not do the plugin
/// favours real hosts do not).
pub struct PropSet {
    values: Mutex<HashMap<String, Vec<Value>>>,
    known: HashSet<String>,
}

impl PropSet {
    /// An empty set whose object has the properties `names`.
    pub fn strict<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        PropSet {
            values: Mutex::default(),
            known: names.into_iter().map(Into::into).collect(),
        }
    }

    /// Sets `values` as the host.
    pub fn with(self, values: impl IntoIterator<Item = (&'static CStr, Vec<Value>)>) -> Self {
        for (name, value) in values {
            self.set(name, value);
        }
        self
    }

    pub fn knows(&self, name: &str) -> bool {
        self.known.contains(name)
    }

    pub fn handle(&self) -> OfxPropertySetHandle {
        self as *const PropSet as OfxPropertySetHandle
    }

    pub fn set(&self, name: &CStr, values: Vec<Value>) {
        self.set_named(&name.to_string_lossy(), values);
    }

    pub fn set_named(&self, name: &str, values: Vec<Value>) {
        assert!(
            self.knows(name),
            "the standard defines no property {name} on this object: a host does not set it"
        );
        self.values.lock().unwrap().insert(name.to_string(), values);
    }

    pub fn get(&self, name: &str) -> Option<Vec<Value>> {
        self.values.lock().unwrap().get(name).cloned()
    }

    pub fn snapshot(&self) -> HashMap<String, Vec<Value>> {
        self.values.lock().unwrap().clone()
    }

    /// Copies what `other` holds of this object's properties (a descriptor's onto an instance).
    pub fn copy_from(&self, other: &PropSet) {
        *self.values.lock().unwrap() = other
            .snapshot()
            .into_iter()
            .filter(|(name, _)| self.knows(name))
            .collect();
    }

    pub fn string(&self, name: &CStr) -> Option<String> {
        match self.get(&name.to_string_lossy())?.first()? {
            Value::String(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        }
    }

    pub fn strings(&self, name: &CStr) -> Vec<String> {
        self.get(&name.to_string_lossy())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| {
                if let Value::String(s) = v {
                    Some(s.to_string_lossy().into_owned())
                } else {
                    None
                }
            })
            .collect()
    }

    pub fn doubles(&self, name: &str) -> Vec<f64> {
        self.get(name)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| match v {
                Value::Double(d) => Some(d),
                Value::Int(i) => Some(i as f64),
                _ => None,
            })
            .collect()
    }

    pub fn int(&self, name: &CStr) -> Option<i32> {
        match self.get(&name.to_string_lossy())?.first()? {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    fn set_at(&self, name: *const c_char, index: c_int, value: Value) -> OfxStatus {
        if name.is_null() || index < 0 {
            return kOfxStatErrBadIndex;
        }
        // SAFETY: the plugin passes NUL-terminated names.
        let name = unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned();
        if !self.knows(&name) {
            return kOfxStatErrUnknown;
        }
        let mut values = self.values.lock().unwrap();
        let entry = values.entry(name).or_default();
        let index = index as usize;
        if entry.len() <= index {
            entry.resize(index + 1, value.clone());
        }
        entry[index] = value;
        kOfxStatOK
    }

    fn get_at(&self, name: *const c_char, index: c_int) -> Result<Value, OfxStatus> {
        if name.is_null() {
            return Err(kOfxStatErrUnknown);
        }
        // SAFETY: as in set_at.
        let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
        let values = self.values.lock().unwrap();
        let entry = values.get(name.as_ref()).ok_or(kOfxStatErrUnknown)?;
        entry
            .get(usize::try_from(index).map_err(|_| kOfxStatErrBadIndex)?)
            .cloned()
            .ok_or(kOfxStatErrBadIndex)
    }

    /// The stored string's pointer: stays valid until the value is replaced.
    fn string_ptr(&self, name: *const c_char, index: c_int) -> Result<*const c_char, OfxStatus> {
        match self.get_at(name, index)? {
            Value::String(_) => {
                // SAFETY: as in set_at.
                let key = unsafe { CStr::from_ptr(name) }.to_string_lossy();
                let values = self.values.lock().unwrap();
                match &values[key.as_ref()][index as usize] {
                    Value::String(s) => Ok(s.as_ptr()),
                    _ => unreachable!("checked above"),
                }
            }
            _ => Err(kOfxStatErrValue),
        }
    }
}

unsafe fn props<'a>(handle: OfxPropertySetHandle) -> Option<&'a PropSet> {
    // SAFETY: every property handle this host gives out points at a live PropSet.
    unsafe { (handle as *const PropSet).as_ref() }
}

macro_rules! with_props {
    ($handle:expr, |$p:ident| $body:expr) => {
        // SAFETY: a handle the plugin passes is one this host made, alive as long as the host.
        match unsafe { props($handle) } {
            Some($p) => $body,
            None => kOfxStatErrBadHandle,
        }
    };
}

fn store<T>(out: *mut T, value: Result<T, OfxStatus>) -> OfxStatus {
    match value {
        Ok(v) if !out.is_null() => {
            // SAFETY: the plugin passes a valid out pointer.
            unsafe { *out = v };
            kOfxStatOK
        }
        Ok(_) => kOfxStatErrBadHandle,
        Err(status) => status,
    }
}

unsafe extern "C" fn set_pointer(
    h: OfxPropertySetHandle,
    n: *const c_char,
    i: c_int,
    v: *mut c_void,
) -> OfxStatus {
    with_props!(h, |p| p.set_at(n, i, Value::Pointer(v as usize)))
}
unsafe extern "C" fn set_string(
    h: OfxPropertySetHandle,
    n: *const c_char,
    i: c_int,
    v: *const c_char,
) -> OfxStatus {
    if v.is_null() {
        return kOfxStatErrValue;
    }
    // SAFETY: NUL-terminated by contract.
    let value = unsafe { CStr::from_ptr(v) }.to_owned();
    with_props!(h, |p| p.set_at(n, i, Value::String(value)))
}
unsafe extern "C" fn set_double(
    h: OfxPropertySetHandle,
    n: *const c_char,
    i: c_int,
    v: f64,
) -> OfxStatus {
    with_props!(h, |p| p.set_at(n, i, Value::Double(v)))
}
unsafe extern "C" fn set_int(
    h: OfxPropertySetHandle,
    n: *const c_char,
    i: c_int,
    v: c_int,
) -> OfxStatus {
    with_props!(h, |p| p.set_at(n, i, Value::Int(v)))
}
unsafe extern "C" fn set_pointer_n(
    h: OfxPropertySetHandle,
    n: *const c_char,
    c: c_int,
    v: *const *mut c_void,
) -> OfxStatus {
    (0..c)
        // SAFETY: the API's out pointer (or array of the given count) is valid for this call.
        .map(|i| unsafe { set_pointer(h, n, i, *v.add(i as usize)) })
        .find(|s| *s != kOfxStatOK)
        .unwrap_or(kOfxStatOK)
}
unsafe extern "C" fn set_string_n(
    h: OfxPropertySetHandle,
    n: *const c_char,
    c: c_int,
    v: *const *const c_char,
) -> OfxStatus {
    (0..c)
        // SAFETY: the API's out pointer (or array of the given count) is valid for this call.
        .map(|i| unsafe { set_string(h, n, i, *v.add(i as usize)) })
        .find(|s| *s != kOfxStatOK)
        .unwrap_or(kOfxStatOK)
}
unsafe extern "C" fn set_double_n(
    h: OfxPropertySetHandle,
    n: *const c_char,
    c: c_int,
    v: *const f64,
) -> OfxStatus {
    (0..c)
        // SAFETY: the API's out pointer (or array of the given count) is valid for this call.
        .map(|i| unsafe { set_double(h, n, i, *v.add(i as usize)) })
        .find(|s| *s != kOfxStatOK)
        .unwrap_or(kOfxStatOK)
}
unsafe extern "C" fn set_int_n(
    h: OfxPropertySetHandle,
    n: *const c_char,
    c: c_int,
    v: *const c_int,
) -> OfxStatus {
    (0..c)
        // SAFETY: the API's out pointer (or array of the given count) is valid for this call.
        .map(|i| unsafe { set_int(h, n, i, *v.add(i as usize)) })
        .find(|s| *s != kOfxStatOK)
        .unwrap_or(kOfxStatOK)
}
unsafe extern "C" fn get_pointer(
    h: OfxPropertySetHandle,
    n: *const c_char,
    i: c_int,
    v: *mut *mut c_void,
) -> OfxStatus {
    with_props!(h, |p| store(
        v,
        p.get_at(n, i).and_then(|x| match x {
            Value::Pointer(ptr) => Ok(ptr as *mut c_void),
            _ => Err(kOfxStatErrValue),
        })
    ))
}
unsafe extern "C" fn get_string(
    h: OfxPropertySetHandle,
    n: *const c_char,
    i: c_int,
    v: *mut *mut c_char,
) -> OfxStatus {
    with_props!(h, |p| store(
        v,
        p.string_ptr(n, i).map(|s| s as *mut c_char)
    ))
}
unsafe extern "C" fn get_double(
    h: OfxPropertySetHandle,
    n: *const c_char,
    i: c_int,
    v: *mut f64,
) -> OfxStatus {
    with_props!(h, |p| store(
        v,
        p.get_at(n, i).and_then(|x| match x {
            Value::Double(d) => Ok(d),
            Value::Int(d) => Ok(d as f64),
            _ => Err(kOfxStatErrValue),
        })
    ))
}
unsafe extern "C" fn get_int(
    h: OfxPropertySetHandle,
    n: *const c_char,
    i: c_int,
    v: *mut c_int,
) -> OfxStatus {
    with_props!(h, |p| store(
        v,
        p.get_at(n, i).and_then(|x| match x {
            Value::Int(d) => Ok(d),
            _ => Err(kOfxStatErrValue),
        })
    ))
}
unsafe extern "C" fn get_pointer_n(
    h: OfxPropertySetHandle,
    n: *const c_char,
    c: c_int,
    v: *mut *mut c_void,
) -> OfxStatus {
    (0..c)
        // SAFETY: the API's out pointer (or array of the given count) is valid for this call.
        .map(|i| unsafe { get_pointer(h, n, i, v.add(i as usize)) })
        .find(|s| *s != kOfxStatOK)
        .unwrap_or(kOfxStatOK)
}
unsafe extern "C" fn get_string_n(
    h: OfxPropertySetHandle,
    n: *const c_char,
    c: c_int,
    v: *mut *mut c_char,
) -> OfxStatus {
    (0..c)
        // SAFETY: the API's out pointer (or array of the given count) is valid for this call.
        .map(|i| unsafe { get_string(h, n, i, v.add(i as usize)) })
        .find(|s| *s != kOfxStatOK)
        .unwrap_or(kOfxStatOK)
}
unsafe extern "C" fn get_double_n(
    h: OfxPropertySetHandle,
    n: *const c_char,
    c: c_int,
    v: *mut f64,
) -> OfxStatus {
    (0..c)
        // SAFETY: the API's out pointer (or array of the given count) is valid for this call.
        .map(|i| unsafe { get_double(h, n, i, v.add(i as usize)) })
        .find(|s| *s != kOfxStatOK)
        .unwrap_or(kOfxStatOK)
}
unsafe extern "C" fn get_int_n(
    h: OfxPropertySetHandle,
    n: *const c_char,
    c: c_int,
    v: *mut c_int,
) -> OfxStatus {
    (0..c)
        // SAFETY: the API's out pointer (or array of the given count) is valid for this call.
        .map(|i| unsafe { get_int(h, n, i, v.add(i as usize)) })
        .find(|s| *s != kOfxStatOK)
        .unwrap_or(kOfxStatOK)
}
unsafe extern "C" fn reset(h: OfxPropertySetHandle, n: *const c_char) -> OfxStatus {
    with_props!(h, |p| match p.get_at(n, 0) {
        Ok(_) | Err(kOfxStatErrBadIndex) => kOfxStatOK,
        Err(status) => status,
    })
}
unsafe extern "C" fn dimension(
    h: OfxPropertySetHandle,
    n: *const c_char,
    count: *mut c_int,
) -> OfxStatus {
    with_props!(h, |p| {
        if n.is_null() {
            return kOfxStatErrUnknown;
        }
        // SAFETY: NUL-terminated by contract.
        let name = unsafe { CStr::from_ptr(n) }.to_string_lossy();
        store(
            count,
            p.get(&name)
                .map(|v| v.len() as c_int)
                .ok_or(kOfxStatErrUnknown),
        )
    })
}

pub static PROPERTY_SUITE: OfxPropertySuiteV1 = OfxPropertySuiteV1 {
    propSetPointer: Some(set_pointer),
    propSetString: Some(set_string),
    propSetDouble: Some(set_double),
    propSetInt: Some(set_int),
    propSetPointerN: Some(set_pointer_n),
    propSetStringN: Some(set_string_n),
    propSetDoubleN: Some(set_double_n),
    propSetIntN: Some(set_int_n),
    propGetPointer: Some(get_pointer),
    propGetString: Some(get_string),
    propGetDouble: Some(get_double),
    propGetInt: Some(get_int),
    propGetPointerN: Some(get_pointer_n),
    propGetStringN: Some(get_string_n),
    propGetDoubleN: Some(get_double_n),
    propGetIntN: Some(get_int_n),
    propReset: Some(reset),
    propGetDimension: Some(dimension),
};
