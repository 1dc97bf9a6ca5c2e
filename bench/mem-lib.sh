# Host memory of running boxes, shared by bench/footprint.sh and bench/many.sh (sourced; needs
# $box set to the a3s-box binary).

kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
# Anonymous and file-backed resident KiB of a list of pids: "anon file".
usage() {
  local a=0 f=0 p
  for p in "$@"; do
    a=$((a + $(kib "$p" RssAnon) + $(kib "$p" RssShmem))); f=$((f + $(kib "$p" RssFile)))
  done
  echo "$a $f"
}
# Idle: after the resident memory has stopped falling (free page reporting works a few seconds
# after the guest frees memory), read every 2 s until two readings agree to 2 MiB.
settle() {
  local prev=-99999 cur
  for _ in $(seq 60); do
    sleep 2
    cur=$(usage "$@" | awk '{print $1 + $2}')
    [ $((cur - prev)) -lt 2048 ] && [ $((prev - cur)) -lt 2048 ] && break
    prev=$cur
  done
  usage "$@"
}
# QEMU, monitor and passt pids of box $1.
pids_of() {
  local j
  j=$("$box" inspect "$1")
  python3 - "$j" <<'PY'
import json, subprocess, sys
s = json.loads(sys.argv[1])[0]["state"]
pids = [s["qemu_pid"], s["monitor_pid"]]
# passt, started by the monitor for the default network
# (Debian's passt execs passt.avx2 where it can)
out = subprocess.run(["pgrep", "-P", str(s["monitor_pid"])], capture_output=True, text=True).stdout.split()
passt = [int(p) for p in out if open(f"/proc/{p}/comm").read().startswith("passt")]
print(" ".join(str(p) for p in pids + passt))
PY
}
avail() { awk '/MemAvailable/{print $2}' /proc/meminfo; }
