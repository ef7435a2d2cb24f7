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
"""

import itertools
import math

import torch
import torch.nn.functional as F

__all__ = [
    "pair",
    "displacement_set",
    "displacements",
    "output_size",
    "correlation_reference",
    "correlation_bruteforce",
    "self_check",
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


def correlation_reference(
    input1: torch.Tensor,
    input2: torch.Tensor,
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
) -> torch.Tensor:
    """float64 reference by padding and slicing; differentiable by autograd.

    Accepts (N, C, H, W) or unbatched (C, H, W) inputs of any floating dtype
    and returns a float64 tensor of the documented shape (contiguous).
    """
    assert input1.shape == input2.shape and input1.dim() in (3, 4)
    unbatched = input1.dim() == 3
    x1 = input1.to(torch.float64)
    x2 = input2.to(torch.float64)
    if unbatched:
        x1, x2 = x1.unsqueeze(0), x2.unsqueeze(0)
    n, c, h, w = x1.shape
    kh, kw = pair(kernel_size)
    sh, sw = pair(stride)
    ph, pw = pair(padding)
    dh, dw = pair(dilation)
    dys, dxs = displacements(max_displacement, min_displacement, displacement_stride)
    assert c % groups == 0
    h_out = output_size(h, kh, sh, ph, dh)
    w_out = output_size(w, kw, sw, pw, dw)
    assert h_out >= 1 and w_out >= 1

    # Pad both inputs so that every index touched below is inside the padded
    # tensors: input1 needs `padding`, input2 additionally the displacement.
    big_h = ph + max(abs(d) for d in dys) + 1
    big_w = pw + max(abs(d) for d in dxs) + 1
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
    for dy in dys:
        for dx in dxs:
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
        * scale
    )
    return out[0] if unbatched else out


def correlation_bruteforce(
    input1: torch.Tensor,
    input2: torch.Tensor,
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
) -> torch.Tensor:
    """Scalar loops straight from the formula; only for tiny inputs."""
    unbatched = input1.dim() == 3
    a1 = (input1.unsqueeze(0) if unbatched else input1).to(torch.float64).tolist()
    a2 = (input2.unsqueeze(0) if unbatched else input2).to(torch.float64).tolist()
    n, c, h, w = (1, *input1.shape) if unbatched else tuple(input1.shape)
    kh, kw = pair(kernel_size)
    sh, sw = pair(stride)
    ph, pw = pair(padding)
    dh, dw = pair(dilation)
    dys, dxs = displacements(max_displacement, min_displacement, displacement_stride)
    cg = c // groups
    h_out = output_size(h, kh, sh, ph, dh)
    w_out = output_size(w, kw, sw, pw, dw)

    def at(a, b, ch, y, x):
        return a[b][ch][y][x] if 0 <= y < h and 0 <= x < w else 0.0

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
        y0 = oy * sh - ph
        x0 = ox * sw - pw
        total = 0.0
        for ch in range(g * cg, (g + 1) * cg):
            for i in range(kh):
                for j in range(kw):
                    y = y0 + i * dh
                    x = x0 + j * dw
                    total += at(a1, b, ch, y, x) * at(a2, b, ch, y + dy, x + dx)
        out[b][g * d + a * len(dxs) + k][oy][ox] = scale * total
    result = torch.tensor(out, dtype=torch.float64).reshape(n, groups * d, h_out, w_out)
    return result[0] if unbatched else result


# Tiny cases that together exercise every argument of the reference.
SELF_CHECK_CASES = [
    ((1, 2, 4, 5), dict(max_displacement=1)),
    ((2, 3, 5, 4), dict(max_displacement=(2, 1), kernel_size=3, padding=1)),
    (
        (1, 4, 6, 6),
        dict(max_displacement=2, displacement_stride=2, groups=2, scale=0.25),
    ),
    (
        (1, 2, 7, 6),
        dict(
            max_displacement=(1, 2),
            kernel_size=(2, 3),
            stride=(2, 1),
            padding=(1, 2),
            dilation=(2, 1),
        ),
    ),
    ((1, 3, 5, 7), dict(max_displacement=(0, 0), min_displacement=(0, -3), groups=3)),
    (
        (2, 2, 5, 5),
        dict(
            max_displacement=(3, -1),
            min_displacement=(1, -4),
            displacement_stride=(2, 3),
            stride=2,
        ),
    ),
    (
        (2, 4, 4),
        dict(
            max_displacement=1,
            kernel_size=2,
            dilation=2,
            padding=2,
            stride=3,
            groups=2,
            scale=-1.5,
        ),
    ),
    ((1, 1, 3, 3), dict(max_displacement=5, padding=(0, 1))),
    # Descending orders: symmetric, one-sided with a range that is not a
    # multiple of the step, and GwcNet's disparities.
    ((1, 2, 5, 6), dict(max_displacement=(1, 2), displacement_stride=(-1, 2))),
    (
        (1, 2, 6, 7),
        dict(
            max_displacement=(2, 3),
            min_displacement=(-1, -2),
            displacement_stride=(-2, -2),
        ),
    ),
    (
        (1, 4, 3, 6),
        dict(
            max_displacement=(0, 0),
            min_displacement=(0, -3),
            displacement_stride=(1, -1),
            groups=2,
        ),
    ),
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


if __name__ == "__main__":
    self_check()
    print("correlation_reference agrees with correlation_bruteforce")
