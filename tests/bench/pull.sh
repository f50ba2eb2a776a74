#!/usr/bin/env bash
# Benchmark of `encc image pull` against peers measured in the same run, over a loopback
# docker-registry:
#   encc     encc image pull docker://… -o IMG   (fetch, verify, decompress, encrypt, Merkle)
#   peer     skopeo copy docker://… oci:DIR  +  umoci raw unpack
#   floor    curl BLOB | gzip -dc | sha256sum, layer after layer (the streaming floor: fetch,
#            decompress and hash, nothing written)
# Images: "single" (one gzip layer from a ~700 MiB copy of /usr parts) and "five" (the same
# content in 5 layers). Each image is measured BENCH_ROUNDS times (default 3), floor and
# encc alternating, so the spread shows how much the shared machine disturbed the run.
# Peak RSS from /usr/bin/time. Before the tables: the crypto the pull uses, MB/s per core of
# CPU time on this CPU (stage2-rootfs/examples/crypto_speed.rs). Needs root; installs
# nothing (run tests/run once first). Results go to stdout as Markdown tables.
# A second table compares encc's pull of each image with its pull of the same image with
# every layer encrypted by skopeo (`--encryption-key jwe:`), one after the other in this run:
# an encrypted layer is received whole into an encrypted spool and authenticated (digest
# and HMAC) before it is decrypted and unpacked.
# BENCH_PARTS="/usr/bin /usr/sbin" picks other directories for a quicker run;
# BENCH_ENCRYPTED=0 leaves the encrypted images out.
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ -d "$HOME/.cargo/bin" ]] && export PATH="$HOME/.cargo/bin:$PATH"
here="$PWD"
work=$(mktemp -d "${BENCH_WORK:-/var/tmp}/encc-pull-bench.XXXXXX")
cleanup() { tests/fixtures/registry.sh stop "$work/registry" || true; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release --locked -p encc-tools >&2
encc="$here/target/release/encc"
cargo build --release --locked -p encc-rootfs --example crypto_speed >&2
"$here/target/release/examples/crypto_speed"
echo

# --- images
layout="$work/layout"
umoci init --layout "$layout"
umoci new --image "$layout:single"
umoci unpack --image "$layout:single" "$work/b1" >&2
read -r -a parts <<< "${BENCH_PARTS:-/usr/bin /usr/include /usr/share/doc /usr/share/man /usr/libexec}"
for p in "${parts[@]}"; do mkdir -p "$work/b1/rootfs$p"; cp -a "$p/." "$work/b1/rootfs$p/" 2>/dev/null || true; done
umoci repack --image "$layout:single" "$work/b1" >&2
rm -rf "$work/b1"
umoci new --image "$layout:five"
for p in "${parts[@]}"; do
    umoci unpack --image "$layout:five" "$work/b5" >&2
    mkdir -p "$work/b5/rootfs$p"; cp -a "$p/." "$work/b5/rootfs$p/" 2>/dev/null || true
    umoci repack --image "$layout:five" "$work/b5" >&2
    rm -rf "$work/b5"
done
port=$(tests/fixtures/registry.sh start "$work/registry")
reg="127.0.0.1:$port"
openssl genrsa -out "$work/rsa.pem" 2048 2>/dev/null
openssl rsa -in "$work/rsa.pem" -pubout -out "$work/rsa.pub" 2>/dev/null
for t in single five; do
    skopeo copy --quiet --dest-tls-verify=false "oci:$layout:$t" "docker://$reg/bench/$t:latest" >&2
    [[ ${BENCH_ENCRYPTED:-1} == 1 ]] || continue
    skopeo copy --quiet --dest-tls-verify=false --encryption-key "jwe:$work/rsa.pub" \
        "oci:$layout:$t" "docker://$reg/bench/$t:encrypted" >&2
done
rm -rf "$layout"
"$encc" key gen -o "$work/key"

measure() { # name command... → "seconds peak_kib"
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" > /dev/null 2> "$work/err" || { cat "$work/err" >&2; exit 1; }
    cat "$work/time"
}

rounds=${BENCH_ROUNDS:-3}
echo "| image | compressed / tar | round | encc pull | floor: curl \| gzip -dc \| sha256sum | encc / floor |"
echo "|---|---|---|---|---|---|"
for t in single five; do
    ref="docker://$reg/bench/$t:latest"
    skopeo inspect --raw --tls-verify=false "$ref" > "$work/manifest.json"
    layers=$(python3 -c "import json; m=json.load(open('$work/manifest.json')); print(' '.join(l['digest'] for l in m['layers']))")
    size=$(python3 -c "import json; m=json.load(open('$work/manifest.json')); print(sum(l['size'] for l in m['layers']))")
    tar_bytes=0
    for l in $layers; do
        n=$(curl -fsS "http://$reg/v2/bench/$t/blobs/$l" | gzip -dc | wc -c)
        tar_bytes=$((tar_bytes + n))
    done
    for round in $(seq "$rounds"); do
        t0=$(date +%s.%N)
        for l in $layers; do curl -fsS "http://$reg/v2/bench/$t/blobs/$l" | gzip -dc | sha256sum > /dev/null; done
        t1=$(date +%s.%N)
        floor_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
        read -r e_s e_kb < <(measure "$encc" image pull "$ref" -o "$work/img" --key-file "$work/key" --tls-verify=false --insecure-policy)
        rm -f "$work/img"
        echo "| $t ($(echo $layers | wc -w) layers) | $((size / 1048576)) MiB / $((tar_bytes / 1048576)) MiB | $round | ${e_s} s, peak RSS $((e_kb / 1024)) MiB | ${floor_s} s | $(awk -v a="$e_s" -v b="$floor_s" 'BEGIN { printf "%.2f", a / b }') |"
    done
done

echo
echo "| image | encc pull | skopeo copy + umoci raw unpack | encc / peer |"
echo "|---|---|---|---|"
for t in single five; do
    ref="docker://$reg/bench/$t:latest"
    read -r e_s e_kb < <(measure "$encc" image pull "$ref" -o "$work/img" --key-file "$work/key" --tls-verify=false --insecure-policy)
    rm -f "$work/img"
    t0=$(date +%s.%N)
    read -r c_s c_kb < <(measure skopeo copy --src-tls-verify=false "$ref" "oci:$work/oci:$t")
    read -r u_s u_kb < <(measure umoci raw unpack --image "$work/oci:$t" "$work/unpacked")
    t1=$(date +%s.%N)
    peer_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    rm -rf "$work/unpacked" "$work/oci"
    echo "| $t | ${e_s} s, peak RSS $((e_kb / 1024)) MiB | ${peer_s} s (skopeo ${c_s} s + umoci ${u_s} s, peak RSS $((u_kb / 1024)) MiB) | $(awk -v a="$e_s" -v b="$peer_s" 'BEGIN { printf "%.2f", a / b }') |"
done

[[ ${BENCH_ENCRYPTED:-1} == 1 ]] || exit 0
echo
echo "| image | encc pull, plain layers | encc pull, encrypted layers | encrypted / plain |"
echo "|---|---|---|---|"
for t in single five; do
    pull() { measure "$encc" image pull "docker://$reg/bench/$t:$1" -o "$work/img" --key-file "$work/key" --tls-verify=false --insecure-policy --decryption-key "$work/rsa.pem"; rm -f "$work/img"; }
    read -r p_s p_kb < <(pull latest)
    read -r x_s x_kb < <(pull encrypted)
    echo "| $t | ${p_s} s, peak RSS $((p_kb / 1024)) MiB | ${x_s} s, peak RSS $((x_kb / 1024)) MiB | $(awk -v a="$x_s" -v b="$p_s" 'BEGIN { printf "%.2f", a / b }') |"
done
