#!/usr/bin/env bash
# Benchmark of the store under concurrency (native platform): N cold starts of one image on
# one store with a seal_key_file (default N=8), the store emptied before each round:
#   sequential   init … true, N times one after the other (the first pulls, the rest reuse)
#   concurrent   the same N started at once (one pulls under the image's lock, the others
#                wait for it and reuse the kept image)
#   unsealed     N at once without a sealing key (each pulls its own image; no shared lock)
# over the busybox fixture image on a loopback docker-registry. Each round is repeated RUNS
# times (default 5); the median wall time of a round is reported as a Markdown table.
# Needs root; installs nothing (run tests/run once first). ENCC_BIN_DIR=DIR uses the
# binaries in DIR instead of building a release.
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ -d "$HOME/.cargo/bin" ]] && export PATH="$HOME/.cargo/bin:$PATH"
runs=${RUNS:-5}
n=${N:-8}
work=$(mktemp -d "${BENCH_WORK:-/var/tmp}/encc-store-bench.XXXXXX")
cleanup() {
    tests/fixtures/registry.sh stop "$work/peers/registry" 2>/dev/null || true
    tests/fixtures/registry.sh stop "$work/peers/tls" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

if [[ -n "${ENCC_BIN_DIR:-}" ]]; then
    bin=$(realpath "$ENCC_BIN_DIR")
else
    cargo build --release --locked --workspace >&2
    bin="$PWD/target/release"
fi
eval "$(tests/fixtures/setup-peers.sh "$work/peers" 2>/dev/null)"
ref="docker://$ENCC_TEST_REGISTRY/test/busybox:latest"
"$bin/encc" key gen -o "$work/seal.key"
"$bin/encc" boot-config init --store "$work/store" --insecure-policy --seal-key-file "$work/seal.key" \
    --insecure-registry "$ENCC_TEST_REGISTRY" --allow-host-args > "$work/sealed.json"
"$bin/encc" boot-config init --store "$work/store" --insecure-policy \
    --insecure-registry "$ENCC_TEST_REGISTRY" --allow-host-args > "$work/plain.json"

start() { # boot-config
    RUST_LOG=error "$bin/init" --boot-config "$1" "$ref" true > /dev/null 2>> "$work/err"
}
sequential() {
    for _ in $(seq "$n"); do start "$work/sealed.json"; done
}
concurrent() { # boot-config
    local pids=() failed=0
    for _ in $(seq "$n"); do start "$1" & pids+=($!); done
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    return $failed
}
# Median seconds of $runs rounds of a command, the store emptied before each.
series() {
    local times=() start end
    for _ in $(seq "$runs"); do
        rm -rf "$work/store"
        : > "$work/err"
        start=$(date +%s%N)
        "$@" || { cat "$work/err" >&2; exit 1; }
        end=$(date +%s%N)
        times+=("$(python3 -c "print(f'{($end - $start) / 1e9:.3f}')")")
    done
    printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'
}

seq_s=$(series sequential)
par_s=$(series concurrent "$work/sealed.json")
plain_s=$(series concurrent "$work/plain.json")

ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
echo "busybox image, $n cold starts on one store (emptied before each round), median of $runs rounds"
echo
echo "| round | wall time | / sequential |"
echo "|---|---|---|"
echo "| $n sequential, seal_key_file (1 pull, $((n - 1)) reuses) | ${seq_s} s | 1.00 |"
echo "| $n at once, seal_key_file (1 pull under the lock, $((n - 1)) wait and reuse) | ${par_s} s | $(ratio "$par_s" "$seq_s") |"
echo "| $n at once, no seal_key_file ($n pulls, no shared lock) | ${plain_s} s | $(ratio "$plain_s" "$seq_s") |"
