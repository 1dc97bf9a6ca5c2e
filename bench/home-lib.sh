# Sourced by the bench scripts: the binary a bench drives and the A3S home it runs in.
#   bench_box NAME [debug]  box: $A3S_BOX, else target/release (or debug)/a3s-box, built with its
#                           guest-init when missing (NAME says who builds); A3S_BOX_QUIET=1
#   bench_home              A3S_HOME as given (kept), else a fresh one, exported
#   bench_home_cleanup      removes the fresh one (call last at exit, after the boxes are gone)
bench_box() {
  local profile=${2:-release}
  box=${A3S_BOX:-target/$profile/a3s-box}
  if [ ! -x "$box" ]; then
    echo "bench/$1.sh: building $box" >&2
    if [ "$profile" = release ]; then
      cargo build -q --release -p a3s-box
      scripts/build-guest-init --release -q
    else
      cargo build -q -p a3s-box
      scripts/build-guest-init -q
    fi
  fi
  box=$(realpath "$box")
  export A3S_BOX_QUIET=1
}
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
