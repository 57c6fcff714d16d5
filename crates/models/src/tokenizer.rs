//! The umT5 tokenizer of the Wan pipeline and the pipeline's prompt cleaning.
//!
//! [`T5Tokenizer`] reproduces what diffusers' Wan pipelines get from transformers (5.x) in
//! `_get_t5_prompt_embeds`:
//! `tokenizer(prompt, padding="max_length", max_length=512, truncation=True, add_special_tokens=True,
//! return_attention_mask=True)`. transformers' `T5Tokenizer` does not use the `tokenizer.json` pipeline as
//! written: it keeps the Unigram vocabulary and the `Precompiled` normalizer and rebuilds the rest, and so
//! do we: Unigram with unk id 2 and no byte fallback, only the `Precompiled` normalizer (the file's `Strip` /
//! `Replace` normalizers are dropped), pre-tokenizer `WhitespaceSplit` + `Metaspace("▁", always, split)`,
//! then `</s>` appended. Truncation keeps the first `max_length - 1` tokens and the `</s>`; padding appends
//! `<pad>` (attention mask 0) up to `max_length`. Added (special) tokens come from the file's
//! `added_tokens` (transformers takes them from `tokenizer_config.json`; the published folders agree), and
//! the `</s>` / `<pad>` token names are T5's defaults.
//!
//! [`prompt_clean`] is the pipeline's `prompt_clean`: `ftfy.fix_text`, `html.unescape` twice, whitespace
//! collapse and strip. Of `ftfy.fix_text` (6.3, default config) we reproduce, in ftfy's order and repeated
//! until nothing changes, per line: its HTML unescaping (only `&...;` forms, including the upper-case
//! variants like `&EACUTE;`, and switched off for a line and every later line once a line contains `<`),
//! C1 controls read as Windows-1252, Latin ligatures, full/half-width forms (and U+3000) to normal width,
//! curly quotes to straight ones, line breaks to `\n`, ANSI terminal escapes, control characters, NFC.
//! NOT reproduced:
//! - `fix_encoding`: mojibake repair (e.g. `cafÃ©` -> `café`, `â€™` -> `'`), which ftfy applies only to
//!   text its "badness" heuristic flags; such text stays as it is here.
//! - HTML entity names outside HTML 4.01 (+ `&apos;`, `&AMP;`, `&LT;`...): html5-only names such as `&checkmark;` or
//!   `&NotEqualTilde;` stay escaped here (names without `;`, e.g. `&amp`, `&copy2024`, are all handled).
//! - Unicode version: NFC (and the width forms' NFKC) use the `tokenizers` crate's Unicode 9.0 tables,
//!   Python 3.11 uses 14.0: sequences with characters newer than 9.0 may normalize differently.
//! - Terminal escapes with non-ASCII digits (Python's `\d`), ftfy's split of lines longer than 10^6
//!   characters, and Python's limit of 4300 digits in a decimal `&#...;` (an error in Python).

use std::path::Path;

use candle_core::{Device, Result, Tensor, bail};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::{NormalizedString, Tokenizer};

/// `max_sequence_length` of the Wan pipelines.
pub const DEFAULT_MAX_LENGTH: usize = 512;

const EOS_TOKEN: &str = "</s>";
const PAD_TOKEN: &str = "<pad>";
/// transformers' `T5Tokenizer` builds its Unigram model with this unknown-token id, whatever the file says.
const UNK_ID: u64 = 2;

/// Token ids and attention masks of a batch, each row `max_length` long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedBatch {
    pub input_ids: Vec<Vec<u32>>,
    pub attention_mask: Vec<Vec<u32>>,
}

impl TokenizedBatch {
    /// `input_ids` and `attention_mask` as `[batch, max_length]` u32 tensors.
    pub fn to_tensors(&self, device: &Device) -> Result<(Tensor, Tensor)> {
        let batch = self.input_ids.len();
        let length = self.input_ids.first().map_or(0, Vec::len);
        let flat = |rows: &[Vec<u32>]| rows.concat();
        Ok((
            Tensor::from_vec(flat(&self.input_ids), (batch, length), device)?,
            Tensor::from_vec(flat(&self.attention_mask), (batch, length), device)?,
        ))
    }
}

/// The umT5 tokenizer as transformers' `T5Tokenizer` / `T5TokenizerFast` (5.x) builds it from a
/// `tokenizer.json`.
#[derive(Debug, Clone)]
pub struct T5Tokenizer {
    tokenizer: Tokenizer,
    eos_id: u32,
    pad_id: u32,
}

impl T5Tokenizer {
    /// Loads `<dir>/tokenizer/tokenizer.json` of a pipeline folder.
    pub fn from_pipeline_dir(dir: impl AsRef<Path>) -> Result<Self> {
        Self::from_file(dir.as_ref().join("tokenizer").join("tokenizer.json"))
    }

    /// Loads a `tokenizer.json` holding a Unigram (SentencePiece) model.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = crate::files::read_text(path, crate::files::TEXT_LIMIT)
            .map_err(|e| candle_core::Error::msg(format!("cannot read {}: {e}", path.display())))?;
        let mut json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| candle_core::Error::msg(format!("{} is not JSON: {e}", path.display())))?;
        rebuild_like_transformers(&mut json).map_err(|e| e.context(path.display().to_string()))?;
        let mut tokenizer: Tokenizer = serde_json::from_value(json)
            .map_err(|e| candle_core::Error::msg(format!("{}: {e}", path.display())))?;
        tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
            WhitespaceSplit.into(),
            Metaspace::new('▁', PrependScheme::Always, true).into(),
        ])));
        let id = |token: &str| match tokenizer.token_to_id(token) {
            Some(id) => Ok(id),
            None => bail!("{}: the vocabulary has no {token} token", path.display()),
        };
        let (eos_id, pad_id) = (id(EOS_TOKEN)?, id(PAD_TOKEN)?);
        Ok(Self {
            tokenizer,
            eos_id,
            pad_id,
        })
    }

    /// Tokenizes texts as they are (the tokenizer call alone), padded / truncated to `max_length`.
    pub fn encode(&self, texts: &[&str], max_length: usize) -> Result<TokenizedBatch> {
        if max_length == 0 {
            bail!("max_length must leave room for the </s> token");
        }
        let mut batch = TokenizedBatch {
            input_ids: Vec::new(),
            attention_mask: Vec::new(),
        };
        for text in texts {
            let encoding = self
                .tokenizer
                .encode(*text, false)
                .map_err(|e| candle_core::Error::msg(format!("tokenizing {text:?}: {e}")))?;
            let tokens = &encoding.get_ids()[..encoding.len().min(max_length - 1)];
            let mut ids = Vec::with_capacity(max_length);
            ids.extend_from_slice(tokens);
            ids.push(self.eos_id);
            let mut mask = vec![1; ids.len()];
            ids.resize(max_length, self.pad_id);
            mask.resize(max_length, 0);
            batch.input_ids.push(ids);
            batch.attention_mask.push(mask);
        }
        Ok(batch)
    }

    /// What the Wan pipeline does with prompts: [`prompt_clean`], then [`Self::encode`].
    pub fn encode_prompts(&self, prompts: &[&str], max_length: usize) -> Result<TokenizedBatch> {
        let cleaned: Vec<String> = prompts.iter().map(|p| prompt_clean(p)).collect();
        let cleaned: Vec<&str> = cleaned.iter().map(String::as_str).collect();
        self.encode(&cleaned, max_length)
    }

    /// The underlying `tokenizers` tokenizer (rebuilt pipeline, no truncation / padding / post-processor).
    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }
}

/// Applies, on the raw JSON, what transformers' `T5Tokenizer` keeps of a `tokenizer.json`: the Unigram
/// vocabulary (unk id 2, no byte fallback) and the `Precompiled` normalizer (top level or directly inside
/// a `Sequence`). The file's pre-tokenizer is dropped (the caller sets transformers' one), and so are its
/// truncation, padding and post-processor: [`T5Tokenizer::encode`] does them.
fn rebuild_like_transformers(json: &mut serde_json::Value) -> Result<()> {
    let Some(root) = json.as_object_mut() else {
        bail!("tokenizer.json is not a JSON object")
    };
    let Some(model) = root.get_mut("model").and_then(|m| m.as_object_mut()) else {
        bail!("tokenizer.json has no model")
    };
    if model.get("type").and_then(|t| t.as_str()) != Some("Unigram") {
        bail!(
            "expected a Unigram (SentencePiece) model, the T5 tokenizer has one, got {:?}",
            model.get("type")
        );
    }
    model.insert("unk_id".into(), UNK_ID.into());
    model.insert("byte_fallback".into(), false.into());
    let precompiled =
        |n: &serde_json::Value| n.get("type").and_then(|t| t.as_str()) == Some("Precompiled");
    let normalizer = match root.get("normalizer") {
        Some(n) if precompiled(n) => n.clone(),
        Some(n) => n
            .get("normalizers")
            .and_then(|list| list.as_array())
            .and_then(|list| list.iter().find(|n| precompiled(n)).cloned())
            .unwrap_or(serde_json::Value::Null),
        None => serde_json::Value::Null,
    };
    root.insert("normalizer".into(), normalizer);
    for key in ["pre_tokenizer", "post_processor", "truncation", "padding"] {
        root.insert(key.into(), serde_json::Value::Null);
    }
    Ok(())
}

/// diffusers' Wan `prompt_clean`: `ftfy.fix_text`, `html.unescape` twice, strip, whitespace runs to one
/// space, strip (see the module documentation for what of ftfy is not reproduced).
pub fn prompt_clean(text: &str) -> String {
    let unescaped = html_unescape(&html_unescape(&fix_text(text)));
    // `re.sub(r"\s+", " ", text).strip()` after a `strip()`: the words joined by single spaces.
    unescaped
        .split(is_python_space)
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Python's `str.isspace` (and `\s` of `re` on `str`): Unicode White_Space plus U+001C..U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `ftfy.fix_text` with its default configuration, less what the module documentation lists.
fn fix_text(text: &str) -> String {
    let mut fixed = String::with_capacity(text.len());
    // ftfy's `unescape_html="auto"`: off from the first line that contains '<' on, for all later lines too.
    let mut unescape = true;
    for line in text.split_inclusive('\n') {
        unescape &= !line.contains('<');
        let mut line = line.to_string();
        loop {
            let next = fix_once(&line, unescape);
            if next == line {
                break;
            }
            line = next;
        }
        fixed.push_str(&line);
    }
    fixed
}

/// One round of ftfy's fixes, in its order.
fn fix_once(text: &str, unescape: bool) -> String {
    let text = if unescape {
        ftfy_unescape_html(text)
    } else {
        text.to_string()
    };
    let text: String = text
        .chars()
        .map(|c| windows_1252_c1(c).unwrap_or(c))
        .collect();
    let text = fix_latin_ligatures(&text);
    let text = fix_character_width(&text);
    let text: String = text.chars().map(uncurl_quote).collect();
    let text = fix_line_breaks(&text);
    let text = remove_terminal_escapes(&text);
    let text: String = text.chars().filter(|&c| !is_unwanted_control(c)).collect();
    let mut normalized = NormalizedString::from(text);
    normalized.nfc();
    normalized.get().to_string()
}

/// The Windows-1252 character of a C1 control (as ftfy's "sloppy" codec and `html.unescape` read it;
/// the five undefined bytes stay as they are).
fn windows_1252_c1(c: char) -> Option<char> {
    const TABLE: [char; 32] = [
        '\u{20ac}', '\u{81}', '\u{201a}', '\u{192}', '\u{201e}', '\u{2026}', '\u{2020}',
        '\u{2021}', '\u{2c6}', '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8d}', '\u{17d}',
        '\u{8f}', '\u{90}', '\u{2018}', '\u{2019}', '\u{201c}', '\u{201d}', '\u{2022}', '\u{2013}',
        '\u{2014}', '\u{2dc}', '\u{2122}', '\u{161}', '\u{203a}', '\u{153}', '\u{9d}', '\u{17e}',
        '\u{178}',
    ];
    let code = c as usize;
    (0x80..0xa0).contains(&code).then(|| TABLE[code - 0x80])
}

/// ftfy's `fix_latin_ligatures`.
fn fix_latin_ligatures(text: &str) -> String {
    let mut fixed = String::with_capacity(text.len());
    for c in text.chars() {
        match latin_ligature(c) {
            Some(letters) => fixed.push_str(letters),
            None => fixed.push(c),
        }
    }
    fixed
}

/// ftfy's ligature table (Latin typographic ligatures and legacy digraphs).
fn latin_ligature(c: char) -> Option<&'static str> {
    Some(match c {
        'Ĳ' => "IJ",
        'ĳ' => "ij",
        'ŉ' => "ʼn",
        'Ǳ' => "DZ",
        'ǲ' => "Dz",
        'ǳ' => "dz",
        'Ǆ' => "DŽ",
        'ǅ' => "Dž",
        'ǆ' => "dž",
        'Ǉ' => "LJ",
        'ǈ' => "Lj",
        'ǉ' => "lj",
        'Ǌ' => "NJ",
        'ǋ' => "Nj",
        'ǌ' => "nj",
        'ﬀ' => "ff",
        'ﬁ' => "fi",
        'ﬂ' => "fl",
        'ﬃ' => "ffi",
        'ﬄ' => "ffl",
        'ﬅ' => "ſt",
        'ﬆ' => "st",
        _ => return None,
    })
}

/// ftfy's `fix_character_width`: U+3000 to a space, U+FF01..U+FFEF to their NFKC form.
fn fix_character_width(text: &str) -> String {
    let mut fixed = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{3000}' => fixed.push(' '),
            '\u{ff01}'..='\u{ffef}' => {
                let mut normalized = NormalizedString::from(c.to_string());
                normalized.nfkc();
                fixed.push_str(normalized.get());
            }
            _ => fixed.push(c),
        }
    }
    fixed
}

/// ftfy's `uncurl_quotes`.
fn uncurl_quote(c: char) -> char {
    match c {
        '\u{2bc}' | '\u{2018}'..='\u{201b}' => '\'',
        '\u{201c}'..='\u{201f}' => '"',
        _ => c,
    }
}

/// ftfy's `fix_line_breaks`: CRLF, CR, U+2028, U+2029 and U+0085 to `\n`.
fn fix_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n")
}

/// ftfy's `remove_terminal_escapes`: `ESC [` digits or `;` ... a letter.
fn remove_terminal_escapes(text: &str) -> String {
    let mut kept = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("\u{1b}[") {
        let parameters =
            rest[start + 2..].trim_start_matches(|c: char| c.is_ascii_digit() || c == ';');
        kept.push_str(&rest[..start]);
        match parameters.chars().next() {
            Some(letter) if letter.is_ascii_alphabetic() => rest = &parameters[1..],
            _ => {
                kept.push('\u{1b}');
                rest = &rest[start + 1..];
            }
        }
    }
    kept.push_str(rest);
    kept
}

/// ftfy's `remove_control_chars` set.
fn is_unwanted_control(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{b}' | '\u{e}'..='\u{1f}' | '\u{7f}' | '\u{206a}'..='\u{206f}' | '\u{feff}'
        | '\u{fff9}'..='\u{fffc}')
}

/// ftfy's `unescape_html`: `&name;` / `&#digits;` / `&#xhex;` with at most 24 ASCII letters or digits.
/// Named ones decode from the html5 table plus ftfy's upper-case variants; numeric ones as
/// `html.unescape` does, unless the result contains a `;`.
fn ftfy_unescape_html(text: &str) -> String {
    let mut fixed = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        fixed.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let body = after.strip_prefix('#').unwrap_or(after);
        let run = body.len()
            - body
                .trim_start_matches(|c: char| c.is_ascii_alphanumeric())
                .len();
        if !(1..=24).contains(&run) || !body[run..].starts_with(';') {
            fixed.push('&');
            rest = after;
            continue;
        }
        let end = after.len() - body.len() + run + 1;
        let entity = &rest[amp..amp + 1 + end];
        let decoded = if body.len() == after.len() {
            entity_value(&entity[1..], |kind| kind != EntityKind::Html5Legacy).map(str::to_string)
        } else {
            Some(html_unescape(entity)).filter(|decoded| !decoded.contains(';'))
        };
        fixed.push_str(decoded.as_deref().unwrap_or(entity));
        rest = &after[end..];
    }
    fixed.push_str(rest);
    fixed
}

/// Python's `html.unescape` (HTML5 character references, including the invalid ones browsers fix).
fn html_unescape(text: &str) -> String {
    let mut unescaped = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        unescaped.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match character_reference(after) {
            Some((replacement, consumed)) => {
                unescaped.push_str(&replacement);
                rest = &after[consumed..];
            }
            None => {
                unescaped.push('&');
                rest = after;
            }
        }
    }
    unescaped.push_str(rest);
    unescaped
}

/// The replacement of the reference starting right after a `&`, and its length in bytes (Python's
/// `_charref` pattern and `_replace_charref`). `None` leaves the `&` as it is.
fn character_reference(after: &str) -> Option<(String, usize)> {
    let with_semicolon =
        |text: &str, length: usize| length + usize::from(text[length..].starts_with(';'));
    if let Some(number) = after.strip_prefix('#') {
        let (digits, radix, skipped) = match number.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16, 2),
            None => (number, 10, 1),
        };
        let length = digits.len() - digits.trim_start_matches(|c: char| c.is_digit(radix)).len();
        if length == 0 {
            return None;
        }
        let value = digits[..length].chars().fold(0u64, |value, c| {
            value
                .saturating_mul(radix.into())
                .saturating_add(c.to_digit(radix).unwrap_or(0).into())
        });
        return Some((
            numeric_reference(value),
            skipped + with_semicolon(digits, length),
        ));
    }
    let name_end = after
        .char_indices()
        .take_while(|&(_, c)| !matches!(c, '\t' | '\n' | '\x0c' | ' ' | '<' | '&' | '#' | ';'))
        .take(32)
        .last()
        .map(|(i, c)| i + c.len_utf8())?;
    let name = &after[..with_semicolon(after, name_end)];
    if let Some(value) = entity_value(name, |kind| kind != EntityKind::FtfyUpper) {
        return Some((value.to_string(), name.len()));
    }
    // The longest prefix (at least two characters) that is a legacy name without ';'.
    let prefixes = name
        .char_indices()
        .skip(2)
        .map(|(i, _)| i)
        .collect::<Vec<_>>();
    prefixes.into_iter().rev().find_map(|end| {
        let value = entity_value(&name[..end], |kind| kind == EntityKind::Html5Legacy)?;
        Some((format!("{value}{}", &name[end..]), name.len()))
    })
}

/// `html.unescape` of `&#number;`.
fn numeric_reference(value: u64) -> String {
    match value {
        0 => '\u{fffd}'.to_string(),
        0x0d => '\r'.to_string(),
        0x80..=0x9f => windows_1252_c1(char::from_u32(value as u32).unwrap_or('\u{fffd}'))
            .unwrap_or('\u{fffd}')
            .to_string(),
        0xd800..=0xdfff => '\u{fffd}'.to_string(),
        v if v > 0x10ffff => '\u{fffd}'.to_string(),
        0x1..=0x8 | 0xb | 0xe..=0x1f | 0x7f | 0xfdd0..=0xfdef => String::new(),
        v if v & 0xfffe == 0xfffe => String::new(),
        v => char::from_u32(v as u32)
            .map(String::from)
            .unwrap_or_default(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntityKind {
    /// In Python's `html.entities.html5`, with a `;`.
    Html5,
    /// In `html.entities.html5` without a `;` (the legacy names `html.unescape` also takes as prefixes).
    Html5Legacy,
    /// One of ftfy's upper-case variants (`&EACUTE;`), which `html.unescape` does not know.
    FtfyUpper,
}

fn entity_value(name: &str, accept: impl Fn(EntityKind) -> bool) -> Option<&'static str> {
    let index = HTML_ENTITIES
        .binary_search_by(|(entry, _, _)| entry.cmp(&name))
        .ok()?;
    let (_, value, kind) = HTML_ENTITIES[index];
    accept(kind).then_some(value)
}

/// HTML 4.01 entity names, `apos` and the legacy upper-case names (`AMP`, `LT`, ...), with the values of Python's `html.entities.html5`, and ftfy's
/// upper-case variants of them, sorted by name. Generated by `models/reference/text.py --entities`.
use EntityKind::{FtfyUpper, Html5, Html5Legacy};
#[rustfmt::skip]
const HTML_ENTITIES: &[(&str, &str, EntityKind)] = &[
    ("AACUTE;", "\u{c1}", FtfyUpper),
    ("ACIRC;", "\u{c2}", FtfyUpper),
    ("ACUTE;", "\u{b4}", FtfyUpper),
    ("AELIG;", "\u{c6}", FtfyUpper),
    ("AElig", "\u{c6}", Html5Legacy),
    ("AElig;", "\u{c6}", Html5),
    ("AGRAVE;", "\u{c0}", FtfyUpper),
    ("ALEFSYM;", "\u{2135}", FtfyUpper),
    ("ALPHA;", "\u{391}", FtfyUpper),
    ("AMP", "\u{26}", Html5Legacy),
    ("AMP;", "\u{26}", Html5),
    ("AND;", "\u{2227}", FtfyUpper),
    ("ANG;", "\u{2220}", FtfyUpper),
    ("APOS;", "\u{27}", FtfyUpper),
    ("ARING;", "\u{c5}", FtfyUpper),
    ("ASYMP;", "\u{2248}", FtfyUpper),
    ("ATILDE;", "\u{c3}", FtfyUpper),
    ("AUML;", "\u{c4}", FtfyUpper),
    ("Aacute", "\u{c1}", Html5Legacy),
    ("Aacute;", "\u{c1}", Html5),
    ("Acirc", "\u{c2}", Html5Legacy),
    ("Acirc;", "\u{c2}", Html5),
    ("Agrave", "\u{c0}", Html5Legacy),
    ("Agrave;", "\u{c0}", Html5),
    ("Alpha;", "\u{391}", Html5),
    ("Aring", "\u{c5}", Html5Legacy),
    ("Aring;", "\u{c5}", Html5),
    ("Atilde", "\u{c3}", Html5Legacy),
    ("Atilde;", "\u{c3}", Html5),
    ("Auml", "\u{c4}", Html5Legacy),
    ("Auml;", "\u{c4}", Html5),
    ("BDQUO;", "\u{201e}", FtfyUpper),
    ("BETA;", "\u{392}", FtfyUpper),
    ("BRVBAR;", "\u{a6}", FtfyUpper),
    ("BULL;", "\u{2022}", FtfyUpper),
    ("Beta;", "\u{392}", Html5),
    ("CAP;", "\u{2229}", FtfyUpper),
    ("CCEDIL;", "\u{c7}", FtfyUpper),
    ("CEDIL;", "\u{b8}", FtfyUpper),
    ("CENT;", "\u{a2}", FtfyUpper),
    ("CHI;", "\u{3a7}", FtfyUpper),
    ("CIRC;", "\u{2c6}", FtfyUpper),
    ("CLUBS;", "\u{2663}", FtfyUpper),
    ("CONG;", "\u{2245}", FtfyUpper),
    ("COPY", "\u{a9}", Html5Legacy),
    ("COPY;", "\u{a9}", Html5),
    ("CRARR;", "\u{21b5}", FtfyUpper),
    ("CUP;", "\u{222a}", FtfyUpper),
    ("CURREN;", "\u{a4}", FtfyUpper),
    ("Ccedil", "\u{c7}", Html5Legacy),
    ("Ccedil;", "\u{c7}", Html5),
    ("Chi;", "\u{3a7}", Html5),
    ("DAGGER;", "\u{2020}", FtfyUpper),
    ("DARR;", "\u{2193}", FtfyUpper),
    ("DEG;", "\u{b0}", FtfyUpper),
    ("DELTA;", "\u{394}", FtfyUpper),
    ("DIAMS;", "\u{2666}", FtfyUpper),
    ("DIVIDE;", "\u{f7}", FtfyUpper),
    ("Dagger;", "\u{2021}", Html5),
    ("Delta;", "\u{394}", Html5),
    ("EACUTE;", "\u{c9}", FtfyUpper),
    ("ECIRC;", "\u{ca}", FtfyUpper),
    ("EGRAVE;", "\u{c8}", FtfyUpper),
    ("EMPTY;", "\u{2205}", FtfyUpper),
    ("EMSP;", "\u{2003}", FtfyUpper),
    ("ENSP;", "\u{2002}", FtfyUpper),
    ("EPSILON;", "\u{395}", FtfyUpper),
    ("EQUIV;", "\u{2261}", FtfyUpper),
    ("ETA;", "\u{397}", FtfyUpper),
    ("ETH", "\u{d0}", Html5Legacy),
    ("ETH;", "\u{d0}", Html5),
    ("EUML;", "\u{cb}", FtfyUpper),
    ("EURO;", "\u{20ac}", FtfyUpper),
    ("EXIST;", "\u{2203}", FtfyUpper),
    ("Eacute", "\u{c9}", Html5Legacy),
    ("Eacute;", "\u{c9}", Html5),
    ("Ecirc", "\u{ca}", Html5Legacy),
    ("Ecirc;", "\u{ca}", Html5),
    ("Egrave", "\u{c8}", Html5Legacy),
    ("Egrave;", "\u{c8}", Html5),
    ("Epsilon;", "\u{395}", Html5),
    ("Eta;", "\u{397}", Html5),
    ("Euml", "\u{cb}", Html5Legacy),
    ("Euml;", "\u{cb}", Html5),
    ("FNOF;", "\u{191}", FtfyUpper),
    ("FORALL;", "\u{2200}", FtfyUpper),
    ("FRAC12;", "\u{bd}", FtfyUpper),
    ("FRAC14;", "\u{bc}", FtfyUpper),
    ("FRAC34;", "\u{be}", FtfyUpper),
    ("FRASL;", "\u{2044}", FtfyUpper),
    ("GAMMA;", "\u{393}", FtfyUpper),
    ("GE;", "\u{2265}", FtfyUpper),
    ("GT", "\u{3e}", Html5Legacy),
    ("GT;", "\u{3e}", Html5),
    ("Gamma;", "\u{393}", Html5),
    ("HARR;", "\u{2194}", FtfyUpper),
    ("HEARTS;", "\u{2665}", FtfyUpper),
    ("HELLIP;", "\u{2026}", FtfyUpper),
    ("IACUTE;", "\u{cd}", FtfyUpper),
    ("ICIRC;", "\u{ce}", FtfyUpper),
    ("IEXCL;", "\u{a1}", FtfyUpper),
    ("IGRAVE;", "\u{cc}", FtfyUpper),
    ("IMAGE;", "\u{2111}", FtfyUpper),
    ("INFIN;", "\u{221e}", FtfyUpper),
    ("INT;", "\u{222b}", FtfyUpper),
    ("IOTA;", "\u{399}", FtfyUpper),
    ("IQUEST;", "\u{bf}", FtfyUpper),
    ("ISIN;", "\u{2208}", FtfyUpper),
    ("IUML;", "\u{cf}", FtfyUpper),
    ("Iacute", "\u{cd}", Html5Legacy),
    ("Iacute;", "\u{cd}", Html5),
    ("Icirc", "\u{ce}", Html5Legacy),
    ("Icirc;", "\u{ce}", Html5),
    ("Igrave", "\u{cc}", Html5Legacy),
    ("Igrave;", "\u{cc}", Html5),
    ("Iota;", "\u{399}", Html5),
    ("Iuml", "\u{cf}", Html5Legacy),
    ("Iuml;", "\u{cf}", Html5),
    ("KAPPA;", "\u{39a}", FtfyUpper),
    ("Kappa;", "\u{39a}", Html5),
    ("LAMBDA;", "\u{39b}", FtfyUpper),
    ("LANG;", "\u{27e8}", FtfyUpper),
    ("LAQUO;", "\u{ab}", FtfyUpper),
    ("LARR;", "\u{2190}", FtfyUpper),
    ("LCEIL;", "\u{2308}", FtfyUpper),
    ("LDQUO;", "\u{201c}", FtfyUpper),
    ("LE;", "\u{2264}", FtfyUpper),
    ("LFLOOR;", "\u{230a}", FtfyUpper),
    ("LOWAST;", "\u{2217}", FtfyUpper),
    ("LOZ;", "\u{25ca}", FtfyUpper),
    ("LRM;", "\u{200e}", FtfyUpper),
    ("LSAQUO;", "\u{2039}", FtfyUpper),
    ("LSQUO;", "\u{2018}", FtfyUpper),
    ("LT", "\u{3c}", Html5Legacy),
    ("LT;", "\u{3c}", Html5),
    ("Lambda;", "\u{39b}", Html5),
    ("MACR;", "\u{af}", FtfyUpper),
    ("MDASH;", "\u{2014}", FtfyUpper),
    ("MICRO;", "\u{39c}", FtfyUpper),
    ("MIDDOT;", "\u{b7}", FtfyUpper),
    ("MINUS;", "\u{2212}", FtfyUpper),
    ("MU;", "\u{39c}", FtfyUpper),
    ("Mu;", "\u{39c}", Html5),
    ("NABLA;", "\u{2207}", FtfyUpper),
    ("NBSP;", "\u{a0}", FtfyUpper),
    ("NDASH;", "\u{2013}", FtfyUpper),
    ("NE;", "\u{2260}", FtfyUpper),
    ("NI;", "\u{220b}", FtfyUpper),
    ("NOT;", "\u{ac}", FtfyUpper),
    ("NOTIN;", "\u{2209}", FtfyUpper),
    ("NSUB;", "\u{2284}", FtfyUpper),
    ("NTILDE;", "\u{d1}", FtfyUpper),
    ("NU;", "\u{39d}", FtfyUpper),
    ("Ntilde", "\u{d1}", Html5Legacy),
    ("Ntilde;", "\u{d1}", Html5),
    ("Nu;", "\u{39d}", Html5),
    ("OACUTE;", "\u{d3}", FtfyUpper),
    ("OCIRC;", "\u{d4}", FtfyUpper),
    ("OELIG;", "\u{152}", FtfyUpper),
    ("OElig;", "\u{152}", Html5),
    ("OGRAVE;", "\u{d2}", FtfyUpper),
    ("OLINE;", "\u{203e}", FtfyUpper),
    ("OMEGA;", "\u{3a9}", FtfyUpper),
    ("OMICRON;", "\u{39f}", FtfyUpper),
    ("OPLUS;", "\u{2295}", FtfyUpper),
    ("OR;", "\u{2228}", FtfyUpper),
    ("ORDF;", "\u{aa}", FtfyUpper),
    ("ORDM;", "\u{ba}", FtfyUpper),
    ("OSLASH;", "\u{d8}", FtfyUpper),
    ("OTILDE;", "\u{d5}", FtfyUpper),
    ("OTIMES;", "\u{2297}", FtfyUpper),
    ("OUML;", "\u{d6}", FtfyUpper),
    ("Oacute", "\u{d3}", Html5Legacy),
    ("Oacute;", "\u{d3}", Html5),
    ("Ocirc", "\u{d4}", Html5Legacy),
    ("Ocirc;", "\u{d4}", Html5),
    ("Ograve", "\u{d2}", Html5Legacy),
    ("Ograve;", "\u{d2}", Html5),
    ("Omega;", "\u{3a9}", Html5),
    ("Omicron;", "\u{39f}", Html5),
    ("Oslash", "\u{d8}", Html5Legacy),
    ("Oslash;", "\u{d8}", Html5),
    ("Otilde", "\u{d5}", Html5Legacy),
    ("Otilde;", "\u{d5}", Html5),
    ("Ouml", "\u{d6}", Html5Legacy),
    ("Ouml;", "\u{d6}", Html5),
    ("PARA;", "\u{b6}", FtfyUpper),
    ("PART;", "\u{2202}", FtfyUpper),
    ("PERMIL;", "\u{2030}", FtfyUpper),
    ("PERP;", "\u{22a5}", FtfyUpper),
    ("PHI;", "\u{3a6}", FtfyUpper),
    ("PI;", "\u{3a0}", FtfyUpper),
    ("PIV;", "\u{3a0}", FtfyUpper),
    ("PLUSMN;", "\u{b1}", FtfyUpper),
    ("POUND;", "\u{a3}", FtfyUpper),
    ("PRIME;", "\u{2032}", FtfyUpper),
    ("PROD;", "\u{220f}", FtfyUpper),
    ("PROP;", "\u{221d}", FtfyUpper),
    ("PSI;", "\u{3a8}", FtfyUpper),
    ("Phi;", "\u{3a6}", Html5),
    ("Pi;", "\u{3a0}", Html5),
    ("Prime;", "\u{2033}", Html5),
    ("Psi;", "\u{3a8}", Html5),
    ("QUOT", "\u{22}", Html5Legacy),
    ("QUOT;", "\u{22}", Html5),
    ("RADIC;", "\u{221a}", FtfyUpper),
    ("RANG;", "\u{27e9}", FtfyUpper),
    ("RAQUO;", "\u{bb}", FtfyUpper),
    ("RARR;", "\u{2192}", FtfyUpper),
    ("RCEIL;", "\u{2309}", FtfyUpper),
    ("RDQUO;", "\u{201d}", FtfyUpper),
    ("REAL;", "\u{211c}", FtfyUpper),
    ("REG", "\u{ae}", Html5Legacy),
    ("REG;", "\u{ae}", Html5),
    ("RFLOOR;", "\u{230b}", FtfyUpper),
    ("RHO;", "\u{3a1}", FtfyUpper),
    ("RLM;", "\u{200f}", FtfyUpper),
    ("RSAQUO;", "\u{203a}", FtfyUpper),
    ("RSQUO;", "\u{2019}", FtfyUpper),
    ("Rho;", "\u{3a1}", Html5),
    ("SBQUO;", "\u{201a}", FtfyUpper),
    ("SCARON;", "\u{160}", FtfyUpper),
    ("SDOT;", "\u{22c5}", FtfyUpper),
    ("SECT;", "\u{a7}", FtfyUpper),
    ("SHY;", "\u{ad}", FtfyUpper),
    ("SIGMA;", "\u{3a3}", FtfyUpper),
    ("SIGMAF;", "\u{3a3}", FtfyUpper),
    ("SIM;", "\u{223c}", FtfyUpper),
    ("SPADES;", "\u{2660}", FtfyUpper),
    ("SUB;", "\u{2282}", FtfyUpper),
    ("SUBE;", "\u{2286}", FtfyUpper),
    ("SUM;", "\u{2211}", FtfyUpper),
    ("SUP1;", "\u{b9}", FtfyUpper),
    ("SUP2;", "\u{b2}", FtfyUpper),
    ("SUP3;", "\u{b3}", FtfyUpper),
    ("SUP;", "\u{2283}", FtfyUpper),
    ("SUPE;", "\u{2287}", FtfyUpper),
    ("SZLIG;", "SS", FtfyUpper),
    ("Scaron;", "\u{160}", Html5),
    ("Sigma;", "\u{3a3}", Html5),
    ("TAU;", "\u{3a4}", FtfyUpper),
    ("THERE4;", "\u{2234}", FtfyUpper),
    ("THETA;", "\u{398}", FtfyUpper),
    ("THETASYM;", "\u{398}", FtfyUpper),
    ("THINSP;", "\u{2009}", FtfyUpper),
    ("THORN", "\u{de}", Html5Legacy),
    ("THORN;", "\u{de}", Html5),
    ("TILDE;", "\u{2dc}", FtfyUpper),
    ("TIMES;", "\u{d7}", FtfyUpper),
    ("Tau;", "\u{3a4}", Html5),
    ("Theta;", "\u{398}", Html5),
    ("UACUTE;", "\u{da}", FtfyUpper),
    ("UARR;", "\u{2191}", FtfyUpper),
    ("UCIRC;", "\u{db}", FtfyUpper),
    ("UGRAVE;", "\u{d9}", FtfyUpper),
    ("UML;", "\u{a8}", FtfyUpper),
    ("UPSIH;", "\u{3d2}", FtfyUpper),
    ("UPSILON;", "\u{3a5}", FtfyUpper),
    ("UUML;", "\u{dc}", FtfyUpper),
    ("Uacute", "\u{da}", Html5Legacy),
    ("Uacute;", "\u{da}", Html5),
    ("Ucirc", "\u{db}", Html5Legacy),
    ("Ucirc;", "\u{db}", Html5),
    ("Ugrave", "\u{d9}", Html5Legacy),
    ("Ugrave;", "\u{d9}", Html5),
    ("Upsilon;", "\u{3a5}", Html5),
    ("Uuml", "\u{dc}", Html5Legacy),
    ("Uuml;", "\u{dc}", Html5),
    ("WEIERP;", "\u{2118}", FtfyUpper),
    ("XI;", "\u{39e}", FtfyUpper),
    ("Xi;", "\u{39e}", Html5),
    ("YACUTE;", "\u{dd}", FtfyUpper),
    ("YEN;", "\u{a5}", FtfyUpper),
    ("YUML;", "\u{178}", FtfyUpper),
    ("Yacute", "\u{dd}", Html5Legacy),
    ("Yacute;", "\u{dd}", Html5),
    ("Yuml;", "\u{178}", Html5),
    ("ZETA;", "\u{396}", FtfyUpper),
    ("ZWJ;", "\u{200d}", FtfyUpper),
    ("ZWNJ;", "\u{200c}", FtfyUpper),
    ("Zeta;", "\u{396}", Html5),
    ("aacute", "\u{e1}", Html5Legacy),
    ("aacute;", "\u{e1}", Html5),
    ("acirc", "\u{e2}", Html5Legacy),
    ("acirc;", "\u{e2}", Html5),
    ("acute", "\u{b4}", Html5Legacy),
    ("acute;", "\u{b4}", Html5),
    ("aelig", "\u{e6}", Html5Legacy),
    ("aelig;", "\u{e6}", Html5),
    ("agrave", "\u{e0}", Html5Legacy),
    ("agrave;", "\u{e0}", Html5),
    ("alefsym;", "\u{2135}", Html5),
    ("alpha;", "\u{3b1}", Html5),
    ("amp", "\u{26}", Html5Legacy),
    ("amp;", "\u{26}", Html5),
    ("and;", "\u{2227}", Html5),
    ("ang;", "\u{2220}", Html5),
    ("apos;", "\u{27}", Html5),
    ("aring", "\u{e5}", Html5Legacy),
    ("aring;", "\u{e5}", Html5),
    ("asymp;", "\u{2248}", Html5),
    ("atilde", "\u{e3}", Html5Legacy),
    ("atilde;", "\u{e3}", Html5),
    ("auml", "\u{e4}", Html5Legacy),
    ("auml;", "\u{e4}", Html5),
    ("bdquo;", "\u{201e}", Html5),
    ("beta;", "\u{3b2}", Html5),
    ("brvbar", "\u{a6}", Html5Legacy),
    ("brvbar;", "\u{a6}", Html5),
    ("bull;", "\u{2022}", Html5),
    ("cap;", "\u{2229}", Html5),
    ("ccedil", "\u{e7}", Html5Legacy),
    ("ccedil;", "\u{e7}", Html5),
    ("cedil", "\u{b8}", Html5Legacy),
    ("cedil;", "\u{b8}", Html5),
    ("cent", "\u{a2}", Html5Legacy),
    ("cent;", "\u{a2}", Html5),
    ("chi;", "\u{3c7}", Html5),
    ("circ;", "\u{2c6}", Html5),
    ("clubs;", "\u{2663}", Html5),
    ("cong;", "\u{2245}", Html5),
    ("copy", "\u{a9}", Html5Legacy),
    ("copy;", "\u{a9}", Html5),
    ("crarr;", "\u{21b5}", Html5),
    ("cup;", "\u{222a}", Html5),
    ("curren", "\u{a4}", Html5Legacy),
    ("curren;", "\u{a4}", Html5),
    ("dArr;", "\u{21d3}", Html5),
    ("dagger;", "\u{2020}", Html5),
    ("darr;", "\u{2193}", Html5),
    ("deg", "\u{b0}", Html5Legacy),
    ("deg;", "\u{b0}", Html5),
    ("delta;", "\u{3b4}", Html5),
    ("diams;", "\u{2666}", Html5),
    ("divide", "\u{f7}", Html5Legacy),
    ("divide;", "\u{f7}", Html5),
    ("eacute", "\u{e9}", Html5Legacy),
    ("eacute;", "\u{e9}", Html5),
    ("ecirc", "\u{ea}", Html5Legacy),
    ("ecirc;", "\u{ea}", Html5),
    ("egrave", "\u{e8}", Html5Legacy),
    ("egrave;", "\u{e8}", Html5),
    ("empty;", "\u{2205}", Html5),
    ("emsp;", "\u{2003}", Html5),
    ("ensp;", "\u{2002}", Html5),
    ("epsilon;", "\u{3b5}", Html5),
    ("equiv;", "\u{2261}", Html5),
    ("eta;", "\u{3b7}", Html5),
    ("eth", "\u{f0}", Html5Legacy),
    ("eth;", "\u{f0}", Html5),
    ("euml", "\u{eb}", Html5Legacy),
    ("euml;", "\u{eb}", Html5),
    ("euro;", "\u{20ac}", Html5),
    ("exist;", "\u{2203}", Html5),
    ("fnof;", "\u{192}", Html5),
    ("forall;", "\u{2200}", Html5),
    ("frac12", "\u{bd}", Html5Legacy),
    ("frac12;", "\u{bd}", Html5),
    ("frac14", "\u{bc}", Html5Legacy),
    ("frac14;", "\u{bc}", Html5),
    ("frac34", "\u{be}", Html5Legacy),
    ("frac34;", "\u{be}", Html5),
    ("frasl;", "\u{2044}", Html5),
    ("gamma;", "\u{3b3}", Html5),
    ("ge;", "\u{2265}", Html5),
    ("gt", "\u{3e}", Html5Legacy),
    ("gt;", "\u{3e}", Html5),
    ("hArr;", "\u{21d4}", Html5),
    ("harr;", "\u{2194}", Html5),
    ("hearts;", "\u{2665}", Html5),
    ("hellip;", "\u{2026}", Html5),
    ("iacute", "\u{ed}", Html5Legacy),
    ("iacute;", "\u{ed}", Html5),
    ("icirc", "\u{ee}", Html5Legacy),
    ("icirc;", "\u{ee}", Html5),
    ("iexcl", "\u{a1}", Html5Legacy),
    ("iexcl;", "\u{a1}", Html5),
    ("igrave", "\u{ec}", Html5Legacy),
    ("igrave;", "\u{ec}", Html5),
    ("image;", "\u{2111}", Html5),
    ("infin;", "\u{221e}", Html5),
    ("int;", "\u{222b}", Html5),
    ("iota;", "\u{3b9}", Html5),
    ("iquest", "\u{bf}", Html5Legacy),
    ("iquest;", "\u{bf}", Html5),
    ("isin;", "\u{2208}", Html5),
    ("iuml", "\u{ef}", Html5Legacy),
    ("iuml;", "\u{ef}", Html5),
    ("kappa;", "\u{3ba}", Html5),
    ("lArr;", "\u{21d0}", Html5),
    ("lambda;", "\u{3bb}", Html5),
    ("lang;", "\u{27e8}", Html5),
    ("laquo", "\u{ab}", Html5Legacy),
    ("laquo;", "\u{ab}", Html5),
    ("larr;", "\u{2190}", Html5),
    ("lceil;", "\u{2308}", Html5),
    ("ldquo;", "\u{201c}", Html5),
    ("le;", "\u{2264}", Html5),
    ("lfloor;", "\u{230a}", Html5),
    ("lowast;", "\u{2217}", Html5),
    ("loz;", "\u{25ca}", Html5),
    ("lrm;", "\u{200e}", Html5),
    ("lsaquo;", "\u{2039}", Html5),
    ("lsquo;", "\u{2018}", Html5),
    ("lt", "\u{3c}", Html5Legacy),
    ("lt;", "\u{3c}", Html5),
    ("macr", "\u{af}", Html5Legacy),
    ("macr;", "\u{af}", Html5),
    ("mdash;", "\u{2014}", Html5),
    ("micro", "\u{b5}", Html5Legacy),
    ("micro;", "\u{b5}", Html5),
    ("middot", "\u{b7}", Html5Legacy),
    ("middot;", "\u{b7}", Html5),
    ("minus;", "\u{2212}", Html5),
    ("mu;", "\u{3bc}", Html5),
    ("nabla;", "\u{2207}", Html5),
    ("nbsp", "\u{a0}", Html5Legacy),
    ("nbsp;", "\u{a0}", Html5),
    ("ndash;", "\u{2013}", Html5),
    ("ne;", "\u{2260}", Html5),
    ("ni;", "\u{220b}", Html5),
    ("not", "\u{ac}", Html5Legacy),
    ("not;", "\u{ac}", Html5),
    ("notin;", "\u{2209}", Html5),
    ("nsub;", "\u{2284}", Html5),
    ("ntilde", "\u{f1}", Html5Legacy),
    ("ntilde;", "\u{f1}", Html5),
    ("nu;", "\u{3bd}", Html5),
    ("oacute", "\u{f3}", Html5Legacy),
    ("oacute;", "\u{f3}", Html5),
    ("ocirc", "\u{f4}", Html5Legacy),
    ("ocirc;", "\u{f4}", Html5),
    ("oelig;", "\u{153}", Html5),
    ("ograve", "\u{f2}", Html5Legacy),
    ("ograve;", "\u{f2}", Html5),
    ("oline;", "\u{203e}", Html5),
    ("omega;", "\u{3c9}", Html5),
    ("omicron;", "\u{3bf}", Html5),
    ("oplus;", "\u{2295}", Html5),
    ("or;", "\u{2228}", Html5),
    ("ordf", "\u{aa}", Html5Legacy),
    ("ordf;", "\u{aa}", Html5),
    ("ordm", "\u{ba}", Html5Legacy),
    ("ordm;", "\u{ba}", Html5),
    ("oslash", "\u{f8}", Html5Legacy),
    ("oslash;", "\u{f8}", Html5),
    ("otilde", "\u{f5}", Html5Legacy),
    ("otilde;", "\u{f5}", Html5),
    ("otimes;", "\u{2297}", Html5),
    ("ouml", "\u{f6}", Html5Legacy),
    ("ouml;", "\u{f6}", Html5),
    ("para", "\u{b6}", Html5Legacy),
    ("para;", "\u{b6}", Html5),
    ("part;", "\u{2202}", Html5),
    ("permil;", "\u{2030}", Html5),
    ("perp;", "\u{22a5}", Html5),
    ("phi;", "\u{3c6}", Html5),
    ("pi;", "\u{3c0}", Html5),
    ("piv;", "\u{3d6}", Html5),
    ("plusmn", "\u{b1}", Html5Legacy),
    ("plusmn;", "\u{b1}", Html5),
    ("pound", "\u{a3}", Html5Legacy),
    ("pound;", "\u{a3}", Html5),
    ("prime;", "\u{2032}", Html5),
    ("prod;", "\u{220f}", Html5),
    ("prop;", "\u{221d}", Html5),
    ("psi;", "\u{3c8}", Html5),
    ("quot", "\u{22}", Html5Legacy),
    ("quot;", "\u{22}", Html5),
    ("rArr;", "\u{21d2}", Html5),
    ("radic;", "\u{221a}", Html5),
    ("rang;", "\u{27e9}", Html5),
    ("raquo", "\u{bb}", Html5Legacy),
    ("raquo;", "\u{bb}", Html5),
    ("rarr;", "\u{2192}", Html5),
    ("rceil;", "\u{2309}", Html5),
    ("rdquo;", "\u{201d}", Html5),
    ("real;", "\u{211c}", Html5),
    ("reg", "\u{ae}", Html5Legacy),
    ("reg;", "\u{ae}", Html5),
    ("rfloor;", "\u{230b}", Html5),
    ("rho;", "\u{3c1}", Html5),
    ("rlm;", "\u{200f}", Html5),
    ("rsaquo;", "\u{203a}", Html5),
    ("rsquo;", "\u{2019}", Html5),
    ("sbquo;", "\u{201a}", Html5),
    ("scaron;", "\u{161}", Html5),
    ("sdot;", "\u{22c5}", Html5),
    ("sect", "\u{a7}", Html5Legacy),
    ("sect;", "\u{a7}", Html5),
    ("shy", "\u{ad}", Html5Legacy),
    ("shy;", "\u{ad}", Html5),
    ("sigma;", "\u{3c3}", Html5),
    ("sigmaf;", "\u{3c2}", Html5),
    ("sim;", "\u{223c}", Html5),
    ("spades;", "\u{2660}", Html5),
    ("sub;", "\u{2282}", Html5),
    ("sube;", "\u{2286}", Html5),
    ("sum;", "\u{2211}", Html5),
    ("sup1", "\u{b9}", Html5Legacy),
    ("sup1;", "\u{b9}", Html5),
    ("sup2", "\u{b2}", Html5Legacy),
    ("sup2;", "\u{b2}", Html5),
    ("sup3", "\u{b3}", Html5Legacy),
    ("sup3;", "\u{b3}", Html5),
    ("sup;", "\u{2283}", Html5),
    ("supe;", "\u{2287}", Html5),
    ("szlig", "\u{df}", Html5Legacy),
    ("szlig;", "\u{df}", Html5),
    ("tau;", "\u{3c4}", Html5),
    ("there4;", "\u{2234}", Html5),
    ("theta;", "\u{3b8}", Html5),
    ("thetasym;", "\u{3d1}", Html5),
    ("thinsp;", "\u{2009}", Html5),
    ("thorn", "\u{fe}", Html5Legacy),
    ("thorn;", "\u{fe}", Html5),
    ("tilde;", "\u{2dc}", Html5),
    ("times", "\u{d7}", Html5Legacy),
    ("times;", "\u{d7}", Html5),
    ("trade;", "\u{2122}", Html5),
    ("uArr;", "\u{21d1}", Html5),
    ("uacute", "\u{fa}", Html5Legacy),
    ("uacute;", "\u{fa}", Html5),
    ("uarr;", "\u{2191}", Html5),
    ("ucirc", "\u{fb}", Html5Legacy),
    ("ucirc;", "\u{fb}", Html5),
    ("ugrave", "\u{f9}", Html5Legacy),
    ("ugrave;", "\u{f9}", Html5),
    ("uml", "\u{a8}", Html5Legacy),
    ("uml;", "\u{a8}", Html5),
    ("upsih;", "\u{3d2}", Html5),
    ("upsilon;", "\u{3c5}", Html5),
    ("uuml", "\u{fc}", Html5Legacy),
    ("uuml;", "\u{fc}", Html5),
    ("weierp;", "\u{2118}", Html5),
    ("xi;", "\u{3be}", Html5),
    ("yacute", "\u{fd}", Html5Legacy),
    ("yacute;", "\u{fd}", Html5),
    ("yen", "\u{a5}", Html5Legacy),
    ("yen;", "\u{a5}", Html5),
    ("yuml", "\u{ff}", Html5Legacy),
    ("yuml;", "\u{ff}", Html5),
    ("zeta;", "\u{3b6}", Html5),
    ("zwj;", "\u{200d}", Html5),
    ("zwnj;", "\u{200c}", Html5),
];
