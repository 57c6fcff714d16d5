//! Parity of the Wan / Wan-VACE transformer with diffusers on the fixtures of
//! `models/reference/transformer.py`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use soragen_models::transformer::{
    Config, WanTransformer, diffusers_to_original_name, original_to_diffusers_name,
};

const TOLERANCE: f32 = 1e-4;
const WEIGHTS: &str = "diffusion_pytorch_model.safetensors";

fn case_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fixtures/transformer");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("fixtures {root:?}: {e}"))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("io.safetensors").exists())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 4,
        "expected the transformer fixtures in {root:?}"
    );
    dirs
}

fn config(dir: &Path) -> Config {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

fn weights(file: &Path) -> VarBuilder<'static> {
    // SAFETY: the fixture files are not changed while the test maps them.
    unsafe { VarBuilder::from_mmaped_safetensors(&[file], DType::F32, &Device::Cpu).unwrap() }
}

fn io(dir: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("io.safetensors"), &Device::Cpu).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    soragen_models::max_abs_diff(a, b).unwrap()
}

/// Runs the model on a case's inputs (the VACE control only when the case has one).
fn run(model: &WanTransformer, io: &HashMap<String, Tensor>) -> Result<Tensor> {
    let scales: Option<Vec<f64>> = io.get("control_scale").map(|s| {
        s.to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect()
    });
    let vace = io.get("control").zip(scales.as_deref());
    model.forward(
        &io["latents"],
        &io["timestep"],
        &io["text_embeddings"],
        vace,
    )
}

#[test]
fn matches_diffusers() {
    let mut vace_cases = 0;
    for dir in case_dirs() {
        let config = config(&dir);
        vace_cases += usize::from(config.is_vace());
        let model = WanTransformer::load(weights(&dir.join(WEIGHTS)), &config).unwrap();
        let io = io(&dir);
        assert_eq!(io.contains_key("control"), config.is_vace());
        let output = run(&model, &io).unwrap();
        let diff = max_abs_diff(&output, &io["output"]);
        println!(
            "{}: max |diff| {diff:.3e}",
            dir.file_name().unwrap().to_string_lossy()
        );
        assert!(
            diff <= TOLERANCE,
            "{dir:?}: max |diff| {diff} > {TOLERANCE}"
        );
    }
    assert!(vace_cases >= 3, "expected VACE and plain cases");
}

/// Guidance may run the two branches as one batch or as two calls: same result.
#[test]
fn batch_of_two_equals_two_calls() {
    let dir = case_dirs()
        .into_iter()
        .find(|d| io(d)["latents"].dim(0).unwrap() == 2 && config(d).is_vace())
        .unwrap();
    let model = WanTransformer::load(weights(&dir.join(WEIGHTS)), &config(&dir)).unwrap();
    let io = io(&dir);
    let scales: Vec<f64> = io["control_scale"]
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    for i in 0..2 {
        let one = |name: &str| io[name].narrow(0, i, 1).unwrap();
        let output = model
            .forward(
                &one("latents"),
                &one("timestep"),
                &one("text_embeddings"),
                Some((&one("control"), &scales)),
            )
            .unwrap();
        let diff = max_abs_diff(&output, &io["output"].narrow(0, i, 1).unwrap());
        assert!(diff <= TOLERANCE, "sample {i}: max |diff| {diff}");
    }
}

#[test]
fn loads_original_wan_names() {
    let mut checked = 0;
    for dir in case_dirs() {
        let original_file = dir.join("original").join(WEIGHTS);
        if !original_file.exists() {
            continue;
        }
        // The name maps agree with the files (the original names were checked in Python
        // against diffusers' own converter).
        let original = candle_core::safetensors::load(&original_file, &Device::Cpu).unwrap();
        let diffusers = candle_core::safetensors::load(dir.join(WEIGHTS), &Device::Cpu).unwrap();
        assert_eq!(original.len(), diffusers.len());
        for name in original.keys() {
            let renamed = original_to_diffusers_name(name);
            assert!(
                diffusers.contains_key(&renamed),
                "{name} -> {renamed}: not a diffusers tensor"
            );
            assert_eq!(&diffusers_to_original_name(&renamed), name);
            assert_eq!(
                original_to_diffusers_name(&format!("model.diffusion_model.{name}")),
                renamed
            );
        }

        let vb = weights(&original_file).rename_f(diffusers_to_original_name);
        let model = WanTransformer::load(vb, &config(&dir)).unwrap();
        let io = io(&dir);
        let diff = max_abs_diff(&run(&model, &io).unwrap(), &io["output"]);
        println!(
            "{} (original names): max |diff| {diff:.3e}",
            dir.file_name().unwrap().to_string_lossy()
        );
        assert!(diff <= TOLERANCE);
        checked += 1;
    }
    assert!(checked > 0, "no fixture with original names");
}

#[test]
fn original_names_of_a_full_block() {
    let pairs = [
        ("patch_embedding.weight", "patch_embedding.weight"),
        (
            "text_embedding.0.bias",
            "condition_embedder.text_embedder.linear_1.bias",
        ),
        (
            "time_embedding.2.weight",
            "condition_embedder.time_embedder.linear_2.weight",
        ),
        (
            "time_projection.1.weight",
            "condition_embedder.time_proj.weight",
        ),
        ("head.head.bias", "proj_out.bias"),
        ("head.modulation", "scale_shift_table"),
        ("blocks.11.modulation", "blocks.11.scale_shift_table"),
        (
            "blocks.0.self_attn.o.weight",
            "blocks.0.attn1.to_out.0.weight",
        ),
        (
            "blocks.2.cross_attn.norm_k.weight",
            "blocks.2.attn2.norm_k.weight",
        ),
        ("blocks.3.norm3.bias", "blocks.3.norm2.bias"),
        ("blocks.3.ffn.0.weight", "blocks.3.ffn.net.0.proj.weight"),
        ("blocks.3.ffn.2.bias", "blocks.3.ffn.net.2.bias"),
        ("vace_patch_embedding.bias", "vace_patch_embedding.bias"),
        (
            "vace_blocks.0.before_proj.weight",
            "vace_blocks.0.proj_in.weight",
        ),
        (
            "vace_blocks.4.after_proj.bias",
            "vace_blocks.4.proj_out.bias",
        ),
        (
            "vace_blocks.4.cross_attn.v.bias",
            "vace_blocks.4.attn2.to_v.bias",
        ),
    ];
    for (original, diffusers) in pairs {
        assert_eq!(original_to_diffusers_name(original), diffusers);
        assert_eq!(diffusers_to_original_name(diffusers), original);
    }
}

#[test]
fn rejects_unsupported_configs_and_inputs() {
    let base = config(
        &case_dirs()
            .into_iter()
            .find(|d| config(d).is_vace())
            .unwrap(),
    );
    let invalid = [
        Config {
            image_dim: Some(1280),
            ..base.clone()
        },
        Config {
            added_kv_proj_dim: Some(64),
            ..base.clone()
        },
        Config {
            qk_norm: None,
            ..base.clone()
        },
        Config {
            attention_head_dim: 7,
            ..base.clone()
        },
        Config {
            vace_layers: Some(vec![1]),
            ..base.clone()
        },
        Config {
            vace_layers: Some(vec![0, base.num_layers]),
            ..base.clone()
        },
    ];
    for config in invalid {
        assert!(config.validate().is_err(), "accepted {config:?}");
    }

    let vace_dir = case_dirs()
        .into_iter()
        .find(|d| config(d).is_vace())
        .unwrap();
    let model = WanTransformer::load(weights(&vace_dir.join(WEIGHTS)), &config(&vace_dir)).unwrap();
    let io = io(&vace_dir);
    let control = &io["control"];
    let too_many_scales = vec![1.0; 9];
    assert!(
        model
            .forward(
                &io["latents"],
                &io["timestep"],
                &io["text_embeddings"],
                Some((control, &too_many_scales))
            )
            .is_err()
    );
    let wide = Tensor::cat(&[control, control], 4).unwrap();
    assert!(
        model
            .forward(
                &io["latents"],
                &io["timestep"],
                &io["text_embeddings"],
                Some((&wide, &[1.0]))
            )
            .is_err()
    );

    let plain_dir = case_dirs()
        .into_iter()
        .find(|d| !config(d).is_vace())
        .unwrap();
    let plain =
        WanTransformer::load(weights(&plain_dir.join(WEIGHTS)), &config(&plain_dir)).unwrap();
    let io = self::io(&plain_dir);
    let control = Tensor::zeros((1, 1, 1, 1, 1), DType::F32, &Device::Cpu).unwrap();
    assert!(
        plain
            .forward(
                &io["latents"],
                &io["timestep"],
                &io["text_embeddings"],
                Some((&control, &[1.0]))
            )
            .is_err()
    );
}

/// Half-precision weights run (norms, modulation and softmax stay in f32) and stay close.
#[test]
fn runs_in_bf16() {
    for dir in case_dirs() {
        let file = dir.join(WEIGHTS);
        // SAFETY: the fixture files are not changed while the test maps them.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(&[file], DType::BF16, &Device::Cpu).unwrap()
        };
        let model = WanTransformer::load(vb, &config(&dir)).unwrap();
        let io = io(&dir);
        let output = run(&model, &io).unwrap();
        assert_eq!(output.dtype(), DType::BF16);
        let diff = max_abs_diff(&output.to_dtype(DType::F32).unwrap(), &io["output"]);
        println!(
            "{} bf16: max |diff| {diff:.3e}",
            dir.file_name().unwrap().to_string_lossy()
        );
        assert!(diff < 0.1, "{dir:?}: bf16 max |diff| {diff}");
    }
}
