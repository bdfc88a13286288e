//! One set of three services under test, real or no-op, in child processes or in this process,
//! configured for the run: loopback listeners, the run's tokens, the chosen sink in the run's
//! temporary directory. The same generated config serves both layouts.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use attackmesh_runtime::auth::hash_token;
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::{FileShape, Processes, Sink, noop, noop::Role, procs::Children};
use crate::{
    cmd::serve::{self, Service},
    config::Config,
};

/// Token of the HEC sink (the in-process receiver does not check it).
const HEC_TOKEN: &str = "bench-hec-token";

/// What every stack of one run shares.
pub(super) struct Setup {
    /// The run's temporary directory.
    pub(super) dir: PathBuf,
    /// Token the driver presents (role detector).
    pub(super) detector_token: String,
    /// Token the services present to each other and the driver to siem-export (role admin).
    pub(super) internal_token: String,
    /// Where the sink writes.
    pub(super) sink: Sink,
    /// Line shape of the file sink.
    pub(super) file_shape: FileShape,
    /// Base URL of the HEC receiver with `--sink http`.
    pub(super) hec_url: Option<String>,
}

impl Setup {
    /// Where the file sink of the stack of `phase` writes its NDJSON files.
    pub(super) fn sink_dir(&self, phase: &str) -> PathBuf {
        self.dir.join(phase).join("sink")
    }

    fn internal_token_file(&self) -> PathBuf {
        self.dir.join("internal.token")
    }

    /// Writes the files every stack reads.
    pub(super) fn write(&self) -> anyhow::Result<()> {
        std::fs::write(self.internal_token_file(), &self.internal_token)?;
        Ok(())
    }
}

/// Listen addresses of one stack.
#[derive(Debug, Clone, Copy)]
pub(super) struct Addrs {
    pub(super) attribution: SocketAddr,
    pub(super) enrichment: SocketAddr,
    pub(super) siem_export: SocketAddr,
}

/// The product config of one stack (`phase` names its directory).
fn config(setup: &Setup, phase: &str, addrs: Addrs) -> Value {
    let dir = setup.dir.join(phase);
    let token_file = setup.internal_token_file();
    let upstream = |addr: SocketAddr| json!({"endpoints": [format!("http://{addr}")], "token_file": token_file});
    let sink = match setup.sink {
        Sink::File => {
            json!({"file": {"path": setup.sink_dir(phase).join("events.ndjson"), "shape": setup.file_shape.name(), "rotate_bytes": 1u64 << 40, "keep_files": 0}})
        }
        Sink::Http => json!({"splunk_hec": {"url": setup.hec_url, "token": HEC_TOKEN, "ack": false}}),
    };
    let mut siem_export = json!({"data_dir": dir.join("export")});
    if let (Some(to), Some(from)) = (siem_export.as_object_mut(), sink.as_object()) {
        to.extend(from.clone());
    }
    json!({
        "auth": {"tokens": [
            {"name": "bench-detector", "role": "detector", "sha256": hash_token(&setup.detector_token)},
            {"name": "enrichment", "role": "admin", "sha256": hash_token(&setup.internal_token)},
        ]},
        "telemetry": {"log_level": "warn"},
        "shutdown_grace": "5s",
        "listen": {
            "attribution": addrs.attribution.to_string(),
            "enrichment": addrs.enrichment.to_string(),
            "siem_export": addrs.siem_export.to_string(),
        },
        "enrichment": {
            "data_dir": dir.join("enrichment"),
            "attribution": upstream(addrs.attribution),
            "export": upstream(addrs.siem_export),
        },
        "siem_export": siem_export,
    })
}

enum Layout {
    Separate(Children),
    Single {
        stop: CancellationToken,
        tasks: JoinSet<anyhow::Result<()>>,
    },
}

/// A running stack.
pub(super) struct Stack {
    /// Where detectors send.
    pub(super) ingest: SocketAddr,
    /// The (real or no-op) export service.
    pub(super) export: SocketAddr,
    layout: Layout,
}

impl Stack {
    /// Starts the real pipeline (`noop` false) or the no-op one, in the directory of `phase`
    /// under the run's directory, and waits until it serves.
    pub(super) async fn start(setup: &Setup, processes: Processes, phase: &str, noop: bool) -> anyhow::Result<Self> {
        let dir = setup.dir.join(phase);
        std::fs::create_dir_all(&dir)?;
        match processes {
            Processes::Separate => Self::start_separate(setup, &dir, phase, noop).await,
            Processes::Single => Self::start_single(setup, phase, noop).await,
        }
    }

    /// One process per service on ports found free. A port can be taken between finding it
    /// and the child binding it; the stack then starts again on fresh ports (a few times),
    /// for that reason only.
    async fn start_separate(setup: &Setup, dir: &Path, phase: &str, noop: bool) -> anyhow::Result<Self> {
        let mut attempt = 1;
        loop {
            match Self::start_separate_once(setup, dir, phase, noop).await {
                Err(e) if attempt < 3 && format!("{e:#}").contains("Address already in use") => {
                    tracing::warn!(
                        attempt,
                        "a port was taken before a service bound it; starting again on fresh ports"
                    );
                    attempt += 1;
                }
                started => return started,
            }
        }
    }

    async fn start_separate_once(setup: &Setup, dir: &Path, phase: &str, noop: bool) -> anyhow::Result<Self> {
        let addrs = Addrs {
            attribution: free_addr()?,
            enrichment: free_addr()?,
            siem_export: free_addr()?,
        };
        let path = dir.join("config.yaml");
        // JSON is YAML, and keeps the generated file free of a YAML writer.
        std::fs::write(&path, serde_json::to_vec_pretty(&config(setup, phase, addrs))?)?;
        let path = path.to_str().context("temporary directory is not UTF-8")?;
        let mut children = Children::default();
        let roles = [
            ("attribution", "attribution", addrs.attribution),
            ("siem-export", "export", addrs.siem_export),
            ("enrichment", "ingest", addrs.enrichment),
        ];
        for (service, role, addr) in roles {
            let args: Vec<&str> = if noop {
                vec!["bench", "noop-hop", "--role", role, "--config", path]
            } else {
                vec!["serve", service, "--config", path]
            };
            children.spawn(service, &args, dir, addr)?;
        }
        children.wait_serving().await?;
        Ok(Self {
            ingest: addrs.enrichment,
            export: addrs.siem_export,
            layout: Layout::Separate(children),
        })
    }

    async fn start_single(setup: &Setup, phase: &str, noop: bool) -> anyhow::Result<Self> {
        let bind = || TcpListener::bind("127.0.0.1:0");
        let (attribution, siem_export, enrichment) = (bind().await?, bind().await?, bind().await?);
        let addrs = Addrs {
            attribution: attribution.local_addr()?,
            enrichment: enrichment.local_addr()?,
            siem_export: siem_export.local_addr()?,
        };
        let config: Config = serde_json::from_value(config(setup, phase, addrs)).context("bench config")?;
        config.validate()?;
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let services = [
            (Service::Attribution, Role::Attribution, attribution),
            (Service::SiemExport, Role::Export, siem_export),
            (Service::Enrichment, Role::Ingest, enrichment),
        ];
        for (service, role, listener) in services {
            if noop {
                let (config, stop) = (config.clone(), stop.clone());
                tasks.spawn(async move { noop::serve(role, &config, listener, stop.cancelled_owned()).await });
            } else {
                tasks.spawn(serve::start(service, config.clone(), listener, stop.clone()).await?);
            }
        }
        let mut stack = Self {
            ingest: addrs.enrichment,
            export: addrs.siem_export,
            layout: Layout::Single { stop, tasks },
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        for addr in [addrs.attribution, addrs.siem_export, addrs.enrichment] {
            while !is_serving(addr).await {
                if let Layout::Single { tasks, .. } = &mut stack.layout
                    && let Some(ended) = tasks.try_join_next()
                {
                    ended??;
                    bail!("a service stopped while starting");
                }
                if Instant::now() > deadline {
                    bail!("{addr} did not serve within 120s");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(stack)
    }

    /// Peak resident memory so far in MiB: per service, or `all` for this process.
    pub(super) fn peak_rss_mb(&self) -> BTreeMap<String, f64> {
        match &self.layout {
            Layout::Separate(children) => children.peak_rss_mb(),
            Layout::Single { .. } => super::procs::peak_rss_mb("/proc/self/status")
                .map(|mb| BTreeMap::from([("all".to_owned(), mb)]))
                .unwrap_or_default(),
        }
    }

    /// Resident memory now, in MiB: per service, or `all` for this process.
    pub(super) fn rss_mb(&self) -> BTreeMap<String, f64> {
        match &self.layout {
            Layout::Separate(children) => children.rss_mb(),
            Layout::Single { .. } => super::procs::status_mb("/proc/self/status", "VmRSS:")
                .map(|mb| BTreeMap::from([("all".to_owned(), mb)]))
                .unwrap_or_default(),
        }
    }

    /// CPU seconds used so far: per service, or `all` for this process (the load generator
    /// included).
    pub(super) fn cpu_seconds(&self) -> BTreeMap<String, f64> {
        match &self.layout {
            Layout::Separate(children) => children.cpu_seconds(),
            Layout::Single { .. } => super::procs::cpu_seconds("/proc/self/stat")
                .map(|s| BTreeMap::from([("all".to_owned(), s)]))
                .unwrap_or_default(),
        }
    }

    /// Stops the services the way an operator would and waits for them.
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        match self.layout {
            Layout::Separate(children) => children.stop().await,
            Layout::Single { stop, mut tasks } => {
                stop.cancel();
                while let Some(ended) = tasks.join_next().await {
                    ended??;
                }
                Ok(())
            }
        }
    }
}

/// Restarts this process's peak-RSS count, so a single-process phase reports its own peak.
pub(super) fn reset_own_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Whether gRPC health on `addr` answers SERVING.
pub(super) async fn is_serving(addr: SocketAddr) -> bool {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let Ok(endpoint) = Channel::from_shared(format!("http://{addr}")) else {
        return false;
    };
    let Ok(channel) = endpoint.connect_timeout(Duration::from_secs(1)).connect().await else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .is_ok_and(|r| r.get_ref().status == ServingStatus::Serving as i32)
}

/// A free port on 127.0.0.1 (bound, then released for a child to take).
fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}
