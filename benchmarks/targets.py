"""The speed and memory targets the correlation benchmark checks, as data,
and their evaluation against a run's results.

Each target set names the cases, dtypes, thread count and layout it applies
to; each target row says what is compared and the bound. A row is PASS, FAIL
or SKIP (not measured: e.g. spatial-correlation-sampler not importable).
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
    """F.correlation at least `at_least` times faster than `peer`."""
    peer: str
    pass_: str
    at_least: float


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
    """F.correlation at least `at_least` of the roofline bound."""
    pass_: str
    at_least: float


Target = MmShare | PeerSpeedup | NoSlower | PeakMemory | RooflineShare


@dataclass(frozen=True)
class TargetSet:
    title: str
    cases: tuple[str, ...]
    dtypes: tuple[str, ...]
    layout: str
    targets: tuple[Target, ...]


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
        RooflineShare("fwd", 0.50),
    ),
)


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
        what = f"{target.pass_} >= {target.at_least:.0%} of roofline"
        frac = None if ours is None else ours.roofline_fraction
        if frac is None:
            return what, "n/a", None
        bound = ("" if ours.roofline_ms is None
                 else f" (bound {ours.roofline_ms:.3f} ms, got {ours.median_ms:.3f} ms)")
        return what, f"{100 * frac:.1f}%{bound}", frac >= target.at_least

    raise TypeError(target)


def target_table(target_set: TargetSet, results: list[Result], threads: int | None,
                 interleaved: dict[tuple[str, str, str, str], float]
                 ) -> tuple[list[str], dict[str, int]]:
    """The markdown rows of every (case, dtype, target) of the set, and the
    PASS/FAIL/SKIP counts."""
    show_dtype = len(target_set.dtypes) > 1
    head = ["case"] + (["dtype"] if show_dtype else []) + ["target", "measured", "result"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    tally = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    for key in target_set.cases:
        title = next(c.title for c in CASES if c.key == key)
        for dtype in target_set.dtypes:
            for target in target_set.targets:
                what, measured, passed = evaluate(target, results, key, dtype, threads,
                                                  target_set.layout, interleaved)
                verdict = "SKIP" if passed is None else ("PASS" if passed else "FAIL")
                tally[verdict] += 1
                cells = [title] + ([dtype] if show_dtype else []) + [what, measured, verdict]
                lines.append("| " + " | ".join(cells) + " |")
    return lines, tally
