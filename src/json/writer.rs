//! A JSON writer that appends straight into a caller's byte buffer: how the canonical event, the
//! ECS document and the HEC envelope are written without building a `serde_json::Value` tree or
//! going through serde first. Keys come out in the order they are written; a keyed object or
//! array opened with [`Json::obj`] or [`Json::arr`] is taken back out when nothing was written
//! into it, so a shape can leave empty values out without looking ahead. Strings are escaped as
//! `serde_json` escapes them and numbers formatted by it, so the bytes are the ones `serde_json`
//! writes for the same values. No knowledge of any shape here.

use std::net::IpAddr;

use pbjson_types::Timestamp;
use serde_json::Value;

use super::time::{Rfc3339, write_rfc3339};

/// Writes one JSON object into a buffer; [`Json::finish`] closes it.
#[derive(Debug)]
pub struct Json<'a> {
    out: &'a mut Vec<u8>,
    /// Whether the innermost open container has no member yet.
    first: bool,
    /// Open containers, innermost last.
    open: Vec<Frame>,
}

#[derive(Debug)]
struct Frame {
    /// Closing byte (`}` or `]`).
    close: u8,
    /// Where to cut the buffer back to, and the parent's `first`, when the container ends
    /// empty and is to be left out; `None` when it is written even empty.
    undo: Option<(usize, bool)>,
}

impl<'a> Json<'a> {
    /// Opens the top-level object at the end of `out`.
    pub fn object(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        let mut open = Vec::with_capacity(8);
        open.push(Frame {
            close: b'}',
            undo: None,
        });
        Self { out, first: true, open }
    }

    /// Closes every container still open.
    pub fn finish(mut self) {
        while !self.open.is_empty() {
            self.end();
        }
    }

    fn sep(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    fn key(&mut self, key: &str) {
        self.sep();
        // A key is nearly always a short literal with nothing to escape: checked whole and
        // copied whole.
        let bytes = key.as_bytes();
        if nothing_to_escape(bytes) {
            self.out.reserve(bytes.len() + 3);
            self.out.push(b'"');
            self.out.extend_from_slice(bytes);
            self.out.extend_from_slice(b"\":");
        } else {
            escaped(self.out, key);
            self.out.push(b':');
        }
    }

    fn open(&mut self, key: Option<&str>, open: u8, close: u8, omit_empty: bool) {
        let undo = omit_empty.then_some((self.out.len(), self.first));
        match key {
            Some(k) => self.key(k),
            None => self.sep(),
        }
        self.out.push(open);
        self.open.push(Frame { close, undo });
        self.first = true;
    }

    /// Opens object `key`, left out if it ends empty.
    pub fn obj(&mut self, key: &str) {
        self.open(Some(key), b'{', b'}', true);
    }

    /// Opens array `key`, left out if it ends empty.
    pub fn arr(&mut self, key: &str) {
        self.open(Some(key), b'[', b']', true);
    }

    /// Opens array `key`, written even empty.
    pub fn arr_kept(&mut self, key: &str) {
        self.open(Some(key), b'[', b']', false);
    }

    /// Opens an object as the next item of the array being written.
    pub fn item_obj(&mut self) {
        self.open(None, b'{', b'}', false);
    }

    /// Closes the innermost open object or array (taking it back out if it is empty and was
    /// opened to be left out so).
    pub fn end(&mut self) {
        let Some(frame) = self.open.pop() else { return };
        match frame.undo {
            Some((at, parent_first)) if self.first => {
                self.out.truncate(at);
                self.first = parent_first;
            }
            _ => {
                self.out.push(frame.close);
                self.first = false;
            }
        }
    }

    /// `key: value`, left out when `value` is empty.
    pub fn str(&mut self, key: &str, value: &str) {
        if !value.is_empty() {
            self.str_kept(key, value);
        }
    }

    /// `key: value`, written even when `value` is empty.
    pub fn str_kept(&mut self, key: &str, value: &str) {
        self.key(key);
        escaped(self.out, value);
    }

    /// The next item of the array being written: a string.
    pub fn item_str(&mut self, value: &str) {
        self.sep();
        escaped(self.out, value);
    }

    /// The next item of the array being written: an address in its canonical text.
    pub fn item_ip(&mut self, ip: &IpAddr) {
        self.sep();
        ip_text(self.out, ip);
    }

    /// `key: ip` in its canonical text.
    pub fn ip(&mut self, key: &str, ip: &IpAddr) {
        self.key(key);
        ip_text(self.out, ip);
    }

    /// `key: "instant"` as RFC 3339 text in `style` ([`write_rfc3339`]), left out when chrono has
    /// no such instant.
    pub fn rfc3339(&mut self, key: &str, ts: &Timestamp, style: Rfc3339) {
        let (at, first) = (self.out.len(), self.first);
        self.key(key);
        self.out.push(b'"');
        if write_rfc3339(self.out, ts, style) {
            self.out.push(b'"');
        } else {
            self.out.truncate(at);
            self.first = first;
        }
    }

    /// `key: [values…]`, left out when there are none.
    pub fn strs<'s>(&mut self, key: &str, values: impl IntoIterator<Item = &'s str>) {
        self.arr(key);
        values.into_iter().for_each(|v| self.item_str(v));
        self.end();
    }

    /// `key: [values…]` without empty strings and repeats, left out when none remain.
    pub fn unique_strs<'s, I>(&mut self, key: &str, values: I)
    where
        I: IntoIterator<Item = &'s str>,
        I::IntoIter: Clone,
    {
        let values = values.into_iter();
        self.arr(key);
        for (i, v) in values.clone().enumerate() {
            if !v.is_empty() && !values.clone().take(i).any(|seen| seen == v) {
                self.item_str(v);
            }
        }
        self.end();
    }

    /// `key: n`.
    pub fn int(&mut self, key: &str, n: i64) {
        self.key(key);
        number(self.out, &n);
    }

    /// `key: x`, left out when `x` is not finite (it has no JSON number).
    pub fn float(&mut self, key: &str, x: f64) {
        if x.is_finite() {
            self.float_kept(key, x);
        }
    }

    /// `key: x`, `null` when `x` is not finite.
    pub fn float_kept(&mut self, key: &str, x: f64) {
        self.key(key);
        number(self.out, &x);
    }

    /// `key: null`.
    pub fn null(&mut self, key: &str) {
        self.key(key);
        self.out.extend_from_slice(b"null");
    }

    /// `key: value` for a value built elsewhere; left out when it is empty (null, `""`, `[]`,
    /// `{}`).
    pub fn value(&mut self, key: &str, value: &Value) {
        let empty = match value {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        };
        if !empty {
            self.key(key);
            number(self.out, value);
        }
    }
}

/// Appends anything serde_json writes infallibly (numbers, a `Value`) as serde_json writes it:
/// integers in decimal, finite floats in their shortest round-trip form, `null` for NaN and the
/// infinities.
pub fn number<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing a number or a `Value` (string keys only) into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

fn ip_text(out: &mut Vec<u8>, ip: &IpAddr) {
    use std::io::Write as _;
    match ip {
        // Four decimal octets, written directly: through `Display` the formatting machinery
        // cost more than the rest of the address.
        IpAddr::V4(v4) => {
            out.push(b'"');
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
            out.push(b'"');
        }
        // Digits, colons, hex letters and perhaps an embedded IPv4 address, in the shortest
        // form: nothing to escape; a Vec takes every write.
        IpAddr::V6(_) => {
            let _ = write!(out, "\"{ip}\"");
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes it: `"` and `\\`, the
/// short forms of backspace, tab, newline, form feed and carriage return, `\\u00XX` for the
/// other control characters; everything else as it is. Bytes are looked at eight at a time: a
/// word with nothing to escape is skipped whole, so a run of clean words is copied in one piece;
/// in a word with something, each byte to escape is found from the word's mask, and the clean
/// bytes before it are written from the word itself (stored whole, then cut back), so the short
/// runs between dense escapes (a JSON record inside a string has a `"` every few bytes) cost a
/// fixed eight-byte store each, and finding the next escape never waits for the last one.
pub fn escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Start of the clean bytes not yet copied; `i` is where the next word starts.
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let word: [u8; 8] = match bytes.get(i..i + 8) {
            Some(word) => word.try_into().unwrap_or_default(),
            None => {
                // The last few bytes, padded with spaces (nothing to escape).
                let mut tail = [b' '; 8];
                tail[..bytes.len() - i].copy_from_slice(&bytes[i..]);
                tail
            }
        };
        let w = u64::from_le_bytes(word);
        let mut mask = escape_mask(w);
        if mask == 0 {
            i += 8;
            continue;
        }
        if start < i {
            out.extend_from_slice(&bytes[start..i]);
        }
        // The word's bytes from `from` on are not written yet.
        let mut from = 0;
        while mask != 0 {
            let at = (mask.trailing_zeros() / 8) as usize;
            let len = out.len();
            out.extend_from_slice(&(w >> (8 * from)).to_le_bytes());
            out.truncate(len + at - from);
            escape(out, word[at]);
            from = at + 1;
            mask &= mask - 1;
        }
        start = i + from;
        i += 8;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether no byte of `bytes` needs an escape, checked in at most a few words for the short
/// strings keys are: eight bytes at a time and the last eight (overlapping the word before,
/// which is harmless), four and four for four to seven bytes, byte by byte below that.
fn nothing_to_escape(bytes: &[u8]) -> bool {
    let word = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|w| w.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let half = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|w| w.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let len = bytes.len();
    if len >= 8 {
        (0..len - 8)
            .step_by(8)
            .chain([len - 8])
            .all(|at| word(at).is_some_and(|w| escape_mask(w) == 0))
    } else if len >= 4 {
        match (half(0), half(len - 4)) {
            (Some(first), Some(last)) => escape_mask(u64::from(first) | u64::from(last) << 32) == 0,
            _ => false,
        }
    } else {
        bytes.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
    }
}

/// Appends the escape of `b`, a byte [`escape_mask`] marks.
fn escape(out: &mut Vec<u8>, b: u8) {
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x09 => out.extend_from_slice(b"\\t"),
        0x0a => out.extend_from_slice(b"\\n"),
        0x0c => out.extend_from_slice(b"\\f"),
        0x0d => out.extend_from_slice(b"\\r"),
        _ => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 0xf)],
        ]),
    }
}

/// The high bit of each of the eight bytes of `word` that is a control character, `"` or `\\`,
/// and of no other byte. Each byte's test adds to its low seven bits only, so no carry reaches
/// the next byte.
fn escape_mask(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Bytes below 0x20 (the high bit of `low + 0x60` is clear exactly for low seven bits below
    // 0x20; bytes of 0x80 and up are never marked), and zero bytes of the word XORed with the
    // byte looked for.
    let control = !(((word & LOW) + ONES * 0x60) | word) & HIGH;
    let zero = |w: u64| !(((w & LOW) + LOW) | w) & HIGH;
    control | zero(word ^ (ONES * u64::from(b'"'))) | zero(word ^ (ONES * u64::from(b'\\')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_their_display_text() {
        let mut ips: Vec<IpAddr> = (0..=255u8)
            .flat_map(|o| [[o, 0, 0, 0], [0, o, 0, 0], [1, 10, o, 255], [255, 99, 100, o]])
            .map(IpAddr::from)
            .collect();
        ips.extend(
            [
                "::",
                "::1",
                "2001:db8::8a2e:370:7334",
                "::ffff:192.0.2.1",
                "fe80::1:2:3:4",
            ]
            .map(|text| text.parse::<IpAddr>().unwrap()),
        );
        for ip in ips {
            let mut out = Vec::new();
            ip_text(&mut out, &ip);
            assert_eq!(String::from_utf8(out).unwrap(), format!("\"{ip}\""), "{ip:?}");
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let every_ascii: String = (0u8..128).map(char::from).collect();
        for s in [
            every_ascii.as_str(),
            "",
            "plain",
            "é ü 漢字 \u{2028} 🦀",
            "a\"b\\c\u{7f}",
        ] {
            let mut out = Vec::new();
            escaped(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn every_byte_in_every_lane_is_escaped_as_serde_json_escapes_it() {
        for len in [7, 8, 9, 16, 17, 24] {
            for at in 0..len {
                for b in (0u8..128).chain([0xc3]) {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    if b == 0xc3 {
                        // A two-byte character (é) whose second byte may start the next word.
                        bytes.insert(at + 1, 0xa9);
                    }
                    let s = String::from_utf8(bytes).unwrap();
                    let mut out = Vec::new();
                    escaped(&mut out, &s);
                    assert_eq!(out, serde_json::to_vec(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn escapes_side_by_side_are_escaped_as_serde_json_escapes_them() {
        let set = [b'"', b'\\', b'\n', 0x01, 0x1f, b'a', 0x7f, b' '];
        for len in 2..=17 {
            for at in 0..len - 1 {
                for (x, y) in set.iter().flat_map(|x| set.iter().map(move |y| (*x, *y))) {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = x;
                    bytes[len - 1 - at / 2] = y;
                    let s = String::from_utf8(bytes).unwrap();
                    let mut out = Vec::new();
                    escaped(&mut out, &s);
                    assert_eq!(out, serde_json::to_vec(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    /// Strings mixing escapes, plain ASCII and multi-byte characters in every order, several
    /// escapes to a word and bytes of 0x80 and up beside them.
    #[test]
    fn mixed_strings_are_escaped_as_serde_json_escapes_them() {
        let pieces = [
            "\"", "\\", "\n", "\t", "\u{1}", "\u{1f}", "\u{7f}", " ", "a", "Z", "é", "漢", "🦀", "{\"k\":",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..5000 {
            let mut s = String::new();
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            for _ in 0..(seed >> 58) {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                s.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
            }
            let mut out = Vec::new();
            escaped(&mut out, &s);
            assert_eq!(out, serde_json::to_vec(&s).unwrap(), "{s:?}");
        }
    }

    /// Keys take their own path (copied whole when nothing in them needs escaping): every key
    /// comes out as serde_json writes it, whatever byte it holds, wherever.
    #[test]
    fn keys_are_written_as_serde_json_writes_them() {
        let mut keys: Vec<String> = ["", "event.kind", "é 漢字 🦀", "a\"b\\c\u{7f}"]
            .map(str::to_owned)
            .to_vec();
        // Every ASCII byte at every place of keys one to twenty bytes long.
        for len in 1..=20 {
            for at in 0..len {
                for b in 0u8..128 {
                    let mut bytes = vec![b'k'; len];
                    bytes[at] = b;
                    keys.push(String::from_utf8(bytes).unwrap());
                }
            }
        }
        for key in keys {
            let mut out = Vec::new();
            let mut j = Json::object(&mut out);
            j.str_kept(&key, "v");
            j.obj(&key);
            j.int("n", 1);
            j.end();
            j.finish();
            let expected = serde_json::json!({ key.clone(): "v" }).to_string();
            let nested = format!(
                "{},{}:{{\"n\":1}}}}",
                &expected[..expected.len() - 1],
                serde_json::to_string(&key).unwrap()
            );
            assert_eq!(String::from_utf8(out).unwrap(), nested, "{key:?}");
        }
    }

    #[test]
    fn containers_left_empty_are_taken_back_out() {
        let mut out = b"prefix ".to_vec();
        let mut j = Json::object(&mut out);
        j.str("a", "1");
        j.obj("empty");
        j.obj("nested_empty");
        j.arr("list");
        j.end();
        j.str("blank", "");
        j.end();
        j.end();
        j.obj("b");
        j.arr_kept("kept");
        j.end();
        j.float("nan", f64::NAN);
        j.float_kept("null", f64::NAN);
        j.strs("none", []);
        j.unique_strs("uniq", ["x", "", "y", "x"]);
        j.end();
        j.finish();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"prefix {"a":"1","b":{"kept":[],"null":null,"uniq":["x","y"]}}"#
        );
    }
}
