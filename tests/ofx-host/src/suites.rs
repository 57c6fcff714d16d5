//! The suites this host offers: image effect, parameter (with the variadic parts in C), message,
//! progress, memory, multi-thread and timeline (property: see props.rs).

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::sync::{Arc, Condvar, LazyLock, Mutex};

use soragen_ofx_ffi::sys::*;

use crate::objects::{
    ClipObj, EffectObj, ImageBuffer, ImageObj, Lending, Message, ParamObj, ParamSetObj,
};
use crate::props::{PROPERTY_SUITE, PropSet, Value};
use crate::schema::{self, Object, ParamKind};

unsafe fn effect<'a>(handle: *const c_void) -> Option<&'a EffectObj> {
    // SAFETY: effect handles given out by this host point at live EffectObjs.
    unsafe { (handle as *const EffectObj).as_ref() }
}

unsafe fn clip<'a>(handle: OfxImageClipHandle) -> Option<&'a ClipObj> {
    // SAFETY: clip handles point at ClipObjs owned by their effect.
    unsafe { (handle as *const ClipObj).as_ref() }
}

unsafe fn param<'a>(handle: *const c_void) -> Option<&'a ParamObj> {
    // SAFETY: parameter handles point at ParamObjs owned by their set.
    unsafe { (handle as *const ParamObj).as_ref() }
}

fn out<T>(ptr: *mut T, value: T) {
    if !ptr.is_null() {
        // SAFETY: the plugin passes valid out pointers.
        unsafe { *ptr = value };
    }
}

fn name(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: NUL-terminated by contract.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

/// An image lent to a plugin and the address of the effect that fetched it.
type Lent = (usize, Box<ImageObj>);

/// Images lent to plugins, by handle.
static IMAGES: LazyLock<Mutex<HashMap<usize, Lent>>> = LazyLock::new(Mutex::default);

// ---- image effect suite

unsafe extern "C" fn get_property_set(
    e: OfxImageEffectHandle,
    props: *mut OfxPropertySetHandle,
) -> OfxStatus {
    // SAFETY: the plugin passes back a effect handle this host gave it.
    let Some(e) = (unsafe { effect(e as _) }) else {
        return kOfxStatErrBadHandle;
    };
    out(props, e.props.handle());
    kOfxStatOK
}

unsafe extern "C" fn get_param_set(
    e: OfxImageEffectHandle,
    params: *mut OfxParamSetHandle,
) -> OfxStatus {
    // SAFETY: the plugin passes back a effect handle this host gave it.
    let Some(e) = (unsafe { effect(e as _) }) else {
        return kOfxStatErrBadHandle;
    };
    out(params, &e.params as *const ParamSetObj as OfxParamSetHandle);
    kOfxStatOK
}

unsafe extern "C" fn clip_define(
    e: OfxImageEffectHandle,
    n: *const c_char,
    props: *mut OfxPropertySetHandle,
) -> OfxStatus {
    // SAFETY: the plugin passes back a effect handle this host gave it.
    let Some(obj) = (unsafe { effect(e as _) }) else {
        return kOfxStatErrBadHandle;
    };
    let clip = Arc::new(ClipObj {
        name: name(n),
        props: PropSet::strict(schema::names(Object::ClipDescriptor, &crate::profile())).with([
            (kOfxPropType, vec![Value::str("OfxTypeClip")]),
            (kOfxPropName, vec![Value::str(&name(n))]),
            (kOfxImageClipPropOptional, vec![Value::Int(0)]),
        ]),
        footage: Mutex::default(),
        rod: Mutex::new(soragen_ofx_ffi::RectI {
            x1: 0,
            y1: 0,
            x2: 0,
            y2: 0,
        }),
        effect: e as usize,
    });
    out(props, clip.props.handle());
    obj.clips.lock().unwrap().push(clip);
    kOfxStatOK
}

unsafe extern "C" fn clip_get_handle(
    e: OfxImageEffectHandle,
    n: *const c_char,
    c: *mut OfxImageClipHandle,
    props: *mut OfxPropertySetHandle,
) -> OfxStatus {
    // SAFETY: the plugin passes back a effect handle this host gave it.
    let Some(obj) = (unsafe { effect(e as _) }) else {
        return kOfxStatErrBadHandle;
    };
    let Some(found) = obj.clip(&name(n)) else {
        return kOfxStatErrUnknown;
    };
    out(c, Arc::as_ptr(&found) as OfxImageClipHandle);
    out(props, found.props.handle());
    kOfxStatOK
}

unsafe extern "C" fn clip_get_property_set(
    c: OfxImageClipHandle,
    props: *mut OfxPropertySetHandle,
) -> OfxStatus {
    // SAFETY: the plugin passes back a clip handle this host gave it.
    let Some(c) = (unsafe { clip(c) }) else {
        return kOfxStatErrBadHandle;
    };
    out(props, c.props.handle());
    kOfxStatOK
}

unsafe extern "C" fn clip_get_image(
    c: OfxImageClipHandle,
    time: OfxTime,
    _region: *const OfxRectD,
    image: *mut OfxPropertySetHandle,
) -> OfxStatus {
    // SAFETY: the plugin passes back a clip handle this host gave it.
    let Some(c) = (unsafe { clip(c) }) else {
        return kOfxStatErrBadHandle;
    };
    // SAFETY: the plugin passes back a effect handle this host gave it.
    let Some(e) = (unsafe { effect(c.effect as _) }) else {
        return kOfxStatErrBadHandle;
    };
    let scale = *e.scale.lock().unwrap();
    let device = e.device_render.lock().unwrap().clone();
    let obj = if c.name == kOfxImageEffectOutputClipName.to_str().unwrap() {
        let mut output = e.output.lock().unwrap();
        let Some(buffer) = output.as_mut() else {
            return kOfxStatFailed;
        };
        match &device {
            Some((_, address)) => ImageObj::new(
                buffer.props_at(*address, None, scale),
                Lending::Host { _buffer: None },
            ),
            None => ImageObj::new(buffer.props(None, scale), Lending::Host { _buffer: None }),
        }
    } else {
        let footage = c.footage.lock().unwrap().clone();
        let Some(footage) = footage else {
            return kOfxStatFailed;
        };
        // MLT's host gives the frame being rendered whatever time is asked for.
        let time = if crate::profile().images_at_render_time {
            *e.time.lock().unwrap()
        } else {
            time
        };
        let frame = time.round() as i64;
        let Some(pixels) = footage.frames.get(&frame) else {
            return kOfxStatFailed;
        };
        let pixels = pixels.scaled(scale);
        let mut buffer = ImageBuffer::from_pixels(&pixels, e.top_down);
        let id = footage.unique_ids.then(|| {
            format!(
                "{}:{frame}:{scale}:{}",
                c.name,
                pixels.data.iter().map(|&b| b as u64).sum::<u64>()
            )
        });
        e.log.lock().unwrap().fetched.push((c.name.clone(), time));
        match device {
            Some((memory, _)) => {
                let address = memory.upload(&buffer.data);
                ImageObj::new(
                    buffer.props_at(address, id, scale),
                    Lending::Device(memory, address),
                )
            }
            None => {
                let props = buffer.props(id, scale);
                ImageObj::new(
                    props,
                    Lending::Host {
                        _buffer: Some(std::mem::take(&mut buffer.data)),
                    },
                )
            }
        }
    };
    e.log.lock().unwrap().lent += 1;
    let boxed = Box::new(obj);
    let handle = boxed.props.handle();
    IMAGES
        .lock()
        .unwrap()
        .insert(handle as usize, (c.effect, boxed));
    out(image, handle);
    kOfxStatOK
}

unsafe extern "C" fn clip_release_image(image: OfxPropertySetHandle) -> OfxStatus {
    let Some((owner, _)) = IMAGES.lock().unwrap().remove(&(image as usize)) else {
        return kOfxStatErrBadHandle;
    };
    // SAFETY: the plugin passes back a effect handle this host gave it.
    if let Some(e) = unsafe { effect(owner as _) } {
        e.log.lock().unwrap().released += 1;
    }
    kOfxStatOK
}

unsafe extern "C" fn clip_get_rod(
    c: OfxImageClipHandle,
    _time: OfxTime,
    rect: *mut OfxRectD,
) -> OfxStatus {
    // SAFETY: the plugin passes back a clip handle this host gave it.
    let Some(c) = (unsafe { clip(c) }) else {
        return kOfxStatErrBadHandle;
    };
    let r = *c.rod.lock().unwrap();
    out(
        rect,
        OfxRectD {
            x1: r.x1 as f64,
            y1: r.y1 as f64,
            x2: r.x2 as f64,
            y2: r.y2 as f64,
        },
    );
    kOfxStatOK
}

unsafe extern "C" fn abort(e: OfxImageEffectHandle) -> c_int {
    // SAFETY: the plugin passes back a effect handle this host gave it.
    unsafe { effect(e as _) }.is_some_and(|e| e.should_stop(|s| s.abort_after)) as c_int
}

/// Host memory blocks (memory suite and image memory), by address.
static MEMORY: LazyLock<Mutex<HashMap<usize, Vec<u8>>>> = LazyLock::new(Mutex::default);

fn allocate(bytes: usize) -> usize {
    let mut block = vec![0u8; bytes.max(1)];
    let address = block.as_mut_ptr() as usize;
    MEMORY.lock().unwrap().insert(address, block);
    address
}

fn free(address: usize) -> OfxStatus {
    if MEMORY.lock().unwrap().remove(&address).is_some() {
        kOfxStatOK
    } else {
        kOfxStatErrBadHandle
    }
}

unsafe extern "C" fn image_memory_alloc(
    _e: OfxImageEffectHandle,
    bytes: usize,
    handle: *mut OfxImageMemoryHandle,
) -> OfxStatus {
    out(handle, allocate(bytes) as OfxImageMemoryHandle);
    kOfxStatOK
}
unsafe extern "C" fn image_memory_free(handle: OfxImageMemoryHandle) -> OfxStatus {
    free(handle as usize)
}
unsafe extern "C" fn image_memory_lock(
    handle: OfxImageMemoryHandle,
    ptr: *mut *mut c_void,
) -> OfxStatus {
    out(ptr, handle as *mut c_void);
    kOfxStatOK
}
unsafe extern "C" fn image_memory_unlock(_handle: OfxImageMemoryHandle) -> OfxStatus {
    kOfxStatOK
}

pub static IMAGE_EFFECT_SUITE: OfxImageEffectSuiteV1 = OfxImageEffectSuiteV1 {
    getPropertySet: Some(get_property_set),
    getParamSet: Some(get_param_set),
    clipDefine: Some(clip_define),
    clipGetHandle: Some(clip_get_handle),
    clipGetPropertySet: Some(clip_get_property_set),
    clipGetImage: Some(clip_get_image),
    clipReleaseImage: Some(clip_release_image),
    clipGetRegionOfDefinition: Some(clip_get_rod),
    abort: Some(abort),
    imageMemoryAlloc: Some(image_memory_alloc),
    imageMemoryFree: Some(image_memory_free),
    imageMemoryLock: Some(image_memory_lock),
    imageMemoryUnlock: Some(image_memory_unlock),
};

// ---- parameter suite

unsafe extern "C" fn param_define(
    set: OfxParamSetHandle,
    kind: *const c_char,
    n: *const c_char,
    props: *mut OfxPropertySetHandle,
) -> OfxStatus {
    // SAFETY: a handle the plugin passes is one this host made, alive as long as the host.
    let Some(set) = (unsafe { (set as *const ParamSetObj).as_ref() }) else {
        return kOfxStatErrBadHandle;
    };
    let (kind, n) = (name(kind), name(n));
    if set.find(&n).is_some() {
        return kOfxStatErrExists;
    }
    let param = Arc::new(ParamObj {
        props: PropSet::strict(schema::names(
            Object::Param(ParamKind::from_type(&kind)),
            &crate::profile(),
        ))
        .with([
            (kOfxParamPropType, vec![Value::str(&kind)]),
            (kOfxPropName, vec![Value::str(&n)]),
        ]),
        kind,
        value: Mutex::default(),
    });
    out(props, param.props.handle());
    set.params.lock().unwrap().push((n, param));
    kOfxStatOK
}

unsafe extern "C" fn param_get_handle(
    set: OfxParamSetHandle,
    n: *const c_char,
    p: *mut OfxParamHandle,
    props: *mut OfxPropertySetHandle,
) -> OfxStatus {
    // SAFETY: a handle the plugin passes is one this host made, alive as long as the host.
    let Some(set) = (unsafe { (set as *const ParamSetObj).as_ref() }) else {
        return kOfxStatErrBadHandle;
    };
    let Some(found) = set.find(&name(n)) else {
        return kOfxStatErrUnknown;
    };
    out(p, Arc::as_ptr(&found) as OfxParamHandle);
    out(props, found.props.handle());
    kOfxStatOK
}

unsafe extern "C" fn param_set_get_property_set(
    set: OfxParamSetHandle,
    props: *mut OfxPropertySetHandle,
) -> OfxStatus {
    // SAFETY: a handle the plugin passes is one this host made, alive as long as the host.
    let Some(set) = (unsafe { (set as *const ParamSetObj).as_ref() }) else {
        return kOfxStatErrBadHandle;
    };
    out(props, set.props.handle());
    kOfxStatOK
}

unsafe extern "C" fn param_get_property_set(
    p: OfxParamHandle,
    props: *mut OfxPropertySetHandle,
) -> OfxStatus {
    // SAFETY: the plugin passes back a param handle this host gave it.
    let Some(p) = (unsafe { param(p as _) }) else {
        return kOfxStatErrBadHandle;
    };
    out(props, p.props.handle());
    kOfxStatOK
}

unsafe extern "C" fn param_get_num_keys(_p: OfxParamHandle, keys: *mut c_uint) -> OfxStatus {
    out(keys, 0);
    kOfxStatOK
}
unsafe extern "C" fn param_get_key_time(
    _p: OfxParamHandle,
    _nth: c_uint,
    _time: *mut OfxTime,
) -> OfxStatus {
    kOfxStatErrBadIndex
}
unsafe extern "C" fn param_get_key_index(
    _p: OfxParamHandle,
    _time: OfxTime,
    _direction: c_int,
    _index: *mut c_int,
) -> OfxStatus {
    kOfxStatFailed
}
unsafe extern "C" fn param_delete_key(_p: OfxParamHandle, _time: OfxTime) -> OfxStatus {
    kOfxStatOK
}
unsafe extern "C" fn param_delete_all_keys(_p: OfxParamHandle) -> OfxStatus {
    kOfxStatOK
}
unsafe extern "C" fn param_copy(
    _to: OfxParamHandle,
    _from: OfxParamHandle,
    _offset: OfxTime,
    _range: *const OfxRangeD,
) -> OfxStatus {
    kOfxStatErrUnsupported
}
unsafe extern "C" fn param_edit_begin(_set: OfxParamSetHandle, _name: *const c_char) -> OfxStatus {
    kOfxStatOK
}
unsafe extern "C" fn param_edit_end(_set: OfxParamSetHandle) -> OfxStatus {
    kOfxStatOK
}

unsafe extern "C" {
    fn ofx_host_param_get_value(param: OfxParamHandle, ...) -> OfxStatus;
    fn ofx_host_param_get_value_at_time(param: OfxParamHandle, time: OfxTime, ...) -> OfxStatus;
    fn ofx_host_param_set_value(param: OfxParamHandle, ...) -> OfxStatus;
    fn ofx_host_param_set_value_at_time(param: OfxParamHandle, time: OfxTime, ...) -> OfxStatus;
    fn ofx_host_message(
        handle: *mut c_void,
        kind: *const c_char,
        id: *const c_char,
        format: *const c_char,
        ...
    ) -> OfxStatus;
    fn ofx_host_set_persistent_message(
        handle: *mut c_void,
        kind: *const c_char,
        id: *const c_char,
        format: *const c_char,
        ...
    ) -> OfxStatus;
    fn ofx_host_install_callbacks(table: *const Callbacks);
}

/// Mirrors `struct ofx_host_callbacks` in variadic.c.
#[repr(C)]
struct Callbacks {
    param_shape: unsafe extern "C" fn(*mut c_void, *mut c_char) -> c_int,
    param_get: unsafe extern "C" fn(*mut c_void, f64, *mut *mut c_void, c_int) -> OfxStatus,
    param_set: unsafe extern "C" fn(
        *mut c_void,
        *const c_int,
        *const f64,
        *const *const c_char,
        c_int,
    ) -> OfxStatus,
    message: unsafe extern "C" fn(
        *mut c_void,
        *const c_char,
        *const c_char,
        *const c_char,
        c_int,
    ) -> OfxStatus,
}

unsafe extern "C" fn param_shape(p: *mut c_void, kind: *mut c_char) -> c_int {
    // SAFETY: the plugin passes back a param handle this host gave it.
    let Some(p) = (unsafe { param(p) }) else {
        return 0;
    };
    let (count, k) = p.shape();
    out(kind, k as c_char);
    count as c_int
}

unsafe extern "C" fn param_get(
    p: *mut c_void,
    _time: f64,
    outs: *mut *mut c_void,
    count: c_int,
) -> OfxStatus {
    // SAFETY: the plugin passes back a param handle this host gave it.
    let Some(p) = (unsafe { param(p) }) else {
        return kOfxStatErrBadHandle;
    };
    let values = p.value.lock().unwrap();
    for i in 0..count as usize {
        // SAFETY: the C side passes `count` out pointers of the parameter's kind.
        unsafe {
            let target = *outs.add(i);
            match values.get(i) {
                Some(Value::Int(v)) => *(target as *mut c_int) = *v,
                Some(Value::Double(v)) => *(target as *mut f64) = *v,
                // The string lives in the parameter until its value changes.
                Some(Value::String(v)) => *(target as *mut *const c_char) = v.as_ptr(),
                _ => return kOfxStatErrValue,
            }
        }
    }
    kOfxStatOK
}

unsafe extern "C" fn param_set(
    p: *mut c_void,
    ints: *const c_int,
    doubles: *const f64,
    strings: *const *const c_char,
    count: c_int,
) -> OfxStatus {
    // SAFETY: the plugin passes back a param handle this host gave it.
    let Some(p) = (unsafe { param(p) }) else {
        return kOfxStatErrBadHandle;
    };
    let (_, kind) = p.shape();
    // SAFETY: the C side fills `count` entries of the array for the kind.
    let values = (0..count as usize)
        .map(|i| unsafe {
            match kind {
                b'd' => Value::Double(*doubles.add(i)),
                b's' => Value::String(CString::new(name(*strings.add(i))).unwrap()),
                _ => Value::Int(*ints.add(i)),
            }
        })
        .collect();
    *p.value.lock().unwrap() = values;
    kOfxStatOK
}

unsafe extern "C" fn message(
    handle: *mut c_void,
    kind: *const c_char,
    _id: *const c_char,
    text: *const c_char,
    persistent: c_int,
) -> OfxStatus {
    let message = Message {
        kind: name(kind),
        text: name(text),
        persistent: persistent != 0,
    };
    // SAFETY: the plugin passes back a effect handle this host gave it.
    match unsafe { effect(handle) } {
        Some(e) => e.log.lock().unwrap().messages.push(message),
        None => eprintln!("plugin message: {message:?}"),
    }
    kOfxStatOK
}

static CALLBACKS: Callbacks = Callbacks {
    param_shape,
    param_get,
    param_set,
    message,
};

pub fn install_callbacks() {
    // SAFETY: the table is static and matches the C struct.
    unsafe { ofx_host_install_callbacks(&CALLBACKS) };
}

pub static PARAMETER_SUITE: OfxParameterSuiteV1 = OfxParameterSuiteV1 {
    paramDefine: Some(param_define),
    paramGetHandle: Some(param_get_handle),
    paramSetGetPropertySet: Some(param_set_get_property_set),
    paramGetPropertySet: Some(param_get_property_set),
    paramGetValue: Some(ofx_host_param_get_value),
    paramGetValueAtTime: Some(ofx_host_param_get_value_at_time),
    // No animation here: derivatives and integrals are not offered.
    paramGetDerivative: None,
    paramGetIntegral: None,
    paramSetValue: Some(ofx_host_param_set_value),
    paramSetValueAtTime: Some(ofx_host_param_set_value_at_time),
    paramGetNumKeys: Some(param_get_num_keys),
    paramGetKeyTime: Some(param_get_key_time),
    paramGetKeyIndex: Some(param_get_key_index),
    paramDeleteKey: Some(param_delete_key),
    paramDeleteAllKeys: Some(param_delete_all_keys),
    paramCopy: Some(param_copy),
    paramEditBegin: Some(param_edit_begin),
    paramEditEnd: Some(param_edit_end),
};

// ---- message suite

unsafe extern "C" fn clear_persistent_message(handle: *mut c_void) -> OfxStatus {
    // SAFETY: the plugin passes back a effect handle this host gave it.
    if let Some(e) = unsafe { effect(handle) } {
        e.log.lock().unwrap().messages.retain(|m| !m.persistent);
    }
    kOfxStatOK
}

pub static MESSAGE_SUITE_V1: OfxMessageSuiteV1 = OfxMessageSuiteV1 {
    message: Some(ofx_host_message),
};
pub static MESSAGE_SUITE_V2: OfxMessageSuiteV2 = OfxMessageSuiteV2 {
    message: Some(ofx_host_message),
    setPersistentMessage: Some(ofx_host_set_persistent_message),
    clearPersistentMessage: Some(clear_persistent_message),
};

// ---- progress suite

fn progress_start(handle: *mut c_void) -> OfxStatus {
    // SAFETY: the plugin passes back a effect handle this host gave it.
    let Some(e) = (unsafe { effect(handle) }) else {
        return kOfxStatErrBadHandle;
    };
    e.log.lock().unwrap().progress_starts += 1;
    kOfxStatOK
}
unsafe extern "C" fn progress_start_v1(handle: *mut c_void, _label: *const c_char) -> OfxStatus {
    progress_start(handle)
}
unsafe extern "C" fn progress_start_v2(
    handle: *mut c_void,
    _message: *const c_char,
    _id: *const c_char,
) -> OfxStatus {
    progress_start(handle)
}
unsafe extern "C" fn progress_update(handle: *mut c_void, _progress: f64) -> OfxStatus {
    // SAFETY: the plugin passes back a effect handle this host gave it.
    let Some(e) = (unsafe { effect(handle) }) else {
        return kOfxStatErrBadHandle;
    };
    e.log.lock().unwrap().progress_updates += 1;
    if e.should_stop(|s| s.cancel_after) {
        kOfxStatReplyNo
    } else {
        kOfxStatOK
    }
}
unsafe extern "C" fn progress_end(_handle: *mut c_void) -> OfxStatus {
    kOfxStatOK
}

pub static PROGRESS_SUITE_V1: OfxProgressSuiteV1 = OfxProgressSuiteV1 {
    progressStart: Some(progress_start_v1),
    progressUpdate: Some(progress_update),
    progressEnd: Some(progress_end),
};
pub static PROGRESS_SUITE_V2: OfxProgressSuiteV2 = OfxProgressSuiteV2 {
    progressStart: Some(progress_start_v2),
    progressUpdate: Some(progress_update),
    progressEnd: Some(progress_end),
};

// ---- memory suite

unsafe extern "C" fn memory_alloc(
    _handle: *mut c_void,
    bytes: usize,
    data: *mut *mut c_void,
) -> OfxStatus {
    out(data, allocate(bytes) as *mut c_void);
    kOfxStatOK
}
unsafe extern "C" fn memory_free(data: *mut c_void) -> OfxStatus {
    free(data as usize)
}

pub static MEMORY_SUITE: OfxMemorySuiteV1 = OfxMemorySuiteV1 {
    memoryAlloc: Some(memory_alloc),
    memoryFree: Some(memory_free),
};

// ---- multi-thread suite

thread_local! {
    static THREAD_INDEX: Cell<Option<c_uint>> = const { Cell::new(None) };
}

unsafe extern "C" fn multi_thread(
    func: OfxThreadFunctionV1,
    threads: c_uint,
    arg: *mut c_void,
) -> OfxStatus {
    let Some(func) = func else {
        return kOfxStatErrBadHandle;
    };
    let arg = arg as usize;
    std::thread::scope(|scope| {
        for index in 0..threads {
            scope.spawn(move || {
                THREAD_INDEX.with(|i| i.set(Some(index)));
                // SAFETY: the plugin's function and argument, as it asked.
                unsafe { func(index, threads, arg as *mut c_void) };
            });
        }
    });
    kOfxStatOK
}
unsafe extern "C" fn multi_thread_num_cpus(n: *mut c_uint) -> OfxStatus {
    out(
        n,
        std::thread::available_parallelism().map_or(1, |n| n.get() as c_uint),
    );
    kOfxStatOK
}
unsafe extern "C" fn multi_thread_index(index: *mut c_uint) -> OfxStatus {
    out(index, THREAD_INDEX.with(|i| i.get()).unwrap_or(0));
    kOfxStatOK
}
unsafe extern "C" fn multi_thread_is_spawned() -> c_int {
    THREAD_INDEX.with(|i| i.get()).is_some() as c_int
}

/// A lock the plugin takes and releases in separate calls: a count guarded by a condvar.
type HostMutex = (Mutex<c_int>, Condvar);

unsafe extern "C" fn mutex_create(m: *mut OfxMutexHandle, count: c_int) -> OfxStatus {
    out(
        m,
        Box::into_raw(Box::new((Mutex::new(count), Condvar::new()) as HostMutex)) as OfxMutexHandle,
    );
    kOfxStatOK
}
unsafe extern "C" fn mutex_destroy(m: OfxMutexHandle) -> OfxStatus {
    if m.is_null() {
        return kOfxStatErrBadHandle;
    }
    // SAFETY: created by mutex_create.
    drop(unsafe { Box::from_raw(m as *mut HostMutex) });
    kOfxStatOK
}
unsafe extern "C" fn mutex_lock(m: OfxMutexHandle) -> OfxStatus {
    // SAFETY: a handle the plugin passes is one this host made, alive as long as the host.
    let Some((count, freed)) = (unsafe { (m as *const HostMutex).as_ref() }) else {
        return kOfxStatErrBadHandle;
    };
    let mut count = freed.wait_while(count.lock().unwrap(), |c| *c > 0).unwrap();
    *count += 1;
    kOfxStatOK
}
unsafe extern "C" fn mutex_unlock(m: OfxMutexHandle) -> OfxStatus {
    // SAFETY: a handle the plugin passes is one this host made, alive as long as the host.
    let Some((count, freed)) = (unsafe { (m as *const HostMutex).as_ref() }) else {
        return kOfxStatErrBadHandle;
    };
    let mut count = count.lock().unwrap();
    *count = (*count - 1).max(0);
    freed.notify_one();
    kOfxStatOK
}
unsafe extern "C" fn mutex_try_lock(m: OfxMutexHandle) -> OfxStatus {
    // SAFETY: a handle the plugin passes is one this host made, alive as long as the host.
    let Some((count, _)) = (unsafe { (m as *const HostMutex).as_ref() }) else {
        return kOfxStatErrBadHandle;
    };
    let mut count = count.lock().unwrap();
    if *count > 0 {
        return kOfxStatFailed;
    }
    *count = 1;
    kOfxStatOK
}

pub static MULTI_THREAD_SUITE: OfxMultiThreadSuiteV1 = OfxMultiThreadSuiteV1 {
    multiThread: Some(multi_thread),
    multiThreadNumCPUs: Some(multi_thread_num_cpus),
    multiThreadIndex: Some(multi_thread_index),
    multiThreadIsSpawnedThread: Some(multi_thread_is_spawned),
    mutexCreate: Some(mutex_create),
    mutexDestroy: Some(mutex_destroy),
    mutexLock: Some(mutex_lock),
    mutexUnLock: Some(mutex_unlock),
    mutexTryLock: Some(mutex_try_lock),
};

// ---- timeline suite

unsafe extern "C" fn get_time(handle: *mut c_void, time: *mut f64) -> OfxStatus {
    // SAFETY: the plugin passes back a effect handle this host gave it.
    let Some(e) = (unsafe { effect(handle) }) else {
        return kOfxStatErrBadHandle;
    };
    out(time, *e.time.lock().unwrap());
    kOfxStatOK
}
unsafe extern "C" fn goto_time(handle: *mut c_void, time: f64) -> OfxStatus {
    // SAFETY: the plugin passes back a effect handle this host gave it.
    let Some(e) = (unsafe { effect(handle) }) else {
        return kOfxStatErrBadHandle;
    };
    *e.time.lock().unwrap() = time;
    kOfxStatOK
}
unsafe extern "C" fn get_time_bounds(
    handle: *mut c_void,
    first: *mut f64,
    last: *mut f64,
) -> OfxStatus {
    // SAFETY: the plugin passes back a effect handle this host gave it.
    let Some(e) = (unsafe { effect(handle) }) else {
        return kOfxStatErrBadHandle;
    };
    let (a, b) = *e.range.lock().unwrap();
    out(first, a);
    out(last, b);
    kOfxStatOK
}

pub static TIME_LINE_SUITE: OfxTimeLineSuiteV1 = OfxTimeLineSuiteV1 {
    getTime: Some(get_time),
    gotoTime: Some(goto_time),
    getTimeBounds: Some(get_time_bounds),
};

// ---- fetchSuite

pub unsafe extern "C" fn fetch_suite(
    host: OfxPropertySetHandle,
    suite: *const c_char,
    version: c_int,
) -> *const c_void {
    let _ = host;
    let offers_v2 = crate::profile().offers_v2;
    let suite = name(suite);
    let is = |name: &CStr| suite == name.to_str().unwrap();
    match version {
        1 if is(kOfxPropertySuite) => &PROPERTY_SUITE as *const _ as *const c_void,
        1 if is(kOfxImageEffectSuite) => &IMAGE_EFFECT_SUITE as *const _ as *const c_void,
        1 if is(kOfxParameterSuite) => &PARAMETER_SUITE as *const _ as *const c_void,
        1 if is(kOfxMemorySuite) => &MEMORY_SUITE as *const _ as *const c_void,
        1 if is(kOfxMultiThreadSuite) => &MULTI_THREAD_SUITE as *const _ as *const c_void,
        1 if is(kOfxTimeLineSuite) => &TIME_LINE_SUITE as *const _ as *const c_void,
        1 if is(kOfxMessageSuite) => &MESSAGE_SUITE_V1 as *const _ as *const c_void,
        2 if is(kOfxMessageSuite) && offers_v2 => &MESSAGE_SUITE_V2 as *const _ as *const c_void,
        1 if is(kOfxProgressSuite) => &PROGRESS_SUITE_V1 as *const _ as *const c_void,
        2 if is(kOfxProgressSuite) && offers_v2 => &PROGRESS_SUITE_V2 as *const _ as *const c_void,
        _ => std::ptr::null(),
    }
}
