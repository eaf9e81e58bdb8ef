//! Fuzz the request head parser and the request rewriter.
//! The invariants live in `goround_mio::fuzzing::request_head`, so `cargo test` replays the corpus too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| goround_mio::fuzzing::request_head(data));
