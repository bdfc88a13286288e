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

/// `/<service>/<method>`, the gRPC path of a method, as a `&'static str` built at compile time
/// from the service name tonic generates (`ingest_service_server::SERVICE_NAME`), so that no
/// path is typed by hand:
///
/// ```
/// use attackmesh::proto::ingest_service_server::SERVICE_NAME;
/// const INGEST: &str = attackmesh::grpc_path!(SERVICE_NAME, "Ingest");
/// assert_eq!(INGEST, "/attackmesh.v1.IngestService/Ingest");
/// ```
#[macro_export]
macro_rules! grpc_path {
    ($service:expr, $method:expr $(,)?) => {{
        const SERVICE: &str = $service;
        const METHOD: &str = $method;
        const BYTES: [u8; SERVICE.len() + METHOD.len() + 2] = $crate::proto::grpc_path_bytes(SERVICE, METHOD);
        match ::core::str::from_utf8(&BYTES) {
            Ok(path) => path,
            // Evaluated at compile time: two `&str`s joined by ASCII are always UTF-8.
            Err(_) => panic!("a gRPC path is UTF-8"),
        }
    }};
}

/// The bytes of `/<service>/<method>`; `N` is their length. Used by [`grpc_path!`](crate::grpc_path).
#[doc(hidden)]
pub const fn grpc_path_bytes<const N: usize>(service: &str, method: &str) -> [u8; N] {
    let (service, method) = (service.as_bytes(), method.as_bytes());
    let mut out = [b'/'; N];
    let mut i = 0;
    while i < service.len() {
        out[1 + i] = service[i];
        i += 1;
    }
    let mut j = 0;
    while j < method.len() {
        out[2 + service.len() + j] = method[j];
        j += 1;
    }
    out
}
