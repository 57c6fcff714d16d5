//! Which output frames each model window covers.
//!
//! A task is a timeline of frames, each either fixed (a source frame, or one an earlier window
//! generated) or pending. Windows run in the task's direction, one after another. Each starts
//! with up to `context` fixed frames just before its first pending frame, covers as many
//! pending frames as fit, and when the pending run ends inside it, continues with up to
//! `context` fixed frames after the run (clip B of an insert). So consecutive windows overlap
//! by exactly the context: the frames the previous window fixed are fed back as known frames
//! (mask 0), which carries motion and content across the cut while every output frame is
//! generated exactly once. Only one window is in memory at a time.
//!
//! Window lengths are rounded to the model's `temporal`n+1: up in the last window of a run
//! (the extra positions take further fixed frames as context, or are generated past the end
//! of the timeline and dropped), down in the others so that the last one keeps room for its
//! trailing context.

use std::ops::Range;

use super::TaskParams;

/// One model window of a task in which the model makes or edits every frame (replace
/// background, generate), over the task's output frames: it makes the frames `new`, reading
/// first the `context` frames the window before it made as known frames. A host that runs such
/// a task window by window (OpenFX, GStreamer) runs window `index` on its `new` frames (with the
/// seed + `index`) after the previous window's `context` frames, and gets exactly the frames of
/// the whole task as the CLI runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub index: usize,
    pub context: Range<usize>,
    pub new: Range<usize>,
}

/// The windows of such a task of `len` frames.
pub fn whole_frame_windows(len: usize, params: &TaskParams, temporal: usize) -> Vec<Window> {
    std::iter::successors(
        next_whole_frame_window(None, len, true, params, temporal),
        |previous| next_whole_frame_window(Some(previous), len, true, params, temporal),
    )
    .collect()
}

/// The window after `previous` (None: the first) of such a task on a stream of which
/// `available` frames are known to exist, `ended` when no more follow; None when there is none,
/// or when it depends on frames not yet known (a host holds one frame more than a window to know
/// the window is not the stream's last, which [`windows`] makes longer).
pub fn next_whole_frame_window(
    previous: Option<&Window>,
    available: usize,
    ended: bool,
    params: &TaskParams,
    temporal: usize,
) -> Option<Window> {
    let done = previous.map_or(0, |w| w.new.end);
    if done >= available {
        return None;
    }
    let pending: Vec<bool> = (0..available).map(|i| i >= done).collect();
    let planned = forward(
        &pending,
        params.window_frames,
        params.context_frames,
        temporal,
    );
    let first = planned.first()?;
    let (start, end) = (first.start as usize, first.end as usize);
    // The last window of a run is longer (rounded up): only the end of the stream makes it so.
    if !ended && available <= start + params.window_frames {
        return None;
    }
    Some(Window {
        index: previous.map_or(0, |w| w.index + 1),
        context: start..done,
        new: done..end.min(available),
    })
}

/// Windows over `pending` (true = to generate), as position ranges; positions outside
/// `0..pending.len()` are padding, generated and dropped.
pub(crate) fn windows(
    pending: &[bool],
    window: usize,
    context: usize,
    temporal: usize,
    backward: bool,
) -> Vec<Range<isize>> {
    let len = pending.len() as isize;
    if backward {
        let reversed: Vec<bool> = pending.iter().rev().copied().collect();
        return forward(&reversed, window, context, temporal)
            .into_iter()
            .map(|r| len - r.end..len - r.start)
            .collect();
    }
    forward(pending, window, context, temporal)
}

fn forward(pending: &[bool], window: usize, context: usize, temporal: usize) -> Vec<Range<isize>> {
    let round_up = |n: usize| (n - 1).div_ceil(temporal) * temporal + 1;
    let round_down = |n: usize| (n - 1) / temporal * temporal + 1;
    let mut pending = pending.to_vec();
    let mut windows = Vec::new();
    while let Some(first) = pending.iter().position(|&p| p) {
        let before = context.min(first);
        let run_end = pending[first..]
            .iter()
            .position(|&p| !p)
            .map_or(pending.len(), |i| first + i);
        let after = pending[run_end..]
            .iter()
            .take_while(|&&p| !p)
            .count()
            .min(context);
        let start = first - before;
        let length = if run_end + after - start <= window {
            round_up(run_end + after - start)
        } else {
            let shorter = round_down((start + window).min(run_end) - start);
            if shorter > before {
                shorter
            } else {
                round_up(before + 1)
            }
        };
        let end = start + length;
        let fixed_end = end.min(pending.len());
        pending[start..fixed_end]
            .iter_mut()
            .for_each(|p| *p = false);
        windows.push(start as isize..end as isize);
    }
    windows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(runs: &[(bool, usize)]) -> Vec<bool> {
        runs.iter()
            .flat_map(|&(p, n)| std::iter::repeat_n(p, n))
            .collect()
    }

    #[test]
    fn one_window_extension_is_context_then_new_frames_padded_to_4n_plus_1() {
        let pending = timeline(&[(false, 10), (true, 3)]);
        assert_eq!(windows(&pending, 81, 8, 4, false), vec![2..15]);
        // Mirrored: padding before the start.
        let pending = timeline(&[(true, 3), (false, 10)]);
        assert_eq!(windows(&pending, 81, 8, 4, true), vec![-2..11]);
    }

    #[test]
    fn long_insert_leaves_room_for_clip_b_context_in_the_last_window() {
        let pending = timeline(&[(false, 10), (true, 20), (false, 10)]);
        let plan = windows(&pending, 9, 2, 4, false);
        let last = plan.last().unwrap();
        assert!(last.end >= 32, "last window {last:?} lacks two frames of B");
        let mut covered = [0; 40];
        for w in &plan {
            assert!(
                w.end - w.start <= 9 && (w.end - w.start - 1) % 4 == 0,
                "{w:?}"
            );
            for p in w.clone() {
                if (10..30).contains(&p) {
                    covered[p as usize] += 1;
                }
            }
        }
        // Every new frame belongs to some window; a frame shared by two is context in the second.
        assert!(covered[10..30].iter().all(|&c| c >= 1));
    }

    #[test]
    fn whole_frame_windows_overlap_by_the_context_and_cover_each_frame_once() {
        let params = TaskParams {
            window_frames: 9,
            context_frames: 2,
            ..TaskParams::default()
        };
        let plan = whole_frame_windows(20, &params, 4);
        let made: Vec<usize> = plan.iter().flat_map(|w| w.new.clone()).collect();
        assert_eq!(made, (0..20).collect::<Vec<_>>());
        for (k, w) in plan.iter().enumerate() {
            assert_eq!(w.index, k);
            assert_eq!(w.context.len(), if k == 0 { 0 } else { 2 }, "{w:?}");
            assert!(w.context.len() + w.new.len() <= 9, "{w:?}");
        }
        // The task's own planner over the whole timeline gives the same windows.
        let whole = windows(&[true; 20], 9, 2, 4, false);
        let starts: Vec<isize> = plan.iter().map(|w| w.context.start as isize).collect();
        assert_eq!(starts, whole.iter().map(|w| w.start).collect::<Vec<_>>());
    }

    #[test]
    fn a_stream_waits_for_a_frame_past_the_window_unless_it_ended() {
        let params = TaskParams {
            window_frames: 9,
            context_frames: 2,
            ..TaskParams::default()
        };
        assert_eq!(next_whole_frame_window(None, 9, false, &params, 4), None);
        let first = next_whole_frame_window(None, 10, false, &params, 4).unwrap();
        assert_eq!((first.context.clone(), first.new.clone()), (0..0, 0..9));
        // Ended early: the frames there are, in one window.
        let short = next_whole_frame_window(None, 6, true, &params, 4).unwrap();
        assert_eq!(short.new, 0..6);
        let second = next_whole_frame_window(Some(&first), 12, true, &params, 4).unwrap();
        assert_eq!((second.index, second.context, second.new), (1, 7..9, 9..12));
        // Every stream split gives the planner's windows.
        for len in 1..40 {
            let mut streamed = Vec::new();
            for available in 1..=len {
                while let Some(w) = next_whole_frame_window(
                    streamed.last(),
                    available,
                    available == len,
                    &params,
                    4,
                ) {
                    streamed.push(w);
                }
            }
            assert_eq!(
                streamed,
                whole_frame_windows(len, &params, 4),
                "{len} frames"
            );
        }
    }

    #[test]
    fn short_clips_give_what_context_there_is() {
        let pending = timeline(&[(false, 1), (true, 4)]);
        assert_eq!(windows(&pending, 81, 8, 4, false), vec![0..5]);
    }
}
