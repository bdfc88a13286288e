//! A full disk under the queues, on a real small file system (a 2 MiB tmpfs, mounted when the
//! test runs as root, as CI does): Export answers RETRY with `retry_after` and acknowledges
//! nothing it could not write, health says NOT_SERVING, and when space returns the service says
//! SERVING again by itself, takes the resent batch and delivers everything it acknowledged.
//! Where no tmpfs can be mounted (not root) this test says NOT RUN, and only the unit test in
//! `src/disk.rs` covers the path, with ENOSPC injected into the queue's file layer;
//! `TEST_REQUIRE_TMPFS=1` (set by `.ci/run`) makes a missing tmpfs a failure.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::BTreeSet,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use attackmesh::proto::{AckStatus, ExportRequest, ExportResponse, export_service_client::ExportServiceClient};
use attackmesh_runtime::auth::Role;
use attackmesh_testkit::{Running, Tokens, file_sink::wait_for_sink, fixtures, wait_health, with_token};
use tokio_stream::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;

/// A size-limited tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts one at `dir`; `None` when this process may not mount (not root, no privilege).
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .ok()?;
        status.success().then(|| Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros into `path` until the file system refuses (ENOSPC).
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 16 << 10];
    loop {
        if let Err(e) = file.write_all(&chunk).and_then(|()| file.sync_data()) {
            assert_eq!(e.raw_os_error(), Some(28), "filling stops at ENOSPC: {e}");
            return;
        }
    }
}

async fn export(
    running: &Running<attackmesh_siem_export::Error>,
    batch_id: u64,
    range: std::ops::Range<u64>,
) -> ExportResponse {
    let mut client = ExportServiceClient::new(running.channel());
    let batch = ExportRequest {
        batch_id,
        events: range.map(fixtures::event).collect(),
        ..Default::default()
    };
    let mut answers = client
        .export(with_token(tokio_stream::iter([batch]), "adm-token"))
        .await
        .unwrap()
        .into_inner();
    answers.next().await.unwrap().unwrap()
}

fn ids(range: std::ops::Range<u64>) -> BTreeSet<String> {
    range.map(|i| fixtures::event(i).event_id).collect()
}

#[tokio::test]
async fn a_full_disk_refuses_batches_until_space_returns_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let Some(_tmpfs) = Tmpfs::mount(&data, "2m") else {
        assert!(
            std::env::var("TEST_REQUIRE_TMPFS").as_deref() != Ok("1"),
            "TEST_REQUIRE_TMPFS=1 but a tmpfs cannot be mounted here (run as root)"
        );
        eprintln!("disk-full test NOT RUN: mounting a tmpfs needs root");
        return;
    };
    eprintln!("disk-full test on a 2 MiB tmpfs at {}", data.display());
    let out = dir.path().join("out").join("events.ndjson");
    let mut config = common::config(&data);
    config.file.path = Some(out.clone());
    config.queue.retry_after = Duration::from_millis(200);
    let server = Tokens::new(&[("adm", Role::Admin)]).server().await;
    let running = Running::start(|listener, shutdown| async move {
        attackmesh_siem_export::server::serve(&config, server, listener, shutdown).await
    })
    .await;

    let first = export(&running, 1, 0..20).await;
    assert_eq!(first.status, AckStatus::Durable as i32);

    fill(&data.join("filler"));
    let refused = export(&running, 2, 20..40).await;
    assert_eq!(refused.status, AckStatus::Retry as i32, "{refused:?}");
    assert_eq!(refused.accepted, 0);
    assert!(
        refused.message.contains("no space left for the queue of sink `file`"),
        "{}",
        refused.message
    );
    let after = refused.retry_after.unwrap();
    assert_eq!((after.seconds, after.nanos), (0, 200_000_000));
    wait_health(running.addr, ServingStatus::NotServing).await;

    std::fs::remove_file(data.join("filler")).unwrap();
    wait_health(running.addr, ServingStatus::Serving).await;
    let resent = export(&running, 3, 20..40).await;
    assert_eq!(resent.status, AckStatus::Durable as i32, "{resent:?}");
    // The batch acknowledged before the disk filled (perhaps still queued then: the file sink
    // keeps its own state under the same data directory) is delivered too.
    let delivered = wait_for_sink(&out, &ids(0..40), |_| true).await;
    let got: BTreeSet<String> = delivered.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(got, ids(0..40));
    running.stop().await.unwrap();
}
