//! Arbitrary bytes as a winlogbeat stream: parse_line per line and the Reader over the whole input
//! (multi-line documents and arrays included).

#![no_main]

use attackmesh::formats::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| attackmesh_fuzz::check_format(Format::Winlogbeat, data));
