//! Sigma values and modifiers compiled into matchers.
//!
//! A field's values with their modifiers (`Image|endswith`, `CommandLine|contains|all`,
//! `Payload|base64offset|contains`, `DestinationIp|cidr`, …) become one [`FieldTest`]: a list
//! of [`Matcher`]s, any (or, with `all`, every) of which must hold. String matching is ASCII
//! case-insensitive unless `cased` is given; `*` and `?` are wildcards unless escaped with `\`.
//! This module only compiles values; reading event fields is [`super::eval`]'s business.

use std::{net::IpAddr, sync::OnceLock};

use regex::{Regex, RegexBuilder};

use super::glob::{self, Segment};
use super::literals::{Literals, contains_at_once};
use super::modifiers::{Modifiers, parse_modifiers, transformed};

/// Index of an interned field name.
pub(crate) type FieldId = u32;

/// Where a test reads its value from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// One named field.
    Field(FieldId),
    /// Any field of the event (Sigma keywords).
    Any,
}

/// The values of one field with their modifiers.
#[derive(Debug)]
pub(crate) struct FieldTest {
    pub(crate) target: Target,
    pub(crate) matchers: Vec<Matcher>,
    /// `all`: every matcher must hold instead of any.
    pub(crate) all: bool,
}

impl FieldTest {
    /// Relative cost of the test: that of its dearest matcher.
    pub(crate) fn cost(&self) -> u8 {
        self.matchers.iter().map(Matcher::cost).max().unwrap_or(0)
    }
}

/// How a compiled string pattern is placed in the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StrPat {
    Exact(String),
    Contains(String),
    Starts(String),
    Ends(String),
    /// Literal text and `?` holes between `*` wildcards; the first segment is anchored at the
    /// start, the last at the end.
    Glob(Vec<Segment>),
}

impl StrPat {
    /// True when `value` (already lowered when the pattern is) matches.
    pub(crate) fn matches(&self, value: &str) -> bool {
        match self {
            StrPat::Exact(p) => value == p,
            StrPat::Contains(p) => value.contains(p.as_str()),
            StrPat::Starts(p) => value.starts_with(p.as_str()),
            StrPat::Ends(p) => value.ends_with(p.as_str()),
            StrPat::Glob(segments) => glob::matches(segments, value),
        }
    }

    /// The longest literal the value must contain, for the prefilter.
    pub(crate) fn needle(&self) -> &str {
        match self {
            StrPat::Exact(p) | StrPat::Contains(p) | StrPat::Starts(p) | StrPat::Ends(p) => p,
            StrPat::Glob(segments) => segments
                .iter()
                .map(Segment::longest)
                .max_by_key(|l| l.len())
                .unwrap_or(""),
        }
    }
}

/// Numeric comparison of the `gt`/`gte`/`lt`/`lte` modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
}

/// One compiled value.
#[derive(Debug)]
pub(crate) enum Matcher {
    /// A string pattern over the lowered value (or the value itself when `cased`).
    Str { pat: StrPat, cased: bool },
    /// The lowered value contains one of several literals (a field's list of `contains`
    /// values), searched for all at once.
    Contains(Literals),
    /// A regular expression over the value as is.
    Regex(LazyRegex),
    /// The value is an address inside the network.
    Cidr { net: IpAddr, bits: u8 },
    /// The value is a number comparing so with the operand.
    Num(Cmp, f64),
    /// The field is present (`true`) or absent (`false`).
    Exists(bool),
    /// The field is absent or empty (`Field: null`).
    Null,
    /// The value relates so to another field's value.
    FieldRef { other: FieldId, place: Place },
}

/// A regular expression checked when its rule is compiled and built again, to be kept, the
/// first time a value is tested against it. A rule set holds hundreds of them, and an event
/// stream reaches few: none at all when it holds no Windows records.
#[derive(Debug)]
pub(crate) struct LazyRegex {
    src: Box<str>,
    built: OnceLock<Option<Regex>>,
}

/// Capacity of each expression's lazy DFA cache. At the crate's default (2 MB), a bounded
/// repetition of a Unicode class (SigmaHQ's `-k\s\w{1,64}`) does not fit, and every match runs
/// the far slower PikeVM: 2.4 µs against 30 ns for a svchost command line. The cache grows only
/// as far as an expression needs.
const DFA_CACHE_BYTES: usize = 4 << 20;

/// Builds `src` as every Sigma regular expression is built.
fn build_regex(src: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(src).dfa_size_limit(DFA_CACHE_BYTES).build()
}

impl LazyRegex {
    /// Compiles `src` to check it, and keeps only the source.
    pub(crate) fn new(src: String) -> Result<Self, regex::Error> {
        build_regex(&src)?;
        Ok(Self {
            src: src.into(),
            built: OnceLock::new(),
        })
    }

    /// The source.
    pub(crate) fn as_str(&self) -> &str {
        &self.src
    }

    /// Whether `value` matches (building the expression on the first call). The source was
    /// compiled once already, and compiling is deterministic: it builds again.
    pub(crate) fn is_match(&self, value: &str) -> bool {
        self.built
            .get_or_init(|| build_regex(&self.src).ok())
            .as_ref()
            .is_some_and(|re| re.is_match(value))
    }

    /// Whether the expression was built to be kept.
    #[cfg(test)]
    pub(crate) fn is_built(&self) -> bool {
        self.built.get().is_some()
    }
}

/// Placement of a field reference's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    Exact,
    Contains,
    Starts,
    Ends,
}

impl Matcher {
    /// Relative cost of checking one value: string tests before parsing, regexes last.
    fn cost(&self) -> u8 {
        match self {
            Matcher::Exists(_) | Matcher::Null => 0,
            Matcher::Str { .. } | Matcher::Contains(_) | Matcher::FieldRef { .. } => 1,
            Matcher::Cidr { .. } | Matcher::Num(..) => 2,
            Matcher::Regex(_) => 3,
        }
    }

    /// Literals one of which a matching value must contain, lowered, when there are such.
    pub(crate) fn needles(&self) -> Option<Vec<String>> {
        match self {
            Matcher::Str { pat, .. } => Some(pat.needle())
                .filter(|n| !n.is_empty())
                .map(|n| vec![n.to_ascii_lowercase()]),
            Matcher::Contains(literals) => Some(literals.list().to_vec()),
            Matcher::Regex(re) => regex_needles(re.as_str()),
            _ => None,
        }
    }
}

/// A YAML scalar of a detection, as text; `None` for `null`.
pub(crate) fn scalar_text(v: &serde_yaml::Value) -> Result<Option<String>, String> {
    match v {
        serde_yaml::Value::Null => Ok(None),
        serde_yaml::Value::Bool(b) => Ok(Some(b.to_string())),
        serde_yaml::Value::Number(n) => Ok(Some(n.to_string())),
        serde_yaml::Value::String(s) => Ok(Some(s.clone())),
        serde_yaml::Value::Sequence(_) => Err("a nested list is not a value".into()),
        serde_yaml::Value::Mapping(_) => Err("a mapping is not a value".into()),
        serde_yaml::Value::Tagged(t) => scalar_text(&t.value),
    }
}

/// Compiles `field|mod|mod: values`; `intern` gives field ids (for the field and fieldrefs).
pub(crate) fn compile_field(
    key: &str,
    values: &serde_yaml::Value,
    intern: &mut dyn FnMut(&str) -> FieldId,
) -> Result<FieldTest, String> {
    let mut parts = key.split('|');
    let field = parts.next().unwrap_or_default().trim();
    let names: Vec<&str> = parts.collect();
    let m = parse_modifiers(&names)?;
    let target = if field.is_empty() {
        Target::Any
    } else {
        Target::Field(intern(field))
    };
    let list: Vec<Option<String>> = match values {
        serde_yaml::Value::Sequence(items) => items.iter().map(scalar_text).collect::<Result<_, _>>()?,
        other => vec![scalar_text(other)?],
    };
    if list.is_empty() {
        return Err(format!("field `{key}` has an empty list of values"));
    }
    let mut matchers = Vec::new();
    for value in list {
        compile_value(&m, value, &mut matchers, intern).map_err(|e| format!("field `{key}`: {e}"))?;
    }
    if !m.all {
        matchers = contains_at_once(matchers);
    }
    // Any or every of them must hold, in whatever order: cheap ones first.
    matchers.sort_by_key(Matcher::cost);
    Ok(FieldTest {
        target,
        matchers,
        all: m.all,
    })
}

fn compile_value(
    m: &Modifiers,
    value: Option<String>,
    out: &mut Vec<Matcher>,
    intern: &mut dyn FnMut(&str) -> FieldId,
) -> Result<(), String> {
    let Some(value) = value else {
        out.push(Matcher::Null);
        return Ok(());
    };
    if m.expand {
        return Err(format!("placeholder `{value}` (expand) has no configured value"));
    }
    if m.exists {
        let yes = match value.to_ascii_lowercase().as_str() {
            "true" | "yes" => true,
            "false" | "no" => false,
            _ => return Err(format!("exists wants true or false, got `{value}`")),
        };
        out.push(Matcher::Exists(yes));
        return Ok(());
    }
    if m.fieldref {
        out.push(Matcher::FieldRef {
            other: intern(value.trim()),
            place: m.place.unwrap_or(Place::Exact),
        });
        return Ok(());
    }
    if let Some(flags) = &m.regex {
        let mut prefix = String::new();
        if !flags.is_empty() {
            prefix = format!("(?{flags})");
        }
        let re =
            LazyRegex::new(format!("{prefix}{value}")).map_err(|e| format!("regex `{value}`: {}", one_line(&e)))?;
        out.push(Matcher::Regex(re));
        return Ok(());
    }
    if m.cidr {
        let (net, bits) = parse_cidr(&value)?;
        out.push(Matcher::Cidr { net, bits });
        return Ok(());
    }
    if let Some(cmp) = m.cmp {
        let n: f64 = value.trim().parse().map_err(|_| format!("`{value}` is not a number"))?;
        out.push(Matcher::Num(cmp, n));
        return Ok(());
    }
    let variants = transformed(m, &value)?;
    let encoded = m.base64 || m.base64offset;
    for v in variants {
        let pat = if encoded {
            literal_pattern(&v, m.place.unwrap_or(Place::Exact))
        } else {
            wildcard_pattern(&v, m.place.unwrap_or(Place::Exact))
        };
        let pat = if m.cased { pat } else { lower_pat(pat) };
        out.push(Matcher::Str { pat, cased: m.cased });
    }
    Ok(())
}

/// Literals one of which a match of regular expression `src` must contain, lowered: the most
/// selective of its prefixes, its suffixes, and each run of literal characters every match
/// holds (`ecure.exe` in `(?i)\.exe\s+[^"]{0,64}werfaultsecure\.exe`, where the prefixes are
/// only `.exe`). `None` when there is no such set.
fn regex_needles(src: &str) -> Option<Vec<String>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let hir = regex_syntax::parse(src).ok()?;
    let set = |kind| {
        let seq = Extractor::new().kind(kind).extract(&hir);
        let mut out: Vec<String> = Vec::new();
        for lit in seq.literals()? {
            let text = std::str::from_utf8(lit.as_bytes()).ok()?.to_ascii_lowercase();
            if text.is_empty() {
                return None;
            }
            if !out.contains(&text) {
                out.push(text);
            }
        }
        (!out.is_empty()).then_some(out)
    };
    let mut sets: Vec<Vec<String>> = [ExtractKind::Prefix, ExtractKind::Suffix]
        .into_iter()
        .filter_map(set)
        .collect();
    sets.extend(required_runs(&hir).into_iter().map(|run| vec![run]));
    sets.into_iter().max_by_key(|s| selectivity(s.iter().map(String::len)))
}

/// How selective a set of needles (one of which must occur) is, from their lengths, as a key
/// to maximize: the longest shortest needle (up to 16 bytes, past which length hardly
/// matters), then the fewest needles.
pub(crate) fn selectivity(lengths: impl ExactSizeIterator<Item = usize>) -> (usize, usize) {
    let count = lengths.len();
    (lengths.min().unwrap_or(0).min(16), usize::MAX - count)
}

/// The runs of literal characters, lowered, that every match of `hir` holds in order: the
/// literals of its top-level concatenation, and characters matched in either ASCII case (a
/// class of exactly `c` and `C`). Any other item ends a run.
fn required_runs(hir: &regex_syntax::hir::Hir) -> Vec<String> {
    use regex_syntax::hir::{Class, HirKind};
    let mut node = hir;
    while let HirKind::Capture(c) = node.kind() {
        node = &c.sub;
    }
    let items = match node.kind() {
        HirKind::Concat(items) => items.as_slice(),
        _ => std::slice::from_ref(node),
    };
    let mut runs = Vec::new();
    let mut run = String::new();
    for item in items {
        let piece = match item.kind() {
            HirKind::Literal(lit) => std::str::from_utf8(&lit.0).ok().map(str::to_ascii_lowercase),
            HirKind::Class(Class::Unicode(class)) => match class.ranges() {
                [a, b] if a.start() == a.end() && b.start() == b.end() => {
                    let (a, b) = (a.start(), b.start());
                    (a.is_ascii_alphabetic() && a.eq_ignore_ascii_case(&b)).then(|| a.to_ascii_lowercase().to_string())
                }
                _ => None,
            },
            _ => None,
        };
        match piece {
            Some(p) => run.push_str(&p),
            None => runs.push(std::mem::take(&mut run)),
        }
    }
    runs.push(run);
    runs.retain(|r| !r.is_empty());
    runs
}

fn one_line(e: &regex::Error) -> String {
    e.to_string().lines().last().unwrap_or_default().trim().to_owned()
}

fn lower_pat(p: StrPat) -> StrPat {
    match p {
        StrPat::Exact(s) => StrPat::Exact(s.to_ascii_lowercase()),
        StrPat::Contains(s) => StrPat::Contains(s.to_ascii_lowercase()),
        StrPat::Starts(s) => StrPat::Starts(s.to_ascii_lowercase()),
        StrPat::Ends(s) => StrPat::Ends(s.to_ascii_lowercase()),
        StrPat::Glob(segments) => StrPat::Glob(segments.into_iter().map(Segment::lowered).collect()),
    }
}

fn literal_pattern(value: &str, place: Place) -> StrPat {
    let v = value.to_owned();
    match place {
        Place::Exact => StrPat::Exact(v),
        Place::Contains => StrPat::Contains(v),
        Place::Starts => StrPat::Starts(v),
        Place::Ends => StrPat::Ends(v),
    }
}

/// One token of a Sigma string: a literal character or a wildcard.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tok {
    Char(char),
    Star,
    One,
}

/// Splits a Sigma string into literal characters and wildcards. A backslash escapes `*`, `?`
/// and `\`; before anything else it is a literal backslash (Windows paths).
fn tokens(value: &str) -> Vec<Tok> {
    let mut out = Vec::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&n @ ('*' | '?' | '\\')) => {
                    chars.next();
                    out.push(Tok::Char(n));
                }
                _ => out.push(Tok::Char('\\')),
            },
            '*' => out.push(Tok::Star),
            '?' => out.push(Tok::One),
            c => out.push(Tok::Char(c)),
        }
    }
    out
}

fn wildcard_pattern(value: &str, place: Place) -> StrPat {
    let mut toks = tokens(value);
    if matches!(place, Place::Contains | Place::Ends) {
        toks.insert(0, Tok::Star);
    }
    if matches!(place, Place::Contains | Place::Starts) {
        toks.push(Tok::Star);
    }
    let mut segments = Vec::new();
    let mut current = Segment::default();
    for t in toks {
        match t {
            Tok::Char(c) => current.push_char(c),
            Tok::One => current.push_hole(),
            // `**` is one `*`.
            Tok::Star if !segments.is_empty() && current == Segment::default() => {}
            Tok::Star => segments.push(std::mem::take(&mut current)),
        }
    }
    segments.push(current);
    let literals: Option<Vec<&str>> = segments.iter().map(Segment::literal).collect();
    match literals.as_deref() {
        Some([one]) => StrPat::Exact((*one).to_owned()),
        Some(["", b]) if !b.is_empty() => StrPat::Ends((*b).to_owned()),
        Some([a, ""]) if !a.is_empty() => StrPat::Starts((*a).to_owned()),
        Some(["", b, ""]) if !b.is_empty() => StrPat::Contains((*b).to_owned()),
        _ => StrPat::Glob(segments),
    }
}

fn parse_cidr(text: &str) -> Result<(IpAddr, u8), String> {
    let (addr, bits) = text.trim().split_once('/').unwrap_or((text.trim(), ""));
    let net: IpAddr = addr.parse().map_err(|_| format!("`{text}` is not a network"))?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    let bits = if bits.is_empty() {
        max
    } else {
        bits.parse::<u8>()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(|| format!("`{text}` has a bad prefix length"))?
    };
    Ok((net, bits))
}

/// True when `ip` lies in `net/bits`.
pub(crate) fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
#[path = "value_tests.rs"]
mod tests;
