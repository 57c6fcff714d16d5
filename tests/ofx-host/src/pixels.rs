//! Images as the tests see them: tightly packed rows, bottom row first.

use soragen_ofx_ffi::{Components, Depth, RectI};

#[derive(Clone, Debug, PartialEq)]
pub struct Pixels {
    pub bounds: RectI,
    pub depth: Depth,
    pub components: Components,
    pub data: Vec<u8>,
}

impl Pixels {
    pub fn new(bounds: RectI, depth: Depth, components: Components) -> Self {
        let size = bounds.width() * bounds.height() * depth.bytes() * components.count();
        Pixels {
            bounds,
            depth,
            components,
            data: vec![0; size],
        }
    }

    fn stride(&self) -> usize {
        self.bounds.width() * self.depth.bytes() * self.components.count()
    }

    pub fn row(&self, y: i32) -> &[u8] {
        let start = (y - self.bounds.y1) as usize * self.stride();
        &self.data[start..start + self.stride()]
    }

    pub fn row_mut(&mut self, y: i32) -> &mut [u8] {
        let stride = self.stride();
        let start = (y - self.bounds.y1) as usize * stride;
        &mut self.data[start..start + stride]
    }

    /// The bytes of the pixels inside `rect` (row by row), to compare regions.
    pub fn region(&self, rect: RectI) -> Vec<u8> {
        let bytes = self.depth.bytes() * self.components.count();
        let mut out = Vec::new();
        for y in rect.y1..rect.y2 {
            let row = self.row(y);
            out.extend_from_slice(
                &row[(rect.x1 - self.bounds.x1) as usize * bytes
                    ..(rect.x2 - self.bounds.x1) as usize * bytes],
            );
        }
        out
    }

    /// The image at a render scale (nearest pixel), as hosts hand images to scaled renders.
    pub fn scaled(&self, scale: f64) -> Pixels {
        if scale == 1.0 {
            return self.clone();
        }
        let b = self.bounds;
        let at = |v: i32| (v as f64 * scale).round() as i32;
        let bounds = RectI {
            x1: at(b.x1),
            y1: at(b.y1),
            x2: at(b.x2),
            y2: at(b.y2),
        };
        let mut scaled = Pixels::new(bounds, self.depth, self.components);
        let bytes = self.depth.bytes() * self.components.count();
        for y in bounds.y1..bounds.y2 {
            let source_y = ((y as f64 / scale) as i32).clamp(b.y1, b.y2 - 1);
            let source = self.row(source_y).to_vec();
            let row = scaled.row_mut(y);
            for x in bounds.x1..bounds.x2 {
                let source_x = (((x as f64 / scale) as i32).clamp(b.x1, b.x2 - 1) - b.x1) as usize;
                let target = (x - bounds.x1) as usize;
                row[target * bytes..(target + 1) * bytes]
                    .copy_from_slice(&source[source_x * bytes..(source_x + 1) * bytes]);
            }
        }
        scaled
    }

    /// A test frame: smooth gradients that move with `seed`, with values no 8-bit image holds
    /// (so a round trip through 8 bits would show), alpha a disc in the middle.
    pub fn synthetic(
        width: usize,
        height: usize,
        depth: Depth,
        components: Components,
        seed: u32,
    ) -> Self {
        let bounds = RectI {
            x1: 0,
            y1: 0,
            x2: width as i32,
            y2: height as i32,
        };
        let mut pixels = Pixels::new(bounds, depth, components);
        let channels = components.count();
        for y in 0..height {
            for x in 0..width {
                let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
                let inside = (fx - 0.5).powi(2) + (fy - 0.5).powi(2) < 0.09;
                let rgb = [
                    (fx * 0.8 + seed as f32 * 0.0371).fract(),
                    (fy * 0.7 + seed as f32 * 0.0113 + 0.1).fract(),
                    ((fx + fy) * 0.45 + seed as f32 * 0.0217 + 0.2).fract(),
                ];
                let values = [rgb[0], rgb[1], rgb[2], if inside { 1.0 } else { 0.0 }];
                for c in 0..channels {
                    let v = if components == Components::Alpha {
                        values[3]
                    } else {
                        values[c]
                    };
                    let index = (y * width + x) * channels + c;
                    match depth {
                        Depth::Byte => pixels.data[index] = (v * 255.0) as u8,
                        Depth::Short => pixels.data[2 * index..2 * index + 2]
                            .copy_from_slice(&((v * 65535.0) as u16).to_ne_bytes()),
                        Depth::Float => {
                            pixels.data[4 * index..4 * index + 4].copy_from_slice(&v.to_ne_bytes())
                        }
                    }
                }
            }
        }
        pixels
    }
}
