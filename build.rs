//! Compiles `proto/` with the pure-Rust protox compiler (no protoc needed), generates prost
//! messages, tonic clients/servers (on `attackmesh::codec`) and pbjson serde impls into OUT_DIR,
//! and writes the file descriptor set used by gRPC reflection.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "proto/attackmesh/v1/common.proto",
    "proto/attackmesh/v1/campaign.proto",
    "proto/attackmesh/v1/events.proto",
    "proto/attackmesh/v1/ingest.proto",
    "proto/attackmesh/v1/attribution.proto",
    "proto/attackmesh/v1/export.proto",
    "proto/attackmesh/v1/intel.proto",
    "proto/attackmesh/v1/correlation.proto",
];

/// Map fields generated as `BTreeMap`: a detector record's attributes are many short keys, which
/// an ordered map builds, encodes and drops with fewer allocations and no hashing, and which every
/// sink then writes in one stable order.
const ORDERED_MAPS: &[&str] = &[
    ".attackmesh.v1.DetectionEvent.attributes",
    ".attackmesh.v1.EnrichedEvent.attributes",
];

/// Message fields generated behind a `Box`: inline, a campaign is 384 bytes of every
/// `EnrichedEvent` (a third of it), and only campaign alerts carry one. Decoded events wait in
/// memory (a queue window holds thousands until their sinks have written them), each paying for
/// the field whether set or not.
const BOXED: &[&str] = &[".attackmesh.v1.EnrichedEvent.campaign"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, ["proto"])?;
    let descriptor_path = out.join("attackmesh_descriptor.bin");
    fs::write(&descriptor_path, fds.encode_to_vec())?;

    let builder = BOXED
        .iter()
        .fold(tonic_prost_build::configure(), |b, path| b.boxed(path));
    ORDERED_MAPS
        .iter()
        .fold(builder, |b, path| b.btree_map(path))
        .codec_path("crate::codec::ProstCodec")
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(fds)?;

    let descriptors = fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .preserve_proto_field_names()
        .emit_fields()
        // pbjson picks the map type per message: these messages have no other map.
        .btree_map(
            ORDERED_MAPS
                .iter()
                .filter_map(|f| f.rsplit_once('.').map(|(message, _)| message)),
        )
        .build(&[".attackmesh.v1"])?;
    Ok(())
}
