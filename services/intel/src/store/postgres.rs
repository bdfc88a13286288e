//! The shared store: PostgreSQL for several intel replicas. A small pool of connections;
//! writes to one collection are serialised by a transaction-scoped advisory lock so the paging
//! sequence and `date_added` are committed in the same order on every replica.
//!
//! Connections are plaintext (`NoTls`): run PostgreSQL on the same host or inside the cluster
//! network. The connection URL is never logged.

use std::{
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::{Client, Config, NoTls, Transaction, types::ToSql};

use super::{
    CURSOR_KEY, EVENT_RETENTION_SECS, EventObjects, EventRefused, EventsWritten, Page, Planned, Query, Record,
    SCHEMA_VERSION, SCHEMA_VERSION_KEY, STATUS_RETENTION_SECS, Seen, StoredStatus, Version, WriteMode, WriteResult,
    check_schema_version, needs_own, new_cursor_key, plan, query::Param, stored_object,
};
use crate::{error::Error, stix::StixObject};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
    seq BIGSERIAL PRIMARY KEY,
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    spec_version TEXT NOT NULL,
    version TEXT NOT NULL,
    version_us BIGINT NOT NULL,
    date_added_us BIGINT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (collection, id, version_us)
);
CREATE INDEX IF NOT EXISTS objects_by_collection ON objects (collection, seq);
CREATE INDEX IF NOT EXISTS objects_by_id ON objects (collection, id, version_us);
CREATE TABLE IF NOT EXISTS statuses (id TEXT PRIMARY KEY, created_us BIGINT NOT NULL, body TEXT NOT NULL);
ALTER TABLE statuses ADD COLUMN IF NOT EXISTS collection TEXT NOT NULL DEFAULT '';
ALTER TABLE statuses ADD COLUMN IF NOT EXISTS requester TEXT NOT NULL DEFAULT '';
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, seq BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS ingested_events (
    collection TEXT NOT NULL,
    event_id TEXT NOT NULL,
    revision BIGINT NOT NULL,
    seen_us BIGINT NOT NULL,
    PRIMARY KEY (collection, event_id)
);
CREATE INDEX IF NOT EXISTS ingested_events_by_age ON ingested_events (collection, seen_us);
";

/// Checks the stored schema version, then creates or upgrades the schema and records its
/// version (under the schema lock, so replicas starting together do it once).
async fn create_schema(client: &Client) -> Result<(), Error> {
    let has_settings: bool = client
        .query_one("SELECT to_regclass('settings') IS NOT NULL", &[])
        .await?
        .get(0);
    if has_settings {
        let stored = client
            .query_opt("SELECT value FROM settings WHERE name = $1", &[&SCHEMA_VERSION_KEY])
            .await?
            .map(|row| row.get::<_, String>(0));
        check_schema_version(stored.as_deref())?;
    }
    client.batch_execute(SCHEMA).await?;
    client
        .batch_execute(&super::matrix::schema("BIGINT", "DOUBLE PRECISION"))
        .await?;
    client.batch_execute(super::campaigns::SCHEMA).await?;
    client
        .execute(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            &[&SCHEMA_VERSION_KEY, &SCHEMA_VERSION.to_string()],
        )
        .await?;
    Ok(())
}

/// Advisory-lock class of schema creation and of per-collection writes.
const LOCK_SCHEMA: i64 = 0x6174_6b6d_0001;
const LOCK_CLASS_COLLECTION: i32 = 0x6174_6b6d;
/// Advisory-lock class of push leases (the key is `hashtext` of the push's cursor name).
const LOCK_CLASS_PUSH: i32 = 0x6174_6b70;

/// The lease of one push: a session-level advisory lock on a connection of its own, held for
/// as long as that connection lives. When the replica holding it dies, PostgreSQL ends its
/// session and the lock is free for another replica.
pub struct PgLease {
    config: Config,
    name: String,
    client: Option<Client>,
    held: bool,
}

impl PgLease {
    /// Holds the lease when this call returns true: confirms a held one (its session still
    /// answers) or tries to take it, connecting again when the connection broke.
    pub(super) async fn hold(&mut self) -> Result<bool, Error> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.held = false;
            let (client, connection) = self.config.connect(NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "push lease connection closed");
                }
            });
            self.client = Some(client);
        }
        let Some(client) = &self.client else {
            return Ok(false);
        };
        let answer = if self.held {
            client.batch_execute("SELECT 1").await.map(|()| true)
        } else {
            client
                .query_one(
                    "SELECT pg_try_advisory_lock($1, hashtext($2))",
                    &[&LOCK_CLASS_PUSH, &self.name],
                )
                .await
                .map(|row| row.get::<_, bool>(0))
        };
        match answer {
            Ok(held) => {
                self.held = held;
                Ok(held)
            }
            Err(e) => {
                // The session (and the lock with it) may be gone: start over on a new one.
                self.client = None;
                self.held = false;
                Err(e.into())
            }
        }
    }
}

/// A PostgreSQL-backed store.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    cursor_key: Vec<u8>,
    slots: Vec<Mutex<Option<Client>>>,
    next: AtomicUsize,
}

impl PostgresStore {
    /// Connects with up to `pool` connections and creates the schema.
    pub async fn open(url: &str, pool: usize) -> Result<Self, Error> {
        let mut config = Config::from_str(url).map_err(|e| Error::Config(format!("db: invalid postgres URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            // A server that is down must not hold a request (or the health probe) for minutes.
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        let slots: Vec<Mutex<Option<Client>>> = (0..pool.max(1)).map(|_| Mutex::new(None)).collect();
        let cursor_key = {
            let mut guard = connect(&config, &slots[0]).await?;
            let client = connected(&mut guard)?;
            client.execute("SELECT pg_advisory_lock($1)", &[&LOCK_SCHEMA]).await?;
            let created = create_schema(client).await;
            client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_SCHEMA]).await?;
            created?;
            client
                .execute(
                    "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                    &[&CURSOR_KEY, &new_cursor_key()],
                )
                .await?;
            let key: String = client
                .query_one("SELECT value FROM settings WHERE name = $1", &[&CURSOR_KEY])
                .await?
                .get(0);
            key.into_bytes()
        };
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                cursor_key,
                slots,
                next: AtomicUsize::new(0),
            }),
        })
    }

    /// The (not yet held) lease of the push whose cursor is `name`.
    pub(super) fn lease(&self, name: &str) -> PgLease {
        PgLease {
            config: self.inner.config.clone(),
            name: name.to_owned(),
            client: None,
            held: false,
        }
    }

    /// Whether the database answers (connecting a pool slot again when its connection broke).
    pub(super) async fn ping(&self) -> Result<(), Error> {
        let mut guard = self.slot().await?;
        let client = connected(&mut guard)?;
        client.batch_execute("SELECT 1").await?;
        Ok(())
    }

    pub(super) fn cursor_key(&self) -> &[u8] {
        &self.inner.cursor_key
    }

    pub(super) async fn slot(&self) -> Result<MutexGuard<'_, Option<Client>>, Error> {
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % self.inner.slots.len();
        connect(&self.inner.config, &self.inner.slots[i]).await
    }

    pub(super) async fn write(
        &self,
        collection: &str,
        objects: Vec<StixObject>,
        mode: WriteMode,
        now: DateTime<Utc>,
    ) -> Result<Vec<WriteResult>, Error> {
        let mut guard = self.slot().await?;
        let client = connected(&mut guard)?;
        let tx = client.transaction().await?;
        let mut last_added = lock_collection(&tx, collection).await?;
        let mut results = Vec::with_capacity(objects.len());
        for object in objects {
            results.push(write_one(&tx, collection, object, mode, now, &mut last_added).await?);
        }
        if mode == WriteMode::Merge && results.iter().any(|r| r.refused.is_some()) {
            // Dropping the transaction rolls it back: a merge is written whole or not at all.
            return Ok(results.into_iter().map(|r| WriteResult { added: false, ..r }).collect());
        }
        tx.commit().await?;
        Ok(results)
    }

    pub(super) async fn write_events(
        &self,
        collection: &str,
        base: Vec<StixObject>,
        events: Vec<EventObjects>,
        now: DateTime<Utc>,
    ) -> Result<EventsWritten, Error> {
        let mut guard = self.slot().await?;
        let client = connected(&mut guard)?;
        let mut tx = client.transaction().await?;
        // The collection lock also serialises the check-then-record of events across replicas.
        let mut last_added = lock_collection(&tx, collection).await?;
        let now_us = now.timestamp_micros();
        tx.execute(
            "DELETE FROM ingested_events WHERE collection = $1 AND seen_us < $2",
            &[&collection, &(now_us - EVENT_RETENTION_SECS * 1_000_000)],
        )
        .await?;
        let mut out = EventsWritten::default();
        for object in base {
            let result = write_one(&tx, collection, object, WriteMode::Merge, now, &mut last_added).await?;
            super::note_base_refusal(collection, &result);
            out.results.push(result);
        }
        for (index, event) in events.into_iter().enumerate() {
            let stored: Option<i64> = tx
                .query_opt(
                    "SELECT revision FROM ingested_events WHERE collection = $1 AND event_id = $2",
                    &[&collection, &event.event_id],
                )
                .await?
                .map(|r| r.get(0));
            let seen = Seen::of(stored, event.revision);
            if seen == Seen::Duplicate {
                out.duplicates += 1;
                continue;
            }
            let observations = if seen == Seen::New {
                event.observations
            } else {
                Vec::new()
            };
            let matrix = event.matrix;
            // One savepoint per event: a refused object leaves the whole event out.
            let event_tx = tx.savepoint("event").await?;
            let before = last_added;
            let mut results = Vec::new();
            let mut refusal = None;
            for object in event.objects.into_iter().chain(observations) {
                let result = write_one(&event_tx, collection, object, WriteMode::Merge, now, &mut last_added).await?;
                if result.refused.is_some() {
                    refusal = result.refused;
                    break;
                }
                results.push(result);
            }
            if let Some(reason) = refusal {
                event_tx.rollback().await?;
                last_added = before;
                out.refused.push(EventRefused {
                    index,
                    event_id: event.event_id,
                    reason,
                });
                continue;
            }
            if let Some(observation) = &matrix {
                super::matrix::postgres::record(&event_tx, collection, observation).await?;
            }
            if let Some(campaign) = &event.campaign {
                super::campaigns::record_postgres(&event_tx, collection, campaign).await?;
            }
            event_tx
                .execute(
                    "INSERT INTO ingested_events (collection, event_id, revision, seen_us) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (collection, event_id) DO UPDATE SET revision = excluded.revision, seen_us = excluded.seen_us",
                    &[&collection, &event.event_id, &i64::from(event.revision), &now_us],
                )
                .await?;
            event_tx.commit().await?;
            out.results.extend(results);
        }
        tx.commit().await?;
        Ok(out)
    }

    pub(super) async fn event_revision(&self, collection: &str, event_id: &str) -> Result<Option<i64>, Error> {
        let mut guard = self.slot().await?;
        let client = connected(&mut guard)?;
        Ok(client
            .query_opt(
                "SELECT revision FROM ingested_events WHERE collection = $1 AND event_id = $2",
                &[&collection, &event_id],
            )
            .await?
            .map(|r| r.get(0)))
    }

    pub(super) async fn prune_versions(&self, collection: &str, ids: &[String], keep: i64) -> Result<u64, Error> {
        let mut guard = self.slot().await?;
        let client = connected(&mut guard)?;
        let dropped = client
            .execute(
                "DELETE FROM objects o USING (SELECT id, version_us, ROW_NUMBER() OVER \
                 (PARTITION BY id ORDER BY version_us DESC) AS n FROM objects \
                 WHERE collection = $1 AND id = ANY($2)) r \
                 WHERE o.collection = $1 AND o.id = r.id AND o.version_us = r.version_us AND r.n > $3",
                &[&collection, &ids, &keep],
            )
            .await?;
        Ok(dropped)
    }

    pub(super) async fn query(&self, collection: &str, query: &Query) -> Result<Page, Error> {
        let (sql, params) = query.to_sql(collection, |n| format!("${n}"));
        let values: Vec<Box<dyn ToSql + Sync + Send>> = params
            .into_iter()
            .map(|p| -> Box<dyn ToSql + Sync + Send> {
                match p {
                    Param::Text(s) => Box::new(s),
                    Param::Int(i) => Box::new(i),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)).collect();
        let mut guard = self.slot().await?;
        let client = connected(&mut guard)?;
        let rows = client.query(&sql, &refs).await?;
        let mut records: Vec<Record> = rows
            .into_iter()
            .map(|r| Record {
                seq: r.get(0),
                id: r.get(1),
                version: r.get(2),
                date_added_us: r.get(3),
                spec_version: r.get(4),
                body: r.get(5),
            })
            .collect();
        let more = records.len() > query.limit;
        records.truncate(query.limit);
        Ok(Page { records, more })
    }

    pub(super) async fn count(&self, collection: &str) -> Result<u64, Error> {
        let mut guard = self.slot().await?;
        let client = connected(&mut guard)?;
        let n: i64 = client
            .query_one(
                "SELECT COUNT(DISTINCT id) FROM objects WHERE collection = $1",
                &[&collection],
            )
            .await?
            .get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(super) async fn put_status(&self, id: &str, status: &StoredStatus, now: DateTime<Utc>) -> Result<(), Error> {
        let mut guard = self.slot().await?;
        let client = connected(&mut guard)?;
        let now_us = now.timestamp_micros();
        client
            .execute(
                "DELETE FROM statuses WHERE created_us < $1",
                &[&(now_us - STATUS_RETENTION_SECS * 1_000_000)],
            )
            .await?;
        client
            .execute(
                "INSERT INTO statuses (id, created_us, body, collection, requester) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body, created_us = excluded.created_us, \
                 collection = excluded.collection, requester = excluded.requester",
                &[&id, &now_us, &status.body, &status.collection, &status.requester],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn status(&self, id: &str) -> Result<Option<StoredStatus>, Error> {
        let mut guard = self.slot().await?;
        let client = connected(&mut guard)?;
        Ok(client
            .query_opt("SELECT body, collection, requester FROM statuses WHERE id = $1", &[&id])
            .await?
            .map(|r| StoredStatus {
                body: r.get(0),
                collection: r.get(1),
                requester: r.get(2),
            }))
    }

    pub(super) async fn cursor(&self, name: &str) -> Result<i64, Error> {
        let mut guard = self.slot().await?;
        let client = connected(&mut guard)?;
        Ok(client
            .query_opt("SELECT seq FROM cursors WHERE name = $1", &[&name])
            .await?
            .map_or(0, |r| r.get(0)))
    }

    pub(super) async fn set_cursor(&self, name: &str, seq: i64) -> Result<(), Error> {
        let mut guard = self.slot().await?;
        let client = connected(&mut guard)?;
        client
            .execute(
                "INSERT INTO cursors (name, seq) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
                &[&name, &seq],
            )
            .await?;
        Ok(())
    }
}

/// Takes the collection's write lock for the rest of `tx`; returns the `date_added` of the
/// collection's newest version (0 when empty).
async fn lock_collection(tx: &Transaction<'_>, collection: &str) -> Result<i64, Error> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&LOCK_CLASS_COLLECTION, &collection],
    )
    .await?;
    Ok(tx
        .query_one(
            "SELECT COALESCE(MAX(date_added_us), 0) FROM objects WHERE collection = $1",
            &[&collection],
        )
        .await?
        .get(0))
}

/// The newest stored version of `object`'s id and, when a merge must look past it, the newest
/// by `object`'s creator.
async fn stored_versions(
    tx: &Transaction<'_>,
    collection: &str,
    object: &StixObject,
    mode: WriteMode,
) -> Result<(Option<Version>, Option<Version>), Error> {
    const NEWEST_FIRST: &str =
        "SELECT body, version_us FROM objects WHERE collection = $1 AND id = $2 ORDER BY version_us DESC";
    let id = object.id();
    let version = |row: &tokio_postgres::Row| -> Result<Version, Error> {
        Ok(Version {
            object: stored_object(row.get::<_, &str>(0))?,
            version_us: row.get(1),
        })
    };
    let latest = match tx
        .query_opt(&format!("{NEWEST_FIRST} LIMIT 1"), &[&collection, &id])
        .await?
    {
        Some(row) => version(&row)?,
        None => return Ok((None, None)),
    };
    if !needs_own(mode, &latest, object) {
        return Ok((Some(latest), None));
    }
    let mut own = None;
    for row in tx.query(NEWEST_FIRST, &[&collection, &id]).await?.iter().skip(1) {
        let candidate = version(row)?;
        if candidate.object.creator() == object.creator() {
            own = Some(candidate);
            break;
        }
    }
    Ok((Some(latest), own))
}

/// Writes one object inside `tx`, moving `last_added` forward when a version is added.
async fn write_one(
    tx: &Transaction<'_>,
    collection: &str,
    object: StixObject,
    mode: WriteMode,
    now: DateTime<Utc>,
    last_added: &mut i64,
) -> Result<WriteResult, Error> {
    let date_added = now.timestamp_micros().max(*last_added + 1);
    let id = object.id().to_owned();
    let (latest, own) = stored_versions(tx, collection, &object, mode).await?;
    let (object, version, version_us) = match plan(mode, latest, own, object, now, date_added) {
        Planned::Unchanged(result) | Planned::Refused(result) => return Ok(result),
        Planned::Insert(object, version, version_us) => (object, version, version_us),
    };
    let inserted = tx
        .execute(
            "INSERT INTO objects (collection, id, type, spec_version, version, version_us, date_added_us, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (collection, id, version_us) DO NOTHING",
            &[
                &collection,
                &id,
                &object.object_type(),
                &object.spec_version(),
                &version,
                &version_us,
                &date_added,
                &object.to_json(),
            ],
        )
        .await?;
    if inserted > 0 {
        *last_added = date_added;
    }
    Ok(WriteResult {
        id,
        version,
        added: inserted > 0,
        refused: None,
    })
}

/// Locks `slot`, connecting it first when it has no open connection.
async fn connect<'a>(
    config: &Config,
    slot: &'a Mutex<Option<Client>>,
) -> Result<MutexGuard<'a, Option<Client>>, Error> {
    let mut guard = slot.lock().await;
    if guard.as_ref().is_none_or(Client::is_closed) {
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "postgres connection closed");
            }
        });
        *guard = Some(client);
    }
    Ok(guard)
}

pub(super) fn connected<'a>(guard: &'a mut MutexGuard<'_, Option<Client>>) -> Result<&'a mut Client, Error> {
    guard
        .as_mut()
        .ok_or_else(|| Error::StorageUnavailable("postgres: no connection".into()))
}
