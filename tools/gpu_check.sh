#!/usr/bin/env bash
# GPU check of the preview package, to run ON a CUDA machine from the repo
# root (no network needed):
#
#   bash tools/gpu_check.sh
#
# 1. builds the package in place (python setup.py build_ext --inplace),
# 2. runs the whole test suite (CPU tests and test/test_correlation_cuda.py),
#    then the offset tests of the CUDA suite again as their own step, so that
#    the offset path's result shows in the summary on its own,
# 3. runs tools/sanitizer_case.py (integer and offset kernels) under
#    compute-sanitizer memcheck and racecheck,
# 4. times the offset path at RAFT- and PWC-Net-like sizes (informative: no
#    threshold; the benchmarks live in benchmarks/).
#
# Every step runs even if an earlier one failed (except that nothing can be
# tested without a build); each step's log goes to "$OUT" if set, else
# ./gpu_logs, and a summary (also in summary.txt) lists the failed steps.
# The exit status is the number of failed steps. Total runtime is bounded by
# per-step timeouts (under 10 minutes at most; typically far less).

set -u
set -x

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
LOGS="${OUT:-$ROOT/gpu_logs}"
mkdir -p "$LOGS"
PYTHON="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
# Only the local GPU's architecture: faster to build.
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
  TORCH_CUDA_ARCH_LIST="$("$PYTHON" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' 2>/dev/null || echo "8.0;9.0")"
  export TORCH_CUDA_ARCH_LIST
fi
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

FAILED=()
SUMMARY="$LOGS/summary.txt"
: > "$SUMMARY"

# torch.testing._internal needs expecttest, which GPU images often lack and
# cannot download: install any wheels carried in ./.whl (git-ignored) into a
# private directory.
if ! "$PYTHON" -c 'import expecttest' 2> /dev/null; then
  if ls "$ROOT"/.whl/*.whl > /dev/null 2>&1; then
    SITE="$(mktemp -d)"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$ROOT"/.whl/*.whl \
      && export PYTHONPATH="$PYTHONPATH:$SITE"
  fi
  "$PYTHON" -c 'import expecttest' 2> /dev/null \
    || echo "expecttest missing (put its wheel in .whl/): the tests will not import" | tee -a "$SUMMARY"
fi
# Spread the test files over a few processes when pytest-xdist is there.
PYTEST_PARALLEL=()
if "$PYTHON" -c 'import xdist' 2> /dev/null; then
  PYTEST_PARALLEL=(-n 4 --dist loadfile)
fi

# run_step NAME TIMEOUT_SECONDS COMMAND...: runs a step with a time limit,
# logging to $LOGS/NAME.log, and records whether it failed.
run_step() {
  local name="$1" limit="$2"
  shift 2
  local start=$SECONDS
  timeout --kill-after=10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  local rc=$?
  local line="$name: rc=$rc ($((SECONDS - start)) s)"
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    line="$line TIMED OUT after $limit s"
  fi
  echo "$line" | tee -a "$SUMMARY"
  tail -n 30 "$LOGS/$name.log"
  if [ "$rc" -ne 0 ]; then
    FAILED+=("$name")
  fi
  return "$rc"
}

{
  nvidia-smi || true
  "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
  command -v nvcc && nvcc --version
  command -v compute-sanitizer && compute-sanitizer --version
} > "$LOGS/environment.log" 2>&1

# 1. Build.
if run_step build 180 "$PYTHON" setup.py build_ext --inplace; then
  # 2. Tests: the CPU suite and the CUDA suite. The CUDA kernels' run on the
  # CPU (TestCorrelationCUDAOnCPU, tools/cuda_on_cpu.py) is left to CI: here
  # the GPU runs the same tests on the kernels themselves.
  run_step pytest 180 "$PYTHON" -m pytest -q -p no:cacheprovider -rfEs "${PYTEST_PARALLEL[@]}" \
    -k "not OnCPU" test/ --junitxml="$LOGS/pytest.xml"
  # (The 26 GB input2-beyond-2^31 case runs in the step above only.)
  run_step offset 45 "$PYTHON" -m pytest -q -p no:cacheprovider -rfEs \
    -k "offset and not OnCPU and not 64bit" test/test_correlation_cuda.py

  # 3. compute-sanitizer over a small forward + backward case. Without the
  # caching allocator every tensor is its own allocation, so memcheck sees
  # out-of-bounds accesses that a cached block would hide.
  if command -v compute-sanitizer > /dev/null; then
    run_step memcheck 75 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
      compute-sanitizer --tool memcheck --error-exitcode 1 \
      "$PYTHON" tools/sanitizer_case.py
    run_step racecheck 75 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
      compute-sanitizer --tool racecheck --racecheck-report all --error-exitcode 1 \
      "$PYTHON" tools/sanitizer_case.py
  else
    echo "compute-sanitizer: not found" | tee -a "$SUMMARY"
    FAILED+=("compute-sanitizer-missing")
  fi

  # 4. Offset path timings (CUDA events, median of 20 after warm-up).
  run_step offset_timing 30 "$PYTHON" -c '
import torch
import torch.nn.functional as F
import torch_correlation

def median_ms(fn):
    for _ in range(3):
        fn()
    times = []
    for _ in range(20):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]

# (name, input1 shape, input2 (H, W), max_displacement)
for name, shape, size2, max_disp in (
    ("RAFT level 0", (2, 256, 55, 128), (55, 128), 4),
    ("RAFT level 2", (2, 256, 55, 128), (14, 32), 4),
    ("PWC-Net 1/4", (2, 32, 112, 256), (112, 256), 4),
):
    for dtype in (torch.float32, torch.float16):
        x1 = torch.randn(shape, device="cuda", dtype=dtype, requires_grad=True)
        x2 = torch.randn(*shape[:2], *size2, device="cuda", dtype=dtype, requires_grad=True)
        flow = (torch.randn(shape[0], 2, *shape[2:], device="cuda") * 3).to(dtype)
        flow.requires_grad_()
        out = F.correlation(x1, x2, max_disp, offset=flow)
        go = torch.randn_like(out)
        fwd = median_ms(lambda: F.correlation(x1, x2, max_disp, offset=flow))
        bwd = median_ms(lambda: torch.autograd.grad(out, (x1, x2, flow), go, retain_graph=True))
        print(f"{name} {tuple(shape)} input2 {size2} {dtype}: forward {fwd:.3f} ms, backward {bwd:.3f} ms", flush=True)
'
else
  echo "build failed: tests and sanitizers skipped" | tee -a "$SUMMARY"
fi

set +x
echo "----"
cat "$SUMMARY"
if [ "${#FAILED[@]}" -eq 0 ]; then
  echo "gpu_check: all steps passed" | tee -a "$SUMMARY"
else
  echo "gpu_check: FAILED steps: ${FAILED[*]}" | tee -a "$SUMMARY"
fi
exit "${#FAILED[@]}"
