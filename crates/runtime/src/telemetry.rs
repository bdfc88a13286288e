//! Telemetry: one `init` for logs and traces, and W3C trace-context propagation through gRPC
//! metadata and through the `trace_context` maps that batches carry across streams and queues.

use std::collections::HashMap;

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::TracerProvider as _,
};
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider};
use serde::{Deserialize, Serialize};
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

use crate::error::Error;

/// Log output format.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs and traces.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `tracing` filter directive, e.g. `info` or `attackmesh=debug,info`.
    pub log_level: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// OTLP/gRPC collector endpoint (e.g. `http://otel-collector:4317`); traces are not exported when unset.
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_level: "info".into(),
            log_format: LogFormat::Text,
            otlp_endpoint: None,
        }
    }
}

impl TelemetryConfig {
    /// Checks the filter directive and endpoint.
    pub fn validate(&self) -> Result<(), Error> {
        EnvFilter::try_new(&self.log_level).map_err(|e| Error::ConfigInvalid(format!("telemetry.log_level: {e}")))?;
        if let Some(ep) = &self.otlp_endpoint
            && !(ep.starts_with("http://") || ep.starts_with("https://"))
        {
            return Err(Error::ConfigInvalid(
                "telemetry.otlp_endpoint: must be an http:// or https:// URL".into(),
            ));
        }
        Ok(())
    }
}

/// Keeps the tracer provider alive; [`TelemetryGuard::shutdown`] flushes pending spans.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Flushes and stops trace export.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "trace export shutdown failed");
        }
    }
}

/// Installs the global subscriber (logs to stderr, traces to OTLP when configured) and the W3C
/// propagator. Must run inside a Tokio runtime when OTLP is on.
pub fn init(config: &TelemetryConfig, service_name: &str) -> Result<TelemetryGuard, Error> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_new(&config.log_level).map_err(|e| Error::Telemetry(e.to_string()))?;
    let provider = match &config.otlp_endpoint {
        Some(endpoint) => {
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| Error::Telemetry(e.to_string()))?;
            Some(provider_with(exporter, service_name))
        }
        None => None,
    };
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(provider.as_ref().map(otel_layer));
    let result = match config.log_format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr))
            .try_init(),
    };
    result.map_err(|e| Error::Telemetry(e.to_string()))?;
    Ok(TelemetryGuard { provider })
}

/// Installs `provider` as the global tracer provider, the W3C propagator, and a global
/// subscriber that sends spans at `log_level` and above to `provider` and writes no logs: for
/// tests and tools that read spans back (e.g. from an in-memory exporter). Fails when a global
/// subscriber is already set.
pub fn init_traces_only(provider: SdkTracerProvider, log_level: &str) -> Result<TelemetryGuard, Error> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    let filter = EnvFilter::try_new(log_level).map_err(|e| Error::Telemetry(e.to_string()))?;
    tracing_subscriber::registry()
        .with(filter)
        .with(otel_layer(&provider))
        .try_init()
        .map_err(|e| Error::Telemetry(e.to_string()))?;
    Ok(TelemetryGuard {
        provider: Some(provider),
    })
}

/// The layer turning `tracing` spans into OpenTelemetry spans of `provider`.
fn otel_layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S> + use<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("attackmesh"))
}

/// A tracer provider exporting to `exporter` in batches, tagged with `service_name`.
pub fn provider_with<E>(exporter: E, service_name: &str) -> SdkTracerProvider
where
    E: opentelemetry_sdk::trace::SpanExporter + 'static,
{
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build()
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct MetadataExtractor<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// Writes the current span's context into outgoing gRPC metadata (`traceparent`, `tracestate`).
pub fn inject_metadata(metadata: &mut tonic::metadata::MetadataMap) {
    let cx = current_context();
    TraceContextPropagator::new().inject_context(&cx, &mut MetadataInjector(metadata));
}

/// The current span's context as a `trace_context` map for a batch message or queue record.
pub fn inject_map() -> HashMap<String, String> {
    let mut map = HashMap::new();
    TraceContextPropagator::new().inject_context(&current_context(), &mut map);
    map
}

/// Reads a W3C context from a batch's `trace_context` map.
pub fn extract_map(map: &HashMap<String, String>) -> Context {
    TraceContextPropagator::new().extract(map)
}

/// Makes `span` a child of the W3C context carried in `map` (no-op when the map is empty).
pub fn set_parent_from_map(span: &tracing::Span, map: &HashMap<String, String>) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if !map.is_empty() {
        let _ = span.set_parent(extract_map(map));
    }
}

/// Makes `span` a child of the W3C context carried in incoming gRPC metadata (no-op without a
/// `traceparent`): for RPCs whose messages carry no `trace_context` map.
pub fn set_parent_from_metadata(span: &tracing::Span, metadata: &tonic::metadata::MetadataMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if metadata.contains_key("traceparent") {
        let _ = span.set_parent(TraceContextPropagator::new().extract(&MetadataExtractor(metadata)));
    }
}

fn current_context() -> Context {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    tracing::Span::current().context()
}
