#!/usr/bin/env python3
"""Write the hand-made seed inputs into fuzz/corpus/<target>/ (seed-*.bin).

Seeds are realistic heads and bodies plus the smuggling shapes a proxy must refuse or read
exactly one way. For the head targets the input's last byte picks options (see
src/fuzzing.rs): each head is written as is (it ends in '\\n', 0x0a) and again followed by a
few option bytes, so the seeds start with every option in play.
"""
import hashlib
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")

UA = b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

REQUESTS = [
    # Browsers and tools.
    b"GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: " + UA + b"\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Connection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\n"
    b"Sec-Fetch-Mode: navigate\r\nSec-Fetch-Site: none\r\nPriority: u=0, i\r\n\r\n",
    b"GET /static/app.js?v=3 HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\n"
    b"Referer: http://example.com/\r\nCookie: a=1; b=2\r\nIf-None-Match: \"abc\"\r\n\r\n",
    b"GET /x HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
    b"GET /a HTTP/1.0\r\n\r\n",
    b"GET /a HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
    b"HEAD /index.html HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"POST /form HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: 7\r\n\r\na=1&b=2",
    b"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n"
    b"Trailer: X-Sum\r\nTE: trailers\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"PUT /obj HTTP/1.1\r\nHost: [::1]:9000\r\nContent-Length: 0\r\n\r\n",
    b"DELETE /obj/1 HTTP/1.1\r\nHost: 192.0.2.1\r\nX-Forwarded-For: 203.0.113.5, 10.0.0.1\r\n"
    b"X-Forwarded-For: 10.0.0.2\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n\r\n",
    b"PATCH /p HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n{}",
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    b"OPTIONS http://h:81 HTTP/1.1\r\nHost: other\r\n\r\n",
    # absolute-form.
    b"GET http://up.example:81/p?q=1 HTTP/1.1\r\nHost: ignored\r\nProxy-Connection: keep-alive\r\n\r\n",
    b"GET https://h?x HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET http://[2001:db8::1]:8080/ HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET HTTP://[v1.fe]/a HTTP/1.2\r\nHost: h\r\n\r\n",
    # WebSocket and other upgrades.
    b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    # Connection naming fields, hop-by-hop fields.
    b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n"
    b"X-Kept: 2\r\nconnection: x-also\r\nX-Also: 3\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nConnection: host, content-length, x-forwarded-for\r\n"
    b"X-Forwarded-For: 10.0.0.1\r\n\r\n",
    # Smuggling shapes (refused or read one way only).
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\tchunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551616\r\n\r\n",
    b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\nHost: h\n\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /a#f HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET * HTTP/1.1\r\nHost: h\r\n\r\n",
    b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\n X: folded\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nX-Obs: caf\xc3\xa9 \xff\r\n\r\n",
]

RESPONSES = [
    b"HTTP/1.1 200 OK\r\nDate: Mon, 27 Jul 2009 12:28:53 GMT\r\nServer: Apache\r\n"
    b"Last-Modified: Wed, 22 Jul 2009 19:15:56 GMT\r\nETag: \"34aa387-d-1568eb00\"\r\n"
    b"Accept-Ranges: bytes\r\nContent-Length: 5\r\nVary: Accept-Encoding\r\n"
    b"Content-Type: text/plain\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nTransfer-Encoding: chunked\r\n"
    b"Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 42\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
    b"HTTP/1.1 301 Moved Permanently\r\nLocation: http://example.com/\r\nContent-Length: 0\r\n"
    b"Connection: close\r\n\r\n",
    b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 500 Internal Server Error\r\nConnection: X-Internal\r\nX-Internal: secret\r\n"
    b"Proxy-Connection: x\r\nTrailer: X-T\r\nTE: trailers\r\nUpgrade: h2c\r\nContent-Length: 3\r\n\r\nerr",
    b"HTTP/1.1 200 Tr\xc3\xa8s bien\r\nContent-Length: 1\r\n\r\nx",
    b"HTTP/1.1 200 \xff\r\nContent-Length: 1\r\n\r\nx",
    b"HTTP/1.1 200 OK\r\nSet-Cookie: a=b; Path=/\r\nSet-Cookie: c=d\r\nContent-Length: 0\r\n\r\n",
    # Smuggling and malformed shapes.
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
    b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
    b"HTTP/1.1 099 Low\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/2 200\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n Folded: x\r\n\r\n",
]

CHUNKED = [
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    b"0\r\n\r\n",
    b"000A\r\n0123456789\r\n1b\r\n0123456789abcdefghijklmnopq\r\n00\r\n\r\n",
    b"3;name=value;quoted=\"a b; c\"\r\nabc\r\n2 ; x\r\nde\r\n1 \t\r\nf\r\n0;last\r\n"
    b"Expires: never\r\nX-Sum:\r\n\r\n",
    b"4\r\nwiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\nGET / HTTP/1.1\r\n",
    b"1\r\na\r\n0\r\n\r\n",
    b"10\r\n0123456789abcdef\r\n0\r\nA: 1\r\nB: 2\r\n\r\n",
    b"40\r\n" + bytes(range(64)) + b"\r\n0\r\n\r\n",
    b"ffffffffffffffff\r\nabc",
    b"10000000000000000\r\n",
    b"0" * 31 + b"1\r\nx\r\n0\r\n\r\n",
    b"0" * 32 + b"1\r\nx\r\n0\r\n\r\n",
    b"5\nhello\n0\n\n",
    b"5\r\nhelloX\r\n0\r\n\r\n",
    b"5\r\nhello\r\n0\r\nX: a\nb\r\n\r\n",
    b"5\r\nhello\r\n0\r\n X: folded\r\n\r\n",
    b"5;" + b"e" * 2000 + b"\r\nhello\r\n0\r\n\r\n",
    b"0\r\n" + b"T: " + b"v" * 9000 + b"\r\n\r\n",
    b"-1\r\n",
    b"0x5\r\nhello\r\n0\r\n\r\n",
    b"5 5\r\nhello\r\n0\r\n\r\n",
    b"2\r\nab\r\n2\r\ncd\r\n",
]

SIG = b"\r\n\r\n\x00\r\nQUIT\n"

PROXY = [
    # v1: both families, UNKNOWN, and the malformed shapes a listener must refuse.
    b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\nGET / HTTP/1.1\r\n",
    b"PROXY TCP6 2001:db8::7 2001:db8::1 56324 443\r\n",
    b"PROXY TCP6 ::ffff:10.0.0.1 ::1 1 65535\r\n",
    b"PROXY UNKNOWN\r\n",
    b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
    b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
    b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
    b"PROXY " + b"x" * 120 + b"\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
    # v2: PROXY over TCP4/TCP6, LOCAL, UNSPEC, UNIX, with TLVs, truncated, bad version.
    SIG + b"\x21\x11\x00\x0c" + bytes([203, 0, 113, 7, 192, 0, 2, 1]) + b"\xdc\x04\x01\xbb",
    SIG + b"\x21\x21\x00\x24" + bytes(range(32)) + b"\xdc\x04\x01\xbb",
    SIG + b"\x20\x00\x00\x00GET / HTTP/1.1\r\n",
    SIG + b"\x21\x00\x00\x00",
    SIG + b"\x21\x31\x00\xd8" + b"/" * 216,
    SIG + b"\x21\x11\x00\x14" + bytes([10, 0, 0, 1, 10, 0, 0, 2]) + b"\x00\x50\x00\x51"
    + b"\x04\x00\x05hello",
    SIG + b"\x21\x11\x00\x08" + bytes(8),
    SIG + b"\x21\x21\x00\x0c" + bytes(12),
    SIG + b"\x11\x11\x00\x0c" + bytes(12),
    SIG + b"\x2f\x11\x00\x0c" + bytes(12),
    SIG + b"\x21\x11\xff\xff",
    SIG[:7],
    # Round-trip material: 40+ bytes whose first byte picks the family (odd: IPv6).
    bytes([1]) + bytes(range(16)) + bytes(range(16, 32)) + b"\x12\x34\x56\x78" + bytes(4),
    bytes([0]) + bytes([127, 0, 0, 1]) + bytes(12) + bytes([10, 1, 2, 3]) + bytes(12)
    + b"\xff\xff\x00\x01" + bytes(4),
    bytes([1]) + bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 9]) + bytes(16)
    + b"\x00\x50\x1f\x90" + bytes(4),
]


def write(target, data, tag=""):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16] + tag + ".bin"
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    for head in REQUESTS:
        write("request_head", head)
        # Option bytes: Replace (4), IPv4-mapped (1), IPv6 (2), small limits (0x18).
        for opt in (b"\x04", b"\x01", b"\x1a"):
            write("request_head", head + opt)
    for head in RESPONSES:
        write("response_head", head)
        # HEAD request (1), small limits (0x18).
        for opt in (b"\x01", b"\x18"):
            write("response_head", head + opt)
    for body in CHUNKED:
        write("chunked", body)
    for head in PROXY:
        write("proxy_header", head)
    return 0


if __name__ == "__main__":
    sys.exit(main())
