"""RAFT's correlation lookup on the CPU: torchvision's CorrBlock (all-pairs volume,
pooled pyramid, grid_sample) against F.correlation(..., offset=...) and a
PWC-style warp followed by the integer F.correlation.

    python benchmarks/bench_raft.py [--sizes 128x256,256x512,368x496] [--threads 1,2]
                                    [--iters 12] [--budget 0.3] [--out docs/benchmarks/raft]

Times (1) the whole raft_small forward (seeded random weights, N=1, float32,
--iters refinement steps) with each lookup, and (2) the lookup alone at that
model's feature maps (C=128, radius 3, 4 levels, 1/8 of the image): one lookup
(all levels) with the state prebuilt, the state's build, and forward+backward of
build + --iters lookups (gradients of both feature maps). Peak memory and the
torch.mm rate come from the same run (benchmarks/measure.py). Writes
bench_raft_cpu.md and .json to --out. The method is in benchmarks/README.md
("RAFT lookup").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path.insert(0, str(HERE))
try:
    import torch_correlation
except ImportError:
    sys.path.insert(0, str(REPO_ROOT))
    import torch_correlation

from measure import RSS, OtherCpuUse, measure, mm_gflops

try:
    from torchvision.models.optical_flow import raft_small
    from torchvision.models.optical_flow.raft import CorrBlock
except ImportError as exc:
    sys.exit(f"bench_raft.py needs torchvision (pinned in requirements.txt): {exc}")

# The replacement lookup is the one test/test_correlation_raft.py checks
# against CorrBlock; the benchmark times that very class.
sys.path.insert(0, str(REPO_ROOT / "test"))
from test_correlation_raft import CorrelationLookup, pixel_grid

RADIUS = 3  # raft_small's CorrBlock
LEVELS = 4
CHANNELS = 128  # raft_small's feature maps
IMPLS = ("corr_block", "offset", "warp")
LABELS = {
    "corr_block": "CorrBlock (all-pairs + grid_sample)",
    "offset": "F.correlation offset=",
    "warp": "warp + integer F.correlation",
}


class WarpLookup(CorrelationLookup):
    """PWC-style: each level warps its pooled fmap2 to fmap1's grid at
    coords / 2^i (grid_sample, bilinear, zeros, align_corners=True), then
    correlates fmap1 with the warped map at integer displacements 2^i * d
    (displacement_stride 2^i, reach r * 2^i), in CorrBlock's channel order.
    It samples S(fmap2_i, (p + 2^i d + flow(p + 2^i d)) / 2^i) where CorrBlock
    samples S(fmap2_i, (p + flow(p)) / 2^i + d): equal where the flow is
    constant over the window and the window stays inside the image. Timed for
    its cost, as the route a model without offset= would take."""

    def index_pyramid(self, centroids_coords):
        n, _, h, w = centroids_coords.shape
        side = 2 * self.radius + 1
        levels = []
        for i, fmap2 in enumerate(self.fmap2_pyramid):
            h2, w2 = fmap2.shape[-2:]
            xy = (centroids_coords / 2**i).permute(0, 2, 3, 1)
            grid = torch.stack(
                (2 * xy[..., 0] / (w2 - 1) - 1, 2 * xy[..., 1] / (h2 - 1) - 1), dim=-1
            )
            warped = F.grid_sample(
                fmap2, grid, mode="bilinear", padding_mode="zeros", align_corners=True
            )
            corr = F.correlation(
                self.fmap1,
                warped,
                self.radius * 2**i,
                displacement_stride=2**i,
                scale=self.scale,
            )
            levels.append(corr.view(n, side, side, h, w).transpose(1, 2))
        return torch.stack(levels, dim=1).view(n, self.out_channels, h, w)


LOOKUP_CLASSES = {
    "corr_block": CorrBlock,
    "offset": CorrelationLookup,
    "warp": WarpLookup,
}


def make_lookup(impl: str):
    return LOOKUP_CLASSES[impl](num_levels=LEVELS, radius=RADIUS)


def state_bytes(block) -> int:
    """What a lookup adds to the feature maps (which exist anyway, the
    encoder's output) and keeps between refinement steps: CorrBlock's volume
    pyramid, or the pooled levels of fmap2."""
    tensors = (
        block.corr_pyramid if isinstance(block, CorrBlock) else block.fmap2_pyramid[1:]
    )
    return sum(t.numel() * t.element_size() for t in tensors)


def verify() -> None:
    """The offset lookup equals CorrBlock (random flow), and the warp lookup
    equals it where it should (constant flow, windows inside the image)."""
    g = torch.Generator().manual_seed(0)
    f1, f2 = torch.randn(2, 2, 32, 24, 25, generator=g).unbind(0)
    grid = pixel_grid(2, 24, 25, dtype=torch.float32, device="cpu")
    flows = {
        "random": 3 * torch.randn(2, 2, 24, 25, generator=g),
        "constant": torch.tensor([1.25, -0.5]).view(1, 2, 1, 1).expand(2, 2, 24, 25),
    }
    for levels in (2, LEVELS):
        for name, flow in flows.items():
            out = {}
            for impl in IMPLS:
                block = LOOKUP_CLASSES[impl](num_levels=levels, radius=RADIUS)
                block.build_pyramid(f1, f2)
                out[impl] = block.index_pyramid(grid + flow)
            torch.testing.assert_close(
                out["offset"], out["corr_block"], atol=1e-5, rtol=1e-5
            )
            if name == "constant" and levels == 2:
                m = 2 ** (levels - 1) * RADIUS  # the warp's reach at the coarsest level
                inner = (..., slice(m, -m), slice(m, -m))
                torch.testing.assert_close(
                    out["warp"][inner], out["corr_block"][inner], atol=1e-5, rtol=1e-5
                )


@dataclass
class Row:
    section: str  # "model" or "lookup", "build", "fwd_bwd"
    size: str
    threads: int
    impl: str
    median_ms: float
    times_ms: list[float]
    peak_mib: float | None
    peak_rss_mib: float | None
    extra: dict[str, float] = field(default_factory=dict)


def timed(section, size, threads, impl, step, budget, extra=None) -> Row:
    m = measure(step, torch.device("cpu"), budget, max_reps=20)
    row = Row(
        section,
        size,
        threads,
        impl,
        m.median_s * 1e3,
        [t * 1e3 for t in m.times_s],
        None if m.peak_bytes is None else m.peak_bytes / 2**20,
        None if m.peak_rss_bytes is None else m.peak_rss_bytes / 2**20,
        extra or {},
    )
    print(
        f"  {section:8s} {size:9s} {threads}t {impl:11s} {row.median_ms:10.3f} ms ({len(m.times_s)} calls)  "
        f"peak {row.peak_mib or 0:8.1f} MiB alloc / {row.peak_rss_mib or 0:8.1f} MiB RSS",
        flush=True,
    )
    return row


def model_rows(model, size, threads, iters, budget) -> list[Row]:
    h, w = (int(v) for v in size.split("x"))
    g = torch.Generator().manual_seed(1)
    image1, image2 = (2 * torch.rand(2, 1, 3, h, w, generator=g) - 1).unbind(0)
    rows = []
    for impl in ("corr_block", "offset"):
        model.corr_block = make_lookup(impl)

        def step():
            with torch.no_grad():
                model(image1, image2, num_flow_updates=iters)

        rows.append(timed("model", size, threads, impl, step, budget))
    return rows


def lookup_rows(size, threads, iters, budget) -> list[Row]:
    h, w = (int(v) // 8 for v in size.split("x"))
    g = torch.Generator().manual_seed(2)
    fmap1, fmap2 = torch.randn(2, 1, CHANNELS, h, w, generator=g).unbind(0)
    grid = pixel_grid(1, h, w, dtype=torch.float32, device="cpu")
    # One flow per refinement step, a few pixels at 1/8 resolution.
    coords = [grid + 2 * torch.randn(1, 2, h, w, generator=g) for _ in range(iters)]
    grad = torch.randn(1, LEVELS * (2 * RADIUS + 1) ** 2, h, w, generator=g)
    # The window's dot products of one lookup, all levels.
    flop = 2 * CHANNELS * h * w * (2 * RADIUS + 1) ** 2 * LEVELS
    rows = []
    for impl in IMPLS:
        block = make_lookup(impl)
        with torch.no_grad():
            block.build_pyramid(fmap1, fmap2)
        extra = {"state_mib": state_bytes(block) / 2**20, "gflop": flop / 1e9}

        def lookup(block=block):
            with torch.no_grad():
                block.index_pyramid(coords[0])

        def build(block=block):
            with torch.no_grad():
                block.build_pyramid(fmap1, fmap2)

        def fwd_bwd(impl=impl):
            f1, f2 = fmap1.detach().requires_grad_(), fmap2.detach().requires_grad_()
            b = make_lookup(impl)
            b.build_pyramid(f1, f2)
            outs = [b.index_pyramid(c) for c in coords]
            torch.autograd.grad(outs, (f1, f2), [grad] * len(outs))

        rows.append(timed("lookup", size, threads, impl, lookup, budget, extra))
        rows.append(timed("build", size, threads, impl, build, budget, dict(extra)))
        rows.append(timed("fwd_bwd", size, threads, impl, fwd_bwd, budget, dict(extra)))
    return rows


def find(rows, section, size, threads, impl) -> Row | None:
    for r in rows:
        if (r.section, r.size, r.threads, r.impl) == (section, size, threads, impl):
            return r
    return None


def _f(v, fmt) -> str:
    return "-" if v is None else format(v, fmt)


def _mem(r: Row | None) -> str:
    return (
        "-" if r is None else f"{_f(r.peak_mib, '.1f')} / {_f(r.peak_rss_mib, '.1f')}"
    )


def report(meta, rows) -> str:
    sizes, threads, iters = meta["sizes"], meta["threads"], meta["iters"]
    out = [
        "# RAFT lookup: CorrBlock vs F.correlation(offset=) (CPU)",
        "",
        f"`{meta['command']}`",
        "",
        f"- {meta['cpu']}, torch {meta['torch']}, torchvision {meta['torchvision']}, "
        f"CPU capability {meta['cpu_capability']}",
        f"- repository commit {meta['commit']}; torch_correlation library `{meta['library']}` "
        f"(sha256 {meta['library_sha256'][:12]}, modified {meta['library_mtime']})",
        f"- load average {meta['load_before'][0]:.2f} before, {meta['load_after'][0]:.2f} after; "
        f"other processes used {_f(None if meta['other_share'] is None else 100 * meta['other_share'], '.0f')}% "
        f"of the machine's CPU time during the run ({meta['elapsed_s']:.0f} s)"
        + (
            " -- NOISY: timings are not reliable"
            if (meta["other_share"] or 0) > 0.10
            else ""
        ),
        "- torch.mm 2048x2048 float32: "
        + ", ".join(
            f"{meta['mm_gflops'][str(t)]:.1f} GFLOP/s at {t} thread(s)" for t in threads
        ),
        f"- raft_small, seeded random weights, N=1, float32, {iters} refinement steps; lookups at its "
        f"feature maps (C={CHANNELS}, radius {RADIUS}, {LEVELS} levels, 1/8 of the image)",
        "- peak MiB: extra memory of one call, allocator / RSS (benchmarks/README.md, Method)",
        "",
        f"## Whole model: raft_small forward, {iters} steps",
        "",
        "| image | threads | CorrBlock ms | offset= ms | CorrBlock / offset= | CorrBlock peak MiB "
        "| offset= peak MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in sizes:
        for t in threads:
            a, b = (
                find(rows, "model", size, t, "corr_block"),
                find(rows, "model", size, t, "offset"),
            )
            if a is None or b is None:
                continue
            out.append(
                f"| {size} | {t} | {a.median_ms:.1f} | {b.median_ms:.1f} | {a.median_ms / b.median_ms:.2f}x "
                f"| {_mem(a)} | {_mem(b)} |"
            )
    out += [
        "",
        "## Lookup alone, per refinement step (all levels)",
        "",
        "*lookup*: one index_pyramid call, state prebuilt. *build*: the state (CorrBlock: matmul volume "
        "and its pooled pyramid; the others: fmap2 pooled 3 times). *amortised*: lookup + build / "
        f"{iters}. *fwd+bwd*: build + {iters} lookups with gradients of both feature maps, divided by "
        f"{iters}. *vs offset=*: this row's time over the offset= row's (> 1: offset= is faster). "
        "GFLOP/s: the window's dot products (2 C H W (2r+1)^2 levels) per lookup time.",
        "",
        "| image (features) | threads | implementation | lookup ms | GFLOP/s | % of mm | build ms "
        "| amortised ms | vs offset= | fwd+bwd ms | vs offset= | state MiB | lookup peak MiB "
        "| fwd+bwd peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size in sizes:
        h, w = (int(v) // 8 for v in size.split("x"))
        for t in threads:
            base = {
                s: find(rows, s, size, t, "offset")
                for s in ("lookup", "build", "fwd_bwd")
            }
            for impl in IMPLS:
                lk, bd, fb = (
                    find(rows, s, size, t, impl) for s in ("lookup", "build", "fwd_bwd")
                )
                if lk is None:
                    continue
                amort = lk.median_ms + bd.median_ms / iters
                base_amort = base["lookup"].median_ms + base["build"].median_ms / iters
                gflops = lk.extra["gflop"] / (lk.median_ms / 1e3)
                mm = meta["mm_gflops"][str(t)]
                vs = "" if impl == "offset" else f"{amort / base_amort:.2f}x"
                vs_fb = (
                    ""
                    if impl == "offset"
                    else f"{fb.median_ms / base['fwd_bwd'].median_ms:.2f}x"
                )
                out.append(
                    f"| {size} ({h}x{w}) | {t} | {LABELS[impl]} | {lk.median_ms:.3f} | {gflops:.1f} "
                    f"| {100 * gflops / mm:.1f} | {bd.median_ms:.3f} | {amort:.3f} | {vs} "
                    f"| {fb.median_ms / iters:.3f} | {vs_fb} | {lk.extra['state_mib']:.2f} | {_mem(lk)} "
                    f"| {_mem(fb)} |"
                )
    out += [
        "",
        "fwd+bwd peak MiB is that of the whole call (build + all steps + backward), not per step.",
        "",
    ]
    return "\n".join(out)


def library_info() -> tuple[str, str, str]:
    lib = next(Path(torch_correlation.__file__).parent.glob("_C*.so"), None)
    if lib is None:
        return "not found", "unknown", "unknown"
    digest = hashlib.sha256(lib.read_bytes()).hexdigest()
    mtime = time.strftime("%Y-%m-%d %H:%M", time.localtime(lib.stat().st_mtime))
    return str(lib), digest, mtime


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} CPUs)"
    except OSError:
        pass
    return platform.processor() or "CPU"


def git_commit() -> str:
    import subprocess

    try:
        return subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except Exception:
        return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="128x256,256x512,368x496",
        help="image sizes HxW, multiples of 8",
    )
    parser.add_argument(
        "--threads", default="1,2", help="thread counts (torch.set_num_threads)"
    )
    parser.add_argument(
        "--iters", type=int, default=12, help="refinement steps (raft's default 12)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=0.3,
        help="seconds of timed calls per configuration",
    )
    parser.add_argument(
        "--skip-model", action="store_true", help="time the lookups only"
    )
    parser.add_argument(
        "--out", default=str(REPO_ROOT / "docs" / "benchmarks" / "raft")
    )
    parser.add_argument(
        "--report-only",
        metavar="JSON",
        help="rewrite the markdown of an earlier run's bench_raft_cpu.json into --out",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        data = json.loads(Path(args.report_only).read_text())
        return write(data["meta"], [Row(**r) for r in data["rows"]], Path(args.out))
    sizes = args.sizes.split(",")
    for s in sizes:
        h, w = (int(v) for v in s.split("x"))
        if h % 8 or w % 8 or min(h, w) < 128:
            parser.error(f"image size {s}: RAFT needs multiples of 8, at least 128")
    threads = [int(t) for t in args.threads.split(",")]

    started = time.time()
    load_before = os.getloadavg()
    others = OtherCpuUse()
    others.start()
    print(
        f"RAFT lookup benchmark, torch {torch.__version__}, torch_correlation from "
        f"{Path(torch_correlation.__file__).parent}, load average {load_before[0]:.2f}"
    )
    if not RSS.ok:
        print("note: no RSS figures (not Linux/glibc)")
    torch.set_num_threads(max(threads))
    verify()
    print(
        "verified: offset= lookup equals CorrBlock; the warp lookup equals it for a constant flow inside"
    )

    mm = {}
    for t in threads:
        torch.set_num_threads(t)
        mm[str(t)] = mm_gflops(torch.float32, torch.device("cpu"), 2048, args.budget)
        print(f"torch.mm 2048x2048 float32, {t} thread(s): {mm[str(t)]:.1f} GFLOP/s")

    torch.manual_seed(0)
    model = raft_small(weights=None).eval()
    rows: list[Row] = []
    for t in threads:
        torch.set_num_threads(t)
        for size in sizes:
            if not args.skip_model:
                rows += model_rows(model, size, t, args.iters, args.budget)
            rows += lookup_rows(size, t, args.iters, args.budget)

    lib, digest, mtime = library_info()
    import torchvision

    meta = {
        "command": " ".join(
            [
                "python benchmarks/bench_raft.py",
                *(sys.argv[1:] if argv is None else argv),
            ]
        ),
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "commit": git_commit(),
        "library": os.path.relpath(lib, REPO_ROOT) if lib != "not found" else lib,
        "library_sha256": digest,
        "library_mtime": mtime,
        "sizes": sizes,
        "threads": threads,
        "iters": args.iters,
        "budget_s": args.budget,
        "radius": RADIUS,
        "levels": LEVELS,
        "channels": CHANNELS,
        "mm_gflops": mm,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "other_share": others.share(),
        "elapsed_s": time.time() - started,
    }
    return write(meta, rows, Path(args.out))


def write(meta, rows, out: Path) -> int:
    text = report(meta, rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_raft_cpu.md").write_text(text)
    (out / "bench_raft_cpu.json").write_text(
        json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=1) + "\n"
    )
    print()
    print(text)
    print(f"wrote {out / 'bench_raft_cpu.md'} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
