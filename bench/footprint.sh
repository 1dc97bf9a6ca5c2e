#!/usr/bin/env bash
# Host memory of idle boxes, each figure against a baseline measured in the same run:
#  1. the raw floor: the same QEMU, machine, accelerator, kernel (the cached PVH vmlinux) and
#     memory size idling a minimal init (static busybox sleeping), no devices;
#  2. an idle busybox box with free page reporting (the default) and without
#     (A3S_BOX_BALLOON=off), idle and after a burst that used 40 % of the guest's memory, and
#     one with QEMU's default 1 GiB TCG translation buffer (A3S_BOX_TCG_TB_MIB=0, before it was
#     bounded), and one with guest RAM in transparent huge pages (A3S_BOX_THP=on, before
#     QEMU ran without them), as QEMU + monitor + passt, split into anonymous memory (what the host must
#     really find) and file pages (the kernel and initrd, shared page cache);
#  3. an idle real-image box (nginx from scripts/test-images, when it is cached) against the idle
#     busybox box;
#  4. N idle busybox boxes started together: the drop in the host's MemAvailable, per box;
#     with KSM=1 also after the host's KSM merged their identical pages (ksmd is turned on for
#     the measurement and set back after: it is the host's choice, off by default).
# Idle means: after the box's resident memory has stopped falling (free page reporting works a
# few seconds after the guest frees memory), read every 2 s until two readings agree to 2 MiB.
#
#   bench/footprint.sh [N]     (default 5 boxes for step 4; A3S_BOX=path/to/a3s-box, default
#                               target/release; MEM=128: the boxes' --memory, the workload's
#                               limit; the floor gets the VM size a3s-box gives that limit,
#                               259 MiB with the 6.12 cloud kernel)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5}
limit=${MEM:-128}
source bench/home-lib.sh
bench_box footprint
bench_home
work=$(mktemp -d)
floor_pid=
ksm=/sys/kernel/mm/ksm
ksm_prev=
cleanup() {
  [ -n "$floor_pid" ] && kill "$floor_pid" 2>/dev/null
  if [ -n "$ksm_prev" ]; then
    read -r run scan <<<"$ksm_prev"
    echo "$scan" > $ksm/pages_to_scan; echo "$run" > $ksm/run
  fi
  ids=$("$box" ps -aq 2>/dev/null | tr '\n' ' ')
  [ -n "$ids" ] && "$box" rm -f $ids >/dev/null 2>&1
  rm -rf "$work"
  bench_home_cleanup
}
trap cleanup EXIT

. bench/mem-lib.sh
mib() { python3 -c "print(f'{$1/1024:.1f}')"; }

# Warm-up: imports busybox, extracts the vmlinux, builds the initrd.
"$box" run --name bench-warm -m "${limit}m" busybox true
cmdline=$("$box" inspect bench-warm | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["kernel_cmdline"])')
# The VM size the boxes get for that limit: the floor runs at the same.
mem=$("$box" inspect bench-warm | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["vm_mem_mib"])')
"$box" rm bench-warm >/dev/null
vmlinux=$(ls "$A3S_HOME"/cache/kernels/*/vmlinux | head -1)
floor_cmdline=$(echo "$cmdline" | sed -e 's#rdinit=/.a3s/init#rdinit=/init#' -e 's# a3s.image=[^ ]*##')

# 1. The floor.
mkdir -p "$work/rd/bin"
cp /bin/busybox "$work/rd/bin/busybox"
printf '#!/bin/busybox sh\nexec /bin/busybox sleep 100000\n' > "$work/rd/init"
chmod +x "$work/rd/init"
(cd "$work/rd" && find . | cpio -o -H newc --quiet > "$work/floor.cpio")
accel=$("$box" info --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accel"])')
cpu=max; [ "$accel" = kvm ] && cpu=host
qemu-system-x86_64 -M microvm,acpi=on -bios /usr/share/qemu/qboot.rom -accel "$accel" -cpu "$cpu" \
  -m "$mem" -smp 1 -nodefaults -no-user-config -display none -no-reboot \
  -kernel "$vmlinux" -initrd "$work/floor.cpio" -append "$floor_cmdline" \
  -chardev "file,id=con,path=$work/floor-console.log" -serial chardev:con &
floor_pid=$!
read -r fa ff < <(settle "$floor_pid")
kill "$floor_pid"; wait "$floor_pid" 2>/dev/null || true; floor_pid=

# 2. Idle busybox, with and without free page reporting (both running at once).
"$box" run -d --name fp-balloon -m "${limit}m" busybox sleep 100000 >/dev/null
A3S_BOX_BALLOON=off "$box" run -d --name fp-noballoon -m "${limit}m" busybox sleep 100000 >/dev/null
# ... and with QEMU's default 1 GiB TCG translation buffer (before it was bounded).
A3S_BOX_TCG_TB_MIB=0 "$box" run -d --name fp-tb1g -m "${limit}m" busybox sleep 100000 >/dev/null
# ... and with guest RAM in huge pages (before QEMU ran with THP disabled).
A3S_BOX_THP=on "$box" run -d --name fp-thp -m "${limit}m" busybox sleep 100000 >/dev/null
read -r ba bf < <(settle $(pids_of fp-balloon))
read -r na nf < <(settle $(pids_of fp-noballoon))
read -r ta _ < <(settle $(pids_of fp-tb1g))
read -r ha _ < <(settle $(pids_of fp-thp))
"$box" rm -f fp-tb1g fp-thp >/dev/null
# ... and after the workload used 40 % of the guest's memory for a moment and freed it.
burst=$((mem * 2 / 5))
for b in fp-balloon fp-noballoon; do
  "$box" exec "$b" dd if=/dev/zero of=/dev/null bs="${burst}M" count=1 2>/dev/null \
    || { echo "bench/footprint.sh: the ${burst} MiB burst failed in $b" >&2; exit 1; }
done
read -r bb _ < <(settle $(pids_of fp-balloon))
read -r nb _ < <(settle $(pids_of fp-noballoon))
"$box" rm -f fp-noballoon >/dev/null

# 3. An idle real image against the idle busybox.
nginx_archive=$(ls /var/cache/a3s-test-images/nginx-*/image.tar 2>/dev/null | head -1 || true)
if [ -n "$nginx_archive" ]; then
  "$box" load -i "$nginx_archive" >/dev/null
  "$box" run -d --name fp-nginx -m "${limit}m" localhost/a3s-test/nginx:latest >/dev/null
  read -r xa xf < <(settle $(pids_of fp-nginx))
  "$box" rm -f fp-nginx >/dev/null
fi
"$box" rm -f fp-balloon >/dev/null

# 4. N idle boxes.
sleep 2
before=$(avail)
for i in $(seq "$n"); do "$box" run -d --name "fp-many-$i" -m "${limit}m" busybox sleep 100000 >/dev/null & done
wait
all=()
for i in $(seq "$n"); do all+=($(pids_of "fp-many-$i")); done
read -r ma mf < <(settle "${all[@]}")
after=$(avail)
ksm_after=
if [ "${KSM:-0}" = 1 ]; then
  ksm_prev="$(cat $ksm/run) $(cat $ksm/pages_to_scan)"
  echo 1000 > $ksm/pages_to_scan; echo 1 > $ksm/run
  scans=$(cat $ksm/full_scans) prev=-1
  # Until two full scans have passed and a 3 s reading merged nothing more.
  for _ in $(seq 60); do
    sleep 3
    cur=$(cat $ksm/pages_sharing)
    [ $(($(cat $ksm/full_scans) - scans)) -ge 2 ] && [ $((cur - prev)) -lt 256 ] && break
    prev=$cur
  done
  ksm_after=$(avail)
fi

python3 - "$accel" "$mem" "$fa" "$ff" "$ba" "$bf" "$na" "$nf" "${xa:-}" "${xf:-}" "$n" "$ma" "$mf" "$before" "$after" "$bb" "$nb" "$burst" "$ta" "$ha" "$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo unknown)" "$ksm_after" <<'EOF'
import sys
a = sys.argv
accel, mem = a[1], a[2]
fa, ff, ba, bf, na, nf = (int(x) / 1024 for x in a[3:9])
xa = int(a[9]) / 1024 if a[9] else None
xf = int(a[10]) / 1024 if a[10] else None
n, ma, mf, before, after = int(a[11]), int(a[12]) / 1024, int(a[13]) / 1024, int(a[14]) / 1024, int(a[15]) / 1024
print(f"idle footprint ({accel}, {mem} MiB guests; MiB resident: anonymous + file pages):")
print(f"  raw QEMU floor (minimal init)          {fa:7.1f} + {ff:6.1f}")
print(f"  busybox box, free page reporting       {ba:7.1f} + {bf:6.1f}   anon ratio to floor {ba/fa:.2f}")
print(f"  busybox box, no balloon (before)       {na:7.1f} + {nf:6.1f}   anon ratio to floor {na/fa:.2f}")
print(f"  reporting / no balloon (anon)          {ba/na:.2f}")
ta = int(a[19]) / 1024
print(f"  busybox box, 1 GiB TCG buffer (before)  {ta:7.1f} anon   bounded/1 GiB {ba/ta:.2f}")
ha = int(a[20]) / 1024
print(f"  busybox box, guest RAM in huge pages (before) {ha:7.1f} anon   base/huge pages {ba/ha:.2f}"
      f"   (host THP: {a[21]})")
bb, nb = int(a[16]) / 1024, int(a[17]) / 1024
print(f"  after a {a[18]} MiB burst in the workload: reporting {bb:7.1f}, no balloon {nb:7.1f}   ratio {bb/nb:.2f}")
if xa is not None:
    print(f"  nginx box, free page reporting         {xa:7.1f} + {xf:6.1f}   anon ratio to busybox {xa/ba:.2f}")
else:
    print("  nginx box: skipped (run scripts/test-images nginx to cache the image)")
print(f"  {n} idle busybox boxes: {ma:.1f} + {mf:.1f} (file pages shared), {ma/n:.1f} MiB anon per box; "
      f"host MemAvailable fell {before - after:.1f} MiB ({(before - after)/n:.1f} per box)")
if a[22]:
    k = (before - int(a[22]) / 1024) / n
    print(f"  the same after the host's KSM merged them: {k:.1f} MiB per box   ratio to floor (anon) {k/fa:.2f}")
else:
    print("  KSM: not measured (KSM=1 bench/footprint.sh turns the host's ksmd on for it)")
EOF
