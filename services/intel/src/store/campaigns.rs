//! The latest revision of every campaign a collection received, kept as the campaign's JSON
//! (`attackmesh.v1.Campaign`) so the matrix page can show its members, risk and candidate
//! groups, which its STIX objects do not carry. Written inside the transaction that applies the
//! campaign alert, so it never disagrees with the STIX `campaign` object.
//!
//! Member events never carry their campaign (campaigns are built later, from them), so storing a
//! newer revision also records its member event ids in `campaign_members` and tags the matrix
//! rows (`observed_events`, `observations`) of those events with the campaign; a member recorded
//! after its campaign finds its campaign there (`member_of_sqlite`, `member_of_postgres`).
//! A revision that merged other campaigns moves their members and tags to itself.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, params, params_from_iter, types::Value};
use tokio_postgres::{Transaction, types::ToSql};

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
CREATE TABLE IF NOT EXISTS campaign_members (
    collection TEXT NOT NULL,
    event_id TEXT NOT NULL,
    campaign TEXT NOT NULL,
    PRIMARY KEY (collection, event_id)
);
CREATE INDEX IF NOT EXISTS campaign_members_by_campaign ON campaign_members (collection, campaign);
";

/// Stores a revision unless a higher one is stored already.
const UPSERT: &str = "INSERT INTO campaigns (collection, id, revision, last_seen_us, body) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (collection, id) DO UPDATE SET revision = excluded.revision, \
     last_seen_us = excluded.last_seen_us, body = excluded.body WHERE campaigns.revision < excluded.revision";
/// Moves one merged campaign's (`$3`) members and matrix tags to the merging campaign (`$2`).
const MERGE: &[&str] = &[
    "UPDATE campaign_members SET campaign = $2 WHERE collection = $1 AND campaign = $3",
    "UPDATE observed_events SET campaign = $2 WHERE collection = $1 AND campaign = $3",
    "UPDATE observations SET campaign = $2 WHERE collection = $1 AND campaign = $3",
];
/// Tags the matrix rows of campaign `$2`'s members.
const TAG: &[&str] = &[
    "UPDATE observed_events SET campaign = $2 WHERE collection = $1 AND campaign <> $2 AND event_id IN \
     (SELECT event_id FROM campaign_members WHERE collection = $1 AND campaign = $2)",
    "UPDATE observations SET campaign = $2 WHERE collection = $1 AND campaign <> $2 AND event_id IN \
     (SELECT event_id FROM campaign_members WHERE collection = $1 AND campaign = $2)",
];
/// The campaign that lists event `$2` as a member.
const MEMBER_OF: &str = "SELECT campaign FROM campaign_members WHERE collection = $1 AND event_id = $2";
/// Member ids bound per insert (well under SQLite's and PostgreSQL's parameter limits).
const MEMBER_CHUNK: usize = 200;

/// The insert of `n` members of campaign `$2`: ids are `$3…`.
fn insert_members(n: usize) -> String {
    let rows: Vec<String> = (0..n).map(|i| format!("($1, ${}, $2)", i + 3)).collect();
    format!(
        "INSERT INTO campaign_members (collection, event_id, campaign) VALUES {} \
         ON CONFLICT (collection, event_id) DO UPDATE SET campaign = excluded.campaign",
        rows.join(", ")
    )
}

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
    /// Its member event ids (every detector's), without repeats.
    pub members: Vec<String>,
    /// Ids of the campaigns merged into it.
    pub merged: Vec<String>,
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
        let members: BTreeSet<&String> = campaign.detectors.iter().flat_map(|d| &d.event_ids).collect();
        Ok(Self {
            id: campaign.campaign_id.clone(),
            revision: campaign.revision,
            last_seen_us,
            body,
            members: members.into_iter().cloned().collect(),
            merged: campaign.merged_ids.clone(),
        })
    }
}

fn sql(text: &str) -> String {
    text.replace('$', "?")
}

/// Records `campaign` in `collection` inside the caller's SQLite transaction and, when it is a
/// newer revision, its members and their matrix tags.
pub(crate) fn record_sqlite(conn: &Connection, collection: &str, c: &CampaignRecord) -> Result<(), Error> {
    let stored = conn.prepare_cached(&sql(UPSERT))?.execute(params![
        collection,
        c.id,
        i64::from(c.revision),
        c.last_seen_us,
        c.body
    ])?;
    if stored == 0 {
        return Ok(());
    }
    for merged in c.merged.iter().filter(|m| **m != c.id) {
        for statement in MERGE {
            conn.prepare_cached(&sql(statement))?
                .execute(params![collection, c.id, merged])?;
        }
    }
    for chunk in c.members.chunks(MEMBER_CHUNK) {
        let values = [collection, c.id.as_str()]
            .into_iter()
            .chain(chunk.iter().map(String::as_str))
            .map(|s| Value::Text(s.to_owned()));
        conn.prepare_cached(&sql(&insert_members(chunk.len())))?
            .execute(params_from_iter(values))?;
    }
    for statement in TAG {
        conn.prepare_cached(&sql(statement))?
            .execute(params![collection, c.id])?;
    }
    Ok(())
}

/// Records `campaign` in `collection` inside the caller's PostgreSQL transaction and, when it is
/// a newer revision, its members and their matrix tags.
pub(crate) async fn record_postgres(tx: &Transaction<'_>, collection: &str, c: &CampaignRecord) -> Result<(), Error> {
    let stored = tx
        .execute(
            UPSERT,
            &[&collection, &c.id, &i64::from(c.revision), &c.last_seen_us, &c.body],
        )
        .await?;
    if stored == 0 {
        return Ok(());
    }
    for merged in c.merged.iter().filter(|m| **m != c.id) {
        for statement in MERGE {
            tx.execute(*statement, &[&collection, &c.id, merged]).await?;
        }
    }
    for chunk in c.members.chunks(MEMBER_CHUNK) {
        let mut values: Vec<&(dyn ToSql + Sync)> = vec![&collection, &c.id];
        values.extend(chunk.iter().map(|id| id as &(dyn ToSql + Sync)));
        tx.execute(insert_members(chunk.len()).as_str(), &values).await?;
    }
    for statement in TAG {
        tx.execute(*statement, &[&collection, &c.id]).await?;
    }
    Ok(())
}

/// The campaign of `collection` that lists `event_id` as a member, inside the caller's SQLite
/// transaction.
pub(crate) fn member_of_sqlite(conn: &Connection, collection: &str, event_id: &str) -> Result<Option<String>, Error> {
    Ok(conn
        .prepare_cached(&sql(MEMBER_OF))?
        .query_row(params![collection, event_id], |r| r.get(0))
        .optional()?)
}

/// The campaign of `collection` that lists `event_id` as a member, inside the caller's
/// PostgreSQL transaction.
pub(crate) async fn member_of_postgres(
    tx: &Transaction<'_>,
    collection: &str,
    event_id: &str,
) -> Result<Option<String>, Error> {
    Ok(tx
        .query_opt(MEMBER_OF, &[&collection, &event_id])
        .await?
        .map(|r| r.get(0)))
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
