//! Line reading with byte offsets, for `enrich` (one output per input line) and `ship` (resume
//! from a checkpointed offset without loss or duplication).
//!
//! Offsets count bytes of the stream as parsed: for a gzip file, bytes of the decompressed
//! data; for an `.evtx` file, bytes of its records rendered as JSON lines (see `EvtxLines`). A
//! checkpoint is the `end_offset` of the last record handled; resuming there yields exactly the
//! records after it.
//!
//! Formats that read documents ([`Format::reads_documents`]: the Windows event formats) also
//! take a JSON document spread over several lines (a pretty-printed record) and arrays of
//! records. Every record of an array but the last carries `end_offset == offset` (the start of
//! the array): resuming inside an array reads it again whole, and the records' deterministic
//! ids make the repeats harmless.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;

use super::evtx::{EvtxLines, MAGIC as EVTX_MAGIC};
use super::{Format, MAX_LINE_BYTES, ParseError, ParseState, parse_document, parse_line};
use crate::proto::DetectionEvent;

/// Read buffer size for files.
const BUFFER_BYTES: usize = 64 * 1024;

/// One line of input and what it parsed to.
#[derive(Debug)]
pub struct Record {
    /// 1-based line number.
    pub line: u64,
    /// Byte offset of the start of the line.
    pub offset: u64,
    /// Byte offset just after the line, its newline included: the checkpoint once this record
    /// is handled. Equal to `offset` for a read error, which completes no line.
    pub end_offset: u64,
    /// The event, `Ok(None)` for a line that carries none (blank line, Zeek header, Suricata
    /// `stats`), or why the line was rejected (with its line number).
    pub result: Result<Option<DetectionEvent>, ParseError>,
}

/// Reads records line by line from a buffered stream.
///
/// Lines over [`MAX_LINE_BYTES`] become [`ParseError::LineTooLong`] records without being held in
/// memory, and reading goes on with the next line. A read error (such as a truncated gzip file)
/// yields one error record and ends the iteration.
///
/// In follow mode a last line without its newline is held back, not parsed: the iterator returns
/// `None` at the end of the data and, once more data has been appended, picks up where it
/// stopped. Outside follow mode a last unterminated line is parsed as is.
#[derive(Debug)]
pub struct Reader<R: BufRead> {
    format: Format,
    inner: R,
    state: ParseState,
    offset: u64,
    next_line: u64,
    follow: bool,
    pending: Vec<u8>,
    pending_len: u64,
    overflow: bool,
    failed: bool,
    /// A JSON document spread over lines, read so far, with its first line and offset.
    doc: String,
    doc_line: u64,
    doc_offset: u64,
    /// Further records of an array already parsed.
    queue: VecDeque<Record>,
}

impl<R: BufRead> Reader<R> {
    /// Reads `reader` from its start; `source_name` names the stream (usually its path).
    pub fn new(format: Format, reader: R, source_name: impl Into<String>) -> Self {
        Self::resume(format, reader, source_name, 0, ParseState::default())
    }

    /// Continues a stream at `offset`: `reader` must already be positioned there (see
    /// [`open_path_at`]) and `state` must be the parse state in force at that point (see
    /// [`scan_prefix`], or a state saved from [`Reader::state`]). Line numbers start at 1
    /// unless [`Reader::with_first_line`] says otherwise; [`resume_path`] does all of this.
    pub fn resume(
        format: Format,
        reader: R,
        source_name: impl Into<String>,
        offset: u64,
        mut state: ParseState,
    ) -> Self {
        state.set_source_name(source_name);
        Self {
            format,
            inner: reader,
            state,
            offset,
            next_line: 1,
            follow: false,
            pending: Vec::new(),
            pending_len: 0,
            overflow: false,
            failed: false,
            doc: String::new(),
            doc_line: 0,
            doc_offset: 0,
            queue: VecDeque::new(),
        }
    }

    /// Numbers the next line `line` (1-based).
    pub fn with_first_line(mut self, line: u64) -> Self {
        self.next_line = line.max(1);
        self
    }

    /// Turns follow mode on or off (off by default).
    pub fn follow(mut self, follow: bool) -> Self {
        self.follow = follow;
        self
    }

    /// The format being read.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The parse state after the last record returned.
    pub fn state(&self) -> &ParseState {
        &self.state
    }

    /// Byte offset just after the last record returned.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Number the next record will carry.
    pub fn next_line(&self) -> u64 {
        self.next_line
    }

    /// Gives the underlying reader back.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn emit(&mut self) -> Option<Record> {
        let line = self.next_line;
        let offset = self.offset;
        let end_offset = offset + self.pending_len;
        self.next_line += 1;
        self.offset = end_offset;
        self.pending_len = 0;
        let pending = std::mem::take(&mut self.pending);
        let text = if std::mem::take(&mut self.overflow) {
            Err(ParseError::LineTooLong { limit: MAX_LINE_BYTES })
        } else {
            let bytes = pending.strip_suffix(b"\n").unwrap_or(&pending);
            let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            if bytes.len() > MAX_LINE_BYTES {
                Err(ParseError::LineTooLong { limit: MAX_LINE_BYTES })
            } else {
                std::str::from_utf8(bytes).map_err(|error| ParseError::InvalidUtf8(error.valid_up_to()))
            }
        };
        let record = match text {
            Ok(text) if self.format.reads_documents() => self.document(text, line, offset, end_offset),
            Ok(text) => Some(Record {
                line,
                offset,
                end_offset,
                result: parse_line(self.format, text, &mut self.state).map_err(|error| error.at_line(line)),
            }),
            Err(error) => {
                self.doc.clear();
                Some(Record {
                    line,
                    offset,
                    end_offset,
                    result: Err(error.at_line(line)),
                })
            }
        };
        self.pending = pending;
        self.pending.clear();
        self.pending.shrink_to(BUFFER_BYTES);
        record
    }

    /// Adds a line to the document being read; the records once it is complete.
    fn document(&mut self, text: &str, line: u64, offset: u64, end_offset: u64) -> Option<Record> {
        if self.doc.is_empty() {
            let t = text.trim().trim_start_matches('\u{feff}');
            let single = !t.starts_with(['[', '{']) || (t.starts_with('{') && t.ends_with('}'));
            if single || !incomplete(t) {
                return self.records(t, line, offset, end_offset);
            }
            self.doc_line = line;
            self.doc_offset = offset;
        }
        self.doc.push_str(text);
        self.doc.push('\n');
        if self.doc.len() > MAX_LINE_BYTES {
            self.doc.clear();
            let error = ParseError::LineTooLong { limit: MAX_LINE_BYTES };
            return Some(Record {
                line: self.doc_line,
                offset: self.doc_offset,
                end_offset,
                result: Err(error.at_line(self.doc_line)),
            });
        }
        if incomplete(&self.doc) {
            return None;
        }
        let doc = std::mem::take(&mut self.doc);
        self.records(&doc, self.doc_line, self.doc_offset, end_offset)
    }

    /// Queues the records of a complete document and returns the first.
    fn records(&mut self, doc: &str, line: u64, offset: u64, end_offset: u64) -> Option<Record> {
        let results = if doc.starts_with('[') {
            parse_document(self.format, doc)
        } else {
            vec![parse_line(self.format, doc, &mut self.state)]
        };
        let last = results.len().saturating_sub(1);
        for (i, result) in results.into_iter().enumerate() {
            self.queue.push_back(Record {
                line,
                offset,
                end_offset: if i == last { end_offset } else { offset },
                result: result.map_err(|error| error.at_line(line)),
            });
        }
        self.queue.pop_front()
    }
}

/// True when `text` is the start of a JSON document that goes on.
fn incomplete(text: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_err_and(|e| e.is_eof())
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        if let Some(record) = self.queue.pop_front() {
            return Some(record);
        }
        if self.failed {
            return None;
        }
        loop {
            let buf = match self.inner.fill_buf() {
                Ok(buf) => buf,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    self.failed = true;
                    return Some(Record {
                        line: self.next_line,
                        offset: self.offset,
                        end_offset: self.offset,
                        result: Err(ParseError::Io(error).at_line(self.next_line)),
                    });
                }
            };
            if buf.is_empty() {
                if self.pending_len == 0 && !self.follow && !self.doc.is_empty() {
                    self.doc.clear();
                    let error = ParseError::InvalidJson {
                        column: 0,
                        message: "the document ends before it is complete".into(),
                    };
                    return Some(Record {
                        line: self.doc_line,
                        offset: self.doc_offset,
                        end_offset: self.offset,
                        result: Err(error.at_line(self.doc_line)),
                    });
                }
                if self.pending_len == 0 || self.follow {
                    return None;
                }
                match self.emit() {
                    Some(record) => return Some(record),
                    None => continue,
                }
            }
            let (used, complete) = match memchr::memchr(b'\n', buf) {
                Some(index) => (index + 1, true),
                None => (buf.len(), false),
            };
            if !self.overflow {
                // Room for the line and a `\r\n` terminator; anything longer is rejected.
                if self.pending.len() + used > MAX_LINE_BYTES + 2 {
                    self.overflow = true;
                    self.pending.clear();
                    self.pending.shrink_to(BUFFER_BYTES);
                } else {
                    self.pending.extend_from_slice(&buf[..used]);
                }
            }
            self.inner.consume(used);
            self.pending_len += used as u64;
            if complete && let Some(record) = self.emit() {
                return Some(record);
            }
        }
    }
}

/// Opens a file for reading, decompressing it on the fly when it starts with the gzip magic
/// bytes (whatever its name); concatenated gzip members are read as one stream. A binary
/// Windows event log (`ElfFile` signature) reads as its records rendered as JSON lines.
pub fn open_path(path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
    let mut file = BufReader::with_capacity(BUFFER_BYTES, File::open(path)?);
    if file.fill_buf()?.starts_with(EVTX_MAGIC) {
        return Ok(Box::new(BufReader::with_capacity(BUFFER_BYTES, EvtxLines::new(file)?)));
    }
    if is_gzip(&mut file)? {
        let decoder = MultiGzDecoder::new(file);
        Ok(Box::new(BufReader::with_capacity(BUFFER_BYTES, decoder)))
    } else {
        Ok(Box::new(file))
    }
}

/// Opens a file positioned at `offset` (of the decompressed data for gzip files, of the JSON
/// rendering for `.evtx` files; both are read and discarded up to there). An offset beyond the end is an error: the file was
/// truncated or replaced since the offset was taken.
pub fn open_path_at(path: &Path, offset: u64) -> io::Result<Box<dyn BufRead + Send>> {
    let mut file = BufReader::with_capacity(BUFFER_BYTES, File::open(path)?);
    if is_gzip(&mut file)? || file.fill_buf()?.starts_with(EVTX_MAGIC) {
        let mut decoded = open_path(path)?;
        let skipped = io::copy(&mut (&mut decoded).take(offset), &mut io::sink())?;
        if skipped < offset {
            return Err(beyond_end(path, offset, skipped));
        }
        return Ok(decoded);
    }
    let len = file.get_ref().metadata()?.len();
    if len < offset {
        return Err(beyond_end(path, offset, len));
    }
    file.seek(SeekFrom::Start(offset))?;
    Ok(Box::new(file))
}

fn beyond_end(path: &Path, offset: u64, len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!(
            "offset {offset} is beyond the end of {} ({len} bytes): the file was truncated or replaced",
            path.display()
        ),
    )
}

fn is_gzip(reader: &mut impl BufRead) -> io::Result<bool> {
    Ok(reader.fill_buf()?.starts_with(&[0x1f, 0x8b]))
}

/// Where a stream stood at a byte offset: what [`Reader::resume`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    /// The offset scanned up to.
    pub offset: u64,
    /// Lines before the offset (the next record is line `lines + 1`).
    pub lines: u64,
    /// Parse state in force at the offset (the Zeek header read before it).
    pub state: ParseState,
}

/// Reads `reader` from its start up to `offset`, counting lines and replaying Zeek header
/// lines, without parsing records. `offset` must be a line boundary (a record's `end_offset`).
pub fn scan_prefix<R: BufRead>(format: Format, reader: R, offset: u64) -> Result<ResumePoint, ParseError> {
    let mut prefix = reader.take(offset);
    let mut state = ParseState::default();
    let mut lines = 0u64;
    let mut consumed = 0u64;
    let mut at_line_start = true;
    let mut last = Vec::new();
    loop {
        last.clear();
        let limit = MAX_LINE_BYTES as u64 + 2;
        let read = (&mut prefix).take(limit).read_until(b'\n', &mut last)?;
        if read == 0 {
            break;
        }
        consumed += read as u64;
        if !last.ends_with(b"\n") && read as u64 == limit {
            consumed += prefix.skip_until(b'\n')? as u64;
            at_line_start = true;
            lines += 1;
            continue;
        } else if format == Format::Zeek && last.starts_with(b"#") {
            let text = String::from_utf8_lossy(&last);
            // Header lines change state only; their parse result is always `Ok(None)`.
            let _ = parse_line(format, &text, &mut state);
        }
        at_line_start = last.ends_with(b"\n");
        lines += 1;
    }
    if consumed < offset {
        return Err(ParseError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("offset {offset} is beyond the end of the stream ({consumed} bytes)"),
        )));
    }
    // A last line without its newline may be resumed after, as long as nothing follows it yet.
    if !at_line_start && !prefix.into_inner().fill_buf()?.is_empty() {
        return Err(ParseError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("offset {offset} is not at the start of a line"),
        )));
    }
    Ok(ResumePoint { offset, lines, state })
}

/// Opens `path` at a checkpointed `offset` with the Zeek header and line numbering restored
/// from the part before it.
pub fn resume_path(format: Format, path: &Path, offset: u64) -> Result<Reader<Box<dyn BufRead + Send>>, ParseError> {
    let point = scan_prefix(format, open_path(path)?, offset)?;
    let reader = open_path_at(path, offset)?;
    let name = path.to_string_lossy().into_owned();
    Ok(Reader::resume(format, reader, name, offset, point.state).with_first_line(point.lines + 1))
}
