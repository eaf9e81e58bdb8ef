#!/usr/bin/env bash
# Load test through goround-mio against the project's dummy backends, all on loopback.
#   benches/load.sh [DURATION_SECONDS] [CONNECTIONS]
# Starts three goround-dummy backends and one proxy (1 worker), runs wrk directly against one
# backend and then through the proxy, and prints req/s and latency percentiles for both.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-64}

command -v wrk >/dev/null || { echo "installing wrk"; apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

target/release/goround-dummy --port 0 --port 0 --port 0 >"$work/dummy.out" &
pids+=($!)
for _ in $(seq 100); do [ "$(grep -c listening "$work/dummy.out" 2>/dev/null)" = 3 ] && break; sleep 0.05; done
mapfile -t ports < <(grep -o '[0-9]*$' "$work/dummy.out")
ups=()
for p in "${ports[@]}"; do ups+=(--upstream "127.0.0.1:$p"); done

target/release/goround-mio --listen 127.0.0.1:0 --workers 1 "${ups[@]}" 2>"$work/proxy.err" &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$work/proxy.err" 2>/dev/null && break; sleep 0.05; done
proxy=$(grep -o 'listening on [^ ]*' "$work/proxy.err" | cut -d' ' -f3)

run() {
    local name=$1 url=$2
    local out
    out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency "$url")
    local rps p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    printf '%-28s %12s req/s   p50 %8s   p99 %8s\n' "$name" "$rps" "$p50" "$p99"
}

echo "wrk -t1 -c$conns -d${secs}s, keep-alive, 24-byte responses ($(nproc) cores, all on loopback)"
run "direct to one dummy" "http://127.0.0.1:${ports[0]}/"
run "through goround-mio" "http://$proxy/"
