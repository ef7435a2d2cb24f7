"""Benchmark torch.nn.functional.correlation against its peers.

    python benchmarks/bench_correlation.py [--device cpu|cuda] [--quick] [--out docs/benchmarks]

Times F.correlation (from the ``torch_correlation`` preview package) against
spatial-correlation-sampler (when importable), a pure-PyTorch shift loop, an
unfold+einsum composite and RAFT's all-pairs matmul (benchmarks/peers.py), on
optical-flow and stereo
shapes, forward and forward+backward, float32 and bfloat16, 1 and 2 threads,
contiguous and channels_last. Reports medians, GFLOP/s, the ratio to the
same-run torch.mm throughput, peak extra memory and a roofline bound, checks
the targets of the CPU-speed issue (CPU) or the CUDA issue (CUDA), and writes
<out>/bench_<device>.md, .json and .png. See benchmarks/README.md for the
method.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers  # noqa: E402

try:
    import torch_correlation  # noqa: F401  (installs torch.nn.functional.correlation)
except ImportError:
    # A fresh checkout built in place (setup.py build_ext --inplace).
    sys.path.insert(0, str(REPO_ROOT))
    import torch_correlation  # noqa: F401


# --------------------------------------------------------------------------
# What is timed
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    key: str
    title: str
    shape: Tuple[int, int, int, int]
    max_displacement: object
    kwargs: Dict[str, object] = field(default_factory=dict)

    def describe(self) -> str:
        n, c, h, w = self.shape
        args = [f"max_displacement={self.max_displacement}"]
        args += [f"{k}={_fmt_arg(v)}" for k, v in self.kwargs.items()]
        return f"B={n}, C={c}, {h}x{w}, " + ", ".join(args)


def _fmt_arg(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


CASES = [
    Case("pwc", "PWC-Net level", (4, 128, 48, 64), 4, {"scale": 1.0 / 128}),
    Case("pwc_fine", "PWC-Net fine level", (4, 32, 96, 128), 4),
    Case("flownetc", "FlowNetC", (4, 256, 48, 64), 20, {"displacement_stride": 2}),
    Case("gwcnet", "GwcNet stereo", (2, 320, 64, 128), (0, 0),
         {"min_displacement": (0, -47), "groups": 40}),
    Case("small", "small", (1, 64, 64, 64), 3),
]
TARGET_CASES = ("pwc", "flownetc")

IMPLS = ("ours", "sampler", "shift_loop", "unfold_einsum", "all_pairs")
IMPL_LABELS = {
    "ours": "F.correlation",
    "sampler": "spatial-correlation-sampler",
    "shift_loop": "shift loop (PyTorch)",
    "unfold_einsum": "unfold+einsum (PyTorch)",
    "all_pairs": "all-pairs matmul (PyTorch)",
}
PASSES = ("fwd", "fwd+bwd")
# Forward is one correlation pass; the backward computes grad_input1 and
# grad_input2, each as much work as the forward.
PASS_FLOP_FACTOR = {"fwd": 1, "fwd+bwd": 3}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}

# unfold+einsum materializes input2's whole displacement window (D times
# input2) and einsum copies it once more; above this it is skipped.
UNFOLD_LIMIT_BYTES = 2 * 2**30
# The all-pairs matmul materializes an (N, groups, H*W, H*W) volume; above
# this it is skipped.
ALL_PAIRS_LIMIT_BYTES = 2 * 2**30
# A peer whose first configuration of a (case, pass) takes longer than this
# per call is timed only in that configuration (float32, most threads,
# contiguous), to keep the default run near 10 minutes on 2 cores.
SLOW_PEER_SECONDS = 1.5


def call_impl(impl: str, a: torch.Tensor, b: torch.Tensor, case: Case) -> torch.Tensor:
    if impl == "ours":
        return F.correlation(a, b, case.max_displacement, **case.kwargs)
    if impl == "sampler":
        return peers.sampler_correlation(a, b, case.max_displacement, **case.kwargs)
    if impl == "shift_loop":
        return peers.shift_loop_correlation(a, b, case.max_displacement, **case.kwargs)
    if impl == "unfold_einsum":
        return peers.unfold_einsum_correlation(a, b, case.max_displacement, **case.kwargs)
    if impl == "all_pairs":
        return peers.all_pairs_correlation(a, b, case.max_displacement, **case.kwargs)
    raise ValueError(impl)


# --------------------------------------------------------------------------
# Start-up verification: never compare wrong results
# --------------------------------------------------------------------------

def _small_version(case: Case) -> Tuple[int, int, int, int]:
    groups = int(case.kwargs.get("groups", 1))
    return (2, 2 * groups if groups > 1 else 6, 11, 17)


def verify(device: torch.device) -> List[str]:
    """Checks every implementation against F.correlation on shrunk versions of
    every case (same arguments, small tensors) plus one case exercising
    kernel_size/stride/padding/dilation; forward and both gradients."""
    lines = []
    extra = Case("general", "general geometry", (2, 8, 11, 17), (2, 3),
                 {"kernel_size": 3, "stride": 2, "padding": 1, "dilation": (1, 2),
                  "displacement_stride": (1, 2), "groups": 2, "scale": 0.5})
    gen = torch.Generator().manual_seed(0)
    for case in CASES + [extra]:
        shape = _small_version(case) if case is not extra else extra.shape
        for dtype, tol in ((torch.float64, dict(rtol=1e-7, atol=1e-7)),
                           (torch.float32, dict(rtol=1e-4, atol=1e-5))):
            a = torch.randn(shape, generator=gen, dtype=torch.float64).to(device, dtype)
            b = torch.randn(shape, generator=gen, dtype=torch.float64).to(device, dtype)
            a.requires_grad_(True)
            b.requires_grad_(True)
            ref = call_impl("ours", a, b, case)
            gout = torch.randn(ref.shape, generator=gen, dtype=torch.float64).to(device, dtype)
            ref_grads = torch.autograd.grad(ref, (a, b), gout)
            # Our channels_last path must agree with our contiguous one.
            a_cl = a.detach().to(memory_format=torch.channels_last).requires_grad_(True)
            b_cl = b.detach().to(memory_format=torch.channels_last).requires_grad_(True)
            out_cl = call_impl("ours", a_cl, b_cl, case)
            checks = [("ours channels_last", out_cl, torch.autograd.grad(out_cl, (a_cl, b_cl), gout))]
            for impl in ("sampler", "shift_loop", "unfold_einsum", "all_pairs"):
                try:
                    out = call_impl(impl, a, b, case)
                except peers.PeerUnsupported:
                    continue
                checks.append((impl, out, torch.autograd.grad(out, (a, b), gout)))
            for name, out, grads in checks:
                for what, got, want in (("output", out, ref), ("grad_input1", grads[0], ref_grads[0]),
                                        ("grad_input2", grads[1], ref_grads[1])):
                    if got.shape != want.shape or not torch.allclose(got, want, **tol):
                        err = (got - want).abs().max().item() if got.shape == want.shape else "shape"
                        raise AssertionError(
                            f"verification failed: {name} {what} differs from F.correlation on "
                            f"'{case.key}' ({case.describe()}) shrunk to {shape}, {dtype}: "
                            f"max abs error {err}")
                lines.append(f"{case.key}/{str(dtype).replace('torch.', '')}/{name}")
    return lines


# --------------------------------------------------------------------------
# Timing and memory
# --------------------------------------------------------------------------

@contextlib.contextmanager
def _quiet_fd2():
    """Silences the profiler's own log lines written straight to fd 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_cpu_bytes(step: Callable[[], None]) -> Optional[int]:
    """Peak of (bytes allocated - bytes freed) through the c10 CPU allocator
    during one call of `step`, from torch.profiler's memory events."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    gc.collect()
    with _quiet_fd2():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
        events = prof.profiler.kineto_results.events()
    deltas = sorted((e.start_ns(), e.nbytes()) for e in events
                    if e.name() == "[memory]" and e.device_type() == DeviceType.CPU)
    live = peak = 0
    for _, nbytes in deltas:
        live += nbytes
        peak = max(peak, live)
    return peak


class RssPeak:
    """Peak resident-set growth during one call (Linux): free heap pages are
    returned to the OS (malloc_trim), the kernel's high-water mark is reset
    (/proc/self/clear_refs "5"), and VmHWM minus VmRSS is read afterwards.
    Unlike the profiler it also sees raw mallocs and allocations made on
    OpenMP worker threads; it counts touched pages only."""

    def __init__(self):
        self.ok = False
        try:
            import ctypes

            self._trim = ctypes.CDLL("libc.so.6").malloc_trim
            self._reset()
            self._read("VmHWM:")
            self.ok = True
        except Exception:  # noqa: BLE001 -- not Linux/glibc: no RSS figure
            pass

    @staticmethod
    def _reset():
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    @staticmethod
    def _read(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        raise KeyError(key)

    def start(self) -> int:
        gc.collect()
        self._trim(0)
        self._reset()
        return self._read("VmRSS:")

    def stop(self, base: int) -> int:
        return self._read("VmHWM:") - base


RSS = RssPeak()


class OtherCpuUse:
    """Share of the machine's CPU time that other processes used between
    start() and share() (Linux /proc/stat minus this process's own CPU time)."""

    @staticmethod
    def _snapshot():
        import resource

        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        ticks = os.sysconf("SC_CLK_TCK")
        busy = (sum(fields) - fields[3] - fields[4]) / ticks  # minus idle and iowait
        own = resource.getrusage(resource.RUSAGE_SELF)
        return time.monotonic(), busy, own.ru_utime + own.ru_stime

    def start(self) -> None:
        try:
            self._start = self._snapshot()
        except Exception:  # noqa: BLE001 -- not Linux: no figure
            self._start = None

    def share(self) -> Optional[float]:
        if self._start is None:
            return None
        wall0, busy0, own0 = self._start
        wall1, busy1, own1 = self._snapshot()
        capacity = (wall1 - wall0) * (os.cpu_count() or 1)
        return max(0.0, ((busy1 - busy0) - (own1 - own0)) / capacity) if capacity > 0 else None


def peak_cuda_bytes(step: Callable[[], None], device: torch.device) -> int:
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def time_step(step: Callable[[], None], device: torch.device, reps: int) -> List[float]:
    times = []
    if device.type == "cuda":
        for _ in range(reps):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
    else:
        for _ in range(reps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    return times


@dataclass
class Measurement:
    median_s: float
    times_s: List[float]
    warmup_s: float
    peak_bytes: Optional[int]
    peak_rss_bytes: Optional[int]


def measure(step: Callable[[], None], device: torch.device, budget_s: float,
            max_reps: int = 50, memory: bool = True) -> Measurement:
    """Two or three warm-up calls (the first profiled for allocator memory,
    the second measured for RSS growth on CPU), then an adaptive number of
    timed calls: about budget_s worth, at least 3 unless one call exceeds the
    budget (then 1), at most max_reps."""
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    if memory:
        peak = peak_cuda_bytes(step, device) if device.type == "cuda" else peak_cpu_bytes(step)
    else:
        step()
        peak = None
    sync()
    first = time.perf_counter() - t0
    # First calls pay for page faults on fresh allocations and lazy
    # initialization; the second call is the estimate.
    rss = None
    if memory and device.type == "cpu" and RSS.ok:
        base = RSS.start()
        warm = time_step(step, device, 1)[0]
        rss = RSS.stop(base)
    else:
        warm = time_step(step, device, 1)[0]
    if warm < 0.1 * budget_s:
        warm = min(warm, time_step(step, device, 1)[0])
    if warm >= budget_s:
        reps = 1
    else:
        reps = max(3, min(max_reps, int(budget_s / max(warm, 1e-6))))
    times = time_step(step, device, reps)
    return Measurement(statistics.median(times), times, first, peak, rss)


def mm_gflops(dtype: torch.dtype, device: torch.device, n: int, budget_s: float) -> float:
    x = torch.randn(n, n, device=device).to(dtype)
    y = torch.randn(n, n, device=device).to(dtype)
    z = torch.empty(n, n, device=device, dtype=dtype)
    m = measure(lambda: torch.mm(x, y, out=z), device, budget_s, max_reps=20, memory=False)
    return 2.0 * n ** 3 / m.median_s / 1e9


def copy_gbytes_per_s(device: torch.device, budget_s: float) -> float:
    """Read+write bandwidth of a large tensor copy (2 * bytes / time)."""
    numel = (1 << 28) if device.type == "cuda" else (1 << 26)  # 1 GiB / 256 MiB of float32
    src = torch.randn(numel, device=device) if device.type == "cuda" else torch.ones(numel)
    dst = torch.empty_like(src)
    m = measure(lambda: dst.copy_(src), device, budget_s, max_reps=20, memory=False)
    return 2.0 * src.numel() * src.element_size() / m.median_s / 1e9


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------

@dataclass
class Config:
    case: str
    pass_: str
    impl: str
    dtype: str
    threads: int
    layout: str


@dataclass
class Result:
    config: Config
    skipped: Optional[str] = None
    error: Optional[str] = None
    median_ms: Optional[float] = None
    times_ms: List[float] = field(default_factory=list)
    reps: int = 0
    gflop: float = 0.0
    gflops: Optional[float] = None
    mm_ratio: Optional[float] = None
    peak_mib: Optional[float] = None      # allocator (profiler / CUDA caching allocator)
    peak_rss_mib: Optional[float] = None  # CPU only: resident-set growth
    needed_mib: float = 0.0          # output (+ both gradients for fwd+bwd)
    roofline_ms: Optional[float] = None
    roofline_fraction: Optional[float] = None


def _configs_for(case: Case, thread_counts: List[int]):
    dtypes = list(DTYPES)
    layouts = ["contiguous", "channels_last"]
    for pass_ in PASSES:
        for impl in IMPLS:
            ordered = []
            # The target configuration first: float32, most threads, contiguous.
            for dtype in dtypes:
                for threads in sorted(thread_counts, reverse=True):
                    for layout in layouts:
                        ordered.append(Config(case.key, pass_, impl, dtype, threads, layout))
            yield pass_, impl, ordered


def skip_reason(cfg: Config, case: Case, quick: bool, slow: Dict[Tuple[str, str, str], float],
                max_threads: int) -> Optional[str]:
    """Why a configuration is not timed, or None."""
    probe = torch.empty(case.shape, device="meta", dtype=DTYPES[cfg.dtype])
    if cfg.impl == "ours":
        return None
    if cfg.impl == "sampler":
        reason = peers.sampler_unsupported_reason(probe, case.max_displacement, **case.kwargs)
        if reason:
            return reason
    if cfg.impl == "unfold_einsum":
        need = peers.unfold_einsum_extra_bytes(probe, case.max_displacement, **case.kwargs)
        if need > UNFOLD_LIMIT_BYTES:
            return (f"would materialize a {need / 2**30:.1f} GiB unfolded input2 (plus einsum's copy); "
                    f"limit {UNFOLD_LIMIT_BYTES / 2**30:.1f} GiB")
    if cfg.impl == "all_pairs":
        reason = peers.all_pairs_unsupported_reason(probe, case.max_displacement, **case.kwargs)
        if reason:
            return reason
        need = peers.all_pairs_extra_bytes(probe, case.max_displacement, **case.kwargs)
        if need > ALL_PAIRS_LIMIT_BYTES:
            return (f"would materialize a {need / 2**30:.1f} GiB all-pairs volume; "
                    f"limit {ALL_PAIRS_LIMIT_BYTES / 2**30:.1f} GiB")
    if cfg.layout != "contiguous":
        return "peers are timed on contiguous inputs only (time budget)"
    if quick and cfg.impl in ("unfold_einsum", "all_pairs"):
        return f"--quick: {IMPL_LABELS[cfg.impl]} is timed only in the full run"
    if quick and cfg.impl == "shift_loop" and (case.key != "pwc" or cfg.dtype != "float32"):
        return "--quick: the shift loop is timed only on the PWC-Net level in float32"
    key = (cfg.case, cfg.pass_, cfg.impl)
    if key in slow:
        return (f"slow peer ({slow[key]:.1f} s per call in float32 with {max_threads} threads, "
                "contiguous): timed only there")
    return None


def make_step(cfg: Config, case: Case, device: torch.device):
    """Inputs and one call of cfg's pass (forward, or forward and backward):
    (step, geometry, output bytes, MiB of output plus gradients, compulsory
    DRAM traffic in bytes)."""
    dtype = DTYPES[cfg.dtype]
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(case.shape, generator=gen).to(device, dtype)
    b = torch.randn(case.shape, generator=gen).to(device, dtype)
    if cfg.layout == "channels_last":
        a = a.to(memory_format=torch.channels_last)
        b = b.to(memory_format=torch.channels_last)
    geo = peers.geometry(a, case.max_displacement, **case.kwargs)
    out_shape = (geo.batch, geo.groups * geo.displacements, geo.out_h, geo.out_w)
    out_bytes = math.prod(out_shape) * a.element_size()
    if cfg.pass_ == "fwd":
        def step():
            with torch.no_grad():
                call_impl(cfg.impl, a, b, case)
        needed_mib = out_bytes / 2**20
        traffic = 2 * a.nbytes + out_bytes
    else:
        a.requires_grad_(True)
        b.requires_grad_(True)
        # Laid out like F.correlation's output (input1's memory format).
        fmt = torch.channels_last if cfg.layout == "channels_last" else torch.contiguous_format
        gout = torch.randn(out_shape, generator=gen).to(device, dtype).contiguous(memory_format=fmt)

        def step():
            out = call_impl(cfg.impl, a, b, case)
            torch.autograd.grad(out, (a, b), gout)
        needed_mib = (out_bytes + 2 * a.nbytes) / 2**20
        # forward reads both inputs, writes out; backward reads grad_output
        # and both inputs, writes both gradients.
        traffic = (2 * a.nbytes + out_bytes) + (out_bytes + 2 * a.nbytes + 2 * a.nbytes)
    return step, geo, out_bytes, needed_mib, traffic


def run_config(cfg: Config, case: Case, device: torch.device, budget_s: float,
               mm: Dict[Tuple[str, int], float], fma_rate: float, bandwidth: float) -> Result:
    res = Result(cfg)
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    try:
        step, geo, out_bytes, res.needed_mib, traffic = make_step(cfg, case, device)
        flop = geo.flop() * PASS_FLOP_FACTOR[cfg.pass_]
        res.gflop = flop / 1e9
        m = measure(step, device, budget_s)
    except peers.PeerUnsupported as exc:
        res.skipped = str(exc)
        return res
    except Exception as exc:  # noqa: BLE001 -- reported in the table, the run goes on
        message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
        if cfg.impl == "ours":
            res.error = message
        else:  # a peer that cannot run this configuration (e.g. a dtype it lacks)
            res.skipped = "raised " + message
        return res
    res.median_ms = m.median_s * 1e3
    res.times_ms = [t * 1e3 for t in m.times_s]
    res.reps = len(m.times_s)
    res.gflops = flop / m.median_s / 1e9
    res.mm_ratio = res.gflops / mm[(cfg.dtype, cfg.threads)]
    res.peak_mib = None if m.peak_bytes is None else m.peak_bytes / 2**20
    res.peak_rss_mib = None if m.peak_rss_bytes is None else m.peak_rss_bytes / 2**20
    bound_s = max(traffic / (bandwidth * 1e9), flop / (fma_rate * 1e9))
    res.roofline_ms = bound_s * 1e3
    res.roofline_fraction = bound_s / m.median_s
    return res


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------

def _f(value: Optional[float], fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def interleaved_ratio(base: Callable[[], None], other: Callable[[], None],
                      device: torch.device, budget_s: float, min_rounds: int = 9,
                      max_rounds: int = 60) -> float:
    """Median time of `other` over median time of `base`, timed in alternating
    calls so that both see the same machine state. The separate medians of the
    results table come from runs minutes apart, and on a shared machine the
    speed drifts by more than the few percent a "no slower" target compares."""
    for step in (base, other, base, other):
        step()
    times: Tuple[List[float], List[float]] = ([], [])
    started = time.perf_counter()
    rounds = 0
    while rounds < min_rounds or (rounds < max_rounds and time.perf_counter() - started < budget_s):
        for k, step in enumerate((base, other) if rounds % 2 == 0 else (other, base)):
            t = time_step(step, device, 1)[0]
            times[k if rounds % 2 == 0 else 1 - k].append(t)
        rounds += 1
    return statistics.median(times[1]) / statistics.median(times[0])


# The (dtype, layout) variants that issue 4 wants no slower than float32 contiguous.
NO_SLOWER_VARIANTS = (("bfloat16", "contiguous"), ("float32", "channels_last"),
                      ("bfloat16", "channels_last"))


def no_slower_ratios(cases: List[Case], device: torch.device, threads: int,
                     budget_s: float) -> Dict[Tuple[str, str, str, str], float]:
    """Interleaved time ratios of each NO_SLOWER_VARIANTS configuration of
    F.correlation over float32 contiguous, on the target cases."""
    ratios: Dict[Tuple[str, str, str, str], float] = {}
    if device.type == "cpu":
        torch.set_num_threads(threads)
    for case in cases:
        if case.key not in TARGET_CASES:
            continue
        for pass_ in PASSES:
            base = make_step(Config(case.key, pass_, "ours", "float32", threads, "contiguous"),
                             case, device)[0]
            for dtype, layout in NO_SLOWER_VARIANTS:
                other = make_step(Config(case.key, pass_, "ours", dtype, threads, layout), case, device)[0]
                ratio = interleaved_ratio(base, other, device, 4 * budget_s)
                ratios[(case.key, pass_, dtype, layout)] = ratio
                print(f"  {case.key:9s} {pass_:7s} {dtype} {layout}: {ratio:.3f}x the time of float32 "
                      "contiguous (interleaved)", flush=True)
    return ratios


def peak_of(r: Result) -> Optional[float]:
    """The larger of the allocator and RSS peaks (MiB): the conservative figure."""
    values = [v for v in (r.peak_mib, r.peak_rss_mib) if v is not None]
    return max(values) if values else None


def find(results: List[Result], **want) -> Optional[Result]:
    for r in results:
        c = asdict(r.config)
        if all(c[k] == v for k, v in want.items()):
            return r
    return None


def speedup_vs(results: List[Result], r: Result) -> Optional[float]:
    """How many times faster ours is than r, same configuration."""
    if r.median_ms is None:
        return None
    c = r.config
    ours = find(results, case=c.case, pass_=c.pass_, impl="ours", dtype=c.dtype,
                threads=c.threads, layout=c.layout)
    if ours is None or ours.median_ms is None:
        return None
    return r.median_ms / ours.median_ms


def results_table(results: List[Result], device: torch.device) -> List[str]:
    lines = []
    thread_col = device.type == "cpu"
    for case in CASES:
        rows = [r for r in results if r.config.case == case.key]
        if not rows:
            continue
        lines.append(f"### {case.title}: {case.describe()}")
        lines.append("")
        head = ["pass", "dtype"] + (["threads"] if thread_col else []) + [
            "layout", "implementation", "median ms", "reps", "GFLOP/s", "% of mm",
            "roofline %", "peak MiB" + (" alloc / RSS" if thread_col else ""),
            "peak / (out+grads)", "F.correlation speed-up"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        skipped = {}
        for r in rows:
            c = r.config
            if r.skipped:
                skipped.setdefault((c.impl, r.skipped), []).append(
                    f"{c.pass_}/{c.dtype}/{c.threads}t/{c.layout}")
                continue
            cells = [c.pass_, c.dtype] + ([str(c.threads)] if thread_col else []) + [
                c.layout, IMPL_LABELS[c.impl]]
            if r.error:
                cells += ["error: " + r.error.replace("|", "/")] + [""] * 8
            else:
                peak = peak_of(r)
                ratio = None if peak is None else peak / r.needed_mib
                mem = _f(r.peak_mib, ".1f") + (f" / {_f(r.peak_rss_mib, '.1f')}" if thread_col else "")
                sp = speedup_vs(results, r)
                cells += [
                    _f(r.median_ms, ".3f"), str(r.reps), _f(r.gflops, ".1f"),
                    _f(None if r.mm_ratio is None else 100 * r.mm_ratio, ".1f"),
                    _f(None if r.roofline_fraction is None else 100 * r.roofline_fraction, ".1f"),
                    mem, _f(ratio, ".2f"),
                    "" if c.impl == "ours" else _f(sp, ".1f") + "x"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for (impl, reason), where in skipped.items():
            lines.append(f"- skipped {IMPL_LABELS[impl]} ({len(where)} configurations): {reason}")
        lines.append("")
    return lines


def cpu_targets(results: List[Result], threads: int,
                interleaved: Dict[Tuple[str, str, str, str], float]) -> Tuple[List[str], Dict[str, int]]:
    """Issue 4's targets, float32, `threads` threads, contiguous. The "no
    slower" targets use the interleaved ratios where measured."""
    lines = ["| case | target | measured | result |", "|---|---|---|---|"]
    tally = {"PASS": 0, "FAIL": 0, "SKIP": 0}

    def row(case, target, measured, passed):
        verdict = "SKIP" if passed is None else ("PASS" if passed else "FAIL")
        tally[verdict] += 1
        lines.append(f"| {case} | {target} | {measured} | {verdict} |")

    for key in TARGET_CASES:
        title = next(c.title for c in CASES if c.key == key)
        for pass_, need in (("fwd", 0.30), ("fwd+bwd", 0.20)):
            r = find(results, case=key, pass_=pass_, impl="ours", dtype="float32",
                     threads=threads, layout="contiguous")
            got = None if r is None or r.mm_ratio is None else r.mm_ratio
            row(title, f"{pass_} >= {need:.0%} of mm", "n/a" if got is None else f"{100 * got:.1f}%",
                None if got is None else got >= need)
        for pass_ in PASSES:
            s = find(results, case=key, pass_=pass_, impl="sampler", dtype="float32",
                     threads=threads, layout="contiguous")
            sp = None if s is None else speedup_vs(results, s)
            why = "" if sp is not None else (
                f" ({s.skipped or s.error})" if s is not None and (s.skipped or s.error) else "")
            row(title, f"{pass_} >= 20x spatial-correlation-sampler",
                (_f(sp, ".1f") + "x") if sp is not None else "n/a" + why, None if sp is None else sp >= 20)
        # bfloat16 and channels_last no slower than float32 contiguous.
        for pass_ in PASSES:
            base = find(results, case=key, pass_=pass_, impl="ours", dtype="float32",
                        threads=threads, layout="contiguous")
            for dtype, layout in NO_SLOWER_VARIANTS:
                r = find(results, case=key, pass_=pass_, impl="ours", dtype=dtype,
                         threads=threads, layout=layout)
                separate = (None if base is None or r is None or base.median_ms is None
                            or r.median_ms is None else r.median_ms / base.median_ms)
                both = interleaved.get((key, pass_, dtype, layout))
                rel = both if both is not None else separate
                if rel is None:
                    row(title, f"{pass_} {dtype} {layout} no slower than float32 contiguous", "n/a", None)
                    continue
                measured = (f"{both:.2f}x the time interleaved" if both is not None else f"{rel:.2f}x the time")
                if both is not None and separate is not None:
                    measured += f" ({separate:.2f}x from the table's medians)"
                # 5% allowance for timer noise on a shared machine.
                row(title, f"{pass_} {dtype} {layout} no slower than float32 contiguous",
                    measured, rel <= 1.05)
        for pass_ in PASSES:
            r = find(results, case=key, pass_=pass_, impl="ours", dtype="float32",
                     threads=threads, layout="contiguous")
            peak = None if r is None else peak_of(r)
            if peak is None:
                row(title, f"{pass_} peak extra memory <= 1.10 x (out+grads)", "n/a", None)
                continue
            rel = peak / r.needed_mib
            row(title, f"{pass_} peak extra memory <= 1.10 x (out+grads)",
                f"alloc {_f(r.peak_mib, '.1f')} / RSS {_f(r.peak_rss_mib, '.1f')} MiB, "
                f"out+grads {r.needed_mib:.1f} MiB: {rel:.2f}x", rel <= 1.10)
    return lines, tally


def cuda_targets(results: List[Result]) -> Tuple[List[str], Dict[str, int]]:
    """Issue 3's targets: >= 3x spatial-correlation-sampler, forward >= 50% of roofline."""
    lines = ["| case | dtype | target | measured | result |", "|---|---|---|---|---|"]
    tally = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    for key in TARGET_CASES:
        title = next(c.title for c in CASES if c.key == key)
        for dtype in DTYPES:
            for pass_ in PASSES:
                s = find(results, case=key, pass_=pass_, impl="sampler", dtype=dtype,
                         layout="contiguous")
                sp = None if s is None else speedup_vs(results, s)
                verdict = "SKIP" if sp is None else ("PASS" if sp >= 3 else "FAIL")
                tally[verdict] += 1
                lines.append(f"| {title} | {dtype} | {pass_} >= 3x spatial-correlation-sampler | "
                             f"{'n/a' if sp is None else f'{sp:.1f}x'} | {verdict} |")
            r = find(results, case=key, pass_="fwd", impl="ours", dtype=dtype, layout="contiguous")
            frac = None if r is None else r.roofline_fraction
            verdict = "SKIP" if frac is None else ("PASS" if frac >= 0.5 else "FAIL")
            tally[verdict] += 1
            bound = "" if r is None or r.roofline_ms is None else f" (bound {r.roofline_ms:.3f} ms, got {r.median_ms:.3f} ms)"
            lines.append(f"| {title} | {dtype} | fwd >= 50% of roofline | "
                         f"{'n/a' if frac is None else f'{100 * frac:.1f}%'}{bound} | {verdict} |")
    return lines, tally


def plot(results: List[Result], mm: Dict[Tuple[str, int], float], threads: int, path: Path,
         device_name: str, show_threads: bool) -> Optional[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"no plot: matplotlib is not importable ({exc})"
    cases = [c for c in CASES if any(r.config.case == c.key for r in results)]
    colors = {impl: f"C{i}" for i, impl in enumerate(IMPLS)}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    width = 0.8 / len(IMPLS)
    drawn = {}
    for ax, pass_ in zip(axes, PASSES):
        for i, impl in enumerate(IMPLS):
            xs, ys = [], []
            for x, case in enumerate(cases):
                r = find(results, case=case.key, pass_=pass_, impl=impl, dtype="float32",
                         threads=threads, layout="contiguous")
                if r is not None and r.gflops:
                    xs.append(x + (i - (len(IMPLS) - 1) / 2) * width)
                    ys.append(r.gflops)
            if xs:
                drawn[impl] = ax.bar(xs, ys, width, color=colors[impl], label=IMPL_LABELS[impl])
        line = ax.axhline(mm[("float32", threads)], color="k", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels([c.title.replace(" ", "\n", 1) for c in cases], fontsize=8)
        ax.set_yscale("log")
        ax.set_title(f"{pass_}, float32, contiguous" + (f", {threads} threads" if show_threads else ""))
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0].set_ylabel("GFLOP/s (2*N*C*Hout*Wout*D*k*k per pass)")
    handles = [drawn[i] for i in IMPLS if i in drawn] + [line]
    labels = [IMPL_LABELS[i] for i in IMPLS if i in drawn] + ["torch.mm float32 (same run)"]
    fig.legend(handles, labels, loc="lower center", ncol=len(handles), fontsize=8)
    fig.suptitle(f"correlation on {device_name}", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} CPUs)"
    except OSError:
        pass
    return platform.processor() or "CPU"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except Exception:  # noqa: BLE001
        return "unknown"


# --------------------------------------------------------------------------

def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true",
                        help="~1 minute smoke subset: PWC-Net level and FlowNetC, most threads only")
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "benchmarks"),
                        help="folder for bench_<device>.md/.json/.png (default: docs/benchmarks)")
    parser.add_argument("--cases", default=None,
                        help="comma-separated subset of " + ",".join(c.key for c in CASES))
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of timed calls per configuration (default 0.5; --quick 0.2)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    budget = args.budget if args.budget is not None else (0.2 if args.quick else 0.5)
    cases = CASES
    if args.cases:
        keys = args.cases.split(",")
        unknown = set(keys) - {c.key for c in CASES}
        if unknown:
            parser.error(f"unknown cases: {sorted(unknown)}")
        cases = [c for c in CASES if c.key in keys]
    elif args.quick:
        cases = [c for c in CASES if c.key in TARGET_CASES]

    if device.type == "cpu":
        max_threads = min(2, torch.get_num_threads()) if torch.get_num_threads() >= 2 else 1
        thread_counts = [max_threads] if args.quick else sorted({1, max_threads})
    else:
        max_threads = torch.get_num_threads()
        thread_counts = [max_threads]

    started = time.time()
    load_before = os.getloadavg()
    others = OtherCpuUse()
    others.start()
    name = device_name(device)
    print(f"correlation benchmark on {name}, torch {torch.__version__}, "
          f"torch_correlation from {Path(torch_correlation.__file__).parent}")
    if device.type == "cpu":
        print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, thread counts {thread_counts}, "
              f"load average {load_before[0]:.2f}")
        if load_before[0] > 0.5:
            print(f"warning: load average {load_before[0]:.2f}: other processes may share the CPU; "
                  "timings will be noisy")
    if peers.SAMPLER_IMPORT_ERROR is not None:
        print(f"spatial-correlation-sampler: skipped, not importable ({peers.SAMPLER_IMPORT_ERROR}). "
              "Its sdist hard-codes C++17 and cannot build against torch >= 2.14; "
              "install it in an environment where it builds to include it.")

    # 1. Correctness first.
    if device.type == "cpu":
        torch.set_num_threads(max_threads)
    t_verify = time.time()
    checked = verify(device)
    print(f"verified {len(checked)} (case, dtype, implementation) combinations against F.correlation "
          f"(output and both gradients) in {time.time() - t_verify:.1f} s")

    # 2. Reference throughputs from this run.
    mm: Dict[Tuple[str, int], float] = {}
    mm_n = 8192 if device.type == "cuda" else 2048
    if device.type == "cuda":
        # float32 mm on CUDA cores (the FMA rate of the roofline), not TF32.
        torch.backends.cuda.matmul.allow_tf32 = False
    for threads in thread_counts:
        if device.type == "cpu":
            torch.set_num_threads(threads)
        for dname, dtype in DTYPES.items():
            mm[(dname, threads)] = mm_gflops(dtype, device, mm_n, budget)
    if device.type == "cpu":
        torch.set_num_threads(max_threads)
    fma = mm[("float32", max_threads)]
    bandwidth = copy_gbytes_per_s(device, budget)
    for (dname, threads), g in sorted(mm.items()):
        print(f"torch.mm {mm_n}x{mm_n} {dname}, {threads} thread(s): {g:.1f} GFLOP/s")
    print(f"roofline inputs: FMA rate {fma:.1f} GFLOP/s (float32 mm), copy bandwidth {bandwidth:.1f} GB/s")

    # 3. The matrix.
    results: List[Result] = []
    slow: Dict[Tuple[str, str, str], float] = {}
    for case in cases:
        for pass_, impl, configs in _configs_for(case, thread_counts):
            for cfg in configs:
                reason = skip_reason(cfg, case, args.quick, slow, max_threads)
                if reason is not None:
                    results.append(Result(cfg, skipped=reason))
                    continue
                res = run_config(cfg, case, device, budget, mm, fma, bandwidth)
                results.append(res)
                if (impl != "ours" and res.median_ms is not None and cfg.dtype == "float32"
                        and cfg.threads == max_threads and res.median_ms / 1e3 > SLOW_PEER_SECONDS):
                    slow[(case.key, pass_, impl)] = res.median_ms / 1e3
                status = (f"{res.median_ms:9.3f} ms  {res.gflops:7.1f} GFLOP/s  "
                          f"{100 * res.mm_ratio:5.1f}% of mm" if res.median_ms is not None
                          else f"skipped: {res.skipped}" if res.skipped else f"ERROR {res.error}")
                print(f"  {case.key:9s} {pass_:7s} {cfg.dtype:8s} {cfg.threads}t {cfg.layout:13s} "
                      f"{impl:13s} {status}", flush=True)
    interleaved: Dict[Tuple[str, str, str, str], float] = {}
    if device.type == "cpu":
        print("no-slower targets, timed interleaved with float32 contiguous:")
        interleaved = no_slower_ratios(cases, device, max_threads, budget)
    elapsed = time.time() - started
    load_after = os.getloadavg()
    other_share = others.share()

    # 4. Report.
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path = out_dir / f"bench_{device.type}.md"
    json_path = out_dir / f"bench_{device.type}.json"
    png_path = out_dir / f"bench_{device.type}.png"
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    md = [f"# correlation benchmark: {name}", ""]
    md.append(f"`python benchmarks/bench_correlation.py --device {device.type}"
              f"{' --quick' if args.quick else ''}` at {stamp}, commit {git_commit()}, "
              f"torch {torch.__version__}" + (
                  f", CPU capability {torch.backends.cpu.get_cpu_capability()}" if device.type == "cpu"
                  else f", CUDA {torch.version.cuda}")
              + f"; {elapsed:.0f} s; other processes used "
              + ("an unknown share" if other_share is None else f"{100 * other_share:.0f}%")
              + f" of the {os.cpu_count()} CPUs during the run.")
    md.append("")
    if other_share is not None and other_share > 0.10:
        md.append(f"**Other processes used {100 * other_share:.0f}% of the CPUs during this run: the "
                  "timings, the torch.mm reference included, are not representative.** Peers made of "
                  "many small parallel ops (the shift loop) suffer most from oversubscribed OpenMP "
                  "threads.")
        md.append("")
    md.append("Reference throughputs measured in the same run:")
    md.append("")
    for (dname, threads), g in sorted(mm.items()):
        md.append(f"- torch.mm {mm_n}x{mm_n} {dname}" + (f", {threads} thread(s)" if device.type == "cpu" else "")
                  + f": {g:.1f} GFLOP/s")
    md.append(f"- roofline: FMA rate {fma:.1f} GFLOP/s (float32 mm{', TF32 off' if device.type == 'cuda' else ''}),"
              f" copy bandwidth {bandwidth:.1f} GB/s (read+write of a "
              f"{'1 GiB' if device.type == 'cuda' else '256 MiB'} copy)")
    md.append("")
    md.append("Medians of an adaptive number of timed calls after warm-up. GFLOP/s counts "
              "2*N*C*H_out*W_out*D*k*k per pass (fwd+bwd = 3 passes). '% of mm' divides by torch.mm "
              "of the same dtype and thread count. 'roofline %' is max(DRAM traffic / copy bandwidth, "
              "FLOP / float32 mm rate) divided by the median. 'peak MiB' is the peak extra memory of one call: " + (
              "'alloc' from torch.profiler's memory events of the CPU allocator (calling thread), "
              "'RSS' the resident-set high-water mark growth (all threads, raw mallocs too)"
              if device.type == "cpu" else "torch.cuda.max_memory_allocated minus the baseline")
              + "; 'peak / (out+grads)' uses the larger figure, over the output plus both input "
              "gradients for fwd+bwd. "
              "'F.correlation speed-up' is this row's median over F.correlation's in the same configuration."
              + (" The targets' 'no slower than float32 contiguous' ratios are timed again with the two "
                 "configurations' calls alternating, so that machine drift between table rows does not "
                 "enter them; the ratio of the table's medians is shown beside them."
                 if device.type == "cpu" else ""))
    md.append("")
    if peers.SAMPLER_IMPORT_ERROR is not None:
        md.append(f"spatial-correlation-sampler was not importable here ({peers.SAMPLER_IMPORT_ERROR}); "
                  "its rows are absent.")
        md.append("")
    md += results_table(results, device)
    if device.type == "cpu":
        tlines, tally = cpu_targets(results, max_threads, interleaved)
        md += [f"## Targets (issue 4: float32, {max_threads} threads, contiguous unless stated)", ""] + tlines
    else:
        tlines, tally = cuda_targets(results)
        md += ["## Targets (issue 3)", ""] + tlines
    md.append("")
    md.append(f"Targets: {tally['PASS']} PASS, {tally['FAIL']} FAIL, {tally['SKIP']} SKIP (not measured).")
    note = plot(results, mm, max_threads, png_path, name, show_threads=device.type == "cpu")
    if note:
        md.append("")
        md.append(note)
    text = "\n".join(md) + "\n"
    md_path.write_text(text)
    json_path.write_text(json.dumps({
        "device": device.type, "device_name": name, "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability() if device.type == "cpu" else None,
        "commit": git_commit(), "date": stamp, "quick": args.quick, "budget_s": budget,
        "elapsed_s": elapsed, "load_before": load_before, "load_after": load_after,
        "other_processes_cpu_share": other_share,
        "mm_gflops": {f"{d}/{t}": g for (d, t), g in mm.items()}, "mm_n": mm_n,
        "fma_gflops": fma, "copy_gbytes_per_s": bandwidth,
        "sampler": peers.SAMPLER_IMPORT_ERROR or "available",
        "cases": {c.key: {"title": c.title, "shape": c.shape, "max_displacement": c.max_displacement,
                          "kwargs": c.kwargs} for c in cases},
        "results": [dict(asdict(r), config=asdict(r.config)) for r in results],
        "interleaved_time_ratios": {"/".join(k): v for k, v in interleaved.items()},
        "targets": tally,
    }, indent=1, default=str) + "\n")
    print()
    print(text)
    print(f"wrote {md_path}, {json_path}" + ("" if note else f", {png_path}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
