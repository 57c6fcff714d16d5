//! Flag values parsed and checked before anything runs.

use soragen_core::Result;
use soragen_core::limits::Limit;
use soragen_core::presets::Preset;
use soragen_models::lora::LoraSpec;

/// `--lora FILE[:STRENGTH]`.
pub(crate) fn parse_lora(arg: &str) -> std::result::Result<LoraSpec, String> {
    LoraSpec::parse(arg).map_err(|e| e.to_string())
}

/// `--step-cache first-block[:THRESHOLD]` (no flag: no cache).
pub(crate) fn parse_step_cache(
    spec: &str,
) -> std::result::Result<soragen_core::step_cache::StepCache, String> {
    match soragen_core::step_cache::StepCache::parse(spec) {
        Ok(Some(cache)) => Ok(cache),
        Ok(None) => Err("leave --step-cache out for no cache".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// `--preset NAME`.
pub(crate) fn parse_preset(name: &str) -> std::result::Result<&'static Preset, String> {
    Preset::named(name).map_err(|e| e.to_string())
}

/// The device the models run on (see `soragen_core::device`) and the dtype `--dtype` names, or
/// the one that suits the device.
pub(crate) fn device_and_dtype(
    dtype: Option<&str>,
) -> Result<(candle_core::Device, candle_core::DType)> {
    let device = soragen_core::device::model_device();
    let dtype = match dtype {
        Some(name) => soragen_models::weights::parse_dtype(name)?,
        None => soragen_core::device::default_dtype(&device),
    };
    Ok((device, dtype))
}

/// A flag's value parsed and checked against its range, so a bad number is refused before
/// anything runs.
pub(crate) fn limited<T>(
    limit: Limit<T>,
) -> impl Fn(&str) -> Result<T> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr + PartialOrd + std::fmt::Debug + Copy + Send + Sync + 'static,
{
    move |text| {
        let value = text
            .trim()
            .parse::<T>()
            .map_err(|_| soragen_core::Error::Request(format!("{text:?} is not a number")))?;
        Ok(limit.check(value)?)
    }
}
