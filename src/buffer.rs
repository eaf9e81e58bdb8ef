//! Fixed-capacity byte buffers: what bounds the memory of one connection.
//!
//! A [`Buffer`] holds the bytes between `start` and `end` of a boxed slice whose size is fixed
//! when the buffer is made. The storage is allocated on first use and given back by
//! [`Buffer::release`] when the connection goes idle, so an idle keep-alive connection holds
//! no buffer memory at all.

use std::io::{self, Read, Write};

/// Bytes read from the client and not yet consumed (heads are parsed in place, so this must hold
/// the largest head we accept plus room to see that it is too large).
pub const CLIENT_IN: usize = 64 * 1024;
/// Bytes on their way to the upstream: the rewritten request head, then body bytes.
pub const UPSTREAM_OUT: usize = 64 * 1024;
/// Bytes read from the upstream and not yet consumed.
pub const UPSTREAM_IN: usize = 64 * 1024;
/// Bytes on their way to the client: the rewritten response head, then body bytes.
pub const CLIENT_OUT: usize = 64 * 1024;

/// A byte queue with a fixed capacity.
#[derive(Debug)]
pub struct Buffer {
    /// Storage; empty until first use.
    data: Box<[u8]>,
    /// Capacity the storage gets when it is allocated.
    cap: usize,
    /// First byte not yet consumed.
    start: usize,
    /// One past the last byte filled.
    end: usize,
}

impl Buffer {
    /// A buffer that will hold at most `cap` bytes. Allocates nothing yet.
    pub fn new(cap: usize) -> Self {
        Buffer {
            data: Box::default(),
            cap,
            start: 0,
            end: 0,
        }
    }

    /// The bytes queued.
    pub fn data(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The fixed capacity.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// How many more bytes can be queued (after compaction, which `extend` and `read_from` do).
    pub fn room(&self) -> usize {
        self.cap - self.len()
    }

    /// Drop `n` bytes from the front.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Drop everything queued.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Give the storage back when nothing is queued (an idle connection holds no buffer).
    pub fn release(&mut self) {
        if self.is_empty() {
            self.data = Box::default();
            self.clear();
        }
    }

    /// Make sure the storage exists and the free space is contiguous at the end.
    fn make_room(&mut self) {
        if self.data.is_empty() {
            self.data = vec![0; self.cap].into_boxed_slice();
        }
        if self.start > 0 && self.end == self.data.len() {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// The writable tail, compacted first when the tail is full.
    fn spare(&mut self) -> &mut [u8] {
        self.make_room();
        &mut self.data[self.end..]
    }

    /// Queue as much of `bytes` as fits; returns how many were queued.
    pub fn extend(&mut self, bytes: &[u8]) -> usize {
        if bytes.is_empty() {
            return 0;
        }
        if self.end + bytes.len() > self.cap && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let spare = self.spare();
        let n = bytes.len().min(spare.len());
        spare[..n].copy_from_slice(&bytes[..n]);
        self.end += n;
        n
    }

    /// One `read` into the free space. `Ok(0)` means end of stream (the caller checks `room()`
    /// first: reading into a full buffer is a caller bug and also returns `Ok(0)`).
    pub fn read_from<R: Read>(&mut self, src: &mut R) -> io::Result<usize> {
        if self.room() == 0 {
            return Ok(0);
        }
        let spare = self.spare();
        let n = src.read(spare)?;
        self.end += n;
        Ok(n)
    }

    /// One `write` of the queued bytes; consumes what was written.
    pub fn write_to<W: Write>(&mut self, dst: &mut W) -> io::Result<usize> {
        let n = dst.write(self.data())?;
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_unallocated_and_releases_when_empty() {
        let mut b = Buffer::new(8);
        assert_eq!(b.data.len(), 0);
        assert_eq!(b.extend(b"abc"), 3);
        assert_eq!(b.data.len(), 8);
        b.release();
        assert_eq!(b.data.len(), 8, "not released while bytes are queued");
        b.consume(3);
        b.release();
        assert_eq!(b.data.len(), 0);
    }

    #[test]
    fn extend_stops_at_capacity_and_compacts() {
        let mut b = Buffer::new(8);
        assert_eq!(b.extend(b"0123456789"), 8);
        assert_eq!(b.data(), b"01234567");
        b.consume(5);
        assert_eq!(b.room(), 5);
        assert_eq!(b.extend(b"abcdefg"), 5);
        assert_eq!(b.data(), b"567abcde");
    }

    #[test]
    fn read_and_write_through_io() {
        let mut b = Buffer::new(4);
        let mut src: &[u8] = b"hello";
        assert_eq!(b.read_from(&mut src).ok(), Some(4));
        assert_eq!(
            b.read_from(&mut src).ok(),
            Some(0),
            "full buffer reads nothing"
        );
        let mut out = Vec::new();
        assert_eq!(b.write_to(&mut out).ok(), Some(4));
        assert!(b.is_empty());
        assert_eq!(b.read_from(&mut src).ok(), Some(1));
        assert_eq!(b.data(), b"o");
        assert_eq!(out, b"hell");
    }
}
