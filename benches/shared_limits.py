#!/usr/bin/env python3
"""Shared rate limits through Redis, measured on loopback.

    benches/shared_limits.py [--rate R] [--burst B] [--seconds S] [--instances N]

1. Fleet accuracy: N goround-mio instances (release build, 1 worker each) share
   `[client_limits] requests_per_second = R, burst = B` through one redis-server; one client
   sprays all of them (round robin, keep-alive) at 10 x R for S seconds. Prints how many
   requests got through against the goal `R x S x 1.1 + B`, and the same with sharing off.
2. Redis's cost: the exchange script run directly against redis-server with batches of 500
   clients; prints Redis's CPU time per client update (from INFO cpu), which sets how many
   instance-client updates per second one Redis core takes.

Needs redis-server (apt-get install redis-server). Only the standard library; every process it
starts is killed on exit; all traffic is to 127.0.0.1.
"""

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
CHILDREN = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(cmd, **kw):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    CHILDREN.append(p)
    return p


def wait_listening(port):
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    sys.exit(f"nothing listens on {port}")


def resp(args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def redis_call(sock, args):
    sock.sendall(resp(args))
    buf = b""
    while True:
        buf += sock.recv(1 << 20)
        if reply_complete(buf):
            return buf


def reply_complete(buf):
    """Whether buf holds one whole RESP reply (enough of the grammar for INFO and EVAL)."""
    def parse(i):
        end = buf.find(b"\r\n", i)
        if end < 0:
            return None
        kind, text = buf[i:i + 1], buf[i + 1:end]
        if kind in b"+-:":
            return end + 2
        if kind == b"$":
            n = int(text)
            if n < 0:
                return end + 2
            return end + 2 + n + 2 if len(buf) >= end + 2 + n + 2 else None
        if kind == b"*":
            j = end + 2
            for _ in range(int(text)):
                j = parse(j)
                if j is None:
                    return None
            return j
        return None
    return parse(0) is not None


def redis_cpu(sock):
    info = redis_call(sock, ["INFO", "cpu"]).decode()
    user = float(re.search(r"used_cpu_user:([\d.]+)", info).group(1))
    system = float(re.search(r"used_cpu_sys:([\d.]+)", info).group(1))
    return user + system


def script_text():
    with open(os.path.join(ROOT, "src", "shared_limits.rs")) as f:
        text = f.read()
    return re.search(r'const SCRIPT: &str = r"(.*?)";', text, re.S).group(1)


def spray(ports, per_second, seconds):
    conns = [socket.create_connection(("127.0.0.1", p)) for p in ports]
    request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
    gap = 1.0 / per_second
    ok = limited = 0
    start = time.perf_counter()
    nxt = start
    i = 0
    while time.perf_counter() - start < seconds:
        c = conns[i % len(conns)]
        c.sendall(request)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += c.recv(65536)
        head, _, body = buf.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        while len(body) < length:
            body += c.recv(65536)
        if head.startswith(b"HTTP/1.1 200"):
            ok += 1
        elif head.startswith(b"HTTP/1.1 429"):
            limited += 1
        else:
            sys.exit(f"unexpected {head[:40]!r}")
        i += 1
        nxt += gap
        delay = nxt - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    return ok, limited


def fleet(args, redis_port, backend_port, shared):
    with tempfile.TemporaryDirectory() as tmp:
        ports = []
        for n in range(args.instances):
            port = free_port()
            config = os.path.join(tmp, f"{n}.toml")
            with open(config, "w") as f:
                f.write(f'listen = "127.0.0.1:{port}"\nworkers = 1\n[client_limits]\n')
                f.write(f"requests_per_second = {args.rate}\nburst = {args.burst}\n")
                if shared:
                    f.write(f'shared = "redis://127.0.0.1:{redis_port}/0"\n')
                f.write(f'[pools.p]\nupstreams = ["127.0.0.1:{backend_port}"]\n')
            start([os.path.join(RELEASE, "goround-mio"), "--config", config, "-q"])
            wait_listening(port)
            ports.append(port)
        time.sleep(0.3)  # the first exchange with Redis
        return spray(ports, args.rate * 10, args.seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--instances", type=int, default=2)
    args = parser.parse_args()
    server = shutil.which("redis-server")
    if not server:
        sys.exit("needs redis-server (apt-get install redis-server)")
    if not os.path.exists(os.path.join(RELEASE, "goround-mio")):
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    try:
        redis_port = free_port()
        start([server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no"])
        wait_listening(redis_port)
        backend_port = free_port()
        start([os.path.join(RELEASE, "goround-dummy"), "--port", str(backend_port)])
        wait_listening(backend_port)

        goal = args.rate * args.seconds * 1.1 + args.burst
        print(f"{args.instances} instances, {args.rate}/s burst {args.burst}, one client at "
              f"{args.rate * 10}/s for {args.seconds:g} s; goal: at most {goal:.0f}")
        for shared in (True, False):
            ok, limited = fleet(args, redis_port, backend_port, shared)
            name = "shared through Redis" if shared else "not shared"
            print(f"  {name:<22} {ok:>6} allowed ({ok / (args.rate * args.seconds):.3f} x R x S), "
                  f"{limited} limited")

        sock = socket.create_connection(("127.0.0.1", redis_port))
        script = script_text()
        keys = [f"goround:rate:bench:10.0.{i // 250}.{i % 250}" for i in range(500)]
        calls = 400
        before = redis_cpu(sock)
        wall = time.perf_counter()
        for _ in range(calls):
            now_us = int(time.time() * 1e6)
            redis_call(sock, ["EVAL", script, len(keys), *keys, now_us, 10000.0,
                              *([1] * len(keys))])
        wall = time.perf_counter() - wall
        cpu = redis_cpu(sock) - before
        updates = calls * len(keys)
        print(f"Redis: {updates} client updates in {calls} script calls of {len(keys)}: "
              f"{cpu / updates * 1e6:.2f} us of Redis CPU each "
              f"({updates / cpu:,.0f} updates per Redis CPU second; wall {wall:.2f} s)")
    finally:
        for p in CHILDREN:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
