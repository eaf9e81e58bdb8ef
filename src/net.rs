//! What the event loops know about their sockets beyond moving bytes: the mio token ranges of a
//! worker's `Poll`, and what a failed connect or accept says (the upstream is not there, or the
//! proxy itself is short of descriptors or memory). Shared by the worker, the sessions and the
//! health checks.

use mio::Token;
use std::io;

/// The listener's token (client tokens are session keys, upstream ones start at
/// [`UPSTREAM_TOKENS`], probe ones at [`PROBE_BASE`]; all far below).
pub const LISTENER: Token = Token(usize::MAX);
/// The HTTPS listener's token.
pub const TLS_LISTENER: Token = Token(usize::MAX - 2);
/// The token of the waker that tells a worker to look at the shutdown flag.
pub const WAKER: Token = Token(usize::MAX - 1);
/// Probe tokens are `PROBE_BASE + upstream id`.
pub const PROBE_BASE: usize = usize::MAX / 2;
/// Upstream socket tokens are `UPSTREAM_TOKENS + id` (ids from the `ConnPool`); client tokens
/// are the session keys, far below.
pub const UPSTREAM_TOKENS: usize = usize::MAX / 4;

/// Relay tokens (TCP mode) are `RELAY_TOKENS + 2 × key` for the client socket, `+ 1` for the
/// upstream one; session keys stay below.
pub const RELAY_TOKENS: usize = usize::MAX / 8;
/// TCP listener `i`'s token is `TCP_LISTENERS + i` (at most [`MAX_TCP_LISTENERS`]), below the
/// listener, waker and HTTPS tokens.
pub const TCP_LISTENERS: usize = usize::MAX - 3 - MAX_TCP_LISTENERS;
/// The most `[[tcp]]` listeners.
pub const MAX_TCP_LISTENERS: usize = 1024;

/// The token of relay `key`'s client socket, or of its upstream one.
pub fn relay_token(key: usize, upstream: bool) -> Token {
    Token(RELAY_TOKENS + 2 * key + usize::from(upstream))
}

/// The mio token of a session's client socket.
pub fn client_token(key: usize) -> Token {
    Token(key)
}

/// The mio token of upstream socket `id`.
pub fn upstream_token(id: usize) -> Token {
    Token(UPSTREAM_TOKENS + id)
}

/// The mio token of the health probe of upstream `id`.
pub fn probe_token(id: usize) -> Token {
    Token(PROBE_BASE + id)
}

/// Connect errors that say the upstream is not there: refused, unreachable, timed out
/// (a session's connect and a health probe judge them alike).
pub fn marks_upstream_down(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNREFUSED)
            | Some(libc::EHOSTUNREACH)
            | Some(libc::ENETUNREACH)
            | Some(libc::ETIMEDOUT)
            | Some(libc::EHOSTDOWN)
            | Some(libc::ENETDOWN)
    )
}

/// Errors that are the proxy's own shortage, not the upstream's fault (a session's connect,
/// a health probe and accept).
pub fn is_local_shortage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE)
            | Some(libc::ENFILE)
            | Some(libc::ENOBUFS)
            | Some(libc::ENOMEM)
            | Some(libc::EADDRNOTAVAIL)
            | Some(libc::EAGAIN)
    )
}

/// A short reason for the log line of an upstream going down.
pub fn connect_reason(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "connection refused".into(),
        Some(libc::EHOSTUNREACH) | Some(libc::EHOSTDOWN) => "host unreachable".into(),
        Some(libc::ENETUNREACH) | Some(libc::ENETDOWN) => "network unreachable".into(),
        Some(libc::ETIMEDOUT) => "connect timed out".into(),
        _ => e.to_string(),
    }
}
