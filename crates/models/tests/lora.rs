//! LoRA adapters merged at load time: parity with diffusers' `load_lora_weights` +
//! `set_adapters` on the tiny VACE transformer (fixtures of `models/reference/lora.py`), for each
//! adapter layout and for two adapters stacked, and the errors for adapters that do not fit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use soragen_models::lora::{Adapters, LoraSpec};
use soragen_models::transformer::{Config, WanTransformer, diffusers_to_original_name};
use soragen_models::weights::{Weights, read_config};

const TOLERANCE: f32 = 1e-4;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

fn fixtures() -> PathBuf {
    root().join("fixtures/lora")
}

fn io() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("io.safetensors"), &Device::Cpu).unwrap()
}

/// The transformer of `dir` with `adapters` merged, the way `soragen_core` loads it (renamed
/// names when the checkpoint has the original ones), after checking every adapter key was used.
/// The config is `dir`'s or its parent's, the weights `dir`'s `diffusion_pytorch_model.safetensors`.
fn load(dir: &Path, adapters: &[LoraSpec]) -> candle_core::Result<WanTransformer> {
    let config_dir = if dir.join("config.json").exists() {
        dir
    } else {
        dir.parent().unwrap()
    };
    let config: Config = read_config(&config_dir.join("config.json"))?;
    let file = dir.join("diffusion_pytorch_model.safetensors");
    let weights = Weights::open_files(&dir.display().to_string(), &[file])?;
    let mut vb = weights.var_builder(DType::F32, &Device::Cpu);
    if weights.contains("blocks.0.self_attn.q.weight") {
        vb = vb.rename_f(diffusers_to_original_name);
    }
    let lora = Arc::new(Adapters::load(adapters)?);
    let model = WanTransformer::load(lora.wrap(vb), &config)?;
    weights.ensure_all_used()?;
    lora.ensure_all_applied()?;
    Ok(model)
}

fn tiny() -> PathBuf {
    root().join("tiny/transformer")
}

fn run(model: &WanTransformer, io: &HashMap<String, Tensor>) -> Tensor {
    let scales: Vec<f64> = io["control_scale"]
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    model
        .forward(
            &io["latents"],
            &io["timestep"],
            &io["text_embeddings"],
            Some((&io["control"], &scales)),
        )
        .unwrap()
}

fn diff(a: &Tensor, b: &Tensor) -> f32 {
    soragen_models::max_abs_diff(a, b).unwrap()
}

/// case -> [(file, strength)] as the generator wrote them.
fn cases() -> Vec<(String, Vec<LoraSpec>)> {
    let text = std::fs::read_to_string(fixtures().join("cases.json")).unwrap();
    let cases: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    cases
        .into_iter()
        .map(|(case, stack)| {
            let specs = stack
                .as_array()
                .unwrap()
                .iter()
                .map(|entry| {
                    let file = entry[0].as_str().unwrap();
                    LoraSpec::new(fixtures().join(file), entry[1].as_f64().unwrap())
                })
                .collect();
            (case, specs)
        })
        .collect()
}

#[test]
fn matches_diffusers_for_each_format_and_stacked() {
    let io = io();
    let base = run(&load(&tiny(), &[]).unwrap(), &io);
    let base_diff = diff(&base, &io["output_base"]);
    println!("base: max |diff| {base_diff:.3e}");
    assert!(base_diff <= TOLERANCE);
    let cases = cases();
    assert!(cases.len() >= 4, "expected the LoRA fixtures");
    for (case, specs) in cases {
        let output = run(&load(&tiny(), &specs).unwrap(), &io);
        let expected = &io[&format!("output_{case}")];
        let d = diff(&output, expected);
        let change = diff(expected, &io["output_base"]);
        println!(
            "{case}: max |diff| {d:.3e} (the adapters change the output by up to {change:.3})"
        );
        assert!(d <= TOLERANCE, "{case}: max |diff| {d:e} > {TOLERANCE:e}");
        assert!(change > 0.1, "{case}: the adapters should matter");
    }
}

#[test]
fn strength_zero_is_the_base_model() {
    let io = io();
    let base = run(&load(&tiny(), &[]).unwrap(), &io);
    let specs = [LoraSpec::new(fixtures().join("peft.safetensors"), 0.0)];
    assert_eq!(diff(&run(&load(&tiny(), &specs).unwrap(), &io), &base), 0.0);
}

/// A temporary folder removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("soragen-lora-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, tensors: &[(&str, Tensor)]) -> PathBuf {
        let path = self.0.join(name);
        let map: HashMap<String, Tensor> = tensors
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        candle_core::safetensors::save(&map, &path).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn randn(shape: &[usize]) -> Tensor {
    Tensor::randn(0f32, 0.2, shape, &Device::Cpu).unwrap()
}

fn weight(name: &str) -> Tensor {
    let weights = Weights::open_dir(&tiny()).unwrap();
    weights
        .var_builder(DType::F32, &Device::Cpu)
        .get_unchecked(name)
        .unwrap()
}

/// A full-weight `diff` (which diffusers does not apply outside the head) merges as
/// `W + strength * diff`, on a VACE block too: the same as a checkpoint with that weight changed.
#[test]
fn diff_merges_into_the_weight() {
    let scratch = Scratch::new("diff");
    let io = io();
    let name = "vace_blocks.1.attn1.to_v.weight";
    let original = "diffusion_model.vace_blocks.1.self_attn.v.diff";
    let w = weight(name);
    let delta = randn(w.dims());
    let lora = scratch.write("diff.safetensors", &[(original, delta.clone())]);
    let merged = run(&load(&tiny(), &[LoraSpec::new(&lora, 0.5)]).unwrap(), &io);

    // The same change written into a copy of the checkpoint.
    let weights = Weights::open_dir(&tiny()).unwrap();
    let vb = weights.var_builder(DType::F32, &Device::Cpu);
    let mut all: HashMap<String, Tensor> = HashMap::new();
    for tensor in weights.names() {
        all.insert(tensor.to_string(), vb.get_unchecked(tensor).unwrap());
    }
    all.insert(name.to_string(), (w + (delta * 0.5).unwrap()).unwrap());
    let folder = scratch.0.join("changed");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(tiny().join("config.json"), folder.join("config.json")).unwrap();
    candle_core::safetensors::save(&all, folder.join("diffusion_pytorch_model.safetensors"))
        .unwrap();
    let expected = run(&load(&folder, &[]).unwrap(), &io);
    assert!(
        diff(&merged, &expected) <= 1e-5,
        "{}",
        diff(&merged, &expected)
    );
}

/// Adapters in the original names load onto a checkpoint in the original names as onto the
/// diffusers one (the rename sits under the merge).
#[test]
fn adapters_apply_to_an_original_named_checkpoint() {
    let case = root().join("fixtures/transformer/vace_h2_d12_l3");
    let scratch = Scratch::new("original");
    let config: Config = read_config(&case.join("config.json")).unwrap();
    let dim = config.dim();
    let lora = scratch.write(
        "wan.safetensors",
        &[
            (
                "diffusion_model.blocks.1.cross_attn.k.lora_down.weight",
                randn(&[3, dim]),
            ),
            (
                "diffusion_model.blocks.1.cross_attn.k.lora_up.weight",
                randn(&[dim, 3]),
            ),
            (
                "diffusion_model.blocks.1.cross_attn.k.alpha",
                Tensor::new(1.5f32, &Device::Cpu).unwrap(),
            ),
            (
                "diffusion_model.vace_blocks.0.before_proj.diff_b",
                randn(&[dim]),
            ),
        ],
    );
    let specs = [LoraSpec::new(&lora, 1.2)];
    let fixture: HashMap<String, Tensor> =
        candle_core::safetensors::load(case.join("io.safetensors"), &Device::Cpu).unwrap();
    let scales: Vec<f64> = fixture["control_scale"]
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    let forward = |model: WanTransformer| {
        model
            .forward(
                &fixture["latents"],
                &fixture["timestep"],
                &fixture["text_embeddings"],
                Some((&fixture["control"], &scales)),
            )
            .unwrap()
    };
    let diffusers_named = forward(load(&case, &specs).unwrap());
    let original_named = forward(load(&case.join("original"), &specs).unwrap());
    assert_eq!(diff(&diffusers_named, &original_named), 0.0);
    assert!(
        diff(&diffusers_named, &fixture["output"]) > 1e-2,
        "the adapter should matter"
    );
}

fn load_error(tensors: &[(&str, Tensor)]) -> String {
    let scratch = Scratch::new("errors");
    let path = scratch.write("bad.safetensors", tensors);
    let message = match load(&tiny(), &[LoraSpec::new(&path, 1.0)]) {
        Ok(_) => panic!(
            "an adapter with {:?} loaded",
            tensors.iter().map(|t| t.0).collect::<Vec<_>>()
        ),
        Err(e) => e.to_string(),
    };
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains("bad.safetensors"), "{message}");
    message
}

#[test]
fn adapters_that_do_not_fit_fail_naming_the_key_and_file() {
    // An unknown key layout.
    let message = load_error(&[(
        "transformer.blocks.0.attn1.to_q.lora_mid.weight",
        randn(&[2, 32]),
    )]);
    assert!(
        message.contains("unknown LoRA key transformer.blocks.0.attn1.to_q.lora_mid.weight"),
        "{message}"
    );
    // A module the transformer does not have.
    let message = load_error(&[
        (
            "transformer.blocks.7.attn1.to_q.lora_A.weight",
            randn(&[2, 32]),
        ),
        (
            "transformer.blocks.7.attn1.to_q.lora_B.weight",
            randn(&[32, 2]),
        ),
    ]);
    assert!(
        message.contains("transformer.blocks.7.attn1.to_q.lora_A.weight")
            && message.contains("matches no tensor"),
        "{message}"
    );
    // A pair of the wrong size (the tiny model's dim is 32).
    let message = load_error(&[
        (
            "diffusion_model.blocks.0.ffn.0.lora_down.weight",
            randn(&[2, 48]),
        ),
        (
            "diffusion_model.blocks.0.ffn.0.lora_up.weight",
            randn(&[64, 2]),
        ),
    ]);
    assert!(
        message.contains("diffusion_model.blocks.0.ffn.0.lora_down.weight")
            && message.contains("does not fit"),
        "{message}"
    );
    // Half a pair.
    let message = load_error(&[("transformer.proj_out.lora_A.weight", randn(&[2, 32]))]);
    assert!(
        message.contains("transformer.proj_out.lora_A.weight"),
        "{message}"
    );
    // Ranks that disagree.
    let message = load_error(&[
        ("transformer.proj_out.lora_A.weight", randn(&[2, 32])),
        ("transformer.proj_out.lora_B.weight", randn(&[64, 3])),
    ]);
    assert!(message.contains("do not make a low-rank pair"), "{message}");
    // A diff of the wrong shape.
    let message = load_error(&[("diffusion_model.head.head.diff_b", randn(&[63]))]);
    assert!(
        message.contains("diffusion_model.head.head.diff_b"),
        "{message}"
    );
}

#[test]
fn lora_arguments_parse() {
    let spec = LoraSpec::parse("a/b.safetensors:0.75").unwrap();
    assert_eq!(
        (spec.path, spec.strength),
        (PathBuf::from("a/b.safetensors"), 0.75)
    );
    let spec = LoraSpec::parse("a/b.safetensors").unwrap();
    assert_eq!(
        (spec.path, spec.strength),
        (PathBuf::from("a/b.safetensors"), 1.0)
    );
    let spec = LoraSpec::parse("x.safetensors:-1").unwrap();
    assert_eq!(spec.strength, -1.0);
    let spec = LoraSpec::parse(r"C:\loras\x.safetensors").unwrap();
    assert_eq!(
        (spec.path, spec.strength),
        (PathBuf::from(r"C:\loras\x.safetensors"), 1.0)
    );
    assert!(LoraSpec::parse("x.safetensors:inf").is_err());
    assert!(LoraSpec::parse("").is_err());
}
