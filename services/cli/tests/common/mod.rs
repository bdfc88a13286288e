//! Helpers of the binary-level security tests: `attackmesh serve all` (or one `attackmesh
//! serve <service>` per service) on free loopback ports with a config written for the test, raw
//! gRPC calls to any method path, and the secret finder that the redaction test relies on.
//!
//! A port found free can be taken before the process binds it; [`Serve`] then starts again on
//! fresh ports (the config's addresses moved with them), and only for that reason. Tests read
//! the addresses from [`Serve::addrs`] once it started.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

mod raw;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use attackmesh_runtime::auth::hash_token;
pub use attackmesh_testkit::free_addrs;
use base64::Engine as _;
#[allow(unused_imports)]
pub use raw::{RawCodec, call};
use serde_json::{Value, json};
use tonic::transport::Channel;

/// Tokens of the test, by caller name: (role, token).
pub const TOKENS: &[(&str, &str, &str)] = &[
    ("edge-detector", "detector", "det-7d1c0e52a9b84f6b9e3a"),
    ("soc-analyst", "analyst", "ana-4f0b2c9e8d7a4613b5c1"),
    ("ops-admin", "admin", "adm-93e5a1d7c2b04e8f9a6d"),
    ("slow-detector", "detector", "slw-1a2b3c4d5e6f7a8b9c0d"),
];

/// The token of caller `name`.
pub fn token(name: &str) -> &'static str {
    TOKENS.iter().find(|(n, _, _)| *n == name).map(|(_, _, t)| *t).unwrap()
}

/// Writes the token file (digests only) and returns its path.
pub fn write_tokens(dir: &Path) -> PathBuf {
    let path = dir.join("tokens.yaml");
    let text: String = TOKENS
        .iter()
        .map(|(name, role, token)| format!("- name: {name}\n  role: {role}\n  sha256: {}\n", hash_token(token)))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// Listen addresses of one `serve all`.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub attribution: SocketAddr,
    pub enrichment: SocketAddr,
    pub siem_export: SocketAddr,
    pub intel: SocketAddr,
    pub correlation: SocketAddr,
    pub falco: SocketAddr,
    pub taxii: SocketAddr,
    pub metrics: SocketAddr,
}

impl Addrs {
    pub fn new() -> Self {
        let [
            attribution,
            enrichment,
            siem_export,
            intel,
            correlation,
            falco,
            taxii,
            metrics,
        ] = free_addrs();
        Self {
            attribution,
            enrichment,
            siem_export,
            intel,
            correlation,
            falco,
            taxii,
            metrics,
        }
    }

    fn all(&self) -> [SocketAddr; 8] {
        [
            self.attribution,
            self.enrichment,
            self.siem_export,
            self.intel,
            self.correlation,
            self.falco,
            self.taxii,
            self.metrics,
        ]
    }

    /// `config` with every address of `self` in its strings (`127.0.0.1:port`, `localhost:port`)
    /// replaced by the same listener's address in `to`.
    fn move_config(&self, to: &Addrs, config: &Value) -> Value {
        match config {
            Value::String(text) => {
                let mut text = text.clone();
                for (from, to) in self.all().iter().zip(to.all()) {
                    for host in ["127.0.0.1", "localhost"] {
                        text = replace_addr(
                            &text,
                            &format!("{host}:{}", from.port()),
                            &format!("{host}:{}", to.port()),
                        );
                    }
                }
                Value::String(text)
            }
            Value::Array(items) => Value::Array(items.iter().map(|v| self.move_config(to, v)).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), self.move_config(to, v))).collect())
            }
            other => other.clone(),
        }
    }

    /// The gRPC listener serving `service` (a proto service name).
    pub fn grpc_for(&self, service: &str) -> Option<SocketAddr> {
        match service {
            "attackmesh.v1.AttributionService" => Some(self.attribution),
            "attackmesh.v1.IngestService" => Some(self.enrichment),
            "attackmesh.v1.ExportService" => Some(self.siem_export),
            "attackmesh.v1.IntelService" => Some(self.intel),
            "attackmesh.v1.CorrelationService" => Some(self.correlation),
            _ => None,
        }
    }
}

/// `text` with `from` replaced by `to` where no digit follows (port 80 is not port 8080's start).
fn replace_addr(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(from) {
        let end = at + from.len();
        out.push_str(&rest[..at]);
        if rest[end..].starts_with(|c: char| c.is_ascii_digit()) {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// A baseline config for `serve all` in `dir`: every service on its own port, the test's
/// tokens, the file sink only.
pub fn base_config(dir: &Path, addrs: &Addrs) -> Value {
    json!({
        "auth": {"token_files": [write_tokens(dir)]},
        "telemetry": {"log_level": "info"},
        "shutdown_grace": "2s",
        "listen": {
            "attribution": addrs.attribution.to_string(),
            "enrichment": addrs.enrichment.to_string(),
            "siem_export": addrs.siem_export.to_string(),
            "intel": addrs.intel.to_string(),
            "correlation": addrs.correlation.to_string(),
            "metrics": addrs.metrics.to_string(),
        },
        "enrichment": {
            "data_dir": dir.join("enrichment"),
            "http_listen": addrs.falco.to_string(),
        },
        "siem_export": {
            "data_dir": dir.join("export"),
            "file": {"path": dir.join("out/events.ndjson")},
        },
        "intel": {
            "data_dir": dir.join("intel"),
            "http_listen": addrs.taxii.to_string(),
        },
        "correlation": {"data_dir": dir.join("correlation")},
    })
}

/// A running `attackmesh serve all` (or one `attackmesh serve <service>` per service), killed
/// when dropped.
pub struct Serve {
    pub children: Vec<Child>,
    pub logs: Vec<PathBuf>,
    pub addrs: Addrs,
}

impl Drop for Serve {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The services `attackmesh serve` runs one by one, with the listener their health answers on.
const SERVICES: [&str; 5] = ["attribution", "enrichment", "siem-export", "intel", "correlation"];

impl Serve {
    /// Starts `serve all` with `config` and waits until every gRPC service reports SERVING.
    pub async fn start(dir: &Path, addrs: Addrs, config: &Value) -> Self {
        Self::start_with(dir, addrs, config, None).await
    }

    /// [`Serve::start`], checking health over TLS with `tls` when given.
    pub async fn start_with(
        dir: &Path,
        addrs: Addrs,
        config: &Value,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Self {
        Self::start_on_free_ports(addrs, config, tls, |config| {
            let path = write_config(dir, config);
            let log = dir.join("serve.log");
            let child = spawn(&["serve", "all"], &path, &log, &[]);
            (vec![child], vec![log])
        })
        .await
    }

    /// Starts one `serve <service>` process per service with `config`, each with the extra
    /// environment `env(service)` gives it, and waits until every one reports SERVING.
    pub async fn start_each(
        dir: &Path,
        addrs: Addrs,
        config: &Value,
        tls: Option<tonic::transport::ClientTlsConfig>,
        env: impl Fn(&str) -> Vec<(String, String)>,
    ) -> Self {
        Self::start_on_free_ports(addrs, config, tls, |config| {
            let path = write_config(dir, config);
            SERVICES
                .iter()
                .map(|service| {
                    let log = dir.join(format!("serve-{service}.log"));
                    (spawn(&["serve", service], &path, &log, &env(service)), log)
                })
                .unzip()
        })
        .await
    }

    /// Runs `launch` (processes and their logs) with `config` until every service reports
    /// SERVING. When a process exits because one of its addresses was taken since the test
    /// found it free, launches again on fresh addresses; any other exit fails the test.
    async fn start_on_free_ports(
        mut addrs: Addrs,
        config: &Value,
        tls: Option<tonic::transport::ClientTlsConfig>,
        mut launch: impl FnMut(&Value) -> (Vec<Child>, Vec<PathBuf>),
    ) -> Self {
        let mut config = config.clone();
        for attempt in 1.. {
            let (children, logs) = launch(&config);
            let mut serve = Self { children, logs, addrs };
            match serve.wait_all_serving(tls.clone()).await {
                Ok(()) => return serve,
                Err(output) if output.contains("Address already in use") && attempt < 5 => {
                    eprintln!("a port was taken before attackmesh bound it; starting again on fresh ports:\n{output}");
                    drop(serve);
                    let fresh = Addrs::new();
                    config = addrs.move_config(&fresh, &config);
                    addrs = fresh;
                }
                Err(output) => panic!("attackmesh serve exited:\n{output}"),
            }
        }
        unreachable!()
    }

    /// Everything the processes wrote so far.
    pub fn output(&self) -> String {
        self.logs
            .iter()
            .map(|log| {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                format!("--- {}\n{text}", log.display())
            })
            .collect()
    }

    /// Waits until every gRPC service reports SERVING; the processes' output when one exits.
    async fn wait_all_serving(&mut self, tls: Option<tonic::transport::ClientTlsConfig>) -> Result<(), String> {
        let addrs = self.addrs;
        for addr in [
            addrs.attribution,
            addrs.enrichment,
            addrs.siem_export,
            addrs.intel,
            addrs.correlation,
        ] {
            self.wait_serving(addr, tls.clone()).await?;
        }
        Ok(())
    }

    /// Waits until `addr` reports SERVING (plain gRPC), failing if a process of this run exits.
    pub async fn wait_serving_plain(&mut self, addr: SocketAddr) {
        if let Err(output) = self.wait_serving(addr, None).await {
            panic!("attackmesh serve exited:\n{output}");
        }
    }

    async fn wait_serving(
        &mut self,
        addr: SocketAddr,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Result<(), String> {
        use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            for child in &mut self.children {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("exit {status}\n{}", self.output()));
                }
            }
            let endpoint = match &tls {
                None => Channel::from_shared(format!("http://{addr}")).unwrap(),
                Some(tls) => Channel::from_shared(format!("https://localhost:{}", addr.port()))
                    .unwrap()
                    .tls_config(tls.clone())
                    .unwrap(),
            };
            if let Ok(channel) = endpoint.connect().await
                && let Ok(answer) = HealthClient::new(channel)
                    .check(HealthCheckRequest { service: String::new() })
                    .await
                && answer.get_ref().status == ServingStatus::Serving as i32
            {
                return Ok(());
            }
            assert!(Instant::now() < deadline, "{addr} never served:\n{}", self.output());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn write_config(dir: &Path, config: &Value) -> PathBuf {
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    path
}

/// `attackmesh <args> --config <config>` writing to `log`, for tests that start, kill and
/// restart single services themselves.
pub fn spawn_attackmesh(args: &[&str], config: &Path, log: &Path) -> Child {
    spawn(args, config, log, &[])
}

/// `attackmesh <args> --config <config>` with only PATH and `env` in its environment, writing
/// to `log`.
fn spawn(args: &[&str], config: &Path, log: &Path, env: &[(String, String)]) -> Child {
    let file = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_attackmesh"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap()
}

/// A plain HTTP client (TLS tests build their own).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// Where a secret was found: its label and the text around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    pub secret: String,
    pub form: &'static str,
    pub context: String,
}

/// Finds each secret in `haystack` as written, and in the encodings it takes on the wire or in
/// logs: base64 (alone and as a Basic `user:password` pair), URL-encoded, JSON-escaped and hex.
/// `secrets` are (label, value) pairs; `users` are Basic user names the secret may pair with.
pub fn find_secrets(haystack: &str, secrets: &[(&str, &str)], users: &[&str]) -> Vec<Leak> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut leaks = Vec::new();
    for (label, value) in secrets {
        let mut forms: Vec<(&'static str, String)> = vec![
            ("plain", (*value).to_owned()),
            ("base64", b64.encode(value)),
            ("url-encoded", url_encode(value)),
            (
                "json-escaped",
                serde_json::to_string(value).unwrap().trim_matches('"').to_owned(),
            ),
            ("hex", value.bytes().map(|b| format!("{b:02x}")).collect()),
        ];
        for user in users {
            forms.push(("basic-auth", b64.encode(format!("{user}:{value}"))));
        }
        for (form, needle) in forms {
            if needle.len() < 6 {
                continue;
            }
            if let Some(at) = haystack.find(&needle) {
                let mut start = at.saturating_sub(80);
                while !haystack.is_char_boundary(start) {
                    start -= 1;
                }
                let mut end = (at + needle.len() + 80).min(haystack.len());
                while !haystack.is_char_boundary(end) {
                    end += 1;
                }
                leaks.push(Leak {
                    secret: (*label).to_owned(),
                    form,
                    context: haystack[start..end].to_owned(),
                });
            }
        }
    }
    leaks
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
