//! TLS on every listener, with certificates made for the test: gRPC (tonic) and HTTP (Falco
//! input, TAXII, metrics) speak TLS exactly when `tls` is configured, mutual TLS refuses
//! clients without a certificate from the client CA (links to other services included: they
//! present the process's own certificate), and token files rotate without a restart.

#![allow(clippy::unwrap_used)]

use std::{net::SocketAddr, path::Path, time::Duration};

use attackmesh_runtime::{
    auth::{AuthConfig, Role, TokenEntry, hash_token},
    config::RuntimeConfig,
    peer::PeerConfig,
    tls::{PeerTls, TlsConfig},
};
use attackmesh_testkit::{
    bind,
    pki::{Pki, client_config},
};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

struct Server {
    grpc: SocketAddr,
    http: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Serves a bare runtime server (health, reflection) and `/metrics` over HTTP, both with `tls`.
async fn start(tls: TlsConfig, auth: AuthConfig) -> Server {
    let runtime = RuntimeConfig {
        auth,
        tls,
        shutdown_grace: Duration::from_secs(1),
        ..Default::default()
    };
    runtime.validate().unwrap();
    let server = attackmesh_testkit::tokens::server(&runtime).await;
    let ((grpc, grpc_addr), (http, http_addr)) = (bind().await, bind().await);
    let stop = CancellationToken::new();
    tokio::spawn(attackmesh_runtime::http::serve(
        http,
        attackmesh_runtime::metrics::router(),
        server.http_options(),
        stop.clone().cancelled_owned(),
    ));
    tokio::spawn(server.serve(grpc, stop.clone().cancelled_owned()));
    Server {
        grpc: grpc_addr,
        http: http_addr,
        stop,
    }
}

fn open_auth() -> AuthConfig {
    AuthConfig {
        anonymous_role: Some(Role::Admin),
        ..Default::default()
    }
}

/// gRPC health over TLS trusting `ca`, presenting `identity` when given.
async fn grpc_health(addr: SocketAddr, ca: Option<&str>, identity: Option<(&str, &str)>) -> Result<(), String> {
    let scheme = if ca.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://localhost:{}", addr.port()))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    if let Some(ca) = ca {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name("localhost");
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
    }
    let channel = endpoint.connect().await.map_err(|e| format!("connect: {e:?}"))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .map(|_| ())
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

/// `GET /metrics` over HTTPS trusting `ca`, presenting `identity` when given.
async fn https_metrics(addr: SocketAddr, ca: &str, identity: Option<(&str, &str)>) -> Result<u16, String> {
    let config = client_config(ca, identity);
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    client
        .get(format!("https://localhost:{}/metrics", addr.port()))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

async fn plain_http_metrics(addr: SocketAddr) -> Result<u16, String> {
    // reqwest builds a TLS setup even for plaintext, from the process's default provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn server_tls_covers_grpc_and_http_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("attackmesh test ca");
    let (cert, key) = pki.leaf("attackmesh-server");
    let tls = TlsConfig {
        cert_file: Some(write(dir.path(), "server.pem", &cert)),
        key_file: Some(write(dir.path(), "server.key", &key)),
        ..Default::default()
    };
    let server = start(tls, open_auth()).await;

    grpc_health(server.grpc, Some(&pki.ca_pem), None).await.unwrap();
    assert!(
        grpc_health(server.grpc, None, None).await.is_err(),
        "plaintext gRPC reached a TLS listener"
    );
    let stranger = Pki::new("some other ca");
    assert!(
        grpc_health(server.grpc, Some(&stranger.ca_pem), None).await.is_err(),
        "a client trusting another CA accepted the server"
    );

    assert_eq!(https_metrics(server.http, &pki.ca_pem, None).await, Ok(200));
    assert!(
        plain_http_metrics(server.http).await.is_err(),
        "plaintext HTTP was answered on a TLS listener"
    );
    assert!(https_metrics(server.http, &stranger.ca_pem, None).await.is_err());
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let servers = Pki::new("server ca");
    let clients = Pki::new("client ca");
    let (cert, key) = servers.leaf("attackmesh-server");
    let tls = TlsConfig {
        cert_file: Some(write(dir.path(), "server.pem", &cert)),
        key_file: Some(write(dir.path(), "server.key", &key)),
        client_ca_file: Some(write(dir.path(), "clients.pem", &clients.ca_pem)),
        ..Default::default()
    };
    let server = start(tls, open_auth()).await;
    let (client_cert, client_key) = clients.leaf("detector-01");
    let rogue = Pki::new("rogue ca");
    let (rogue_cert, rogue_key) = rogue.leaf("detector-01");

    grpc_health(server.grpc, Some(&servers.ca_pem), Some((&client_cert, &client_key)))
        .await
        .unwrap();
    assert!(
        grpc_health(server.grpc, Some(&servers.ca_pem), None).await.is_err(),
        "gRPC without a client certificate was served under mutual TLS"
    );
    assert!(
        grpc_health(server.grpc, Some(&servers.ca_pem), Some((&rogue_cert, &rogue_key)))
            .await
            .is_err(),
        "a client certificate from another CA was accepted"
    );

    assert_eq!(
        https_metrics(server.http, &servers.ca_pem, Some((&client_cert, &client_key))).await,
        Ok(200)
    );
    assert!(
        https_metrics(server.http, &servers.ca_pem, None).await.is_err(),
        "HTTP without a client certificate was served under mutual TLS"
    );
    assert!(
        https_metrics(server.http, &servers.ca_pem, Some((&rogue_cert, &rogue_key)))
            .await
            .is_err()
    );
}

/// gRPC health through a link described by `peer`.
async fn peer_health(peer: &PeerConfig) -> Result<(), String> {
    let link = peer
        .connect("test", Duration::from_secs(30))
        .await
        .map_err(|e| e.to_string())?;
    let mut request = tonic::Request::new(HealthCheckRequest { service: String::new() });
    request.set_timeout(Duration::from_secs(5));
    HealthClient::new(link.channel())
        .check(request)
        .await
        .map(|_| ())
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

#[tokio::test]
async fn a_link_presents_the_process_identity_and_without_one_is_refused_under_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("mesh ca");
    let (server_cert, server_key) = pki.leaf("attribution");
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem);
    let tls = TlsConfig {
        cert_file: Some(write(dir.path(), "server.pem", &server_cert)),
        key_file: Some(write(dir.path(), "server.key", &server_key)),
        client_ca_file: Some(ca.clone()),
        ..Default::default()
    };
    let server = start(tls, open_auth()).await;
    let (cert, key) = pki.leaf("intel");
    let process = TlsConfig {
        cert_file: Some(write(dir.path(), "intel.pem", &cert)),
        key_file: Some(write(dir.path(), "intel.key", &key)),
        ca_file: Some(ca.clone()),
        server_name: Some("localhost".into()),
        ..Default::default()
    };
    // Written `http://`: the link speaks TLS because it has a CA.
    let link = |tls: PeerTls| PeerConfig {
        endpoints: vec![format!("http://127.0.0.1:{}", server.grpc.port())],
        tls,
        ..Default::default()
    };

    let mut inherited = link(PeerTls::default());
    inherited.inherit_tls(&process);
    peer_health(&inherited).await.unwrap();

    let anonymous = link(PeerTls {
        ca_file: Some(ca.clone()),
        server_name: Some("localhost".into()),
        ..Default::default()
    });
    let refused = peer_health(&anonymous).await;
    assert!(
        refused.is_err(),
        "a link without a client certificate was served under mutual TLS"
    );

    let rogue = Pki::new("rogue ca");
    let (rogue_cert, rogue_key) = rogue.leaf("intel");
    let mut impostor = link(PeerTls {
        cert_file: Some(write(dir.path(), "rogue.pem", &rogue_cert)),
        key_file: Some(write(dir.path(), "rogue.key", &rogue_key)),
        ..Default::default()
    });
    impostor.inherit_tls(&process);
    assert!(
        peer_health(&impostor).await.is_err(),
        "a link's own certificate from another CA was accepted"
    );
}

#[test]
fn unusable_tls_files_are_configuration_errors_that_name_no_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("ca");
    let (cert, key) = pki.leaf("server");
    let (_, other_key) = pki.leaf("other");
    let garbage = write(
        dir.path(),
        "garbage.pem",
        "-----BEGIN PRIVATE KEY-----\nnot base64 at all\n",
    );
    for (cert_text, key_path) in [
        (cert.as_str(), garbage.clone()),
        (cert.as_str(), write(dir.path(), "other.key", &other_key)),
        ("no certificate here", write(dir.path(), "server.key", &key)),
    ] {
        let tls = TlsConfig {
            cert_file: Some(write(dir.path(), "cert.pem", cert_text)),
            key_file: Some(key_path),
            ..Default::default()
        };
        let err = tls.listener().unwrap_err();
        assert_eq!(err.exit_code(), 64, "{err}");
        let text = err.to_string();
        assert!(!text.contains("PRIVATE KEY") && !text.contains(&key[40..80]), "{text}");
    }
}

/// A reflection call, which needs an authenticated caller: Ok, or the gRPC code.
async fn reflect(addr: SocketAddr, token: &str) -> Result<(), tonic::Code> {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest,
    };
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut request = tonic::Request::new(tokio_stream::iter([ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    }]));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(request)
        .await
        .map_err(|s| s.code())?
        .into_inner();
    stream.message().await.map(|_| ()).map_err(|s| s.code())
}

#[tokio::test]
async fn token_files_rotate_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.yaml");
    let write_tokens = |token: &str| {
        let entry = TokenEntry {
            name: "ops".into(),
            role: Role::Admin,
            sha256: hash_token(token),
        };
        std::fs::write(&file, serde_yaml_text(&entry)).unwrap();
    };
    write_tokens("first-token");
    let auth = AuthConfig {
        token_files: vec![file.clone()],
        reload_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let server = start(TlsConfig::default(), auth).await;
    assert_eq!(reflect(server.grpc, "first-token").await, Ok(()));
    assert_eq!(
        reflect(server.grpc, "second-token").await,
        Err(tonic::Code::Unauthenticated)
    );

    write_tokens("second-token");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while reflect(server.grpc, "second-token").await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "rotated token never accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        reflect(server.grpc, "first-token").await,
        Err(tonic::Code::Unauthenticated)
    );

    // A broken file keeps the tokens in force rather than locking everyone out.
    std::fs::write(&file, "- name: [broken").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(reflect(server.grpc, "second-token").await, Ok(()));
}

fn serde_yaml_text(entry: &TokenEntry) -> String {
    format!(
        "- name: {}\n  role: {}\n  sha256: {}\n",
        entry.name, entry.role, entry.sha256
    )
}
