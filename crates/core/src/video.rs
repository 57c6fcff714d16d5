//! Frames in and out of the core: folders of PNG (8- or 16-bit) or OpenEXR (half or float)
//! images, `.y4m` files and, for exact comparison, a `.safetensors` file holding `frames` (f32
//! [F, H, W, 3] in [0, 1]).
//!
//! Frames hold f32 samples in their clip's colour space ([`Video::colour`]): 8-bit values as
//! v / 255, 16-bit as v / 65535 (both exact: writing at the same depth gives the bytes back),
//! EXR samples as they are, above 1 and below 0 included. A `.y4m` file is read as BT.601,
//! limited range unless its header says `XCOLORRANGE=FULL`; we write 4:4:4 full range.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::colour_space::ColourSpace;
use crate::limits::{self, Allowance};
use crate::{Error, Result};

/// Bytes of one sample in memory.
const SAMPLE_BYTES: usize = std::mem::size_of::<f32>();

/// One frame: interleaved RGB samples in its clip's colour space, plus the alpha plane (1.0 =
/// opaque) when the source had one.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub rgb: Vec<f32>,
    pub alpha: Option<Vec<f32>>,
}

impl Frame {
    /// A frame from 8-bit samples (v / 255; [`Frame::rgb_8bit`] gives the bytes back exactly).
    pub fn from_8bit(rgb: &[u8], alpha: Option<&[u8]>) -> Self {
        Self {
            rgb: rgb.iter().copied().map(from_8bit).collect(),
            alpha: alpha.map(|a| a.iter().copied().map(from_8bit).collect()),
        }
    }

    /// The RGB samples at 8 bits (`round(v * 255)`, held in 0..=255).
    pub fn rgb_8bit(&self) -> Vec<u8> {
        self.rgb.iter().copied().map(to_8bit).collect()
    }

    /// The alpha plane at 8 bits, when there is one.
    pub fn alpha_8bit(&self) -> Option<Vec<u8>> {
        self.alpha
            .as_ref()
            .map(|a| a.iter().copied().map(to_8bit).collect())
    }
}

/// An 8-bit sample as a frame sample.
pub fn from_8bit(value: u8) -> f32 {
    value as f32 / 255.0
}

/// A frame sample at 8 bits, as image libraries quantise: `round(v * 255)` held in 0..=255
/// (NaN gives 0).
pub fn to_8bit(value: f32) -> u8 {
    (value * 255.0).round().clamp(0.0, 255.0) as u8
}

fn to_16bit(value: f32) -> u16 {
    (value * 65535.0).round().clamp(0.0, 65535.0) as u16
}

/// The sample depth a clip came in at, which writers keep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Depth {
    #[default]
    Eight,
    Sixteen,
    /// OpenEXR half floats.
    Half,
    /// OpenEXR 32-bit floats.
    Float,
}

impl Depth {
    /// `value` as the nearest sample this depth holds (8 and 16 bits: held in [0, 1]).
    pub fn quantise(self, value: f32) -> f32 {
        match self {
            Depth::Eight => from_8bit(to_8bit(value)),
            Depth::Sixteen => to_16bit(value) as f32 / 65535.0,
            Depth::Half => exr::prelude::f16::from_f32(value).to_f32(),
            Depth::Float => value,
        }
    }
}

/// A clip: frames of one size, with the frame rate when the source states it, the colour space
/// its samples are in and the depth they came at.
#[derive(Clone, Debug, PartialEq)]
pub struct Video {
    pub width: usize,
    pub height: usize,
    pub frames: Vec<Frame>,
    /// Frames per second as numerator / denominator.
    pub fps: Option<(u32, u32)>,
    pub colour: ColourSpace,
    pub depth: Depth,
}

impl Video {
    /// An empty 8-bit sRGB clip (the model's own space).
    pub fn new(width: usize, height: usize, fps: Option<(u32, u32)>) -> Self {
        Self {
            width,
            height,
            frames: Vec::new(),
            fps,
            colour: ColourSpace::default(),
            depth: Depth::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    fn push(&mut self, frame: Frame, origin: &Path) -> Result<()> {
        if frame.rgb.len() != self.width * self.height * 3 {
            return Err(Error::Input(format!(
                "{}: frame {} differs in size from the first frame ({}x{})",
                origin.display(),
                self.frames.len(),
                self.width,
                self.height
            )));
        }
        self.frames.push(frame);
        Ok(())
    }

    /// Reads a clip: a folder of PNG or OpenEXR images in name order, or a `.y4m` file. EXR
    /// frames are taken as linear Rec.709, the others as sRGB, until the caller says otherwise.
    pub fn read(path: &Path) -> Result<Self> {
        if path.is_dir() {
            read_image_dir(path)
        } else if has_extension(path, "y4m") {
            let file = soragen_models::files::open_regular(path)
                .map_err(|e| Error::Input(format!("cannot open {}: {e}", path.display())))?;
            read_y4m(BufReader::new(file), path)
        } else if !path.exists() {
            Err(Error::Input(format!("{} does not exist", path.display())))
        } else {
            Err(Error::Input(format!(
                "{}: frames must be a folder of PNG or EXR images or a .y4m file",
                path.display()
            )))
        }
    }

    /// Reads one PNG or EXR image as a one-frame clip (a still, a reference image).
    pub fn read_image(path: &Path) -> Result<Self> {
        let Some(format) = ImageFormat::of(path) else {
            return Err(Error::Input(format!(
                "{}: an image must be a PNG or EXR file",
                path.display()
            )));
        };
        let mut allowance = Allowance::new(path.display().to_string())?;
        let image = format.read(path, &mut allowance)?;
        let mut video = Video::new(image.width, image.height, None);
        (video.colour, video.depth) = (format.colour(), image.depth);
        video.push(image.frame, path)?;
        Ok(video)
    }

    /// Per-pixel generate flags from grey levels (> 127 at 8 bits = generate), frame by frame.
    /// Colour masks are reduced to their BT.601 luma first.
    pub fn mask_bits(&self) -> Vec<Vec<bool>> {
        self.frames
            .iter()
            .map(|f| {
                f.rgb
                    .chunks_exact(3)
                    .map(|p| luma(to_8bit(p[0]), to_8bit(p[1]), to_8bit(p[2])) > 127)
                    .collect()
            })
            .collect()
    }
}

/// The image files a folder of frames may hold.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ImageFormat {
    Png,
    Exr,
}

/// One image file read.
struct Image {
    width: usize,
    height: usize,
    depth: Depth,
    frame: Frame,
}

impl ImageFormat {
    fn of(path: &Path) -> Option<Self> {
        if has_extension(path, "png") {
            Some(ImageFormat::Png)
        } else if has_extension(path, "exr") {
            Some(ImageFormat::Exr)
        } else {
            None
        }
    }

    /// The space frames of this format are in when nobody says: OpenEXR is scene-linear by
    /// convention, PNG display-referred sRGB.
    fn colour(self) -> ColourSpace {
        match self {
            ImageFormat::Png => ColourSpace::Srgb,
            ImageFormat::Exr => ColourSpace::Linear,
        }
    }

    fn read(self, path: &Path, allowance: &mut Allowance) -> Result<Image> {
        match self {
            ImageFormat::Png => read_png(path, allowance),
            ImageFormat::Exr => read_exr(path, allowance),
        }
    }
}

fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((299 * r as u32 + 587 * g as u32 + 114 * b as u32 + 500) / 1000) as u8
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

fn read_image_dir(dir: &Path) -> Result<Video> {
    let mut files: Vec<(PathBuf, ImageFormat)> = std::fs::read_dir(dir)
        .map_err(|e| Error::Input(format!("cannot read {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| ImageFormat::of(&p).map(|format| (p, format)))
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let Some((first, format)) = files.first().cloned() else {
        return Err(Error::Input(format!(
            "{} holds no PNG or EXR images",
            dir.display()
        )));
    };
    if let Some((other, _)) = files.iter().find(|(_, f)| *f != format) {
        return Err(Error::Input(format!(
            "{} holds both PNG and EXR images ({} and {}): keep one kind per folder",
            dir.display(),
            first.display(),
            other.display()
        )));
    }
    frame_count(dir, files.len())?;
    let mut allowance = Allowance::new(dir.display().to_string())?;
    let image = format.read(&first, &mut allowance)?;
    let (width, height) = (image.width, image.height);
    let mut video = Video::new(width, height, None);
    (video.colour, video.depth) = (format.colour(), image.depth);
    video.push(image.frame, &first)?;
    for (file, _) in &files[1..] {
        let image = format.read(file, &mut allowance)?;
        if (image.width, image.height) != (width, height) {
            return Err(Error::Input(format!(
                "{} is {}x{}, but {} is {width}x{height}: all frames must have one size",
                file.display(),
                image.width,
                image.height,
                first.display()
            )));
        }
        if image.depth != video.depth {
            return Err(Error::Input(format!(
                "{} is {:?} but {} is {:?}: all frames must have one depth",
                file.display(),
                image.depth,
                first.display(),
                video.depth
            )));
        }
        video.push(image.frame, file)?;
    }
    Ok(video)
}

fn frame_count(origin: &Path, count: usize) -> Result<()> {
    limits::FRAMES
        .check(count)
        .map(drop)
        .map_err(|e| Error::Input(format!("{}: {e}", origin.display())))
}

fn read_png(path: &Path, allowance: &mut Allowance) -> Result<Image> {
    let bad = |e: &dyn std::fmt::Display| {
        Error::Input(format!("{}: unreadable PNG: {e}", path.display()))
    };
    let file = soragen_models::files::open_regular(path).map_err(|e| bad(&e))?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(|e| bad(&e))?;
    // The header's size is checked before the decode buffer and the frame are allocated.
    let (declared_width, declared_height) =
        (reader.info().width as usize, reader.info().height as usize);
    let rgba = limits::frame_size(&path.display().to_string(), declared_width, declared_height)?
        / 3
        * 4
        * SAMPLE_BYTES as u64;
    allowance.take(rgba + reader.output_buffer_size() as u64)?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(|e| bad(&e))?;
    let (width, height) = (info.width as usize, info.height as usize);
    let pixels = &buf[..info.buffer_size()];
    let channels = info.color_type.samples();
    let (depth, samples): (Depth, Vec<f32>) = match info.bit_depth {
        png::BitDepth::Sixteen => (
            Depth::Sixteen,
            pixels
                .chunks_exact(2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]) as f32 / 65535.0)
                .collect(),
        ),
        _ => (
            Depth::Eight,
            pixels.iter().copied().map(from_8bit).collect(),
        ),
    };
    let mut rgb = Vec::with_capacity(width * height * 3);
    let mut alpha = matches!(channels, 2 | 4).then(|| Vec::with_capacity(width * height));
    for p in samples.chunks_exact(channels) {
        match channels {
            1 | 2 => rgb.extend_from_slice(&[p[0], p[0], p[0]]),
            _ => rgb.extend_from_slice(&p[..3]),
        }
        if let Some(a) = alpha.as_mut() {
            a.push(p[channels - 1]);
        }
    }
    Ok(Image {
        width,
        height,
        depth,
        frame: Frame { rgb, alpha },
    })
}

/// The first RGB(A) layer of an OpenEXR file, samples as they are (half or float).
fn read_exr(path: &Path, allowance: &mut Allowance) -> Result<Image> {
    use exr::prelude::{ReadChannels, ReadLayers, SampleType};
    let bad = |e: &dyn std::fmt::Display| {
        Error::Input(format!("{}: unreadable EXR: {e}", path.display()))
    };
    let meta = exr::meta::MetaData::read_from_file(path, false).map_err(|e| bad(&e))?;
    let header = meta.headers.first().ok_or_else(|| bad(&"no layer"))?;
    let size = header.layer_size;
    // The declared size is checked before anything is allocated for it.
    let need = limits::frame_size(&path.display().to_string(), size.width(), size.height())? / 3
        * 4
        * SAMPLE_BYTES as u64;
    allowance.take(need)?;
    struct Planes {
        width: usize,
        rgba: Vec<[f32; 4]>,
    }
    let image = exr::prelude::read()
        .no_deep_data()
        .largest_resolution_level()
        .rgba_channels(
            |resolution, _: &exr::prelude::RgbaChannels| Planes {
                width: resolution.width(),
                rgba: vec![[0.0; 4]; resolution.area()],
            },
            |planes: &mut Planes, position, (r, g, b, a): (f32, f32, f32, f32)| {
                planes.rgba[position.y() * planes.width + position.x()] = [r, g, b, a];
            },
        )
        .first_valid_layer()
        .all_attributes()
        .from_file(path)
        .map_err(|e| bad(&e))?;
    let layer = image.layer_data;
    let (red, _, _, alpha) = &layer.channel_data.channels;
    let depth = match red.sample_type {
        SampleType::F16 => Depth::Half,
        _ => Depth::Float,
    };
    let (width, height) = (layer.size.width(), layer.size.height());
    let pixels = &layer.channel_data.pixels.rgba;
    let rgb = pixels.iter().flat_map(|p| [p[0], p[1], p[2]]).collect();
    let alpha = alpha
        .as_ref()
        .map(|_| pixels.iter().map(|p| p[3]).collect());
    Ok(Image {
        width,
        height,
        depth,
        frame: Frame { rgb, alpha },
    })
}

/// Writes frames into `dir` (created if needed) at the clip's depth: OpenEXR for half and
/// float clips ([`write_exr_dir`]), PNG otherwise ([`write_png_dir`]).
pub fn write_frames_dir(video: &Video, dir: &Path) -> Result<()> {
    match video.depth {
        Depth::Half | Depth::Float => write_exr_dir(video, dir),
        Depth::Eight | Depth::Sixteen => write_png_dir(video, dir),
    }
}

/// Creates `dir` and names its frames `00000.<extension>`, `00001.<extension>`, ...
fn frame_paths(video: &Video, dir: &Path, extension: &str) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Output(format!("cannot create {}: {e}", dir.display())))?;
    Ok((0..video.len())
        .map(|index| dir.join(format!("{index:05}.{extension}")))
        .collect())
}

/// Writes frames as `00000.exr`, `00001.exr`, ... into `dir` (created if needed): half floats
/// for half clips, else 32-bit floats; alpha where the frame has it.
pub fn write_exr_dir(video: &Video, dir: &Path) -> Result<()> {
    use exr::prelude::f16;
    let (width, height) = (video.width, video.height);
    for (frame, path) in video.frames.iter().zip(frame_paths(video, dir, "exr")?) {
        let bad = |e: &dyn std::fmt::Display| {
            Error::Output(format!("cannot write {}: {e}", path.display()))
        };
        let sample = |x: usize, y: usize, c: usize| frame.rgb[(y * width + x) * 3 + c];
        let alpha = |x: usize, y: usize| frame.alpha.as_ref().map_or(1.0, |a| a[y * width + x]);
        let half = |v: f32| f16::from_f32(v);
        let written = match (video.depth == Depth::Half, frame.alpha.is_some()) {
            (true, true) => exr::prelude::write_rgba_file(&path, width, height, |x, y| {
                (
                    half(sample(x, y, 0)),
                    half(sample(x, y, 1)),
                    half(sample(x, y, 2)),
                    half(alpha(x, y)),
                )
            }),
            (true, false) => exr::prelude::write_rgb_file(&path, width, height, |x, y| {
                (
                    half(sample(x, y, 0)),
                    half(sample(x, y, 1)),
                    half(sample(x, y, 2)),
                )
            }),
            (false, true) => exr::prelude::write_rgba_file(&path, width, height, |x, y| {
                (
                    sample(x, y, 0),
                    sample(x, y, 1),
                    sample(x, y, 2),
                    alpha(x, y),
                )
            }),
            (false, false) => exr::prelude::write_rgb_file(&path, width, height, |x, y| {
                (sample(x, y, 0), sample(x, y, 1), sample(x, y, 2))
            }),
        };
        written.map_err(|e| bad(&e))?;
    }
    Ok(())
}

/// Writes frames as `00000.png`, `00001.png`, ... into `dir` (created if needed): 16-bit for
/// clips deeper than 8 bits, else 8-bit; alpha where the frame has it.
pub fn write_png_dir(video: &Video, dir: &Path) -> Result<()> {
    let sixteen = video.depth != Depth::Eight;
    for (frame, path) in video.frames.iter().zip(frame_paths(video, dir, "png")?) {
        let bad = |e: &dyn std::fmt::Display| {
            Error::Output(format!("cannot write {}: {e}", path.display()))
        };
        let file = std::fs::File::create(&path).map_err(|e| bad(&e))?;
        let mut encoder = png::Encoder::new(
            std::io::BufWriter::new(file),
            video.width as u32,
            video.height as u32,
        );
        let samples: Vec<f32> = match &frame.alpha {
            Some(alpha) => {
                encoder.set_color(png::ColorType::Rgba);
                frame
                    .rgb
                    .chunks_exact(3)
                    .zip(alpha)
                    .flat_map(|(p, &a)| [p[0], p[1], p[2], a])
                    .collect()
            }
            None => {
                encoder.set_color(png::ColorType::Rgb);
                frame.rgb.clone()
            }
        };
        let data: Vec<u8> = if sixteen {
            encoder.set_depth(png::BitDepth::Sixteen);
            samples
                .into_iter()
                .flat_map(|v| to_16bit(v).to_be_bytes())
                .collect()
        } else {
            encoder.set_depth(png::BitDepth::Eight);
            samples.into_iter().map(to_8bit).collect()
        };
        let mut writer = encoder.write_header().map_err(|e| bad(&e))?;
        writer.write_image_data(&data).map_err(|e| bad(&e))?;
        writer.finish().map_err(|e| bad(&e))?;
    }
    Ok(())
}

/// Chroma layout of a y4m stream: subsampling factors (x, y), or none for `Cmono`.
fn chroma_subsampling(tag: &str) -> Option<Option<(usize, usize)>> {
    Some(match tag {
        "420" | "420jpeg" | "420paldv" | "420mpeg2" => Some((2, 2)),
        "422" => Some((2, 1)),
        "444" => Some((1, 1)),
        "mono" => None,
        _ => return None,
    })
}

fn read_y4m<R: BufRead>(mut input: R, origin: &Path) -> Result<Video> {
    let bad = |what: String| Error::Input(format!("{}: {what}", origin.display()));
    let mut header = String::new();
    read_line(&mut input, &mut header).map_err(|e| bad(e.to_string()))?;
    let mut fields = header.trim_end().split(' ');
    if fields.next() != Some("YUV4MPEG2") {
        return Err(bad("not a YUV4MPEG2 (.y4m) file".into()));
    }
    let (mut width, mut height, mut fps, mut chroma, mut full_range) =
        (0usize, 0usize, None, "420", false);
    for field in fields {
        let (tag, value) = field.split_at(1.min(field.len()));
        match tag {
            "W" => {
                width = value
                    .parse()
                    .map_err(|_| bad(format!("bad width {value:?}")))?
            }
            "H" => {
                height = value
                    .parse()
                    .map_err(|_| bad(format!("bad height {value:?}")))?
            }
            "F" => {
                fps = value
                    .split_once(':')
                    .and_then(|(n, d)| Some((n.parse().ok()?, d.parse().ok()?)))
                    .filter(|&(n, d): &(u32, u32)| n > 0 && d > 0);
                if let Some((n, d)) = fps {
                    limits::FPS
                        .check(n as f64 / d as f64)
                        .map_err(|e| bad(e.to_string()))?;
                }
            }
            "C" => chroma = value,
            "X" if value == "COLORRANGE=FULL" => full_range = true,
            _ => {}
        }
    }
    if width == 0 || height == 0 {
        return Err(bad("header lacks a width or height".into()));
    }
    let subsampling = chroma_subsampling(chroma).ok_or_else(|| {
        bad(format!(
            "unsupported colour space C{chroma} (8-bit 420, 422, 444 and mono are read)"
        ))
    })?;
    // Sizes are checked (and their products, in bytes) before anything is allocated for them.
    let rgb_size = limits::frame_size(&origin.display().to_string(), width, height)?;
    let luma_size = width * height;
    let chroma_size = subsampling.map_or(0, |(sx, sy)| width.div_ceil(sx) * height.div_ceil(sy));
    let mut allowance = Allowance::new(origin.display().to_string())?;
    allowance.take((luma_size + 2 * chroma_size) as u64)?;
    let mut planes = vec![0u8; luma_size + 2 * chroma_size];
    let mut video = Video::new(width, height, fps);
    let mut line = String::new();
    loop {
        line.clear();
        if read_line(&mut input, &mut line).map_err(|e| bad(e.to_string()))? == 0 {
            break;
        }
        if !line.starts_with("FRAME") {
            return Err(bad(format!(
                "frame {} does not start with FRAME",
                video.len()
            )));
        }
        frame_count(origin, video.len() + 1)?;
        allowance.take(rgb_size * SAMPLE_BYTES as u64)?;
        input
            .read_exact(&mut planes)
            .map_err(|_| bad(format!("frame {} is truncated", video.len())))?;
        let (y, uv) = planes.split_at(luma_size);
        let (u, v) = uv.split_at(chroma_size);
        let mut rgb: Vec<f32> = Vec::with_capacity(luma_size * 3);
        for row in 0..height {
            for col in 0..width {
                let luma = y[row * width + col];
                let (cb, cr) = match subsampling {
                    Some((sx, sy)) => {
                        let at = (row / sy) * width.div_ceil(sx) + col / sx;
                        (u[at], v[at])
                    }
                    None => (128, 128),
                };
                rgb.extend(ycbcr_to_rgb(luma, cb, cr, full_range).map(from_8bit));
            }
        }
        video.push(Frame { rgb, alpha: None }, origin)?;
    }
    if video.is_empty() {
        return Err(bad("holds no frames".into()));
    }
    Ok(video)
}

/// One header line of at most 4 KiB: a file without line breaks is not read whole.
fn read_line<R: BufRead>(input: &mut R, line: &mut String) -> std::io::Result<usize> {
    const LIMIT: u64 = 4096;
    let read = input.take(LIMIT).read_line(line)?;
    if read as u64 == LIMIT && !line.ends_with('\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a header line is longer than 4 KiB",
        ));
    }
    Ok(read)
}

fn clamp_u8(x: f32) -> u8 {
    x.round().clamp(0.0, 255.0) as u8
}

fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8, full_range: bool) -> [u8; 3] {
    let (y, cb, cr) = (y as f32, cb as f32 - 128.0, cr as f32 - 128.0);
    let (y, cb, cr) = if full_range {
        (y, cb, cr)
    } else {
        (
            (y - 16.0) * 255.0 / 219.0,
            cb * 255.0 / 224.0,
            cr * 255.0 / 224.0,
        )
    };
    [
        clamp_u8(y + 1.402 * cr),
        clamp_u8(y - 0.344_136 * cb - 0.714_136 * cr),
        clamp_u8(y + 1.772 * cb),
    ]
}

fn rgb_to_ycbcr(p: &[u8]) -> [u8; 3] {
    let (r, g, b) = (p[0] as f32, p[1] as f32, p[2] as f32);
    let y = 0.299 * r + 0.587 * g + 0.114 * b;
    [
        clamp_u8(y),
        clamp_u8(128.0 + (b - y) / 1.772),
        clamp_u8(128.0 + (r - y) / 1.402),
    ]
}

/// Writes a `.y4m` file: 4:4:4, full range, with the clip's frame rate (16 fps if unknown,
/// Wan's native rate).
pub fn write_y4m(video: &Video, path: &Path) -> Result<()> {
    let bad = |e: std::io::Error| Error::Output(format!("cannot write {}: {e}", path.display()));
    let file = std::fs::File::create(path).map_err(bad)?;
    let mut out = std::io::BufWriter::new(file);
    let (num, den) = video.fps.unwrap_or((16, 1));
    writeln!(
        out,
        "YUV4MPEG2 W{} H{} F{num}:{den} Ip A1:1 C444 XCOLORRANGE=FULL",
        video.width, video.height
    )
    .map_err(bad)?;
    let size = video.width * video.height;
    let mut planes = vec![0u8; 3 * size];
    for frame in &video.frames {
        for (i, p) in frame.rgb_8bit().chunks_exact(3).enumerate() {
            let [y, cb, cr] = rgb_to_ycbcr(p);
            planes[i] = y;
            planes[size + i] = cb;
            planes[2 * size + i] = cr;
        }
        out.write_all(b"FRAME\n").map_err(bad)?;
        out.write_all(&planes).map_err(bad)?;
    }
    out.flush().map_err(bad)
}

/// Where generated frames go, chosen by the output path.
pub enum Sink {
    /// A folder of images at the clip's depth ([`write_frames_dir`]).
    Folder(PathBuf),
    Y4m(PathBuf),
    /// f32 frames [F, H, W, 3] in [0, 1], unquantised, for exact comparison.
    Safetensors(PathBuf),
}

impl Sink {
    pub fn for_path(path: &Path) -> Self {
        if has_extension(path, "y4m") {
            Sink::Y4m(path.to_path_buf())
        } else if has_extension(path, "safetensors") {
            Sink::Safetensors(path.to_path_buf())
        } else {
            Sink::Folder(path.to_path_buf())
        }
    }
}

/// The model's frames [F, H, W, 3] in [0, 1] as an sRGB clip of 8-bit depth: its samples as the
/// model made them, quantised only when written (`round(x * 255)`, as image libraries do).
pub fn model_frames(frames: &[f32], width: usize, height: usize, fps: Option<(u32, u32)>) -> Video {
    let mut video = Video::new(width, height, fps);
    video.frames = frames
        .chunks_exact(width * height * 3)
        .map(|f| Frame {
            rgb: f.to_vec(),
            alpha: None,
        })
        .collect();
    video
}

/// A frame rate given as a number (OpenFX's `kOfxImageEffectPropFrameRate`) as the rational
/// it stands for: the NTSC rates (23.976, 29.97, 59.94: n·1000/1001) and whole rates exactly,
/// anything else to a thousandth. None for a rate that is not positive and finite.
pub fn rate_from_f64(rate: f64) -> Option<(u32, u32)> {
    if !(rate.is_finite() && rate > 0.0 && rate < 1e6) {
        return None;
    }
    let ntsc = rate * 1001.0 / 1000.0;
    Some(if (rate - rate.round()).abs() < 1e-6 {
        (rate.round() as u32, 1)
    } else if (ntsc - ntsc.round()).abs() < 1e-3 {
        (ntsc.round() as u32 * 1000, 1001)
    } else {
        ((rate * 1000.0).round() as u32, 1000)
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn rates_given_as_numbers_become_the_rationals_they_stand_for() {
        assert_eq!(rate_from_f64(24.0), Some((24, 1)));
        assert_eq!(rate_from_f64(30000.0 / 1001.0), Some((30000, 1001)));
        assert_eq!(rate_from_f64(29.97), Some((30000, 1001)));
        assert_eq!(rate_from_f64(23.976), Some((24000, 1001)));
        assert_eq!(rate_from_f64(12.5), Some((12500, 1000)));
        assert_eq!(rate_from_f64(0.0), None);
        assert_eq!(rate_from_f64(f64::NAN), None);
    }
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("soragen-video-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn gradient(width: usize, height: usize, frames: usize) -> Video {
        let mut video = Video::new(width, height, Some((25, 1)));
        for f in 0..frames {
            let rgb: Vec<u8> = (0..width * height * 3)
                .map(|i| ((i * 7 + f * 31) % 256) as u8)
                .collect();
            video.frames.push(Frame::from_8bit(&rgb, None));
        }
        video
    }

    #[test]
    fn png_folder_round_trips_exactly_in_name_order() {
        let dir = scratch("png");
        let mut video = gradient(5, 3, 3);
        video.frames[1].alpha = Some((0..15).map(|i| from_8bit((i * 17) as u8)).collect());
        write_png_dir(&video, &dir).unwrap();
        let back = Video::read(&dir).unwrap();
        assert_eq!(back.frames, video.frames);
        assert_eq!((back.width, back.height), (5, 3));
    }

    /// A 7x5 clip of two frames at `depth`, samples from `values`; the second has alpha.
    fn deep(depth: Depth, values: impl Fn(usize) -> f32) -> Video {
        let mut video = Video::new(7, 5, None);
        video.depth = depth;
        for f in 0..2 {
            video.frames.push(Frame {
                rgb: (0..105).map(|i| values(i + f * 105)).collect(),
                alpha: (f == 1).then(|| (0..35).map(|i| values(i * 3 + 1)).collect()),
            });
        }
        video
    }

    #[test]
    fn sixteen_bit_png_round_trips_every_sample_exactly() {
        let dir = scratch("png16");
        let video = deep(Depth::Sixteen, |i| ((i * 6007) % 65536) as f32 / 65535.0);
        write_png_dir(&video, &dir).unwrap();
        let back = Video::read(&dir).unwrap();
        assert_eq!(back, video);
        // More than 256 levels survive: no 8-bit step on the way.
        let mut levels: Vec<u32> = back.frames[0].rgb.iter().map(|v| v.to_bits()).collect();
        levels.sort_unstable();
        levels.dedup();
        assert!(levels.len() > 100, "{} levels", levels.len());
    }

    #[test]
    fn exr_round_trips_half_and_float_samples_beyond_zero_and_one() {
        for depth in [Depth::Half, Depth::Float] {
            let dir = scratch(&format!("exr-{depth:?}"));
            // Values from -2 to 14, exact in half floats (multiples of 1/64 below 16).
            let video = deep(depth, |i| ((i * 37) % 1024) as f32 / 64.0 - 2.0);
            write_frames_dir(&video, &dir).unwrap();
            assert!(dir.join("00000.exr").is_file());
            let back = Video::read(&dir).unwrap();
            assert_eq!(back.colour, ColourSpace::Linear);
            assert_eq!(
                back,
                Video {
                    colour: ColourSpace::Linear,
                    ..video
                }
            );
        }
        // Float clips keep what half floats would round.
        let dir = scratch("exr-fine");
        let fine = deep(Depth::Float, |i| 1.0 + i as f32 * 1e-6);
        write_exr_dir(&fine, &dir).unwrap();
        assert_eq!(Video::read(&dir).unwrap().frames, fine.frames);
    }

    #[test]
    fn a_folder_holds_one_kind_and_one_depth_of_image() {
        let dir = scratch("mixed");
        write_png_dir(&gradient(4, 2, 1), &dir).unwrap();
        write_exr_dir(&deep(Depth::Float, |i| i as f32), &dir.join("exr")).unwrap();
        std::fs::rename(dir.join("exr/00001.exr"), dir.join("00001.exr")).unwrap();
        let message = Video::read(&dir).unwrap_err().to_string();
        assert!(message.contains("both PNG and EXR"), "{message}");
        let dir = scratch("depths");
        write_png_dir(&gradient(7, 5, 1), &dir).unwrap();
        write_png_dir(&deep(Depth::Sixteen, |_| 0.5), &dir.join("deep")).unwrap();
        std::fs::rename(dir.join("deep/00001.png"), dir.join("00001.png")).unwrap();
        let message = Video::read(&dir).unwrap_err().to_string();
        assert!(message.contains("one depth"), "{message}");
    }

    #[test]
    fn y4m_round_trip_is_close_and_keeps_the_frame_rate() {
        let dir = scratch("y4m");
        let video = gradient(6, 4, 2);
        let path = dir.join("clip.y4m");
        write_y4m(&video, &path).unwrap();
        let back = Video::read(&path).unwrap();
        assert_eq!(
            (back.width, back.height, back.len(), back.fps),
            (6, 4, 2, Some((25, 1)))
        );
        for (a, b) in video.frames.iter().zip(&back.frames) {
            let worst = a
                .rgb_8bit()
                .iter()
                .zip(&b.rgb_8bit())
                .map(|(x, y)| x.abs_diff(*y))
                .max()
                .unwrap();
            assert!(worst <= 3, "y4m round trip off by {worst}");
        }
    }

    #[test]
    fn reads_limited_range_420_y4m() {
        let mut data = b"YUV4MPEG2 W2 H2 F30000:1001 C420jpeg\nFRAME\n".to_vec();
        data.extend_from_slice(&[16, 235, 126, 126, 128, 128]);
        let video = read_y4m(&data[..], Path::new("t.y4m")).unwrap();
        assert_eq!(video.fps, Some((30000, 1001)));
        assert_eq!(&video.frames[0].rgb_8bit()[..6], &[0, 0, 0, 255, 255, 255]);
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        let dir = scratch("bad");
        assert!(
            Video::read(&dir)
                .unwrap_err()
                .to_string()
                .contains("holds no PNG or EXR images")
        );
        let truncated = b"YUV4MPEG2 W4 H4 C444\nFRAME\n\x10\x10";
        let message = read_y4m(&truncated[..], Path::new("t.y4m"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("frame 0 is truncated"), "{message}");
        let message = read_y4m(&b"P6 3 3"[..], Path::new("t.y4m"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("not a YUV4MPEG2"), "{message}");
        std::fs::write(dir.join("broken.png"), b"not a png").unwrap();
        assert!(
            Video::read(&dir)
                .unwrap_err()
                .to_string()
                .contains("unreadable PNG")
        );
    }

    #[test]
    fn masks_threshold_grey_levels_above_127() {
        let mut video = Video::new(3, 1, None);
        video.frames.push(Frame::from_8bit(
            &[127, 127, 127, 128, 128, 128, 255, 0, 0],
            None,
        ));
        assert_eq!(video.mask_bits(), vec![vec![false, true, false]]);
    }
}
