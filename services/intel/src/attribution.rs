//! Attribution of manually shared indicators that arrive without technique ids: the description
//! and the indicators become a `DetectionEvent` that goes through the attribution service (gRPC,
//! when configured) or the embedded engine. When the configured service is unreachable the
//! result is `DEGRADED` with no technique links, never an error and never a guess.

use std::{path::Path, sync::Arc, time::Duration};

use attackmesh::proto::{
    AttributeRequest, Attribution, AttributionStatus, DetectionEvent, DetectorKind, Endpoint, Indicator, IndicatorType,
    Process, attribution_service_client::AttributionServiceClient,
};
use attackmesh_attack::{Engine, Kb};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::error::Error;

/// Event type of detections made from shared indicators (rule packs may match it).
pub const SHARE_EVENT_TYPE: &str = "intel.share";

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
    client: AttributionServiceClient<Channel>,
    token: Option<Arc<str>>,
    timeout: Duration,
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
    /// A client of the attribution service at `endpoint` (connects lazily; `kb` validates the
    /// ids it returns). `ca_file` enables TLS for `https://` endpoints.
    pub fn remote(
        endpoint: &str,
        token_file: Option<&Path>,
        ca_file: Option<&Path>,
        timeout: Duration,
        kb: Arc<Kb>,
    ) -> Result<Self, Error> {
        let mut ep = Channel::from_shared(endpoint.to_owned())
            .map_err(|e| Error::Config(format!("attribution_endpoint: {e}")))?
            .connect_timeout(timeout)
            .timeout(timeout);
        if endpoint.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = ca_file {
                let pem = std::fs::read(ca)
                    .map_err(|e| Error::Config(format!("cannot read {}: {}", ca.display(), e.kind())))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            ep = ep
                .tls_config(tls)
                .map_err(|e| Error::Config(format!("attribution_endpoint tls: {e}")))?;
        }
        let token = match token_file {
            Some(p) => Some(read_secret(p)?.into()),
            None => None,
        };
        Ok(Attributor::Remote(Box::new(Remote {
            client: AttributionServiceClient::new(ep.connect_lazy()),
            token,
            timeout,
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
    async fn call(&self, event: DetectionEvent) -> Result<Attribution, String> {
        let request = AttributeRequest {
            batch_id: 1,
            events: vec![event],
            trace_context: Default::default(),
        };
        let mut req = tonic::Request::new(futures::stream::iter([request]));
        req.set_timeout(self.timeout);
        if let Some(token) = &self.token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| "token is not valid header text".to_owned())?;
            req.metadata_mut().insert("authorization", value);
        }
        let mut client = self.client.clone();
        let call = async move {
            let mut stream = client
                .attribute(req)
                .await
                .map_err(|s| format!("{}: {}", s.code(), s.message()))?
                .into_inner();
            let response = stream
                .message()
                .await
                .map_err(|s| format!("{}: {}", s.code(), s.message()))?
                .ok_or_else(|| "stream closed without a response".to_owned())?;
            response
                .attributions
                .into_iter()
                .next()
                .ok_or_else(|| "empty response".to_owned())
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| "timed out".to_owned())?
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

/// Reads a secret file (trimmed); the error names the file, never the content.
pub(crate) fn read_secret(path: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read secret {}: {}", path.display(), e.kind())))?;
    let text = text.trim().to_owned();
    if text.is_empty() {
        return Err(Error::Config(format!("secret file {} is empty", path.display())));
    }
    Ok(text)
}
