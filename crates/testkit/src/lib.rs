//! Test support shared by every crate's tests (a dev-dependency only; never linked into the
//! product): the shared data paths and sample readers, detections made for tests and the
//! invariants an attribution must hold, enriched events for the export sinks, and a certificate
//! authority for TLS tests.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod data;
pub mod events;
pub mod fixtures;
pub mod pki;

pub use data::{attack_bundle, repo_root, sample_events, shared_data};
pub use events::{assert_only_active, event};
