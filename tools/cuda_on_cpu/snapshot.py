"""Saves, or compares with a saved file, the outputs and gradients of the
CUDA kernels run on the CPU over random configurations (every dtype and
layout, both thread orders; with and without an offset, every kind of
offset): the check that a refactoring of the kernels changes no bit.

    python tools/cuda_on_cpu/snapshot.py save before.pt
    python tools/cuda_on_cpu/snapshot.py compare before.pt
"""

import random
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tools"), str(ROOT / "test")]

import cuda_on_cpu
from test_correlation_cuda import (
    ALL_DTYPES,
    LAYOUTS,
    backward_args,
    harness_forward_backward,
    make_layout,
    make_offset,
    OFFSET_KINDS,
    output_shape,
    random_config,
    random_offset_config,
)

COUNT = 160
OFFSET_COUNT = 80
NAMES = ("output", "grad_input1", "grad_input2", "grad_offset")


def results():
    rng = random.Random(2026)
    for index in range(COUNT):
        shape, max_disp, kwargs = random_config(rng)
        dtype = ALL_DTYPES[index % len(ALL_DTYPES)]
        layout = LAYOUTS[(index // len(ALL_DTYPES)) % len(LAYOUTS)]
        g = torch.Generator().manual_seed(index)
        x1, x2 = (
            make_layout(
                torch.randn(shape, generator=g, dtype=torch.float64).to(dtype), layout
            )
            for _ in range(2)
        )
        out = cuda_on_cpu.correlation(x1, x2, max_disp, **kwargs)
        go = torch.randn(out.shape, generator=g, dtype=torch.float64).to(dtype)
        with cuda_on_cpu.schedule("shuffled", index):
            got = harness_forward_backward(x1, x2, go, max_disp, kwargs)
        yield f"{index}: {shape} {max_disp} {kwargs} {dtype} {layout}", got
    rng = random.Random(2027)
    for index in range(OFFSET_COUNT):
        shape, size2, max_disp, kwargs = random_offset_config(rng)
        dtype = ALL_DTYPES[index % len(ALL_DTYPES)]
        layout = LAYOUTS[(index // len(ALL_DTYPES)) % len(LAYOUTS)]
        kind = OFFSET_KINDS[index % len(OFFSET_KINDS)]
        g = torch.Generator().manual_seed(index)
        x1 = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
        x2 = torch.randn((*shape[:-2], *size2), generator=g, dtype=torch.float64)
        out_shape = output_shape(shape, max_disp, kwargs)
        offset = make_offset(out_shape, dtype, kind, size2, g)
        go = torch.randn(out_shape, generator=g, dtype=torch.float64).to(dtype)
        x1, x2, offset = (make_layout(t.to(dtype), layout) for t in (x1, x2, offset))
        with cuda_on_cpu.schedule("shuffled", index):
            out = cuda_on_cpu.correlation(x1, x2, max_disp, offset=offset, **kwargs)
            grads = cuda_on_cpu.correlation_backward(
                go, x1, x2, offset, *backward_args(max_disp, kwargs), [True] * 3
            )
        name = f"offset {index}: {shape} {size2} {max_disp} {kwargs} {dtype} {layout} {kind}"
        yield name, (out, *grads)


def main():
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "save":
        torch.save(dict(results()), path)
        print(f"saved {COUNT + OFFSET_COUNT} configurations to {path}")
        return 0
    saved = torch.load(path)
    differ = 0
    for name, got in results():
        if name not in saved:
            differ += len(got)
            print(f"missing from {path}: {name}")
            continue
        for what, a, b in zip(NAMES, got, saved[name]):
            if (
                a.shape != b.shape
                or a.stride() != b.stride()
                or not torch.equal(
                    a.contiguous().view(-1).view(torch.uint8),
                    b.contiguous().view(-1).view(torch.uint8),
                )
            ):
                differ += 1
                print(f"differs: {what} of {name}")
    print(
        f"{COUNT + OFFSET_COUNT} configurations compared bitwise, {differ} tensors differ"
    )
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
