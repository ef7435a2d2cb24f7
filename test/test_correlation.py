# Owner(s): ["module: nn"]
"""Tests of ``torch.nn.functional.correlation`` (``aten::correlation``).

Every numerical result is compared with ``correlation_reference.py``, an
independent float64 implementation written from the documented formula
(itself validated against a scalar brute-force loop), and every gradient with
that reference's autograd gradients. The tests are device generic: the same
tests run on CUDA when it is available.

Tolerances are derived, not tuned: for each output element the reference is
also evaluated on ``|input1|``, ``|input2|`` (and ``|grad_output|``), which
bounds the sum of the magnitudes of the summed terms. An accumulation in
``acc`` precision may then be off by ``k * eps(acc) * bound``; float16 and
bfloat16 results additionally lose one rounding of the output.
"""

import os
import random
import subprocess
import sys

import torch
import torch.nn.functional as F
from torch.testing._internal.common_device_type import (
    dtypes,
    instantiate_device_type_tests,
    onlyCPU,
    onlyCUDA,
)
from torch.testing._internal.common_utils import (
    DeterministicGuard,
    parametrize,
    run_tests,
    TestCase,
)

import torch_correlation

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from correlation_reference import (
    abs_scale,
    ALL_DTYPES,
    backward_args,
    correlation_reference,
    displacements,
    forward_ad_gradcheck,
    LAYOUTS,
    make_input,
    output_shape,
    ReferenceAssertions,
    relayout,
    self_check,
)

# Small configurations for gradcheck and friends: (shape, max_displacement, kwargs).
SMALL_CONFIGS = [
    ((1, 2, 4, 5), 1, {}),
    ((2, 2, 5, 4), (1, 2), dict(kernel_size=2, padding=1, stride=(1, 2))),
    (
        (1, 4, 5, 5),
        2,
        dict(
            displacement_stride=2, groups=2, kernel_size=2, dilation=(2, 1), scale=0.5
        ),
    ),
    ((1, 2, 3, 6), (0, 0), dict(min_displacement=(0, -2))),
    ((2, 3, 3), 1, dict(kernel_size=3, padding=1, stride=2)),
    (
        (1, 2, 4, 4),
        (2, -1),
        dict(min_displacement=(1, -3), displacement_stride=(1, 2), padding=(0, 1)),
    ),
    # Descending orders: GwcNet's disparities, and a range that is not a
    # multiple of the step ({2, 0} vertically, descending from the top).
    (
        (1, 4, 3, 6),
        (0, 0),
        dict(min_displacement=(0, -3), displacement_stride=(1, -1), groups=2),
    ),
    (
        (1, 2, 5, 4),
        (2, 1),
        dict(min_displacement=(-1, -1), displacement_stride=(-2, -1), kernel_size=2),
    ),
]


def _pair_arg(rng, value):
    """Passes a pair as an int (when both are equal, sometimes), tuple or list."""
    if value[0] == value[1] and rng.random() < 0.5:
        return value[0]
    return tuple(value) if rng.random() < 0.5 else list(value)


def random_config(rng):
    """A random valid call: (shape, max_displacement, kwargs)."""
    kernel = (rng.choice([1, 1, 2, 3]), rng.choice([1, 1, 2, 3]))
    dilation = (rng.choice([1, 1, 2]), rng.choice([1, 1, 2]))
    stride = (rng.choice([1, 1, 2, 3]), rng.choice([1, 1, 2, 3]))
    padding = (rng.choice([0, 0, 1, 2]), rng.choice([0, 0, 1, 2]))
    disp_stride = (rng.choice([1, 1, 2, 3]), rng.choice([1, 1, 2, 3]))
    groups = rng.choice([1, 1, 2, 3])
    channels = groups * rng.randint(1, 3)
    kwargs = {}
    if rng.random() < 0.5:
        max_disp = (rng.randint(0, 4), rng.randint(0, 4))
    else:
        # Arbitrary ranges: one-sided, all negative, all positive, mixed.
        lows = (rng.randint(-5, 3), rng.randint(-5, 3))
        max_disp = (lows[0] + rng.randint(0, 5), lows[1] + rng.randint(0, 5))
        kwargs["min_displacement"] = _pair_arg(rng, lows)
    sizes = []
    for k, d, p in zip(kernel, dilation, padding):
        extent = d * (k - 1) + 1
        sizes.append(max(1, extent - 2 * p) + rng.randint(0, 5))
    for name, value, default in (
        ("kernel_size", kernel, (1, 1)),
        ("stride", stride, (1, 1)),
        ("padding", padding, (0, 0)),
        ("dilation", dilation, (1, 1)),
        ("displacement_stride", disp_stride, (1, 1)),
    ):
        if value != default or rng.random() < 0.2:
            kwargs[name] = _pair_arg(rng, value)
    if groups != 1 or rng.random() < 0.2:
        kwargs["groups"] = groups
    scale = rng.choice([1.0, 1.0, 0.5, -2.0, 1.0 / channels])
    if scale != 1.0:
        kwargs["scale"] = scale
    if rng.random() < 0.2:
        shape = (channels, *sizes)
    else:
        shape = (rng.randint(1, 3), channels, *sizes)
    # A descending order on either axis, drawn last so that the draws above
    # stay those of the ascending configurations.
    signs = (rng.choice([1, 1, -1]), rng.choice([1, 1, -1]))
    if signs != (1, 1):
        kwargs["displacement_stride"] = _pair_arg(
            rng, tuple(sign * step for sign, step in zip(signs, disp_stride))
        )
    return shape, _pair_arg(rng, max_disp), kwargs


def random_large_config(rng):
    """Like random_config, with many channels, wide rows and more
    displacements (vector tails, channel chunks, displacement blocks), but
    D * kernel area bounded to keep the reference fast."""
    while True:
        kernel = (rng.choice([1, 2, 3, 5]), rng.choice([1, 2, 3, 5, 7]))
        dilation = (rng.choice([1, 2]), rng.choice([1, 2, 3]))
        stride = (rng.choice([1, 1, 2]), rng.choice([1, 1, 2, 3, 4]))
        padding = (rng.choice([0, 1, 3]), rng.choice([0, 2, 5]))
        disp_stride = (rng.choice([1, 2]), rng.choice([1, 2, 3]))
        max_disp = (rng.randint(0, 6), rng.randint(0, 12))
        kwargs = dict(
            kernel_size=kernel,
            dilation=dilation,
            stride=stride,
            padding=padding,
            displacement_stride=disp_stride,
        )
        if rng.random() < 0.4:
            low = (rng.randint(-8, 2), rng.randint(-24, 2))
            max_disp = (low[0] + rng.randint(0, 8), low[1] + rng.randint(0, 24))
            kwargs["min_displacement"] = low
        if expected_num_displacements(max_disp, kwargs) * kernel[0] * kernel[1] <= 300:
            break
    groups = rng.choice([1, 2, 4])
    channels = groups * rng.randint(1, 24)
    kwargs["groups"] = groups
    kwargs["scale"] = 1.0 / channels
    sizes = []
    for k, d, p, hi in zip(kernel, dilation, padding, (12, 150)):
        extent = d * (k - 1) + 1
        sizes.append(max(1, extent - 2 * p) + rng.randint(0, hi))
    # Descending orders too (drawn last, as in random_config).
    signs = (rng.choice([1, 1, -1]), rng.choice([1, 1, -1]))
    kwargs["displacement_stride"] = tuple(
        sign * step for sign, step in zip(signs, disp_stride)
    )
    return (rng.randint(1, 2), channels, *sizes), max_disp, kwargs


def expected_num_displacements(max_displacement, kwargs):
    dys, dxs = displacements(
        max_displacement,
        kwargs.get("min_displacement"),
        kwargs.get("displacement_stride", 1),
    )
    return len(dys) * len(dxs)


def reference_forward(x1, x2, max_displacement, kwargs):
    """(reference output, bound on the sum of |terms|), float64 on the CPU."""
    r1 = x1.detach().cpu().double()
    r2 = x2.detach().cpu().double()
    expected = correlation_reference(r1, r2, max_displacement, **kwargs)
    bound = correlation_reference(
        r1.abs(), r2.abs(), max_displacement, **abs_scale(kwargs)
    )
    return expected, bound


def reference_backward(x1, x2, grad_output, max_displacement, kwargs):
    """Reference gradients of (input1, input2) and bounds on their |terms|."""
    r1 = x1.detach().cpu().double().requires_grad_()
    r2 = x2.detach().cpu().double().requires_grad_()
    g = grad_output.detach().cpu().double()
    out = correlation_reference(r1, r2, max_displacement, **kwargs)
    grads = torch.autograd.grad(out, (r1, r2), g)
    a1 = r1.detach().abs().requires_grad_()
    a2 = r2.detach().abs().requires_grad_()
    out_abs = correlation_reference(a1, a2, max_displacement, **abs_scale(kwargs))
    bounds = torch.autograd.grad(out_abs, (a1, a2), g.abs())
    return grads, bounds


def gwcnet_volume(left, right, num_disparities, groups):
    """Group-wise correlation volume as GwcNet builds it: a loop over
    disparities, each the mean over the channels of a group of
    left[x] * right[x - d], zero where x - d falls off the image.
    Returns (N, groups, D, H, W) indexed by disparity d."""
    n, c, h, w = left.shape
    volume = left.new_zeros(n, groups, num_disparities, h, w)
    for d in range(num_disparities):
        prod = left[..., d:] * right[..., : w - d]
        volume[:, :, d, :, d:] = prod.reshape(n, groups, c // groups, h, w - d).mean(2)
    return volume


def shifted(x, dy, dx):
    """y[..., r, q] = x[..., r + dy, q + dx], zero outside the image."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    out[..., max(0, -dy) : min(h, h - dy), max(0, -dx) : min(w, w - dx)] = x[
        ..., max(0, dy) : min(h, h + dy), max(0, dx) : min(w, w + dx)
    ]
    return out


def caffe_correlation(in1, in2, pad, kernel_size, max_displacement, stride1, stride2):
    """Caffe's (FlowNet) correlation layer, in its own index convention:
    both inputs padded by `pad`, kernel centred at
    (y * stride1 + max_displacement + radius, ...) of the padded image,
    neighbourhood offsets o * stride2 for |o| <= max_displacement // stride2,
    normalised by kernel_size**2 * C."""
    n, c, h, w = in1.shape
    r = (kernel_size - 1) // 2
    border = max_displacement + r
    p1 = F.pad(in1, (pad, pad, pad, pad))
    p2 = F.pad(in2, (pad, pad, pad, pad))
    hp, wp = h + 2 * pad, w + 2 * pad
    out_h = -(-(hp - 2 * border) // stride1)
    out_w = -(-(wp - 2 * border) // stride1)
    grid = max_displacement // stride2
    width = 2 * grid + 1
    out = in1.new_zeros(n, width * width, out_h, out_w)
    for oy in range(out_h):
        for ox in range(out_w):
            y1 = oy * stride1 + border
            x1 = ox * stride1 + border
            patch1 = p1[:, :, y1 - r : y1 + r + 1, x1 - r : x1 + r + 1]
            for p in range(-grid, grid + 1):
                for o in range(-grid, grid + 1):
                    y2 = y1 + p * stride2
                    x2 = x1 + o * stride2
                    patch2 = p2[:, :, y2 - r : y2 + r + 1, x2 - r : x2 + r + 1]
                    value = (patch1 * patch2).sum((1, 2, 3)) / (kernel_size**2 * c)
                    out[:, (p + grid) * width + (o + grid), oy, ox] = value
    return out


class TestCorrelation(ReferenceAssertions, TestCase):
    def check_forward(self, x1, x2, max_displacement, kwargs, dtype, out=None):
        if out is None:
            out = F.correlation(x1, x2, max_displacement, **kwargs)
        expected, bound = reference_forward(x1, x2, max_displacement, kwargs)
        self.assertEqual(
            tuple(out.shape), output_shape(x1.shape, max_displacement, kwargs)
        )
        self.assertEqual(out.device, x1.device)
        self.assertCloseToReference(out, expected, bound, dtype)
        return out

    def check_backward(self, x1, x2, max_displacement, kwargs, dtype, grad_output=None):
        x1 = x1.detach().requires_grad_()
        x2 = x2.detach().requires_grad_()
        out = F.correlation(x1, x2, max_displacement, **kwargs)
        if grad_output is None:
            grad_output = torch.randn_like(out)
        g1, g2 = torch.autograd.grad(out, (x1, x2), grad_output)
        (e1, e2), (b1, b2) = reference_backward(
            x1, x2, grad_output, max_displacement, kwargs
        )
        self.assertCloseToReference(g1, e1, b1, dtype, "grad_input1")
        self.assertCloseToReference(g2, e2, b2, dtype, "grad_input2")

    # ----------------------------------------------------------------- values

    @onlyCPU
    def test_reference_self_check(self, device):
        self_check()

    @dtypes(*ALL_DTYPES)
    def test_forward_random_configs(self, device, dtype):
        rng = random.Random(1234)
        count = 80 if dtype in (torch.float64, torch.float32) else 40
        for case in range(count):
            shape, max_disp, kwargs = random_config(rng)
            layouts = (rng.choice(LAYOUTS), rng.choice(LAYOUTS))
            with self.subTest(
                case=case,
                shape=shape,
                max_displacement=max_disp,
                layouts=layouts,
                **kwargs,
            ):
                x1 = relayout(
                    make_input(shape, dtype, device, seed=2 * case), layouts[0]
                )
                x2 = relayout(
                    make_input(shape, dtype, device, seed=2 * case + 1), layouts[1]
                )
                self.check_forward(x1, x2, max_disp, kwargs, dtype)

    @dtypes(*ALL_DTYPES)
    def test_backward_random_configs(self, device, dtype):
        rng = random.Random(4321)
        count = 50 if dtype in (torch.float64, torch.float32) else 25
        for case in range(count):
            shape, max_disp, kwargs = random_config(rng)
            layouts = (rng.choice(LAYOUTS), rng.choice(LAYOUTS), rng.choice(LAYOUTS))
            with self.subTest(
                case=case,
                shape=shape,
                max_displacement=max_disp,
                layouts=layouts,
                **kwargs,
            ):
                x1 = relayout(
                    make_input(shape, dtype, device, seed=3 * case), layouts[0]
                )
                x2 = relayout(
                    make_input(shape, dtype, device, seed=3 * case + 1), layouts[1]
                )
                out_shape = output_shape(shape, max_disp, kwargs)
                g = relayout(
                    make_input(out_shape, dtype, device, seed=3 * case + 2), layouts[2]
                )
                self.check_backward(x1, x2, max_disp, kwargs, dtype, grad_output=g)

    @dtypes(*ALL_DTYPES)
    def test_large_random_configs(self, device, dtype):
        rng = random.Random(777)
        count = 8 if dtype in (torch.float64, torch.float32) else 4
        for case in range(count):
            shape, max_disp, kwargs = random_large_config(rng)
            layout = rng.choice(LAYOUTS)
            with self.subTest(
                case=case,
                shape=shape,
                max_displacement=max_disp,
                layout=layout,
                **kwargs,
            ):
                x1 = relayout(make_input(shape, dtype, device, seed=2 * case), layout)
                x2 = relayout(
                    make_input(shape, dtype, device, seed=2 * case + 1), layout
                )
                self.check_forward(x1, x2, max_disp, kwargs, dtype)
                self.check_backward(x1, x2, max_disp, kwargs, dtype)

    @dtypes(torch.float32, torch.float64)
    def test_wide_rows(self, device, dtype):
        # Rows long enough that the channels of a group are processed in
        # several chunks, with every vector-tail length.
        for c, w, kwargs in (
            (48, 301, dict(scale=1 / 48)),
            (40, 257, dict(kernel_size=3, padding=1, stride=(1, 2), groups=2)),
            (33, 200, dict(kernel_size=(1, 3), dilation=2, displacement_stride=2)),
        ):
            for width in (w, w + 1, w + 5):
                with self.subTest(channels=c, width=width, **kwargs):
                    x1 = make_input((1, c, 3, width), dtype, device, seed=width)
                    x2 = make_input((1, c, 3, width), dtype, device, seed=width + 1)
                    self.check_forward(x1, x2, (1, 4), kwargs, dtype)
                    self.check_backward(x1, x2, (1, 4), kwargs, dtype)

    @dtypes(torch.float64, torch.float32)
    def test_every_argument_alone(self, device, dtype):
        # One non-default argument at a time, on a fixed input.
        x1 = make_input((2, 4, 7, 9), dtype, device, seed=0)
        x2 = make_input((2, 4, 7, 9), dtype, device, seed=1)
        cases = [
            (0, {}),
            (3, {}),
            ((1, 3), {}),
            (2, dict(kernel_size=3)),
            (2, dict(kernel_size=(1, 3))),
            (2, dict(stride=2)),
            (2, dict(stride=(3, 1))),
            (2, dict(padding=2)),
            (2, dict(padding=(0, 3))),
            (1, dict(dilation=2, kernel_size=2)),
            (1, dict(dilation=(1, 3), kernel_size=3)),
            (4, dict(displacement_stride=2)),
            (5, dict(displacement_stride=(2, 3))),
            (4, dict(displacement_stride=3)),  # 4 // 3: {-3, 0, 3}
            (2, dict(groups=2)),
            (2, dict(groups=4)),
            (2, dict(scale=0.25)),
            (2, dict(scale=0.0)),
            (2, dict(scale=-3.0)),
            ((0, 0), dict(min_displacement=(0, -4))),
            ((0, 4), dict(min_displacement=(0, 0))),
            ((-1, -2), dict(min_displacement=(-3, -5))),
            ((3, 4), dict(min_displacement=(1, 2))),
            (3, dict(min_displacement=-1, displacement_stride=2)),  # {-1, 1, 3}
            (4, dict(min_displacement=-4, displacement_stride=3)),  # {-4, -1, 2}
            (6, dict(padding=1)),  # displacements larger than the image
            # Negative strides: the same walk from the top, in that order.
            (2, dict(displacement_stride=-1)),  # {2, 1, ..., -2}
            (5, dict(displacement_stride=(-2, 3))),  # {4, 2, ..., -4} x {-3, 0, 3}
            ((0, 0), dict(min_displacement=(0, -4), displacement_stride=(1, -1))),
            (3, dict(min_displacement=-1, displacement_stride=-2)),  # {3, 1, -1}
            (4, dict(min_displacement=-4, displacement_stride=-3)),  # {4, 1, -2}
            ((2, 3), dict(min_displacement=(-2, -3), displacement_stride=(-1, 2))),
        ]
        for max_disp, kwargs in cases:
            with self.subTest(max_displacement=max_disp, **kwargs):
                self.check_forward(x1, x2, max_disp, kwargs, dtype)
                self.check_backward(x1, x2, max_disp, kwargs, dtype)

    def test_output_channel_order(self, device):
        # Channel g*D + a*Kx + b: group major, then vertical, horizontal fastest.
        # input1 = 1 at one pixel of channel c, input2 = one-hot at a displaced
        # pixel: exactly one output element is non-zero.
        c, h, w, groups = 4, 7, 8, 2
        dys, dxs = displacements((2, 3), None, (1, 1))
        for channel, (dy, dx) in (
            (0, (0, 0)),
            (1, (-2, 3)),
            (2, (1, -1)),
            (3, (2, -3)),
        ):
            x1 = torch.zeros(1, c, h, w, dtype=torch.float64, device=device)
            x2 = torch.zeros_like(x1)
            x1[0, channel, 3, 3] = 1.0
            x2[0, channel, 3 + dy, 3 + dx] = 2.0
            g = channel // (c // groups)
            for steps in ((1, 1), (-1, 1), (1, -1), (-1, -1)):
                # A negative step reverses its axis: displacement dy is at
                # position Ky - 1 - (its ascending position).
                out = F.correlation(
                    x1, x2, (2, 3), displacement_stride=steps, groups=groups
                )
                a = dys.index(dy) if steps[0] > 0 else len(dys) - 1 - dys.index(dy)
                b = dxs.index(dx) if steps[1] > 0 else len(dxs) - 1 - dxs.index(dx)
                index = g * len(dys) * len(dxs) + a * len(dxs) + b
                expected = torch.zeros_like(out)
                expected[0, index, 3, 3] = 2.0
                self.assertEqual(out, expected, atol=0, rtol=0, msg=str(steps))

    @dtypes(*ALL_DTYPES)
    def test_descending_order(self, device, dtype):
        # A negative displacement_stride walks its axis from the top down:
        # against the reference in every layout, forward and backward, and
        # equal to the ascending call over the same set with the channels
        # reversed (bit for bit: the kernels sum in the same order).
        cases = [
            # GwcNet: disparities 0..D-1 as channel g * D + d.
            (
                (2, 8, 5, 19),
                (0, 0),
                dict(min_displacement=(0, -6), displacement_stride=(1, -1), groups=4),
                ((0, 0), dict(min_displacement=(0, -6), groups=4)),
            ),
            # 2-D, both axes; kernel, padding (the generic paths).
            (
                (1, 3, 6, 9),
                2,
                dict(displacement_stride=(-1, -2), kernel_size=3, padding=1),
                (2, dict(displacement_stride=(1, 2), kernel_size=3, padding=1)),
            ),
            # Ranges that are not a multiple of the step: {3, 1, -1} and
            # {7, 4, 1}, unbatched.
            (
                (3, 8, 12),
                (3, 7),
                dict(min_displacement=(-2, 0), displacement_stride=(-2, -3)),
                ((3, 7), dict(min_displacement=(-1, 1), displacement_stride=(2, 3))),
            ),
        ]
        for shape, max_disp, kwargs, (asc_max, asc_kwargs) in cases:
            steps = kwargs["displacement_stride"]
            dys, dxs = displacements(max_disp, kwargs.get("min_displacement"), steps)
            # The (Ky, Kx) dimensions of (..., G, Ky, Kx, H, W) that descend.
            flip = [dim for dim, step in zip((-4, -3), steps) if step < 0]

            def reverse(t, dys=dys, dxs=dxs, flip=flip):
                # Channel g * D + a * Kx + b with the descending axes reversed.
                unflat = t.unflatten(-3, (-1, len(dys), len(dxs)))
                return unflat.flip(flip).flatten(-5, -3)

            for layout in LAYOUTS:
                with self.subTest(shape=shape, layout=layout, **kwargs):
                    x1 = relayout(make_input(shape, dtype, device, seed=0), layout)
                    x2 = relayout(make_input(shape, dtype, device, seed=1), layout)
                    out = self.check_forward(x1, x2, max_disp, kwargs, dtype)
                    ascending = F.correlation(x1, x2, asc_max, **asc_kwargs)
                    self.assertEqual(out, reverse(ascending), atol=0, rtol=0)
                    go = relayout(make_input(out.shape, dtype, device, seed=2), layout)
                    self.check_backward(x1, x2, max_disp, kwargs, dtype, go)
                    a1 = x1.detach().requires_grad_()
                    a2 = x2.detach().requires_grad_()
                    got = torch.autograd.grad(
                        F.correlation(a1, a2, max_disp, **kwargs), (a1, a2), go
                    )
                    want = torch.autograd.grad(
                        F.correlation(a1, a2, asc_max, **asc_kwargs),
                        (a1, a2),
                        reverse(go),
                    )
                    self.assertEqual(got, want, atol=0, rtol=0)

    @dtypes(*ALL_DTYPES)
    def test_unbatched(self, device, dtype):
        x1 = make_input((3, 6, 7), dtype, device, seed=0)
        x2 = make_input((3, 6, 7), dtype, device, seed=1)
        kwargs = dict(kernel_size=2, padding=1, groups=3, scale=0.5)
        out = self.check_forward(x1, x2, 2, kwargs, dtype)
        batched = F.correlation(x1.unsqueeze(0), x2.unsqueeze(0), 2, **kwargs)
        self.assertEqual(out, batched[0], atol=0, rtol=0)
        self.check_backward(x1, x2, 2, kwargs, dtype)

    @dtypes(*ALL_DTYPES)
    def test_large_batch(self, device, dtype):
        shape = (33, 3, 5, 6)
        x1 = make_input(shape, dtype, device, seed=0)
        x2 = make_input(shape, dtype, device, seed=1)
        kwargs = dict(kernel_size=3, padding=1, scale=1 / 3)
        self.check_forward(x1, x2, 2, kwargs, dtype)
        self.check_backward(x1, x2, 2, kwargs, dtype)

    @dtypes(torch.float32, torch.float64)
    def test_many_channels(self, device, dtype):
        # Long channel dot products (vectorized paths, tails).
        for c in (1, 7, 8, 17, 64, 131):
            with self.subTest(channels=c):
                x1 = make_input((2, c, 5, 6), dtype, device, seed=c)
                x2 = make_input((2, c, 5, 6), dtype, device, seed=c + 1)
                self.check_forward(x1, x2, 2, dict(scale=1 / c), dtype)
                self.check_backward(x1, x2, 2, dict(scale=1 / c), dtype)

    def test_special_values(self, device):
        # inf and NaN propagate like an explicit sum of products.
        x1 = make_input((1, 2, 4, 4), torch.float32, device, seed=0)
        x2 = make_input((1, 2, 4, 4), torch.float32, device, seed=1)
        x1[0, 0, 1, 1] = float("nan")
        out = F.correlation(x1, x2, 1)
        expected = correlation_reference(x1.cpu(), x2.cpu(), 1)
        self.assertEqual(out.isnan().cpu(), expected.isnan())

    @dtypes(torch.float32, torch.float64)
    def test_rows_read_in_place(self, device, dtype):
        # Float and double rows with unit column stride are read straight
        # from the inputs on CPU (forward and backward): vectors across
        # either edge of the image
        # (padding, displacements past it) load only their lanes inside it.
        # Widths below, at and around the vector sizes, displacement ranges
        # wider than the image, channel strides of a slice.
        for width in (1, 3, 8, 15, 16, 17, 40):
            for kwargs in (
                dict(padding=(0, 2), kernel_size=3, dilation=(1, 2)),
                dict(min_displacement=(-1, -width - 3), scale=0.5),
                dict(padding=(1, 3), displacement_stride=(1, 3), groups=2),
            ):
                with self.subTest(width=width, **kwargs):
                    base1 = make_input((2, 8, 5, width), dtype, device, seed=width)
                    base2 = make_input((2, 8, 5, width), dtype, device, seed=width + 1)
                    x1, x2 = base1[:, 1::2], base2[:, ::2]
                    self.assertEqual(x1.stride(3), 1)
                    self.check_forward(x1, x2, (1, width + 2), kwargs, dtype)
                    self.check_backward(x1, x2, (1, width + 2), kwargs, dtype)

    @dtypes(torch.float64, torch.float32)
    def test_displacements_far_outside_the_image(self, device, dtype):
        # Displacement ranges far wider than the image are valid: the
        # displacements that land outside it read zeros. Their cost must not
        # grow with the range (buffers sized by it would need tens of GiB
        # here), and the values are known in closed form: with kernel_size 1
        # only the zero displacement reads inside the image.
        x1 = make_input((1, 4, 32, 8), dtype, device, seed=0, requires_grad=True)
        x2 = make_input((1, 4, 32, 8), dtype, device, seed=1, requires_grad=True)
        dot = (x1 * x2).sum(1)
        far = 2**27 - 31
        cases = [
            # (max_displacement, kwargs, index of the zero displacement or None)
            ((0, far), dict(min_displacement=(0, 0), displacement_stride=(1, far)), 0),
            (
                (far, 0),
                dict(min_displacement=(-far, 0), displacement_stride=(far, 1)),
                1,
            ),
            ((0, -1000), dict(min_displacement=(0, -1010)), None),
            ((far, far), dict(min_displacement=(far - 1, far - 2)), None),
        ]
        for max_disp, kwargs, zero in cases:
            with self.subTest(max_displacement=max_disp, **kwargs):
                out = F.correlation(x1, x2, max_disp, **kwargs)
                go = torch.randn(
                    out.shape, generator=torch.Generator().manual_seed(2), dtype=dtype
                ).to(device)
                g1, g2 = torch.autograd.grad(out, (x1, x2), go)
                expected = torch.zeros_like(out)
                e1, e2 = torch.zeros_like(x1), torch.zeros_like(x2)
                if zero is not None:
                    expected[:, zero] = dot
                    e1 = go[:, zero : zero + 1] * x2
                    e2 = go[:, zero : zero + 1] * x1
                self.assertEqual(out, expected)
                self.assertEqual(g1, e1)
                self.assertEqual(g2, e2)

    # ------------------------------------------------------- empty inputs

    @dtypes(*ALL_DTYPES)
    def test_empty_batch(self, device, dtype):
        for memory_format in (torch.contiguous_format, torch.channels_last):
            with self.subTest(memory_format=memory_format):
                x1 = make_input((0, 4, 5, 6), dtype, device, seed=0)
                x2 = make_input((0, 4, 5, 6), dtype, device, seed=1)
                x1 = x1.contiguous(memory_format=memory_format).requires_grad_()
                x2 = x2.contiguous(memory_format=memory_format).requires_grad_()
                out = F.correlation(x1, x2, 2, kernel_size=3, groups=2, stride=2)
                self.assertEqual(out.shape, (0, 50, 2, 2))
                self.assertEqual(out.dtype, dtype)
                out.sum().backward()
                self.assertEqual(x1.grad.shape, x1.shape)
                self.assertEqual(x2.grad.shape, x2.shape)

    def test_zero_channels(self, device):
        # An empty sum: the output is all zeros, and so are the gradients.
        x1 = torch.randn(2, 0, 5, 6, device=device, requires_grad=True)
        x2 = torch.randn(2, 0, 5, 6, device=device, requires_grad=True)
        out = F.correlation(x1, x2, 1)
        self.assertEqual(out, torch.zeros(2, 9, 5, 6, device=device), atol=0, rtol=0)
        out.sum().backward()
        self.assertEqual(x1.grad.shape, x1.shape)
        self.assertEqual(x2.grad.shape, x2.shape)

    # ---------------------------------------------------- memory layouts

    @dtypes(*ALL_DTYPES)
    @parametrize("which", ["input1", "input2", "both"])
    def test_channels_last(self, device, dtype, which):
        shape = (2, 6, 7, 9)
        x1 = make_input(shape, dtype, device, seed=0)
        x2 = make_input(shape, dtype, device, seed=1)
        kwargs = dict(kernel_size=3, padding=1, groups=2, stride=(1, 2))
        expected = F.correlation(x1, x2, 2, **kwargs)
        self.assertTrue(expected.is_contiguous())
        cl1 = (
            x1.contiguous(memory_format=torch.channels_last)
            if which != "input2"
            else x1
        )
        cl2 = (
            x2.contiguous(memory_format=torch.channels_last)
            if which != "input1"
            else x2
        )
        out = self.check_forward(cl1, cl2, 2, kwargs, dtype)
        # The output follows input1's suggested memory format, like conv2d.
        if which == "input2":
            self.assertTrue(out.is_contiguous())
        else:
            self.assertTrue(out.is_contiguous(memory_format=torch.channels_last))
        # Same values as the contiguous call (bit-identical is not required,
        # the reduction order may differ; tolerances as for the reference).
        ref, bound = reference_forward(x1, x2, 2, kwargs)
        self.assertCloseToReference(expected, ref, bound, dtype)
        self.check_backward(cl1, cl2, 2, kwargs, dtype)
        # Gradients of a full backward (grad_output expanded from a sum).
        a1, a2 = cl1.detach().requires_grad_(), cl2.detach().requires_grad_()
        F.correlation(a1, a2, 2, **kwargs).sum().backward()
        (e1, e2), (b1, b2) = reference_backward(
            x1, x2, torch.ones(expected.shape), 2, kwargs
        )
        self.assertCloseToReference(a1.grad, e1, b1, dtype, "grad_input1")
        self.assertCloseToReference(a2.grad, e2, b2, dtype, "grad_input2")

    @dtypes(*ALL_DTYPES)
    def test_non_contiguous(self, device, dtype):
        base1 = make_input((3, 9, 8, 11), dtype, device, seed=0)
        base2 = make_input((3, 9, 8, 11), dtype, device, seed=1)
        views = {
            "sliced": (base1[::2, 1::2, 1:-1, ::2], base2[1:, 5:9, 2:8, 3:9]),
            "transposed": (base1[:, :4].transpose(2, 3), base2[:, 4:8].transpose(2, 3)),
            "permuted": (
                base1[:2, :4, :5, :5].permute(1, 0, 3, 2),
                base2[:2, :4, :5, :5].permute(0, 1, 3, 2).transpose(0, 1),
            ),
            "expanded": (
                base1[:1, :4, :5, :6].expand(3, 4, 5, 6),
                base2[:, :4, :5, :1].expand(3, 4, 5, 6),
            ),
            "unbatched": (base1[0, :4].transpose(1, 2), base2[2, 1:5].transpose(1, 2)),
        }
        kwargs = dict(kernel_size=(2, 3), padding=(1, 0), groups=2, scale=0.5)
        for name, (x1, x2) in views.items():
            with self.subTest(view=name, shape=tuple(x1.shape)):
                self.assertEqual(x1.shape, x2.shape)
                self.assertFalse(x1.is_contiguous() or x2.is_contiguous())
                out = self.check_forward(x1, x2, 1, kwargs, dtype)
                contiguous = F.correlation(
                    x1.contiguous(), x2.contiguous(), 1, **kwargs
                )
                self.assertEqual(out, contiguous, atol=0, rtol=0)
                self.check_backward(x1, x2, 1, kwargs, dtype)

    @dtypes(torch.float64, torch.float32)
    def test_non_contiguous_grad_output(self, device, dtype):
        x1 = make_input((2, 4, 6, 7), dtype, device, seed=0)
        x2 = make_input((2, 4, 6, 7), dtype, device, seed=1)
        kwargs = dict(kernel_size=2, padding=1)
        out_shape = output_shape(x1.shape, 1, kwargs)
        grads = {
            # What out.sum().backward() produces: a stride-0 expanded tensor.
            "expanded": torch.ones((), dtype=dtype, device=device).expand(out_shape),
            "channels_last": make_input(out_shape, dtype, device, seed=2).contiguous(
                memory_format=torch.channels_last
            ),
            "transposed": make_input(
                out_shape[:2] + out_shape[:1:-1], dtype, device, seed=3
            ).transpose(2, 3),
        }
        for name, grad_output in grads.items():
            with self.subTest(grad_output=name):
                self.assertEqual(grad_output.shape, out_shape)
                self.check_backward(x1, x2, 1, kwargs, dtype, grad_output=grad_output)

    # ----------------------------------------------------------- autograd

    @parametrize("requires_grad", ["input1", "input2"])
    def test_single_input_requires_grad(self, device, requires_grad):
        x1 = make_input((2, 4, 5, 6), torch.float64, device, seed=0)
        x2 = make_input((2, 4, 5, 6), torch.float64, device, seed=1)
        kwargs = dict(kernel_size=3, padding=1, groups=2, displacement_stride=2)
        x1.requires_grad_(requires_grad == "input1")
        x2.requires_grad_(requires_grad == "input2")
        out = F.correlation(x1, x2, 2, **kwargs)
        self.assertTrue(out.requires_grad)
        g = torch.randn_like(out)
        out.backward(g)
        (e1, e2), (b1, b2) = reference_backward(x1, x2, g, 2, kwargs)
        if requires_grad == "input1":
            self.assertIsNone(x2.grad)
            self.assertCloseToReference(x1.grad, e1, b1, torch.float64)
        else:
            self.assertIsNone(x1.grad)
            self.assertCloseToReference(x2.grad, e2, b2, torch.float64)

    def test_backward_op_output_mask(self, device):
        x1 = make_input((2, 4, 5, 6), torch.float64, device, seed=0)
        x2 = make_input((2, 4, 5, 6), torch.float64, device, seed=1)
        kwargs = dict(kernel_size=[3, 3], padding=[1, 1], groups=2)
        g = make_input((2, 50, 5, 6), torch.float64, device, seed=2)
        (e1, e2), (b1, b2) = reference_backward(x1, x2, g, 2, kwargs)
        args = (None, *backward_args(2, kwargs))
        op = torch.ops.aten.correlation_backward
        both = op(g, x1, x2, *args, [True, True, False])
        self.assertCloseToReference(both[0], e1, b1, torch.float64)
        self.assertCloseToReference(both[1], e2, b2, torch.float64)
        first = op(g, x1, x2, *args, [True, False, False])
        self.assertEqual(first[0], both[0], atol=0, rtol=0)
        self.assertIsNone(first[1])
        second = op(g, x1, x2, *args, [False, True, False])
        self.assertIsNone(second[0])
        self.assertEqual(second[1], both[1], atol=0, rtol=0)
        neither = op(g, x1, x2, *args, output_mask=[False, False, False])
        self.assertIsNone(neither[0])
        self.assertIsNone(neither[1])

    def check_small_configs(self, device, check):
        """``check(fn, (x1, x2))`` (a gradcheck) holds for every call of
        SMALL_CONFIGS, fn being the call as a function of its inputs."""
        for shape, max_disp, kwargs in SMALL_CONFIGS:
            with self.subTest(shape=shape, max_displacement=max_disp, **kwargs):
                x1 = make_input(
                    shape, torch.float64, device, seed=0, requires_grad=True
                )
                x2 = make_input(
                    shape, torch.float64, device, seed=1, requires_grad=True
                )
                self.assertTrue(
                    check(
                        lambda a, b: F.correlation(a, b, max_disp, **kwargs), (x1, x2)
                    )
                )

    def test_gradcheck(self, device):
        self.check_small_configs(device, torch.autograd.gradcheck)

    def test_gradgradcheck(self, device):
        self.check_small_configs(device, torch.autograd.gradgradcheck)

    def test_double_backward_vs_reference(self, device):
        # d/dx1 <grad_input2(x1, x2, g), v>, through both implementations.
        shape, max_disp, kwargs = SMALL_CONFIGS[2]
        results = []
        for fn in (F.correlation, correlation_reference):
            x1 = make_input(shape, torch.float64, device, seed=0, requires_grad=True)
            x2 = make_input(shape, torch.float64, device, seed=1, requires_grad=True)
            out = fn(x1, x2, max_disp, **kwargs)
            g = make_input(out.shape, torch.float64, device, seed=2, requires_grad=True)
            v = make_input(shape, torch.float64, device, seed=3)
            (g2,) = torch.autograd.grad(out, x2, g, create_graph=True)
            results.append(torch.autograd.grad((g2 * v).sum(), (x1, g)))
        for actual, expected in zip(*results):
            self.assertEqual(actual, expected, atol=1e-12, rtol=1e-10)

    def test_forward_ad(self, device):
        self.check_small_configs(device, forward_ad_gradcheck)

    def test_jvp_bilinear(self, device):
        # The op is bilinear: its JVP is corr(t1, x2) + corr(x1, t2), exactly.
        shape, max_disp, kwargs = SMALL_CONFIGS[1]
        x1, x2, t1, t2 = (
            make_input(shape, torch.float64, device, seed=s) for s in range(4)
        )

        def fn(a, b):
            return F.correlation(a, b, max_disp, **kwargs)

        out, tangent = torch.func.jvp(fn, (x1, x2), (t1, t2))
        self.assertEqual(out, fn(x1, x2), atol=0, rtol=0)
        expected = correlation_reference(
            t1, x2, max_disp, **kwargs
        ) + correlation_reference(x1, t2, max_disp, **kwargs)
        self.assertEqual(tangent, expected.to(device), atol=1e-12, rtol=1e-10)
        # One tangent only (the other input is a constant).
        _, tangent1 = torch.func.jvp(lambda a: fn(a, x2), (x1,), (t1,))
        self.assertEqual(tangent1, fn(t1, x2), atol=1e-12, rtol=1e-10)

    # ------------------------------------------------ operator registration

    def test_functional_is_installed(self, device):
        self.assertIs(F.correlation, torch_correlation.correlation)  # [preview only]
        # The generated binding itself, with its docstring (no Python wrapper).
        self.assertIs(F.correlation, torch._C._nn.correlation)
        self.assertTrue(hasattr(torch.ops.aten, "correlation"))
        self.assertTrue(hasattr(torch.ops.aten, "correlation_backward"))
        x1 = make_input((1, 2, 4, 4), torch.float32, device, seed=0)
        x2 = make_input((1, 2, 4, 4), torch.float32, device, seed=1)
        direct = torch.ops.aten.correlation(x1, x2, [1, 1], kernel_size=[1, 1])
        self.assertEqual(direct, F.correlation(x1, x2, 1), atol=0, rtol=0)
        self.assertEqual(
            torch._C._nn.correlation(x1, x2, 1),
            F.correlation(x1, x2, 1),
            atol=0,
            rtol=0,
        )

    def test_torch_function_override(self, device):
        calls = []

        class Wrapped(torch.Tensor):
            @classmethod
            def __torch_function__(cls, func, types, args=(), kwargs=None):
                if func is F.correlation:
                    calls.append((args, kwargs))
                with torch._C.DisableTorchFunctionSubclass():
                    return func(*args, **(kwargs or {}))

        x1 = make_input((1, 2, 4, 4), torch.float32, device, seed=0)
        x2 = make_input((1, 2, 4, 4), torch.float32, device, seed=1)
        out = F.correlation(x1.as_subclass(Wrapped), x2, 1, groups=2, scale=0.5)
        self.assertEqual(len(calls), 1)
        self.assertEqual(calls[0][1]["groups"], 2)
        self.assertEqual(calls[0][1]["scale"], 0.5)
        self.assertEqual(
            out.as_subclass(torch.Tensor), F.correlation(x1, x2, 1, groups=2, scale=0.5)
        )

    def test_opcheck(self, device):
        samples = [
            ((1, 2, 4, 5), [1, 1], {}),
            (
                (2, 4, 6, 5),
                [2, 1],
                dict(
                    kernel_size=[3, 3],
                    padding=[1, 1],
                    stride=[2, 1],
                    groups=2,
                    scale=0.5,
                ),
            ),
            (
                (3, 5, 6),
                [0, 0],
                dict(
                    min_displacement=[0, -3],
                    dilation=[1, 2],
                    kernel_size=[1, 2],
                    displacement_stride=[1, 2],
                ),
            ),
        ]
        for shape, max_disp, kwargs in samples:
            with self.subTest(shape=shape, max_displacement=max_disp, **kwargs):
                x1 = make_input(
                    shape, torch.float32, device, seed=0, requires_grad=True
                )
                x2 = make_input(
                    shape, torch.float32, device, seed=1, requires_grad=True
                )
                torch.library.opcheck(
                    torch.ops.aten.correlation.default, (x1, x2, max_disp), kwargs
                )
                out = torch.ops.aten.correlation(x1, x2, max_disp, **kwargs)
                g = torch.randn_like(out)
                for mask in (
                    [True, True, False],
                    [True, False, False],
                    [False, True, False],
                ):
                    torch.library.opcheck(
                        torch.ops.aten.correlation_backward.default,
                        (
                            g,
                            x1.detach(),
                            x2.detach(),
                            None,
                            *backward_args(max_disp, kwargs),
                            mask,
                        ),
                    )

    @dtypes(torch.float64, torch.float32)
    def test_out_variant(self, device, dtype):
        x1 = make_input((2, 4, 6, 7), dtype, device, seed=0)
        x2 = make_input((2, 4, 6, 7), dtype, device, seed=1)
        kwargs = dict(kernel_size=[2, 2], padding=[1, 0], groups=2, scale=0.5)
        expected = F.correlation(x1, x2, [1, 2], **kwargs)
        out = torch.empty_like(expected)
        result = torch.ops.aten.correlation.out(x1, x2, [1, 2], out=out, **kwargs)
        self.assertIs(result, out)
        self.assertEqual(out, expected, atol=0, rtol=0)
        # An empty out is resized.
        out = torch.empty(0, dtype=dtype, device=device)
        torch.ops.aten.correlation.out(x1, x2, [1, 2], out=out, **kwargs)
        self.assertEqual(out, expected, atol=0, rtol=0)
        # The backward's out variant. Like every autogen'd out variant of a
        # function with an output_mask, it needs all results defined, so it
        # runs with an offset (whose gradient exists) and the full mask.
        g = torch.randn_like(expected)
        offset = torch.rand(2, 2, *expected.shape[-2:], dtype=dtype, device=device)
        args = (offset, *backward_args([1, 2], kwargs))
        mask = [True, True, True]
        e1, e2, e3 = torch.ops.aten.correlation_backward(g, x1, x2, *args, mask)
        o1, o2, o3 = (
            torch.empty_like(x1),
            torch.empty_like(x2),
            torch.empty_like(offset),
        )
        r1, r2, r3 = torch.ops.aten.correlation_backward.out(
            g, x1, x2, *args, mask, out0=o1, out1=o2, out2=o3
        )
        self.assertIs(r1, o1)
        self.assertIs(r2, o2)
        self.assertIs(r3, o3)
        self.assertEqual(o1, e1, atol=0, rtol=0)
        self.assertEqual(o2, e2, atol=0, rtol=0)
        self.assertEqual(o3, e3, atol=0, rtol=0)

    # ------------------------------------------------------ determinism

    @dtypes(torch.float32, torch.float16)
    def test_deterministic(self, device, dtype):
        shape = (4, 16, 12, 13)
        x1 = make_input(shape, dtype, device, seed=0)
        x2 = make_input(shape, dtype, device, seed=1)
        kwargs = dict(kernel_size=3, padding=1, groups=2, scale=1 / 16)

        def run():
            a, b = x1.detach().requires_grad_(), x2.detach().requires_grad_()
            out = F.correlation(a, b, 3, **kwargs)
            g = torch.linspace(-1, 1, out.numel(), device=device, dtype=dtype).view_as(
                out
            )
            out.backward(g)
            return out, a.grad, b.grad

        first = run()
        # Deterministic algorithms mode must not reject the op.
        with DeterministicGuard(True):
            second = run()
        for a, b in zip(first, second):
            self.assertEqual(a, b, atol=0, rtol=0)

    @onlyCPU
    def test_lower_cpu_capabilities(self, device):
        # The CPU kernels are compiled once per capability (DEFAULT, AVX2,
        # AVX512) and the best one the machine has is picked at run time, so
        # the rest of this suite only runs that one. Rerun the random-config
        # tests and the in-place rows' edge cases (masked loads differ per
        # capability) with each lower capability forced by ATEN_CPU_CAPABILITY.
        order = ["default", "avx2", "avx512"]
        best = torch.backends.cpu.get_cpu_capability().lower()
        if best not in order or best == "default":
            self.skipTest(f"no lower CPU capability than {best!r} to test")
        for capability in order[: order.index(best)]:
            env = dict(os.environ, ATEN_CPU_CAPABILITY=capability)
            probe = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import torch; print(torch.backends.cpu.get_cpu_capability())",
                ],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            self.assertEqual(probe.stdout.strip().lower(), capability)
            run = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    os.path.abspath(__file__),
                    "-k",
                    "(random_configs_cpu and (float32 or bfloat16) and not large)"
                    " or rows_read_in_place_cpu",
                ],
                env=env,
                capture_output=True,
                text=True,
            )
            with self.subTest(capability=capability):
                self.assertEqual(
                    run.returncode, 0, run.stdout[-4000:] + run.stderr[-2000:]
                )
                self.assertIn("6 passed", run.stdout)

    @onlyCPU
    @dtypes(torch.float64, torch.float32, torch.bfloat16)
    def test_channel_chunks(self, device, dtype):
        # Many channels on a small image: the backward's row caches would
        # outgrow their budget (a share of grad_output and the gradients), so
        # strips of rows walk the channels in chunks. Tails of chunks and of
        # L1 pieces, several strips, kernel rows and columns. The caches
        # serve bfloat16 and channels_last rows (float and double NCHW rows
        # are read in place: the same call must agree with them); the
        # chunking depends on the thread count, the results must not.
        shape = (1, 200, 22, 19)
        x1 = make_input(shape, dtype, device, seed=0)
        x2 = make_input(shape, dtype, device, seed=1)
        kwargs = dict(kernel_size=(3, 2), padding=1, scale=1 / 200)
        threads = torch.get_num_threads()
        results = []
        try:
            for n in (1, 2, 3):
                torch.set_num_threads(n)
                for fmt in (torch.contiguous_format, torch.channels_last):
                    with self.subTest(threads=n, memory_format=fmt):
                        a = x1.contiguous(memory_format=fmt)
                        b = x2.contiguous(memory_format=fmt)
                        out = self.check_forward(a, b, (2, 3), kwargs, dtype)
                        self.check_backward(a, b, (2, 3), kwargs, dtype)
                        if fmt == torch.contiguous_format:
                            a, b = (
                                a.detach().requires_grad_(),
                                b.detach().requires_grad_(),
                            )
                            g = torch.linspace(-1, 1, out.numel(), dtype=dtype).view_as(
                                out
                            )
                            F.correlation(a, b, (2, 3), **kwargs).backward(g)
                            results.append((out, a.grad, b.grad))
        finally:
            torch.set_num_threads(threads)
        for other in results[1:]:
            for a, b in zip(results[0], other):
                self.assertEqual(a, b, atol=0, rtol=0)

    @onlyCPU
    @dtypes(torch.float32, torch.bfloat16)
    def test_thread_count_invariance(self, device, dtype):
        # The result does not depend on how the work is split between threads.
        shape = (3, 24, 20, 37)
        x1 = make_input(shape, dtype, device, seed=0)
        x2 = make_input(shape, dtype, device, seed=1)
        kwargs = dict(kernel_size=3, padding=1, groups=2, scale=1 / 24)

        def run():
            a, b = x1.detach().requires_grad_(), x2.detach().requires_grad_()
            out = F.correlation(a, b, (2, 3), **kwargs)
            g = torch.linspace(-1, 1, out.numel(), dtype=dtype).view_as(out)
            out.backward(g)
            return out, a.grad, b.grad

        threads = torch.get_num_threads()
        results = []
        try:
            for n in (1, 2, 3, 8):
                torch.set_num_threads(n)
                results.append(run())
        finally:
            torch.set_num_threads(threads)
        for other in results[1:]:
            for a, b in zip(results[0], other):
                self.assertEqual(a, b, atol=0, rtol=0)
        expected, bound = reference_forward(x1, x2, (2, 3), kwargs)
        self.assertCloseToReference(results[0][0], expected, bound, dtype)

    # ------------------------------------------------------ model recipes

    def test_docstring_example(self, device):
        torch.manual_seed(0)
        f1 = torch.randn(2, 32, 24, 32, device=device)
        f2 = torch.roll(f1, shifts=(1, -2), dims=(2, 3))  # f2[y, x] = f1[y - 1, x + 2]
        cost = F.correlation(f1, f2, 4, scale=1 / 32)
        self.assertEqual(cost.shape, (2, 81, 24, 32))
        best = cost[:, :, 8:16, 8:24].mean((0, 2, 3)).argmax().item()
        self.assertEqual(divmod(best, 9), (5, 2))

    @dtypes(torch.float64, torch.float32)
    def test_recipe_pwcnet(self, device, dtype):
        n, c, h, w = 2, 8, 9, 10
        f1 = make_input((n, c, h, w), dtype, device, seed=0)
        f2 = make_input((n, c, h, w), dtype, device, seed=1)
        cost = F.correlation(f1, f2, 4, scale=1 / c)
        self.assertEqual(cost.shape, (n, 81, h, w))
        # PWC-Net's cost volume: mean over channels of f1 * (f2 shifted), for
        # dy, dx in [-4, 4], dy major.
        expected = torch.stack(
            [
                (f1 * shifted(f2, dy, dx)).mean(1)
                for dy in range(-4, 5)
                for dx in range(-4, 5)
            ],
            dim=1,
        )
        self.assertEqual(cost, expected)

    def test_recipe_flownetc(self, device):
        n, c, h, w = 1, 6, 10, 12
        f1 = make_input((n, c, h, w), torch.float64, device, seed=0)
        f2 = make_input((n, c, h, w), torch.float64, device, seed=1)
        cost = F.correlation(f1, f2, 20, displacement_stride=2, scale=1 / c)
        self.assertEqual(cost.shape, (n, 441, h, w))
        expected = torch.stack(
            [
                (f1 * shifted(f2, dy, dx)).mean(1)
                for dy in range(-20, 21, 2)
                for dx in range(-20, 21, 2)
            ],
            dim=1,
        )
        self.assertEqual(cost, expected)

    def test_recipe_caffe(self, device):
        # Caffe layer parameters -> correlation arguments, as documented.
        for pad, k, m, s1, s2 in ((4, 1, 4, 1, 2), (3, 3, 2, 2, 1), (5, 3, 4, 1, 2)):
            with self.subTest(
                pad=pad, kernel_size=k, max_displacement=m, stride1=s1, stride2=s2
            ):
                n, c, h, w = 2, 3, 9, 11
                f1 = make_input((n, c, h, w), torch.float64, device, seed=0)
                f2 = make_input((n, c, h, w), torch.float64, device, seed=1)
                cost = F.correlation(
                    f1,
                    f2,
                    m,
                    kernel_size=k,
                    stride=s1,
                    padding=pad - m,
                    displacement_stride=s2,
                    scale=1 / (k * k * c),
                )
                expected = caffe_correlation(f1, f2, pad, k, m, s1, s2)
                self.assertEqual(cost, expected)

    def test_recipe_spatial_correlation_sampler(self, device):
        # spatial-correlation-sampler / mmcv Correlation with kernel_size=1,
        # patch_size=P, dilation_patch=s: out[n, p, q, y, x] =
        # sum_c in1[n, c, y, x] * in2[n, c, y + (p - P//2) s, x + (q - P//2) s].
        n, c, h, w = 2, 5, 8, 9
        f1 = make_input((n, c, h, w), torch.float32, device, seed=0)
        f2 = make_input((n, c, h, w), torch.float32, device, seed=1)
        for patch, dil in ((3, 1), (5, 2), (7, 1)):
            with self.subTest(patch_size=patch, dilation_patch=dil):
                out = F.correlation(f1, f2, (patch // 2) * dil, displacement_stride=dil)
                out = out.view(n, patch, patch, h, w)
                expected = torch.empty(n, patch, patch, h, w, device=device)
                for p in range(patch):
                    for q in range(patch):
                        dy, dx = (p - patch // 2) * dil, (q - patch // 2) * dil
                        expected[:, p, q] = (f1 * shifted(f2, dy, dx)).sum(1)
                self.assertEqual(out, expected)

    @dtypes(torch.float64, torch.float32)
    def test_recipe_gwcnet(self, device, dtype):
        n, c, h, w, groups, disparities = 2, 12, 5, 16, 4, 6
        left = make_input((n, c, h, w), dtype, device, seed=0)
        right = make_input((n, c, h, w), dtype, device, seed=1)
        out = F.correlation(
            left,
            right,
            (0, 0),
            min_displacement=(0, 1 - disparities),
            groups=groups,
            scale=groups / c,
        )
        self.assertEqual(out.shape, (n, groups * disparities, h, w))
        # Ascending: channel g * D + b holds disparity D - 1 - b.
        volume = out.view(n, groups, disparities, h, w).flip(2)
        self.assertEqual(volume, gwcnet_volume(left, right, disparities, groups))
        # Descending horizontal order: channel g * D + d holds disparity d,
        # GwcNet's own layout, with no flip.
        out = F.correlation(
            left,
            right,
            (0, 0),
            min_displacement=(0, 1 - disparities),
            displacement_stride=(1, -1),
            groups=groups,
            scale=groups / c,
        )
        self.assertEqual(
            out.view(n, groups, disparities, h, w),
            gwcnet_volume(left, right, disparities, groups),
        )

    def test_recipe_dispnetc(self, device):
        n, c, h, w, disparities = 2, 6, 4, 12, 5
        left = make_input((n, c, h, w), torch.float64, device, seed=0)
        right = make_input((n, c, h, w), torch.float64, device, seed=1)
        out = F.correlation(
            left, right, (0, 0), min_displacement=(0, 1 - disparities), scale=1 / c
        )
        self.assertEqual(out.shape, (n, disparities, h, w))
        expected = gwcnet_volume(left, right, disparities, 1)[:, 0]
        self.assertEqual(out.flip(1), expected)
        out = F.correlation(
            left,
            right,
            (0, 0),
            min_displacement=(0, 1 - disparities),
            displacement_stride=(1, -1),
            scale=1 / c,
        )
        self.assertEqual(out, expected)

    # -------------------------------------------------------------- CUDA

    @onlyCUDA
    @dtypes(*ALL_DTYPES)
    def test_cuda_matches_cpu(self, device, dtype):
        rng = random.Random(99)
        for case in range(10):
            shape, max_disp, kwargs = random_config(rng)
            with self.subTest(
                case=case, shape=shape, max_displacement=max_disp, **kwargs
            ):
                x1 = make_input(shape, dtype, "cpu", seed=case, requires_grad=True)
                x2 = make_input(
                    shape, dtype, "cpu", seed=case + 100, requires_grad=True
                )
                y1 = x1.detach().to(device).requires_grad_()
                y2 = x2.detach().to(device).requires_grad_()
                out_cpu = F.correlation(x1, x2, max_disp, **kwargs)
                out_cuda = F.correlation(y1, y2, max_disp, **kwargs)
                g = torch.randn_like(out_cpu)
                out_cpu.backward(g)
                out_cuda.backward(g.to(device))
                # Both within the reference's tolerances (so within twice
                # that of each other); summation orders may differ.
                expected, bound = reference_forward(x1, x2, max_disp, kwargs)
                self.assertCloseToReference(out_cpu, expected, bound, dtype)
                self.assertCloseToReference(out_cuda, expected, bound, dtype)
                (e1, e2), (b1, b2) = reference_backward(x1, x2, g, max_disp, kwargs)
                for grad in (x1.grad, y1.grad):
                    self.assertCloseToReference(grad, e1, b1, dtype, "grad_input1")
                for grad in (x2.grad, y2.grad):
                    self.assertCloseToReference(grad, e2, b2, dtype, "grad_input2")

    @onlyCUDA
    def test_cuda_device_mismatch(self, device):
        x1 = torch.randn(1, 2, 4, 4, device=device)
        x2 = torch.randn(1, 2, 4, 4)
        with self.assertRaisesRegex(
            RuntimeError,
            r"correlation\(\): expected input1 and input2 to be on the same device",
        ):
            F.correlation(x1, x2, 1)


instantiate_device_type_tests(TestCorrelation, globals(), only_for=("cpu", "cuda"))


class TestCorrelationErrors(TestCase):
    """Bad input raises a clear error that names the argument."""

    def message(self, exc_type, fn, *args, **kwargs):
        with self.assertRaises(exc_type) as cm:
            fn(*args, **kwargs)
        return str(cm.exception).split("\n")[0]

    def setUp(self):
        super().setUp()
        self.x = torch.randn(2, 4, 5, 6)
        self.y = torch.randn(2, 4, 5, 6)

    def test_ranks(self):
        m = self.message(
            RuntimeError, F.correlation, torch.randn(4, 5), torch.randn(4, 5), 1
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected input1 to be a 3D (C, H, W) or 4D (N, C, H, W) tensor, but got input1 with sizes [4, 5]""",
        )
        m = self.message(
            RuntimeError,
            F.correlation,
            torch.randn(1, 2, 4, 5, 6),
            torch.randn(1, 2, 4, 5, 6),
            1,
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected input1 to be a 3D (C, H, W) or 4D (N, C, H, W) tensor, but got input1 with sizes [1, 2, 4, 5, 6]""",
        )
        m = self.message(
            RuntimeError, F.correlation, torch.randn(()), torch.randn(()), 1
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected input1 to be a 3D (C, H, W) or 4D (N, C, H, W) tensor, but got input1 with sizes []""",
        )

    def test_mismatched_inputs(self):
        m = self.message(
            RuntimeError, F.correlation, self.x, torch.randn(2, 4, 5, 7), 1
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected input1 and input2 to have the same shape, but got input1 with sizes [2, 4, 5, 6] and input2 with sizes [2, 4, 5, 7]""",
        )
        m = self.message(RuntimeError, F.correlation, self.x, torch.randn(4, 5, 6), 1)
        self.assertExpectedInline(
            m,
            """correlation(): expected input1 and input2 to have the same shape, but got input1 with sizes [2, 4, 5, 6] and input2 with sizes [4, 5, 6]""",
        )
        m = self.message(RuntimeError, F.correlation, self.x, self.y.double(), 1)
        self.assertExpectedInline(
            m,
            """correlation(): expected input1 and input2 to have the same dtype, but input1 has Float and input2 has Double""",
        )

    def test_devices(self):
        # A meta tensor stands in for a second device on CPU-only machines.
        meta = torch.randn(2, 4, 5, 6, device="meta")
        m = self.message(RuntimeError, F.correlation, self.x, meta, 1)
        self.assertExpectedInline(
            m,
            """correlation(): expected input1 and input2 to be on the same device, but input1 is on cpu and input2 is on meta""",
        )
        m = self.message(RuntimeError, F.correlation, meta, self.x, 1)
        self.assertExpectedInline(
            m,
            """correlation(): expected input1 and input2 to be on the same device, but input1 is on meta and input2 is on cpu""",
        )

    def test_dtypes(self):
        ints = torch.ones(2, 4, 5, 6, dtype=torch.int64)
        m = self.message(RuntimeError, F.correlation, ints, ints, 1)
        self.assertExpectedInline(
            m,
            """correlation(): expected a floating point dtype (float64, float32, float16 or bfloat16), but got Long""",
        )
        bools = torch.ones(2, 4, 5, 6, dtype=torch.bool)
        m = self.message(RuntimeError, F.correlation, bools, bools, 1)
        self.assertExpectedInline(
            m,
            """correlation(): expected a floating point dtype (float64, float32, float16 or bfloat16), but got Bool""",
        )
        cplx = torch.randn(2, 4, 5, 6, dtype=torch.complex64)
        m = self.message(RuntimeError, F.correlation, cplx, cplx, 1)
        self.assertExpectedInline(
            m,
            """correlation(): expected a floating point dtype (float64, float32, float16 or bfloat16), but got ComplexFloat""",
        )

    def test_layout(self):
        sparse = self.x.to_sparse()
        # The dispatcher's error (NotImplementedError, a RuntimeError); only
        # its first sentence, which names the backend.
        m = self.message(NotImplementedError, F.correlation, sparse, sparse, 1).split(
            "."
        )[0]
        self.assertExpectedInline(
            m,
            """Could not run 'aten::correlation' with arguments from the 'SparseCPU' backend""",
        )

    def test_non_positive_sizes(self):
        x, y = self.x, self.y
        m = self.message(RuntimeError, F.correlation, x, y, 1, kernel_size=0)
        self.assertExpectedInline(
            m,
            """correlation(): expected kernel_size to be positive, but got kernel_size=(0, 0)""",
        )
        m = self.message(RuntimeError, F.correlation, x, y, 1, kernel_size=(1, -2))
        self.assertExpectedInline(
            m,
            """correlation(): expected kernel_size to be positive, but got kernel_size=(1, -2)""",
        )
        m = self.message(RuntimeError, F.correlation, x, y, 1, stride=0)
        self.assertExpectedInline(
            m,
            """correlation(): expected stride to be positive, but got stride=(0, 0)""",
        )
        m = self.message(RuntimeError, F.correlation, x, y, 1, dilation=(0, 1))
        self.assertExpectedInline(
            m,
            """correlation(): expected dilation to be positive, but got dilation=(0, 1)""",
        )
        m = self.message(RuntimeError, F.correlation, x, y, 1, displacement_stride=0)
        self.assertExpectedInline(
            m,
            """correlation(): expected displacement_stride to be nonzero, but got displacement_stride=(0, 0)""",
        )
        # Negative is valid (descending order); zero on one axis is not.
        m = self.message(
            RuntimeError, F.correlation, x, y, 1, displacement_stride=(-1, 0)
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected displacement_stride to be nonzero, but got displacement_stride=(-1, 0)""",
        )
        m = self.message(RuntimeError, F.correlation, x, y, 1, groups=0)
        self.assertExpectedInline(
            m, """correlation(): expected groups to be positive, but got groups=0"""
        )
        m = self.message(RuntimeError, F.correlation, x, y, 1, groups=-2)
        self.assertExpectedInline(
            m, """correlation(): expected groups to be positive, but got groups=-2"""
        )
        m = self.message(RuntimeError, F.correlation, x, y, 1, padding=-1)
        self.assertExpectedInline(
            m,
            """correlation(): expected padding to be non-negative, but got padding=(-1, -1)""",
        )
        m = self.message(RuntimeError, F.correlation, x, y, 1, padding=(0, -3))
        self.assertExpectedInline(
            m,
            """correlation(): expected padding to be non-negative, but got padding=(0, -3)""",
        )

    def test_displacement_ranges(self):
        x, y = self.x, self.y
        m = self.message(RuntimeError, F.correlation, x, y, -1)
        self.assertExpectedInline(
            m,
            """correlation(): expected max_displacement to be non-negative when min_displacement is None, but got max_displacement=(-1, -1)""",
        )
        m = self.message(RuntimeError, F.correlation, x, y, (2, -1))
        self.assertExpectedInline(
            m,
            """correlation(): expected max_displacement to be non-negative when min_displacement is None, but got max_displacement=(2, -1)""",
        )
        m = self.message(RuntimeError, F.correlation, x, y, 1, min_displacement=2)
        self.assertExpectedInline(
            m,
            """correlation(): expected min_displacement <= max_displacement, but got min_displacement=(2, 2) and max_displacement=(1, 1)""",
        )
        m = self.message(
            RuntimeError, F.correlation, x, y, (0, 0), min_displacement=(0, 1)
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected min_displacement <= max_displacement, but got min_displacement=(0, 1) and max_displacement=(0, 0)""",
        )

    def test_groups_divide_channels(self):
        m = self.message(RuntimeError, F.correlation, self.x, self.y, 1, groups=3)
        self.assertExpectedInline(
            m,
            """correlation(): expected the number of channels (4) to be divisible by groups (3)""",
        )
        m = self.message(RuntimeError, F.correlation, self.x, self.y, 1, groups=8)
        self.assertExpectedInline(
            m,
            """correlation(): expected the number of channels (4) to be divisible by groups (8)""",
        )

    def test_empty_output(self):
        x, y = self.x, self.y
        m = self.message(RuntimeError, F.correlation, x, y, 1, kernel_size=6)
        self.assertExpectedInline(
            m,
            """correlation(): expected a non-empty output, but the input of spatial size (5, 6) with kernel_size=(6, 6), dilation=(1, 1) and padding=(0, 0) gives an output of size (0, 1)""",
        )
        m = self.message(
            RuntimeError, F.correlation, x, y, 1, kernel_size=3, dilation=(1, 3)
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected a non-empty output, but the input of spatial size (5, 6) with kernel_size=(3, 3), dilation=(1, 3) and padding=(0, 0) gives an output of size (3, 0)""",
        )
        empty = torch.randn(2, 4, 0, 6)
        m = self.message(RuntimeError, F.correlation, empty, empty, 1)
        self.assertExpectedInline(
            m,
            """correlation(): expected a non-empty output, but the input of spatial size (0, 6) with kernel_size=(1, 1), dilation=(1, 1) and padding=(0, 0) gives an output of size (0, 6)""",
        )
        # Padding can make an output from an empty image... but only zeros.
        out = F.correlation(empty, empty, 1, padding=1)
        self.assertEqual(out, torch.zeros(2, 9, 2, 8), atol=0, rtol=0)

    def test_wrong_pair_lengths(self):
        # The Python binding passes int[2] sequences of any length through;
        # C++ accepts one value (expanded to a pair, as conv2d does) or two.
        x, y = self.x, self.y
        m = self.message(RuntimeError, F.correlation, x, y, 1, kernel_size=(1, 2, 3))
        self.assertExpectedInline(
            m,
            """correlation(): expected kernel_size to be a single int or a pair of ints, but got 3 values: [1, 2, 3]""",
        )
        m = self.message(RuntimeError, F.correlation, x, y, (1, 2, 3))
        self.assertExpectedInline(
            m,
            """correlation(): expected max_displacement to be a single int or a pair of ints, but got 3 values: [1, 2, 3]""",
        )
        m = self.message(RuntimeError, F.correlation, x, y, 1, min_displacement=())
        self.assertExpectedInline(
            m,
            """correlation(): expected min_displacement to be a single int or a pair of ints, but got 0 values: []""",
        )
        m = self.message(RuntimeError, F.correlation, x, y, 1, padding=())
        self.assertExpectedInline(
            m,
            """correlation(): expected padding to be a single int or a pair of ints, but got 0 values: []""",
        )
        m = self.message(
            RuntimeError, torch.ops.aten.correlation, x, y, [1, 1], stride=[1, 2, 3]
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected stride to be a single int or a pair of ints, but got 3 values: [1, 2, 3]""",
        )
        m = self.message(RuntimeError, torch.ops.aten.correlation, x, y, [])
        self.assertExpectedInline(
            m,
            """correlation(): expected max_displacement to be a single int or a pair of ints, but got 0 values: []""",
        )
        # One value means the same value for both axes.
        self.assertEqual(
            F.correlation(
                x, y, (2,), min_displacement=(-1,), kernel_size=(3,), dilation=[2]
            ),
            F.correlation(x, y, 2, min_displacement=-1, kernel_size=3, dilation=2),
            atol=0,
            rtol=0,
        )

    def test_wrong_types(self):
        x, y = self.x, self.y
        m = self.message(TypeError, F.correlation, x, y, 1, kernel_size=1.5)
        self.assertExpectedInline(
            m,
            """correlation(): argument 'kernel_size' must be tuple of ints, not float""",
        )
        m = self.message(TypeError, F.correlation, x, y, 1.0)
        self.assertExpectedInline(
            m,
            """correlation(): argument 'max_displacement' (position 3) must be tuple of ints, not float""",
        )
        m = self.message(TypeError, F.correlation, x, y, 1, groups=2.0)
        self.assertExpectedInline(
            m, """correlation(): argument 'groups' must be int, not float"""
        )
        m = self.message(TypeError, F.correlation, x, y, 1, scale="1")
        self.assertExpectedInline(
            m, """correlation(): argument 'scale' must be float, not str"""
        )
        m = self.message(TypeError, F.correlation, x, [[1.0]], 1)
        self.assertExpectedInline(
            m,
            """correlation(): argument 'input2' (position 2) must be Tensor, not list""",
        )
        m = self.message(TypeError, F.correlation, x, y, None)
        self.assertExpectedInline(
            m,
            """correlation(): argument 'max_displacement' (position 3) must be tuple of ints, not NoneType""",
        )
        m = self.message(TypeError, F.correlation, x, y, 1, 1)
        self.assertExpectedInline(
            m, """correlation() takes 3 positional arguments but 4 were given"""
        )

    def test_backward_checks(self):
        x, y = self.x, self.y
        op = torch.ops.aten.correlation_backward
        args = (None, *backward_args(1, {}))
        g = torch.randn(2, 9, 5, 6)
        m = self.message(
            ValueError, op, torch.randn(2, 9, 5, 5), x, y, *args, [True, True, False]
        )
        self.assertExpectedInline(
            m,
            """correlation_backward(): expected grad_output to have sizes [2, 9, 5, 6], but got [2, 9, 5, 5]""",
        )
        m = self.message(
            ValueError, op, torch.randn(2, 25, 5, 6), x, y, *args, [True, True, False]
        )
        self.assertExpectedInline(
            m,
            """correlation_backward(): expected grad_output to have sizes [2, 9, 5, 6], but got [2, 25, 5, 6]""",
        )
        m = self.message(
            ValueError, op, torch.randn(9, 5, 6), x, y, *args, [True, True, False]
        )
        self.assertExpectedInline(
            m,
            """correlation_backward(): expected grad_output to have sizes [2, 9, 5, 6], but got [9, 5, 6]""",
        )
        m = self.message(RuntimeError, op, g.double(), x, y, *args, [True, True, False])
        self.assertExpectedInline(
            m,
            """correlation_backward(): expected grad_output to have dtype Float, but got Double""",
        )
        m = self.message(RuntimeError, op, g, x, y.double(), *args, [True, True, False])
        self.assertExpectedInline(
            m,
            """correlation(): expected input1 and input2 to have the same dtype, but input1 has Float and input2 has Double""",
        )
        m = self.message(
            RuntimeError,
            op,
            g,
            x,
            y,
            None,
            *backward_args(1, dict(groups=0)),
            [True, True, False],
        )
        self.assertExpectedInline(
            m, """correlation(): expected groups to be positive, but got groups=0"""
        )
        m = self.message(
            RuntimeError,
            op,
            g,
            x,
            y,
            None,
            *backward_args(1, dict(kernel_size=0)),
            [False, True, False],
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected kernel_size to be positive, but got kernel_size=(0, 0)""",
        )


if __name__ == "__main__":
    run_tests()
