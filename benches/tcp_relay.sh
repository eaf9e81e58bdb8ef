#!/bin/sh
# goround-mio as a raw TCP relay, for the second instrument's --proxy-cmd:
#   python3 ../shared/bench/run.py --proxy custom --scenarios a \
#     --proxy-cmd "benches/tcp_relay.sh {listen} {upstreams} {workers} {tmp}"
# writes a config with one [[tcp]] listener on LISTEN over UPSTREAMS (comma separated) and
# execs the release binary (so the command's pid is the relay's: its CPU and RSS are measured).
# The HTTP listener, which a config must have, takes a free port nobody uses.
set -eu
listen=$1 upstreams=$2 workers=$3 tmp=$4
conf="$tmp/goround-tcp-relay.toml"
list=$(printf '%s' "$upstreams" | sed 's/[^,][^,]*/"&"/g; s/,/, /g')
cat > "$conf" <<CONF
listen = "127.0.0.1:0"
[pools.default]
upstreams = [$list]
[[tcp]]
listen = "$listen"
pool = "default"
CONF
exec "$(dirname "$0")/../target/release/goround-mio" --config "$conf" --workers "$workers" \
  --max-connections 15000 -qq
