//! TLS files rotate without a restart: a listener whose certificate and key are replaced
//! presents the new ones to new clients while connections already open keep working, a broken
//! replacement leaves the working certificate in place (and is counted), and a link picks up a
//! replaced client certificate on its next refresh.

#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use attackmesh_runtime::{
    auth::{AuthConfig, Role},
    config::RuntimeConfig,
    peer::PeerConfig,
    tls::{PeerTls, TlsConfig},
};
use attackmesh_testkit::{
    bind,
    pki::{Pki, client_config},
};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// Replaces `name` in `dir` the way a Kubernetes Secret update or `mv` does: a new file renamed
/// over the old name.
fn replace(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    let staged = dir.join(format!(".{name}.new"));
    std::fs::write(&staged, text).unwrap();
    std::fs::rename(&staged, &path).unwrap();
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

async fn start(tls: TlsConfig) -> Server {
    let runtime = RuntimeConfig {
        auth: AuthConfig {
            anonymous_role: Some(Role::Admin),
            ..Default::default()
        },
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

/// A gRPC channel to `addr` trusting only `ca`, connected now.
async fn channel(addr: SocketAddr, ca: &str) -> Result<Channel, String> {
    Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

async fn health(channel: Channel) -> Result<(), String> {
    HealthClient::new(channel)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .map(|_| ())
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

async fn https_metrics(addr: SocketAddr, ca: &str) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(client_config(ca, None))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let response = client
        .get(format!("https://localhost:{}/metrics", addr.port()))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    response.text().await.map_err(|e| format!("{e:?}"))
}

fn reload_failures(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("attackmesh_secret_reload_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_replaced_listener_certificate_is_presented_to_new_clients_and_open_connections_keep_going() {
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (Pki::new("ca before rotation"), Pki::new("ca after rotation"));
    let (cert, key) = old_ca.leaf("attribution");
    let tls = TlsConfig {
        cert_file: Some(replace(dir.path(), "tls.crt", &cert)),
        key_file: Some(replace(dir.path(), "tls.key", &key)),
        ..Default::default()
    };
    let server = start(tls).await;
    let open = channel(server.grpc, &old_ca.ca_pem).await.unwrap();
    health(open.clone()).await.unwrap();

    let (cert, key) = new_ca.leaf("attribution");
    replace(dir.path(), "tls.key", &key);
    replace(dir.path(), "tls.crt", &cert);

    health(channel(server.grpc, &new_ca.ca_pem).await.unwrap())
        .await
        .unwrap();
    assert!(
        channel(server.grpc, &old_ca.ca_pem).await.is_err(),
        "a new client was still shown the replaced certificate"
    );
    let metrics = https_metrics(server.http, &new_ca.ca_pem).await.unwrap();
    assert!(https_metrics(server.http, &old_ca.ca_pem).await.is_err());
    health(open.clone()).await.unwrap();

    // A broken replacement (a certificate without its key) keeps the working pair in use.
    let (stranger_cert, _) = Pki::new("stranger").leaf("attribution");
    replace(dir.path(), "tls.crt", &stranger_cert);
    health(channel(server.grpc, &new_ca.ca_pem).await.unwrap())
        .await
        .unwrap();
    replace(dir.path(), "tls.crt", "not a certificate");
    health(channel(server.grpc, &new_ca.ca_pem).await.unwrap())
        .await
        .unwrap();
    let after = https_metrics(server.http, &new_ca.ca_pem).await.unwrap();
    assert!(
        reload_failures(&after) >= reload_failures(&metrics) + 2,
        "both broken replacements are counted: {after}"
    );
    health(open).await.unwrap();
}

#[tokio::test]
async fn a_link_presents_its_replaced_client_certificate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = Pki::new("mesh ca");
    let (client_before, client_after) = (Pki::new("retired client ca"), Pki::new("client ca"));
    let (server_cert, server_key) = mesh.leaf("attribution");
    let server = start(TlsConfig {
        cert_file: Some(replace(dir.path(), "server.crt", &server_cert)),
        key_file: Some(replace(dir.path(), "server.key", &server_key)),
        client_ca_file: Some(replace(dir.path(), "client-ca.crt", &client_after.ca_pem)),
        ..Default::default()
    })
    .await;
    let (cert, key) = client_before.leaf("intel");
    let link = PeerConfig {
        endpoints: vec![format!("http://127.0.0.1:{}", server.grpc.port())],
        tls: PeerTls {
            ca_file: Some(replace(dir.path(), "ca.crt", &mesh.ca_pem)),
            cert_file: Some(replace(dir.path(), "intel.crt", &cert)),
            key_file: Some(replace(dir.path(), "intel.key", &key)),
            server_name: Some("localhost".into()),
        },
        ..Default::default()
    };
    let peer = link.connect("attribution", Duration::from_millis(50)).await.unwrap();
    let call = || async {
        tokio::time::timeout(Duration::from_secs(1), health(peer.channel()))
            .await
            .unwrap_or_else(|_| Err("no answer".into()))
    };
    assert!(
        call().await.is_err(),
        "a certificate from a CA the server does not trust was accepted"
    );

    let (cert, key) = client_after.leaf("intel");
    replace(dir.path(), "intel.key", &key);
    replace(dir.path(), "intel.crt", &cert);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match call().await {
            Ok(()) => break,
            Err(error) if Instant::now() > deadline => panic!("the link never used its new certificate: {error}"),
            Err(_) => {}
        }
    }
}
