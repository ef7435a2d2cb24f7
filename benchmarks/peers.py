"""Peer implementations of correlation that the benchmark times against
``torch.nn.functional.correlation``.

* ``shift_loop_correlation``: pure PyTorch; one zero-padded copy of input2,
  then for every displacement a shifted slice multiplied by input1 and summed
  over the channels of each group. Autograd gives the backward.
* ``unfold_einsum_correlation``: pure PyTorch; ``F.unfold`` gathers input2's
  whole displacement window for every pixel (D times the size of input2),
  then one ``einsum`` contracts the channels. Fast to write, memory-hungry.
* ``sampler_correlation``: spatial-correlation-sampler's
  ``spatial_correlation_sample`` (a third-party C++/OpenMP/CUDA extension),
  with our arguments mapped onto its ``patch_size``/``dilation_patch``.

Both composites follow the full contract of ``F.correlation`` (kernel_size,
stride, padding, dilation, displacement_stride, min_displacement, groups,
scale) for batched (N, C, H, W) inputs; the benchmark checks them against
``F.correlation`` at start-up, so it never compares wrong results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IntPair = int | Sequence[int]

try:  # Optional peer: a compiled third-party extension.
    from spatial_correlation_sampler import spatial_correlation_sample as _sampler_op

    SAMPLER_IMPORT_ERROR: str | None = None
except Exception as exc:  # noqa: BLE001 -- any failure (missing, ABI mismatch) means "skip"
    _sampler_op = None
    SAMPLER_IMPORT_ERROR = f"{type(exc).__name__}: {exc}"


class PeerUnsupported(Exception):
    """Raised when a peer cannot express a configuration (the benchmark skips it)."""


def _pair(value: IntPair, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    value = tuple(int(v) for v in value)
    if len(value) == 1:
        return (value[0], value[0])
    if len(value) != 2:
        raise ValueError(f"peers: expected {name} to be an int or a pair, but got {value}")
    return value  # type: ignore[return-value]


@dataclass(frozen=True)
class Geometry:
    """The derived geometry of one correlation call (mirrors CorrelationParams)."""

    batch: int
    channels: int
    height: int
    width: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    disp_min: tuple[int, int]
    disp_step: tuple[int, int]
    disp_count: tuple[int, int]
    groups: int
    scale: float
    out_h: int
    out_w: int

    @property
    def displacements(self) -> int:
        return self.disp_count[0] * self.disp_count[1]

    def disp_values(self, axis: int) -> list[int]:
        return [self.disp_min[axis] + i * self.disp_step[axis] for i in range(self.disp_count[axis])]

    def flop(self) -> int:
        """Multiply-adds counted as 2 FLOP: 2 * N * C * H_out * W_out * D * k_h * k_w."""
        return (2 * self.batch * self.channels * self.out_h * self.out_w
                * self.displacements * self.kernel[0] * self.kernel[1])


def geometry(
    input1: torch.Tensor,
    max_displacement: IntPair,
    *,
    min_displacement: IntPair | None = None,
    kernel_size: IntPair = 1,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    displacement_stride: IntPair = 1,
    groups: int = 1,
    scale: float = 1.0,
) -> Geometry:
    if input1.dim() != 4:
        raise ValueError(f"peers: expected a 4D (N, C, H, W) input, but got sizes {tuple(input1.shape)}")
    n, c, h, w = input1.shape
    max_d = _pair(max_displacement, "max_displacement")
    steps = _pair(displacement_stride, "displacement_stride")
    if min_displacement is None:
        halves = [max_d[a] // steps[a] for a in range(2)]
        disp_min = tuple(-halves[a] * steps[a] for a in range(2))
        disp_count = tuple(2 * halves[a] + 1 for a in range(2))
    else:
        min_d = _pair(min_displacement, "min_displacement")
        disp_min = min_d
        disp_count = tuple((max_d[a] - min_d[a]) // steps[a] + 1 for a in range(2))
    k = _pair(kernel_size, "kernel_size")
    s = _pair(stride, "stride")
    p = _pair(padding, "padding")
    dil = _pair(dilation, "dilation")
    out = [(size + 2 * p[a] - dil[a] * (k[a] - 1) - 1) // s[a] + 1 for a, size in enumerate((h, w))]
    if c % groups != 0:
        raise ValueError(f"peers: channels ({c}) not divisible by groups ({groups})")
    return Geometry(n, c, h, w, k, s, p, dil, disp_min, steps, disp_count,  # type: ignore[arg-type]
                    groups, float(scale), out[0], out[1])


def _padded_for_displacements(x: torch.Tensor, g: Geometry, with_displacements: bool):
    """Zero-pads ``x`` so that every index the correlation reads is in range.

    Returns the padded tensor and the (top, left) offsets of image row/column 0
    inside it.
    """
    offsets = []
    pads = []
    for axis, size in enumerate((g.height, g.width)):
        d_lo = g.disp_min[axis] if with_displacements else 0
        d_hi = g.disp_values(axis)[-1] if with_displacements else 0
        out = (g.out_h, g.out_w)[axis]
        lo = -g.padding[axis] + d_lo
        hi = (out - 1) * g.stride[axis] - g.padding[axis] + (g.kernel[axis] - 1) * g.dilation[axis] + d_hi
        before = max(0, -lo)
        after = max(0, hi - (size - 1))
        offsets.append(before)
        pads.append((before, after))
    padded = F.pad(x, (pads[1][0], pads[1][1], pads[0][0], pads[0][1]))
    return padded, offsets[0], offsets[1]


def _window(x: torch.Tensor, top: int, left: int, g: Geometry) -> torch.Tensor:
    """Rows top + oy * stride_h (oy < H_out), columns likewise."""
    sh, sw = g.stride
    return x[..., top: top + sh * (g.out_h - 1) + 1: sh, left: left + sw * (g.out_w - 1) + 1: sw]


def shift_loop_correlation(
    input1: torch.Tensor, input2: torch.Tensor, max_displacement: IntPair, **kwargs
) -> torch.Tensor:
    """Loop over displacements: shifted slice of zero-padded input2, times input1,
    summed over each group's channels (and the kernel window)."""
    g = geometry(input1, max_displacement, **kwargs)
    n, c = g.batch, g.channels
    p1, t1, l1 = _padded_for_displacements(input1, g, with_displacements=False)
    p2, t2, l2 = _padded_for_displacements(input2, g, with_displacements=True)
    kh, kw = g.kernel
    dh, dw = g.dilation
    ph, pw = g.padding
    in1_windows = [
        _window(p1, t1 - ph + i * dh, l1 - pw + j * dw, g) for i in range(kh) for j in range(kw)
    ]
    planes = []
    for dy in g.disp_values(0):
        for dx in g.disp_values(1):
            acc = None
            for index, (i, j) in enumerate((i, j) for i in range(kh) for j in range(kw)):
                shifted = _window(p2, t2 - ph + i * dh + dy, l2 - pw + j * dw + dx, g)
                term = (in1_windows[index] * shifted).view(
                    n, g.groups, c // g.groups, g.out_h, g.out_w).sum(2)
                acc = term if acc is None else acc + term
            planes.append(acc)
    # (N, groups, D, H_out, W_out) -> channel g * D + d.
    out = torch.stack(planes, dim=2).view(n, g.groups * g.displacements, g.out_h, g.out_w)
    return out * g.scale if g.scale != 1.0 else out


def unfold_einsum_extra_bytes(input1: torch.Tensor, max_displacement: IntPair, **kwargs) -> int:
    """Size of the unfolded input2 (N, C, D, H_out * W_out) that unfold_einsum
    materializes per kernel offset; einsum's operand copy roughly doubles it."""
    g = geometry(input1, max_displacement, **kwargs)
    return g.batch * g.channels * g.displacements * g.out_h * g.out_w * input1.element_size()


def unfold_einsum_correlation(
    input1: torch.Tensor, input2: torch.Tensor, max_displacement: IntPair, **kwargs
) -> torch.Tensor:
    """F.unfold gathers input2's displacement window for every output pixel,
    then einsum contracts each group's channels (summed over the kernel window)."""
    g = geometry(input1, max_displacement, **kwargs)
    n, c, groups = g.batch, g.channels, g.groups
    cg = c // groups
    p1, t1, l1 = _padded_for_displacements(input1, g, with_displacements=False)
    p2, t2, l2 = _padded_for_displacements(input2, g, with_displacements=True)
    kh, kw = g.kernel
    dh, dw = g.dilation
    ph, pw = g.padding
    (sh, sw), (ssh, ssw), (ky, kx) = g.stride, g.disp_step, g.disp_count
    pixels = g.out_h * g.out_w
    out = None
    for i in range(kh):
        for j in range(kw):
            a = _window(p1, t1 - ph + i * dh, l1 - pw + j * dw, g).reshape(n, groups, cg, pixels)
            top = t2 - ph + i * dh + g.disp_min[0]
            left = l2 - pw + j * dw + g.disp_min[1]
            region = p2[..., top: top + sh * (g.out_h - 1) + ssh * (ky - 1) + 1,
                        left: left + sw * (g.out_w - 1) + ssw * (kx - 1) + 1]
            cols = F.unfold(region, kernel_size=(ky, kx), dilation=(ssh, ssw), stride=(sh, sw))
            cols = cols.view(n, groups, cg, ky * kx, pixels)
            term = torch.einsum("ngcp,ngcdp->ngdp", a, cols)
            out = term if out is None else out + term
    out = out.reshape(n, groups * g.displacements, g.out_h, g.out_w)
    return out * g.scale if g.scale != 1.0 else out


def sampler_unsupported_reason(
    input1: torch.Tensor, max_displacement: IntPair, **kwargs
) -> str | None:
    """Why spatial-correlation-sampler cannot run this configuration, or None."""
    if _sampler_op is None:
        return f"spatial_correlation_sampler is not importable ({SAMPLER_IMPORT_ERROR})"
    if input1.dtype not in (torch.float32, torch.float64):
        # Its CPU kernels dispatch on float and double only and raise inside
        # an OpenMP region otherwise, which aborts the whole process.
        return (f"spatial-correlation-sampler is timed in float32/float64 only (its CPU kernels "
                f"abort the process on {input1.dtype})")
    g = geometry(input1, max_displacement, **kwargs)
    if kwargs.get("min_displacement") is not None:
        return "spatial-correlation-sampler has no one-sided (min_displacement) window"
    if g.groups != 1:
        return "spatial-correlation-sampler has no groups"
    if g.kernel != (1, 1) or g.stride != (1, 1) or g.padding != (0, 0) or g.dilation != (1, 1):
        return "only kernel_size=1, stride=1, padding=0, dilation=1 are mapped onto the sampler"
    return None


def sampler_correlation(
    input1: torch.Tensor, input2: torch.Tensor, max_displacement: IntPair, **kwargs
) -> torch.Tensor:
    """spatial-correlation-sampler with our arguments mapped onto its own:
    patch_size P = displacements per axis, dilation_patch s = displacement_stride,
    i.e. max_displacement = (P // 2) * s; its (N, P, P, H, W) output is viewed as
    (N, P * P, H, W). It cannot express groups, one-sided (min_displacement)
    windows or our kernel window, and it does not scale, so scale != 1 costs
    one extra multiply here (as it would in a model using it)."""
    reason = sampler_unsupported_reason(input1, max_displacement, **kwargs)
    if reason is not None:
        raise PeerUnsupported(reason)
    g = geometry(input1, max_displacement, **kwargs)
    out = _sampler_op(
        input1, input2, kernel_size=1, patch_size=g.disp_count, stride=1, padding=0,
        dilation=1, dilation_patch=g.disp_step)
    out = out.view(g.batch, g.displacements, g.out_h, g.out_w)
    return out * g.scale if g.scale != 1.0 else out


def all_pairs_unsupported_reason(
    input1: torch.Tensor, max_displacement: IntPair, **kwargs
) -> str | None:
    """Why the all-pairs formulation is not written for this configuration, or None."""
    g = geometry(input1, max_displacement, **kwargs)
    if g.kernel != (1, 1) or g.stride != (1, 1) or g.padding != (0, 0):
        return "all-pairs matmul is written for kernel_size=1, stride=1, padding=0 (RAFT's form)"
    return None


def all_pairs_extra_bytes(input1: torch.Tensor, max_displacement: IntPair, **kwargs) -> int:
    """Size of the all-pairs volume (N, groups, H*W, H*W) it materializes."""
    g = geometry(input1, max_displacement, **kwargs)
    pixels = g.height * g.width
    return g.batch * g.groups * pixels * pixels * input1.element_size()


def all_pairs_correlation(
    input1: torch.Tensor, input2: torch.Tensor, max_displacement: IntPair, **kwargs
) -> torch.Tensor:
    """RAFT's route: one batched matmul gives every (pixel, pixel) dot product
    of each group, (N, groups, H*W, H*W); then a gather picks the D
    displacements of each pixel (zero where the displaced pixel is outside the
    image). Compute-efficient (a GEMM) but O((H W)^2) in memory and FLOP."""
    reason = all_pairs_unsupported_reason(input1, max_displacement, **kwargs)
    if reason is not None:
        raise PeerUnsupported(reason)
    g = geometry(input1, max_displacement, **kwargs)
    n, groups, h, w = g.batch, g.groups, g.height, g.width
    cg, pixels, d = g.channels // groups, h * w, g.displacements
    a = input1.reshape(n, groups, cg, pixels)
    b = input2.reshape(n, groups, cg, pixels)
    volume = torch.matmul(a.transpose(2, 3), b)  # (N, G, P, P): volume[p, q] = <a_p, b_q>
    # Target pixel of every (pixel, displacement), and whether it is inside.
    dev = input1.device
    ys = torch.arange(h, device=dev).view(h, 1, 1, 1)
    xs = torch.arange(w, device=dev).view(1, w, 1, 1)
    dys = torch.tensor(g.disp_values(0), device=dev).view(1, 1, -1, 1)
    dxs = torch.tensor(g.disp_values(1), device=dev).view(1, 1, 1, -1)
    ty, tx = ys + dys, xs + dxs  # (H, W, Ky, Kx) after broadcasting
    inside = ((ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)).reshape(pixels, d)
    target = (ty.clamp(0, h - 1) * w + tx.clamp(0, w - 1)).reshape(pixels, d)
    picked = torch.gather(volume, 3, target.expand(n, groups, pixels, d))
    picked = picked * inside.to(picked.dtype)
    # (N, G, P, D) -> channel g * D + d at pixel p.
    out = picked.transpose(2, 3).reshape(n, groups * d, h, w)
    return out * g.scale if g.scale != 1.0 else out
