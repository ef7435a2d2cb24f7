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
* ``all_pairs_correlation``: RAFT's route, one batched matmul of every pixel
  pair, then a gather of each pixel's displacements.
* ``gwc_loop_correlation``: the group-wise stereo volume as GwcNet builds it
  in Python: a zero volume (B, G, D, H, W) and, for every disparity d, the
  product of the overlapping column slices of the two feature maps, averaged
  over each group's channels and assigned into the volume. With one group it
  is DispNetC's 1-D correlation as its PyTorch ports write it.
* ``vcn_loop_correlation``: VCN's per-channel 4-D volume: a zero volume
  (B, C, Dy, Dx, H, W) and, for every (dy, dx), the elementwise product of
  input1 and the shifted input2 over their overlap (groups == channels).

The shift loop and unfold+einsum follow the full contract of
``F.correlation`` (kernel_size, stride, padding, dilation,
displacement_stride of either sign, min_displacement, groups, scale) for
batched (N, C, H, W) inputs; the all-pairs matmul its kernel_size=1 form, the
sampler what its own arguments express; the other peers and configurations
raise ``PeerUnsupported`` with the reason. The benchmark checks every peer
against ``F.correlation`` at start-up, so it never compares wrong results.
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
    """The derived geometry of one correlation call (mirrors CorrelationParams).

    ``disp_first``/``disp_step``/``disp_count`` give each axis's displacements
    in output-channel order: ``disp_first + i * disp_step``; a negative
    ``disp_step`` (a negative ``displacement_stride``) walks them from the
    largest down."""

    batch: int
    channels: int
    height: int
    width: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    disp_first: tuple[int, int]
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
        """The displacements along `axis` in output order."""
        return [self.disp_first[axis] + i * self.disp_step[axis] for i in range(self.disp_count[axis])]

    def disp_lo(self, axis: int) -> int:
        return min(self.disp_values(axis))

    def disp_hi(self, axis: int) -> int:
        return max(self.disp_values(axis))

    def descending_axes(self, first_dim: int) -> list[int]:
        """The dims (first_dim for the vertical axis, first_dim + 1 for the
        horizontal one) whose displacements run in descending order."""
        return [first_dim + axis for axis in range(2) if self.disp_step[axis] < 0]

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
    if 0 in steps:
        raise ValueError(f"peers: displacement_stride must be nonzero, but got {steps}")
    first, count = [], []
    for a in range(2):
        s = steps[a]
        if min_displacement is None:
            # The symmetric range {k |s| : |k s| <= max}, from the smallest
            # (s > 0) or the largest (s < 0) end.
            half = max_d[a] // abs(s)
            first.append(-half * s)
            count.append(2 * half + 1)
        else:
            # {min, min + s, ...} <= max for s > 0; {max, max + s, ...} >= min for s < 0.
            lo = _pair(min_displacement, "min_displacement")[a]
            first.append(lo if s > 0 else max_d[a])
            count.append((max_d[a] - lo) // abs(s) + 1)
    k = _pair(kernel_size, "kernel_size")
    st = _pair(stride, "stride")
    p = _pair(padding, "padding")
    dil = _pair(dilation, "dilation")
    out = [(size + 2 * p[a] - dil[a] * (k[a] - 1) - 1) // st[a] + 1 for a, size in enumerate((h, w))]
    if c % groups != 0:
        raise ValueError(f"peers: channels ({c}) not divisible by groups ({groups})")
    return Geometry(n, c, h, w, k, st, p, dil, tuple(first), steps, tuple(count),  # type: ignore[arg-type]
                    groups, float(scale), out[0], out[1])


def _plain_geometry(g: Geometry) -> bool:
    """kernel_size=1, stride=1, padding=0, dilation=1: the form the model loops have."""
    return g.kernel == (1, 1) and g.stride == (1, 1) and g.padding == (0, 0) and g.dilation == (1, 1)


def _padded_for_displacements(x: torch.Tensor, g: Geometry, with_displacements: bool):
    """Zero-pads ``x`` so that every index the correlation reads is in range.

    Returns the padded tensor and the (top, left) offsets of image row/column 0
    inside it.
    """
    offsets = []
    pads = []
    for axis, size in enumerate((g.height, g.width)):
        d_lo = g.disp_lo(axis) if with_displacements else 0
        d_hi = g.disp_hi(axis) if with_displacements else 0
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
    then einsum contracts each group's channels (summed over the kernel window).
    unfold walks the window in ascending order; a descending axis (negative
    displacement_stride) is flipped in the output, one copy of it."""
    g = geometry(input1, max_displacement, **kwargs)
    n, c, groups = g.batch, g.channels, g.groups
    cg = c // groups
    p1, t1, l1 = _padded_for_displacements(input1, g, with_displacements=False)
    p2, t2, l2 = _padded_for_displacements(input2, g, with_displacements=True)
    kh, kw = g.kernel
    dh, dw = g.dilation
    ph, pw = g.padding
    (sh, sw), (ky, kx) = g.stride, g.disp_count
    ssh, ssw = (abs(v) for v in g.disp_step)
    pixels = g.out_h * g.out_w
    out = None
    for i in range(kh):
        for j in range(kw):
            a = _window(p1, t1 - ph + i * dh, l1 - pw + j * dw, g).reshape(n, groups, cg, pixels)
            top = t2 - ph + i * dh + g.disp_lo(0)
            left = l2 - pw + j * dw + g.disp_lo(1)
            region = p2[..., top: top + sh * (g.out_h - 1) + ssh * (ky - 1) + 1,
                        left: left + sw * (g.out_w - 1) + ssw * (kx - 1) + 1]
            cols = F.unfold(region, kernel_size=(ky, kx), dilation=(ssh, ssw), stride=(sh, sw))
            cols = cols.view(n, groups, cg, ky * kx, pixels)
            term = torch.einsum("ngcp,ngcdp->ngdp", a, cols)
            out = term if out is None else out + term
    flip = g.descending_axes(2)
    if flip:
        out = out.view(n, groups, ky, kx, pixels).flip(flip)
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
    i.e. max_displacement = (P // 2) * |s|; its (N, P, P, H, W) output is viewed
    as (N, P * P, H, W). It cannot express groups, one-sided (min_displacement)
    windows or our kernel window, and it does not scale, so scale != 1 costs
    one extra multiply here (as it would in a model using it); its order is
    ascending, so a negative displacement_stride costs a flip (one copy of the
    output) likewise."""
    reason = sampler_unsupported_reason(input1, max_displacement, **kwargs)
    if reason is not None:
        raise PeerUnsupported(reason)
    g = geometry(input1, max_displacement, **kwargs)
    out = _sampler_op(
        input1, input2, kernel_size=1, patch_size=g.disp_count, stride=1, padding=0,
        dilation=1, dilation_patch=tuple(abs(v) for v in g.disp_step))
    flip = g.descending_axes(1)
    if flip:
        out = out.flip(flip)
    out = out.reshape(g.batch, g.displacements, g.out_h, g.out_w)
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



def gwc_loop_unsupported_reason(
    input1: torch.Tensor, max_displacement: IntPair, **kwargs
) -> str | None:
    """Why GwcNet's disparity loop does not compute this configuration, or None."""
    g = geometry(input1, max_displacement, **kwargs)
    if not _plain_geometry(g):
        return "GwcNet's loop has no kernel window, stride, padding or dilation"
    if g.disp_values(0) != [0]:
        return "GwcNet's loop builds a 1-D horizontal (disparity) volume: no vertical displacements"
    if g.disp_values(1) != [-d for d in range(g.disp_count[1])]:
        return ("GwcNet's loop puts disparity d (displacement -d) at index d: the horizontal "
                "displacements must be 0, -1, ..., 1 - D in that (descending) order")
    return None


def gwc_loop_correlation(
    input1: torch.Tensor, input2: torch.Tensor, max_displacement: IntPair, **kwargs
) -> torch.Tensor:
    """GwcNet's build_gwc_volume as its Python writes it: a zero volume
    (B, G, D, H, W); for every disparity d, the product of input1's columns
    d.. and input2's columns ..W-d, viewed as (B, G, C/G, H, W-d), averaged
    over each group's channels and assigned into volume[:, :, d, :, d:].
    Returned as the (B, G * D, H, W) view (channel g * D + d). With one group
    it is DispNetC's 1-D correlation (the mean over channels). GwcNet's mean is
    scale = groups / C; another scale costs one multiply of the volume."""
    reason = gwc_loop_unsupported_reason(input1, max_displacement, **kwargs)
    if reason is not None:
        raise PeerUnsupported(reason)
    g = geometry(input1, max_displacement, **kwargs)
    b, c, h, w, groups = g.batch, g.channels, g.height, g.width, g.groups
    cg, disparities = c // groups, g.disp_count[1]
    volume = input1.new_zeros(b, groups, disparities, h, w)
    for d in range(min(disparities, w)):
        if d > 0:
            product = input1[:, :, :, d:] * input2[:, :, :, : w - d]
            volume[:, :, d, :, d:] = product.view(b, groups, cg, h, w - d).mean(dim=2)
        else:
            volume[:, :, d] = (input1 * input2).view(b, groups, cg, h, w).mean(dim=2)
    out = volume.view(b, groups * disparities, h, w)
    factor = g.scale * cg
    return out * factor if factor != 1.0 else out


def vcn_loop_unsupported_reason(
    input1: torch.Tensor, max_displacement: IntPair, **kwargs
) -> str | None:
    """Why VCN's per-channel volume loop does not compute this configuration, or None."""
    g = geometry(input1, max_displacement, **kwargs)
    if not _plain_geometry(g):
        return "VCN's loop has no kernel window, stride, padding or dilation"
    if g.groups != g.channels:
        return f"VCN's volume is per channel (groups == channels), not {g.groups} groups of {g.channels}"
    return None


def vcn_loop_correlation(
    input1: torch.Tensor, input2: torch.Tensor, max_displacement: IntPair, **kwargs
) -> torch.Tensor:
    """VCN's per-channel 4-D volume: a zero volume (B, C, Dy, Dx, H, W); for
    every (dy, dx), the elementwise product of input1 and input2 shifted by
    (dy, dx) over the rows and columns where both exist, assigned into
    volume[:, :, i, j] (zero elsewhere). Returned as the (B, C * D, H, W) view;
    scale != 1 costs one multiply of the volume."""
    reason = vcn_loop_unsupported_reason(input1, max_displacement, **kwargs)
    if reason is not None:
        raise PeerUnsupported(reason)
    g = geometry(input1, max_displacement, **kwargs)
    b, c, h, w = g.batch, g.channels, g.height, g.width
    ky, kx = g.disp_count
    volume = input1.new_zeros(b, c, ky, kx, h, w)
    for i, dy in enumerate(g.disp_values(0)):
        y0, y1 = max(0, -dy), min(h, h - dy)
        if y0 >= y1:
            continue
        for j, dx in enumerate(g.disp_values(1)):
            x0, x1 = max(0, -dx), min(w, w - dx)
            if x0 >= x1:
                continue
            volume[:, :, i, j, y0:y1, x0:x1] = (
                input1[:, :, y0:y1, x0:x1] * input2[:, :, y0 + dy: y1 + dy, x0 + dx: x1 + dx])
    out = volume.view(b, c * ky * kx, h, w)
    return out * g.scale if g.scale != 1.0 else out
