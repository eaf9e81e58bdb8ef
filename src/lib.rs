//! goround-mio: a small, strict HTTP/1.1 reverse proxy and load balancer on a mio event loop.
//!
//! # Layout
//! - [`config`]: clap flags and the TOML file → one validated [`config::Config`] (`spec`: the
//!   types; `build`: the merge of flags and file; `pools`: pools, routes, health checks).
//! - [`route`]: (host, normalised path) → pool. Pure.
//! - [`balance`]: the strategies (round robin, smooth weighted, least_conn, consistent hash)
//!   over the upstreams' shared atomics. Pure.
//! - [`upstream`]: one shared state per upstream address (alive, in flight, health streaks).
//! - [`snapshot`]: the config bound to that state plus the route table, shared by the workers
//!   as one `Arc`, swapped whole on a reload.
//! - [`http`]: pure parsers and rewriters over byte slices (request, response, `fields` — the
//!   field section both heads share —, rewrite, chunked, local answers). No sockets: easy to
//!   fuzz and unit-test.
//! - [`health`]: TCP and HTTP checks on worker 0's timer wheel, rise/fall.
//! - [`timer`]: the hashed timer wheel behind every timeout and health check.
//! - [`clock`]: the data path's time, a monotonic nanosecond count in one integer ([`clock::Tick`]).
//! - [`buffer`]: the fixed-capacity byte buffers of a connection, and the per-worker pool of them.
//! - [`connpool`]: a worker's upstream sockets: their ids (tokens) and the idle keep-alive pool.
//! - [`splice`]: zero-copy body forwarding with splice(2) and the per-worker pipe pool.
//! - [`sys`]: the data path's socket reads and writes as direct system calls.
//! - [`session`]: the state machine of one client connection and its upstream connection,
//!   split by job: `peer` (a socket and its readiness), `exchange` (one request's record),
//!   `request_side` (head → route → exchange, request body), `connect` (pick, connect,
//!   retries), `response_side` (response head and body, the end of an exchange), `tunnel`
//!   (after a 101), `span` (splice(2) spans), `round` (one read-process-write pass),
//!   `timeouts` (deadlines and what they do), `failure` (a failed step → an answer or a close).
//! - [`worker`]: one mio `Poll`, one SO_REUSEPORT listener, a `Slab` of sessions; dispatches
//!   readiness and timers to sessions and never decides HTTP itself (`timer_key`: the timer
//!   wheel's keys).
//! - [`state`]: what the whole process shares (snapshot, registry, counters, shutdown flag).
//! - [`listen`]: the listeners and the open-files limit.
//! - `fuzzing` (feature `fuzzing`): the fuzz targets' invariant checks.
//!
//! `src/main.rs` only parses the flags and calls [`run`].

// What the binaries, benches, tests and fuzz targets use.
pub mod balance;
pub mod buffer;
pub mod config;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod http;
pub mod listen;
pub mod route;
pub mod upstream;

// The engine's own.
mod access_log;
mod admin;
mod clock;
mod connpool;
mod control;
mod health;
mod limits;
mod metrics;
mod net;
mod proxy_protocol;
mod session;
mod shared_limits;
mod snapshot;
mod splice;
mod start;
mod state;
mod sys;
mod text;
mod timer;
mod worker;

pub use start::run;
