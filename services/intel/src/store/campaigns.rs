//! The latest revision of every campaign a collection received, kept as the campaign's JSON
//! (`attackmesh.v1.Campaign`) so the matrix page can show its members, risk and candidate
//! groups, which its STIX objects do not carry. Written inside the transaction that applies the
//! campaign alert, so it never disagrees with the STIX `campaign` object.

use rusqlite::{Connection, OptionalExtension, params};
use tokio_postgres::Transaction;

use crate::{
    error::Error,
    store::{
        postgres::{PostgresStore, connected},
        sqlite::SqliteStore,
    },
};

/// The table (the same text for SQLite and PostgreSQL).
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS campaigns (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    revision BIGINT NOT NULL,
    last_seen_us BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (collection, id)
);
CREATE INDEX IF NOT EXISTS campaigns_recent ON campaigns (collection, last_seen_us);
";

/// Stores a revision unless a higher one is stored already.
const UPSERT: &str = "INSERT INTO campaigns (collection, id, revision, last_seen_us, body) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (collection, id) DO UPDATE SET revision = excluded.revision, \
     last_seen_us = excluded.last_seen_us, body = excluded.body WHERE campaigns.revision < excluded.revision";
const ONE: &str = "SELECT body FROM campaigns WHERE collection = $1 AND id = $2";
const RECENT: &str = "SELECT body FROM campaigns WHERE collection = $1 ORDER BY last_seen_us DESC, id LIMIT $2";

/// One campaign revision to keep.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignRecord {
    /// The campaign id (`campaign--…`).
    pub id: String,
    /// The campaign's revision.
    pub revision: u32,
    /// Event time of the campaign's latest event (µs since the epoch), for the newest-first list.
    pub last_seen_us: i64,
    /// The campaign as JSON.
    pub body: String,
}

impl CampaignRecord {
    /// The record of `campaign`.
    pub fn of(campaign: &attackmesh::proto::Campaign) -> Result<Self, Error> {
        let body = serde_json::to_string(campaign)
            .map_err(|e| Error::Storage(format!("campaign `{}` not serialisable: {e}", campaign.campaign_id)))?;
        let last_seen_us = campaign
            .last_seen
            .as_ref()
            .map_or(0, |t| t.seconds.saturating_mul(1_000_000) + i64::from(t.nanos / 1_000));
        Ok(Self {
            id: campaign.campaign_id.clone(),
            revision: campaign.revision,
            last_seen_us,
            body,
        })
    }
}

fn sql(text: &str) -> String {
    text.replace('$', "?")
}

/// Records `campaign` in `collection` inside the caller's SQLite transaction.
pub(crate) fn record_sqlite(conn: &Connection, collection: &str, c: &CampaignRecord) -> Result<(), Error> {
    conn.prepare_cached(&sql(UPSERT))?.execute(params![
        collection,
        c.id,
        i64::from(c.revision),
        c.last_seen_us,
        c.body
    ])?;
    Ok(())
}

/// Records `campaign` in `collection` inside the caller's PostgreSQL transaction.
pub(crate) async fn record_postgres(tx: &Transaction<'_>, collection: &str, c: &CampaignRecord) -> Result<(), Error> {
    tx.execute(
        UPSERT,
        &[&collection, &c.id, &i64::from(c.revision), &c.last_seen_us, &c.body],
    )
    .await?;
    Ok(())
}

impl SqliteStore {
    pub(in crate::store) async fn campaign(&self, collection: &str, id: &str) -> Result<Option<String>, Error> {
        let (collection, id) = (collection.to_owned(), id.to_owned());
        self.with(move |conn| {
            Ok(conn
                .prepare_cached(&sql(ONE))?
                .query_row(params![collection, id], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    pub(in crate::store) async fn campaigns(&self, collection: &str, limit: usize) -> Result<Vec<String>, Error> {
        let collection = collection.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |conn| {
            Ok(conn
                .prepare_cached(&sql(RECENT))?
                .query_map(params![collection, limit], |r| r.get(0))?
                .collect::<Result<_, _>>()?)
        })
        .await
    }
}

impl PostgresStore {
    pub(in crate::store) async fn campaign(&self, collection: &str, id: &str) -> Result<Option<String>, Error> {
        let mut guard = self.slot().await?;
        let client = connected(&mut guard)?;
        Ok(client.query_opt(ONE, &[&collection, &id]).await?.map(|r| r.get(0)))
    }

    pub(in crate::store) async fn campaigns(&self, collection: &str, limit: usize) -> Result<Vec<String>, Error> {
        let mut guard = self.slot().await?;
        let client = connected(&mut guard)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client.query(RECENT, &[&collection, &limit]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
