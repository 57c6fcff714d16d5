//! Reference images from `reference_%u` request pads: each pad gives one still image (its first
//! buffer; later ones are dropped), which every generation takes after the `reference`
//! property's images, in pad order. A generation waits until each linked pad has its image, so
//! `filesrc location=face.png ! pngdec ! videoconvert ! soragen.reference_0` conditions the
//! first window too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use gst_video::VideoInfo;
use soragen_core::video::Video;

use crate::frames::FrameMemory;

/// Why a reference pad's image cannot be used, in one line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error(
        "{0} ended without an image: link one still (e.g. filesrc ! pngdec ! videoconvert) or release the pad"
    )]
    NoImage(String),
    #[error("{0} got an image before its caps")]
    NoCaps(String),
    #[error("cannot read the image on {0}: {1}")]
    Unreadable(String, String),
    #[error("stopped")]
    Cancelled,
}

/// One request pad's state.
struct Pad {
    name: String,
    info: Option<VideoInfo>,
    image: Option<Video>,
    ended: bool,
}

/// The images of the reference pads, shared by their streaming threads and the generator's.
#[derive(Default)]
pub struct ReferencePads {
    pads: Mutex<Vec<Pad>>,
    changed: Condvar,
}

impl ReferencePads {
    fn lock(&self) -> MutexGuard<'_, Vec<Pad>> {
        self.pads.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut Pad)) {
        if let Some(pad) = self.lock().iter_mut().find(|p| p.name == name) {
            change(pad);
        }
        self.changed.notify_all();
    }

    /// A new pad, waited for from the next generation on.
    pub fn add(&self, name: &str) {
        self.lock().push(Pad {
            name: name.into(),
            info: None,
            image: None,
            ended: false,
        });
    }

    pub fn remove(&self, name: &str) {
        self.lock().retain(|p| p.name != name);
        self.changed.notify_all();
    }

    /// The names the next request pad may not take.
    pub fn names(&self) -> Vec<String> {
        self.lock().iter().map(|p| p.name.clone()).collect()
    }

    pub fn set_caps(&self, name: &str, info: VideoInfo) {
        self.update(name, |pad| pad.info = Some(info));
    }

    /// Keeps `buffer` as the pad's image unless it has one: a reference is one still.
    pub fn push(&self, name: &str, buffer: &gst::Buffer) -> Result<(), ReferenceError> {
        let mut pads = self.lock();
        let Some(pad) = pads.iter_mut().find(|p| p.name == name) else {
            return Ok(());
        };
        if pad.image.is_some() {
            return Ok(());
        }
        let info = pad
            .info
            .as_ref()
            .ok_or_else(|| ReferenceError::NoCaps(name.into()))?;
        let image = FrameMemory::System
            .to_video(std::slice::from_ref(buffer), info)
            .map_err(|e| ReferenceError::Unreadable(name.into(), e.to_string()))?;
        pad.image = Some(image);
        drop(pads);
        self.changed.notify_all();
        Ok(())
    }

    /// EOS on a pad: a pad that ended without an image fails the next generation.
    pub fn end(&self, name: &str) {
        self.update(name, |pad| pad.ended = true);
    }

    /// Back to no images (READY -> PAUSED): each pad's still comes again with the new stream.
    pub fn restart(&self) {
        for pad in self.lock().iter_mut() {
            (pad.info, pad.image, pad.ended) = (None, None, false);
        }
        self.changed.notify_all();
    }

    /// Wakes a generator waiting in [`Self::images`] so that it sees its cancel flag.
    pub fn wake(&self) {
        self.changed.notify_all();
    }

    /// Every pad's image in pad order, waiting for those still to come until `cancel` is set.
    pub fn images(&self, cancel: &AtomicBool) -> Result<Vec<Video>, ReferenceError> {
        let mut pads = self.lock();
        loop {
            if cancel.load(Ordering::SeqCst) {
                return Err(ReferenceError::Cancelled);
            }
            if let Some(pad) = pads.iter().find(|p| p.image.is_none() && p.ended) {
                return Err(ReferenceError::NoImage(pad.name.clone()));
            }
            if pads.iter().all(|p| p.image.is_some()) {
                return Ok(pads.iter().filter_map(|p| p.image.clone()).collect());
            }
            pads = self.changed.wait(pads).unwrap_or_else(|e| e.into_inner());
        }
    }
}
