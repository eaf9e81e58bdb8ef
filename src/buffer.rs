//! Fixed-capacity byte buffers: what bounds the memory of one connection.
//!
//! A [`Buffer`] holds the bytes between `start` and `end` of a boxed slice whose size is fixed
//! when the buffer is made. The storage comes from the worker's [`BufPool`] when a connection
//! has work and goes back to it when the connection is idle, so an idle keep-alive connection
//! holds no buffer memory at all, and a busy worker reuses storage instead of allocating (and
//! zeroing) it per request.

use std::io::{self, Read, Write};

use crate::pages::Pages;

/// Size of each of a connection's four buffers (client in/out, upstream in/out) by default.
/// Heads are parsed in place, so a buffer must hold the largest head we accept plus room to see
/// that it is too large, and a rewritten head plus the fields we add: see [`size_for`].
pub const BUF_SIZE: usize = 64 * 1024;

/// Room a rewritten head may need beyond the received one (X-Forwarded-* fields, framing).
const HEAD_SLACK: usize = 2048;

/// The buffer size for heads up to `max_head` bytes.
pub fn size_for(max_head: usize) -> usize {
    BUF_SIZE.max(max_head + HEAD_SLACK)
}

/// A byte queue with a fixed capacity.
#[derive(Debug)]
pub struct Buffer {
    /// Storage; empty until first use.
    data: Pages,
    /// Capacity the storage gets when it is allocated. (u32, like the offsets: every
    /// connection keeps four buffers, so their size is most of an idle connection's.)
    cap: u32,
    /// First byte not yet consumed.
    start: u32,
    /// One past the last byte filled.
    end: u32,
}

impl Buffer {
    /// A buffer that will hold at most `cap` bytes. Allocates nothing yet.
    /// (At most 4 GiB: far beyond any head or request buffer a config can mean.)
    pub fn new(cap: usize) -> Self {
        Buffer {
            data: Pages::NONE,
            cap: u32::try_from(cap).unwrap_or(u32::MAX),
            start: 0,
            end: 0,
        }
    }

    #[inline(always)]
    fn lo(&self) -> usize {
        self.start as usize
    }
    #[inline(always)]
    fn hi(&self) -> usize {
        self.end as usize
    }
    #[inline(always)]
    fn cap(&self) -> usize {
        self.cap as usize
    }

    /// The bytes queued.
    pub fn data(&self) -> &[u8] {
        &self.data.as_slice()[self.lo()..self.hi()]
    }

    pub fn len(&self) -> usize {
        self.hi() - self.lo()
    }

    pub fn is_empty(&self) -> bool {
        self.lo() == self.hi()
    }

    /// The fixed capacity.
    pub fn capacity(&self) -> usize {
        self.cap()
    }

    /// How many more bytes can be queued (after compaction, which `extend` and `read_from` do).
    pub fn room(&self) -> usize {
        self.cap() - self.len()
    }

    /// Drop `n` bytes from the front.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n.min(self.len()) as u32;
        if self.lo() == self.hi() {
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
            self.data = Pages::NONE;
            self.clear();
        }
    }

    /// Take storage from `pool` if this buffer has none yet. (Inlined: the session calls this
    /// and `detach` for its four buffers on every drive, and almost always nothing is to do.)
    #[inline(always)]
    pub fn attach(&mut self, pool: &mut BufPool) {
        if self.data.is_empty() {
            self.data = pool.take(self.cap());
            self.clear();
        }
    }

    /// Change the capacity to `cap` (a reload changed the sizes), keeping what is queued: its
    /// bytes move into storage of the new size and the old storage goes back to `pool`. A
    /// `cap` below what is queued changes nothing.
    pub fn resize(&mut self, cap: usize, pool: &mut BufPool) {
        let cap = u32::try_from(cap).unwrap_or(u32::MAX);
        if cap == self.cap || (cap as usize) < self.len() {
            return;
        }
        self.cap = cap;
        if self.data.is_empty() {
            return;
        }
        let n = self.len();
        let mut fresh = pool.take(self.cap());
        fresh.as_mut_slice()[..n].copy_from_slice(self.data());
        pool.put(std::mem::replace(&mut self.data, fresh));
        self.start = 0;
        self.end = n as u32;
    }

    /// Give the storage back to `pool` when nothing is queued.
    #[inline]
    pub fn detach(&mut self, pool: &mut BufPool) {
        // Storage first: most buffers a drive looks at have none.
        if !self.data.is_empty() && self.is_empty() {
            pool.put(std::mem::take(&mut self.data));
            self.clear();
        }
    }

    /// Make sure the storage exists and the free space is contiguous at the end.
    fn make_room(&mut self) {
        if self.data.is_empty() {
            self.data = allocate(self.cap());
        }
        if self.lo() > 0 && self.hi() == self.data.len() {
            let (lo, hi) = (self.lo(), self.hi());
            self.data.as_mut_slice().copy_within(lo..hi, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// The writable tail, compacted first when the tail is full (allocated on first use).
    /// Bytes written there count once [`commit`](Buffer::commit)ted.
    pub fn spare(&mut self) -> &mut [u8] {
        self.make_room();
        let hi = self.hi();
        &mut self.data.as_mut_slice()[hi..]
    }

    /// All the free space as one slice at the end (compacting whenever bytes were consumed
    /// from the front), for writing a whole head in place.
    pub fn spare_all(&mut self) -> &mut [u8] {
        if self.data.is_empty() {
            self.data = allocate(self.cap());
        }
        if self.lo() > 0 {
            let (lo, hi) = (self.lo(), self.hi());
            self.data.as_mut_slice().copy_within(lo..hi, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let hi = self.hi();
        &mut self.data.as_mut_slice()[hi..]
    }

    /// Count `n` bytes written into [`spare`](Buffer::spare) as queued.
    pub fn commit(&mut self, n: usize) {
        self.end = (self.hi() + n).min(self.data.len()) as u32;
    }

    /// Nothing more can be queued.
    pub fn is_full(&self) -> bool {
        self.room() == 0
    }

    /// Queue as much of `bytes` as fits; returns how many were queued.
    pub fn extend(&mut self, bytes: &[u8]) -> usize {
        if bytes.is_empty() {
            return 0;
        }
        if self.hi() + bytes.len() > self.cap() && self.lo() > 0 {
            let (lo, hi) = (self.lo(), self.hi());
            self.data.as_mut_slice().copy_within(lo..hi, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let spare = self.spare();
        let n = bytes.len().min(spare.len());
        spare[..n].copy_from_slice(&bytes[..n]);
        self.end += n as u32;
        n
    }

    /// Move the first `n` queued bytes of `from` behind the bytes queued here, as many as fit
    /// (storage taken from `pool`); returns how many moved. Into an empty buffer of the same
    /// capacity the two storages trade places instead, and only what `from` keeps beyond `n`
    /// is copied back: a body on its way from one socket to the other is then not copied.
    pub fn move_from(&mut self, from: &mut Buffer, n: usize, pool: &mut BufPool) -> usize {
        let n = n.min(from.len());
        let keep = from.len() - n;
        if self.is_empty() && self.cap == from.cap && n > keep {
            std::mem::swap(&mut self.data, &mut from.data);
            self.start = from.start;
            self.end = from.end - keep as u32;
            from.clear();
            if keep > 0 {
                from.attach(pool);
                let hi = self.hi();
                from.data.as_mut_slice()[..keep]
                    .copy_from_slice(&self.data.as_slice()[hi..hi + keep]);
                from.end = keep as u32;
            }
            return n;
        }
        self.attach(pool);
        let moved = self.extend(&from.data()[..n]);
        from.consume(moved);
        moved
    }

    /// Queue all of `bytes`, or nothing when they do not fit (false). For what must never be
    /// cut, such as a head.
    #[must_use]
    pub fn extend_whole(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() > self.room() {
            return false;
        }
        self.extend(bytes) == bytes.len()
    }

    /// How many bytes the next `read_from` offers to the reader: the free tail, which is all of
    /// `room()` only when the queued bytes sit at the front (a short read is judged against this).
    pub fn read_room(&self) -> usize {
        if self.data.is_empty() || (self.lo() > 0 && self.hi() == self.data.len()) {
            self.room()
        } else {
            self.data.len() - self.hi()
        }
    }

    /// One `read` into the free space. `Ok(0)` means end of stream (the caller checks `room()`
    /// first: reading into a full buffer is a caller bug and also returns `Ok(0)`).
    pub fn read_from<R: Read>(&mut self, src: &mut R) -> io::Result<usize> {
        if self.room() == 0 {
            return Ok(0);
        }
        let spare = self.spare();
        let n = src.read(spare)?;
        self.end += n as u32;
        Ok(n)
    }

    /// One `write` of the queued bytes; consumes what was written.
    pub fn write_to<W: Write>(&mut self, dst: &mut W) -> io::Result<usize> {
        let n = dst.write(self.data())?;
        self.consume(n);
        Ok(n)
    }
}

/// Free buffer storage of one worker, reused across connections and requests.
///
/// Kept by size, in two lists: a session's client-side buffers and its upstream output buffer
/// (which also holds a request body read before the connect, `--request-buffer`) may differ
/// in size. Storage of any third size is not kept.
#[derive(Debug, Default)]
pub struct BufPool {
    /// Free storage of the first size seen.
    first: Vec<Pages>,
    /// Free storage of the second size seen.
    second: Vec<Pages>,
    /// The sizes of `first` and `second` (0: not seen yet).
    sizes: [usize; 2],
    /// The most free buffers kept, both lists together; beyond that they go back to the
    /// kernel.
    max_free: usize,
    /// The fewest buffers each list held since the last `trim`: those were not needed.
    low: [usize; 2],
}

impl BufPool {
    /// A pool that keeps at most `max_free` free buffers.
    pub fn new(max_free: usize) -> Self {
        BufPool {
            first: Vec::with_capacity(max_free.min(1024)),
            second: Vec::new(),
            sizes: [0, 0],
            max_free,
            low: [0, 0],
        }
    }

    /// Storage of `cap` bytes: reused if one is free, else freshly allocated (zeroed pages the
    /// kernel maps lazily, so an untouched tail costs no memory).
    #[inline(always)]
    pub fn take(&mut self, cap: usize) -> Pages {
        let found = if cap == self.sizes[0] {
            let b = self.first.pop();
            self.low[0] = self.low[0].min(self.first.len());
            b
        } else if cap == self.sizes[1] {
            let b = self.second.pop();
            self.low[1] = self.low[1].min(self.second.len());
            b
        } else {
            None
        };
        found.unwrap_or_else(|| allocate(cap))
    }

    /// Return storage for reuse.
    #[inline(always)]
    pub fn put(&mut self, b: Pages) {
        if self.first.len() + self.second.len() >= self.max_free {
            return;
        }
        let len = b.len();
        if len == self.sizes[0] {
            self.first.push(b);
        } else if len == self.sizes[1] {
            self.second.push(b);
        } else if self.sizes[0] == 0 {
            self.sizes[0] = len;
            self.first.push(b);
        } else if self.sizes[1] == 0 {
            self.sizes[1] = len;
            self.second.push(b);
        }
    }

    /// Keep storage of `sizes` from now on (a reload changed the buffers' sizes): free
    /// storage of other sizes goes back to the allocator, and returned storage of the new
    /// sizes is kept, so the pool keeps saving allocations after the change.
    pub fn adopt(&mut self, sizes: [usize; 2]) {
        // What was seen unused before the change says nothing about the lists after it.
        self.low = [0, 0];
        if !sizes.contains(&self.sizes[0]) {
            self.first.clear();
            self.sizes[0] = 0;
        }
        if !sizes.contains(&self.sizes[1]) {
            self.second.clear();
            self.sizes[1] = 0;
        }
        for size in sizes {
            if self.sizes.contains(&size) {
                continue;
            }
            // A slot whose size was not kept is empty now.
            if let Some(free) = self.sizes.iter_mut().find(|s| **s == 0) {
                *free = size;
            }
        }
    }

    /// Give back the storage no connection needed since the last call (called every 250 ms):
    /// after a burst, its buffers return to the kernel within two calls, while a steady load
    /// keeps what it cycles through.
    pub fn trim(&mut self) {
        let unused = self.low;
        for (list, n) in [(&mut self.first, unused[0]), (&mut self.second, unused[1])] {
            list.truncate(list.len() - n.min(list.len()));
        }
        self.low = [self.first.len(), self.second.len()];
    }

    /// Free buffers held.
    pub fn len(&self) -> usize {
        self.first.len() + self.second.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Fresh storage: out of line, since a warm worker reuses storage instead.
#[cold]
fn allocate(cap: usize) -> Pages {
    Pages::new(cap)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pool_follows_new_sizes_and_a_buffer_keeps_its_bytes_when_resized() {
        use super::*;
        let mut pool = BufPool::new(16);
        pool.put(Pages::new(100));
        pool.put(Pages::new(200));
        assert_eq!(pool.len(), 2);
        // A reload: 100 stays, 200 becomes 300.
        pool.adopt([100, 300]);
        assert_eq!(pool.len(), 1, "the 200-byte storage went");
        pool.put(Pages::new(300));
        pool.put(Pages::new(200));
        assert_eq!(pool.len(), 2, "300 is kept, 200 is not");
        assert_eq!(pool.take(300).len(), 300);
        assert_eq!(pool.take(100).len(), 100);
        assert!(pool.is_empty());

        let mut b = Buffer::new(100);
        b.attach(&mut pool);
        b.extend(b"hello");
        b.consume(1);
        b.resize(300, &mut pool);
        assert_eq!((b.capacity(), b.data()), (300, &b"ello"[..]));
        assert_eq!(pool.len(), 1, "the old storage went back");
        b.resize(2, &mut pool);
        assert_eq!(b.capacity(), 300, "never below what is queued");
    }

    use super::*;

    #[test]
    fn a_move_into_an_empty_buffer_trades_storage_and_copies_back_only_the_rest() {
        let mut pool = BufPool::new(16);
        let filled = |pool: &mut BufPool, cap: usize, bytes: &[u8], eaten: usize| {
            let mut b = Buffer::new(cap);
            b.attach(pool);
            assert_eq!(b.extend(bytes), bytes.len());
            b.consume(eaten);
            b
        };

        // Empty, same capacity, most of `from` moving: the storages trade places.
        let mut from = filled(&mut pool, 64, b"HEAD0123456789", 4);
        let storage = from.data().as_ptr();
        let mut to = Buffer::new(64);
        assert_eq!(to.move_from(&mut from, 8, &mut pool), 8);
        assert_eq!((to.data(), from.data()), (&b"01234567"[..], &b"89"[..]));
        assert_eq!(to.data().as_ptr(), storage, "moved without a copy");
        assert_eq!((to.room(), from.room()), (56, 62));
        // Everything moving: `from` keeps nothing, not even storage to copy into.
        let mut to2 = Buffer::new(64);
        assert_eq!(to2.move_from(&mut to, 100, &mut pool), 8);
        assert_eq!((to2.data(), to.is_empty()), (&b"01234567"[..], true));

        // Bytes queued already: copied behind them, as many as fit.
        let mut from = filled(&mut pool, 64, b"wxyz", 0);
        let mut to = filled(&mut pool, 6, b"abc", 0);
        assert_eq!(to.move_from(&mut from, 4, &mut pool), 3);
        assert_eq!((to.data(), from.data()), (&b"abcwxy"[..], &b"z"[..]));

        // Another capacity, or more kept than moved: copied.
        let mut from = filled(&mut pool, 64, b"0123", 0);
        let storage = from.data().as_ptr();
        let mut to = Buffer::new(32);
        assert_eq!(to.move_from(&mut from, 4, &mut pool), 4);
        assert_ne!(to.data().as_ptr(), storage);
        assert_eq!((to.data(), from.is_empty()), (&b"0123"[..], true));
        let mut from = filled(&mut pool, 64, b"0123", 0);
        let storage = from.data().as_ptr();
        let mut to = Buffer::new(64);
        assert_eq!(to.move_from(&mut from, 2, &mut pool), 2);
        assert_eq!((to.data(), from.data()), (&b"01"[..], &b"23"[..]));
        assert_eq!(
            from.data().as_ptr(),
            storage.wrapping_add(2),
            "`from` kept its storage"
        );
    }

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
    fn pool_reuses_and_bounds_storage() {
        let mut pool = BufPool::new(1);
        let mut a = Buffer::new(8);
        let mut b = Buffer::new(8);
        a.attach(&mut pool);
        b.attach(&mut pool);
        a.extend(b"x");
        a.detach(&mut pool);
        assert_eq!(pool.len(), 0, "a buffer holding bytes keeps its storage");
        a.consume(1);
        a.detach(&mut pool);
        b.detach(&mut pool);
        assert_eq!(pool.len(), 1, "the pool keeps at most max_free");
        let mut c = Buffer::new(8);
        c.attach(&mut pool);
        assert_eq!(pool.len(), 0);
        assert_eq!(c.extend(b"0123456789"), 8);
    }

    #[test]
    fn pool_keeps_each_size_apart() {
        let mut pool = BufPool::new(8);
        let mut small = Buffer::new(8);
        let mut large = Buffer::new(16);
        small.attach(&mut pool);
        large.attach(&mut pool);
        small.detach(&mut pool);
        large.detach(&mut pool);
        assert_eq!(pool.len(), 2);
        // Each size gets its own storage back, whatever the order.
        large.attach(&mut pool);
        small.attach(&mut pool);
        assert_eq!(pool.len(), 0);
        assert_eq!((small.room(), large.room()), (8, 16));
        assert_eq!(large.extend(&[1; 20]), 16);
        assert_eq!(small.extend(&[1; 20]), 8);
    }

    #[test]
    fn extend_whole_queues_all_or_nothing() {
        let mut b = Buffer::new(8);
        assert!(b.extend_whole(b"01234"));
        assert!(!b.extend_whole(b"5678"), "4 bytes do not fit in 3");
        assert_eq!(b.data(), b"01234");
        assert!(b.extend_whole(b"567"));
        assert_eq!(b.data(), b"01234567");
        assert!(b.extend_whole(b""));
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
    fn read_room_is_what_a_read_is_offered() {
        let mut b = Buffer::new(8);
        assert_eq!(b.extend(b"012345"), 6);
        b.consume(2);
        assert_eq!((b.room(), b.read_room()), (4, 2), "the free tail only");
        let mut src: &[u8] = b"abcdef";
        assert_eq!(b.read_from(&mut src).ok(), Some(2));
        assert_eq!(
            (b.room(), b.read_room()),
            (2, 2),
            "a full tail compacts first"
        );
    }

    #[test]
    fn trimming_frees_what_was_not_needed_since_the_last_trim() {
        use super::*;
        let mut pool = BufPool::new(16);
        for _ in 0..4 {
            pool.put(Pages::new(100));
        }
        pool.trim();
        assert_eq!(pool.len(), 4, "nothing was counted as unused yet");
        let b = pool.take(100);
        let c = pool.take(100);
        pool.put(b);
        pool.put(c);
        pool.trim();
        assert_eq!(pool.len(), 2, "two were taken at once: two stay");
        pool.trim();
        assert_eq!(pool.len(), 0, "none was taken since");
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
