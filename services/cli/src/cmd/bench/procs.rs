//! Child processes of the benchmark (`--processes separate`): each service is this same binary
//! started with its own config file, logging to a file beside it. Every child is killed when the
//! set is dropped, so no error path leaves a service running; [`Children::stop`] is the orderly
//! way out (SIGTERM, then wait).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// How long a child may take to report SERVING (debug builds load the knowledge base slowly).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a child may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
    addr: SocketAddr,
}

/// Running children, killed on drop.
#[derive(Default)]
pub(super) struct Children(Vec<Proc>);

impl Drop for Children {
    fn drop(&mut self) {
        for proc in &mut self.0 {
            let _ = proc.child.kill();
            let _ = proc.child.wait();
        }
    }
}

impl Children {
    /// Starts `attackmesh <args>` as `name`, serving gRPC on `addr`; output goes to `<dir>/<name>.log`.
    pub(super) fn spawn(
        &mut self,
        name: &'static str,
        args: &[&str],
        dir: &Path,
        addr: SocketAddr,
    ) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("cannot find this executable")?;
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut command = Command::new(exe);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        // The generated config is the whole configuration: no ATTACKMESH_… override applies.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ATTACKMESH_") {
                command.env_remove(key);
            }
        }
        let child = command.spawn().with_context(|| format!("cannot start {name}"))?;
        self.0.push(Proc { name, child, log, addr });
        Ok(())
    }

    /// Waits until every child answers gRPC health SERVING; fails when one exits first.
    pub(super) async fn wait_serving(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        for i in 0..self.0.len() {
            let addr = self.0[i].addr;
            loop {
                self.check_alive()?;
                if super::stack::is_serving(addr).await {
                    break;
                }
                if Instant::now() > deadline {
                    let proc = &self.0[i];
                    bail!(
                        "{} did not serve within {START_TIMEOUT:?}:\n{}",
                        proc.name,
                        tail(&proc.log)
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        for proc in &mut self.0 {
            if let Some(status) = proc.child.try_wait()? {
                bail!("{} exited with {status}:\n{}", proc.name, tail(&proc.log));
            }
        }
        Ok(())
    }

    /// Peak resident memory (VmHWM) of each child so far, in MiB, by service name.
    pub(super) fn peak_rss_mb(&self) -> BTreeMap<String, f64> {
        self.0
            .iter()
            .filter_map(|p| {
                Some((
                    p.name.replace('-', "_"),
                    peak_rss_mb(&format!("/proc/{}/status", p.child.id()))?,
                ))
            })
            .collect()
    }

    /// Resident memory (VmRSS) of each child now, in MiB, by service name.
    pub(super) fn rss_mb(&self) -> BTreeMap<String, f64> {
        self.0
            .iter()
            .filter_map(|p| {
                Some((
                    p.name.replace('-', "_"),
                    status_mb(&format!("/proc/{}/status", p.child.id()), "VmRSS:")?,
                ))
            })
            .collect()
    }

    /// CPU time (user + system) each child has used so far, in seconds, by service name.
    pub(super) fn cpu_seconds(&self) -> BTreeMap<String, f64> {
        self.0
            .iter()
            .filter_map(|p| {
                Some((
                    p.name.replace('-', "_"),
                    cpu_seconds(&format!("/proc/{}/stat", p.child.id()))?,
                ))
            })
            .collect()
    }

    /// Sends SIGTERM to every child and waits for them to exit; kills those that take too long.
    pub(super) async fn stop(mut self) -> anyhow::Result<()> {
        for proc in &self.0 {
            let _ = Command::new("kill")
                .args(["-TERM", &proc.child.id().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut failed = Vec::new();
        for proc in &mut self.0 {
            loop {
                if let Some(status) = proc.child.try_wait()? {
                    if !status.success() {
                        failed.push(format!("{} exited with {status}:\n{}", proc.name, tail(&proc.log)));
                    }
                    break;
                }
                if Instant::now() > deadline {
                    failed.push(format!("{} did not stop within {STOP_TIMEOUT:?}", proc.name));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if !failed.is_empty() {
            bail!("{}", failed.join("\n"));
        }
        Ok(())
    }
}

/// VmHWM of a `/proc/<pid>/status` file, in MiB.
pub(super) fn peak_rss_mb(status_file: &str) -> Option<f64> {
    status_mb(status_file, "VmHWM:")
}

/// A memory `field` (`VmRSS:`, `VmHWM:`) of a `/proc/<pid>/status` file, in MiB.
pub(super) fn status_mb(status_file: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(status_file).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kib / 1024.0 * 10.0).round() / 10.0)
}

/// User + system CPU time of a `/proc/<pid>/stat` file (all threads, exited ones included), in
/// seconds. The kernel reports it in USER_HZ, which is 100 on Linux.
pub(super) fn cpu_seconds(stat_file: &str) -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string(stat_file).ok()?;
    // Fields after the parenthesised command name start with the state (field 3 of proc(5)).
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split_whitespace();
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// The last lines a child logged, for error messages.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
