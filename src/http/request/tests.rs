//! The request parser's rules, one test per rule, and its agreement with itself as a head
//! grows.

use super::*;
use RequestError::*;

const L: Limits = Limits::DEFAULT;

/// What `parse` says of `buf`, as (head length) or the error's status (0 for incomplete).
fn outcome(r: Result<Option<Request<'_, '_>>, RequestError>) -> Result<usize, u16> {
    match r {
        Ok(Some(req)) => Ok(req.head_len),
        Ok(None) => Err(0),
        Err(e) => Err(e.status()),
    }
}

#[test]
fn a_head_parsed_as_it_grows_reads_as_parsed_at_once() {
    let mut many = String::from("GET /x HTTP/1.1\r\nHost: a\r\n");
    for i in 0..60 {
        many.push_str(&format!("X-F{i}: {}\r\n", "v".repeat(i)));
    }
    many.push_str("\r\n");
    let heads: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n".to_vec(),
        b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\n".to_vec(),
        many.into_bytes(),
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\nY: b\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
        b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000)).into_bytes(),
        format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "b".repeat(40000)
        )
        .into_bytes(),
    ];
    let small = Limits {
        max_fields: 20,
        max_head: 600,
        max_request_line: 100,
        ..L
    };
    for head in &heads {
        for limits in [&L, &small] {
            for step in [1, 2, 3, 7, 64] {
                let mut progress = HeadProgress::START;
                let mut cut = 0;
                loop {
                    cut = (cut + step).min(head.len());
                    let mut a = [httparse::EMPTY_HEADER; 100];
                    let mut b = [httparse::EMPTY_HEADER; 100];
                    let once = outcome(parse(&head[..cut], limits, &mut a));
                    let grown =
                        outcome(parse_resuming(&head[..cut], limits, &mut b, &mut progress));
                    assert_eq!(
                        grown,
                        once,
                        "step {step}, {cut} bytes of {:?}",
                        String::from_utf8_lossy(&head[..cut.min(80)])
                    );
                    if once != Err(0) || cut == head.len() {
                        break;
                    }
                }
            }
        }
    }
}

#[test]
fn head_progress_points_at_the_first_line_not_checked() {
    let head = b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nUser-Ag";
    let mut hs = [httparse::EMPTY_HEADER; 8];
    let mut progress = HeadProgress::START;
    assert_eq!(
        outcome(parse_resuming(&head[..10], &L, &mut hs, &mut progress)),
        Err(0)
    );
    assert_eq!(progress.line_seen(), 10);
    assert_eq!(
        outcome(parse_resuming(head, &L, &mut hs, &mut progress)),
        Err(0)
    );
    let user_agent = head.len() - b"User-Ag".len();
    assert_eq!(progress.field_lines(), Some((user_agent, 2)));
    // What does not fit is not kept.
    assert_eq!(HeadProgress::in_fields(3 << 20, 1), HeadProgress::START);
    assert_eq!(HeadProgress::in_fields(100, 5000), HeadProgress::START);
    assert_eq!(
        HeadProgress::in_fields(100, 1023).field_lines(),
        Some((100, 1023))
    );
    assert_eq!(HeadProgress::in_line(12).line_seen(), 12);
    assert_eq!(HeadProgress::START.field_lines(), None);
}

/// Parse `buf` completely and hand the request to `f`.
fn with<R>(buf: &[u8], f: impl FnOnce(&Request<'_, '_>) -> R) -> R {
    let mut hs = [httparse::EMPTY_HEADER; 100];
    match parse(buf, &L, &mut hs) {
        Ok(Some(req)) => f(&req),
        other => panic!("{:?} for {:?}", other, String::from_utf8_lossy(buf)),
    }
}

fn info(buf: &[u8]) -> RequestInfo {
    with(buf, |r| r.info)
}

fn framing(buf: &[u8]) -> Framing {
    with(buf, |r| r.framing)
}

fn result_with(buf: &[u8], limits: &Limits) -> Result<Option<usize>, RequestError> {
    let mut hs = [httparse::EMPTY_HEADER; 128];
    parse(buf, limits, &mut hs).map(|r| r.map(|r| r.head_len))
}

fn err(buf: &[u8]) -> RequestError {
    match result_with(buf, &L) {
        Err(e) => e,
        ok => panic!("{:?} for {:?}", ok, String::from_utf8_lossy(buf)),
    }
}

fn is_bad(buf: &[u8]) -> bool {
    matches!(result_with(buf, &L), Err(BadRequest(_)))
}

/// A GET with the given field lines.
fn get(fields: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n").into_bytes()
}

fn post(fields: &str) -> Vec<u8> {
    format!("POST /p HTTP/1.1\r\nHost: a\r\n{fields}\r\n").into_bytes()
}

#[test]
fn simple_get_is_parsed_exactly() {
    let buf = b"GET /a/b?c=d HTTP/1.1\r\nHost: example.com:8080\r\nAccept:  */*  \r\nX-Empty:\r\n\r\nBODY";
    with(buf, |r| {
        assert_eq!(r.head_len, buf.len() - 4);
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, "/a/b?c=d");
        assert_eq!(r.path, "/a/b?c=d");
        assert_eq!(r.host, b"example.com:8080");
        assert_eq!(r.version, Version::Http11);
        assert_eq!(r.framing, Framing::None);
        assert_eq!(r.headers.len(), 3);
        assert_eq!(
            (r.headers[1].name, r.headers[1].value),
            ("Accept", &b"*/*"[..])
        );
        assert_eq!(
            (r.headers[2].name, r.headers[2].value),
            ("X-Empty", &b""[..])
        );
        assert_eq!(
            r.info,
            RequestInfo {
                version: Version::Http11,
                framing: Framing::None,
                keep_alive: true,
                expect_continue: false,
                upgrade_websocket: false,
                is_head: false,
                idempotent: true,
            }
        );
    });
}

#[test]
fn every_proper_prefix_is_incomplete() {
    let buf = b"\r\nPOST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n";
    for n in 0..buf.len() {
        assert_eq!(result_with(&buf[..n], &L), Ok(None), "prefix {n}");
    }
    assert_eq!(result_with(buf, &L), Ok(Some(buf.len())));
}

#[test]
fn leading_empty_lines_are_skipped_and_counted() {
    let buf = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    with(buf, |r| {
        assert_eq!(r.head_len, buf.len());
        assert_eq!(r.method, "GET");
    });
    let mut many = b"\r\n".repeat(MAX_LEADING_EMPTY_LINES);
    many.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(result_with(&many, &L), Ok(Some(many.len())));
    let mut too_many = b"\r\n".repeat(MAX_LEADING_EMPTY_LINES + 1);
    too_many.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(is_bad(&too_many));
    assert!(is_bad(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert!(is_bad(b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n"));
}

#[test]
fn request_line_over_the_limit_is_414_even_incomplete() {
    let limits = Limits {
        max_request_line: 20,
        ..L
    };
    // 21 bytes and no line end yet: the line is already longer than 20.
    assert_eq!(
        result_with(b"GET /1234567890123456", &limits),
        Err(UriTooLong)
    );
    assert_eq!(result_with(b"GET /123456789012345", &limits), Ok(None));
    assert_eq!(
        result_with(b"GET /123456789012 HTTP/1.1\r\nHost: a\r\n\r\n", &limits),
        Err(UriTooLong)
    );
    // Exactly max_request_line bytes before the CRLF is fine.
    let ok = b"GET /1234 HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(
        result_with(
            &ok[..],
            &Limits {
                max_request_line: 18,
                ..L
            }
        ),
        Ok(Some(ok.len()))
    );
    assert_eq!(
        result_with(
            &ok[..],
            &Limits {
                max_request_line: 17,
                ..L
            }
        ),
        Err(UriTooLong)
    );
}

#[test]
fn head_over_the_limit_is_431() {
    let buf = b"GET / HTTP/1.1\r\nHost: a\r\nX: 123456\r\n\r\n";
    let exact = Limits {
        max_head: buf.len(),
        ..L
    };
    assert_eq!(result_with(buf, &exact), Ok(Some(buf.len())));
    let smaller = Limits {
        max_head: buf.len() - 1,
        ..L
    };
    assert_eq!(result_with(buf, &smaller), Err(HeaderTooLarge));
    // Incomplete, and already as long as the limit allows: it can only end up too large.
    assert_eq!(
        result_with(&buf[..buf.len() - 1], &smaller),
        Err(HeaderTooLarge)
    );
    assert_eq!(result_with(&buf[..buf.len() - 2], &smaller), Ok(None));
    // A request line ending past max_head (max_request_line > max_head).
    let odd = Limits {
        max_head: 10,
        max_request_line: 100,
        ..L
    };
    assert_eq!(
        result_with(b"GET /abcdefgh HTTP/1.1\r\n", &odd),
        Err(HeaderTooLarge)
    );
}

#[test]
fn more_fields_than_max_fields_is_431() {
    let limits = Limits { max_fields: 3, ..L };
    let three = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
    assert_eq!(result_with(three, &limits), Ok(Some(three.len())));
    let four = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert_eq!(result_with(four, &limits), Err(HeaderTooLarge));
    // Even before the head is complete.
    assert_eq!(
        result_with(&four[..four.len() - 4], &limits),
        Err(HeaderTooLarge)
    );
    // Fewer slots than field lines: the caller is told how many to come back with.
    let mut hs = [httparse::EMPTY_HEADER; 2];
    assert_eq!(
        parse(three, &L, &mut hs).map(|r| r.map(|r| r.head_len)),
        Err(RequestError::Slots(3))
    );
    assert_eq!(RequestError::Slots(3).status(), 431);
    let mut hs = [httparse::EMPTY_HEADER; 3];
    assert_eq!(
        parse(three, &L, &mut hs).map(|r| r.map(|r| r.head_len)),
        Ok(Some(three.len()))
    );
}

#[test]
fn bare_lf_anywhere_is_400() {
    assert!(is_bad(b"GET / HTTP/1.1\nHost: a\r\n\r\n"));
    assert!(is_bad(b"GET / HTTP/1.1\r\nHost: a\n\r\n"));
    assert!(is_bad(b"GET / HTTP/1.1\r\nHost: a\r\n\n"));
    assert!(is_bad(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\nb\r\n\r\n"));
    // Detected before the head is complete.
    assert!(is_bad(b"GET / HTTP/1.1\r\nX: a\n"));
}

#[test]
fn bare_cr_anywhere_is_400() {
    assert!(is_bad(b"GET / HTTP/1.1\rHost: a\r\n\r\n"));
    assert!(is_bad(b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"));
    assert!(is_bad(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"));
    assert!(is_bad(b"GET / HTTP/1.1\r\nHost: a\r\n\rX"));
    assert!(is_bad(b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"));
}

#[test]
fn obs_fold_is_400() {
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"),
        BadRequest("obs-fold or whitespace before a field name")
    );
    assert!(is_bad(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n"));
    assert!(is_bad(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"));
}

#[test]
fn control_characters_in_values_are_400() {
    for c in (0u8..0x20)
        .filter(|&c| c != b'\t' && c != b'\r' && c != b'\n')
        .chain([0x7f])
    {
        let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\nX: a".to_vec();
        buf.push(c);
        buf.extend_from_slice(b"b\r\n\r\n");
        assert_eq!(
            err(&buf),
            BadRequest("control character in a field value"),
            "byte {c:#x}"
        );
    }
    // HTAB and obs-text are field-vchar.
    with(
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\xff\x80\r\n\r\n",
        |r| {
            assert_eq!(r.headers[1].value, b"a\tb\xff\x80");
        },
    );
}

#[test]
fn whitespace_before_colon_is_400() {
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
        BadRequest("whitespace between field name and colon")
    );
    assert!(is_bad(&get("Content-Length\t: 5\r\n")));
}

#[test]
fn malformed_field_names_are_400() {
    assert_eq!(
        err(&get("NoColon\r\n")),
        BadRequest("field line without a colon")
    );
    assert_eq!(err(&get(": v\r\n")), BadRequest("empty field name"));
    assert_eq!(
        err(&get("A@B: v\r\n")),
        BadRequest("invalid byte in a field name")
    );
    assert_eq!(
        err(&get("A\x00B: v\r\n")),
        BadRequest("invalid byte in a field name")
    );
    assert!(is_bad(&get("\u{e9}: v\r\n")));
}

#[test]
fn request_line_shape_is_strict() {
    assert!(is_bad(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert!(is_bad(b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert!(is_bad(b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n"));
    assert!(is_bad(b" GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert!(is_bad(b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert!(is_bad(b"GET /\r\nHost: a\r\n\r\n"));
    assert!(is_bad(b"GET\r\nHost: a\r\n\r\n"));
    assert_eq!(
        err(b"GE(T / HTTP/1.1\r\nHost: a\r\n\r\n"),
        BadRequest("method is not a token")
    );
    assert_eq!(
        err(b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n"),
        BadRequest("invalid byte in the request target")
    );
    assert!(is_bad(b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert!(is_bad(b"GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert_eq!(
        err(b"GET /a#f HTTP/1.1\r\nHost: a\r\n\r\n"),
        BadRequest("fragment in the request target")
    );
}

#[test]
fn versions() {
    let v = |line: &str| {
        let mut hs = [httparse::EMPTY_HEADER; 8];
        let buf = format!("GET / {line}\r\nHost: a\r\n\r\n");
        parse(buf.as_bytes(), &L, &mut hs).map(|r| r.map(|r| r.version))
    };
    assert_eq!(v("HTTP/1.0"), Ok(Some(Version::Http10)));
    assert_eq!(v("HTTP/1.1"), Ok(Some(Version::Http11)));
    assert_eq!(v("HTTP/1.2"), Ok(Some(Version::Http11)));
    assert_eq!(v("HTTP/1.9"), Ok(Some(Version::Http11)));
    assert_eq!(v("HTTP/2.0"), Err(VersionNotSupported));
    assert_eq!(v("HTTP/0.9"), Err(VersionNotSupported));
    assert_eq!(v("HTTP/3.0"), Err(VersionNotSupported));
    for garbage in [
        "HTTP/1",
        "http/1.1",
        "HTTP/1.1x",
        "HTTP/11.1",
        "HTTP/1.a",
        "HTTPS/1.1",
        "",
        "HTTP/1,1",
    ] {
        assert_eq!(
            v(garbage),
            Err(BadRequest("malformed HTTP version")),
            "{garbage:?}"
        );
    }
    assert_eq!(VersionNotSupported.status(), 505);
}

#[test]
fn connect_is_405() {
    assert_eq!(
        err(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
        MethodNotAllowed
    );
    assert_eq!(MethodNotAllowed.status(), 405);
    // Methods are case-sensitive: `connect` is some other (unknown) method.
    with(b"connect / HTTP/1.1\r\nHost: a\r\n\r\n", |r| {
        assert_eq!(r.method, "connect")
    });
}

#[test]
fn asterisk_form_only_for_options() {
    with(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", |r| {
        assert_eq!((r.path, r.target, r.host), ("*", "*", &b"a"[..]));
        assert!(r.info.idempotent);
    });
    assert_eq!(
        err(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
        BadRequest("asterisk-form target for a method other than OPTIONS")
    );
}

#[test]
fn absolute_form_replaces_host_and_reduces_path() {
    with(
        b"GET http://Example.com:81/x?y HTTP/1.1\r\nHost: other\r\n\r\n",
        |r| {
            assert_eq!(r.host, b"Example.com:81");
            assert_eq!(r.path, "/x?y");
            assert_eq!(r.target, "http://Example.com:81/x?y");
        },
    );
    with(
        b"GET HTTPS://[::1]:8443 HTTP/1.1\r\nHost: other\r\n\r\n",
        |r| {
            assert_eq!((r.host, r.path), (&b"[::1]:8443"[..], "/"));
        },
    );
    with(b"OPTIONS http://h HTTP/1.1\r\nHost: h\r\n\r\n", |r| {
        assert_eq!(r.path, "*")
    });
    with(b"GET http://h?q=1 HTTP/1.1\r\nHost: h\r\n\r\n", |r| {
        assert_eq!(r.path, "?q=1")
    });
    with(b"GET http://h/ HTTP/1.0\r\n\r\n", |r| {
        assert_eq!((r.host, r.path), (&b"h"[..], "/"))
    });
}

#[test]
fn bad_absolute_forms_are_400() {
    for target in [
        "ftp://h/x",
        "http:/h/x",
        "http:///x",
        "http://:80/x",
        "http://user@h/x",
        "http://h:8x/",
        "http://[::1/",
        "h/x",
        "x",
    ] {
        let buf = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(is_bad(buf.as_bytes()), "{target}");
    }
    // The Host field is still checked with an absolute-form target.
    assert!(is_bad(b"GET http://h/ HTTP/1.1\r\nHost: a b\r\n\r\n"));
    assert!(is_bad(
        b"GET http://h/ HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n"
    ));
    assert!(is_bad(b"GET http://h/ HTTP/1.1\r\n\r\n"));
}

#[test]
fn host_field_rules() {
    assert_eq!(
        err(b"GET / HTTP/1.1\r\n\r\n"),
        BadRequest("HTTP/1.1 request without Host")
    );
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"),
        BadRequest("more than one Host field")
    );
    assert!(is_bad(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"));
    with(b"GET / HTTP/1.0\r\n\r\n", |r| assert_eq!(r.host, b""));
    with(b"GET / HTTP/1.1\r\nHost:\r\n\r\n", |r| {
        assert_eq!(r.host, b"")
    });
    for good in [
        "a.b-c_d~e",
        "127.0.0.1:80",
        "[::1]",
        "[2001:db8::7]:8080",
        "x%41y",
        "a!$&'()*+,;=",
        "h:",
        "[v1.a:b]",
    ] {
        let buf = format!("GET / HTTP/1.1\r\nHost: {good}\r\n\r\n");
        with(buf.as_bytes(), |r| assert_eq!(r.host, good.as_bytes()));
    }
    for bad in [
        "a b", "u@h", "h:p", "h:80:81", "[::g]", "[::1]x", "[::1", "x%4", "x%zz", "h/p", "[v.x]",
        "[v1.]", "h\"", "\u{e9}",
    ] {
        let buf = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
        assert_eq!(
            err(buf.as_bytes()),
            BadRequest("invalid Host field"),
            "{bad:?}"
        );
    }
}

#[test]
fn content_length_framing() {
    assert_eq!(framing(&post("Content-Length: 0\r\n")), Framing::Length(0));
    assert_eq!(
        framing(&post("Content-Length: 42\r\n")),
        Framing::Length(42)
    );
    assert_eq!(
        framing(&post("content-length:007 \r\n")),
        Framing::Length(7)
    );
    assert_eq!(
        framing(&post("Content-Length: 18446744073709551615\r\n")),
        Framing::Length(u64::MAX)
    );
    assert_eq!(framing(&post("")), Framing::None);
    for bad in [
        "+5",
        "-1",
        "",
        "5 5",
        "5, 5",
        "5,5",
        "0x10",
        "18446744073709551616",
        "1e3",
    ] {
        let buf = post(&format!("Content-Length: {bad}\r\n"));
        assert_eq!(err(&buf), BadRequest("invalid Content-Length"), "{bad:?}");
    }
    assert_eq!(
        err(&post("Content-Length: 5\r\nContent-Length: 5\r\n")),
        BadRequest("more than one Content-Length field")
    );
}

#[test]
fn transfer_encoding_framing() {
    assert_eq!(
        framing(&post("Transfer-Encoding: chunked\r\n")),
        Framing::Chunked
    );
    assert_eq!(
        framing(&post("transfer-encoding:  Chunked \r\n")),
        Framing::Chunked
    );
    assert_eq!(
        framing(&post("Transfer-Encoding: ,chunked,\r\n")),
        Framing::Chunked
    );
    let cases: &[(&str, RequestError)] = &[
        ("Transfer-Encoding: gzip, chunked\r\n", NotImplemented),
        ("Transfer-Encoding: gzip,chunked\r\n", NotImplemented),
        (
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
            NotImplemented,
        ),
        ("Transfer-Encoding: x-foo;a=1 , chunked\r\n", NotImplemented),
        (
            "Transfer-Encoding: chunked, gzip\r\n",
            BadRequest("Transfer-Encoding does not end in chunked"),
        ),
        (
            "Transfer-Encoding: identity\r\n",
            BadRequest("Transfer-Encoding does not end in chunked"),
        ),
        (
            "Transfer-Encoding: gzip\r\n",
            BadRequest("Transfer-Encoding does not end in chunked"),
        ),
        (
            "Transfer-Encoding: chunked, chunked\r\n",
            BadRequest("chunked applied more than once"),
        ),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            BadRequest("chunked applied more than once"),
        ),
        (
            "Transfer-Encoding: gzip, chunked, chunked\r\n",
            BadRequest("chunked applied more than once"),
        ),
        (
            "Transfer-Encoding:\r\n",
            BadRequest("malformed Transfer-Encoding"),
        ),
        (
            "Transfer-Encoding: , ,\r\n",
            BadRequest("malformed Transfer-Encoding"),
        ),
        (
            "Transfer-Encoding:\r\nTransfer-Encoding: chunked\r\n",
            BadRequest("malformed Transfer-Encoding"),
        ),
        (
            "Transfer-Encoding: chunked;x=1\r\n",
            BadRequest("malformed Transfer-Encoding"),
        ),
        (
            "Transfer-Encoding: \"chunked\"\r\n",
            BadRequest("malformed Transfer-Encoding"),
        ),
        (
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            BadRequest("both Content-Length and Transfer-Encoding"),
        ),
        (
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            BadRequest("both Content-Length and Transfer-Encoding"),
        ),
    ];
    for (fields, want) in cases {
        assert_eq!(&err(&post(fields)), want, "{fields:?}");
    }
    assert_eq!(
        err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        BadRequest("Transfer-Encoding in an HTTP/1.0 request")
    );
    assert_eq!(NotImplemented.status(), 501);
}

#[test]
fn keep_alive_per_version() {
    assert!(info(&get("")).keep_alive);
    assert!(!info(&get("Connection: close\r\n")).keep_alive);
    assert!(!info(&get("Connection: Foo, CLOSE\r\n")).keep_alive);
    assert!(!info(&get("Connection: foo\r\nConnection: close\r\n")).keep_alive);
    assert!(info(&get("Connection: closed\r\n")).keep_alive);
    assert!(!info(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(info(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    assert!(!info(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
    assert!(!info(b"GET / HTTP/1.0\r\nKeep-Alive: timeout=5\r\n\r\n").keep_alive);
}

#[test]
fn expect_continue_needs_http11_and_a_body() {
    assert!(info(&post("Content-Length: 5\r\nExpect: 100-Continue\r\n")).expect_continue);
    assert!(
        info(&post(
            "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n"
        ))
        .expect_continue
    );
    assert!(!info(&post("Content-Length: 0\r\nExpect: 100-continue\r\n")).expect_continue);
    assert!(!info(&post("Expect: 100-continue\r\n")).expect_continue);
    assert!(!info(&post("Content-Length: 5\r\nExpect: something\r\n")).expect_continue);
    assert!(
        !info(b"POST / HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            .expect_continue
    );
}

#[test]
fn websocket_upgrade_detection() {
    let ws = "Connection: Upgrade\r\nUpgrade: WebSocket\r\n";
    assert!(info(&get(ws)).upgrade_websocket);
    assert!(
        info(&get(
            "Connection: keep-alive, upgrade\r\nUpgrade: h2c, websocket/13\r\n"
        ))
        .upgrade_websocket
    );
    assert!(!info(&get("Upgrade: websocket\r\n")).upgrade_websocket);
    assert!(!info(&get("Connection: upgrade\r\nUpgrade: h2c\r\n")).upgrade_websocket);
    assert!(!info(&get("Connection: upgrade\r\nUpgrade: websockets\r\n")).upgrade_websocket);
    assert!(!info(&post(ws)).upgrade_websocket);
    assert!(!info(format!("GET / HTTP/1.0\r\n{ws}\r\n").as_bytes()).upgrade_websocket);
}

#[test]
fn methods_head_and_idempotence() {
    for (m, head, idem) in [
        ("GET", false, true),
        ("HEAD", true, true),
        ("OPTIONS", false, true),
        ("TRACE", false, true),
        ("PUT", false, true),
        ("DELETE", false, true),
        ("POST", false, false),
        ("PATCH", false, false),
        ("get", false, false),
        ("head", false, false),
        ("X-CUSTOM", false, false),
    ] {
        let i = info(format!("{m} / HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        assert_eq!((i.is_head, i.idempotent), (head, idem), "{m}");
    }
}

#[test]
fn error_statuses() {
    assert_eq!(BadRequest("x").status(), 400);
    assert_eq!(UriTooLong.status(), 414);
    assert_eq!(HeaderTooLarge.status(), 431);
}

#[test]
fn extreme_limits_do_not_overflow() {
    let huge = Limits {
        max_request_line: usize::MAX,
        max_head: usize::MAX,
        max_fields: 100,
        ..L
    };
    let buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(result_with(buf, &huge), Ok(Some(buf.len())));
    assert_eq!(result_with(&buf[..5], &huge), Ok(None));
    let tiny = Limits {
        max_request_line: 0,
        ..L
    };
    assert_eq!(result_with(b"G", &tiny), Err(UriTooLong));
    assert_eq!(result_with(b"", &tiny), Ok(None));
}

#[test]
fn garbage_never_panics() {
    let seeds: [&[u8]; 3] = [
        b"GET http://h/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: upgrade\r\n\r\n",
        b"\r\nPOST /p HTTP/1.0\r\nContent-Length: 10\r\nX: \xff\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: [::1]:80\r\nExpect: 100-continue\r\n\r\n",
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let limits = Limits {
        max_head: 64,
        max_request_line: 40,
        max_fields: 4,
        ..L
    };
    for round in 0..20_000 {
        let mut buf = seeds[round % seeds.len()].to_vec();
        for _ in 0..1 + next() % 4 {
            let i = (next() as usize) % buf.len();
            buf[i] = [b'\r', b'\n', b' ', b':', b',', 0, next() as u8][(next() % 7) as usize];
        }
        let cut = (next() as usize) % (buf.len() + 1);
        for l in [&L, &limits] {
            let mut hs = [httparse::EMPTY_HEADER; 100];
            if let Ok(Some(r)) = parse(&buf[..cut], l, &mut hs) {
                assert!(r.head_len <= cut && r.head_len <= l.max_head);
            }
        }
    }
}
