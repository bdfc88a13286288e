//! [`AttributeBatch`]: `attackmesh.v1.AttributeRequest` read so that each detection's attributes
//! stay in the bytes they arrived as.
//!
//! The engine reads a few attributes of each detection (the ones its rules test), and Sigma
//! reads them all only for Windows records. Decoded by prost, every attribute of every event
//! would be two `String`s and a B-tree entry, made and freed per batch: on real Suricata records
//! that was most of the service's time. Each event here is a [`Held`] detection instead, decoded
//! exactly as prost decodes it (see [`attackmesh::held::DetectionBatch`]).

use attackmesh::{
    held::{Attribute, DetectionBatch, Held},
    proto::DetectionEvent,
};

/// `attackmesh.v1.AttributeRequest` as the service reads it: the same fields, each event a
/// [`Held`] detection.
pub type AttributeBatch = DetectionBatch<Held<DetectionEvent>, Attribute>;
