#!/usr/bin/env bash
# Benchmark of the protected rootfs, each figure next to a peer measured in the same run:
#   build   encc rootfs build        vs  tar -cf - SRC | tar -xf - (copy into a fresh dir)
#   verify  encc rootfs verify       (every block decrypted, every tree node checked)
#   read    dd of one 512 MiB file through the FUSE mount  vs  the same file in SRC
#   tree    tar -cf - MOUNT | wc -c  vs  tar -cf - SRC | wc -c
# Needs root (FUSE). Source: BENCH_SRC (a directory), default a ~1 GB copy of /usr parts.
# Results go to stdout as a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ -d "$HOME/.cargo/bin" ]] && export PATH="$HOME/.cargo/bin:$PATH"

work=$(mktemp -d "${BENCH_WORK:-/var/tmp}/encc-bench.XXXXXX")
mnt="$work/mnt"
cleanup() {
    if [[ -n "${mount_pid:-}" ]]; then kill -TERM "$mount_pid" 2>/dev/null || true; wait "$mount_pid" 2>/dev/null || true; fi
    mountpoint -q "$mnt" 2>/dev/null && umount "$mnt"
    rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --locked -p encc-tools >&2
encc="$PWD/target/release/encc"

src="$work/src"
if [[ -n "${BENCH_SRC:-}" ]]; then
    src="$BENCH_SRC"
else
    mkdir -p "$src"
    cp -a /usr/bin /usr/include /usr/share "$src/" 2>/dev/null || true
    head -c $((512 << 20)) /dev/urandom > "$src/big.bin"
fi
[[ -f "$src/big.bin" ]] || head -c $((512 << 20)) /dev/urandom > "$src/big.bin"
bytes=$(du -sb --apparent-size "$src" | cut -f1)
files=$(find "$src" | wc -l)
# Warm the page cache so both sides read the source from memory.
tar -cf - -C "$src" . | cat > /dev/null

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
mbps() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%d", n / 1000000 / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

"$encc" key gen -o "$work/key"

t0=$(now); mkdir "$work/copy"; tar -cf - -C "$src" . | tar -xf - -C "$work/copy"; sync -f "$work/copy"; t1=$(now)
tar_s=$(secs "$t0" "$t1"); rm -rf "$work/copy"

/usr/bin/time -f "%e %M" -o "$work/time" "$encc" rootfs build "$src" -o "$work/img" --key-file "$work/key" > "$work/build.out"
read -r build_s build_rss < "$work/time"
img_bytes=$(stat -c %s "$work/img")

/usr/bin/time -f "%e %M" -o "$work/time" "$encc" rootfs verify "$work/img" --key-file "$work/key" > /dev/null
read -r verify_s verify_rss < "$work/time"

mount_fs() {
    mkdir -p "$mnt"
    "$encc" rootfs mount "$work/img" "$mnt" --key-file "$work/key" 2> "$work/mount.log" &
    mount_pid=$!
    for _ in $(seq 100); do mountpoint -q "$mnt" && return; sleep 0.05; done
    echo "mount did not appear" >&2; cat "$work/mount.log" >&2; exit 1
}
unmount_fs() { kill -TERM "$mount_pid"; wait "$mount_pid"; mount_pid=; }

t0=$(now); dd if="$src/big.bin" of=/dev/null bs=1M status=none; t1=$(now); plain_read_s=$(secs "$t0" "$t1")
mount_fs
t0=$(now); dd if="$mnt/big.bin" of=/dev/null bs=1M status=none; t1=$(now); fuse_read_s=$(secs "$t0" "$t1")
unmount_fs

t0=$(now); plain_tree=$(tar -cf - -C "$src" . | wc -c); t1=$(now); plain_tree_s=$(secs "$t0" "$t1")
mount_fs
t0=$(now); fuse_tree=$(tar -cf - -C "$mnt" . | wc -c); t1=$(now); fuse_tree_s=$(secs "$t0" "$t1")
unmount_fs
[[ "$plain_tree" == "$fuse_tree" ]] || echo "warning: tar sizes differ: $plain_tree vs $fuse_tree" >&2

big=$((512 << 20))
cat <<TABLE
Source: $((bytes / 1000000)) MB in $files entries; image $((img_bytes / 1000000)) MB. $(nproc) cores.

| measurement | encc | peer | ratio (encc/peer time) |
|---|---|---|---|
| build (\`encc rootfs build\` vs \`tar -c \| tar -x\`) | $(printf %.2f "$build_s") s, $(mbps "$bytes" "$build_s") MB/s, peak RSS $((build_rss / 1024)) MiB | $(printf %.2f "$tar_s") s, $(mbps "$bytes" "$tar_s") MB/s | $(ratio "$build_s" "$tar_s") |
| verify (\`encc rootfs verify\`) | $(printf %.2f "$verify_s") s, $(mbps "$img_bytes" "$verify_s") MB/s, peak RSS $((verify_rss / 1024)) MiB | | |
| sequential read, 512 MiB file (\`dd bs=1M\`) | $(printf %.2f "$fuse_read_s") s, $(mbps "$big" "$fuse_read_s") MB/s (FUSE) | $(printf %.2f "$plain_read_s") s, $(mbps "$big" "$plain_read_s") MB/s (plain) | $(ratio "$fuse_read_s" "$plain_read_s") |
| whole tree \`tar -cf - \| wc -c\` | $(printf %.2f "$fuse_tree_s") s (FUSE) | $(printf %.2f "$plain_tree_s") s (plain) | $(ratio "$fuse_tree_s" "$plain_tree_s") |
TABLE
