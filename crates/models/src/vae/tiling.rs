//! Spatial tiling of the VAE with the semantics of diffusers' `AutoencoderKLWan.enable_tiling`,
//! `tiled_encode` and `tiled_decode`: the input is cut into overlapping tiles that each run the
//! whole causal pass over time (a fresh feature cache per tile); each output tile is blended
//! linearly into the tile above and the tile to its left over their overlap (`blend_v`,
//! `blend_h`, on tiles already blended) and cropped to the stride.
//!
//! The reference keeps every tile until all are done; here a row of tiles is blended as soon
//! as it is done and only the row above is kept, which gives the same values in less memory.

use candle_core::{Result, Tensor};
use serde::Deserialize;

/// Height and width dims of the VAE's internal `[B, T, H, W, C]` layout.
const HEIGHT_DIM: usize = 2;
const WIDTH_DIM: usize = 3;

/// Tile sizes and strides in pixels, as `AutoencoderKLWan.enable_tiling(tile_sample_min_height,
/// tile_sample_min_width, tile_sample_stride_height, tile_sample_stride_width)` takes them;
/// [`Default`] is diffusers' (256 x 256 tiles every 192 pixels: 64 pixels of overlap).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct Tiling {
    pub tile_sample_min_height: usize,
    pub tile_sample_min_width: usize,
    pub tile_sample_stride_height: usize,
    pub tile_sample_stride_width: usize,
}

impl Default for Tiling {
    fn default() -> Self {
        Self {
            tile_sample_min_height: 256,
            tile_sample_min_width: 256,
            tile_sample_stride_height: 192,
            tile_sample_stride_width: 192,
        }
    }
}

/// Which way the VAE runs: the tiles' input and output units differ by the spatial factor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Direction {
    /// Pixels in, latents out.
    Encode,
    /// Latents in, pixels out.
    Decode,
}

/// One axis of the tile grid: where tiles start and how large they are in the input, and the
/// overlap and stride of their outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Axis {
    input_size: usize,
    input_stride: usize,
    output_stride: usize,
    /// Rows (or columns) of a tile's output blended into the previous tile's.
    output_blend: usize,
}

impl Axis {
    fn new(min: usize, stride: usize, spatial: usize, direction: Direction) -> Self {
        // diffusers' integer arithmetic: latent sizes are the pixel sizes floor-divided.
        let (latent_min, latent_stride) = (min / spatial, stride / spatial);
        match direction {
            Direction::Encode => Self {
                input_size: min,
                input_stride: stride,
                output_stride: latent_stride,
                output_blend: latent_min - latent_stride,
            },
            Direction::Decode => Self {
                input_size: latent_min,
                input_stride: latent_stride,
                output_stride: stride,
                output_blend: min - stride,
            },
        }
    }

    /// Start and length of each tile along an input of `len`.
    fn tiles(&self, len: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..len)
            .step_by(self.input_stride)
            .map(move |start| (start, self.input_size.min(len - start)))
    }
}

/// The tile grid of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Grid {
    rows: Axis,
    columns: Axis,
}

impl Tiling {
    /// Tiles of diffusers' default size, but square tiles of `side` pixels every `stride`.
    pub fn square(side: usize, stride: usize) -> Self {
        Self {
            tile_sample_min_height: side,
            tile_sample_min_width: side,
            tile_sample_stride_height: stride,
            tile_sample_stride_width: stride,
        }
    }

    /// Refuses sizes the reference's arithmetic does not cover: sizes and strides must be
    /// multiples of the spatial factor (else its latent and pixel tiles disagree), and strides
    /// at most the tile sizes (else tiles leave gaps).
    pub fn validate(&self, spatial: usize) -> Result<()> {
        let sides = [
            (
                "height",
                self.tile_sample_min_height,
                self.tile_sample_stride_height,
            ),
            (
                "width",
                self.tile_sample_min_width,
                self.tile_sample_stride_width,
            ),
        ];
        for (side, min, stride) in sides {
            if stride == 0 || min < stride || min % spatial != 0 || stride % spatial != 0 {
                candle_core::bail!(
                    "VAE tiling: tile {side} {min} with stride {stride} must be positive multiples of {spatial}, the stride no larger than the tile"
                )
            }
        }
        Ok(())
    }

    /// Pixels of the largest tile on a `width` x `height` frame (the whole frame when it fits
    /// in one tile).
    pub fn tile_pixels(&self, width: usize, height: usize) -> usize {
        self.tile_sample_min_width.min(width) * self.tile_sample_min_height.min(height)
    }

    pub(super) fn grid(&self, spatial: usize, direction: Direction) -> Result<Grid> {
        self.validate(spatial)?;
        Ok(Grid {
            rows: Axis::new(
                self.tile_sample_min_height,
                self.tile_sample_stride_height,
                spatial,
                direction,
            ),
            columns: Axis::new(
                self.tile_sample_min_width,
                self.tile_sample_stride_width,
                spatial,
                direction,
            ),
        })
    }
}

impl Grid {
    /// Runs `run_tile` on every tile of `input` `[B, T, H, W, C]`, row by row, and blends the
    /// outputs into one `[B, T', out_height, out_width, C']`. `None` as soon as a tile gives
    /// `None` (stopped).
    pub(super) fn run(
        &self,
        input: &Tensor,
        (out_height, out_width): (usize, usize),
        run_tile: &dyn Fn(&Tensor) -> Result<Option<Tensor>>,
    ) -> Result<Option<Tensor>> {
        let (height, width) = (input.dim(HEIGHT_DIM)?, input.dim(WIDTH_DIM)?);
        let mut strips = Vec::new();
        // The row above, blended, for the next row to blend into.
        let mut above: Vec<Tensor> = Vec::new();
        for (top, tile_height) in self.rows.tiles(height) {
            let mut row: Vec<Tensor> = Vec::new();
            let mut cropped = Vec::new();
            for (column, (left, tile_width)) in self.columns.tiles(width).enumerate() {
                let tile = input
                    .narrow(HEIGHT_DIM, top, tile_height)?
                    .narrow(WIDTH_DIM, left, tile_width)?
                    .contiguous()?;
                let Some(mut tile) = run_tile(&tile)? else {
                    return Ok(None);
                };
                if let Some(upper) = above.get(column) {
                    tile = blend(upper, &tile, self.rows.output_blend, HEIGHT_DIM)?;
                }
                if let Some(previous) = row.last() {
                    tile = blend(previous, &tile, self.columns.output_blend, WIDTH_DIM)?;
                }
                cropped.push(crop(
                    &tile,
                    self.rows.output_stride,
                    self.columns.output_stride,
                )?);
                row.push(tile);
            }
            strips.push(Tensor::cat(&cropped, WIDTH_DIM)?);
            above = row;
        }
        let output = Tensor::cat(&strips, HEIGHT_DIM)?;
        crop(&output, out_height, out_width).map(Some)
    }
}

/// The first `height` rows and `width` columns of `x` (all of them where it has fewer).
fn crop(x: &Tensor, height: usize, width: usize) -> Result<Tensor> {
    let height = height.min(x.dim(HEIGHT_DIM)?);
    let width = width.min(x.dim(WIDTH_DIM)?);
    x.narrow(HEIGHT_DIM, 0, height)?.narrow(WIDTH_DIM, 0, width)
}

/// `blend_v` (`dim` = height) / `blend_h` (`dim` = width): the first `extent` rows of `tile`
/// become `previous`'s last rows * (1 - y / extent) + their own * (y / extent), the extent
/// shortened to the smaller tile as the reference does.
fn blend(previous: &Tensor, tile: &Tensor, extent: usize, dim: usize) -> Result<Tensor> {
    let (previous_len, len) = (previous.dim(dim)?, tile.dim(dim)?);
    let extent = extent.min(previous_len).min(len);
    if extent == 0 {
        return Ok(tile.clone());
    }
    // The reference's weights are Python floats, rounded to the tensor's dtype.
    let own: Vec<f32> = (0..extent)
        .map(|y| (y as f64 / extent as f64) as f32)
        .collect();
    let other: Vec<f32> = (0..extent)
        .map(|y| (1.0 - y as f64 / extent as f64) as f32)
        .collect();
    let mut shape = [1usize; 5];
    shape[dim] = extent;
    let weights =
        |w: Vec<f32>| Tensor::from_vec(w, &shape[..], tile.device())?.to_dtype(tile.dtype());
    let head = previous
        .narrow(dim, previous_len - extent, extent)?
        .broadcast_mul(&weights(other)?)?
        .add(&tile.narrow(dim, 0, extent)?.broadcast_mul(&weights(own)?)?)?;
    Tensor::cat(&[&head, &tile.narrow(dim, extent, len - extent)?], dim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn diffusers_defaults_give_its_latent_arithmetic() {
        let grid = Tiling::default().grid(8, Direction::Decode).unwrap();
        let expected = Axis {
            input_size: 32,
            input_stride: 24,
            output_stride: 192,
            output_blend: 64,
        };
        assert_eq!((grid.rows, grid.columns), (expected, expected));
        let grid = Tiling::default().grid(8, Direction::Encode).unwrap();
        let expected = Axis {
            input_size: 256,
            input_stride: 192,
            output_stride: 24,
            output_blend: 8,
        };
        assert_eq!((grid.rows, grid.columns), (expected, expected));
        // 1080p latents: tiles start every 24 rows, the last ones shorter.
        let starts: Vec<_> = Tiling::default()
            .grid(8, Direction::Decode)
            .unwrap()
            .rows
            .tiles(135)
            .collect();
        assert_eq!(
            starts,
            [(0, 32), (24, 32), (48, 32), (72, 32), (96, 32), (120, 15)]
        );
    }

    #[test]
    fn sizes_the_reference_cannot_tile_are_refused() {
        assert!(Tiling::square(256, 192).validate(8).is_ok());
        assert!(
            Tiling::square(256, 100).validate(8).is_err(),
            "stride not a multiple"
        );
        assert!(
            Tiling::square(60, 32).validate(8).is_err(),
            "size not a multiple"
        );
        assert!(
            Tiling::square(64, 128).validate(8).is_err(),
            "gaps between tiles"
        );
        assert!(Tiling::square(64, 0).validate(8).is_err());
    }

    #[test]
    fn blending_ramps_from_the_previous_tile_to_this_one() {
        let device = Device::Cpu;
        let previous = Tensor::full(1f32, (1, 1, 6, 2, 1), &device).unwrap();
        let tile = Tensor::full(5f32, (1, 1, 5, 2, 1), &device).unwrap();
        let blended = blend(&previous, &tile, 4, HEIGHT_DIM).unwrap();
        let rows: Vec<f32> = blended
            .narrow(WIDTH_DIM, 0, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(rows, [1.0, 2.0, 3.0, 4.0, 5.0]);
        // A shorter tile shortens the blend.
        let short = Tensor::full(5f32, (1, 1, 2, 2, 1), &device).unwrap();
        let blended = blend(&previous, &short, 4, HEIGHT_DIM).unwrap();
        let rows: Vec<f32> = blended.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(rows, [1.0, 1.0, 3.0, 3.0]);
        assert_eq!(blended.dtype(), DType::F32);
    }

    /// Tiles that do not overlap and a pass-through tile function give back the input.
    #[test]
    fn a_grid_without_overlap_reassembles_its_input() {
        let device = Device::Cpu;
        let input = Tensor::arange(0f32, 2.0 * 7.0 * 5.0, &device)
            .unwrap()
            .reshape((1, 2, 7, 5, 1))
            .unwrap();
        let axis = |size| Axis {
            input_size: size,
            input_stride: size,
            output_stride: size,
            output_blend: 0,
        };
        let grid = Grid {
            rows: axis(3),
            columns: axis(2),
        };
        let calls = std::cell::Cell::new(0);
        let out = grid
            .run(&input, (7, 5), &|tile| {
                calls.set(calls.get() + 1);
                Ok(Some(tile.clone()))
            })
            .unwrap()
            .unwrap();
        assert_eq!(
            calls.get(),
            9,
            "three rows of three tiles, the last ones smaller"
        );
        let diff: f32 = (out - &input)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(diff, 0.0);
    }
}
