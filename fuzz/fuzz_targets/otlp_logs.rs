//! Hostile OTLP logs export requests as enrichment receives them on `LogsService/Export` and
//! `POST /v1/logs`: protobuf (first byte even) or OTLP/JSON (odd), mapped record by record to
//! detections (see `attackmesh_fuzz::check_otlp` for what must hold).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| attackmesh_fuzz::check_otlp(data));
