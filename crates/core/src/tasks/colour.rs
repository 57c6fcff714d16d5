//! Colour continuity across cuts: matching generated frames to the source they continue, and
//! the seam metric that measures how visible a cut is.

use crate::colour_space::{model_from_oklab, oklab_from_model};
use crate::video::{Frame, Video};

/// Mean and standard deviation of Oklab's L, a and b over model-space frames (sRGB in
/// [0, 1]): colour statistics in a perceptual space, whatever space the clip is in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ChannelStats {
    mean: [f64; 3],
    std: [f64; 3],
}

impl ChannelStats {
    /// Pooled over frames of interleaved model-space RGB.
    pub(crate) fn of<'a>(frames: impl IntoIterator<Item = &'a [f32]>) -> Option<Self> {
        let (mut sum, mut squares, mut count) = ([0f64; 3], [0f64; 3], 0usize);
        for frame in frames {
            for pixel in frame.chunks_exact(3) {
                let lab = oklab_from_model([pixel[0], pixel[1], pixel[2]]);
                for c in 0..3 {
                    sum[c] += lab[c];
                    squares[c] += lab[c] * lab[c];
                }
                count += 1;
            }
        }
        if count == 0 {
            return None;
        }
        let mean = sum.map(|s| s / count as f64);
        let std = std::array::from_fn(|c| {
            (squares[c] / count as f64 - mean[c] * mean[c])
                .max(0.0)
                .sqrt()
        });
        Some(Self { mean, std })
    }
}

/// Maps generated frames (model-space RGB in [0, 1], interleaved) so that their pooled Oklab
/// mean and spread equal `anchor`'s: lightness, and the two colour axes, each moved as the eye
/// sees it. The anchor is always source frames, never an earlier window's output, so
/// corrections do not compound from window to window. The gain is bounded so that a near-flat
/// generated window is not blown up into noise.
pub(crate) fn match_to(frames: &mut [Vec<f32>], anchor: &ChannelStats) {
    let Some(current) = ChannelStats::of(frames.iter().map(Vec::as_slice)) else {
        return;
    };
    let gain: [f64; 3] =
        std::array::from_fn(|c| (anchor.std[c] / current.std[c].max(1e-4)).clamp(0.25, 4.0));
    for frame in frames.iter_mut() {
        for pixel in frame.chunks_exact_mut(3) {
            let lab = oklab_from_model([pixel[0], pixel[1], pixel[2]]);
            let matched =
                std::array::from_fn(|c| (lab[c] - current.mean[c]) * gain[c] + anchor.mean[c]);
            pixel.copy_from_slice(&model_from_oklab(matched));
        }
    }
}

/// How visible a cut is, relative to the clip's own motion.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Seam {
    /// Step in per-channel mean colour across the cut (summed over channels, samples on the 0..255
    /// scale),
    /// divided by the average such step between consecutive frames of the reference range.
    pub colour: f64,
    /// Mean absolute pixel difference across the cut after removing each frame's mean colour,
    /// divided by the same between consecutive reference frames.
    pub structure: f64,
}

fn means(frame: &Frame) -> [f64; 3] {
    let n = (frame.rgb.len() / 3).max(1) as f64;
    let mut sum = [0f64; 3];
    for p in frame.rgb.chunks_exact(3) {
        for c in 0..3 {
            sum[c] += p[c] as f64 * 255.0;
        }
    }
    sum.map(|s| s / n)
}

fn colour_step(a: &Frame, b: &Frame) -> f64 {
    let (ma, mb) = (means(a), means(b));
    (0..3).map(|c| (ma[c] - mb[c]).abs()).sum()
}

fn structure_step(a: &Frame, b: &Frame) -> f64 {
    let (ma, mb) = (means(a), means(b));
    let total: f64 = a
        .rgb
        .chunks_exact(3)
        .zip(b.rgb.chunks_exact(3))
        .map(|(p, q)| {
            (0..3)
                .map(|c| ((p[c] as f64 * 255.0 - ma[c]) - (q[c] as f64 * 255.0 - mb[c])).abs())
                .sum::<f64>()
        })
        .sum();
    total / a.rgb.len().max(1) as f64
}

/// The seam between frames `cut - 1` and `cut` of `video`, relative to the frame-to-frame
/// change within `reference` (a range of source frames, at least two). About 1 means the cut
/// changes no more than an ordinary frame of the source does; each baseline is floored at one
/// grey level so a static source does not divide by zero.
pub fn seam(video: &Video, cut: usize, reference: std::ops::Range<usize>) -> Seam {
    let pairs: Vec<(&Frame, &Frame)> = video.frames[reference.clone()]
        .iter()
        .zip(&video.frames[reference.start + 1..reference.end])
        .collect();
    let baseline = |step: fn(&Frame, &Frame) -> f64| {
        (pairs.iter().map(|(a, b)| step(a, b)).sum::<f64>() / pairs.len().max(1) as f64).max(1.0)
    };
    let (before, after) = (&video.frames[cut - 1], &video.frames[cut]);
    Seam {
        colour: colour_step(before, after) / baseline(colour_step),
        structure: structure_step(before, after) / baseline(structure_step),
    }
}

/// How far a frame's look is from a reference image of the same size (e.g. a reference as the
/// model sees it, [`crate::vace::fit_reference`]): a subject that keeps its look stays near.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Likeness {
    /// Difference of per-channel mean colour (summed over channels, 0..255 scale).
    pub colour: f64,
    /// Mean absolute pixel difference after removing each image's mean colour (0..255 scale).
    pub structure: f64,
}

/// [`Likeness`] of `frame` to `reference` (same size).
pub fn likeness(frame: &Frame, reference: &Frame) -> Likeness {
    Likeness {
        colour: colour_step(frame, reference),
        structure: structure_step(frame, reference),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn likeness_is_zero_for_the_same_image_and_grows_with_colour_and_structure() {
        let frame = |rgb: Vec<u8>| Frame::from_8bit(&rgb, None);
        let levels: Vec<u8> = (0..48).map(|i| (i * 5) as u8).collect();
        let a = frame(levels.clone());
        assert_eq!(
            likeness(&a, &a),
            Likeness {
                colour: 0.0,
                structure: 0.0
            }
        );
        // Brighter by 10 levels everywhere: the colour moves, the structure does not.
        let brighter = frame(levels.iter().map(|v| v + 10).collect());
        let moved = likeness(&brighter, &a);
        assert!(
            (moved.colour - 30.0).abs() < 1e-4 && moved.structure < 1e-4,
            "{moved:?}"
        );
        // Reversed: the same mean colour, another structure.
        let reversed = frame(levels.chunks_exact(3).rev().flatten().copied().collect());
        let other = likeness(&reversed, &a);
        assert!(other.colour < 1e-4 && other.structure > 10.0, "{other:?}");
    }

    /// Frames of interleaved RGB with a spread of colours around `base`.
    fn varied(base: [f32; 3], spread: f32) -> Vec<Vec<f32>> {
        vec![
            (0..300)
                .map(|i| (base[i % 3] + ((i / 3) % 7) as f32 / 7.0 * spread).clamp(0.0, 1.0))
                .collect(),
        ]
    }

    #[test]
    fn matching_moves_perceptual_mean_and_spread_to_the_anchor() {
        let source = varied([0.15, 0.35, 0.55], 0.2);
        let anchor = ChannelStats::of(source.iter().map(Vec::as_slice)).unwrap();
        let mut generated = varied([0.5, 0.45, 0.3], 0.35);
        let before = ChannelStats::of(generated.iter().map(Vec::as_slice)).unwrap();
        assert!(
            (before.mean[0] - anchor.mean[0]).abs() > 0.05,
            "{before:?} {anchor:?}"
        );
        match_to(&mut generated, &anchor);
        let after = ChannelStats::of(generated.iter().map(Vec::as_slice)).unwrap();
        for c in 0..3 {
            assert!(
                (after.mean[c] - anchor.mean[c]).abs() < 2e-3,
                "{after:?} {anchor:?}"
            );
            assert!(
                (after.std[c] - anchor.std[c]).abs() < 2e-3,
                "{after:?} {anchor:?}"
            );
        }
        // Matching frames to their own statistics leaves them as they are.
        let mut same = source.clone();
        match_to(&mut same, &anchor);
        for (a, b) in same[0].iter().zip(&source[0]) {
            assert!((a - b).abs() < 1e-5, "{a} {b}");
        }
    }
}
