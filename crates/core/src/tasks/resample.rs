//! Resampling between a clip's own size and the model's working size, in time between the
//! source's frame rate and the model's, and the mask shaping (dilation, feather) of background
//! replacement. Planes are f32, interleaved channels.

/// One output sample's taps: the first source index and the normalised weights from there.
struct Taps {
    first: usize,
    weights: Vec<f32>,
}

/// Triangle (bilinear) filter widened by the scale factor when shrinking, so that downscaling
/// averages every source pixel (area-like) instead of skipping some (aliasing).
fn taps(source_len: usize, target_len: usize) -> Vec<Taps> {
    let scale = source_len as f64 / target_len as f64;
    let radius = scale.max(1.0);
    (0..target_len)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let first = (center - radius).floor().max(0.0) as usize;
            let last = ((center + radius).ceil() as usize).min(source_len);
            let mut weights: Vec<f32> = (first..last)
                .map(|j| (1.0 - ((j as f64 + 0.5 - center) / radius).abs()).max(0.0) as f32)
                .collect();
            let total: f32 = weights.iter().sum();
            weights.iter_mut().for_each(|w| *w /= total);
            Taps { first, weights }
        })
        .collect()
}

/// Resizes a `width` x `height` plane of `channels` interleaved values.
pub(crate) fn resize(
    plane: &[f32],
    (width, height): (usize, usize),
    channels: usize,
    (new_width, new_height): (usize, usize),
) -> Vec<f32> {
    if (width, height) == (new_width, new_height) {
        return plane.to_vec();
    }
    let columns = taps(width, new_width);
    let mut wide = vec![0f32; new_width * height * channels];
    for y in 0..height {
        let row = &plane[y * width * channels..(y + 1) * width * channels];
        for (x, tap) in columns.iter().enumerate() {
            for c in 0..channels {
                wide[(y * new_width + x) * channels + c] = tap
                    .weights
                    .iter()
                    .enumerate()
                    .map(|(k, w)| w * row[(tap.first + k) * channels + c])
                    .sum();
            }
        }
    }
    let rows = taps(height, new_height);
    let stride = new_width * channels;
    let mut out = vec![0f32; new_height * stride];
    for (y, tap) in rows.iter().enumerate() {
        for (k, w) in tap.weights.iter().enumerate() {
            let source = &wide[(tap.first + k) * stride..(tap.first + k + 1) * stride];
            for (o, s) in out[y * stride..(y + 1) * stride].iter_mut().zip(source) {
                *o += w * s;
            }
        }
    }
    out
}

/// A moment on a sequence of frames: at frame `from`, or `weight` of the way from it to the
/// next frame `to`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Between {
    pub from: usize,
    pub to: usize,
    pub weight: f32,
}

impl Between {
    /// Exactly frame `index`.
    pub fn at(index: usize) -> Self {
        Self {
            from: index,
            to: index,
            weight: 0.0,
        }
    }
}

/// The moment `numerator / denominator` frames after frame 0 of a sequence of `len` frames,
/// held within it. Exact integer arithmetic: a moment that falls on a frame is that frame, with
/// weight 0.
pub(crate) fn between(numerator: isize, denominator: usize, len: usize) -> Between {
    let denominator = denominator.max(1) as isize;
    let end = (len.max(1) - 1) as isize;
    let clamped = numerator.clamp(0, end * denominator);
    let from = clamped.div_euclid(denominator);
    let rest = clamped.rem_euclid(denominator);
    if rest == 0 {
        return Between::at(from as usize);
    }
    Between {
        from: from as usize,
        to: from as usize + 1,
        weight: (rest as f64 / denominator as f64) as f32,
    }
}

/// `first` where `weight` is 0 (its exact samples), `second` where 1, mixed in proportion
/// between.
pub(crate) fn blend(first: &[f32], second: &[f32], weight: f32) -> Vec<f32> {
    if weight == 0.0 {
        return first.to_vec();
    }
    first
        .iter()
        .zip(second)
        .map(|(&a, &b)| a * (1.0 - weight) + b * weight)
        .collect()
}

/// Running maximum (`grow`) or mean over a window of `radius` pixels either side, separably.
fn filter(plane: &[f32], (width, height): (usize, usize), radius: usize, grow: bool) -> Vec<f32> {
    let pass = |input: &[f32], len: usize, lines: usize, at: &dyn Fn(usize, usize) -> usize| {
        let mut out = vec![0f32; input.len()];
        for line in 0..lines {
            for i in 0..len {
                let (lo, hi) = (i.saturating_sub(radius), (i + radius + 1).min(len));
                let values = (lo..hi).map(|j| input[at(line, j)]);
                out[at(line, i)] = if grow {
                    values.fold(0.0, f32::max)
                } else {
                    // Outside the frame counts as the nearest edge value's neighbourhood:
                    // divide by the taps that exist so edges do not fade.
                    values.sum::<f32>() / (hi - lo) as f32
                };
            }
        }
        out
    };
    let across = pass(plane, width, height, &|y, x| y * width + x);
    pass(&across, height, width, &|x, y| y * width + x)
}

/// The composite weight of background replacement: the background mask (1 = replace) grown by
/// `dilation` pixels and softened over `feather` pixels, never below the original mask so the
/// old background never shows through.
pub(crate) fn shape_mask(
    background: &[f32],
    size: (usize, usize),
    dilation: usize,
    feather: usize,
) -> Vec<f32> {
    let grown = if dilation > 0 {
        filter(background, size, dilation, true)
    } else {
        background.to_vec()
    };
    let soft = if feather > 0 {
        filter(&grown, size, feather, false)
    } else {
        grown
    };
    soft.iter()
        .zip(background)
        .map(|(s, b)| s.max(*b))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_the_identity_and_flat_stays_flat() {
        let plane: Vec<f32> = (0..4 * 3 * 3).map(|i| i as f32).collect();
        assert_eq!(resize(&plane, (4, 3), 3, (4, 3)), plane);
        let flat = vec![77.0; 10 * 6];
        for size in [(3, 2), (20, 13), (7, 6)] {
            assert!(
                resize(&flat, (10, 6), 1, size)
                    .iter()
                    .all(|v| (v - 77.0).abs() < 1e-4)
            );
        }
    }

    #[test]
    fn halving_averages_pairs() {
        let plane = vec![0.0, 10.0, 20.0, 30.0];
        let half = resize(&plane, (4, 1), 1, (2, 1));
        // Triangle over 2 source pixels each side: weights 1/8, 3/8, 3/8, 1/8 (edge renormalised).
        assert!(
            half[0] < half[1] && half[0] > 0.0 && half[1] < 30.0,
            "{half:?}"
        );
    }

    #[test]
    fn moments_advance_monotonically_and_land_exactly_on_frames() {
        // 24 fps source frames on 16 fps model frames: every third falls on a frame.
        let moments: Vec<Between> = (0..=12).map(|at| between(at * 2, 3, 20)).collect();
        for (at, moment) in moments.iter().enumerate() {
            let time = moment.from as f32 + moment.weight;
            assert!(
                (time - at as f32 * 2.0 / 3.0).abs() < 1e-6,
                "{at}: {moment:?}"
            );
            if at % 3 == 0 {
                assert_eq!(*moment, Between::at(at * 2 / 3));
            } else {
                assert!(moment.weight > 0.0 && moment.weight < 1.0 && moment.to == moment.from + 1);
            }
        }
        assert!(
            moments
                .windows(2)
                .all(|p| (p[0].from, p[0].weight) < (p[1].from, p[1].weight))
        );
        // Held within the sequence.
        assert_eq!(between(-5, 3, 4), Between::at(0));
        assert_eq!(between(100, 3, 4), Between::at(3));
    }

    #[test]
    fn blends_weigh_by_time_and_keep_exact_bytes_at_zero() {
        let (first, second) = (vec![0.0, 100.0, 255.0, 7.25], vec![30.0, 100.0, 0.0, 8.0]);
        assert_eq!(blend(&first, &second, 0.0), first);
        assert_eq!(blend(&first, &second, 1.0), second);
        let third = blend(&first, &second, 1.0 / 3.0);
        for (value, expected) in third.iter().zip([10.0, 100.0, 170.0, 7.5]) {
            assert!((value - expected).abs() < 1e-4, "{third:?}");
        }
    }

    #[test]
    fn mask_grows_and_feathers_outwards_only() {
        let mut mask = vec![0.0; 9];
        mask[4] = 1.0;
        let grown = shape_mask(&mask, (9, 1), 2, 0);
        assert_eq!(grown, vec![0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
        let soft = shape_mask(&mask, (9, 1), 2, 1);
        assert_eq!(soft[4], 1.0);
        assert!(soft[1] > 0.0 && soft[1] < 1.0 && soft[0] == 0.0, "{soft:?}");
    }
}
