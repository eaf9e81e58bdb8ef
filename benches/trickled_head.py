#!/usr/bin/env python3
"""What a head that arrives in small pieces costs goround-mio, measured on loopback.

    benches/trickled_head.py [--binary PATH] [--requests N] [--fields F] [--piece B]
                             [--side request|response]

A client may send its head a few bytes at a time (a slow link, or on purpose), and so may a
backend. goround-mio keeps how far it checked a head between reads, so each read costs only its
new bytes. This runs goround-mio (1 worker, under callgrind) in front of one keep-alive backend
and sends N requests, each on its own connection. With `--side request` (the default) the
request head has F fields (about 30 bytes each) and goes out in B-byte writes with TCP_NODELAY
and a 1 ms pause between writes (so each arrives as its own read); with `--side response` the
request is small and the backend's response head is the one with F fields, written the same
way. It prints the proxy's instructions per request, against the same heads sent in one
write: the difference is what the trickle costs. `--binary` measures another build (for a
before/after comparison). Only the standard library and valgrind; every process it starts is
killed on exit.
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Backend:
    """Keep-alive HTTP backend: answers each request head (no bodies here) with `response`,
    in writes of `piece` bytes 1 ms apart."""

    response = RESPONSE
    piece = len(RESPONSE)

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    send_in_pieces(conn, self.response, self.piece)
        except OSError:
            pass
        finally:
            conn.close()


def head(fields, first_lines):
    lines = list(first_lines)
    lines += [b"X-Field-%03d: %s" % (i, b"v" * 16) for i in range(fields)]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def send_in_pieces(sock, data, piece):
    for at in range(0, len(data), piece):
        sock.sendall(data[at:at + piece])
        if piece < len(data):
            time.sleep(0.001)


def wait_port(port, deadline):
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def one_request(port, data, piece):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        send_in_pieces(c, data, piece)
        got = b""
        while not got.endswith(b"ok"):
            chunk = c.recv(4096)
            if not chunk:
                break
            got += chunk
        if not got.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"unexpected answer {got[:80]!r}")


def instructions(binary, backend_port, requests, data, piece, fields, tmp, tag):
    """Total instructions of one goround-mio process that served `requests` requests."""
    port = free_port()
    out = os.path.join(tmp, f"callgrind.{tag}.{requests}.%p")
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         binary, "--listen", f"127.0.0.1:{port}", "--workers", "1", "-qq",
         "--max-fields", str(fields + 10), "--upstream", f"127.0.0.1:{backend_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, time.time() + 60)
        for _ in range(requests):
            one_request(port, data, piece)
    finally:
        proc.terminate()
        proc.wait(timeout=120)
    total = 0
    for name in os.listdir(tmp):
        if name.startswith(f"callgrind.{tag}.{requests}."):
            with open(os.path.join(tmp, name)) as f:
                for line in f:
                    m = re.match(r"(?:totals|summary): (\d+)", line)
                    if m:
                        total += int(m.group(1))
                        break
            os.remove(os.path.join(tmp, name))
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "goround-mio"))
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--fields", type=int, default=200)
    ap.add_argument("--piece", type=int, default=64)
    ap.add_argument("--side", choices=("request", "response"), default="request")
    args = ap.parse_args()
    backend = Backend()
    if args.side == "request":
        data = head(args.fields, [b"GET /trickle HTTP/1.1", b"Host: bench.example"])
        trickled_head = data
    else:
        data = b"GET /trickle HTTP/1.1\r\nHost: bench.example\r\n\r\n"
        trickled_head = head(args.fields, [b"HTTP/1.1 200 OK", b"Content-Length: 2"])
        backend.response = trickled_head + b"ok"
    with tempfile.TemporaryDirectory(prefix="trickle-") as tmp:
        # Instructions per request from the difference between two request counts: start-up
        # and shut-down cancel out.
        per = {}
        for piece in (len(trickled_head) + 2, args.piece):
            # The client's request in pieces, or the backend's response.
            client_piece = piece if args.side == "request" else len(data)
            backend.piece = piece if args.side == "response" else len(backend.response)
            lo = instructions(args.binary, backend.port, 2, data, client_piece, args.fields,
                              tmp, tag=piece)
            hi = instructions(args.binary, backend.port, 2 + args.requests, data, client_piece,
                              args.fields, tmp, tag=piece)
            per[piece] = (hi - lo) / args.requests
        whole, trickled = per[len(trickled_head) + 2], per[args.piece]
        writes = -(-len(trickled_head) // args.piece)
        print(f"{args.side} head: {len(trickled_head)} bytes, {args.fields} fields; "
              f"{args.requests} requests, each on its own connection; binary {args.binary}")
        print(f"  in one write:            {whole:>12,.0f} instructions per request")
        print(f"  in {writes} writes of {args.piece} B: {trickled:>12,.0f} instructions per "
              f"request ({(trickled - whole) / writes:,.0f} per extra read)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
