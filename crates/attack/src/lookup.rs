//! The hash maps of compiled rules (Sigma and rule packs): keys from rule files, looked up with
//! what each event carries.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map built from rule files and only looked up with what events carry (field names, field
/// values, channels, event ids): a hostile event chooses no key of it, so a fast hasher without
/// per-process keys is safe, and an event looks up every one of its fields.
pub(crate) type LookupMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A small fixed table of names looked up in any ASCII case, without copying or lowering the
/// name looked up: one hash of its words, lowered eight bytes at a time, and one comparison.
/// Its slots and names are contiguous, so a table of a few dozen names stays in a few cache
/// lines (a Sigma route's fields, looked up with every field name of every event).
#[derive(Debug, Clone, Default)]
pub(crate) struct NameTable {
    /// `(hash, start of the name in names, name length, value)`; length `u32::MAX`: empty.
    slots: Box<[(u64, u32, u32, u32)]>,
    /// The names, lowered, back to back.
    names: Box<str>,
}

impl NameTable {
    const EMPTY: u32 = u32::MAX;

    /// The table of `entries` (name, value); a later name equal in any case to an earlier one
    /// replaces it.
    pub(crate) fn new<'a>(entries: impl IntoIterator<Item = (&'a str, u32)>) -> NameTable {
        let entries: Vec<(&str, u32)> = entries.into_iter().collect();
        let capacity = (entries.len() * 2).next_power_of_two().max(4);
        let mut slots = vec![(0, 0, Self::EMPTY, 0); capacity].into_boxed_slice();
        let mut names = String::new();
        for (name, value) in entries {
            let hash = name_hash(name);
            let mut i = hash as usize & (capacity - 1);
            loop {
                let slot = &mut slots[i];
                if slot.2 == Self::EMPTY {
                    let start = names.len() as u32;
                    names.push_str(&name.to_ascii_lowercase());
                    *slot = (hash, start, name.len() as u32, value);
                    break;
                }
                let (start, len) = (slot.1 as usize, slot.2 as usize);
                if slot.0 == hash && names[start..start + len].eq_ignore_ascii_case(name) {
                    slot.3 = value;
                    break;
                }
                i = (i + 1) & (capacity - 1);
            }
        }
        NameTable {
            slots,
            names: names.into(),
        }
    }

    /// The value of `name` in any ASCII case.
    pub(crate) fn get(&self, name: &str) -> Option<u32> {
        let mask = self.slots.len().checked_sub(1)?;
        let hash = name_hash(name);
        let mut i = hash as usize & mask;
        loop {
            let (h, start, len, value) = self.slots[i];
            if len == Self::EMPTY {
                return None;
            }
            if h == hash
                && len as usize == name.len()
                && self
                    .names
                    .as_bytes()
                    .get(start as usize..(start + len) as usize)
                    .is_some_and(|n| equal_lowered(n, name.as_bytes()))
            {
                return Some(value);
            }
            i = (i + 1) & mask;
        }
    }
}

/// Whether `name` with its ASCII letters lowered is `lowered`: compared eight bytes at a time, as
/// a byte-by-byte `eq_ignore_ascii_case` cost a field name lookup more than its hash.
pub(crate) fn equal_lowered(lowered: &[u8], name: &[u8]) -> bool {
    if lowered.len() != name.len() {
        return false;
    }
    let mut a = lowered.chunks_exact(8);
    let mut b = name.chunks_exact(8);
    for (x, y) in (&mut a).zip(&mut b) {
        if word(x) != lower_word(word(y)) {
            return false;
        }
    }
    word(a.remainder()) == lower_word(word(b.remainder()))
}

/// Up to eight bytes as a little-endian word, zero-padded (without a call to copy them: the
/// bytes of a name's last word are shifted in one by one).
pub(crate) fn word(bytes: &[u8]) -> u64 {
    match <[u8; 8]>::try_from(bytes) {
        Ok(whole) => u64::from_le_bytes(whole),
        Err(_) => bytes.iter().rev().fold(0, |w, &b| (w << 8) | u64::from(b)),
    }
}

/// The Fx hash of `name` with ASCII letters lowered.
fn name_hash(name: &str) -> u64 {
    let mut h = FxHasher::default();
    let mut chunks = name.as_bytes().chunks_exact(8);
    for c in &mut chunks {
        h.add(lower_word(word(c)));
    }
    h.add(lower_word(word(chunks.remainder())));
    h.add(name.len() as u64);
    h.0
}

/// `word` with each of its bytes that is an ASCII capital letter lowered.
fn lower_word(word: u64) -> u64 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low7 = word & !HIGH;
    // The high bit of each byte of `low7 + 0x3f` is set from 'A' (0x41) up, and of
    // `low7 + 0x25` from '[' (0x5b, after 'Z') up; no byte carries into the next.
    let from_a = low7.wrapping_add(0x3f3f_3f3f_3f3f_3f3f);
    let after_z = low7.wrapping_add(0x2525_2525_2525_2525);
    let capital = from_a & !after_z & !word & HIGH;
    word | (capital >> 2)
}

/// The Fx hash (as in rustc): one multiply and rotate per word.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_lower_as_ascii_does() {
        let samples: Vec<[u8; 8]> = vec![
            *b"AZaz@[`{",
            *b"CommandL",
            [0xc3, 0x89, b'A', 0xff, 0x7f, 0x80, b'Z', 0x00],
            [0xc1, 0xda, 0xc0, 0xdb, b'M', b'm', 0x41, 0x5a],
        ];
        for bytes in samples.into_iter().chain((0u8..=255).map(|b| [b; 8])) {
            let expected = u64::from_le_bytes(bytes.map(|b| b.to_ascii_lowercase()));
            assert_eq!(lower_word(u64::from_le_bytes(bytes)), expected, "{bytes:?}");
        }
    }

    #[test]
    fn names_are_found_in_any_ascii_case_and_nothing_else_is() {
        let names = [
            "CommandLine",
            "Image",
            "ParentImage",
            "TargetObject",
            "x",
            "Ünïcode",
            "",
        ];
        let table = NameTable::new(names.iter().enumerate().map(|(i, n)| (*n, i as u32)));
        for (i, n) in names.iter().enumerate() {
            assert_eq!(table.get(n), Some(i as u32), "{n}");
            assert_eq!(table.get(&n.to_ascii_uppercase()), Some(i as u32), "{n}");
            assert_eq!(table.get(&n.to_ascii_lowercase()), Some(i as u32), "{n}");
        }
        for other in [
            "CommandLin",
            "CommandLine ",
            "commandline\0",
            "ÜNÏCODE",
            "Images",
            "y",
            "Image\u{0}",
        ] {
            assert_eq!(table.get(other), None, "{other}");
        }
        for (lowered, name, equal) in [
            ("commandline", "CommandLine", true),
            ("commandline", "COMMANDLINE", true),
            ("commandline", "CommandLin", false),
            ("commandlin", "CommandLine", false),
            ("eventid", "EventID", true),
            ("eventid", "EventIE", false),
            ("ünïcode", "ÜNÏCODE", false),
            ("ünïcode", "üNïCODE", true),
            ("", "", true),
        ] {
            assert_eq!(
                equal_lowered(lowered.as_bytes(), name.as_bytes()),
                equal,
                "{lowered} {name}"
            );
        }
        // A later name equal in any case replaces the earlier one.
        let table = NameTable::new([("Image", 1), ("IMAGE", 2)]);
        assert_eq!(table.get("image"), Some(2));
        assert_eq!(NameTable::default().get("Image"), None);
        assert_eq!(NameTable::new([]).get("Image"), None);
    }
}
