//! The one RBAC table: who may call each gRPC method and each HTTP surface.
//!
//! gRPC rows are keyed by the service names tonic generates (`…_server::SERVICE_NAME`) and a
//! method name, so a renamed service cannot silently fall out of the table; methods without a
//! row are admin-only. Every HTTP surface has a row of its own ([`HttpEndpoint`]), never one
//! borrowed from an RPC. This module only answers lookups; checking tokens is the
//! [`Authenticator`](super::Authenticator)'s job.

use attackmesh::formats::otlp::proto::collector::logs_service_server::SERVICE_NAME as OTLP_LOGS;
use attackmesh::proto::{
    attribution_service_server::SERVICE_NAME as ATTRIBUTION, correlation_service_server::SERVICE_NAME as CORRELATION,
    export_service_server::SERVICE_NAME as EXPORT, ingest_service_server::SERVICE_NAME as INGEST,
    intel_service_server::SERVICE_NAME as INTEL,
};
use tonic_health::pb::health_server::SERVICE_NAME as HEALTH;
use tonic_reflection::pb::{
    v1::server_reflection_server::SERVICE_NAME as REFLECTION,
    v1alpha::server_reflection_server::SERVICE_NAME as REFLECTION_ALPHA,
};

use super::Role;

/// Who may call an RPC or use an HTTP surface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// No authentication (health checks).
    Anyone,
    /// Any authenticated caller.
    Authenticated,
    /// Only these roles.
    Roles(&'static [Role]),
}

impl Allowed {
    /// True when a caller with `role` is admitted.
    pub fn admits(self, role: Role) -> bool {
        match self {
            Allowed::Anyone | Allowed::Authenticated => true,
            Allowed::Roles(roles) => roles.contains(&role),
        }
    }
}

/// An HTTP surface beside gRPC, each with its own RBAC row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpEndpoint {
    /// `POST /falco` on enrichment: Falco alerts in.
    FalcoIngest,
    /// `POST /v1/logs` on enrichment: OTLP/HTTP log records in (the HTTP twin of the OTLP
    /// `LogsService`).
    OtlpLogs,
    /// TAXII 2.1 reads on intel (discovery, collections, objects, manifest, status); the
    /// collection's `read` list narrows it further.
    TaxiiRead,
    /// TAXII 2.1 `POST …/objects/` on intel; the collection's `write` list narrows it further.
    TaxiiWrite,
    /// The live ATT&CK matrix page on intel (`/ui/`) and the reads behind it.
    UiRead,
}

impl HttpEndpoint {
    /// Every HTTP surface.
    pub const ALL: &'static [HttpEndpoint] = &[
        Self::FalcoIngest,
        Self::OtlpLogs,
        Self::TaxiiRead,
        Self::TaxiiWrite,
        Self::UiRead,
    ];

    /// True when HTTP Basic (the token as password) is accepted beside Bearer: TAXII clients
    /// such as OpenCTI and MISP speak Basic.
    pub fn accepts_basic(self) -> bool {
        matches!(self, Self::TaxiiRead | Self::TaxiiWrite)
    }

    /// The `WWW-Authenticate` challenge of a 401, naming the schemes accepted.
    pub fn challenge(self) -> &'static str {
        if self.accepts_basic() {
            "Basic realm=\"attackmesh\", Bearer realm=\"attackmesh\""
        } else {
            "Bearer"
        }
    }

    /// What a refused caller was trying to do, for the refusal message.
    pub fn action(self) -> &'static str {
        match self {
            Self::FalcoIngest => "post Falco alerts",
            Self::OtlpLogs => "send OTLP logs",
            Self::TaxiiRead => "read over TAXII",
            Self::TaxiiWrite => "write over TAXII",
            Self::UiRead => "read the ATT&CK matrix",
        }
    }
}

/// What a row of the table governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Every method of a gRPC service (by its generated name).
    Service(&'static str),
    /// One gRPC method: generated service name and method name.
    Method(&'static str, &'static str),
    /// An HTTP surface.
    Http(HttpEndpoint),
}

const DETECTOR: Allowed = Allowed::Roles(&[Role::Detector, Role::Admin]);
const ANALYST: Allowed = Allowed::Roles(&[Role::Analyst, Role::Admin]);
const ADMIN: Allowed = Allowed::Roles(&[Role::Admin]);

/// The table. Targets appear once each; a lookup takes the first row that matches.
pub const RBAC: &[(Target, Allowed)] = &[
    (Target::Service(HEALTH), Allowed::Anyone),
    (Target::Service(REFLECTION), Allowed::Authenticated),
    (Target::Service(REFLECTION_ALPHA), Allowed::Authenticated),
    (Target::Method(INGEST, "Ingest"), DETECTOR),
    (Target::Method(INGEST, "Enrich"), ANALYST),
    // OpenTelemetry's logs collector service (one RPC, Export): detections in, like Ingest.
    (Target::Service(OTLP_LOGS), DETECTOR),
    (Target::Method(ATTRIBUTION, "Attribute"), ADMIN),
    (
        Target::Method(ATTRIBUTION, "GetKnowledgeBaseInfo"),
        Allowed::Authenticated,
    ),
    (Target::Method(ATTRIBUTION, "MapPatterns"), ANALYST),
    (Target::Method(ATTRIBUTION, "GetTechnique"), ANALYST),
    (Target::Method(ATTRIBUTION, "GetGroup"), ANALYST),
    (Target::Method(EXPORT, "Export"), ADMIN),
    (Target::Method(EXPORT, "GetSinkStatus"), ANALYST),
    (Target::Method(INTEL, "ShareIndicators"), ANALYST),
    (Target::Method(INTEL, "ListCollections"), ANALYST),
    (Target::Method(INTEL, "ShareEvents"), ADMIN),
    (Target::Method(CORRELATION, "Observe"), ADMIN),
    (Target::Http(HttpEndpoint::FalcoIngest), DETECTOR),
    (Target::Http(HttpEndpoint::OtlpLogs), DETECTOR),
    (Target::Http(HttpEndpoint::TaxiiRead), ANALYST),
    (Target::Http(HttpEndpoint::TaxiiWrite), ANALYST),
    (Target::Http(HttpEndpoint::UiRead), ANALYST),
];

/// Who may call the gRPC method at `path` (`/<service>/<method>`); methods without a row are
/// admin-only.
pub fn for_rpc(path: &str) -> Allowed {
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return ADMIN;
    };
    lookup(|target| match target {
        Target::Service(s) => s == service,
        Target::Method(s, m) => s == service && m == method,
        Target::Http(_) => false,
    })
}

/// Who may use an HTTP surface.
pub fn for_http(endpoint: HttpEndpoint) -> Allowed {
    lookup(|target| target == Target::Http(endpoint))
}

fn lookup(matches: impl Fn(Target) -> bool) -> Allowed {
    RBAC.iter()
        .find(|(target, _)| matches(*target))
        .map_or(ADMIN, |(_, allowed)| *allowed)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use prost::Message;

    use super::*;

    #[test]
    fn http_surfaces_have_rows_of_their_own() {
        for endpoint in HttpEndpoint::ALL {
            let rows = RBAC.iter().filter(|(t, _)| *t == Target::Http(*endpoint)).count();
            assert_eq!(rows, 1, "{endpoint:?}");
        }
        assert_eq!(
            for_http(HttpEndpoint::FalcoIngest),
            Allowed::Roles(&[Role::Detector, Role::Admin])
        );
        assert_eq!(
            for_http(HttpEndpoint::TaxiiRead),
            Allowed::Roles(&[Role::Analyst, Role::Admin])
        );
        assert_eq!(
            for_http(HttpEndpoint::TaxiiWrite),
            Allowed::Roles(&[Role::Analyst, Role::Admin])
        );
        assert_eq!(
            for_http(HttpEndpoint::UiRead),
            Allowed::Roles(&[Role::Analyst, Role::Admin])
        );
        assert!(
            !HttpEndpoint::UiRead.accepts_basic(),
            "browsers send the token as Bearer"
        );
        assert!(!for_http(HttpEndpoint::TaxiiRead).admits(Role::Detector));
        assert!(!for_http(HttpEndpoint::UiRead).admits(Role::Detector));
        assert!(!for_http(HttpEndpoint::FalcoIngest).admits(Role::Analyst));
        assert_eq!(for_http(HttpEndpoint::OtlpLogs), DETECTOR);
        assert!(!for_http(HttpEndpoint::OtlpLogs).admits(Role::Analyst));
    }

    #[test]
    fn every_rpc_of_the_schema_has_its_own_row_and_no_row_is_stale() {
        let set = prost_types::FileDescriptorSet::decode(attackmesh::proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut schema = HashSet::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    schema.insert((
                        format!("{}.{}", file.package(), service.name()),
                        method.name().to_owned(),
                    ));
                }
            }
        }
        let rows: HashSet<(String, String)> = RBAC
            .iter()
            .filter_map(|(t, _)| match t {
                Target::Method(s, m) => Some(((*s).to_owned(), (*m).to_owned())),
                _ => None,
            })
            .collect();
        assert_eq!(
            rows.len(),
            RBAC.iter().filter(|(t, _)| matches!(t, Target::Method(..))).count()
        );
        assert_eq!(rows, schema);
    }

    #[test]
    fn lookups_follow_the_rows() {
        assert_eq!(for_rpc("/grpc.health.v1.Health/Check"), Allowed::Anyone);
        assert_eq!(
            for_rpc("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Allowed::Authenticated
        );
        assert_eq!(for_rpc("/attackmesh.v1.IngestService/Ingest"), DETECTOR);
        assert_eq!(
            for_rpc("/opentelemetry.proto.collector.logs.v1.LogsService/Export"),
            DETECTOR
        );
        assert_eq!(for_rpc("/attackmesh.v1.IntelService/ListCollections"), ANALYST);
        assert_eq!(for_rpc("/attackmesh.v1.IngestService/DropEverything"), ADMIN);
        assert_eq!(for_rpc("/http/falco"), ADMIN, "HTTP surfaces are not reachable by path");
        assert_eq!(for_rpc("garbage"), ADMIN);
    }
}
