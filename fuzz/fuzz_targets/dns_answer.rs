//! Fuzz the DNS answer parser of the resolver thread (names, compression, records, CNAME
//! chains, SRV). The invariants live in `goround_mio::fuzzing::dns_answer`, so `cargo test`
//! replays the corpus too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| goround_mio::fuzzing::dns_answer(data));
