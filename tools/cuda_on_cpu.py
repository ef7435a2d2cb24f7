"""Runs the CUDA correlation kernels on the CPU.

``aten_native/cuda/SpatialCorrelation.cuh`` holds the kernels, their tile
planners and the launch sequence (``SpatialCorrelationOffset.cuh`` those with
an ``offset``); ``SpatialCorrelation.cu`` starts them on a CUDA stream. This
module compiles the same headers for the host together with
``tools/cuda_on_cpu/cuda_runtime_on_cpu.h``, which supplies the CUDA
built-ins and runs each block's threads as fibers, with ``__syncthreads`` as
a barrier among them (see that header). The kernels run with the grids,
blocks and shared-memory sizes the real launch code chooses.

Importable with ``tools/`` on ``sys.path``::

    import cuda_on_cpu

    out = cuda_on_cpu.correlation(x1, x2, 4)  # CPU tensors
    out = cuda_on_cpu.correlation(x1, x2, 4, offset=flow)
    g1, g2, g_offset = cuda_on_cpu.correlation_backward(
        go, x1, x2, flow, 4, None, 1, 1, 0, 1, 1, 1, 1.0, [True, True, True]
    )

The arguments are those of ``aten::correlation`` and
``aten::correlation_backward`` (positional or keyword as in their schemas).
Outputs start as NaN, and the offset backward's workspace as 0xff bytes, so
an element that no kernel thread writes shows up. ``schedule()`` picks the
order in which a block's threads run between two barriers, ``index_limit()``
lowers the element count up to which the 32-bit kernels are used, and
``coverage()`` counts the launches per kernel, index type and dtype.

Run as a script, it runs the CUDA correctness tests of
``test/test_correlation_cuda.py`` through the harness and prints the coverage
table; ``--sanitize`` does so in a build with AddressSanitizer and
UndefinedBehaviorSanitizer (in a subprocess that preloads libasan), and then
checks that the sanitizers do report a kernel's shared-memory overflow and
32-bit index overflow. The exit status is 0 only when every test passed,
every kernel ran in every index type and dtype, and (with ``--sanitize``) both
defects were reported.

The harness is built on first use into ``build/cuda_on_cpu/`` (ninja, through
``torch.utils.cpp_extension.load``; ``CUDA_ON_CPU_BUILD`` overrides the directory).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "tools" / "cuda_on_cpu"
# CUDA_ON_CPU_BUILD overrides the build directory (e.g. to keep two builds).
BUILD = Path(os.environ.get("CUDA_ON_CPU_BUILD", ROOT / "build" / "cuda_on_cpu"))

# Set in the environment of a process whose harness is the sanitized build
# (the process must have been started with libasan preloaded).
SANITIZE_ENV = "CUDA_ON_CPU_SANITIZE"

_module = None


def sanitized() -> bool:
    return os.environ.get(SANITIZE_ENV) == "1"


def _include_overlay() -> Path:
    """A directory in which ``ATen/native`` is this repository's ``aten_native``."""
    overlay = BUILD / "include"
    link = overlay / "ATen" / "native"
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(ROOT / "aten_native", target_is_directory=True)
    return overlay


def _load():
    global _module
    if _module is not None:
        return _module
    import torch.utils.cpp_extension as cpp_ext

    name = "cuda_on_cpu_asan" if sanitized() else "cuda_on_cpu"
    build_dir = BUILD / name
    build_dir.mkdir(parents=True, exist_ok=True)
    cflags = ["-std=c++20", "-Wno-unknown-pragmas", "-Wno-unused-parameter"]
    ldflags = []
    if sanitized():
        # This process has the runtime loaded already; the compiler and
        # linker it starts must not.
        os.environ.pop("LD_PRELOAD", None)
        sanitizers = "-fsanitize=address,undefined"
        # -O1 keeps the reports precise; every UBSan finding aborts.
        cflags += [
            "-O1",
            "-g",
            sanitizers,
            "-fno-omit-frame-pointer",
            "-fno-sanitize-recover=all",
        ]
        ldflags += [sanitizers]
    else:
        cflags += ["-O2"]
    _module = cpp_ext.load(
        name=name,
        sources=[str(SOURCES / "correlation_on_cpu.cpp")],
        extra_include_paths=[str(_include_overlay()), str(SOURCES)],
        extra_cflags=cflags,
        extra_ldflags=ldflags,
        build_directory=str(build_dir),
        verbose=False,
    )
    return _module


def correlation(
    input1,
    input2,
    max_displacement,
    *,
    offset=None,
    min_displacement=None,
    kernel_size=1,
    stride=1,
    padding=0,
    dilation=1,
    displacement_stride=1,
    groups=1,
    scale=1.0,
):
    """``aten::correlation`` computed by the CUDA kernels, on CPU tensors."""
    return _load().correlation(
        input1,
        input2,
        _ints(max_displacement),
        offset,
        _ints(min_displacement),
        _ints(kernel_size),
        _ints(stride),
        _ints(padding),
        _ints(dilation),
        _ints(displacement_stride),
        groups,
        float(scale),
    )


def correlation_backward(
    grad_output,
    input1,
    input2,
    offset,
    max_displacement,
    min_displacement,
    kernel_size,
    stride,
    padding,
    dilation,
    displacement_stride,
    groups,
    scale,
    output_mask,
):
    """``aten::correlation_backward`` computed by the CUDA kernels: (grad_input1,
    grad_input2, grad_offset), each None where ``output_mask`` does not ask for
    it (grad_offset also without an offset)."""
    return tuple(
        _load().correlation_backward(
            grad_output,
            input1,
            input2,
            offset,
            _ints(max_displacement),
            _ints(min_displacement),
            _ints(kernel_size),
            _ints(stride),
            _ints(padding),
            _ints(dilation),
            _ints(displacement_stride),
            groups,
            float(scale),
            list(output_mask),
        )
    )


def _ints(value):
    if value is None:
        return None
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]


@contextlib.contextmanager
def schedule(order: str, seed: int = 0):
    """Within the block, run threads between barriers ``"forward"`` (as launched),
    ``"reversed"`` or ``"shuffled"`` (a permutation per barrier phase drawn from ``seed``)."""
    module = _load()
    module.set_schedule(order, seed)
    try:
        yield
    finally:
        module.set_schedule("forward", 0)


@contextlib.contextmanager
def index_limit(max_elements: int):
    """Use the 64-bit kernels for every tensor with more than ``max_elements`` elements."""
    module = _load()
    previous = module.get_index_limit()
    module.set_index_limit(max_elements)
    try:
        yield
    finally:
        module.set_index_limit(previous)


def coverage() -> list[tuple[str, str, str, int]]:
    """(kernel, index type, dtype, launches) for every kernel instance."""
    return sorted(_load().coverage())


def reset_coverage() -> None:
    _load().reset_coverage()


def _print_coverage(rows) -> bool:
    """Prints the table; True when every row ran at least once. A kernel of
    no dtype and index type (the offset backward's bucket sort: index "-",
    dtype "any") has one count, in the first column."""
    dtypes = ["Double", "Float", "Half", "BFloat16"]
    table: dict[tuple[str, str], dict[str, int]] = {}
    for kernel, index, dtype, count in rows:
        table.setdefault((kernel, index), {})[dtype] = count
    header = f"{'kernel':<26}{'index':<7}" + "".join(f"{d:>10}" for d in dtypes)
    print(header)
    print("-" * len(header))
    complete = True
    for (kernel, index), counts in sorted(table.items()):
        if "any" in counts:
            count = counts["any"]
            complete &= count > 0
            cells = [f"{count:>10}" if count else f"{'NONE':>10}", "  (any dtype)"]
        else:
            cells = []
            for d in dtypes:
                count = counts.get(d, 0)
                complete &= count > 0
                cells.append(f"{count:>10}" if count else f"{'NONE':>10}")
        print(f"{kernel:<26}{index:<7}" + "".join(cells))
    return complete


def _run_suite(test_args: list[str]) -> int:
    import unittest

    sys.path.insert(0, str(ROOT / "test"))
    import test_correlation_cuda

    _load()
    reset_coverage()
    loader = unittest.TestLoader()
    suite = loader.loadTestsFromTestCase(test_correlation_cuda.TestCorrelationCUDAOnCPU)
    if test_args:
        suite = unittest.TestSuite(
            t for t in suite if any(a in t.id() for a in test_args)
        )
    start = time.perf_counter()
    result = unittest.TextTestRunner(verbosity=1).run(suite)
    elapsed = time.perf_counter() - start
    build = "sanitized (ASan + UBSan)" if sanitized() else "plain"
    print(
        f"\nCUDA kernels on the CPU, {build} build: {result.testsRun} tests in {elapsed:.0f} s"
    )
    complete = _print_coverage(coverage())
    if not complete and not test_args:
        print("FAIL: some kernel instance never ran")
    ok = result.wasSuccessful() and (complete or bool(test_args))
    print("OK" if ok else "FAIL")
    return 0 if ok else 1


def _compiler_library(name: str) -> str:
    cxx = os.environ.get("CXX", "c++")
    path = subprocess.run(
        [cxx, f"-print-file-name={name}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not os.path.isabs(path) or not os.path.exists(path):
        raise RuntimeError(
            f"cuda_on_cpu: {name} not found ({cxx} -print-file-name gave {path!r})"
        )
    return path


def sanitized_env() -> dict[str, str]:
    """The environment of a subprocess that uses the sanitized harness."""
    env = dict(os.environ)
    env[SANITIZE_ENV] = "1"
    # libstdc++ with it: ASan resolves the C++ exception functions it
    # intercepts when it starts, and the Python binary does not link them.
    env["LD_PRELOAD"] = (
        f"{_compiler_library('libasan.so')} {_compiler_library('libstdc++.so')}"
    )
    # Python and torch allocate for the life of the process; the fibers'
    # stacks are switched by hand (annotated for ASan).
    env["ASAN_OPTIONS"] = (
        "detect_leaks=0:detect_stack_use_after_return=0:abort_on_error=1"
    )
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    return env


def _sanitizers_report_defects() -> bool:
    """Runs a kernel that writes shared memory one past its end and one whose
    32-bit index overflows, each in a sanitized subprocess: True when
    AddressSanitizer and UndefinedBehaviorSanitizer report them."""
    ok = True
    for kernel, report in (
        ("shared_overflow", "AddressSanitizer: heap-buffer-overflow"),
        ("index_overflow", "runtime error: signed integer overflow"),
    ):
        code = (
            f"import sys; sys.path.insert(0, {str(ROOT / 'tools')!r}); import cuda_on_cpu; "
            f"cuda_on_cpu._load().run_defective_kernel({kernel!r}, 64)"
        )
        run = subprocess.run(
            [sys.executable, "-c", code],
            env=sanitized_env(),
            capture_output=True,
            text=True,
        )
        found = run.returncode != 0 and report in run.stderr
        print(
            f"sanitizer check: {kernel}: {'reported' if found else 'NOT REPORTED'} ({report})"
        )
        ok &= found
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sanitize",
        action="store_true",
        help="use the AddressSanitizer + UndefinedBehaviorSanitizer build",
    )
    parser.add_argument(
        "tests", nargs="*", help="run only the tests whose id contains one of these"
    )
    args = parser.parse_args()
    if args.sanitize and not sanitized():
        status = subprocess.call(
            [sys.executable, __file__, "--sanitize", *args.tests], env=sanitized_env()
        )
        if not _sanitizers_report_defects():
            status = status or 1
        return status
    return _run_suite(args.tests)


if __name__ == "__main__":
    sys.exit(main())
