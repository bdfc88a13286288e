//! Long needles found by their windows: the prefilter's search of a large set of long literals
//! (hash values), where an automaton steps through a deep state per byte.

use std::collections::HashMap;
use std::hash::Hasher as _;

use super::prefilter::Needles;
use crate::lookup::{FxHasher, word};

/// Bytes of the window by which a long needle is found.
pub(super) const WINDOW: usize = 8;

/// Long needles (of at least [`WINDOW`] bytes) found by one window each: eight of their bytes,
/// chosen to be shared by as few other needles as possible. A value is read a window at a
/// time: each is one load, one multiply and one bit of a small filter. The overlapping
/// automaton of hundreds of hash values stepped through a deep state per byte of a hex digest: a
/// Sysmon `Hashes` value of a process creation is scanned in a third of the time. A window that
/// passes the filter is looked up, and its needles are compared where they would start.
#[derive(Debug)]
pub(super) struct Windows {
    /// Bit per hashed window of any needle (the hash's top `filter_bits` bits).
    filter: Box<[u64]>,
    filter_bits: u32,
    /// (window, needle, where the window starts in the needle), sorted.
    entries: Box<[(u64, u32, u32)]>,
}

/// The window of `bytes` at `at`, as a word.
fn window(bytes: &[u8], at: usize) -> Option<u64> {
    bytes.get(at..at + WINDOW).map(word)
}

impl Windows {
    /// The windows of the needles of `set`, each at least [`WINDOW`] bytes long (a shorter one
    /// would never be found).
    pub(super) fn new(set: &Needles) -> Windows {
        // How many needles hold each window.
        let mut shared: HashMap<u64, u32> = HashMap::new();
        for i in 0..set.len() {
            let bytes = set.needle(i).as_bytes();
            let mut own: Vec<u64> = (0..=bytes.len() - WINDOW).filter_map(|at| window(bytes, at)).collect();
            own.sort_unstable();
            own.dedup();
            for w in own {
                *shared.entry(w).or_default() += 1;
            }
        }
        let mut entries: Vec<(u64, u32, u32)> = (0..set.len())
            .filter_map(|i| {
                let bytes = set.needle(i).as_bytes();
                (0..=bytes.len() - WINDOW)
                    .filter_map(|at| Some((window(bytes, at)?, at)))
                    .min_by_key(|(w, _)| shared.get(w).copied().unwrap_or(0))
                    .map(|(w, at)| (w, i as u32, at as u32))
            })
            .collect();
        entries.sort_unstable();
        // About sixteen bits per window: one value window in twenty passes by chance.
        let filter_bits = (entries.len() * 16)
            .next_power_of_two()
            .clamp(1 << 10, 1 << 18)
            .trailing_zeros();
        let mut filter = vec![0u64; (1 << filter_bits) / 64];
        for &(w, _, _) in &entries {
            let h = Self::hash(w, filter_bits);
            filter[h / 64] |= 1 << (h % 64);
        }
        Windows {
            filter: filter.into(),
            filter_bits,
            entries: entries.into(),
        }
    }

    /// The top `bits` bits of the Fx hash of window `w`.
    fn hash(w: u64, bits: u32) -> usize {
        let mut h = FxHasher::default();
        h.write_u64(w);
        (h.finish() >> (64 - bits)) as usize
    }

    /// Calls `hit` with every needle of `set` occurring in `text` (some more than once).
    pub(super) fn scan(&self, set: &Needles, text: &[u8], hit: &mut impl FnMut(usize)) {
        for at in 0..text.len().saturating_sub(WINDOW - 1) {
            let Some(w) = window(text, at) else { break };
            let h = Self::hash(w, self.filter_bits);
            if self.filter[h / 64] & (1 << (h % 64)) == 0 {
                continue;
            }
            let from = self.entries.partition_point(|e| e.0 < w);
            for &(_, needle, offset) in self.entries[from..].iter().take_while(|e| e.0 == w) {
                let needle_bytes = set.needle(needle as usize).as_bytes();
                if let Some(start) = at.checked_sub(offset as usize)
                    && text.get(start..).is_some_and(|t| t.starts_with(needle_bytes))
                {
                    hit(needle as usize);
                }
            }
        }
    }
}
