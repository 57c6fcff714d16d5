//! Frames in and out of the core: PNG folders, `.y4m` files and, for exact comparison, a
//! `.safetensors` file holding `frames` (f32 [F, H, W, 3] in [0, 1]).
//!
//! Frames are 8-bit RGB (alpha kept when a PNG has it). A `.y4m` file is read as BT.601,
//! limited range unless its header says `XCOLORRANGE=FULL`; we write 4:4:4 full range.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::limits::{self, Allowance};
use crate::{Error, Result};

/// One frame: interleaved 8-bit RGB, plus the alpha plane when the source had one.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub rgb: Vec<u8>,
    pub alpha: Option<Vec<u8>>,
}

/// A clip: frames of one size, with the frame rate when the source states it.
#[derive(Clone, Debug, PartialEq)]
pub struct Video {
    pub width: usize,
    pub height: usize,
    pub frames: Vec<Frame>,
    /// Frames per second as numerator / denominator.
    pub fps: Option<(u32, u32)>,
}

impl Video {
    pub fn new(width: usize, height: usize, fps: Option<(u32, u32)>) -> Self {
        Self {
            width,
            height,
            frames: Vec::new(),
            fps,
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

    /// Reads a clip: a folder of PNG images in name order, or a `.y4m` file.
    pub fn read(path: &Path) -> Result<Self> {
        if path.is_dir() {
            read_png_dir(path)
        } else if has_extension(path, "y4m") {
            let file = soragen_models::files::open_regular(path)
                .map_err(|e| Error::Input(format!("cannot open {}: {e}", path.display())))?;
            read_y4m(BufReader::new(file), path)
        } else if !path.exists() {
            Err(Error::Input(format!("{} does not exist", path.display())))
        } else {
            Err(Error::Input(format!(
                "{}: frames must be a folder of PNG images or a .y4m file",
                path.display()
            )))
        }
    }

    /// Reads one PNG image as a one-frame clip (a reference image).
    pub fn read_image(path: &Path) -> Result<Self> {
        if !has_extension(path, "png") {
            return Err(Error::Input(format!(
                "{}: an image must be a PNG file",
                path.display()
            )));
        }
        let mut allowance = Allowance::new(path.display().to_string())?;
        let (width, height, frame) = read_png(path, &mut allowance)?;
        let mut video = Video::new(width, height, None);
        video.push(frame, path)?;
        Ok(video)
    }

    /// Per-pixel generate flags from grey levels (> 127 = generate), frame by frame. Colour
    /// masks are reduced to their BT.601 luma first.
    pub fn mask_bits(&self) -> Vec<Vec<bool>> {
        self.frames
            .iter()
            .map(|f| {
                f.rgb
                    .chunks_exact(3)
                    .map(|p| luma(p[0], p[1], p[2]) > 127)
                    .collect()
            })
            .collect()
    }
}

fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((299 * r as u32 + 587 * g as u32 + 114 * b as u32 + 500) / 1000) as u8
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

fn read_png_dir(dir: &Path) -> Result<Video> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::Input(format!("cannot read {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| has_extension(p, "png"))
        .collect();
    files.sort();
    let Some(first) = files.first() else {
        return Err(Error::Input(format!(
            "{} holds no PNG images",
            dir.display()
        )));
    };
    frame_count(dir, files.len())?;
    let mut allowance = Allowance::new(dir.display().to_string())?;
    let (width, height, frame) = read_png(first, &mut allowance)?;
    let mut video = Video::new(width, height, None);
    video.push(frame, first)?;
    for file in &files[1..] {
        let (w, h, frame) = read_png(file, &mut allowance)?;
        if (w, h) != (width, height) {
            return Err(Error::Input(format!(
                "{} is {w}x{h}, but {} is {width}x{height}: all frames must have one size",
                file.display(),
                first.display()
            )));
        }
        video.push(frame, file)?;
    }
    Ok(video)
}

fn frame_count(origin: &Path, count: usize) -> Result<()> {
    limits::FRAMES
        .check(count)
        .map(drop)
        .map_err(|e| Error::Input(format!("{}: {e}", origin.display())))
}

fn read_png(path: &Path, allowance: &mut Allowance) -> Result<(usize, usize, Frame)> {
    let bad = |e: &dyn std::fmt::Display| {
        Error::Input(format!("{}: unreadable PNG: {e}", path.display()))
    };
    let file = soragen_models::files::open_regular(path).map_err(|e| bad(&e))?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| bad(&e))?;
    // The header's size is checked before the decode buffer and the frame are allocated.
    let (declared_width, declared_height) =
        (reader.info().width as usize, reader.info().height as usize);
    let rgba =
        limits::frame_size(&path.display().to_string(), declared_width, declared_height)? / 3 * 4;
    allowance.take(rgba + reader.output_buffer_size() as u64)?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(|e| bad(&e))?;
    let (width, height) = (info.width as usize, info.height as usize);
    let pixels = &buf[..info.buffer_size()];
    let channels = info.color_type.samples();
    let mut rgb = Vec::with_capacity(width * height * 3);
    let mut alpha = matches!(channels, 2 | 4).then(|| Vec::with_capacity(width * height));
    for p in pixels.chunks_exact(channels) {
        match channels {
            1 | 2 => rgb.extend_from_slice(&[p[0], p[0], p[0]]),
            _ => rgb.extend_from_slice(&p[..3]),
        }
        if let Some(a) = alpha.as_mut() {
            a.push(p[channels - 1]);
        }
    }
    Ok((width, height, Frame { rgb, alpha }))
}

/// Writes frames as `00000.png`, `00001.png`, ... into `dir` (created if needed).
pub fn write_png_dir(video: &Video, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Output(format!("cannot create {}: {e}", dir.display())))?;
    for (index, frame) in video.frames.iter().enumerate() {
        let path = dir.join(format!("{index:05}.png"));
        let bad = |e: &dyn std::fmt::Display| {
            Error::Output(format!("cannot write {}: {e}", path.display()))
        };
        let file = std::fs::File::create(&path).map_err(|e| bad(&e))?;
        let mut encoder = png::Encoder::new(
            std::io::BufWriter::new(file),
            video.width as u32,
            video.height as u32,
        );
        encoder.set_depth(png::BitDepth::Eight);
        let data = match &frame.alpha {
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
        allowance.take(rgb_size)?;
        input
            .read_exact(&mut planes)
            .map_err(|_| bad(format!("frame {} is truncated", video.len())))?;
        let (y, uv) = planes.split_at(luma_size);
        let (u, v) = uv.split_at(chroma_size);
        let mut rgb = Vec::with_capacity(luma_size * 3);
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
                rgb.extend_from_slice(&ycbcr_to_rgb(luma, cb, cr, full_range));
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
        for (i, p) in frame.rgb.chunks_exact(3).enumerate() {
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
    PngDir(PathBuf),
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
            Sink::PngDir(path.to_path_buf())
        }
    }
}

/// Quantises f32 frames [F, H, W, 3] in [0, 1] to 8-bit the way image libraries do
/// (`round(x * 255)`).
pub fn quantise(frames: &[f32], width: usize, height: usize, fps: Option<(u32, u32)>) -> Video {
    let mut video = Video::new(width, height, fps);
    video.frames = frames
        .chunks_exact(width * height * 3)
        .map(|f| Frame {
            rgb: f.iter().map(|&x| clamp_u8(x * 255.0)).collect(),
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
            let rgb = (0..width * height * 3)
                .map(|i| ((i * 7 + f * 31) % 256) as u8)
                .collect();
            video.frames.push(Frame { rgb, alpha: None });
        }
        video
    }

    #[test]
    fn png_folder_round_trips_exactly_in_name_order() {
        let dir = scratch("png");
        let mut video = gradient(5, 3, 3);
        video.frames[1].alpha = Some((0..15).map(|i| (i * 17) as u8).collect());
        write_png_dir(&video, &dir).unwrap();
        let back = Video::read(&dir).unwrap();
        assert_eq!(back.frames, video.frames);
        assert_eq!((back.width, back.height), (5, 3));
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
                .rgb
                .iter()
                .zip(&b.rgb)
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
        assert_eq!(&video.frames[0].rgb[..3], &[0, 0, 0]);
        assert_eq!(&video.frames[0].rgb[3..6], &[255, 255, 255]);
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        let dir = scratch("bad");
        assert!(
            Video::read(&dir)
                .unwrap_err()
                .to_string()
                .contains("holds no PNG images")
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
        video.frames.push(Frame {
            rgb: vec![127, 127, 127, 128, 128, 128, 255, 0, 0],
            alpha: None,
        });
        assert_eq!(video.mask_bits(), vec![vec![false, true, false]]);
    }
}
