"""The speed and memory targets the correlation benchmark checks, as data,
and their evaluation against a run's results.

Each target set names the cases, dtypes, thread counts and layout it applies
to; each target row says what is compared and the bound. A row is PASS, FAIL
or SKIP (not measured: e.g. spatial-correlation-sampler not importable, or a
thread count the run did not use).
"""

from __future__ import annotations

from dataclasses import dataclass

from cases import CASES, IMPL_LABELS, PASSES, Result, find, speedup_vs


@dataclass(frozen=True)
class MmShare:
    """F.correlation's GFLOP/s at least `at_least` of the same run's torch.mm."""
    pass_: str
    at_least: float


@dataclass(frozen=True)
class PeerSpeedup:
    """F.correlation at least `at_least` times faster than `peer`; `cases`
    limits the row to the cases where the peer applies (None: all of the set's)."""
    peer: str
    pass_: str
    at_least: float
    cases: tuple[str, ...] | None = None


@dataclass(frozen=True)
class NoSlower:
    """F.correlation in (dtype, layout) no slower than in the set's dtype on
    contiguous inputs, within `tolerance` (timer noise on a shared machine);
    judged on the ratio timed interleaved where measured."""
    pass_: str
    dtype: str
    layout: str
    tolerance: float = 1.05


@dataclass(frozen=True)
class PeakMemory:
    """Peak extra memory of one call at most `at_most` x (output + gradients)."""
    pass_: str
    at_most: float


@dataclass(frozen=True)
class RooflineShare:
    """F.correlation at least `at_least` of a bound: "memory" (compulsory
    traffic at the same run's copy bandwidth), or "max" (the larger of that
    and FLOP at the same run's float32 torch.mm rate)."""
    pass_: str
    at_least: float
    bound: str = "memory"


Target = MmShare | PeerSpeedup | NoSlower | PeakMemory | RooflineShare


@dataclass(frozen=True)
class TargetSet:
    """`threads`: the CPU thread counts the rows are checked at (None: the
    run's most threads); ignored on CUDA."""
    title: str
    cases: tuple[str, ...]
    dtypes: tuple[str, ...]
    layout: str
    targets: tuple[Target, ...]
    threads: tuple[int, ...] | None = None


# The (dtype, layout) variants that must be no slower than float32 contiguous.
NO_SLOWER_VARIANTS = (("bfloat16", "contiguous"), ("float32", "channels_last"),
                      ("bfloat16", "channels_last"))

CPU_TARGETS = TargetSet(
    title="CPU speed and memory targets",
    cases=("pwc", "flownetc"),
    dtypes=("float32",),
    layout="contiguous",
    targets=(
        MmShare("fwd", 0.30),
        MmShare("fwd+bwd", 0.20),
        PeerSpeedup("sampler", "fwd", 20),
        PeerSpeedup("sampler", "fwd+bwd", 20),
        *(NoSlower(pass_, dtype, layout) for pass_ in PASSES for dtype, layout in NO_SLOWER_VARIANTS),
        PeakMemory("fwd", 1.10),
        PeakMemory("fwd+bwd", 1.10),
    ),
)

CUDA_TARGETS = TargetSet(
    title="CUDA speed targets",
    cases=("pwc", "flownetc"),
    dtypes=("float32", "bfloat16"),
    layout="contiguous",
    targets=(
        PeerSpeedup("sampler", "fwd", 3),
        PeerSpeedup("sampler", "fwd+bwd", 3),
        RooflineShare("fwd", 0.50, bound="max"),
    ),
)

# Stereo cost volumes at memory speed: GwcNet's and DispNetC's 1-D volumes
# against GwcNet's Python loop (DispNetC's ports write the same loop with one
# group), VCN's per-channel 4-D volume against VCN's loop. The roofline rows
# use the memory bound; the report shows the compute bound beside it (DispNetC,
# 256 channels per displacement, is nearer to it).
STEREO_TARGETS = TargetSet(
    title="Stereo cost volume targets",
    cases=("gwcnet", "dispnetc", "vcn"),
    dtypes=("float32", "bfloat16"),
    layout="contiguous",
    threads=(1, 2),
    targets=(
        RooflineShare("fwd", 0.50),
        RooflineShare("fwd+bwd", 0.50),
        PeerSpeedup("gwc_loop", "fwd", 5, cases=("gwcnet", "dispnetc")),
        PeerSpeedup("gwc_loop", "fwd+bwd", 3, cases=("gwcnet", "dispnetc")),
        PeerSpeedup("vcn_loop", "fwd", 5, cases=("vcn",)),
        PeerSpeedup("vcn_loop", "fwd+bwd", 3, cases=("vcn",)),
    ),
)


def target_sets(device_type: str) -> tuple[TargetSet, ...]:
    """The target sets a run on this device checks."""
    return (CPU_TARGETS, STEREO_TARGETS) if device_type == "cpu" else (CUDA_TARGETS, STEREO_TARGETS)


def thread_counts(target_set: TargetSet, device_type: str, max_threads: int) -> list[int | None]:
    """The thread counts the set's rows are checked at (None: any, on CUDA)."""
    if device_type != "cpu":
        return [None]
    return list(target_set.threads) if target_set.threads else [max_threads]


def peer_configs(device_type: str, max_threads: int) -> frozenset[tuple[str, str, str, str, int]]:
    """(case, pass, peer, dtype, threads) of every peer configuration a
    target compares with: the run times these even when the peer is slow."""
    out = set()
    for ts in target_sets(device_type):
        for target in ts.targets:
            if not isinstance(target, PeerSpeedup):
                continue
            for case in target.cases or ts.cases:
                for dtype in ts.dtypes:
                    for threads in thread_counts(ts, device_type, max_threads):
                        out.add((case, target.pass_, target.peer, dtype,
                                 max_threads if threads is None else threads))
    return frozenset(out)


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def peak_of(r: Result) -> float | None:
    """The larger of the allocator and RSS peaks (MiB): the conservative figure."""
    values = [v for v in (r.peak_mib, r.peak_rss_mib) if v is not None]
    return max(values) if values else None


def evaluate(target: Target, results: list[Result], case: str, dtype: str, threads: int | None,
             layout: str, interleaved: dict[tuple[str, str, str, str], float]
             ) -> tuple[str, str, bool | None]:
    """(what the row checks, what was measured, passed or None if not measured)."""
    where = {"case": case, "dtype": dtype, "layout": layout}
    if threads is not None:
        where["threads"] = threads
    ours = find(results, pass_=target.pass_, impl="ours", **where)

    if isinstance(target, MmShare):
        got = None if ours is None else ours.mm_ratio
        return (f"{target.pass_} >= {target.at_least:.0%} of mm",
                "n/a" if got is None else f"{100 * got:.1f}%",
                None if got is None else got >= target.at_least)

    if isinstance(target, PeerSpeedup):
        peer = find(results, pass_=target.pass_, impl=target.peer, **where)
        sp = None if peer is None else speedup_vs(results, peer)
        what = f"{target.pass_} >= {target.at_least:g}x {IMPL_LABELS[target.peer]}"
        if sp is not None:
            return what, f"{sp:.1f}x", sp >= target.at_least
        why = (f" ({peer.skipped or peer.error})"
               if peer is not None and (peer.skipped or peer.error) else "")
        return what, "n/a" + why, None

    if isinstance(target, NoSlower):
        what = f"{target.pass_} {target.dtype} {target.layout} no slower than {dtype} {layout}"
        other = find(results, case=case, pass_=target.pass_, impl="ours", dtype=target.dtype,
                     layout=target.layout, **({} if threads is None else {"threads": threads}))
        separate = (None if ours is None or other is None or ours.median_ms is None
                    or other.median_ms is None else other.median_ms / ours.median_ms)
        both = interleaved.get((case, target.pass_, target.dtype, target.layout))
        rel = both if both is not None else separate
        if rel is None:
            return what, "n/a", None
        measured = f"{both:.2f}x the time interleaved" if both is not None else f"{rel:.2f}x the time"
        if both is not None and separate is not None:
            measured += f" ({separate:.2f}x from the table's medians)"
        return what, measured, rel <= target.tolerance

    if isinstance(target, PeakMemory):
        what = f"{target.pass_} peak extra memory <= {target.at_most:.2f} x (out+grads)"
        peak = None if ours is None else peak_of(ours)
        if peak is None:
            return what, "n/a", None
        rel = peak / ours.needed_mib
        measured = (f"alloc {_f(ours.peak_mib, '.1f')} / RSS {_f(ours.peak_rss_mib, '.1f')} MiB, "
                    f"out+grads {ours.needed_mib:.1f} MiB: {rel:.2f}x")
        return what, measured, rel <= target.at_most

    if isinstance(target, RooflineShare):
        kind = "memory roofline" if target.bound == "memory" else "roofline (max of memory, compute)"
        what = f"{target.pass_} >= {target.at_least:.0%} of {kind}"
        if ours is None or ours.median_ms is None or ours.roofline_ms is None:
            return what, "n/a", None
        bound_ms = ours.roofline_ms
        if target.bound == "max" and ours.compute_ms is not None:
            bound_ms = max(bound_ms, ours.compute_ms)
        frac = bound_ms / ours.median_ms
        compute = ("" if ours.compute_ms is None
                   else f"; compute bound {ours.compute_ms:.3f} ms = {100 * ours.compute_ms / ours.median_ms:.1f}%")
        if ours.fresh_roofline_ms is not None and ours.fresh_roofline_ms > ours.roofline_ms:
            compute += (f"; with the fresh memory of its results {ours.fresh_roofline_ms:.3f} ms = "
                        f"{100 * ours.fresh_roofline_ms / ours.median_ms:.1f}%")
        return (what, f"{100 * frac:.1f}% (bound {bound_ms:.3f} ms, got {ours.median_ms:.3f} ms{compute})",
                frac >= target.at_least)

    raise TypeError(target)


def target_table(target_set: TargetSet, results: list[Result], threads: list[int | None],
                 interleaved: dict[tuple[str, str, str, str], float], cases: list[str] | None = None,
                 run_threads: list[int] | None = None) -> tuple[list[str], dict[str, int]]:
    """The markdown rows of every (case, dtype, threads, target) of the set
    (its cases among `cases`, when given), and the PASS/FAIL/SKIP counts. A
    thread count not in `run_threads` gives SKIP rows that say so."""
    show_dtype = len(target_set.dtypes) > 1
    show_threads = len(threads) > 1
    head = (["case"] + (["dtype"] if show_dtype else []) + (["threads"] if show_threads else [])
            + ["target", "measured", "result"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    tally = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    for key in target_set.cases:
        if cases is not None and key not in cases:
            continue
        title = next(c.title for c in CASES if c.key == key)
        for dtype in target_set.dtypes:
            for t in threads:
                for target in target_set.targets:
                    if isinstance(target, PeerSpeedup) and target.cases and key not in target.cases:
                        continue
                    what, measured, passed = evaluate(target, results, key, dtype, t,
                                                      target_set.layout, interleaved)
                    if t is not None and run_threads is not None and t not in run_threads:
                        measured = f"n/a (the run used {', '.join(map(str, run_threads))} thread(s))"
                        passed = None
                    verdict = "SKIP" if passed is None else ("PASS" if passed else "FAIL")
                    tally[verdict] += 1
                    cells = ([title] + ([dtype] if show_dtype else [])
                             + ([str(t)] if show_threads else []) + [what, measured, verdict])
                    lines.append("| " + " | ".join(cells) + " |")
    return lines, tally
