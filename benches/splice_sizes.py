#!/usr/bin/env python3
"""Where splicing a response pays: proxy CPU per request, copied against spliced, by size.

    benches/splice_sizes.py [--sizes 256k,512k,1m,2m] [--rounds 3] [--seconds 5] [--conns 16]
                            [--variants copy:0,splice:128k] [--binary target/release/goround-mio]

A variant may name its own binary (`NAME:SPLICE_MIN:BINARY`), so two builds compare in
alternating runs: `--variants before:0:/tmp/goround-before,after:0` compares copied responses.

One nginx backend (one worker, sendfile on, as benches/load's) serves a file of each size; for
each size and round, one goround-mio per variant (`NAME:SPLICE_MIN[:BINARY]`, SPLICE_MIN given
as `--splice-min`) is started on a fresh port, pinned to core 0, and wrk (one thread, `--conns`
keep-alive connections, pinned to core 1 with the backend) fetches the file for `--seconds`
after a 1 s warm-up. Variants alternate within a round. Reported per run: the proxy's CPU time (user +
system, /proc/PID/stat) per request, requests per second, wrk's p99; then, per size, the
medians and the ratio of the second variant's CPU to the first's. Needs nginx, wrk, taskset.
Every process it starts is killed on exit; traffic stays on 127.0.0.1.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")
PROCS = []
TEMP = []


def parse_size(text):
    m = re.fullmatch(r"(\d+)([kmg]?)", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text}")
    return int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{proc.args[0]} exited ({proc.returncode}) before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    sys.exit(f"nothing listens on {port} after {seconds} s")


def start(argv, cpu):
    proc = subprocess.Popen(["taskset", "-c", cpu] + argv, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    PROCS.append(proc)
    return proc


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    PROCS.remove(proc)


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def wrk(port, name, seconds, conns):
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s",
                          "--latency", f"http://127.0.0.1:{port}/{name}"],
                         capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    if errors:
        sys.exit(f"wrk saw errors through port {port}:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    p99 = re.search(r"99%\s+(\S+)", out).group(1)
    return requests, p99


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="256k,512k,1m,2m")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--variants", default="copy:0,splice:128k",
                    help="NAME:SPLICE_MIN[:BINARY],NAME:SPLICE_MIN[:BINARY] (the first is the"
                    " ratios' base; BINARY defaults to --binary)")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "goround-mio"))
    args = ap.parse_args()
    sizes = [(s, parse_size(s)) for s in args.sizes.split(",")]
    variants = [v.split(":", 2) for v in args.variants.split(",")]
    if len(variants) != 2 or any(len(v) < 2 or not v[0] for v in variants):
        ap.error("--variants takes two NAME:SPLICE_MIN[:BINARY], e.g. copy:0,splice:128k")
    variants = [(v[0], v[1], v[2] if len(v) == 3 else args.binary) for v in variants]
    for _, _, binary in variants:
        if not os.access(binary, os.X_OK):
            ap.error(f"no executable at {binary}")
    if args.rounds < 1 or args.seconds < 1:
        ap.error("--rounds and --seconds take a positive number")
    tmp = tempfile.mkdtemp(prefix="goround-splice-")
    TEMP.append(tmp)
    for name, size in sizes:
        with open(os.path.join(tmp, f"{name}.bin"), "wb") as f:
            f.write(os.urandom(size))
    backend_port = free_port()
    with open(os.path.join(tmp, "nginx.conf"), "w") as f:
        f.write(f"""daemon off; master_process off; worker_processes 1;
pid {tmp}/nginx.pid; error_log {tmp}/error.log;
events {{ worker_connections 4096; }}
http {{ access_log off; sendfile on; keepalive_requests 1000000; keepalive_timeout 300s;
  server {{ listen 127.0.0.1:{backend_port}; root {tmp}; }} }}
""")
    backend = start(["nginx", "-p", tmp, "-c", os.path.join(tmp, "nginx.conf")], "1")
    wait_port(backend_port, backend)
    results = {}
    for rnd in range(args.rounds):
        for name, _ in sizes:
            for variant, splice_min, binary in variants:
                port = free_port()
                proxy = start([binary, "--listen", f"127.0.0.1:{port}", "--upstream",
                               f"127.0.0.1:{backend_port}", "-qq", "--splice-min", splice_min],
                              "0")
                wait_port(port, proxy)
                wrk(port, f"{name}.bin", 1, args.conns)
                before = cpu_seconds(proxy.pid)
                requests, p99 = wrk(port, f"{name}.bin", args.seconds, args.conns)
                used = cpu_seconds(proxy.pid) - before
                stop(proxy)
                us = used / requests * 1e6
                rps = requests / args.seconds
                results.setdefault((name, variant), []).append((us, rps))
                print(f"round {rnd + 1} {name:>5} {variant:>8}: {us:7.1f} µs/req "
                      f"{rps:8.0f} req/s  p99 {p99}", flush=True)
    base, other = variants[0][0], variants[1][0]
    print(f"\nmedians over {args.rounds} round(s); ratio = {other} / {base}")
    for name, _ in sizes:
        a = [r[0] for r in results[(name, base)]]
        b = [r[0] for r in results[(name, other)]]
        ra = statistics.median(r[1] for r in results[(name, base)])
        rb = statistics.median(r[1] for r in results[(name, other)])
        print(f"{name:>5}: CPU µs/req {base} {statistics.median(a):.0f}, {other} "
              f"{statistics.median(b):.0f} ({statistics.median(b) / statistics.median(a):.2f}×);"
              f" req/s {ra:.0f} vs {rb:.0f} ({rb / ra:.2f}×)")


if __name__ == "__main__":
    # A SIGTERM ends the run like Ctrl-C does: the `finally` below stops every process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        main()
    finally:
        for p in list(PROCS):
            try:
                stop(p)
            except OSError:
                pass
        for d in TEMP:
            shutil.rmtree(d, ignore_errors=True)
