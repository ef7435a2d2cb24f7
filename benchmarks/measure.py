"""Timing and memory measurement for the correlation benchmark: medians of
adaptive numbers of timed calls, peak extra memory (allocator and RSS on CPU,
the caching allocator on CUDA), the same-run references (torch.mm, a tensor
copy), interleaved time ratios, and the share of CPU time other processes
used. See benchmarks/README.md ("Method")."""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


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


def peak_cpu_bytes(step: Callable[[], None]) -> int | None:
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
        except Exception:  # noqa: BLE001, S110 -- not Linux/glibc: no RSS figure
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

    def share(self) -> float | None:
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


def time_step(step: Callable[[], None], device: torch.device, reps: int) -> list[float]:
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
    times_s: list[float]
    warmup_s: float
    peak_bytes: int | None
    peak_rss_bytes: int | None


def measure(step: Callable[[], None], device: torch.device, budget_s: float,
            max_reps: int = 50, memory: bool = True, single: bool = False) -> Measurement:
    """Two or three warm-up calls (the first profiled for allocator memory,
    the second measured for RSS growth on CPU), then an adaptive number of
    timed calls: about budget_s worth, at least 3, at most max_reps; when the
    second call alone exceeds the budget, it is the one timed call. With
    `single`, for calls known to take seconds: one timed call, no warm-up and
    no memory figures."""
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    sync()
    if single:
        times = time_step(step, device, 1)
        return Measurement(times[0], times, times[0], None, None)
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
        # One call exceeds the budget: that second call is the one timed call
        # (a third would double the cost of the slowest peers for nothing).
        times = [warm]
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



def first_touch_s_per_gb(device: torch.device, budget_s: float) -> float:
    """Seconds per GB that a tensor in fresh memory costs beyond its first
    write: a new 256 MiB tensor filled, minus the same fill of a tensor whose
    pages are already mapped. On the CPU the allocator returns large blocks
    to the system when they are freed, so every call that returns a large
    tensor (a cost volume, its gradients) pays the page faults and the
    kernel's zeroing of those pages again; any implementation pays them,
    whatever its kernel. Zero on CUDA (the caching allocator keeps blocks)."""
    if device.type != "cpu":
        return 0.0
    numel = 1 << 26
    mapped = torch.empty(numel)
    mapped.fill_(0.0)
    fill = measure(lambda: mapped.fill_(1.0), device, budget_s, max_reps=20, memory=False)
    fresh = measure(lambda: torch.empty(numel).fill_(1.0), device, budget_s, max_reps=20, memory=False)
    return max(0.0, fresh.median_s - fill.median_s) / (numel * 4 / 1e9)


def interleaved_ratio(base: Callable[[], None], other: Callable[[], None],
                      device: torch.device, budget_s: float, min_rounds: int = 9,
                      max_rounds: int = 60) -> float:
    """Median time of `other` over median time of `base`, timed in alternating
    calls so that both see the same machine state. The separate medians of the
    results table come from runs minutes apart, and on a shared machine the
    speed drifts by more than the few percent a "no slower" target compares."""
    for step in (base, other, base, other):
        step()
    times: tuple[list[float], list[float]] = ([], [])
    started = time.perf_counter()
    rounds = 0
    while rounds < min_rounds or (rounds < max_rounds and time.perf_counter() - started < budget_s):
        for k, step in enumerate((base, other) if rounds % 2 == 0 else (other, base)):
            t = time_step(step, device, 1)[0]
            times[k if rounds % 2 == 0 else 1 - k].append(t)
        rounds += 1
    return statistics.median(times[1]) / statistics.median(times[0])

