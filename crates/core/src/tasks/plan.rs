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
    fn short_clips_give_what_context_there_is() {
        let pending = timeline(&[(false, 1), (true, 4)]);
        assert_eq!(windows(&pending, 81, 8, 4, false), vec![0..5]);
    }
}
