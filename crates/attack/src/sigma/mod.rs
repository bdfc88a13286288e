//! Sigma rules as an attribution source for Windows events (EVTX, Sysmon, PowerShell logs).
//!
//! - [`source`]: rule files — the SigmaHQ Windows rules embedded in the binary, and a user's
//!   own under `<rules_dir>/sigma/`.
//! - [`compile`]: rule files → [`Compiled`] (knowledge-base independent; the embedded set is
//!   compiled once per process), with every refused rule listed with its reason.
//! - `logsource`: routing by `logsource` to event log channels and event ids.
//! - `value`, `condition`: detection values with their modifiers, and conditions.
//! - `prefilter`: needle automata per field and candidate rules per route.
//! - `eval`: matching one event.
//!
//! A [`SigmaSet`] binds compiled sets to a knowledge base: each rule's `attack.tXXXX` tags are
//! resolved like any detector tag (revoked → replacement; unknown or deprecated ids dropped).
//! Events are read through their attributes (the field names Sigma rules use, as the Windows
//! parsers of `attackmesh::formats` write them); an event whose attributes were cut to the
//! contract's limits, or that arrived with only its `original` document, is re-read from it.

pub mod compile;
mod condition;
mod eval;
mod glob;
mod literals;
mod logsource;
mod modifiers;
mod prefilter;
pub mod source;
mod value;
mod windows;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, OnceLock};

use attackmesh::held::EventView;
use attackmesh::proto::DetectionEvent;

pub use compile::{Compiled, SigmaPackInfo};
pub use source::{SIGMA_SUBDIR, SigmaFile, SigmaPack};

use crate::error::Error;
use crate::kb::{Kb, TechIdx};
use crate::lookup::equal_lowered;
use eval::{WinEvent, with_scratch};

/// A rule's `level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// `informational`.
    Informational,
    /// `low`.
    Low,
    /// `medium`.
    Medium,
    /// `high`.
    High,
    /// `critical`.
    Critical,
    /// Missing or not one of the above.
    Unknown,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 6] = [
        Level::Informational,
        Level::Low,
        Level::Medium,
        Level::High,
        Level::Critical,
        Level::Unknown,
    ];

    fn parse(s: &str) -> Level {
        match s.to_ascii_lowercase().as_str() {
            "informational" => Level::Informational,
            "low" => Level::Low,
            "medium" => Level::Medium,
            "high" => Level::High,
            "critical" => Level::Critical,
            _ => Level::Unknown,
        }
    }

    /// The level as Sigma spells it (`unknown` for a missing one).
    pub fn name(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
            Level::Unknown => "unknown",
        }
    }
}

/// The confidence a matching rule supports its techniques with: its level, discounted for
/// rules SigmaHQ has not yet marked `stable`.
pub fn confidence(level: Level, status: &str) -> f64 {
    let base = match level {
        Level::Critical => 0.9,
        Level::High => 0.75,
        Level::Medium => 0.6,
        Level::Low => 0.4,
        Level::Informational => 0.2,
        Level::Unknown => 0.5,
    };
    let factor = match status {
        "stable" => 1.0,
        "test" => 0.9,
        "experimental" => 0.8,
        _ => 0.7,
    };
    base * factor
}

/// A rule that could not be compiled, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigmaRejected {
    /// Pack the file belongs to.
    pub pack: String,
    /// Rule file (with `#n` for the n-th document of a multi-document file).
    pub path: String,
    /// Rule id, when the document has one.
    pub id: String,
    /// Rule title, when the document has one.
    pub title: String,
    /// Why it was refused.
    pub reason: String,
}

/// A rule that matched an event.
#[derive(Debug, Clone, Copy)]
pub struct SigmaHit<'a> {
    /// Rule id.
    pub id: &'a str,
    /// Rule title.
    pub title: &'a str,
    /// Rule level.
    pub level: Level,
    /// Confidence from level and status.
    pub confidence: f64,
    /// Pack name.
    pub pack: &'a str,
    /// Rule file.
    pub path: &'a str,
}

/// One bound rule: its techniques in the knowledge base and its confidence.
#[derive(Debug, Clone, Default)]
struct Binding {
    techniques: Vec<TechIdx>,
    confidence: f64,
    suppressed: bool,
}

/// Compiled Sigma sets bound to a knowledge base.
#[derive(Debug, Clone, Default)]
pub struct SigmaSet {
    sets: Vec<Arc<Compiled>>,
    bindings: Vec<Vec<Binding>>,
    version: String,
}

static EMBEDDED: OnceLock<Arc<Compiled>> = OnceLock::new();

impl SigmaSet {
    /// The embedded SigmaHQ rules, compiled on first use and shared by the whole process.
    pub fn embedded_compiled() -> Result<Arc<Compiled>, Error> {
        if let Some(c) = EMBEDDED.get() {
            return Ok(c.clone());
        }
        let compiled = Arc::new(Compiled::compile(&SigmaPack::embedded()?));
        Ok(EMBEDDED.get_or_init(|| compiled).clone())
    }

    /// Binds `sets` to `kb`. A rule of a later set replaces the rule with the same id in an
    /// earlier one (a user's rule over SigmaHQ's).
    pub fn bind(kb: &Kb, sets: Vec<Arc<Compiled>>) -> SigmaSet {
        let mut bindings: Vec<Vec<Binding>> = Vec::with_capacity(sets.len());
        for (n, set) in sets.iter().enumerate() {
            let later: HashSet<&str> = sets[n + 1..]
                .iter()
                .flat_map(|s| s.rules.iter().map(|r| r.id.as_str()))
                .filter(|id| !id.is_empty())
                .collect();
            bindings.push(
                set.rules
                    .iter()
                    .map(|r| Binding {
                        techniques: techniques(kb, &r.tags),
                        confidence: confidence(r.level, &r.status),
                        suppressed: later.contains(r.id.as_str()),
                    })
                    .collect(),
            );
        }
        let mut versions: Vec<String> = sets
            .iter()
            .flat_map(|s| s.packs.iter().map(|p| format!("{}@{}", p.name, p.version)))
            .collect();
        versions.sort();
        SigmaSet {
            sets,
            bindings,
            version: versions.join(","),
        }
    }

    /// `name@version` of every pack, sorted and joined with `,`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Number of rules in force.
    pub fn len(&self) -> usize {
        self.bindings.iter().flatten().filter(|b| !b.suppressed).count()
    }

    /// True when no rule is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Figures of every pack.
    pub fn packs(&self) -> Vec<SigmaPackInfo> {
        self.sets.iter().flat_map(|s| s.packs.iter().cloned()).collect()
    }

    /// Every refused rule with its reason.
    pub fn rejected(&self) -> impl Iterator<Item = &SigmaRejected> {
        self.sets.iter().flat_map(|s| s.rejected.iter())
    }

    /// Rules in force per log source (`product/category/service`), sorted by name.
    pub fn by_logsource(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (set, bindings) in self.sets.iter().zip(&self.bindings) {
            for (rule, b) in set.rules.iter().zip(bindings) {
                if !b.suppressed {
                    *out.entry(rule.logsource.key()).or_insert(0) += 1;
                }
            }
        }
        out
    }

    /// Rules in force without any technique of the knowledge base (they match, but attribute
    /// nothing).
    pub fn without_technique(&self) -> usize {
        self.bindings
            .iter()
            .flatten()
            .filter(|b| !b.suppressed && b.techniques.is_empty())
            .count()
    }

    /// The techniques of the rules in force (knowledge-base indexes, with repeats).
    pub(crate) fn technique_indexes(&self) -> impl Iterator<Item = TechIdx> + '_ {
        self.bindings
            .iter()
            .flatten()
            .filter(|b| !b.suppressed)
            .flat_map(|b| b.techniques.iter().copied())
    }

    /// Calls `f` for every rule matching `ev` with the rule and its techniques.
    pub fn for_each_match(&self, view: &impl EventView<DetectionEvent>, mut f: impl FnMut(SigmaHit<'_>, &[TechIdx])) {
        if self.sets.is_empty() {
            return;
        }
        let ev = view.event();
        let windows = is_windows_record(ev);
        let routable = || view.attribute("Channel").is_some() && view.attribute("EventID").is_some();
        if !windows && !routable() {
            // Not a Windows event (or one without its routing fields): no rule can route to it.
            return;
        }
        // One pass over the attributes: the fields, the routing ones, and whether any was cut.
        // The routing fields are read as the rules' tests read them: the first of the name in
        // any case (a rule is routed by the `EventID` it tests).
        let (mut channel, mut event_id, mut cut) = (None, None, false);
        let mut fields: Vec<(&str, &str)> = Vec::with_capacity(view.attribute_count());
        for (k, v) in view.attributes() {
            if equal_lowered(b"channel", k.as_bytes()) {
                channel = channel.or(Some(v));
            } else if equal_lowered(b"eventid", k.as_bytes()) {
                event_id = event_id.or(Some(v));
            } else if k == attackmesh::formats::ATTRIBUTES_DROPPED {
                cut = true;
            }
            cut |= v.len() + 4 > attackmesh::limits::MAX_ATTRIBUTE_VALUE_BYTES;
            fields.push((k, v));
        }
        // The attributes do not carry the Windows fields in full (a detector sent only
        // `original`, or a value was cut to the attribute limit): read them from `original`.
        let reread;
        if windows && (event_id.is_none() || cut) {
            reread = attackmesh::formats::windows_fields(&ev.original_format, &ev.original);
            let Some(pairs) = &reread else { return };
            fields = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let get = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| *v)
            };
            (channel, event_id) = (get("Channel"), get("EventID"));
        }
        let (Some(channel), Some(event_id)) = (channel, event_id.and_then(|v| v.trim().parse().ok())) else {
            return;
        };
        let mut matched = Vec::new();
        for (set, bindings) in self.sets.iter().zip(&self.bindings) {
            matched.clear();
            with_scratch(|s| {
                let ev = WinEvent {
                    channel,
                    event_id,
                    fields: fields.iter().copied(),
                };
                set.matches(ev, s, &mut matched);
            });
            for &r in &matched {
                let (rule, b) = (&set.rules[r as usize], &bindings[r as usize]);
                if b.suppressed {
                    continue;
                }
                let hit = SigmaHit {
                    id: &rule.id,
                    title: &rule.title,
                    level: rule.level,
                    confidence: b.confidence,
                    pack: &set.packs[rule.pack].name,
                    path: &rule.path,
                };
                f(hit, &b.techniques);
            }
        }
    }
}

/// True when the event is a Windows record that keeps its `original` document.
fn is_windows_record(ev: &DetectionEvent) -> bool {
    matches!(ev.original_format.as_str(), "evtx" | "evtx-json" | "winlogbeat") && !ev.original.is_empty()
}

/// The active techniques named by `attack.tXXXX` tags.
fn techniques(kb: &Kb, tags: &[String]) -> Vec<TechIdx> {
    let mut out = Vec::new();
    for tag in tags {
        let lower = tag.trim().to_ascii_lowercase();
        let Some(id) = lower.strip_prefix("attack.") else {
            continue;
        };
        let id = id.to_ascii_uppercase();
        if !attackmesh::validate::is_technique_id(&id) {
            continue;
        }
        if let Some((t, _)) = kb.resolve_idx(&id)
            && !out.contains(&t)
        {
            out.push(t);
        }
    }
    out
}

/// Helpers of this module's tests.
#[cfg(test)]
pub(crate) mod testing {
    /// A deterministic stream of numbers (a linear congruential generator).
    pub(crate) struct Lcg(pub(crate) u64);

    impl Lcg {
        pub(crate) fn next(&mut self, below: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) % below as u64) as usize
        }

        /// Hex digits, `min` and up to `spread - 1` more.
        pub(crate) fn hex(&mut self, min: usize, spread: usize) -> String {
            let len = min + self.next(spread);
            (0..len).map(|_| b"0123456789abcdef"[self.next(16)] as char).collect()
        }
    }
}
