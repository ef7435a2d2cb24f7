"""Independent reference implementations of ``F.correlation`` for the tests.

Written from the semantics of the public API (see the docstring of
``torch.nn.functional.correlation``), not from the kernels:

    out[n, g*D + a*Kx + b, oy, ox] = scale * sum_{c in group g} sum_{i<kh, j<kw}
        input1[n, c, y0 + i*dil_h, x0 + j*dil_w]
        * input2[n, c, y0 + i*dil_h + dy_a, x0 + j*dil_w + dx_b]

with ``y0 = oy*stride_h - pad_h``, ``x0 = ox*stride_w - pad_w`` and both inputs
reading as zero outside the image.

* :func:`correlation_reference` computes every term by zero-padding both
  inputs generously and slicing, in float64, with explicit Python loops over
  the kernel offsets ``(i, j)`` and the displacements ``(a, b)``. It is built
  from differentiable tensor operations only, so autograd through it gives the
  reference gradients (and its double backward the reference Hessian-vector
  products).
* :func:`correlation_bruteforce` is a scalar loop over every output element,
  every channel and every kernel offset; it is far too slow for real tests and
  only exists to validate :func:`correlation_reference` on tiny inputs
  (:func:`self_check`, also run by the test-suite).

With ``offset`` (``(N, 2, H_out, W_out)``: ``(u, v) = offset[n, :, oy, ox]``),
input2 (which may then have its own height ``H2`` and width ``W2``) is read
at the moved position ``(y, x) = (y0 + i*dil_h + dy_a + v, x0 + j*dil_w + dx_b
+ u)`` by bilinear interpolation whose taps outside input2 read zero: with
``fy = v - floor(v)``, ``fx = u - floor(u)``, tap ``(ty, tx)`` in ``{0, 1}^2``
is the pixel ``(y0 + i*dil_h + dy_a + floor(v) + ty, x0 + j*dil_w + dx_b +
floor(u) + tx)`` with weight ``(ty ? fy : 1 - fy) * (tx ? fx : 1 - fx)``. A
location whose offset has a non-finite component has NaN outputs.

* :func:`correlation_offset_reference` reads every tap with explicit index
  arithmetic (floor, bounds mask, ``gather``), in float64 and from
  differentiable operations only (the fractions ``u - floor(u)`` carry the
  offset's gradient, which is therefore the right-sided derivative at integer
  positions); it shares nothing with the kernels or with ``grid_sample``.
* :func:`correlation_offset_sensitivities` gives ``d out / du`` and
  ``d out / dv`` explicitly (the tap weights' derivatives), and with
  ``absolute=True`` the same sums with the magnitudes of those weights, for
  error bounds of the offset gradient.
* :func:`correlation_offset_bruteforce` is the scalar loop (Python floats and
  integers) that validates both (:func:`offset_self_check`).

All of them take F.correlation's keyword arguments (:func:`parse_call`).
The end of the file holds what the test files share besides: the derived
tolerances (``assertCloseToReference`` of :class:`ReferenceAssertions`),
input and layout helpers, the output shape and aten::correlation_backward's
arguments of a call, and nn.Correlation's ModuleInfo.
"""

import itertools
import math
import os  # [preview only]
import sys  # [preview only]
from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = [
    "pair",
    "displacement_set",
    "displacements",
    "output_size",
    "CorrelationCall",
    "parse_call",
    "correlation_reference",
    "correlation_bruteforce",
    "CALLS",
    "self_check",
    "correlation_offset_reference",
    "correlation_offset_sensitivities",
    "correlation_offset_bruteforce",
    "offset_self_check",
    "ALL_DTYPES",
    "ACC_RTOL",
    "OUT_EPS",
    "ATOL",
    "ReferenceAssertions",
    "abs_scale",
    "output_shape",
    "backward_args",
    "forward_ad_gradcheck",
    "LAYOUTS",
    "relayout",
    "make_input",
    "correlation_module_info",
]

IntOrPair = int | tuple[int, int] | list[int]


def pair(value: IntOrPair) -> tuple[int, int]:
    """``3 -> (3, 3)``, ``(2, 5) -> (2, 5)``."""
    if isinstance(value, int):
        return (value, value)
    value = tuple(value)
    assert len(value) == 2, value
    return (int(value[0]), int(value[1]))


def displacement_set(max_d: int, min_d: int | None, step: int) -> list[int]:
    """The displacements along one axis, in output-channel order.

    ``step > 0``: with ``min_d is None``, the multiples of ``step`` whose
    magnitude is at most ``max_d`` (symmetric, always contains 0), ascending;
    otherwise ``min_d, min_d + step, ...`` up to and including at most
    ``max_d``.

    ``step < 0``: the walk starts at the top. With ``min_d is None``, the same
    symmetric set in descending order; otherwise ``max_d, max_d + step, ...``
    down to and including at least ``min_d`` (not the ascending set reversed
    when ``max_d - min_d`` is not a multiple of ``step``).
    """
    assert step != 0
    if min_d is None:
        assert max_d >= 0
        half = max_d // abs(step)
        # k * step runs from the bottom up for step > 0, top down for step < 0.
        return [k * step for k in range(-half, half + 1)]
    assert min_d <= max_d
    if step > 0:
        return list(range(min_d, max_d + 1, step))
    return list(range(max_d, min_d - 1, step))


def displacements(
    max_displacement: IntOrPair,
    min_displacement: IntOrPair | None = None,
    displacement_stride: IntOrPair = 1,
) -> tuple[list[int], list[int]]:
    """The (vertical, horizontal) displacement lists of a call."""
    max_h, max_w = pair(max_displacement)
    step_h, step_w = pair(displacement_stride)
    if min_displacement is None:
        min_h = min_w = None
    else:
        min_h, min_w = pair(min_displacement)
    return displacement_set(max_h, min_h, step_h), displacement_set(
        max_w, min_w, step_w
    )


def output_size(
    size: int, kernel: int, stride: int, padding: int, dilation: int
) -> int:
    """conv2d's output size along one axis (floor division)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class CorrelationCall(NamedTuple):
    """A call's arguments as the formula uses them: (vertical, horizontal)
    pairs, the displacement lists in output-channel order and the output's
    (H_out, W_out)."""

    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    dys: list[int]
    dxs: list[int]
    out_size: tuple[int, int]
    groups: int
    scale: float


def parse_call(
    size: tuple[int, int],
    max_displacement: IntOrPair,
    *,
    min_displacement: IntOrPair | None = None,
    kernel_size: IntOrPair = 1,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    displacement_stride: IntOrPair = 1,
    groups: int = 1,
    scale: float = 1.0,
) -> CorrelationCall:
    """The call of ``F.correlation`` (its keyword arguments, with their
    defaults) on an input1 of spatial size ``(H, W)``."""
    kernel, strides, pads, dilations = map(
        pair, (kernel_size, stride, padding, dilation)
    )
    dys, dxs = displacements(max_displacement, min_displacement, displacement_stride)
    out_size = tuple(map(output_size, size, kernel, strides, pads, dilations))
    return CorrelationCall(
        kernel, strides, pads, dilations, dys, dxs, out_size, groups, scale
    )


def _batched(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.unsqueeze(0) for t in tensors]


def correlation_reference(
    input1: torch.Tensor, input2: torch.Tensor, max_displacement: IntOrPair, **kwargs
) -> torch.Tensor:
    """float64 reference by padding and slicing; differentiable by autograd.

    Accepts (N, C, H, W) or unbatched (C, H, W) inputs of any floating dtype
    and returns a float64 tensor of the documented shape (contiguous).
    ``kwargs``: F.correlation's keyword arguments (see :func:`parse_call`).
    """
    assert input1.shape == input2.shape and input1.dim() in (3, 4)
    unbatched = input1.dim() == 3
    x1 = input1.to(torch.float64)
    x2 = input2.to(torch.float64)
    if unbatched:
        x1, x2 = _batched(x1, x2)
    n, c, h, w = x1.shape
    call = parse_call((h, w), max_displacement, **kwargs)
    (kh, kw), (sh, sw) = call.kernel_size, call.stride
    (ph, pw), (dh, dw) = call.padding, call.dilation
    h_out, w_out = call.out_size
    groups = call.groups
    assert c % groups == 0
    assert h_out >= 1 and w_out >= 1

    # Pad both inputs so that every index touched below is inside the padded
    # tensors: input1 needs `padding`, input2 additionally the displacement.
    big_h = ph + max(abs(d) for d in call.dys) + 1
    big_w = pw + max(abs(d) for d in call.dxs) + 1
    p1 = F.pad(x1, (big_w, big_w, big_h, big_h))
    p2 = F.pad(x2, (big_w, big_w, big_h, big_h))

    def window(t: torch.Tensor, row: int, col: int) -> torch.Tensor:
        # Rows row, row + sh, ..., (h_out values) in unpadded coordinates.
        r = big_h + row
        q = big_w + col
        return t[
            :, :, r : r + (h_out - 1) * sh + 1 : sh, q : q + (w_out - 1) * sw + 1 : sw
        ]

    planes = []
    for dy in call.dys:
        for dx in call.dxs:
            acc = x1.new_zeros(n, groups, h_out, w_out)
            for i in range(kh):
                for j in range(kw):
                    y = -ph + i * dh
                    x = -pw + j * dw
                    prod = window(p1, y, x) * window(p2, y + dy, x + dx)
                    acc = acc + prod.reshape(n, groups, c // groups, h_out, w_out).sum(
                        2
                    )
            planes.append(acc)
    # (N, G, D, H_out, W_out) -> channel g*D + a*Kx + b.
    out = (
        torch.stack(planes, dim=2).reshape(n, groups * len(planes), h_out, w_out)
        * call.scale
    )
    return out[0] if unbatched else out


def _scalar_reader(t: torch.Tensor):
    """``read(b, ch, y, x)``: the (N, C, H, W) tensor t's value as a Python
    float, 0.0 outside its image."""
    values = t.to(torch.float64).tolist()
    h, w = t.shape[-2:]

    def read(b, ch, y, x):
        return values[b][ch][y][x] if 0 <= y < h and 0 <= x < w else 0.0

    return read


def _window_positions(call: CorrelationCall, channels: int, g: int, oy: int, ox: int):
    """The (channel, y, x) of input1 that output location (oy, ox) of group
    g sums over (of ``channels`` in all), in the order of the sum."""
    (kh, kw), (sh, sw) = call.kernel_size, call.stride
    (ph, pw), (dh, dw) = call.padding, call.dilation
    per_group = channels // call.groups
    for ch in range(g * per_group, (g + 1) * per_group):
        for i in range(kh):
            for j in range(kw):
                yield ch, oy * sh - ph + i * dh, ox * sw - pw + j * dw


def _bruteforce_volume(n: int, call: CorrelationCall, value) -> torch.Tensor:
    """The (N, G*D, H_out, W_out) float64 tensor whose element of batch b,
    group g, displacement (dy, dx) and location (oy, ox) is
    ``value(b, g, dy, dx, oy, ox)`` (a Python float), in the documented
    channel order g*D + a*Kx + b."""
    dys, dxs, (h_out, w_out), groups = call.dys, call.dxs, call.out_size, call.groups
    d = len(dys) * len(dxs)
    out = [
        [[[0.0] * w_out for _ in range(h_out)] for _ in range(groups * d)]
        for _ in range(n)
    ]
    for b, g, (a, dy), (k, dx), oy, ox in itertools.product(
        range(n),
        range(groups),
        enumerate(dys),
        enumerate(dxs),
        range(h_out),
        range(w_out),
    ):
        out[b][g * d + a * len(dxs) + k][oy][ox] = value(b, g, dy, dx, oy, ox)
    return torch.tensor(out, dtype=torch.float64).reshape(n, groups * d, h_out, w_out)


def correlation_bruteforce(
    input1: torch.Tensor, input2: torch.Tensor, max_displacement: IntOrPair, **kwargs
) -> torch.Tensor:
    """Scalar loops straight from the formula; only for tiny inputs."""
    unbatched = input1.dim() == 3
    t1, t2 = _batched(input1, input2) if unbatched else (input1, input2)
    n, c, h, w = t1.shape
    call = parse_call((h, w), max_displacement, **kwargs)
    first, second = _scalar_reader(t1), _scalar_reader(t2)

    def value(b, g, dy, dx, oy, ox):
        total = 0.0
        for ch, y, x in _window_positions(call, c, g, oy, ox):
            total += first(b, ch, y, x) * second(b, ch, y + dy, x + dx)
        return call.scale * total

    result = _bruteforce_volume(n, call, value)
    return result[0] if unbatched else result


# Calls (F.correlation's keyword arguments, max_displacement included) that
# the case tables below and those of test_correlation_pt2.py pair with
# shapes of their own; together they exercise every argument.
CALLS = {
    "plain": dict(max_displacement=1),
    "window": dict(max_displacement=(2, 1), kernel_size=3, padding=1),
    "displacement_stride": dict(
        max_displacement=2, displacement_stride=2, groups=2, scale=0.25
    ),
    "geometry": dict(
        max_displacement=(1, 2),
        kernel_size=(2, 3),
        stride=(2, 1),
        padding=(1, 2),
        dilation=(2, 1),
    ),
    "one_sided_groups": dict(
        max_displacement=(0, 0), min_displacement=(0, -3), groups=3
    ),
    "strided_range": dict(
        max_displacement=(3, -1),
        min_displacement=(1, -4),
        displacement_stride=(2, 3),
        stride=2,
    ),
    "sparse_window": dict(
        max_displacement=1,
        kernel_size=2,
        dilation=2,
        padding=2,
        stride=3,
        groups=2,
        scale=-1.5,
    ),
    "beyond_image": dict(max_displacement=5, padding=(0, 1)),
    # Descending orders: symmetric, and GwcNet's disparities.
    "descending_rows": dict(max_displacement=(1, 2), displacement_stride=(-1, 2)),
    "gwcnet": dict(
        max_displacement=(0, 0),
        min_displacement=(0, -3),
        displacement_stride=(1, -1),
        groups=2,
    ),
}

# Tiny cases that together exercise every argument of the reference.
SELF_CHECK_CASES = [
    ((1, 2, 4, 5), CALLS["plain"]),
    ((2, 3, 5, 4), CALLS["window"]),
    ((1, 4, 6, 6), CALLS["displacement_stride"]),
    ((1, 2, 7, 6), CALLS["geometry"]),
    ((1, 3, 5, 7), CALLS["one_sided_groups"]),
    ((2, 2, 5, 5), CALLS["strided_range"]),
    ((2, 4, 4), CALLS["sparse_window"]),
    ((1, 1, 3, 3), CALLS["beyond_image"]),
    ((1, 2, 5, 6), CALLS["descending_rows"]),
    # A descending range that is not a multiple of the step.
    (
        (1, 2, 6, 7),
        dict(
            max_displacement=(2, 3),
            min_displacement=(-1, -2),
            displacement_stride=(-2, -2),
        ),
    ),
    ((1, 4, 3, 6), CALLS["gwcnet"]),
]


def self_check(seed: int = 0) -> None:
    """Validates correlation_reference against correlation_bruteforce."""
    gen = torch.Generator().manual_seed(seed)
    for shape, kwargs in SELF_CHECK_CASES:
        x1 = torch.randn(shape, generator=gen, dtype=torch.float64)
        x2 = torch.randn(shape, generator=gen, dtype=torch.float64)
        kwargs = dict(kwargs)
        max_d = kwargs.pop("max_displacement")
        expected = correlation_bruteforce(x1, x2, max_d, **kwargs)
        actual = correlation_reference(x1, x2, max_d, **kwargs)
        torch.testing.assert_close(
            actual,
            expected,
            rtol=1e-12,
            atol=1e-12,
            msg=lambda m: f"{shape} {kwargs}: {m}",
        )
    # The displacement sets of the docstring.
    assert displacement_set(4, None, 1) == list(range(-4, 5))
    assert displacement_set(20, None, 2) == list(range(-20, 21, 2))
    assert displacement_set(5, None, 2) == [-4, -2, 0, 2, 4]
    assert displacement_set(0, -3, 1) == [-3, -2, -1, 0]
    assert displacement_set(4, -3, 3) == [-3, 0, 3]
    assert displacement_set(-1, -5, 2) == [-5, -3, -1]
    assert displacement_set(4, None, -1) == list(range(4, -5, -1))
    assert displacement_set(5, None, -2) == [4, 2, 0, -2, -4]
    assert displacement_set(5, 0, -2) == [5, 3, 1]
    assert displacement_set(4, -3, -3) == [4, 1, -2]
    assert displacement_set(0, -47, -1) == list(range(0, -48, -1))
    assert math.prod(map(len, displacements((2, 3)))) == 35


# ----------------------------------------------------------------- offset


def _read_pixels(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor):
    """``x[n, :, rows[n, ...], cols[n, ...]]`` as an (N, C, ...) tensor, zero
    where the position is outside x's image.

    ``rows`` and ``cols`` hold integer values in float64 (of any magnitude:
    positions far outside simply read zero) and broadcast to (N, ...).
    """
    n, c, h, w = x.shape
    rows, cols = torch.broadcast_tensors(rows, cols)
    rows = rows.expand(n, *rows.shape[1:])
    cols = cols.expand(n, *cols.shape[1:])
    where = rows.shape[1:]
    if h == 0 or w == 0:
        return x.new_zeros(n, c, *where)
    inside = (rows >= 0) & (rows <= h - 1) & (cols >= 0) & (cols <= w - 1)
    # Clamped only so that the gather stays in bounds; the mask zeroes them.
    r = rows.clamp(0, h - 1).long()
    k = cols.clamp(0, w - 1).long()
    flat = (r * w + k).reshape(n, 1, -1).expand(n, c, -1)
    values = x.reshape(n, c, h * w).gather(2, flat).reshape(n, c, *where)
    return torch.where(inside.unsqueeze(1), values, 0.0)


def _value_weight(fy, fx, ty, tx):
    return (fy if ty else 1 - fy) * (fx if tx else 1 - fx)


def _du_weight(fy, fx, ty, tx, absolute=False):
    sign = 1.0 if (tx or absolute) else -1.0
    return (fy if ty else 1 - fy) * sign


def _dv_weight(fy, fx, ty, tx, absolute=False):
    sign = 1.0 if (ty or absolute) else -1.0
    return sign * (fx if tx else 1 - fx)


def _sampled_correlation(
    input1, input2, offset, max_displacement, tap_weight, **kwargs
):
    """The offset formula with the tap weights given by
    ``tap_weight(fy, fx, ty, tx)`` (each (N, H_out, W_out)); float64,
    differentiable, NaN at non-finite offsets."""
    assert input1.dim() in (3, 4) and input2.dim() == input1.dim()
    assert offset.dim() == input1.dim()
    unbatched = input1.dim() == 3
    x1 = input1.to(torch.float64)
    x2 = input2.to(torch.float64)
    off = offset.to(torch.float64)
    if unbatched:
        x1, x2, off = _batched(x1, x2, off)
    n, c, h, w = x1.shape
    assert x2.shape[:2] == (n, c), (x1.shape, x2.shape)
    call = parse_call((h, w), max_displacement, **kwargs)
    (kh, kw), (sh, sw) = call.kernel_size, call.stride
    (ph, pw), (dh, dw) = call.padding, call.dilation
    dys, dxs, (h_out, w_out), groups = call.dys, call.dxs, call.out_size, call.groups
    assert c % groups == 0
    assert h_out >= 1 and w_out >= 1
    assert off.shape == (n, 2, h_out, w_out), (off.shape, (n, 2, h_out, w_out))

    u, v = off[:, 0], off[:, 1]
    finite = torch.isfinite(u) & torch.isfinite(v)
    # Non-finite locations compute with offset 0 and are set to NaN at the
    # end, so they contribute nothing to any gradient.
    u = torch.where(finite, u, 0.0)
    v = torch.where(finite, v, 0.0)
    # floor has a zero derivative: the offset's gradient flows through the
    # fractions only.
    floor_u = torch.floor(u).detach()
    floor_v = torch.floor(v).detach()
    fx = u - floor_u
    fy = v - floor_v

    # Unshifted window origins: (H_out, 1) rows and (1, W_out) columns.
    rows0 = (torch.arange(h_out, dtype=torch.float64) * sh - ph).view(h_out, 1)
    cols0 = (torch.arange(w_out, dtype=torch.float64) * sw - pw).view(1, w_out)
    rows0 = rows0.to(x1.device)
    cols0 = cols0.to(x1.device)

    # Every displacement at once: positions of shape (N, Ky, Kx, H_out, W_out).
    dy = torch.tensor(dys, dtype=torch.float64, device=x1.device).view(-1, 1, 1, 1)
    dx = torch.tensor(dxs, dtype=torch.float64, device=x1.device).view(1, -1, 1, 1)
    base_v = floor_v.view(n, 1, 1, h_out, w_out)
    base_u = floor_u.view(n, 1, 1, h_out, w_out)
    num = len(dys) * len(dxs)
    acc = x1.new_zeros(n, groups, num, h_out, w_out)
    for i in range(kh):
        for j in range(kw):
            r1 = rows0 + i * dh
            k1 = cols0 + j * dw
            a = _read_pixels(x1, r1.unsqueeze(0), k1.unsqueeze(0)).unsqueeze(2)
            for ty in (0, 1):
                for tx in (0, 1):
                    b = _read_pixels(
                        x2,
                        (r1 + dy).unsqueeze(0) + base_v + ty,
                        (k1 + dx).unsqueeze(0) + base_u + tx,
                    ).reshape(n, c, num, h_out, w_out)
                    dots = (
                        (a * b)
                        .reshape(n, groups, c // groups, num, h_out, w_out)
                        .sum(2)
                    )
                    weight = tap_weight(fy, fx, ty, tx).view(n, 1, 1, h_out, w_out)
                    acc = acc + dots * weight
    # (N, G, D, H_out, W_out) -> channel g*D + a*Kx + b.
    out = acc.reshape(n, groups * num, h_out, w_out)
    out = torch.where(finite.unsqueeze(1), out * call.scale, math.nan)
    return out[0] if unbatched else out


def correlation_offset_reference(
    input1: torch.Tensor,
    input2: torch.Tensor,
    max_displacement: IntOrPair,
    *,
    offset: torch.Tensor,
    **kwargs,
) -> torch.Tensor:
    """float64 reference of the call with ``offset``; differentiable by
    autograd with respect to input1, input2 and offset (its gradients and
    double backward through the inputs are the reference ones).

    Accepts (N, C, H, W) input1, (N, C, H2, W2) input2 and (N, 2, H_out,
    W_out) offset, or the unbatched forms, of any floating dtype and device;
    returns a float64 tensor on that device. ``kwargs``: F.correlation's
    other keyword arguments (see :func:`parse_call`).
    """
    return _sampled_correlation(
        input1, input2, offset, max_displacement, _value_weight, **kwargs
    )


def correlation_offset_sensitivities(
    input1: torch.Tensor,
    input2: torch.Tensor,
    max_displacement: IntOrPair,
    *,
    offset: torch.Tensor,
    absolute: bool = False,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(d out / du, d out / dv)``, each shaped like the output (float64).

    The derivative of tap ``(ty, tx)``'s weight is ``(ty ? fy : 1 - fy) *
    (tx ? 1 : -1)`` along u (likewise along v): the right-sided derivative at
    integer positions. The offset gradient of ``grad_output`` is
    ``(grad_output * d_du).sum(channels)`` (likewise v). With
    ``absolute=True`` the signs are dropped: called on ``|input1|``,
    ``|input2|`` and ``|scale|``, the result bounds the sum of the magnitudes
    of the terms.
    """

    def du(fy, fx, ty, tx):
        return _du_weight(fy, fx, ty, tx, absolute)

    def dv(fy, fx, ty, tx):
        return _dv_weight(fy, fx, ty, tx, absolute)

    return tuple(
        _sampled_correlation(input1, input2, offset, max_displacement, d, **kwargs)
        for d in (du, dv)
    )


def correlation_offset_bruteforce(
    input1: torch.Tensor,
    input2: torch.Tensor,
    max_displacement: IntOrPair,
    *,
    offset: torch.Tensor,
    derivative: str | None = None,
    **kwargs,
) -> torch.Tensor:
    """Scalar loops straight from the formula, only for tiny inputs.

    ``derivative``: None for the output, ``"u"`` or ``"v"`` for its
    (right-sided) derivative with respect to that offset component.
    Positions are Python integers, so any finite offset is exact.
    """
    unbatched = input1.dim() == 3
    t1, t2, t3 = input1, input2, offset
    if unbatched:
        t1, t2, t3 = _batched(t1, t2, t3)
    off = t3.to(torch.float64).tolist()
    n, c, h, w = t1.shape
    call = parse_call((h, w), max_displacement, **kwargs)
    first, second = _scalar_reader(t1), _scalar_reader(t2)

    def weight(fy, fx, ty, tx):
        wy = fy if ty else 1.0 - fy
        wx = fx if tx else 1.0 - fx
        if derivative == "u":
            wx = 1.0 if tx else -1.0
        elif derivative == "v":
            wy = 1.0 if ty else -1.0
        return wy * wx

    def value(b, g, dy, dx, oy, ox):
        u, v = off[b][0][oy][ox], off[b][1][oy][ox]
        if not (math.isfinite(u) and math.isfinite(v)):
            return math.nan
        base_x, base_y = math.floor(u), math.floor(v)
        fx, fy = u - base_x, v - base_y
        total = 0.0
        for ch, y, x in _window_positions(call, c, g, oy, ox):
            sample = 0.0
            for ty in (0, 1):
                for tx in (0, 1):
                    sample += weight(fy, fx, ty, tx) * second(
                        b, ch, y + dy + base_y + ty, x + dx + base_x + tx
                    )
            total += first(b, ch, y, x) * sample
        return call.scale * total

    result = _bruteforce_volume(n, call, value)
    return result[0] if unbatched else result


# Tiny cases that together exercise every argument of the offset reference:
# (input1 shape, input2 height and width, offset kind, kwargs). Offset kinds:
# "fraction" (integer part in [-2, 2], fraction in [0.1, 0.9]), "wide"
# (uniform in [-6, 6]: samples partly and fully outside input2), "integer",
# "special" (exact integers, huge values, NaN and infinities mixed in).
OFFSET_SELF_CHECK_CASES = [
    ((1, 2, 4, 5), (4, 5), "fraction", CALLS["plain"]),
    ((2, 3, 5, 4), (3, 6), "wide", CALLS["window"]),
    ((1, 4, 5, 5), (7, 4), "fraction", CALLS["displacement_stride"]),
    ((1, 2, 7, 6), (5, 5), "wide", CALLS["geometry"]),
    ((2, 2, 5, 5), (5, 5), "integer", CALLS["strided_range"]),
    (
        (2, 4, 4),
        (5, 3),
        "special",
        dict(max_displacement=1, kernel_size=2, padding=1, groups=2, scale=-1.5),
    ),
    ((1, 2, 5, 6), (1, 1), "wide", CALLS["descending_rows"]),
    ((1, 4, 3, 6), (3, 6), "fraction", CALLS["gwcnet"]),
]


def _self_check_offset(kind, shape, gen):
    if kind == "fraction":
        whole = torch.randint(-2, 3, shape, generator=gen).to(torch.float64)
        return whole + 0.1 + 0.8 * torch.rand(shape, generator=gen, dtype=torch.float64)
    if kind == "wide":
        return 12 * torch.rand(shape, generator=gen, dtype=torch.float64) - 6
    if kind == "integer":
        return torch.randint(-3, 4, shape, generator=gen).to(torch.float64)
    assert kind == "special"
    values = torch.tensor(
        [
            0.0,
            -1.0,
            2.0,
            0.5,
            -0.25,
            1e30,
            -1e30,
            2.0**62,
            math.nan,
            math.inf,
            -math.inf,
        ]
    ).to(torch.float64)
    index = torch.randint(0, values.numel(), shape, generator=gen)
    return values[index]


def offset_self_check(seed: int = 0) -> None:
    """Validates correlation_offset_reference and
    correlation_offset_sensitivities against correlation_offset_bruteforce,
    the reference's autograd offset gradient against the sensitivities, and
    integer offsets against correlation_reference with shifted displacements.
    """
    gen = torch.Generator().manual_seed(seed)
    tol = dict(rtol=1e-12, atol=1e-12, equal_nan=True)
    shifted_checks = 0
    for shape, (h2, w2), kind, kwargs in OFFSET_SELF_CHECK_CASES:
        kwargs = dict(kwargs)
        max_d = kwargs.pop("max_displacement")
        x1 = torch.randn(shape, generator=gen, dtype=torch.float64)
        x2 = torch.randn(*shape[:-2], h2, w2, generator=gen, dtype=torch.float64)
        out_shape = correlation_reference(x1, x1, max_d, **kwargs).shape
        off_shape = (*out_shape[:-3], 2, *out_shape[-2:])
        off = _self_check_offset(kind, off_shape, gen)

        def msg(m, shape=shape, kwargs=kwargs):
            return f"{shape} {kwargs}: {m}"

        expected = correlation_offset_bruteforce(x1, x2, max_d, offset=off, **kwargs)
        actual = correlation_offset_reference(x1, x2, max_d, offset=off, **kwargs)
        torch.testing.assert_close(actual, expected, **tol, msg=msg)
        d_du, d_dv = correlation_offset_sensitivities(
            x1, x2, max_d, offset=off, **kwargs
        )
        for which, got in (("u", d_du), ("v", d_dv)):
            want = correlation_offset_bruteforce(
                x1, x2, max_d, offset=off, derivative=which, **kwargs
            )
            torch.testing.assert_close(got, want, **tol, msg=msg)
        # Autograd through the reference gives the same offset gradient.
        o = off.clone().requires_grad_()
        out = correlation_offset_reference(x1, x2, max_d, offset=o, **kwargs)
        g = torch.randn(out.shape, generator=gen, dtype=torch.float64)
        (grad,) = torch.autograd.grad(out, o, g)
        finite = off.isfinite().all(-3, keepdim=True)
        want = torch.cat(
            [(g * d_du).sum(-3, keepdim=True), (g * d_dv).sum(-3, keepdim=True)], -3
        )
        torch.testing.assert_close(
            torch.where(finite, grad, math.nan), want, **tol, msg=msg
        )
        if kind == "integer" and (h2, w2) == shape[-2:]:
            # A per-location integer offset picks the integer op's value at
            # the shifted displacement (checked for one constant here; the
            # test-suite checks per-location offsets).
            const = off.clone()
            const[..., 0, :, :] = 2.0
            const[..., 1, :, :] = -1.0
            dys, dxs = displacements(
                max_d, kwargs.get("min_displacement"), kwargs["displacement_stride"]
            )
            step = pair(kwargs["displacement_stride"])
            shifted = dict(
                kwargs,
                min_displacement=(min(dys) - 1, min(dxs) + 2),
            )
            shifted_max = (max(dys) - 1, max(dxs) + 2)
            assert step[0] > 0 and step[1] > 0
            torch.testing.assert_close(
                correlation_offset_reference(x1, x2, max_d, offset=const, **kwargs),
                correlation_reference(x1, x2, shifted_max, **shifted),
                **tol,
                msg=msg,
            )
            shifted_checks += 1
    assert shifted_checks == 1
    # Finite differences of the reference (away from integer positions)
    # agree with the sensitivities.
    shape, (h2, w2), _, kwargs = OFFSET_SELF_CHECK_CASES[2]
    kwargs = dict(kwargs)
    max_d = kwargs.pop("max_displacement")
    x1 = torch.randn(shape, generator=gen, dtype=torch.float64)
    x2 = torch.randn(*shape[:-2], h2, w2, generator=gen, dtype=torch.float64)
    out_shape = correlation_reference(x1, x1, max_d, **kwargs).shape
    off = _self_check_offset("fraction", (out_shape[0], 2, *out_shape[-2:]), gen)
    eps = 1e-6
    for component, sensitivity in enumerate(
        correlation_offset_sensitivities(x1, x2, max_d, offset=off, **kwargs)
    ):
        step = torch.zeros_like(off)
        step[:, component] = eps
        hi = correlation_offset_reference(x1, x2, max_d, offset=off + step, **kwargs)
        lo = correlation_offset_reference(x1, x2, max_d, offset=off - step, **kwargs)
        torch.testing.assert_close(
            (hi - lo) / (2 * eps), sensitivity, rtol=1e-6, atol=1e-7
        )


# ------------------------------------------------- shared by the test files
#
# Tolerances are derived, not tuned: for each output element the reference
# is also evaluated on the magnitudes of the inputs (and of grad_output, and
# of the offset's tap weights), which bounds the sum of the magnitudes of the
# summed terms; an accumulation in ``acc`` precision may then be off by
# ``k * eps(acc) * bound``, and float16 and bfloat16 results lose one more
# rounding to their dtype.

ALL_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)

# Relative accumulation error allowed, relative to the sum of |terms|.
ACC_RTOL = {
    torch.float64: 1e-12,
    torch.float32: 1e-5,
    # float16 / bfloat16 accumulate in float32.
    torch.float16: 1e-5,
    torch.bfloat16: 1e-5,
}
# One rounding of the result to its dtype (a full ulp, to be safe).
OUT_EPS = {
    torch.float64: 0.0,
    torch.float32: 0.0,
    torch.float16: 2.0**-10,
    torch.bfloat16: 2.0**-7,
}
# Absolute slack for float16's subnormal range.
ATOL = {
    torch.float64: 0.0,
    torch.float32: 0.0,
    torch.float16: 2.0**-24,
    torch.bfloat16: 0.0,
}


class ReferenceAssertions:
    """``assertCloseToReference`` for a ``TestCase`` subclass. A class whose
    reference is NaN at some elements (non-finite offsets) sets
    ``reference_nan_agrees``: NaN then agrees with NaN (a NaN on one side
    only never does)."""

    reference_nan_agrees = False

    def assertCloseToReference(self, actual, expected, bound, dtype, what="output"):
        """|actual - expected| within the derived tolerance of ``dtype``;
        ``expected`` and ``bound`` are the float64 reference on the inputs
        and on their magnitudes."""
        self.assertEqual(actual.dtype, dtype)
        self.assertEqual(tuple(actual.shape), tuple(expected.shape))
        a = actual.detach().cpu().double()
        tol = ACC_RTOL[dtype] * bound + OUT_EPS[dtype] * expected.abs() + ATOL[dtype]
        err = (a - expected).abs()
        agree = a.isnan() & expected.isnan()
        if not self.reference_nan_agrees:
            agree.zero_()
        bad = ~(err <= tol) & ~agree  # catches NaN on either side
        if bad.any():
            idx = tuple(bad.nonzero()[0].tolist())
            self.fail(
                f"{what}: {int(bad.sum())} of {bad.numel()} elements differ, e.g. at {idx}: "
                f"got {a[idx].item()!r}, expected {expected[idx].item()!r} "
                f"(tolerance {tol[idx].item():.3g}, max error "
                f"{err[~agree].max().item():.3g})"
            )


def abs_scale(kwargs: dict) -> dict:
    """F.correlation's keyword arguments with ``|scale|``: the call that, on
    the inputs' magnitudes, gives the bound of the terms."""
    return dict(kwargs, scale=abs(kwargs.get("scale", 1.0)))


def output_shape(shape, max_displacement, kwargs: dict) -> tuple[int, ...]:
    """The shape of ``F.correlation(input1, input2, max_displacement,
    **kwargs)`` for an input1 of ``shape`` ((N, C, H, W) or (C, H, W))."""
    call = parse_call(tuple(shape[-2:]), max_displacement, **kwargs)
    channels = call.groups * len(call.dys) * len(call.dxs)
    return (*shape[:-3], channels, *call.out_size)


def backward_args(max_displacement, kwargs: dict) -> list:
    """aten::correlation_backward's arguments between offset and
    output_mask, from F.correlation's (its schema, like
    convolution_backward's, has no defaults); unchecked, for error tests too."""

    def as_list(v):
        return list(pair(v))

    min_d = kwargs.get("min_displacement")
    return [
        as_list(max_displacement),
        None if min_d is None else as_list(min_d),
        as_list(kwargs.get("kernel_size", 1)),
        as_list(kwargs.get("stride", 1)),
        as_list(kwargs.get("padding", 0)),
        as_list(kwargs.get("dilation", 1)),
        as_list(kwargs.get("displacement_stride", 1)),
        kwargs.get("groups", 1),
        kwargs.get("scale", 1.0),
    ]


def forward_ad_gradcheck(fn, inputs) -> bool:
    """gradcheck of the forward-mode (JVP) derivatives only."""
    return torch.autograd.gradcheck(
        fn,
        inputs,
        check_forward_ad=True,
        check_backward_ad=False,
        check_undefined_grad=False,
        check_batched_grad=False,
    )


LAYOUTS = ("contiguous", "channels_last", "transposed", "strided")


def relayout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values as x with other strides."""
    if layout == "channels_last" and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "transposed":
        return x.transpose(-1, -2).contiguous().transpose(-1, -2)
    if layout == "strided":
        big = torch.zeros(
            *x.shape[:-2],
            2 * x.shape[-2],
            3 * x.shape[-1],
            dtype=x.dtype,
            device=x.device,
        )
        big[..., ::2, 1::3] = x
        return big[..., ::2, 1::3]
    return x


def make_input(shape, dtype, device, seed, requires_grad=False) -> torch.Tensor:
    """Standard normal values drawn in float64 from ``seed``, then cast."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    x = x.to(device=device, dtype=dtype)
    return x.requires_grad_(requires_grad)


def correlation_module_info():
    """The ModuleInfo of nn.Correlation (patch/moduleinfo.py)."""
    from torch.testing._internal.common_modules import module_db

    # [preview only begin]
    patch_dir = os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "patch"
    )
    sys.path.insert(0, patch_dir)
    from moduleinfo import module_db  # noqa: F811
    # [preview only end]

    (info,) = [m for m in module_db if m.module_cls is torch.nn.Correlation]
    return info


if __name__ == "__main__":
    self_check()
    print("correlation_reference agrees with correlation_bruteforce")
    offset_self_check()
    print("correlation_offset_reference agrees with correlation_offset_bruteforce")
