use base64::Engine as _;
use http::HeaderMap;

use super::*;

fn authn() -> Authenticator {
    Authenticator::new(&AuthConfig {
        tokens: vec![
            TokenEntry {
                name: "det".into(),
                role: Role::Detector,
                sha256: hash_token("d-token"),
            },
            TokenEntry {
                name: "ana".into(),
                role: Role::Analyst,
                sha256: hash_token("a-token"),
            },
        ],
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn health_is_open_and_everything_else_needs_a_token() {
    let a = authn();
    assert_eq!(a.check("/grpc.health.v1.Health/Check", None), Ok(None));
    assert!(matches!(
        a.check("/attackmesh.v1.IngestService/Ingest", None),
        Err(Denied::Unauthenticated { .. })
    ));
    assert!(matches!(
        a.check("/attackmesh.v1.IngestService/Ingest", Some("Bearer wrong")),
        Err(Denied::Unauthenticated {
            reason: "unknown token",
            ..
        })
    ));
    assert!(matches!(
        a.check("/attackmesh.v1.IngestService/Ingest", Some("Basic abc")),
        Err(Denied::Unauthenticated { .. })
    ));
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("det:d-token")
    );
    assert!(
        matches!(
            a.check("/attackmesh.v1.IngestService/Ingest", Some(&basic)),
            Err(Denied::Unauthenticated { .. })
        ),
        "gRPC takes bearer tokens only"
    );
}

#[test]
fn roles_are_enforced_per_rpc() {
    let a = authn();
    let ok = a
        .check("/attackmesh.v1.IngestService/Ingest", Some("Bearer d-token"))
        .unwrap()
        .unwrap();
    assert_eq!(ok.role, Role::Detector);
    assert!(matches!(
        a.check("/attackmesh.v1.IngestService/Enrich", Some("Bearer d-token")),
        Err(Denied::PermissionDenied { .. })
    ));
    assert!(
        a.check("/attackmesh.v1.IngestService/Enrich", Some("Bearer a-token"))
            .is_ok()
    );
    assert!(matches!(
        a.check("/attackmesh.v1.NoSuch/Thing", Some("Bearer a-token")),
        Err(Denied::PermissionDenied { .. })
    ));
}

#[test]
fn grpc_refusals_are_answered_through_the_error_policy() {
    let a = authn();
    let denied = a
        .check("/attackmesh.v1.ExportService/Export", Some("Bearer a-token"))
        .unwrap_err();
    let status = attackmesh::error::to_status(&denied);
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        status.message(),
        "role `analyst` may not call /attackmesh.v1.ExportService/Export"
    );
    let denied = a.check("/attackmesh.v1.ExportService/Export", None).unwrap_err();
    assert_eq!(
        attackmesh::error::to_status(&denied).code(),
        tonic::Code::Unauthenticated
    );
}

#[test]
fn token_files_rotate_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.yaml");
    let write = |tok: &str| {
        std::fs::write(
            &file,
            format!("- name: det\n  role: detector\n  sha256: {}\n", hash_token(tok)),
        )
        .unwrap()
    };
    write("old");
    let a = Authenticator::new(&AuthConfig {
        token_files: vec![file.clone()],
        ..Default::default()
    })
    .unwrap();
    assert!(
        a.check("/attackmesh.v1.IngestService/Ingest", Some("Bearer old"))
            .is_ok()
    );
    write("new");
    a.reload().unwrap();
    assert!(
        a.check("/attackmesh.v1.IngestService/Ingest", Some("Bearer old"))
            .is_err()
    );
    assert!(
        a.check("/attackmesh.v1.IngestService/Ingest", Some("Bearer new"))
            .is_ok()
    );
    std::fs::write(&file, "not: [a list").unwrap();
    assert!(a.reload().is_err());
    assert!(
        a.check("/attackmesh.v1.IngestService/Ingest", Some("Bearer new"))
            .is_ok(),
        "old tokens stay"
    );
}

#[test]
fn debug_never_shows_digests() {
    let e = TokenEntry {
        name: "x".into(),
        role: Role::Admin,
        sha256: hash_token("secret"),
    };
    assert!(!format!("{e:?}").contains(&hash_token("secret")));
}

#[test]
fn config_without_any_way_in_is_rejected() {
    assert!(AuthConfig::default().validate().is_err());
    assert!(
        AuthConfig {
            anonymous_role: Some(Role::Admin),
            ..Default::default()
        }
        .validate()
        .is_ok()
    );
}

fn headers(value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
    h
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// The status an HTTP refusal is answered with, and its `WWW-Authenticate` challenge.
fn http_answer(denied: &Denied) -> (u16, Option<&'static str>) {
    let answer = attackmesh::error::ErrorAnswer::from_error(denied);
    (answer.http_status().as_u16(), answer.challenge)
}

#[test]
fn taxii_takes_bearer_and_basic_against_the_token_digests() {
    let a = authn();
    let taxii = HttpEndpoint::TaxiiRead;
    assert_eq!(&*a.check_http(taxii, &headers("Bearer a-token")).unwrap().name, "ana");
    assert_eq!(
        &*a.check_http(taxii, &headers(&basic("ana", "a-token"))).unwrap().name,
        "ana"
    );
    assert_eq!(
        &*a.check_http(taxii, &headers(&basic("", "a-token"))).unwrap().name,
        "ana"
    );
    for bad in [
        basic("ana", "nope"),
        basic("other", "a-token"),
        "Bearer nope".into(),
        "Digest x".into(),
        "Basic %%%".into(),
    ] {
        let denied = a.check_http(taxii, &headers(&bad)).unwrap_err();
        let (status, challenge) = http_answer(&denied);
        assert_eq!(status, 401, "{bad}");
        assert!(
            challenge.is_some_and(|c| c.contains("Basic") && c.contains("Bearer")),
            "{bad}"
        );
    }
    let (status, challenge) = http_answer(&a.check_http(taxii, &HeaderMap::new()).unwrap_err());
    assert_eq!(status, 401);
    assert!(challenge.is_some_and(|c| c.contains("Basic")));
    let denied = a.check_http(taxii, &headers("Bearer d-token")).unwrap_err();
    assert_eq!(http_answer(&denied), (403, None));
    assert_eq!(denied.to_string(), "role `detector` may not read over TAXII");
}

#[test]
fn falco_takes_bearer_tokens_of_detectors() {
    let a = authn();
    let falco = HttpEndpoint::FalcoIngest;
    assert_eq!(&*a.check_http(falco, &headers("Bearer d-token")).unwrap().name, "det");
    for bad in [basic("det", "d-token"), "Bearer nope".into()] {
        let denied = a.check_http(falco, &headers(&bad)).unwrap_err();
        assert_eq!(http_answer(&denied), (401, Some("Bearer")), "{bad}");
    }
    assert_eq!(
        http_answer(&a.check_http(falco, &HeaderMap::new()).unwrap_err()),
        (401, Some("Bearer"))
    );
    let denied = a.check_http(falco, &headers("Bearer a-token")).unwrap_err();
    assert_eq!(http_answer(&denied), (403, None));
    assert_eq!(denied.to_string(), "role `analyst` may not post Falco alerts");
}

#[test]
fn http_surfaces_admit_the_anonymous_role_only_when_their_row_does() {
    let a = Authenticator::new(&AuthConfig {
        anonymous_role: Some(Role::Detector),
        ..Default::default()
    })
    .unwrap();
    let caller = a.check_http(HttpEndpoint::FalcoIngest, &HeaderMap::new()).unwrap();
    assert_eq!((&*caller.name, caller.role), ("anonymous", Role::Detector));
    assert!(matches!(
        a.check_http(HttpEndpoint::TaxiiRead, &HeaderMap::new()),
        Err(Denied::PermissionDenied { .. })
    ));
}
