//! Binary Windows event log files (`.evtx`) read as lines of `evtx-json`.
//!
//! [`super::open_path`] recognises an EVTX file by its `ElfFile` signature and hands back an
//! [`EvtxLines`] stream instead of the file's bytes: each record rendered by the `evtx` crate
//! as one compact JSON line, in record order (oldest chunk first, as Windows reads a log that
//! has wrapped). Offsets of a [`super::Reader`] over it count bytes of that rendering, which is
//! deterministic, so `ship` checkpoints resume an `.evtx` file like any other. A record or
//! chunk that cannot be read becomes a `{"evtx_error": …}` line, reported as a rejected record;
//! reading goes on with the next one.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;

use evtx::{EvtxParser, IntoIterChunks, ParserSettings};

/// The first bytes of every EVTX file.
pub(crate) const MAGIC: &[u8] = b"ElfFile\0";

/// The records of an EVTX file as JSON lines.
pub struct EvtxLines {
    chunks: IntoIterChunks<BufReader<File>>,
    settings: Arc<ParserSettings>,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl std::fmt::Debug for EvtxLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvtxLines")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl EvtxLines {
    /// Starts reading `file`, an EVTX file positioned anywhere (it is read from its start).
    pub(crate) fn new(file: BufReader<File>) -> io::Result<Self> {
        let settings = ParserSettings::new()
            .num_threads(1)
            .indent(false)
            .separate_json_attributes(false);
        let parser = EvtxParser::from_read_seek(file)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("EVTX header: {e}")))?
            .with_configuration(settings.clone());
        Ok(Self {
            chunks: parser.into_chunks(),
            settings: Arc::new(settings),
            buf: Vec::new(),
            pos: 0,
            done: false,
        })
    }

    fn error_line(&mut self, message: String) {
        let line = serde_json::json!({ "evtx_error": message });
        self.buf.extend_from_slice(line.to_string().as_bytes());
        self.buf.push(b'\n');
    }

    /// Renders the next chunk's records into the buffer.
    fn refill(&mut self) {
        self.buf.clear();
        self.pos = 0;
        let Some(chunk) = self.chunks.next() else {
            self.done = true;
            return;
        };
        let mut chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => return self.error_line(format!("chunk: {e}")),
        };
        let mut parsed = match chunk.parse(self.settings.clone()) {
            Ok(parsed) => parsed,
            Err(e) => return self.error_line(format!("chunk: {e}")),
        };
        for record in parsed.iter() {
            match record.and_then(|r| r.into_json()) {
                Ok(r) => {
                    self.buf.extend_from_slice(r.data.trim().as_bytes());
                    self.buf.push(b'\n');
                }
                Err(e) => self.error_line(format!("record: {e}")),
            }
        }
    }
}

impl Read for EvtxLines {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for EvtxLines {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.buf.len() && !self.done {
            self.refill();
        }
        Ok(&self.buf[self.pos.min(self.buf.len())..])
    }

    fn consume(&mut self, amount: usize) {
        self.pos = (self.pos + amount).min(self.buf.len());
    }
}
