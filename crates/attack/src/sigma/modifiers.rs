//! Sigma value modifiers: parsing the names written after `|`, and the encodings (`wide`,
//! `base64`, `base64offset`, `windash`) that turn one written value into the texts to look for.

use base64::Engine as _;

use super::value::{Cmp, Place};

/// Modifiers of one field, as written after `|`.
#[derive(Debug, Default)]
pub(super) struct Modifiers {
    pub(super) place: Option<Place>,
    pub(super) all: bool,
    pub(super) cased: bool,
    pub(super) regex: Option<String>,
    pub(super) cidr: bool,
    pub(super) cmp: Option<Cmp>,
    pub(super) exists: bool,
    pub(super) fieldref: bool,
    pub(super) base64: bool,
    pub(super) base64offset: bool,
    pub(super) windash: bool,
    pub(super) utf16: Option<Utf16>,
    pub(super) expand: bool,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Utf16 {
    Le,
    Be,
    Bom,
}

pub(super) fn parse_modifiers(names: &[&str]) -> Result<Modifiers, String> {
    let mut m = Modifiers::default();
    for name in names {
        match *name {
            "contains" => m.place = Some(Place::Contains),
            "startswith" => m.place = Some(Place::Starts),
            "endswith" => m.place = Some(Place::Ends),
            "all" => m.all = true,
            "cased" => m.cased = true,
            "re" => m.regex = Some(String::new()),
            "i" | "m" | "s" if m.regex.is_some() => {
                if let Some(flags) = m.regex.as_mut() {
                    flags.push_str(name);
                }
            }
            "cidr" => m.cidr = true,
            "gt" => m.cmp = Some(Cmp::Gt),
            "gte" => m.cmp = Some(Cmp::Gte),
            "lt" => m.cmp = Some(Cmp::Lt),
            "lte" => m.cmp = Some(Cmp::Lte),
            "exists" => m.exists = true,
            "fieldref" => m.fieldref = true,
            "base64" => m.base64 = true,
            "base64offset" => m.base64offset = true,
            "windash" => m.windash = true,
            "wide" | "utf16le" => m.utf16 = Some(Utf16::Le),
            "utf16be" => m.utf16 = Some(Utf16::Be),
            "utf16" => m.utf16 = Some(Utf16::Bom),
            "expand" => m.expand = true,
            other => return Err(format!("modifier `{other}` is not supported")),
        }
    }
    Ok(m)
}

/// The value after the encoding modifiers (`wide`, `base64`, `base64offset`, `windash`).
pub(super) fn transformed(m: &Modifiers, value: &str) -> Result<Vec<String>, String> {
    let mut texts = if m.windash {
        windash(value)
    } else {
        vec![value.to_owned()]
    };
    if m.utf16.is_some() && !(m.base64 || m.base64offset) {
        return Err("wide/utf16 is only supported before base64 or base64offset".into());
    }
    if m.base64 || m.base64offset {
        let mut out = Vec::new();
        for text in texts {
            let bytes = match m.utf16 {
                None => text.into_bytes(),
                Some(Utf16::Le) => text.encode_utf16().flat_map(u16::to_le_bytes).collect(),
                Some(Utf16::Be) => text.encode_utf16().flat_map(u16::to_be_bytes).collect(),
                Some(Utf16::Bom) => [0xff, 0xfe]
                    .into_iter()
                    .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
                    .collect(),
            };
            if m.base64offset {
                out.extend(base64_offsets(&bytes));
            } else {
                out.push(base64::engine::general_purpose::STANDARD.encode(&bytes));
            }
        }
        texts = out;
    }
    Ok(texts)
}

/// The three encodings of `bytes` at every offset modulo 3, trimmed to the characters that do
/// not depend on surrounding data (as the Sigma specification defines `base64offset`).
fn base64_offsets(bytes: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    const END_TRIM: [usize; 3] = [0, 3, 2];
    (0..3)
        .map(|i| {
            let mut padded = vec![b' '; i];
            padded.extend_from_slice(bytes);
            let enc = base64::engine::general_purpose::STANDARD.encode(&padded);
            let trim = END_TRIM[(bytes.len() + i) % 3];
            let end = enc.len().saturating_sub(trim);
            enc.get(START[i]..end).unwrap_or_default().to_owned()
        })
        .filter(|s| !s.is_empty())
        .collect()
}

/// Dashes Windows command lines accept in place of `-` or `/` before an option.
const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];
/// Most option positions permuted; beyond, every position takes the same dash.
const MAX_WINDASH_POSITIONS: usize = 4;

/// Every spelling of `value` with each option dash (a `-` or `/` starting a word) replaced by
/// each of [`DASHES`].
fn windash(value: &str) -> Vec<String> {
    let chars: Vec<char> = value.chars().collect();
    let word = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric() || *c == '_');
    let positions: Vec<usize> = (0..chars.len())
        .filter(|&i| {
            matches!(chars[i], '-' | '/')
                && !word(i.checked_sub(1).and_then(|p| chars.get(p)))
                && word(chars.get(i + 1))
        })
        .collect();
    if positions.is_empty() {
        return vec![value.to_owned()];
    }
    let mut out = Vec::new();
    if positions.len() > MAX_WINDASH_POSITIONS {
        for dash in DASHES {
            let mut c = chars.clone();
            for &p in &positions {
                c[p] = dash;
            }
            out.push(c.into_iter().collect());
        }
        return out;
    }
    let combos = DASHES.len().pow(positions.len() as u32);
    for mut n in 0..combos {
        let mut c = chars.clone();
        for &p in &positions {
            c[p] = DASHES[n % DASHES.len()];
            n /= DASHES.len();
        }
        out.push(c.into_iter().collect());
    }
    out
}
