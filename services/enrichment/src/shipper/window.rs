//! Bookkeeping of the shipper, free of I/O: building batches per file from reader items, and
//! advancing each file's checkpoint over the longest prefix of acknowledged batches.
//!
//! Batches hold events of one file only, so a file's checkpoint depends on that file's batches
//! alone. A batch acknowledged out of order (an earlier one was answered RETRY and is being
//! resent) does not move the checkpoint until everything before it is acknowledged too: a
//! restart then resends at most what was not acknowledged, never skips anything.

use std::{collections::VecDeque, path::PathBuf, sync::Arc};

use attackmesh::{codec::EncodedIngest, proto::IngestResponse};
use prost::bytes::Bytes;

use super::{Rejected, checkpoint::Checkpoint, source::Item};

/// A batch built from one file.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Sequence number, also the `batch_id` sent.
    pub(crate) seq: u64,
    /// Index of the file.
    pub(crate) file: usize,
    /// The request (its events encoded by the reader), shared so it can be resent without a copy.
    pub(crate) request: Arc<EncodedIngest>,
    /// Line number of each event.
    pub(crate) lines: Vec<u64>,
}

#[derive(Debug)]
struct FileState {
    path: PathBuf,
    /// Encoded events not yet in a batch.
    events: Vec<Bytes>,
    lines: Vec<u64>,
    /// Position after the last item taken in.
    pos: Checkpoint,
    /// Position at the last flush.
    flushed: Checkpoint,
    /// Batches not yet covered by the checkpoint: (seq, acknowledged, position after it).
    queue: VecDeque<(u64, bool, Checkpoint)>,
    done: bool,
}

/// Batches being built and checkpoints being advanced, for every file.
#[derive(Debug)]
pub(crate) struct Window {
    files: Vec<FileState>,
    batch: usize,
    next_seq: u64,
    /// Batches built and not yet sent.
    pub(crate) ready: VecDeque<Batch>,
    /// Checkpoints that moved and must be saved.
    pub(crate) to_save: Vec<Checkpoint>,
}

impl Window {
    /// Starts every file at its start point; batches hold at most `batch` events.
    pub(crate) fn new(starts: Vec<Checkpoint>, batch: usize) -> Self {
        let files = starts
            .into_iter()
            .map(|start| FileState {
                path: start.path.clone(),
                events: Vec::new(),
                lines: Vec::new(),
                pos: start.clone(),
                flushed: start,
                queue: VecDeque::new(),
                done: false,
            })
            .collect();
        Self {
            files,
            batch: batch.max(1),
            next_seq: 1,
            ready: VecDeque::new(),
            to_save: Vec::new(),
        }
    }

    /// Takes one reader item in; a record that did not parse comes back as a rejection.
    pub(crate) fn take(&mut self, item: Item) -> Option<Rejected> {
        match item {
            Item::Event {
                file,
                line,
                end_offset,
                event,
            } => {
                let f = &mut self.files[file];
                f.events.push(event);
                f.lines.push(line);
                f.pos.offset = end_offset;
                f.pos.line = line;
                if f.events.len() >= self.batch {
                    self.flush(file);
                }
                None
            }
            Item::Rejected {
                file,
                line,
                end_offset,
                reason,
            } => {
                let f = &mut self.files[file];
                f.pos.offset = end_offset;
                f.pos.line = line;
                Some(Rejected {
                    path: f.path.clone(),
                    line,
                    event_id: String::new(),
                    reasons: vec![reason],
                })
            }
            Item::Skip {
                file,
                line,
                end_offset,
                state,
            } => {
                let f = &mut self.files[file];
                f.pos.offset = end_offset;
                f.pos.line = line;
                if let Some(state) = state {
                    f.pos.state = state;
                }
                None
            }
            Item::Idle { file } => {
                self.flush(file);
                None
            }
            Item::Reset { file, inode } => {
                self.flush(file);
                let f = &mut self.files[file];
                f.pos = Checkpoint {
                    path: f.path.clone(),
                    inode,
                    offset: 0,
                    line: 0,
                    state: attackmesh::formats::ParseState::new(f.path.to_string_lossy()),
                };
                // The new file's start is a position of its own (acknowledged trivially).
                self.files[file].flushed = self.files[file].pos.clone();
                let seq = self.seq();
                let pos = self.files[file].pos.clone();
                self.files[file].queue.push_back((seq, true, pos));
                self.advance(file);
                None
            }
            Item::Done { file, .. } => {
                self.flush(file);
                self.files[file].done = true;
                None
            }
        }
    }

    fn seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Turns what `file` has pending into a batch (or, without events, into a position that
    /// counts as acknowledged once everything before it is).
    pub(crate) fn flush(&mut self, file: usize) {
        let f = &self.files[file];
        if f.events.is_empty() && f.pos == f.flushed {
            return;
        }
        let seq = self.seq();
        let f = &mut self.files[file];
        f.flushed = f.pos.clone();
        let events = std::mem::take(&mut f.events);
        let lines = std::mem::take(&mut f.lines);
        let empty = events.is_empty();
        f.queue.push_back((seq, empty, f.pos.clone()));
        if empty {
            self.advance(file);
            return;
        }
        self.ready.push_back(Batch {
            seq,
            file,
            request: Arc::new(EncodedIngest {
                batch_id: seq,
                events,
                trace_context: Default::default(),
            }),
            lines,
        });
    }

    /// Records the DURABLE answer to `batch`; returns the events it rejected.
    pub(crate) fn acknowledged(&mut self, batch: &Batch, answer: &IngestResponse) -> Vec<Rejected> {
        let path = &self.files[batch.file].path;
        let rejected = answer
            .rejections
            .iter()
            .map(|r| Rejected {
                path: path.clone(),
                line: batch.lines.get(r.index as usize).copied().unwrap_or_default(),
                event_id: r.event_id.clone(),
                reasons: r
                    .violations
                    .iter()
                    .map(|v| format!("{}: {}", v.field, v.description))
                    .collect(),
            })
            .collect();
        if let Some(entry) = self.files[batch.file]
            .queue
            .iter_mut()
            .find(|(seq, _, _)| *seq == batch.seq)
        {
            entry.1 = true;
        }
        self.advance(batch.file);
        rejected
    }

    fn advance(&mut self, file: usize) {
        let f = &mut self.files[file];
        let mut moved = None;
        while f.queue.front().is_some_and(|(_, acked, _)| *acked) {
            moved = f.queue.pop_front().map(|(_, _, pos)| pos);
        }
        if let Some(pos) = moved {
            self.to_save.push(pos);
        }
    }

    /// True when every file is read to its end and every batch acknowledged.
    pub(crate) fn finished(&self) -> bool {
        self.ready.is_empty()
            && self
                .files
                .iter()
                .all(|f| f.done && f.queue.is_empty() && f.events.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use attackmesh::proto::AckStatus;

    use super::*;

    fn start() -> Checkpoint {
        Checkpoint {
            path: "/x.log".into(),
            inode: 1,
            ..Default::default()
        }
    }

    fn event(line: u64) -> Item {
        Item::Event {
            file: 0,
            line,
            end_offset: line * 10,
            event: Bytes::new(),
        }
    }

    fn durable() -> IngestResponse {
        IngestResponse {
            status: AckStatus::Durable as i32,
            ..Default::default()
        }
    }

    #[test]
    fn the_checkpoint_waits_for_every_earlier_batch() {
        let mut w = Window::new(vec![start()], 2);
        for line in 1..=4 {
            w.take(event(line));
        }
        w.take(Item::Skip {
            file: 0,
            line: 5,
            end_offset: 55,
            state: None,
        });
        w.take(Item::Done { file: 0, error: None });
        assert_eq!(w.ready.len(), 2);
        let first = w.ready.pop_front().unwrap();
        let second = w.ready.pop_front().unwrap();
        w.acknowledged(&second, &durable());
        assert!(w.to_save.is_empty(), "the first batch is not acknowledged yet");
        w.acknowledged(&first, &durable());
        let saved: Vec<u64> = w.to_save.drain(..).map(|c| c.offset).collect();
        assert_eq!(saved, [55], "trailing lines without events are covered too");
        assert!(w.finished());
    }

    #[test]
    fn rejections_point_at_their_lines() {
        let mut w = Window::new(vec![start()], 10);
        let bad = w.take(Item::Rejected {
            file: 0,
            line: 1,
            end_offset: 10,
            reason: "invalid JSON".into(),
        });
        assert_eq!(bad.unwrap().line, 1);
        w.take(event(2));
        w.take(event(3));
        w.flush(0);
        let batch = w.ready.pop_front().unwrap();
        let mut answer = durable();
        answer.rejections.push(attackmesh::proto::EventRejection {
            index: 1,
            event_id: "e".into(),
            violations: vec![attackmesh::proto::FieldViolation {
                field: "source.ip".into(),
                description: "bad".into(),
            }],
        });
        let rejected = w.acknowledged(&batch, &answer);
        assert_eq!(rejected[0].line, 3);
        assert_eq!(rejected[0].reasons, ["source.ip: bad"]);
    }
}
