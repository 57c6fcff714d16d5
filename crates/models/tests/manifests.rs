//! The published checkpoints load: for each part of `Wan-AI/Wan2.1-VACE-1.3B-diffusers` and
//! `-14B-diffusers`, the model built from the published config asks for exactly the tensors the
//! published files hold (none missing, none left unused, shapes equal). The manifests come from
//! `models/reference/manifests.py` (the reference instantiated on PyTorch's meta device).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde_json::Value;
use soragen_models::weights::Weights;

const REPOS: [&str; 2] = ["Wan2.1-VACE-1.3B-diffusers", "Wan2.1-VACE-14B-diffusers"];

/// The config and placeholder weights of one part of one published repository.
fn part(repo: &str, part: &str) -> (Value, Arc<Weights>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/manifests")
        .join(repo)
        .join(format!("{part}.json"));
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let tensors: BTreeMap<String, (DType, Vec<usize>)> = manifest["tensors"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, entry)| {
            let dtype = match entry[0].as_str().unwrap() {
                "F32" => DType::F32,
                "BF16" => DType::BF16,
                "F16" => DType::F16,
                other => panic!("{name}: unexpected dtype {other}"),
            };
            let shape = entry[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            (name.clone(), (dtype, shape))
        })
        .collect();
    assert!(
        tensors.len() > 100,
        "{}: suspiciously few tensors",
        path.display()
    );
    (
        manifest["config"].clone(),
        Weights::placeholders(&path.display().to_string(), &tensors),
    )
}

fn builder(weights: &Arc<Weights>) -> VarBuilder<'static> {
    weights.var_builder(DType::BF16, &Device::Cpu)
}

#[test]
fn transformer_asks_for_exactly_the_published_tensors() {
    use soragen_models::transformer::{
        Config, WanTransformer, diffusers_to_original_name, original_to_diffusers_name,
    };
    // The plain text-to-video checkpoint loads into the same implementation, without VACE.
    for repo in REPOS.into_iter().chain(["Wan2.1-T2V-1.3B-Diffusers"]) {
        let (config, weights) = part(repo, "transformer");
        let config: Config = serde_json::from_value(config).unwrap();
        assert_eq!(config.is_vace(), repo.contains("VACE"), "{repo}");
        WanTransformer::load(builder(&weights), &config).unwrap();
        weights.ensure_all_used().unwrap();
        // Checkpoints of the original Wan release carry the same tensors under other names.
        for name in weights.names() {
            assert_eq!(
                original_to_diffusers_name(&diffusers_to_original_name(name)),
                name,
                "{repo}"
            );
        }
    }
}

#[test]
fn vae_asks_for_exactly_the_published_tensors() {
    use soragen_models::vae::{AutoencoderKLWan, Config};
    for repo in REPOS {
        let (config, weights) = part(repo, "vae");
        let config: Config = serde_json::from_value(config).unwrap();
        AutoencoderKLWan::load(builder(&weights), &config).unwrap();
        weights.ensure_all_used().unwrap();
    }
}

#[test]
fn text_encoder_asks_for_exactly_the_published_tensors() {
    use soragen_models::text_encoder::{Config, UMT5EncoderModel};
    for repo in REPOS {
        let (config, weights) = part(repo, "text_encoder");
        let config: Config = serde_json::from_value(config).unwrap();
        UMT5EncoderModel::load(builder(&weights), &config).unwrap();
        weights.ensure_all_used().unwrap();
    }
}
