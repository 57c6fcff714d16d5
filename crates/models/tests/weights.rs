//! The weights loader: sharded and single files, dtype conversion, usage tracking, and one
//! clear error (naming the file and the tensor) for each kind of bad checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use soragen_models::weights::{Weights, parse_dtype, read_config};

/// A fresh, empty scratch folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("soragen-weights-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn save(path: &Path, tensors: &[(&str, Tensor)]) {
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    candle_core::safetensors::save(&map, path).unwrap();
}

fn linear_weights(dir: &Path) {
    let dev = Device::Cpu;
    save(
        &dir.join("diffusion_pytorch_model.safetensors"),
        &[
            (
                "proj.weight",
                Tensor::arange(0f32, 6., &dev)
                    .unwrap()
                    .reshape((2, 3))
                    .unwrap(),
            ),
            ("proj.bias", Tensor::new(&[1f32, -1.], &dev).unwrap()),
        ],
    );
}

fn error_of<T>(result: candle_core::Result<T>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn loads_a_single_file_and_tracks_usage() {
    let dir = scratch("single");
    linear_weights(&dir);
    let weights = Weights::open_dir(&dir).unwrap();
    let vb = weights.var_builder(DType::F32, &Device::Cpu);
    let linear = candle_nn::linear(3, 2, vb.pp("proj")).unwrap();
    let y = candle_core::Module::forward(
        &linear,
        &Tensor::new(&[[1f32, 1., 1.]], &Device::Cpu).unwrap(),
    )
    .unwrap();
    assert_eq!(y.to_vec2::<f32>().unwrap(), vec![vec![4., 11.]]);
    assert!(weights.unused().is_empty());
    weights.ensure_all_used().unwrap();
}

#[test]
fn reports_unused_tensors_by_name() {
    let dir = scratch("unused");
    linear_weights(&dir);
    let weights = Weights::open_dir(&dir).unwrap();
    let vb = weights.var_builder(DType::F32, &Device::Cpu);
    vb.get((2, 3), "proj.weight").unwrap();
    assert_eq!(weights.unused(), vec!["proj.bias".to_string()]);
    let message = error_of(weights.ensure_all_used());
    assert!(
        message.contains("unexpected tensors") && message.contains("proj.bias"),
        "{message}"
    );
}

#[test]
fn converts_to_the_requested_dtype() {
    let dir = scratch("dtype");
    linear_weights(&dir);
    let weights = Weights::open_dir(&dir).unwrap();
    let w = weights
        .var_builder(DType::BF16, &Device::Cpu)
        .get((2, 3), "proj.weight")
        .unwrap();
    assert_eq!(w.dtype(), DType::BF16);
    assert_eq!(
        w.to_dtype(DType::F32)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        15.
    );
    assert_eq!(parse_dtype("f16").unwrap(), DType::F16);
    assert!(error_of(parse_dtype("f8")).contains("f32, bf16 or f16"));
}

#[test]
fn loads_shards_named_by_an_index() {
    let dir = scratch("sharded");
    let dev = Device::Cpu;
    save(
        &dir.join("model-00001-of-00002.safetensors"),
        &[("a", Tensor::ones(2, DType::F32, &dev).unwrap())],
    );
    save(
        &dir.join("model-00002-of-00002.safetensors"),
        &[("b", Tensor::zeros(3, DType::F32, &dev).unwrap())],
    );
    // A stray file that the index does not name must not be read.
    save(
        &dir.join("stray.safetensors"),
        &[("c", Tensor::zeros(1, DType::F32, &dev).unwrap())],
    );
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        r#"{"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#,
    )
    .unwrap();
    let weights = Weights::open_dir(&dir).unwrap();
    let mut names: Vec<&str> = weights.names().collect();
    names.sort();
    assert_eq!(names, vec!["a", "b"]);

    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    let message = error_of(Weights::open_dir(&dir));
    assert!(
        message.contains("model-00002-of-00002.safetensors") && message.contains("missing"),
        "{message}"
    );
}

#[test]
fn missing_tensor_names_tensor_and_folder() {
    let dir = scratch("missing");
    linear_weights(&dir);
    let weights = Weights::open_dir(&dir).unwrap();
    let message = error_of(
        weights
            .var_builder(DType::F32, &Device::Cpu)
            .get(4, "proj.scale"),
    );
    assert!(
        message.contains("missing tensor proj.scale")
            && message.contains(&dir.display().to_string()),
        "{message}"
    );
}

#[test]
fn wrong_shape_names_file_and_tensor() {
    let dir = scratch("shape");
    linear_weights(&dir);
    let weights = Weights::open_dir(&dir).unwrap();
    let message = error_of(
        weights
            .var_builder(DType::F32, &Device::Cpu)
            .get((3, 2), "proj.weight"),
    );
    assert!(
        message.contains("diffusion_pytorch_model.safetensors"),
        "{message}"
    );
    assert!(
        message.contains("proj.weight has shape [2, 3], expected [3, 2]"),
        "{message}"
    );
}

#[test]
fn integer_tensor_where_weights_are_expected_is_refused() {
    let dir = scratch("int");
    save(
        &dir.join("m.safetensors"),
        &[("w", Tensor::new(&[1i64, 2], &Device::Cpu).unwrap())],
    );
    let weights = Weights::open_dir(&dir).unwrap();
    let message = error_of(weights.var_builder(DType::F32, &Device::Cpu).get(2, "w"));
    assert!(message.contains("tensor w has dtype I64"), "{message}");
}

#[test]
fn truncated_and_corrupt_files_are_refused_with_their_path() {
    let dir = scratch("corrupt");
    linear_weights(&dir);
    let file = dir.join("diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&file).unwrap();

    std::fs::write(&file, &bytes[..bytes.len() - 4]).unwrap();
    let message = error_of(Weights::open_dir(&dir));
    assert!(
        message.contains("not a valid safetensors file")
            && message.contains("diffusion_pytorch_model"),
        "{message}"
    );

    std::fs::write(&file, &bytes[..5]).unwrap();
    assert!(error_of(Weights::open_dir(&dir)).contains("not a valid safetensors file"));

    let mut garbage = bytes.clone();
    garbage[8] = b'#'; // the header JSON's opening brace
    std::fs::write(&file, &garbage).unwrap();
    assert!(error_of(Weights::open_dir(&dir)).contains("not a valid safetensors file"));
}

#[test]
fn missing_folder_or_weights_are_clear_errors() {
    let dir = scratch("absent");
    assert!(error_of(Weights::open_dir(&dir)).contains("no *.safetensors weights in"));
    let gone = dir.join("nothing-here");
    assert!(error_of(Weights::open_dir(&gone)).contains("does not exist"));
}

#[test]
fn config_field_of_the_wrong_type_names_the_file() {
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Config {
        num_layers: usize,
    }
    let dir = scratch("config");
    let path = dir.join("config.json");
    std::fs::write(&path, r#"{"num_layers": "thirty"}"#).unwrap();
    let message = error_of(read_config::<Config>(&path));
    assert!(
        message.contains("config.json") && message.contains("num_layers")
            || message.contains("invalid type"),
        "{message}"
    );
    assert!(error_of(read_config::<Config>(&dir.join("none.json"))).contains("cannot read config"));
}
