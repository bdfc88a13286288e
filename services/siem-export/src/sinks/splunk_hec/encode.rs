//! The HEC envelopes this sink posts: the shared envelope shape with the sink's `host`,
//! `source`, `sourcetype` and `index` settings, a whole batch written into one buffer that each
//! request body is a slice of. No I/O here.

use std::sync::Arc;

use attackmesh_attack::Kb;

use super::SplunkHecConfig;
use crate::sinks::{
    QueuedEvent,
    util::{hec, warm::warmed},
};

/// Where the configured collector files the events.
fn metadata(config: &SplunkHecConfig) -> hec::Metadata<'_> {
    hec::Metadata {
        host: config.host.as_deref(),
        source: &config.source,
        sourcetype: &config.sourcetype,
        index: config.index.as_deref(),
    }
}

/// A batch's envelopes, one after the other in one buffer, and where each one ends.
pub(super) struct Envelopes {
    /// The envelopes, concatenated (a HEC batch body is exactly that).
    pub(super) body: bytes::Bytes,
    /// End offset of each event's envelope in `body`.
    pub(super) ends: Vec<usize>,
}

impl Envelopes {
    /// Where the envelopes of events `range` lie in `body`.
    pub(super) fn span(&self, range: std::ops::Range<usize>) -> std::ops::Range<usize> {
        let start = range.start.checked_sub(1).map_or(0, |i| self.ends[i]);
        let end = range.end.checked_sub(1).map_or(0, |i| self.ends[i]);
        start..end
    }

    /// The request body for events `range`: a slice of the one buffer, not a copy.
    pub(super) fn body(&self, range: std::ops::Range<usize>) -> bytes::Bytes {
        self.body.slice(self.span(range))
    }
}

/// The envelopes of `events`, written into one buffer; compact events by reference to `kb` when
/// there is one ([`QueuedEvent::by_reference`]).
pub(super) fn envelopes(events: &[Arc<QueuedEvent>], config: &SplunkHecConfig, kb: Option<&Kb>) -> Envelopes {
    let meta = metadata(config);
    let mut body = Vec::with_capacity(events.len() * 3072);
    let mut ends = Vec::with_capacity(events.len());
    for e in warmed(events) {
        let (e, compact) = e.by_reference(kb);
        hec::write_envelope(&*e.event, &meta, compact, &mut body);
        ends.push(body.len());
    }
    Envelopes {
        body: body.into(),
        ends,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::sinks::util::tests::queued_compact;

    /// The envelopes of a compact batch, written by reference to the knowledge base, are those of
    /// the same events filled in from it: queued compact for the sink's release, or for another
    /// (filled in first).
    #[test]
    fn a_compact_batch_makes_the_envelopes_of_the_events_filled_in() {
        let kb = Kb::embedded().unwrap();
        let config = SplunkHecConfig::default();
        let events: Vec<_> = (0..4).map(attackmesh_testkit::fixtures::event).collect();
        let full = envelopes(&queued_compact(&kb, &events, None), &config, None);
        assert!(String::from_utf8_lossy(&full.body).contains("Brute Force"));
        for release in [kb.attack_version(), "17.0"] {
            let compact = envelopes(&queued_compact(&kb, &events, Some(release)), &config, Some(&kb));
            assert_eq!(compact.ends, full.ends, "{release}");
            assert_eq!(
                String::from_utf8_lossy(&compact.body),
                String::from_utf8_lossy(&full.body),
                "{release}"
            );
        }
    }
}
