//! The queues' disk running out of space: Export answers `ACK_STATUS_RETRY` (nothing of a
//! refused batch is acknowledged), gRPC health says NOT_SERVING so balancers send work to a
//! replica that can take it, and a probe notices when space returns and says SERVING again.
//!
//! A full disk is the one storage condition that stops this service from accepting work; a sink
//! being down is not (its queue absorbs events), so it never touches health. This module decides
//! nothing about queues: it only records what an append found and probes for space.

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::watch;

/// Bytes a probe writes at least, whatever the refused batch weighed.
const MIN_PROBE_BYTES: u64 = 64 << 10;
/// Bytes a probe writes at most (a batch bigger than this fits when this does, or fails again).
const MAX_PROBE_BYTES: u64 = 16 << 20;
/// Name of the probe file under `<data_dir>/queues/`.
const PROBE_FILE: &str = ".space-probe";

/// Whether the queues' disk is full, shared by the Export service and the probe.
#[derive(Debug, Clone)]
pub struct DiskState {
    full: Arc<watch::Sender<bool>>,
    /// Framed bytes of the last batch that did not fit.
    needed: Arc<AtomicU64>,
}

impl Default for DiskState {
    fn default() -> Self {
        Self {
            full: Arc::new(watch::Sender::new(false)),
            needed: Arc::default(),
        }
    }
}

impl DiskState {
    /// Records that a batch of `bytes` could not be appended for want of space.
    pub fn mark_full(&self, bytes: u64) {
        self.needed.store(bytes, Ordering::Relaxed);
        if !self.full.send_replace(true) {
            tracing::error!(
                batch_bytes = bytes,
                "no space left for the queues; refusing batches until there is"
            );
        }
    }

    /// Records that appends succeed again.
    pub fn mark_ok(&self) {
        if self.full.send_replace(false) {
            tracing::info!("space for the queues is back; accepting batches");
        }
    }

    /// True while the last append (or probe) found the disk full.
    pub fn is_full(&self) -> bool {
        *self.full.borrow()
    }

    /// A receiver of changes, for health.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.full.subscribe()
    }

    /// While the disk is full, every `interval` writes and syncs a probe file the size of the
    /// refused batch under `queues_dir`; once that works, marks the disk usable. Runs until the
    /// state's last sender is gone or `stop` fires.
    pub async fn probe(self, queues_dir: PathBuf, interval: Duration, stop: tokio_util::sync::CancellationToken) {
        let mut changes = self.subscribe();
        loop {
            if !*changes.borrow_and_update() {
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    () = stop.cancelled() => return,
                }
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = stop.cancelled() => return,
            }
            let bytes = self
                .needed
                .load(Ordering::Relaxed)
                .clamp(MIN_PROBE_BYTES, MAX_PROBE_BYTES);
            let dir = queues_dir.clone();
            match tokio::task::spawn_blocking(move || probe_space(&dir, bytes)).await {
                Ok(Ok(())) => self.mark_ok(),
                Ok(Err(e)) => tracing::debug!(error = %e, "queue disk still full"),
                Err(e) => tracing::warn!(error = %e, "disk probe task failed"),
            }
        }
    }
}

/// Writes and syncs `bytes` to a probe file in `dir`, then removes it (whatever happened).
fn probe_space(dir: &Path, bytes: u64) -> std::io::Result<()> {
    let path = dir.join(PROBE_FILE);
    let result = (|| {
        let mut file = std::fs::File::create(&path)?;
        let chunk = vec![0u8; 64 << 10];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            file.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        file.sync_data()
    })();
    let removed = std::fs::remove_file(&path);
    result.and(removed)
}

/// True for the errors of a full disk or an exhausted quota.
pub fn is_disk_full(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use attackmesh::proto::{AckStatus, ExportRequest};

    use super::*;
    use crate::{
        queue::{Queue, QueueSettings},
        service::ExportState,
        status::{SinkHandle, SinkStats},
    };

    /// The same path as the tmpfs test (tests/disk_full.rs), on machines that may not mount one:
    /// the queue's file layer answers ENOSPC, then works again.
    #[tokio::test]
    async fn an_injected_enospc_answers_retry_and_space_coming_back_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        let settings = QueueSettings {
            max_bytes: 1 << 20,
            segment_bytes: 1 << 16,
            fsync: Default::default(),
        };
        let (queue, _) = Queue::open("file", dir.path(), settings).unwrap();
        let sink = SinkHandle {
            name: "file",
            kind: "file",
            queue: queue.clone(),
            stats: Arc::new(SinkStats::default()),
        };
        let state = ExportState::new(vec![sink], Duration::from_millis(300));
        let batch = |id| ExportRequest {
            batch_id: id,
            events: (0..3).map(attackmesh_testkit::fixtures::event).collect(),
            ..Default::default()
        };
        *crate::queue::lock(&queue.fail_appends) = Some(std::io::ErrorKind::StorageFull);
        let refused = state.export_batch(batch(1)).await.unwrap();
        assert_eq!(refused.status, AckStatus::Retry as i32);
        assert_eq!(
            refused.message,
            "no space left for the queue of sink `file`; resend later"
        );
        assert_eq!(refused.retry_after.map(|d| d.nanos), Some(300_000_000));
        assert!(state.disk().is_full());
        assert_eq!(queue.stats().depth, 0, "nothing of the refused batch is queued");

        *crate::queue::lock(&queue.fail_appends) = None;
        let taken = state.export_batch(batch(2)).await.unwrap();
        assert_eq!(taken.status, AckStatus::Durable as i32);
        assert!(!state.disk().is_full());
        assert_eq!(queue.stats().depth, 3);
    }

    #[tokio::test]
    async fn the_probe_clears_a_full_disk_once_a_batch_fits() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskState::default();
        let mut changes = disk.subscribe();
        disk.mark_full(1024);
        assert!(*changes.borrow_and_update());
        let stop = tokio_util::sync::CancellationToken::new();
        let probe = tokio::spawn(
            disk.clone()
                .probe(dir.path().to_owned(), Duration::from_millis(10), stop.clone()),
        );
        changes.changed().await.unwrap();
        assert!(!*changes.borrow_and_update(), "a temporary directory has room");
        stop.cancel();
        probe.await.unwrap();
    }

    #[test]
    fn enospc_and_edquot_are_a_full_disk() {
        assert!(is_disk_full(&std::io::Error::from_raw_os_error(28)));
        assert!(is_disk_full(&std::io::Error::from_raw_os_error(122)));
        assert!(!is_disk_full(&std::io::Error::from_raw_os_error(5)));
    }

    #[test]
    fn a_probe_leaves_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        probe_space(dir.path(), MIN_PROBE_BYTES).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
