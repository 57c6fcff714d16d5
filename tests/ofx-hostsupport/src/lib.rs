//! The OpenFX association's host library, HostSupport, as the tests' host.
//!
//! build.rs compiles HostSupport and expat from the sources the `openfx-sys` 0.1.0 package
//! ships, unchanged, with our driver (`src/driver.cpp`: the host, effect, clip, image and
//! parameter classes HostSupport leaves to a host) into a shared library per build
//! configuration. This crate loads one and drives it through the driver's small C API.
//!
//! HostSupport keeps its plugin cache in a process-wide singleton and a plugin binary is loaded
//! once per process, so a test process has one [`Host`]; every call into it is serialised.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use libloading::{Library, Symbol};

/// Which HostSupport build drives the plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// HostSupport with its default defines.
    Plain,
    /// HostSupport built with `OFX_SUPPORTS_OPENGLRENDER` (OpenGL render suite and properties).
    OpenGl,
}

impl Build {
    pub fn library(self) -> &'static str {
        match self {
            Build::Plain => env!("SORAGEN_HOSTSUPPORT"),
            Build::OpenGl => env!("SORAGEN_HOSTSUPPORT_GL"),
        }
    }
}

/// Host-side choices on top of a build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    pub build: Build,
    /// Remove the OpenFX 1.5 GPU render properties (CUDA, Metal, OpenCL) from every property set
    /// the host makes, as a HostSupport without them has it (the current upstream library defines
    /// them only with `OFX_SUPPORTS_OPENGLRENDER`; Natron's never): the plugin then gets
    /// `kOfxStatErrUnknown` for them. The 0.1.0 sources define them unconditionally.
    pub without_gpu_properties: bool,
}

/// OpenFX status codes (ofxCore.h).
pub mod status {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const ERR_FATAL: i32 = 2;
    pub const ERR_UNKNOWN: i32 = 3;
    pub const ERR_MISSING_HOST_FEATURE: i32 = 4;
    pub const ERR_UNSUPPORTED: i32 = 5;
    pub const ERR_VALUE: i32 = 11;
    pub const REPLY_DEFAULT: i32 = 14;

    pub fn name(status: i32) -> &'static str {
        [
            "kOfxStatOK",
            "kOfxStatFailed",
            "kOfxStatErrFatal",
            "kOfxStatErrUnknown",
            "kOfxStatErrMissingHostFeature",
            "kOfxStatErrUnsupported",
            "kOfxStatErrExists",
            "kOfxStatErrFormat",
            "kOfxStatErrMemory",
            "kOfxStatErrBadHandle",
            "kOfxStatErrBadIndex",
            "kOfxStatErrValue",
            "kOfxStatReplyYes",
            "kOfxStatReplyNo",
            "kOfxStatReplyDefault",
        ]
        .get(status as usize)
        .copied()
        .unwrap_or("unknown status")
    }
}

/// A failed action: its status and the plugin's persistent message, if it posted one.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub status: i32,
    pub persistent: Option<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({})",
            status::name(self.status),
            self.persistent
                .as_deref()
                .unwrap_or("no persistent message")
        )
    }
}

/// The plugin's main description, as HostSupport holds it after the Describe action.
#[derive(Clone, Debug, Default)]
pub struct Description {
    pub label: String,
    pub grouping: String,
    /// Empty when Describe failed (HostSupport then knows no context).
    pub contexts: Vec<String>,
    pub depths: Vec<String>,
    pub temporal_clip_access: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ClipInfo {
    pub name: String,
    pub optional: bool,
    pub mask: bool,
}

/// What DescribeInContext gave.
#[derive(Clone, Debug, Default)]
pub struct ContextDescription {
    pub clips: Vec<ClipInfo>,
    /// (name, type)
    pub params: Vec<(String, String)>,
}

/// Pixel depth of a whole instance (RGBA throughout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    Float,
    Byte,
}

impl Depth {
    pub fn bytes_per_component(self) -> usize {
        match self {
            Depth::Float => 4,
            Depth::Byte => 1,
        }
    }
}

/// Frames `first, first + 1, ...` of one input clip, each a whole RGBA frame, bottom row first.
#[derive(Clone, Debug)]
pub struct Footage {
    pub first: i64,
    pub frames: Vec<Vec<u8>>,
}

impl Footage {
    /// The frame at `time`.
    pub fn at(&self, time: i64) -> &[u8] {
        &self.frames[(time - self.first) as usize]
    }
    pub fn last(&self) -> i64 {
        self.first + self.frames.len() as i64 - 1
    }
}

/// How an instance is set up before kOfxActionCreateInstance.
#[derive(Clone, Debug)]
pub struct Setup {
    pub context: String,
    pub width: usize,
    pub height: usize,
    pub depth: Depth,
    pub inputs: Vec<(String, Footage)>,
    /// The output clip's frame range (first, last).
    pub output_range: (f64, f64),
    /// kOfxImageEffectInstancePropEffectDuration.
    pub duration: f64,
}

/// What an instance saw.
#[derive(Clone, Debug, Default)]
pub struct Log {
    pub lent: usize,
    pub released: usize,
    pub progress_starts: usize,
    pub progress_updates: usize,
    pub progress_ends: usize,
    pub persistent: Option<String>,
    /// "type text" of each message (message suite), in order.
    pub messages: Vec<String>,
    /// (clip, time) of each image fetched.
    pub fetched: Vec<(String, f64)>,
}

type Text = unsafe extern "C" fn(*mut c_void) -> *const c_char;

/// The host: one HostSupport build loaded with the plugins of one folder.
pub struct Host {
    library: Library,
    session: *mut c_void,
    lock: Mutex<()>,
    pub profile: Profile,
}

// SAFETY: every call into the driver holds `lock`.
unsafe impl Send for Host {}
// SAFETY: as for Send: the lock serialises every call.
unsafe impl Sync for Host {}

fn text(pointer: *const c_char) -> String {
    if pointer.is_null() {
        return String::new();
    }
    // SAFETY: the driver hands out NUL-terminated strings that live until its next call, and
    // the caller holds the lock until this copy is made.
    unsafe { CStr::from_ptr(pointer) }
        .to_string_lossy()
        .into_owned()
}

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL in names")
}

impl Host {
    /// Loads a HostSupport build and scans `folder` for `*.ofx.bundle`.
    pub fn load(folder: &Path, profile: Profile) -> Result<Host, String> {
        // SAFETY: the driver library runs no code on load beyond C++ static initialisers.
        let library =
            unsafe { Library::new(profile.build.library()) }.map_err(|e| e.to_string())?;
        let folder = c(folder.to_str().ok_or("folder is not UTF-8")?);
        // SAFETY: `sg_load` has this signature in the driver; the folder string lives through the call.
        let session = unsafe {
            let load: Symbol<unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void> =
                library.get(b"sg_load").map_err(|e| e.to_string())?;
            load(folder.as_ptr(), profile.without_gpu_properties as c_int)
        };
        if session.is_null() {
            return Err("HostSupport failed to scan the plugin folder".into());
        }
        Ok(Host {
            library,
            session,
            lock: Mutex::new(()),
            profile,
        })
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        self.lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn symbol<T>(&self, name: &str) -> Symbol<'_, T> {
        // SAFETY: each name is looked up with the signature the driver defines it with.
        unsafe { self.library.get(name.as_bytes()) }.unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Identifiers of the plugins found, in the binary's order.
    pub fn identifiers(&self) -> Vec<String> {
        let _guard = self.guard();
        let plugins = self.symbol::<Text>("sg_plugins");
        // SAFETY: the session is live for the host's life, and the lock is held.
        text(unsafe { plugins(self.session) })
            .lines()
            .map(String::from)
            .collect()
    }

    fn describe_raw(&self, id: &str, context: Option<&str>) -> Vec<(String, String)> {
        let _guard = self.guard();
        let describe = self.symbol::<unsafe extern "C" fn(
            *mut c_void,
            *const c_char,
            *const c_char,
        ) -> *const c_char>("sg_describe");
        let (id, context) = (c(id), context.map(c));
        // SAFETY: the session is live, the strings live through the call, and the lock is held.
        let answer = text(unsafe {
            describe(
                self.session,
                id.as_ptr(),
                context.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            )
        });
        answer
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The plugin's main description (HostSupport ran Load and Describe while scanning).
    pub fn describe(&self, id: &str) -> Result<Description, String> {
        let mut description = Description::default();
        for (key, value) in self.describe_raw(id, None) {
            match key.as_str() {
                "error" => return Err(value),
                "label" => description.label = value,
                "grouping" => description.grouping = value,
                "context" => description.contexts.push(value),
                "depth" => description.depths.push(value),
                "temporal" => description.temporal_clip_access = value == "1",
                _ => {}
            }
        }
        Ok(description)
    }

    /// DescribeInContext (run by HostSupport the first time a context is asked for).
    pub fn describe_in_context(
        &self,
        id: &str,
        context: &str,
    ) -> Result<ContextDescription, String> {
        let mut description = ContextDescription::default();
        for (key, value) in self.describe_raw(id, Some(context)) {
            match key.as_str() {
                "error" => return Err(value),
                "clip" => {
                    let mut words = value.split(' ');
                    let name = words.next().unwrap_or_default().to_string();
                    let flag = |w: Option<&str>| w.is_some_and(|w| w.ends_with("=1"));
                    let (optional, mask) = (flag(words.next()), flag(words.next()));
                    description.clips.push(ClipInfo {
                        name,
                        optional,
                        mask,
                    });
                }
                "param" => {
                    let (name, kind) = value.split_once(' ').unwrap_or((&value, ""));
                    description
                        .params
                        .push((name.to_string(), kind.to_string()));
                }
                _ => {}
            }
        }
        Ok(description)
    }

    /// Messages posted to the host without an instance.
    pub fn messages(&self) -> Vec<String> {
        let _guard = self.guard();
        let messages = self.symbol::<Text>("sg_host_messages");
        // SAFETY: the session is live, and the lock is held.
        text(unsafe { messages(self.session) })
            .lines()
            .map(String::from)
            .collect()
    }

    /// An instance: HostSupport creates it in the context (clips and parameters from the
    /// context's description), the inputs and timing are set, then kOfxActionCreateInstance
    /// and the clip preferences run.
    pub fn instance(&self, id: &str, setup: &Setup) -> Result<Instance<'_>, Failure> {
        let pointer = {
            let _guard = self.guard();
            let new = self.symbol::<unsafe extern "C" fn(
                *mut c_void,
                *const c_char,
                *const c_char,
                c_int,
                c_int,
                c_int,
            ) -> *mut c_void>("sg_instance_new");
            let (cid, context) = (c(id), c(&setup.context));
            let bytes = setup.depth.bytes_per_component() as c_int;
            // SAFETY: the driver copies the footage during the call; the pointers and sizes are of live buffers.
            unsafe {
                new(
                    self.session,
                    cid.as_ptr(),
                    context.as_ptr(),
                    setup.width as c_int,
                    setup.height as c_int,
                    bytes,
                )
            }
        };
        if pointer.is_null() {
            return Err(Failure {
                status: status::FAILED,
                persistent: Some(format!(
                    "HostSupport made no {id} instance in {}: Load or Describe failed, or the context was not described",
                    setup.context
                )),
            });
        }
        let instance = Instance {
            host: self,
            pointer,
            frame_bytes: setup.width * setup.height * 4 * setup.depth.bytes_per_component(),
        };
        {
            let _guard = self.guard();
            let input = self.symbol::<unsafe extern "C" fn(
                *mut c_void,
                *const c_char,
                f64,
                c_int,
                *const u8,
                usize,
            ) -> c_int>("sg_instance_input");
            for (clip, footage) in &setup.inputs {
                let data: Vec<u8> = footage.frames.concat();
                let clip = c(clip);
                // SAFETY: the instance and the clip name live through the call; the lock is held.
                let st = unsafe {
                    input(
                        pointer,
                        clip.as_ptr(),
                        footage.first as f64,
                        footage.frames.len() as c_int,
                        data.as_ptr(),
                        data.len(),
                    )
                };
                assert_eq!(
                    st,
                    status::OK,
                    "input frames of the project's size and depth"
                );
            }
            let timing = self
                .symbol::<unsafe extern "C" fn(*mut c_void, f64, f64, f64)>("sg_instance_timing");
            // SAFETY: the instance is live; the driver takes plain numbers.
            unsafe {
                timing(
                    pointer,
                    setup.output_range.0,
                    setup.output_range.1,
                    setup.duration,
                )
            };
        }
        let st = {
            let _guard = self.guard();
            let create =
                self.symbol::<unsafe extern "C" fn(*mut c_void) -> c_int>("sg_instance_create");
            // SAFETY: the instance was made for this session, which is live; the lock is held.
            unsafe { create(pointer) }
        };
        if st != status::OK {
            return Err(instance.failure(st));
        }
        Ok(instance)
    }
}

/// One effect instance in the host.
pub struct Instance<'h> {
    host: &'h Host,
    pointer: *mut c_void,
    frame_bytes: usize,
}

/// A parameter value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Int(i32),
    Double(f64),
    Bool(bool),
    Text(&'a str),
}

impl Instance<'_> {
    fn failure(&self, status: i32) -> Failure {
        Failure {
            status,
            persistent: self.log().persistent,
        }
    }

    fn check(&self, st: c_int) -> Result<(), Failure> {
        if st == status::OK {
            Ok(())
        } else {
            Err(self.failure(st))
        }
    }

    /// Sets a parameter as a user edit (value, then the instance-changed actions).
    pub fn set(&self, name: &str, value: Value<'_>) -> Result<(), Failure> {
        let st = {
            let _guard = self.host.guard();
            let name = c(name);
            // SAFETY: the instance and the parameter name live through the call; the lock is held.
            unsafe {
                match value {
                    Value::Int(v) => self.host.symbol::<unsafe extern "C" fn(
                        *mut c_void,
                        *const c_char,
                        c_int,
                    ) -> c_int>("sg_param_int")(
                        self.pointer, name.as_ptr(), v
                    ),
                    Value::Double(v) => self.host.symbol::<unsafe extern "C" fn(
                        *mut c_void,
                        *const c_char,
                        f64,
                    ) -> c_int>("sg_param_double")(
                        self.pointer, name.as_ptr(), v
                    ),
                    Value::Bool(v) => self.host.symbol::<unsafe extern "C" fn(
                        *mut c_void,
                        *const c_char,
                        c_int,
                    ) -> c_int>("sg_param_bool")(
                        self.pointer, name.as_ptr(), v as c_int
                    ),
                    Value::Text(v) => {
                        let v = c(v);
                        self.host.symbol::<unsafe extern "C" fn(
                            *mut c_void,
                            *const c_char,
                            *const c_char,
                        ) -> c_int>("sg_param_string")(
                            self.pointer, name.as_ptr(), v.as_ptr()
                        )
                    }
                }
            }
        };
        self.check(st)
    }

    /// kOfxImageEffectActionGetTimeDomain: `Ok(None)` when the plugin answers "default".
    pub fn time_domain(&self) -> Result<Option<(f64, f64)>, Failure> {
        let (mut first, mut last) = (0.0, 0.0);
        let st = {
            let _guard = self.host.guard();
            let domain = self
                .host
                .symbol::<unsafe extern "C" fn(*mut c_void, *mut f64, *mut f64) -> c_int>(
                    "sg_time_domain",
                );
            // SAFETY: the instance is live and the out pointers are locals.
            unsafe { domain(self.pointer, &mut first, &mut last) }
        };
        match st {
            status::OK => Ok(Some((first, last))),
            status::REPLY_DEFAULT => Ok(None),
            st => Err(self.failure(st)),
        }
    }

    /// kOfxImageEffectActionGetFramesNeeded: ranges (first, last, first, last, ...) by input clip.
    pub fn frames_needed(&self, time: f64) -> Result<BTreeMap<String, Vec<f64>>, Failure> {
        let (st, ranges) = {
            let _guard = self.host.guard();
            let needed =
                self.host
                    .symbol::<unsafe extern "C" fn(*mut c_void, f64, *mut *const c_char) -> c_int>(
                        "sg_frames_needed",
                    );
            let mut ranges = std::ptr::null();
            // SAFETY: the instance is live and the out pointer is a local.
            let st = unsafe { needed(self.pointer, time, &mut ranges) };
            (st, text(ranges))
        };
        if st != status::OK && st != status::REPLY_DEFAULT {
            return Err(self.failure(st));
        }
        let mut map = BTreeMap::new();
        for line in ranges.lines() {
            let mut words = line.split(' ');
            let clip = words.next().unwrap_or_default().to_string();
            map.insert(
                clip,
                words.map(|w| w.parse().expect("a frame number")).collect(),
            );
        }
        Ok(map)
    }

    /// Renders the whole frame at `time` and returns it (RGBA, bottom row first).
    pub fn render(&self, time: f64) -> Result<Vec<u8>, Failure> {
        let mut out = vec![0u8; self.frame_bytes];
        let st = {
            let _guard = self.host.guard();
            let render = self
                .host
                .symbol::<unsafe extern "C" fn(*mut c_void, f64, *mut u8, usize) -> c_int>(
                    "sg_render",
                );
            // SAFETY: the instance is live and `out` is a buffer of `out.len()` bytes.
            unsafe { render(self.pointer, time, out.as_mut_ptr(), out.len()) }
        };
        self.check(st).map(|()| out)
    }

    /// Abort (the image effect suite's `abort`) and cancel (progress answers "stop" from the
    /// n-th update on).
    pub fn stop(&self, abort: bool, cancel_after: Option<usize>) {
        let _guard = self.host.guard();
        let stop = self
            .host
            .symbol::<unsafe extern "C" fn(*mut c_void, c_int, c_int)>("sg_instance_stop");
        // SAFETY: the instance is live; the driver takes plain numbers.
        unsafe {
            stop(
                self.pointer,
                abort as c_int,
                cancel_after.map_or(-1, |n| n as c_int),
            )
        };
    }

    pub fn log(&self) -> Log {
        let raw = {
            let _guard = self.host.guard();
            let log = self.host.symbol::<Text>("sg_instance_log");
            // SAFETY: the instance is live, and the lock is held.
            text(unsafe { log(self.pointer) })
        };
        let mut log = Log::default();
        for (key, value) in raw.lines().filter_map(|l| l.split_once('=')) {
            let count = || value.parse().unwrap_or(0);
            match key {
                "lent" => log.lent = count(),
                "released" => log.released = count(),
                "progress_starts" => log.progress_starts = count(),
                "progress_updates" => log.progress_updates = count(),
                "progress_ends" => log.progress_ends = count(),
                "persistent" => log.persistent = Some(value.to_string()),
                "message" => log.messages.push(value.to_string()),
                "fetched" => {
                    let (clip, time) = value.rsplit_once(' ').unwrap_or((value, "nan"));
                    log.fetched
                        .push((clip.to_string(), time.parse().unwrap_or(f64::NAN)));
                }
                _ => {}
            }
        }
        log
    }
}

impl Drop for Instance<'_> {
    fn drop(&mut self) {
        let _guard = self.host.guard();
        let free = self
            .host
            .symbol::<unsafe extern "C" fn(*mut c_void)>("sg_instance_free");
        // SAFETY: the instance is freed once, here, on drop.
        unsafe { free(self.pointer) };
    }
}
