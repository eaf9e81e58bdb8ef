//! Fuzz the TLS ClientHello reader of TCP mode (SNI passthrough). The invariants live in
//! `goround_mio::fuzzing::client_hello`, so `cargo test` replays the corpus too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| goround_mio::fuzzing::client_hello(data));
