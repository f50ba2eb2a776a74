#!/usr/bin/env bash
# Benchmark of the native platform's start-up, against peers measured in the same run:
#   cold      init --boot-config B docker://…/busybox true   (enclave namespaces, pull,
#             verify, encrypt + Merkle, FUSE + overlayfs, pivot_root, exec, teardown)
#   peer      skopeo copy docker://… oci:DIR + umoci raw unpack + unshare -mpf chroot DIR true
#   warm      the same with a seal_key_file, the sealed image of an earlier start reused
#   stage 2   encc rootfs run IMG -- true   (stage 2 alone on a pulled image)
#   floor     unshare -mpf chroot DIR true   (namespaces + exec on a plain directory)
# over the busybox fixture image (tests/fixtures/make-images.sh) on a loopback docker-registry.
# Each is repeated RUNS times (default 20); the median and the peak RSS (/usr/bin/time) are
# reported as a Markdown table. Needs root; installs nothing (run tests/run once first).
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ -d "$HOME/.cargo/bin" ]] && export PATH="$HOME/.cargo/bin:$PATH"
runs=${RUNS:-20}
here="$PWD"
work=$(mktemp -d "${BENCH_WORK:-/var/tmp}/encc-init-bench.XXXXXX")
cleanup() {
    tests/fixtures/registry.sh stop "$work/peers/registry" 2>/dev/null || true
    tests/fixtures/registry.sh stop "$work/peers/tls" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --locked --workspace >&2
bin="$here/target/release"
eval "$(tests/fixtures/setup-peers.sh "$work/peers" 2>/dev/null)"
ref="docker://$ENCC_TEST_REGISTRY/test/busybox:latest"
"$bin/encc" boot-config init --store "$work/store" --insecure-policy \
    --insecure-registry "$ENCC_TEST_REGISTRY" --allow-host-args > "$work/boot.json"
"$bin/encc" key gen -o "$work/key"
"$bin/encc" key gen -o "$work/seal.key"
"$bin/encc" boot-config init --store "$work/sealed-store" --insecure-policy --seal-key-file "$work/seal.key" \
    --insecure-registry "$ENCC_TEST_REGISTRY" --allow-host-args > "$work/sealed.json"
RUST_LOG=error "$bin/init" --boot-config "$work/sealed.json" "$ref" true
"$bin/encc" image pull --insecure-policy --tls-verify=false "$ref" -o "$work/busybox.img" \
    --key-file "$work/key" > /dev/null 2>&1

# One run of a command → "seconds peak_kib" (wall time in ns from date, RSS from time).
measure() {
    local start end
    start=$(date +%s%N)
    /usr/bin/time -f "%M" -o "$work/time" "$@" > /dev/null 2> "$work/err" || { cat "$work/err" >&2; exit 1; }
    end=$(date +%s%N)
    echo "$(python3 -c "print(f'{($end - $start) / 1e9:.4f}')") $(cat "$work/time")"
}
# Median seconds and the largest peak RSS over $runs runs (prep runs before each when given).
series() { # prep_function command...
    local prep=$1; shift
    local times=() peak=0
    for _ in $(seq "$runs"); do
        $prep
        read -r s kb < <(measure "$@")
        times+=("$s")
        ((kb > peak)) && peak=$kb
    done
    median=$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
    echo "$median $peak"
}
nothing() { :; }
peer_prep() { rm -rf "$work/oci" "$work/bundle"; }
peer_cold() {
    skopeo copy --quiet --src-tls-verify=false "$ref" "oci:$work/oci:x" &&
    umoci raw unpack --image "$work/oci:x" "$work/bundle" &&
    unshare --mount --pid --fork chroot "$work/bundle" /bin/true
}
export -f peer_cold
export work ref

read -r cold_s cold_kb < <(series nothing env RUST_LOG=error "$bin/init" --boot-config "$work/boot.json" "$ref" true)
read -r warm_s warm_kb < <(series nothing env RUST_LOG=error "$bin/init" --boot-config "$work/sealed.json" "$ref" true)
read -r peer_s peer_kb < <(series peer_prep bash -c peer_cold)
read -r s2_s s2_kb < <(series nothing env RUST_LOG=error "$bin/encc" rootfs run "$work/busybox.img" --key-file "$work/key" -- true)
rm -rf "$work/bundle"; skopeo copy --quiet --src-tls-verify=false "$ref" "oci:$work/oci:x"
umoci raw unpack --image "$work/oci:x" "$work/bundle"
read -r floor_s floor_kb < <(series nothing unshare --mount --pid --fork chroot "$work/bundle" /bin/true)

ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
echo "busybox image ($(du -k "$work/busybox.img" | cut -f1) KiB protected), median of $runs runs, peak RSS"
echo
echo "| step | encc | peer | encc / peer |"
echo "|---|---|---|---|"
echo "| cold start (pull + build + mount + run \`true\`) | ${cold_s} s, ${cold_kb} KiB | skopeo + umoci unpack + chroot: ${peer_s} s, ${peer_kb} KiB | $(ratio "$cold_s" "$peer_s") |"
echo "| warm \`init\` (sealed image reused; manifest and policy checked again) | ${warm_s} s, ${warm_kb} KiB | skopeo + umoci unpack + chroot: ${peer_s} s, ${peer_kb} KiB | $(ratio "$warm_s" "$peer_s") |"
echo "| stage 2 alone (mount + pivot + run \`true\`) | ${s2_s} s, ${s2_kb} KiB | unshare + chroot: ${floor_s} s, ${floor_kb} KiB | $(ratio "$s2_s" "$floor_s") |"
