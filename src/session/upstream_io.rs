//! The upstream socket, plain or under TLS: reads give plaintext, writes take plaintext, and
//! rustls' records move underneath. Counts are of plaintext, as on the client side.

use super::exchange::Upstream;
use super::tls::{flush_records, read_records};
use crate::buffer::{BufPool, Buffer};
use std::io::{self, Write};

impl Upstream {
    /// Read what the upstream sent into `buf`. `Ok(n)`: plaintext bytes (0: nothing now).
    #[inline]
    pub(super) fn read_into(&mut self, buf: &mut Buffer, bufs: &mut BufPool) -> io::Result<usize> {
        let Some(conn) = self.tls.as_mut() else {
            return self.peer.read_into(buf, bufs);
        };
        let n = read_records(conn, &mut self.peer, buf, bufs).map_err(io::Error::other)?;
        self.peer.bytes_in += n as u64;
        Ok(n)
    }

    /// Write from `bytes` what the upstream takes now. `Ok(n)`: plaintext bytes taken (under
    /// TLS, taken by rustls, whose records go out as far as the socket takes them; it holds
    /// at most its buffer limit, so a slow upstream still pushes back).
    #[inline]
    pub(super) fn write_from(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let Some(conn) = self.tls.as_mut() else {
            return self.peer.write_from(bytes, false);
        };
        if self.peer.shut {
            return Ok(0);
        }
        flush_records(conn, &mut self.peer)?;
        let mut n = 0;
        if !bytes.is_empty() && !conn.is_handshaking() && self.peer.writable {
            n = conn.writer().write(bytes)?;
            self.peer.bytes_out += n as u64;
            flush_records(conn, &mut self.peer)?;
        }
        Ok(n)
    }

    /// rustls holds bytes the upstream sent past the response, or records of ours not yet
    /// written: the connection is not clean, whatever the socket says.
    pub(super) fn holds_plaintext(&mut self) -> bool {
        self.tls.as_mut().is_some_and(|c| {
            c.process_new_packets().map_or(true, |s| {
                s.plaintext_bytes_to_read() > 0 || s.tls_bytes_to_write() > 0
            })
        })
    }

    /// Records rustls holds for the upstream that the socket has not taken yet.
    #[inline]
    pub(super) fn output_pending(&self) -> bool {
        self.tls.as_ref().is_some_and(|c| c.wants_write())
    }

    /// End our sending side: close_notify first under TLS, and the socket is shut once
    /// rustls' records are all out (false: not yet, try again when it is writable).
    pub(super) fn shutdown_write(&mut self) -> bool {
        if let Some(conn) = self.tls.as_mut() {
            conn.send_close_notify();
            let _ = flush_records(conn, &mut self.peer);
            if conn.wants_write() {
                return false;
            }
        }
        self.peer.shutdown_write();
        true
    }
}
