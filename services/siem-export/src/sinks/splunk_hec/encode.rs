//! The HEC envelopes this sink posts: the shared envelope shape with the sink's `host`,
//! `source`, `sourcetype` and `index` settings. No I/O here.

use attackmesh::proto::EnrichedEvent;

use super::SplunkHecConfig;
use crate::sinks::util::hec;

/// Where the configured collector files the events.
fn metadata(config: &SplunkHecConfig) -> hec::Metadata<'_> {
    hec::Metadata {
        host: config.host.as_deref(),
        source: &config.source,
        sourcetype: &config.sourcetype,
        index: config.index.as_deref(),
    }
}

/// The envelope of `ev` serialised, as it goes into a batch body.
pub(super) fn envelope_bytes(ev: &EnrichedEvent, config: &SplunkHecConfig) -> Vec<u8> {
    hec::envelope_bytes(ev, &metadata(config))
}
