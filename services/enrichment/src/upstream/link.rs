//! [`Link`]: batches over a few long-lived, pipelined bidi streams to one upstream service.
//!
//! Each of `streams` tasks keeps one stream open (the balanced channel picks a replica per
//! stream), sends up to `max_in_flight` batches without waiting, and matches answers to
//! batches in order by `batch_id`. When a stream breaks, answers out of order, or an answer is
//! overdue, the batches in flight on it go back to the front of a shared retry queue and are
//! sent again on the next open stream, on any replica; a batch that saw `max_attempts` broken
//! streams, or waited `give_up_after` while no stream was open, fails with
//! [`LinkError::Unavailable`]. The link never drops a batch silently: every call gets an answer
//! or an error. What an error means (degrade, or ask the detector to retry) is the caller's call.

use std::{
    collections::HashMap,
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use prost::Message;
use tokio::{
    sync::{Notify, mpsc, oneshot, watch},
    time::Instant,
};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming, codec::CompressionEncoding};

use super::{Upstream, streams::OpenStreams, wire::Wire};
use crate::{config::UpstreamConfig, metrics};

/// Largest message sent or accepted on a link.
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// A streaming RPC a [`Link`] can carry.
pub(crate) trait Rpc: Send + Sync + 'static {
    /// One batch.
    type Req: Message + Send + Sync + 'static;
    /// The answer to one batch.
    type Resp: Message + Default + Send + 'static;
    /// gRPC method path, built with [`attackmesh::grpc_path!`] from the generated service name.
    const PATH: &'static str;
    /// What a batch carries.
    type Item: Clone + Send + Sync + 'static;
    /// What the caller tells of one batch besides its items (`()` when nothing).
    type Options: Send;
    /// The batch an answer is for.
    fn batch_id(resp: &Self::Resp) -> u64;
    /// A batch of `items` with the batch's W3C trace context and options (and whatever options
    /// the RPC value carries for every batch).
    fn request(
        &self,
        batch_id: u64,
        items: Vec<Self::Item>,
        trace: HashMap<String, String>,
        options: Self::Options,
    ) -> Self::Req;
    /// The items of a batch, taken back.
    fn into_items(request: Self::Req) -> Vec<Self::Item>;
    /// The items of a batch still shared with the link, copied back.
    fn items(request: &Self::Req) -> Vec<Self::Item>;
}

/// Why a batch got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkError {
    /// The service could not be reached in time.
    Unavailable(String),
    /// The link is shutting down.
    Stopped,
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Unavailable(why) => f.write_str(why),
            LinkError::Stopped => f.write_str("shutting down"),
        }
    }
}

struct Job<R: Rpc> {
    batch_id: u64,
    request: Arc<R::Req>,
    reply: oneshot::Sender<Result<R::Resp, LinkError>>,
    since: Instant,
    attempts: u32,
}

impl<R: Rpc> Job<R> {
    fn fail(self, error: LinkError) {
        self.answer(Err(error));
    }

    /// Answers the caller, releasing the link's reference to the request first.
    fn answer(self, answer: Result<R::Resp, LinkError>) {
        let Job { request, reply, .. } = self;
        drop(request);
        let _ = reply.send(answer);
    }
}

struct Shared<R: Rpc> {
    rpc: R,
    upstream: Upstream,
    config: UpstreamConfig,
    rx: tokio::sync::Mutex<mpsc::Receiver<Job<R>>>,
    retry: Mutex<VecDeque<Job<R>>>,
    retry_notify: Notify,
    streams: OpenStreams,
    stop: CancellationToken,
}

/// Batches to one upstream service over long-lived streams.
pub(crate) struct Link<R: Rpc> {
    tx: mpsc::Sender<Job<R>>,
    shared: Arc<Shared<R>>,
    next_id: AtomicU64,
}

impl<R: Rpc> Link<R> {
    /// Starts `config.streams` stream tasks carrying `rpc` on `upstream`; they stop when `stop`
    /// is cancelled.
    pub(crate) fn start(rpc: R, upstream: Upstream, config: &UpstreamConfig, stop: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(config.streams * config.max_in_flight);
        let name = upstream.name;
        let shared = Arc::new(Shared {
            rpc,
            upstream,
            config: config.clone(),
            rx: tokio::sync::Mutex::new(rx),
            retry: Mutex::new(VecDeque::new()),
            retry_notify: Notify::new(),
            streams: OpenStreams::new(name),
            stop,
        });
        for _ in 0..config.streams {
            tokio::spawn(run(shared.clone()));
        }
        Self {
            tx,
            shared,
            next_id: AtomicU64::new(1),
        }
    }

    /// Sends the batch `build(batch_id)` and waits for its answer. The request comes back
    /// with the answer (shared with nothing else by then), so its contents can be reused.
    /// Sends one batch of `items` and waits for its answer; the items come back either way, so
    /// the caller can fall back (DEGRADED, RETRY) without having cloned them up front.
    pub(crate) async fn send(
        &self,
        items: Vec<R::Item>,
        trace: &HashMap<String, String>,
        options: R::Options,
    ) -> (Vec<R::Item>, Result<R::Resp, LinkError>) {
        let (shared, answer) = self
            .call(move |batch_id| self.shared.rpc.request(batch_id, items, trace.clone(), options))
            .await;
        let items = Arc::try_unwrap(shared).map_or_else(|r| R::items(&r), R::into_items);
        (items, answer)
    }

    async fn call(&self, build: impl FnOnce(u64) -> R::Req) -> (Arc<R::Req>, Result<R::Resp, LinkError>) {
        let batch_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = Arc::new(build(batch_id));
        if self.shared.stop.is_cancelled() {
            return (request, Err(LinkError::Stopped));
        }
        if self.shared.given_up() {
            return (request, Err(self.shared.unavailable()));
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            batch_id,
            request: request.clone(),
            reply,
            since: Instant::now(),
            attempts: 0,
        };
        if self.tx.send(job).await.is_err() {
            return (request, Err(LinkError::Stopped));
        }
        let answer = answer.await.unwrap_or(Err(LinkError::Stopped));
        (request, answer)
    }

    /// Follows [`Link::is_up`].
    pub(crate) fn watch(&self) -> watch::Receiver<bool> {
        self.shared.streams.watch()
    }
}

impl<R: Rpc> Shared<R> {
    fn given_up(&self) -> bool {
        self.streams
            .down_for()
            .is_some_and(|down| down >= self.config.give_up_after)
    }

    fn unavailable(&self) -> LinkError {
        LinkError::Unavailable(format!("{} is unavailable", self.upstream.name))
    }

    fn set_connected(&self, connected: bool) {
        let now = self.streams.count(connected);
        if connected && now == 1 {
            tracing::info!(upstream = self.upstream.name, "connected");
        } else if !connected && now == 0 && self.stop.is_cancelled() {
            tracing::info!(upstream = self.upstream.name, "streams closed on shutdown");
        } else if !connected && now == 0 {
            tracing::warn!(upstream = self.upstream.name, "no stream open");
        }
    }

    /// The next batch to send: retries first, then new batches.
    async fn next_job(&self) -> Option<Job<R>> {
        loop {
            if let Some(job) = self.retry.lock().ok().and_then(|mut q| q.pop_front()) {
                return Some(job);
            }
            let notified = self.retry_notify.notified();
            tokio::select! {
                job = async { self.rx.lock().await.recv().await } => return job,
                () = notified => {}
            }
        }
    }

    /// Puts batches of a broken stream back, in their order, ahead of everything else.
    fn requeue(&self, jobs: impl DoubleEndedIterator<Item = Job<R>>) {
        let mut failed = Vec::new();
        if let Ok(mut queue) = self.retry.lock() {
            for mut job in jobs.rev() {
                job.attempts += 1;
                if job.attempts >= self.config.max_attempts {
                    failed.push(job);
                } else {
                    queue.push_front(job);
                }
            }
        }
        for job in failed {
            tracing::warn!(
                upstream = self.upstream.name,
                attempts = job.attempts,
                "batch gave up after broken streams"
            );
            job.fail(self.unavailable());
        }
        self.retry_notify.notify_one();
    }

    /// While no stream is open: fails batches that waited `give_up_after`, for `pause`.
    async fn wait_down(&self, pause: Duration) {
        let until = Instant::now() + pause;
        loop {
            if self.streams.open() == 0 {
                self.expire();
            }
            let now = Instant::now();
            if now >= until || self.stop.is_cancelled() {
                return;
            }
            let tick = until.min(now + Duration::from_millis(50));
            if self.given_up() {
                tokio::select! {
                    () = tokio::time::sleep_until(tick) => {}
                    () = self.stop.cancelled() => return,
                    job = async { self.rx.lock().await.recv().await } => match job {
                        Some(job) if self.given_up() => job.fail(self.unavailable()),
                        Some(job) => self.requeue_fresh(job),
                        None => return,
                    },
                }
            } else {
                tokio::select! {
                    () = tokio::time::sleep_until(tick) => {}
                    () = self.stop.cancelled() => return,
                }
            }
        }
    }

    fn requeue_fresh(&self, job: Job<R>) {
        if let Ok(mut queue) = self.retry.lock() {
            queue.push_back(job);
        }
        self.retry_notify.notify_one();
    }

    fn expire(&self) {
        let give_up = self.config.give_up_after;
        let expired: Vec<Job<R>> = match self.retry.lock() {
            Ok(mut queue) => {
                let (old, keep): (VecDeque<_>, VecDeque<_>) =
                    queue.drain(..).partition(|j| j.since.elapsed() >= give_up);
                *queue = keep;
                old.into_iter().collect()
            }
            Err(_) => Vec::new(),
        };
        for job in expired {
            job.fail(self.unavailable());
        }
    }

    /// Fails everything still queued (the link is stopping).
    async fn fail_all(&self) {
        let queued: Vec<Job<R>> = self.retry.lock().map(|mut q| q.drain(..).collect()).unwrap_or_default();
        for job in queued {
            job.fail(LinkError::Stopped);
        }
        if let Ok(mut rx) = self.rx.try_lock() {
            rx.close();
            while let Ok(job) = rx.try_recv() {
                job.fail(LinkError::Stopped);
            }
        }
    }
}

/// One stream task: open, serve until broken, pause, repeat until stopped.
async fn run<R: Rpc>(shared: Arc<Shared<R>>) {
    let name = shared.upstream.name;
    let mut retries = shared.config.backoff().retries();
    while !shared.stop.is_cancelled() {
        match tokio::time::timeout(shared.config.peer.connect_timeout, open(&shared)).await {
            Ok(Ok((out, inbound))) => {
                shared.set_connected(true);
                let answered = serve(&shared, out, inbound).await;
                shared.set_connected(false);
                if answered > 0 {
                    retries.reset();
                }
            }
            Ok(Err(status))
                if matches!(
                    status.code(),
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ) =>
            {
                tracing::error!(upstream = name, code = ?status.code(), message = status.message(), "stream refused: check the token file and its role (admin)");
            }
            Ok(Err(status)) => {
                tracing::debug!(upstream = name, code = ?status.code(), message = status.message(), "cannot open stream");
            }
            Err(_) => tracing::debug!(upstream = name, "stream not open within connect_timeout"),
        }
        metrics::upstream_reconnect(name);
        shared.wait_down(retries.next_delay()).await;
    }
    shared.fail_all().await;
}

type Opened<R> = (mpsc::Sender<Wire<<R as Rpc>::Req>>, Streaming<<R as Rpc>::Resp>);

async fn open<R: Rpc>(shared: &Shared<R>) -> Result<Opened<R>, Status> {
    let (tx, rx) = mpsc::channel(shared.config.max_in_flight);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    shared.upstream.authorize(request.metadata_mut());
    let mut grpc = tonic::client::Grpc::new(shared.upstream.channel())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // Compression both ways only when asked for: on a local network it costs more CPU than it saves.
    if shared.config.gzip {
        grpc = grpc
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip);
    }
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("not ready: {e}")))?;
    let codec = attackmesh::codec::ClientCodec::<Wire<R::Req>, R::Resp>::default();
    let path = http::uri::PathAndQuery::from_static(R::PATH);
    let response = grpc.streaming(request, path, codec).await?;
    Ok((tx, response.into_inner()))
}

/// Sends and matches batches on one open stream until it breaks; returns how many were answered.
async fn serve<R: Rpc>(shared: &Shared<R>, out: mpsc::Sender<Wire<R::Req>>, mut inbound: Streaming<R::Resp>) -> u64 {
    let name = shared.upstream.name;
    let mut in_flight: VecDeque<(Job<R>, Instant)> = VecDeque::new();
    let mut answered = 0u64;
    let request_timeout = shared.config.request_timeout();
    loop {
        let overdue = in_flight.front().map(|(_, sent)| *sent + request_timeout);
        tokio::select! {
            biased;
            () = shared.stop.cancelled() => break,
            message = inbound.message() => match message {
                Ok(Some(resp)) => {
                    let Some((job, sent)) = in_flight.pop_front() else {
                        tracing::warn!(upstream = name, "answer without a batch in flight; reopening the stream");
                        break;
                    };
                    if R::batch_id(&resp) != job.batch_id {
                        tracing::warn!(upstream = name, expected = job.batch_id, got = R::batch_id(&resp), "answer out of order; reopening the stream");
                        in_flight.push_front((job, sent));
                        break;
                    }
                    answered += 1;
                    metrics::upstream_latency(name, sent.elapsed());
                    job.answer(Ok(resp));
                }
                Ok(None) => {
                    tracing::info!(upstream = name, in_flight = in_flight.len(), "stream closed by the service");
                    break;
                }
                Err(status) => {
                    tracing::warn!(upstream = name, code = ?status.code(), message = status.message(), in_flight = in_flight.len(), "stream failed");
                    break;
                }
            },
            job = shared.next_job(), if in_flight.len() < shared.config.max_in_flight => {
                let Some(job) = job else { break };
                // At most `max_in_flight` requests are ever queued, the channel's capacity.
                if out.try_send(Wire(job.request.clone())).is_err() {
                    in_flight.push_back((job, Instant::now()));
                    break;
                }
                in_flight.push_back((job, Instant::now()));
            }
            () = tokio::time::sleep_until(overdue.unwrap_or_else(Instant::now)), if overdue.is_some() => {
                tracing::warn!(upstream = name, timeout = ?request_timeout, "answer overdue; reopening the stream");
                break;
            }
        }
    }
    shared.requeue(in_flight.into_iter().map(|(job, _)| job));
    answered
}
