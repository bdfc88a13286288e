//! Shared test fixtures: a TAXII server on 127.0.0.1:0 over a fresh store, tokens, and the
//! stores under test (SQLite always; PostgreSQL when `TEST_POSTGRES_URL` is set).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod grpc;

use std::sync::Arc;

use attackmesh_intel::{
    Intel, IntelConfig, Store,
    config::CollectionConfig,
    taxii::{TaxiiState, router},
};
use attackmesh_runtime::auth::{AuthConfig, Authenticator, Role};
use attackmesh_testkit::Tokens;
use tokio_util::sync::CancellationToken;

pub const TAXII: &str = "application/taxii+json;version=2.1";
// Callers as (name, token); the tokens are those testkit's table gives these names.
/// Analyst who may read and write `rw`.
pub const WRITER: (&str, &str) = ("writer", "writer-token");
/// Analyst who may only read `rw`.
pub const READER: (&str, &str) = ("reader", "reader-token");
/// Admin: everything.
pub const ADMIN: (&str, &str) = ("ops", "ops-token");
/// Detector: no TAXII at all.
pub const DETECTOR: (&str, &str) = ("sensor", "sensor-token");

/// The callers above.
pub fn tokens() -> Tokens {
    Tokens::new(&[
        (WRITER.0, Role::Analyst),
        (READER.0, Role::Analyst),
        (ADMIN.0, Role::Admin),
        (DETECTOR.0, Role::Detector),
    ])
}

pub fn auth_config() -> AuthConfig {
    tokens().auth()
}

pub fn config() -> IntelConfig {
    IntelConfig {
        collections: vec![
            CollectionConfig {
                id: "rw".into(),
                title: "Shared".into(),
                description: "read by all analysts, written by the writer".into(),
                read: vec!["*".into()],
                write: vec![WRITER.0.into()],
            },
            CollectionConfig {
                id: "private".into(),
                title: "Private".into(),
                description: String::new(),
                read: vec![WRITER.0.into()],
                write: vec![WRITER.0.into()],
            },
        ],
        max_body_bytes: 64 * 1024,
        page_size: 50,
        max_page_size: 200,
        ..Default::default()
    }
}

pub async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite:{}", dir.path().join("intel.db").display()))
        .await
        .unwrap();
    (store, dir)
}

/// The PostgreSQL store, or `None` (with a note) when no test database is configured. Fails
/// when `TEST_REQUIRE_POSTGRES=1` and none is.
pub async fn postgres_store() -> Option<Store> {
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(Store::open(&url).await.expect("connect to the test PostgreSQL")),
        _ => {
            assert!(
                std::env::var("TEST_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "TEST_REQUIRE_POSTGRES=1 but TEST_POSTGRES_URL is not set"
            );
            eprintln!("PostgreSQL store test NOT RUN: set TEST_POSTGRES_URL (scripts/with-postgres does)");
            None
        }
    }
}

/// A collection id nobody else uses (tests share one PostgreSQL database).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

pub struct TestServer {
    pub base: String,
    pub intel: Intel,
    stop: CancellationToken,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TestServer {
    pub async fn start(config: IntelConfig, store: Store) -> Self {
        let kb = attackmesh_attack::Kb::embedded().unwrap();
        let intel = Intel::new(store, kb, &config);
        let auth = Authenticator::new(&auth_config()).unwrap();
        let ui = attackmesh_intel::ui::UiState::new(&config, intel.clone(), auth.clone());
        let app = attackmesh_intel::ui::router(ui).merge(router(TaxiiState::new(&config, intel.clone(), auth)));
        let (listener, addr) = attackmesh_testkit::bind().await;
        let base = format!("http://{addr}");
        let stop = CancellationToken::new();
        tokio::spawn(attackmesh_runtime::metrics::serve_http(
            listener,
            app,
            stop.clone().cancelled_owned(),
        ));
        Self { base, intel, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/intel/{path}", self.base)
    }
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A minimal valid STIX 2.1 indicator.
pub fn indicator(n: usize) -> serde_json::Value {
    let id = format!(
        "indicator--{}",
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("t{n}").as_bytes())
    );
    serde_json::json!({
        "type": "indicator", "spec_version": "2.1", "id": id,
        "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
        "pattern": format!("[ipv4-addr:value = '10.0.{}.{}']", n / 256, n % 256),
        "pattern_type": "stix", "valid_from": "2026-01-01T00:00:00Z"
    })
}

pub fn arc<T>(t: T) -> Arc<T> {
    Arc::new(t)
}
