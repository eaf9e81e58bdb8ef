//! A fixed-capacity byte buffer: allocated once per connection (and recycled by the worker),
//! never grown, so a connection's memory is bounded whatever the peer sends.

/// A byte buffer with a fixed capacity; the live bytes are `data[start..end]`.
#[derive(Debug)]
pub struct Buf {
    /// The storage; its length is the capacity.
    data: Box<[u8]>,
    /// Index of the first live byte.
    start: usize,
    /// Index one past the last live byte.
    end: usize,
}

impl Buf {
    /// An empty buffer holding at most `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            data: vec![0; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// The live bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// How many live bytes there are.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether there are no live bytes.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Whether no more byte fits.
    pub fn is_full(&self) -> bool {
        self.len() == self.data.len()
    }

    /// How many more bytes fit (after compaction).
    pub fn free(&self) -> usize {
        self.data.len() - self.len()
    }

    /// Drops the first `n` live bytes (all of them if `n` is larger).
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            // Back to the front for free: the common case never moves a byte.
            self.start = 0;
            self.end = 0;
        }
    }

    /// Drops every live byte.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// The free space after the live bytes, moved to the front first if needed so that all
    /// of [`Buf::free`] is available. Fill it, then call [`Buf::commit`].
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.data[self.end..]
    }

    /// Marks `n` bytes written into [`Buf::spare`] as live.
    pub fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.data.len());
    }

    /// Appends as much of `bytes` as fits and returns how many did. Callers reserve space
    /// first, so a short append means a sizing bug, never a panic.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let spare = self.spare();
        let n = bytes.len().min(spare.len());
        spare[..n].copy_from_slice(&bytes[..n]);
        self.commit(n);
        debug_assert_eq!(n, bytes.len(), "output buffer reservation too small");
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_consume_and_reset() {
        let mut buf = Buf::with_capacity(8);
        assert!(buf.is_empty());
        assert_eq!(buf.push(b"abcde"), 5);
        assert_eq!(buf.bytes(), b"abcde");
        assert_eq!(buf.free(), 3);
        buf.consume(2);
        assert_eq!(buf.bytes(), b"cde");
        assert_eq!(buf.free(), 5);
        // Compaction makes the freed front usable.
        assert_eq!(buf.push(b"fghij"), 5);
        assert_eq!(buf.bytes(), b"cdefghij");
        assert!(buf.is_full());
        buf.consume(100);
        assert!(buf.is_empty());
        assert_eq!(buf.spare().len(), 8);
    }

    #[test]
    fn spare_and_commit() {
        let mut buf = Buf::with_capacity(4);
        buf.spare()[..2].copy_from_slice(b"xy");
        buf.commit(2);
        assert_eq!(buf.bytes(), b"xy");
        buf.commit(10);
        assert_eq!(buf.len(), 4);
        buf.clear();
        assert_eq!(buf.len(), 0);
    }
}
