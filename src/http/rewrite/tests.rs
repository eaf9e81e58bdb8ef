//! The rewriters' output, byte for byte, for each rule they apply.

use super::*;
use crate::http::{request, response, Limits, Version};
use std::net::{Ipv4Addr, Ipv6Addr};

const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

fn ctx() -> RequestContext {
    RequestContext::new(V4)
}

fn rewrite_request(head: &[u8], ctx: &RequestContext) -> String {
    let mut hs = [httparse::EMPTY_HEADER; 100];
    let req = match request::parse(head, &Limits::DEFAULT, &mut hs) {
        Ok(Some(req)) => req,
        other => panic!("{other:?} for {:?}", String::from_utf8_lossy(head)),
    };
    let mut out = Vec::new();
    request_head(&req, ctx, &mut out, usize::MAX).unwrap();
    assert_head_invariants(&out);
    String::from_utf8(out).expect("ASCII in, ASCII out")
}

fn rewrite_response(head: &[u8], request_is_head: bool, ctx: &ResponseContext) -> String {
    let mut hs = [httparse::EMPTY_HEADER; 100];
    let resp = match response::parse(head, request_is_head, &Limits::DEFAULT, &mut hs) {
        Ok(Some(resp)) => resp,
        other => panic!("{other:?} for {:?}", String::from_utf8_lossy(head)),
    };
    let mut out = Vec::new();
    response_head(&resp, ctx, &mut out, usize::MAX).unwrap();
    assert_head_invariants(&out);
    String::from_utf8(out).expect("ASCII in, ASCII out")
}

/// Every line ends in CRLF, no other CR, LF or NUL, exactly one blank line at the end.
fn assert_head_invariants(out: &[u8]) {
    assert!(
        out.ends_with(b"\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(out)
    );
    let body = &out[..out.len() - 2];
    for line in body.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue; // after the last LF
        }
        assert!(
            line.ends_with(b"\r"),
            "line without CRLF in {:?}",
            String::from_utf8_lossy(out)
        );
        let line = &line[..line.len() - 1];
        assert!(
            !line.is_empty(),
            "blank line inside {:?}",
            String::from_utf8_lossy(out)
        );
        assert!(
            !line.contains(&b'\r') && !line.contains(&0),
            "{:?}",
            String::from_utf8_lossy(out)
        );
    }
}

fn resp_ctx(framing: Framing) -> ResponseContext {
    ResponseContext {
        framing,
        close: false,
        keep_alive_http10: false,
        upgrade: false,
        client_version: Version::Http11,
    }
}

/// [`resp_ctx`] for an HTTP/1.0 client, closing (the only way a de-chunked body ends).
fn resp_ctx_http10(framing: Framing) -> ResponseContext {
    ResponseContext {
        close: true,
        client_version: Version::Http10,
        ..resp_ctx(framing)
    }
}

#[test]
fn simple_get_is_forwarded_exactly() {
    assert_eq!(
        rewrite_request(b"GET /a?b HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nUser-Agent:  t/1 \r\n\r\n", &ctx()),
        "GET /a?b HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nUser-Agent: t/1\r\n\
         X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: example.com\r\n\r\n"
    );
}

#[test]
fn appends_without_clearing() {
    let mut hs = [httparse::EMPTY_HEADER; 8];
    let req = request::parse(
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        &Limits::DEFAULT,
        &mut hs,
    );
    let req = req.ok().flatten().expect("valid");
    let mut out = b"previous".to_vec();
    request_head(&req, &ctx(), &mut out, usize::MAX).unwrap();
    assert!(out.starts_with(b"previousGET / HTTP/1.1\r\nHost: h\r\n"));
}

#[test]
fn a_head_that_outgrows_its_bound_is_refused_whole_and_nothing_is_appended() {
    let host = "h".repeat(1000);
    let head = format!("POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n\r\n");
    let mut hs = [httparse::EMPTY_HEADER; 8];
    let req = request::parse(head.as_bytes(), &Limits::DEFAULT, &mut hs);
    let req = req.ok().flatten().expect("valid");
    let mut out = b"previous".to_vec();
    let len = request_head(&req, &ctx(), &mut out, usize::MAX).unwrap();
    // X-Forwarded-Host repeats Host: the rewrite is about twice the head.
    assert!(len > 2 * host.len(), "{len}");
    for max in [len, len + 1] {
        out.truncate(8);
        assert_eq!(request_head(&req, &ctx(), &mut out, max), Ok(len));
        assert_eq!(out.len(), 8 + len);
    }
    for max in [0, head.len(), len - 1] {
        out.truncate(8);
        assert_eq!(
            request_head(&req, &ctx(), &mut out, max),
            Err(HeadTooLarge { len, max })
        );
        assert_eq!(out, b"previous", "nothing of a refused head is left behind");
    }
}

#[test]
fn hop_by_hop_fields_are_dropped() {
    let out = rewrite_request(
        b"GET / HTTP/1.1\r\nConnection: keep-alive, X-Hop, te\r\nHost: h\r\nKeep-Alive: 5\r\n\
          Proxy-Connection: close\r\nTE: trailers\r\nUpgrade: h2c\r\nTrailer: X-T\r\n\
          x-hop: 1\r\nX-Kept: 2\r\nconnection: X-ALSO\r\nx-also: 3\r\n\r\n",
        &ctx(),
    );
    assert_eq!(
        out,
        "GET / HTTP/1.1\r\nHost: h\r\nX-Kept: 2\r\nX-Forwarded-For: 192.0.2.7\r\n\
         X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n"
    );
}

/// Found by the request_head/response_head fuzz invariants (every end-to-end field, and
/// only those, is forwarded): with `close` the only Connection option, a `Close` field
/// was forwarded, though RFC 9110 §7.6.1 says to remove every field a connection-option
/// names.
#[test]
fn a_close_option_removes_a_close_field() {
    assert_eq!(
        rewrite_request(
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nClose: x\r\nX-Kept: 1\r\n\r\n",
            &ctx()
        ),
        "GET / HTTP/1.1\r\nHost: h\r\nX-Kept: 1\r\nX-Forwarded-For: 192.0.2.7\r\n\
         X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n"
    );
    assert_eq!(
        rewrite_response(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nCLOSE: x\r\nServer: s\r\nContent-Length: 0\r\n\r\n",
            false,
            &resp_ctx(Framing::Length(0)),
        ),
        "HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 0\r\n\r\n"
    );
    // Without the option a Close field is an ordinary field.
    assert_eq!(
        rewrite_request(b"GET / HTTP/1.1\r\nHost: h\r\nClose: x\r\n\r\n", &ctx()),
        "GET / HTTP/1.1\r\nHost: h\r\nClose: x\r\nX-Forwarded-For: 192.0.2.7\r\n\
         X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n"
    );
}

#[test]
fn connection_cannot_remove_the_fields_we_write() {
    let out = rewrite_request(
        b"POST / HTTP/1.1\r\nHost: h\r\nConnection: host, content-length, x-forwarded-for\r\n\
          X-Forwarded-For: 10.0.0.1\r\nContent-Length: 3\r\n\r\n",
        &ctx(),
    );
    assert_eq!(
        out,
        "POST / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1, 192.0.2.7\r\n\
         X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nContent-Length: 3\r\n\r\n"
    );
}

#[test]
fn x_forwarded_for_is_appended_across_fields() {
    let head = b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2\r\nHost: h\r\n\
                 x-forwarded-for:\r\nX-FORWARDED-FOR: 3.3.3.3\r\n\r\n";
    let out = rewrite_request(head, &ctx());
    assert!(
        out.contains("\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 192.0.2.7\r\n"),
        "{out}"
    );
    assert_eq!(out.matches("orwarded-For").count(), 1);
    let replace = RequestContext {
        forwarded_for: ForwardedFor::Replace,
        ..ctx()
    };
    let out = rewrite_request(head, &replace);
    assert!(out.contains("\r\nX-Forwarded-For: 192.0.2.7\r\n"), "{out}");
    assert_eq!(out.matches("orwarded-For").count(), 1);
    assert_eq!(ForwardedFor::default(), ForwardedFor::Append);
}

#[test]
fn an_edge_drops_the_clients_own_forwarded_and_x_real_ip_a_relay_keeps_them() {
    let head = b"GET / HTTP/1.1\r\nHost: h\r\nForwarded: for=6.6.6.6\r\nX-A: 1\r\n\
                 x-real-ip: 6.6.6.6\r\nX-B: 2\r\n\r\n";
    let replace = RequestContext {
        forwarded_for: ForwardedFor::Replace,
        ..ctx()
    };
    assert_eq!(
        rewrite_request(head, &replace),
        "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-B: 2\r\nX-Forwarded-For: 192.0.2.7\r\n\
         X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n"
    );
    let out = rewrite_request(head, &ctx());
    assert!(
        out.contains("\r\nForwarded: for=6.6.6.6\r\nX-A: 1\r\nx-real-ip: 6.6.6.6\r\n"),
        "{out}"
    );
    // Past the 64th field too.
    let mut many = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 0..70 {
        many.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
    }
    many.extend_from_slice(b"X-Real-IP: 6.6.6.6\r\n\r\n");
    let out = rewrite_request(&many, &replace);
    assert!(
        !out.contains("6.6.6.6") && out.contains("\r\nX-69: 69\r\n"),
        "{out}"
    );
}

#[test]
fn client_addresses_are_written_plainly() {
    let head = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    let cases = [
        (
            IpAddr::V6(Ipv4Addr::new(203, 0, 113, 9).to_ipv6_mapped()),
            "203.0.113.9",
        ),
        (IpAddr::V6(Ipv6Addr::LOCALHOST), "::1"),
        (
            "2001:db8::1:0:0:1".parse().expect("literal"),
            "2001:db8::1:0:0:1",
        ),
        (IpAddr::V4(Ipv4Addr::LOCALHOST), "127.0.0.1"),
        (IpAddr::V4(Ipv4Addr::UNSPECIFIED), "0.0.0.0"),
        (IpAddr::V4(Ipv4Addr::BROADCAST), "255.255.255.255"),
        (IpAddr::V4(Ipv4Addr::new(10, 200, 3, 45)), "10.200.3.45"),
        (
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"
                .parse()
                .expect("literal"),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
        ),
    ];
    for (ip, text) in cases {
        assert_eq!(ClientAddr::new(ip).to_string(), text);
        let out = rewrite_request(head, &RequestContext::new(ip));
        assert!(
            out.contains(&format!("\r\nX-Forwarded-For: {text}\r\n")),
            "{out}"
        );
    }
}

#[test]
fn spoofable_forwarding_fields_are_replaced() {
    let out = rewrite_request(
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n\r\n",
        &ctx(),
    );
    assert_eq!(
        out,
        "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n\
         X-Forwarded-Host: h\r\n\r\n"
    );
}

#[test]
fn exactly_one_framing_field() {
    let out = rewrite_request(
        b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
        &ctx(),
    );
    assert!(
        out.ends_with("X-Forwarded-Host: h\r\nContent-Length: 0\r\n\r\n"),
        "{out}"
    );
    let out = rewrite_request(
        b"POST /u HTTP/1.1\r\nHost: h\r\ncontent-length: 0012\r\n\r\n",
        &ctx(),
    );
    assert!(
        out.ends_with("X-Forwarded-Host: h\r\nContent-Length: 12\r\n\r\n"),
        "{out}"
    );
    let out = rewrite_request(
        b"POST /u HTTP/1.1\r\nTransfer-Encoding: Chunked\r\nHost: h\r\n\r\n",
        &ctx(),
    );
    assert!(
        out.ends_with("X-Forwarded-Host: h\r\nTransfer-Encoding: chunked\r\n\r\n"),
        "{out}"
    );
    assert_eq!(out.matches("Transfer-Encoding").count(), 1);
    let out = rewrite_request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", &ctx());
    assert!(!out.contains("Content-Length") && !out.contains("Transfer-Encoding"));
}

#[test]
fn websocket_upgrade_is_forwarded() {
    let out = rewrite_request(
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        &ctx(),
    );
    assert_eq!(
        out,
        "GET /ws HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n\
         X-Forwarded-Host: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    );
    // Another protocol: Upgrade and Connection simply vanish.
    let out = rewrite_request(
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
        &ctx(),
    );
    assert!(!out.contains("pgrade"), "{out}");
}

#[test]
fn absolute_and_asterisk_forms() {
    let out = rewrite_request(
        b"GET http://up.example:81/p?q HTTP/1.1\r\nHost: ignored\r\n\r\n",
        &ctx(),
    );
    assert!(
        out.starts_with("GET /p?q HTTP/1.1\r\nHost: up.example:81\r\nX-Forwarded-For"),
        "{out}"
    );
    assert!(out.contains("\r\nX-Forwarded-Host: up.example:81\r\n"));
    let out = rewrite_request(b"GET http://h?q HTTP/1.1\r\nHost: h\r\n\r\n", &ctx());
    assert!(out.starts_with("GET /?q HTTP/1.1\r\n"), "{out}");
    let out = rewrite_request(b"OPTIONS http://h HTTP/1.1\r\nHost: h\r\n\r\n", &ctx());
    assert!(out.starts_with("OPTIONS * HTTP/1.1\r\n"), "{out}");
    let out = rewrite_request(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", &ctx());
    assert!(out.starts_with("OPTIONS * HTTP/1.1\r\n"), "{out}");
}

#[test]
fn http10_expectations_are_dropped() {
    for expect in [
        "Expect: 100-continue",
        "expect: 100-Continue",
        "EXPECT: something",
    ] {
        let head = format!(
            "POST /u HTTP/1.0\r\nHost: h\r\n{expect}\r\nX-A: 1\r\nContent-Length: 3\r\n\r\n"
        );
        assert_eq!(
            rewrite_request(head.as_bytes(), &ctx()),
            "POST /u HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-Forwarded-For: 192.0.2.7\r\n\
             X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nContent-Length: 3\r\n\r\n"
        );
    }
    assert_eq!(
        rewrite_request(
            b"GET / HTTP/1.0\r\nExpect: 100-continue\r\nExpect: x\r\n\r\n",
            &ctx()
        ),
        "GET / HTTP/1.1\r\nHost: \r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n\r\n"
    );
    // HTTP/1.1 keeps its expectations, every one of them.
    assert_eq!(
        rewrite_request(
            b"POST /u HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nExpect: x\r\n\
              Content-Length: 3\r\n\r\n",
            &ctx()
        ),
        "POST /u HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nExpect: x\r\n\
         X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\
         Content-Length: 3\r\n\r\n"
    );
}

#[test]
fn fields_with_underscores_are_dropped_unless_allowed() {
    let head = b"GET / HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6\r\nX-A: 1\r\n\
                 Transfer_Encoding: chunked\r\ncontent_length: 5\r\n_: x\r\nX-B: 2\r\n\r\n";
    assert_eq!(
        rewrite_request(head, &ctx()),
        "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-B: 2\r\nX-Forwarded-For: 192.0.2.7\r\n\
         X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n"
    );
    let allowed = RequestContext {
        underscores_in_headers: true,
        ..ctx()
    };
    assert_eq!(
        rewrite_request(head, &allowed),
        "GET / HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6\r\nX-A: 1\r\n\
         Transfer_Encoding: chunked\r\ncontent_length: 5\r\n_: x\r\nX-B: 2\r\n\
         X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n"
    );
    // Allowed, they are ordinary fields: not framing, not X-Forwarded-For.
    let replace = RequestContext {
        forwarded_for: ForwardedFor::Replace,
        ..allowed
    };
    let out = rewrite_request(head, &replace);
    assert!(out.contains("\r\nX-Forwarded-For: 192.0.2.7\r\n"), "{out}");
    // Connection may still name one: it goes either way.
    assert_eq!(
        rewrite_request(
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: X_Hop\r\nx_hop: 1\r\n\r\n",
            &allowed
        ),
        "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.7\r\n\
         X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n"
    );
    // Responses are not filtered.
    assert_eq!(
        rewrite_response(
            b"HTTP/1.1 200 OK\r\nX_Up: 1\r\nContent-Length: 0\r\n\r\n",
            false,
            &resp_ctx(Framing::Length(0))
        ),
        "HTTP/1.1 200 OK\r\nX_Up: 1\r\nContent-Length: 0\r\n\r\n"
    );
}

#[test]
fn http10_without_host_gets_an_empty_host() {
    let out = rewrite_request(b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &ctx());
    assert_eq!(
        out,
        "GET /x HTTP/1.1\r\nHost: \r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n\r\n"
    );
}

/// Varied valid heads survive rewrite → parse with their meaning intact.
#[test]
fn rewritten_requests_parse_back_to_the_same_request() {
    let heads: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /x?y=z HTTP/1.0\r\n\r\n",
        b"\r\nHEAD /h HTTP/1.0\r\nHost: [::1]:8080\r\nConnection: keep-alive\r\n\r\n",
        b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nConnection: close, X-A\r\nX-A: 1\r\n\r\n",
        b"PUT /p HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nTE: trailers\r\nTrailer: X\r\n\r\n",
        b"DELETE http://Up:1/q HTTP/1.1\r\nHost: other\r\nX-Forwarded-For: 9.9.9.9\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\nKeep-Alive: 1\r\nProxy-Connection: x\r\n\r\n",
        b"OPTIONS https://h HTTP/1.2\r\nHost: h\r\n\r\n",
        b"GET http://h?x HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nX: \xff\t\xfe\r\n\r\n",
        b"PATCH /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nExpect: 100-continue\r\nA:\r\n\r\n",
    ];
    let ips: [IpAddr; 3] = [
        V4,
        IpAddr::V6(Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped()),
        IpAddr::V6("fe80::1".parse().expect("literal")),
    ];
    for (i, head) in heads.iter().enumerate() {
        let ip = ips[i % ips.len()];
        let mut hs = [httparse::EMPTY_HEADER; 100];
        let req = request::parse(head, &Limits::DEFAULT, &mut hs)
            .ok()
            .flatten()
            .expect("valid head");
        let mut out = Vec::new();
        request_head(&req, &RequestContext::new(ip), &mut out, usize::MAX).unwrap();
        assert_head_invariants(&out);

        let mut hs2 = [httparse::EMPTY_HEADER; 100];
        let again = request::parse(&out, &Limits::DEFAULT, &mut hs2)
            .ok()
            .flatten()
            .expect("reparses");
        let text = String::from_utf8_lossy(&out);
        assert_eq!(again.head_len, out.len(), "{text}");
        assert_eq!(again.method, req.method, "{text}");
        let want_path = if req.path.starts_with('?') {
            format!("/{}", req.path)
        } else {
            req.path.to_string()
        };
        assert_eq!(again.path, want_path, "{text}");
        assert_eq!(again.target, want_path, "{text}");
        assert_eq!(again.host, req.host, "{text}");
        assert_eq!(again.framing, req.framing, "{text}");
        assert_eq!(again.version, Version::Http11);
        assert_eq!(
            again.info.upgrade_websocket, req.info.upgrade_websocket,
            "{text}"
        );
        let xff: Vec<&[u8]> = again
            .headers
            .iter()
            .filter(|h| h.name == "X-Forwarded-For")
            .map(|h| h.value)
            .collect();
        assert_eq!(xff.len(), 1, "{text}");
        let want_ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        assert!(xff[0].ends_with(want_ip.to_string().as_bytes()), "{text}");
        for h in again.headers {
            let hop = [
                "connection",
                "te",
                "upgrade",
                "keep-alive",
                "proxy-connection",
                "trailer",
                "x-a",
            ]
            .iter()
            .any(|n| h.name.eq_ignore_ascii_case(n));
            assert!(!hop || req.info.upgrade_websocket, "{} in {text}", h.name);
            assert!(
                !h.value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0),
                "{text}"
            );
        }
        assert_eq!(
            again
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("host"))
                .count(),
            1
        );
    }
}

#[test]
fn simple_response_is_forwarded_exactly() {
    assert_eq!(
        rewrite_response(
            b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\nSet-Cookie: a=b\r\n\r\n",
            false,
            &resp_ctx(Framing::Length(5)),
        ),
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nSet-Cookie: a=b\r\nContent-Length: 5\r\n\r\n"
    );
}

#[test]
fn empty_reason_keeps_its_space() {
    assert_eq!(
        rewrite_response(b"HTTP/1.1 204\r\n\r\n", false, &resp_ctx(Framing::None)),
        "HTTP/1.1 204 \r\n\r\n"
    );
    assert_eq!(
        rewrite_response(b"HTTP/1.1 204 \r\n\r\n", false, &resp_ctx(Framing::None)),
        "HTTP/1.1 204 \r\n\r\n"
    );
}

#[test]
fn response_hop_by_hop_fields_are_dropped() {
    let out = rewrite_response(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal\r\nKeep-Alive: timeout=5\r\n\
          Proxy-Connection: x\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\nx-internal: s\r\n\
          Content-Length: 0\r\nServer: up\r\n\r\n",
        false,
        &resp_ctx(Framing::Length(0)),
    );
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nServer: up\r\nContent-Length: 0\r\n\r\n"
    );
}

#[test]
fn chunked_responses_keep_their_other_codings() {
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(
        rewrite_response(chunked, false, &resp_ctx(Framing::Chunked)),
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let gzip = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: GZIP\r\nTransfer-Encoding: Chunked\r\n\r\n";
    assert_eq!(
        rewrite_response(gzip, false, &resp_ctx(Framing::Chunked)),
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: GZIP, chunked\r\n\r\n"
    );
    // Close-delimited under a coding: the bytes pass untouched, so does the list.
    let close = ResponseContext {
        close: true,
        ..resp_ctx(Framing::UntilClose)
    };
    let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n";
    assert_eq!(
        rewrite_response(raw, false, &close),
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(
        rewrite_response(b"HTTP/1.0 200 OK\r\nServer: s\r\n\r\n", false, &close),
        "HTTP/1.1 200 OK\r\nServer: s\r\nConnection: close\r\n\r\n"
    );
}

/// RFC 9112 §6.1: "A server MUST NOT send a response containing Transfer-Encoding unless
/// the corresponding request indicates HTTP/1.1". The session refuses the coded bodies
/// (`response::client_can_decode`); the rewriter writes no Transfer-Encoding whatever it
/// is given.
#[test]
fn http10_clients_never_get_transfer_encoding() {
    let ctx = resp_ctx_http10(Framing::UntilClose);
    // De-chunked: the chunked layer is gone, and so is the field.
    assert_eq!(
        rewrite_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nServer: s\r\n\r\n",
            false,
            &ctx
        ),
        "HTTP/1.1 200 OK\r\nServer: s\r\nConnection: close\r\n\r\n"
    );
    for coded in [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: GZIP\r\nTransfer-Encoding: Chunked\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    ] {
        assert_eq!(
            rewrite_response(coded, false, &ctx),
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
        );
    }
    // HEAD: the Transfer-Encoding describing the GET body goes, a Content-Length stays.
    let head_ctx = resp_ctx_http10(Framing::None);
    assert_eq!(
        rewrite_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nETag: \"x\"\r\n\r\n",
            true,
            &head_ctx
        ),
        "HTTP/1.1 200 OK\r\nETag: \"x\"\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(
        rewrite_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\nETag: \"x\"\r\n\r\n",
            true,
            &head_ctx
        ),
        "HTTP/1.1 200 OK\r\nETag: \"x\"\r\nContent-Length: 42\r\nConnection: close\r\n\r\n"
    );
    let keep_alive = ResponseContext {
        close: false,
        keep_alive_http10: true,
        ..head_ctx
    };
    assert_eq!(
        rewrite_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
            &keep_alive
        ),
        "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n"
    );
    // A length is a length, whoever asks.
    assert_eq!(
        rewrite_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            false,
            &resp_ctx_http10(Framing::Length(2))
        ),
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
    );
}

#[test]
fn bodiless_responses_keep_what_describes_the_would_be_body() {
    let none = resp_ctx(Framing::None);
    assert_eq!(
        rewrite_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\nETag: \"x\"\r\n\r\n",
            true,
            &none
        ),
        "HTTP/1.1 200 OK\r\nETag: \"x\"\r\nContent-Length: 42\r\n\r\n"
    );
    assert_eq!(
        rewrite_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
            &none
        ),
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    assert_eq!(
        rewrite_response(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 42\r\n\r\n",
            false,
            &none
        ),
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 42\r\n\r\n"
    );
    assert_eq!(
        rewrite_response(
            b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            &none
        ),
        "HTTP/1.1 304 Not Modified\r\n\r\n"
    );
    assert_eq!(
        rewrite_response(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
            false,
            &none
        ),
        "HTTP/1.1 204 No Content\r\n\r\n"
    );
}

#[test]
fn interim_responses_keep_their_fields() {
    assert_eq!(
        rewrite_response(
            b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\nLink: </a.js>; rel=preload\r\n\r\n",
            false,
            &resp_ctx(Framing::None),
        ),
        "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\nLink: </a.js>; rel=preload\r\n\r\n"
    );
    assert_eq!(
        rewrite_response(
            b"HTTP/1.1 100 Continue\r\n\r\n",
            false,
            &resp_ctx(Framing::None)
        ),
        "HTTP/1.1 100 Continue\r\n\r\n"
    );
}

#[test]
fn connection_options_for_the_client() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n";
    let ka = ResponseContext {
        keep_alive_http10: true,
        ..resp_ctx(Framing::Length(0))
    };
    assert_eq!(
        rewrite_response(head, false, &ka),
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
    );
    let both = ResponseContext { close: true, ..ka };
    assert_eq!(
        rewrite_response(head, false, &both),
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
}

#[test]
fn switching_protocols_to_websocket() {
    let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    let up = ResponseContext {
        upgrade: true,
        close: true,
        ..resp_ctx(Framing::None)
    };
    assert_eq!(
        rewrite_response(head, false, &up),
        "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
         Connection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    );
    // Not an upgrade we agreed to: Upgrade and Connection are dropped.
    assert_eq!(
        rewrite_response(head, false, &resp_ctx(Framing::None)),
        "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
}
