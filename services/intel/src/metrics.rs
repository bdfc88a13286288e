//! The intel service's Prometheus metrics, registered in the runtime's process-wide registry on
//! first use. Label values are collection ids and push target names, never credentials.

use std::sync::LazyLock;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};

/// Object versions added to the store.
pub const OBJECTS_ADDED: &str = "intel_objects_added";
/// Enriched events received over `ShareEvents`, by outcome (`accepted`, `skipped`, `duplicate`,
/// `rejected`).
pub const SHARED_EVENTS: &str = "intel_shared_events";
/// TAXII requests by endpoint and status code.
pub const TAXII_REQUESTS: &str = "intel_taxii_requests";
/// Objects delivered to a push target.
pub const PUSH_DELIVERED: &str = "intel_push_delivered_objects";
/// Objects a push target refused (reported as failures in its status).
pub const PUSH_REFUSED: &str = "intel_push_refused_objects";
/// Failed push attempts (network, HTTP or status errors), retried.
pub const PUSH_RETRIES: &str = "intel_push_retries";

/// Labels of TAXII request counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Endpoint name (`objects`, `manifest`, …).
    pub endpoint: &'static str,
    /// HTTP status code.
    pub code: u16,
}

/// Labels of shared event counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `accepted` (indicators stored), `skipped` (no indicator), `duplicate` (already ingested at
    /// the same or a higher revision; reported as skipped) or `rejected` (invalid).
    pub outcome: &'static str,
}

/// Labels of push counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    /// Push target name.
    pub target: String,
}

struct Metrics {
    objects_added: Counter,
    shared_events: Family<OutcomeLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    delivered: Family<TargetLabels, Counter>,
    refused: Family<TargetLabels, Counter>,
    retries: Family<TargetLabels, Counter>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let m = Metrics {
        objects_added: Counter::default(),
        shared_events: Family::default(),
        requests: Family::default(),
        delivered: Family::default(),
        refused: Family::default(),
        retries: Family::default(),
    };
    use attackmesh_runtime::metrics::register;
    register(
        OBJECTS_ADDED,
        "STIX object versions added to intel collections",
        m.objects_added.clone(),
    );
    register(
        SHARED_EVENTS,
        "Enriched events received over ShareEvents, by outcome",
        m.shared_events.clone(),
    );
    register(
        TAXII_REQUESTS,
        "TAXII requests served, by endpoint and HTTP status",
        m.requests.clone(),
    );
    register(
        PUSH_DELIVERED,
        "STIX objects accepted by a remote TAXII collection",
        m.delivered.clone(),
    );
    register(
        PUSH_REFUSED,
        "STIX objects a remote TAXII collection reported as failed",
        m.refused.clone(),
    );
    register(
        PUSH_RETRIES,
        "Failed pushes to a remote TAXII collection, retried with backoff",
        m.retries.clone(),
    );
    m
});

/// Registers the intel metrics now, so a scrape lists them before the first object or request.
pub(crate) fn register() {
    LazyLock::force(&METRICS);
}

pub(crate) fn objects_added(n: usize) {
    METRICS.objects_added.inc_by(n as u64);
}

pub(crate) fn events_shared(accepted: usize, skipped: usize, duplicate: usize, rejected: usize) {
    for (outcome, n) in [
        ("accepted", accepted),
        ("skipped", skipped),
        ("duplicate", duplicate),
        ("rejected", rejected),
    ] {
        METRICS
            .shared_events
            .get_or_create(&OutcomeLabels { outcome })
            .inc_by(n as u64);
    }
}

pub(crate) fn request(endpoint: &'static str, code: u16) {
    METRICS.requests.get_or_create(&RequestLabels { endpoint, code }).inc();
}

pub(crate) fn pushed(target: &str, delivered: usize, refused: usize) {
    let labels = TargetLabels {
        target: target.to_owned(),
    };
    METRICS.delivered.get_or_create(&labels).inc_by(delivered as u64);
    METRICS.refused.get_or_create(&labels).inc_by(refused as u64);
}

pub(crate) fn push_retry(target: &str) {
    METRICS
        .retries
        .get_or_create(&TargetLabels {
            target: target.to_owned(),
        })
        .inc();
}
