//! The process's control plane, off the request path: signals, a configuration reload
//! (SIGHUP), a binary upgrade that hands the listening sockets over (SIGUSR2), the access log's
//! reopening (SIGUSR1), the graceful stop (SIGTERM, SIGINT), and readiness for a service
//! manager or an upgrading parent.
//!
//! - [`systemd`]: inherited sockets (`LISTEN_FDS`) and sd_notify.
//! - This file: [`Control`], what the signal thread works with.
//! - [`reload`]: read and validate the file again, swap the snapshot.
//! - [`upgrade`]: start the new binary with our sockets, stop once it is ready.
//! - [`signals`]: which signal does what, on the signal thread.

mod reload;
mod signals;
pub mod systemd;
pub mod upgrade;

use crate::state::Shared;
use log::warn;
use mio::Waker;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What the signal thread works with.
pub struct Control {
    /// What the workers share.
    pub shared: Arc<Shared>,
    /// Each worker's waker.
    pub wakers: Arc<Vec<Waker>>,
    /// Copies of the traffic listening sockets (the workers poll the originals), to hand to a
    /// new binary on an upgrade. Dropped when a graceful stop begins, so that a stop without
    /// an upgrade leaves no socket queueing connections nobody will accept.
    pub listeners: Mutex<Vec<TcpListener>>,
    /// Copies of the HTTPS listening sockets, for the same reason.
    pub tls_listeners: Mutex<Vec<TcpListener>>,
    /// Copies of the TCP listening sockets, with their `[[tcp]]` index, for the same reason.
    pub tcp_listeners: Mutex<Vec<(usize, TcpListener)>>,
    /// A copy of the admin listening socket, for the same reason.
    pub admin: Mutex<Option<TcpListener>>,
    /// Set for the access log's writer to reopen its file.
    pub reopen_log: Arc<AtomicBool>,
    /// An upgrade is under way (a second SIGUSR2 meanwhile is refused).
    pub upgrading: AtomicBool,
}

impl Control {
    /// Stop accepting, finish what is in flight, exit (the workers do it when woken).
    pub fn begin_shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::Release);
        lock(&self.listeners).clear();
        lock(&self.tls_listeners).clear();
        lock(&self.tcp_listeners).clear();
        lock(&self.admin).take();
        for w in self.wakers.iter() {
            if let Err(e) = w.wake() {
                warn!("cannot wake a worker: {e}");
            }
        }
    }

    /// Wake every worker (a new snapshot or listeners are waiting for them).
    pub fn wake_all(&self) {
        for w in self.wakers.iter() {
            let _ = w.wake();
        }
    }
}

/// Lock a mutex whatever a panicking holder left.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
