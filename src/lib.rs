//! goround-mio: a small, strict HTTP/1.1 round-robin reverse proxy on a mio event loop.
//!
//! # Layout
//! - [`config`]: clap flags → a validated [`config::Config`].
//! - [`http`]: pure parsers and rewriters over byte slices (request, response, rewrite,
//!   chunked, local answers). No sockets: easy to fuzz and unit-test.
//! - [`upstream`]: the shared upstream set, alive flags and the atomic round-robin pick.
//! - [`health`]: the periodic nonblocking-connect probe of every upstream.
//! - [`timer`]: the hashed timer wheel behind every timeout and the health sweep.
//! - [`buffer`]: the fixed-capacity byte buffers each connection owns.
//! - [`session`]: the state machine of one client connection and its upstream connection.
//! - [`worker`]: one mio `Poll`, one SO_REUSEPORT listener, a `Slab` of sessions; dispatches
//!   readiness and timers to sessions and never decides HTTP itself.
//!
//! `src/main.rs` only parses the flags and calls [`run`].

pub mod buffer;
pub mod config;
pub mod health;
pub mod http;
pub mod session;
pub mod timer;
pub mod upstream;
pub mod worker;
