//! The matrix tables in PostgreSQL: recording inside the caller's transaction (which holds the
//! collection's write lock, so replicas never record one event twice), and the reads.

use tokio_postgres::{Transaction, types::ToSql};

use super::{
    EVENT_ROW_SELECT, EVENT_TECHNIQUES, FACET_CAMPAIGNS, FACET_DETECTORS, FORGET_EVENT, Facets, INSERT_ENTITY,
    INSERT_EVENT, INSERT_OBSERVATION, MatrixCounts, MatrixFilter, Observation, OldRows, ROLLUP_ADD, RollupKey,
    TechniqueEvent, Value, bucket, count_queries, events_query, rollup_rows, spans,
};
use crate::{
    error::Error,
    store::postgres::{PostgresStore, connected},
};

/// Records `observation` in `collection` inside `tx` unless it is stored at the same or a
/// higher revision.
pub(crate) async fn record(tx: &Transaction<'_>, collection: &str, observation: &Observation) -> Result<(), Error> {
    let o = observation;
    let stored = tx.query_opt(EVENT_ROW_SELECT, &[&collection, &o.event_id]).await?;
    if let Some(row) = stored {
        let revision: i64 = row.get(0);
        if revision >= i64::from(o.revision) {
            return Ok(());
        }
        let rows = tx
            .query(EVENT_TECHNIQUES, &[&collection, &o.event_id])
            .await?
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, f64>(1)))
            .collect();
        let old = OldRows {
            ts_us: row.get(1),
            detector: row.get(2),
            severity: row.get(3),
            rows,
        };
        for (technique, confidence) in &old.rows {
            let row = RollupKey {
                ts_us: old.ts_us,
                technique,
                detector: &old.detector,
                severity: old.severity,
            };
            add_rollup(tx, collection, row, -1, -confidence).await?;
        }
        for statement in FORGET_EVENT {
            tx.execute(*statement, &[&collection, &o.event_id]).await?;
        }
    }
    let severity = i64::from(o.severity);
    let campaign = match o.campaign.as_str() {
        "" => crate::store::campaigns::member_of_postgres(tx, collection, &o.event_id)
            .await?
            .unwrap_or_default(),
        known => known.to_owned(),
    };
    tx.execute(
        INSERT_EVENT,
        &[
            &collection,
            &o.event_id,
            &i64::from(o.revision),
            &o.ts_us,
            &o.detector,
            &severity,
            &campaign,
            &o.summary,
        ],
    )
    .await?;
    let insert = tx.prepare(INSERT_OBSERVATION).await?;
    tx.execute(
        &insert,
        &[
            &collection,
            &o.event_id,
            &"",
            &o.ts_us,
            &o.detector,
            &severity,
            &campaign,
            &0.0f64,
            &"[]",
        ],
    )
    .await?;
    for t in &o.techniques {
        tx.execute(
            &insert,
            &[
                &collection,
                &o.event_id,
                &t.id,
                &o.ts_us,
                &o.detector,
                &severity,
                &campaign,
                &t.confidence,
                &t.evidence,
            ],
        )
        .await?;
    }
    for e in &o.entities {
        tx.execute(INSERT_ENTITY, &[&collection, e, &o.ts_us, &o.event_id])
            .await?;
    }
    for (technique, confidence) in rollup_rows(o) {
        let row = RollupKey {
            ts_us: o.ts_us,
            technique: &technique,
            detector: &o.detector,
            severity,
        };
        add_rollup(tx, collection, row, 1, confidence).await?;
    }
    Ok(())
}

async fn add_rollup(
    tx: &Transaction<'_>,
    collection: &str,
    row: RollupKey<'_>,
    n: i64,
    confidence: f64,
) -> Result<(), Error> {
    for &span in spans() {
        for (detector, severity) in row.rows() {
            tx.execute(
                ROLLUP_ADD,
                &[
                    &collection,
                    &span,
                    &bucket(row.ts_us, span),
                    &row.technique,
                    &detector,
                    &severity,
                    &n,
                    &confidence,
                ],
            )
            .await?;
        }
    }
    Ok(())
}

fn boxed(params: Vec<Value>) -> Vec<Box<dyn ToSql + Sync + Send>> {
    params
        .into_iter()
        .map(|p| -> Box<dyn ToSql + Sync + Send> {
            match p {
                Value::Text(s) => Box::new(s),
                Value::Int(i) => Box::new(i),
            }
        })
        .collect()
}

fn refs(values: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)).collect()
}

impl PostgresStore {
    pub(in crate::store) async fn matrix_counts(
        &self,
        collection: &str,
        filter: &MatrixFilter,
    ) -> Result<MatrixCounts, Error> {
        let mut guard = self.slot().await?;
        let client = connected(&mut guard)?;
        let mut out = MatrixCounts::default();
        for (text, params) in count_queries(collection, filter) {
            let values = boxed(params);
            for row in client.query(&text, &refs(&values)).await? {
                out.add(row.get(0), row.get(1), row.get(2));
            }
        }
        Ok(out)
    }

    pub(in crate::store) async fn technique_events(
        &self,
        collection: &str,
        technique: &str,
        filter: &MatrixFilter,
        limit: usize,
    ) -> Result<Vec<TechniqueEvent>, Error> {
        let (text, params) = events_query(collection, technique, filter, limit);
        let values = boxed(params);
        let mut guard = self.slot().await?;
        let client = connected(&mut guard)?;
        Ok(client
            .query(&text, &refs(&values))
            .await?
            .iter()
            .map(|r| TechniqueEvent {
                event_id: r.get(0),
                ts_us: r.get(1),
                confidence: r.get(2),
                evidence: r.get(3),
                summary: r.get(4),
            })
            .collect())
    }

    pub(in crate::store) async fn facets(&self, collection: &str) -> Result<Facets, Error> {
        let mut guard = self.slot().await?;
        let client = connected(&mut guard)?;
        let pairs = |rows: Vec<tokio_postgres::Row>| -> Vec<(String, u64)> {
            rows.iter()
                .map(|r| (r.get(0), u64::try_from(r.get::<_, i64>(1)).unwrap_or(0)))
                .filter(|(_, n)| *n > 0)
                .collect()
        };
        let detectors = pairs(client.query(FACET_DETECTORS, &[&collection, &super::DAY_US]).await?);
        let campaigns = pairs(client.query(FACET_CAMPAIGNS, &[&collection]).await?);
        Ok(Facets { detectors, campaigns })
    }
}
