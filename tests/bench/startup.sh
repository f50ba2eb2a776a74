#!/usr/bin/env bash
# Start-up of a real application on the native platform, against peers measured in the same
# run. The image is Debian's python3 and standard library (tests/fixtures/make-python-image.sh,
# ~55 MB) on a loopback docker-registry; the workload imports a handful of modules:
#   python3 -c 'import json, email.parser, http.client, asyncio, decimal, sqlite3, xml.etree.ElementTree'
# Rows:
#   cold          init (no seal_key_file: pull, encrypt + Merkle, FUSE + overlay, run, teardown)
#                 vs skopeo copy + umoci unpack + unshare -mpf chroot (page cache warm)
#   warm          init with seal_key_file, the kept image reused (page cache warm)
#                 vs unshare -mpf --mount-proc chroot on umoci's unpacked tree
#   cold caches   the same two after `echo 3 > /proc/sys/vm/drop_caches` before each run
#   concurrent    N (default 8) warm starts of the kept image at once vs one (both sides)
# Each row runs encc and its peer alternately, RUNS times each (default 10); median, min and
# max wall time, peak RSS of the process tree (/usr/bin/time), and the median of the ratios
# of the pairs (so load from elsewhere on the machine falls on both sides alike). Needs root; installs nothing but what it names (run tests/run
# once first). ENCC_BIN_DIR=DIR uses the binaries in DIR instead of building a release.
# PIN=1 also times a warm start by digest (REF@sha256:…). PROFILE=1 also counts the FUSE
# requests of one warm start by opcode, with the time they were in flight (the kernel's
# fuse:fuse_request_send/end tracepoints; needs tracefs).
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ -d "$HOME/.cargo/bin" ]] && export PATH="$HOME/.cargo/bin:$PATH"
runs=${RUNS:-10}
n=${N:-8}
here="$PWD"
work=$(mktemp -d "${BENCH_WORK:-/var/tmp}/encc-startup-bench.XXXXXX")
cleanup() {
    tests/fixtures/registry.sh stop "$work/registry" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

if [[ -n "${ENCC_BIN_DIR:-}" ]]; then
    bin=$(realpath "$ENCC_BIN_DIR")
else
    cargo build --release --locked -p encc-init -p encc-tools >&2
    bin="$here/target/release"
fi
tests/fixtures/make-python-image.sh "$work/layout" python
port=$(tests/fixtures/registry.sh start "$work/registry")
reg="127.0.0.1:$port"
ref="docker://$reg/bench/python:latest"
skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout:python" "$ref"
layer_bytes=$(du -sb "$work/registry/storage" | cut -f1)
# The workload's arguments, as two exported variables (the timed functions run in child shells).
export W1=-c W2='import json, email.parser, http.client, asyncio, decimal, sqlite3, xml.etree.ElementTree'

"$bin/encc" key gen -o "$work/seal.key"
"$bin/encc" boot-config init --store "$work/store" --insecure-policy \
    --insecure-registry "$reg" --allow-host-args > "$work/cold.json"
"$bin/encc" boot-config init --store "$work/kept" --insecure-policy --seal-key-file "$work/seal.key" \
    --insecure-registry "$reg" --allow-host-args > "$work/warm.json"
# The kept image, and the peer's unpacked tree.
RUST_LOG=error "$bin/init" --boot-config "$work/warm.json" -- "$ref" "$W1" "$W2"
skopeo copy --quiet --src-tls-verify=false "$ref" "oci:$work/peer-oci:x"
umoci unpack --image "$work/peer-oci:x" "$work/peer-bundle" > /dev/null
tree="$work/peer-bundle/rootfs"
image_bytes=$(du -sb "$work/kept"/*.img | cut -f1)
tree_bytes=$(du -sb --apparent-size "$tree" | cut -f1)
digest=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "$ref")

# One run of a command → "microseconds peak_kib".
measure() {
    local start end
    start=$(date +%s%N)
    /usr/bin/time -f "%M" -o "$work/time" "$@" > /dev/null 2> "$work/err" || { cat "$work/err" >&2; exit 1; }
    end=$(date +%s%N)
    echo "$(((end - start) / 1000)) $(cat "$work/time")"
}
# Two commands run alternately (A, B, A, B, …) so that load from elsewhere on the machine
# falls on both alike; `prep` runs before each. Prints, in seconds and KiB, "A_median A_min
# A_max A_peak B_median B_min B_max B_peak median_of_the_A/B_ratios".
pairs() { # prep commandA -- commandB
    local prep=$1; shift
    local a=() b=()
    while [[ $1 != -- ]]; do a+=("$1"); shift; done
    shift
    b=("$@")
    local ta=() tb=() pa=0 pb=0 us kb i
    for i in $(seq "$runs"); do
        $prep
        read -r us kb < <(measure "${a[@]}"); ta+=("$us"); ((kb > pa)) && pa=$kb
        $prep
        read -r us kb < <(measure "${b[@]}"); tb+=("$us"); ((kb > pb)) && pb=$kb
    done
    stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {m = NR % 2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2;
        printf "%.3f %.3f %.3f", m/1e6, a[1]/1e6, a[NR]/1e6}'; }
    local r=()
    for i in "${!ta[@]}"; do r+=("$(awk -v x="${ta[i]}" -v y="${tb[i]}" 'BEGIN {printf "%d", x / y * 1e6}')"); done
    echo "$(stats "${ta[@]}") $pa $(stats "${tb[@]}") $pb $(printf '%s\n' "${r[@]}" | sort -n |
        awk '{a[NR]=$1} END {printf "%.2f", (NR % 2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2) / 1e6}')"
}
nothing() { :; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
peer_prep() { rm -rf "$work/oci" "$work/bundle"; }
peer_cold() {
    skopeo copy --quiet --src-tls-verify=false "$ref" "oci:$work/oci:x" &&
        umoci unpack --image "$work/oci:x" "$work/bundle" > /dev/null &&
        unshare --mount --pid --fork chroot "$work/bundle/rootfs" /usr/bin/python3 "$W1" "$W2"
}
encc_cold() { RUST_LOG=error "$bin/init" --boot-config "$work/cold.json" -- "$ref" "$W1" "$W2"; }
encc_warm() { RUST_LOG=error "$bin/init" --boot-config "$work/warm.json" -- "${1:-$ref}" "$W1" "$W2"; }
chroot_warm() { unshare --mount --pid --fork --mount-proc chroot "$tree" /usr/bin/python3 "$W1" "$W2"; }
concurrent() { # function
    local pids=() failed=0
    for _ in $(seq "$n"); do "$1" & pids+=($!); done
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    return $failed
}
encc_many() { concurrent encc_warm; }
chroot_many() { concurrent chroot_warm; }
encc_pinned() { encc_warm "docker://$reg/bench/python@$digest"; }
export -f peer_cold encc_cold encc_warm chroot_warm concurrent encc_many chroot_many encc_pinned
export work ref reg bin tree n digest

# Warm the page cache for the warm rows.
encc_warm; chroot_warm
read -r ec_m ec_lo ec_hi ec_kb pc_m pc_lo pc_hi pc_kb c_r < <(pairs peer_prep bash -c encc_cold -- bash -c peer_cold)
read -r ew_m ew_lo ew_hi ew_kb cw_m cw_lo cw_hi cw_kb w_r < <(pairs nothing bash -c encc_warm -- bash -c chroot_warm)
read -r ed_m ed_lo ed_hi ed_kb cd_m cd_lo cd_hi cd_kb d_r < <(pairs drop bash -c encc_warm -- bash -c chroot_warm)
encc_warm; chroot_warm
read -r en_m en_lo en_hi _ cn_m cn_lo cn_hi _ n_r < <(pairs nothing bash -c encc_many -- bash -c chroot_many)
if [[ -n "${PIN:-}" ]]; then
    read -r ep_m ep_lo ep_hi ep_kb cp_m _ _ _ p_r < <(pairs nothing bash -c encc_pinned -- bash -c chroot_warm)
fi

# FUSE requests of one run of a command, by opcode: "OPCODE count ms_in_flight" lines.
fuse_requests() {
    local t=/sys/kernel/tracing ev
    [[ -d $t/events/fuse ]] || mount -t tracefs nodev "$t"
    echo 0 > "$t/tracing_on"
    echo > "$t/trace"
    for ev in fuse_request_send fuse_request_end; do echo 1 > "$t/events/fuse/$ev/enable"; done
    echo 1 > "$t/tracing_on"
    "$@" > /dev/null 2>&1
    echo 0 > "$t/tracing_on"
    for ev in fuse_request_send fuse_request_end; do echo 0 > "$t/events/fuse/$ev/enable"; done
    awk '/fuse_request_(send|end)/ {
            match($0, / [0-9]+\.[0-9]+:/); at = substr($0, RSTART + 1, RLENGTH - 2)
            match($0, /req [0-9]+/); req = substr($0, RSTART + 4, RLENGTH - 4)
        }
        /fuse_request_send/ { match($0, /\(FUSE_[A-Z_]+\)/); op = substr($0, RSTART + 6, RLENGTH - 7)
            sent[req] = at; of[req] = op; n[op]++ }
        /fuse_request_end/ && (req in sent) { ms[of[req]] += (at - sent[req]) * 1000 }
        END { for (op in n) printf "%s %d %.1f\n", op, n[op], ms[op] }' "$t/trace" | sort -k2 -nr
}
if [[ -n "${PROFILE:-}" ]]; then
    fuse_requests bash -c encc_warm > "$work/requests"
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
cell() { echo "$1 s ($2–$3), $(($4 / 1024)) MiB"; }
echo "python image: $((tree_bytes / 1000000)) MB unpacked, $((layer_bytes / 1000000)) MB in the registry, $((image_bytes / 1000000)) MB protected;"
echo "median (min–max) of $runs runs, peak RSS; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| start | encc | peer | encc / peer (median of the $runs pairs) |"
echo "|---|---|---|---|"
echo "| cold: pull + run | $(cell "$ec_m" "$ec_lo" "$ec_hi" "$ec_kb") | skopeo copy + umoci unpack + unshare -mpf chroot: $(cell "$pc_m" "$pc_lo" "$pc_hi" "$pc_kb") | $c_r |"
echo "| warm: kept image, page cache warm | $(cell "$ew_m" "$ew_lo" "$ew_hi" "$ew_kb") | unshare -mpf --mount-proc chroot: $(cell "$cw_m" "$cw_lo" "$cw_hi" "$cw_kb") | $w_r |"
echo "| kept image, caches dropped | $(cell "$ed_m" "$ed_lo" "$ed_hi" "$ed_kb") | the same chroot, caches dropped: $(cell "$cd_m" "$cd_lo" "$cd_hi" "$cd_kb") | $d_r |"
echo "| $n warm starts at once | $en_m s ($en_lo–$en_hi), $(ratio "$en_m" "$ew_m") × one | $n chroots at once: $cn_m s ($cn_lo–$cn_hi), $(ratio "$cn_m" "$cw_m") × one | $n_r |"
if [[ -n "${PIN:-}" ]]; then
    echo "| warm, by digest (@sha256:…) | $(cell "$ep_m" "$ep_lo" "$ep_hi" "$ep_kb") | unshare -mpf --mount-proc chroot: $cp_m s | $p_r |"
fi
if [[ -n "${PROFILE:-}" ]]; then
    echo
    echo "FUSE requests of one warm start (tag reference), by opcode:"
    echo
    echo "| opcode | requests | ms in flight (summed) |"
    echo "|---|---|---|"
    awk '{printf "| %s | %d | %.1f |\n", $1, $2, $3}' "$work/requests"
fi
