//! OpenFX's CUDA render extension. An effect declares CUDA render and CUDA stream support; a
//! host that supports them too may then set `kOfxImageEffectPropCudaEnabled` on a render, and
//! every image's data of that render is CUDA device memory holding packed float RGBA.
//!
//! The `cuda` build declares both where the driver reports a GPU, and renders such a render
//! on the GPU: input images are converted there and only the 8-bit frames the tasks take cross
//! to host memory; kept frames are copied device to device (bit-identical); generated frames
//! are written into the output on the GPU. Everything is queued on the host's stream
//! (`kOfxImageEffectPropCudaStream`) and not waited for; without a stream, the render finishes
//! before returning. A build without CUDA declares both unsupported and refuses a CUDA render
//! sent anyway with `kOfxStatGPURenderFailed`, before any image is touched.

use soragen_core::gpu::{Position, Region};
use soragen_ofx_ffi::sys::*;
use soragen_ofx_ffi::{PropertySet, RectI, Result, optional};

use crate::failure::Failure;

pub use device::DeviceRender;

/// Declares on an effect descriptor what this build can render on the GPU.
pub fn describe(props: PropertySet) -> Result<()> {
    // OpenFX 1.5 properties: a host that predates GPU render does not know them, and simply
    // has no CUDA render.
    let supported = if device::available() { "true" } else { "false" };
    optional(props.set_string(kOfxImageEffectPropCudaRenderSupported, supported))?;
    optional(props.set_string(kOfxImageEffectPropCudaStreamSupported, supported))
}

/// The GPU side of a render whose images are CUDA device memory; None for host memory.
pub fn begin(args: PropertySet) -> std::result::Result<Option<DeviceRender>, Failure> {
    if !args.bool(kOfxImageEffectPropCudaEnabled).unwrap_or(false) {
        return Ok(None);
    }
    // Hosts that render without a stream leave the property out or null.
    let stream = args
        .pointer(kOfxImageEffectPropCudaStream)
        .unwrap_or(std::ptr::null_mut());
    DeviceRender::begin(stream).map(Some)
}

/// The part of `window` inside the `output` image, as a region of the output's picture
/// (OpenFX counts rows up from the bottom, pictures down from the top); None when empty.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub fn region(output: RectI, window: RectI) -> Option<Region> {
    let inside = window.intersect(&output);
    if inside.width() == 0 || inside.height() == 0 {
        return None;
    }
    Some(Region {
        left: (inside.x1 - output.x1) as usize,
        top: (output.y2 - inside.y2) as usize,
        width: inside.width(),
        height: inside.height(),
    })
}

/// Where a picture covering `bounds` lies over the `output` image's picture.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub fn position(output: RectI, bounds: RectI) -> Position {
    Position {
        left: i64::from(bounds.x1) - i64::from(output.x1),
        top: i64::from(output.y2) - i64::from(bounds.y2),
    }
}

#[cfg(feature = "cuda")]
mod device {
    use std::ffi::c_void;

    use soragen_core::device::{DeviceRequest, open_device};
    use soragen_core::gpu::{self, DeviceImage, ImageConverter, PixelFormat, StreamOrder};
    use soragen_core::video::{Frame, Video};
    use soragen_ofx_ffi::{Components, Depth, Image, RectI};

    use super::{position, region};
    use crate::failure::Failure;

    pub fn available() -> bool {
        gpu::cuda_device_count() > 0
    }

    /// One CUDA render: the conversions, on the host's stream.
    pub struct DeviceRender {
        converter: ImageConverter,
    }

    fn device_image(image: &Image) -> Result<DeviceImage, Failure> {
        let Some((data, row_bytes)) = image.device_pixels() else {
            return Err(Failure::Gpu(
                "a CUDA render gave an image in host memory".into(),
            ));
        };
        if (image.depth, image.components) != (Depth::Float, Components::Rgba) {
            return Err(Failure::Gpu(format!(
                "a CUDA render gave a {:?} {:?} image; CUDA images are float RGBA",
                image.depth, image.components
            )));
        }
        Ok(DeviceImage::bottom_up(
            data,
            image.bounds.width(),
            image.bounds.height(),
            PixelFormat::RgbaF32,
            row_bytes,
        )?)
    }

    impl DeviceRender {
        pub fn begin(stream: *mut c_void) -> Result<Self, Failure> {
            if !available() {
                return Err(Failure::Gpu(
                    "the host sent a CUDA render, but no CUDA device is available to Soragen here"
                        .into(),
                ));
            }
            // The host renders with its context current: its device is the images' device.
            let ordinal = gpu::current_device_ordinal()?.unwrap_or(0);
            let device = open_device(DeviceRequest::Cuda(ordinal))
                .map_err(|e| Failure::Gpu(e.to_string()))?;
            // SAFETY: OpenFX hosts hand over a live stream of the current (primary) context that
            // outlasts the render action, which this value does not outlive.
            let converter = unsafe { ImageConverter::new(&device, StreamOrder::from_raw(stream)) }?;
            Ok(Self { converter })
        }

        /// Images of one clip at the window's times as the core's video, and where its pixels sit.
        pub fn read_clip(&self, images: &[Image]) -> Result<(Video, RectI), Failure> {
            let device_images = images
                .iter()
                .map(device_image)
                .collect::<Result<Vec<_>, _>>()?;
            // SAFETY: the host's images of this render, device memory of its context, written on
            // its stream and held (not released) until we return.
            let video = unsafe { self.converter.import_video(&device_images, None) }?;
            Ok((video, images[0].bounds))
        }

        /// Each image as an 8-bit frame with alpha (masks: the alpha is the matte).
        pub fn frames(&self, images: &[Image]) -> Result<Vec<Frame>, Failure> {
            let device_images = images
                .iter()
                .map(device_image)
                .collect::<Result<Vec<_>, _>>()?;
            // SAFETY: as in `read_clip`.
            Ok(unsafe { self.converter.import_frames(&device_images) }?)
        }

        /// Copies `source` into `output` over `window`, byte for byte; zero where it has none.
        pub fn copy_image(
            &self,
            output: &Image,
            window: RectI,
            source: &Image,
        ) -> Result<(), Failure> {
            let Some(region) = region(output.bounds, window) else {
                return Ok(());
            };
            let (out, from) = (device_image(output)?, device_image(source)?);
            // SAFETY: the host's images of this render; the output is ours to write until the
            // host's stream passes our kernels.
            unsafe {
                self.converter.copy_region(
                    &out,
                    region,
                    &from,
                    position(output.bounds, source.bounds),
                )
            }?;
            Ok(())
        }

        /// Writes a generated frame covering `rect` into `output` over `window`, opaque;
        /// pixels of `unchanged` (in-place edits) that read as the generated colour exactly.
        pub fn write_frame(
            &self,
            output: &Image,
            window: RectI,
            frame: &Frame,
            rect: RectI,
            unchanged: Option<&Image>,
        ) -> Result<(), Failure> {
            let Some(region) = region(output.bounds, window) else {
                return Ok(());
            };
            let out = device_image(output)?;
            let unchanged = unchanged
                .map(|image| {
                    Ok::<_, Failure>((device_image(image)?, position(output.bounds, image.bounds)))
                })
                .transpose()?;
            // SAFETY: as in `copy_image`.
            unsafe {
                self.converter.write_region(
                    &out,
                    region,
                    frame,
                    (rect.width(), rect.height()),
                    position(output.bounds, rect),
                    unchanged.as_ref().map(|(image, at)| (image, *at)),
                )
            }?;
            Ok(())
        }

        /// Ends the render: returns at once on the host's stream, else waits for our work.
        pub fn finish(self) -> Result<(), Failure> {
            Ok(self.converter.finish()?)
        }
    }
}

#[cfg(not(feature = "cuda"))]
mod device {
    use std::ffi::c_void;

    use soragen_core::video::{Frame, Video};
    use soragen_ofx_ffi::{Image, RectI};

    use crate::failure::Failure;

    pub fn available() -> bool {
        false
    }

    /// No value exists in a build without CUDA: `begin` refuses every CUDA render.
    pub enum DeviceRender {}

    impl DeviceRender {
        pub fn begin(_stream: *mut c_void) -> Result<Self, Failure> {
            Err(Failure::Gpu(
                "the host sent a CUDA render, but this build of Soragen renders on the CPU only: turn GPU rendering off for Soragen's effects".into(),
            ))
        }

        pub fn read_clip(&self, _images: &[Image]) -> Result<(Video, RectI), Failure> {
            match *self {}
        }

        pub fn frames(&self, _images: &[Image]) -> Result<Vec<Frame>, Failure> {
            match *self {}
        }

        pub fn copy_image(
            &self,
            _output: &Image,
            _window: RectI,
            _source: &Image,
        ) -> Result<(), Failure> {
            match *self {}
        }

        pub fn write_frame(
            &self,
            _output: &Image,
            _window: RectI,
            _frame: &Frame,
            _rect: RectI,
            _unchanged: Option<&Image>,
        ) -> Result<(), Failure> {
            match *self {}
        }

        pub fn finish(self) -> Result<(), Failure> {
            match self {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: RectI = RectI {
        x1: 10,
        y1: 20,
        x2: 110,
        y2: 70,
    };

    #[test]
    fn a_render_window_becomes_a_region_counted_from_the_top_left() {
        // The window's top row, y = 59, is the output's 11th row from the top (y2 = 70).
        let window = RectI {
            x1: 30,
            y1: 40,
            x2: 60,
            y2: 60,
        };
        assert_eq!(
            region(OUTPUT, window),
            Some(Region {
                left: 20,
                top: 10,
                width: 30,
                height: 20
            })
        );
        // Clipped to the output, and nothing for a window beside it.
        let overhanging = RectI {
            x1: 0,
            y1: 0,
            x2: 200,
            y2: 200,
        };
        assert_eq!(
            region(OUTPUT, overhanging),
            Some(Region {
                left: 0,
                top: 0,
                width: 100,
                height: 50
            })
        );
        assert_eq!(
            region(
                OUTPUT,
                RectI {
                    x1: 200,
                    y1: 0,
                    x2: 300,
                    y2: 10
                }
            ),
            None
        );
    }

    #[test]
    fn other_pictures_are_placed_by_their_top_left_pixel() {
        assert_eq!(position(OUTPUT, OUTPUT), Position { left: 0, top: 0 });
        // A source larger than the output starts left of and above it.
        assert_eq!(
            position(
                OUTPUT,
                RectI {
                    x1: 0,
                    y1: 0,
                    x2: 200,
                    y2: 100
                }
            ),
            Position {
                left: -10,
                top: -30
            }
        );
        assert_eq!(
            position(
                OUTPUT,
                RectI {
                    x1: 50,
                    y1: 20,
                    x2: 60,
                    y2: 40
                }
            ),
            Position { left: 40, top: 30 }
        );
    }
}
