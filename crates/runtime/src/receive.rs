//! Request messages of gRPC calls while they arrive, before tonic decodes them.
//!
//! [`Receive`] wraps a tonic service and reads the gRPC frame headers of each request body as
//! the bytes come in: every message counts against a [`ByteBudget`] from its first byte, must
//! arrive in full within a time limit, and a body that ends inside a message is the caller's
//! error (`INVALID_ARGUMENT`). Without it, a client that announces a large message and stops
//! half way holds that memory outside every limit for as long as it answers pings.
//!
//! A message received in full leaves its [`Reservation`] in the call's [`Receipts`]; the service
//! takes it with the decoded message and keeps it (or turns it into the reservation of the work
//! it admits) while the message is in memory. This module never decodes a message.

use std::{
    collections::VecDeque,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::Frame;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Status, body::Body, server::NamedService};

/// Bytes that may be held in memory at once, shared by everything that counts against it.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    permits: Arc<Semaphore>,
    total: usize,
    held: Option<Gauge>,
}

impl ByteBudget {
    /// A budget of `total` bytes (at least 1, at most `u32::MAX`).
    pub fn new(total: usize) -> Self {
        let total = total.clamp(1, (u32::MAX as usize).min(Semaphore::MAX_PERMITS));
        Self {
            permits: Arc::new(Semaphore::new(total)),
            total,
            held: None,
        }
    }

    /// A budget of `total` bytes whose reservations add what they hold to `held` (a gauge
    /// several budgets of one process may share) and take it back when they give it back.
    pub fn with_gauge(total: usize, held: Gauge) -> Self {
        Self {
            held: Some(held),
            ..Self::new(total)
        }
    }

    /// The size of the budget.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes not reserved right now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// Reserves `bytes` (the whole budget when `bytes` is larger), or `None` when they are not
    /// free; never waits.
    pub fn try_reserve(&self, bytes: usize) -> Option<Reservation> {
        let mut reservation = Reservation::default();
        reservation.try_resize(self, bytes).then_some(reservation)
    }
}

/// Bytes held from a [`ByteBudget`]; given back when dropped.
#[derive(Debug, Default)]
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
    /// The budget's gauge, which counts [`Reservation::bytes`] while they are held.
    held: Option<Gauge>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.count(-gauge_delta(self.bytes()));
    }
}

fn gauge_delta(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Holds exactly `bytes` of `budget` (the whole budget when `bytes` is larger), giving back
    /// or taking the difference; `false`, holding what it held, when the budget lacks it.
    pub fn try_resize(&mut self, budget: &ByteBudget, bytes: usize) -> bool {
        let want = bytes.min(budget.total);
        let have = self.bytes();
        if want <= have {
            if let Some(permit) = &mut self.permit {
                drop(permit.split(have - want));
                self.count(-gauge_delta(have - want));
            }
            return true;
        }
        let Ok(more) = u32::try_from(want - have) else {
            return false;
        };
        match budget.permits.clone().try_acquire_many_owned(more) {
            Ok(more) => {
                match &mut self.permit {
                    Some(permit) => permit.merge(more),
                    None => self.permit = Some(more),
                }
                if self.held.is_none() {
                    self.held.clone_from(&budget.held);
                }
                self.count(gauge_delta(want - have));
                true
            }
            Err(_) => false,
        }
    }

    fn count(&self, delta: i64) {
        if let Some(held) = &self.held {
            held.inc_by(delta);
        }
    }
}

/// The reservations of a call's messages received in full, oldest first; found in the request
/// extensions of a call served through [`Receive`].
#[derive(Debug, Clone, Default)]
pub struct Receipts(Arc<ReceiptsInner>);

#[derive(Debug, Default)]
struct ReceiptsInner {
    received: Mutex<VecDeque<Reservation>>,
    arriving: AtomicBool,
}

impl Receipts {
    /// The reservation of the oldest message received and not yet taken.
    pub fn take(&self) -> Option<Reservation> {
        self.0.received.lock().ok()?.pop_front()
    }

    /// True while part of a message has arrived and the rest has not.
    pub fn arriving(&self) -> bool {
        self.0.arriving.load(Ordering::Relaxed)
    }

    /// The receipts of the call `request` belongs to, when it was served through [`Receive`].
    pub fn of<T>(request: &tonic::Request<T>) -> Option<Self> {
        request.extensions().get::<Self>().cloned()
    }

    fn push(&self, reservation: Reservation) {
        if let Ok(mut queue) = self.0.received.lock() {
            queue.push_back(reservation);
        }
    }
}

/// What [`Receive`] enforces on every request message.
#[derive(Debug, Clone)]
pub struct ReceiveLimits {
    /// Longest time from a message's first byte to its last; the call then ends with
    /// `DEADLINE_EXCEEDED`.
    pub message_timeout: Duration,
    /// Budget every message counts against while it arrives; a message that does not fit ends
    /// the call with `RESOURCE_EXHAUSTED` and a retry hint of `retry_after`.
    pub budget: Option<ByteBudget>,
    /// Wait suggested when the budget is used up.
    pub retry_after: Duration,
}

/// A tonic service whose request bodies are read under [`ReceiveLimits`].
#[derive(Debug, Clone)]
pub struct Receive<S> {
    inner: S,
    limits: ReceiveLimits,
}

impl<S> Receive<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, limits: ReceiveLimits) -> Self {
        Self { inner, limits }
    }
}

impl<S: NamedService> NamedService for Receive<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<Body>> for Receive<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let receipts = Receipts::default();
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(receipts.clone());
        let body = Body::new(Receiving {
            inner: body,
            limits: self.limits.clone(),
            receipts,
            header: [0; 5],
            header_len: 0,
            remaining: 0,
            reservation: Reservation::default(),
            deadline: None,
            done: false,
        });
        self.inner.call(http::Request::from_parts(parts, body))
    }
}

/// A request body read frame header by frame header.
struct Receiving {
    inner: Body,
    limits: ReceiveLimits,
    receipts: Receipts,
    /// The header of the message arriving, `header_len` bytes of it so far.
    header: [u8; 5],
    header_len: usize,
    /// Bytes of the message arriving still to come, once its header is complete.
    remaining: usize,
    reservation: Reservation,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// An error was returned: nothing more is read.
    done: bool,
}

impl Receiving {
    fn in_message(&self) -> bool {
        self.header_len > 0
    }

    /// Accounts for a chunk of the body, message by message.
    fn observe(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            let take = if self.header_len < 5 {
                if self.header_len == 0 {
                    self.deadline = Some(Box::pin(tokio::time::sleep(self.limits.message_timeout)));
                    self.receipts.0.arriving.store(true, Ordering::Relaxed);
                }
                let take = (5 - self.header_len).min(data.len());
                self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
                self.header_len += take;
                if self.header_len == 5 {
                    let [_, a, b, c, d] = self.header;
                    self.remaining = u32::from_be_bytes([a, b, c, d]) as usize;
                }
                take
            } else {
                let take = self.remaining.min(data.len());
                self.remaining -= take;
                take
            };
            self.reserve(take)?;
            data = &data[take..];
            if self.header_len == 5 && self.remaining == 0 {
                self.header_len = 0;
                self.deadline = None;
                self.receipts.0.arriving.store(false, Ordering::Relaxed);
                self.receipts.push(std::mem::take(&mut self.reservation));
            }
        }
        Ok(())
    }

    fn reserve(&mut self, bytes: usize) -> Result<(), Status> {
        let Some(budget) = &self.limits.budget else {
            return Ok(());
        };
        if self.reservation.try_resize(budget, self.reservation.bytes() + bytes) {
            return Ok(());
        }
        use tonic_types::{ErrorDetails, StatusExt};
        Err(Status::with_error_details(
            tonic::Code::ResourceExhausted,
            format!(
                "the {} bytes of messages this service holds in memory are taken; resend later",
                budget.total()
            ),
            ErrorDetails::with_retry_info(Some(self.limits.retry_after)),
        ))
    }

    fn fail(&mut self, status: Status) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.done = true;
        self.deadline = None;
        self.reservation = Reservation::default();
        Poll::Ready(Some(Err(status)))
    }

    fn cut_short(&self) -> Status {
        let announced = if self.header_len == 5 {
            let [_, a, b, c, d] = self.header;
            u32::from_be_bytes([a, b, c, d]).to_string()
        } else {
            "an unknown number of".to_owned()
        };
        Status::invalid_argument(format!("the request ended inside a message of {announced} bytes"))
    }
}

impl http_body::Body for Receiving {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if let Err(status) = this.observe(data) {
                        return this.fail(status);
                    }
                } else if this.in_message() {
                    let status = this.cut_short();
                    return this.fail(status);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(status))) => this.fail(status),
            Poll::Ready(None) if this.in_message() => {
                let status = this.cut_short();
                this.fail(status)
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if let Some(deadline) = &mut this.deadline
                    && deadline.as_mut().poll(cx).is_ready()
                {
                    let status = Status::deadline_exceeded(format!(
                        "a request message did not arrive in full within {:?}",
                        this.limits.message_timeout
                    ));
                    return this.fail(status);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_grow_shrink_and_cap_at_the_budget() {
        let budget = ByteBudget::new(100);
        let mut a = budget.try_reserve(60).unwrap();
        assert_eq!((a.bytes(), budget.available()), (60, 40));
        assert!(budget.try_reserve(50).is_none(), "never beyond the budget");
        let b = budget.try_reserve(30).unwrap();
        assert!(!a.try_resize(&budget, 80), "growing past what is free fails");
        assert_eq!(a.bytes(), 60, "and keeps what it held");
        assert!(a.try_resize(&budget, 20));
        assert_eq!(budget.available(), 50);
        drop((a, b));
        let all = budget.try_reserve(1_000).unwrap();
        assert_eq!(all.bytes(), 100, "more than the budget takes all of it");
    }

    #[test]
    fn the_gauge_shows_the_bytes_reservations_hold() {
        let held = Gauge::default();
        let budget = ByteBudget::with_gauge(100, held.clone());
        let mut a = budget.try_reserve(60).unwrap();
        assert_eq!(held.get(), 60);
        let mut b = Reservation::default();
        assert!(b.try_resize(&budget, 30), "a reservation made empty joins the gauge");
        assert_eq!(held.get(), 90);
        assert!(!a.try_resize(&budget, 80), "a failed resize changes nothing");
        assert_eq!(held.get(), 90);
        assert!(a.try_resize(&budget, 20));
        assert_eq!(held.get(), 50);
        drop(a);
        assert_eq!(held.get(), 30);
        drop(b);
        assert_eq!(held.get(), 0, "all given back");
    }

    fn receiving(budget: Option<ByteBudget>) -> Receiving {
        Receiving {
            inner: Body::empty(),
            limits: ReceiveLimits {
                message_timeout: Duration::from_secs(60),
                budget,
                retry_after: Duration::from_secs(1),
            },
            receipts: Receipts::default(),
            header: [0; 5],
            header_len: 0,
            remaining: 0,
            reservation: Reservation::default(),
            deadline: None,
            done: false,
        }
    }

    #[tokio::test]
    async fn messages_are_counted_from_their_first_byte_until_taken() {
        let budget = ByteBudget::new(64);
        let mut r = receiving(Some(budget.clone()));
        // A whole 10-byte message and the first 3 bytes of the next header.
        let mut chunk = vec![0, 0, 0, 0, 10];
        chunk.extend([7; 10]);
        chunk.extend([0, 0, 0]);
        r.observe(&chunk).unwrap();
        assert_eq!(budget.available(), 64 - 18);
        assert!(r.in_message());
        let first = r.receipts.take().unwrap();
        assert_eq!(first.bytes(), 15);
        drop(first);
        assert_eq!(budget.available(), 64 - 3);
        // Other work takes 40 bytes; the second message, 100 bytes, no longer fits beside it.
        let _other = budget.try_reserve(40).unwrap();
        r.observe(&[0, 100]).unwrap();
        let err = r.observe(&[1; 30]).unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(r.cut_short().message().contains("100 bytes"));
    }
}
