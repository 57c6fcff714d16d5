use std::ffi::{CStr, CString, c_void};

use crate::host::Host;
use crate::image::{Image, Memory};
use crate::param::ParamSet;
use crate::property::{PropertySet, suite_fn};
use crate::status::{Result, Status};
use crate::sys::*;

/// An image effect descriptor or instance, valid for the action call it came with.
#[derive(Clone, Copy)]
pub struct ImageEffect {
    handle: OfxImageEffectHandle,
    host: &'static Host,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    Error,
    Warning,
    Message,
}

impl MessageKind {
    fn name(self) -> &'static CStr {
        match self {
            MessageKind::Error => kOfxMessageError,
            MessageKind::Warning => kOfxMessageWarning,
            MessageKind::Message => kOfxMessageMessage,
        }
    }
}

fn c_text(text: &str) -> CString {
    CString::new(text.replace('\0', " ")).expect("NULs replaced")
}

impl ImageEffect {
    pub(crate) fn new(handle: OfxImageEffectHandle, host: &'static Host) -> Option<Self> {
        (!handle.is_null()).then_some(Self { handle, host })
    }

    /// Identifies this instance for as long as it lives (the handle's address).
    pub fn id(&self) -> usize {
        self.handle as usize
    }

    pub fn properties(&self) -> Result<PropertySet> {
        let mut props = std::ptr::null_mut();
        // SAFETY: the handle is live for this action.
        Status::check(unsafe {
            suite_fn!(self.host.effect, getPropertySet)(self.handle, &mut props)
        })?;
        PropertySet::new(props, self.host.property)
    }

    pub fn params(&self) -> Result<ParamSet> {
        let mut params = std::ptr::null_mut();
        // SAFETY: the handle is live for this action.
        Status::check(unsafe {
            suite_fn!(self.host.effect, getParamSet)(self.handle, &mut params)
        })?;
        ParamSet::new(params, self.host)
    }

    /// Declares a clip on a descriptor (describe-in-context); returns its properties.
    pub fn define_clip(&self, name: &CStr) -> Result<PropertySet> {
        let mut props = std::ptr::null_mut();
        // SAFETY: the handle is live for this action.
        Status::check(unsafe {
            suite_fn!(self.host.effect, clipDefine)(self.handle, name.as_ptr(), &mut props)
        })?;
        PropertySet::new(props, self.host.property)
    }

    pub fn clip(&self, name: &CStr) -> Result<Clip> {
        let (mut clip, mut props) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: the handle is live for this action.
        Status::check(unsafe {
            suite_fn!(self.host.effect, clipGetHandle)(
                self.handle,
                name.as_ptr(),
                &mut clip,
                &mut props,
            )
        })?;
        if clip.is_null() {
            return Err(Status::ERR_BAD_HANDLE);
        }
        Ok(Clip {
            handle: clip,
            properties: PropertySet::new(props, self.host.property)?,
            host: self.host,
        })
    }

    /// True when the host wants the current render to stop.
    pub fn aborted(&self) -> bool {
        // SAFETY: the handle is live for this action.
        self.host
            .effect
            .abort
            .is_some_and(|abort| unsafe { abort(self.handle) } != 0)
    }

    /// Shows a message to the user (message suite V2, else V1).
    pub fn message(&self, kind: MessageKind, text: &str) -> Result<()> {
        let text = c_text(text);
        let message = self
            .host
            .message_v2
            .and_then(|s| s.message)
            .or(self.host.message_v1.and_then(|s| s.message))
            .ok_or(Status::ERR_MISSING_HOST_FEATURE)?;
        // SAFETY: the format "%s" consumes exactly the one string passed.
        Status::check(unsafe {
            message(
                self.handle as *mut c_void,
                kind.name().as_ptr(),
                std::ptr::null(),
                c"%s".as_ptr(),
                text.as_ptr(),
            )
        })
    }

    /// A message that stays on the effect until cleared (message suite V2; else a plain message).
    pub fn set_persistent_message(&self, kind: MessageKind, text: &str) -> Result<()> {
        let Some(set) = self.host.message_v2.and_then(|s| s.setPersistentMessage) else {
            return self.message(kind, text);
        };
        let text = c_text(text);
        // SAFETY: as in `message`.
        Status::check(unsafe {
            set(
                self.handle as *mut c_void,
                kind.name().as_ptr(),
                std::ptr::null(),
                c"%s".as_ptr(),
                text.as_ptr(),
            )
        })
    }

    pub fn clear_persistent_message(&self) {
        if let Some(clear) = self.host.message_v2.and_then(|s| s.clearPersistentMessage) {
            // SAFETY: the handle is live for this action.
            unsafe { clear(self.handle as *mut c_void) };
        }
    }

    /// Starts a progress bar (progress suite V2, else V1); false when the host has none.
    pub fn progress_start(&self, label: &str) -> bool {
        let label = c_text(label);
        // SAFETY: the handle is live for this action; strings are NUL-terminated.
        unsafe {
            if let Some(start) = self.host.progress_v2.and_then(|s| s.progressStart) {
                start(
                    self.handle as *mut c_void,
                    label.as_ptr(),
                    c"SoragenProgress".as_ptr(),
                ) == kOfxStatOK
            } else if let Some(start) = self.host.progress_v1.and_then(|s| s.progressStart) {
                start(self.handle as *mut c_void, label.as_ptr()) == kOfxStatOK
            } else {
                false
            }
        }
    }

    /// Reports progress in [0, 1]; false when the user asked to cancel.
    pub fn progress_update(&self, fraction: f64) -> bool {
        let update = self
            .host
            .progress_v2
            .and_then(|s| s.progressUpdate)
            .or(self.host.progress_v1.and_then(|s| s.progressUpdate));
        // SAFETY: the handle is live for this action.
        update.is_none_or(
            |update| unsafe { update(self.handle as *mut c_void, fraction) } != kOfxStatReplyNo,
        )
    }

    pub fn progress_end(&self) {
        let end = self
            .host
            .progress_v2
            .and_then(|s| s.progressEnd)
            .or(self.host.progress_v1.and_then(|s| s.progressEnd));
        if let Some(end) = end {
            // SAFETY: the handle is live for this action.
            unsafe { end(self.handle as *mut c_void) };
        }
    }
}

/// A clip of an effect instance.
#[derive(Clone, Copy)]
pub struct Clip {
    handle: OfxImageClipHandle,
    pub properties: PropertySet,
    host: &'static Host,
}

impl Clip {
    pub fn connected(&self) -> bool {
        self.properties
            .bool(kOfxImageClipPropConnected)
            .unwrap_or(false)
    }

    /// First and last frame (inclusive) the clip has, in the effect's time: the clip's
    /// `kOfxImageEffectPropFrameRange`, else its unmapped range; None where the host gives
    /// neither (MLT gives no frame ranges at all).
    pub fn frame_range(&self) -> Option<(f64, f64)> {
        [
            kOfxImageEffectPropFrameRange,
            kOfxImageEffectPropUnmappedFrameRange,
        ]
        .into_iter()
        .find_map(|name| self.properties.doubles::<2>(name).ok())
        .filter(|[first, last]| first.is_finite() && last.is_finite() && first <= last)
        .map(|[first, last]| (first, last))
    }

    /// The clip's region of definition at `time` in canonical coordinates (x1, y1, x2, y2).
    pub fn region_of_definition(&self, time: f64) -> Result<[f64; 4]> {
        let mut rect = OfxRectD {
            x1: 0.0,
            y1: 0.0,
            x2: 0.0,
            y2: 0.0,
        };
        // SAFETY: the handle is live for this action.
        Status::check(unsafe {
            suite_fn!(self.host.effect, clipGetRegionOfDefinition)(self.handle, time, &mut rect)
        })?;
        Ok([rect.x1, rect.y1, rect.x2, rect.y2])
    }

    /// The image at `time`, or None where the clip has no frame (the host answers Failed).
    /// `memory` says where the render's images are: host memory, or CUDA device memory in a
    /// render with `kOfxImageEffectPropCudaEnabled` set.
    pub fn image(&self, time: f64, memory: Memory) -> Result<Option<Image>> {
        let mut image = std::ptr::null_mut();
        // SAFETY: the handle is live for this action; NULL region asks for the whole frame.
        let status = unsafe {
            suite_fn!(self.host.effect, clipGetImage)(
                self.handle,
                time,
                std::ptr::null(),
                &mut image,
            )
        };
        match status {
            kOfxStatOK => Image::new(
                PropertySet::new(image, self.host.property)?,
                self.host,
                memory,
            )
            .map(Some),
            kOfxStatFailed => Ok(None),
            other => Err(Status(other)),
        }
    }
}
