"""Benchmark torch.nn.functional.correlation against its peers.

    python benchmarks/bench_correlation.py [--device cpu|cuda] [--quick] [--out docs/benchmarks]

Times F.correlation (from the ``torch_correlation`` preview package) against
spatial-correlation-sampler (when importable), a pure-PyTorch shift loop, an
unfold+einsum composite and RAFT's all-pairs matmul (benchmarks/peers.py), on
optical-flow and stereo shapes, against GwcNet's and VCN's own volume loops
on their cases, forward and forward+backward, float32 and bfloat16, 1 and 2
threads, contiguous and channels_last. Reports medians, GFLOP/s, the ratio to
the same-run torch.mm throughput, peak extra memory, the memory roofline and
the compute bound, checks the targets (benchmarks/targets.py), and writes
<out>/bench_<device>.md, .json and .png. See benchmarks/README.md for the
method.

The parts: cases.py (what is timed), measure.py (how), targets.py (the
targets, as data), report.py (tables and files); this file runs them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

try:
    import torch_correlation
except ImportError:
    # A fresh checkout built in place (tools/build_preview.py --inplace).
    sys.path.insert(0, str(REPO_ROOT))
    import torch_correlation

import peers
from cases import (
    CASES,
    DTYPES,
    PASS_FLOP_FACTOR,
    PASSES,
    SLOW_PEER_SECONDS,
    Case,
    Config,
    Result,
    configs_for,
    make_step,
    skip_reason,
    verify,
)
from measure import (
    OtherCpuUse,
    copy_gbytes_per_s,
    interleaved_ratio,
    measure,
    first_touch_s_per_gb,
    mm_gflops,
)
from report import Run, device_name, write_report
from targets import CPU_TARGETS, NO_SLOWER_VARIANTS, peer_configs


def run_config(cfg: Config, case: Case, device: torch.device, budget_s: float,
               mm: dict[tuple[str, int], float], bandwidth: dict[int, float],
               first_touch: dict[int, float], single: bool = False) -> Result:
    res = Result(cfg)
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    try:
        step, geo, _, res.needed_mib, traffic = make_step(cfg, case, device)
        flop = geo.flop() * PASS_FLOP_FACTOR[cfg.pass_]
        res.gflop = flop / 1e9
        m = measure(step, device, budget_s, single=single)
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
    # Both bounds at this configuration's thread count: one thread moves
    # and multiplies less than two.
    memory_s = traffic / (bandwidth[cfg.threads] * 1e9)
    compute_s = flop / (mm[("float32", cfg.threads)] * 1e9)
    res.roofline_ms = memory_s * 1e3
    res.roofline_fraction = memory_s / m.median_s
    res.compute_ms = compute_s * 1e3
    res.compute_fraction = compute_s / m.median_s
    # The same traffic plus the cost of the fresh pages of the tensors the
    # call returns (output, and both gradients for fwd+bwd).
    fresh_s = memory_s + res.needed_mib * 2**20 / 1e9 * first_touch[cfg.threads]
    res.fresh_roofline_ms = fresh_s * 1e3
    res.fresh_roofline_fraction = fresh_s / m.median_s
    return res


def references(device: torch.device, thread_counts: list[int], max_threads: int,
               budget_s: float) -> tuple[dict[tuple[str, int], float], int, dict[int, float]]:
    """torch.mm GFLOP/s per (dtype, threads), the mm size and the copy
    bandwidth per thread count, all from this run."""
    mm: dict[tuple[str, int], float] = {}
    bandwidth: dict[int, float] = {}
    first_touch: dict[int, float] = {}
    mm_n = 8192 if device.type == "cuda" else 2048
    if device.type == "cuda":
        # float32 mm on CUDA cores (the FMA rate of the roofline), not TF32.
        torch.backends.cuda.matmul.allow_tf32 = False
    for threads in thread_counts:
        if device.type == "cpu":
            torch.set_num_threads(threads)
        for dname, dtype in DTYPES.items():
            mm[(dname, threads)] = mm_gflops(dtype, device, mm_n, budget_s)
        bandwidth[threads] = copy_gbytes_per_s(device, budget_s)
        first_touch[threads] = first_touch_s_per_gb(device, budget_s)
    if device.type == "cpu":
        torch.set_num_threads(max_threads)
    for (dname, threads), g in sorted(mm.items()):
        print(f"torch.mm {mm_n}x{mm_n} {dname}, {threads} thread(s): {g:.1f} GFLOP/s")
    for threads, bw in sorted(bandwidth.items()):
        print(f"copy bandwidth, {threads} thread(s): {bw:.1f} GB/s; fresh memory "
              f"{1e3 * first_touch[threads]:.1f} ms/GB beyond its first write")
    return mm, mm_n, bandwidth, first_touch


def run_matrix(cases: list[Case], thread_counts: list[int], max_threads: int, device: torch.device,
               quick: bool, budget_s: float, mm: dict[tuple[str, int], float],
               bandwidth: dict[int, float], first_touch: dict[int, float]) -> list[Result]:
    """Every configuration of every case, timed or skipped with the reason."""
    results: list[Result] = []
    slow: dict[tuple[str, str, str], float] = {}
    target_peers = peer_configs(device.type, max_threads)
    for case in cases:
        for pass_, impl, configs in configs_for(case, thread_counts):
            for cfg in configs:
                reason = skip_reason(cfg, case, quick, slow, max_threads, target_peers)
                if reason is not None:
                    results.append(Result(cfg, skipped=reason))
                    continue
                # A slow peer timed again because a target compares with it:
                # one call (it takes seconds; its memory was measured once).
                single = (case.key, pass_, impl) in slow
                res = run_config(cfg, case, device, budget_s, mm, bandwidth, first_touch, single)
                results.append(res)
                if (impl != "ours" and res.median_ms is not None and cfg.dtype == "float32"
                        and cfg.threads == max_threads and res.median_ms / 1e3 > SLOW_PEER_SECONDS):
                    slow[(case.key, pass_, impl)] = res.median_ms / 1e3
                status = (f"{res.median_ms:9.3f} ms  {res.gflops:7.1f} GFLOP/s  "
                          f"{100 * res.mm_ratio:5.1f}% of mm  "
                          f"{100 * res.roofline_fraction:5.1f}% of memory roofline  "
                          f"{100 * res.compute_fraction:5.1f}% of compute bound"
                          if res.median_ms is not None
                          else f"skipped: {res.skipped}" if res.skipped else f"ERROR {res.error}")
                print(f"  {case.key:9s} {pass_:7s} {cfg.dtype:8s} {cfg.threads}t {cfg.layout:13s} "
                      f"{impl:13s} {status}", flush=True)
    return results


def no_slower_ratios(cases: list[Case], device: torch.device, threads: int,
                     budget_s: float) -> dict[tuple[str, str, str, str], float]:
    """Interleaved time ratios of each NO_SLOWER_VARIANTS configuration of
    F.correlation over float32 contiguous, on the CPU target cases."""
    ratios: dict[tuple[str, str, str, str], float] = {}
    if device.type == "cpu":
        torch.set_num_threads(threads)
    for case in cases:
        if case.key not in CPU_TARGETS.cases:
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true",
                        help="~1 minute smoke subset: PWC-Net level and FlowNetC (or --cases), "
                             "most threads only, fewer peers")
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "benchmarks"),
                        help="folder for bench_<device>.md/.json/.png (default: docs/benchmarks)")
    parser.add_argument("--cases", default=None,
                        help="comma-separated subset of " + ",".join(c.key for c in CASES)
                             + " (e.g. gwcnet,dispnetc,vcn: the stereo cases)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of timed calls per configuration (default 0.5; --quick 0.2)")
    args = parser.parse_args(argv)
    if args.cases:
        unknown = set(args.cases.split(",")) - {c.key for c in CASES}
        if unknown:
            parser.error(f"unknown cases: {sorted(unknown)}")
    return args


def print_environment(name: str, device: torch.device, thread_counts: list[int]) -> None:
    print(f"correlation benchmark on {name}, torch {torch.__version__}, "
          f"torch_correlation from {Path(torch_correlation.__file__).parent}")
    if device.type == "cpu":
        load = os.getloadavg()[0]
        print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, thread counts {thread_counts}, "
              f"load average {load:.2f}")
        if load > 0.5:
            print(f"warning: load average {load:.2f}: other processes may share the CPU; "
                  "timings will be noisy")
    if peers.SAMPLER_IMPORT_ERROR is not None:
        print(f"spatial-correlation-sampler: skipped, not importable ({peers.SAMPLER_IMPORT_ERROR}). "
              "Its sdist hard-codes C++17 and cannot build against torch >= 2.14; "
              "install it in an environment where it builds to include it.")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    budget = args.budget if args.budget is not None else (0.2 if args.quick else 0.5)
    if args.cases:
        cases = [c for c in CASES if c.key in args.cases.split(",")]
    elif args.quick:
        cases = [c for c in CASES if c.key in CPU_TARGETS.cases]
    else:
        cases = CASES
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
    print_environment(name, device, thread_counts)

    # 1. Correctness first.
    if device.type == "cpu":
        torch.set_num_threads(max_threads)
    t_verify = time.time()
    checked = verify(device)
    print(f"verified {len(checked)} (case, dtype, implementation) combinations against F.correlation "
          f"(output and both gradients) in {time.time() - t_verify:.1f} s")
    # 2. Reference throughputs from this run; 3. the matrix; 4. the
    # interleaved "no slower" ratios; 5. the report.
    mm, mm_n, bandwidth, first_touch = references(device, thread_counts, max_threads, budget)
    results = run_matrix(cases, thread_counts, max_threads, device, args.quick, budget, mm, bandwidth,
                         first_touch)
    interleaved: dict[tuple[str, str, str, str], float] = {}
    if device.type == "cpu" and any(c.key in CPU_TARGETS.cases for c in cases):
        print("no-slower targets, timed interleaved with float32 contiguous:")
        interleaved = no_slower_ratios(cases, device, max_threads, budget)
    run = Run(device=device, name=name, quick=args.quick, budget_s=budget, max_threads=max_threads,
              thread_counts=thread_counts, cases=cases, argv=sys.argv[1:] if argv is None else argv,
              mm=mm, mm_n=mm_n, bandwidth=bandwidth, first_touch=first_touch, results=results,
              interleaved=interleaved, elapsed_s=time.time() - started, load_before=load_before,
              load_after=os.getloadavg(), other_share=others.share())
    write_report(run, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
