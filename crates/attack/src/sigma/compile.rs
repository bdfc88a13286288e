//! Compiling Sigma rule files into a [`Compiled`] set: parse each document, route it by log
//! source, compile its detection and condition, and build the literal prefilter.
//!
//! A rule that cannot be compiled is recorded with its reason (see
//! [`SigmaSet::rejected`](super::SigmaSet::rejected)); it never fails the set. The prefilter: a
//! rule whose condition cannot hold unless one of a few literals occurs in a named field keeps
//! them as its *needles* (up to three such groups, when it needs literals in several fields),
//! and is evaluated only when the automata of its route (see the `prefilter` module) find one of
//! each group; rules with no such literals are always evaluated. A rule is routed by its log
//! source, narrowed to the event ids its own condition requires.

use serde::Deserialize as _;
use serde_yaml::Value;

use super::condition::{self, Expr};
use super::logsource::{LogSource, Route};
use super::prefilter::Candidates;
use super::value::{FieldId, FieldTest, Matcher, StrPat, Target, compile_field, selectivity};
use super::{Level, SigmaPack, SigmaRejected};
use crate::lookup::LookupMap;

/// Shortest literal worth a place in the prefilter: three bytes, or two of a non-ASCII
/// character (a Cyrillic or typographic look-alike is as rare in a command line as three ASCII
/// letters are).
fn worth_a_needle(n: &str) -> bool {
    n.len() >= 3 || (n.len() == 2 && !n.is_ascii())
}

/// One search identifier of a detection.
#[derive(Debug)]
pub(crate) enum Search {
    /// Every test holds (a mapping).
    All(Vec<FieldTest>),
    /// Any of the mappings holds (a list of mappings).
    Any(Vec<Vec<FieldTest>>),
}

/// A compiled rule.
#[derive(Debug)]
pub(crate) struct SigmaRule {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) level: Level,
    pub(crate) status: String,
    pub(crate) path: String,
    pub(crate) pack: usize,
    pub(crate) logsource: LogSource,
    pub(crate) tags: Vec<String>,
    pub(crate) searches: Vec<Search>,
    pub(crate) condition: Expr,
    /// Groups of literals one of each of which must occur, each in its field, for the rule to
    /// match: it is evaluated only when the prefilter sees one of every group. `None`: always
    /// evaluated.
    pub(crate) needles: Option<NeedleGroups>,
    /// The prefilter's bit for each group after the first (the first's is the rule's index).
    pub(crate) more_slots: Box<[u32]>,
}

/// The rules of one channel, each set already holding the rules of every channel
/// (`Compiled::any_channel`), so an event's candidates are one lookup.
#[derive(Debug, Default)]
pub(crate) struct ChannelRoutes {
    /// Rules for an event of the channel whose event id has no rules of its own.
    pub(crate) any: Candidates,
    /// Rules for an event of the channel by event id: the channel's for any event id too.
    pub(crate) by_event_id: LookupMap<u32, Candidates>,
}

/// Per-pack figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SigmaPackInfo {
    /// Pack name.
    pub name: String,
    /// Pack version.
    pub version: String,
    /// Where it came from.
    pub source: String,
    /// Rules compiled.
    pub loaded: usize,
    /// Rules refused (listed by [`SigmaSet::rejected`](super::SigmaSet::rejected)).
    pub rejected: usize,
}

/// Compiled rules of some packs, independent of any knowledge base.
#[derive(Debug)]
pub struct Compiled {
    pub(crate) rules: Vec<SigmaRule>,
    pub(crate) packs: Vec<SigmaPackInfo>,
    pub(crate) rejected: Vec<SigmaRejected>,
    /// Interned field names, lowercased.
    pub(crate) fields: LookupMap<Box<str>, FieldId>,
    /// Rules by channel (lowercase).
    pub(crate) channels: LookupMap<Box<str>, ChannelRoutes>,
    /// Rules for an event of a channel no rule names.
    pub(crate) any_channel: Candidates,
    /// Bits the prefilter sets per event: one per rule, and one per needle group of a rule
    /// after its first.
    pub(crate) slots: usize,
}

impl Compiled {
    /// Compiles `packs`; later packs' rules replace earlier rules with the same id.
    pub fn compile(packs: &[SigmaPack]) -> Compiled {
        let mut c = Compiled {
            rules: Vec::new(),
            packs: Vec::new(),
            rejected: Vec::new(),
            fields: LookupMap::default(),
            channels: LookupMap::default(),
            any_channel: Candidates::default(),
            slots: 0,
        };
        let mut routes: Vec<Option<Vec<Placement>>> = Vec::new();
        for (pack_idx, pack) in packs.iter().enumerate() {
            let mut info = SigmaPackInfo {
                name: pack.name.clone(),
                version: pack.version.clone(),
                source: pack.source.clone(),
                ..Default::default()
            };
            for file in &pack.files {
                for (n, doc) in serde_yaml::Deserializer::from_str(&file.text).enumerate() {
                    let parsed =
                        Value::deserialize(doc).map_err(|e| (String::new(), String::new(), format!("YAML: {e}")));
                    let path = if n == 0 {
                        file.path.clone()
                    } else {
                        format!("{}#{}", file.path, n + 1)
                    };
                    let result = parsed.and_then(|v| c.rule(&v, pack_idx, &path));
                    match result {
                        Ok((rule, r)) => {
                            if let Some(old) = c.rules.iter().position(|x| x.id == rule.id && !x.id.is_empty()) {
                                // Same id again: the later rule wins (a user's rule over SigmaHQ's).
                                c.rules[old] = rule;
                                routes[old] = r;
                            } else {
                                c.rules.push(rule);
                                routes.push(r);
                            }
                            info.loaded += 1;
                        }
                        Err((id, title, reason)) => {
                            info.rejected += 1;
                            c.rejected.push(SigmaRejected {
                                pack: pack.name.clone(),
                                path,
                                id,
                                title,
                                reason,
                            });
                        }
                    }
                }
            }
            c.packs.push(info);
        }
        c.index(routes);
        c
    }

    fn index(&mut self, routes: Vec<Option<Vec<Placement>>>) {
        let mut next = self.rules.len() as u32;
        for rule in &mut self.rules {
            let more = rule.needles.as_ref().map_or(0, |groups| groups.len() as u32 - 1);
            rule.more_slots = (next..next + more).collect();
            next += more;
        }
        self.slots = next as usize;
        let mut any_channel: Vec<u32> = Vec::new();
        // Per channel: rules for any event id, and rules by event id.
        type Lists = (Vec<u32>, LookupMap<u32, Vec<u32>>);
        let mut channels: LookupMap<Box<str>, Lists> = LookupMap::default();
        for (i, r) in routes.into_iter().enumerate() {
            let i = i as u32;
            match r {
                None => any_channel.push(i),
                Some(routes) => {
                    for (channel, event_ids) in routes {
                        let (any, by_event_id) = channels.entry(channel.into()).or_default();
                        match event_ids {
                            None => any.push(i),
                            Some(ids) => ids
                                .into_iter()
                                .for_each(|id| by_event_id.entry(id).or_default().push(i)),
                        }
                    }
                }
            }
        }
        // Each event's candidates ready-made: the channel's rules for any event id and the
        // rules of every channel joined into each set.
        let rules = &self.rules;
        let candidates = |list: &[u32], more: &[&[u32]]| {
            let mut all = list.to_vec();
            more.iter().for_each(|m| all.extend_from_slice(m));
            Candidates::new(all, rules)
        };
        for (channel, (any, by_event_id)) in channels {
            let routes = ChannelRoutes {
                any: candidates(&any, &[&any_channel]),
                by_event_id: by_event_id
                    .iter()
                    .map(|(id, list)| (*id, candidates(list, &[&any, &any_channel])))
                    .collect(),
            };
            self.channels.insert(channel, routes);
        }
        self.any_channel = candidates(&any_channel, &[]);
    }

    fn intern(&mut self, name: &str) -> FieldId {
        let key = name.to_ascii_lowercase();
        let next = self.fields.len() as FieldId;
        *self.fields.entry(key.into_boxed_str()).or_insert(next)
    }

    /// Compiles one rule document; the error names the rule and says why.
    #[allow(clippy::type_complexity)]
    fn rule(
        &mut self,
        doc: &Value,
        pack: usize,
        path: &str,
    ) -> Result<(SigmaRule, Option<Vec<Placement>>), (String, String, String)> {
        let text = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or_default().trim().to_owned();
        let (id, title) = (text("id"), text("title"));
        let fail = |reason: String| (id.clone(), title.clone(), reason);
        if doc.get("action").is_some() {
            return Err(fail("rule collections (`action:`) are not supported".into()));
        }
        if doc.get("correlation").is_some() {
            return Err(fail(
                "correlation rules need state across events; not a per-event rule".into(),
            ));
        }
        let detection = doc
            .get("detection")
            .and_then(Value::as_mapping)
            .ok_or_else(|| fail("no `detection` mapping".into()))?;
        let logsource = LogSource::from_yaml(doc.get("logsource"));
        let routes = logsource.routes().map_err(fail)?;
        let mut names = Vec::new();
        let mut searches = Vec::new();
        let mut cond_text = Vec::new();
        for (k, v) in detection {
            let name = k.as_str().unwrap_or_default();
            if name == "condition" {
                match v {
                    Value::String(s) => cond_text.push(s.clone()),
                    Value::Sequence(list) => cond_text.extend(list.iter().filter_map(Value::as_str).map(str::to_owned)),
                    _ => return Err(fail("`condition` must be a string or a list of strings".into())),
                }
                continue;
            }
            if name == "timeframe" {
                return Err(fail("`timeframe` needs state across events".into()));
            }
            let search = self.search(v).map_err(|e| fail(format!("search `{name}`: {e}")))?;
            names.push(name.to_owned());
            searches.push(search);
        }
        if cond_text.is_empty() {
            return Err(fail("no `condition`".into()));
        }
        let mut conds = Vec::new();
        for c in &cond_text {
            conds.push(condition::parse(c, &names).map_err(&fail)?);
        }
        let condition = if conds.len() == 1 {
            conds.remove(0)
        } else {
            Expr::Or(conds)
        };
        let tags = doc
            .get("tags")
            .and_then(Value::as_sequence)
            .map(|t| t.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        let mut rule = SigmaRule {
            id: id.clone(),
            title: title.clone(),
            level: Level::parse(&text("level")),
            status: text("status").to_ascii_lowercase(),
            path: path.to_owned(),
            pack,
            logsource,
            tags,
            searches,
            condition,
            needles: None,
            more_slots: Box::default(),
        };
        rule.needles = rule_needles(&rule);
        let event_ids = self
            .fields
            .get("eventid")
            .and_then(|&f| expr_event_ids(&rule.condition, &rule.searches, f));
        Ok((rule, place(routes, event_ids)))
    }

    fn search(&mut self, v: &Value) -> Result<Search, String> {
        match v {
            Value::Mapping(m) => Ok(Search::All(self.mapping(m)?)),
            Value::Sequence(items) if items.iter().all(Value::is_mapping) && !items.is_empty() => {
                let mut alts = Vec::new();
                for item in items {
                    if let Value::Mapping(m) = item {
                        alts.push(self.mapping(m)?);
                    }
                }
                Ok(Search::Any(alts))
            }
            Value::Sequence(items) if items.iter().any(Value::is_mapping) => {
                Err("mixes mappings and keywords in one list".into())
            }
            other => {
                let mut intern = |n: &str| self.intern(n);
                Ok(Search::All(vec![compile_field("|contains", other, &mut intern)?]))
            }
        }
    }

    fn mapping(&mut self, m: &serde_yaml::Mapping) -> Result<Vec<FieldTest>, String> {
        if m.is_empty() {
            return Err("empty mapping".into());
        }
        let mut tests = Vec::with_capacity(m.len());
        for (k, v) in m {
            let key = k.as_str().ok_or("a field name must be a string")?;
            let mut intern = |n: &str| self.intern(n);
            tests.push(compile_field(key, v, &mut intern)?);
        }
        // Every test must hold, in whatever order: cheap ones first.
        tests.sort_by_key(FieldTest::cost);
        Ok(tests)
    }
}

impl SigmaRule {
    /// Every test of the rule.
    fn tests(&self) -> impl Iterator<Item = &FieldTest> {
        self.searches.iter().flat_map(|s| match s {
            Search::All(tests) => std::slice::from_ref(tests).iter().flatten(),
            Search::Any(alts) => alts.iter().flatten(),
        })
    }

    /// True when a search of the rule reads every field (Sigma keywords).
    pub(crate) fn keywords(&self) -> bool {
        self.tests().any(|t| t.target == Target::Any)
    }

    /// Calls `f` with every field the rule reads: those it tests and those it compares them to.
    pub(crate) fn for_each_field(&self, mut f: impl FnMut(FieldId)) {
        for t in self.tests() {
            if let Target::Field(id) = t.target {
                f(id);
            }
            for m in &t.matchers {
                if let Matcher::FieldRef { other, .. } = m {
                    f(*other);
                }
            }
        }
    }
}

/// Where a rule is evaluated: a channel (lowercase) and its event ids (`None`: every event of
/// the channel).
type Placement = (&'static str, Option<Vec<u32>>);

/// The log source's routes narrowed to the event ids the rule's own condition requires: a
/// `service: sysmon` rule testing `EventID: 27` is evaluated for Sysmon event 27 only, and a
/// route none of whose event ids the condition allows is left out.
fn place(routes: Option<Vec<Route>>, required: Option<Vec<u32>>) -> Option<Vec<Placement>> {
    let routes = routes?.into_iter().filter_map(|route| {
        let ids = match (&required, route.event_ids) {
            (None, []) => None,
            (None, ids) => Some(ids.to_vec()),
            (Some(required), []) => Some(required.clone()),
            (Some(required), ids) => Some(ids.iter().copied().filter(|id| required.contains(id)).collect()),
        };
        let placed = ids.as_ref().is_none_or(|ids| !ids.is_empty());
        placed.then_some((route.channel, ids))
    });
    Some(routes.collect())
}

/// Event ids one of which the event must have (in field `event_id`) for the condition to hold;
/// `None` when it can hold whatever the id. Only plain `EventID: n` values count (a number as
/// the router reads it back): a value the router could parse differently never narrows.
fn expr_event_ids(e: &Expr, searches: &[Search], event_id: FieldId) -> Option<Vec<u32>> {
    let tests = |tests: &[FieldTest]| intersect(tests.iter().map(|t| test_event_ids(t, event_id)));
    match e {
        Expr::Search(i) => match searches.get(*i)? {
            Search::All(all) => tests(all),
            Search::Any(alts) => union(alts.iter().map(|all| tests(all))),
        },
        Expr::Not(_) => None,
        Expr::And(items) => intersect(items.iter().map(|x| expr_event_ids(x, searches, event_id))),
        Expr::Or(items) => union(items.iter().map(|x| expr_event_ids(x, searches, event_id))),
    }
}

fn test_event_ids(t: &FieldTest, event_id: FieldId) -> Option<Vec<u32>> {
    if t.target != Target::Field(event_id) {
        return None;
    }
    let mut ids = Vec::with_capacity(t.matchers.len());
    for m in &t.matchers {
        let Matcher::Str {
            pat: StrPat::Exact(p), ..
        } = m
        else {
            return None;
        };
        // Only the digits of a number as it prints: "027" or "+27" is no event id's text.
        let id: u32 = p.parse().ok().filter(|id: &u32| id.to_string() == *p)?;
        ids.push(id);
    }
    if t.all {
        // Every value must be the event's id.
        ids.dedup();
        ids.truncate(usize::from(ids.len() == 1));
    }
    Some(ids)
}

/// The sets every one of which holds (their intersection); `None` when none constrains.
fn intersect(sets: impl Iterator<Item = Option<Vec<u32>>>) -> Option<Vec<u32>> {
    sets.flatten()
        .reduce(|a, b| a.into_iter().filter(|id| b.contains(id)).collect())
}

/// A needle: a lowered literal and where it must occur.
pub(crate) type Needle = (Target, String);

/// Most needle groups a rule keeps: each beyond the first is one more bit an event sets.
const MAX_NEEDLE_GROUPS: usize = 3;

/// Groups of needles every one of which must be seen for a rule to match: one needle of each
/// group, each in its field.
pub(crate) type NeedleGroups = Vec<Vec<Needle>>;

/// The needle groups the rule's condition requires, the most selective first; `None` when it
/// can match with none of its literals seen. A rule requiring `Image` to end in `\csi.exe`
/// and `Company` to be `Microsoft Corporation` is evaluated only when both are seen, not
/// whenever the (common) company name is.
fn rule_needles(rule: &SigmaRule) -> Option<NeedleGroups> {
    let mut groups = expr_needles(&rule.condition, &rule.searches)?;
    groups.sort_by_key(|g| std::cmp::Reverse(group_selectivity(g)));
    groups.truncate(MAX_NEEDLE_GROUPS);
    Some(groups)
}

fn expr_needles(e: &Expr, searches: &[Search]) -> Option<NeedleGroups> {
    match e {
        Expr::Search(i) => match searches.get(*i)? {
            Search::All(tests) => all(tests.iter().map(test_needles)),
            Search::Any(alts) => any(alts.iter().map(|tests| all(tests.iter().map(test_needles)))),
        },
        Expr::Not(_) => None,
        Expr::And(items) => all(items.iter().map(|x| expr_needles(x, searches))),
        Expr::Or(items) => any(items.iter().map(|x| expr_needles(x, searches))),
    }
}

fn test_needles(t: &FieldTest) -> Option<NeedleGroups> {
    // A value's needles, when it has some and each is usable.
    let needles = |m: &Matcher| {
        let set: Vec<Needle> = m.needles()?.into_iter().map(|n| (t.target, n)).collect();
        (!set.is_empty() && set.iter().all(usable)).then_some(set)
    };
    if t.all {
        // Every value must match: each one's needles are a group of their own.
        return all(t.matchers.iter().map(|m| needles(m).map(|set| vec![set])));
    }
    let mut group = Vec::new();
    for m in &t.matchers {
        group.extend(needles(m)?);
    }
    Some(vec![group])
}

/// Whether a literal can be a needle: long enough to be rare, and (searched across values)
/// without the separator of values.
fn usable((target, n): &Needle) -> bool {
    worth_a_needle(n) && !(*target == Target::Any && n.contains(super::prefilter::VALUE_SEPARATOR))
}

/// The groups of every part that has some: all of them hold when every part does.
fn all(parts: impl Iterator<Item = Option<NeedleGroups>>) -> Option<NeedleGroups> {
    let mut out: NeedleGroups = Vec::new();
    for group in parts.flatten().flatten() {
        if !out.contains(&group) {
            out.push(group);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The groups of alternatives: `(a and b) or c` requires `a or c` and `b or c`, so each group
/// is one group of every alternative joined. When that makes more than [`MAX_NEEDLE_GROUPS`]
/// groups, it is the most selective group of each, joined. `None` when an alternative has none.
fn any(mut alternatives: impl Iterator<Item = Option<NeedleGroups>>) -> Option<NeedleGroups> {
    let mut out = alternatives.next()??;
    for alternative in alternatives {
        let alternative = alternative?;
        if out.len() * alternative.len() > MAX_NEEDLE_GROUPS {
            let best = |groups: NeedleGroups| groups.into_iter().max_by_key(|g| group_selectivity(g));
            out = vec![union([best(out), best(alternative)].into_iter())?];
        } else {
            out = out
                .iter()
                .flat_map(|a| alternative.iter().map(move |b| [a, b]))
                .filter_map(|pair| union(pair.into_iter().map(|g| Some(g.clone()))))
                .collect();
        }
    }
    Some(out)
}

fn group_selectivity(group: &[Needle]) -> (usize, usize) {
    selectivity(group.iter().map(|(_, n)| n.len()))
}

/// The union of alternatives' sets; `None` when any alternative has none.
fn union<T: PartialEq>(sets: impl Iterator<Item = Option<Vec<T>>>) -> Option<Vec<T>> {
    let mut out: Vec<T> = Vec::new();
    for set in sets {
        for n in set? {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}
