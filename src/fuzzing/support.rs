//! What the targets share: limits small enough for short inputs, a deterministic generator
//! seeded from the input, and bytes shown readably in assertion messages.

use crate::http::Limits;

/// Limits small enough that short fuzz inputs reach every limit check.
/// `max_request_line` stays below `max_head`, as it does in any sane configuration.
pub const SMALL_LIMITS: Limits = Limits {
    max_request_line: 64,
    max_head: 256,
    max_fields: 8,
    max_chunk_ext: 16,
    max_trailers: 32,
};

/// Bytes as an escaped string, for assertion messages.
pub fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

// ---------------------------------------------------------------------------------------------
// Determinism helpers
// ---------------------------------------------------------------------------------------------

/// FNV-1a over the input: a seed that changes with any byte of it.
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// xorshift64*: a small deterministic generator, so an input always runs the same way.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`0` for `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next() % n as u64) as usize
    }
}
