//! Which frame each output time is: a source frame kept as it is, or one frame of a generation
//! (the frames one task call produces together; a long task's generations are the core's model
//! windows). Pure logic over frame ranges, shared by GetFramesNeeded, GetTimeDomain and Render.

use soragen_core::tasks::{TaskKind, TaskParams, context_span, whole_frame_windows};

use crate::effects::{Context, EffectKind};
use crate::params::Settings;

/// Inclusive frame range, as OpenFX gives it.
pub type Range = (i64, i64);

fn len(range: Range) -> i64 {
    range.1 - range.0 + 1
}

/// The clips an effect reads, by role (names depend on the context).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Source (Filter, General) or SourceFrom (Transition).
    Source,
    /// Next (Insert in General) or SourceTo (Transition).
    Next,
    Mask,
    /// Generate's still (image to video).
    Image,
    /// The reference image's clip.
    Reference,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GenerationTask {
    ExtendForward,
    ExtendBackward,
    Insert,
    ReplaceBackground,
    Generate,
    /// Generate from the Image input's still: window 0 is the still then new frames.
    Animate,
}

/// One generation: the task, the source frames it reads and where its frames go.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    pub task: GenerationTask,
    /// Frames to generate.
    pub frames: usize,
    /// First output time of the window: tells windows of one effect apart.
    pub first: i64,
    /// Replace background, generate: the model window's number from the clip's start (the
    /// core's [`whole_frame_windows`]). Window k > 0 reads the last `context` frames window
    /// k - 1 made first, and its seed is the seed + k.
    pub index: usize,
    /// Frames of the previous window this one reads first (see `index`).
    pub context: usize,
    /// Times of the `Source` frames the task reads (with `Mask` at the same times); for
    /// Animate, the still's time in the `Image` clip (every window: it keys them all).
    pub source_times: Vec<i64>,
    /// Times of the `Next` frames the task reads.
    pub next_times: Vec<i64>,
    /// The source's frame rate, which the task matches to the model's.
    pub fps: Option<(u32, u32)>,
}

impl Generation {
    pub fn task_kind(&self, width: usize, height: usize) -> TaskKind {
        let frames = self.frames;
        match self.task {
            GenerationTask::ExtendForward => TaskKind::ExtendForward { frames },
            GenerationTask::ExtendBackward => TaskKind::ExtendBackward { frames },
            GenerationTask::Insert => TaskKind::Insert { frames },
            GenerationTask::ReplaceBackground => TaskKind::ReplaceBackground,
            GenerationTask::Generate => TaskKind::Generate {
                frames,
                width,
                height,
            },
            // The still then frames - 1 new ones (`tasks::animate_request`).
            GenerationTask::Animate => TaskKind::ExtendForward {
                frames: frames.saturating_sub(1),
            },
        }
    }

    /// The clip `source_times` are read from.
    pub fn source_role(&self) -> Role {
        match self.task {
            GenerationTask::Animate => Role::Image,
            _ => Role::Source,
        }
    }

    /// Whether the window's frames are the source's frames with new pixels (as opposed to new
    /// frames placed after, before or between source frames).
    pub fn edits_in_place(&self) -> bool {
        self.task == GenerationTask::ReplaceBackground
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum FramePlan {
    /// The source frame, unchanged.
    Keep { role: Role, time: i64 },
    /// Frame `offset` of the generation's new frames (for in-place edits: of its frames).
    Generate { window: Generation, offset: usize },
}

/// What the host tells us about time, each from where the standard defines it; None where
/// the host does not say (MLT gives no frame ranges at all).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timing {
    /// The Source (SourceFrom) clip's frame range, where connected.
    pub source: Option<Range>,
    /// The Next (SourceTo) clip's frame range, where connected.
    pub next: Option<Range>,
    /// The Output clip's frame range (a transition's frames; where a generator starts).
    pub output: Option<Range>,
    /// `kOfxImageEffectInstancePropEffectDuration`, in frames.
    pub duration: Option<i64>,
    /// The source's frame rate (the clip's `kOfxImageEffectPropFrameRate`, else the effect's).
    pub fps: Option<(u32, u32)>,
    /// The Transition parameter at the time (Transition context): the host's own word on how
    /// far into the transition the frame is, 0 at its start and 1 at its end.
    pub transition: Option<f64>,
    /// Generate: the time of the Image input's still, where one is connected.
    pub still: Option<i64>,
}

/// Which of a transition's `frames` frames the Transition parameter's `position` is (`position`
/// k/n is frame k; the epsilon keeps k/n*n from rounding down to k-1).
pub fn transition_frame(position: f64, frames: i64) -> i64 {
    ((position * frames as f64 + 1e-6).floor() as i64).clamp(0, frames - 1)
}

fn span(first: i64, last: i64) -> Vec<i64> {
    (first..=last).collect()
}

/// Why an output time has no frame, in one line for the user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoFrame {
    #[error(
        "the host gives no frame range for the {0} input: it is not connected, or this host does not report clip frame ranges (Kdenlive/MLT do not), so Soragen cannot tell where the clip ends"
    )]
    NoRange(&'static str),
    #[error("the host gives neither the transition's frame range (Output clip) nor its duration")]
    NoTransitionRange,
    #[error("frame {0} is outside this effect's frames")]
    Outside(i64),
    #[error(
        "frame {time} is more than Frames ({frames}) past the source's last frame {last}: raise Frames"
    )]
    PastExtension { time: i64, frames: i64, last: i64 },
    #[error(
        "frame {time} is more than Frames ({frames}) before the source's first frame {first}: raise Frames"
    )]
    BeforeExtension { time: i64, frames: i64, first: i64 },
    #[error(
        "frame {time} is past the {frames} frames this clip generates (from frame {start}): raise Frames"
    )]
    PastGenerated { time: i64, frames: i64, start: i64 },
    #[error("no model window makes frame {at} of {len}")]
    NoWindow { at: i64, len: i64 },
}

/// The plan for output time `time`, or a message saying why there is no such frame.
pub fn plan(
    effect: EffectKind,
    context: Context,
    timing: &Timing,
    settings: &Settings,
    temporal: usize,
    time: i64,
) -> Result<FramePlan, NoFrame> {
    let n = settings.frames as i64;
    // The source frames next to a cut that the task reads at the clip's rate (more than the
    // context frames above 16 fps: they are picked 1/16 s apart).
    let k = context_span(&settings.task, timing.fps) as i64;
    let source = || timing.source.ok_or(NoFrame::NoRange("source"));
    let keep = |role, time| Ok(FramePlan::Keep { role, time });
    let generate = |window, offset: i64| {
        Ok(FramePlan::Generate {
            window,
            offset: offset as usize,
        })
    };
    match (effect, context) {
        (EffectKind::Extend, _) => {
            let (a, b) = source()?;
            match time {
                t if (a..=b).contains(&t) => keep(Role::Source, t),
                t if !settings.backward && t > b && t <= b + n => {
                    let window = Generation {
                        task: GenerationTask::ExtendForward,
                        frames: n as usize,
                        first: b + 1,
                        index: 0,
                        context: 0,
                        fps: timing.fps,
                        source_times: span((b - k + 1).max(a), b),
                        next_times: vec![],
                    };
                    generate(window, t - b - 1)
                }
                t if settings.backward && t < a && t >= a - n => {
                    let window = Generation {
                        task: GenerationTask::ExtendBackward,
                        frames: n as usize,
                        first: a - n,
                        index: 0,
                        context: 0,
                        fps: timing.fps,
                        source_times: span(a, (a + k - 1).min(b)),
                        next_times: vec![],
                    };
                    generate(window, t - (a - n))
                }
                t if t > b && !settings.backward => Err(NoFrame::PastExtension {
                    time: t,
                    frames: n,
                    last: b,
                }),
                t if t < a && settings.backward => Err(NoFrame::BeforeExtension {
                    time: t,
                    frames: n,
                    first: a,
                }),
                _ => Err(NoFrame::Outside(time)),
            }
        }
        (EffectKind::Insert, Context::Transition) => {
            // The transition's frames: the Output clip's range, else its duration placed by
            // the Transition parameter (the host's word on how far into it `time` is).
            let (s, e) = match (timing.output, timing.duration, timing.transition) {
                (Some(range), _, _) => range,
                (None, Some(duration), Some(position)) => {
                    let s = time - transition_frame(position, duration);
                    (s, s + duration - 1)
                }
                _ => return Err(NoFrame::NoTransitionRange),
            };
            let offset = match timing.transition {
                Some(position) => transition_frame(position, len((s, e))),
                None if (s..=e).contains(&time) => time - s,
                None => return Err(NoFrame::Outside(time)),
            };
            let (from, to) = (source()?, timing.next.ok_or(NoFrame::NoRange("SourceTo"))?);
            // The frames just before and after the transition; inside it where the clips end there.
            let before = span((s - k).max(from.0), (s - 1).min(from.1));
            let after = span((e + 1).max(to.0), (e + k).min(to.1));
            let window = Generation {
                task: GenerationTask::Insert,
                frames: len((s, e)) as usize,
                first: s,
                index: 0,
                context: 0,
                fps: timing.fps,
                source_times: if before.is_empty() {
                    vec![s.clamp(from.0, from.1)]
                } else {
                    before
                },
                next_times: if after.is_empty() {
                    vec![e.clamp(to.0, to.1)]
                } else {
                    after
                },
            };
            generate(window, offset)
        }
        (EffectKind::Insert, _) => {
            let (a0, a1) = source()?;
            let (b0, b1) = timing.next.ok_or(NoFrame::NoRange("Next"))?;
            match time {
                t if (a0..=a1).contains(&t) => keep(Role::Source, t),
                t if t > a1 && t <= a1 + n => {
                    let window = Generation {
                        task: GenerationTask::Insert,
                        frames: n as usize,
                        first: a1 + 1,
                        index: 0,
                        context: 0,
                        fps: timing.fps,
                        source_times: span((a1 - k + 1).max(a0), a1),
                        next_times: span(b0, (b0 + k - 1).min(b1)),
                    };
                    generate(window, t - a1 - 1)
                }
                t if t > a1 + n && t <= a1 + n + len((b0, b1)) => {
                    keep(Role::Next, b0 + t - a1 - n - 1)
                }
                _ => Err(NoFrame::Outside(time)),
            }
        }
        (EffectKind::ReplaceBackground, _) => {
            // A host without clip frame ranges (MLT) gets each frame on its own: windows of one
            // frame, no temporal context, but the frame it asked for.
            let (a, b) = timing.source.unwrap_or((time, time));
            if time < a || time > b {
                return Err(NoFrame::Outside(time));
            }
            let window = whole_frame_window(&settings.task, len((a, b)), time - a, temporal)?;
            let first = a + window.new.start as i64;
            let window = Generation {
                task: GenerationTask::ReplaceBackground,
                frames: window.new.len(),
                first,
                index: window.index,
                context: window.context.len(),
                fps: timing.fps,
                source_times: span(first, a + window.new.end as i64 - 1),
                next_times: vec![],
            };
            generate(window, time - first)
        }
        (EffectKind::Generate, _) => {
            // A generator's clip starts where its Output clip does (time 0 where the host does
            // not say) and is Frames long.
            let start = timing.output.map_or(0, |(first, _)| first);
            if time < start {
                return Err(NoFrame::Outside(time));
            }
            if time >= start + n {
                return Err(NoFrame::PastGenerated {
                    time,
                    frames: n,
                    start,
                });
            }
            if let Some(still) = timing.still {
                // The clip's first frame is the still itself, copied as the host gave it; the
                // rest is one task, an extension of the still (the core's windows within it),
                // as `soragen animate` makes it.
                if time == start {
                    return keep(Role::Image, still);
                }
                let window = Generation {
                    task: GenerationTask::Animate,
                    frames: n as usize,
                    first: start,
                    index: 0,
                    context: 0,
                    fps: timing.fps,
                    source_times: vec![still],
                    next_times: vec![],
                };
                return generate(window, time - start);
            }
            let window = whole_frame_window(&settings.task, n, time - start, temporal)?;
            let first = start + window.new.start as i64;
            let window = Generation {
                task: GenerationTask::Generate,
                frames: window.new.len(),
                first,
                index: window.index,
                context: window.context.len(),
                fps: timing.fps,
                source_times: timing.still.into_iter().collect(),
                next_times: vec![],
            };
            generate(window, time - first)
        }
    }
}

/// The core's model window (of a task of `len` frames that makes or edits every frame) that
/// makes frame `at`.
fn whole_frame_window(
    params: &TaskParams,
    len: i64,
    at: i64,
    temporal: usize,
) -> Result<soragen_core::tasks::Window, NoFrame> {
    whole_frame_windows(len as usize, params, temporal)
        .into_iter()
        .find(|window| window.new.contains(&(at as usize)))
        .ok_or(NoFrame::NoWindow { at, len })
}

/// The output's frame range in the General context, where the effect may change it.
pub fn time_domain(effect: EffectKind, timing: &Timing, settings: &Settings) -> Option<Range> {
    let n = settings.frames as i64;
    match effect {
        EffectKind::Extend => {
            let (a, b) = timing.source?;
            Some(if settings.backward {
                (a - n, b)
            } else {
                (a, b + n)
            })
        }
        EffectKind::Insert => {
            let ((a0, a1), next) = (timing.source?, timing.next?);
            Some((a0, a1 + n + len(next)))
        }
        EffectKind::ReplaceBackground => timing.source,
        EffectKind::Generate => Some((0, n - 1)),
    }
}

/// The source frames (by role, as inclusive ranges) the output frame at `time` reads.
pub fn frames_needed(plan: &FramePlan, reads_mask: bool) -> Vec<(Role, Range)> {
    let range = |times: &[i64]| Some((*times.first()?, *times.last()?));
    match plan {
        FramePlan::Keep { role, time } => vec![(*role, (*time, *time))],
        FramePlan::Generate { window, .. } => {
            let mut needed = Vec::new();
            if let Some(r) = range(&window.source_times) {
                needed.push((window.source_role(), r));
                if reads_mask && window.source_role() == Role::Source {
                    needed.push((Role::Mask, r));
                }
            }
            if let Some(r) = range(&window.next_times) {
                needed.push((Role::Next, r));
            }
            needed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use soragen_core::tasks::TaskParams;

    fn settings(frames: usize, context: usize, backward: bool) -> Settings {
        Settings {
            task: TaskParams {
                context_frames: context,
                ..TaskParams::default()
            },
            frames,
            model: String::new(),
            adapters: Vec::new(),
            fast: false,
            draft: false,
            backward,
            use_mask: false,
            reference_frame: 0,
        }
    }

    fn timing(source: Range) -> Timing {
        Timing {
            source: Some(source),
            next: None,
            output: Some(source),
            duration: None,
            fps: None,
            transition: None,
            still: None,
        }
    }

    #[test]
    fn extend_forward_keeps_source_frames_and_generates_one_window_after_them() {
        let (s, t) = (settings(5, 3, false), timing((0, 9)));
        assert_eq!(
            plan(EffectKind::Extend, Context::General, &t, &s, 4, 4),
            Ok(FramePlan::Keep {
                role: Role::Source,
                time: 4
            })
        );
        let FramePlan::Generate { window, offset } =
            plan(EffectKind::Extend, Context::General, &t, &s, 4, 12).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (window.source_times.clone(), window.first, offset),
            (vec![7, 8, 9], 10, 2)
        );
        // Every frame past the source shares the window: one generation serves them all.
        let FramePlan::Generate { window: last, .. } =
            plan(EffectKind::Extend, Context::General, &t, &s, 4, 14).unwrap()
        else {
            panic!()
        };
        assert_eq!(last, window);
        assert!(
            plan(EffectKind::Extend, Context::General, &t, &s, 4, 15)
                .unwrap_err()
                .to_string()
                .contains("raise Frames")
        );
        assert_eq!(time_domain(EffectKind::Extend, &t, &s), Some((0, 14)));
    }

    #[test]
    fn extend_backward_reads_the_first_frames() {
        let (s, t) = (settings(4, 2, true), timing((10, 19)));
        let FramePlan::Generate { window, offset } =
            plan(EffectKind::Extend, Context::Filter, &t, &s, 4, 7).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (window.source_times, window.task, offset),
            (vec![10, 11], GenerationTask::ExtendBackward, 1)
        );
        assert_eq!(time_domain(EffectKind::Extend, &t, &s), Some((6, 19)));
    }

    #[test]
    fn insert_in_general_runs_a_then_new_frames_then_b() {
        let s = settings(3, 2, false);
        let t = Timing {
            source: Some((0, 4)),
            next: Some((0, 5)),
            output: Some((0, 4)),
            duration: None,
            fps: None,
            transition: None,
            still: None,
        };
        assert_eq!(time_domain(EffectKind::Insert, &t, &s), Some((0, 13)));
        let FramePlan::Generate { window, offset } =
            plan(EffectKind::Insert, Context::General, &t, &s, 4, 7).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (window.source_times, window.next_times, offset),
            (vec![3, 4], vec![0, 1], 2)
        );
        assert_eq!(
            plan(EffectKind::Insert, Context::General, &t, &s, 4, 8),
            Ok(FramePlan::Keep {
                role: Role::Next,
                time: 0
            })
        );
        assert_eq!(
            plan(EffectKind::Insert, Context::General, &t, &s, 4, 13),
            Ok(FramePlan::Keep {
                role: Role::Next,
                time: 5
            })
        );
    }

    #[test]
    fn transition_fills_its_own_length_from_the_frames_around_it() {
        let s = settings(99, 2, false);
        let t = Timing {
            source: Some((0, 20)),
            next: Some((0, 30)),
            output: Some((10, 14)),
            duration: None,
            fps: None,
            transition: None,
            still: None,
        };
        let FramePlan::Generate { window, offset } =
            plan(EffectKind::Insert, Context::Transition, &t, &s, 4, 12).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (
                window.frames,
                &window.source_times,
                &window.next_times,
                offset
            ),
            (5, &vec![8, 9], &vec![15, 16], 2)
        );
        let needed = frames_needed(
            &FramePlan::Generate {
                window: window.clone(),
                offset,
            },
            false,
        );
        assert_eq!(needed, vec![(Role::Source, (8, 9)), (Role::Next, (15, 16))]);
        // The Transition parameter, where the host gives it, decides the frame, not the time.
        let at = |position| {
            plan(
                EffectKind::Insert,
                Context::Transition,
                &Timing {
                    transition: Some(position),
                    ..t
                },
                &s,
                4,
                99,
            )
        };
        assert_eq!(
            at(0.0),
            Ok(FramePlan::Generate {
                window: window.clone(),
                offset: 0
            })
        );
        assert_eq!(at(0.6), Ok(FramePlan::Generate { window, offset: 3 }));
    }

    #[test]
    fn the_transition_position_picks_each_frame_once() {
        for frames in [1, 2, 5, 7, 10, 24, 49, 100] {
            let picked: Vec<i64> = (0..frames)
                .map(|k| transition_frame(k as f64 / frames as f64, frames))
                .collect();
            assert_eq!(
                picked,
                (0..frames).collect::<Vec<_>>(),
                "{frames} frames at k/n"
            );
        }
        assert_eq!(
            transition_frame(1.0, 5),
            4,
            "the end of the transition is its last frame"
        );
        assert_eq!(transition_frame(0.999, 5), 4);
        assert_eq!(transition_frame(-0.5, 5), 0);
        assert_eq!(transition_frame(7.0, 5), 4);
    }

    /// Windows of 9 frames overlapping by 2: over 20 frames the core makes 0..9, 9..16
    /// (after 7..9) and 16..20 (after 14..16).
    fn windowed(frames: usize) -> Settings {
        let mut s = settings(frames, 2, false);
        s.task.window_frames = 9;
        s
    }

    #[test]
    fn replace_background_and_generate_run_the_core_s_windows() {
        let (s, t) = (windowed(4), timing((0, 19)));
        let FramePlan::Generate { window, offset } = plan(
            EffectKind::ReplaceBackground,
            Context::Filter,
            &t,
            &s,
            4,
            12,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (
                window.index,
                window.first,
                window.frames,
                window.context,
                offset
            ),
            (1, 9, 7, 2, 3)
        );
        assert_eq!(window.source_times, (9..=15).collect::<Vec<_>>());
        let needed = frames_needed(
            &plan(
                EffectKind::ReplaceBackground,
                Context::Filter,
                &t,
                &s,
                4,
                17,
            )
            .unwrap(),
            true,
        );
        assert_eq!(
            needed,
            vec![(Role::Source, (16, 19)), (Role::Mask, (16, 19))]
        );
        // Generate: Frames is the clip's length.
        let s = windowed(20);
        let FramePlan::Generate { window, offset } =
            plan(EffectKind::Generate, Context::Generator, &t, &s, 4, 17).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (window.index, window.first, window.frames, offset),
            (2, 16, 4, 1)
        );
        let past = plan(EffectKind::Generate, Context::Generator, &t, &s, 4, 20).unwrap_err();
        assert_eq!(
            past,
            NoFrame::PastGenerated {
                time: 20,
                frames: 20,
                start: 0
            }
        );
        assert!(past.to_string().contains("raise Frames"), "{past}");
    }

    #[test]
    fn a_transition_without_an_output_range_is_placed_by_its_duration_and_position() {
        let s = settings(99, 2, false);
        let t = Timing {
            source: Some((0, 20)),
            next: Some((0, 30)),
            output: None,
            duration: Some(5),
            fps: None,
            transition: Some(0.4),
            still: None,
        };
        // 0.4 of 5 frames is frame 2: the transition runs 10..=14 when frame 12 is asked for.
        let FramePlan::Generate { window, offset } =
            plan(EffectKind::Insert, Context::Transition, &t, &s, 4, 12).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (
                window.first,
                window.frames,
                offset,
                window.source_times,
                window.next_times
            ),
            (10, 5, 2, vec![8, 9], vec![15, 16])
        );
        let lost = Timing {
            duration: None,
            fps: None,
            ..t
        };
        assert_eq!(
            plan(EffectKind::Insert, Context::Transition, &lost, &s, 4, 12).unwrap_err(),
            NoFrame::NoTransitionRange
        );
    }

    #[test]
    fn without_clip_frame_ranges_extend_says_why_and_replace_background_goes_frame_by_frame() {
        let s = settings(4, 2, false);
        let t = Timing::default();
        let error = plan(EffectKind::Extend, Context::Filter, &t, &s, 4, 3)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("frame range") && error.contains("MLT"),
            "{error}"
        );
        let FramePlan::Generate { window, offset } =
            plan(EffectKind::ReplaceBackground, Context::Filter, &t, &s, 4, 7).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (window.first, window.frames, window.source_times, offset),
            (7, 1, vec![7], 0)
        );
    }

    #[test]
    fn generate_numbers_its_windows_from_the_output_start() {
        let s = windowed(20);
        let at = |output, time| match plan(
            EffectKind::Generate,
            Context::Generator,
            &Timing {
                output,
                ..Timing::default()
            },
            &s,
            4,
            time,
        ) {
            Ok(FramePlan::Generate { window, offset }) => (window.first, window.index, offset),
            other => panic!("{other:?}"),
        };
        assert_eq!(at(Some((10, 30)), 10), (10, 0, 0));
        assert_eq!(at(Some((10, 30)), 27), (26, 2, 1));
        // No Output range: the clip starts at 0.
        assert_eq!(at(None, 5), (0, 0, 5));
    }

    #[test]
    fn generate_from_a_still_keeps_it_as_the_first_frame() {
        let t = Timing {
            output: Some((10, 30)),
            still: Some(3),
            ..Timing::default()
        };
        let at = |frames, time| {
            plan(
                EffectKind::Generate,
                Context::Generator,
                &t,
                &settings(frames, 2, false),
                4,
                time,
            )
        };
        assert_eq!(
            at(4, 10),
            Ok(FramePlan::Keep {
                role: Role::Image,
                time: 3
            })
        );
        let Ok(FramePlan::Generate { window, offset }) = at(4, 11) else {
            panic!()
        };
        assert_eq!(
            (window.task, window.index, offset, &window.source_times),
            (GenerationTask::Animate, 0, 1, &vec![3])
        );
        assert_eq!(
            frames_needed(&FramePlan::Generate { window, offset }, false),
            vec![(Role::Image, (3, 3))]
        );
        // The whole clip is one extension of the still (`soragen animate`), Frames long.
        let Ok(FramePlan::Generate { window, offset }) = at(20, 25) else {
            panic!()
        };
        assert_eq!(
            (window.task, window.index, window.frames, offset),
            (GenerationTask::Animate, 0, 20, 15)
        );
        assert!(at(20, 30).unwrap_err().to_string().contains("raise Frames"));
        assert!(
            at(1, 11)
                .unwrap_err()
                .to_string()
                .contains("past the 1 frames")
        );
    }
}
