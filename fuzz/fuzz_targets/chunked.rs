//! Fuzz the incremental chunked decoder against a reference decoder.
//! The invariants live in `goround_mio::fuzzing::chunked`, so `cargo test` replays the corpus too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| goround_mio::fuzzing::chunked(data));
