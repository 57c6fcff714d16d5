//! Parity of the umT5 tokenizer, `prompt_clean` and the umT5 encoder with transformers / diffusers,
//! on the fixtures of `models/reference/text.py`.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;
use soragen_models::text_encoder::{Config, UMT5EncoderModel};
use soragen_models::tokenizer::{T5Tokenizer, TokenizedBatch, prompt_clean};

const TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fixtures/text")
}

#[derive(Deserialize)]
struct TokenizerIo {
    prompts: Vec<String>,
    cleaned: Vec<String>,
    cases: Vec<TokenizerCase>,
}

#[derive(Deserialize)]
struct TokenizerCase {
    max_length: usize,
    clean: bool,
    input_ids: Vec<Vec<u32>>,
    attention_mask: Vec<Vec<u32>>,
}

fn tokenizer_io() -> TokenizerIo {
    let text =
        std::fs::read_to_string(fixtures().join("tokenizer/io.json")).expect("tokenizer/io.json");
    serde_json::from_str(&text).expect("io.json")
}

#[test]
fn prompt_clean_matches_diffusers() {
    let io = tokenizer_io();
    let mut failures = 0;
    for (prompt, expected) in io.prompts.iter().zip(&io.cleaned) {
        let cleaned = prompt_clean(prompt);
        if &cleaned != expected {
            failures += 1;
            println!("prompt_clean({prompt:?})\n  got      {cleaned:?}\n  expected {expected:?}");
        }
    }
    println!(
        "prompt_clean: {} prompts, {failures} mismatches",
        io.prompts.len()
    );
    assert_eq!(failures, 0);
}

#[test]
fn tokenizer_matches_transformers() {
    let io = tokenizer_io();
    // The converted tokenizer.json, and the one transformers' save_pretrained wrote (its rebuilt pipeline).
    for folder in ["tokenizer", "tokenizer_saved"] {
        let tokenizer =
            T5Tokenizer::from_file(fixtures().join(folder).join("tokenizer.json")).unwrap();
        let mut failures = 0;
        for case in &io.cases {
            let texts = if case.clean { &io.cleaned } else { &io.prompts };
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            let got = tokenizer.encode(&texts, case.max_length).unwrap();
            for (i, text) in texts.iter().enumerate() {
                if got.input_ids[i] != case.input_ids[i]
                    || got.attention_mask[i] != case.attention_mask[i]
                {
                    failures += 1;
                    println!(
                        "{folder} max_length {} {text:?}\n  got      {:?} {:?}\n  expected {:?} {:?}",
                        case.max_length,
                        got.input_ids[i],
                        got.attention_mask[i],
                        case.input_ids[i],
                        case.attention_mask[i]
                    );
                }
            }
            if case.clean {
                let prompts: Vec<&str> = io.prompts.iter().map(String::as_str).collect();
                let pipeline = tokenizer.encode_prompts(&prompts, case.max_length).unwrap();
                let expected = TokenizedBatch {
                    input_ids: case.input_ids.clone(),
                    attention_mask: case.attention_mask.clone(),
                };
                assert!(
                    pipeline == expected,
                    "{folder}: encode_prompts differs from the pipeline's ids"
                );
            }
        }
        println!(
            "{folder}: {} cases x {} prompts, {failures} mismatches",
            io.cases.len(),
            io.prompts.len()
        );
        assert_eq!(failures, 0);
    }
    // A pipeline folder's tokenizer/ subfolder.
    assert!(T5Tokenizer::from_pipeline_dir(fixtures()).is_ok());
    let tokenizer = T5Tokenizer::from_pipeline_dir(fixtures()).unwrap();
    assert!(tokenizer.encode(&["x"], 0).is_err());
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    soragen_models::max_abs_diff(a, b).unwrap()
}

fn encoder_cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("model.safetensors").exists())
        .collect();
    cases.sort();
    assert!(cases.len() >= 3, "encoder fixtures missing");
    cases
}

#[test]
fn encoder_matches_transformers() {
    let device = Device::Cpu;
    let tokenizer = T5Tokenizer::from_pipeline_dir(fixtures()).unwrap();
    for case in encoder_cases() {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let config: Config =
            serde_json::from_str(&std::fs::read_to_string(case.join("config.json")).unwrap())
                .unwrap();
        // SAFETY: the fixture files are not changed while the test maps them.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(
                &[case.join("model.safetensors")],
                DType::F32,
                &device,
            )
            .unwrap()
        };
        let model = UMT5EncoderModel::load(vb, &config).unwrap();
        let io = candle_core::safetensors::load(case.join("io.safetensors"), &device).unwrap();
        let (input_ids, attention_mask) = (&io["input_ids"], &io["attention_mask"]);

        let offsets = io["relative_position"].to_vec1::<i64>().unwrap();
        let buckets = io["relative_position_bucket"].to_vec1::<i64>().unwrap();
        for (&offset, &bucket) in offsets.iter().zip(&buckets) {
            assert_eq!(
                config.relative_position_bucket(offset) as i64,
                bucket,
                "{name}: bucket of {offset}"
            );
        }

        // The ids are the tokenizer's on the case's prompts.
        let prompts: Vec<String> =
            serde_json::from_str(&std::fs::read_to_string(case.join("prompts.json")).unwrap())
                .unwrap();
        let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
        let (_, max_length) = input_ids.dims2().unwrap();
        let (ids, mask) = tokenizer
            .encode_prompts(&prompts, max_length)
            .unwrap()
            .to_tensors(&device)
            .unwrap();
        let as_i64 = |t: &Tensor| t.to_dtype(DType::I64).unwrap().to_vec2::<i64>().unwrap();
        assert_eq!(as_i64(&ids), as_i64(input_ids), "{name}: token ids");
        assert_eq!(
            as_i64(&mask),
            as_i64(attention_mask),
            "{name}: attention mask"
        );

        let hidden = model.forward(input_ids, attention_mask).unwrap();
        let hidden_diff = max_abs_diff(&hidden, &io["last_hidden_state"]);
        let hidden_u32 = model.forward(&ids, &mask).unwrap();
        assert_eq!(
            max_abs_diff(&hidden, &hidden_u32),
            0.0,
            "{name}: u32 and i64 inputs differ"
        );
        let embeds = model
            .encode_prompt(input_ids, attention_mask, max_length)
            .unwrap();
        let embeds_diff = max_abs_diff(&embeds, &io["prompt_embeds"]);
        println!(
            "{name}: max |diff| last_hidden_state {hidden_diff:.3e}, prompt_embeds {embeds_diff:.3e}"
        );
        assert!(
            hidden_diff <= TOLERANCE,
            "{name}: last_hidden_state differs by {hidden_diff}"
        );
        assert!(
            embeds_diff <= TOLERANCE,
            "{name}: prompt_embeds differ by {embeds_diff}"
        );

        // Half precision runs the same code with f32 statistics / softmax: only rounding may differ.
        // SAFETY: the fixture files are not changed while the test maps them.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(
                &[case.join("model.safetensors")],
                DType::BF16,
                &device,
            )
            .unwrap()
        };
        let bf16 = UMT5EncoderModel::load(vb, &config).unwrap();
        let embeds_bf16 = bf16
            .encode_prompt(input_ids, attention_mask, max_length)
            .unwrap();
        assert_eq!(embeds_bf16.dtype(), DType::BF16);
        let bf16_diff = max_abs_diff(
            &embeds_bf16.to_dtype(DType::F32).unwrap(),
            &io["prompt_embeds"],
        );
        let scale = io["prompt_embeds"]
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        println!("{name}: bf16 max |diff| {bf16_diff:.3e} (max |value| {scale:.2})");
        assert!(
            bf16_diff <= 0.05 * scale,
            "{name}: bf16 prompt_embeds differ by {bf16_diff}"
        );

        // Longer max_sequence_length: more zero rows.
        let longer = model
            .encode_prompt(input_ids, attention_mask, max_length + 5)
            .unwrap();
        assert_eq!(
            max_abs_diff(&longer.narrow(1, 0, max_length).unwrap(), &embeds),
            0.0
        );
        assert_eq!(
            longer
                .narrow(1, max_length, 5)
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
    }
}

#[test]
fn unsupported_configs_are_errors() {
    let load = |json: &str| {
        let config: Config = serde_json::from_str(json).unwrap();
        UMT5EncoderModel::load(VarBuilder::zeros(DType::F32, &Device::Cpu), &config)
    };
    let tiny =
        r#""vocab_size": 8, "d_model": 4, "d_kv": 2, "num_heads": 2, "d_ff": 8, "num_layers": 1"#;
    let model = load(&format!("{{{tiny}}}")).unwrap();
    let ids = Tensor::new(&[[3u32, 8]], &Device::Cpu).unwrap();
    let mask = Tensor::new(&[[1u32, 1]], &Device::Cpu).unwrap();
    assert!(
        model.forward(&ids, &mask).is_err(),
        "token id 8 is outside a vocabulary of 8"
    );
    assert!(
        model
            .forward(&ids.to_dtype(DType::F32).unwrap(), &mask)
            .is_err()
    );
    assert!(model.forward(&ids, &mask.narrow(1, 0, 1).unwrap()).is_err());
    assert!(load(&format!(r#"{{{tiny}, "feed_forward_proj": "gated-gelu", "dense_act_fn": "relu", "is_gated_act": false}}"#)).is_ok());
    assert!(load(&format!(r#"{{{tiny}, "feed_forward_proj": "gated-mish"}}"#)).is_err());
    assert!(load(&format!(r#"{{{tiny}, "feed_forward_proj": "gelu-gated"}}"#)).is_err());
    assert!(load(&format!(r#"{{{tiny}, "is_decoder": true}}"#)).is_err());
    assert!(load(&format!(r#"{{{tiny}, "relative_attention_num_buckets": 32, "relative_attention_max_distance": 8}}"#)).is_err());
}
