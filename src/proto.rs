//! Types generated from `proto/attackmesh/v1` by prost, tonic and pbjson.

#![allow(missing_docs, unreachable_pub, clippy::all, clippy::unwrap_used)]

/// Package `attackmesh.v1`.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/attackmesh.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/attackmesh.v1.serde.rs"));
}

/// Encoded `FileDescriptorSet` of the schema, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/attackmesh_descriptor.bin"));

pub use v1::*;
