//! Storage of TAXII collections: every version of every object with its `date_added`, TAXII
//! status resources, and the push cursors. SQLite (embedded, the default) for one replica,
//! PostgreSQL when several replicas share one store.
//!
//! Paging is by a per-row sequence number. Writers to one collection are serialised (one SQLite
//! connection; a PostgreSQL transaction-scoped advisory lock per collection), and `date_added` is
//! strictly increasing with the sequence inside a collection, so a cursor (`next`) or an exclusive
//! `added_after` never skips or repeats an object while new objects arrive.
//!
//! What a write may do to the versions already stored is decided here, the same way for both
//! engines (`plan`): only an object's creator adds versions of it, marking definitions are
//! never versioned, and attackmesh's merges build only on attackmesh's own versions. This
//! module decides nothing about which caller may read or write which collection.

pub mod campaigns;
pub mod matrix;
pub mod postgres;
pub mod query;
pub mod sqlite;
mod types;

use chrono::{DateTime, Utc};

pub use query::{Query, VersionMatch};
pub use types::{EventObjects, EventRefused, EventsWritten, Page, Record, StoredStatus, WriteMode, WriteResult};

use crate::{
    error::Error,
    stix::{
        StixObject,
        merge::{Stored, merge},
    },
};

/// How long TAXII status resources are kept.
pub const STATUS_RETENTION_SECS: i64 = 24 * 3600;

/// How long a collection remembers an ingested event (its id and highest revision), counted from
/// the last time the event was applied; older rows are dropped by the next event write to the
/// collection. The table is bounded by age rather than by count because what it guards against,
/// an at-least-once sender redelivering a batch after a lost answer or a crash, happens within
/// minutes to hours; a week covers a sender that was down over a weekend. An event redelivered
/// after that is counted again, as it was before events were remembered.
pub const EVENT_RETENTION_SECS: i64 = 7 * 24 * 3600;

/// What the collection knows of an event, and so what to write for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Never ingested (or forgotten): write everything.
    New,
    /// Ingested at a lower revision: write the objects but not the observations.
    Older,
    /// Ingested at this or a higher revision: write nothing.
    Duplicate,
}

impl Seen {
    /// Compares a stored revision (if any) with an incoming one.
    pub(crate) fn of(stored: Option<i64>, revision: u32) -> Self {
        match stored {
            None => Seen::New,
            Some(r) if r >= i64::from(revision) => Seen::Duplicate,
            Some(_) => Seen::Older,
        }
    }
}

/// A storage backend.
#[derive(Clone)]
pub enum Store {
    /// Embedded SQLite file.
    Sqlite(sqlite::SqliteStore),
    /// Shared PostgreSQL database.
    Postgres(postgres::PostgresStore),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Store::Sqlite(_) => "Store::Sqlite",
            Store::Postgres(_) => "Store::Postgres",
        })
    }
}

/// Where a `db` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// `sqlite:PATH` (or `sqlite::memory:`).
    Sqlite(String),
    /// `postgres://…` / `postgresql://…` (a secret: it may carry a password).
    Postgres(attackmesh_runtime::secret::Secret),
}

impl DbUrl {
    /// Parses a `db` setting.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(Error::Config("db: `sqlite:` needs a file path".into()));
            }
            Ok(DbUrl::Sqlite(path.to_owned()))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DbUrl::Postgres(url.into()))
        } else {
            Err(Error::Config("db: must be `sqlite:PATH` or `postgres://…`".into()))
        }
    }
}

impl Store {
    /// Opens (and creates the schema of) the store `url` names.
    pub async fn open(url: &str) -> Result<Self, Error> {
        match DbUrl::parse(url)? {
            DbUrl::Sqlite(path) => Ok(Store::Sqlite(sqlite::SqliteStore::open(&path).await?)),
            DbUrl::Postgres(url) => Ok(Store::Postgres(postgres::PostgresStore::open(url.expose(), 4).await?)),
        }
    }

    /// The lease that lets one replica push with cursor `name`: with PostgreSQL an advisory
    /// lock (replicas share the database, and exactly one of them pushes), with SQLite always
    /// held (one process owns the file).
    pub fn lease(&self, name: &str) -> Lease {
        match self {
            Store::Sqlite(_) => Lease::Local,
            Store::Postgres(s) => Lease::Postgres(Box::new(s.lease(name))),
        }
    }

    /// Checks that the database can be used now (reachable; for SQLite, the file still there
    /// and writable): the health probe.
    pub async fn ping(&self) -> Result<(), Error> {
        match self {
            Store::Sqlite(s) => s.ping().await,
            Store::Postgres(s) => s.ping().await,
        }
    }

    /// Writes objects into a collection in one transaction, in order. In [`WriteMode::Exact`] a
    /// refused object is skipped and the others are written; in [`WriteMode::Merge`] a refusal
    /// writes nothing at all (the results say what was refused).
    pub async fn write(
        &self,
        collection: &str,
        objects: Vec<StixObject>,
        mode: WriteMode,
        now: DateTime<Utc>,
    ) -> Result<Vec<WriteResult>, Error> {
        match self {
            Store::Sqlite(s) => s.write(collection, objects, mode, now).await,
            Store::Postgres(s) => s.write(collection, objects, mode, now).await,
        }
    }

    /// Writes `base` (merged, as [`WriteMode::Merge`]) and then the objects of every event the
    /// collection has not seen at the same or a higher revision, recording each applied event
    /// (id and revision) in the same transaction as its objects, so that a crash can neither
    /// record an event without its objects nor store them without the record. Events are
    /// compared in order, so a repeat inside one batch is a duplicate too. An event with a refused
    /// object is left out as a whole (listed in [`EventsWritten::refused`]) while the others are
    /// written. Rows older than [`EVENT_RETENTION_SECS`] are dropped on the way.
    pub async fn write_events(
        &self,
        collection: &str,
        base: Vec<StixObject>,
        events: Vec<EventObjects>,
        now: DateTime<Utc>,
    ) -> Result<EventsWritten, Error> {
        match self {
            Store::Sqlite(s) => s.write_events(collection, base, events, now).await,
            Store::Postgres(s) => s.write_events(collection, base, events, now).await,
        }
    }

    /// The highest revision of `event_id` the collection has ingested, if it remembers one.
    pub async fn event_revision(&self, collection: &str, event_id: &str) -> Result<Option<u32>, Error> {
        let stored = match self {
            Store::Sqlite(s) => s.event_revision(collection, event_id).await?,
            Store::Postgres(s) => s.event_revision(collection, event_id).await?,
        };
        Ok(stored.map(|r| u32::try_from(r).unwrap_or(u32::MAX)))
    }

    /// Deletes all but the newest `keep` versions of each of `ids` (0 keeps everything);
    /// returns how many versions were dropped. Used for objects attackmesh produces, whose
    /// sightings gain a version per observation.
    pub async fn prune_versions(&self, collection: &str, ids: &[String], keep: usize) -> Result<u64, Error> {
        if keep == 0 || ids.is_empty() {
            return Ok(0);
        }
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        match self {
            Store::Sqlite(s) => s.prune_versions(collection, ids, keep).await,
            Store::Postgres(s) => s.prune_versions(collection, ids, keep).await,
        }
    }

    /// Records matching `query` in write order, at most `query.limit`.
    pub async fn query(&self, collection: &str, query: &Query) -> Result<Page, Error> {
        match self {
            Store::Sqlite(s) => s.query(collection, query).await,
            Store::Postgres(s) => s.query(collection, query).await,
        }
    }

    /// How often each technique was observed in `collection` under `filter` (see [`matrix`]).
    pub async fn matrix_counts(
        &self,
        collection: &str,
        filter: &matrix::MatrixFilter,
    ) -> Result<matrix::MatrixCounts, Error> {
        match self {
            Store::Sqlite(s) => s.matrix_counts(collection, filter).await,
            Store::Postgres(s) => s.matrix_counts(collection, filter).await,
        }
    }

    /// The newest observations of `technique` under `filter`, at most `limit`, newest first.
    pub async fn technique_events(
        &self,
        collection: &str,
        technique: &str,
        filter: &matrix::MatrixFilter,
        limit: usize,
    ) -> Result<Vec<matrix::TechniqueEvent>, Error> {
        match self {
            Store::Sqlite(s) => s.technique_events(collection, technique, filter, limit).await,
            Store::Postgres(s) => s.technique_events(collection, technique, filter, limit).await,
        }
    }

    /// The detectors and campaigns observed in `collection`.
    pub async fn facets(&self, collection: &str) -> Result<matrix::Facets, Error> {
        match self {
            Store::Sqlite(s) => s.facets(collection).await,
            Store::Postgres(s) => s.facets(collection).await,
        }
    }

    /// The latest stored revision of campaign `id` in `collection`, as JSON.
    pub async fn campaign(&self, collection: &str, id: &str) -> Result<Option<String>, Error> {
        match self {
            Store::Sqlite(s) => s.campaign(collection, id).await,
            Store::Postgres(s) => s.campaign(collection, id).await,
        }
    }

    /// The latest revisions of at most `limit` campaigns of `collection`, latest activity first.
    pub async fn campaigns(&self, collection: &str, limit: usize) -> Result<Vec<String>, Error> {
        match self {
            Store::Sqlite(s) => s.campaigns(collection, limit).await,
            Store::Postgres(s) => s.campaigns(collection, limit).await,
        }
    }

    /// Number of distinct objects (all versions counted once) in a collection.
    pub async fn count(&self, collection: &str) -> Result<u64, Error> {
        match self {
            Store::Sqlite(s) => s.count(collection).await,
            Store::Postgres(s) => s.count(collection).await,
        }
    }

    /// Stores a TAXII status resource (JSON) answering `requester`'s write to `collection`;
    /// statuses older than a day are dropped.
    pub async fn put_status(&self, id: &str, status: &StoredStatus, now: DateTime<Utc>) -> Result<(), Error> {
        match self {
            Store::Sqlite(s) => s.put_status(id, status, now).await,
            Store::Postgres(s) => s.put_status(id, status, now).await,
        }
    }

    /// A TAXII status resource by id.
    pub async fn status(&self, id: &str) -> Result<Option<StoredStatus>, Error> {
        match self {
            Store::Sqlite(s) => s.status(id).await,
            Store::Postgres(s) => s.status(id).await,
        }
    }

    /// A random secret made when the store was first created and shared by every replica using
    /// it: the key TAXII `next` cursors are signed with.
    pub fn cursor_key(&self) -> &[u8] {
        match self {
            Store::Sqlite(s) => s.cursor_key(),
            Store::Postgres(s) => s.cursor_key(),
        }
    }

    /// The last sequence number delivered to a push target (0 when none).
    pub async fn cursor(&self, name: &str) -> Result<i64, Error> {
        match self {
            Store::Sqlite(s) => s.cursor(name).await,
            Store::Postgres(s) => s.cursor(name).await,
        }
    }

    /// Records that a push target has everything up to `seq`.
    pub async fn set_cursor(&self, name: &str, seq: i64) -> Result<(), Error> {
        match self {
            Store::Sqlite(s) => s.set_cursor(name, seq).await,
            Store::Postgres(s) => s.set_cursor(name, seq).await,
        }
    }
}

/// Name under which the cursor key is kept in the `settings` table.
/// The right of one replica to do work only one may do at a time (see [`Store::lease`]).
pub enum Lease {
    /// One process owns the store: always held.
    Local,
    /// A PostgreSQL advisory lock on a connection of its own.
    Postgres(Box<postgres::PgLease>),
}

impl Lease {
    /// True when this replica holds the lease now (taking it if it is free); an error when the
    /// database cannot say (then it is not held).
    pub async fn hold(&mut self) -> Result<bool, Error> {
        match self {
            Lease::Local => Ok(true),
            Lease::Postgres(lease) => lease.hold().await,
        }
    }
}

/// Version of the database schema this release reads and writes, kept in the `settings` table
/// (`schema_version`). A database without it was created before the schema was versioned: that
/// schema is version 1 (older columns are added on open). A newer version is refused, never
/// misread or altered.
pub const SCHEMA_VERSION: u32 = 1;
/// Name of the `settings` row holding [`SCHEMA_VERSION`].
pub(crate) const SCHEMA_VERSION_KEY: &str = "schema_version";

/// Checks the stored `schema_version` (none: an unversioned database, version 1).
pub(crate) fn check_schema_version(stored: Option<&str>) -> Result<(), Error> {
    let Some(stored) = stored else { return Ok(()) };
    match stored.trim().parse::<u32>() {
        Ok(v) if v <= SCHEMA_VERSION => Ok(()),
        Ok(v) => Err(Error::Storage(format!(
            "the database holds intel schema version {v}, written by a newer attackmesh; this release reads versions up to {SCHEMA_VERSION}: run the newer release (the database is left as it is)"
        ))),
        Err(_) => Err(Error::Storage(format!(
            "the database's schema_version setting is {:?}, not a version; refusing to use it",
            stored.chars().take(32).collect::<String>()
        ))),
    }
}

pub(crate) const CURSOR_KEY: &str = "taxii_cursor_key";

/// A fresh random cursor key (hex), for a store created without one.
pub(crate) fn new_cursor_key() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("{}{}", a.simple(), b.simple())
}

/// One stored version, as a write reads it.
pub(crate) struct Version {
    /// The object.
    pub(crate) object: StixObject,
    /// Its `version_us` column.
    pub(crate) version_us: i64,
}

/// Whether a write of `object` must look past `latest` for the version it builds on: merges
/// build on the newest version by the object's own creator.
pub(crate) fn needs_own(mode: WriteMode, latest: &Version, object: &StixObject) -> bool {
    mode == WriteMode::Merge && latest.object.creator() != object.creator()
}

/// Logs a refused identity or marking object of a write of events; the events still go ahead,
/// since the collection already holds a version of it.
pub(crate) fn note_base_refusal(collection: &str, result: &WriteResult) {
    if let Some(reason) = &result.refused {
        tracing::warn!(collection, id = %result.id, reason = %reason, "shared object not updated");
    }
}

/// Parses a stored body.
pub(crate) fn stored_object(body: &str) -> Result<StixObject, Error> {
    serde_json::from_str(body).map_err(|e| Error::Storage(format!("stored object is not valid JSON: {e}")))
}

/// What writing `object` over the stored versions of its id comes to.
pub(crate) enum Planned {
    /// Nothing new: the stored version stays (the result to report).
    Unchanged(WriteResult),
    /// Refused: nothing is written (the result to report).
    Refused(WriteResult),
    /// A version to insert, with its `version` text and microseconds.
    Insert(StixObject, String, i64),
}

/// Decides, the same way for every backend, whether `object` adds a version, given the newest
/// stored version of its id (`latest`) and, when that is another creator's, the newest by the
/// object's creator (`own`, looked up only for merges: see [`needs_own`]).
///
/// Objects attackmesh produces ([`WriteMode::Merge`]) fold into `own` (or `latest` when it is
/// theirs) and always follow `latest`. Objects taken as given ([`WriteMode::Exact`]) are
/// refused when they would version another creator's object or a marking definition, and are
/// left alone when they are the same unversioned object again.
pub(crate) fn plan(
    mode: WriteMode,
    latest: Option<Version>,
    own: Option<Version>,
    object: StixObject,
    now: DateTime<Utc>,
    date_added_us: i64,
) -> Planned {
    let id = object.id().to_owned();
    let result = |version: String, refused: Option<String>| WriteResult {
        id: id.clone(),
        version,
        added: false,
        refused,
    };
    let latest_version = || {
        latest
            .as_ref()
            .and_then(|l| l.object.version().map(str::to_owned))
            .unwrap_or_default()
    };
    let refused = |why: String| Planned::Refused(result(object.version().unwrap_or_default().to_owned(), Some(why)));
    let candidate = match mode {
        WriteMode::Merge => {
            let base = match &latest {
                Some(l) if !needs_own(mode, l, &object) => Some(l),
                _ => own.as_ref(),
            };
            let base = base.map(|v| Stored {
                object: &v.object,
                version_us: v.version_us,
            });
            match merge(base, latest.as_ref().map(|l| l.version_us), object.clone(), now) {
                Ok(candidate) => candidate,
                Err(why) => return refused(why),
            }
        }
        WriteMode::Exact => match &latest {
            Some(l) if object.version().is_none() && l.object == object => None,
            Some(l) if l.object.creator() != object.creator() => {
                return refused(format!(
                    "`{id}` exists with another creator; only an object's creator may add versions of it"
                ));
            }
            Some(l) if object.object_type() == "marking-definition" && l.object != object => {
                return refused(format!("`{id}` exists; marking definitions cannot be versioned"));
            }
            _ => Some(object.clone()),
        },
    };
    let Some(object) = candidate else {
        return Planned::Unchanged(result(latest_version(), None));
    };
    match version_of(&object, date_added_us) {
        Ok((version, version_us)) => Planned::Insert(object, version, version_us),
        Err(why) => refused(why),
    }
}

/// The version of an object as stored, and its sortable form; objects with neither `modified`
/// nor `created` are versioned by the date they are added.
pub(crate) fn version_of(object: &StixObject, date_added_us: i64) -> Result<(String, i64), String> {
    match object.version() {
        Some(v) => match crate::stix::parse_micros(v) {
            Some(us) => Ok((v.to_owned(), us)),
            None => Err(format!("`modified`/`created` is not an RFC 3339 timestamp: {v}")),
        },
        None => Ok((crate::stix::taxii_timestamp(date_added_us), date_added_us)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_urls() {
        assert_eq!(
            DbUrl::parse("sqlite:/var/lib/x.db").unwrap(),
            DbUrl::Sqlite("/var/lib/x.db".into())
        );
        assert_eq!(
            DbUrl::parse("sqlite:///var/lib/x.db").unwrap(),
            DbUrl::Sqlite("/var/lib/x.db".into())
        );
        assert_eq!(
            DbUrl::parse("sqlite:data/x.db").unwrap(),
            DbUrl::Sqlite("data/x.db".into())
        );
        assert!(matches!(DbUrl::parse("postgres://u@h/db").unwrap(), DbUrl::Postgres(_)));
        assert!(DbUrl::parse("mysql://h").is_err());
        assert!(DbUrl::parse("sqlite:").is_err());
    }

    #[test]
    fn events_are_new_older_or_duplicates_by_revision() {
        assert_eq!(Seen::of(None, 1), Seen::New);
        assert_eq!(Seen::of(Some(1), 2), Seen::Older);
        assert_eq!(Seen::of(Some(2), 2), Seen::Duplicate);
        assert_eq!(Seen::of(Some(3), 2), Seen::Duplicate);
    }
}
