//! The black-box test harness: real processes, real sockets, 127.0.0.1 only.
//!
//! # Layout
//! - `mod.rs`: this map, the re-exports (`use common::*;` reaches every part), and the helpers
//!   the parts share: [`find`], [`show`], [`assert_bytes_eq`], [`assert_long_bytes_eq`], [`lock`].
//! - `process.rs`: children with drained output ([`Lines`], [`spawn`], [`run_with_timeout`]);
//!   the proxy ([`Proxy`]: signals, reloads, logs, exit codes; killed on drop) and the processes
//!   an upgrade leaves ([`Orphans`]); [`TempDir`], [`wait_file_lines`], [`which`]; the timeouts.
//! - `backends.rs`: [`Dummies`] (one `goround-dummy` per backend, each killed and restarted
//!   alone on its port) and [`RawBackend`] (scripted, records the exact bytes it receives, cut
//!   by its own [`request_length`] and [`parse_chunked`]); [`free_port`], [`blackhole_listener`].
//! - `clients.rs`: [`ResponseReader`], [`send_raw`], [`get`] with their own response parser;
//!   [`connect_from`] another 127.0.0.x; [`new_connections`] as load; the proxy's own answers
//!   byte for byte ([`local_answer`]).
//! - `dns.rs`: a DNS server ([`DnsServer`]) whose A and SRV answers, TTLs and failures a test
//!   changes while the proxy runs.
//! - `metrics.rs`: samples of the admin `/metrics` page ([`metric`]) and the `/proc` readers
//!   (memory, open descriptors).
//! - `tls.rs`: a test CA and its certificates ([`TestCa`], [`Leaf`]: rcgen, PEM files) and a
//!   rustls client that says what it got ([`TlsClient`], [`https_get`]).
//!
//! None of this shares code with the crate's `http` module: that module is what is under test.
//! Every wait has a timeout and fails with a message that says what was awaited and what was
//! seen instead.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

mod backends;
mod clients;
mod dns;
mod metrics;
mod process;
mod tls;

// A test binary that uses nothing of a part would be told its re-export is unused.
#[allow(unused_imports)]
pub use backends::*;
#[allow(unused_imports)]
pub use clients::*;
#[allow(unused_imports)]
pub use dns::*;
#[allow(unused_imports)]
pub use metrics::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use tls::*;

use std::sync::{Mutex, MutexGuard};

/// Lock a mutex, shrugging off poisoning: a panicking test thread must not hide the real failure
/// behind a `PoisonError` in `Drop`.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Bytes as text for assertion messages (`\r\n` made visible).
pub fn show(bytes: &[u8]) -> String {
    const MAX: usize = 4096;
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]).replace('\r', "\\r");
    if bytes.len() > MAX {
        format!("{s}... ({} bytes in all)", bytes.len())
    } else {
        s
    }
}

/// Assert two byte strings are equal, printing both readably when they are not.
#[track_caller]
pub fn assert_bytes_eq(actual: &[u8], expected: &[u8], what: &str) {
    if actual != expected {
        panic!(
            "{what}: bytes differ\n--- expected ({} bytes):\n{}\n--- actual ({} bytes):\n{}\n",
            expected.len(),
            show(expected),
            actual.len(),
            show(actual)
        );
    }
}

/// Assert two long byte strings (bodies of megabytes) are equal; when they are not, print their
/// lengths and the bytes around the first difference instead of both in full.
#[track_caller]
pub fn assert_long_bytes_eq(actual: &[u8], expected: &[u8], what: &str) {
    if actual == expected {
        return;
    }
    let at = actual
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(actual.len().min(expected.len()));
    let from = at.saturating_sub(16);
    let around = |b: &[u8]| show(&b[from.min(b.len())..(at + 48).min(b.len())]);
    panic!(
        "{what}: got {} bytes, expected {}; first difference at byte {at}; from byte {from}, \
         got:\n{}\nexpected:\n{}",
        actual.len(),
        expected.len(),
        around(actual),
        around(expected)
    );
}
