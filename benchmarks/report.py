"""The correlation benchmark's report: the results tables, the targets, the
plot, and the markdown and JSON files written to the output folder."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import peers
import torch
from cases import CASES, IMPL_LABELS, IMPLS, PASSES, Case, Result, find, speedup_vs
from targets import _f, peak_of, target_sets, target_table, thread_counts

REPO_ROOT = Path(__file__).resolve().parent.parent


def results_table(results: list[Result], device: torch.device) -> list[str]:
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
            "memory roofline %", "with fresh memory %", "compute bound %", "peak MiB" + (" alloc / RSS" if thread_col else ""),
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
                cells += ["error: " + r.error.replace("|", "/")] + [""] * 10
            else:
                peak = peak_of(r)
                ratio = None if peak is None else peak / r.needed_mib
                mem = _f(r.peak_mib, ".1f") + (f" / {_f(r.peak_rss_mib, '.1f')}" if thread_col else "")
                sp = speedup_vs(results, r)
                cells += [
                    _f(r.median_ms, ".3f"), str(r.reps), _f(r.gflops, ".1f"),
                    _f(None if r.mm_ratio is None else 100 * r.mm_ratio, ".1f"),
                    _f(None if r.roofline_fraction is None else 100 * r.roofline_fraction, ".1f"),
                    _f(None if r.fresh_roofline_fraction is None else 100 * r.fresh_roofline_fraction,
                       ".1f"),
                    _f(None if r.compute_fraction is None else 100 * r.compute_fraction, ".1f"),
                    mem, _f(ratio, ".2f"),
                    "" if c.impl == "ours" else _f(sp, ".1f") + "x"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for (impl, reason), where in skipped.items():
            lines.append(f"- skipped {IMPL_LABELS[impl]} ({len(where)} configurations): {reason}")
        lines.append("")
    return lines



def plot(results: list[Result], mm: dict[tuple[str, int], float], threads: int, path: Path,
         device_name: str, show_threads: bool) -> str | None:
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



@dataclass
class Run:
    """Everything one benchmark run measured, for the report."""
    device: torch.device
    name: str
    quick: bool
    budget_s: float
    max_threads: int
    thread_counts: list[int]
    cases: list[Case]
    argv: list[str]
    mm: dict[tuple[str, int], float]
    mm_n: int
    bandwidth: dict[int, float]   # copy GB/s per thread count
    first_touch: dict[int, float]  # seconds per GB of fresh memory, per thread count
    results: list[Result]
    interleaved: dict[tuple[str, str, str, str], float]
    elapsed_s: float = 0.0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    other_share: float | None = None


def _header(run: Run, stamp: str) -> list[str]:
    cpu = run.device.type == "cpu"
    md = [f"# correlation benchmark: {run.name}", ""]
    md.append(f"`{' '.join(['python benchmarks/bench_correlation.py', *run.argv])}`"
              f" at {stamp}, commit {git_commit()}, "
              f"torch {torch.__version__}" + (
                  f", CPU capability {torch.backends.cpu.get_cpu_capability()}" if cpu
                  else f", CUDA {torch.version.cuda}")
              + f"; {run.elapsed_s:.0f} s; other processes used "
              + ("an unknown share" if run.other_share is None else f"{100 * run.other_share:.0f}%")
              + f" of the {os.cpu_count()} CPUs during the run.")
    md.append("")
    if run.other_share is not None and run.other_share > 0.10:
        md.append(f"**Other processes used {100 * run.other_share:.0f}% of the CPUs during this run: the "
                  "timings, the torch.mm reference included, are not representative.** Peers made of "
                  "many small parallel ops (the shift loop) suffer most from oversubscribed OpenMP "
                  "threads.")
        md.append("")
    md.append("Reference throughputs measured in the same run:")
    md.append("")
    for (dname, threads), g in sorted(run.mm.items()):
        md.append(f"- torch.mm {run.mm_n}x{run.mm_n} {dname}" + (f", {threads} thread(s)" if cpu else "")
                  + f": {g:.1f} GFLOP/s")
    for threads, bw in sorted(run.bandwidth.items()):
        md.append("- copy bandwidth" + (f", {threads} thread(s)" if cpu else "") + f": {bw:.1f} GB/s "
                  f"(read+write of a {'256 MiB' if cpu else '1 GiB'} copy)"
                  + (f"; fresh memory {1e3 * run.first_touch[threads]:.1f} ms/GB beyond its first write"
                     if cpu else ""))
    md.append("")
    md.append("Medians of an adaptive number of timed calls after warm-up. GFLOP/s counts "
              "2*N*C*H_out*W_out*D*k*k per pass (fwd+bwd = 3 passes). '% of mm' divides by torch.mm "
              "of the same dtype and thread count. 'memory roofline %' is the compulsory DRAM traffic "
              "(inputs and output; for fwd+bwd also grad_output, the inputs again and both gradients) "
              "over the copy bandwidth of the same thread count, divided by the median; 'with fresh memory %' "
              "adds to that bound the same run's cost of the fresh pages of the tensors a call returns "
              "(output; for fwd+bwd also both gradients: a new 256 MiB tensor filled, minus the same "
              "fill of mapped memory): the CPU allocator unmaps large blocks when they are freed, so "
              "every call pays these page faults and the zeroing of the pages, whatever its kernel "
              "(THP_MEM_ALLOC_ENABLE=1 makes them cheaper); 'compute bound %' "
              "is the FLOP over float32 torch.mm of the same thread count"
              + ("" if cpu else " (TF32 off)") + ", divided by the median: a row far below its memory "
              "roofline but near its compute bound is compute-bound. 'peak MiB' is the peak extra "
              "memory of one call: " + (
              "'alloc' from torch.profiler's memory events of the CPU allocator (calling thread), "
              "'RSS' the resident-set high-water mark growth (all threads, raw mallocs too)"
              if cpu else "torch.cuda.max_memory_allocated minus the baseline")
              + "; 'peak / (out+grads)' uses the larger figure, over the output plus both input "
              "gradients for fwd+bwd. "
              "'F.correlation speed-up' is this row's median over F.correlation's in the same configuration."
              + (" The targets' 'no slower than float32 contiguous' ratios are timed again with the two "
                 "configurations' calls alternating, so that machine drift between table rows does not "
                 "enter them; the ratio of the table's medians is shown beside them."
                 if cpu else ""))
    md.append("")
    if peers.SAMPLER_IMPORT_ERROR is not None:
        md.append(f"spatial-correlation-sampler was not importable here ({peers.SAMPLER_IMPORT_ERROR}); "
                  "its rows are absent.")
        md.append("")
    return md


def write_report(run: Run, out_dir: Path) -> str:
    """Writes bench_<device>.md, .json and .png to out_dir; returns the markdown."""
    cpu = run.device.type == "cpu"
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path = out_dir / f"bench_{run.device.type}.md"
    json_path = out_dir / f"bench_{run.device.type}.json"
    png_path = out_dir / f"bench_{run.device.type}.png"
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    md = _header(run, stamp)
    md += results_table(run.results, run.device)
    tally = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    run_cases = [c.key for c in run.cases]
    for target_set in target_sets(run.device.type):
        if not any(key in run_cases for key in target_set.cases):
            continue
        threads = thread_counts(target_set, run.device.type, run.max_threads)
        tlines, counts = target_table(target_set, run.results, threads, run.interleaved,
                                      cases=run_cases, run_threads=run.thread_counts if cpu else None)
        for verdict, count in counts.items():
            tally[verdict] += count
        scope = ", ".join(target_set.dtypes)
        if cpu:
            scope += f", {'/'.join(str(t) for t in threads)} thread(s)"
        scope += f", {target_set.layout} unless stated"
        md += [f"## {target_set.title} ({scope})", ""] + tlines + [""]
    md.append(f"Targets: {tally['PASS']} PASS, {tally['FAIL']} FAIL, {tally['SKIP']} SKIP (not measured).")
    note = plot(run.results, run.mm, run.max_threads, png_path, run.name, show_threads=cpu)
    if note:
        md.append("")
        md.append(note)
    text = "\n".join(md) + "\n"
    md_path.write_text(text)
    json_path.write_text(json.dumps({
        "device": run.device.type, "device_name": run.name, "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability() if cpu else None,
        "commit": git_commit(), "date": stamp, "quick": run.quick, "budget_s": run.budget_s,
        "elapsed_s": run.elapsed_s, "load_before": run.load_before, "load_after": run.load_after,
        "other_processes_cpu_share": run.other_share,
        "argv": run.argv, "thread_counts": run.thread_counts,
        "mm_gflops": {f"{d}/{t}": g for (d, t), g in run.mm.items()}, "mm_n": run.mm_n,
        "copy_gbytes_per_s": {str(t): bw for t, bw in run.bandwidth.items()},
        "fresh_memory_s_per_gb": {str(t): v for t, v in run.first_touch.items()},
        "thp_mem_alloc_enable": os.environ.get("THP_MEM_ALLOC_ENABLE"),
        "sampler": peers.SAMPLER_IMPORT_ERROR or "available",
        "cases": {c.key: {"title": c.title, "shape": c.shape, "max_displacement": c.max_displacement,
                          "kwargs": c.kwargs} for c in run.cases},
        "results": [dict(asdict(r), config=asdict(r.config)) for r in run.results],
        "interleaved_time_ratios": {"/".join(k): v for k, v in run.interleaved.items()},
        "targets": tally,
    }, indent=1, default=str) + "\n")
    print()
    print(text)
    print(f"wrote {md_path}, {json_path}" + ("" if note else f", {png_path}"))
    return text
