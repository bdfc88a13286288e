//! Attribution of manually shared indicators that arrive without technique ids: the description
//! and the indicators become a `DetectionEvent` that goes through the attribution service (gRPC,
//! over the runtime's peer link, when `attribution.endpoints` is set) or the embedded engine.
//! When the service stays unreachable for the call's deadline the result is `DEGRADED` with no
//! technique links, never an error and never a guess.

use std::{sync::Arc, time::Duration};

use attackmesh::proto::{
    AttributeRequest, Attribution, AttributionStatus, DetectionEvent, DetectorKind, Endpoint, Indicator, IndicatorType,
    Process, attribution_service_client::AttributionServiceClient,
};
use attackmesh_attack::{Engine, Kb};
use attackmesh_runtime::{
    backoff::Backoff,
    peer::{DEFAULT_REFRESH, Peer, PeerConfig},
};
use tokio::time::Instant;
use tonic::Code;

use crate::error::Error;

/// Event type of detections made from shared indicators (rule packs may match it).
pub const SHARE_EVENT_TYPE: &str = "intel.share";
/// Calls one share makes to an unavailable attribution service before it goes DEGRADED.
const MAX_ATTEMPTS: u32 = 3;

/// Attributes detections, remotely or in-process.
#[derive(Clone)]
pub enum Attributor {
    /// The embedded knowledge base and rule packs.
    Embedded(Arc<Engine>),
    /// The attribution service.
    Remote(Box<Remote>),
}

/// A client of the attribution service.
#[derive(Clone)]
pub struct Remote {
    peer: Peer,
    timeout: Duration,
    backoff: Backoff,
    kb: Arc<Kb>,
}

impl std::fmt::Debug for Attributor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Attributor::Embedded(_) => "Attributor::Embedded",
            Attributor::Remote(_) => "Attributor::Remote",
        })
    }
}

impl Attributor {
    /// A client of the attribution service `link` describes (resolves its endpoints and loads
    /// its token now, connects on the first call; `kb` validates the ids it returns). One share
    /// waits at most `timeout` for it, pausing `backoff` between tries of an unavailable service.
    pub async fn remote(link: &PeerConfig, timeout: Duration, backoff: Backoff, kb: Arc<Kb>) -> Result<Self, Error> {
        let peer = link
            .connect("attribution", DEFAULT_REFRESH)
            .await
            .map_err(|e| match e {
                attackmesh_runtime::Error::ConfigInvalid(why) => Error::Config(format!("attribution.{why}")),
                other => Error::Config(format!("attribution: {other}")),
            })?;
        Ok(Attributor::Remote(Box::new(Remote {
            peer,
            timeout,
            backoff,
            kb,
        })))
    }

    /// Attributes one detection; `DEGRADED` (detector hints only) when the service fails.
    pub async fn attribute(&self, event: DetectionEvent) -> Attribution {
        match self {
            Attributor::Embedded(engine) => engine.attribute(&event),
            Attributor::Remote(remote) => match remote.call(event.clone()).await {
                Ok(a) => a,
                Err(why) => {
                    tracing::warn!(reason = %why, "attribution service unavailable; indicators shared as degraded");
                    let mut a = Engine::degraded(&remote.kb, &event);
                    a.status = AttributionStatus::Degraded as i32;
                    a
                }
            },
        }
    }
}

impl Remote {
    /// Attributes `event`, trying an unavailable service again (another replica, a restart)
    /// until `MAX_ATTEMPTS` or the deadline.
    async fn call(&self, event: DetectionEvent) -> Result<Attribution, String> {
        let deadline = Instant::now() + self.timeout;
        let mut retries = self.backoff.retries();
        loop {
            let attempt = tokio::time::timeout_at(deadline, self.call_once(event.clone(), deadline)).await;
            let status = match attempt {
                Err(_) => return Err("timed out".to_owned()),
                Ok(Ok(attribution)) => return Ok(attribution),
                Ok(Err(status)) => status,
            };
            let why = format!("{}: {}", status.code(), status.message());
            let pause = retries.next_delay();
            if status.code() != Code::Unavailable
                || retries.attempt() >= MAX_ATTEMPTS
                || Instant::now() + pause >= deadline
            {
                return Err(why);
            }
            tracing::debug!(reason = %why, retry_in = ?pause, "attribution service unavailable; trying again");
            tokio::time::sleep(pause).await;
        }
    }

    async fn call_once(&self, event: DetectionEvent, deadline: Instant) -> Result<Attribution, tonic::Status> {
        let request = AttributeRequest {
            batch_id: 1,
            events: vec![event],
            trace_context: Default::default(),
            // Full attributions: one event per share, too few to be worth filling in locally.
            ..Default::default()
        };
        let mut req = tonic::Request::new(futures::stream::iter([request]));
        req.set_timeout(deadline.saturating_duration_since(Instant::now()));
        self.peer.authorize(req.metadata_mut());
        let mut stream = AttributionServiceClient::new(self.peer.channel())
            .attribute(req)
            .await?
            .into_inner();
        let response = stream
            .message()
            .await?
            .ok_or_else(|| tonic::Status::unavailable("stream closed without a response"))?;
        response
            .attributions
            .into_iter()
            .next()
            .ok_or_else(|| tonic::Status::internal("empty response"))
    }
}

/// The detection attribution sees for shared indicators: the description, the indicators, and
/// the first command line as the process command line (command-line rules read it).
pub fn share_detection(description: &str, indicators: &[Indicator], confidence: f64, source: &str) -> DetectionEvent {
    let now = chrono::Utc::now();
    let command_line = indicators
        .iter()
        .find(|i| i.r#type == IndicatorType::ProcessCommandLine as i32)
        .map(|i| i.value.clone())
        .unwrap_or_default();
    DetectionEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        timestamp: Some(pbjson_types::Timestamp {
            seconds: now.timestamp(),
            nanos: 0,
        }),
        source_service: if source.trim().is_empty() {
            "intel".into()
        } else {
            source.to_owned()
        },
        detector_kind: DetectorKind::Other as i32,
        event_type: SHARE_EVENT_TYPE.into(),
        source: (!command_line.is_empty()).then(|| Endpoint {
            process: Some(Process {
                command_line,
                ..Default::default()
            }),
            ..Default::default()
        }),
        description: description.to_owned(),
        indicators: indicators.to_vec(),
        detector_confidence: (confidence > 0.0).then_some(confidence),
        ..Default::default()
    }
}
