//! Chunked-body decoder throughput: 1 MiB of payload in chunks of 8 KiB and of 100 bytes,
//! re-chunked (HTTP/1.1 client) and de-chunked (HTTP/1.0 client), fed through 64 KiB windows
//! into a 64 KiB output buffer, the way the session moves a body between its buffers.
//!
//! `cargo bench --bench chunked`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use goround_mio::http::chunked::{Decoder, Output};
use goround_mio::http::Limits;

/// Payload bytes per benchmark iteration.
const PAYLOAD: usize = 1 << 20;
/// The session's buffer size: input arrives and output leaves in pieces of at most this.
const WINDOW: usize = 64 * 1024;

/// A chunked body carrying `PAYLOAD` bytes in chunks of `chunk` bytes, then the last chunk.
fn body(chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(PAYLOAD + PAYLOAD / chunk * 12 + 16);
    let mut left = PAYLOAD;
    let mut byte = b'a';
    while left > 0 {
        let n = left.min(chunk);
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend(std::iter::repeat_n(byte, n));
        out.extend_from_slice(b"\r\n");
        byte = if byte == b'z' { b'a' } else { byte + 1 };
        left -= n;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Decode all of `input` in `WINDOW`-sized steps; returns the output bytes produced.
fn transcode_all(input: &[u8], out: &mut Vec<u8>, mode: Output) -> usize {
    let mut decoder = Decoder::new(&Limits::DEFAULT);
    let mut pos = 0;
    let mut produced = 0;
    while !decoder.is_done() {
        let end = input.len().min(pos + WINDOW);
        match decoder.transcode(&input[pos..end], out, WINDOW, mode) {
            Ok(n) => pos += n,
            Err(_) => break,
        }
        // The output buffer "goes to the socket" whenever it is full or the body ends.
        produced += out.len();
        out.clear();
    }
    produced
}

fn chunked(c: &mut Criterion) {
    let mut group = c.benchmark_group("chunked 1 MiB");
    group.throughput(Throughput::Bytes(PAYLOAD as u64));
    for (chunk, name) in [(8 * 1024, "8 KiB chunks"), (100, "100 B chunks")] {
        let input = body(chunk);
        for (mode, mode_name) in [(Output::Rechunk, "rechunk"), (Output::Dechunk, "dechunk")] {
            let mut out = Vec::with_capacity(WINDOW);
            let produced = transcode_all(&input, &mut out, mode);
            assert!(
                produced >= PAYLOAD,
                "{name} {mode_name} decodes the whole body"
            );
            group.bench_function(format!("{name}, {mode_name}"), |b| {
                b.iter(|| black_box(transcode_all(black_box(&input), &mut out, mode)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, chunked);
criterion_main!(benches);
