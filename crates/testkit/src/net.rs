//! Loopback addresses for tests: a listener on an ephemeral port, and addresses that are free
//! for a moment.
//!
//! An address a test asks for now and a child process binds later can be taken in between. The
//! ports the kernel hands out on its own (every `bind(0)` listener and the local end of every
//! outgoing connection, thousands a minute in a parallel test run) come from its ephemeral
//! range, so [`free_addr`] picks ports below that range: only another test's [`free_addr`] can
//! pick the same one, and it picks at random among thousands. Whoever starts a process on such
//! an address should still start it again on fresh ones when the bind fails with "Address
//! already in use" (the CLI tests' harness does).

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    net::{Ipv4Addr, SocketAddr},
    sync::atomic::{AtomicU64, Ordering},
};

use tokio::net::TcpListener;

/// A listener on an ephemeral port of 127.0.0.1, and its address.
pub async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// An address on 127.0.0.1 that was free when asked, outside the kernel's ephemeral port
/// range: for a listener the test cannot hand over (a child process's config file) or one it
/// opens later on purpose (a peer that is down at first). Prefer [`bind`] otherwise.
pub fn free_addr() -> SocketAddr {
    let [addr] = free_addrs();
    addr
}

/// `N` distinct addresses as [`free_addr`] gives them, all free at the same moment.
pub fn free_addrs<const N: usize>() -> [SocketAddr; N] {
    let (low, high) = unclaimed_ports();
    let mut held = Vec::with_capacity(N);
    while held.len() < N {
        let port = low + (random() % u64::from(high - low)) as u16;
        if let Ok(listener) = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            held.push(listener);
        }
    }
    std::array::from_fn(|i| held[i].local_addr().unwrap())
}

/// Ports `low..high` the kernel never hands out by itself: from 10000 up to the start of its
/// ephemeral range (Linux: `net.ipv4.ip_local_port_range`, 32768 by default).
fn unclaimed_ports() -> (u16, u16) {
    const LOW: u16 = 10_000;
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    if start > LOW + 1_000 {
        (LOW, start)
    } else {
        (LOW, 32_768)
    }
}

/// A number no other call (in this or another test process) is likely to get.
fn random() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.finish()
}
