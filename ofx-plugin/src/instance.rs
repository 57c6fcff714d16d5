//! Per-instance state: the effect and context, the model in use and the cache of generated
//! windows. Instances are found by their handle.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use candle_core::DType;
use soragen_core::device::{default_dtype, model_device};
use soragen_core::hub::resolve_model;
use soragen_core::model::WanVace;
use soragen_core::presets::LoraSpec;
use soragen_core::video::Video;
use soragen_ofx_ffi::sys::*;
use soragen_ofx_ffi::{ImageEffect, RectI, Result, Status};

use crate::effects::{Context, EffectKind};
use crate::failure::Failure;

/// Generated windows kept in the process: the ones being scrubbed and a few recent ones. They
/// are shared by every instance (keys hash the effect, settings and input content), because
/// some hosts (MLT) make a new instance for every frame.
const CACHED_WINDOWS: usize = 8;

/// The frames one generation produced.
pub struct Generated {
    pub video: Video,
    /// Index in `video` of the window's first output frame.
    pub first_output: usize,
    /// Where `video`'s frames sit in pixel coordinates.
    pub rect: RectI,
    /// The cache key it was made for (a later window that continues it hashes it in).
    pub key: u64,
}

pub struct Instance {
    pub effect: EffectKind,
    pub context: Context,
    /// Holding the model keeps it loaded (and shared with other instances) between renders.
    model: Mutex<Option<Arc<WanVace>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

static INSTANCES: LazyLock<Mutex<HashMap<usize, Arc<Instance>>>> = LazyLock::new(Mutex::default);
static CACHE: Mutex<VecDeque<(u64, Arc<Generated>)>> = Mutex::new(VecDeque::new());
/// Held while generating, so that a second render of the same window waits and then finds it
/// in the cache instead of generating it again (one model, one generation at a time).
static GENERATING: Mutex<()> = Mutex::new(());

pub fn create(effect: ImageEffect, kind: EffectKind) -> Result<()> {
    let context = Context::from_name(&effect.properties()?.string(kOfxImageEffectPropContext)?)
        .ok_or(Status::ERR_UNSUPPORTED)?;
    let instance = Instance {
        effect: kind,
        context,
        model: Mutex::default(),
    };
    lock(&INSTANCES).insert(effect.id(), Arc::new(instance));
    Ok(())
}

pub fn destroy(effect: ImageEffect) {
    lock(&INSTANCES).remove(&effect.id());
}

pub fn get(effect: ImageEffect) -> Result<Arc<Instance>> {
    lock(&INSTANCES)
        .get(&effect.id())
        .cloned()
        .ok_or(Status::ERR_BAD_HANDLE)
}

impl Instance {
    pub fn cached(&self, key: u64) -> Option<Arc<Generated>> {
        lock(&CACHE)
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, g)| g.clone())
    }

    pub fn store(&self, key: u64, generated: Arc<Generated>) {
        let mut cache = lock(&CACHE);
        if cache.len() == CACHED_WINDOWS {
            cache.pop_front();
        }
        cache.push_back((key, generated));
    }

    pub fn generating(&self) -> MutexGuard<'_, ()> {
        lock(&GENERATING)
    }

    /// The model folder the Model parameter names: a folder, or a repository id looked up in
    /// the Hugging Face cache (and fetched there when missing and not offline).
    pub fn model_folder(spec: &str) -> std::result::Result<PathBuf, Failure> {
        if spec.is_empty() {
            return Err(Failure::User(
                "no model: set Model to a Wan2.1-VACE model folder or repository id (or SORAGEN_MODEL before starting the host)".into(),
            ));
        }
        Ok(resolve_model(spec)?)
    }

    /// The compute precision models run in here: the one that suits the device (as the CLI and
    /// GStreamer choose it).
    pub fn dtype() -> DType {
        default_dtype(&model_device())
    }

    /// The model in `folder` when this or any other instance or element of the process holds it
    /// loaded (the core's registry), now held by this instance too.
    pub fn loaded_model(&self, folder: &Path, adapters: &[LoraSpec]) -> Option<Arc<WanVace>> {
        let found = WanVace::already_loaded(folder, Self::dtype(), adapters)?;
        *lock(&self.model) = Some(found.clone());
        Some(found)
    }

    /// Loads the model in `folder` with `adapters` merged (once per process) and holds it for
    /// this instance.
    pub fn load_model(
        &self,
        folder: &Path,
        adapters: &[LoraSpec],
    ) -> std::result::Result<Arc<WanVace>, Failure> {
        let loaded =
            WanVace::shared_with_adapters(folder, &model_device(), Self::dtype(), adapters)?;
        *lock(&self.model) = Some(loaded.clone());
        Ok(loaded)
    }

    /// PurgeCaches: drop generated windows and our hold on the model.
    pub fn purge(&self) {
        lock(&CACHE).clear();
        lock(&self.model).take();
    }
}
