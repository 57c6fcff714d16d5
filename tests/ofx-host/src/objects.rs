//! What the host's handles point at: effects (descriptors and instances), clips, parameters and
//! images, and what the host records about the plugin's calls.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::sync::{Arc, Mutex};

use soragen_ofx_ffi::sys::*;
use soragen_ofx_ffi::{Components, Depth, RectI};

use crate::pixels::Pixels;
use crate::props::{PropSet, Value};
use crate::schema::{self, Object};

/// A message the plugin posted.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub kind: String,
    pub text: String,
    pub persistent: bool,
}

/// What an instance did through the suites.
#[derive(Clone, Debug, Default)]
pub struct Log {
    pub messages: Vec<Message>,
    pub progress_starts: usize,
    pub progress_updates: usize,
    /// clip name and time of each image fetched
    pub fetched: Vec<(String, f64)>,
    /// Images handed out (inputs and output) and given back.
    pub lent: usize,
    pub released: usize,
    /// The last GetFramesNeeded answer: clip name -> ranges.
    pub frames_needed: BTreeMap<String, Vec<f64>>,
    /// The last GetRegionsOfInterest answer: clip name -> rectangle.
    pub regions_of_interest: BTreeMap<String, Vec<f64>>,
    /// Renders sent with `kOfxImageEffectPropCudaEnabled`.
    pub cuda_renders: usize,
}

/// When to say stop: after this many progress updates, through abort() or progressUpdate.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stop {
    pub abort_after: Option<usize>,
    pub cancel_after: Option<usize>,
}

pub struct ParamObj {
    pub props: PropSet,
    pub kind: String,
    pub value: Mutex<Vec<Value>>,
}

impl ParamObj {
    /// Number of values and their kind, as the variadic C functions need them.
    pub fn shape(&self) -> (usize, u8) {
        let kind = self.kind.as_str();
        if kind == kOfxParamTypeDouble.to_str().unwrap() {
            (1, b'd')
        } else if kind == kOfxParamTypeString.to_str().unwrap() {
            (1, b's')
        } else {
            (1, b'i')
        }
    }

    pub fn default_value(props: &PropSet, kind: &str) -> Vec<Value> {
        let default = props.get(&kOfxParamPropDefault.to_string_lossy());
        default.unwrap_or_else(|| {
            vec![if kind == kOfxParamTypeDouble.to_str().unwrap() {
                Value::Double(0.0)
            } else if kind == kOfxParamTypeString.to_str().unwrap() {
                Value::str("")
            } else {
                Value::Int(0)
            }]
        })
    }
}

pub struct ParamSetObj {
    pub props: PropSet,
    pub params: Mutex<Vec<(String, Arc<ParamObj>)>>,
}

impl ParamSetObj {
    pub fn find(&self, name: &str) -> Option<Arc<ParamObj>> {
        self.params
            .lock()
            .unwrap()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
    }
}

/// Frames a clip serves, by frame number.
pub struct Footage {
    pub frames: BTreeMap<i64, Pixels>,
    pub unique_ids: bool,
}

pub struct ClipObj {
    pub name: String,
    pub props: PropSet,
    pub footage: Mutex<Option<Arc<Footage>>>,
    /// Region of definition in pixels (render scale 1).
    pub rod: Mutex<RectI>,
    /// Address of the owning EffectObj.
    pub effect: usize,
}

/// GPU memory for a host that renders with CUDA; a test with a GPU provides it. Addresses
/// are device pointers; all work goes on `stream` (0: none, the plugin must finish itself).
pub trait DeviceMemory: Send + Sync {
    /// A device copy of `bytes`, finished before the plugin sees it.
    fn upload(&self, bytes: &[u8]) -> usize;
    /// Reads `bytes.len()` bytes from `address`, after the plugin's work on the stream.
    fn download(&self, address: usize, bytes: &mut [u8]);
    fn free(&self, address: usize);
    /// The `CUstream` renders pass as `kOfxImageEffectPropCudaStream`.
    fn stream(&self) -> usize;
}

/// An image's pixels as lent: host memory, or a device copy freed with the image.
pub enum Lending {
    /// The host buffer an input image's data points into, kept until it is released.
    Host {
        _buffer: Option<Vec<u8>>,
    },
    Device(Arc<dyn DeviceMemory>, usize),
}

impl Drop for Lending {
    fn drop(&mut self) {
        if let Lending::Device(memory, address) = self {
            memory.free(*address);
        }
    }
}

/// An image lent to the plugin. `props` comes first: the image handle is its address.
pub struct ImageObj {
    pub props: PropSet,
    _pixels: Lending,
}

/// Host-side memory for an image, rows in the given order.
pub struct ImageBuffer {
    pub data: Vec<u8>,
    pub bounds: RectI,
    pub depth: Depth,
    pub components: Components,
    /// Rows top-down in memory (negative row bytes), as some hosts lay them out.
    pub top_down: bool,
}

impl ImageBuffer {
    pub fn stride(&self) -> usize {
        self.bounds.width() * self.depth.bytes() * self.components.count()
    }

    pub fn new(bounds: RectI, depth: Depth, components: Components, top_down: bool) -> Self {
        let mut buffer = ImageBuffer {
            data: vec![],
            bounds,
            depth,
            components,
            top_down,
        };
        buffer.data = vec![0; buffer.stride() * bounds.height()];
        buffer
    }

    pub fn from_pixels(pixels: &Pixels, top_down: bool) -> Self {
        let mut buffer = Self::new(pixels.bounds, pixels.depth, pixels.components, top_down);
        for y in pixels.bounds.y1..pixels.bounds.y2 {
            let offset = buffer.row_offset(y);
            let stride = buffer.stride();
            buffer.data[offset..offset + stride].copy_from_slice(pixels.row(y));
        }
        buffer
    }

    fn row_offset(&self, y: i32) -> usize {
        let index = (y - self.bounds.y1) as usize;
        let row = if self.top_down {
            self.bounds.height() - 1 - index
        } else {
            index
        };
        row * self.stride()
    }

    pub fn to_pixels(&self) -> Pixels {
        let mut pixels = Pixels::new(self.bounds, self.depth, self.components);
        for y in self.bounds.y1..self.bounds.y2 {
            let offset = self.row_offset(y);
            pixels
                .row_mut(y)
                .copy_from_slice(&self.data[offset..offset + self.stride()]);
        }
        pixels
    }

    /// The property set describing this buffer (data points at pixel (x1, y1)).
    pub fn props(&mut self, unique_id: Option<String>, scale: f64) -> PropSet {
        let base = self.data.as_mut_ptr() as usize;
        self.props_at(base, unique_id, scale)
    }

    /// The property set describing a copy of this buffer at address `base` (host or device).
    pub fn props_at(&self, base: usize, unique_id: Option<String>, scale: f64) -> PropSet {
        let row_bytes = self.stride() as i32 * if self.top_down { -1 } else { 1 };
        let data = base + self.row_offset(self.bounds.y1);
        let b = self.bounds;
        let props = PropSet::strict(schema::names(Object::Image, &crate::profile())).with([
            (kOfxPropType, vec![Value::str("OfxTypeImage")]),
            (kOfxImagePropData, vec![Value::Pointer(data)]),
            (
                kOfxImagePropBounds,
                vec![
                    Value::Int(b.x1),
                    Value::Int(b.y1),
                    Value::Int(b.x2),
                    Value::Int(b.y2),
                ],
            ),
            (
                kOfxImagePropRegionOfDefinition,
                vec![
                    Value::Int(b.x1),
                    Value::Int(b.y1),
                    Value::Int(b.x2),
                    Value::Int(b.y2),
                ],
            ),
            (kOfxImagePropRowBytes, vec![Value::Int(row_bytes)]),
            (
                kOfxImageEffectPropPixelDepth,
                vec![Value::str(self.depth.name().to_str().unwrap())],
            ),
            (
                kOfxImageEffectPropComponents,
                vec![Value::str(self.components.name().to_str().unwrap())],
            ),
            (kOfxImagePropPixelAspectRatio, vec![Value::Double(1.0)]),
            (
                kOfxImageEffectPropPreMultiplication,
                vec![Value::str(kOfxImageUnPreMultiplied.to_str().unwrap())],
            ),
            (
                kOfxImageEffectPropRenderScale,
                vec![Value::Double(scale), Value::Double(scale)],
            ),
            (
                kOfxImagePropField,
                vec![Value::str(kOfxImageFieldNone.to_str().unwrap())],
            ),
        ]);
        if let Some(id) = unique_id {
            props.set(
                kOfxImagePropUniqueIdentifier,
                vec![Value::String(CString::new(id).unwrap())],
            );
        }
        props
    }
}

impl ImageObj {
    pub fn new(props: PropSet, pixels: Lending) -> Self {
        ImageObj {
            props,
            _pixels: pixels,
        }
    }
}

pub struct EffectObj {
    pub props: PropSet,
    pub params: ParamSetObj,
    pub clips: Mutex<Vec<Arc<ClipObj>>>,
    pub log: Mutex<Log>,
    pub stop: Mutex<Stop>,
    /// The output buffer of the render in progress.
    pub output: Mutex<Option<ImageBuffer>>,
    pub top_down: bool,
    pub time: Mutex<f64>,
    /// The output's frame range (what the timeline suite's bounds give).
    pub range: Mutex<(f64, f64)>,
    /// Render scale of the render in progress: input images come at this scale.
    pub scale: Mutex<f64>,
    /// GPU memory for CUDA renders, where a test gives it.
    pub device_memory: Mutex<Option<Arc<dyn DeviceMemory>>>,
    /// The CUDA render in progress: its memory and the output's device copy.
    pub device_render: Mutex<Option<(Arc<dyn DeviceMemory>, usize)>>,
}

impl EffectObj {
    pub fn new(props: PropSet, top_down: bool) -> Self {
        EffectObj {
            props,
            params: ParamSetObj {
                props: PropSet::strict(schema::names(Object::ParamSet, &crate::profile())),
                params: Mutex::default(),
            },
            clips: Mutex::default(),
            log: Mutex::default(),
            stop: Mutex::default(),
            output: Mutex::default(),
            top_down,
            time: Mutex::new(0.0),
            range: Mutex::new((0.0, 0.0)),
            scale: Mutex::new(1.0),
            device_memory: Mutex::default(),
            device_render: Mutex::default(),
        }
    }

    pub fn clip(&self, name: &str) -> Option<Arc<ClipObj>> {
        self.clips
            .lock()
            .unwrap()
            .iter()
            .find(|c| c.name == name)
            .cloned()
    }

    /// Whether the host says stop now (counting progress updates so far).
    pub fn should_stop(&self, limit: impl Fn(&Stop) -> Option<usize>) -> bool {
        let updates = self.log.lock().unwrap().progress_updates;
        limit(&self.stop.lock().unwrap()).is_some_and(|n| updates >= n)
    }
}
