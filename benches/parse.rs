//! Nanoseconds per request head and per response head: parse (strict scan + httparse + the
//! framing rules) and rewrite into a reused Vec, the way the session does for every request.
//!
//! `cargo bench --bench parse`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use goround_mio::http::rewrite::{self, RequestContext, ResponseContext};
use goround_mio::http::{request, response, Limits, Version};

/// A navigation request as Chrome sends it (about 500 bytes, 16 fields).
const CHROME: &[u8] = b"GET /articles/2024/11/proxy-performance?utm_source=newsletter&ref=home HTTP/1.1\r\n\
Host: www.example.com\r\n\
Connection: keep-alive\r\n\
Cache-Control: max-age=0\r\n\
sec-ch-ua: \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
sec-ch-ua-platform: \"Linux\"\r\n\
Upgrade-Insecure-Requests: 1\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Sec-Fetch-Site: none\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-User: ?1\r\n\
Sec-Fetch-Dest: document\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Cookie: session=7d3f0a9c2b1e4f5a; theme=dark\r\n\
\r\n";

/// What `curl http://localhost:8000/` sends.
const CURL: &[u8] =
    b"GET / HTTP/1.1\r\nHost: localhost:8000\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";

/// A typical response head from an origin server (11 fields).
const ORIGIN_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Server: nginx/1.22.1\r\n\
Date: Sat, 23 Nov 2024 16:18:00 GMT\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Length: 48213\r\n\
Connection: keep-alive\r\n\
Last-Modified: Fri, 22 Nov 2024 09:12:44 GMT\r\n\
ETag: \"6740492c-bc55\"\r\n\
Cache-Control: max-age=600\r\n\
Vary: Accept-Encoding\r\n\
Accept-Ranges: bytes\r\n\
\r\n";

/// What goround-dummy answers to `GET /`.
const DUMMY_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 24\r\n\r\n";

/// The header slots `session.rs` initialises on the stack for every parse (`FEW_FIELDS`; a head
/// with more fields is parsed again with exactly as many).
const SESSION_FIELDS: usize = 24;
/// The bound the session gives the rewriters: its buffer size.
const BOUND: usize = goround_mio::buffer::BUF_SIZE;

fn request_heads(c: &mut Criterion) {
    let limits = Limits::DEFAULT;
    let ctx = RequestContext::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 33)));
    let mut group = c.benchmark_group("request head parse+rewrite");
    for (name, head) in [("chrome 16 fields", CHROME), ("curl 3 fields", CURL)] {
        let mut headers = [httparse::EMPTY_HEADER; 100];
        assert!(
            matches!(request::parse(head, &limits, &mut headers), Ok(Some(_))),
            "{name} parses"
        );
        let mut out = Vec::with_capacity(4096);
        group.throughput(Throughput::Bytes(head.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                if let Ok(Some(req)) = request::parse(black_box(head), &limits, &mut headers) {
                    let _ = rewrite::request_head(&req, &ctx, &mut out, BOUND);
                }
                black_box(out.len())
            })
        });
        // The same with fresh header slots of the session's size on every call, which is what
        // session.rs does: the difference is the cost of initialising them.
        group.bench_function(format!("{name}, fresh [EMPTY_HEADER; 24] per call"), |b| {
            b.iter(|| {
                out.clear();
                let mut fresh = [httparse::EMPTY_HEADER; SESSION_FIELDS];
                let parsed = request::parse(black_box(head), &limits, &mut fresh);
                if let Ok(Some(req)) = parsed {
                    let _ = rewrite::request_head(&req, &ctx, &mut out, BOUND);
                }
                black_box(out.len())
            })
        });
    }
    group.finish();
}

fn response_heads(c: &mut Criterion) {
    let limits = Limits::DEFAULT;
    let mut group = c.benchmark_group("response head parse+rewrite");
    for (name, head) in [
        ("origin 11 fields", ORIGIN_RESPONSE),
        ("goround-dummy 2 fields", DUMMY_RESPONSE),
    ] {
        let mut headers = [httparse::EMPTY_HEADER; 100];
        assert!(
            matches!(
                response::parse(head, false, &limits, &mut headers),
                Ok(Some(_))
            ),
            "{name} parses"
        );
        let mut out = Vec::with_capacity(4096);
        group.throughput(Throughput::Bytes(head.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                let parsed = response::parse(black_box(head), false, &limits, &mut headers);
                if let Ok(Some(resp)) = parsed {
                    let ctx = ResponseContext {
                        framing: response::client_framing(resp.framing, Version::Http11),
                        close: false,
                        keep_alive_http10: false,
                        upgrade: false,
                        client_version: Version::Http11,
                    };
                    let _ = rewrite::response_head(&resp, &ctx, &mut out, BOUND);
                }
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, request_heads, response_heads);
criterion_main!(benches);
