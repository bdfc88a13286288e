//! Sigma's wildcards without regular expressions: `*` stands for any run of characters and
//! `?` for exactly one. A pattern is the literal text and one-character holes between its
//! `*`s; the first segment is anchored at the value's start, the last at its end.
//!
//! Each segment matches a fixed number of characters, so its leftmost match also ends first,
//! and taking the leftmost match of each middle segment in turn finds a match whenever there
//! is one.

/// The literal text and `?` holes between two `*` wildcards (or an end of the pattern).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Each literal, after the holes just before it.
    pieces: Vec<(usize, String)>,
    /// Holes after the last literal.
    tail: usize,
    /// Characters every match has.
    chars: usize,
}

impl Segment {
    /// Appends a literal character.
    pub(crate) fn push_char(&mut self, c: char) {
        match self.pieces.last_mut() {
            Some((_, lit)) if self.tail == 0 => lit.push(c),
            _ => self.pieces.push((std::mem::take(&mut self.tail), c.to_string())),
        }
        self.chars += 1;
    }

    /// Appends a `?`.
    pub(crate) fn push_hole(&mut self) {
        self.tail += 1;
        self.chars += 1;
    }

    /// The segment's text when it has no holes.
    pub(crate) fn literal(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [] if self.tail == 0 => Some(""),
            [(0, lit)] if self.tail == 0 => Some(lit),
            _ => None,
        }
    }

    /// Its longest literal.
    pub(crate) fn longest(&self) -> &str {
        self.pieces
            .iter()
            .map(|(_, lit)| lit.as_str())
            .max_by_key(|l| l.len())
            .unwrap_or("")
    }

    /// The same segment with its literals lowered (ASCII only, as values are).
    pub(crate) fn lowered(mut self) -> Self {
        for (_, lit) in &mut self.pieces {
            lit.make_ascii_lowercase();
        }
        self
    }

    /// Bytes at the start of `s` that the segment matches.
    fn match_at(&self, s: &str) -> Option<usize> {
        match_pieces(&self.pieces, self.tail, s)
    }

    /// Where in `s` the segment's leftmost match ends.
    fn end_of_first(&self, s: &str) -> Option<usize> {
        let Some(((lead, lit), rest)) = self.pieces.split_first() else {
            return skip(s, self.tail);
        };
        // Every match has this literal `lead` characters from its start: trying its
        // occurrences in order tries the starts in order. Each occurrence found is not
        // compared again; the pieces after it are.
        let mut from = 0;
        while let Some(i) = s[from..].find(lit.as_str()) {
            let at = from + i;
            let after = at + lit.len();
            if back(&s[..at], *lead).is_some()
                && let Some(len) = match_pieces(rest, self.tail, &s[after..])
            {
                return Some(after + len);
            }
            from = at + s[at..].chars().next().map_or(1, char::len_utf8);
        }
        None
    }
}

/// Bytes at the start of `s` that `pieces` (each literal after its holes) and `tail` more
/// holes match.
fn match_pieces(pieces: &[(usize, String)], tail: usize, s: &str) -> Option<usize> {
    let mut at = 0;
    for (holes, lit) in pieces {
        at += skip(&s[at..], *holes)?;
        if !s[at..].starts_with(lit.as_str()) {
            return None;
        }
        at += lit.len();
    }
    Some(at + skip(&s[at..], tail)?)
}

/// Whether `value` matches the pattern of `segments`.
pub(crate) fn matches(segments: &[Segment], value: &str) -> bool {
    let (Some(first), Some(last)) = (segments.first(), segments.last()) else {
        return true;
    };
    let Some(mut at) = first.match_at(value) else {
        return false;
    };
    if segments.len() == 1 {
        return at == value.len();
    }
    for segment in &segments[1..segments.len() - 1] {
        match segment.end_of_first(&value[at..]) {
            Some(end) => at += end,
            None => return false,
        }
    }
    let rest = &value[at..];
    back(rest, last.chars).is_some_and(|start| last.match_at(&rest[start..]) == Some(rest.len() - start))
}

/// Bytes of the first `n` characters of `s`; `None` when it has fewer.
fn skip(s: &str, n: usize) -> Option<usize> {
    let mut chars = s.char_indices();
    for _ in 0..n {
        chars.next()?;
    }
    Some(chars.next().map_or(s.len(), |(i, _)| i))
}

/// Where the last `n` characters of `s` start; `None` when it has fewer.
fn back(s: &str, n: usize) -> Option<usize> {
    let mut chars = s.char_indices().rev();
    let mut at = s.len();
    for _ in 0..n {
        at = chars.next()?.0;
    }
    Some(at)
}
