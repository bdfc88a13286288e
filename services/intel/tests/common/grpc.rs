//! The intel service as `attackmesh serve intel` runs it: gRPC on one 127.0.0.1:0 listener and
//! TAXII on another, wired by `server::serve` over a SQLite store in a temporary directory.

use attackmesh::proto::{
    AttributionStatus, EnrichedEvent, Indicator, IndicatorType, intel_service_client::IntelServiceClient,
};
use attackmesh_intel::IntelConfig;
use attackmesh_testkit::{bind, with_token};
use tonic::{Request, transport::Channel};

use super::{READER, TAXII};

pub struct Running {
    pub client: IntelServiceClient<Channel>,
    pub http: String,
    /// The `db` URL of the running service's store.
    pub db: String,
    /// The gRPC address.
    pub addr: std::net::SocketAddr,
    _intel: attackmesh_testkit::Running<attackmesh_intel::Error>,
    _dir: tempfile::TempDir,
}

pub async fn start(mut config: IntelConfig) -> Running {
    let dir = tempfile::tempdir().unwrap();
    config.data_dir = dir.path().to_owned();
    let db = config.db_url().expose().to_owned();
    let (http, http_addr) = bind().await;
    let server = super::tokens().server().await;
    let intel = attackmesh_testkit::Running::start(|listener, shutdown| async move {
        attackmesh_intel::server::serve(&config, server, listener, http, shutdown).await
    })
    .await;
    Running {
        client: IntelServiceClient::new(intel.channel()),
        http: format!("http://{http_addr}"),
        db,
        addr: intel.addr,
        _intel: intel,
        _dir: dir,
    }
}

pub fn as_caller<T>(msg: T, who: (&str, &str)) -> Request<T> {
    with_token(msg, who.1)
}

pub fn ind(kind: IndicatorType, value: &str) -> Indicator {
    Indicator {
        r#type: kind as i32,
        value: value.into(),
    }
}

/// A valid enriched event observing `indicators`, attributed to T1110.001.
pub fn enriched(id: &str, indicators: Vec<Indicator>) -> EnrichedEvent {
    EnrichedEvent {
        event_id: id.into(),
        timestamp: Some(pbjson_types::Timestamp {
            seconds: chrono::Utc::now().timestamp() - 60,
            nanos: 0,
        }),
        source_service: "suricata-edge-01".into(),
        event_type: "suricata.alert".into(),
        technique_ids: vec!["T1110.001".into()],
        confidence_score: 0.8,
        related_indicators: indicators,
        attribution_status: AttributionStatus::Ok as i32,
        revision: 1,
        ..Default::default()
    }
}

/// The objects of collection `rw` matching `filter`, as served over TAXII.
pub async fn taxii_objects(s: &Running, filter: &str) -> Vec<serde_json::Value> {
    let url = format!("{}/intel/collections/rw/objects/?{filter}", s.http);
    let body: serde_json::Value = super::client()
        .get(url)
        .bearer_auth(READER.1)
        .header("accept", TAXII)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body.get("objects")
        .and_then(|o| o.as_array())
        .cloned()
        .unwrap_or_default()
}
