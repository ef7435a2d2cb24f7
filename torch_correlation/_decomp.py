"""Decomposition of ``aten::correlation`` into core ATen operators.

The code between the ``[decomp begin]`` and ``[decomp end]`` markers is the
text that the upstream patch adds to ``torch/_decomp/decompositions.py``; it
only uses names that module already has (``torch``, ``Tensor``, ``Optional``,
``aten``, ``utils``, ``register_decomposition``, ``out_wrapper``). The patch
also lists ``aten.correlation`` in ``_core_aten_decompositions_post_autograd()``
(``torch/_decomp/__init__.py``), which is what ``torch.export``'s
``run_decompositions()`` applies by default, and in Inductor's
``decomps_to_exclude`` (``torch/_inductor/decomposition.py``, done for the
preview in ``_compile.py``), so that ``torch.compile`` keeps calling the
native kernel.

Backends without the kernel use the decomposition: ``run_decompositions()``
lowers ``aten.correlation`` to core ATen, and ``torch.onnx.export(...,
dynamo=True)`` picks it up from ``torch._decomp.decomposition_table``.

:func:`activate` does in the preview what the first list entry does upstream.
"""

import torch
import torch._prims_common as utils
from torch import Tensor
from torch._decomp import register_decomposition
from torch._prims_common.wrappers import out_wrapper

aten = torch._ops.ops.aten

__all__ = ["activate"]


# [decomp begin]
def _correlation_displacements(max_d: int, min_d: int | None, step: int) -> list[int]:
    # The displacements along one axis, in output-channel order: a negative
    # step walks down from the top (max_d, or the symmetric range's top).
    if min_d is None:
        half = max_d // abs(step)
        return [k * step for k in range(-half, half + 1)]
    if step < 0:
        return list(range(max_d, min_d - 1, step))
    return list(range(min_d, max_d + 1, step))


def _correlation_shifted(
    x1: Tensor,
    x2: Tensor,
    dys: list[int],
    dxs: list[int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    out_size: tuple[int, int],
) -> Tensor:
    # Without an offset: one product per displacement, reduced over each
    # channel group:
    #
    #   S[n, g, d, y, x] = sum_{c in group g} input1p[n, c, y, x] * input2p[n, c, y + dy, x + dx]
    #
    # on the zero-padded grid (input1 padded by `padding`, input2 padded once
    # by `padding` plus the displacement range), where input2p shifted by
    # (dy, dx) is a strided slice, i.e. a view: neither input is copied per
    # displacement. The kernel window is then a sum of S over a (k_h, k_w)
    # window with `dilation` and `stride`: a depthwise convolution of S with
    # ones, or for a 1x1 kernel just the strided subsampling, which is done on
    # the inputs before the products.
    #
    # Memory: the padded inputs (once), one input-sized product at a time
    # (freed after its channel sum; a fusing backend never materialises it),
    # and S, of the output's size on the stride-1 grid (the output itself for
    # a 1x1 kernel).
    n, channels = x1.shape[0], x1.shape[1]
    kernel_h, kernel_w = kernel
    stride_h, stride_w = stride
    pad_h, pad_w = padding
    dilation_h, dilation_w = dilation
    out_h, out_w = out_size
    one_by_one = kernel_h == 1 and kernel_w == 1

    # input1 on the padded grid, cut to the rows/columns the windows read.
    span_h = (out_h - 1) * stride_h + dilation_h * (kernel_h - 1) + 1
    span_w = (out_w - 1) * stride_w + dilation_w * (kernel_w - 1) + 1
    x1 = aten.constant_pad_nd(x1, [pad_w, pad_w, pad_h, pad_h])
    # input2 padded so that every shifted window is in bounds: padded row r
    # of input1 pairs with row r - pad_h + dy of input2.
    # (The lists may be descending: take their extremes, not their ends.)
    top = max(pad_h - min(dys), 0)
    bottom = max(pad_h + max(dys), 0)
    left = max(pad_w - min(dxs), 0)
    right = max(pad_w + max(dxs), 0)
    x2 = aten.constant_pad_nd(x2, [left, right, top, bottom])
    row_step, col_step = (stride_h, stride_w) if one_by_one else (1, 1)
    rows = out_h if one_by_one else span_h
    cols = out_w if one_by_one else span_w
    x1 = x1[
        :,
        :,
        0 : (rows - 1) * row_step + 1 : row_step,
        0 : (cols - 1) * col_step + 1 : col_step,
    ]

    sums = []
    for dy in dys:
        row = top - pad_h + dy
        for dx in dxs:
            col = left - pad_w + dx
            shifted = x2[
                :,
                :,
                row : row + (rows - 1) * row_step + 1 : row_step,
                col : col + (cols - 1) * col_step + 1 : col_step,
            ]
            product = x1 * shifted
            grouped = product.view(n, groups, channels // groups, rows, cols)
            sums.append(grouped.sum(2, keepdim=True))
    displacements = len(sums)
    # (N, G, D, rows, cols) -> channel g * D + d.
    volume = torch.cat(sums, dim=2).view(n, groups * displacements, rows, cols)
    if not one_by_one:
        window = torch.full(
            (groups * displacements, 1, kernel_h, kernel_w),
            1.0,
            dtype=volume.dtype,
            device=volume.device,
        )
        volume = aten.convolution(
            volume,
            window,
            None,
            [stride_h, stride_w],
            [0, 0],
            [dilation_h, dilation_w],
            False,
            [0, 0],
            groups * displacements,
        )
    return volume


def _correlation_sampled(
    x1: Tensor,
    x2: Tensor,
    offset: Tensor,
    dys: list[int],
    dxs: list[int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    out_size: tuple[int, int],
) -> Tensor:
    # With an offset, input2 is read by bilinear sampling (grid_sampler_2d,
    # zeros padding) at the position moved by (u, v) = offset[n, :, y, x]:
    #
    #   S[n, g, d, k, y, x] = sum_{c in group g} input1p[n, c, y*s_h + i*dil_h, x*s_w + j*dil_w]
    #       * input2[n, c, y0 + i*dil_h + dy + v, x0 + j*dil_w + dx + u]
    #
    # for kernel tap k = (i, j), y0 = y*s_h - pad_h, x0 = x*s_w - pad_w, and
    # the output is S summed over k. The positions of one displacement, for
    # every tap and output location, form one sampling grid of
    # (K * H_out, W_out) points (tap-major), matched by input1's windows
    # gathered once in the same layout.
    #
    # Memory: input1's windows (K copies of the output-sized input1, once;
    # none for a 1x1 kernel without padding), and per displacement one grid,
    # one sampled copy of input2 and their product (freed after its group
    # sum).
    n, channels = x1.shape[0], x1.shape[1]
    height2, width2 = x2.shape[2], x2.shape[3]
    kernel_h, kernel_w = kernel
    stride_h, stride_w = stride
    pad_h, pad_w = padding
    dilation_h, dilation_w = dilation
    out_h, out_w = out_size
    taps = kernel_h * kernel_w
    if height2 == 0 or width2 == 0:
        # Every sample of an empty input2 is zero; grid_sampler_2d needs a
        # non-empty image: one row/column of zeros reads the same.
        x2 = aten.constant_pad_nd(x2, [0, int(width2 == 0), 0, int(height2 == 0)])
        height2, width2 = x2.shape[2], x2.shape[3]

    # input1 at tap (i, j) of every window: rows k * H_out + y of `windows`.
    if pad_h != 0 or pad_w != 0:
        x1 = aten.constant_pad_nd(x1, [pad_w, pad_w, pad_h, pad_h])
    windows = [
        x1[
            :,
            :,
            i * dilation_h : i * dilation_h + (out_h - 1) * stride_h + 1 : stride_h,
            j * dilation_w : j * dilation_w + (out_w - 1) * stride_w + 1 : stride_w,
        ]
        for i in range(kernel_h)
        for j in range(kernel_w)
    ]
    windows = windows[0] if taps == 1 else torch.cat(windows, dim=2)

    # A non-finite component leaves no position to sample: such locations
    # sample at offset 0 (so that nothing non-finite reaches grid_sampler_2d
    # and its gradients) and their outputs are replaced by NaN below.
    u, v = offset[:, 0:1], offset[:, 1:2]
    finite = torch.logical_and(torch.isfinite(u), torch.isfinite(v))
    u = torch.where(finite, u, 0.0).unsqueeze(1)
    v = torch.where(finite, v, 0.0).unsqueeze(1)

    # Integer pixel positions of the taps before displacement and offset,
    # (kernel_h, 1, H_out, 1) rows and (1, kernel_w, 1, W_out) columns.
    # (arange with start and step is the core ATen overload.)
    def positions(size, step, pad, kernel_size, dilation):
        base = torch.arange(0, size, 1, dtype=x1.dtype, device=x1.device)
        tap = torch.arange(0, kernel_size, 1, dtype=x1.dtype, device=x1.device)
        return (tap * dilation).unsqueeze(1) + (base * step - pad)

    rows = positions(out_h, stride_h, pad_h, kernel_h, dilation_h)
    rows = rows.view(kernel_h, 1, out_h, 1)
    cols = positions(out_w, stride_w, pad_w, kernel_w, dilation_w)
    cols = cols.view(1, kernel_w, 1, out_w)

    # grid_sampler_2d's coordinates for pixel position p of an axis of the
    # given size, with align_corners=False: the same pixel positions as
    # align_corners=True, but defined for a size of 1 too. Beyond +-3 every
    # tap lies outside input2, so clamping there changes no sample and keeps
    # huge finite offsets (whose coordinates overflow to inf) at zero.
    # Precision: the round trip through normalized coordinates moves a
    # position by a few ulps of the image size (the kernels split the offset
    # itself, exactly), so float32 results differ from the kernel's by about
    # size * 1e-7 relative, and at an exactly integer position the sampled
    # side, hence the offset gradient's one-sided derivative, may differ.
    def normalized(p, size):
        return ((p * 2 + 1) / size - 1).clamp(-3.0, 3.0)

    sums = []
    for dy in dys:
        # The integer part first: the offset is added with one rounding.
        grid_y = normalized(v + (rows + dy), height2)
        for dx in dxs:
            grid_x = normalized(u + (cols + dx), width2)
            # (N, kernel_h, kernel_w, H_out, W_out, 2): (x, y) per sample.
            xs, ys = torch.broadcast_tensors(grid_x, grid_y)
            grid = torch.cat([xs.unsqueeze(-1), ys.unsqueeze(-1)], dim=-1)
            grid = grid.view(n, taps * out_h, out_w, 2)
            sampled = aten.grid_sampler_2d(x2, grid, 0, 0, False)
            product = windows * sampled
            grouped = product.view(n, groups, channels // groups, taps, out_h, out_w)
            sums.append(grouped.sum((2, 3)).unsqueeze(2))
    # (N, G, D, H_out, W_out) -> channel g * D + d.
    volume = torch.cat(sums, dim=2).view(n, groups * len(sums), out_h, out_w)
    # NaN at the non-finite locations, through a term that depends on the
    # offset there (and only there), so that its gradient is NaN as well.
    nan = torch.full((), float("nan"), dtype=volume.dtype, device=volume.device)
    undefined = offset.sum(1, keepdim=True) * torch.where(finite, 0.0, nan)
    return torch.where(finite, volume, undefined)


@register_decomposition(aten.correlation)
@out_wrapper()
def correlation(
    input1: Tensor,
    input2: Tensor,
    max_displacement: list[int],
    *,
    offset: Tensor | None = None,
    min_displacement: list[int] | None = None,
    kernel_size: list[int] = (1, 1),  # type: ignore[assignment]
    stride: list[int] = (1, 1),  # type: ignore[assignment]
    padding: list[int] = (0, 0),  # type: ignore[assignment]
    dilation: list[int] = (1, 1),  # type: ignore[assignment]
    displacement_stride: list[int] = (1, 1),  # type: ignore[assignment]
    groups: int = 1,
    scale: float = 1.0,
) -> Tensor:
    # Integer displacements read input2 through shifted views
    # (_correlation_shifted); with an offset, through bilinear sampling
    # (_correlation_sampled). float16/bfloat16 inputs are computed in float32
    # (one float32 copy of each input, and of the offset), as the kernels
    # accumulate.
    def pair(value):
        return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])

    memory_format = utils.suggest_memory_format(input1)
    out_dtype = input1.dtype
    unbatched = input1.dim() == 3
    if unbatched:
        input1 = input1.unsqueeze(0)
        input2 = input2.unsqueeze(0)
        if offset is not None:
            offset = offset.unsqueeze(0)
    height, width = input1.shape[2], input1.shape[3]
    kernel_h, kernel_w = pair(kernel_size)
    stride_h, stride_w = pair(stride)
    pad_h, pad_w = pair(padding)
    dilation_h, dilation_w = pair(dilation)
    max_h, max_w = pair(max_displacement)
    step_h, step_w = pair(displacement_stride)
    min_h, min_w = (None, None) if min_displacement is None else pair(min_displacement)
    dys = _correlation_displacements(max_h, min_h, step_h)
    dxs = _correlation_displacements(max_w, min_w, step_w)
    out_h = (height + 2 * pad_h - dilation_h * (kernel_h - 1) - 1) // stride_h + 1
    out_w = (width + 2 * pad_w - dilation_w * (kernel_w - 1) - 1) // stride_w + 1

    computation_dtype = utils.get_computation_dtype(input1.dtype)
    x1 = input1.to(computation_dtype)
    x2 = input2.to(computation_dtype)
    geometry = (
        (kernel_h, kernel_w),
        (stride_h, stride_w),
        (pad_h, pad_w),
        (dilation_h, dilation_w),
        groups,
        (out_h, out_w),
    )
    if offset is None:
        volume = _correlation_shifted(x1, x2, dys, dxs, *geometry)
    else:
        offset = offset.to(computation_dtype)
        volume = _correlation_sampled(x1, x2, offset, dys, dxs, *geometry)
    out = (volume * scale).to(out_dtype)
    # The layout of the kernel's output: input1's memory format.
    if unbatched:
        return out[0].contiguous(memory_format=memory_format)
    return out.contiguous(memory_format=memory_format)


# [decomp end]

_ACTIVE = False


def activate() -> None:
    """Makes ``run_decompositions()`` lower ``aten.correlation`` by default.

    Adds our entry to ``torch._decomp._core_aten_decompositions_post_autograd``,
    the default table of ``torch.export`` (and, through it, ``torch.onnx``).
    Inductor builds its own table from the same function and must keep the
    operator: torch_correlation/_compile.py takes it out again.
    """
    global _ACTIVE
    if _ACTIVE:
        return
    _ACTIVE = True
    import torch._decomp as decomp

    core_table = decomp._core_aten_decompositions_post_autograd

    def _core_aten_decompositions_post_autograd():
        table = core_table()
        table.update(decomp.get_decompositions([aten.correlation]))
        return table

    decomp._core_aten_decompositions_post_autograd = (
        _core_aten_decompositions_post_autograd
    )
