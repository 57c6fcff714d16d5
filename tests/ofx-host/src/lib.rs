//! A small OpenFX host for tests. It loads a bundle the way hosts do (the binary under
//! `Contents/Linux-x86-64/`, `OfxSetHost`, `OfxGetNumberOfPlugins`/`OfxGetPlugin`, each plugin's
//! `setHost`), offers the property, image effect, parameter, memory, multi-thread, message,
//! progress and timeline suites, and drives effects through describe, describe-in-context,
//! instances, clip preferences, frames needed, time domain, render and purge, recording what the
//! plugin did (messages, progress, images fetched and released).

// The OpenFX names (kOfxStat...) are used as written in the C headers.
#![allow(non_upper_case_globals)]

mod objects;
mod pixels;
mod props;
mod schema;
mod suites;

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use soragen_ofx_ffi::sys::*;

pub use objects::{DeviceMemory, EffectObj, Footage, Log, Message, Stop};
pub use pixels::Pixels;
pub use props::{PropSet, Value};
pub use soragen_ofx_ffi::{Components, Depth, RectI};

use objects::{ClipObj, ImageBuffer, ParamObj};
use schema::{Object, ParamKind, args};

/// What kind of host to behave like: the standard's objects and properties (see `schema`),
/// less what a real host lacks, plus its habits.
#[derive(Clone, Copy, Debug)]
pub struct Profile {
    pub name: &'static str,
    pub contexts: &'static [&'static CStr],
    pub depths: &'static [Depth],
    /// Offer the V2 message and progress suites (else V1 only).
    pub offers_v2: bool,
    /// Give images a kOfxImagePropUniqueIdentifier.
    pub unique_ids: bool,
    /// Lay image rows out top-down in memory (negative row bytes).
    pub top_down_rows: bool,
    /// Report unconnected optional inputs as connected (Resolve does).
    pub unconnected_look_connected: bool,
    /// Know the OpenFX 1.5 GPU render properties (else getting or setting them is unknown).
    pub gpu_properties: bool,
    /// Offer CUDA render and CUDA streams, and render with CUDA where the effect supports it.
    pub cuda: bool,
    /// Clips report `kOfxImageEffectPropFrameRange` / `...UnmappedFrameRange`.
    pub frame_ranges: bool,
    /// The instance reports `kOfxImageEffectInstancePropEffectDuration`.
    pub effect_duration: bool,
    /// clipGetImage returns the frame being rendered whatever time is asked for (MLT).
    pub images_at_render_time: bool,
}

const ALL_CONTEXTS: &[&CStr] = &[
    kOfxImageEffectContextFilter,
    kOfxImageEffectContextGeneral,
    kOfxImageEffectContextTransition,
    kOfxImageEffectContextGenerator,
];

impl Profile {
    /// The OpenFX association's HostSupport library as it ships, and Natron built on it: every
    /// context, no GPU render properties.
    pub const HOSTSUPPORT: Profile = Profile {
        name: "org.soragen.testhost.hostsupport",
        contexts: ALL_CONTEXTS,
        depths: &[Depth::Float, Depth::Short, Depth::Byte],
        offers_v2: true,
        unique_ids: false,
        top_down_rows: false,
        unconnected_look_connected: false,
        gpu_properties: false,
        cuda: false,
        frame_ranges: true,
        effect_duration: true,
        images_at_render_time: false,
    };

    pub const RESOLVE: Profile = Profile {
        name: "org.soragen.testhost.resolve",
        contexts: ALL_CONTEXTS,
        depths: &[Depth::Float, Depth::Short, Depth::Byte],
        offers_v2: true,
        unique_ids: false,
        top_down_rows: true,
        unconnected_look_connected: true,
        gpu_properties: true,
        cuda: false,
        frame_ranges: true,
        effect_duration: true,
        images_at_render_time: false,
    };

    /// Resolve with GPU rendering on CUDA.
    pub const RESOLVE_CUDA: Profile = Profile {
        name: "org.soragen.testhost.resolve-cuda",
        cuda: true,
        ..Profile::RESOLVE
    };

    pub const NUKE: Profile = Profile {
        name: "org.soragen.testhost.nuke",
        contexts: &[kOfxImageEffectContextFilter, kOfxImageEffectContextGeneral],
        depths: &[Depth::Float],
        offers_v2: false,
        unique_ids: true,
        top_down_rows: false,
        unconnected_look_connected: false,
        gpu_properties: false,
        cuda: false,
        frame_ranges: true,
        effect_duration: true,
        images_at_render_time: false,
    };

    /// MLT's openfx module (Kdenlive 7.40, as tried with `melt`): Filter only, 8-bit, no frame
    /// ranges (the effect's duration it does give), the current frame for any time asked, a new
    /// instance for every frame; it never asks GetFramesNeeded and ignores Render's status.
    pub const MLT: Profile = Profile {
        name: "org.soragen.testhost.mlt",
        contexts: &[kOfxImageEffectContextFilter],
        depths: &[Depth::Byte],
        offers_v2: false,
        unique_ids: false,
        top_down_rows: false,
        unconnected_look_connected: false,
        gpu_properties: false,
        cuda: false,
        frame_ranges: false,
        effect_duration: true,
        images_at_render_time: true,
    };
}

/// The profile of the host loaded in this process (one plugin binary, one host).
static PROFILE: std::sync::RwLock<Profile> = std::sync::RwLock::new(Profile::HOSTSUPPORT);

pub(crate) fn profile() -> Profile {
    *PROFILE.read().unwrap()
}

type MainEntry = unsafe extern "C" fn(
    *const c_char,
    *const c_void,
    OfxPropertySetHandle,
    OfxPropertySetHandle,
) -> OfxStatus;

struct Plugin {
    identifier: String,
    main: MainEntry,
}

pub struct Host {
    pub profile: Profile,
    plugins: Vec<Plugin>,
    // The OfxHost points at these properties.
    _props: Box<PropSet>,
    _ofx_host: Box<OfxHost>,
    descriptors: Mutex<HashMap<(usize, String), Arc<EffectObj>>>,
    _library: libloading::Library,
}

// SAFETY: the host's raw parts (the OfxHost struct, plugin pointers) are immutable after load and
// the plugin declares its own thread safety; everything mutable sits behind mutexes.
unsafe impl Send for Host {}
// SAFETY: the value is only a handle the host and plugin pass around; the test host locks what it mutates.
unsafe impl Sync for Host {}

/// The binary inside a bundle for this platform.
pub fn bundle_binary(bundle: &Path) -> PathBuf {
    let name = bundle
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".bundle"))
        .unwrap_or("plugin.ofx");
    bundle.join("Contents").join("Linux-x86-64").join(name)
}

fn status(code: OfxStatus) -> Result<(), OfxStatus> {
    if code == kOfxStatOK {
        Ok(())
    } else {
        Err(code)
    }
}

fn strings(values: &[&CStr]) -> Vec<Value> {
    values
        .iter()
        .map(|v| Value::String((*v).to_owned()))
        .collect()
}

fn double2(a: f64, b: f64) -> Vec<Value> {
    vec![Value::Double(a), Value::Double(b)]
}

impl Host {
    /// Loads `bundle` (a `.ofx.bundle` folder) and hands every plugin this host.
    pub fn load(bundle: &Path, profile: Profile) -> Result<Self, String> {
        suites::install_callbacks();
        let binary = bundle_binary(bundle);
        // SAFETY: loading the plugin runs its initialisers, as any host does.
        let library = unsafe { libloading::Library::new(&binary) }
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        *PROFILE.write().unwrap() = profile;
        let props = Box::new(
            PropSet::strict(schema::names(Object::Host, &profile)).with([
                (kOfxPropType, vec![Value::str("OfxTypeImageEffectHost")]),
                (kOfxPropName, vec![Value::str(profile.name)]),
                (kOfxPropLabel, vec![Value::str("Soragen test host")]),
                (kOfxPropAPIVersion, vec![Value::Int(1), Value::Int(5)]),
                (kOfxImageEffectHostPropIsBackground, vec![Value::Int(0)]),
                (kOfxImageEffectPropSupportsOverlays, vec![Value::Int(0)]),
                (
                    kOfxImageEffectPropSupportsMultiResolution,
                    vec![Value::Int(1)],
                ),
                (kOfxImageEffectPropSupportsTiles, vec![Value::Int(1)]),
                (kOfxImageEffectPropTemporalClipAccess, vec![Value::Int(1)]),
                (
                    kOfxImageEffectPropSupportedComponents,
                    strings(&[
                        kOfxImageComponentRGBA,
                        kOfxImageComponentRGB,
                        kOfxImageComponentAlpha,
                    ]),
                ),
                (
                    kOfxImageEffectPropSupportedContexts,
                    strings(profile.contexts),
                ),
                (
                    kOfxImageEffectPropSupportedPixelDepths,
                    profile
                        .depths
                        .iter()
                        .map(|d| Value::String(d.name().to_owned()))
                        .collect(),
                ),
                (
                    kOfxImageEffectPropSupportsMultipleClipDepths,
                    vec![Value::Int(0)],
                ),
                (
                    kOfxImageEffectPropSupportsMultipleClipPARs,
                    vec![Value::Int(0)],
                ),
                (kOfxImageEffectPropSetableFrameRate, vec![Value::Int(0)]),
                (kOfxImageEffectPropSetableFielding, vec![Value::Int(0)]),
                (
                    kOfxParamHostPropSupportsStringAnimation,
                    vec![Value::Int(0)],
                ),
                (kOfxParamHostPropMaxParameters, vec![Value::Int(-1)]),
            ]),
        );
        if profile.gpu_properties {
            let cuda = vec![Value::str(if profile.cuda { "true" } else { "false" })];
            props.set(kOfxImageEffectPropCudaRenderSupported, cuda.clone());
            props.set(kOfxImageEffectPropCudaStreamSupported, cuda);
        }
        let ofx_host = Box::new(OfxHost {
            host: props.handle(),
            fetchSuite: Some(suites::fetch_suite),
        });
        let host_ptr = &*ofx_host as *const OfxHost as *mut OfxHost;
        // SAFETY: the symbols have the signatures the OpenFX standard gives them.
        let plugins = unsafe {
            if let Ok(set_host) =
                library.get::<unsafe extern "C" fn(*const OfxHost) -> OfxStatus>(b"OfxSetHost\0")
            {
                status(set_host(host_ptr)).map_err(|s| format!("OfxSetHost failed: {s}"))?;
            }
            let count = library
                .get::<unsafe extern "C" fn() -> c_int>(b"OfxGetNumberOfPlugins\0")
                .map_err(|e| e.to_string())?;
            let get = library
                .get::<unsafe extern "C" fn(c_int) -> *const OfxPlugin>(b"OfxGetPlugin\0")
                .map_err(|e| e.to_string())?;
            let mut plugins = Vec::new();
            for index in 0..count() {
                let plugin = get(index)
                    .as_ref()
                    .ok_or(format!("OfxGetPlugin({index}) is NULL"))?;
                if CStr::from_ptr(plugin.pluginApi) != kOfxImageEffectPluginApi
                    || plugin.apiVersion != 1
                {
                    return Err(format!("plugin {index} is not an image effect (API 1)"));
                }
                if let Some(set_host) = plugin.setHost {
                    set_host(host_ptr);
                }
                let identifier = CStr::from_ptr(plugin.pluginIdentifier)
                    .to_string_lossy()
                    .into_owned();
                plugins.push(Plugin {
                    identifier,
                    main: plugin.mainEntry.ok_or("no mainEntry")?,
                });
            }
            plugins
        };
        Ok(Host {
            profile,
            plugins,
            _props: props,
            _ofx_host: ofx_host,
            descriptors: Mutex::default(),
            _library: library,
        })
    }

    pub fn identifiers(&self) -> Vec<String> {
        self.plugins.iter().map(|p| p.identifier.clone()).collect()
    }

    fn plugin(&self, identifier: &str) -> usize {
        self.plugins
            .iter()
            .position(|p| p.identifier == identifier)
            .unwrap_or_else(|| panic!("no plugin {identifier}"))
    }

    fn call(
        &self,
        plugin: usize,
        action: &CStr,
        handle: *const c_void,
        in_args: Option<&PropSet>,
        out_args: Option<&PropSet>,
    ) -> OfxStatus {
        let handle_of = |p: Option<&PropSet>| p.map_or(std::ptr::null_mut(), PropSet::handle);
        // SAFETY: the plugin's entry point with arguments this host owns.
        unsafe {
            (self.plugins[plugin].main)(
                action.as_ptr(),
                handle,
                handle_of(in_args),
                handle_of(out_args),
            )
        }
    }

    /// Load and Describe (once per plugin): the plugin's descriptor.
    pub fn describe(&self, identifier: &str) -> Result<Arc<EffectObj>, OfxStatus> {
        let plugin = self.plugin(identifier);
        if let Some(found) = self
            .descriptors
            .lock()
            .unwrap()
            .get(&(plugin, String::new()))
        {
            return Ok(found.clone());
        }
        status(self.call(plugin, kOfxActionLoad, std::ptr::null(), None, None))?;
        let descriptor = Arc::new(EffectObj::new(
            PropSet::strict(schema::names(Object::EffectDescriptor, &self.profile))
                .with([(kOfxPropType, vec![Value::str("OfxTypeImageEffect")])]),
            false,
        ));
        status(self.call(
            plugin,
            kOfxActionDescribe,
            Arc::as_ptr(&descriptor) as *const c_void,
            None,
            None,
        ))?;
        self.descriptors
            .lock()
            .unwrap()
            .insert((plugin, String::new()), descriptor.clone());
        Ok(descriptor)
    }

    /// DescribeInContext (once per plugin and context).
    pub fn describe_in_context(
        &self,
        identifier: &str,
        context: &CStr,
    ) -> Result<Arc<EffectObj>, OfxStatus> {
        let described = self.describe(identifier)?;
        let plugin = self.plugin(identifier);
        let key = (plugin, context.to_string_lossy().into_owned());
        if let Some(found) = self.descriptors.lock().unwrap().get(&key) {
            return Ok(found.clone());
        }
        let descriptor = Arc::new(EffectObj::new(
            PropSet::strict(schema::names(Object::EffectDescriptor, &self.profile)),
            false,
        ));
        descriptor.props.copy_from(&described.props);
        let args = PropSet::strict(args::names(args::DESCRIBE_IN_CONTEXT)).with([(
            kOfxImageEffectPropContext,
            vec![Value::String(context.to_owned())],
        )]);
        status(self.call(
            plugin,
            kOfxImageEffectActionDescribeInContext,
            Arc::as_ptr(&descriptor) as *const c_void,
            Some(&args),
            None,
        ))?;
        check_context_clips(context, &descriptor)?;
        self.descriptors
            .lock()
            .unwrap()
            .insert(key, descriptor.clone());
        Ok(descriptor)
    }

    /// Creates an instance the way a host does: clips and parameters from the context's
    /// descriptor, CreateInstance, GetClipPreferences, then GetTimeDomain in General.
    pub fn instance(&self, identifier: &str, setup: Setup) -> Result<Instance<'_>, OfxStatus> {
        assert!(
            self.profile.contexts.contains(&setup.context),
            "{} has no {:?} context",
            self.profile.name,
            setup.context
        );
        assert!(
            self.profile.depths.contains(&setup.depth),
            "{} has no {:?} depth",
            self.profile.name,
            setup.depth
        );
        let descriptor = self.describe_in_context(identifier, setup.context)?;
        let plugin = self.plugin(identifier);
        let frame = setup.inputs.first().map_or(setup.project, |(_, f)| {
            let first = f.frames.values().next().expect("footage has frames");
            (first.bounds.width(), first.bounds.height())
        });
        let source_range = |f: &Footage| {
            (
                *f.frames.keys().next().unwrap() as f64,
                *f.frames.keys().last().unwrap() as f64,
            )
        };
        let effect_range = setup
            .effect_range
            .or(setup.inputs.first().map(|(_, f)| source_range(f)))
            .unwrap_or((0.0, 0.0));

        let obj = Box::new(EffectObj::new(
            PropSet::strict(schema::names(Object::EffectInstance, &self.profile)),
            self.profile.top_down_rows,
        ));
        obj.props.copy_from(&descriptor.props);
        *obj.range.lock().unwrap() = effect_range;
        for (name, value) in [
            (kOfxPropType, vec![Value::str("OfxTypeImageEffectInstance")]),
            (
                kOfxImageEffectPropContext,
                vec![Value::String(setup.context.to_owned())],
            ),
            (
                kOfxImageEffectPropProjectSize,
                double2(setup.project.0 as f64, setup.project.1 as f64),
            ),
            (
                kOfxImageEffectPropProjectExtent,
                double2(setup.project.0 as f64, setup.project.1 as f64),
            ),
            (kOfxImageEffectPropProjectOffset, double2(0.0, 0.0)),
            (
                kOfxImageEffectPropProjectPixelAspectRatio,
                vec![Value::Double(1.0)],
            ),
            (
                kOfxImageEffectPropFrameRate,
                vec![Value::Double(setup.frame_rate)],
            ),
            (
                kOfxImageEffectInstancePropSequentialRender,
                vec![Value::Int(0)],
            ),
            (kOfxPropIsInteractive, vec![Value::Int(0)]),
        ] {
            obj.props.set(name, value);
        }
        if self.profile.effect_duration {
            obj.props.set(
                kOfxImageEffectInstancePropEffectDuration,
                vec![Value::Double(effect_range.1 - effect_range.0 + 1.0)],
            );
        }
        let frame_ranges = self.profile.frame_ranges;
        let frame_rate = setup.frame_rate;
        let format = |props: &PropSet, depth: Depth, components: Components| {
            props.set(
                kOfxImageEffectPropPixelDepth,
                vec![Value::String(depth.name().to_owned())],
            );
            props.set(
                kOfxImageEffectPropComponents,
                vec![Value::String(components.name().to_owned())],
            );
            props.set(
                kOfxImageClipPropUnmappedPixelDepth,
                vec![Value::String(depth.name().to_owned())],
            );
            props.set(
                kOfxImageClipPropUnmappedComponents,
                vec![Value::String(components.name().to_owned())],
            );
            props.set(
                kOfxImageEffectPropFrameRate,
                vec![Value::Double(frame_rate)],
            );
            props.set(kOfxImagePropPixelAspectRatio, vec![Value::Double(1.0)]);
            props.set(
                kOfxImageEffectPropPreMultiplication,
                vec![Value::String(kOfxImageUnPreMultiplied.to_owned())],
            );
            props.set(
                kOfxImageClipPropFieldOrder,
                vec![Value::String(kOfxImageFieldNone.to_owned())],
            );
        };
        let output_name = kOfxImageEffectOutputClipName.to_str().unwrap();
        for clip in descriptor.clips.lock().unwrap().iter() {
            let footage = setup
                .inputs
                .iter()
                .find(|(n, _)| n.to_str() == Ok(clip.name.as_str()))
                .map(|(_, f)| f.clone());
            let instance_clip = Arc::new(ClipObj {
                name: clip.name.clone(),
                props: PropSet::strict(schema::names(Object::ClipInstance, &self.profile)),
                footage: Mutex::new(footage.clone().map(Arc::new)),
                rod: Mutex::new(RectI {
                    x1: 0,
                    y1: 0,
                    x2: frame.0 as i32,
                    y2: frame.1 as i32,
                }),
                effect: &*obj as *const EffectObj as usize,
            });
            instance_clip.props.copy_from(&clip.props);
            let props = &instance_clip.props;
            if let Some(f) = &footage {
                let first = f.frames.values().next().unwrap();
                format(props, first.depth, first.components);
                let (a, b) = source_range(f);
                if frame_ranges {
                    props.set(kOfxImageEffectPropFrameRange, double2(a, b));
                    props.set(kOfxImageEffectPropUnmappedFrameRange, double2(a, b));
                }
                let r = first.bounds;
                *instance_clip.rod.lock().unwrap() = r;
            } else {
                format(props, setup.depth, setup.components);
                if frame_ranges && clip.name == output_name {
                    props.set(
                        kOfxImageEffectPropFrameRange,
                        double2(effect_range.0, effect_range.1),
                    );
                }
            }
            let connected = footage.is_some()
                || clip.name == output_name
                || self.profile.unconnected_look_connected;
            props.set(
                kOfxImageClipPropConnected,
                vec![Value::Int(connected as i32)],
            );
            obj.clips.lock().unwrap().push(instance_clip);
        }
        for (name, param) in descriptor.params.params.lock().unwrap().iter() {
            let kind = ParamKind::from_type(&param.kind);
            let instance_param = Arc::new(ParamObj {
                props: PropSet::strict(schema::names(Object::Param(kind), &self.profile)),
                kind: param.kind.clone(),
                value: Mutex::default(),
            });
            instance_param.props.copy_from(&param.props);
            *instance_param.value.lock().unwrap() =
                ParamObj::default_value(&param.props, &param.kind);
            obj.params
                .params
                .lock()
                .unwrap()
                .push((name.clone(), instance_param));
        }
        status(self.call(
            plugin,
            kOfxActionCreateInstance,
            &*obj as *const EffectObj as *const c_void,
            None,
            None,
        ))?;
        let frame = RectI {
            x1: 0,
            y1: 0,
            x2: frame.0 as i32,
            y2: frame.1 as i32,
        };
        let instance = Instance {
            host: self,
            plugin,
            identifier: identifier.to_string(),
            obj,
            frame,
            transition_position: Cell::new(None),
            force_cuda: Cell::new(None),
        };
        instance.clip_preferences()?;
        if setup.context == kOfxImageEffectContextGeneral
            && let Some((first, last)) = instance.time_domain()?
        {
            // The host takes the plugin's word for the output's length.
            *instance.obj.range.lock().unwrap() = (first, last);
            if self.profile.effect_duration {
                instance.obj.props.set(
                    kOfxImageEffectInstancePropEffectDuration,
                    vec![Value::Double(last - first + 1.0)],
                );
            }
            if let Some(output) = instance.obj.clip(output_name).filter(|_| frame_ranges) {
                output
                    .props
                    .set(kOfxImageEffectPropFrameRange, double2(first, last));
            }
        }
        Ok(instance)
    }
}

/// The clips each context mandates (OpenFX 1.5.1, "Image Effect Contexts"); in the Filter,
/// Transition and Generator contexts every other input "must be optional". A host refuses a
/// context whose clips break that (HostSupport and Natron check the mandated clips; a host
/// that can wire only the mandated inputs cannot run an effect that needs more).
fn check_context_clips(context: &CStr, descriptor: &EffectObj) -> Result<(), OfxStatus> {
    let mandated: &[&CStr] = if context == kOfxImageEffectContextFilter {
        &[kOfxImageEffectSimpleSourceClipName]
    } else if context == kOfxImageEffectContextTransition {
        &[
            kOfxImageEffectTransitionSourceFromClipName,
            kOfxImageEffectTransitionSourceToClipName,
        ]
    } else if context == kOfxImageEffectContextGenerator {
        &[]
    } else {
        return Ok(());
    };
    let clips = descriptor.clips.lock().unwrap();
    let output = kOfxImageEffectOutputClipName.to_str().unwrap();
    for name in mandated.iter().chain([&kOfxImageEffectOutputClipName]) {
        let name = name.to_str().unwrap();
        if !clips.iter().any(|clip| clip.name == name) {
            eprintln!("test host: {context:?} lacks the mandated clip {name}");
            return Err(kOfxStatErrFormat);
        }
    }
    for clip in clips.iter() {
        let extra = clip.name != output && !mandated.iter().any(|m| m.to_str() == Ok(&clip.name));
        if extra && clip.props.int(kOfxImageClipPropOptional) != Some(1) {
            eprintln!(
                "test host: the extra clip {} in {context:?} is not optional",
                clip.name
            );
            return Err(kOfxStatErrFormat);
        }
    }
    Ok(())
}

/// How to set up an instance.
#[derive(Clone)]
pub struct Setup {
    pub context: &'static CStr,
    /// Input clips by name; clips not listed are unconnected.
    pub inputs: Vec<(&'static CStr, Footage)>,
    /// Output format (the inputs' own formats come from their footage).
    pub depth: Depth,
    pub components: Components,
    pub project: (usize, usize),
    /// The instance's frame range (default: the first input's).
    pub effect_range: Option<(f64, f64)>,
    /// Frames per second of the project and every clip.
    pub frame_rate: f64,
}

impl Footage {
    /// `count` synthetic frames from frame `first`.
    pub fn synthetic(
        first: i64,
        count: usize,
        size: (usize, usize),
        depth: Depth,
        components: Components,
        unique_ids: bool,
        seed: u32,
    ) -> Self {
        let frames = (0..count)
            .map(|i| {
                (
                    first + i as i64,
                    Pixels::synthetic(size.0, size.1, depth, components, seed + i as u32),
                )
            })
            .collect();
        Footage { frames, unique_ids }
    }
}

impl Clone for Footage {
    fn clone(&self) -> Self {
        Footage {
            frames: self.frames.clone(),
            unique_ids: self.unique_ids,
        }
    }
}

pub struct Instance<'h> {
    host: &'h Host,
    plugin: usize,
    identifier: String,
    obj: Box<EffectObj>,
    /// The output frame in pixels.
    pub frame: RectI,
    /// The Transition parameter's value for every action, where a test fixes it; else the
    /// host sets it from the time, as hosts animate it.
    transition_position: Cell<Option<f64>>,
    /// Send CUDA renders (or not) whatever the effect declared.
    force_cuda: Cell<Option<bool>>,
}

impl Instance<'_> {
    fn clip_names(&self) -> Vec<String> {
        self.obj
            .clips
            .lock()
            .unwrap()
            .iter()
            .map(|clip| clip.name.clone())
            .collect()
    }

    fn handle(&self) -> *const c_void {
        &*self.obj as *const EffectObj as *const c_void
    }

    fn call(
        &self,
        action: &CStr,
        in_args: Option<&PropSet>,
        out_args: Option<&PropSet>,
    ) -> OfxStatus {
        self.host
            .call(self.plugin, action, self.handle(), in_args, out_args)
    }

    pub fn set(&self, param: &str, value: Value) {
        let found = self
            .obj
            .params
            .find(param)
            .unwrap_or_else(|| panic!("no parameter {param}"));
        *found.value.lock().unwrap() = vec![value];
    }

    pub fn set_text(&self, param: &str, value: &str) {
        self.set(param, Value::String(CString::new(value).unwrap()));
    }

    pub fn log(&self) -> Log {
        self.obj.log.lock().unwrap().clone()
    }

    /// Fixes the Transition parameter (Transition context) at `position` for later actions;
    /// None: the host sets it from each action's time again.
    pub fn pin_transition(&self, position: Option<f64>) {
        self.transition_position.set(position);
    }

    /// Sets the Transition parameter for an action at `time`: (time - first) / length over the
    /// instance's frame range, 0 on its first frame, as hosts animate it.
    fn position_transition(&self, time: f64) {
        if self.obj.props.string(kOfxImageEffectPropContext).as_deref()
            != kOfxImageEffectContextTransition.to_str().ok()
        {
            return;
        }
        let range = *self.obj.range.lock().unwrap();
        let (first, length) = (range.0, range.1 - range.0 + 1.0);
        let position = self
            .transition_position
            .get()
            .unwrap_or((time - first) / length);
        self.set(
            kOfxImageEffectTransitionParamName.to_str().unwrap(),
            Value::Double(position),
        );
    }

    /// Renders with CUDA put every image of the render in `memory` (a GPU's, which a test with
    /// a GPU provides) and pass its stream; without it, CUDA renders only carry the flag.
    pub fn use_device_memory(&self, memory: Arc<dyn DeviceMemory>) {
        *self.obj.device_memory.lock().unwrap() = Some(memory);
    }

    /// Sends every later render as a CUDA render (`true`: even where the effect did not declare
    /// CUDA support, as a misbehaving host would) or on host memory (`false`).
    pub fn force_cuda_renders(&self, cuda: bool) {
        self.force_cuda.set(Some(cuda));
    }

    /// Whether renders go through CUDA: the host offers it and the effect declared it.
    fn renders_with_cuda(&self) -> bool {
        let declared = self.host.describe(&self.identifier).is_ok_and(|d| {
            d.props
                .string(kOfxImageEffectPropCudaRenderSupported)
                .as_deref()
                == Some("true")
        });
        self.force_cuda
            .get()
            .unwrap_or(self.host.profile.cuda && declared)
    }

    pub fn stop(&self, stop: Stop) {
        *self.obj.stop.lock().unwrap() = stop;
    }

    pub fn props(&self) -> &PropSet {
        &self.obj.props
    }

    pub fn clip_props(&self, name: &CStr) -> Option<HashMap<String, Vec<Value>>> {
        self.obj
            .clip(name.to_str().unwrap())
            .map(|c| c.props.snapshot())
    }

    pub fn clip_preferences(&self) -> Result<HashMap<String, Vec<Value>>, OfxStatus> {
        let out = PropSet::strict(args::with_clips(
            args::CLIP_PREFERENCES_OUT,
            args::CLIP_PREFERENCES_PER_CLIP,
            &self.clip_names(),
        ))
        .with([(kOfxImageEffectFrameVarying, vec![Value::Int(0)])]);
        match self.call(kOfxImageEffectActionGetClipPreferences, None, Some(&out)) {
            kOfxStatOK | kOfxStatReplyDefault => Ok(out.snapshot()),
            error => Err(error),
        }
    }

    /// GetTimeDomain: Some(range) when the plugin answers, None when it leaves it to the host.
    pub fn time_domain(&self) -> Result<Option<(f64, f64)>, OfxStatus> {
        let out = PropSet::strict(args::names(args::TIME_DOMAIN_OUT))
            .with([(kOfxImageEffectPropFrameRange, double2(0.0, 0.0))]);
        match self.call(kOfxImageEffectActionGetTimeDomain, None, Some(&out)) {
            kOfxStatOK => {
                let range = out.doubles(kOfxImageEffectPropFrameRange.to_str().unwrap());
                Ok(Some((range[0], range[1])))
            }
            kOfxStatReplyDefault => Ok(None),
            error => Err(error),
        }
    }

    /// Calls a per-clip query action; the answer by clip name (empty for reply default).
    fn per_clip(
        &self,
        action: &CStr,
        args: &PropSet,
        prefix: &str,
    ) -> Result<BTreeMap<String, Vec<f64>>, OfxStatus> {
        let out = PropSet::strict(args::with_clips(&[], &[prefix], &self.clip_names()));
        match self.call(action, Some(args), Some(&out)) {
            kOfxStatOK | kOfxStatReplyDefault => {}
            error => return Err(error),
        }
        Ok(out
            .snapshot()
            .into_keys()
            .filter_map(|name| Some((name.strip_prefix(prefix)?.to_string(), out.doubles(&name))))
            .collect())
    }

    /// GetFramesNeeded at `time`: ranges by clip name.
    pub fn frames_needed(&self, time: f64) -> Result<BTreeMap<String, Vec<f64>>, OfxStatus> {
        self.position_transition(time);
        let args = PropSet::strict(args::names(args::FRAMES_NEEDED_IN))
            .with([(kOfxPropTime, vec![Value::Double(time)])]);
        let needed = self.per_clip(
            kOfxImageEffectActionGetFramesNeeded,
            &args,
            kOfxImageClipPropFrameRange_,
        )?;
        self.obj.log.lock().unwrap().frames_needed = needed.clone();
        Ok(needed)
    }

    /// GetRegionsOfInterest for a render of `window`: rectangles by clip name.
    fn regions_of_interest(&self, time: f64, scale: f64, window: RectI) -> Result<(), OfxStatus> {
        let (x1, y1, x2, y2) = (
            window.x1 as f64,
            window.y1 as f64,
            window.x2 as f64,
            window.y2 as f64,
        );
        let args = PropSet::strict(args::names(args::REGIONS_OF_INTEREST_IN)).with([
            (kOfxPropTime, vec![Value::Double(time)]),
            (kOfxImageEffectPropRenderScale, double2(scale, scale)),
            (
                kOfxImageEffectPropRegionOfInterest,
                [x1 / scale, y1 / scale, x2 / scale, y2 / scale]
                    .map(Value::Double)
                    .to_vec(),
            ),
        ]);
        let regions = self.per_clip(
            kOfxImageEffectActionGetRegionsOfInterest,
            &args,
            kOfxImageClipPropRoI_,
        )?;
        self.obj.log.lock().unwrap().regions_of_interest = regions;
        Ok(())
    }

    pub fn render(&self, time: f64) -> Result<Pixels, OfxStatus> {
        self.render_window(time, self.frame)
    }

    /// Renders the whole frame at a render scale (inputs and output scaled), as hosts do for
    /// proxy and preview renders.
    pub fn render_scaled(&self, time: f64, scale: f64) -> Result<Pixels, OfxStatus> {
        *self.obj.scale.lock().unwrap() = scale;
        let window = Pixels::new(self.frame, Depth::Byte, Components::Alpha)
            .scaled(scale)
            .bounds;
        let result = self.render_window(time, window);
        *self.obj.scale.lock().unwrap() = 1.0;
        result
    }

    /// Renders `window` of the frame at `time` as a host does: frames needed, then render
    /// into a host-allocated output image of just that window.
    pub fn render_window(&self, time: f64, window: RectI) -> Result<Pixels, OfxStatus> {
        *self.obj.time.lock().unwrap() = time;
        let scale = *self.obj.scale.lock().unwrap();
        self.frames_needed(time)?;
        self.regions_of_interest(time, scale, window)?;
        self.position_transition(time);
        let output = self
            .obj
            .clip(kOfxImageEffectOutputClipName.to_str().unwrap())
            .expect("output clip");
        let depth =
            Depth::from_name(&output.props.string(kOfxImageEffectPropPixelDepth).unwrap()).unwrap();
        let components =
            Components::from_name(&output.props.string(kOfxImageEffectPropComponents).unwrap())
                .unwrap();
        *self.obj.output.lock().unwrap() = Some(ImageBuffer::new(
            window,
            depth,
            components,
            self.obj.top_down,
        ));
        let gpu_args = if self.host.profile.gpu_properties {
            args::RENDER_IN_GPU
        } else {
            &[]
        };
        let args = PropSet::strict(args::names(&[args::RENDER_IN, gpu_args].concat())).with([
            (kOfxPropTime, vec![Value::Double(time)]),
            (
                kOfxImageEffectPropFieldToRender,
                vec![Value::String(kOfxImageFieldNone.to_owned())],
            ),
            (
                kOfxImageEffectPropRenderWindow,
                vec![
                    Value::Int(window.x1),
                    Value::Int(window.y1),
                    Value::Int(window.x2),
                    Value::Int(window.y2),
                ],
            ),
            (kOfxImageEffectPropRenderScale, double2(scale, scale)),
            (
                kOfxImageEffectPropSequentialRenderStatus,
                vec![Value::Int(0)],
            ),
            (
                kOfxImageEffectPropInteractiveRenderStatus,
                vec![Value::Int(0)],
            ),
            (kOfxImageEffectPropRenderQualityDraft, vec![Value::Int(0)]),
        ]);
        let device_memory = self.obj.device_memory.lock().unwrap().clone();
        let cuda = self.renders_with_cuda();
        if cuda {
            // Without device memory this host has no GPU of its own: it only sets the flag.
            args.set(kOfxImageEffectPropCudaEnabled, vec![Value::Int(1)]);
            self.obj.log.lock().unwrap().cuda_renders += 1;
        }
        let device_output = match (&device_memory, cuda) {
            (Some(memory), true) => {
                args.set(
                    kOfxImageEffectPropCudaStream,
                    vec![Value::Pointer(memory.stream())],
                );
                let buffer = self.obj.output.lock().unwrap();
                Some(memory.upload(&buffer.as_ref().expect("output buffer").data))
            }
            _ => None,
        };
        *self.obj.device_render.lock().unwrap() =
            device_output.map(|address| (device_memory.clone().expect("device memory"), address));
        let result = status(self.call(kOfxImageEffectActionRender, Some(&args), None));
        let mut buffer = self
            .obj
            .output
            .lock()
            .unwrap()
            .take()
            .expect("output buffer");
        if let Some((memory, address)) = self.obj.device_render.lock().unwrap().take() {
            // Like a host after the render: its stream orders the read after the plugin's work.
            memory.download(address, &mut buffer.data);
            memory.free(address);
        }
        result.map(|()| buffer.to_pixels())
    }

    pub fn purge_caches(&self) -> OfxStatus {
        self.call(kOfxActionPurgeCaches, None, None)
    }
}

impl Drop for Instance<'_> {
    fn drop(&mut self) {
        let status = self.call(kOfxActionDestroyInstance, None, None);
        assert!(
            status == kOfxStatOK || std::thread::panicking(),
            "DestroyInstance failed: {status}"
        );
    }
}
