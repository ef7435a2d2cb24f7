#!/usr/bin/env bash
# One entry point for a fresh machine: sets up a virtual environment with
# torch and the test requirements, builds and installs torch_correlation
# into it (pip install --no-build-isolation .), then runs
#   tools/run.sh demo   -- the main job: cost volume of an image pair with
#                          known motion, and the check that argmax recovers it
#   tools/run.sh test   -- the test suite
# Environment: VENV (default .venv), TORCH_SPEC (default torch==2.14.1),
# TORCH_CORRELATION_CUDA (auto|on|off; auto compiles the CUDA sources when
# torch has CUDA and nvcc is found), MAX_JOBS.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-demo}"
shift || true

VENV="${VENV:-.venv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.14.1}"
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDA_HOME=/usr/local/cuda
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$(cd "$VENV/bin" && pwd)/python"
stamp="$VENV/.requirements-installed"
if [ ! -f "$stamp" ] || [ requirements.txt -nt "$stamp" ]; then
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q "$TORCH_SPEC"
  "$PY" -m pip install -q -r requirements.txt
  touch "$stamp"
fi

# ccache makes rebuilds cheap when it is there; the build works without it.
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
start=$(date +%s)
"$PY" -m pip install -q --no-build-isolation --no-deps .
# The same library in place too, for the tools that import the source tree
# (docs, figures, benchmarks); ninja finds it up to date, so this only copies.
"$PY" tools/build_preview.py --inplace > /dev/null
echo "[run.sh] build + install took $(( $(date +%s) - start )) s"

case "$what" in
  demo)
    "$PY" tools/demo.py "$@"
    ;;
  test)
    # Lint as upstream runs it on the files the patch adds (tools/lint.sh,
    # a few seconds); a finding fails the run, after the tests have run.
    lint_status=0
    PYTHON="$PY" bash tools/lint.sh || lint_status=$?
    # The upstream patch: apply it to the wheel's copies of the files it
    # touches, run the full codegen over the patched yaml, import the result.
    "$PY" tools/check_patch.py
    # The docs: Sphinx with warnings as errors, and every example run.
    PYTHON="$PY" bash tools/build_docs.sh
    # The CUDA kernels run on the CPU in the AddressSanitizer and
    # UndefinedBehaviorSanitizer build of tools/cuda_on_cpu.py (the plain
    # build runs in the test suite); prints the kernel coverage table.
    "$PY" tools/cuda_on_cpu.py --sanitize
    # The test suite, last, so that its summary closes the output. It runs
    # from test/ so that the installed package is what the tests import.
    (cd test && "$PY" -m pytest -q -p no:cacheprovider "$@" .)
    if [ "$lint_status" != 0 ]; then
      echo "[run.sh] tools/lint.sh failed (exit $lint_status): see its findings above" >&2
      exit "$lint_status"
    fi
    ;;
  *)
    echo "usage: tools/run.sh {demo|test} [args...]" >&2
    exit 2
    ;;
esac
