//! The conversion between host images and the core's frames, pixel by pixel, over host
//! memory. `convert.cu` does exactly this on the GPU; this is its reference (the tests compare
//! both) and serves hosts that hand over the same layouts in host memory.
//!
//! Reading quantises like the CPU paths of the hosts: `round(clamp(v, 0, 1) * 255)` for
//! floats (NaN reads as 0), bytes as they are. Writing gives `v / 255` for floats, and alpha
//! from the frame or opaque.

use super::layout::{ImageLayout, PixelFormat};
use crate::video::Frame;
use crate::{Error, Result};

fn quantise(value: f32) -> u8 {
    (value.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// The byte range of `memory` the image covers when its data pointer is at byte `data`.
fn image_bytes(
    memory_len: usize,
    data: usize,
    layout: &ImageLayout,
) -> Result<std::ops::Range<usize>> {
    let span = layout.span();
    let start = data.checked_add_signed(span.start);
    let end = data.checked_add_signed(span.end);
    match (start, end) {
        (Some(start), Some(end)) if end <= memory_len => Ok(start..end),
        _ => Err(Error::Input(format!(
            "a {}x{} image with rows {} bytes apart does not fit in {memory_len} bytes from byte {data}",
            layout.width, layout.height, layout.row_bytes
        ))),
    }
}

/// Picture row `y` (0 = top), its pixels only.
fn row<'a>(memory: &'a [u8], data: usize, layout: &ImageLayout, y: usize) -> &'a [u8] {
    let start = data.wrapping_add_signed(layout.row_offset(y));
    &memory[start..start + layout.packed_row_bytes()]
}

/// One pixel as R, G, B, A bytes.
fn read_pixel(format: PixelFormat, bytes: &[u8]) -> [u8; 4] {
    let float = |i: usize| {
        quantise(f32::from_ne_bytes(
            bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"),
        ))
    };
    match format {
        PixelFormat::RgbaF32 => [float(0), float(1), float(2), float(3)],
        PixelFormat::Rgba8 => [bytes[0], bytes[1], bytes[2], bytes[3]],
        PixelFormat::Bgra8 => [bytes[2], bytes[1], bytes[0], bytes[3]],
    }
}

fn write_pixel(format: PixelFormat, rgba: [u8; 4], bytes: &mut [u8]) {
    match format {
        PixelFormat::RgbaF32 => {
            for (channel, value) in rgba.into_iter().enumerate() {
                bytes[4 * channel..4 * channel + 4]
                    .copy_from_slice(&(value as f32 / 255.0).to_ne_bytes());
            }
        }
        PixelFormat::Rgba8 => bytes.copy_from_slice(&rgba),
        PixelFormat::Bgra8 => bytes.copy_from_slice(&[rgba[2], rgba[1], rgba[0], rgba[3]]),
    }
}

/// The image in `memory` (its data pointer at byte `data`) as a top-down frame with alpha, read
/// at 8 bits.
pub fn read_image(memory: &[u8], data: usize, layout: &ImageLayout) -> Result<Frame> {
    image_bytes(memory.len(), data, layout)?;
    let (width, height, size) = (layout.width, layout.height, layout.format.bytes_per_pixel());
    let mut rgb = Vec::with_capacity(width * height * 3);
    let mut alpha = Vec::with_capacity(width * height);
    for y in 0..height {
        for pixel in row(memory, data, layout, y).chunks_exact(size) {
            let [r, g, b, a] = read_pixel(layout.format, pixel);
            rgb.extend_from_slice(&[r, g, b]);
            alpha.push(a);
        }
    }
    Ok(Frame::from_8bit(&rgb, Some(&alpha)))
}

/// Checks that a frame has the image's size.
pub(crate) fn check_frame(frame: &Frame, layout: &ImageLayout) -> Result<()> {
    let pixels = layout.width * layout.height;
    if frame.rgb.len() != 3 * pixels || frame.alpha.as_ref().is_some_and(|a| a.len() != pixels) {
        return Err(Error::Output(format!(
            "a frame of {} pixels cannot fill a {}x{} image",
            frame.rgb.len() / 3,
            layout.width,
            layout.height
        )));
    }
    Ok(())
}

/// Writes a top-down frame into the image in `memory`; padding between rows is left alone.
pub fn write_image(
    frame: &Frame,
    memory: &mut [u8],
    data: usize,
    layout: &ImageLayout,
) -> Result<()> {
    check_frame(frame, layout)?;
    image_bytes(memory.len(), data, layout)?;
    let (width, size) = (layout.width, layout.format.bytes_per_pixel());
    let (rgb, alpha) = (frame.rgb_8bit(), frame.alpha_8bit());
    for y in 0..layout.height {
        let start = data.wrapping_add_signed(layout.row_offset(y));
        let out = &mut memory[start..start + layout.packed_row_bytes()];
        for (x, bytes) in out.chunks_exact_mut(size).enumerate() {
            let i = y * width + x;
            let a = alpha.as_ref().map_or(255, |alpha| alpha[i]);
            write_pixel(
                layout.format,
                [rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2], a],
                bytes,
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floats(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_ne_bytes()).collect()
    }

    #[test]
    fn floats_quantise_like_the_hosts_cpu_paths() {
        assert_eq!(quantise(0.5), 128);
        assert_eq!(quantise(0.501_960_8), 128);
        assert_eq!(quantise(-0.2), 0);
        assert_eq!(quantise(1.7), 255);
        assert_eq!(quantise(f32::NAN), 0);
        assert_eq!(quantise(f32::INFINITY), 255);
    }

    #[test]
    fn an_openfx_float_image_reads_top_row_first() {
        // 1x2, bottom row first in memory, rows 20 bytes apart (4 bytes of padding).
        let mut memory = floats(&[0.0, 0.25, 0.5, 1.0]);
        memory.extend_from_slice(&[9; 4]);
        memory.extend(floats(&[1.0, 2.0, -1.0, 0.0]));
        let layout = ImageLayout::new(1, 2, PixelFormat::RgbaF32, 20, true).unwrap();
        let frame = read_image(&memory, 0, &layout).unwrap();
        assert_eq!(frame.rgb_8bit(), [255, 255, 0, 0, 64, 128]);
        assert_eq!(frame.alpha_8bit(), Some(vec![0, 255]));
    }

    #[test]
    fn negative_row_bytes_read_from_before_the_data_pointer() {
        // Memory holds the top row then the bottom row; the data pointer is at the bottom row.
        let memory = [1, 2, 3, 4, 5, 6, 7, 8];
        let layout = ImageLayout::new(1, 2, PixelFormat::Bgra8, -4, true).unwrap();
        let frame = read_image(&memory, 4, &layout).unwrap();
        assert_eq!(frame.rgb_8bit(), [3, 2, 1, 7, 6, 5]);
        assert_eq!(frame.alpha_8bit(), Some(vec![4, 8]));
        let error = read_image(&memory, 3, &layout).unwrap_err().to_string();
        assert!(
            error.contains("does not fit in 8 bytes from byte 3"),
            "{error}"
        );
    }

    #[test]
    fn writing_then_reading_returns_the_frame_in_every_format() {
        let rgb: Vec<u8> = (0..18).map(|v| v * 14).collect();
        let frame = Frame::from_8bit(&rgb, Some(&[0, 50, 100, 150, 200, 255]));
        for format in [PixelFormat::RgbaF32, PixelFormat::Rgba8, PixelFormat::Bgra8] {
            for bottom_up in [false, true] {
                let pitch = 3 * format.bytes_per_pixel() + 8;
                let layout = ImageLayout::new(3, 2, format, pitch as isize, bottom_up).unwrap();
                let mut memory = vec![0xAB; 2 * pitch];
                write_image(&frame, &mut memory, 0, &layout).unwrap();
                assert_eq!(
                    read_image(&memory, 0, &layout).unwrap(),
                    frame,
                    "{format:?} bottom_up={bottom_up}"
                );
                assert!(
                    memory[pitch - 8..pitch].iter().all(|&b| b == 0xAB),
                    "padding untouched"
                );
            }
        }
    }

    #[test]
    fn frames_without_alpha_are_written_opaque() {
        let frame = Frame::from_8bit(&[0, 51, 255], None);
        let layout = ImageLayout::new(1, 1, PixelFormat::RgbaF32, 16, false).unwrap();
        let mut memory = vec![0; 16];
        write_image(&frame, &mut memory, 0, &layout).unwrap();
        assert_eq!(memory, floats(&[0.0, 0.2, 1.0, 1.0]));
        let small = Frame::from_8bit(&[0; 3], Some(&[]));
        assert!(
            write_image(&small, &mut memory, 0, &layout)
                .unwrap_err()
                .to_string()
                .contains("cannot fill a 1x1 image")
        );
    }
}
