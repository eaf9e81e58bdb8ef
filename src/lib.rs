//! goround-mio: a small, strict HTTP/1.1 reverse proxy and load balancer on a mio event loop.
//!
//! # Layout
//! One job per module, from the bottom up: each imports only modules listed before it, never
//! one listed after. Linked modules are public, for the binaries, benches and tests (and
//! `fuzzing`, with its feature, for the fuzz targets); the others are private to the crate.
//!
//! - `clock`: the data path's time, a monotonic nanosecond count in one integer (`Tick`).
//! - `sys`: the data path's socket reads and writes as direct system calls.
//! - [`buffer`]: the fixed-capacity byte buffers of a connection, and the per-worker pool of them.
//! - [`pages`]: buffer storage mapped from the kernel and unmapped when a burst is over.
//! - `timer`: the hashed timer wheel behind every timeout and health check.
//! - `splice`: zero-copy body forwarding with splice(2) and the per-worker pipe pool.
//! - `metrics`: per-worker counters and histograms, summed at a scrape.
//! - `text`: text made safe to show: a JSON string literal, a URL without its password.
//! - `net`: a worker's mio token ranges, and what a failed connect or accept means.
//! - [`listen`]: the listening sockets (SO_REUSEPORT) and the open-files limit.
//! - [`http`]: pure parsers, rewriters and decisions over byte slices (request, response,
//!   `fields` — the field section both heads share —, rewrite, chunked, local answers, `plan`
//!   — what to do with a head: body modes, interim and upgrade responses, which side stays
//!   open). No sockets: easy to fuzz and unit-test.
//! - `proxy_protocol`: the PROXY protocol header, read from clients and written for upstreams.
//! - [`route`]: a route's spec and normal form, and (host, normalised path) → pool. Pure.
//! - [`config`]: clap flags and the TOML file → one validated [`config::Config`]: data, built
//!   from the types of the modules above and nothing else of the engine.
//! - `dns`: upstreams by name: DNS messages (`wire`, pure), the blocking stub resolver
//!   (`client`: /etc/hosts, resolv.conf, UDP then TCP) and the table of names with what each
//!   resolved to (`table`). Never used on a worker.
//! - `tls`: the HTTPS listener's certificates (loaded, chosen by SNI, reloaded when a file
//!   changes), the session tickets' keys, and the rustls configuration built from them.
//! - [`upstream`]: one shared state per upstream address (alive, in flight, health streaks),
//!   the registry that hands them out and reuses those no configuration lists any more, and
//!   the pools' `max_conns` queues.
//! - `limits`: per-client request rates (GCRA) and connections, in a bounded sharded table.
//! - `access_log`: the access log's lines (combined or JSON) and its writer thread.
//! - [`balance`]: the strategies (round robin, smooth weighted, least_conn, consistent hash)
//!   over the upstreams' shared atomics (`member` and `pool` below them, the dispatch above),
//!   and `outlier`: an ejection within the pool's `max_ejected_percent`. Pure but for that
//!   rare step's lock.
//! - `snapshot`: the config bound to the upstreams' state plus the route table, shared by the
//!   workers as one `Arc`, swapped whole on a reload.
//! - `state`: what the whole process shares (the snapshot in force, the registry, the counters,
//!   the shutdown flag), held by the workers, the admin listener, the control plane and the
//!   shared-limits thread.
//! - `connpool`: a worker's upstream sockets: their ids (tokens) and the idle keep-alive pool.
//! - `health`: TCP and HTTP checks on worker 0's timer wheel, rise/fall.
//! - `session`: the state machine of one client connection and its upstream connection,
//!   split by job: `peer` (a socket and its readiness), `exchange` (one request's record and
//!   its phase: buffering, queued, connecting, awaiting the head, streaming, draining),
//!   `request_side` (head → route → exchange, request body), `connect` (pick, connect,
//!   retries), `response_side` (response head and body, the end of an exchange), `tunnel`
//!   (after a 101), `span` (splice(2) spans), `round` (one read-process-write pass),
//!   `timeouts` (deadlines and what they do), `failure` (a failed step → an answer or a close).
//! - `tcp`: raw TCP mode: `client_hello` (the server name of a TLS ClientHello, pure) and
//!   `relay` (one connection of a `[[tcp]]` listener: balanced once when it opens, then bytes
//!   both ways through a buffer or by splice(2), each half-close passed on). Uses the
//!   session's `peer` and `span`.
//! - `worker`: one mio `Poll`, its SO_REUSEPORT listeners, a `Slab` of sessions and one of
//!   relays; dispatches readiness and timers to them and never decides HTTP itself
//!   (`timer_key`: the timer wheel's keys).
//! - `discovery`: the resolver thread: looks names up again as their TTLs run out and
//!   publishes the new members as a reload does (new ones beside the old until checked).
//! - `admin`: the admin listener: `/metrics`, `/status`, the status page, `/healthz`.
//! - `control`: the signal thread: reload (SIGHUP), upgrade (SIGUSR2), the graceful stop, and
//!   readiness for systemd or an upgrading parent.
//! - `shared_limits`: the thread that exchanges rate counts with Redis.
//! - `start`: start-up, [`run`]: wires all of the above together and waits for the workers.
//! - `fuzzing` (feature `fuzzing`): the fuzz targets' invariant checks.
//!
//! `src/main.rs` only parses the flags, starts `--demo`'s backends (its own `demo` module) and
//! calls [`run`].

// What the binaries, benches, tests and fuzz targets use.
pub mod balance;
pub mod buffer;
pub mod config;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod http;
pub mod listen;
pub mod pages;
pub mod route;
pub mod upstream;

// The engine's own.
mod access_log;
mod acme;
mod admin;
mod clock;
mod connpool;
mod control;
mod discovery;
mod dns;
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
mod tcp;
mod text;
mod timer;
mod tls;
mod worker;

pub use start::check_files;
pub use start::run;
