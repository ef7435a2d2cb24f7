"""Small forward + backward calls of F.correlation on CUDA, for
compute-sanitizer (tools/gpu_check.sh runs it under memcheck and racecheck).

Covers the tiled kernels (kernel_size 1, stride 1: PWC-Net-, FlowNetC- and
GwcNet-like shapes, tile and halo edges, channels_last) and the generic ones
(kernel_size > 1, stride > 1, large vertical displacement step), ascending and
descending displacement orders, in float32 and float16; and the offset kernels
(SpatialCorrelationOffset.cuh: forward, the three gradients and the bucket
sort, with input2 of other sizes, offsets across input2's border, non-finite
and huge offsets, and enough locations for the sort's global stages). Sizes
are tiny: the sanitizers slow kernels down a lot.

Run with PYTORCH_NO_CUDA_MEMORY_CACHING=1 so that every tensor is its own
allocation and an out-of-bounds access is not hidden inside a cached block.
"""

import sys

import torch
import torch.nn.functional as F

import torch_correlation  # noqa: F401  (registers aten::correlation)

CASES = [
    # (shape, max_displacement, kwargs)
    ((2, 8, 9, 40), 4, {}),  # PWC-Net-like
    ((1, 6, 7, 35), 6, dict(displacement_stride=2, padding=6)),  # FlowNetC-like
    ((1, 8, 5, 37), (0, 0), dict(min_displacement=(0, -19), groups=4)),  # GwcNet-like
    (
        (1, 5, 6, 33),
        (9, 3),
        dict(min_displacement=(-9, -3), displacement_stride=(8, 3)),
    ),
    ((4, 6, 34), 2, dict(padding=(1, 3), scale=0.5)),  # unbatched
    ((1, 4, 8, 11), 1, dict(kernel_size=3, stride=2, dilation=2, padding=2)),  # generic
    ((1, 4, 8, 11), 9, dict(displacement_stride=9)),  # generic (large vertical step)
    # Descending orders (negative displacement_stride), tiled and generic.
    (
        (1, 8, 5, 37),
        (0, 0),
        dict(min_displacement=(0, -19), displacement_stride=(1, -1), groups=4),
    ),
    (
        (1, 5, 9, 33),
        (3, 6),
        dict(min_displacement=(-4, -5), displacement_stride=(-2, -3)),
    ),
    ((1, 4, 8, 11), 1, dict(kernel_size=3, stride=2, displacement_stride=(-1, -1))),
]


# (shape, input2's (height, width), max_displacement, kwargs) with an offset.
OFFSET_CASES = [
    ((2, 8, 9, 40), (5, 20), 4, {}),  # RAFT-like: a coarser input2
    ((1, 4, 8, 11), (8, 11), 1, dict(kernel_size=3, stride=2, dilation=2, padding=2)),
    (
        (4, 6, 9),
        (7, 5),
        (1, 2),
        dict(displacement_stride=(1, -2), groups=2),
    ),  # unbatched
    ((2, 2, 24, 30), (24, 30), 1, {}),  # 1440 locations: global sort stages
]


def offset_case(dtype, channels_last, shape, size2, max_disp, kwargs) -> bool:
    """Forward and all three gradients with an offset; True when every value
    that should be finite is."""
    x1 = torch.randn(shape, device="cuda", dtype=dtype)
    x2 = torch.randn((*shape[:-2], *size2), device="cuda", dtype=dtype)
    out_shape = F.correlation(x1, x1, max_disp, **kwargs).shape
    offset = (
        torch.rand((*out_shape[:-3], 2, *out_shape[-2:]), device="cuda") * 2 - 1
    ) * torch.tensor([size2[1] + 3.0, size2[0] + 3.0], device="cuda").view(2, 1, 1)
    offset = offset.to(dtype)
    flat = offset.view(-1, 2, out_shape[-2] * out_shape[-1])
    flat[0, 0, 0] = float("nan")
    flat[-1, :, -1] = 3e4
    if channels_last and x1.dim() == 4:
        x1 = x1.contiguous(memory_format=torch.channels_last)
        x2 = x2.contiguous(memory_format=torch.channels_last)
        offset = offset.contiguous(memory_format=torch.channels_last)
    leaves = [t.requires_grad_() for t in (x1, x2, offset)]
    out = F.correlation(leaves[0], leaves[1], max_disp, offset=leaves[2], **kwargs)
    g1, g2, goff = torch.autograd.grad(out, leaves, torch.randn_like(out))
    torch.cuda.synchronize()
    finite = offset.isfinite().all(-3, keepdim=True)
    ok = (
        out.masked_select(finite).isfinite().all().item()
        and out.masked_select(~finite).isnan().all().item()
        and g1.isfinite().all().item()
        and g2.isfinite().all().item()
        and goff.masked_select(finite).isfinite().all().item()
    )
    print(
        f"offset {dtype} channels_last={channels_last} {shape} input2 {size2} "
        f"{max_disp} {kwargs}: out {tuple(out.shape)} {'ok' if ok else 'WRONG'}",
        flush=True,
    )
    return ok


def main() -> int:
    torch.manual_seed(0)
    failures = 0
    for dtype in (torch.float32, torch.float16):
        for channels_last in (False, True):
            for shape, max_disp, kwargs in CASES:
                x1 = torch.randn(shape, device="cuda", dtype=dtype)
                x2 = torch.randn(shape, device="cuda", dtype=dtype)
                if channels_last and x1.dim() == 4:
                    x1 = x1.contiguous(memory_format=torch.channels_last)
                    x2 = x2.contiguous(memory_format=torch.channels_last)
                x1.requires_grad_()
                x2.requires_grad_()
                out = F.correlation(x1, x2, max_disp, **kwargs)
                g1, g2 = torch.autograd.grad(out, (x1, x2), torch.randn_like(out))
                # One gradient only (the other is not computed).
                (g1_only,) = torch.autograd.grad(
                    F.correlation(x1, x2.detach(), max_disp, **kwargs),
                    (x1,),
                    torch.randn_like(out),
                )
                torch.cuda.synchronize()
                finite = all(t.isfinite().all().item() for t in (out, g1, g2, g1_only))
                print(
                    f"{dtype} channels_last={channels_last} {shape} {max_disp} {kwargs}: "
                    f"out {tuple(out.shape)} {'ok' if finite else 'NON-FINITE'}",
                    flush=True,
                )
                failures += not finite
            for case in OFFSET_CASES:
                failures += not offset_case(dtype, channels_last, *case)
    print("sanitizer_case: done,", failures, "failures", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
