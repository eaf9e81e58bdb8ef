#!/usr/bin/env python3
"""What `send_proxy` does to upstream connection pooling, measured on loopback.

    benches/send_proxy_pooling.py [--requests N]

A pool that sends a PROXY header may reuse an idle upstream connection only for the client
address its header names. This starts goround-mio (release build, 1 worker) in front of one
keep-alive backend that reads an optional PROXY header, then sends N requests, each on a new
client connection (the case pooling exists for), from K client addresses (127.0.x.y, round
robin), with and without `send_proxy = "v1"`. It prints, per case, the upstream connections the
backend accepted per request, and the requests per second the (Python, single-threaded) client
reached. Only the standard library; every process it starts is killed on exit.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "goround-mio")
SIG = b"\r\n\r\n\0\r\nQUIT\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Backend:
    """Keep-alive HTTP backend counting the connections it accepts."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            conn, _ = self.sock.accept()
            with self.lock:
                self.accepted += 1
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    @staticmethod
    def serve(conn):
        buf = b""
        header_done = False
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                if not header_done:
                    if buf.startswith(b"PROXY "):
                        end = buf.find(b"\r\n")
                        if end < 0:
                            continue
                        buf = buf[end + 2:]
                    elif buf.startswith(SIG):
                        if len(buf) < 16:
                            continue
                        buf = buf[16 + int.from_bytes(buf[14:16], "big"):]
                    header_done = True
                while b"\r\n\r\n" in buf:
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    conn.sendall(RESPONSE)
        except OSError:
            return
        finally:
            conn.close()


def wait_listening(port):
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    sys.exit(f"nothing listens on {port}")


def one_request(port, source):
    s = socket.socket()
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    got = b""
    while True:
        data = s.recv(4096)
        if not data:
            break
        got += data
    s.close()
    if not got.startswith(b"HTTP/1.1 200"):
        sys.exit(f"unexpected answer: {got[:80]!r}")


def run_case(send_proxy, clients, requests):
    backend = Backend()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = os.path.join(tmp, "goround.toml")
        with open(config, "w") as f:
            f.write(f'listen = "127.0.0.1:{port}"\nworkers = 1\n')
            f.write(f'[pools.p]\nupstreams = ["127.0.0.1:{backend.port}"]\n')
            if send_proxy:
                f.write('send_proxy = "v1"\n')
        proxy = subprocess.Popen([BINARY, "--config", config, "-q"])
        try:
            wait_listening(port)
            with backend.lock:
                before = backend.accepted  # the health check's connect
            start = time.perf_counter()
            for i in range(requests):
                n = i % clients
                one_request(port, f"127.0.{n // 250}.{1 + n % 250}")
            elapsed = time.perf_counter() - start
            with backend.lock:
                connects = backend.accepted - before
        finally:
            proxy.kill()
            proxy.wait()
    return connects, requests / elapsed


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    if not os.path.exists(BINARY):
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    print(f"{args.requests} requests, one client connection each, 1 worker")
    print(f"{'case':<28} {'upstream connects/request':>26} {'req/s':>8}")
    for send_proxy, clients in [(False, 256), (True, 1), (True, 16), (True, 256)]:
        connects, rate = run_case(send_proxy, clients, args.requests)
        name = f"{'send_proxy v1' if send_proxy else 'no send_proxy'}, {clients} clients"
        print(f"{name:<28} {connects / args.requests:>26.3f} {rate:>8.0f}")


if __name__ == "__main__":
    main()
