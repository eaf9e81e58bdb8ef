//! Request smuggling and framing attacks, table-driven: raw bytes in, then exactly what the
//! client receives and exactly what reaches the backend.
//!
//! Every case runs against one proxy in front of one recording [`RawBackend`] and is checked
//! three ways:
//! 1. the client receives exactly the expected bytes and then EOF: a complete proxy-made answer
//!    (`HTTP/1.1 {code} {reason}`, Content-Length, `Connection: close`) for a refused request,
//!    the backend's answers for accepted ones;
//! 2. the backend received nothing but the legitimate requests, byte for byte. A *sentinel*
//!    request sent afterwards on a new connection orders things: once the sentinel has been
//!    answered, every upstream connection the proxy opened before it has been accepted (the
//!    recorder numbers connections in accept order), and we then wait until each of them has
//!    been closed, so its record is final. Anything in that window but the expected requests
//!    is a leak;
//! 3. the sentinel itself (a fresh request on a new connection) gets its 200.
//!
//! The proxy opens one upstream connection per request, so each legitimate request is alone on
//! its connection and a smuggled byte cannot hide behind it.
//!
//! Upstream-side cases (bad response heads, truncated bodies) go through the same table: the
//! backend answers `GET /resp/{key}` with a scripted reply.
//!
//! After the table, a few tests that need a slow reader: a pipelined request arriving while the
//! proxy is still writing a big response, and a proxy-made answer queued behind forwarded
//! interim responses. Both check that nothing the client receives is cut or out of order.

mod common;

use common::*;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How long one case may take to be answered and closed. Everything happens in milliseconds;
/// this only bounds a case that hangs.
const CASE_TIMEOUT: Duration = Duration::from_secs(3);

/// The backend's answer to every ordinary request, as the client receives it.
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
/// The same answer when the proxy closes the connection after it (an HTTP/1.0 client).
const OK_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

// ---------------------------------------------------------------------------------------------
// Expected bytes
// ---------------------------------------------------------------------------------------------

/// The fields the proxy appends for a client on 127.0.0.1 (X-Forwarded-Host only for a host).
fn x_forwarded(host: &str) -> String {
    let xfh = if host.is_empty() {
        String::new()
    } else {
        format!("X-Forwarded-Host: {host}\r\n")
    };
    format!("X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n{xfh}")
}

/// A forwarded head: the request line, Host, the client's kept `fields` (each ending in CRLF),
/// the X-Forwarded-* fields, the proxy's own `framing` field (or nothing), the blank line.
fn fwd_head(line: &str, host: &str, fields: &[u8], framing: &str) -> Vec<u8> {
    [
        format!("{line}\r\nHost: {host}\r\n").as_bytes(),
        fields,
        x_forwarded(host).as_bytes(),
        framing.as_bytes(),
        b"\r\n",
    ]
    .concat()
}

/// `GET {path}` from a client that sent only `Host: a`, as forwarded.
fn fwd_get(path: &str) -> Vec<u8> {
    fwd_head(&format!("GET {path} HTTP/1.1"), "a", b"", "")
}

/// `POST /` with `fields` and a Content-Length body, as forwarded.
fn fwd_post_cl(fields: &[u8], body: &[u8]) -> Vec<u8> {
    let framing = format!("Content-Length: {}\r\n", body.len());
    [
        fwd_head("POST / HTTP/1.1", "a", fields, &framing),
        body.to_vec(),
    ]
    .concat()
}

/// `POST /` with `fields` and a chunked body (already in the proxy's clean form), as forwarded.
fn fwd_post_chunked(fields: &[u8], clean_body: &[u8]) -> Vec<u8> {
    [
        fwd_head(
            "POST / HTTP/1.1",
            "a",
            fields,
            "Transfer-Encoding: chunked\r\n",
        ),
        clean_body.to_vec(),
    ]
    .concat()
}

/// `POST / HTTP/1.1`, `Host: a`, then `fields` (each ending in CRLF), the blank line, `body`.
fn post(fields: &[u8], body: &[u8]) -> Vec<u8> {
    [b"POST / HTTP/1.1\r\nHost: a\r\n", fields, b"\r\n", body].concat()
}

/// `GET /`, `Host: a`, then `fields`, the blank line.
fn get_with(fields: &[u8]) -> Vec<u8> {
    [b"GET / HTTP/1.1\r\nHost: a\r\n", fields, b"\r\n"].concat()
}

/// A request line then `Host: a` and the blank line.
fn line(request_line: &[u8]) -> Vec<u8> {
    [request_line, b"\r\nHost: a\r\n\r\n"].concat()
}

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

/// What the client must receive before EOF.
enum ClientExpect {
    /// Exactly these bytes.
    Exact(Vec<u8>),
    /// A truncated message.
    Prefix {
        /// What must have arrived (the head).
        min: Vec<u8>,
        /// What may have arrived at most: the received bytes are a prefix of this.
        max: Vec<u8>,
    },
}

/// What the backend must have received for the case (the sentinel aside).
enum BackendExpect {
    /// Not one byte (connections without bytes, e.g. health probes, are fine).
    Nothing,
    /// Exactly these requests, in order, one per upstream connection.
    Exact(Vec<Vec<u8>>),
    /// At most one connection with bytes, a prefix of this (the forwarded head and the body as
    /// far as it was valid), and never a complete request by the recorder's own parser.
    Incomplete(Vec<u8>),
}

/// One attack and what must come of it.
struct Case {
    /// `group/what`, unique; failures are listed by it.
    name: String,
    /// The bytes the client sends, all at once.
    input: Vec<u8>,
    /// Shut our sending side: once the answers expected have come, for accepted requests (the
    /// proxy then closes), or at once when none is expected (bodies that end early).
    half_close: bool,
    /// What the client must receive.
    client: ClientExpect,
    /// What the backend must receive.
    backend: BackendExpect,
}

/// The cases, and the upstream replies some of them need.
#[derive(Default)]
struct Table {
    /// In the order they run.
    cases: Vec<Case>,
    /// Scripted upstream replies, by the key in `GET /resp/{key}`.
    replies: HashMap<String, Reply>,
}

impl Table {
    fn push(&mut self, case: Case) {
        assert!(
            !self.cases.iter().any(|c| c.name == case.name),
            "duplicate case name {}",
            case.name
        );
        self.cases.push(case);
    }

    /// Refused at the head: `code` and a close, nothing reaches the backend.
    fn reject(&mut self, name: &str, input: Vec<u8>, code: u16) {
        self.push(Case {
            name: name.to_string(),
            input,
            half_close: false,
            client: ClientExpect::Exact(local_answer(code, true)),
            backend: BackendExpect::Nothing,
        });
    }

    /// Refused in the chunked body: `code` and a close. The body is read and checked before
    /// any upstream is chosen (`--request-buffer`), so the backend gets nothing at all;
    /// `_forwarded_max` is what it could have got when bodies streamed from their first byte.
    fn reject_body(&mut self, name: &str, input: Vec<u8>, code: u16, _forwarded_max: Vec<u8>) {
        self.push(Case {
            name: name.to_string(),
            input,
            half_close: false,
            client: ClientExpect::Exact(local_answer(code, true)),
            backend: BackendExpect::Nothing,
        });
    }

    /// Accepted: each of `forwarded` reaches the backend exactly, the client gets a 200 each.
    fn accept(&mut self, name: &str, input: Vec<u8>, forwarded: Vec<Vec<u8>>) {
        let client = OK.repeat(forwarded.len());
        self.push(Case {
            name: name.to_string(),
            input,
            half_close: true,
            client: ClientExpect::Exact(client),
            backend: BackendExpect::Exact(forwarded),
        });
    }

    /// The leading requests are accepted, then what follows them is refused with `code`.
    fn accept_then_reject(
        &mut self,
        name: &str,
        input: Vec<u8>,
        forwarded: Vec<Vec<u8>>,
        code: u16,
    ) {
        let mut client = OK.repeat(forwarded.len());
        client.extend_from_slice(&local_answer(code, true));
        self.push(Case {
            name: name.to_string(),
            input,
            half_close: false,
            client: ClientExpect::Exact(client),
            backend: BackendExpect::Exact(forwarded),
        });
    }

    /// The client stops mid-request and closes its side: no answer at all, and the backend
    /// gets at most a prefix of `forwarded_max` (nothing when it is empty), never a whole request.
    fn abandon(&mut self, name: &str, input: Vec<u8>, forwarded_max: Vec<u8>) {
        let backend = if forwarded_max.is_empty() {
            BackendExpect::Nothing
        } else {
            BackendExpect::Incomplete(forwarded_max)
        };
        self.push(Case {
            name: name.to_string(),
            input,
            half_close: true,
            client: ClientExpect::Exact(Vec::new()),
            backend,
        });
    }

    /// The backend answers `GET /resp/{key}` with `reply`; the client must then receive
    /// `client`. `close`: the request says `Connection: close` (else the client half-closes).
    fn upstream(&mut self, key: &str, reply: Reply, close: bool, client: ClientExpect) {
        let conn = if close { "Connection: close\r\n" } else { "" };
        let input = format!("GET /resp/{key} HTTP/1.1\r\nHost: a\r\n{conn}\r\n").into_bytes();
        self.replies.insert(key.to_string(), reply);
        self.push(Case {
            name: format!("response/{key}"),
            input,
            half_close: !close,
            client,
            backend: BackendExpect::Exact(vec![fwd_get(&format!("/resp/{key}"))]),
        });
    }

    /// The upstream's answer is garbage: a 502 that keeps the connection (the request was
    /// complete and asked for keep-alive), then our half-close ends it.
    fn upstream_502(&mut self, key: &str, response: &[u8]) {
        self.upstream(
            key,
            Reply::KeepAlive(response.to_vec()),
            false,
            ClientExpect::Exact(local_answer(502, false)),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------------------------

fn framing_conflicts(t: &mut Table) {
    let chunked_body: &[u8] = b"0\r\n\r\n";
    let cases: &[(&str, &[u8])] = &[
        (
            "cl-te/cl-first",
            b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "cl-te/te-first",
            b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        ),
        (
            "cl-te/cl-zero",
            b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "cl-te/te-chunked-first-in-list",
            b"Transfer-Encoding: chunked, gzip\r\nContent-Length: 5\r\n",
        ),
        (
            "cl-te/te-chunked-last-in-list",
            b"Content-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n",
        ),
        (
            "cl-te/te-duplicated",
            b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "cl-te/cl-duplicated",
            b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        ),
        (
            "cl-te/te-lowercase-name",
            b"content-length: 5\r\ntransfer-encoding: chunked\r\n",
        ),
        (
            "cl-te/te-uppercase-value",
            b"Content-Length: 5\r\nTransfer-Encoding: CHUNKED\r\n",
        ),
        (
            "cl-te/te-invalid-value",
            b"Content-Length: 5\r\nTransfer-Encoding: xchunked\r\n",
        ),
        (
            "cl-te/connection-names-cl",
            b"Connection: Content-Length\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        ),
    ];
    for (name, fields) in cases {
        t.reject(name, post(fields, chunked_body), 400);
    }
    // The two classics, with a request hidden where the other reading would find it.
    t.reject(
        "cl-te/classic-smuggle",
        post(
            b"Content-Length: 35\r\nTransfer-Encoding: chunked\r\n",
            b"0\r\n\r\nGET /admin HTTP/1.1\r\nX-Ignore: x",
        ),
        400,
    );
    t.reject(
        "te-cl/classic-smuggle",
        post(
            b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
            b"2d\r\nGET /admin HTTP/1.1\r\nHost: a\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n",
        ),
        400,
    );
}

fn content_length_values(t: &mut Table) {
    let bad: &[(&str, &[u8])] = &[
        ("plus", b"+5"),
        ("minus", b"-1"),
        ("hex", b"0x5"),
        ("inner-space", b"5 5"),
        ("list-no-space", b"5,5"),
        ("list-equal", b"5, 5"),
        ("list-trailing-comma", b"5,"),
        ("empty", b""),
        ("overflow", b"99999999999999999999999"),
        ("u64-max-plus-one", b"18446744073709551616"),
        ("letter-suffix", b"5Z"),
        ("underscore", b"+1_0"),
        ("decimal-point", b"5.0"),
        ("quoted", b"\"5\""),
        ("arabic-indic-digit", "\u{0665}".as_bytes()),
        ("nbsp-prefix", b"\xa05"),
    ];
    for (name, value) in bad {
        let fields = [b"Content-Length: ", *value, b"\r\n"].concat();
        t.reject(&format!("cl/{name}"), post(&fields, b"hello"), 400);
    }
    t.reject(
        "cl/control-char",
        post(b"Content-Length: 5\x0b\r\n", b"hello"),
        400,
    );
    t.reject(
        "cl/two-fields-equal",
        post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
        400,
    );
    t.reject(
        "cl/two-fields-different",
        post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"),
        400,
    );
    t.reject(
        "cl/two-fields-case",
        post(b"Content-Length: 5\r\ncontent-length: 5\r\n", b"hello"),
        400,
    );
    t.reject(
        "cl/two-fields-first-empty",
        post(b"Content-Length: \r\nContent-Length: 5\r\n", b"hello"),
        400,
    );
    t.reject(
        "cl/space-before-colon",
        post(b"Content-Length : 5\r\n", b"hello"),
        400,
    );
    t.reject(
        "cl/tab-before-colon",
        post(b"Content-Length\t: 5\r\n", b"hello"),
        400,
    );
    t.reject(
        "cl/nel-before-colon",
        post(b"Content-Length\x85: 5\r\n", b"hello"),
        400,
    );
    t.reject("cl/no-colon", get_with(b"Content-Length 10\r\n"), 400);

    // Valid: OWS around the value is not part of it; leading zeros are digits. The proxy
    // forwards its own canonical Content-Length.
    for (name, fields) in [
        ("cl/ows-spaces", &b"Content-Length:   5   \r\n"[..]),
        ("cl/ows-tabs", b"Content-Length:\t5\t\r\n"),
        ("cl/no-ows", b"Content-Length:5\r\n"),
        ("cl/leading-zeros", b"Content-Length: 0005\r\n"),
        ("cl/name-lowercase", b"content-length: 5\r\n"),
    ] {
        t.accept(
            name,
            post(fields, b"hello"),
            vec![fwd_post_cl(b"", b"hello")],
        );
    }
    t.accept(
        "cl/zero",
        post(b"Content-Length: 0\r\n", b""),
        vec![fwd_post_cl(b"", b"")],
    );
    t.accept(
        "cl/zeros",
        post(b"Content-Length: 000\r\n", b""),
        vec![fwd_post_cl(b"", b"")],
    );
    // A field that names Content-Length in Connection cannot take the framing away: the proxy
    // writes its own framing field.
    t.accept(
        "cl/named-by-connection",
        post(
            b"Connection: Content-Length\r\nContent-Length: 5\r\n",
            b"hello",
        ),
        vec![fwd_post_cl(b"", b"hello")],
    );
}

fn transfer_encoding_values(t: &mut Table) {
    let body: &[u8] = b"5\r\nhello\r\n0\r\n\r\n";
    let clean: &[u8] = b"5\r\nhello\r\n0\r\n\r\n";

    t.reject(
        "te/http10",
        [
            &b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            body,
        ]
        .concat(),
        400,
    );
    t.reject(
        "te/http10-keep-alive",
        [
            &b"POST / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            body,
        ]
        .concat(),
        400,
    );
    let bad: &[(&str, &[u8])] = &[
        ("gzip", b"gzip"),
        ("chunked-then-gzip", b"chunked, gzip"),
        ("identity", b"identity"),
        ("chunked-chunked", b"chunked, chunked"),
        ("chunked-chunked-no-space", b"chunked,chunked"),
        ("empty", b""),
        ("only-commas", b" , ,"),
        ("xchunked", b"xchunked"),
        ("chunked-false", b"chunked-false"),
        ("chunkedx", b"chunkedx"),
        ("chunk", b"chunk"),
        ("quoted", b"\"chunked\""),
        ("with-parameter", b"chunked;q=1"),
        ("space-inside", b"chun ked"),
        ("nbsp-around", b"\xa0chunked\xa0"),
        ("nbsp-suffix", b"chunked\xa0"),
        ("vertical-tab", b"\x0bchunked"),
        ("form-feed", b"chunked\x0c"),
        ("nul-inside", b"chun\x00ked"),
        ("cr-inside", b"chun\rked"),
        ("lf-inside", b"chun\nked"),
        ("del", b"chunked\x7f"),
        ("esc", b"\x1bchunked"),
    ];
    for (name, value) in bad {
        let fields = [b"Transfer-Encoding: ", *value, b"\r\n"].concat();
        t.reject(&format!("te/{name}"), post(&fields, body), 400);
    }
    t.reject(
        "te/two-fields-chunked",
        post(
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            body,
        ),
        400,
    );
    t.reject(
        "te/two-fields-chunked-then-gzip",
        post(
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
            body,
        ),
        400,
    );
    t.reject(
        "te/space-before-colon",
        post(b"Transfer-Encoding : chunked\r\n", body),
        400,
    );
    t.reject(
        "te/obs-fold-value",
        post(b"Transfer-Encoding:\r\n chunked\r\n", body),
        400,
    );
    t.reject(
        "te/obs-fold-tab",
        post(b"Transfer-Encoding: gzip\r\n\t, chunked\r\n", body),
        400,
    );
    t.reject(
        "te/name-split-across-lines",
        post(b"Transfer-\r\nEncoding: chunked\r\n", body),
        400,
    );
    t.reject(
        "te/leading-space-name",
        [
            &b"POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: a\r\n\r\n"[..],
            body,
        ]
        .concat(),
        400,
    );
    // A coding under chunked that we would forward without its name: 501.
    for (name, fields) in [
        (
            "te/gzip-chunked",
            &b"Transfer-Encoding: gzip, chunked\r\n"[..],
        ),
        (
            "te/deflate-chunked",
            b"Transfer-Encoding: deflate, chunked\r\n",
        ),
        (
            "te/two-fields-gzip-then-chunked",
            b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
        ),
    ] {
        t.reject(name, post(fields, body), 501);
    }

    // Valid spellings of chunked: coding names are case-insensitive (RFC 9112 §7), OWS is HTAB
    // too, and a recipient MUST accept empty list elements (RFC 9110 §5.6.1). The leading
    // comma is safe to accept because the value is never forwarded: the backend only ever sees
    // the proxy's own `Transfer-Encoding: chunked` over a body the proxy re-chunked itself, so
    // a backend that would read `, chunked` differently never gets to read it.
    for (name, value) in [
        ("te/Chunked", &b"Chunked"[..]),
        ("te/CHUNKED", b"CHUNKED"),
        ("te/cHuNkEd", b"cHuNkEd"),
        ("te/htab-ows", b"\tchunked"),
        ("te/trailing-htab", b"chunked\t"),
        ("te/no-ows", b""),
        ("te/leading-comma", b", chunked"),
        ("te/leading-comma-no-space", b",chunked"),
        ("te/trailing-comma", b"chunked,"),
        ("te/empty-elements", b" , , chunked , "),
    ] {
        let fields = if value.is_empty() {
            b"Transfer-Encoding:chunked\r\n".to_vec()
        } else {
            [b"Transfer-Encoding: ", value, b"\r\n"].concat()
        };
        t.accept(
            name,
            post(&fields, body),
            vec![fwd_post_chunked(b"", clean)],
        );
    }
    t.accept(
        "te/named-by-connection",
        post(
            b"Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n",
            body,
        ),
        vec![fwd_post_chunked(b"", clean)],
    );

    // `Transfer_Encoding` is another field name (a valid token): it is not framing, so the
    // request has no body and what follows the head is the next request, parsed and checked
    // as one. The field itself is dropped (a CGI-style backend would read it as
    // Transfer-Encoding; `--underscores-in-headers` keeps it). Here what follows is the
    // chunked body: `5` is no request line.
    t.accept_then_reject(
        "te/underscore-name-then-body-is-garbage",
        post(b"Transfer_Encoding: chunked\r\n", body),
        vec![fwd_head("POST / HTTP/1.1", "a", b"", "")],
        400,
    );
    // And here the bytes after the head are a well-formed request: it is forwarded as the
    // second request, on its own upstream connection.
    t.accept(
        "te/underscore-name-then-real-request",
        post(
            b"Transfer_Encoding: chunked\r\n",
            b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        vec![fwd_head("POST / HTTP/1.1", "a", b"", ""), fwd_get("/next")],
    );
    // Same with Content-Length: the underscore field is not framing, CL frames the body.
    t.accept(
        "te/underscore-name-with-cl",
        post(
            b"Transfer_Encoding: chunked\r\nContent-Length: 5\r\n",
            b"0\r\n\r\n",
        ),
        vec![fwd_post_cl(b"", b"0\r\n\r\n")],
    );
}

/// defparam/smuggler's Transfer-Encoding mutation table (configs/default.py): ten ways of
/// putting a byte around `Transfer-Encoding: chunked`, for thirteen bytes, each sent once with
/// a Content-Length (a CL.TE probe) and once without (a TE-only probe).
fn smuggler_mutations(t: &mut Table) {
    /// How the proxy must read the gadget line(s).
    #[derive(Clone, Copy)]
    enum Reading {
        /// A valid `Transfer-Encoding: chunked`, alone or next to a field `X: X`.
        Chunked { with_x: bool },
        /// Not Transfer-Encoding at all: one field `X` whose value holds the rest verbatim.
        OnlyX,
        /// A malformed head or a malformed Transfer-Encoding: 400.
        Bad,
    }
    const BYTES: [u8; 13] = [
        0x01, 0x04, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1f, 0x20, 0x7f, 0xa0, 0xff,
    ];
    let ows = |c: u8| c == b' ' || c == b'\t';
    let obs_text = |c: u8| c >= 0x80;
    type Template = (&'static str, &'static [u8], &'static [u8]);
    // (name, before the byte, after the byte)
    let templates: [Template; 10] = [
        ("midspace", b"Transfer-Encoding:", b"chunked"),
        ("postspace", b"Transfer-Encoding", b": chunked"),
        ("prespace", b"", b"Transfer-Encoding: chunked"),
        ("endspace", b"Transfer-Encoding: chunked", b""),
        ("xprespace", b"X: X", b"Transfer-Encoding: chunked"),
        ("endspacex", b"Transfer-Encoding: chunked", b"X: X"),
        ("rxprespace", b"X: X\r", b"Transfer-Encoding: chunked"),
        ("xnprespace", b"X: X", b"\nTransfer-Encoding: chunked"),
        ("endspacerx", b"Transfer-Encoding: chunked\r", b"X: X"),
        ("endspacexn", b"Transfer-Encoding: chunked", b"\nX: X"),
    ];
    for (template, before, after) in templates {
        for c in BYTES {
            let reading = match template {
                // OWS around a value is trimmed: still chunked.
                "midspace" | "endspace" if ows(c) => Reading::Chunked { with_x: false },
                // Inside X's value: SP, HTAB and obs-text are field content, the rest is not.
                "xprespace" if ows(c) || obs_text(c) => Reading::OnlyX,
                // The byte completes a CRLF: two ordinary field lines.
                "rxprespace" | "endspacerx" if c == b'\n' => Reading::Chunked { with_x: true },
                "xnprespace" | "endspacexn" if c == b'\r' => Reading::Chunked { with_x: true },
                // Everything else: whitespace before a colon or a name, control bytes, bare CR
                // or LF, obs-text or junk inside the coding name.
                _ => Reading::Bad,
            };
            let gadget = [before, &[c][..], after].concat();
            let x_field: &[u8] = match reading {
                Reading::Chunked { with_x: true } => b"X: X\r\n",
                _ => b"",
            };
            let only_x = [&gadget[..], b"\r\n"].concat();
            for with_cl in [true, false] {
                let name = format!(
                    "smuggler/{template}-{c:02x}{}",
                    if with_cl { "+cl" } else { "" }
                );
                let cl: &[u8] = if with_cl {
                    b"Content-Length: 6\r\n"
                } else {
                    b""
                };
                let body: &[u8] = if with_cl { b"0\r\n\r\nX" } else { b"0\r\n\r\n" };
                let input = [
                    &b"POST / HTTP/1.1\r\n"[..],
                    &gadget,
                    b"\r\nHost: a\r\n",
                    cl,
                    b"\r\n",
                    body,
                ]
                .concat();
                match (reading, with_cl) {
                    (Reading::Bad, _) | (Reading::Chunked { .. }, true) => {
                        t.reject(&name, input, 400)
                    }
                    (Reading::Chunked { .. }, false) => {
                        t.accept(&name, input, vec![fwd_post_chunked(x_field, b"0\r\n\r\n")])
                    }
                    (Reading::OnlyX, true) => {
                        t.accept(&name, input, vec![fwd_post_cl(&only_x, b"0\r\n\r\nX")])
                    }
                    // No framing at all: the body is empty and `0` is no request line.
                    (Reading::OnlyX, false) => t.accept_then_reject(
                        &name,
                        input,
                        vec![fwd_head("POST / HTTP/1.1", "a", &only_x, "")],
                        400,
                    ),
                }
            }
        }
    }
}

fn head_hygiene(t: &mut Table) {
    let bad: &[(&str, &[u8])] = &[
        ("space-before-colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
        ("tab-before-colon", b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"),
        (
            "obs-fold-space",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n",
        ),
        (
            "obs-fold-tab",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\tfolded\r\n\r\n",
        ),
        (
            "obs-fold-first-line",
            b"GET / HTTP/1.1\r\n X-A: 1\r\nHost: a\r\n\r\n",
        ),
        ("obs-fold-of-host", b"GET / HTTP/1.1\r\nHost:\r\n a\r\n\r\n"),
        (
            "no-colon",
            b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n",
        ),
        (
            "no-colon-no-space",
            b"GET / HTTP/1.1\r\nHost: a\r\nBadHeader\r\n\r\n",
        ),
        (
            "empty-name",
            b"GET / HTTP/1.1\r\n: ignored\r\nHost: a\r\n\r\n",
        ),
        (
            "empty-name-and-value",
            b"GET / HTTP/1.1\r\nHost: a\r\n:\r\nI: am chopped off\r\n\r\n",
        ),
        (
            "nul-in-name",
            b"GET / HTTP/1.1\r\nHost: a\r\nX\x00A: 1\r\n\r\n",
        ),
        (
            "nul-in-value",
            b"GET / HTTP/1.1\r\nHost: a\r\nTest: test\x00DROPPED\r\n\r\n",
        ),
        (
            "ctl-in-name",
            b"GET / HTTP/1.1\r\nHost: a\r\nX\x01A: 1\r\n\r\n",
        ),
        (
            "ctl-in-value",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x1fb\r\n\r\n",
        ),
        (
            "del-in-value",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x7fb\r\n\r\n",
        ),
        (
            "obs-text-in-name",
            b"GET / HTTP/1.1\r\nHost: a\r\n\xefoo: bar\r\n\r\n",
        ),
        (
            "separator-in-name",
            b"GET / HTTP/1.1\r\nHost: a\r\nX(A): 1\r\n\r\n",
        ),
        (
            "bare-cr-in-value",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: va\rlue\r\n\r\n",
        ),
        (
            "bare-cr-ends-field",
            b"GET / HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n",
        ),
        (
            "bare-cr-smuggled-field",
            b"GET / HTTP/1.1\r\nHost: a\r\nVisible: :/\rSmuggled: :)\r\n\r\n",
        ),
        (
            "bare-cr-ends-request-line",
            b"GET / HTTP/1.1\rHost: a\r\n\r\n",
        ),
        (
            "bare-cr-then-byte-ends-head",
            b"GET / HTTP/1.1\r\nHost: a\r\n\rZGET /evil: HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        (
            "bare-lf-ends-request-line",
            b"GET / HTTP/1.1\nHost: a\r\n\r\n",
        ),
        (
            "bare-lf-ends-field",
            b"GET / HTTP/1.1\r\nHost: a\nX-A: 1\r\n\r\n",
        ),
        ("bare-lf-ends-head", b"GET / HTTP/1.1\r\nHost: a\r\n\n"),
        ("bare-lf-everywhere", b"GET / HTTP/1.1\nHost: a\n\n"),
        (
            "bare-lf-in-value",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\nb\r\n\r\n",
        ),
        (
            "bare-lf-empty-value-then-request",
            b"GET / HTTP/1.1\r\nHost: a\r\nUseless:\n\nGET /admin HTTP/1.1\r\n\r\n",
        ),
        (
            "bare-lf-before-request-line",
            b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        (
            "bare-lf-as-target-separator",
            b"GET /\nHTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        (
            "too-many-leading-empty-lines",
            b"\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
    ];
    for (name, input) in bad {
        t.reject(&format!("head/{name}"), input.to_vec(), 400);
    }
    // HTAB and obs-text are field content: forwarded byte for byte.
    t.accept(
        "head/htab-in-value",
        get_with(b"X-A: a\tb\r\n"),
        vec![fwd_head("GET / HTTP/1.1", "a", b"X-A: a\tb\r\n", "")],
    );
    t.accept(
        "head/obs-text-in-value",
        get_with(b"X-A: caf\xc3\xa9 \xa0\xff\r\n"),
        vec![fwd_head(
            "GET / HTTP/1.1",
            "a",
            b"X-A: caf\xc3\xa9 \xa0\xff\r\n",
            "",
        )],
    );
    t.accept(
        "head/empty-value",
        get_with(b"X-Empty:\r\n"),
        vec![fwd_head("GET / HTTP/1.1", "a", b"X-Empty: \r\n", "")],
    );
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line.
    t.accept(
        "head/leading-empty-lines",
        [&b"\r\n\r\n"[..], &line(b"GET / HTTP/1.1")].concat(),
        vec![fwd_get("/")],
    );
}

fn request_lines(t: &mut Table) {
    let bad: &[(&str, &[u8])] = &[
        ("double-space-after-method", b"GET  / HTTP/1.1"),
        ("double-space-after-target", b"GET /  HTTP/1.1"),
        ("leading-space", b" GET / HTTP/1.1"),
        ("trailing-space", b"GET / HTTP/1.1 "),
        ("tab-after-method", b"GET\t/ HTTP/1.1"),
        ("tab-after-target", b"GET /\tHTTP/1.1"),
        ("missing-version", b"GET /"),
        ("method-only", b"GET"),
        ("invalid-method", b"G@T / HTTP/1.1"),
        ("garbage-method", b"G=\":<>(e),[T];?\" /get HTTP/1.1"),
        ("nul-method", b"\x00 / HTTP/1.1"),
        ("version-lowercase", b"GET / http/1.1"),
        ("version-no-minor", b"GET / HTTP/1"),
        ("version-two-digit-minor", b"GET / HTTP/1.32"),
        ("version-huge", b"GET / HTTP/4294967295.255"),
        ("version-garbage", b"GET / HTTP/\r\r1.1"),
        ("version-3-no-minor", b"GET / HTTP/3"),
        ("target-fragment", b"GET /a#b HTTP/1.1"),
        ("target-non-ascii", b"GET /caf\xc3\xa9 HTTP/1.1"),
        ("target-ctl", b"GET /a\x01b HTTP/1.1"),
        ("target-bang", b"GET ! HTTP/1.1"),
        ("target-asterisk-for-get", b"GET * HTTP/1.1"),
        ("target-empty-scheme", b"GET ://a/ HTTP/1.1"),
    ];
    for (name, request_line) in bad {
        t.reject(&format!("line/{name}"), line(request_line), 400);
    }
    // RFC 9112 §2.3's `HTTP-version = HTTP-name "/" DIGIT "." DIGIT`: a well-formed version
    // whose major is not 1 is 505; `HTTP/3` above is not well-formed, so it is a 400.
    for (name, request_line) in [
        ("line/http-2.0", &b"GET / HTTP/2.0"[..]),
        ("line/http-0.9", b"GET / HTTP/0.9"),
        ("line/http-3.0", b"GET / HTTP/3.0"),
        ("line/http-9.9", b"GET / HTTP/9.9"),
    ] {
        t.reject(name, line(request_line), 505);
    }
    t.reject(
        "line/connect",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".to_vec(),
        405,
    );
    t.reject(
        "line/connect-with-smuggled-tunnel-bytes",
        b"CONNECT a:80 HTTP/1.1\r\nHost: a:80\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n"
            .to_vec(),
        405,
    );

    // A lowercase method is a valid token, not CONNECT or GET: forwarded as it is.
    t.accept(
        "line/lowercase-get",
        line(b"get / HTTP/1.1"),
        vec![fwd_head("get / HTTP/1.1", "a", b"", "")],
    );
    t.accept(
        "line/lowercase-connect",
        line(b"connect / HTTP/1.1"),
        vec![fwd_head("connect / HTTP/1.1", "a", b"", "")],
    );
    t.accept(
        "line/custom-method",
        line(b"PURGE /x HTTP/1.1"),
        vec![fwd_head("PURGE /x HTTP/1.1", "a", b"", "")],
    );
    // RFC 9110 §2.5: a higher 1.x minor version is read as 1.1.
    t.accept("line/http-1.2", line(b"GET / HTTP/1.2"), vec![fwd_get("/")]);
    t.accept(
        "line/options-asterisk",
        line(b"OPTIONS * HTTP/1.1"),
        vec![fwd_head("OPTIONS * HTTP/1.1", "a", b"", "")],
    );
}

fn limits(t: &mut Table) {
    // The request line limit is 8 KiB: exactly 8192 bytes pass, one more is a 414 (even
    // before the line has ended).
    let path_len = 8 * 1024 - "GET  HTTP/1.1".len();
    let path = format!("/{}", "a".repeat(path_len - 1));
    t.accept(
        "limits/request-line-8192",
        line(format!("GET {path} HTTP/1.1").as_bytes()),
        vec![fwd_get(&path)],
    );
    let long = format!("/{}", "a".repeat(path_len));
    t.reject(
        "limits/request-line-8193",
        line(format!("GET {long} HTTP/1.1").as_bytes()),
        414,
    );
    t.reject(
        "limits/request-line-unterminated",
        format!("GET /{}", "a".repeat(9000)).into_bytes(),
        414,
    );

    let mut big = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    big.resize(big.len() + MAX_HEAD + 1024, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    t.reject("limits/head-over-32k", big, 431);
    let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..400 {
        many.extend_from_slice(format!("X-{i}: {}\r\n", "v".repeat(80)).as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    t.reject("limits/head-over-32k-many-lines", many, 431);

    // 100 fields pass, 101 are a 431.
    let fields = |n: usize| -> Vec<u8> {
        (0..n)
            .flat_map(|i| format!("X-{i}: {i}\r\n").into_bytes())
            .collect()
    };
    t.accept(
        "limits/100-fields",
        get_with(&fields(99)),
        vec![fwd_head("GET / HTTP/1.1", "a", &fields(99), "")],
    );
    t.reject("limits/101-fields", get_with(&fields(100)), 431);
    t.reject("limits/1000-fields", get_with(&fields(999)), 431);
}

fn hosts(t: &mut Table) {
    t.reject(
        "host/two-different",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
        400,
    );
    t.reject(
        "host/two-equal",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n".to_vec(),
        400,
    );
    t.reject(
        "host/two-case",
        b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n".to_vec(),
        400,
    );
    t.reject(
        "host/two-http10",
        b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
        400,
    );
    t.reject(
        "host/missing-http11",
        b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n".to_vec(),
        400,
    );
    for (name, value) in [
        ("space", "a b"),
        ("userinfo", "a@b"),
        ("unclosed-ipv6", "[::1"),
        ("bad-ipv6", "[::g]"),
        ("junk-after-ipv6", "[::1]x"),
        ("two-ports", "host:80:81"),
        ("port-with-junk", "host:port:x"),
        ("port-not-digits", "host:abc"),
        ("path", "a/b"),
        ("bad-pct", "a%zz"),
        ("comma-list", "a, b"),
    ] {
        t.reject(
            &format!("host/invalid-{name}"),
            format!("GET / HTTP/1.1\r\nHost: {value}\r\n\r\n").into_bytes(),
            400,
        );
    }
    t.accept(
        "host/ipv6-with-port",
        b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n".to_vec(),
        vec![fwd_head("GET / HTTP/1.1", "[::1]:8080", b"", "")],
    );
    // RFC 9112 §3.2: a client with no authority sends an empty Host.
    t.accept(
        "host/empty",
        b"GET / HTTP/1.1\r\nHost:\r\n\r\n".to_vec(),
        vec![fwd_head("GET / HTTP/1.1", "", b"", "")],
    );
    // HTTP/1.0 may omit Host; the proxy closes after answering a 1.0 client.
    t.push(Case {
        name: "host/missing-http10".into(),
        input: b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        half_close: false,
        client: ClientExpect::Exact(OK_CLOSE.to_vec()),
        backend: BackendExpect::Exact(vec![fwd_head("GET / HTTP/1.1", "", b"", "")]),
    });
    // absolute-form: the authority wins over Host (RFC 9112 §3.2.2), the target is reduced to
    // origin-form.
    t.accept(
        "host/absolute-form-wins",
        b"GET http://b.example:8080/p?q HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        vec![fwd_head("GET /p?q HTTP/1.1", "b.example:8080", b"", "")],
    );
    t.accept(
        "host/absolute-form-https",
        b"GET https://b.example/ HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        vec![fwd_head("GET / HTTP/1.1", "b.example", b"", "")],
    );
    for (name, target) in [
        ("ftp", "ftp://b.example/p"),
        ("file", "file:///etc/passwd"),
        ("gopher", "gopher://b.example/"),
        ("userinfo", "http://user@b.example/"),
        ("empty-host", "http:///p"),
        ("bad-port", "http://b.example:x/"),
    ] {
        t.reject(
            &format!("host/absolute-form-{name}"),
            format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes(),
            400,
        );
    }
    t.reject(
        "host/absolute-form-with-invalid-host",
        b"GET http://b.example/ HTTP/1.1\r\nHost: a b\r\n\r\n".to_vec(),
        400,
    );
}

fn chunked_bodies(t: &mut Table) {
    let te: &[u8] = b"Transfer-Encoding: chunked\r\n";
    let head = fwd_post_chunked(b"", b"");
    let with_head = |body: &[u8]| [&head[..], body].concat();

    // Valid bodies come out clean: no extensions, no trailers, canonical sizes.
    for (name, body, clean) in [
        (
            "chunked/extensions-and-trailers",
            &b"5;ext=1\r\nhello\r\n6;a=\"b; c\"\r\n world\r\n0;last\r\nX-Trailer: t\r\nX-Sum:\r\n\r\n"[..],
            &b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"[..],
        ),
        ("chunked/empty", b"0\r\n\r\n", b"0\r\n\r\n"),
        (
            "chunked/leading-zeros",
            b"0005\r\nhello\r\n000\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunked/uppercase-hex",
            b"A\r\n0123456789\r\n0\r\n\r\n",
            b"a\r\n0123456789\r\n0\r\n\r\n",
        ),
        // The decoder accepts whitespace after the size (BWS before `;`, and before the CR as
        // many senders write it); it is dropped with the extensions.
        (
            "chunked/size-trailing-space",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunked/size-bws-before-ext",
            b"5 \t; x=1\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        // A trailer that looks like a request line after a colon is just a trailer: dropped.
        (
            "chunked/trailer-looks-like-request",
            b"0\r\nX:POST / HTTP/1.1\r\n\r\n",
            b"0\r\n\r\n",
        ),
        (
            "chunked/body-contains-request",
            b"20\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n",
            b"20\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n",
        ),
    ] {
        t.accept(name, post(te, body), vec![with_head(clean)]);
    }
    // Many one-byte chunks are forwarded as they came (one size line per chunk).
    let mut many = Vec::new();
    for b in b"abcdefghij" {
        many.extend_from_slice(b"1\r\n");
        many.push(*b);
        many.extend_from_slice(b"\r\n");
    }
    many.extend_from_slice(b"0\r\n\r\n");
    t.accept(
        "chunked/one-byte-chunks",
        post(te, &many),
        vec![with_head(&many)],
    );

    // Invalid bodies: 400 and a close; the backend may have the head and the valid part of the
    // body, never a last chunk.
    let mut long_ext = b"5;".to_vec();
    long_ext.extend(std::iter::repeat_n(b'x', 1100));
    long_ext.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
    let mut big_trailers = b"5\r\nhello\r\n0\r\nX-Big: ".to_vec();
    big_trailers.extend(std::iter::repeat_n(b'a', 9000));
    big_trailers.extend_from_slice(b"\r\n\r\n");
    let mut many_zeros = b"0".repeat(40);
    many_zeros.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
    let cases: Vec<(&str, Vec<u8>, &[u8])> = vec![
        ("size-0x", b"0x5\r\nhello\r\n0\r\n\r\n".to_vec(), b""),
        ("size-minus", b"-5\r\nhello\r\n0\r\n\r\n".to_vec(), b""),
        ("size-plus", b"+5\r\nhello\r\n0\r\n\r\n".to_vec(), b""),
        (
            "size-leading-space",
            b" 5\r\nhello\r\n0\r\n\r\n".to_vec(),
            b"",
        ),
        (
            "size-underscore",
            b"0_2e\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n0\r\n\r\n".to_vec(),
            b"",
        ),
        (
            "size-inner-space",
            b"5 5\r\nhello\r\n0\r\n\r\n".to_vec(),
            b"",
        ),
        ("size-empty", b"\r\n\r\n".to_vec(), b""),
        ("size-not-hex", b"g\r\nhello\r\n0\r\n\r\n".to_vec(), b""),
        (
            "size-overflow",
            b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n".to_vec(),
            b"",
        ),
        ("size-too-many-digits", many_zeros, b""),
        ("size-bare-lf", b"5\nhello\r\n0\r\n\r\n".to_vec(), b""),
        (
            "size-bare-cr",
            b"5\r\r;ABCD\r\n34\r\nE\r\n0\r\n\r\n".to_vec(),
            b"",
        ),
        ("ext-bare-cr", b"5;a=b\r\rhello\r\n0\r\n\r\n".to_vec(), b""),
        ("ext-bare-lf", b"5;a\nb\r\nhello\r\n0\r\n\r\n".to_vec(), b""),
        ("ext-nul", b"5;a\x00\r\nhello\r\n0\r\n\r\n".to_vec(), b""),
        ("ext-too-long", long_ext, b""),
        (
            "data-longer-than-size",
            b"5\r\nhelloworld\r\n0\r\n\r\n".to_vec(),
            b"5\r\nhello",
        ),
        (
            "data-shorter-than-size",
            b"5\r\nhel\r\n0\r\n\r\n".to_vec(),
            b"5\r\nhel\r\n",
        ),
        (
            "data-missing-crlf",
            b"5\r\nhello0\r\n\r\n".to_vec(),
            b"5\r\nhello",
        ),
        (
            "data-bare-lf",
            b"5\r\nhello\n0\r\n\r\n".to_vec(),
            b"5\r\nhello",
        ),
        (
            "data-bare-cr",
            b"5\r\nhello\r0\r\n\r\n".to_vec(),
            b"5\r\nhello",
        ),
        (
            "trailer-obs-fold",
            b"5\r\nhello\r\n0\r\nX: a\r\n b\r\n\r\n".to_vec(),
            b"5\r\nhello\r\n",
        ),
        (
            "trailer-no-colon",
            b"5\r\nhello\r\n0\r\nX\r\n\r\n".to_vec(),
            b"5\r\nhello\r\n",
        ),
        (
            "trailer-bare-lf",
            b"5\r\nhello\r\n0\r\nX: a\n\r\n".to_vec(),
            b"5\r\nhello\r\n",
        ),
        (
            "trailer-nul",
            b"5\r\nhello\r\n0\r\nX: a\x00\r\n\r\n".to_vec(),
            b"5\r\nhello\r\n",
        ),
        (
            "trailer-space-before-colon",
            b"5\r\nhello\r\n0\r\nX : a\r\n\r\n".to_vec(),
            b"5\r\nhello\r\n",
        ),
        ("trailers-too-large", big_trailers, b"5\r\nhello\r\n"),
        (
            "end-bare-cr",
            b"5\r\nhello\r\n0\r\n\rX".to_vec(),
            b"5\r\nhello\r\n",
        ),
        (
            "end-bare-lf",
            b"5\r\nhello\r\n0\r\n\n".to_vec(),
            b"5\r\nhello\r\n",
        ),
    ];
    for (name, body, valid_part) in cases {
        t.reject_body(
            &format!("chunked/{name}"),
            post(te, &body),
            400,
            with_head(valid_part),
        );
    }
}

fn early_ends(t: &mut Table) {
    // The client closes its sending side before the request is complete: it gets no answer
    // (nobody could read a 200 to a request that never ended), and the backend never gets a
    // complete request: the upstream connection is torn down mid-body.
    t.abandon(
        "early-end/head",
        b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec(),
        Vec::new(),
    );
    t.abandon(
        "early-end/head-half-line",
        b"GET / HTT".to_vec(),
        Vec::new(),
    );
    t.abandon(
        "early-end/content-length-body",
        post(b"Content-Length: 10\r\n", b"hello"),
        [
            fwd_head("POST / HTTP/1.1", "a", b"", "Content-Length: 10\r\n"),
            b"hello".to_vec(),
        ]
        .concat(),
    );
    t.abandon(
        "early-end/content-length-no-body",
        post(b"Content-Length: 10\r\n", b""),
        fwd_head("POST / HTTP/1.1", "a", b"", "Content-Length: 10\r\n"),
    );
    let head = fwd_post_chunked(b"", b"");
    for (name, body, valid_part) in [
        (
            "early-end/chunked-between-chunks",
            &b"5\r\nhello\r\n"[..],
            &b"5\r\nhello\r\n"[..],
        ),
        ("early-end/chunked-mid-data", b"a\r\nhel", b"a\r\nhel"),
        (
            "early-end/chunked-mid-size",
            b"5\r\nhello\r\n1",
            b"5\r\nhello\r\n",
        ),
        (
            "early-end/chunked-after-last-chunk",
            b"5\r\nhello\r\n0\r\n",
            b"5\r\nhello\r\n",
        ),
        ("early-end/chunked-mid-trailers", b"0\r\nX-T: 1\r\n", b""),
    ] {
        t.abandon(
            name,
            post(b"Transfer-Encoding: chunked\r\n", body),
            [&head[..], valid_part].concat(),
        );
    }
}

fn pipelines(t: &mut Table) {
    t.accept(
        "pipeline/get-cl0-then-get-admin",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n"
            .to_vec(),
        vec![
            fwd_head("GET / HTTP/1.1", "a", b"", "Content-Length: 0\r\n"),
            fwd_get("/admin"),
        ],
    );
    let inner: &[u8] = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
    t.accept(
        "pipeline/request-inside-cl-body",
        post(
            format!("Content-Length: {}\r\n", inner.len()).as_bytes(),
            inner,
        ),
        vec![fwd_post_cl(b"", inner)],
    );
    t.accept(
        "pipeline/get-with-body-holding-request",
        [
            format!(
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
                inner.len()
            )
            .as_bytes(),
            inner,
        ]
        .concat(),
        vec![[
            fwd_head(
                "GET / HTTP/1.1",
                "a",
                b"",
                &format!("Content-Length: {}\r\n", inner.len()),
            ),
            inner.to_vec(),
        ]
        .concat()],
    );
    t.accept(
        "pipeline/chunked-then-get",
        post(
            b"Transfer-Encoding: chunked\r\n",
            b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        vec![
            fwd_post_chunked(b"", b"5\r\nhello\r\n0\r\n\r\n"),
            fwd_get("/next"),
        ],
    );
    t.accept(
        "pipeline/three-gets",
        [
            line(b"GET /1 HTTP/1.1"),
            line(b"GET /2 HTTP/1.1"),
            line(b"GET /3 HTTP/1.1"),
        ]
        .concat(),
        vec![fwd_get("/1"), fwd_get("/2"), fwd_get("/3")],
    );
    // A bad request in the middle of a pipeline: what came before is answered, it gets a 400
    // and a close, and what follows it is never forwarded.
    t.accept_then_reject(
        "pipeline/bad-middle-request",
        [
            line(b"GET /1 HTTP/1.1"),
            b"GET /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
                .to_vec(),
            line(b"GET /3 HTTP/1.1"),
        ]
        .concat(),
        vec![fwd_get("/1")],
        400,
    );
    // Content-Length shorter than what follows: the rest is the next request and is checked.
    t.accept_then_reject(
        "pipeline/cl-short-leftover-is-garbage",
        post(b"Content-Length: 3\r\n", b"abcdef\r\n\r\n"),
        vec![fwd_post_cl(b"", b"abc")],
        400,
    );
    // A small body is read before the connect: the proxy answers the expectation itself and
    // forwards the request without it (see tests/expect_continue.rs).
    t.push(Case {
        name: "pipeline/expect-continue-body-sent-anyway".to_string(),
        input: post(b"Expect: 100-continue\r\nContent-Length: 5\r\n", b"hello"),
        half_close: true,
        client: ClientExpect::Exact([&b"HTTP/1.1 100 Continue\r\n\r\n"[..], OK].concat()),
        backend: BackendExpect::Exact(vec![fwd_post_cl(b"", b"hello")]),
    });
}

fn responses(t: &mut Table) {
    let bad: &[(&str, &[u8])] = &[
        ("status-letters", b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok"),
        ("status-two-digits", b"HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok"),
        ("status-below-100", b"HTTP/1.1 099 Low\r\nContent-Length: 2\r\n\r\nok"),
        ("status-no-space-before-reason", b"HTTP/1.1 200OK\r\nContent-Length: 2\r\n\r\nok"),
        ("status-version-2", b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        ("status-version-lowercase", b"http/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        ("status-not-http", b"NOT HTTP AT ALL\r\n\r\n"),
        ("status-ctl-in-reason", b"HTTP/1.1 200 O\x01K\r\nContent-Length: 2\r\n\r\nok"),
        ("two-cl-equal", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"),
        ("two-cl-different", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!"),
        ("cl-list", b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok"),
        ("cl-plus", b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok"),
        ("cl-then-te", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
        ("te-then-cl", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
        ("te-in-http10", b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
        ("te-chunked-twice", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
        ("te-malformed", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \"chunked\"\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
        ("bare-lf-status-line", b"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok"),
        ("bare-lf-field", b"HTTP/1.1 200 OK\r\nContent-Length: 2\nX: y\r\n\r\nok"),
        ("bare-lf-end", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\nok"),
        ("bare-cr-field", b"HTTP/1.1 200 OK\r\nX: a\rSet-Cookie: evil\r\nContent-Length: 2\r\n\r\nok"),
        ("obs-fold", b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\nok"),
        ("space-before-colon", b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok"),
        ("nul-in-value", b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 2\r\n\r\nok"),
        ("no-colon", b"HTTP/1.1 200 OK\r\nBroken\r\nContent-Length: 2\r\n\r\nok"),
        ("unsolicited-101", b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
    ];
    for (key, response) in bad {
        t.upstream_502(key, response);
    }
    let mut huge = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
    huge.resize(huge.len() + MAX_HEAD + 1024, b'a');
    huge.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\nok");
    t.upstream_502("head-over-32k", &huge);
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..101 {
        many.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
    }
    many.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
    t.upstream_502("over-100-fields", &many);

    // With `Connection: close` the 502 closes.
    t.upstream(
        "bad-status-request-closes",
        Reply::KeepAlive(b"HTTP/1.1 2OO OK\r\n\r\n".to_vec()),
        true,
        ClientExpect::Exact(local_answer(502, true)),
    );
    // A body shorter than its Content-Length, then the upstream closes: the client connection
    // closes too, with the message visibly incomplete.
    t.upstream(
        "cl-body-truncated",
        Reply::Close(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec()),
        true,
        ClientExpect::Exact(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nabc".to_vec(),
        ),
    );
    t.upstream(
        "cl-body-truncated-keep-alive",
        Reply::Close(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec()),
        false,
        ClientExpect::Exact(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec()),
    );
    t.upstream(
        "chunked-body-truncated",
        Reply::Close(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec(),
        ),
        false,
        ClientExpect::Exact(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec(),
        ),
    );
    // A malformed chunked body after the head went out: the connection closes without a last
    // chunk.
    let head: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    t.upstream(
        "chunked-body-malformed",
        Reply::KeepAlive([head, b"5\r\nhelloXX\r\n0\r\n\r\n"].concat()),
        false,
        ClientExpect::Prefix {
            min: head.to_vec(),
            max: [head, b"5\r\nhello"].concat(),
        },
    );
}

/// Responses that try to answer more than was asked: the extra bytes never reach the client
/// as a response, and the next request gets its own answer.
fn response_splitting(t: &mut Table) {
    t.replies.insert(
        "split".into(),
        Reply::KeepAlive(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"
                .to_vec(),
        ),
    );
    t.accept(
        "response/split-extra-response-dropped",
        [
            line(b"GET /resp/split HTTP/1.1"),
            line(b"GET /after HTTP/1.1"),
        ]
        .concat(),
        vec![fwd_get("/resp/split"), fwd_get("/after")],
    );
    t.replies.insert(
        "bad-then-next".into(),
        Reply::KeepAlive(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        ),
    );
    // A 502 for a complete keep-alive request keeps the connection: the next request works.
    t.push(Case {
        name: "response/502-then-next-request".into(),
        input: [
            line(b"GET /resp/bad-then-next HTTP/1.1"),
            line(b"GET /after HTTP/1.1"),
        ]
        .concat(),
        half_close: true,
        client: ClientExpect::Exact([local_answer(502, false), OK.to_vec()].concat()),
        backend: BackendExpect::Exact(vec![fwd_get("/resp/bad-then-next"), fwd_get("/after")]),
    });
}

fn all_cases() -> Table {
    let mut t = Table::default();
    framing_conflicts(&mut t);
    content_length_values(&mut t);
    transfer_encoding_values(&mut t);
    smuggler_mutations(&mut t);
    head_hygiene(&mut t);
    request_lines(&mut t);
    limits(&mut t);
    hosts(&mut t);
    chunked_bodies(&mut t);
    early_ends(&mut t);
    pipelines(&mut t);
    responses(&mut t);
    response_splitting(&mut t);
    t
}

// ---------------------------------------------------------------------------------------------
// Running a case
// ---------------------------------------------------------------------------------------------

/// Read until `n` bytes have come (or the peer closed): what the client waits for before it
/// closes its side.
fn read_at_least(stream: &mut TcpStream, n: usize, timeout: Duration) -> Result<Vec<u8>, String> {
    let _ = stream.set_read_timeout(Some(timeout));
    let mut out = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    while out.len() < n {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(k) => out.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => {
                return Err(format!(
                    "{n} bytes not received within {timeout:?} ({e}); received: {}",
                    show(&out)
                ))
            }
        }
    }
    Ok(out)
}

fn connect_for_case(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream =
        TcpStream::connect_timeout(&addr, CASE_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_write_timeout(Some(CASE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Run one case; `Err` says what differed.
fn run_case(proxy: &Proxy, backend: &RawBackend, case: &Case, n: usize) -> Result<(), String> {
    let mark = backend.connection_count();

    // 1. The attack, and what the client gets.
    let mut stream = connect_for_case(proxy.addr())?;
    // A write can fail once the proxy has answered and stopped reading (431): the answer
    // is still readable.
    let _ = stream.write_all(&case.input);
    let mut got = Vec::new();
    if case.half_close {
        // A client that closes its side before its answer has gone (the proxy lets the request
        // go, as nginx does): the side is closed once the answers expected have come, and the
        // rest is read to the close, so that a byte too many still shows.
        let expected = match &case.client {
            ClientExpect::Exact(want) => want.len(),
            ClientExpect::Prefix { min, .. } => min.len(),
        };
        got = read_at_least(&mut stream, expected, CASE_TIMEOUT)?;
        let _ = stream.shutdown(Shutdown::Write);
    }
    got.extend(read_until_eof(&mut stream, CASE_TIMEOUT)?);
    drop(stream);
    match &case.client {
        ClientExpect::Exact(want) if &got != want => {
            return Err(format!(
                "client received:\n  {}\nexpected:\n  {}",
                show(&got),
                show(want)
            ))
        }
        ClientExpect::Prefix { min, max } if !(got.starts_with(min) && max.starts_with(&got)) => {
            return Err(format!(
                "client received:\n  {}\nexpected at least:\n  {}\nand at most:\n  {}",
                show(&got),
                show(min),
                show(max)
            ))
        }
        _ => {}
    }

    // 2. The sentinel: a fresh request on a new connection works, and orders the records.
    let sentinel_path = format!("/sentinel/{n}");
    let mut sentinel = connect_for_case(proxy.addr())?;
    let _ =
        sentinel.write_all(format!("GET {sentinel_path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
    let mut answer = read_at_least(&mut sentinel, OK.len(), CASE_TIMEOUT)?;
    let _ = sentinel.shutdown(Shutdown::Write);
    answer.extend(read_until_eof(&mut sentinel, CASE_TIMEOUT)?);
    if answer != OK {
        return Err(format!(
            "the next request on a new connection got: {}",
            show(&answer)
        ));
    }
    if !backend.wait_ended_since(mark, CASE_TIMEOUT) {
        return Err("upstream connections still open after the sentinel was answered".into());
    }

    // 3. What the backend received.
    let conns = backend.connections();
    let window = &conns[mark.min(conns.len())..];
    let sentinel_fwd = fwd_get(&sentinel_path);
    let Some(s) = window.iter().position(|c| c.starts_with(&sentinel_fwd)) else {
        return Err(format!(
            "the sentinel is not among the backend's connections: {:?}",
            window.iter().map(|c| show(c)).collect::<Vec<_>>()
        ));
    };
    if window[s] != sentinel_fwd {
        return Err(format!(
            "the sentinel's upstream connection carried more: {}",
            show(&window[s])
        ));
    }
    let received: Vec<&Vec<u8>> = window[..s].iter().filter(|c| !c.is_empty()).collect();
    if let Some(late) = window[s + 1..].iter().find(|c| !c.is_empty()) {
        return Err(format!(
            "bytes reached the backend after the sentinel: {}",
            show(late)
        ));
    }
    let listing = || {
        received
            .iter()
            .map(|c| format!("  {}", show(c)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    match &case.backend {
        BackendExpect::Nothing => {
            if !received.is_empty() {
                return Err(format!("the backend received:\n{}", listing()));
            }
        }
        BackendExpect::Exact(want) => {
            let same = received.len() == want.len()
                && received.iter().zip(want).all(|(got, want)| *got == want);
            if !same {
                let wanted: Vec<String> = want.iter().map(|w| format!("  {}", show(w))).collect();
                return Err(format!(
                    "the backend received (one entry per upstream connection):\n{}\nexpected:\n{}",
                    listing(),
                    wanted.join("\n")
                ));
            }
        }
        BackendExpect::Incomplete(max) => {
            if received.len() > 1 {
                return Err(format!(
                    "more than one upstream connection got bytes:\n{}",
                    listing()
                ));
            }
            if let Some(got) = received.first() {
                if !max.starts_with(got) {
                    return Err(format!(
                        "the backend received:\n  {}\nwhich is not a prefix of:\n  {}",
                        show(got),
                        show(max)
                    ));
                }
                if request_length(got).is_some() {
                    return Err(format!(
                        "the backend received a complete request: {}",
                        show(got)
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The backend's answer: scripted for `/resp/{key}`, `200 ok` for everything else.
fn backend_reply(replies: &HashMap<String, Reply>, request: &[u8]) -> Reply {
    let target = request
        .split(|&b| b == b' ')
        .nth(1)
        .map(|t| String::from_utf8_lossy(t).to_string())
        .unwrap_or_default();
    match target.strip_prefix("/resp/").and_then(|k| replies.get(k)) {
        Some(reply) => reply.clone(),
        None => Reply::KeepAlive(ok_response("ok")),
    }
}

#[test]
fn smuggling_table() {
    let table = all_cases();
    let replies = Arc::new(table.replies);
    let script_replies = Arc::clone(&replies);
    let backend = RawBackend::start(move |request| backend_reply(&script_replies, request));
    // One upstream connection per request (no idle pool), so that every case's bytes at the
    // backend are told apart by connection.
    let proxy = Proxy::with_upstreams(&[backend.port()], &["--upstream-idle", "0"]);

    let mut failures = Vec::new();
    for (n, case) in table.cases.iter().enumerate() {
        let outcome = catch_unwind(AssertUnwindSafe(|| run_case(&proxy, &backend, case, n)));
        let error = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into()),
        };
        failures.push(format!(
            "--- {}\n    input: {}\n{error}",
            case.name,
            show(&case.input)
        ));
    }
    let total = table.cases.len();
    println!(
        "smuggling: {total} cases, {} passed",
        total - failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Pipelining behind a slow reader
// ---------------------------------------------------------------------------------------------

/// Size of the response body in the slow-reader tests: far more than the kernel buffers and the
/// proxy's own client buffer, so that the proxy is still writing it when it moves on to the
/// next pipelined request.
const BIG_BODY: usize = 8 * 1024 * 1024;

/// Send `input` (one request for a big response, then more), shut our sending side, then read
/// slowly to EOF and return everything.
fn pipeline_behind_slow_reader(input: &[u8]) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG_BODY}\r\n\r\n").into_bytes();
    head.extend_from_slice(&pattern(BIG_BODY));
    let backend = RawBackend::fixed(&head);
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    let mut stream = connect(proxy.addr());
    stream.write_all(input).expect("send the pipeline");
    let _ = stream.shutdown(Shutdown::Write);
    backend.wait_requests(1, IO_TIMEOUT);
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading after {} bytes: {e}", out.len()),
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    assert_eq!(
        backend.requests().len(),
        1,
        "only the first request is forwarded"
    );
    out
}

/// The whole response to the first request, as the client must receive it.
fn big_response() -> Vec<u8> {
    let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG_BODY}\r\n\r\n").into_bytes();
    r.extend_from_slice(&pattern(BIG_BODY));
    r
}

#[test]
fn pipelined_garbage_behind_a_big_response_gets_a_complete_400_after_it() {
    let got = pipeline_behind_slow_reader(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGARBAGE\r\n\r\n");
    let want = [big_response(), local_answer(400, true)].concat();
    assert_long_bytes_eq(&got, &want, "the big response then the 400");
}

#[test]
fn pipelined_partial_head_behind_a_big_response_does_not_cut_the_response() {
    // The client gives up on its second request (half a head, then its FIN): the first
    // response must still be delivered whole before the close.
    let got =
        pipeline_behind_slow_reader(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHo");
    assert_long_bytes_eq(&got, &big_response(), "the big response");
}

#[test]
fn a_local_answer_queued_behind_interim_responses_is_never_cut() {
    // The upstream floods interim responses (each forwarded to the client) and never sends a
    // final one; the client reads nothing, so the proxy's client buffer fills with whole
    // interim heads. When the timeout fires, the proxy may still answer 504 behind them, or
    // close (the client took nothing for the write timeout): either is fine, but a 504 must
    // come out whole. A cut answer is a message the client cannot frame, and on a kept
    // connection the next response would be read as the rest of it.
    // Each forwarded interim head is exactly as long as the 504, so the room the buffer has
    // left when it stalls is always smaller than the 504 (and any cut shows).
    let answer = local_answer(504, true);
    let mut interim =
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; x-pad=".to_vec();
    interim.resize(answer.len() - 4, b'a');
    interim.extend_from_slice(b"\r\n\r\n");
    let interim = &interim[..];
    let flood = interim.repeat(4 * 1024 * 1024 / interim.len());
    let backend = RawBackend::start(move |_| Reply::KeepAlive(flood.clone()));
    let proxy = Proxy::with_upstreams(
        &[backend.port()],
        &["-v", "--read-timeout", "300ms", "--write-timeout", "300ms"],
    );
    // Where the cut falls varies (and a cut of 9 bytes or less cannot be told from the start
    // of an interim head): three rounds make a cut 504 show all but certainly.
    for round in 0..3 {
        let mark = proxy.log_mark();
        let mut stream = connect(proxy.addr());
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .expect("send");
        // Either the client buffer was full when the timeout fired (the client took nothing
        // for the write timeout: the proxy closes) or it had room (504).
        let until = Instant::now() + Duration::from_secs(5);
        while !proxy.logs()[mark.min(proxy.logs().len())..]
            .iter()
            .any(|l| {
                l.contains("exchange stalled, closing") || l.contains("upstream timed out: 504")
            })
        {
            assert!(Instant::now() < until, "round {round}: no timeout logged");
            thread::sleep(Duration::from_millis(10));
        }
        let got = read_to_close(&mut stream);
        let mut rest = &got[..];
        let mut seen = 0;
        while rest.starts_with(interim) {
            rest = &rest[interim.len()..];
            seen += 1;
        }
        assert!(
            rest == answer || interim.starts_with(rest),
            "round {round}: after {seen} whole interim responses the client got {} bytes before \
             EOF, neither the start of an interim response nor the whole 504: {}",
            rest.len(),
            show(rest)
        );
    }
}
