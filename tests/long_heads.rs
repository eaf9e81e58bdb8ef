//! Heads right up to `--max-head` are forwarded whole or refused whole: the rewrite adds
//! X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host (which repeats Host), so a head just
//! under the limit can grow past the upstream buffer. It must then get 431 with nothing sent
//! upstream; a head that was cut would leave its body to be read as a second request.

mod common;

use common::*;

/// What the smuggled request would look like at the backend.
const SMUGGLED: &[u8] = b"GET /smuggled HTTP/1.1";

/// A body that, after a head cut in the middle of its `Content-Length` field, reads as the end
/// of that field and then a second request.
const SMUGGLING_BODY: &[u8] =
    b"tent-Length: 0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: internal\r\n\r\n";

/// The parts of one test request.
struct Shape {
    /// Length of the Host value.
    host: usize,
    /// Length of one client X-Forwarded-For value (0: none sent).
    xff: usize,
    /// Extra short fields.
    fields: usize,
    /// Length of a filler field's value, to bring the head to the size wanted.
    filler: usize,
}

fn request(shape: &Shape, body: &[u8]) -> Vec<u8> {
    let mut r = b"POST /upload HTTP/1.1\r\nHost: ".to_vec();
    r.extend(std::iter::repeat_n(b'h', shape.host));
    r.extend_from_slice(b"\r\n");
    if shape.xff > 0 {
        r.extend_from_slice(b"X-Forwarded-For: ");
        // Valid-looking address list: "1.2.3.4, 1.2.3.4, ..." cut to length.
        let list: Vec<u8> = b"10.1.2.3, "
            .iter()
            .copied()
            .cycle()
            .take(shape.xff)
            .collect();
        r.extend_from_slice(list.trim_ascii());
        r.extend_from_slice(b"\r\n");
    }
    for i in 0..shape.fields {
        r.extend_from_slice(format!("X-F{i}: v\r\n").as_bytes());
    }
    if shape.filler > 0 {
        r.extend_from_slice(b"X-Filler: ");
        r.extend(std::iter::repeat_n(b'f', shape.filler));
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    r.extend_from_slice(body);
    r
}

/// Send one request on a fresh connection; return the status and the backend's new requests.
fn exchange(proxy: &Proxy, backend: &RawBackend, req: &[u8]) -> (u16, Vec<Vec<u8>>) {
    let before = backend.requests().len();
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(req);
    let resp = client.read_response("POST");
    if resp.status == 200 {
        backend.wait_requests(before + 1, IO_TIMEOUT);
    }
    // A cut head would show up as a second request right behind the first: give it the time a
    // loopback write takes to arrive.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let all = backend.requests();
    (resp.status, all[before..].to_vec())
}

/// Check one exchange: either 200 and exactly one request that ends with our body, or 431 and
/// nothing at the backend. Never a request line from the body.
fn check(proxy: &Proxy, backend: &RawBackend, req: &[u8], body: &[u8], what: &str) -> u16 {
    let bytes_before = backend.bytes_received();
    let (status, got) = exchange(proxy, backend, req);
    for r in &got {
        assert!(
            find(r, SMUGGLED).is_none() || r.ends_with(body),
            "{what}: a smuggled request reached the backend: {}",
            show(&r[..r.len().min(200)])
        );
    }
    match status {
        200 => {
            assert_eq!(got.len(), 1, "{what}: one request in, one request out");
            assert!(got[0].ends_with(body), "{what}: the body arrived whole");
            let head_end = find(&got[0], b"\r\n\r\n").expect("a head") + 4;
            assert_eq!(
                head_end + body.len(),
                got[0].len(),
                "{what}: head then body"
            );
            let head = &got[0][..head_end];
            let cl = format!("\r\nContent-Length: {}\r\n", body.len());
            assert!(find(head, cl.as_bytes()).is_some(), "{what}: framing kept");
            assert!(head.ends_with(b"\r\n\r\n"), "{what}");
        }
        431 => {
            assert!(
                got.is_empty(),
                "{what}: 431 but the backend got {} requests",
                got.len()
            );
            assert_eq!(
                backend.bytes_received(),
                bytes_before,
                "{what}: 431 but bytes went up"
            );
        }
        other => panic!("{what}: unexpected status {other}"),
    }
    status
}

#[test]
fn a_host_near_the_head_limit_cannot_smuggle_its_body_as_a_second_request() {
    let backend = RawBackend::fixed(&ok_response("ok"));
    let proxy = Proxy::with_upstreams(&[backend.port()], &["--health-interval", "1h"]);
    // The case: a head of about 32,700 bytes, most of it Host, sized so that a rewrite
    // cut at the 64 KiB upstream buffer would end in the middle of `Con|tent-Length`, and the
    // body would complete that line and then read as a second request.
    let before_host = "POST / HTTP/1.1\r\nHost: ".len();
    let between =
        "\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ".len();
    let fixed = before_host + between + "\r\nCon".len();
    let cut_at = 64 * 1024;
    // 2 * host + fixed + filler line = cut_at, where the filler line ("X: " + f + CRLF) sits
    // after Host in both heads and takes the parity.
    let filler_line = |f: usize| "X: \r\n".len() + f;
    let head_len = |host: usize, f: usize| {
        before_host + host + filler_line(f) + "\r\nContent-Length: 63\r\n\r\n".len()
    };
    let (host, filler) = (0..8)
        .filter(|f| (cut_at - fixed - filler_line(*f)) % 2 == 0)
        .map(|f| ((cut_at - fixed - filler_line(f)) / 2, f))
        .find(|&(host, f)| head_len(host, f) < MAX_HEAD)
        .expect("a filler that has the parity and keeps the head under the limit");
    let mut req = b"POST / HTTP/1.1\r\nHost: ".to_vec();
    req.extend(std::iter::repeat_n(b'h', host));
    req.extend_from_slice(b"\r\nX: ");
    req.extend(std::iter::repeat_n(b'f', filler));
    req.extend_from_slice(
        format!("\r\nContent-Length: {}\r\n\r\n", SMUGGLING_BODY.len()).as_bytes(),
    );
    let head_len = req.len();
    assert!((32_600..MAX_HEAD).contains(&head_len), "{head_len}");
    req.extend_from_slice(SMUGGLING_BODY);
    let status = check(&proxy, &backend, &req, SMUGGLING_BODY, "32,700-byte head");
    assert_eq!(
        status, 431,
        "a head whose rewrite cannot be forwarded whole is refused"
    );
    // And the proxy is fine afterwards.
    let small = request(
        &Shape {
            host: 10,
            xff: 0,
            fields: 0,
            filler: 0,
        },
        b"hello",
    );
    assert_eq!(check(&proxy, &backend, &small, b"hello", "after"), 200);
}

/// Sweep head sizes from small to just under the limit with three shapes: a long Host (repeated
/// by X-Forwarded-Host), a long client X-Forwarded-For (appended to), many fields.
fn sweep(max_head: usize, extra: &[&str]) {
    let backend = RawBackend::fixed(&ok_response("ok"));
    let mut args = vec!["--health-interval", "1h"];
    args.extend_from_slice(extra);
    let proxy = Proxy::with_upstreams(&[backend.port()], &args);
    let body = SMUGGLING_BODY;
    let base = request(
        &Shape {
            host: 1,
            xff: 0,
            fields: 0,
            filler: 0,
        },
        body,
    )
    .len()
        - body.len();
    let mut statuses = Vec::new();
    for target in (2_000..max_head)
        .step_by(max_head / 16)
        .chain([max_head - 64, max_head - 1])
    {
        let room = target.saturating_sub(base + 40);
        let shapes = [
            (
                "long Host",
                Shape {
                    host: room,
                    xff: 0,
                    fields: 0,
                    filler: 0,
                },
            ),
            (
                "long X-Forwarded-For",
                Shape {
                    host: 8,
                    xff: room,
                    fields: 0,
                    filler: 0,
                },
            ),
            (
                "long Host and X-Forwarded-For",
                Shape {
                    host: room / 2,
                    xff: room / 2,
                    fields: 0,
                    filler: 0,
                },
            ),
            (
                "many fields",
                Shape {
                    host: 8,
                    xff: 0,
                    fields: 90,
                    filler: room.saturating_sub(90 * 9),
                },
            ),
        ];
        for (what, shape) in shapes {
            let req = request(&shape, body);
            let head_len = req.len() - body.len();
            if head_len >= max_head {
                continue;
            }
            let status = check(
                &proxy,
                &backend,
                &req,
                body,
                &format!("{what}, {head_len}-byte head"),
            );
            statuses.push((what, head_len, status));
            // A head that is not near the limit is always forwarded.
            if head_len < max_head / 2 {
                assert_eq!(status, 200, "{what}, {head_len}-byte head");
            }
        }
    }
    // Fields that the rewrite does not repeat fit whatever their size under the limit.
    for (what, len, status) in &statuses {
        if *what == "many fields" {
            assert_eq!(*status, 200, "{what}, {len}-byte head");
        }
    }
}

#[test]
fn head_sizes_up_to_the_default_limit_are_forwarded_whole_or_refused_whole() {
    sweep(MAX_HEAD, &[]);
}

#[test]
fn head_sizes_up_to_a_raised_limit_are_forwarded_whole_or_refused_whole() {
    sweep(128 * 1024, &["--max-head", "128k"]);
}
