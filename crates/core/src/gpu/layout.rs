//! How a host lays out an image in memory: pixel format, size, row pitch and row order.
//! Pure arithmetic, the same for GPU and host memory.

use std::ops::Range;

use crate::{Error, Result};

/// The packed 4-channel formats hosts hand over: OpenFX CUDA renders are float RGBA,
/// GStreamer's CUDA memory RGBA or BGRA bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelFormat {
    /// Four native-endian f32 per pixel, R G B A, nominally in [0, 1].
    RgbaF32,
    /// Four bytes per pixel, R G B A.
    Rgba8,
    /// Four bytes per pixel, B G R A.
    Bgra8,
}

impl PixelFormat {
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::RgbaF32 => 16,
            PixelFormat::Rgba8 | PixelFormat::Bgra8 => 4,
        }
    }

    /// The format's number in `convert.cu`.
    #[cfg(feature = "cuda")]
    pub(crate) fn kernel_code(self) -> i32 {
        match self {
            PixelFormat::RgbaF32 => 0,
            PixelFormat::Rgba8 => 1,
            PixelFormat::Bgra8 => 2,
        }
    }
}

/// Where each row of an image lies relative to the image's data pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLayout {
    pub width: usize,
    pub height: usize,
    pub format: PixelFormat,
    /// Bytes from the first row in memory to the second (the pitch). Negative when rows run
    /// backwards in memory, which OpenFX allows.
    pub row_bytes: isize,
    /// The row at the data pointer is the picture's bottom row (OpenFX), not its top
    /// (GStreamer and the core's frames).
    pub bottom_up: bool,
}

impl ImageLayout {
    /// Checks that the rows hold the pixels and that every offset fits the address space.
    pub fn new(
        width: usize,
        height: usize,
        format: PixelFormat,
        row_bytes: isize,
        bottom_up: bool,
    ) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(Error::Input(format!(
                "a {width}x{height} image has no pixels"
            )));
        }
        let packed = width
            .checked_mul(format.bytes_per_pixel())
            .filter(|&bytes| bytes <= isize::MAX as usize)
            .ok_or_else(|| Error::Input(format!("an image {width} pixels wide is too wide")))?;
        if format == PixelFormat::RgbaF32 && row_bytes % 4 != 0 {
            return Err(Error::Input(format!(
                "float rows {row_bytes} bytes apart are not aligned to 4 bytes"
            )));
        }
        if row_bytes.unsigned_abs() < packed {
            return Err(Error::Input(format!(
                "rows of {row_bytes} bytes cannot hold {width} {format:?} pixels ({packed} bytes)"
            )));
        }
        isize::try_from(height - 1)
            .ok()
            .and_then(|rows| rows.checked_mul(row_bytes))
            .and_then(|last| last.checked_add(packed as isize))
            .ok_or_else(|| {
                Error::Input(format!(
                    "{height} rows of {row_bytes} bytes do not fit in memory"
                ))
            })?;
        Ok(Self {
            width,
            height,
            format,
            row_bytes,
            bottom_up,
        })
    }

    /// Bytes of one row's pixels, without padding.
    pub fn packed_row_bytes(&self) -> usize {
        self.width * self.format.bytes_per_pixel()
    }

    /// Offset from the data pointer to the first byte of picture row `y` (0 = top).
    pub fn row_offset(&self, y: usize) -> isize {
        let memory_row = if self.bottom_up {
            self.height - 1 - y
        } else {
            y
        };
        memory_row as isize * self.row_bytes
    }

    /// Offset from one picture row to the row below it.
    pub fn down_step(&self) -> isize {
        if self.bottom_up {
            -self.row_bytes
        } else {
            self.row_bytes
        }
    }

    /// The bytes the image covers, as offsets from the data pointer (start may be negative).
    pub fn span(&self) -> Range<isize> {
        let last = (self.height as isize - 1) * self.row_bytes;
        last.min(0)..last.max(0) + self.packed_row_bytes() as isize
    }
}

/// An image in GPU memory that a host owns: a CUDA device pointer and its layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceImage {
    /// The `CUdeviceptr` of the row the layout counts from.
    pub data: u64,
    pub layout: ImageLayout,
}

impl DeviceImage {
    /// GStreamer's layout: `data` is the top row, each next row `pitch` bytes further.
    pub fn top_down(
        data: u64,
        width: usize,
        height: usize,
        format: PixelFormat,
        pitch: usize,
    ) -> Result<Self> {
        let pitch = isize::try_from(pitch)
            .map_err(|_| Error::Input(format!("a pitch of {pitch} bytes is too large")))?;
        Self::at(data, ImageLayout::new(width, height, format, pitch, false)?)
    }

    /// OpenFX's layout: `data` is the bottom row, the row above it `row_bytes` further on
    /// (`kOfxImagePropRowBytes`, possibly negative).
    pub fn bottom_up(
        data: u64,
        width: usize,
        height: usize,
        format: PixelFormat,
        row_bytes: isize,
    ) -> Result<Self> {
        Self::at(
            data,
            ImageLayout::new(width, height, format, row_bytes, true)?,
        )
    }

    fn at(data: u64, layout: ImageLayout) -> Result<Self> {
        if data == 0 {
            return Err(Error::Input("the host gave a null image pointer".into()));
        }
        if layout.format == PixelFormat::RgbaF32 && !data.is_multiple_of(4) {
            return Err(Error::Input(format!(
                "float image data at {data:#x} is not aligned to 4 bytes"
            )));
        }
        Ok(Self { data, layout })
    }

    /// The device address of picture row `y`'s first byte (0 = top).
    pub fn row_address(&self, y: usize) -> u64 {
        self.data
            .wrapping_add_signed(self.layout.row_offset(y) as i64)
    }
}

/// A rectangle of an image's pixels: columns `left..left + width` and picture rows
/// `top..top + height` (row 0 is the top).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub left: usize,
    pub top: usize,
    pub width: usize,
    pub height: usize,
}

impl Region {
    /// Checks that the region lies inside an image of `layout`'s size.
    pub fn check_inside(&self, layout: &ImageLayout) -> Result<()> {
        let fits = |start: usize, length: usize, limit: usize| {
            start.checked_add(length).is_some_and(|end| end <= limit)
        };
        if fits(self.left, self.width, layout.width) && fits(self.top, self.height, layout.height) {
            Ok(())
        } else {
            Err(Error::Input(format!(
                "a {}x{} region at ({}, {}) is not inside a {}x{} image",
                self.width, self.height, self.left, self.top, layout.width, layout.height
            )))
        }
    }
}

/// Where another picture lies over an image: its top-left pixel at column `left`, row `top`
/// of the image (negative: left of or above the image's first pixel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub left: i64,
    pub top: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_down_rows_follow_the_pitch() {
        let image = DeviceImage::top_down(0x1000, 3, 4, PixelFormat::Rgba8, 16).unwrap();
        assert_eq!(image.layout.packed_row_bytes(), 12);
        assert_eq!(
            (0..4)
                .map(|y| image.layout.row_offset(y))
                .collect::<Vec<_>>(),
            [0, 16, 32, 48]
        );
        assert_eq!(image.layout.down_step(), 16);
        assert_eq!(image.layout.span(), 0..60);
        assert_eq!(image.row_address(2), 0x1020);
    }

    #[test]
    fn openfx_rows_count_up_from_the_bottom_row() {
        // 2 float pixels a row (32 bytes), rows 40 bytes apart, data at the bottom row.
        let image = DeviceImage::bottom_up(0x10_000, 2, 3, PixelFormat::RgbaF32, 40).unwrap();
        assert_eq!(
            (0..3)
                .map(|y| image.layout.row_offset(y))
                .collect::<Vec<_>>(),
            [80, 40, 0]
        );
        assert_eq!(image.layout.down_step(), -40);
        assert_eq!(image.layout.span(), 0..112);
        assert_eq!(image.row_address(0), 0x10_000 + 80);
    }

    #[test]
    fn negative_row_bytes_put_the_picture_top_before_the_data_pointer() {
        let image = DeviceImage::bottom_up(0x10_000, 2, 3, PixelFormat::RgbaF32, -32).unwrap();
        assert_eq!(
            (0..3)
                .map(|y| image.layout.row_offset(y))
                .collect::<Vec<_>>(),
            [-64, -32, 0]
        );
        assert_eq!(image.layout.down_step(), 32);
        assert_eq!(image.layout.span(), -64..32);
        assert_eq!(image.row_address(0), 0x10_000 - 64);
    }

    #[test]
    fn layouts_that_cannot_hold_their_pixels_are_refused() {
        let error = |result: Result<DeviceImage>| result.unwrap_err().to_string();
        assert!(
            error(DeviceImage::top_down(0x1000, 4, 2, PixelFormat::Bgra8, 15))
                .contains("cannot hold 4 Bgra8 pixels")
        );
        assert!(
            error(DeviceImage::bottom_up(
                0x1000,
                4,
                2,
                PixelFormat::RgbaF32,
                -60
            ))
            .contains("(64 bytes)")
        );
        assert!(
            error(DeviceImage::top_down(0x1000, 0, 2, PixelFormat::Rgba8, 0)).contains("no pixels")
        );
        assert!(
            error(DeviceImage::top_down(0, 1, 1, PixelFormat::Rgba8, 4))
                .contains("null image pointer")
        );
        assert!(
            error(DeviceImage::bottom_up(
                0x1000,
                1,
                2,
                PixelFormat::RgbaF32,
                18
            ))
            .contains("not aligned")
        );
        assert!(
            error(DeviceImage::bottom_up(
                0x1002,
                1,
                2,
                PixelFormat::RgbaF32,
                16
            ))
            .contains("0x1002 is not aligned")
        );
        assert!(
            error(DeviceImage::top_down(
                0x1000,
                1,
                usize::MAX / 2,
                PixelFormat::Rgba8,
                1 << 20
            ))
            .contains("do not fit")
        );
        assert!(
            error(DeviceImage::top_down(
                0x1000,
                usize::MAX / 8,
                1,
                PixelFormat::RgbaF32,
                0
            ))
            .contains("too wide")
        );
    }
}
