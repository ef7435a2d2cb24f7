#!/usr/bin/env bash
# Build PyTorch from source with the torch.nn.functional.correlation patch, and
# run the correlation tests against it. Not run in CI: it needs a large machine
# (a CPU-only build takes about 1 h on 32 cores, a CUDA build several hours,
# and the tree needs ~30 GB of disk).
#
# Usage:
#   tools/build_patched_torch.sh cpu  [WORKDIR]   # USE_CUDA=0
#   tools/build_patched_torch.sh cuda [WORKDIR]   # USE_CUDA=1, TORCH_CUDA_ARCH_LIST
#
# WORKDIR (default ./pytorch-correlation-build) receives the checkout
# (WORKDIR/pytorch), the patch as applied (WORKDIR/correlation.patch) and the
# logs. Use a fresh virtual environment: the build installs torch into it.
#
# Environment:
#   PYTORCH_TAG    upstream tag to build. Default v2.14.1: the release of the
#                  torch wheel that tools/check_patch.py checks the patch
#                  against in CI (torch 2.14.1, git 5c4886908584029761b579af026dcfb627c84070).
#                  The preview package supports torch >= 2.11; the patch
#                  itself targets this tag (anchors checked by apply_patch.py).
#   PYTORCH_REPO   default https://github.com/pytorch/pytorch.git
#   PYTHON         default python3 (3.10 or newer)
#   MAX_JOBS       parallel compile jobs, default: number of CPUs
#   TORCH_CUDA_ARCH_LIST  cuda builds only, default "8.0;9.0" (A100, H100)
#   CUDA_HOME      cuda builds only, default /usr/local/cuda
#   SKIP_TESTS=1   build only
#
# Requirements: git, a C++17 compiler (GCC >= 11 or Clang >= 14), CMake and
# Ninja (installed below with PyTorch's build requirements), and for the CUDA
# variant a CUDA toolkit and cuDNN supported by PYTORCH_TAG.

set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 2
}

VARIANT="${1:-}"
case "$VARIANT" in
    cpu | cuda) ;;
    -h | --help | *) usage ;;
esac

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT="$(dirname "$HERE")"
WORKDIR="$(mkdir -p "${2:-pytorch-correlation-build}" && cd "${2:-pytorch-correlation-build}" && pwd)"
SRC="$WORKDIR/pytorch"
PYTORCH_TAG="${PYTORCH_TAG:-v2.14.1}"
PYTORCH_REPO="${PYTORCH_REPO:-https://github.com/pytorch/pytorch.git}"
PYTHON="${PYTHON:-python3}"
MAX_JOBS="${MAX_JOBS:-$(nproc)}"
export MAX_JOBS

log() { printf '\n=== %s\n' "$*"; }

# 1. The pinned upstream checkout, with submodules.
if [ ! -d "$SRC/.git" ]; then
    log "cloning $PYTORCH_REPO at $PYTORCH_TAG into $SRC"
    git clone --branch "$PYTORCH_TAG" --depth 1 --recurse-submodules \
        --shallow-submodules --jobs 8 "$PYTORCH_REPO" "$SRC"
else
    have="$(git -C "$SRC" describe --tags --exact-match 2>/dev/null || echo unknown)"
    if [ "$have" != "$PYTORCH_TAG" ]; then
        echo "error: $SRC is at '$have', not $PYTORCH_TAG; remove it or set PYTORCH_TAG" >&2
        exit 1
    fi
    git -C "$SRC" submodule update --init --recursive --jobs 8
fi

# 2. The patch: record it, then apply it (idempotent; fails with the file and
#    anchor if upstream moved on, without writing anything).
log "applying the correlation patch"
if "$PYTHON" "$HERE/apply_patch.py" "$SRC" --check --quiet; then
    echo "already applied"
else
    rc=$?
    if [ "$rc" -ne 1 ]; then  # 2: a missing source or a moved-on anchor
        exit "$rc"
    fi
    "$PYTHON" "$HERE/apply_patch.py" "$SRC" --emit-patch "$WORKDIR/correlation.patch" --quiet
    "$PYTHON" "$HERE/apply_patch.py" "$SRC"
fi

# 3. Build requirements and flags.
log "installing build requirements"
if [ -f "$SRC/requirements-build.txt" ]; then
    "$PYTHON" -m pip install -r "$SRC/requirements-build.txt"
fi
"$PYTHON" -m pip install -r "$SRC/requirements.txt"

export BUILD_TEST=0          # no C++ test binaries
export USE_DISTRIBUTED=0     # not needed by the correlation tests; faster
export USE_ROCM=0
export USE_XPU=0
export USE_MPS=0
if [ "$VARIANT" = cpu ]; then
    export USE_CUDA=0
    export USE_CUDNN=0
else
    export USE_CUDA=1
    export USE_CUDNN=1
    export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
    export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-8.0;9.0}"
    if [ ! -x "$CUDA_HOME/bin/nvcc" ]; then
        echo "error: no nvcc under CUDA_HOME=$CUDA_HOME" >&2
        exit 1
    fi
fi

# 4. Build and install (editable) into the current environment.
log "building PyTorch $PYTORCH_TAG ($VARIANT, MAX_JOBS=$MAX_JOBS); log: $WORKDIR/build.log"
(cd "$SRC" && "$PYTHON" -m pip install --no-build-isolation -v -e .) >"$WORKDIR/build.log" 2>&1 || {
    tail -n 60 "$WORKDIR/build.log" >&2
    echo "error: build failed; see $WORKDIR/build.log" >&2
    exit 1
}
(cd "$WORKDIR" && "$PYTHON" -c "import torch; print('built', torch.__version__, torch.version.git_version, 'cuda', torch.version.cuda)")

if [ "${SKIP_TESTS:-0}" = 1 ]; then
    exit 0
fi

# 5. Tests: ours (as copied into test/nn by apply_patch.py), and the upstream
#    suites that pick the operator up from its OpInfo, ModuleInfo, overrides
#    entry, Meta kernel, decomposition and functorch batch rules.
log "running the correlation tests; log: $WORKDIR/test.log"
"$PYTHON" -m pip install pytest expecttest hypothesis
cd "$SRC/test"
status=0
run_tests() {
    echo "+ $*" | tee -a "$WORKDIR/test.log"
    "$PYTHON" -m pytest -q "$@" 2>&1 | tee -a "$WORKDIR/test.log" | tail -n 5 || status=1
}
: >"$WORKDIR/test.log"
run_tests nn/test_correlation.py nn/test_correlation_pt2.py nn/test_correlation_hypothesis.py
run_tests test_ops.py test_ops_gradients.py test_ops_fwd_gradients.py -k correlation
run_tests test_meta.py test_decomp.py test_proxy_tensor.py -k correlation
run_tests functorch/test_vmap.py functorch/test_ops.py -k correlation
run_tests test_modules.py -k Correlation
run_tests test_overrides.py -k "correlation or Correlation"
if [ "$status" -ne 0 ]; then
    echo "error: some tests failed; see $WORKDIR/test.log" >&2
fi
exit "$status"
