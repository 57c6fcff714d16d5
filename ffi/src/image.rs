use std::ffi::CStr;

use crate::host::Host;
use crate::property::PropertySet;
use crate::status::{Result, Status};
use crate::sys::*;

/// Pixel rectangle, x1/y1 inclusive, x2/y2 exclusive; y runs upwards as in OpenFX.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RectI {
    pub x1: i32,
    pub y1: i32,
    pub x2: i32,
    pub y2: i32,
}

impl RectI {
    pub fn width(&self) -> usize {
        (self.x2 - self.x1).max(0) as usize
    }

    pub fn height(&self) -> usize {
        (self.y2 - self.y1).max(0) as usize
    }

    pub fn intersect(&self, other: &RectI) -> RectI {
        RectI {
            x1: self.x1.max(other.x1),
            y1: self.y1.max(other.y1),
            x2: self.x2.min(other.x2),
            y2: self.y2.min(other.y2),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Depth {
    Byte,
    Short,
    Float,
}

impl Depth {
    pub fn from_name(name: &str) -> Option<Self> {
        [Depth::Byte, Depth::Short, Depth::Float]
            .into_iter()
            .find(|d| d.name().to_str() == Ok(name))
    }

    pub fn name(self) -> &'static CStr {
        match self {
            Depth::Byte => kOfxBitDepthByte,
            Depth::Short => kOfxBitDepthShort,
            Depth::Float => kOfxBitDepthFloat,
        }
    }

    pub fn bytes(self) -> usize {
        match self {
            Depth::Byte => 1,
            Depth::Short => 2,
            Depth::Float => 4,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Components {
    Rgba,
    Rgb,
    Alpha,
}

impl Components {
    pub fn from_name(name: &str) -> Option<Self> {
        [Components::Rgba, Components::Rgb, Components::Alpha]
            .into_iter()
            .find(|c| c.name().to_str() == Ok(name))
    }

    pub fn name(self) -> &'static CStr {
        match self {
            Components::Rgba => kOfxImageComponentRGBA,
            Components::Rgb => kOfxImageComponentRGB,
            Components::Alpha => kOfxImageComponentAlpha,
        }
    }

    pub fn count(self) -> usize {
        match self {
            Components::Rgba => 4,
            Components::Rgb => 3,
            Components::Alpha => 1,
        }
    }
}

/// Where a render's images are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Memory {
    Host,
    /// CUDA device memory (a CUDA render): never read or written from the CPU.
    Cuda,
}

/// An image fetched from a clip; released back to the host on drop.
pub struct Image {
    properties: PropertySet,
    host: &'static Host,
    memory: Memory,
    data: *mut u8,
    pub bounds: RectI,
    /// Bytes from one row to the next; negative when rows run downwards in memory.
    row_bytes: isize,
    pub depth: Depth,
    pub components: Components,
}

impl Image {
    pub(crate) fn new(
        properties: PropertySet,
        host: &'static Host,
        memory: Memory,
    ) -> Result<Self> {
        let release = ReleaseOnError { properties, host };
        let data = properties.pointer(kOfxImagePropData)? as *mut u8;
        let [x1, y1, x2, y2] = properties.ints(kOfxImagePropBounds)?;
        let row_bytes = properties.int(kOfxImagePropRowBytes)? as isize;
        let depth = Depth::from_name(&properties.string(kOfxImageEffectPropPixelDepth)?)
            .ok_or(Status::ERR_UNSUPPORTED)?;
        let components = Components::from_name(&properties.string(kOfxImageEffectPropComponents)?)
            .ok_or(Status::ERR_UNSUPPORTED)?;
        let bounds = RectI { x1, y1, x2, y2 };
        if data.is_null()
            || (row_bytes.unsigned_abs()) < bounds.width() * depth.bytes() * components.count()
        {
            return Err(Status::ERR_IMAGE_FORMAT);
        }
        std::mem::forget(release);
        Ok(Self {
            properties,
            host,
            memory,
            data,
            bounds,
            row_bytes,
            depth,
            components,
        })
    }

    /// Bytes per pixel.
    pub fn pixel_bytes(&self) -> usize {
        self.depth.bytes() * self.components.count()
    }

    /// The host's identifier of this image's content, when it gives one.
    pub fn unique_id(&self) -> Option<String> {
        self.properties
            .string(kOfxImagePropUniqueIdentifier)
            .ok()
            .filter(|id| !id.is_empty())
    }

    /// Where the pixels are.
    pub fn memory(&self) -> Memory {
        self.memory
    }

    /// A device image's address (pixel (x1, y1), OpenFX's bottom row) and its row bytes; None
    /// for host memory.
    pub fn device_pixels(&self) -> Option<(u64, isize)> {
        (self.memory == Memory::Cuda).then_some((self.data as u64, self.row_bytes))
    }

    /// Row `y`'s first byte in host memory: None outside the bounds and for device images.
    fn row_start(&self, y: i32) -> Option<*mut u8> {
        if self.memory != Memory::Host || y < self.bounds.y1 || y >= self.bounds.y2 {
            return None;
        }
        // SAFETY: y is inside the bounds, so the offset stays inside the host's buffer.
        Some(unsafe {
            self.data
                .offset((y - self.bounds.y1) as isize * self.row_bytes)
        })
    }

    /// The bytes of row `y` (all of the image's columns); None outside the bounds and for
    /// device images.
    pub fn row(&self, y: i32) -> Option<&[u8]> {
        let start = self.row_start(y)?;
        // SAFETY: a row holds width * pixel_bytes bytes (checked against row_bytes in `new`).
        Some(unsafe { std::slice::from_raw_parts(start, self.bounds.width() * self.pixel_bytes()) })
    }

    pub fn row_mut(&mut self, y: i32) -> Option<&mut [u8]> {
        let start = self.row_start(y)?;
        // SAFETY: as in `row`; &mut self makes this the only view.
        Some(unsafe {
            std::slice::from_raw_parts_mut(start, self.bounds.width() * self.pixel_bytes())
        })
    }
}

fn release(properties: PropertySet, host: &'static Host) {
    if let Some(release) = host.effect.clipReleaseImage {
        // SAFETY: the image came from clipGetImage and is released exactly once.
        unsafe { release(properties.raw()) };
    }
}

/// Releases an image whose properties turn out unusable before it becomes an `Image`.
struct ReleaseOnError {
    properties: PropertySet,
    host: &'static Host,
}

impl Drop for ReleaseOnError {
    fn drop(&mut self) {
        release(self.properties, self.host);
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        release(self.properties, self.host);
    }
}
