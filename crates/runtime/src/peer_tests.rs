#![allow(clippy::unwrap_used)]

use super::*;

/// A link section as the services write one: the peer flattened next to the link's own keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Link {
    #[serde(flatten)]
    peer: PeerConfig,
    streams: usize,
}

#[test]
fn a_peer_reads_flattened_or_as_its_own_section_and_refuses_unknown_keys() {
    let link: Link = serde_json::from_str(
        r#"{"endpoints": ["dns:///attribution-headless.ns.svc:50051"], "streams": 4,
            "token": "0123", "connect_timeout": "250ms", "request_timeout": "5s",
            "backoff": {"initial": "50ms", "max": "1s"}, "tls": {"ca_file": "/ca.pem"}}"#,
    )
    .unwrap();
    assert_eq!(link.streams, 4);
    assert_eq!(link.peer.token.as_ref().unwrap().expose(), "0123");
    assert_eq!(link.peer.connect_timeout, Duration::from_millis(250));
    assert_eq!(
        link.peer.request_timeout_or(Duration::from_secs(30)),
        Duration::from_secs(5)
    );
    assert_eq!(
        link.peer
            .backoff_or(Backoff::new(Duration::from_secs(1), Duration::from_secs(2))),
        Backoff::new(Duration::from_millis(50), Duration::from_secs(1))
    );
    assert_eq!(link.peer.tls.ca_file.as_deref(), Some(std::path::Path::new("/ca.pem")));
    assert!(!format!("{link:?}").contains("0123"), "the token never shows");
    for bad in [
        r#"{"endpoint": "http://x:1"}"#,
        r#"{"tls": {"ca": "/x"}}"#,
        r#"{"backoff": {"min": "1s"}}"#,
    ] {
        assert!(serde_json::from_str::<Link>(bad).is_err(), "{bad}");
    }
    let own: PeerConfig = serde_json::from_str(r#"{"endpoints": ["http://a:1"]}"#).unwrap();
    assert_eq!(
        own.connect_timeout,
        Duration::from_secs(2),
        "defaults survive a partial section"
    );
    assert_eq!(own.request_timeout_or(Duration::from_secs(5)), Duration::from_secs(5));
    assert!(serde_json::from_str::<PeerConfig>(r#"{"endpointz": []}"#).is_err());
}

#[test]
fn bad_values_are_refused_by_key() {
    let check = |f: fn(&mut PeerConfig)| {
        let mut c = PeerConfig {
            endpoints: vec!["http://intel:50054".into()],
            ..Default::default()
        };
        f(&mut c);
        c.validate().map(|()| String::new()).unwrap_or_else(|why| why)
    };
    assert_eq!(check(|_| {}), "");
    assert!(check(|c| c.endpoints = vec!["ftp://x:1".into()]).starts_with("endpoints: `ftp://x:1`"));
    assert!(
        check(|c| {
            c.token = Some(Secret::new("t"));
            c.token_file = Some("/t".into());
        })
        .contains("not both")
    );
    assert!(check(|c| c.token = Some(Secret::new(" "))).contains("token is empty"));
    assert!(check(|c| c.token_file = Some("/does/not/exist".into())).starts_with("token_file /does/not/exist"));
    assert!(check(|c| c.tls.cert_file = Some("/c.pem".into())).contains("tls: cert_file and key_file"));
    assert!(check(|c| c.tls.ca_file = Some("/does/not/exist".into())).contains("/does/not/exist"));
    assert!(check(|c| c.request_timeout = Some(Duration::from_millis(1))).contains("request_timeout"));
    assert!(check(|c| c.backoff = Some(Backoff::new(Duration::ZERO, Duration::from_secs(1)))).starts_with("backoff:"));

    let https = PeerConfig {
        endpoints: vec!["https://intel:443".into()],
        ..Default::default()
    };
    let err = https.targets().unwrap_err().to_string();
    assert!(err.contains("tls.ca_file is not set"), "{err}");
    assert!(
        PeerConfig::default()
            .targets()
            .unwrap_err()
            .to_string()
            .contains("no endpoint")
    );
}

#[test]
fn a_link_inherits_the_process_tls_but_keeps_its_own_files() {
    let process = TlsConfig {
        cert_file: Some("/p.crt".into()),
        key_file: Some("/p.key".into()),
        client_ca_file: Some("/clients.pem".into()),
        ca_file: Some("/mesh.pem".into()),
        server_name: Some("localhost".into()),
    };
    let mut peer = PeerConfig::default();
    peer.inherit_tls(&process);
    assert_eq!(peer.tls, PeerTls::from(&process));
    assert_eq!(peer.tls.cert_file.as_deref(), Some(std::path::Path::new("/p.crt")));
    let mut own = PeerConfig {
        tls: PeerTls {
            ca_file: Some("/partner.pem".into()),
            cert_file: Some("/own.crt".into()),
            key_file: Some("/own.key".into()),
            server_name: None,
        },
        ..Default::default()
    };
    own.inherit_tls(&process);
    assert_eq!(own.tls.ca_file.as_deref(), Some(std::path::Path::new("/partner.pem")));
    assert_eq!(own.tls.key_file.as_deref(), Some(std::path::Path::new("/own.key")));
    assert_eq!(own.tls.server_name.as_deref(), Some("localhost"));
}

#[tokio::test]
async fn dns_targets_become_one_endpoint_per_address() {
    let (_channel, changes) = Channel::balance_channel::<String>(8);
    let mut resolver = Resolver {
        name: "test",
        targets: vec![
            Target::parse("dns:///localhost:50999").unwrap(),
            Target::parse("127.0.0.2:7").unwrap(),
        ],
        tls: PeerTls::default(),
        connect_timeout: Duration::from_secs(1),
        changes,
        current: BTreeSet::new(),
        token: BearerToken::default(),
        tls_files: None,
    };
    let wanted = resolver.wanted().await.unwrap();
    assert!(wanted.contains_key("http://127.0.0.1:50999"), "{:?}", wanted.keys());
    assert!(wanted.contains_key("http://127.0.0.2:7"));
    resolver.refresh().await.unwrap();
    assert_eq!(resolver.current.len(), wanted.len());
    // A name that stops resolving keeps its last known addresses.
    resolver.targets[0] = Target::Dns {
        host: "does-not-exist.invalid".into(),
        port: 50999,
    };
    resolver.refresh().await.unwrap();
    assert!(resolver.current.contains("http://127.0.0.1:50999"));
}
