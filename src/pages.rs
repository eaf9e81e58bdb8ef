//! Buffer storage mapped straight from the kernel, and given straight back.
//!
//! A connection's buffers are 64 KiB by default, and a burst of busy connections needs many of
//! them at once. Taken from the heap, a burst's storage stays in the process after it ends: the
//! allocator keeps freed chunks for reuse (and zeroes a reused 64 KiB chunk whole, touching all
//! of its pages, where a request may use one). Mapped anonymously, storage costs only the pages
//! a connection wrote, and unmapping it returns them at once, so the memory of a burst goes
//! away with it (see `BufPool::trim`).
//!
//! Should the kernel refuse a mapping (a process has a bounded number of them), the storage
//! comes from the heap instead: it behaves the same, it only does not give its pages back.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// The most one storage may hold.
const MAX_LEN: usize = u32::MAX as usize - 1;

/// Zeroed storage of a fixed length (below 4 GiB), mapped or, failing that, on the heap; none
/// at all when empty. 12 bytes, 4-aligned: a connection holds four buffers, so their headers
/// are a good part of what an idle connection costs.
///
/// Where the storage came from is told by its address, so the length and the bytes are read
/// without a mask on the data path: a mapping starts on a page, heap storage at an odd address
/// (one byte into an allocation of even alignment).
#[repr(C, packed(4))]
pub struct Pages {
    ptr: NonNull<u8>,
    len: u32,
}

// SAFETY: `Pages` owns its storage exclusively, like a `Box<[u8]>`.
unsafe impl Send for Pages {}
// SAFETY: shared access only reads, like a `Box<[u8]>`.
unsafe impl Sync for Pages {}

impl Pages {
    /// No storage.
    pub const NONE: Pages = Pages {
        ptr: NonNull::dangling(),
        len: 0,
    };

    /// `len` zeroed bytes. Lengths of 4 GiB and more are cut below it (no buffer is that
    /// large: `Buffer` bounds its capacity to a `u32`, and a config's sizes are far below).
    #[cold]
    pub fn new(len: usize) -> Pages {
        let len = len.min(MAX_LEN);
        if len == 0 {
            return Pages::NONE;
        }
        // SAFETY: an anonymous private mapping at an address the kernel picks: it touches no
        // memory of ours, and the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            // Small pages only: neighbouring mappings merge, and a huge page over them would
            // make a buffer cost far more than the pages it wrote. (Advice; its failure is
            // harmless.)
            // SAFETY: advice on the mapping just made, of its length.
            unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
            if let Some(ptr) = NonNull::new(p.cast::<u8>()) {
                return Pages {
                    ptr,
                    len: len as u32,
                };
            }
        }
        heap(len)
    }

    /// The length in bytes.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline(always)]
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points at `len()` initialised (zeroed, then written) bytes that this
        // value owns, or is dangling with length 0, which a slice allows.
        unsafe { std::slice::from_raw_parts({ self.ptr }.as_ptr(), self.len()) }
    }

    #[inline(always)]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut({ self.ptr }.as_ptr(), self.len()) }
    }
}

/// The heap layout behind `len` bytes of heap storage: one byte more, 2-aligned, so the
/// storage's own address (one byte in) is odd.
fn heap_layout(len: usize) -> Option<Layout> {
    Layout::from_size_align(len.checked_add(1)?, 2).ok()
}

/// Zeroed heap storage: the fallback when the kernel refuses a mapping.
#[cold]
fn heap(len: usize) -> Pages {
    let Some(layout) = heap_layout(len) else {
        return Pages::NONE;
    };
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { alloc::alloc_zeroed(layout) };
    if p.is_null() {
        alloc::handle_alloc_error(layout);
    }
    // SAFETY: one byte into an allocation of `len + 1` bytes: in bounds, not null.
    let ptr = unsafe { NonNull::new_unchecked(p.add(1)) };
    Pages {
        ptr,
        len: len as u32,
    }
}

/// Give storage back: unmap it, or free it when it came from the heap (odd address).
#[cold]
fn release(ptr: NonNull<u8>, len: usize) {
    if ptr.as_ptr() as usize & 1 == 1 {
        if let Some(layout) = heap_layout(len) {
            // SAFETY: `heap` allocated this with this layout, one byte before `ptr`; freed
            // once (the `Pages` owning it is being dropped).
            unsafe { alloc::dealloc(ptr.as_ptr().sub(1), layout) };
        }
    } else {
        // SAFETY: the mapping `Pages::new` made of this length, unmapped once (the `Pages`
        // owning it is being dropped).
        if unsafe { libc::munmap(ptr.as_ptr().cast(), len) } != 0 {
            // Unmapping the middle of merged mappings needs a new one, which the kernel may
            // refuse at its mappings limit: then at least its pages go back (the address
            // range stays reserved).
            // SAFETY: the same mapping, still ours; its bytes are never read again.
            unsafe { libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_DONTNEED) };
        }
    }
}

impl Default for Pages {
    fn default() -> Self {
        Pages::NONE
    }
}

impl Drop for Pages {
    #[inline]
    fn drop(&mut self) {
        if self.len != 0 {
            release(self.ptr, self.len());
        }
    }
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pages({} bytes)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_is_zeroed_writable_and_of_its_length() {
        for len in [1, 100, 4096, 65536, 65536 + 2048] {
            let mut p = Pages::new(len);
            assert_eq!(p.len(), len);
            assert!(p.as_slice().iter().all(|&b| b == 0));
            p.as_mut_slice()[len - 1] = 7;
            assert_eq!(p.as_slice()[len - 1], 7);
        }
        assert!(Pages::new(0).is_empty());
        assert!(Pages::NONE.as_slice().is_empty());
        assert_eq!(std::mem::size_of::<Pages>(), 12);
    }

    #[test]
    fn heap_storage_behaves_the_same() {
        let mut p = heap(5000);
        assert_eq!(p.len(), 5000);
        assert_eq!(
            { p.ptr }.as_ptr() as usize & 1,
            1,
            "told apart from a mapping"
        );
        assert!(p.as_slice().iter().all(|&b| b == 0));
        p.as_mut_slice()[4999] = 1;
        assert_eq!(p.as_slice()[4999], 1);
    }
}
