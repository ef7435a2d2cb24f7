"""Compares F.correlation's rows of two benchmark runs (their bench_<device>.json).

    python benchmarks/compare_runs.py BEFORE.json AFTER.json [--cases pwc,flownetc]
        [--dtypes float32,bfloat16]

Prints, per configuration that both runs timed (of the chosen cases, default
all), the two medians and their ratio (after / before), the geometric mean of
the ratios, and the largest ratio: a "no slowdown" check of, e.g., the
PWC-Net and FlowNetC rows across a kernel change reads those two lines. Machine speed
drifts between runs, so compare runs made back to back on a quiet machine,
and read each run's torch.mm rows for the drift.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def ours_rows(path: Path, dtypes: set[str], cases: set[str] | None) -> dict[tuple, float]:
    data = json.loads(path.read_text())
    rows = {}
    for r in data["results"]:
        c = r["config"]
        if (c["impl"] == "ours" and c["dtype"] in dtypes and (cases is None or c["case"] in cases)
                and r.get("median_ms") is not None):
            rows[(c["case"], c["pass_"], c["dtype"], c["threads"], c["layout"])] = r["median_ms"]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--cases", default=None, help="comma-separated case keys (default: all)")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    args = parser.parse_args(argv)
    dtypes = set(args.dtypes.split(","))
    cases = set(args.cases.split(",")) if args.cases else None
    before, after = ours_rows(args.before, dtypes, cases), ours_rows(args.after, dtypes, cases)
    for run, path in (("before", args.before), ("after", args.after)):
        mm = json.loads(path.read_text())["mm_gflops"]
        print(f"{run}: torch.mm " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(mm.items())) + " GFLOP/s")
    print("| case | pass | dtype | threads | layout | before ms | after ms | after / before |")
    print("|---|---|---|---|---|---|---|---|")
    ratios = {}
    for key in sorted(set(before) & set(after)):
        ratios[key] = after[key] / before[key]
        print("| " + " | ".join(str(k) for k in key) +
              f" | {before[key]:.3f} | {after[key]:.3f} | {ratios[key]:.3f} |")
    if not ratios:
        print("no configuration was timed in both runs")
        return 1
    logs = [math.log(r) for r in ratios.values()]
    worst = max(ratios, key=ratios.get)
    print(f"geometric mean of after / before over {len(logs)} rows: {math.exp(sum(logs) / len(logs)):.3f}")
    print(f"largest after / before: {ratios[worst]:.3f} ({', '.join(str(k) for k in worst)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
