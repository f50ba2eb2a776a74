#!/usr/bin/env bash
# Benchmark of the protected rootfs, each figure next to a peer measured in the same run:
#   build   encc rootfs build        vs  tar -cf - SRC | tar -xf - (copy into a fresh dir)
#   verify  encc rootfs verify       (every block decrypted, every tree node checked)
#   read    dd of one file (big.bin, 512 MiB by default) through the FUSE mount  vs  the same file in SRC
#   tree    tar -cf - MOUNT | wc -c  vs  tar -cf - SRC | wc -c
# and a second table, each row REPEAT times (default 3; median, min–max), comparing the mount
# with the plain tree and with two FUSE peers from Debian over the same tree, gocryptfs
# (encrypted, authenticated file contents) and squashfuse (a read-only image, made with
# mksquashfs uncompressed):
#   cold tree    whole-tree read after `echo 3 > /proc/sys/vm/drop_caches`, fresh mount
#   warm tree    the same read again on the same mount (kernel caches warm)
#   4 readers    4 concurrent tars of different subtrees (the source's top-level entries,
#                cycled), caches dropped, fresh mount
# Needs root (FUSE) and, for the peers, gocryptfs, squashfuse and squashfs-tools (installed
# when missing). Source: BENCH_SRC (a directory), default a ~1.5 GB copy of /usr parts.
# Results go to stdout as Markdown tables. ENCC_BIN_DIR=DIR uses the encc binary in DIR
# instead of building a release.
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ -d "$HOME/.cargo/bin" ]] && export PATH="$HOME/.cargo/bin:$PATH"

work=$(mktemp -d "${BENCH_WORK:-/var/tmp}/encc-bench.XXXXXX")
mnt="$work/mnt"
cleanup() {
    if [[ -n "${mount_pid:-}" ]]; then kill -TERM "$mount_pid" 2>/dev/null || true; wait "$mount_pid" 2>/dev/null || true; fi
    mountpoint -q "$mnt" 2>/dev/null && umount "$mnt"
    mountpoint -q "$work/gmnt" 2>/dev/null && umount "$work/gmnt"
    rm -rf "$work"
}
trap cleanup EXIT

if [[ -n "${ENCC_BIN_DIR:-}" ]]; then
    encc=$(realpath "$ENCC_BIN_DIR")/encc
else
    cargo build --release --locked -p encc-tools >&2
    encc="$PWD/target/release/encc"
fi

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

big=$(stat -c %s "$src/big.bin")
cat <<TABLE
Source: $((bytes / 1000000)) MB in $files entries; image $((img_bytes / 1000000)) MB. $(nproc) cores.

| measurement | encc | peer | ratio (encc/peer time) |
|---|---|---|---|
| build (\`encc rootfs build\` vs \`tar -c \| tar -x\`) | $(printf %.2f "$build_s") s, $(mbps "$bytes" "$build_s") MB/s, peak RSS $((build_rss / 1024)) MiB | $(printf %.2f "$tar_s") s, $(mbps "$bytes" "$tar_s") MB/s | $(ratio "$build_s" "$tar_s") |
| verify (\`encc rootfs verify\`) | $(printf %.2f "$verify_s") s, $(mbps "$img_bytes" "$verify_s") MB/s, peak RSS $((verify_rss / 1024)) MiB | | |
| sequential read, $((big >> 20)) MiB file (\`dd bs=1M\`) | $(printf %.2f "$fuse_read_s") s, $(mbps "$big" "$fuse_read_s") MB/s (FUSE) | $(printf %.2f "$plain_read_s") s, $(mbps "$big" "$plain_read_s") MB/s (plain) | $(ratio "$fuse_read_s" "$plain_read_s") |
| whole tree \`tar -cf - \| wc -c\` | $(printf %.2f "$fuse_tree_s") s (FUSE) | $(printf %.2f "$plain_tree_s") s (plain) | $(ratio "$fuse_tree_s" "$plain_tree_s") |
TABLE

# --- cold and warm tree reads, 4 concurrent readers; gocryptfs and squashfuse as FUSE peers
repeat=${REPEAT:-3}
missing=()
for pkg in gocryptfs squashfuse squashfs-tools; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi
gmnt="$work/gmnt"
mkdir -p "$gmnt" "$work/cipher"
head -c 32 /dev/urandom | base64 > "$work/pw"
gocryptfs -q -init -extpass "cat $work/pw" "$work/cipher" > /dev/null
gocryptfs -q -extpass "cat $work/pw" "$work/cipher" "$gmnt"
cp -a "$src/." "$gmnt/"
umount "$gmnt"
mksquashfs "$src" "$work/tree.sqfs" -noappend -no-progress -quiet -noI -noId -noD -noF -noX > /dev/null
mapfile -t tops < <(find "$src" -mindepth 1 -maxdepth 1 -printf '%P\n' | sort)

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# Mounts KIND's view of the tree and sets $view.
mount_kind() {
    case $1 in
    plain) view=$src ;;
    encc) mount_fs; view=$mnt ;;
    gocryptfs) gocryptfs -q -extpass "cat $work/pw" "$work/cipher" "$gmnt"; view=$gmnt ;;
    squashfuse) squashfuse "$work/tree.sqfs" "$gmnt"; view=$gmnt ;;
    esac
}
umount_kind() {
    case $1 in
    plain) ;;
    encc) unmount_fs ;;
    *) umount "$gmnt" ;;
    esac
}
tree_read() { tar -cf - -C "$1" . | wc -c > /dev/null; }
# 4 tars at once, each over its share of the top-level entries.
readers() {
    local pids=() i
    for i in 0 1 2 3; do
        local part=()
        for ((j = i; j < ${#tops[@]}; j += 4)); do part+=("${tops[j]}"); done
        ((${#part[@]})) || continue
        (tar -cf - -C "$1" "${part[@]}" | wc -c > /dev/null) & pids+=($!)
    done
    wait "${pids[@]}"
}
timed() { local t0 t1; t0=$(now); "$@"; t1=$(now); elapsed=$(secs "$t0" "$t1"); }
one() { # row kind → $elapsed
    case $1 in
    cold) drop; mount_kind "$2"; timed tree_read "$view"; umount_kind "$2" ;;
    warm) mount_kind "$2"; tree_read "$view"; timed tree_read "$view"; umount_kind "$2" ;;
    readers) drop; mount_kind "$2"; timed readers "$view"; umount_kind "$2" ;;
    esac
}
declare -A median spread
for row in cold warm readers; do
    for kind in plain encc gocryptfs squashfuse; do
        times=()
        for _ in $(seq "$repeat"); do one "$row" "$kind"; times+=("$elapsed"); done
        read -r m lo hi < <(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1}
            END {printf "%.2f %.2f %.2f\n", NR % 2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2, a[1], a[NR]}')
        median[$row.$kind]=$m
        spread[$row.$kind]="$m s ($lo–$hi)"
    done
done
cell() { echo "${spread[$1.$2]}, $(ratio "${median[$1.$2]}" "${median[$1.plain]}")"; }
echo
echo "Tree reads, median (min–max) of $repeat runs; each cell: time, ratio to the plain tree in the same row."
echo "squashfuse over an uncompressed mksquashfs image; gocryptfs with its defaults (AES-256-GCM contents)."
echo
echo "| read | plain tree | encc | gocryptfs | squashfuse |"
echo "|---|---|---|---|---|"
echo "| whole tree, caches dropped, fresh mount | ${spread[cold.plain]} | $(cell cold encc) | $(cell cold gocryptfs) | $(cell cold squashfuse) |"
echo "| whole tree again, caches warm | ${spread[warm.plain]} | $(cell warm encc) | $(cell warm gocryptfs) | $(cell warm squashfuse) |"
echo "| 4 concurrent readers of different subtrees, caches dropped | ${spread[readers.plain]} | $(cell readers encc) | $(cell readers gocryptfs) | $(cell readers squashfuse) |"
