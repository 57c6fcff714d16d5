//! Between OpenFX images (any depth, RGB or RGBA, rows bottom-up, any row stride) and the
//! core's top-down frames, read at 8 bits.

use std::hash::{Hash, Hasher};

use soragen_core::video::Frame;
use soragen_ofx_ffi::{Components, Depth, Image, RectI};

use crate::memory::{OutOfMemory, zeroed};

fn read(bytes: &[u8], depth: Depth, index: usize) -> f32 {
    match depth {
        Depth::Byte => bytes[index] as f32 / 255.0,
        Depth::Short => {
            u16::from_ne_bytes([bytes[2 * index], bytes[2 * index + 1]]) as f32 / 65535.0
        }
        Depth::Float => {
            f32::from_ne_bytes(bytes[4 * index..4 * index + 4].try_into().expect("4 bytes"))
        }
    }
}

fn write(bytes: &mut [u8], depth: Depth, index: usize, value: f32) {
    let value = if depth == Depth::Float {
        value
    } else {
        value.clamp(0.0, 1.0)
    };
    match depth {
        Depth::Byte => bytes[index] = (value * 255.0).round() as u8,
        Depth::Short => bytes[2 * index..2 * index + 2]
            .copy_from_slice(&((value * 65535.0).round() as u16).to_ne_bytes()),
        Depth::Float => bytes[4 * index..4 * index + 4].copy_from_slice(&value.to_ne_bytes()),
    }
}

fn to_u8(value: f32) -> u8 {
    (value.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// One pixel as RGBA in [0, 1] (opaque where the image has no alpha; grey from an alpha image).
fn pixel(row: &[u8], image: &Image, x: i32) -> [f32; 4] {
    let channels = image.components.count();
    let base = (x - image.bounds.x1) as usize * channels;
    let c = |i| read(row, image.depth, base + i);
    match image.components {
        Components::Rgba => [c(0), c(1), c(2), c(3)],
        Components::Rgb => [c(0), c(1), c(2), 1.0],
        Components::Alpha => [c(0), c(0), c(0), c(0)],
    }
}

fn set_pixel(
    row: &mut [u8],
    depth: Depth,
    components: Components,
    x_offset: usize,
    value: [f32; 4],
) {
    let channels = components.count();
    match components {
        Components::Alpha => write(row, depth, x_offset, value[3]),
        _ => (0..channels).for_each(|i| write(row, depth, x_offset * channels + i, value[i])),
    }
}

/// Row of `rect` that OpenFX row `y` is (frames run top-down).
fn frame_row(rect: &RectI, y: i32) -> usize {
    (rect.y2 - 1 - y) as usize
}

/// The image's pixels inside `rect` as an 8-bit frame (black where the image has none); alpha
/// kept for RGBA images.
pub fn to_frame(image: &Image, rect: RectI) -> Result<Frame, OutOfMemory> {
    let (width, height) = (rect.width(), rect.height());
    let mut rgb = zeroed(width * height * 3)?;
    let mut alpha = if image.components == Components::Rgba {
        Some(zeroed(width * height)?)
    } else {
        None
    };
    let inside = rect.intersect(&image.bounds);
    for y in inside.y1..inside.y2 {
        let Some(row) = image.row(y) else { continue };
        let out_row = frame_row(&rect, y);
        for x in inside.x1..inside.x2 {
            let p = pixel(row, image, x);
            let i = out_row * width + (x - rect.x1) as usize;
            rgb[3 * i..3 * i + 3].copy_from_slice(&[to_u8(p[0]), to_u8(p[1]), to_u8(p[2])]);
            if let Some(alpha) = alpha.as_mut() {
                alpha[i] = to_u8(p[3]);
            }
        }
    }
    Ok(Frame::from_8bit(&rgb, alpha.as_deref()))
}

/// A matte from a mask image: its alpha, or luma when it has none (white = subject).
pub fn to_matte(image: &Image, rect: RectI) -> Result<Vec<u8>, OutOfMemory> {
    Ok(matte_of(to_frame(image, rect)?, image.components))
}

/// A mask image's matte from its frame: alpha, or luma for images without alpha.
pub fn matte_of(frame: Frame, components: Components) -> Vec<u8> {
    match (components, frame.alpha_8bit()) {
        (Components::Rgb, _) | (_, None) => frame
            .rgb_8bit()
            .chunks_exact(3)
            .map(|p| {
                ((299 * p[0] as u32 + 587 * p[1] as u32 + 114 * p[2] as u32 + 500) / 1000) as u8
            })
            .collect(),
        (_, Some(alpha)) => alpha,
    }
}

/// Hash of an image's pixels and layout: the cache key of hosts without unique identifiers.
pub fn content_hash(image: &Image, state: &mut impl Hasher) {
    (image.bounds, image.depth, image.components).hash(state);
    for y in image.bounds.y1..image.bounds.y2 {
        image.row(y).hash(state);
    }
}

/// Copies `source` into `output` over `window`, byte for byte where the formats agree (kept
/// frames come out bit-identical); zero where the source has no pixels.
pub fn copy_image(output: &mut Image, window: RectI, source: &Image) {
    let window = window.intersect(&output.bounds);
    let (depth, components, x0) = (output.depth, output.components, output.bounds.x1);
    let same_format = source.depth == depth && source.components == components;
    let pixel_bytes = output.pixel_bytes();
    for y in window.y1..window.y2 {
        let Some(out) = output.row_mut(y) else {
            continue;
        };
        let span = &mut out
            [(window.x1 - x0) as usize * pixel_bytes..(window.x2 - x0) as usize * pixel_bytes];
        span.fill(0);
        let Some(row) = source.row(y) else { continue };
        let (from, to) = (
            window.x1.max(source.bounds.x1),
            window.x2.min(source.bounds.x2),
        );
        for x in from..to {
            let offset = (x - window.x1) as usize;
            if same_format {
                let s = (x - source.bounds.x1) as usize * pixel_bytes;
                span[offset * pixel_bytes..(offset + 1) * pixel_bytes]
                    .copy_from_slice(&row[s..s + pixel_bytes]);
            } else {
                set_pixel(span, depth, components, offset, pixel(row, source, x));
            }
        }
    }
}

/// Writes a generated frame (covering `rect`) into `output` over `window`, opaque. Where
/// `unchanged` is given (in-place edits) and its pixel quantises to the generated one, that
/// exact source pixel is written instead, so kept pixels stay bit-identical at every depth.
pub fn write_frame(
    output: &mut Image,
    window: RectI,
    frame: &Frame,
    rect: RectI,
    unchanged: Option<&Image>,
) {
    let window = window.intersect(&output.bounds);
    let (depth, components, x0) = (output.depth, output.components, output.bounds.x1);
    let pixel_bytes = output.pixel_bytes();
    let exact = unchanged.filter(|s| s.depth == depth && s.components == components);
    let frame_rgb = frame.rgb_8bit();
    for y in window.y1..window.y2 {
        let Some(out) = output.row_mut(y) else {
            continue;
        };
        let span = &mut out
            [(window.x1 - x0) as usize * pixel_bytes..(window.x2 - x0) as usize * pixel_bytes];
        span.fill(0);
        if y < rect.y1 || y >= rect.y2 {
            continue;
        }
        let source_row = exact.and_then(|s| s.row(y));
        for x in window.x1.max(rect.x1)..window.x2.min(rect.x2) {
            let i = frame_row(&rect, y) * rect.width() + (x - rect.x1) as usize;
            let rgb = &frame_rgb[3 * i..3 * i + 3];
            let offset = (x - window.x1) as usize;
            if let (Some(source), Some(row)) = (exact, source_row)
                && x >= source.bounds.x1
                && x < source.bounds.x2
            {
                let p = pixel(row, source, x);
                if [to_u8(p[0]), to_u8(p[1]), to_u8(p[2])] == rgb {
                    let s = (x - source.bounds.x1) as usize * pixel_bytes;
                    span[offset * pixel_bytes..(offset + 1) * pixel_bytes]
                        .copy_from_slice(&row[s..s + pixel_bytes]);
                    if components == Components::Rgba {
                        // The result is a whole picture: opaque, like the generated pixels.
                        write(span, depth, offset * 4 + 3, 1.0);
                    }
                    continue;
                }
            }
            let value = [
                rgb[0] as f32 / 255.0,
                rgb[1] as f32 / 255.0,
                rgb[2] as f32 / 255.0,
                1.0,
            ];
            set_pixel(span, depth, components, offset, value);
        }
    }
}
