//! The shipper behind `attackmesh ship`: reads detector log files, streams their records in
//! batches over `Ingest`, and checkpoints each file once its batches are acknowledged.
//!
//! Delivery is at-least-once with no duplicates in the normal course: up to `max_in_flight`
//! batches are pipelined on one stream; a RETRY answer resends that batch after `retry_after`
//! plus the runtime's backoff (growing exponentially while RETRYs continue); a broken stream
//! reconnects with the same exponential, fully jittered backoff and resends every
//! unacknowledged batch. A checkpoint (offset, line, parser
//! state, inode) only ever covers acknowledged records and is replaced atomically, so a restart
//! resends nothing that was acknowledged and skips nothing that was not. Event ids are derived
//! from the record, so even a resend after a crash de-duplicates in the sinks.

mod checkpoint;
mod source;
mod window;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use attackmesh::{
    codec::EncodedIngest,
    formats::Format,
    proto::{AckStatus, IngestResponse},
};
use attackmesh_runtime::{backoff::Backoff, secret::Secret};
pub use checkpoint::{Checkpoint, Checkpoints};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Streaming, codec::CompressionEncoding, transport::Endpoint};

use crate::{error::Error, export::proto_duration, upstream::wire::Wire};
use window::{Batch, Window};

/// Longest pause between reconnects or RETRY resends.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Pause before reconnecting after a broken stream.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(200), MAX_BACKOFF);
/// Pause added to the service's `retry_after` while RETRY answers continue.
const RESEND: Backoff = Backoff::new(Duration::from_millis(100), MAX_BACKOFF);
/// How long a stopping shipper waits for the answers to batches in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// Called for every rejected record as it is found.
pub type OnRejected = Box<dyn Fn(&Rejected) + Send + Sync>;

/// What to ship and where.
pub struct ShipOptions {
    /// Record format of every file.
    pub format: Format,
    /// Files to ship.
    pub paths: Vec<PathBuf>,
    /// Ingest endpoint, `http://host:port` or `https://host:port`.
    pub endpoint: String,
    /// Bearer token (role detector).
    pub token: Option<Secret>,
    /// CA bundle for `https://` endpoints.
    pub ca_file: Option<PathBuf>,
    /// Directory for checkpoints; without one every run ships the files from the start.
    pub checkpoint_dir: Option<PathBuf>,
    /// Events per batch (1 to 10,000).
    pub batch: usize,
    /// Batches sent without an answer yet.
    pub max_in_flight: usize,
    /// Keep reading files as they grow (until stopped).
    pub follow: bool,
    /// How often a followed file is checked for new data.
    pub poll_interval: Duration,
    /// Called for every rejected record as it is found.
    pub on_rejected: Option<OnRejected>,
    /// Progress, updated after every acknowledgement.
    pub progress: Option<watch::Sender<Progress>>,
}

impl ShipOptions {
    /// Options with the defaults of `attackmesh ship`.
    pub fn new(format: Format, paths: Vec<PathBuf>, endpoint: impl Into<String>) -> Self {
        Self {
            format,
            paths,
            endpoint: endpoint.into(),
            token: None,
            ca_file: None,
            checkpoint_dir: None,
            batch: 500,
            max_in_flight: 8,
            follow: false,
            poll_interval: Duration::from_millis(250),
            on_rejected: None,
            progress: None,
        }
    }
}

/// A record that was not delivered, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: u64,
    /// The event's id (empty for records that did not parse).
    pub event_id: String,
    /// Every problem, as `field: description` for invalid events or the parse error.
    pub reasons: Vec<String>,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: ", self.path.display(), self.line)?;
        if !self.event_id.is_empty() {
            write!(f, "event {}: ", self.event_id)?;
        }
        f.write_str(&self.reasons.join("; "))
    }
}

/// Counters while shipping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Events acknowledged as durable.
    pub accepted: u64,
    /// Records rejected (unparseable or invalid).
    pub rejected: u64,
    /// Batches acknowledged.
    pub batches: u64,
    /// Batches resent after RETRY or a broken stream.
    pub resent: u64,
    /// Streams opened after the first.
    pub reconnects: u64,
}

/// How a run ended.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Final counters.
    pub progress: Progress,
    /// The first 10,000 rejections.
    pub rejected: Vec<Rejected>,
    /// True when stopped before every file was shipped.
    pub interrupted: bool,
}

/// Ships every file until done (or, with `follow`, until `stop`).
pub async fn ship(options: ShipOptions, stop: CancellationToken) -> Result<Summary, Error> {
    if options.paths.is_empty() {
        return Err(Error::Config("ship: no file given".into()));
    }
    if options.batch == 0 || options.batch > attackmesh::limits::MAX_BATCH_EVENTS {
        return Err(Error::Config("ship: --batch must be 1 to 10000".into()));
    }
    let checkpoints = options.checkpoint_dir.as_deref().map(Checkpoints::open).transpose()?;
    let mut starts = Vec::new();
    for path in &options.paths {
        let path = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
        starts.push(source::start_point(&path, checkpoints.as_ref())?);
    }
    let endpoint = endpoint(&options)?;
    // Room for about two batches of records, in chunks.
    let (items_tx, items) = mpsc::channel((options.batch.saturating_mul(2) / source::CHUNK_ITEMS).max(2));
    let stop_readers = Arc::new(AtomicBool::new(false));
    for (index, start) in starts.iter().enumerate() {
        let source = source::Source {
            index,
            path: start.path.clone(),
            start: start.clone(),
        };
        source::spawn(
            options.format,
            source,
            options.follow,
            options.poll_interval,
            items_tx.clone(),
            stop_readers.clone(),
        );
    }
    drop(items_tx);
    let mut run = Run {
        window: Window::new(starts, options.batch),
        checkpoints,
        items,
        readers_done: 0,
        files: options.paths.len(),
        retry: Vec::new(),
        summary: Summary::default(),
        options,
    };
    let result = run.drive(endpoint, &stop).await;
    stop_readers.store(true, Ordering::Relaxed);
    result.map(|()| run.summary)
}

fn endpoint(options: &ShipOptions) -> Result<Endpoint, Error> {
    let mut endpoint = Endpoint::from_shared(options.endpoint.clone())
        .map_err(|e| Error::Config(format!("ship: endpoint `{}`: {e}", options.endpoint)))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .initial_stream_window_size(Some(attackmesh_runtime::client::STREAM_WINDOW))
        .initial_connection_window_size(Some(attackmesh_runtime::client::CONNECTION_WINDOW));
    if options.endpoint.starts_with("https://") {
        let mut tls = tonic::transport::ClientTlsConfig::new();
        if let Some(ca) = &options.ca_file {
            let pem = std::fs::read(ca).map_err(|e| Error::io(ca, e))?;
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| Error::Config(format!("ship: tls: {e}")))?;
    }
    Ok(endpoint)
}

/// A batch waiting to be resent, not before `due`.
struct Resend {
    batch: Batch,
    due: Instant,
}

struct Stream {
    out: mpsc::Sender<Wire<EncodedIngest>>,
    inbound: Streaming<IngestResponse>,
    in_flight: std::collections::VecDeque<Batch>,
}

struct Run {
    options: ShipOptions,
    window: Window,
    checkpoints: Option<Checkpoints>,
    items: mpsc::Receiver<Vec<source::Item>>,
    readers_done: usize,
    files: usize,
    retry: Vec<Resend>,
    summary: Summary,
}

impl Run {
    async fn drive(&mut self, endpoint: Endpoint, stop: &CancellationToken) -> Result<(), Error> {
        let mut stream: Option<Stream> = None;
        let mut reconnect = RECONNECT.retries();
        let mut resend = RESEND.retries();
        let mut opened = 0u64;
        let mut stopping: Option<Instant> = None;
        loop {
            self.save_checkpoints()?;
            let in_flight = stream.as_ref().map_or(0, |s| s.in_flight.len());
            if stopping.is_some() && in_flight == 0 {
                self.summary.interrupted = !self.window.finished();
                return Ok(());
            }
            if stopping.is_none() && self.readers_done == self.files && self.retry.is_empty() && self.window.finished()
            {
                return Ok(());
            }
            if stream.is_none() && stopping.is_none() && (!self.window.ready.is_empty() || !self.retry.is_empty()) {
                match self.open(&endpoint).await {
                    Ok(s) => {
                        opened += 1;
                        if opened > 1 {
                            self.summary.progress.reconnects += 1;
                        }
                        stream = Some(s);
                    }
                    Err(error) if fatal(&error) => {
                        return Err(Error::Rpc(format!("ingest refused the stream: {}", error.message())));
                    }
                    Err(error) => {
                        let pause = reconnect.next_delay();
                        tracing::warn!(code = ?error.code(), message = error.message(), retry_in = ?pause, "cannot reach the ingest service");
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            () = stop.cancelled() => stopping = Some(Instant::now()),
                        }
                        continue;
                    }
                }
            }
            if let Some(s) = stream.as_mut()
                && stopping.is_none()
                && !self.send_ready(s)
            {
                tracing::info!("ingest stream closed by enrichment; opening a new one");
                for batch in stream.take().into_iter().flat_map(|s| s.in_flight) {
                    self.summary.progress.resent += 1;
                    self.retry.push(Resend {
                        batch,
                        due: Instant::now(),
                    });
                }
                continue;
            }
            let window_full = self.window.ready.len() + self.retry.len() + in_flight > self.options.max_in_flight;
            let next_due = self.retry.iter().map(|r| r.due).min();
            let drain_deadline = stopping.map(|at| at + DRAIN);
            tokio::select! {
                biased;
                () = stop.cancelled(), if stopping.is_none() => {
                    stopping = Some(Instant::now());
                }
                () = sleep_until(drain_deadline), if drain_deadline.is_some() => {
                    tracing::warn!("stopping without the answers to some batches; they will be resent next time");
                    self.summary.interrupted = true;
                    return Ok(());
                }
                answer = next_answer(&mut stream), if stream.as_ref().is_some_and(|s| !s.in_flight.is_empty()) => {
                    match answer {
                        Ok((batch, response)) => {
                            reconnect.reset();
                            if response.status == AckStatus::Durable as i32 {
                                resend.reset();
                                self.durable(&batch, &response);
                            } else {
                                let asked = response.retry_after.map(proto_duration).unwrap_or(Duration::from_secs(1));
                                let wait = (asked + resend.next_delay()).min(MAX_BACKOFF.max(asked));
                                tracing::debug!(batch = batch.seq, message = %response.message, ?wait, "batch answered RETRY");
                                self.summary.progress.resent += 1;
                                self.retry.push(Resend { batch, due: Instant::now() + wait });
                            }
                        }
                        Err(status) => {
                            let s = stream.take();
                            if fatal(&status) {
                                return Err(Error::Rpc(format!("ingest ended the stream: {}", status.message())));
                            }
                            tracing::warn!(code = ?status.code(), message = status.message(), "ingest stream broke; resending unacknowledged batches");
                            let due = Instant::now() + reconnect.next_delay();
                            for batch in s.into_iter().flat_map(|s| s.in_flight) {
                                self.summary.progress.resent += 1;
                                self.retry.push(Resend { batch, due });
                            }
                        }
                    }
                }
                () = sleep_until(next_due), if next_due.is_some() && stopping.is_none() => {}
                chunk = self.items.recv(), if stopping.is_none() && !window_full && self.readers_done < self.files => {
                    self.take(chunk);
                    self.take_waiting(in_flight);
                }
            }
        }
    }

    /// Takes in the items already waiting, until the window is full, without a turn of the loop
    /// each: a turn also polls the stream, the timers and the stop token, which cost more than
    /// taking an item in.
    fn take_waiting(&mut self, in_flight: usize) {
        while self.readers_done < self.files
            && self.window.ready.len() + self.retry.len() + in_flight <= self.options.max_in_flight
        {
            match self.items.try_recv() {
                Ok(chunk) => self.take(Some(chunk)),
                // Empty, or every reader is gone: the next turn's `recv` tells which.
                Err(_) => return,
            }
        }
    }

    fn take(&mut self, chunk: Option<Vec<source::Item>>) {
        let Some(chunk) = chunk else {
            self.readers_done = self.files;
            return;
        };
        for item in chunk {
            self.take_item(item);
        }
    }

    fn take_item(&mut self, item: source::Item) {
        if let source::Item::Done { file, error } = &item {
            self.readers_done += 1;
            if let Some(error) = error {
                let path = self.options.paths[*file].clone();
                self.reject(Rejected {
                    path,
                    line: 0,
                    event_id: String::new(),
                    reasons: vec![format!("reading stopped: {error}")],
                });
            }
        }
        if let Some(rejected) = self.window.take(item) {
            self.reject(rejected);
        }
    }

    fn reject(&mut self, rejected: Rejected) {
        self.summary.progress.rejected += 1;
        if let Some(report) = &self.options.on_rejected {
            report(&rejected);
        }
        if self.summary.rejected.len() < 10_000 {
            self.summary.rejected.push(rejected);
        }
    }

    fn durable(&mut self, batch: &Batch, response: &IngestResponse) {
        self.summary.progress.accepted += u64::from(response.accepted);
        self.summary.progress.batches += 1;
        for rejected in self.window.acknowledged(batch, response) {
            self.reject(rejected);
        }
        if let Some(progress) = &self.options.progress {
            progress.send_replace(self.summary.progress.clone());
        }
    }

    /// Sends due resends first, then new batches, while the window has room; `false` when the
    /// stream is gone (enrichment ended it, e.g. after it sat idle).
    fn send_ready(&mut self, stream: &mut Stream) -> bool {
        let now = Instant::now();
        while stream.in_flight.len() < self.options.max_in_flight {
            let batch = match self.retry.iter().position(|r| r.due <= now) {
                Some(i) => self.retry.remove(i).batch,
                None => match self.window.ready.pop_front() {
                    Some(batch) => batch,
                    None => return true,
                },
            };
            match stream.out.try_send(Wire(batch.request.clone())) {
                Ok(()) => stream.in_flight.push_back(batch),
                Err(full_or_closed) => {
                    self.retry.push(Resend { batch, due: now });
                    return matches!(full_or_closed, mpsc::error::TrySendError::Full(_));
                }
            }
        }
        true
    }

    fn save_checkpoints(&mut self) -> Result<(), Error> {
        let moved = std::mem::take(&mut self.window.to_save);
        if let Some(checkpoints) = &self.checkpoints {
            for checkpoint in &moved {
                checkpoints.save(checkpoint)?;
            }
        }
        Ok(())
    }

    async fn open(&self, endpoint: &Endpoint) -> Result<Stream, tonic::Status> {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("connect: {e}")))?;
        let (out, rx) = mpsc::channel(self.options.max_in_flight);
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        if let Some(token) = &self.options.token {
            let value = format!("Bearer {}", token.expose().trim())
                .parse()
                .map_err(|_| tonic::Status::unauthenticated("the token is not printable ASCII"))?;
            request.metadata_mut().insert("authorization", value);
        }
        let mut grpc = tonic::client::Grpc::new(channel).accept_compressed(CompressionEncoding::Gzip);
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("not ready: {e}")))?;
        let codec = attackmesh::codec::ClientCodec::<Wire<EncodedIngest>, IngestResponse>::default();
        let path = http::uri::PathAndQuery::from_static(attackmesh::grpc_path!(
            attackmesh::proto::ingest_service_server::SERVICE_NAME,
            "Ingest"
        ));
        let inbound = grpc.streaming(request, path, codec).await?.into_inner();
        Ok(Stream {
            out,
            inbound,
            in_flight: Default::default(),
        })
    }
}

/// Errors no resend can fix.
fn fatal(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unauthenticated | Code::PermissionDenied | Code::InvalidArgument | Code::Unimplemented
    )
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The next answer on `stream`, paired with the batch it answers.
async fn next_answer(stream: &mut Option<Stream>) -> Result<(Batch, IngestResponse), tonic::Status> {
    let Some(s) = stream.as_mut() else {
        return std::future::pending().await;
    };
    match s.inbound.message().await {
        Ok(Some(response)) => {
            let Some(batch) = s.in_flight.pop_front() else {
                return Err(tonic::Status::internal("answer without a batch in flight"));
            };
            if response.batch_id != batch.seq {
                s.in_flight.push_front(batch);
                return Err(tonic::Status::internal("answers out of order"));
            }
            Ok((batch, response))
        }
        Ok(None) => Err(tonic::Status::unavailable("ingest closed the stream")),
        Err(status) => Err(status),
    }
}
