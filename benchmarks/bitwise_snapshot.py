"""Bitwise snapshot of F.correlation's CPU results, to show that a change to the
kernels leaves every output and gradient bit for bit as it was.

    python benchmarks/bitwise_snapshot.py save before.json
    (change the kernels, rebuild)
    python benchmarks/bitwise_snapshot.py save after.json
    python benchmarks/bitwise_snapshot.py compare before.json after.json

`save` runs seeded random configurations (the test-suite's `random_config`,
which draws every argument: kernel_size, stride, padding, dilation,
displacement_stride, min_displacement, groups, scale, batched or unbatched;
and `random_large_config`, with many channels, wide rows and many
displacements), each in float32, float64, float16 and bfloat16, on
contiguous, channels_last, strided (sliced) and transposed inputs, with 1 and
2 threads, and records a SHA-256 of the output and of both gradients
(`torch.autograd.grad` with a seeded random grad_output in the same layout).
Each run covers the CPU capability the process dispatches to; run it once per
capability:

    for cap in default avx2 avx512; do
        ATEN_CPU_CAPABILITY=$cap python benchmarks/bitwise_snapshot.py save before_$cap.json
    done

`compare` exits with status 1 and lists the differing entries when any
digest differs (or an entry is missing). About a minute per capability on
2 cores with the default counts.
"""

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
try:
    import torch_correlation  # installs F.correlation
except ImportError:
    # A checkout built in place (tools/build_preview.py --inplace).
    sys.path.insert(0, str(REPO_ROOT))
    import torch_correlation
sys.path.insert(0, str(REPO_ROOT / "test"))

from test_correlation import make_input, random_config, random_large_config, relayout

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
LAYOUTS = ("contiguous", "channels_last", "strided", "transposed")
THREADS = (1, 2)


def digest(t: torch.Tensor) -> str:
    # The values in a fixed (contiguous) order, so the digest depends on the
    # results only, not on the strides the kernels chose.
    data = t.detach().reshape(-1).contiguous().view(torch.uint8)
    return hashlib.sha256(data.numpy().tobytes()).hexdigest()[:24]


def configurations(count: int, large: int):
    rng = random.Random(20261201)
    for i in range(count):
        yield f"small{i}", random_config(rng)
    rng = random.Random(1201)
    for i in range(large):
        yield f"large{i}", random_large_config(rng)


def snapshot(count: int, large: int) -> dict:
    entries = {}
    for name, (shape, max_disp, kwargs) in configurations(count, large):
        for dtype_name, dtype in DTYPES.items():
            for layout in LAYOUTS:
                x1 = relayout(make_input(shape, dtype, "cpu", 1), layout).requires_grad_()
                x2 = relayout(make_input(shape, dtype, "cpu", 2), layout).requires_grad_()
                for threads in THREADS:
                    torch.set_num_threads(threads)
                    out = torch.nn.functional.correlation(x1, x2, max_disp, **kwargs)
                    grad_out = relayout(make_input(tuple(out.shape), dtype, "cpu", 3), layout)
                    g1, g2 = torch.autograd.grad(out, (x1, x2), grad_out)
                    key = f"{name}/{dtype_name}/{layout}/t{threads}"
                    entries[key] = [digest(out), digest(g1), digest(g2)]
    return {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "package": str(Path(torch_correlation.__file__).parent),
        "configurations": count + large,
        "entries": entries,
    }


def compare(a: dict, b: dict) -> int:
    keys = sorted(set(a["entries"]) | set(b["entries"]))
    bad = []
    for key in keys:
        ea, eb = a["entries"].get(key), b["entries"].get(key)
        if ea != eb:
            which = "missing" if ea is None or eb is None else ",".join(
                what for what, x, y in zip(("output", "grad1", "grad2"), ea, eb) if x != y)
            bad.append(f"{key}: {which}")
    print(f"capabilities {a['capability']} / {b['capability']}: {len(keys)} entries "
          f"({a['configurations']} configurations x dtypes x layouts x threads), "
          f"{len(bad)} differ")
    for line in bad[:50]:
        print("  " + line)
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    save = sub.add_parser("save", help="run the configurations and write their digests")
    save.add_argument("out", type=Path)
    save.add_argument("--count", type=int, default=200, help="random_config draws")
    save.add_argument("--large", type=int, default=24, help="random_large_config draws")
    cmp = sub.add_parser("compare", help="compare two snapshots")
    cmp.add_argument("a", type=Path)
    cmp.add_argument("b", type=Path)
    args = parser.parse_args(argv)
    if args.command == "save":
        snap = snapshot(args.count, args.large)
        args.out.write_text(json.dumps(snap, indent=0, sort_keys=True))
        print(f"{snap['capability']} ({snap['package']}): {len(snap['entries'])} entries -> {args.out}")
        return 0
    return compare(json.loads(args.a.read_text()), json.loads(args.b.read_text()))


if __name__ == "__main__":
    sys.exit(main())
