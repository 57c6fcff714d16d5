//! Caching between denoising steps, as every surface names it (`--cache first-block[:T]`, the
//! GStreamer `cache` property): a training-free speed-up that trades quality for time.
//!
//! `first-block` is diffusers' First Block Cache (`FirstBlockCacheConfig(threshold)`, see
//! `soragen_models::transformer::FirstBlockCache`): a step whose first block changed by at most
//! the threshold (relative mean absolute change of its residual) since the last fully computed
//! step reuses the other blocks' work. Higher thresholds skip more steps and drift further from
//! the uncached result; 0 never skips.

use serde::Serialize;

use crate::limits::Limit;
use crate::{Error, Result};

/// Threshold range of the first block cache: at 1 a step whose first block changed by as much
/// as it is large is reused, beyond any use.
pub const THRESHOLD: Limit<f64> = Limit {
    name: "cache threshold",
    min: 0.0,
    max: 1.0,
};

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StepCache {
    FirstBlock { threshold: f64 },
}

impl StepCache {
    /// What `first-block` without a threshold means: diffusers' default.
    pub const FIRST_BLOCK: StepCache = StepCache::FirstBlock {
        threshold: soragen_models::transformer::FirstBlockCache::DEFAULT_THRESHOLD,
    };

    /// `none` (or empty) -> no cache; `first-block` or `first-block:THRESHOLD`.
    pub fn parse(spec: &str) -> Result<Option<StepCache>> {
        let spec = spec.trim();
        let (kind, threshold) = match spec.split_once(':') {
            Some((kind, threshold)) => (kind, Some(threshold)),
            None => (spec, None),
        };
        match (kind, threshold) {
            ("" | "none", None) => Ok(None),
            ("first-block", None) => Ok(Some(Self::FIRST_BLOCK)),
            ("first-block", Some(threshold)) => {
                let threshold: f64 = threshold.trim().parse().map_err(|_| {
                    Error::Input(format!(
                        "cache threshold {threshold:?} is not a number (as in first-block:0.05)"
                    ))
                })?;
                THRESHOLD.check(threshold)?;
                Ok(Some(StepCache::FirstBlock { threshold }))
            }
            _ => Err(Error::Input(format!(
                "unknown step cache {spec:?}: use none, first-block or first-block:THRESHOLD"
            ))),
        }
    }

    /// The spelling [`Self::parse`] reads back.
    pub fn spec(cache: Option<StepCache>) -> String {
        match cache {
            None => "none".into(),
            Some(StepCache::FirstBlock { threshold }) => format!("first-block:{threshold}"),
        }
    }
}
