//! Benchmarks of the siem-export queue and sinks.

fn main() {}
