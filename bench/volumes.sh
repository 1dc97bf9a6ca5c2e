#!/usr/bin/env bash
# Volume throughput and boot cost, in one run:
#  1. sequential write and read (dd, 1 MiB blocks, fsync on write, guest page cache dropped
#     before each read) to a virtiofs bind mount vs the guest's tmpfs (/tmp) and its initramfs
#     root (/), all in one box; prints MB/s and the bind/tmpfs ratio;
#  2. boot time (monitor's boot_ms, spawn to guest Ready) of boxes without and with a volume
#     (a volume adds virtiofsd and switches guest RAM to a shared memfd); prints both medians.
#
#   bench/volumes.sh [MIB] [BOOTS]   (default 64 MiB, 3 boots each; A3S_BOX=path/to/a3s-box)
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-64}
boots=${2:-3}
source bench/home-lib.sh
bench_box volumes
bench_home
# Cold boots: this measures the boot path (bench/restore.sh measures starting from a saved VM).
export A3S_BOX_RESTORE=${A3S_BOX_RESTORE:-off}
bind=$(mktemp -d)
trap 'rm -rf "$bind"; bench_home_cleanup' EXIT

median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.0f}")' "$@"; }

# One box: for each target, write then read $mib MiB and print "name write_s read_s".
script='
t() { set -- $(grep -m1 "now at" /proc/timer_list); echo $3; }  # ns (busybox date has no %N)
for d in /mnt/bind /tmp /; do
  f=$d/bench.bin
  s=$(t); dd if=/dev/zero of=$f bs=1M count='"$mib"' conv=fsync 2>/dev/null; e=$(t); w=$((e-s))
  sync; echo 3 > /proc/sys/vm/drop_caches
  s=$(t); dd if=$f of=/dev/null bs=1M 2>/dev/null; e=$(t); r=$((e-s))
  rm -f $f
  echo "R $d $w $r"
done'
out=$("$box" run --rm --memory 768m -v "$bind:/mnt/bind" busybox sh -c "$script")
echo "$out" | grep '^R ' | python3 -c '
import sys
rows = {}
mib = '"$mib"'
for line in sys.stdin:
    _, d, w, r = line.split()
    rows[d] = (mib / (int(w) / 1e9), mib / (int(r) / 1e9))
names = {"/mnt/bind": "virtiofs bind mount", "/tmp": "guest tmpfs (/tmp)", "/": "guest initramfs root (/)"}
print(f"sequential {mib} MiB, 1 MiB blocks (MB/s):")
for d in ["/mnt/bind", "/tmp", "/"]:
    w, r = rows[d]
    print(f"  {names[d]:<26} write {w:8.1f}   read {r:8.1f}")
bw, br = rows["/mnt/bind"]; tw, tr = rows["/tmp"]
print(f"  ratio bind/tmpfs           write {bw/tw:8.3f}   read {br/tr:8.3f}")
'

# Boot cost of a volume (memfd guest RAM + virtiofsd), alternating runs.
plain=(); vol=()
for i in $(seq "$boots"); do
  for kind in plain vol; do
    args=(); [ "$kind" = vol ] && args=(-v bench-vol:/data)
    "$box" run --name "bench-$kind" "${args[@]}" busybox true >/dev/null
    ms=$("$box" inspect "bench-$kind" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["boot"]["boot_ms"])')
    "$box" rm "bench-$kind" >/dev/null
    if [ "$kind" = vol ]; then vol+=("$ms"); else plain+=("$ms"); fi
  done
done
echo "boot to guest Ready, median of $boots (ms): no volume $(median "${plain[@]}"), one volume $(median "${vol[@]}")"
"$box" volume rm bench-vol >/dev/null
