//! The matrix tables in SQLite: recording inside the caller's transaction, and the reads.

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::{
    EVENT_ROW_SELECT, EVENT_TECHNIQUES, FACET_CAMPAIGNS, FACET_DETECTORS, FORGET_EVENT, Facets, INSERT_ENTITY,
    INSERT_EVENT, INSERT_OBSERVATION, MatrixCounts, MatrixFilter, OldRows, ROLLUP_ADD, RollupKey, TechniqueEvent,
    Value, bucket, count_queries, events_query, rollup_rows, spans,
};
use crate::{
    error::Error,
    store::{matrix::Observation, sqlite::SqliteStore},
};

/// SQLite numbers `?N` placeholders; the shared SQL is written with `$N`.
fn sql(text: &str) -> String {
    text.replace('$', "?")
}

fn values(params: Vec<Value>) -> impl Iterator<Item = rusqlite::types::Value> {
    params.into_iter().map(|p| match p {
        Value::Text(s) => rusqlite::types::Value::Text(s),
        Value::Int(i) => rusqlite::types::Value::Integer(i),
    })
}

/// Records `observation` in `collection` (inside the caller's transaction) unless it is stored
/// at the same or a higher revision.
pub(crate) fn record(conn: &Connection, collection: &str, observation: &Observation) -> Result<(), Error> {
    let stored: Option<(i64, i64, String, i64)> = conn
        .prepare_cached(&sql(EVENT_ROW_SELECT))?
        .query_row(params![collection, observation.event_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    if let Some((revision, ts_us, detector, severity)) = stored {
        if revision >= i64::from(observation.revision) {
            return Ok(());
        }
        let rows = conn
            .prepare_cached(&sql(EVENT_TECHNIQUES))?
            .query_map(params![collection, observation.event_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<Vec<(String, f64)>, _>>()?;
        let old = OldRows {
            ts_us,
            detector,
            severity,
            rows,
        };
        for (technique, confidence) in &old.rows {
            let key = RollupKey {
                ts_us: old.ts_us,
                technique,
                detector: &old.detector,
                severity: old.severity,
            };
            add_rollup(conn, collection, key, -1, -confidence)?;
        }
        for statement in FORGET_EVENT {
            conn.prepare_cached(&sql(statement))?
                .execute(params![collection, observation.event_id])?;
        }
    }
    let o = observation;
    let severity = i64::from(o.severity);
    let campaign = match o.campaign.as_str() {
        "" => crate::store::campaigns::member_of_sqlite(conn, collection, &o.event_id)?.unwrap_or_default(),
        known => known.to_owned(),
    };
    conn.prepare_cached(&sql(INSERT_EVENT))?.execute(params![
        collection,
        o.event_id,
        i64::from(o.revision),
        o.ts_us,
        o.detector,
        severity,
        campaign,
        o.summary
    ])?;
    let mut insert = conn.prepare_cached(&sql(INSERT_OBSERVATION))?;
    insert.execute(params![
        collection, o.event_id, "", o.ts_us, o.detector, severity, campaign, 0.0, "[]"
    ])?;
    for t in &o.techniques {
        insert.execute(params![
            collection,
            o.event_id,
            t.id,
            o.ts_us,
            o.detector,
            severity,
            campaign,
            t.confidence,
            t.evidence
        ])?;
    }
    let mut entity = conn.prepare_cached(&sql(INSERT_ENTITY))?;
    for e in &o.entities {
        entity.execute(params![collection, e, o.ts_us, o.event_id])?;
    }
    for (technique, confidence) in rollup_rows(o) {
        let key = RollupKey {
            ts_us: o.ts_us,
            technique: &technique,
            detector: &o.detector,
            severity,
        };
        add_rollup(conn, collection, key, 1, confidence)?;
    }
    Ok(())
}

fn add_rollup(conn: &Connection, collection: &str, key: RollupKey<'_>, n: i64, confidence: f64) -> Result<(), Error> {
    let mut stmt = conn.prepare_cached(&sql(ROLLUP_ADD))?;
    for &span in spans() {
        for (detector, severity) in key.rows() {
            stmt.execute(params![
                collection,
                span,
                bucket(key.ts_us, span),
                key.technique,
                detector,
                severity,
                n,
                confidence
            ])?;
        }
    }
    Ok(())
}

impl SqliteStore {
    pub(in crate::store) async fn matrix_counts(
        &self,
        collection: &str,
        filter: &MatrixFilter,
    ) -> Result<MatrixCounts, Error> {
        let queries = count_queries(collection, filter);
        self.with(move |conn| {
            let mut out = MatrixCounts::default();
            for (text, params) in queries {
                let mut stmt = conn.prepare_cached(&sql(&text))?;
                let mut rows = stmt.query(params_from_iter(values(params)))?;
                while let Some(row) = rows.next()? {
                    out.add(row.get(0)?, row.get(1)?, row.get(2)?);
                }
            }
            Ok(out)
        })
        .await
    }

    pub(in crate::store) async fn technique_events(
        &self,
        collection: &str,
        technique: &str,
        filter: &MatrixFilter,
        limit: usize,
    ) -> Result<Vec<TechniqueEvent>, Error> {
        let (text, params) = events_query(collection, technique, filter, limit);
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(&sql(&text))?;
            let rows = stmt
                .query_map(params_from_iter(values(params)), |r| {
                    Ok(TechniqueEvent {
                        event_id: r.get(0)?,
                        ts_us: r.get(1)?,
                        confidence: r.get(2)?,
                        evidence: r.get(3)?,
                        summary: r.get(4)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    pub(in crate::store) async fn facets(&self, collection: &str) -> Result<Facets, Error> {
        let collection = collection.to_owned();
        self.with(move |conn| {
            let read = |text: &str, second: Option<i64>| -> Result<Vec<(String, u64)>, Error> {
                let mut stmt = conn.prepare_cached(&sql(text))?;
                let map = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0)));
                let rows = match second {
                    Some(span) => stmt
                        .query_map(params![collection, span], map)?
                        .collect::<Result<_, _>>()?,
                    None => stmt.query_map(params![collection], map)?.collect::<Result<_, _>>()?,
                };
                Ok(rows)
            };
            let detectors = read(FACET_DETECTORS, Some(super::DAY_US))?;
            let campaigns = read(FACET_CAMPAIGNS, None)?;
            Ok(Facets {
                detectors: detectors.into_iter().filter(|(_, n)| *n > 0).collect(),
                campaigns,
            })
        })
        .await
    }
}
