#!/usr/bin/env python3
"""What the admin thread costs with 200 upstreams: its CPU time over a minute, read from
/proc/PID/task/TID/schedstat (the thread named `admin`), in three phases of equal length:

  idle     nobody asks: the history's reading of every counter once a second, alone;
  metrics  one GET /metrics a second (a Prometheus scrape);
  page     what an open status page asks: GET /status and /status/history?since=... every
           2 s (the first history answer is the whole hour, then only the new buckets),
           plus GET / once.

Traffic runs meanwhile (a few hundred requests a second over the 200 upstreams, so every
series has points). One goround-mio worker, 4 pools of 50 upstreams, all served by one
goround-dummy listening on 0.0.0.0 (the upstreams are 127.0.N.M:PORT, 200 addresses).

    cargo build --release && python3 benches/admin_cost.py [--seconds 60]

Prints CPU ms per second of each phase and the sizes of the answers.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def get(port, path):
    """One GET over a fresh connection; the body's length."""
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"{path}: {head[:60]!r}")
    return body


def admin_cpu_ms(pid):
    """Time the thread named `admin` has run, in ms (schedstat: nanoseconds, where stat's
    utime and stime count whole clock ticks)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            if f.read().strip() != "admin":
                continue
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e6
    raise RuntimeError("no admin thread")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60, help="length of each phase")
    a = ap.parse_args()
    backend, listen, admin = free_port(), free_port(), free_port()
    tmp = tempfile.mkdtemp(prefix="goround-admin-cost-")
    pools = []
    for n in range(4):
        ups = ", ".join(f'"127.0.{n + 1}.{m + 1}:{backend}"' for m in range(50))
        pools.append(f"[pools.p{n}]\nupstreams = [{ups}]\n")
    routes = "".join(f'[[routes]]\npath = "/p{n}"\npool = "p{n}"\n\n' for n in range(4))
    conf = os.path.join(tmp, "goround.toml")
    with open(conf, "w") as f:
        f.write(f'listen = "127.0.0.1:{listen}"\nworkers = 1\nhealth_interval = "5s"\n\n'
                f'[admin]\nlisten = "127.0.0.1:{admin}"\n\n' + "\n".join(pools) + "\n" + routes)
    dummy = subprocess.Popen([os.path.join(BIN, "goround-dummy"), "--host", "0.0.0.0",
                              "--port", str(backend)], stdout=subprocess.DEVNULL)
    proxy = subprocess.Popen([os.path.join(BIN, "goround-mio"), "--config", conf],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    load = None
    try:
        wait_port(backend)
        wait_port(listen)
        wait_port(admin)
        # Traffic over every pool, from a child that keeps connections open.
        load = subprocess.Popen([sys.executable, "-c", LOAD, str(listen)])
        time.sleep(12)  # a bucket or two of history first
        sizes = {}
        results = []
        for phase in ("idle", "metrics", "page"):
            start, t0 = admin_cpu_ms(proxy.pid), time.monotonic()
            since = 0
            tick = 0
            while time.monotonic() - t0 < a.seconds:
                if phase == "metrics":
                    sizes["/metrics"] = len(get(admin, "/metrics"))
                elif phase == "page":
                    if tick == 0:
                        sizes["/"] = len(get(admin, "/"))
                    if tick % 2 == 0:
                        sizes["/status"] = len(get(admin, "/status"))
                        h = get(admin, f"/status/history?since={since}")
                        key = "/status/history (first)" if since == 0 else "/status/history (then)"
                        sizes[key] = len(h)
                        starts = h.split(b'"start_unix_ms":[', 1)[1].split(b"]", 1)[0]
                        since = int(starts.split(b",")[-1])
                tick += 1
                time.sleep(max(0.0, t0 + tick - time.monotonic()))
            used = admin_cpu_ms(proxy.pid) - start
            results.append((phase, used / (time.monotonic() - t0)))
        for phase, per in results:
            print(f"admin thread, {phase:<8} {per:6.2f} ms CPU per second ({per / 10:.3f} % of a core)")
        for k, n in sizes.items():
            print(f"  {k:<28} {n:>9,} bytes")
    finally:
        for p in (load, proxy, dummy):
            if p:
                p.kill()
                p.wait()


# A few hundred requests a second, spread over the four pools, on 8 keep-alive connections.
LOAD = r"""
import socket, sys, time
port = int(sys.argv[1])
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
i = 0
while True:
    s = conns[i % 8]
    s.sendall(f"GET /p{i % 4}/x HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
    while len(body) < n:
        body += s.recv(4096)
    i += 1
    time.sleep(0.003)
"""

if __name__ == "__main__":
    main()
