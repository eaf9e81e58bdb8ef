//! goround-dummy: fast loopback HTTP/1.1 backends for demos, integration tests and load
//! tests of goround-mio.
//!
//! Its plumbing is the library's (buffers, the open-files limit, the listener, the reason
//! phrases), but its HTTP parsing is its own, lenient and independent on purpose: it is the
//! oracle the proxy is tested against, so a bug in the proxy's parser cannot hide behind the
//! same bug here.
//!
//! ```text
//! goround-dummy --port 8081 [--port 8082 ...] [--host 127.0.0.1] [--threads-per-port N]
//!               [--health-status CODE] [--delay DURATION]
//! ```
//! Prints `listening on HOST:PORT` once per `--port`, in order, after all are bound.
//!
//! # Layout
//! - `main`: flags, binding, the `listening on` lines, signals, the 2 s shutdown bound.
//! - [`worker`]: one thread per listener: `Poll`, accept loop, slab, timers, drain.
//! - [`conn`]: one connection's state machine (requests in order, streaming, backpressure).
//! - [`http`]: pure parts: head analysis, route table, queries, reasons, head formatting.
//! - [`chunked`]: the incremental chunked-body scanner.

//!
//! # Routes
//! `/` (any other path) hello · `/health` · `/big?bytes=N` · `/chunked?chunks=N&size=M` ·
//! `/slow?ms=N` · `/status/N` · `/echo` · `/ws` · `/close` · `/headers`. See [`http::Route`].

mod chunked;
mod conn;
mod http;
mod worker;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use clap::Parser;
use mio::{Interest, Poll, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::worker::{Worker, LISTENER, WAKER};

/// Pending-connection queue length of each listener.
const BACKLOG: u32 = 1024;
/// How long the main thread waits for the workers to drain after a signal; the contract
/// says "exit 0 within 2 s at most", this leaves a margin.
const DRAIN_LIMIT: Duration = Duration::from_millis(1800);

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "goround-dummy",
    version,
    about = "Fast loopback HTTP/1.1 backends"
)]
struct Cli {
    /// Port to listen on (repeatable; 0 picks an ephemeral port).
    #[arg(long = "port", required = true, value_name = "PORT")]
    ports: Vec<u16>,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Event-loop threads per port, sharing the port with SO_REUSEPORT.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads_per_port: u16,
    /// The status `/health` answers (e.g. 500, to fail an HTTP health check).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(200..=599))]
    health_status: u16,
    /// Wait this long before answering every request (500ms, 2s): a slow backend.
    #[arg(long, default_value = "0s", value_parser = goround_mio::config::parse_duration)]
    delay: Duration,
}

fn main() -> ExitCode {
    // Clap exits with status 2 on bad flags.
    let cli = Cli::parse();
    // Load tests open many connections.
    goround_mio::listen::raise_nofile_limit();
    // Registered before anything is printed: a test may signal as soon as it reads a line.
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(signals) => signals,
        Err(e) => return fatal(&format!("cannot install signal handlers: {e}")),
    };

    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    for &port in &cli.ports {
        let reuse_port = cli.threads_per_port > 1;
        let first = match bind(SocketAddr::new(cli.host, port), reuse_port) {
            Ok(listener) => listener,
            Err(e) => return bind_error(SocketAddr::new(cli.host, port), &e),
        };
        let addr = match first.local_addr() {
            Ok(addr) => addr,
            Err(e) => return bind_error(SocketAddr::new(cli.host, port), &e),
        };
        listeners.push((first, addr.port()));
        // The siblings bind the real port, so `--port 0` works with several threads too.
        for _ in 1..cli.threads_per_port {
            match bind(addr, true) {
                Ok(listener) => listeners.push((listener, addr.port())),
                Err(e) => return bind_error(addr, &e),
            }
        }
        bound.push(addr);
    }

    let shutdown = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel();
    let mut wakers = Vec::new();
    for (listener, port) in listeners {
        let started = Poll::new().and_then(|poll| {
            let waker = Waker::new(poll.registry(), WAKER)?;
            let mut listener = mio::net::TcpListener::from_std(listener);
            poll.registry()
                .register(&mut listener, LISTENER, Interest::READABLE)?;
            Ok((poll, waker, listener))
        });
        let (poll, waker, listener) = match started {
            Ok(started) => started,
            Err(e) => return fatal(&format!("cannot create the event loop: {e}")),
        };
        wakers.push(waker);
        let answers = worker::Answers {
            health_status: cli.health_status,
            delay: cli.delay,
        };
        let worker = Worker::new(poll, listener, port, Arc::clone(&shutdown), answers);
        let done_tx = done_tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("dummy-{port}"))
            .spawn(move || {
                if let Err(e) = worker.run() {
                    eprintln!("goround-dummy: error: event loop of port {port} failed: {e}");
                    std::process::exit(1);
                }
                let _ = done_tx.send(());
            });
        if let Err(e) = spawned {
            return fatal(&format!("cannot start a thread: {e}"));
        }
    }

    {
        // Readers wait for one line per --port: print them all at once, then flush.
        let mut out = std::io::stdout().lock();
        for addr in &bound {
            let _ = writeln!(out, "listening on {addr}");
        }
        let _ = out.flush();
    }

    // Block until SIGTERM or SIGINT.
    let _ = signals.forever().next();
    shutdown.store(true, Ordering::Release);
    for waker in &wakers {
        let _ = waker.wake();
    }
    let deadline = Instant::now() + DRAIN_LIMIT;
    for _ in 0..wakers.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break; // the bound is reached: exit anyway, the kernel closes what is left
        }
    }
    ExitCode::SUCCESS
}

/// A nonblocking listener on `addr` (the library's: SO_REUSEADDR so a restart right after a
/// kill binds despite TIME_WAIT), with SO_REUSEPORT only when several threads share the port
/// (otherwise a stale dummy on the same port would silently share the traffic).
fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    goround_mio::listen::plain_listener(addr, reuse_port, BACKLOG)
}

/// Reports a bind failure in the documented format and exits 1.
fn bind_error(addr: SocketAddr, error: &std::io::Error) -> ExitCode {
    fatal(&format!("cannot bind {addr}: {error}"))
}

/// Reports a fatal error on stderr; the exit status is 1.
fn fatal(message: &str) -> ExitCode {
    eprintln!("goround-dummy: error: {message}");
    ExitCode::from(1)
}

#[cfg(test)]
mod tests;
