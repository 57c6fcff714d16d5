//! The VACE pipeline equals diffusers' `WanVACEPipeline` run with the same initial latents on
//! the same tiny random models (fixtures from `models/reference/pipeline.py`): several configs,
//! frame counts, sizes and mask shapes, with and without guidance; and with reference images
//! (`reference_*`: one, two, three references of odd sizes, a mask of each kind).
//!
//! Where diffusers' reference handling has known problems, we do this:
//! - issue #11779 (the references' mask padding went after the video's mask): fixed in the
//!   diffusers we match; the padding goes in front, as the official VACE code does.
//! - issue #14170 / PR #14170 (`output_type="latent"` kept the reference frames): we never return
//!   latents; the reference frames are always dropped before decoding.
//! - More references than the clip has latent frames (e.g. one frame and three references):
//!   diffusers pads the mask with `zeros_like(mask[:, :n])`, too few frames, and fails; we pad
//!   one frame per reference (`more_references_than_latent_frames`).
//! - diffusers puts each reference in front of those before it (context order: references
//!   reversed, then the video; the official VACE code keeps the given order); we match diffusers.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use soragen_core::model::WanVace;
use soragen_core::step_cache::StepCache;
use soragen_core::vace::{Noise, Observer, Sampling, Silent, VaceInput, read_latents};
use soragen_core::video::Video;
use soragen_models::max_abs_diff;

const TOLERANCE: f32 = 1e-3;
/// The random tiny models barely depend on the references: putting them in the wrong order
/// changes the frames by only 2e-4 (reference_three) and 8e-4 (reference_two), under
/// TOLERANCE; these cases reach ~2e-6, so they are held to this.
const REFERENCE_TOLERANCE: f32 = 5e-5;

fn cases() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/fixtures/pipeline");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 6,
        "pipeline fixtures missing in {}",
        root.display()
    );
    cases
}

struct Case {
    model: std::sync::Arc<WanVace>,
    request: serde_json::Value,
    input: VaceInput,
    latents: Tensor,
    expected: Tensor,
}

fn load_case(case: &Path) -> Case {
    let request: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(case.join("request.json")).unwrap()).unwrap();
    let device = Device::Cpu;
    let model = WanVace::load(
        &case.join(request["model"].as_str().unwrap()),
        DType::F32,
        &device,
    )
    .unwrap();
    let video = Video::read(&case.join("video")).unwrap();
    let masks = Video::read(&case.join("mask")).unwrap();
    let mut input = VaceInput::from_frames(&video, &masks.mask_bits(), &device).unwrap();
    if case.join("references").is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(case.join("references"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let references: Vec<Video> = files
            .iter()
            .map(|f| Video::read_image(f).unwrap())
            .collect();
        input = input.with_references(&references).unwrap();
    }
    let expected =
        candle_core::safetensors::load(case.join("expected.safetensors"), &device).unwrap();
    Case {
        model,
        input,
        latents: read_latents(&case.join("latents.safetensors"), &device).unwrap(),
        expected: expected["frames"].clone(),
        request,
    }
}

impl Case {
    /// The frames of the fixture's request, with `cache`.
    fn generate(&self, cache: Option<StepCache>, observer: &dyn Observer) -> Tensor {
        let request = &self.request;
        let sampling = Sampling {
            steps: request["steps"].as_u64().unwrap() as usize,
            guidance: request["guidance"].as_f64().unwrap(),
            flow_shift: None,
            conditioning_scale: 1.0,
            noise: Noise::Latents(self.latents.clone()),
            cache,
        };
        let prompt = self
            .model
            .encode_prompt(request["prompt"].as_str().unwrap())
            .unwrap();
        let negative = self
            .model
            .encode_prompt(request["negative"].as_str().unwrap())
            .unwrap();
        let frames = self
            .model
            .generate(&self.input, &prompt, Some(&negative), &sampling, observer)
            .unwrap();
        assert_eq!(frames.dims(), self.expected.dims());
        frames
    }
}

fn run_case(case: &Path) -> f32 {
    let case = load_case(case);
    max_abs_diff(&case.generate(None, &Silent), &case.expected).unwrap()
}

#[test]
fn matches_diffusers_wan_vace_pipeline() {
    for case in cases() {
        let diff = run_case(&case);
        println!(
            "{}: max |diff| = {diff:e}",
            case.file_name().unwrap().to_string_lossy()
        );
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let tolerance = if name.starts_with("reference_") {
            REFERENCE_TOLERANCE
        } else {
            TOLERANCE
        };
        assert!(
            diff <= tolerance,
            "{}: max |diff| {diff} > {tolerance}",
            case.display()
        );
    }
}

/// After each denoising step, how many forwards so far reused the step cache's work.
struct CachedForwards<'a> {
    model: &'a WanVace,
    per_step: std::cell::RefCell<Vec<usize>>,
}

impl Observer for CachedForwards<'_> {
    fn step(&self, _: usize, _: usize) {
        self.per_step
            .borrow_mut()
            .push(self.model.transformer_cached_forwards());
    }
}

/// diffusers' First Block Cache on the tiny pipeline (`models/reference/cache.py`): the same
/// frames (within 1e-4) and the same skipped steps, per guidance branch ("cond", "uncond": each
/// has its own cache, and in `first_block_extend` they skip different steps), counted on the
/// model as the preset test counts forwards. The cache must change the frames, or the test
/// could not tell a cache that never skips.
#[test]
fn first_block_cache_matches_diffusers_and_skips_the_same_steps() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/fixtures/cache");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert_eq!(
        cases.len(),
        2,
        "cache fixtures missing in {}",
        root.display()
    );
    for dir in cases {
        let case = load_case(&dir);
        let threshold = case.request["threshold"].as_f64().unwrap();
        let decisions: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("decisions.json")).unwrap())
                .unwrap();
        let steps = case.request["steps"].as_u64().unwrap() as usize;
        // diffusers' decisions as skips per step, summed over the branches.
        let mut skipped_per_step = vec![0; steps];
        for branch in decisions.as_object().unwrap().values() {
            let branch = branch.as_array().unwrap();
            assert_eq!(branch.len(), steps);
            for (step, decision) in branch.iter().enumerate() {
                if let Some(difference) = decision["difference"].as_f64() {
                    // A decision on the threshold would hang on rounding, not on the method.
                    assert!((difference - threshold).abs() > 1e-3, "{}", dir.display());
                }
                skipped_per_step[step] += usize::from(decision["decision"] == "skipped");
            }
        }
        assert!(skipped_per_step.iter().any(|&s| s > 0) && skipped_per_step.contains(&0));

        let counter = CachedForwards {
            model: &case.model,
            per_step: Default::default(),
        };
        // The model may be shared with the other tests of this process.
        let before = case.model.transformer_cached_forwards();
        let cached = case.generate(Some(StepCache::FirstBlock { threshold }), &counter);
        let counts = counter.per_step.into_inner();
        let ours: Vec<usize> = counts
            .iter()
            .scan(before, |before, &now| {
                Some(now - std::mem::replace(before, now))
            })
            .collect();
        assert_eq!(ours, skipped_per_step, "{}: skips per step", dir.display());

        let diff = max_abs_diff(&cached, &case.expected).unwrap();
        println!(
            "{}: max |diff| = {diff:e}, skips per step {ours:?}",
            dir.display()
        );
        assert!(diff <= 1e-4, "{}: max |diff| {diff} > 1e-4", dir.display());
        let uncached = case.generate(None, &Silent);
        assert!(max_abs_diff(&cached, &uncached).unwrap() > 1e-3);
    }
}

/// One frame (one latent frame) and three references: the context gets one zero mask frame per
/// reference (where diffusers fails), and the output is the clip's one frame.
#[test]
fn more_references_than_latent_frames() {
    let case = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/fixtures/pipeline/single_frame");
    let device = Device::Cpu;
    let model = WanVace::load(&case.join("model"), DType::F32, &device).unwrap();
    let video = Video::read(&case.join("video")).unwrap();
    let masks = Video::read(&case.join("mask")).unwrap();
    let refs = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/fixtures/pipeline/reference_three/references");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&refs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let references: Vec<Video> = files
        .iter()
        .map(|f| Video::read_image(f).unwrap())
        .collect();
    let input = VaceInput::from_frames(&video, &masks.mask_bits(), &device)
        .unwrap()
        .with_references(&references)
        .unwrap();
    let context = model.vace_context(&input).unwrap();
    assert_eq!(context.dim(2).unwrap(), 4);
    let sampling = Sampling {
        steps: 2,
        guidance: 1.0,
        flow_shift: None,
        conditioning_scale: 1.0,
        noise: Noise::Seed(1),
        cache: None,
    };
    let prompt = model.encode_prompt("a cat").unwrap();
    let frames = model
        .generate(&input, &prompt, None, &sampling, &Silent)
        .unwrap();
    assert_eq!(frames.dims(), &[1, video.height, video.width, 3]);
    // Latents given without the references' frames are refused, naming the shape needed.
    let short = candle_core::Tensor::zeros(
        (1, 16, 1, video.height / 8, video.width / 8),
        DType::F32,
        &device,
    )
    .unwrap();
    let sampling = Sampling {
        noise: Noise::Latents(short),
        cache: None,
        ..sampling
    };
    let message = model
        .generate(&input, &prompt, None, &sampling, &Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("[1, 16, 4,"), "{message}");
}

/// The fitting of a reference: a frame-sized multiple-of-8 image is used as it is; a smaller one
/// of another aspect is scaled to fit and centred on white.
#[test]
fn references_are_fitted_as_diffusers_fits_them() {
    use soragen_core::vace::fit_reference;
    use soragen_core::video::Frame;
    let image = |w: usize, h: usize| {
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 256) as u8).collect();
        Video {
            frames: vec![Frame::from_8bit(&rgb, None)],
            ..Video::new(w, h, None)
        }
    };
    let same = image(16, 8);
    let fitted = fit_reference(&same, 16, 8).unwrap();
    let expected: Vec<f32> = (0..3)
        .flat_map(|c| (0..8 * 16).map(move |p| c + 3 * p))
        .map(|i| 2.0 * (same.frames[0].rgb_8bit()[i] as f32 / 255.0) - 1.0)
        .collect();
    assert_eq!(fitted, expected);
    // 8x8 into 32x16: scaled to 16x16, 8 white columns each side.
    let fitted = fit_reference(&image(8, 8), 32, 16).unwrap();
    for c in 0..3 {
        for y in 0..16 {
            for x in (0..8).chain(24..32) {
                assert_eq!(fitted[(c * 16 + y) * 32 + x], 1.0);
            }
        }
    }
    assert!(
        fit_reference(&image(7, 30), 32, 16)
            .unwrap_err()
            .to_string()
            .contains("too small")
    );
}

#[test]
fn a_model_is_loaded_once_per_process() {
    let tiny = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny");
    let first = WanVace::shared(&tiny, DType::F32).unwrap();
    let second = WanVace::shared(&tiny.join("../tiny"), DType::F32).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &second));
    let other_dtype = WanVace::shared(&tiny, DType::BF16).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&first, &other_dtype));
}

/// A copy of the tiny model in a scratch folder, to damage.
fn tiny_copy(name: &str) -> PathBuf {
    let tiny = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny");
    let dir = std::env::temp_dir().join(format!("soragen-model-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for part in [
        "",
        "transformer",
        "vae",
        "text_encoder",
        "tokenizer",
        "scheduler",
    ] {
        std::fs::create_dir_all(dir.join(part)).unwrap();
        for entry in std::fs::read_dir(tiny.join(part)).unwrap() {
            let entry = entry.unwrap();
            if entry.path().is_file() {
                std::fs::copy(entry.path(), dir.join(part).join(entry.file_name())).unwrap();
            }
        }
    }
    dir
}

fn load_error(folder: &Path) -> String {
    WanVace::load(folder, DType::F32, &Device::Cpu)
        .err()
        .expect("loading should fail")
        .to_string()
}

#[test]
fn bad_model_folders_are_clear_errors() {
    let message = load_error(Path::new("/nowhere/model"));
    assert!(message.contains("no model_index.json"), "{message}");

    let missing_vae = tiny_copy("no-vae");
    std::fs::remove_dir_all(missing_vae.join("vae")).unwrap();
    let message = load_error(&missing_vae);
    assert!(message.contains("missing the vae/ folder"), "{message}");

    let corrupt = tiny_copy("corrupt");
    let weights = corrupt.join("transformer/diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let message = load_error(&corrupt);
    assert!(
        message.contains("diffusion_pytorch_model.safetensors")
            && message.contains("not a valid safetensors"),
        "{message}"
    );

    let bad_config = tiny_copy("bad-config");
    let config = bad_config.join("transformer/config.json");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\"num_layers\": 3", "\"num_layers\": \"three\"");
    std::fs::write(&config, text).unwrap();
    let message = load_error(&bad_config);
    assert!(
        message.contains("transformer/config.json") && message.contains("invalid type"),
        "{message}"
    );

    // Weights of another shape (a VAE with other channel counts) are named with their file.
    let mismatched = tiny_copy("mismatched");
    for file in ["config.json", "diffusion_pytorch_model.safetensors"] {
        let other = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../models/fixtures/pipeline/wide_background/model/vae");
        std::fs::copy(other.join(file), mismatched.join("vae").join(file)).unwrap();
    }
    std::fs::write(
        mismatched.join("vae/config.json"),
        std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny/vae/config.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let message = load_error(&mismatched);
    assert!(
        message.contains("vae") && message.contains("shape"),
        "{message}"
    );
}

/// A transformer stored under the original Wan release names (`blocks.N.self_attn.q`, ...)
/// loads through the same folder loader and gives the same frames.
#[test]
fn original_wan_tensor_names_give_the_same_frames() {
    let case = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/fixtures/pipeline/tiny_extend");
    let renamed = tiny_copy("original-names");
    let file = renamed.join("transformer/diffusion_pytorch_model.safetensors");
    let tensors = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    let original: std::collections::HashMap<String, candle_core::Tensor> = tensors
        .into_iter()
        .map(|(name, t)| {
            (
                soragen_models::transformer::diffusers_to_original_name(&name),
                t,
            )
        })
        .collect();
    assert!(original.contains_key("blocks.0.self_attn.q.weight"));
    candle_core::safetensors::save(&original, &file).unwrap();

    let device = Device::Cpu;
    let video = Video::read(&case.join("video")).unwrap();
    let masks = Video::read(&case.join("mask")).unwrap();
    let input = VaceInput::from_frames(&video, &masks.mask_bits(), &device).unwrap();
    let run = |folder: &Path| {
        let model = WanVace::load(folder, DType::F32, &device).unwrap();
        let sampling = Sampling {
            steps: 2,
            guidance: 1.0,
            flow_shift: None,
            conditioning_scale: 1.0,
            noise: Noise::Seed(3),
            cache: None,
        };
        let prompt = model.encode_prompt("a harbour at dawn").unwrap();
        model
            .generate(&input, &prompt, None, &sampling, &Silent)
            .unwrap()
    };
    let tiny = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny");
    assert_eq!(max_abs_diff(&run(&tiny), &run(&renamed)).unwrap(), 0.0);
}
