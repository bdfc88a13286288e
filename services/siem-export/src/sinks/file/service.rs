//! The file sink: appends lines, syncs, rotates by size and prunes old rotations.
//!
//! Writes run on the blocking pool. A failed write or sync is retried by the driver (after the
//! file is reopened); a resend after a crash between write and acknowledgement can repeat lines
//! (count by `event_id`).

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use futures::future::BoxFuture;

use super::{FileSinkConfig, encode};
use crate::{
    error::Error,
    queue::lock,
    sinks::{ItemOutcome, QueuedEvent, Sink},
};

/// The file sink.
pub struct FileSink {
    config: FileSinkConfig,
    path: PathBuf,
    file: Arc<Mutex<Option<(File, u64)>>>,
}

impl FileSink {
    /// Builds the sink; the file is opened on first write.
    pub fn new(config: &FileSinkConfig) -> Result<Self, Error> {
        let path = config
            .path
            .clone()
            .ok_or_else(|| Error::Config("file.path is not set".into()))?;
        Ok(Self {
            config: config.clone(),
            path,
            file: Arc::new(Mutex::new(None)),
        })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open(path: &Path) -> Result<(File, u64), Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    let len = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
    Ok((file, len))
}

fn write(config: &FileSinkConfig, path: &Path, slot: &Mutex<Option<(File, u64)>>, buf: &[u8]) -> Result<(), Error> {
    let mut slot = lock(slot);
    if slot.is_none() {
        *slot = Some(open(path)?);
    }
    let Some((file, len)) = slot.as_mut() else {
        return Ok(());
    };
    let result = file.write_all(buf).and_then(|()| file.sync_data());
    if let Err(e) = result {
        // Reopen next time; a partial line is completed by nothing, so start a fresh line.
        let _ = file.write_all(b"\n");
        *slot = None;
        return Err(Error::io("write", path, e));
    }
    *len += buf.len() as u64;
    if *len >= config.rotate_bytes {
        *slot = None;
        rotate(config, path)?;
    }
    Ok(())
}

fn rotate(config: &FileSinkConfig, path: &Path) -> Result<(), Error> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    let target = PathBuf::from(format!("{}.{stamp}", path.display()));
    std::fs::rename(path, &target).map_err(|e| Error::io("rotate", path, e))?;
    if config.keep_files == 0 {
        return Ok(());
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Ok(());
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{name}.");
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("list", dir, e))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)))
        .map(|e| e.path())
        .collect();
    rotated.sort();
    let excess = rotated.len().saturating_sub(config.keep_files);
    for old in &rotated[..excess] {
        let _ = std::fs::remove_file(old);
    }
    Ok(())
}

impl Sink for FileSink {
    fn kind(&self) -> &'static str {
        super::KIND
    }

    fn send<'a>(&'a self, events: &'a [Arc<QueuedEvent>]) -> BoxFuture<'a, Vec<ItemOutcome>> {
        Box::pin(async move {
            let mut buf = Vec::with_capacity(events.len() * 1024);
            for ev in events {
                encode::write_line(&ev.event, self.config.shape, &mut buf);
            }
            let (config, path, slot) = (self.config.clone(), self.path.clone(), self.file.clone());
            let result = tokio::task::spawn_blocking(move || write(&config, &path, &slot, &buf)).await;
            let outcome = match result {
                Ok(Ok(())) => ItemOutcome::Delivered,
                Ok(Err(e)) => ItemOutcome::Retry(e.to_string()),
                Err(e) => ItemOutcome::Retry(format!("file write task failed: {e}")),
            };
            vec![outcome; events.len()]
        })
    }
}
