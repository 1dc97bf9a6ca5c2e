#!/usr/bin/env bash
# `a3s-box build` (issue 21), one run on one host:
#   - cold build of a multi-stage Dockerfile (python3 build stage that generates a file with
#     RUN, final stage that COPYs it --from the first), with --no-cache;
#   - cached rebuild of the same Dockerfile (every step a cache hit), as a ratio to the cold build;
#   - the cost of one RUN step (a one-step Dockerfile, --no-cache) against `a3s-box run --rm` of
#     the same command on the same image, as a ratio.
# Medians of RUNS rounds. No thresholds: it prints numbers. The base image comes from
# scripts/test-images (cached).
#
#   bench/build.sh [RUNS]     (default 3; A3S_BOX=path/to/a3s-box, default: release build)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
if [ -z "${A3S_BOX:-}" ]; then
  cargo build -q --release -p a3s-box
  scripts/build-guest-init --release -q
  target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  A3S_BOX=$target_dir/release/a3s-box
fi
box=$A3S_BOX

line=$(scripts/test-images python3) || {
  rc=$?
  [ "$rc" = 3 ] && echo "bench/build.sh: the apt mirror is unreachable; cannot build the test image" >&2
  exit "$rc"
}
archive=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["archive"])' "$line")
py=localhost/a3s-test/python3:latest
A3S_HOME=$(mktemp -d)
export A3S_HOME
export A3S_BOX_QUIET=1
ctx=$(mktemp -d)
trap 'rm -rf "$A3S_HOME" "$ctx"' EXIT

now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$(now)"; }
median() { python3 -c 'import sys,statistics; print(f"{statistics.median(float(x) for x in sys.argv[1:]):.3f}")' "$@"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }

"$box" load -i "$archive" >/dev/null
mkdir -p "$ctx/multi/src" "$ctx/one"
cat >"$ctx/multi/Dockerfile" <<DF
FROM $py AS build
WORKDIR /work
COPY src/gen.py ./
RUN python3 gen.py > /work/out.txt
FROM $py
COPY --from=build /work/out.txt /app/
CMD ["python3", "-c", "print(open('/app/out.txt').read().strip())"]
DF
echo 'print("generated")' >"$ctx/multi/src/gen.py"
cmd='python3 -c "open(\"/tmp/x\", \"w\").write(\"x\")"'
printf 'FROM %s\nRUN %s\n' "$py" "$cmd" >"$ctx/one/Dockerfile"

# Warm-up: the base image's filesystem image and the kernel cache.
"$box" run --rm "$py" true

cold=() cached=() step=() plain=()
for _ in $(seq "$runs"); do
  s=$(now); "$box" build -q --no-cache -t bench-multi "$ctx/multi" >/dev/null; cold+=("$(since "$s")")
  s=$(now); "$box" build -q -t bench-multi "$ctx/multi" >/dev/null; cached+=("$(since "$s")")
  s=$(now); "$box" build -q --no-cache -t bench-one "$ctx/one" >/dev/null; step+=("$(since "$s")")
  s=$(now); "$box" run --rm "$py" sh -c "$cmd" >/dev/null; plain+=("$(since "$s")")
done
[ "$("$box" run --rm bench-multi)" = generated ] || { echo "bench/build.sh: the built image gave the wrong output" >&2; exit 1; }

c=$(median "${cold[@]}"); k=$(median "${cached[@]}"); o=$(median "${step[@]}"); p=$(median "${plain[@]}")
echo "bench/build.sh: $runs rounds, medians (seconds)"
printf '  %-46s %8s s\n' "cold multi-stage build (--no-cache)" "$c"
printf '  %-46s %8s s   ratio to cold %s\n' "cached rebuild (all steps cached)" "$k" "$(ratio "$k" "$c")"
printf '  %-46s %8s s\n' "run --rm of the RUN command" "$p"
printf '  %-46s %8s s   ratio to run --rm %s\n' "one RUN step (build --no-cache)" "$o" "$(ratio "$o" "$p")"
