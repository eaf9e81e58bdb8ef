#!/usr/bin/env bash
# Run every fuzz target for SECONDS (default 60) on stable Rust, without a sanitizer.
#
#   fuzz/run.sh [SECONDS]
#
# Installs cargo-fuzz if it is missing. Each target starts from the committed corpus and
# regressions; new inputs go to fuzz/corpus-tmp/ (ignored by git) so a run leaves the committed
# corpus alone. A crash (an invariant of src/fuzzing.rs broken, or a panic) fails the script;
# the input is in fuzz/artifacts/<target>/. Debug assertions (and so overflow checks) are on.
set -euo pipefail

seconds="${1:-60}"
cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

for target in request_head response_head chunked proxy_header dns_answer client_hello; do
    case "$target" in
        chunked) dict=fuzz/dict/chunked.dict ;;
        proxy_header) dict=fuzz/dict/proxy.dict ;;
        dns_answer) dict=fuzz/dict/dns.dict ;;
        client_hello) dict=fuzz/dict/tls.dict ;;
        *) dict=fuzz/dict/http.dict ;;
    esac
    mkdir -p "fuzz/corpus-tmp/$target" "fuzz/corpus/$target" "fuzz/regressions/$target"
    echo "== fuzzing $target for ${seconds}s"
    cargo fuzz run -s none --debug-assertions "$target" \
        "fuzz/corpus-tmp/$target" "fuzz/corpus/$target" "fuzz/regressions/$target" -- \
        -max_total_time="$seconds" -timeout=10 -dict="$dict" -print_final_stats=1
done
echo "== fuzzing passed"
