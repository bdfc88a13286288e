//! Test support shared by every crate's tests (a dev-dependency only; never linked into the
//! product): the shared data paths and sample readers, detections made for tests and the
//! invariants an attribution must hold, enriched events for the export sinks, a certificate
//! authority for TLS tests, loopback listeners, token tables, services running until the test
//! stops them, and the file sink read back.
//!
//! It depends on the contract and the libraries, never on a service: a test starts its own
//! service's `server::serve` with the generic pieces here.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod data;
pub mod events;
pub mod file_sink;
pub mod fixtures;
pub mod grpc;
pub mod net;
pub mod pki;
pub mod tokens;

pub use data::{attack_bundle, evtx_files, repo_root, sample_events, shared_data};
pub use events::{assert_only_active, event, port_scan};
pub use file_sink::{latest, sink_events, wait_for_sink};
pub use grpc::{Running, Shutdown, channel, wait_health, wait_serving, with_token};
pub use net::{bind, free_addr, free_addrs};
pub use tokens::Tokens;

#[doc(hidden)]
pub use attackmesh_runtime::memory::tune as tune_allocator;

/// `criterion::criterion_main!`, with the allocator set up first as every `attackmesh` process
/// sets it up ([`attackmesh_runtime::memory::tune`]), so that a benchmark measures what the
/// services run.
#[macro_export]
macro_rules! criterion_main {
    ($($group:path),+ $(,)?) => {
        fn main() {
            $crate::tune_allocator();
            $($group();)+
            criterion::Criterion::default().configure_from_args().final_summary();
        }
    };
}
