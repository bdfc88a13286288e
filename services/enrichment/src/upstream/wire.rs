//! [`Wire`]: a request shared behind an `Arc` that encodes like the message it wraps.
//!
//! A batch sent on a stream must stay in memory until it is answered, so that it can be sent
//! again on a new stream when the first one breaks. Encoding from a shared reference avoids
//! copying every event of every batch once more just to hand an owned message to tonic.
//! `Wire` is only ever encoded; decoding it is not supported.

use std::sync::Arc;

use prost::{
    Message,
    bytes::{Buf, BufMut},
    encoding::{DecodeContext, WireType},
};

/// An encode-only view of a shared message.
#[derive(Debug)]
pub(crate) struct Wire<T>(pub(crate) Arc<T>);

impl<T: Message> Message for Wire<T> {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        self.0.encode_raw(buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // Never decoded: skip whatever arrives so a misuse cannot corrupt the shared message.
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.encoded_len()
    }

    fn clear(&mut self) {}
}

#[cfg(test)]
mod tests {
    use attackmesh::proto::{AttributeRequest, DetectionEvent};

    use super::*;

    #[test]
    fn encodes_exactly_like_the_wrapped_message() {
        let req = AttributeRequest {
            batch_id: 7,
            events: vec![DetectionEvent {
                event_id: "a".into(),
                event_type: "port_scan".into(),
                ..Default::default()
            }],
            trace_context: [("traceparent".to_owned(), "00-x".to_owned())].into(),
            compact_for_attack_version: "18.1".into(),
        };
        let wire = Wire(Arc::new(req.clone()));
        assert_eq!(wire.encode_to_vec(), req.encode_to_vec());
        assert_eq!(AttributeRequest::decode(wire.encode_to_vec().as_slice()).unwrap(), req);
    }
}
