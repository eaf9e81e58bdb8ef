//! Fuzz the PROXY protocol parser (v1 and v2) and round-trip the headers this crate writes.
//! The invariants live in `goround_mio::fuzzing::proxy_header`, so `cargo test` replays the corpus too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| goround_mio::fuzzing::proxy_header(data));
