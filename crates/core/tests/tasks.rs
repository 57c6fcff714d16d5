//! The editing tasks on the tiny random model: frame accounting, kept frames and pixels
//! bit-identical to the source, determinism, several windows, and clear errors.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;

use candle_core::DType;
use soragen_core::model::WanVace;
use soragen_core::tasks::{
    TaskInputs, TaskKind, TaskOutput, TaskParams, run_task, whole_frame_windows,
};
use soragen_core::vace::Observer;
use soragen_core::video::{Frame, Video};
use soragen_core::{Error, Result};

fn tiny() -> Arc<WanVace> {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny");
    WanVace::shared(&folder, DType::F32).unwrap()
}

/// Few steps, no guidance, a tiny working size and short windows.
fn params() -> TaskParams {
    TaskParams {
        prompt: "a red car".into(),
        steps: 2,
        guidance: 1.0,
        context_frames: 2,
        working_pixels: Some(32 * 16),
        window_frames: 9,
        ..TaskParams::default()
    }
}

/// A dark, slowly moving gradient of a size the model cannot take as it is (40x20), at the
/// model's 16 fps so that frames are fed one to one.
fn clip(frames: usize, seed: usize) -> Video {
    let (width, height) = (40, 20);
    let mut video = Video::new(width, height, Some((16, 1)));
    for f in 0..frames {
        let rgb: Vec<u8> = (0..width * height)
            .flat_map(|i| {
                let (x, y) = (i % width, i / width);
                [
                    (20 + x + f + seed) as u8,
                    (30 + y * 2) as u8,
                    (40 + (x + y + 3 * f) % 16) as u8,
                ]
            })
            .collect();
        video.frames.push(Frame::from_8bit(&rgb, None));
    }
    video
}

fn with_clip(clip: Video) -> TaskInputs {
    TaskInputs {
        clip: Some(clip),
        ..TaskInputs::default()
    }
}

/// Records window notifications and steps.
#[derive(Default)]
struct Recorder {
    windows: RefCell<Vec<(usize, usize)>>,
    steps: RefCell<usize>,
}

impl Observer for Recorder {
    fn step(&self, _: usize, _: usize) {
        *self.steps.borrow_mut() += 1;
    }
    fn window(&self, index: usize, count: usize) {
        self.windows.borrow_mut().push((index, count));
    }
}

fn run(kind: TaskKind, inputs: &TaskInputs, params: &TaskParams) -> Result<TaskOutput> {
    run_task(&tiny(), &kind, inputs, params, &Recorder::default())
}

fn differs(a: &Frame, b: &Frame) -> bool {
    a.rgb != b.rgb
}

/// The frame's 8-bit levels v as v / 3 + 10: a dark, low-contrast frame.
fn darker(frame: &Frame) -> Frame {
    let levels: Vec<u8> = frame.rgb_8bit().iter().map(|v| v / 3 + 10).collect();
    Frame::from_8bit(&levels, None)
}

#[test]
fn extend_forward_appends_new_frames_after_the_untouched_clip() {
    let source = clip(6, 0);
    let out = run(
        TaskKind::ExtendForward { frames: 3 },
        &with_clip(source.clone()),
        &params(),
    )
    .unwrap();
    assert_eq!(out.video.len(), 9);
    assert_eq!(
        (out.video.width, out.video.height, out.video.fps),
        (40, 20, Some((16, 1)))
    );
    assert_eq!(
        out.video.frames[..6],
        source.frames[..],
        "kept frames must be the source's bytes"
    );
    assert!(differs(&out.video.frames[6], &source.frames[5]));
    assert_eq!(out.record.generated, vec![6..9]);
    assert_eq!(out.record.task, "extend-forward");
    assert_eq!(out.record.params, params());
}

#[test]
fn extend_backward_puts_new_frames_before_the_clip() {
    let source = clip(5, 1);
    let out = run(
        TaskKind::ExtendBackward { frames: 4 },
        &with_clip(source.clone()),
        &params(),
    )
    .unwrap();
    assert_eq!(out.video.len(), 9);
    assert_eq!(out.video.frames[4..], source.frames[..]);
    assert_eq!(out.record.generated, vec![0..4]);
}

#[test]
fn insert_is_a_then_new_frames_then_b() {
    let (a, b) = (clip(4, 0), clip(3, 50));
    let inputs = TaskInputs {
        clip: Some(a.clone()),
        next: Some(b.clone()),
        mask: None,
        references: Vec::new(),
        previous: Vec::new(),
    };
    let out = run(TaskKind::Insert { frames: 2 }, &inputs, &params()).unwrap();
    assert_eq!(out.video.len(), 9);
    assert_eq!(out.video.frames[..4], a.frames[..]);
    assert_eq!(out.video.frames[6..], b.frames[..]);
    assert_eq!(out.record.generated, vec![4..6]);
}

#[test]
fn generate_makes_the_requested_size_and_count_at_16_fps() {
    let out = run(
        TaskKind::Generate {
            frames: 3,
            width: 24,
            height: 20,
        },
        &TaskInputs::default(),
        &params(),
    )
    .unwrap();
    assert_eq!(
        (out.video.len(), out.video.width, out.video.height),
        (3, 24, 20)
    );
    assert_eq!(out.video.fps, Some((16, 1)));
    assert_eq!(out.record.generated, vec![0..3]);
}

/// Left 16 columns background, the rest subject; the second frame has no background at all.
fn half_masks(source: &Video) -> Vec<Vec<u8>> {
    let left = (0..source.width * source.height)
        .map(|i| if i % source.width < 16 { 255 } else { 0 })
        .collect();
    vec![
        left,
        vec![0; source.width * source.height],
        vec![255; source.width * source.height],
    ]
}

#[test]
fn replace_background_keeps_the_subject_bytes_and_frames_without_background() {
    let source = clip(3, 0);
    let inputs = TaskInputs {
        mask: Some(half_masks(&source)),
        ..with_clip(source.clone())
    };
    let params = TaskParams {
        mask_dilation: 2,
        mask_feather: 1,
        ..params()
    };
    let out = run(TaskKind::ReplaceBackground, &inputs, &params).unwrap();
    assert_eq!(out.video.len(), 3);
    // Subject beyond dilation + feather: the source's bytes.
    let first = (&out.video.frames[0].rgb, &source.frames[0].rgb);
    for y in 0..source.height {
        for x in 0..source.width {
            let at = (y * source.width + x) * 3;
            if x > 16 + 2 {
                assert_eq!(
                    first.0[at..at + 3],
                    first.1[at..at + 3],
                    "subject pixel ({x}, {y}) changed"
                );
            }
        }
    }
    let changed = (0..16)
        .filter(|x| first.0[x * 3..x * 3 + 3] != first.1[x * 3..x * 3 + 3])
        .count();
    assert!(
        changed > 8,
        "background barely replaced ({changed} of 16 pixels)"
    );
    assert_eq!(
        out.video.frames[1], source.frames[1],
        "a frame without background is kept as it is"
    );
    assert!(
        differs(&out.video.frames[2], &source.frames[2]),
        "an all-white mask regenerates the frame"
    );
    assert_eq!(out.record.generated, vec![0..1, 2..3]);
}

#[test]
fn replace_background_takes_the_alpha_channel_without_a_mask() {
    let mut source = clip(2, 0);
    for frame in &mut source.frames {
        frame.alpha = Some(
            (0..40 * 20)
                .map(|i| if i % 40 < 16 { 0.0 } else { 1.0 })
                .collect(),
        );
    }
    let out = run(
        TaskKind::ReplaceBackground,
        &with_clip(source.clone()),
        &params(),
    )
    .unwrap();
    assert_eq!(out.record.generated, vec![0..2]);
    let last = 40 * 20 * 3 - 3;
    assert_eq!(
        out.video.frames[0].rgb[last..],
        source.frames[0].rgb[last..]
    );
    // Only colour is generated: the replaced frames keep the source's alpha (the matte).
    for (made, given) in out.video.frames.iter().zip(&source.frames) {
        assert_eq!(made.alpha, given.alpha);
    }
}

#[test]
fn an_all_black_mask_changes_nothing_and_runs_no_model() {
    let source = clip(2, 0);
    let inputs = TaskInputs {
        mask: Some(vec![vec![0; 800]; 2]),
        ..with_clip(source.clone())
    };
    let recorder = Recorder::default();
    let out = run_task(
        &tiny(),
        &TaskKind::ReplaceBackground,
        &inputs,
        &params(),
        &recorder,
    )
    .unwrap();
    assert_eq!(out.video, source);
    assert!(out.record.generated.is_empty());
    assert_eq!(*recorder.steps.borrow(), 0);
}

#[test]
fn the_same_request_gives_the_same_frames_and_the_seed_matters() {
    let inputs = with_clip(clip(4, 0));
    let kind = TaskKind::ExtendForward { frames: 4 };
    let first = run(kind.clone(), &inputs, &params()).unwrap();
    let second = run(kind.clone(), &inputs, &params()).unwrap();
    assert_eq!(first.video, second.video);
    let other = run(
        kind,
        &inputs,
        &TaskParams {
            seed: 1,
            ..params()
        },
    )
    .unwrap();
    assert_ne!(first.video.frames[5], other.video.frames[5]);
    assert_eq!(first.video.frames[..4], other.video.frames[..4]);
}

#[test]
fn a_clip_shorter_than_the_context_uses_what_there_is() {
    let source = clip(1, 0);
    let params = TaskParams {
        context_frames: 4,
        ..params()
    };
    let out = run(
        TaskKind::ExtendForward { frames: 2 },
        &with_clip(source.clone()),
        &params,
    )
    .unwrap();
    assert_eq!(out.video.len(), 3);
    assert_eq!(out.video.frames[0], source.frames[0]);
}

#[test]
fn long_outputs_take_several_windows_each_notified() {
    let source = clip(3, 0);
    let recorder = Recorder::default();
    let kind = TaskKind::ExtendForward { frames: 17 };
    let out = run_task(
        &tiny(),
        &kind,
        &with_clip(source.clone()),
        &params(),
        &recorder,
    )
    .unwrap();
    assert_eq!(out.video.len(), 20);
    assert_eq!(out.video.frames[..3], source.frames[..]);
    assert_eq!(out.record.generated, vec![3..20]);
    let windows = recorder.windows.borrow();
    // 9-frame windows with 2 context frames: 7 new frames at most per window.
    assert!(windows.len() >= 3, "{windows:?}");
    assert!(
        windows
            .iter()
            .enumerate()
            .all(|(i, &(index, count))| index == i && count == windows.len())
    );
    assert_eq!(*recorder.steps.borrow(), 2 * windows.len());
}

#[test]
fn long_inserts_end_on_clip_b() {
    let (a, b) = (clip(3, 0), clip(3, 80));
    let inputs = TaskInputs {
        clip: Some(a.clone()),
        next: Some(b.clone()),
        mask: None,
        references: Vec::new(),
        previous: Vec::new(),
    };
    let out = run(TaskKind::Insert { frames: 15 }, &inputs, &params()).unwrap();
    assert_eq!(out.video.len(), 21);
    assert_eq!(out.video.frames[..3], a.frames[..]);
    assert_eq!(out.video.frames[18..], b.frames[..]);
}

fn message(result: Result<TaskOutput>) -> String {
    let error = match result {
        Ok(out) => panic!("the request must fail, but made {} frames", out.video.len()),
        Err(error) => error,
    };
    assert!(
        matches!(
            error,
            Error::Input(_) | Error::Request(_) | Error::OutOfRange(_)
        ),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(!text.contains('\n'), "one line: {text}");
    text
}

#[test]
fn bad_requests_are_one_line_errors() {
    let p = params();
    let clip_only = with_clip(clip(3, 0));
    let cases: Vec<(TaskKind, TaskInputs, TaskParams, &str)> = vec![
        (
            TaskKind::ExtendForward { frames: 0 },
            clip_only.clone(),
            p.clone(),
            "at least 1",
        ),
        (
            TaskKind::ExtendForward { frames: 2 },
            TaskInputs::default(),
            p.clone(),
            "needs an input clip",
        ),
        (
            TaskKind::ExtendBackward { frames: 2 },
            with_clip(Video::new(4, 4, None)),
            p.clone(),
            "has no frames",
        ),
        (
            TaskKind::Insert { frames: 2 },
            clip_only.clone(),
            p.clone(),
            "second clip",
        ),
        (
            TaskKind::Generate {
                frames: 2,
                width: 0,
                height: 8,
            },
            TaskInputs::default(),
            p.clone(),
            "width and height",
        ),
        (
            TaskKind::ReplaceBackground,
            clip_only.clone(),
            p.clone(),
            "alpha",
        ),
        (
            TaskKind::ExtendForward { frames: 2 },
            clip_only.clone(),
            TaskParams {
                window_frames: 8,
                ..p.clone()
            },
            "4n+1",
        ),
        (
            TaskKind::ExtendForward { frames: 2 },
            clip_only.clone(),
            TaskParams {
                context_frames: 5,
                ..p.clone()
            },
            "context",
        ),
        (
            TaskKind::ExtendForward { frames: 2 },
            clip_only.clone(),
            TaskParams {
                steps: 0,
                ..p.clone()
            },
            "steps",
        ),
    ];
    for (kind, inputs, params, expected) in cases {
        println!("{kind:?}, expecting {expected:?}");
        let text = message(run(kind.clone(), &inputs, &params));
        assert!(text.contains(expected), "{kind:?}: {text}");
    }
    let mut b = clip(2, 0);
    b.width = 20;
    b.height = 40;
    let inputs = TaskInputs {
        next: Some(b),
        ..clip_only.clone()
    };
    assert!(message(run(TaskKind::Insert { frames: 2 }, &inputs, &p)).contains("one size"));
    let inputs = TaskInputs {
        mask: Some(vec![vec![255; 800]; 2]),
        ..clip_only.clone()
    };
    assert!(message(run(TaskKind::ReplaceBackground, &inputs, &p)).contains("one mask per frame"));
    let inputs = TaskInputs {
        mask: Some(vec![vec![255; 800], vec![255; 800], vec![255; 10]]),
        ..clip_only.clone()
    };
    assert!(
        message(run(TaskKind::ReplaceBackground, &inputs, &p)).contains("mask 2 has 10 pixels")
    );
    // Opaque frames without a mask: an error, not the clip handed back as if processed.
    let mut opaque = clip_only.clip.clone().unwrap();
    opaque
        .frames
        .iter_mut()
        .for_each(|frame| frame.alpha = Some(vec![1.0; 800]));
    let text = message(run(TaskKind::ReplaceBackground, &with_clip(opaque), &p));
    assert!(
        text.contains("opaque everywhere") && text.contains("marks no background"),
        "{text}"
    );
}

#[test]
fn finished_windows_come_from_the_cache() {
    let dir = std::env::temp_dir().join(format!("soragen-task-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cached = TaskParams {
        cache: Some(dir.clone()),
        ..params()
    };
    let inputs = with_clip(clip(3, 0));
    let kind = TaskKind::ExtendForward { frames: 10 };
    let computed = Recorder::default();
    let first = run_task(&tiny(), &kind, &inputs, &cached, &computed).unwrap();
    let windows = computed.windows.borrow().len();
    assert!(windows >= 2 && *computed.steps.borrow() == 2 * windows);

    let reused = Recorder::default();
    let second = run_task(&tiny(), &kind, &inputs, &cached, &reused).unwrap();
    assert_eq!(
        *reused.steps.borrow(),
        0,
        "every window must come from the cache"
    );
    assert_eq!(second.video, first.video);
    assert_eq!(
        second.video,
        run(kind.clone(), &inputs, &params()).unwrap().video,
        "the cache changes nothing"
    );

    // Anything that changes the output misses: here the prompt, then a source pixel.
    let other_prompt = Recorder::default();
    let cached = TaskParams {
        prompt: "a blue car".into(),
        ..cached
    };
    run_task(&tiny(), &kind, &inputs, &cached, &other_prompt).unwrap();
    assert_eq!(*other_prompt.steps.borrow(), 2 * windows);
    let mut changed = inputs.clone();
    changed.clip.as_mut().unwrap().frames[2].rgb[0] += 1.0 / 255.0;
    let other_pixels = Recorder::default();
    run_task(&tiny(), &kind, &changed, &cached, &other_pixels).unwrap();
    assert_eq!(*other_pixels.steps.borrow(), 2 * windows);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A flat dark clip: the tiny model's noise is mid-grey, far from it, so the cut shows
/// unless colours are matched.
#[test]
fn colour_matching_hides_the_seam() {
    let mut source = clip(6, 0);
    for frame in &mut source.frames {
        *frame = darker(frame);
    }
    let inputs = with_clip(source);
    let kind = TaskKind::ExtendForward { frames: 4 };
    let seam_with = |color_match| {
        let out = run(
            kind.clone(),
            &inputs,
            &TaskParams {
                color_match,
                ..params()
            },
        )
        .unwrap();
        soragen_core::tasks::seam(&out.video, 6, 0..6)
    };
    let (matched, unmatched) = (seam_with(true), seam_with(false));
    println!(
        "seam colour step, relative to the source's own: {:.2} matched, {:.2} unmatched",
        matched.colour, unmatched.colour
    );
    println!(
        "seam structure step: {:.2} matched, {:.2} unmatched",
        matched.structure, unmatched.structure
    );
    assert!(
        unmatched.colour > 10.0,
        "the synthetic case must have a visible seam: {unmatched:?}"
    );
    assert!(
        matched.colour < unmatched.colour / 5.0,
        "{matched:?} vs {unmatched:?}"
    );
}

/// Distinct frames in order, counting each run of repeats once.
fn distinct(frames: &[Frame]) -> usize {
    1 + frames.windows(2).filter(|pair| pair[0] != pair[1]).count()
}

/// Every 8-bit sample of `frame` is `first` and `second` mixed with `weight` on `second`,
/// rounded.
fn assert_blend(frame: &Frame, first: &Frame, second: &Frame, weight: f32) {
    let (frame, first, second) = (frame.rgb_8bit(), first.rgb_8bit(), second.rgb_8bit());
    for ((&v, &a), &b) in frame.iter().zip(&first).zip(&second) {
        let expected = a as f32 * (1.0 - weight) + b as f32 * weight;
        assert!(
            (v as f32 - expected).abs() <= 0.5 + 1e-4,
            "{v} is not {a} and {b} mixed at {weight}"
        );
    }
}

#[test]
fn a_48_fps_source_is_fed_at_16_fps_and_new_frames_are_interpolated_in_time() {
    let mut source = clip(9, 0);
    source.fps = Some((48, 1));
    let inputs = with_clip(source.clone());
    let kind = TaskKind::ExtendForward { frames: 6 };
    let out = run(kind.clone(), &inputs, &params()).unwrap();
    assert_eq!((out.video.len(), out.video.fps), (15, Some((48, 1))));
    assert_eq!(out.video.frames[..9], source.frames[..]);
    assert_eq!(out.record.generated, vec![9..15]);
    // 6 frames at 48 fps last 1/8 s: two model frames at 16 fps, which new frames 3 and 6 fall
    // on exactly; the others lie a third and two thirds of the way from the frame before.
    let frames = &out.video.frames;
    let (last_source, first_model, second_model) = (&source.frames[8], &frames[11], &frames[14]);
    assert_ne!(first_model, second_model);
    assert_eq!(distinct(&frames[9..]), 6);
    assert_blend(&frames[9], last_source, first_model, 1.0 / 3.0);
    assert_blend(&frames[10], last_source, first_model, 2.0 / 3.0);
    assert_blend(&frames[12], first_model, second_model, 1.0 / 3.0);
    assert_blend(&frames[13], first_model, second_model, 2.0 / 3.0);

    let one_to_one = run(
        kind,
        &inputs,
        &TaskParams {
            match_frame_rate: false,
            ..params()
        },
    )
    .unwrap();
    assert_eq!(distinct(&one_to_one.video.frames[9..]), 6);
}

#[test]
fn a_48_fps_extension_backward_is_interpolated_towards_the_clip() {
    let mut source = clip(9, 0);
    source.fps = Some((48, 1));
    let out = run(
        TaskKind::ExtendBackward { frames: 6 },
        &with_clip(source.clone()),
        &params(),
    )
    .unwrap();
    assert_eq!(out.video.frames[6..], source.frames[..]);
    assert_eq!(out.record.generated, vec![0..6]);
    // Model frames 3 and 6 frames before the clip, blends between.
    let frames = &out.video.frames;
    let (earlier_model, later_model) = (&frames[0], &frames[3]);
    assert_blend(&frames[1], earlier_model, later_model, 1.0 / 3.0);
    assert_blend(&frames[2], earlier_model, later_model, 2.0 / 3.0);
    assert_blend(&frames[4], later_model, &source.frames[0], 1.0 / 3.0);
    assert_blend(&frames[5], later_model, &source.frames[0], 2.0 / 3.0);
}

#[test]
fn a_30_fps_insert_lands_on_clip_b() {
    let (mut a, mut b) = (clip(4, 0), clip(4, 60));
    a.fps = Some((30000, 1001));
    b.fps = a.fps;
    let inputs = TaskInputs {
        clip: Some(a.clone()),
        next: Some(b.clone()),
        mask: None,
        references: Vec::new(),
        previous: Vec::new(),
    };
    let out = run(TaskKind::Insert { frames: 5 }, &inputs, &params()).unwrap();
    assert_eq!(out.video.len(), 13);
    assert_eq!(
        (&out.video.frames[..4], &out.video.frames[9..]),
        (&a.frames[..], &b.frames[..])
    );
    // 6 steps of 1/29.97 s from A's last to B's first frame are about 3 model steps: 2 new
    // model frames in between, on new frames 2 and 4; the others halfway between neighbours.
    let frames = &out.video.frames;
    assert_eq!(distinct(&frames[4..9]), 5);
    assert_blend(&frames[4], &a.frames[3], &frames[5], 0.5);
    assert_blend(&frames[6], &frames[5], &frames[7], 0.5);
    assert_blend(&frames[8], &frames[7], &b.frames[0], 0.5);
}

/// Cancels once `after` steps have run.
struct CancelAfter {
    after: usize,
    steps: RefCell<usize>,
}

impl Observer for CancelAfter {
    fn step(&self, _: usize, _: usize) {
        *self.steps.borrow_mut() += 1;
    }
    fn cancelled(&self) -> bool {
        *self.steps.borrow() >= self.after
    }
}

#[test]
fn cancelling_stops_between_steps_and_windows() {
    let inputs = with_clip(clip(3, 0));
    let kind = TaskKind::ExtendForward { frames: 17 };
    for after in [0, 1, 2, 3] {
        let observer = CancelAfter {
            after,
            steps: RefCell::new(0),
        };
        let result = run_task(&tiny(), &kind, &inputs, &params(), &observer);
        assert!(
            matches!(result, Err(Error::Cancelled)),
            "cancel after {after} steps"
        );
        assert_eq!(
            *observer.steps.borrow(),
            after,
            "no step runs once cancelled"
        );
    }
}

fn mean_level(frames: &[Frame]) -> f64 {
    let total: f64 = frames
        .iter()
        .flat_map(|f| f.rgb.iter())
        .map(|&v| v as f64 * 255.0)
        .sum();
    total / frames.iter().map(|f| f.rgb.len()).sum::<usize>() as f64
}

/// Every window is matched to the source, not to the window before it: the last window's
/// colour stays at the source's however many windows came before.
#[test]
fn colour_does_not_drift_over_windows() {
    let mut source = clip(4, 0);
    for frame in &mut source.frames {
        *frame = darker(frame);
    }
    let recorder = Recorder::default();
    let kind = TaskKind::ExtendForward { frames: 24 };
    let out = run_task(
        &tiny(),
        &kind,
        &with_clip(source.clone()),
        &params(),
        &recorder,
    )
    .unwrap();
    assert!(recorder.windows.borrow().len() >= 4);
    let (anchor, last) = (
        mean_level(&source.frames[2..]),
        mean_level(&out.video.frames[24..]),
    );
    assert!(
        (anchor - last).abs() < 3.0,
        "source tail {anchor:.1}, last frames {last:.1}"
    );
}

/// What a host that hands over frames on demand (OpenFX, GStreamer) must give: the last
/// `context_span` frames before the cut make exactly the frames the whole clip makes, at every
/// rate; one frame fewer does not where the span is wider than the context (frames picked 1/16 s
/// apart at 30 fps).
#[test]
fn the_context_span_before_a_cut_is_all_a_task_reads_of_the_clip() {
    let params = TaskParams {
        context_frames: 3,
        ..params()
    };
    let kind = TaskKind::ExtendForward { frames: 4 };
    for fps in [(16, 1), (24, 1), (25, 1), (30000, 1001)] {
        let mut whole = clip(24, 1);
        whole.fps = Some(fps);
        let span = soragen_core::tasks::context_span(&params, Some(fps));
        let tail_of = |frames: usize| {
            let mut tail = whole.clone();
            tail.frames.drain(..whole.len() - frames);
            tail
        };
        let from_whole = run(kind.clone(), &with_clip(whole.clone()), &params).unwrap();
        let from_tail = run(kind.clone(), &with_clip(tail_of(span)), &params).unwrap();
        assert_eq!(
            from_whole.video.frames[whole.len()..],
            from_tail.video.frames[span..],
            "{fps:?}: span {span}"
        );
        if span > params.context_frames {
            let short = run(kind.clone(), &with_clip(tail_of(span - 1)), &params).unwrap();
            assert_ne!(
                from_whole.video.frames[whole.len()..],
                short.video.frames[span - 1..],
                "{fps:?}: {span} frames are needed"
            );
        }
    }
    assert_eq!(soragen_core::tasks::context_span(&params, Some((16, 1))), 3);
    assert_eq!(
        soragen_core::tasks::context_span(&params, Some((30000, 1001))),
        5
    );
}

/// Hosts (OpenFX, GStreamer) call `run_task` directly: every size, count and number is checked
/// there too, before anything is allocated for it, in one line.
#[test]
fn out_of_range_requests_are_refused_before_any_allocation() {
    let model = tiny();
    let silent = soragen_core::vace::Silent;
    let huge = TaskKind::Generate {
        frames: 100_000,
        width: 16384,
        height: 16384,
    };
    let message = run_task(&model, &huge, &TaskInputs::default(), &params(), &silent)
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("not enough memory: this task needs about"),
        "{message}"
    );
    let cases: [(TaskKind, TaskParams, &str); 5] = [
        (
            TaskKind::Generate {
                frames: usize::MAX,
                width: 16,
                height: 16,
            },
            params(),
            "frame count",
        ),
        (
            TaskKind::Generate {
                frames: 1,
                width: 1,
                height: 1_000_000_000,
            },
            params(),
            "width and height",
        ),
        (
            TaskKind::ExtendForward { frames: 1 },
            TaskParams {
                context_frames: 1 << 63,
                ..params()
            },
            "context frames",
        ),
        (
            TaskKind::ExtendForward { frames: 1 },
            TaskParams {
                guidance: f64::NAN,
                ..params()
            },
            "guidance NaN",
        ),
        (
            TaskKind::ExtendForward { frames: 1 },
            TaskParams {
                working_pixels: Some(100_000_000),
                ..params()
            },
            "working pixels",
        ),
    ];
    for (kind, params, expected) in cases {
        let message = run_task(&model, &kind, &with_clip(clip(3, 1)), &params, &silent)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(expected) && !message.contains('\n'),
            "{message}"
        );
    }
}

/// A reference image of another size and aspect than the clip (a subject on white).
fn reference(width: usize, height: usize, shade: u8) -> Video {
    let mut video = Video::new(width, height, None);
    let rgb = (0..width * height)
        .flat_map(|i| {
            let (x, y) = (i % width, i / width);
            let inside = x > width / 4 && x < 3 * width / 4 && y > height / 4;
            if inside {
                [shade, 40, (x * 5) as u8]
            } else {
                [255, 255, 255]
            }
        })
        .collect::<Vec<u8>>();
    video.frames.push(Frame::from_8bit(&rgb, None));
    video
}

/// References go to every window of a task: kept frames stay the source's bytes, the new frames
/// change with the references (in every window), the result is deterministic, and the cache
/// tells runs with other references apart.
#[test]
fn references_condition_every_window() {
    let source = clip(4, 2);
    let kind = TaskKind::ExtendForward { frames: 12 };
    let plain = run(kind.clone(), &with_clip(source.clone()), &params()).unwrap();
    let inputs = TaskInputs {
        references: vec![reference(24, 40, 200)],
        ..with_clip(source.clone())
    };
    let recorder = Recorder::default();
    let out = run_task(&tiny(), &kind, &inputs, &params(), &recorder).unwrap();
    assert!(
        recorder.windows.borrow().len() >= 2,
        "{:?}",
        recorder.windows.borrow()
    );
    assert_eq!(out.video.len(), 16);
    assert_eq!(out.video.frames[..4], source.frames[..]);
    assert_eq!(out.record.generated, plain.record.generated);
    for index in 4..16 {
        assert!(
            differs(&out.video.frames[index], &plain.video.frames[index]),
            "frame {index}"
        );
    }
    let again = run(kind.clone(), &inputs, &params()).unwrap();
    assert_eq!(again.video, out.video);

    let cache = std::env::temp_dir().join(format!("soragen-ref-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let cached = TaskParams {
        cache: Some(cache.clone()),
        ..params()
    };
    assert_eq!(
        run(kind.clone(), &inputs, &cached).unwrap().video,
        out.video
    );
    let other = TaskInputs {
        references: vec![reference(24, 40, 30)],
        ..with_clip(source.clone())
    };
    let other_out = run(kind.clone(), &other, &cached).unwrap();
    assert_ne!(other_out.video.frames[4..], out.video.frames[4..]);
    assert_eq!(
        run(kind.clone(), &with_clip(source.clone()), &cached)
            .unwrap()
            .video,
        plain.video
    );
    let _ = std::fs::remove_dir_all(&cache);

    // Two references, and a reference too small to fit, named.
    let two = TaskInputs {
        references: vec![reference(24, 40, 200), reference(64, 16, 90)],
        ..with_clip(source.clone())
    };
    assert_eq!(
        run(kind.clone(), &two, &params()).unwrap().video.frames[..4],
        source.frames[..]
    );
    let tiny_ref = TaskInputs {
        references: vec![reference(4, 4, 9)],
        ..with_clip(source)
    };
    let message = run(kind, &tiny_ref, &params()).unwrap_err().to_string();
    assert!(message.contains("too small"), "{message}");
}

/// Image to video is an extension forward of a one-frame clip: the still is frame 0, its bytes;
/// the other frames are new, at 16 fps; the same frames as that extension, named `animate`.
#[test]
fn animate_extends_a_still() {
    use soragen_core::tasks::animate;
    let mut still = clip(1, 5);
    still.fps = None;
    let references = [reference(24, 40, 120)];
    let out = animate(
        &tiny(),
        &still,
        14,
        &references,
        &params(),
        &Recorder::default(),
    )
    .unwrap();
    assert_eq!(out.video.len(), 14);
    assert_eq!(out.video.fps, Some((16, 1)));
    assert_eq!(out.video.frames[0], still.frames[0]);
    assert!(
        out.video.frames[1..]
            .iter()
            .all(|f| differs(f, &still.frames[0]))
    );
    assert_eq!(out.record.generated, vec![1..14]);
    assert_eq!(out.record.task, "animate");
    let mut clip16 = still.clone();
    clip16.fps = Some((16, 1));
    let inputs = TaskInputs {
        references: references.to_vec(),
        ..with_clip(clip16)
    };
    let extended = run(TaskKind::ExtendForward { frames: 13 }, &inputs, &params()).unwrap();
    assert_eq!(extended.video, out.video);
    let message = animate(&tiny(), &still, 1, &[], &params(), &Recorder::default())
        .unwrap_err()
        .to_string();
    assert!(message.contains("at least 2"), "{message}");
    let message = animate(
        &tiny(),
        &clip(2, 0),
        5,
        &[],
        &params(),
        &Recorder::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(message.contains("one image"), "{message}");
}

/// What a host that sees one window at a time (OpenFX, GStreamer) does: each window of
/// [`whole_frame_windows`] on its own frames, after the frames the previous window made.
fn window_by_window(
    kind: &dyn Fn(usize) -> TaskKind,
    inputs: &dyn Fn(std::ops::Range<usize>) -> TaskInputs,
    len: usize,
    params: &TaskParams,
) -> Vec<Frame> {
    let mut made: Vec<Frame> = Vec::new();
    for window in whole_frame_windows(len, params, 4) {
        let inputs = TaskInputs {
            previous: made[window.context.clone()].to_vec(),
            ..inputs(window.new.clone())
        };
        let params = TaskParams {
            seed: params.seed + window.index as u64,
            ..params.clone()
        };
        let out = run(kind(window.new.len()), &inputs, &params).unwrap();
        assert_eq!(out.video.len(), window.new.len(), "window {window:?}");
        made.extend(out.video.frames);
    }
    made
}

#[test]
fn long_background_replacements_and_generations_run_window_by_window_give_the_whole_task() {
    let params = params();
    let source = clip(20, 0);
    // Masks of every kind, frames without background among them.
    let masks: Vec<Vec<u8>> = (0..20)
        .map(|f| half_masks(&source)[f % 3].clone())
        .collect();
    let part = |range: std::ops::Range<usize>| {
        let mut video = Video::new(source.width, source.height, source.fps);
        video.frames = source.frames[range.clone()].to_vec();
        TaskInputs {
            mask: Some(masks[range].to_vec()),
            ..with_clip(video)
        }
    };
    let whole = run(TaskKind::ReplaceBackground, &part(0..20), &params).unwrap();
    assert!(whole_frame_windows(20, &params, 4).len() > 2);
    let windowed = window_by_window(&|_| TaskKind::ReplaceBackground, &part, 20, &params);
    assert!(windowed == whole.video.frames, "replace background");

    let generate = |frames| TaskKind::Generate {
        frames,
        width: 40,
        height: 20,
    };
    let whole = run(generate(20), &TaskInputs::default(), &params).unwrap();
    let windowed = window_by_window(&generate, &|_| TaskInputs::default(), 20, &params);
    assert!(windowed == whole.video.frames, "generate");
}
