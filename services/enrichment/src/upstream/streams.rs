//! [`OpenStreams`]: how many of a link's streams are open, since when none is, and whether the
//! link is up (at least one open), kept in one place so the three never disagree.
//!
//! Stream tasks open and close streams at the same moment on several threads (a peer that dies
//! while streams are being opened to it does exactly that). Were the count and the "up" watch
//! updated one after the other, a task that counted the last close could publish "down" before
//! a task that counted an open published "up", leaving the link reported up with no stream open
//! and its service SERVING for good. Every change here happens under one lock.

use std::{
    sync::{Mutex, PoisonError},
    time::Duration,
};

use tokio::{sync::watch, time::Instant};

use crate::metrics;

/// The open streams of one link.
pub(crate) struct OpenStreams {
    /// Upstream name, for the streams gauge.
    name: &'static str,
    state: Mutex<State>,
    up: watch::Sender<bool>,
}

struct State {
    open: usize,
    /// Since when no stream is open; `None` while one is.
    down_since: Option<Instant>,
}

impl OpenStreams {
    /// None open yet, down since now.
    pub(crate) fn new(name: &'static str) -> Self {
        Self {
            name,
            state: Mutex::new(State {
                open: 0,
                down_since: Some(Instant::now()),
            }),
            up: watch::Sender::new(false),
        }
    }

    /// Counts a stream opened (`true`) or closed (`false`); returns how many are open now.
    pub(crate) fn count(&self, opened: bool) -> usize {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.open = if opened {
            state.open + 1
        } else {
            state.open.saturating_sub(1)
        };
        let open = state.open;
        state.down_since = if open == 0 {
            state.down_since.or(Some(Instant::now()))
        } else {
            None
        };
        metrics::upstream_streams(self.name, open);
        self.up.send_if_modified(|up| {
            let changed = *up != (open > 0);
            *up = open > 0;
            changed
        });
        open
    }

    /// Streams open now.
    pub(crate) fn open(&self) -> usize {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).open
    }

    /// How long no stream has been open; `None` while one is.
    pub(crate) fn down_for(&self) -> Option<Duration> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.down_since.map(|since| since.elapsed())
    }

    /// Follows whether at least one stream is open.
    pub(crate) fn watch(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn streams_opening_and_closing_at_once_never_leave_the_link_up_with_none_open() {
        let streams = Arc::new(OpenStreams::new("export"));
        let up = streams.watch();
        for _ in 0..500 {
            let start = Arc::new(std::sync::Barrier::new(2));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (streams, start) = (streams.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        streams.count(true);
                        streams.count(false);
                    })
                })
                .collect();
            for thread in threads {
                thread.join().unwrap();
            }
            assert_eq!(streams.open(), 0);
            assert!(!*up.borrow(), "reported up with no stream open");
            assert!(streams.down_for().is_some(), "down, and since when");
        }
    }

    #[test]
    fn up_while_one_stream_is_open() {
        let streams = OpenStreams::new("export");
        let up = streams.watch();
        assert_eq!(streams.count(true), 1);
        assert_eq!(streams.count(true), 2);
        assert!(*up.borrow() && streams.down_for().is_none());
        assert_eq!(streams.count(false), 1);
        assert!(*up.borrow(), "one is still open");
        assert_eq!(streams.count(false), 0);
        assert!(!*up.borrow() && streams.down_for().is_some());
    }
}
