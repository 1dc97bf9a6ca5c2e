#!/usr/bin/env bash
# Cold start of `a3s-box run busybox true` (named, removed after each run) against the raw floor: the same QEMU binary,
# machine, accelerator, kernel (the cached PVH vmlinux) and kernel command line booting a
# minimal init that powers off at once. Runs alternate, in one session; prints both medians and
# the ratio. Then the exec round trip (`a3s-box exec BOX true`) and host RSS of an idle box.
#
#   bench/coldstart.sh [RUNS]        (default 10; A3S_BOX=path/to/a3s-box, default target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
source bench/home-lib.sh
bench_box coldstart
bench_home
# Cold boots: this measures the boot path (bench/restore.sh measures starting from a saved VM).
export A3S_BOX_RESTORE=${A3S_BOX_RESTORE:-off}
work=$(mktemp -d)
trap 'rm -rf "$work"; "$box" rm -f bench-idle >/dev/null 2>&1 || true; bench_home_cleanup' EXIT

now() { date +%s.%N; }
median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.3f}")' "$@"; }

# Warm-up: imports busybox, extracts the vmlinux, builds and caches the initrd.
"$box" run --name bench-warm busybox true
cmdline=$("$box" inspect bench-warm | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["kernel_cmdline"])')
"$box" rm bench-warm >/dev/null
vmlinux=$(ls "$A3S_HOME"/cache/kernels/*/vmlinux | head -1)
floor_cmdline=$(echo "$cmdline" | sed -e 's#rdinit=/.a3s/init#rdinit=/init#' -e 's# a3s.image=[^ ]*##')

# The floor's initramfs: static busybox whose /init powers off immediately.
mkdir -p "$work/rd/bin"
cp /bin/busybox "$work/rd/bin/busybox"
printf '#!/bin/busybox sh\n/bin/busybox poweroff -f\n' > "$work/rd/init"
chmod +x "$work/rd/init"
(cd "$work/rd" && find . | cpio -o -H newc --quiet > "$work/floor.cpio")

accel=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["accel"])' < <("$box" info --format json))
cpu=max; [ "$accel" = kvm ] && cpu=host
machine=(-M microvm,acpi=on -bios /usr/share/qemu/qboot.rom)
[ "${A3S_BOX_MACHINE:-microvm}" = q35 ] && machine=(-M q35,smbus=off,sata=off)
floor() {
  timeout 120 qemu-system-x86_64 "${machine[@]}" -accel "$accel" -cpu "$cpu" -m 256 -smp 1 \
    -nodefaults -no-user-config -display none -no-reboot \
    -kernel "$vmlinux" -initrd "$work/floor.cpio" -append "$floor_cmdline" \
    -chardev "file,id=con,path=$work/floor-console.log" -serial chardev:con
}

floor_t=(); box_t=()
for i in $(seq "$runs"); do
  s=$(now); floor; e=$(now); floor_t+=("$(echo "$e - $s" | bc)")
  s=$(now); "$box" run --name "bench-cs-$i" busybox true; e=$(now); box_t+=("$(echo "$e - $s" | bc)")
  "$box" inspect "bench-cs-$i" >> "$work/timings.jsonl"; "$box" rm "bench-cs-$i" >/dev/null
  echo "run $i: floor ${floor_t[-1]} s, a3s-box ${box_t[-1]} s" >&2
done
fm=$(median "${floor_t[@]}"); bm=$(median "${box_t[@]}")
echo "cold start ($accel, $runs alternating runs): floor median ${fm} s, a3s-box run busybox true median ${bm} s, ratio $(python3 -c "print(f'{$bm/$fm:.3f}')")"
# Where a run's time goes, as each box recorded it (inspect .timings for its start,
# .stop_timings from the workload's start to the recorded exit), and what is left.
python3 - "$work/timings.jsonl" "$bm" <<'PY'
import json, statistics, sys
text, total = open(sys.argv[1]).read(), float(sys.argv[2]) * 1000
dec = json.JSONDecoder(); i = 0; per = {}; guest = {}; sums = []
while i < len(text):
    while i < len(text) and text[i].isspace(): i += 1
    if i >= len(text): break
    recs, i = dec.raw_decode(text, i)
    for r in recs:
        ph = r.get("timings", [])
        stop = r.get("stop_timings", [])
        sums.append(sum(p["ms"] for p in ph + stop))
        for p in ph: per.setdefault(p["name"], []).append(p["ms"])
        for p in stop: per.setdefault("stop: " + p["name"], []).append(p["ms"])
        boot = r.get("boot") or {}
        steps = boot.get("guest_steps", [])
        for p in steps: guest.setdefault(p["name"], []).append(p["ms"])
        if steps and "boot_ms" in boot:
            guest.setdefault("before the guest clock (QEMU, firmware)", []).append(
                boot["boot_ms"] - boot["guest_uptime_ms"])
            guest.setdefault("channel and Ready", []).append(
                boot["guest_uptime_ms"] - sum(p["ms"] for p in steps))
for k, v in per.items():
    print(f"  {k:16s} median {statistics.median(v):7.1f} ms")
for k, v in guest.items():
    print(f"    vm_boot: {k:16s} median {statistics.median(v):7.1f} ms")
s = statistics.median(sums) if sums else 0
print(f"  sum of phases    median {s:7.1f} ms; the rest (the CLI's start and exit, reading "
      f"the exit, the record) {total - s:.0f} ms")
PY

# Exec round trip and idle RSS on one detached box.
"$box" run -d --name bench-idle busybox sleep 3600 >/dev/null
"$box" exec bench-idle true
exec_t=()
for i in $(seq 20); do s=$(now); "$box" exec bench-idle true; e=$(now); exec_t+=("$(echo "($e - $s) * 1000" | bc)"); done
echo "exec round trip (a3s-box exec BOX true, 20 runs): median $(median "${exec_t[@]}") ms"
sleep 3
qemu_pid=$("$box" inspect bench-idle | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["state"]["qemu_pid"])')
mon_pid=$("$box" inspect bench-idle | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["state"]["monitor_pid"])')
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
echo "idle box host RSS (256 MiB guest): QEMU $(( $(rss "$qemu_pid") / 1024 )) MiB + monitor $(( $(rss "$mon_pid") / 1024 )) MiB"
