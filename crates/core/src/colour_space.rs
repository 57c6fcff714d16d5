//! The colour spaces frames come in, and the conversion into and out of the model's space.
//!
//! Written here from the published definitions (IEC 61966-2-1, ITU-R BT.1886, BT.2100, SMPTE
//! ST 2084, ACES S-2014-004 / S-2016-001 / S-2008-001, Blackmagic's DaVinci Wide Gamut
//! Intermediate white paper): no maintained Rust crate covers these transfer functions (the
//! `ocio` port is young and far larger than we need).
//!
//! The model's space is display-referred sRGB: sRGB-encoded code values with Rec.709 primaries
//! (D65) in [0, 1], as decoders hand images and video to the model's training. [`ColourSpace::Srgb`]
//! is that space: its frames pass to the model exactly as they are, clamped to [0, 1].
//!
//! Every other space goes through linear light where 1.0 is display white:
//! - scene-linear spaces (linear Rec.709, ACEScg, ACES2065-1) and the log encodings of scene
//!   light (ACEScct, DaVinci Intermediate) take linear 1.0 as white, with no look or output
//!   transform: the model's copy clips above white and below black;
//! - Rec.709 is display-referred video through the BT.1886 display (gamma 2.4, black 0);
//! - the HDR spaces (Rec.2020 PQ, HLG) put reference white (203 cd/m², BT.2408; HLG 75%) at 1.0
//!   and tone-map the highlights above it into the model's range with a curve that has an
//!   exact inverse, so generated frames map back over the whole HDR range.
//!
//! Gamuts are converted with matrices derived from each space's primaries and white point
//! (Bradford adaptation between the ACES white and D65).

use std::fmt;
use std::str::FromStr;

/// A colour space a clip's samples are in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ColourSpace {
    /// sRGB code values (Rec.709 primaries): the model's own space.
    #[default]
    Srgb,
    /// Rec.709 video code values, displayed through BT.1886 (gamma 2.4).
    Rec709,
    /// Scene-linear light, Rec.709 / sRGB primaries.
    Linear,
    /// ACEScg: scene-linear light, ACES AP1 primaries.
    AcesCg,
    /// ACEScct: the ACEScct log encoding of AP1 scene light.
    AcesCct,
    /// ACES2065-1: scene-linear light, ACES AP0 primaries.
    Aces2065,
    /// DaVinci Intermediate log encoding, DaVinci Wide Gamut primaries.
    DavinciIntermediate,
    /// Rec.2020 primaries, SMPTE ST 2084 (PQ) encoding; tone-mapped for the model.
    Rec2020Pq,
    /// Rec.2020 primaries, BT.2100 HLG encoding; tone-mapped for the model.
    Rec2020Hlg,
}

impl ColourSpace {
    /// Every space, in the order hosts list them.
    pub const ALL: [ColourSpace; 9] = [
        ColourSpace::Srgb,
        ColourSpace::Rec709,
        ColourSpace::Linear,
        ColourSpace::AcesCg,
        ColourSpace::AcesCct,
        ColourSpace::Aces2065,
        ColourSpace::DavinciIntermediate,
        ColourSpace::Rec2020Pq,
        ColourSpace::Rec2020Hlg,
    ];

    /// The name users type (`--colour-space`), which [`FromStr`] reads.
    pub fn name(self) -> &'static str {
        match self {
            ColourSpace::Srgb => "srgb",
            ColourSpace::Rec709 => "rec709",
            ColourSpace::Linear => "linear",
            ColourSpace::AcesCg => "acescg",
            ColourSpace::AcesCct => "acescct",
            ColourSpace::Aces2065 => "aces2065-1",
            ColourSpace::DavinciIntermediate => "davinci-intermediate",
            ColourSpace::Rec2020Pq => "rec2020-pq",
            ColourSpace::Rec2020Hlg => "rec2020-hlg",
        }
    }

    /// A label for menus.
    pub fn label(self) -> &'static str {
        match self {
            ColourSpace::Srgb => "sRGB",
            ColourSpace::Rec709 => "Rec.709 (BT.1886)",
            ColourSpace::Linear => "Linear Rec.709 / sRGB",
            ColourSpace::AcesCg => "ACEScg",
            ColourSpace::AcesCct => "ACEScct",
            ColourSpace::Aces2065 => "ACES2065-1",
            ColourSpace::DavinciIntermediate => "DaVinci Intermediate / Wide Gamut",
            ColourSpace::Rec2020Pq => "Rec.2020 PQ (tone-mapped)",
            ColourSpace::Rec2020Hlg => "Rec.2020 HLG (tone-mapped)",
        }
    }

    fn transfer(self) -> Transfer {
        match self {
            ColourSpace::Srgb => Transfer::Srgb,
            ColourSpace::Rec709 => Transfer::Bt1886,
            ColourSpace::Linear | ColourSpace::AcesCg | ColourSpace::Aces2065 => Transfer::Linear,
            ColourSpace::AcesCct => Transfer::AcesCct,
            ColourSpace::DavinciIntermediate => Transfer::DavinciIntermediate,
            ColourSpace::Rec2020Pq => Transfer::Pq,
            ColourSpace::Rec2020Hlg => Transfer::Hlg,
        }
    }

    fn gamut(self) -> Gamut {
        match self {
            ColourSpace::Srgb | ColourSpace::Rec709 | ColourSpace::Linear => Gamut::Rec709,
            ColourSpace::AcesCg | ColourSpace::AcesCct => Gamut::Ap1,
            ColourSpace::Aces2065 => Gamut::Ap0,
            ColourSpace::DavinciIntermediate => Gamut::DavinciWide,
            ColourSpace::Rec2020Pq | ColourSpace::Rec2020Hlg => Gamut::Rec2020,
        }
    }

    /// Interleaved RGB samples of this space as the model's copy: sRGB code values in [0, 1].
    /// sRGB samples are only clamped (bit-exact otherwise).
    pub fn to_model(self, rgb: &[f32]) -> Vec<f32> {
        let mut model = rgb.to_vec();
        self.to_model_in_place(&mut model);
        model
    }

    /// [`ColourSpace::to_model`] over the samples themselves (no second frame in memory).
    pub fn to_model_in_place(self, rgb: &mut [f32]) {
        if self == ColourSpace::Srgb {
            rgb.iter_mut().for_each(|v| *v = clamp_unit(*v));
            return;
        }
        let (transfer, matrix) = (self.transfer(), self.gamut().to(Gamut::Rec709));
        for pixel in rgb.chunks_exact_mut(3) {
            let code = [pixel[0], pixel[1], pixel[2]];
            let light = matrix.apply(code.map(|v| transfer.decode(v as f64)));
            let shown = light.map(|v| {
                let shown = if transfer.hdr_peak().is_some() {
                    tone_map(v)
                } else {
                    v
                };
                srgb_encode(shown.clamp(0.0, 1.0)) as f32
            });
            pixel.copy_from_slice(&shown);
        }
    }

    /// The model's interleaved RGB (sRGB code values in [0, 1]) as samples of this space: the
    /// inverse of [`ColourSpace::to_model`] over the model's range.
    pub fn from_model(self, rgb: &[f32]) -> Vec<f32> {
        let mut samples = rgb.to_vec();
        self.from_model_in_place(&mut samples);
        samples
    }

    /// [`ColourSpace::from_model`] over the samples themselves.
    pub fn from_model_in_place(self, rgb: &mut [f32]) {
        if self == ColourSpace::Srgb {
            return;
        }
        let (transfer, matrix) = (self.transfer(), Gamut::Rec709.to(self.gamut()));
        for pixel in rgb.chunks_exact_mut(3) {
            let code = [pixel[0], pixel[1], pixel[2]];
            let light = code.map(|v| {
                let shown = srgb_decode(clamp_unit(v) as f64);
                match transfer.hdr_peak() {
                    Some(peak) => tone_unmap(shown, peak),
                    None => shown,
                }
            });
            pixel.copy_from_slice(&matrix.apply(light).map(|v| transfer.encode(v) as f32));
        }
    }
}

fn clamp_unit(v: f32) -> f32 {
    // NaN becomes 0: the model never sees one.
    if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) }
}

impl fmt::Display for ColourSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ColourSpace {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let wanted = text.trim().to_ascii_lowercase().replace('_', "-");
        let alias = match wanted.as_str() {
            "rec709" | "rec.709" | "bt709" | "bt1886" => Some(ColourSpace::Rec709),
            "linear" | "lin" | "linear-rec709" | "linear-srgb" => Some(ColourSpace::Linear),
            "aces2065-1" | "aces2065" | "aces" => Some(ColourSpace::Aces2065),
            "davinci-intermediate" | "davinci-wide-gamut" | "dwg" => {
                Some(ColourSpace::DavinciIntermediate)
            }
            "rec2020-pq" | "pq" => Some(ColourSpace::Rec2020Pq),
            "rec2020-hlg" | "hlg" => Some(ColourSpace::Rec2020Hlg),
            _ => None,
        };
        alias
            .or_else(|| Self::ALL.into_iter().find(|s| s.name() == wanted))
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|s| s.name()).collect();
                format!("unknown colour space {text:?}: one of {}", names.join(", "))
            })
    }
}

/// A model-space pixel (sRGB code values) in Oklab (Björn Ottosson, 2020): lightness L and the
/// opponent axes a, b, perceptually even, for matching colour across a cut.
pub(crate) fn oklab_from_model(rgb: [f32; 3]) -> [f64; 3] {
    let [r, g, b] = rgb.map(|v| srgb_decode(v as f64));
    let lms = [
        0.412_221_470_8 * r + 0.536_332_536_3 * g + 0.051_445_992_9 * b,
        0.211_903_498_2 * r + 0.680_699_545_1 * g + 0.107_396_956_6 * b,
        0.088_302_461_9 * r + 0.281_718_837_6 * g + 0.629_978_700_5 * b,
    ]
    .map(f64::cbrt);
    [
        0.210_454_255_3 * lms[0] + 0.793_617_785_0 * lms[1] - 0.004_072_046_8 * lms[2],
        1.977_998_495_1 * lms[0] - 2.428_592_205_0 * lms[1] + 0.450_593_709_9 * lms[2],
        0.025_904_037_1 * lms[0] + 0.782_771_766_2 * lms[1] - 0.808_675_766_0 * lms[2],
    ]
}

/// The inverse of [`oklab_from_model`], clamped into the model's range.
pub(crate) fn model_from_oklab([l, a, b]: [f64; 3]) -> [f32; 3] {
    let lms = [
        l + 0.396_337_777_4 * a + 0.215_803_757_3 * b,
        l - 0.105_561_345_8 * a - 0.063_854_172_8 * b,
        l - 0.089_484_177_5 * a - 1.291_485_548_0 * b,
    ]
    .map(|v| v * v * v);
    [
        4.076_741_662_1 * lms[0] - 3.307_711_591_3 * lms[1] + 0.230_969_929_2 * lms[2],
        -1.268_438_004_6 * lms[0] + 2.609_757_401_1 * lms[1] - 0.341_319_396_5 * lms[2],
        -0.004_196_086_3 * lms[0] - 0.703_418_614_7 * lms[1] + 1.707_614_701_0 * lms[2],
    ]
    .map(|v| srgb_encode(v).clamp(0.0, 1.0) as f32)
}

/// Reference white of the HDR encodings, in cd/m² (BT.2408).
const HDR_REFERENCE_WHITE: f64 = 203.0;
/// Where the tone curve leaves the straight line: below it HDR light passes as it is.
const TONE_KNEE: f64 = 0.75;

/// Highlights above the knee compressed towards 1 (never reaching it); the slope is 1 at the
/// knee, so the curve is smooth, and it has an exact inverse ([`tone_unmap`]).
fn tone_map(light: f64) -> f64 {
    if light <= TONE_KNEE {
        return light;
    }
    let (over, room) = (light - TONE_KNEE, 1.0 - TONE_KNEE);
    TONE_KNEE + room * over / (over + room)
}

/// The inverse of [`tone_map`], held at the brightest light the encoding holds (`peak`).
fn tone_unmap(shown: f64, peak: f64) -> f64 {
    let top = tone_map(peak);
    if shown <= TONE_KNEE {
        return shown;
    }
    let room = 1.0 - TONE_KNEE;
    let part = (shown.min(top) - TONE_KNEE) / room;
    TONE_KNEE + part * room / (1.0 - part)
}

/// IEC 61966-2-1 sRGB, extended as an odd function so values below 0 survive a round trip.
fn srgb_decode(code: f64) -> f64 {
    let magnitude = code.abs();
    let light = if magnitude <= 0.04045 {
        magnitude / 12.92
    } else {
        ((magnitude + 0.055) / 1.055).powf(2.4)
    };
    light.copysign(code)
}

fn srgb_encode(light: f64) -> f64 {
    let magnitude = light.abs();
    let code = if magnitude <= 0.003_130_8 {
        magnitude * 12.92
    } else {
        1.055 * magnitude.powf(1.0 / 2.4) - 0.055
    };
    code.copysign(light)
}

/// How a space encodes light.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Transfer {
    Srgb,
    /// BT.1886 with a black of 0 and white of 1: a pure 2.4 power.
    Bt1886,
    Linear,
    AcesCct,
    DavinciIntermediate,
    /// SMPTE ST 2084; light relative to [`HDR_REFERENCE_WHITE`].
    Pq,
    /// BT.2100 HLG (scene light, no system gamma); light relative to the 75% signal.
    Hlg,
}

// ACEScct (S-2016-001).
const CCT_LINEAR_BREAK: f64 = 0.007_812_5;
const CCT_CODE_BREAK: f64 = 0.155_251_141_552_511;
const CCT_SLOPE: f64 = 10.540_237_741_654_5;
const CCT_OFFSET: f64 = 0.072_905_534_195_835_5;

// DaVinci Intermediate (DaVinci Wide Gamut Intermediate white paper).
const DI_A: f64 = 0.0075;
const DI_B: f64 = 7.0;
const DI_C: f64 = 0.073_292_48;
const DI_SLOPE: f64 = 10.444_268_55;
const DI_LINEAR_CUT: f64 = 0.002_624_09;
const DI_CODE_CUT: f64 = 0.027_406_68;

// SMPTE ST 2084.
const PQ_M1: f64 = 2610.0 / 16384.0;
const PQ_M2: f64 = 2523.0 / 4096.0 * 128.0;
const PQ_C1: f64 = 3424.0 / 4096.0;
const PQ_C2: f64 = 2413.0 / 4096.0 * 32.0;
const PQ_C3: f64 = 2392.0 / 4096.0 * 32.0;
const PQ_PEAK: f64 = 10_000.0;

// BT.2100 HLG.
const HLG_A: f64 = 0.178_832_77;
const HLG_B: f64 = 1.0 - 4.0 * HLG_A;
const HLG_C: f64 = 0.559_910_73;
/// HLG's reference white: the 75% signal (BT.2408).
const HLG_WHITE_SIGNAL: f64 = 0.75;

fn hlg_decode(signal: f64) -> f64 {
    if signal <= 0.5 {
        signal * signal / 3.0
    } else {
        (((signal - HLG_C) / HLG_A).exp() + HLG_B) / 12.0
    }
}

fn hlg_encode(light: f64) -> f64 {
    if light <= 1.0 / 12.0 {
        (3.0 * light.max(0.0)).sqrt()
    } else {
        HLG_A * (12.0 * light - HLG_B).ln() + HLG_C
    }
}

fn pq_decode(signal: f64) -> f64 {
    let p = signal.clamp(0.0, 1.0).powf(1.0 / PQ_M2);
    ((p - PQ_C1).max(0.0) / (PQ_C2 - PQ_C3 * p)).powf(1.0 / PQ_M1) * PQ_PEAK
}

fn pq_encode(nits: f64) -> f64 {
    let y = (nits / PQ_PEAK).clamp(0.0, 1.0).powf(PQ_M1);
    ((PQ_C1 + PQ_C2 * y) / (1.0 + PQ_C3 * y)).powf(PQ_M2)
}

impl Transfer {
    /// For the HDR encodings, the brightest light they hold relative to their white: these
    /// are tone-mapped for the model.
    fn hdr_peak(self) -> Option<f64> {
        match self {
            Transfer::Pq => Some(PQ_PEAK / HDR_REFERENCE_WHITE),
            Transfer::Hlg => Some(1.0 / hlg_decode(HLG_WHITE_SIGNAL)),
            _ => None,
        }
    }

    /// Code value to linear light (1.0 = white).
    fn decode(self, code: f64) -> f64 {
        match self {
            Transfer::Srgb => srgb_decode(code),
            Transfer::Bt1886 => code.abs().powf(2.4).copysign(code),
            Transfer::Linear => code,
            Transfer::AcesCct => {
                if code <= CCT_CODE_BREAK {
                    (code - CCT_OFFSET) / CCT_SLOPE
                } else {
                    (code * 17.52 - 9.72).exp2()
                }
            }
            Transfer::DavinciIntermediate => {
                if code <= DI_CODE_CUT {
                    code / DI_SLOPE
                } else {
                    (code / DI_C - DI_B).exp2() - DI_A
                }
            }
            Transfer::Pq => pq_decode(code) / HDR_REFERENCE_WHITE,
            Transfer::Hlg => hlg_decode(code) / hlg_decode(HLG_WHITE_SIGNAL),
        }
    }

    /// Linear light (1.0 = white) to code value.
    fn encode(self, light: f64) -> f64 {
        match self {
            Transfer::Srgb => srgb_encode(light),
            Transfer::Bt1886 => light.abs().powf(1.0 / 2.4).copysign(light),
            Transfer::Linear => light,
            Transfer::AcesCct => {
                if light <= CCT_LINEAR_BREAK {
                    CCT_SLOPE * light + CCT_OFFSET
                } else {
                    (light.log2() + 9.72) / 17.52
                }
            }
            Transfer::DavinciIntermediate => {
                if light <= DI_LINEAR_CUT {
                    light * DI_SLOPE
                } else {
                    ((light + DI_A).log2() + DI_B) * DI_C
                }
            }
            Transfer::Pq => pq_encode(light * HDR_REFERENCE_WHITE),
            Transfer::Hlg => hlg_encode(light * hlg_decode(HLG_WHITE_SIGNAL)),
        }
    }
}

/// A set of primaries and a white point, as CIE 1931 xy.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Gamut {
    Rec709,
    Rec2020,
    /// ACES AP0 (ACES2065-1).
    Ap0,
    /// ACES AP1 (ACEScg, ACEScct).
    Ap1,
    DavinciWide,
}

const D65: [f64; 2] = [0.3127, 0.3290];
const ACES_WHITE: [f64; 2] = [0.32168, 0.33767];

impl Gamut {
    /// Red, green and blue primaries, then the white point.
    fn chromaticities(self) -> [[f64; 2]; 4] {
        match self {
            Gamut::Rec709 => [[0.64, 0.33], [0.30, 0.60], [0.15, 0.06], D65],
            Gamut::Rec2020 => [[0.708, 0.292], [0.170, 0.797], [0.131, 0.046], D65],
            Gamut::Ap0 => [[0.7347, 0.2653], [0.0, 1.0], [0.0001, -0.0770], ACES_WHITE],
            Gamut::Ap1 => [[0.713, 0.293], [0.165, 0.830], [0.128, 0.044], ACES_WHITE],
            Gamut::DavinciWide => [[0.8000, 0.3130], [0.1682, 0.9877], [0.0790, -0.1155], D65],
        }
    }

    /// RGB of this gamut to CIE XYZ.
    fn to_xyz(self) -> Matrix {
        let [r, g, b, white] = self.chromaticities();
        let xyz = xy_to_xyz;
        let primaries = Matrix::columns([xyz(r), xyz(g), xyz(b)]);
        // Scale each primary so that RGB 1, 1, 1 is the white point at Y = 1.
        let scale = primaries.inverse().apply(xyz(white));
        Matrix(std::array::from_fn(|row| {
            std::array::from_fn(|column| primaries.0[row][column] * scale[column])
        }))
    }

    /// The matrix taking linear RGB of this gamut to linear RGB of `target`, adapting the white
    /// point with Bradford where the two differ.
    fn to(self, target: Gamut) -> Matrix {
        let adapt = bradford(self.chromaticities()[3], target.chromaticities()[3]);
        target
            .to_xyz()
            .inverse()
            .times(&adapt)
            .times(&self.to_xyz())
    }
}

/// A chromaticity as XYZ at Y = 1.
fn xy_to_xyz([x, y]: [f64; 2]) -> [f64; 3] {
    [x / y, 1.0, (1.0 - x - y) / y]
}

/// Bradford chromatic adaptation from white `from` to white `to` (the identity for one white).
fn bradford(from: [f64; 2], to: [f64; 2]) -> Matrix {
    const BRADFORD: Matrix = Matrix([
        [0.8951, 0.2664, -0.1614],
        [-0.7502, 1.7135, 0.0367],
        [0.0389, -0.0685, 1.0296],
    ]);
    if from == to {
        return Matrix::IDENTITY;
    }
    let (source, target) = (
        BRADFORD.apply(xy_to_xyz(from)),
        BRADFORD.apply(xy_to_xyz(to)),
    );
    let gain = Matrix(std::array::from_fn(|row| {
        std::array::from_fn(|column| {
            if row == column {
                target[row] / source[row]
            } else {
                0.0
            }
        })
    }));
    BRADFORD.inverse().times(&gain).times(&BRADFORD)
}

/// A 3x3 matrix, rows first.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Matrix([[f64; 3]; 3]);

impl Matrix {
    const IDENTITY: Matrix = Matrix([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);

    fn columns(columns: [[f64; 3]; 3]) -> Self {
        Matrix(std::array::from_fn(|row| {
            std::array::from_fn(|column| columns[column][row])
        }))
    }

    fn apply(&self, v: [f64; 3]) -> [f64; 3] {
        std::array::from_fn(|row| (0..3).map(|k| self.0[row][k] * v[k]).sum())
    }

    fn times(&self, other: &Matrix) -> Matrix {
        Matrix(std::array::from_fn(|row| {
            std::array::from_fn(|column| (0..3).map(|k| self.0[row][k] * other.0[k][column]).sum())
        }))
    }

    fn inverse(&self) -> Matrix {
        let m = &self.0;
        let cofactor = |r: usize, c: usize| {
            let (r1, r2, c1, c2) = ((r + 1) % 3, (r + 2) % 3, (c + 1) % 3, (c + 2) % 3);
            m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1]
        };
        let determinant: f64 = (0..3).map(|c| m[0][c] * cofactor(0, c)).sum();
        // The adjugate is the transposed cofactor matrix.
        Matrix(std::array::from_fn(|row| {
            std::array::from_fn(|column| cofactor(column, row) / determinant)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn transfer_functions_meet_their_published_reference_points() {
        // ACEScct (S-2016-001): 18% grey.
        assert!(close(Transfer::AcesCct.encode(0.18), 0.413_588_4, 1e-7));
        assert!(close(
            Transfer::AcesCct.decode(0.413_588_402_492_442),
            0.18,
            1e-9
        ));
        // ACEScct's linear toe meets the log curve at its break point.
        assert!(close(
            Transfer::AcesCct.encode(CCT_LINEAR_BREAK),
            CCT_CODE_BREAK,
            1e-9
        ));
        // sRGB: 18% grey, and the two pieces meet.
        assert!(close(srgb_encode(0.18), 0.461_356_129_500_441_6, 1e-9));
        assert!(close(srgb_decode(0.04045), 0.04045 / 12.92, 1e-12));
        // PQ (ST 2084): 100 cd/m² at 0.508078, 1000 at 0.751827, 10 000 at 1.
        assert!(close(pq_encode(100.0), 0.508_078, 1e-6));
        assert!(close(pq_encode(1000.0), 0.751_827, 1e-6));
        assert!(close(pq_encode(10_000.0), 1.0, 1e-12));
        assert!(close(pq_decode(0.508_078), 100.0, 1e-3));
        // HLG (BT.2100): E = 1/12 at 0.5, E = 1 at 1.0 (to the constants' precision).
        assert!(close(hlg_encode(1.0 / 12.0), 0.5, 1e-12));
        assert!(close(hlg_encode(1.0), 1.0, 1e-6));
        // DaVinci Intermediate: 18% grey at 0.336043.
        assert!(close(
            Transfer::DavinciIntermediate.encode(0.18),
            0.336_043,
            1e-6
        ));
        // BT.1886 with black 0: a 2.4 power.
        assert!(close(Transfer::Bt1886.decode(0.5), 0.5f64.powf(2.4), 1e-12));
    }

    #[test]
    fn every_transfer_inverts_itself() {
        for transfer in [
            Transfer::Srgb,
            Transfer::Bt1886,
            Transfer::AcesCct,
            Transfer::DavinciIntermediate,
            Transfer::Pq,
            Transfer::Hlg,
        ] {
            for step in 0..=100 {
                let code = step as f64 / 100.0;
                // PQ's closed form puts 0 cd/m² at 7.3e-7, not 0.
                let back = transfer.encode(transfer.decode(code));
                assert!(close(back, code, 1e-6), "{transfer:?} {code} -> {back}");
            }
        }
    }

    #[test]
    fn gamut_matrices_equal_the_published_ones_and_invert() {
        // ACEScg to ACES2065-1, as OpenColorIO's ACES configuration publishes it.
        let ap1_to_ap0 = Gamut::Ap1.to(Gamut::Ap0);
        let published = [
            [0.695_452_241_357, 0.140_678_696_470, 0.163_869_062_172],
            [0.044_794_563_372, 0.859_671_118_456, 0.095_534_318_172],
            [-0.005_525_882_558, 0.004_025_210_306, 1.001_500_672_252],
        ];
        for (row, expected) in ap1_to_ap0.0.iter().zip(published) {
            for (value, expected) in row.iter().zip(expected) {
                assert!(close(*value, expected, 1e-6), "{ap1_to_ap0:?}");
            }
        }
        // Rec.709 to Rec.2020 (ITU-R BT.2087, to its 4 decimals).
        let to_2020 = Gamut::Rec709.to(Gamut::Rec2020);
        let published = [
            [0.6274, 0.3293, 0.0433],
            [0.0691, 0.9195, 0.0114],
            [0.0164, 0.0880, 0.8956],
        ];
        for (row, expected) in to_2020.0.iter().zip(published) {
            for (value, expected) in row.iter().zip(expected) {
                assert!(close(*value, expected, 1e-4), "{to_2020:?}");
            }
        }
        // Linear Rec.709 to ACEScg (Bradford), as OpenColorIO's ACES 1.2 configuration
        // publishes it (colour-science 0.4.7, from the IEC's rounded sRGB matrix, is 4e-5 off).
        let to_acescg = Gamut::Rec709.to(Gamut::Ap1);
        let published = [
            [0.613_097_402, 0.339_523_146, 0.047_379_451],
            [0.070_193_722, 0.916_353_879, 0.013_452_398],
            [0.020_615_593, 0.109_569_773, 0.869_814_634],
        ];
        for (row, expected) in to_acescg.0.iter().zip(published) {
            for (value, expected) in row.iter().zip(expected) {
                assert!(close(*value, expected, 1e-6), "{to_acescg:?}");
            }
        }
        // Every pair inverts, and white stays white.
        let gamuts = [
            Gamut::Rec709,
            Gamut::Rec2020,
            Gamut::Ap0,
            Gamut::Ap1,
            Gamut::DavinciWide,
        ];
        for a in gamuts {
            for b in gamuts {
                let there_and_back = b.to(a).times(&a.to(b));
                for (r, row) in there_and_back.0.iter().enumerate() {
                    for (c, value) in row.iter().enumerate() {
                        let identity = if r == c { 1.0 } else { 0.0 };
                        assert!(close(*value, identity, 1e-9), "{a:?} {b:?}");
                    }
                }
                for value in a.to(b).apply([1.0; 3]) {
                    assert!(close(value, 1.0, 1e-9), "{a:?} -> {b:?} white");
                }
            }
        }
    }

    #[test]
    fn srgb_is_the_model_space_exactly_and_only_clamped() {
        let samples = [0.0, 1.0 / 255.0, 0.5, 1.0, 1.5, -0.25, f32::NAN];
        assert_eq!(
            ColourSpace::Srgb.to_model(&samples[..6]),
            vec![0.0, 1.0 / 255.0, 0.5, 1.0, 1.0, 0.0]
        );
        assert_eq!(ColourSpace::Srgb.to_model(&[f32::NAN, 0.0, 0.0])[0], 0.0);
        assert_eq!(ColourSpace::Srgb.from_model(&samples[..6]), samples[..6]);
    }

    #[test]
    fn linear_becomes_srgb_code_values_and_clips_only_in_the_model_copy() {
        let model = ColourSpace::Linear.to_model(&[0.18, 0.18, 0.18, 8.0, -0.5, 1.0]);
        assert!(close(model[0] as f64, 0.461_356_129_5, 1e-6), "{model:?}");
        assert_eq!(&model[3..], &[1.0, 0.0, 1.0]);
        let back = ColourSpace::Linear.from_model(&model[..3]);
        assert!(close(back[0] as f64, 0.18, 1e-6), "{back:?}");
    }

    #[test]
    fn every_space_maps_the_model_range_back_onto_itself() {
        // Generated frames come back into the clip's space and, read again, are the same image.
        let model: Vec<f32> = (0..=60)
            .flat_map(|i| {
                let v = i as f32 / 60.0;
                [v, 1.0 - v, (v * 3.0) % 1.0]
            })
            .collect();
        for space in ColourSpace::ALL {
            // The HDR tone curve tops out just below full scale, at the encoding's peak.
            let top = space
                .transfer()
                .hdr_peak()
                .map_or(1.0, |peak| srgb_encode(tone_map(peak)) as f32);
            let again = space.to_model(&space.from_model(&model));
            for (a, b) in model.iter().zip(&again) {
                assert!((a.min(top) - b).abs() < 2e-5, "{space}: {a} -> {b}");
            }
        }
    }

    #[test]
    fn hdr_highlights_are_compressed_into_range_and_come_back() {
        // 1000 cd/m² (about five times reference white) and PQ's peak stay distinct and below 1.
        let thousand = pq_encode(1000.0) as f32;
        let peak = 1.0f32;
        let reference = pq_encode(HDR_REFERENCE_WHITE) as f32;
        let model = ColourSpace::Rec2020Pq.to_model(&[
            thousand, thousand, thousand, peak, peak, peak, reference, reference, reference,
        ]);
        assert!(model[0] < model[3] && model[3] < 1.0, "{model:?}");
        // Reference white (1.0 linear) is above the knee: gently compressed, below 1000 cd/m².
        assert!(model[6] > 0.9 && model[6] < model[0], "{model:?}");
        let back = ColourSpace::Rec2020Pq.from_model(&model);
        assert!((back[0] - thousand).abs() < 1e-4, "{back:?}");
        // HLG's 75% signal is white at 1.0 linear: compressed like PQ's reference white.
        let hlg = ColourSpace::Rec2020Hlg.to_model(&[0.75, 0.75, 0.75]);
        assert!(
            close(hlg[0] as f64, model[6] as f64, 1e-5),
            "{hlg:?} {model:?}"
        );
    }

    #[test]
    fn oklab_meets_its_published_values_and_inverts() {
        // Ottosson's table: sRGB white is L = 1, a = b = 0; pure red is (0.628, 0.225, 0.126).
        let white = oklab_from_model([1.0; 3]);
        assert!(close(white[0], 1.0, 1e-6) && white[1].abs() < 1e-6 && white[2].abs() < 1e-6);
        let red = oklab_from_model([1.0, 0.0, 0.0]);
        for (value, expected) in red.iter().zip([0.627_955, 0.224_863, 0.125_846]) {
            assert!(close(*value, expected, 1e-4), "{red:?}");
        }
        for rgb in [[0.2, 0.5, 0.9], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]] {
            let back = model_from_oklab(oklab_from_model(rgb));
            for (a, b) in rgb.iter().zip(back) {
                assert!((a - b).abs() < 1e-5, "{rgb:?} -> {back:?}");
            }
        }
    }

    #[test]
    fn names_users_type_are_read_and_unknown_ones_are_refused() {
        for space in ColourSpace::ALL {
            assert_eq!(space.name().parse::<ColourSpace>(), Ok(space));
            assert_eq!(space.to_string().parse::<ColourSpace>(), Ok(space));
        }
        assert_eq!("ACEScg".parse(), Ok(ColourSpace::AcesCg));
        assert_eq!("Rec.709".parse(), Ok(ColourSpace::Rec709));
        let error = "rec2100".parse::<ColourSpace>().unwrap_err();
        assert!(
            error.contains("unknown colour space \"rec2100\"") && error.contains("acescct"),
            "{error}"
        );
    }
}
