# Sourced by the bench scripts: the A3S home a bench runs in.
#   bench_home            A3S_HOME as given (kept), else a fresh one, exported
#   bench_home_cleanup    removes the fresh one (call last at exit, after the boxes are gone)
bench_home() {
  bench_own_home=
  if [ -z "${A3S_HOME:-}" ]; then
    A3S_HOME=$(mktemp -d)
    bench_own_home=$A3S_HOME
  fi
  export A3S_HOME
}
bench_home_cleanup() {
  if [ -n "${bench_own_home:-}" ]; then
    rm -rf --one-file-system "$bench_own_home"
  fi
}
