//! What the live ATT&CK matrix reads: one row per observed event, one per (event, technique),
//! the event's entities, and a roll-up of counts per hour and per day, kept in the same
//! transaction as the event's STIX objects by both engines.
//!
//! A question ("how often was each technique observed between `from` and `to`, by this
//! detector, at least this severe") is answered from whole days and whole hours of the roll-up
//! and from the raw rows only at the edges (`plan`), so its cost grows with the number of
//! days, techniques and detectors in the range, not with the number of events. Filters the
//! roll-up does not carry (entity, campaign) read the raw rows through their own indexes.
//!
//! Each event is counted once: the row of the event remembers its revision, a redelivery
//! changes nothing, and a re-attribution (a higher revision) takes the old techniques out of the
//! roll-up before adding the new ones. This module knows nothing of HTTP or of the page.

pub(crate) mod postgres;
pub(crate) mod sqlite;

use std::collections::BTreeMap;

/// Width of the hourly roll-up, in microseconds.
pub const HOUR_US: i64 = 3_600 * 1_000_000;
/// Width of the daily roll-up, in microseconds.
pub const DAY_US: i64 = 24 * HOUR_US;
/// The roll-up spans, widest first.
const SPANS: &[i64] = &[DAY_US, HOUR_US];
/// The detector of the roll-up rows that add up every detector.
pub const ALL_DETECTORS: &str = "";
/// The severity of the roll-up rows that add up every severity.
pub const ALL_SEVERITIES: i64 = -1;
/// The technique id of the roll-up and raw rows that count events rather than techniques:
/// every event has one, so events without a technique are counted too.
pub const EVENT_ROW: &str = "";

/// One technique of an observed event.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedTechnique {
    /// Active ATT&CK id (revoked ids already replaced).
    pub id: String,
    /// Attribution confidence, 0.0–1.0.
    pub confidence: f64,
    /// What produced it: JSON array of `{source, rule_id, detail, confidence}`.
    pub evidence: String,
}

/// An enriched event as the matrix sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The event's id.
    pub event_id: String,
    /// Its enrichment revision.
    pub revision: u32,
    /// When it was detected, in microseconds since the epoch.
    pub ts_us: i64,
    /// The detector that reported it (`source_service`).
    pub detector: String,
    /// Severity (the proto enum's number; 0 unspecified).
    pub severity: i32,
    /// The campaign the event belongs to (empty: none known).
    pub campaign: String,
    /// Hosts, addresses and users it involves, without repeats.
    pub entities: Vec<String>,
    /// Its techniques, without repeats.
    pub techniques: Vec<ObservedTechnique>,
    /// What the page shows of the event (JSON object).
    pub summary: String,
}

/// Which observations a question is about.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MatrixFilter {
    /// From this instant (inclusive), microseconds since the epoch.
    pub from_us: i64,
    /// Until this instant (exclusive).
    pub to_us: i64,
    /// Only this detector.
    pub detector: Option<String>,
    /// Only events at least this severe.
    pub min_severity: Option<i32>,
    /// Only events involving this entity.
    pub entity: Option<String>,
    /// Only events of this campaign.
    pub campaign: Option<String>,
}

/// How often, and how confidently, one technique was observed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Tally {
    /// Events that carried the technique.
    pub count: u64,
    /// Sum of their confidences (mean = `confidence_sum / count`).
    pub confidence_sum: f64,
}

impl Tally {
    /// The mean confidence (0 when never observed).
    pub fn mean_confidence(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.confidence_sum / self.count as f64
        }
    }
}

/// The answer to a matrix question.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MatrixCounts {
    /// Events in the view.
    pub events: u64,
    /// Per technique id.
    pub techniques: BTreeMap<String, Tally>,
}

impl MatrixCounts {
    /// Adds one `(technique, count, confidence sum)` row of a query.
    pub(crate) fn add(&mut self, technique: String, count: i64, confidence_sum: f64) {
        let count = u64::try_from(count).unwrap_or(0);
        if count == 0 {
            return;
        }
        if technique == EVENT_ROW {
            self.events += count;
            return;
        }
        let tally = self.techniques.entry(technique).or_default();
        tally.count += count;
        tally.confidence_sum += confidence_sum;
    }
}

/// One observation of a technique, newest first in answers.
#[derive(Debug, Clone, PartialEq)]
pub struct TechniqueEvent {
    /// The event's id.
    pub event_id: String,
    /// When it was detected, microseconds since the epoch.
    pub ts_us: i64,
    /// The technique's confidence in this event.
    pub confidence: f64,
    /// The technique's evidence (JSON array).
    pub evidence: String,
    /// The event's summary (JSON object).
    pub summary: String,
}

/// Filter values present in a collection.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Facets {
    /// Detectors and how many events each reported.
    pub detectors: Vec<(String, u64)>,
    /// Campaigns and how many events each holds.
    pub campaigns: Vec<(String, u64)>,
}

/// Where one piece of a time range is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Segment {
    /// The raw rows in `[from, to)`.
    Raw(i64, i64),
    /// The roll-up of `span` for buckets starting in `[from, to)`.
    Rollup(i64, i64, i64),
}

/// Splits `[from, to)` into whole buckets of the widest span that fits and, at the edges,
/// narrower spans down to raw rows.
pub(crate) fn plan(from: i64, to: i64) -> Vec<Segment> {
    let mut out = Vec::new();
    split(from, to, SPANS, &mut out);
    out
}

fn split(from: i64, to: i64, spans: &[i64], out: &mut Vec<Segment>) {
    if from >= to {
        return;
    }
    let Some((&span, narrower)) = spans.split_first() else {
        out.push(Segment::Raw(from, to));
        return;
    };
    let first = ceil_to(from, span);
    let last = to - to.rem_euclid(span);
    if first >= last {
        split(from, to, narrower, out);
        return;
    }
    split(from, first, narrower, out);
    out.push(Segment::Rollup(span, first, last));
    split(last, to, narrower, out);
}

fn ceil_to(t: i64, span: i64) -> i64 {
    match t.rem_euclid(span) {
        0 => t,
        r => t.saturating_add(span - r),
    }
}

/// The start of the bucket of `span` holding `ts`.
pub(crate) fn bucket(ts: i64, span: i64) -> i64 {
    ts - ts.rem_euclid(span)
}

/// Every roll-up span.
pub(crate) fn spans() -> &'static [i64] {
    SPANS
}

/// The matrix tables, with the engine's 64-bit integer and floating-point type names.
pub(crate) fn schema(int: &str, real: &str) -> String {
    format!(
        "
CREATE TABLE IF NOT EXISTS observed_events (
    collection TEXT NOT NULL,
    event_id TEXT NOT NULL,
    revision {int} NOT NULL,
    ts_us {int} NOT NULL,
    detector TEXT NOT NULL,
    severity {int} NOT NULL,
    campaign TEXT NOT NULL,
    summary TEXT NOT NULL,
    PRIMARY KEY (collection, event_id)
);
CREATE INDEX IF NOT EXISTS observed_events_by_campaign ON observed_events (collection, campaign);
CREATE TABLE IF NOT EXISTS observations (
    collection TEXT NOT NULL,
    event_id TEXT NOT NULL,
    technique_id TEXT NOT NULL,
    ts_us {int} NOT NULL,
    detector TEXT NOT NULL,
    severity {int} NOT NULL,
    campaign TEXT NOT NULL,
    confidence {real} NOT NULL,
    evidence TEXT NOT NULL,
    PRIMARY KEY (collection, event_id, technique_id)
);
CREATE INDEX IF NOT EXISTS observations_by_time ON observations (collection, ts_us);
CREATE INDEX IF NOT EXISTS observations_by_technique ON observations (collection, technique_id, ts_us);
CREATE INDEX IF NOT EXISTS observations_by_campaign ON observations (collection, campaign, ts_us);
CREATE TABLE IF NOT EXISTS observation_entities (
    collection TEXT NOT NULL,
    entity TEXT NOT NULL,
    ts_us {int} NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (collection, entity, ts_us, event_id)
);
CREATE INDEX IF NOT EXISTS observation_entities_by_event ON observation_entities (collection, event_id);
CREATE TABLE IF NOT EXISTS observation_rollup (
    collection TEXT NOT NULL,
    span {int} NOT NULL,
    bucket_us {int} NOT NULL,
    technique_id TEXT NOT NULL,
    detector TEXT NOT NULL,
    severity {int} NOT NULL,
    n {int} NOT NULL,
    confidence_sum {real} NOT NULL,
    PRIMARY KEY (collection, span, bucket_us, technique_id, detector, severity)
);
CREATE INDEX IF NOT EXISTS observation_rollup_by_detector
    ON observation_rollup (collection, span, detector, severity, bucket_us);
"
    )
}

/// Adds `n` observations with `confidence_sum` to one roll-up row (negative to take them out).
pub(crate) const ROLLUP_ADD: &str = "INSERT INTO observation_rollup \
     (collection, span, bucket_us, technique_id, detector, severity, n, confidence_sum) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (collection, span, bucket_us, technique_id, detector, severity) DO UPDATE SET \
     n = observation_rollup.n + excluded.n, confidence_sum = observation_rollup.confidence_sum + excluded.confidence_sum";

/// The stored revision, time, detector and severity of an event.
pub(crate) const EVENT_ROW_SELECT: &str =
    "SELECT revision, ts_us, detector, severity FROM observed_events WHERE collection = $1 AND event_id = $2";
/// The techniques (and the event row) stored for an event.
pub(crate) const EVENT_TECHNIQUES: &str =
    "SELECT technique_id, confidence FROM observations WHERE collection = $1 AND event_id = $2";
/// Statements that forget an event's rows (not the roll-up).
pub(crate) const FORGET_EVENT: &[&str] = &[
    "DELETE FROM observations WHERE collection = $1 AND event_id = $2",
    "DELETE FROM observation_entities WHERE collection = $1 AND event_id = $2",
    "DELETE FROM observed_events WHERE collection = $1 AND event_id = $2",
];
/// Inserts the event row.
pub(crate) const INSERT_EVENT: &str = "INSERT INTO observed_events \
     (collection, event_id, revision, ts_us, detector, severity, campaign, summary) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
/// Inserts one technique row (or the event's own row).
pub(crate) const INSERT_OBSERVATION: &str = "INSERT INTO observations \
     (collection, event_id, technique_id, ts_us, detector, severity, campaign, confidence, evidence) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
/// Inserts one entity row.
pub(crate) const INSERT_ENTITY: &str = "INSERT INTO observation_entities (collection, entity, ts_us, event_id) \
     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";

/// A bound value of a matrix query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// Text.
    Text(String),
    /// 64-bit integer.
    Int(i64),
}

/// The statements (with their parameters) that answer `filter` in `collection`; each returns
/// `(technique_id, count, confidence_sum)` rows to add up.
pub(crate) fn count_queries(collection: &str, filter: &MatrixFilter) -> Vec<(String, Vec<Value>)> {
    let raw_only = filter.entity.is_some() || filter.campaign.is_some();
    let segments = if raw_only {
        vec![Segment::Raw(filter.from_us, filter.to_us)]
    } else {
        plan(filter.from_us, filter.to_us)
    };
    segments
        .into_iter()
        .map(|segment| {
            let mut params = vec![Value::Text(collection.to_owned())];
            let mut bind = |v: Value| {
                params.push(v);
                format!("${}", params.len())
            };
            let sql = match segment {
                Segment::Raw(from, to) => {
                    let (from, to) = (bind(Value::Int(from)), bind(Value::Int(to)));
                    let mut sql = match &filter.entity {
                        // Driven by the entity's own rows: few, however many events are stored.
                        Some(entity) => format!(
                            "SELECT o.technique_id, COUNT(*), COALESCE(SUM(o.confidence), 0) \
                             FROM observation_entities e CROSS JOIN observations o \
                             WHERE e.collection = $1 AND e.entity = {} AND e.ts_us >= {from} AND e.ts_us < {to} \
                             AND o.collection = e.collection AND o.event_id = e.event_id",
                            bind(Value::Text(entity.clone()))
                        ),
                        None => format!(
                            "SELECT o.technique_id, COUNT(*), COALESCE(SUM(o.confidence), 0) FROM observations o \
                             WHERE o.collection = $1 AND o.ts_us >= {from} AND o.ts_us < {to}"
                        ),
                    };
                    if let Some(campaign) = &filter.campaign {
                        let campaign = bind(Value::Text(campaign.clone()));
                        sql.push_str(&format!(" AND o.campaign = {campaign}"));
                    }
                    if let Some(detector) = &filter.detector {
                        let p = bind(Value::Text(detector.clone()));
                        sql.push_str(&format!(" AND o.detector = {p}"));
                    }
                    if let Some(severity) = filter.min_severity {
                        let p = bind(Value::Int(i64::from(severity)));
                        sql.push_str(&format!(" AND o.severity >= {p}"));
                    }
                    sql.push_str(" GROUP BY o.technique_id");
                    sql
                }
                Segment::Rollup(span, from, to) => {
                    let span = bind(Value::Int(span));
                    let (from, to) = (bind(Value::Int(from)), bind(Value::Int(to)));
                    let detector = bind(Value::Text(
                        filter.detector.clone().unwrap_or_else(|| ALL_DETECTORS.to_owned()),
                    ));
                    let severity = match filter.min_severity {
                        Some(s) => format!(">= {}", bind(Value::Int(i64::from(s)))),
                        None => format!("= {}", bind(Value::Int(ALL_SEVERITIES))),
                    };
                    format!(
                        "SELECT technique_id, CAST(SUM(n) AS BIGINT), COALESCE(SUM(confidence_sum), 0) \
                         FROM observation_rollup WHERE collection = $1 AND span = {span} \
                         AND detector = {detector} AND severity {severity} \
                         AND bucket_us >= {from} AND bucket_us < {to} GROUP BY technique_id"
                    )
                }
            };
            (sql, params)
        })
        .collect()
}

/// The statement listing the newest observations of `technique` under `filter`, at most `limit`.
pub(crate) fn events_query(
    collection: &str,
    technique: &str,
    filter: &MatrixFilter,
    limit: usize,
) -> (String, Vec<Value>) {
    let mut params = vec![
        Value::Text(collection.to_owned()),
        Value::Text(technique.to_owned()),
        Value::Int(filter.from_us),
        Value::Int(filter.to_us),
    ];
    let mut bind = |v: Value| {
        params.push(v);
        format!("${}", params.len())
    };
    let mut sql = String::from("SELECT o.event_id, o.ts_us, o.confidence, o.evidence, e.summary FROM ");
    if let Some(entity) = &filter.entity {
        // Driven by the entity's own rows, as in the counts.
        sql.push_str(&format!(
            "observation_entities x CROSS JOIN observations o \
             JOIN observed_events e ON e.collection = o.collection AND e.event_id = o.event_id \
             WHERE x.collection = $1 AND x.entity = {} AND x.ts_us >= $3 AND x.ts_us < $4 \
             AND o.collection = x.collection AND o.event_id = x.event_id AND o.technique_id = $2",
            bind(Value::Text(entity.clone()))
        ));
    } else {
        sql.push_str(
            "observations o JOIN observed_events e ON e.collection = o.collection AND e.event_id = o.event_id \
             WHERE o.collection = $1 AND o.technique_id = $2 AND o.ts_us >= $3 AND o.ts_us < $4",
        );
    }
    if let Some(detector) = &filter.detector {
        sql.push_str(&format!(" AND o.detector = {}", bind(Value::Text(detector.clone()))));
    }
    if let Some(severity) = filter.min_severity {
        sql.push_str(&format!(" AND o.severity >= {}", bind(Value::Int(i64::from(severity)))));
    }
    if let Some(campaign) = &filter.campaign {
        sql.push_str(&format!(" AND o.campaign = {}", bind(Value::Text(campaign.clone()))));
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    sql.push_str(&format!(" ORDER BY o.ts_us DESC LIMIT {}", bind(Value::Int(limit))));
    (sql, params)
}

/// Detectors (from the daily roll-up) and campaigns (from the event rows) of a collection.
pub(crate) const FACET_DETECTORS: &str = "SELECT detector, CAST(SUM(n) AS BIGINT) FROM observation_rollup \
     WHERE collection = $1 AND span = $2 AND detector > '' AND severity = -1 AND technique_id = '' \
     GROUP BY detector ORDER BY detector";
/// Campaigns and their event counts.
pub(crate) const FACET_CAMPAIGNS: &str = "SELECT campaign, COUNT(*) FROM observed_events \
     WHERE collection = $1 AND campaign > '' GROUP BY campaign ORDER BY campaign";

/// The key of a roll-up contribution, before bucketing.
pub(crate) struct RollupKey<'a> {
    /// When the event was detected.
    pub(crate) ts_us: i64,
    /// The technique (or [`EVENT_ROW`]).
    pub(crate) technique: &'a str,
    /// The detector.
    pub(crate) detector: &'a str,
    /// The severity.
    pub(crate) severity: i64,
}

impl RollupKey<'_> {
    /// The `(detector, severity)` roll-up rows a contribution goes to: its own, and the rows
    /// that add up every detector ([`ALL_DETECTORS`]), every severity ([`ALL_SEVERITIES`]) or
    /// both, so that a view filtering on neither, one or both reads one row per bucket and
    /// technique (per severity at most) through `observation_rollup_by_detector`.
    pub(crate) fn rows(&self) -> [(&str, i64); 4] {
        [
            (self.detector, self.severity),
            (self.detector, ALL_SEVERITIES),
            (ALL_DETECTORS, self.severity),
            (ALL_DETECTORS, ALL_SEVERITIES),
        ]
    }
}

/// The roll-up contributions of a stored revision.
pub(crate) struct OldRows {
    /// Stored time.
    pub(crate) ts_us: i64,
    /// Stored detector.
    pub(crate) detector: String,
    /// Stored severity.
    pub(crate) severity: i64,
    /// Stored technique rows (the event's own row included).
    pub(crate) rows: Vec<(String, f64)>,
}

/// The roll-up additions of `observation`: `(technique_id, confidence)`, the event row first.
pub(crate) fn rollup_rows(observation: &Observation) -> Vec<(String, f64)> {
    std::iter::once((EVENT_ROW.to_owned(), 0.0))
        .chain(observation.techniques.iter().map(|t| (t.id.clone(), t.confidence)))
        .collect()
}

#[cfg(test)]
mod tests;
