//! One socket of a session and the readiness the OS reported for it.

use crate::buffer::{BufPool, Buffer};
use crate::sys;
use mio::net::TcpStream;
use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;

/// One socket and what the OS last told us about it.
#[derive(Debug)]
pub(crate) struct Peer {
    /// The socket.
    pub(crate) stream: TcpStream,
    /// A read may make progress (cleared only by `WouldBlock`).
    pub(crate) readable: bool,
    /// A write may make progress (cleared only by `WouldBlock`).
    pub(crate) writable: bool,
    /// The peer closed its sending side (read returned 0).
    pub(crate) eof: bool,
    /// We shut our sending side down (after forwarding the other side's EOF, or on closing).
    pub(crate) shut: bool,
    /// The OS said the peer closed or reset (EPOLLRDHUP/ERR), maybe in the same event as data
    /// we have read: edge-triggered, that news will not come again, so a connection with it
    /// must never go to the idle pool.
    pub(crate) hung_up: bool,
    /// TCP_NODELAY is set (see `Session::nagle_off`).
    pub(crate) nodelay: bool,
    /// Something was written to the socket already: a further small write could be held by
    /// Nagle's algorithm behind an unacknowledged one.
    pub(crate) wrote: bool,
    /// Bytes read from the socket so far (by read or splice).
    pub(crate) bytes_in: u64,
    /// Bytes written to the socket so far (by write or splice).
    pub(crate) bytes_out: u64,
}

impl Peer {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Peer {
            stream,
            readable: false,
            writable: false,
            eof: false,
            shut: false,
            hung_up: false,
            nodelay: false,
            wrote: false,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    pub(crate) fn on_event(&mut self, ev: &mio::event::Event) {
        // read_closed and error are hints (mio's Event docs): the next read or write reports them.
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            self.readable = true;
        }
        if ev.is_read_closed() || ev.is_error() {
            self.hung_up = true;
        }
        if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
            self.writable = true;
        }
    }

    /// Read once into `buf` if there is reason to. `Ok(n)` bytes read (0: nothing to do).
    pub(crate) fn read_into(&mut self, buf: &mut Buffer, bufs: &mut BufPool) -> io::Result<usize> {
        if !self.readable || self.eof || buf.room() == 0 {
            return Ok(0);
        }
        buf.attach(bufs);
        loop {
            let room = buf.read_room();
            match buf.read_from(&mut sys::Recv(self.stream.as_raw_fd())) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.bytes_in += n as u64;
                    // A short read drained the socket (epoll(7), Q9): new bytes will raise a
                    // new edge, so no read that would only say EAGAIN. Not when the peer hung
                    // up: that edge was already reported and the EOF still has to be read.
                    if n < room && !self.hung_up {
                        self.readable = false;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Ok(0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Write once from `bytes` if there is reason to. Returns how many were written. `more`:
    /// the socket is closed or shut down right after these bytes (see `sys::send`).
    pub(crate) fn write_from(&mut self, bytes: &[u8], more: bool) -> io::Result<usize> {
        if !self.writable || bytes.is_empty() || self.shut {
            return Ok(0);
        }
        loop {
            match sys::send(self.stream.as_raw_fd(), bytes, more) {
                Ok(n) => {
                    self.wrote = true;
                    self.bytes_out += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return Ok(0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) fn shutdown_write(&mut self) {
        if !self.shut {
            self.shut = true;
            // A peer that is already gone makes this fail; there is nothing left to tell it.
            let _ = self.stream.shutdown(Shutdown::Write);
        }
    }
}
