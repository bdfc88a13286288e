//! [`Attributor`]: attribution of detections over the long-lived `Attribute` streams, with the
//! DEGRADED fallback.
//!
//! Large batches are split into `attribution.max_batch` chunks that are attributed
//! concurrently. A chunk the attribution service cannot answer in time is attributed with
//! [`Engine::degraded`] (validated detector hints only, status DEGRADED); the caller decides
//! whether to queue it for re-attribution. A chunk is never dropped.
//!
//! Enrichment asks for compact attributions of its own knowledge base's ATT&CK release. When the
//! caller will export them compact (export fills in the same release), they stay compact, in the
//! form an `Export` batch carries ([`compact::for_export`]); otherwise they are filled in from
//! the knowledge base ([`compact::expand`]) before anything else sees them. Either way a compact
//! answer this knowledge base could not fill in is no answer. A service of another release, or
//! one that predates the option, answers in full and its answer is used as it is.

use std::{collections::HashMap, sync::Arc};

use attackmesh::proto::{
    AttributeRequest, AttributeResponse, Attribution, AttributionStatus, attribution_service_server,
};
use attackmesh_attack::{Engine, Kb, compact};
use futures::future::join_all;
use tokio::sync::watch;

use crate::{
    detection::Detection,
    encode::AttributeBatch,
    upstream::link::{Link, LinkError, Rpc},
};

/// The `Attribute` RPC, asking for compact attributions of one ATT&CK release.
pub(crate) struct AttributeRpc {
    compact_for_attack_version: String,
}

impl AttributeRpc {
    /// Asks for compact attributions whenever attribution's release is that of `kb`.
    pub(crate) fn compact_for(kb: &Kb) -> Self {
        Self {
            compact_for_attack_version: kb.attack_version().to_owned(),
        }
    }
}

impl Rpc for AttributeRpc {
    type Req = AttributeBatch;
    type Resp = AttributeResponse;
    const PATH: &'static str = attackmesh::grpc_path!(attribution_service_server::SERVICE_NAME, "Attribute");

    type Item = Detection;
    type Options = ();

    fn batch_id(resp: &AttributeResponse) -> u64 {
        resp.batch_id
    }

    fn request(
        &self,
        batch_id: u64,
        events: Vec<Detection>,
        trace_context: HashMap<String, String>,
        (): (),
    ) -> AttributeBatch {
        let request = AttributeRequest {
            batch_id,
            events: Vec::new(),
            trace_context,
            compact_for_attack_version: self.compact_for_attack_version.clone(),
        };
        AttributeBatch::new(request, events)
    }

    fn into_items(request: AttributeBatch) -> Vec<Detection> {
        request.into_detections()
    }

    fn items(request: &AttributeBatch) -> Vec<Detection> {
        request.detections().to_vec()
    }
}

/// Attributes detections, falling back to DEGRADED.
pub(crate) struct Attributor {
    link: Link<AttributeRpc>,
    kb: Arc<Kb>,
    max_batch: usize,
}

impl Attributor {
    /// Wraps a link; `kb` fills in compact answers and validates detector hints in degraded mode.
    pub(crate) fn new(link: Link<AttributeRpc>, kb: Arc<Kb>, max_batch: usize) -> Self {
        Self { link, kb, max_batch }
    }

    /// Attributes every event: by the attribution service when it answers, DEGRADED otherwise.
    /// Events come back paired with their attribution, in order.
    /// With `keep_compact`, compact answers stay compact (see the module docs).
    pub(crate) async fn attribute(
        &self,
        events: Vec<Detection>,
        trace: &HashMap<String, String>,
        keep_compact: bool,
    ) -> Vec<(Detection, Attribution)> {
        let chunks = split(events, self.max_batch);
        let answers = join_all(chunks.into_iter().map(|chunk| async move {
            let (events, result) = self.try_chunk(chunk, trace, keep_compact).await;
            match result {
                Ok(attributions) => events.into_iter().zip(attributions).collect::<Vec<_>>(),
                Err(error) => {
                    tracing::debug!(events = events.len(), %error, "attribution unavailable; degrading");
                    events
                        .into_iter()
                        .map(|mut detection| {
                            let attribution = Engine::degraded(&self.kb, detection.whole());
                            (detection, attribution)
                        })
                        .collect()
                }
            }
        }))
        .await;
        answers.into_iter().flatten().collect()
    }

    /// Attributes one chunk by the service only (no fallback); the events come back either way,
    /// and the attributions in full, or compact in the `Export` form with `keep_compact`.
    pub(crate) async fn try_chunk(
        &self,
        events: Vec<Detection>,
        trace: &HashMap<String, String>,
        keep_compact: bool,
    ) -> (Vec<Detection>, Result<Vec<Attribution>, LinkError>) {
        let count = events.len();
        let (events, answer) = self.link.send(events, trace, ()).await;
        let result = answer.and_then(|resp| {
            if resp.attributions.len() == count
                && resp
                    .attributions
                    .iter()
                    .all(|a| a.status != AttributionStatus::Degraded as i32)
            {
                self.usable(resp, keep_compact)
            } else {
                tracing::warn!(
                    sent = count,
                    got = resp.attributions.len(),
                    "attribution answered with the wrong number of attributions"
                );
                Err(LinkError::Unavailable(
                    "attribution answered an incomplete batch".into(),
                ))
            }
        });
        (events, result)
    }

    /// The attributions of an answer: as sent when full; when compact, kept compact in the
    /// `Export` form with `keep_compact`, else expanded from the knowledge base (and the answer's
    /// rule-pack version). An answer this knowledge base cannot fill in is no answer (the chunk
    /// degrades).
    fn usable(&self, resp: AttributeResponse, keep_compact: bool) -> Result<Vec<Attribution>, LinkError> {
        let mut attributions = resp.attributions;
        if resp.compact {
            for a in &mut attributions {
                let made = if keep_compact {
                    compact::for_export(&self.kb, a, &resp.rule_pack_version)
                } else {
                    compact::expand(&self.kb, a, &resp.rule_pack_version)
                };
                made.map_err(|error| {
                    tracing::warn!(%error, "attribution answered compact attributions this knowledge base cannot fill in");
                    LinkError::Unavailable(format!("attribution answered an unusable batch: {error}"))
                })?;
            }
        }
        Ok(attributions)
    }

    /// Most events per attribution request.
    pub(crate) fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Follows whether a stream to attribution is open.
    pub(crate) fn watch(&self) -> watch::Receiver<bool> {
        self.link.watch()
    }
}

/// Splits `events` into chunks of at most `max` (one chunk when it fits).
pub(crate) fn split<T>(mut events: Vec<T>, max: usize) -> Vec<Vec<T>> {
    let max = max.max(1);
    if events.len() <= max {
        return vec![events];
    }
    let mut chunks = Vec::with_capacity(events.len().div_ceil(max));
    while events.len() > max {
        let rest = events.split_off(max);
        chunks.push(std::mem::replace(&mut events, rest));
    }
    chunks.push(events);
    chunks
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn split_keeps_order_and_sizes() {
        let chunks = split((0..7).collect::<Vec<_>>(), 3);
        assert_eq!(chunks, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        assert_eq!(split(vec![1], 3), vec![vec![1]]);
        assert_eq!(split(Vec::<u8>::new(), 3), vec![Vec::<u8>::new()]);
    }
}
