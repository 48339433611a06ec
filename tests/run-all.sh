#!/usr/bin/env bash
# The one test command: sets up everything the tests need on a fresh machine (libclang for
# RocksDB's bindgen, pinned Python venvs for boto3 / moto / bao and for the aws CLI), builds
# `coffer`, then runs the Rust tests (nextest) and the pytest suite (tests/py).
#
# Idempotent and quick on a machine that already has the pieces. Exit status is non-zero if
# any phase fails; the output ends with the runners' summary lines and a total.
#
# Environment knobs:
#   CARGO_TARGET_DIR   build cache (default: $HOME/.cache/coffer-target, outside the clone)
#   COFFER_VENV_DIR    where the venvs live (default: $HOME/.cache/coffer-venvs)
#   PYTHON             interpreter used to create the venvs (default: python3)
#   COFFER_SKIP_RUST=1 / COFFER_SKIP_PY=1   skip a test runner (local iteration only)
#   COFFER_SKIP_BUILD=1  do not build; use $COFFER_BIN if set (local iteration only)
#   PYTEST_ARGS        extra arguments for pytest (e.g. "-k multipart -x")
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/coffer-target}"
VENV_DIR="${COFFER_VENV_DIR:-$HOME/.cache/coffer-venvs}"
PYTHON="${PYTHON:-python3}"
LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/coffer-run-all.XXXXXX")"

export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1

# ---------------------------------------------------------------------------------------------
# Phase bookkeeping: every phase is timed; a failed phase is remembered, later phases still run
# when they can (no fail-fast), and the script exits non-zero at the end.
# ---------------------------------------------------------------------------------------------
PHASE_NAMES=()
PHASE_SECS=()
PHASE_STATUS=()
FAILED=0

now() { date +%s.%N; }

# run_phase NAME CMD...: runs CMD, records its time and status, never aborts the script.
run_phase() {
  local name="$1"
  shift
  echo
  echo "==> [$name] $(date -u +%H:%M:%S)"
  local t0 t1 rc=0
  t0="$(now)"
  "$@" || rc=$?
  t1="$(now)"
  local secs
  secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
  PHASE_NAMES+=("$name")
  PHASE_SECS+=("$secs")
  if [[ $rc -eq 0 ]]; then
    PHASE_STATUS+=("ok")
  else
    PHASE_STATUS+=("FAILED (exit $rc)")
    FAILED=1
  fi
  echo "<== [$name] ${secs}s, ${PHASE_STATUS[-1]}"
  return $rc
}

as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "need root for: $*" >&2
    return 1
  fi
}

# ---------------------------------------------------------------------------------------------
# Phase: system packages. RocksDB's bindgen needs libclang; the C++ compiler builds RocksDB.
# ---------------------------------------------------------------------------------------------
have_libclang() {
  # bindgen (clang-sys) loads libclang.so or libclang-<version>.so*; libclang-cpp*.so is not it.
  local dir
  if [[ -n "${LIBCLANG_PATH:-}" ]]; then
    compgen -G "${LIBCLANG_PATH%/}/libclang.so*" >/dev/null && return 0
    compgen -G "${LIBCLANG_PATH%/}/libclang-[0-9]*.so*" >/dev/null && return 0
  fi
  for dir in /usr/lib/llvm-*/lib /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 /usr/lib; do
    compgen -G "$dir/libclang.so*" >/dev/null && return 0
    compgen -G "$dir/libclang-[0-9]*.so*" >/dev/null && return 0
  done
  return 1
}

system_deps() {
  local pkgs=()
  have_libclang || pkgs+=(libclang-dev)
  command -v c++ >/dev/null 2>&1 || pkgs+=(g++)
  if [[ ${#pkgs[@]} -eq 0 ]]; then
    echo "libclang and a C++ compiler already present"
    return 0
  fi
  echo "installing: ${pkgs[*]}"
  as_root apt-get update -qq || return
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" || return
  have_libclang
}

# ---------------------------------------------------------------------------------------------
# Phase: Python venvs, recreated when their requirements file (or the interpreter) changed.
# ---------------------------------------------------------------------------------------------
ensure_venv() {
  local name="$1" req="$2"
  local dir="$VENV_DIR/$name"
  local want
  want="$( { cat "$req"; "$PYTHON" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
  if [[ -x "$dir/bin/python" && -f "$dir/.requirements.sha256" ]] &&
    [[ "$(cat "$dir/.requirements.sha256")" == "$want" ]] &&
    "$dir/bin/python" -c 'pass' 2>/dev/null; then
    echo "venv $name up to date ($dir)"
    return 0
  fi
  echo "creating venv $name ($dir) from $req"
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir" || return
  "$dir/bin/python" -m pip install -q -r "$req" || return
  echo "$want" >"$dir/.requirements.sha256"
}

python_deps() {
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || {
    echo "$PYTHON is older than 3.10" >&2
    return 1
  }
  mkdir -p "$VENV_DIR"
  # Two runs on one machine must not build the same venv at the same time.
  exec 9>"$VENV_DIR/.lock"
  if command -v flock >/dev/null 2>&1; then flock 9; fi
  local rc=0
  ensure_venv py tests/requirements.txt && ensure_venv awscli tests/requirements-awscli.txt || rc=$?
  exec 9>&-
  [[ $rc -eq 0 ]] || return $rc
  "$VENV_DIR/awscli/bin/aws" --version || return
  "$VENV_DIR/py/bin/python" -c 'import boto3, botocore; print("boto3", boto3.__version__, "botocore", botocore.__version__)'
}

# ---------------------------------------------------------------------------------------------
# Phases: build, Rust tests, Python tests.
# ---------------------------------------------------------------------------------------------
build() {
  # run_phase calls this in a `||` context, where `set -e` does not apply: check each step.
  # One feature resolution for the build and the tests (dev-dependencies included), so RocksDB
  # and the rest compile once: `cargo build --bin coffer` alone resolves features differently.
  cargo build --workspace --bins --tests --benches || return
  test -x "$COFFER_BIN"
}

rust_tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast --no-tests=warn 2>&1 | tee "$LOG_DIR/rust.log"
  else
    echo "cargo-nextest not found; falling back to cargo test"
    cargo test --workspace --no-fail-fast 2>&1 | tee "$LOG_DIR/rust.log"
  fi
  return "${PIPESTATUS[0]}"
}

py_tests() {
  # Exit 5 (no test collected) is returned as is: a failure for this suite, not a pass.
  local extra=()
  # PYTEST_ARGS is shell-quoted by the caller, e.g. PYTEST_ARGS="-k 'listing or keys' -x".
  eval "extra=(${PYTEST_ARGS:-})"
  "$COFFER_TEST_VENV/bin/python" -m pytest -q -rfE -p no:cacheprovider tests/py "${extra[@]}" 2>&1 |
    tee "$LOG_DIR/py.log"
  return "${PIPESTATUS[0]}"
}

# Environment of the test processes: never reach real AWS, never read ~/.aws, and do not let
# the machine's CA bundle (meant for the outside world) break plain-HTTP loopback clients.
test_env() {
  unset AWS_CA_BUNDLE AWS_PROFILE AWS_DEFAULT_PROFILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3
  unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
  export AWS_EC2_METADATA_DISABLED=true
  export AWS_CONFIG_FILE=/dev/null
  export AWS_SHARED_CREDENTIALS_FILE=/dev/null
  export COFFER_TEST_VENV="$VENV_DIR/py"
  export COFFER_AWS_CLI="$VENV_DIR/awscli/bin/aws"
  if [[ "${COFFER_SKIP_BUILD:-0}" == 1 ]]; then
    export COFFER_BIN="${COFFER_BIN:-$CARGO_TARGET_DIR/debug/coffer}"
  else
    export COFFER_BIN="$CARGO_TARGET_DIR/debug/coffer"
  fi
  # moto_server and bao for tests that start them; appended so the system python stays first.
  export PATH="$PATH:$COFFER_TEST_VENV/bin"
}

# Sums "N passed" / "N failed" / "N error(s)" / "N skipped" out of a runner's last summary line.
count() {
  local line="$1" word="$2"
  echo "$line" | grep -oE "[0-9]+ $word" | tail -1 | grep -oE '^[0-9]+' || echo 0
}

# ---------------------------------------------------------------------------------------------
echo "coffer run-all: root=$ROOT target=$CARGO_TARGET_DIR venvs=$VENV_DIR logs=$LOG_DIR"
test_env

run_phase "system deps" system_deps || true
run_phase "python venvs" python_deps || true
BUILD_OK=1
if [[ "${COFFER_SKIP_BUILD:-0}" != 1 ]]; then
  run_phase "cargo build" build || BUILD_OK=0
fi

RUST_RAN=0
PY_RAN=0
if [[ "${COFFER_SKIP_RUST:-0}" != 1 ]]; then
  RUST_RAN=1
  run_phase "rust tests" rust_tests || true
fi
if [[ "${COFFER_SKIP_PY:-0}" != 1 ]]; then
  if [[ -x "$COFFER_TEST_VENV/bin/python" ]]; then
    # Without a binary every test errors at the server fixture, which says so; still run them.
    [[ $BUILD_OK -eq 1 ]] || echo "warning: coffer did not build; the pytest suite will fail at its fixture"
    PY_RAN=1
    run_phase "pytest tests/py" py_tests || true
  else
    echo "no Python venv: pytest phase not run"
    FAILED=1
  fi
fi

echo
echo "==> phase timings"
for i in "${!PHASE_NAMES[@]}"; do
  printf '  %-28s %8ss  %s\n' "${PHASE_NAMES[$i]}" "${PHASE_SECS[$i]}" "${PHASE_STATUS[$i]}"
done

# Closing lines: each runner's own summary, then one total.
passed=0 failed=0 skipped=0
echo
if [[ $RUST_RAN -eq 1 && -f "$LOG_DIR/rust.log" ]]; then
  # nextest: "     Summary [  12.3s] 40 tests run: 40 passed, 2 skipped"; cargo test: "test result: ..."
  rust_lines="$(grep -E '^\s+Summary \[|^test result:' "$LOG_DIR/rust.log" || true)"
  if [[ -n "$rust_lines" ]]; then
    echo "$rust_lines"
    while IFS= read -r l; do
      passed=$((passed + $(count "$l" passed)))
      failed=$((failed + $(count "$l" failed) + $(count "$l" "timed out")))
      skipped=$((skipped + $(count "$l" skipped) + $(count "$l" ignored)))
    done <<<"$rust_lines"
  fi
fi
if [[ $PY_RAN -eq 1 && -f "$LOG_DIR/py.log" ]]; then
  py_line="$(grep -E '(passed|failed|error|errors|skipped|no tests ran).* in [0-9.]+s' "$LOG_DIR/py.log" | tail -1 || true)"
  if [[ -n "$py_line" ]]; then
    echo "$py_line"
    passed=$((passed + $(count "$py_line" passed)))
    failed=$((failed + $(count "$py_line" failed) + $(count "$py_line" "errors?")))
    skipped=$((skipped + $(count "$py_line" skipped)))
  fi
fi
# A phase that failed without a failing test to show for it (build error, runner crash) still
# counts as a failure in the total.
if [[ $FAILED -ne 0 && $failed -eq 0 ]]; then
  failed=1
fi
echo "total: $passed passed, $failed failed, $skipped skipped"
exit "$FAILED"
