//! Sinks: where queued events go. Each sink kind is one module (`config`, `encode`, `service`,
//! `tests`) implementing [`Sink`]; [`SinkSpec`] lists the kinds a configuration can enable.
//! Sinks never import one another: what two of them need (the ATT&CK view of an event, the ECS
//! and HEC shapes, the HTTP client) lives in [`util`].
//!
//! A sink only encodes and sends one batch and reports, per event, whether it was delivered,
//! should be retried, or must go to the dead-letter queue. It never touches the queue, never
//! sleeps between retries and never decides when to give up: the driver does that, the same way
//! for every sink. Adding a sink kind is one new module, one [`SinkSpec`] variant
//! and its arm in [`SinkSpec::build`].

use std::{
    borrow::Cow,
    collections::{BTreeSet, HashMap},
    sync::{Arc, LazyLock, Mutex},
};

use attackmesh::{held::Held, proto::EnrichedEvent};
use attackmesh_attack::Kb;
use futures::future::BoxFuture;

use crate::error::Error;

pub mod correlation;
pub mod elasticsearch;
pub mod file;
pub mod intel;
pub mod splunk_hec;
pub mod util;

/// One event as read back from a sink's queue. The event and trace context are shared: every
/// sink's queue holds the same ones.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedEvent {
    /// Position in the sink's queue.
    pub seq: u64,
    /// The event, its attributes perhaps still in the bytes it arrived as.
    pub event: Arc<Held<EnrichedEvent>>,
    /// W3C trace context of the Export batch that carried it.
    pub trace_context: Arc<HashMap<String, String>>,
    /// When it was queued, in microseconds since the Unix epoch.
    pub enqueued_at_micros: i64,
    /// For a compact event, the ATT&CK release its details are to be filled in from: its
    /// techniques and threat actors without a name get theirs from the knowledge base (see
    /// [`QueuedEvent::filled_in`]). `None` for an event that carries its details.
    pub compact_for: Option<Arc<str>>,
}

impl QueuedEvent {
    /// The event with its details filled in from `kb` (itself when it carries them), as every
    /// sink that does not write details by reference is given it. An id `kb` does not hold (an
    /// event queued compact under another release, read after an upgrade) is left without
    /// details, with a warning; the event keeps its own `attack_version`. Filled in place when
    /// nothing else holds the event (as when it was read from the segment files), else in a
    /// copy.
    pub fn filled_in(self: Arc<Self>, kb: &Kb) -> Arc<Self> {
        if self.compact_for.is_none() {
            return self;
        }
        let mut queued = Arc::unwrap_or_clone(self);
        let release = queued.compact_for.take();
        let event = Arc::make_mut(&mut queued.event).event_mut();
        if let Some(metadata) = event.metadata.as_mut() {
            let missing = attackmesh_attack::compact::fill_in(kb, metadata);
            if missing > 0 {
                tracing::warn!(
                    event_id = %event.event_id,
                    missing,
                    queued_for = release.as_deref().unwrap_or_default(),
                    attack = kb.attack_version(),
                    "queued event names ATT&CK ids this knowledge base does not hold; written without their details"
                );
            }
        }
        Arc::new(queued)
    }

    /// What a sink writing details by reference to `kb` writes, with the knowledge base its
    /// writer takes them from: this event and `kb` when it is compact for `kb`'s release; the
    /// event filled in from `kb` ([`QueuedEvent::filled_in`], which warns of ids `kb` lacks) when
    /// compact for another, as after an upgrade; this event alone when it carries its details,
    /// or when there is no `kb` (the driver then fills events in before the sink sees them).
    pub fn by_reference<'k>(self: &Arc<Self>, kb: Option<&'k Kb>) -> (Arc<Self>, Option<&'k Kb>) {
        match (kb, self.compact_for.as_deref()) {
            (Some(kb), Some(release)) if release == kb.attack_version() => (self.clone(), Some(kb)),
            (Some(kb), Some(_)) => (self.clone().filled_in(kb), None),
            _ => (self.clone(), None),
        }
    }
}

/// What became of one event of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// The sink holds it (or already held it: a duplicate is delivered).
    Delivered,
    /// A transient failure (busy, throttled, unreachable): send it again after a backoff.
    Retry(String),
    /// The sink will never take it as it is: keep it in the dead-letter queue with this reason.
    Dead(String),
}

/// A destination for enriched events.
pub trait Sink: Send + Sync + 'static {
    /// Sink kind as reported in `SinkStatus.kind`.
    fn kind(&self) -> &'static str;

    /// Prepares the destination (index template, channel), called before the first batch and
    /// again after a failure; an error is retried with backoff and shown as the sink's last error.
    fn start(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    /// Sends one batch; the answer has exactly one outcome per event, in order. Error texts
    /// must never contain credentials.
    fn send<'a>(&'a self, events: &'a [Arc<QueuedEvent>]) -> BoxFuture<'a, Vec<ItemOutcome>>;

    /// Whether the sink writes compact events itself, their details by reference to the
    /// knowledge base; a sink that does not is given every event filled in
    /// ([`QueuedEvent::filled_in`]).
    fn writes_compact(&self) -> bool {
        false
    }
}

/// One configured sink.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkSpec {
    /// Elasticsearch `_bulk` with ECS documents.
    Elasticsearch(elasticsearch::ElasticsearchConfig),
    /// Splunk HTTP Event Collector.
    SplunkHec(splunk_hec::SplunkHecConfig),
    /// NDJSON files.
    File(file::FileSinkConfig),
    /// The intel service's `ShareEvents`.
    Intel(intel::IntelSinkConfig),
    /// The correlation replicas' `Observe`.
    Correlation(correlation::CorrelationSinkConfig),
}

impl SinkSpec {
    /// Name of the sink: its queue directory, metrics label and `SinkStatus.name`. The kind,
    /// except for the named file sinks of `siem_export.files`: `file-<name>`.
    pub fn name(&self) -> Cow<'static, str> {
        match self {
            SinkSpec::File(c) => match &c.name {
                Some(name) => Cow::Owned(format!("{}-{name}", file::KIND)),
                None => Cow::Borrowed(file::KIND),
            },
            other => Cow::Borrowed(other.kind()),
        }
    }

    /// Kind of the sink.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkSpec::Elasticsearch(_) => elasticsearch::KIND,
            SinkSpec::SplunkHec(_) => splunk_hec::KIND,
            SinkSpec::File(_) => file::KIND,
            SinkSpec::Intel(_) => intel::KIND,
            SinkSpec::Correlation(_) => correlation::KIND,
        }
    }

    /// The `retry` section as this sink applies it (the intel link may set its own request
    /// timeout and backoff).
    pub fn retry(&self, base: &crate::config::RetryConfig) -> crate::config::RetryConfig {
        match self {
            SinkSpec::Intel(c) => c.retry(base),
            SinkSpec::Correlation(c) => c.retry(base),
            _ => base.clone(),
        }
    }

    /// Builds the sink (HTTP clients, files) without contacting the destination; state a sink
    /// keeps for itself goes under `data_dir` (a file sink's record of written event ids:
    /// `delivered/<name>.log`).
    /// `kb` is the knowledge base compact events are written from.
    pub fn build(&self, data_dir: &std::path::Path, kb: &Arc<Kb>) -> Result<Arc<dyn Sink>, Error> {
        Ok(match self {
            SinkSpec::Elasticsearch(c) => Arc::new(elasticsearch::ElasticsearchSink::new(c)?.with_kb(kb.clone())),
            SinkSpec::SplunkHec(c) => Arc::new(splunk_hec::SplunkHecSink::new(c)?.with_kb(kb.clone())),
            SinkSpec::File(c) => {
                let log = data_dir.join("delivered").join(format!("{}.log", self.name()));
                Arc::new(file::FileSink::new(c, log)?.with_kb(kb.clone()))
            }
            SinkSpec::Intel(c) => Arc::new(intel::IntelSink::new(c)?),
            SinkSpec::Correlation(c) => Arc::new(correlation::CorrelationSink::new(c)?),
        })
    }
}

/// `name` with a `'static` lifetime, for the driver, status and log fields that carry it for the
/// life of the process. Sink names come from configuration, so there are few: each distinct name
/// is allocated once per process, however often sinks are opened.
pub(crate) fn static_name(name: Cow<'static, str>) -> &'static str {
    static NAMES: LazyLock<Mutex<BTreeSet<&'static str>>> = LazyLock::new(Mutex::default);
    match name {
        Cow::Borrowed(name) => name,
        Cow::Owned(name) => {
            let mut names = crate::queue::lock(&NAMES);
            if let Some(known) = names.get(name.as_str()) {
                return known;
            }
            let leaked: &'static str = Box::leak(name.into_boxed_str());
            names.insert(leaked);
            leaked
        }
    }
}
