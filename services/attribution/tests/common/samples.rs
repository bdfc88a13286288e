//! Reads the shared sample files with the contract's parsers.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;

use attackmesh::formats::{self, Format, Reader};
use attackmesh::proto::DetectionEvent;

/// Every event of a sample file with its line number; panics on unreadable files.
pub fn events(format: Format, path: &Path) -> Vec<(u64, DetectionEvent)> {
    let input = formats::open_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Reader::new(format, input, path.display().to_string())
        .filter_map(|record| match record.result {
            Ok(Some(ev)) => Some((record.line, ev)),
            Ok(None) => None,
            Err(e) => panic!("{}:{}: {e}", path.display(), record.line),
        })
        .collect()
}
