//! Fuzz the response head parser and the response rewriter.
//! The invariants live in `goround_mio::fuzzing::response_head`, so `cargo test` replays the corpus too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| goround_mio::fuzzing::response_head(data));
