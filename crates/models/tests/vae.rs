//! Parity of `AutoencoderKLWan` with diffusers on the fixtures of `models/reference/vae.py`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use soragen_models::vae::{AutoencoderKLWan, Config, Tiling};

const TOLERANCE: f32 = 1e-4;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fixtures/vae")
}

fn case_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures/vae exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.join("config.json").exists())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 3,
        "expected at least 3 VAE fixture cases, found {}",
        dirs.len()
    );
    dirs
}

fn read_config(dir: &Path) -> Config {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

fn load_case(dir: &Path) -> (AutoencoderKLWan, HashMap<String, Tensor>) {
    load_case_as(dir, DType::F32)
}

fn load_case_as(dir: &Path, dtype: DType) -> (AutoencoderKLWan, HashMap<String, Tensor>) {
    let config = read_config(dir);
    let weights = dir.join("diffusion_pytorch_model.safetensors");
    // SAFETY: the fixture files are not changed while the test maps them.
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&[weights], dtype, &Device::Cpu).unwrap() };
    let vae = AutoencoderKLWan::load(vb, &config).unwrap();
    let io = candle_core::safetensors::load(dir.join("io.safetensors"), &Device::Cpu).unwrap();
    (vae, io)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    soragen_models::max_abs_diff(a, b).unwrap()
}

/// Names `prefix{i}.suffix` present in `io`, in order.
fn indexed<'a>(
    io: &'a HashMap<String, Tensor>,
    prefix: &str,
    suffix: &str,
) -> Vec<(usize, &'a Tensor)> {
    (0..)
        .map_while(|i| io.get(&format!("{prefix}{i}.{suffix}")).map(|t| (i, t)))
        .collect()
}

fn check(case: &str, what: &str, ours: &Tensor, reference: &Tensor) -> f32 {
    let diff = max_abs_diff(ours, reference);
    println!(
        "{case} {what}: shape {:?}, max |diff| {diff:.3e}",
        reference.dims()
    );
    assert!(
        diff <= TOLERANCE,
        "{case} {what}: max |diff| {diff} > {TOLERANCE}"
    );
    diff
}

#[test]
fn encode_matches_reference() {
    let mut checked = 0;
    for dir in case_dirs() {
        let case = dir.file_name().unwrap().to_string_lossy().into_owned();
        let (vae, io) = load_case(&dir);
        for (i, video) in indexed(&io, "enc", "video") {
            let ours = vae.encode(video).unwrap();
            check(
                &case,
                &format!("enc{i}"),
                &ours,
                &io[&format!("enc{i}.latents")],
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} encode fixtures");
}

#[test]
fn decode_matches_reference() {
    let mut checked = 0;
    for dir in case_dirs() {
        let case = dir.file_name().unwrap().to_string_lossy().into_owned();
        let (vae, io) = load_case(&dir);
        for (i, latents) in indexed(&io, "dec", "latents") {
            let ours = vae.decode(latents).unwrap();
            check(
                &case,
                &format!("dec{i}"),
                &ours,
                &io[&format!("dec{i}.video")],
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} decode fixtures");
}

/// The cases generated with diffusers' `enable_tiling`, with their tiling.
fn tiled_cases() -> Vec<(String, Tiling, AutoencoderKLWan, HashMap<String, Tensor>)> {
    let cases: Vec<_> = case_dirs()
        .into_iter()
        .filter(|dir| dir.join("tiling.json").exists())
        .map(|dir| {
            let tiling: Tiling =
                serde_json::from_str(&std::fs::read_to_string(dir.join("tiling.json")).unwrap())
                    .unwrap();
            let case = dir.file_name().unwrap().to_string_lossy().into_owned();
            let (vae, io) = load_case(&dir);
            (case, tiling, vae, io)
        })
        .collect();
    assert!(!cases.is_empty(), "no tiled VAE fixture");
    cases
}

#[test]
fn tiled_decode_matches_reference() {
    let mut checked = 0;
    for (case, tiling, vae, io) in tiled_cases() {
        for (i, latents) in indexed(&io, "dec", "latents") {
            let reference = &io[&format!("tiled_dec{i}.video")];
            let ours = vae.decode_tiled(latents, &tiling).unwrap();
            check(&case, &format!("tiled_dec{i}"), &ours, reference);
            // The fixture's tiles overlap and change the frames: untiled decoding fails it.
            let untiled = max_abs_diff(&vae.decode(latents).unwrap(), reference);
            assert!(
                untiled > 1e-2,
                "{case} dec{i}: tiles made no difference ({untiled})"
            );
            checked += 1;
        }
    }
    assert!(checked >= 1);
}

#[test]
fn tiled_encode_matches_reference() {
    let mut checked = 0;
    for (case, tiling, vae, io) in tiled_cases() {
        for (i, video) in indexed(&io, "enc", "video") {
            let reference = &io[&format!("tiled_enc{i}.latents")];
            let ours = vae.encode_tiled(video, &tiling).unwrap();
            check(&case, &format!("tiled_enc{i}"), &ours, reference);
            let untiled = max_abs_diff(&vae.encode(video).unwrap(), reference);
            assert!(
                untiled > 1e-2,
                "{case} enc{i}: tiles made no difference ({untiled})"
            );
            checked += 1;
        }
    }
    assert!(checked >= 1);
}

/// One tile covering the whole frame is the untiled computation, value for value.
#[test]
fn a_single_tile_is_the_untiled_pass() {
    let (vae, io) = load_case(&fixtures_dir().join("wan21_like"));
    let whole = Tiling::default();
    let latents = &io["dec0.latents"];
    let diff = max_abs_diff(
        &vae.decode_tiled(latents, &whole).unwrap(),
        &vae.decode(latents).unwrap(),
    );
    assert_eq!(diff, 0.0);
    let video = &io["enc0.video"];
    let diff = max_abs_diff(
        &vae.encode_tiled(video, &whole).unwrap(),
        &vae.encode(video).unwrap(),
    );
    assert_eq!(diff, 0.0);
    let bad = Tiling::square(32, 20);
    let err = vae.decode_tiled(latents, &bad).unwrap_err().to_string();
    assert!(err.contains("multiples of 8"), "{err}");
}

#[test]
fn latent_normalisation_matches_pipeline() {
    for dir in case_dirs() {
        let case = dir.file_name().unwrap().to_string_lossy().into_owned();
        let (vae, io) = load_case(&dir);
        let normalized = vae.normalize_latents(&io["norm.latents"]).unwrap();
        check(&case, "normalize", &normalized, &io["norm.normalized"]);
        let denormalized = vae.denormalize_latents(&io["norm.normalized"]).unwrap();
        check(
            &case,
            "denormalize",
            &denormalized,
            &io["norm.denormalized"],
        );
    }
}

/// Half-precision weights run end to end (norms in f32) and stay close to the f32 reference.
#[test]
fn half_precision_runs() {
    let dir = fixtures_dir().join("wan21_like");
    for (dtype, tolerance) in [(DType::F16, 5e-3), (DType::BF16, 5e-2)] {
        let (vae, io) = load_case_as(&dir, dtype);
        let decoded = vae.decode(&io["dec0.latents"]).unwrap();
        assert_eq!(decoded.dtype(), dtype);
        let diff = max_abs_diff(&decoded.to_dtype(DType::F32).unwrap(), &io["dec0.video"]);
        println!("{dtype:?} decode: max |diff| {diff:.3e}");
        assert!(diff <= tolerance, "{dtype:?} decode: {diff}");
        let encoded = vae.encode(&io["enc0.video"]).unwrap();
        let diff = max_abs_diff(&encoded.to_dtype(DType::F32).unwrap(), &io["enc0.latents"]);
        println!("{dtype:?} encode: max |diff| {diff:.3e}");
        assert!(diff <= tolerance, "{dtype:?} encode: {diff}");
    }
}

#[test]
fn bad_inputs_are_errors() {
    let dir = fixtures_dir().join("wan21_like");
    let (vae, _) = load_case(&dir);
    let video = |f: usize, h: usize, w: usize| {
        Tensor::zeros((1, 3, f, h, w), DType::F32, &Device::Cpu).unwrap()
    };
    assert!(
        vae.encode(&video(6, 16, 16)).is_err(),
        "6 frames is not 4n + 1"
    );
    assert!(
        vae.encode(&video(5, 12, 16)).is_err(),
        "height not a multiple of 8"
    );
    assert!(
        vae.encode(&video(5, 16, 20)).is_err(),
        "width not a multiple of 8"
    );
    assert!(
        vae.encode(&Tensor::zeros((1, 4, 5, 16, 16), DType::F32, &Device::Cpu).unwrap())
            .is_err()
    );
    assert!(
        vae.decode(&Tensor::zeros((1, 4, 2, 2, 2), DType::F32, &Device::Cpu).unwrap())
            .is_err()
    );
    assert!(
        vae.normalize_latents(&Tensor::zeros((1, 4, 2, 2, 2), DType::F32, &Device::Cpu).unwrap())
            .is_err()
    );
}

#[test]
fn encoder_attention_is_refused_like_the_reference() {
    let (vae, _) = load_case(&fixtures_dir().join("encoder_attention"));
    let video = Tensor::zeros((1, 3, 1, 16, 16), DType::F32, &Device::Cpu).unwrap();
    let err = vae.encode(&video).unwrap_err().to_string();
    assert!(err.contains("attn_scales"), "{err}");
}

#[test]
fn wan22_configs_are_refused() {
    let dir = fixtures_dir().join("wan21_like");
    let weights = dir.join("diffusion_pytorch_model.safetensors");
    for (field, value) in [("is_residual", "true"), ("patch_size", "2")] {
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        json[field] = serde_json::from_str(value).unwrap();
        let config: Config = serde_json::from_value(json).unwrap();
        // SAFETY: the fixture files are not changed while the test maps them.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &Device::Cpu).unwrap()
        };
        let err = AutoencoderKLWan::load(vb, &config)
            .err()
            .expect("Wan2.2 config must be refused")
            .to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
}

#[test]
fn default_config_is_wan21() {
    let config: Config = serde_json::from_str("{}").unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(config.spatial_compression(), 8);
    assert_eq!(config.temporal_compression(), 4);
    assert_eq!(config.latent_frames(81).unwrap(), 21);
    assert!(config.latent_frames(80).is_err());
}
