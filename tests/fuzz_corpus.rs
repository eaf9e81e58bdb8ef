//! Replays the committed fuzz corpora and regressions through the fuzz targets' functions.
//!
//! `fuzz/corpus/<target>/` holds the minimised corpus (`cargo fuzz cmin`), and
//! `fuzz/regressions/<target>/` the inputs that once broke an invariant and were fixed. Both go
//! through `goround_mio::fuzzing::<target>`, the same function the fuzzer calls, so `cargo test`
//! keeps every finding fixed without needing cargo-fuzz or a nightly toolchain.

use std::fs;
use std::path::{Path, PathBuf};

/// The inputs in `dir`, sorted by name; none when the directory does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Run every corpus and regression input of `target` through `check`; returns how many ran.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut ran = 0;
    for kind in ["corpus", "regressions"] {
        for path in inputs(&fuzz.join(kind).join(target)) {
            let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{} breaks an invariant", path.display());
            ran += 1;
        }
    }
    ran
}

#[test]
fn request_head_corpus() {
    let ran = replay("request_head", goround_mio::fuzzing::request_head);
    assert!(
        ran >= 100,
        "only {ran} request_head inputs: is fuzz/corpus there?"
    );
}

#[test]
fn response_head_corpus() {
    let ran = replay("response_head", goround_mio::fuzzing::response_head);
    assert!(
        ran >= 50,
        "only {ran} response_head inputs: is fuzz/corpus there?"
    );
}

#[test]
fn chunked_corpus() {
    let ran = replay("chunked", goround_mio::fuzzing::chunked);
    assert!(
        ran >= 20,
        "only {ran} chunked inputs: is fuzz/corpus there?"
    );
}

#[test]
fn proxy_header_corpus() {
    let ran = replay("proxy_header", goround_mio::fuzzing::proxy_header);
    assert!(
        ran >= 100,
        "only {ran} proxy_header inputs: is fuzz/corpus there?"
    );
}

#[test]
fn dns_answer_corpus() {
    let ran = replay("dns_answer", goround_mio::fuzzing::dns_answer);
    assert!(
        ran >= 12,
        "only {ran} dns_answer inputs: is fuzz/corpus there?"
    );
}

#[test]
fn client_hello_corpus() {
    let ran = replay("client_hello", goround_mio::fuzzing::client_hello);
    assert!(
        ran >= 10,
        "only {ran} client_hello inputs: is fuzz/corpus there?"
    );
}
