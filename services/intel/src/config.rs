//! Configuration of the intel service (the `intel` section of the product config).
//!
//! Defaults work out of the box on one machine: a SQLite file under `data_dir`, one collection
//! readable by every analyst, TLP 2.0 AMBER, the embedded attribution engine, no push targets.
//! Only parsing, defaults and validation live here; the runtime crate layers file and env values.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use attackmesh_runtime::{backoff::Backoff, peer::PeerConfig, secret::Secret};
use serde::{Deserialize, Serialize};

use crate::{
    error::Error,
    stix::{Producer, StixOptions, Tlp, TlpVersion, builder::DEFAULT_MIN_ACTOR_SCORE, deterministic_id},
    store::DbUrl,
};

/// Largest TAXII page a client may ask for.
pub const MAX_PAGE_SIZE_LIMIT: usize = 10_000;
/// Deadline of one call to the attribution service, unless `attribution.request_timeout` is set.
pub const DEFAULT_ATTRIBUTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before trying a failed call to the attribution service again, unless
/// `attribution.backoff` is set.
pub const DEFAULT_ATTRIBUTION_BACKOFF: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));

/// Intel service settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntelConfig {
    /// Address of the TAXII 2.1 HTTP listener.
    pub http_listen: SocketAddr,
    /// Base URL clients reach the TAXII server at (e.g. `https://intel.example.org`), used in
    /// discovery; unset: API roots are advertised as relative URLs.
    pub public_url: Option<String>,
    /// Path segment of the one TAXII API root (`/intel/`).
    pub api_root: String,
    /// Title of the TAXII server and API root.
    pub title: String,
    /// Directory for the default SQLite database.
    pub data_dir: PathBuf,
    /// Storage: `sqlite:PATH` or `postgres://user:password@host/db` (several replicas); a
    /// secret, as the URL may carry a password. Unset: `sqlite:<data_dir>/intel.db`.
    pub db: Option<Secret>,
    /// TAXII collections; unset: one collection every analyst may read.
    pub collections: Vec<CollectionConfig>,
    /// Collection that events and `ShareIndicators` without a collection go to; unset: the first.
    pub default_collection: Option<String>,
    /// TLP level of every object attackmesh creates.
    pub tlp: Tlp,
    /// TLP edition of the marking definitions: "2.0" (default) or "1.0".
    pub tlp_version: TlpVersion,
    /// Name of the STIX `identity` that creates the objects.
    pub identity_name: String,
    /// Lowest actor score that links an intrusion-set to indicators.
    pub min_actor_score: f64,
    /// Emit `sighting` objects for indicators observed in events.
    pub sightings: bool,
    /// Versions kept of each object attackmesh produces (a sighting gains one per observation);
    /// older ones are dropped. 0 keeps every version.
    pub max_versions: usize,
    /// ATT&CK knowledge base that technique and group ids are checked against: a compact KB or
    /// an official bundle (`.json`/`.json.gz`); unset: the embedded one. Use the same file as
    /// the attribution service.
    pub kb_path: Option<PathBuf>,
    /// The attribution service, for `ShareIndicators` without technique ids: `endpoints`
    /// (`dns:///` balances over a headless Service's replicas), `token_file` or `token` (an
    /// `admin` token: the `Attribute` RPC is reserved to attackmesh's own services), `tls`
    /// (unset fields: the process's `tls`, so under mutual TLS intel presents its own
    /// certificate), `connect_timeout`, `request_timeout` (deadline of one share's attribution,
    /// retries included; default 5s) and `backoff` (pause before trying an unavailable service
    /// again; default 50ms to 500ms). No endpoints: the embedded attribution engine.
    pub attribution: PeerConfig,
    /// Largest TAXII request body, in bytes (advertised as `max_content_length`).
    pub max_body_bytes: usize,
    /// Page size when a TAXII client gives no `limit`.
    pub page_size: usize,
    /// Largest page a TAXII client gets, whatever `limit` it asks for.
    pub max_page_size: usize,
    /// Remote TAXII collections new objects are pushed to.
    pub push: Vec<PushTarget>,
    /// How often the database is probed for gRPC health: NOT_SERVING while it cannot be
    /// reached or written (PostgreSQL down, the SQLite file gone), SERVING once it can again.
    #[serde(with = "humantime_serde")]
    pub db_probe_interval: Duration,
}

/// One TAXII collection and who may use it. Callers with the `admin` role may read and write
/// every collection; `analyst` callers need their token name in `read`/`write` (or `*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionConfig {
    /// Collection id (a UUID is recommended; letters, digits, `-`, `_`, `.`).
    pub id: String,
    /// Title.
    pub title: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Token names that may read; `*` for every authenticated analyst.
    #[serde(default)]
    pub read: Vec<String>,
    /// Token names that may write; `*` for every authenticated analyst.
    #[serde(default)]
    pub write: Vec<String>,
}

/// A remote TAXII 2.1 collection that receives this server's new objects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushTarget {
    /// Name in logs and metrics; also names the persisted cursor.
    pub name: String,
    /// URL of the remote collection, e.g. `https://taxii.partner.example/api1/collections/<id>/`.
    pub url: String,
    /// Local collection pushed; unset: the default collection.
    #[serde(default)]
    pub collection: Option<String>,
    /// HTTP Basic user name (with `password_file`).
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the HTTP Basic password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// File holding a bearer token (instead of Basic).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// PEM CA bundle to verify the remote server with (in addition to the system roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How often new objects are looked for.
    #[serde(with = "humantime_serde", default = "default_push_interval")]
    pub interval: Duration,
    /// Most objects per POST.
    #[serde(default = "default_push_batch")]
    pub batch: usize,
    /// Deadline of one HTTP request.
    #[serde(with = "humantime_serde", default = "default_push_timeout")]
    pub timeout: Duration,
    /// Longest wait between retries.
    #[serde(with = "humantime_serde", default = "default_push_backoff")]
    pub max_backoff: Duration,
}

fn default_push_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_push_batch() -> usize {
    100
}
fn default_push_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_push_backoff() -> Duration {
    Duration::from_secs(300)
}

/// Id of the collection created when none is configured.
pub fn default_collection_id() -> String {
    deterministic_id("collection", "attackmesh-indicators")
        .trim_start_matches("collection--")
        .to_owned()
}

impl Default for IntelConfig {
    fn default() -> Self {
        Self {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 50055)),
            public_url: None,
            api_root: "intel".into(),
            title: "attackmesh intel".into(),
            data_dir: PathBuf::from("data"),
            db: None,
            collections: Vec::new(),
            default_collection: None,
            tlp: Tlp::Amber,
            tlp_version: TlpVersion::V2,
            identity_name: "attackmesh".into(),
            min_actor_score: DEFAULT_MIN_ACTOR_SCORE,
            sightings: true,
            max_versions: 20,
            kb_path: None,
            attribution: PeerConfig::default(),
            max_body_bytes: 10 * 1024 * 1024,
            page_size: 100,
            max_page_size: 1000,
            push: Vec::new(),
            db_probe_interval: Duration::from_secs(2),
        }
    }
}

impl IntelConfig {
    /// Checks values, ids and that configured files exist.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Config(m));
        if !is_segment(&self.api_root) {
            return bad(format!(
                "api_root `{}` must be one URL path segment of [A-Za-z0-9._-]",
                self.api_root
            ));
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return bad("public_url must start with http:// or https://".into());
        }
        DbUrl::parse(self.db_url().expose())?;
        let collections = self.collections();
        for (i, c) in collections.iter().enumerate() {
            if !is_segment(&c.id) {
                return bad(format!("collections[{i}].id `{}` must be [A-Za-z0-9._-]", c.id));
            }
            if c.title.trim().is_empty() {
                return bad(format!("collections[{i}].title is required"));
            }
            if collections[..i].iter().any(|o| o.id == c.id) {
                return bad(format!("collections[{i}].id `{}` is listed twice", c.id));
            }
        }
        if let Some(d) = &self.default_collection
            && !collections.iter().any(|c| &c.id == d)
        {
            return bad(format!("default_collection `{d}` is not one of the collections"));
        }
        if self.tlp == Tlp::AmberStrict && self.tlp_version == TlpVersion::V1 {
            return bad("tlp amber+strict exists only in tlp_version 2.0".into());
        }
        if self.identity_name.trim().is_empty() {
            return bad("identity_name is required".into());
        }
        if !(0.0..=1.0).contains(&self.min_actor_score) {
            return bad(format!(
                "min_actor_score must be within [0, 1], got {}",
                self.min_actor_score
            ));
        }
        if let Err(why) = self.attribution.validate() {
            return bad(format!("attribution.{why}"));
        }
        if !(1024..=1024 * 1024 * 1024).contains(&self.max_body_bytes) {
            return bad(format!(
                "max_body_bytes must be 1 KiB to 1 GiB, got {}",
                self.max_body_bytes
            ));
        }
        if self.max_page_size == 0 || self.max_page_size > MAX_PAGE_SIZE_LIMIT {
            return bad(format!("max_page_size must be 1 to {MAX_PAGE_SIZE_LIMIT}"));
        }
        if self.page_size == 0 || self.page_size > self.max_page_size {
            return bad("page_size must be 1 to max_page_size".into());
        }
        if let Some(kb) = &self.kb_path {
            readable(kb)?;
        }
        for (i, t) in self.push.iter().enumerate() {
            self.validate_push(i, t, &collections)?;
        }
        Ok(())
    }

    fn validate_push(&self, i: usize, t: &PushTarget, collections: &[CollectionConfig]) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Config(format!("push[{i}]: {m}")));
        if !is_segment(&t.name) {
            return bad("name must be [A-Za-z0-9._-]".into());
        }
        if self.push[..i].iter().any(|o| o.name == t.name) {
            return bad(format!("name `{}` is listed twice", t.name));
        }
        if !(t.url.starts_with("http://") || t.url.starts_with("https://")) || !t.url.contains("/collections/") {
            return bad("url must be an http(s) URL of a remote collection (…/collections/<id>/)".into());
        }
        if let Some(c) = &t.collection
            && !collections.iter().any(|x| &x.id == c)
        {
            return bad(format!("collection `{c}` is not one of the collections"));
        }
        if t.username.is_some() != t.password_file.is_some() {
            return bad("username and password_file go together".into());
        }
        if t.token_file.is_some() && t.password_file.is_some() {
            return bad("use either token_file or username + password_file".into());
        }
        if t.batch == 0 || t.batch > MAX_PAGE_SIZE_LIMIT {
            return bad(format!("batch must be 1 to {MAX_PAGE_SIZE_LIMIT}"));
        }
        if t.interval < Duration::from_millis(100) || t.timeout.is_zero() || t.max_backoff < t.interval {
            return bad("interval must be at least 100ms, timeout positive, max_backoff at least interval".into());
        }
        for file in [&t.password_file, &t.token_file, &t.ca_file].into_iter().flatten() {
            readable(file).map_err(|e| Error::Config(format!("push[{i}]: {e}")))?;
        }
        Ok(())
    }

    /// The storage URL in force (a secret: it may carry a password).
    pub fn db_url(&self) -> Secret {
        match &self.db {
            Some(db) => db.clone(),
            None => Secret::new(format!("sqlite:{}", self.data_dir.join("intel.db").display())),
        }
    }

    /// Deadline of one share's attribution by the attribution service, retries included.
    pub fn attribution_timeout(&self) -> Duration {
        self.attribution.request_timeout_or(DEFAULT_ATTRIBUTION_TIMEOUT)
    }

    /// The collections in force (the built-in one when none is configured).
    pub fn collections(&self) -> Vec<CollectionConfig> {
        if !self.collections.is_empty() {
            return self.collections.clone();
        }
        vec![CollectionConfig {
            id: default_collection_id(),
            title: "attackmesh indicators".into(),
            description: "STIX 2.1 indicators derived from attackmesh detections, mapped to MITRE ATT&CK".into(),
            read: vec!["*".into()],
            write: Vec::new(),
        }]
    }

    /// Id of the default collection.
    pub fn default_collection_id(&self) -> String {
        self.default_collection.clone().unwrap_or_else(|| {
            self.collections()
                .first()
                .map(|c| c.id.clone())
                .unwrap_or_else(default_collection_id)
        })
    }

    /// How STIX objects are built under this config.
    pub fn stix_options(&self) -> StixOptions {
        StixOptions {
            producer: Producer {
                name: self.identity_name.clone(),
            },
            tlp: self.tlp,
            tlp_version: self.tlp_version,
            min_actor_score: self.min_actor_score,
            sightings: self.sightings,
            now: None,
        }
    }
}

fn is_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s != "."
        && s != ".."
}

fn readable(path: &PathBuf) -> Result<(), Error> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|e| Error::Config(format!("cannot read {}: {}", path.display(), e.kind())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_use_sqlite_under_the_data_dir() {
        let c = IntelConfig::default();
        c.validate().unwrap();
        assert_eq!(c.db_url().expose(), "sqlite:data/intel.db");
        assert_eq!(c.attribution_timeout(), DEFAULT_ATTRIBUTION_TIMEOUT);
        assert_eq!(c.collections().len(), 1);
        assert_eq!(c.default_collection_id(), default_collection_id());
        assert_eq!(c.tlp, Tlp::Amber);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(serde_json::from_str::<IntelConfig>(r#"{"http_listenn": "127.0.0.1:1"}"#).is_err());
        let c: IntelConfig = serde_json::from_str(r#"{"tlp": "amber+strict", "tlp_version": "1.0"}"#).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("amber+strict"));
        let c: IntelConfig = serde_json::from_str(r#"{"db": "mysql://x"}"#).unwrap();
        assert!(c.validate().is_err());
        let c: IntelConfig = serde_json::from_str(r#"{"default_collection": "nope"}"#).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("nope"));
        let c: IntelConfig = serde_json::from_str(
            r#"{"push": [{"name": "p", "url": "http://h/api1/collections/x/", "token_file": "/nonexistent/t"}]}"#,
        )
        .unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("push[0]"));
        let c: IntelConfig = serde_json::from_str(r#"{"attribution": {"endpoints": ["ftp://a:1"]}}"#).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("attribution.endpoints"));
        assert!(serde_json::from_str::<IntelConfig>(r#"{"attribution_endpoint": "http://a:1"}"#).is_err());
        let c: IntelConfig = serde_json::from_str(r#"{"db": "postgres://intel:pa55word@db/intel"}"#).unwrap();
        c.validate().unwrap();
        assert!(
            !format!("{c:?}").contains("pa55word"),
            "the database password never shows"
        );
    }

    #[test]
    fn the_attribution_link_reads_like_every_other_link() {
        let c: IntelConfig = serde_json::from_str(
            r#"{"attribution": {"endpoints": ["dns:///attribution-headless.ns.svc:50051"],
                "request_timeout": "2s", "tls": {"ca_file": null}}}"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.attribution_timeout(), Duration::from_secs(2));
        assert!(c.attribution.has_endpoints());
    }

    #[test]
    fn collections_with_permissions_parse() {
        let c: IntelConfig = serde_json::from_str(
            r#"{"collections": [{"id": "a1", "title": "A", "read": ["*"], "write": ["siem-export"]}],
                "push": [{"name": "partner", "url": "https://h/api1/collections/x/", "interval": "2s"}]}"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.default_collection_id(), "a1");
        assert_eq!(c.push[0].interval, Duration::from_secs(2));
        assert_eq!(c.push[0].batch, 100);
    }
}
