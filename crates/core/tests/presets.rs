//! Sampling presets on the tiny model: a `distill-4` window costs 4 transformer evaluations
//! where the default (`quality`: 50 steps with guidance) costs 100, counted on the model.

use std::path::PathBuf;

use candle_core::{DType, Device};
use soragen_core::model::WanVace;
use soragen_core::presets::Preset;
use soragen_core::tasks::{TaskInputs, TaskKind, TaskParams, run_task};
use soragen_core::vace::Silent;

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny")
}

#[test]
fn a_distilled_preset_runs_4_forwards_per_window_where_the_default_runs_100() {
    let model = WanVace::load(&tiny(), DType::F32, &Device::Cpu).unwrap();
    let kind = TaskKind::Generate {
        frames: 5,
        width: 32,
        height: 32,
    };
    let forwards = |params: &TaskParams| {
        let before = model.transformer_forwards();
        run_task(&model, &kind, &TaskInputs::default(), params, &Silent).unwrap();
        model.transformer_forwards() - before
    };
    let mut params = TaskParams {
        prompt: "a kite".into(),
        ..TaskParams::default()
    };
    assert_eq!(forwards(&params), 100);
    Preset::named("quality").unwrap().apply(&mut params);
    assert_eq!(forwards(&params), 100);
    Preset::named("distill-4").unwrap().apply(&mut params);
    assert_eq!((params.steps, params.guidance), (4, 1.0));
    assert_eq!(forwards(&params), 4);
    assert!(
        Preset::named("fast")
            .unwrap_err()
            .to_string()
            .contains("distill-4")
    );
}
