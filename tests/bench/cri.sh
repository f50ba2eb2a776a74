#!/usr/bin/env bash
# Pods through containerd's CRI plugin, as kubelet drives them: pod start (RunPodSandbox) to
# container exit on the busybox image, containerd's `runc` handler against encc's handlers in
# the same run, alternately, RUNS times each (default 10; median, min, max, and the median of
# the per-pair ratios):
#   runc        containerd-shim-runc-v2, the image unpacked by containerd on the host
#   encc        containerd-shim-encc-v2, the image pulled and verified in the enclave each start
#   encc-kept   the same with seal_key_file: the sealed image kept in the store is reused
# then BENCH_PODS (default 10) pods at once per handler, BENCH_ROUNDS rounds (default 3).
# A private containerd (tests/tests/common/containerd.rs), the registry and the pause image of
# tests/fixtures/setup-peers.sh; the timing is tests/tests/cri_bench.rs, built in release.
# Needs root and the packages tests/run installs (run it once first).
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ -d "$HOME/.cargo/bin" ]] && export PATH="$HOME/.cargo/bin:$PATH"
work=$(mktemp -d "${BENCH_WORK:-/var/tmp}/encc-cri-bench.XXXXXX")
cleanup() {
    tests/fixtures/registry.sh stop "$work/peers/registry" 2>/dev/null || true
    tests/fixtures/registry.sh stop "$work/peers/tls" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --locked --workspace >&2
mkdir -p "$work/peers"
eval "$(tests/fixtures/setup-peers.sh "$work/peers")"
export ENCC_REQUIRE_PEERS=1
cargo test --release --locked -p encc-tests --test cri_bench -- --ignored --nocapture 2>&1 |
    grep -v '^running\|^test \|^$\|^test result'
