//! The embedded store: one SQLite file (WAL), one connection used from blocking threads.
//! A single connection serialises writers, which is what keeps `date_added` and the paging
//! sequence in the same order.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::{
    CURSOR_KEY, EVENT_RETENTION_SECS, EventObjects, EventRefused, EventsWritten, Page, Planned, Query, Record,
    SCHEMA_VERSION, SCHEMA_VERSION_KEY, STATUS_RETENTION_SECS, Seen, StoredStatus, Version, WriteMode, WriteResult,
    check_schema_version, needs_own, new_cursor_key, plan, query::Param, stored_object,
};
use crate::{error::Error, stix::StixObject};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    spec_version TEXT NOT NULL,
    version TEXT NOT NULL,
    version_us INTEGER NOT NULL,
    date_added_us INTEGER NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (collection, id, version_us)
);
CREATE INDEX IF NOT EXISTS objects_by_collection ON objects (collection, seq);
CREATE INDEX IF NOT EXISTS objects_by_id ON objects (collection, id, version_us);
CREATE TABLE IF NOT EXISTS statuses (
    id TEXT PRIMARY KEY,
    created_us INTEGER NOT NULL,
    body TEXT NOT NULL,
    collection TEXT NOT NULL DEFAULT '',
    requester TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ingested_events (
    collection TEXT NOT NULL,
    event_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    seen_us INTEGER NOT NULL,
    PRIMARY KEY (collection, event_id)
);
CREATE INDEX IF NOT EXISTS ingested_events_by_age ON ingested_events (collection, seen_us);
";

/// Columns added to tables of older releases: `(table, column, definition)`.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("statuses", "collection", "TEXT NOT NULL DEFAULT ''"),
    ("statuses", "requester", "TEXT NOT NULL DEFAULT ''"),
];

/// A SQLite-backed store.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    cursor_key: Arc<[u8]>,
    /// The database file and its (device, inode) when opened; `None` in memory.
    file: Option<Arc<(std::path::PathBuf, u64, u64)>>,
}

impl SqliteStore {
    /// Opens or creates the database file (parent directories included); `:memory:` for tests.
    pub async fn open(path: &str) -> Result<Self, Error> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            if path != ":memory:"
                && let Some(dir) = std::path::Path::new(&path)
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::Storage(format!("cannot create {}: {e}", dir.display())))?;
            }
            let conn = Connection::open(&path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            let has_settings: i64 = conn.query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'settings'",
                [],
                |r| r.get(0),
            )?;
            if has_settings > 0 {
                let stored: Option<String> = conn
                    .query_row("SELECT value FROM settings WHERE name = ?1", params![SCHEMA_VERSION_KEY], |r| {
                        r.get(0)
                    })
                    .optional()?;
                check_schema_version(stored.as_deref())?;
            }
            conn.execute_batch(SCHEMA)?;
            conn.execute_batch(&super::matrix::schema("INTEGER", "REAL"))?;
            conn.execute_batch(super::campaigns::SCHEMA)?;
            for (table, column, definition) in ADDED_COLUMNS {
                let present: bool = conn
                    .query_row(
                        &format!("SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = ?1"),
                        params![column],
                        |r| r.get::<_, i64>(0),
                    )
                    .map(|n| n > 0)?;
                if !present {
                    conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {definition}"))?;
                }
            }
            conn.execute(
                "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![SCHEMA_VERSION_KEY, SCHEMA_VERSION.to_string()],
            )?;
            conn.execute(
                "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![CURSOR_KEY, new_cursor_key()],
            )?;
            let key: String =
                conn.query_row("SELECT value FROM settings WHERE name = ?1", params![CURSOR_KEY], |r| {
                    r.get(0)
                })?;
            let file = if path == ":memory:" {
                None
            } else {
                use std::os::unix::fs::MetadataExt;
                let meta = std::fs::metadata(&path)
                    .map_err(|e| Error::Storage(format!("cannot examine {path}: {e}")))?;
                Some(Arc::new((std::path::PathBuf::from(&path), meta.dev(), meta.ino())))
            };
            Ok(Self {
                conn: Arc::new(Mutex::new(conn)),
                cursor_key: key.into_bytes().into(),
                file,
            })
        })
        .await
        .map_err(|e| Error::Storage(format!("sqlite open task: {e}")))?
    }

    /// Whether the database can be used: its file is still the one opened (not deleted or
    /// replaced) and a write commits.
    pub(super) async fn ping(&self) -> Result<(), Error> {
        if let Some(file) = &self.file {
            use std::os::unix::fs::MetadataExt;
            let (path, dev, ino) = file.as_ref();
            match std::fs::metadata(path) {
                Ok(meta) if (meta.dev(), meta.ino()) == (*dev, *ino) => {}
                Ok(_) => {
                    return Err(Error::StorageUnavailable(format!(
                        "sqlite: {} was replaced by another file; restart intel to use it",
                        path.display()
                    )));
                }
                Err(e) => {
                    return Err(Error::StorageUnavailable(format!(
                        "sqlite: {} is gone ({})",
                        path.display(),
                        e.kind()
                    )));
                }
            }
        }
        self.with(|conn| {
            conn.execute(
                "INSERT INTO settings (name, value) VALUES ('health_probe', ?1) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![Utc::now().to_rfc3339()],
            )?;
            Ok(())
        })
        .await
    }

    pub(super) fn cursor_key(&self) -> &[u8] {
        &self.cursor_key
    }

    pub(super) async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| Error::Storage("sqlite connection poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| Error::Storage(format!("sqlite task: {e}")))?
    }

    pub(super) async fn write(
        &self,
        collection: &str,
        objects: Vec<StixObject>,
        mode: WriteMode,
        now: DateTime<Utc>,
    ) -> Result<Vec<WriteResult>, Error> {
        let collection = collection.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let mut last_added = last_added(&tx, &collection)?;
            let results = objects
                .into_iter()
                .map(|object| write_one(&tx, &collection, object, mode, now, &mut last_added))
                .collect::<Result<Vec<_>, _>>()?;
            if mode == WriteMode::Merge && results.iter().any(|r| r.refused.is_some()) {
                // Dropping the transaction rolls it back: a merge is written whole or not at all.
                return Ok(results.into_iter().map(|r| WriteResult { added: false, ..r }).collect());
            }
            tx.commit()?;
            Ok(results)
        })
        .await
    }

    pub(super) async fn write_events(
        &self,
        collection: &str,
        base: Vec<StixObject>,
        events: Vec<EventObjects>,
        now: DateTime<Utc>,
    ) -> Result<EventsWritten, Error> {
        let collection = collection.to_owned();
        self.with(move |conn| {
            let mut tx = conn.transaction()?;
            let now_us = now.timestamp_micros();
            tx.execute(
                "DELETE FROM ingested_events WHERE collection = ?1 AND seen_us < ?2",
                params![collection, now_us - EVENT_RETENTION_SECS * 1_000_000],
            )?;
            let mut last_added = last_added(&tx, &collection)?;
            let mut out = EventsWritten::default();
            for object in base {
                let result = write_one(&tx, &collection, object, WriteMode::Merge, now, &mut last_added)?;
                super::note_base_refusal(&collection, &result);
                out.results.push(result);
            }
            for (index, event) in events.into_iter().enumerate() {
                let stored: Option<i64> = tx
                    .query_row(
                        "SELECT revision FROM ingested_events WHERE collection = ?1 AND event_id = ?2",
                        params![collection, event.event_id],
                        |r| r.get(0),
                    )
                    .optional()?;
                let seen = Seen::of(stored, event.revision);
                if seen == Seen::Duplicate {
                    out.duplicates += 1;
                    continue;
                }
                let observations = if seen == Seen::New { event.observations } else { Vec::new() };
                let matrix = event.matrix;
                // One savepoint per event: a refused object leaves the whole event out.
                let event_tx = tx.savepoint()?;
                let before = last_added;
                let mut results = Vec::new();
                let mut refusal = None;
                for object in event.objects.into_iter().chain(observations) {
                    let result = write_one(&event_tx, &collection, object, WriteMode::Merge, now, &mut last_added)?;
                    if result.refused.is_some() {
                        refusal = result.refused;
                        break;
                    }
                    results.push(result);
                }
                if let Some(reason) = refusal {
                    // Dropping the savepoint rolls the event back.
                    drop(event_tx);
                    last_added = before;
                    out.refused.push(EventRefused {
                        index,
                        event_id: event.event_id,
                        reason,
                    });
                    continue;
                }
                if let Some(observation) = &matrix {
                    super::matrix::sqlite::record(&event_tx, &collection, observation)?;
                }
                if let Some(campaign) = &event.campaign {
                    super::campaigns::record_sqlite(&event_tx, &collection, campaign)?;
                }
                event_tx.execute(
                    "INSERT INTO ingested_events (collection, event_id, revision, seen_us) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (collection, event_id) DO UPDATE SET revision = excluded.revision, seen_us = excluded.seen_us",
                    params![collection, event.event_id, i64::from(event.revision), now_us],
                )?;
                event_tx.commit()?;
                out.results.extend(results);
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    pub(super) async fn event_revision(&self, collection: &str, event_id: &str) -> Result<Option<i64>, Error> {
        let (collection, event_id) = (collection.to_owned(), event_id.to_owned());
        self.with(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT revision FROM ingested_events WHERE collection = ?1 AND event_id = ?2",
                    params![collection, event_id],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    pub(super) async fn prune_versions(&self, collection: &str, ids: &[String], keep: i64) -> Result<u64, Error> {
        let (collection, ids) = (collection.to_owned(), ids.to_vec());
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let mut dropped = 0u64;
            for id in &ids {
                dropped += tx.execute(
                    "DELETE FROM objects WHERE collection = ?1 AND id = ?2 AND version_us NOT IN \
                 (SELECT version_us FROM objects WHERE collection = ?1 AND id = ?2 ORDER BY version_us DESC LIMIT ?3)",
                    params![collection, id, keep],
                )? as u64;
            }
            tx.commit()?;
            Ok(dropped)
        })
        .await
    }

    pub(super) async fn query(&self, collection: &str, query: &Query) -> Result<Page, Error> {
        let (sql, params) = query.to_sql(collection, |n| format!("?{n}"));
        let limit = query.limit;
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let values = params.into_iter().map(|p| match p {
                Param::Text(s) => rusqlite::types::Value::Text(s),
                Param::Int(i) => rusqlite::types::Value::Integer(i),
            });
            let mut records: Vec<Record> = stmt
                .query_map(params_from_iter(values), |r| {
                    Ok(Record {
                        seq: r.get(0)?,
                        id: r.get(1)?,
                        version: r.get(2)?,
                        date_added_us: r.get(3)?,
                        spec_version: r.get(4)?,
                        body: r.get(5)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            let more = records.len() > limit;
            records.truncate(limit);
            Ok(Page { records, more })
        })
        .await
    }

    pub(super) async fn count(&self, collection: &str) -> Result<u64, Error> {
        let collection = collection.to_owned();
        self.with(move |conn| {
            let n: i64 = conn.query_row(
                "SELECT COUNT(DISTINCT id) FROM objects WHERE collection = ?1",
                params![collection],
                |r| r.get(0),
            )?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    pub(super) async fn put_status(&self, id: &str, status: &StoredStatus, now: DateTime<Utc>) -> Result<(), Error> {
        let (id, status) = (id.to_owned(), status.clone());
        self.with(move |conn| {
            let now_us = now.timestamp_micros();
            conn.execute(
                "DELETE FROM statuses WHERE created_us < ?1",
                params![now_us - STATUS_RETENTION_SECS * 1_000_000],
            )?;
            conn.execute(
                "INSERT OR REPLACE INTO statuses (id, created_us, body, collection, requester) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, now_us, status.body, status.collection, status.requester],
            )?;
            Ok(())
        })
        .await
    }

    pub(super) async fn status(&self, id: &str) -> Result<Option<StoredStatus>, Error> {
        let id = id.to_owned();
        self.with(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT body, collection, requester FROM statuses WHERE id = ?1",
                    params![id],
                    |r| {
                        Ok(StoredStatus {
                            body: r.get(0)?,
                            collection: r.get(1)?,
                            requester: r.get(2)?,
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    pub(super) async fn cursor(&self, name: &str) -> Result<i64, Error> {
        let name = name.to_owned();
        self.with(move |conn| {
            Ok(conn
                .query_row("SELECT seq FROM cursors WHERE name = ?1", params![name], |r| r.get(0))
                .optional()?
                .unwrap_or(0))
        })
        .await
    }

    pub(super) async fn set_cursor(&self, name: &str, seq: i64) -> Result<(), Error> {
        let name = name.to_owned();
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO cursors (name, seq) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
                params![name, seq],
            )?;
            Ok(())
        })
        .await
    }
}

/// The `date_added` of the collection's newest version (0 when empty).
fn last_added(conn: &Connection, collection: &str) -> Result<i64, Error> {
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(date_added_us), 0) FROM objects WHERE collection = ?1",
        params![collection],
        |r| r.get(0),
    )?)
}

/// The newest stored version of `object`'s id and, when a merge must look past it, the newest
/// by `object`'s creator.
fn stored_versions(
    conn: &Connection,
    collection: &str,
    object: &StixObject,
    mode: WriteMode,
) -> Result<(Option<Version>, Option<Version>), Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT body, version_us FROM objects WHERE collection = ?1 AND id = ?2 ORDER BY version_us DESC",
    )?;
    let mut rows = stmt.query(params![collection, object.id()])?;
    let mut latest: Option<Version> = None;
    while let Some(row) = rows.next()? {
        let version = Version {
            object: stored_object(&row.get::<_, String>(0)?)?,
            version_us: row.get(1)?,
        };
        match &latest {
            None if needs_own(mode, &version, object) => latest = Some(version),
            None => return Ok((Some(version), None)),
            Some(_) if version.object.creator() == object.creator() => return Ok((latest, Some(version))),
            Some(_) => {}
        }
    }
    Ok((latest, None))
}

/// Writes one object inside `conn`'s transaction, moving `last_added` forward when a version is
/// added.
fn write_one(
    conn: &Connection,
    collection: &str,
    object: StixObject,
    mode: WriteMode,
    now: DateTime<Utc>,
    last_added: &mut i64,
) -> Result<WriteResult, Error> {
    let date_added = now.timestamp_micros().max(*last_added + 1);
    let (latest, own) = stored_versions(conn, collection, &object, mode)?;
    let id = object.id().to_owned();
    let (object, version, version_us) = match plan(mode, latest, own, object, now, date_added) {
        Planned::Unchanged(result) | Planned::Refused(result) => return Ok(result),
        Planned::Insert(object, version, version_us) => (object, version, version_us),
    };
    let exists: bool = conn
        .query_row(
            "SELECT 1 FROM objects WHERE collection = ?1 AND id = ?2 AND version_us = ?3",
            params![collection, id, version_us],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !exists {
        conn.execute(
            "INSERT INTO objects (collection, id, type, spec_version, version, version_us, date_added_us, body) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                collection,
                id,
                object.object_type(),
                object.spec_version(),
                version,
                version_us,
                date_added,
                object.to_json()
            ],
        )?;
        *last_added = date_added;
    }
    Ok(WriteResult {
        id,
        version,
        added: !exists,
        refused: None,
    })
}
