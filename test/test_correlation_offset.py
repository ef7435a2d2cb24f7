# Owner(s): ["module: nn"]
"""Tests of ``torch.nn.functional.correlation`` with ``offset=`` (input2
sampled bilinearly at positions moved by a per-location flow).

Every result is compared with ``correlation_offset_reference`` of
``correlation_reference.py``: a float64 implementation that reads the four
bilinear taps with explicit index arithmetic (no ``grid_sample``, nothing
shared with the kernels), itself validated against a scalar loop
(``offset_self_check``). Gradients are compared with that reference's
autograd gradients, the offset gradient also with its explicit
sensitivities ``d out / du`` and ``d out / dv``. The tests are device
generic: the same tests run on CUDA when it is available.

Tolerances are derived as in ``test_correlation.py``: the reference is also
evaluated on ``|input1|``, ``|input2|``, ``|grad_output|`` and the
magnitudes of the tap weights (or of their derivatives), which bounds the
sum of the magnitudes of the summed terms; an accumulation in ``acc``
precision may be off by ``k * eps(acc) * bound``, and float16 and bfloat16
results lose one more rounding to their dtype.
"""

import functools
import math
import os
import random
import sys

import torch
import torch.nn.functional as F
from torch.testing._internal.common_device_type import (
    dtypes,
    instantiate_device_type_tests,
    onlyCPU,
)
from torch.testing._internal.common_utils import (
    DeterministicGuard,
    parametrize,
    run_tests,
    TestCase,
)

import torch_correlation  # noqa: F401  (registers aten::correlation)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from correlation_reference import (
    abs_scale,
    ACC_RTOL,
    ALL_DTYPES,
    backward_args,
    correlation_offset_reference,
    correlation_offset_sensitivities,
    displacements,
    forward_ad_gradcheck,
    LAYOUTS,
    make_input,
    offset_self_check,
    OUT_EPS,
    output_shape,
    ReferenceAssertions,
    relayout,
)

# Small calls for gradcheck and friends:
# (input1 shape, input2 height and width, max_displacement, kwargs).
SMALL_CONFIGS = [
    ((1, 2, 4, 5), (4, 5), 1, {}),
    ((2, 2, 5, 4), (3, 6), (1, 2), dict(kernel_size=2, padding=1, stride=(1, 2))),
    (
        (1, 4, 5, 5),
        (6, 4),
        2,
        dict(
            displacement_stride=2, groups=2, kernel_size=2, dilation=(2, 1), scale=0.5
        ),
    ),
    ((2, 3, 3), (4, 2), 1, dict(kernel_size=3, padding=1, stride=2)),
    (
        (1, 4, 3, 6),
        (3, 8),
        (0, 0),
        dict(min_displacement=(0, -3), displacement_stride=(1, -1), groups=2),
    ),
    (
        (1, 2, 5, 4),
        (2, 2),
        (2, 1),
        dict(min_displacement=(-1, -1), displacement_stride=(-2, -1), kernel_size=2),
    ),
]


def make_offset(shape, dtype, device, seed, kind="fraction", requires_grad=False):
    """An offset of the given shape (..., 2, H_out, W_out).

    kind: "fraction": integer part in [-2, 2] and fraction in [0.1, 0.9]
    (away from integer positions, where the offset gradient is one-sided);
    "wide": uniform in [-6, 6] (samples partly and fully outside input2);
    "integer": integers in [-3, 3]; "mixed": "fraction" with about a third of
    the locations moved to integer positions.
    """
    gen = torch.Generator().manual_seed(seed)
    whole = torch.randint(-2, 3, shape, generator=gen).to(torch.float64)
    fraction = 0.1 + 0.8 * torch.rand(shape, generator=gen, dtype=torch.float64)
    if kind == "fraction":
        off = whole + fraction
    elif kind == "wide":
        off = 12 * torch.rand(shape, generator=gen, dtype=torch.float64) - 6
    elif kind == "integer":
        off = torch.randint(-3, 4, shape, generator=gen).to(torch.float64)
    else:
        assert kind == "mixed", kind
        integer = torch.rand(shape, generator=gen) < 1 / 3
        off = torch.where(integer, whole, whole + fraction)
    return off.to(device=device, dtype=dtype).requires_grad_(requires_grad)


def offset_shape(shape, max_displacement, kwargs):
    """The offset shape (N, 2, H_out, W_out) or (2, H_out, W_out) of a call."""
    out = output_shape(shape, max_displacement, kwargs)
    return (*out[:-3], 2, *out[-2:])


def reference_forward(x1, x2, offset, max_displacement, kwargs):
    """(reference output, bound on the sum of |terms|), float64 on the CPU."""
    r1, r2, ro = (t.detach().cpu().double() for t in (x1, x2, offset))
    expected = correlation_offset_reference(
        r1, r2, max_displacement, offset=ro, **kwargs
    )
    bound = correlation_offset_reference(
        r1.abs(), r2.abs(), max_displacement, offset=ro, **abs_scale(kwargs)
    )
    return expected, bound


def reference_backward(x1, x2, offset, grad_output, max_displacement, kwargs):
    """Reference gradients of (input1, input2, offset) and bounds on their
    |terms|; the offset gradient is NaN where the offset is not finite."""
    r1, r2, ro = (t.detach().cpu().double().requires_grad_() for t in (x1, x2, offset))
    g = grad_output.detach().cpu().double()
    out = correlation_offset_reference(r1, r2, max_displacement, offset=ro, **kwargs)
    e1, e2, eo = torch.autograd.grad(out, (r1, r2, ro), g)
    finite = ro.detach().isfinite().all(-3, keepdim=True)
    eo = torch.where(finite, eo, math.nan)
    a1 = r1.detach().abs().requires_grad_()
    a2 = r2.detach().abs().requires_grad_()
    out_abs = correlation_offset_reference(
        a1, a2, max_displacement, offset=ro.detach(), **abs_scale(kwargs)
    )
    b1, b2 = torch.autograd.grad(out_abs, (a1, a2), g.abs())
    su, sv = correlation_offset_sensitivities(
        a1.detach(),
        a2.detach(),
        max_displacement,
        offset=ro.detach(),
        absolute=True,
        **abs_scale(kwargs),
    )
    bo = torch.cat(
        [(g.abs() * su).sum(-3, keepdim=True), (g.abs() * sv).sum(-3, keepdim=True)],
        -3,
    )
    return (e1, e2, eo), (b1, b2, bo)


def shifted_range(max_displacement, kwargs, dv, du):
    """(max_displacement, kwargs) of the integer call whose displacement
    lists are those of (max_displacement, kwargs) moved by (dv, du), in the
    same order."""
    steps = kwargs.get("displacement_stride", 1)
    dys, dxs = displacements(max_displacement, kwargs.get("min_displacement"), steps)
    low = (min(dys) + dv, min(dxs) + du)
    high = (max(dys) + dv, max(dxs) + du)
    moved = displacements(high, low, steps)
    assert moved == ([d + dv for d in dys], [d + du for d in dxs]), moved
    return high, dict(kwargs, min_displacement=low)


def random_config(rng):
    """A random valid call with an offset:
    (input1 shape, input2 (H2, W2), max_displacement, kwargs, offset kind)."""
    kernel = (rng.choice([1, 1, 2, 3]), rng.choice([1, 1, 2, 3]))
    dilation = (rng.choice([1, 1, 2]), rng.choice([1, 1, 2]))
    stride = (rng.choice([1, 1, 2]), rng.choice([1, 1, 2]))
    padding = (rng.choice([0, 0, 1, 2]), rng.choice([0, 0, 1, 2]))
    disp_stride = (rng.choice([1, 1, 2]), rng.choice([1, 1, 2]))
    groups = rng.choice([1, 1, 2, 3])
    channels = groups * rng.randint(1, 3)
    kwargs = {}
    if rng.random() < 0.5:
        max_disp = (rng.randint(0, 2), rng.randint(0, 2))
    else:
        lows = (rng.randint(-3, 2), rng.randint(-3, 2))
        max_disp = (lows[0] + rng.randint(0, 3), lows[1] + rng.randint(0, 3))
        kwargs["min_displacement"] = lows
    sizes = []
    for k, d, p in zip(kernel, dilation, padding):
        extent = d * (k - 1) + 1
        sizes.append(max(1, extent - 2 * p) + rng.randint(0, 4))
    kwargs.update(
        (name, value)
        for name, value, default in (
            ("kernel_size", kernel, (1, 1)),
            ("stride", stride, (1, 1)),
            ("padding", padding, (0, 0)),
            ("dilation", dilation, (1, 1)),
        )
        if value != default
    )
    signs = (rng.choice([1, 1, -1]), rng.choice([1, 1, -1]))
    steps = tuple(sign * step for sign, step in zip(signs, disp_stride))
    if steps != (1, 1):
        kwargs["displacement_stride"] = steps
    if groups != 1:
        kwargs["groups"] = groups
    scale = rng.choice([1.0, 1.0, 0.5, -2.0])
    if scale != 1.0:
        kwargs["scale"] = scale
    size2 = rng.choice(["same", "same", "smaller", "larger"])
    if size2 == "same":
        h2, w2 = sizes
    elif size2 == "smaller":
        h2, w2 = rng.randint(1, sizes[0]), rng.randint(1, sizes[1])
    else:
        h2, w2 = sizes[0] + rng.randint(1, 4), sizes[1] + rng.randint(1, 4)
    if rng.random() < 0.2:
        shape = (channels, *sizes)
    else:
        shape = (rng.randint(1, 2), channels, *sizes)
    kind = rng.choice(["fraction", "wide", "integer", "mixed"])
    return shape, (h2, w2), max_disp, kwargs, kind


class TestCorrelationOffset(ReferenceAssertions, TestCase):
    # The output and the offset gradient are NaN where the offset is not
    # finite, the reference's too.
    reference_nan_agrees = True

    def check_forward(self, x1, x2, offset, max_displacement, kwargs, dtype):
        out = F.correlation(x1, x2, max_displacement, offset=offset, **kwargs)
        self.assertEqual(
            tuple(out.shape), output_shape(x1.shape, max_displacement, kwargs)
        )
        self.assertEqual(out.device, x1.device)
        expected, bound = reference_forward(x1, x2, offset, max_displacement, kwargs)
        self.assertCloseToReference(out, expected, bound, dtype)
        return out

    def check_backward(
        self, x1, x2, offset, max_displacement, kwargs, dtype, grad_output=None
    ):
        x1, x2, offset = (t.detach().requires_grad_() for t in (x1, x2, offset))
        out = F.correlation(x1, x2, max_displacement, offset=offset, **kwargs)
        if grad_output is None:
            grad_output = torch.randn_like(out)
        grads = torch.autograd.grad(out, (x1, x2, offset), grad_output)
        expected, bounds = reference_backward(
            x1, x2, offset, grad_output, max_displacement, kwargs
        )
        for name, g, e, b in zip(
            ("grad_input1", "grad_input2", "grad_offset"), grads, expected, bounds
        ):
            self.assertCloseToReference(g, e, b, dtype, name)
        return grads

    # ----------------------------------------------------------------- values

    @onlyCPU
    def test_reference_self_check(self, device):
        offset_self_check()

    def test_offset_none_is_the_integer_op(self, device):
        x1 = make_input((2, 3, 5, 6), torch.float32, device, seed=0)
        x2 = make_input((2, 3, 5, 6), torch.float32, device, seed=1)
        kwargs = dict(kernel_size=3, padding=1, groups=3)
        self.assertEqual(
            F.correlation(x1, x2, 2, offset=None, **kwargs),
            F.correlation(x1, x2, 2, **kwargs),
            atol=0,
            rtol=0,
        )

    @dtypes(*ALL_DTYPES)
    def test_forward_random_configs(self, device, dtype):
        rng = random.Random(2024)
        count = 40 if dtype in (torch.float64, torch.float32) else 20
        for case in range(count):
            shape, (h2, w2), max_disp, kwargs, kind = random_config(rng)
            layouts = tuple(rng.choice(LAYOUTS) for _ in range(3))
            with self.subTest(
                case=case,
                shape=shape,
                size2=(h2, w2),
                max_displacement=max_disp,
                offset=kind,
                layouts=layouts,
                **kwargs,
            ):
                x1 = make_input(shape, dtype, device, seed=3 * case)
                x2 = make_input((*shape[:-2], h2, w2), dtype, device, seed=3 * case + 1)
                off = make_offset(
                    offset_shape(shape, max_disp, kwargs),
                    dtype,
                    device,
                    seed=3 * case + 2,
                    kind=kind,
                )
                x1, x2, off = (
                    relayout(t, lay) for t, lay in zip((x1, x2, off), layouts)
                )
                self.check_forward(x1, x2, off, max_disp, kwargs, dtype)

    @dtypes(*ALL_DTYPES)
    def test_backward_random_configs(self, device, dtype):
        rng = random.Random(4202)
        count = 30 if dtype in (torch.float64, torch.float32) else 15
        for case in range(count):
            shape, (h2, w2), max_disp, kwargs, kind = random_config(rng)
            layouts = tuple(rng.choice(LAYOUTS) for _ in range(4))
            with self.subTest(
                case=case,
                shape=shape,
                size2=(h2, w2),
                max_displacement=max_disp,
                offset=kind,
                layouts=layouts,
                **kwargs,
            ):
                x1 = make_input(shape, dtype, device, seed=4 * case)
                x2 = make_input((*shape[:-2], h2, w2), dtype, device, seed=4 * case + 1)
                off = make_offset(
                    offset_shape(shape, max_disp, kwargs),
                    dtype,
                    device,
                    seed=4 * case + 2,
                    kind=kind,
                )
                g = make_input(
                    output_shape(shape, max_disp, kwargs),
                    dtype,
                    device,
                    seed=4 * case + 3,
                )
                x1, x2, off, g = (
                    relayout(t, lay) for t, lay in zip((x1, x2, off, g), layouts)
                )
                self.check_backward(x1, x2, off, max_disp, kwargs, dtype, grad_output=g)

    @dtypes(torch.float64, torch.float32)
    def test_every_argument_alone(self, device, dtype):
        # One non-default argument at a time, on a fixed input pair of the
        # same size and with input2 smaller and larger than input1.
        x1 = make_input((2, 4, 6, 7), dtype, device, seed=0)
        cases = [
            (0, {}),
            (2, {}),
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
            (3, dict(displacement_stride=(2, 3))),
            (2, dict(groups=2)),
            (2, dict(groups=4)),
            (2, dict(scale=0.25)),
            (2, dict(scale=0.0)),
            (2, dict(scale=-3.0)),
            ((0, 0), dict(min_displacement=(0, -4))),
            ((0, 3), dict(min_displacement=(0, 0))),
            ((-1, -2), dict(min_displacement=(-3, -4))),
            ((3, 4), dict(min_displacement=(1, 2))),
            (3, dict(min_displacement=-1, displacement_stride=2)),
            (6, dict(padding=1)),  # displacements larger than the image
            (2, dict(displacement_stride=-1)),
            (3, dict(displacement_stride=(-2, 3))),
            ((0, 0), dict(min_displacement=(0, -4), displacement_stride=(1, -1))),
            (3, dict(min_displacement=-1, displacement_stride=-2)),
            ((2, 3), dict(min_displacement=(-2, -3), displacement_stride=(-1, 2))),
        ]
        sizes2 = ((6, 7), (3, 4), (9, 11))
        for case, (max_disp, kwargs) in enumerate(cases):
            size2 = sizes2[case % len(sizes2)]
            with self.subTest(size2=size2, max_displacement=max_disp, **kwargs):
                x2 = make_input((2, 4, *size2), dtype, device, seed=1)
                off = make_offset(
                    offset_shape(x1.shape, max_disp, kwargs),
                    dtype,
                    device,
                    seed=2,
                    kind="mixed",
                )
                self.check_forward(x1, x2, off, max_disp, kwargs, dtype)
                self.check_backward(x1, x2, off, max_disp, kwargs, dtype)

    @dtypes(*ALL_DTYPES)
    def test_layouts(self, device, dtype):
        # Every combination of layouts of input1, input2, offset and
        # grad_output against the reference; the output follows input1's
        # memory format and each gradient that of its tensor.
        shape, size2, max_disp, kwargs = (2, 4, 5, 6), (6, 4), (1, 2), dict(groups=2)
        x1 = make_input(shape, dtype, device, seed=0)
        x2 = make_input((2, 4, *size2), dtype, device, seed=1)
        off = make_offset(
            offset_shape(shape, max_disp, kwargs), dtype, device, seed=2, kind="wide"
        )
        g = make_input(output_shape(shape, max_disp, kwargs), dtype, device, seed=3)
        for layout in LAYOUTS:
            for which in ("input1", "input2", "offset", "grad_output", "all"):
                args = {"input1": x1, "input2": x2, "offset": off, "grad_output": g}
                for name in args:
                    if which in (name, "all"):
                        args[name] = relayout(args[name], layout)
                with self.subTest(layout=layout, which=which):
                    out = self.check_forward(
                        args["input1"],
                        args["input2"],
                        args["offset"],
                        max_disp,
                        kwargs,
                        dtype,
                    )
                    grads = self.check_backward(
                        args["input1"],
                        args["input2"],
                        args["offset"],
                        max_disp,
                        kwargs,
                        dtype,
                        grad_output=args["grad_output"],
                    )
                    if layout == "channels_last":
                        cl = torch.channels_last
                        self.assertEqual(
                            out.is_contiguous(memory_format=cl),
                            which in ("input1", "all"),
                        )
                        for name, grad in zip(("input1", "input2", "offset"), grads):
                            self.assertEqual(
                                grad.is_contiguous(memory_format=cl),
                                which in (name, "all"),
                                msg=name,
                            )

    @dtypes(*ALL_DTYPES)
    def test_non_contiguous_views(self, device, dtype):
        # Views as models make them: the flow as the first two channels of a
        # wider tensor, a constant offset expanded from one location, sliced
        # and permuted inputs, an expanded grad_output.
        base1 = make_input((3, 9, 8, 11), dtype, device, seed=0)
        base2 = make_input((3, 9, 10, 12), dtype, device, seed=1)
        kwargs = dict(kernel_size=(2, 3), padding=(1, 0), groups=2, scale=0.5)
        x1 = base1[::2, 1::2, 1:-1, ::2]  # (2, 4, 6, 6)
        x2 = base2[1:, 5:9].transpose(2, 3)  # (2, 4, 12, 10)
        oshape = offset_shape(x1.shape, 1, kwargs)
        out_shape = output_shape(x1.shape, 1, kwargs)
        flow = make_offset((2, 4, *oshape[-2:]), dtype, device, seed=2, kind="wide")
        offsets = {
            "channel_slice": flow[:, 1:3],
            "expanded": make_offset((1, 2, 1, 1), dtype, device, seed=3).expand(oshape),
            "permuted": make_offset(
                (oshape[3], 2, 2, oshape[2]), dtype, device, seed=4, kind="mixed"
            ).permute(2, 1, 3, 0),
        }
        grads = {
            "expanded": torch.ones((), dtype=dtype, device=device).expand(out_shape),
            "transposed": make_input(
                out_shape[:2] + out_shape[:1:-1], dtype, device, seed=5
            ).transpose(2, 3),
        }
        for (oname, off), (gname, g) in zip(offsets.items(), [*grads.items()] * 2):
            with self.subTest(offset=oname, grad_output=gname):
                self.assertEqual(off.shape, oshape)
                self.assertFalse(off.is_contiguous())
                out = self.check_forward(x1, x2, off, 1, kwargs, dtype)
                self.check_backward(x1, x2, off, 1, kwargs, dtype, grad_output=g)
                contiguous = F.correlation(
                    x1.contiguous(),
                    x2.contiguous(),
                    1,
                    offset=off.contiguous(),
                    **kwargs,
                )
                self.assertEqual(out, contiguous, atol=0, rtol=0)
        # Unbatched views.
        with self.subTest(view="unbatched"):
            u1, u2 = x1[1], x2[0]
            off = offsets["channel_slice"][0]
            out = self.check_forward(u1, u2, off, 1, kwargs, dtype)
            self.check_backward(u1, u2, off, 1, kwargs, dtype)

    @dtypes(*ALL_DTYPES)
    def test_unbatched(self, device, dtype):
        x1 = make_input((4, 5, 6), dtype, device, seed=0)
        x2 = make_input((4, 7, 3), dtype, device, seed=1)
        kwargs = dict(kernel_size=2, padding=1, groups=2, scale=0.5)
        off = make_offset(offset_shape(x1.shape, 2, kwargs), dtype, device, seed=2)
        out = self.check_forward(x1, x2, off, 2, kwargs, dtype)
        batched = F.correlation(
            x1.unsqueeze(0), x2.unsqueeze(0), 2, offset=off.unsqueeze(0), **kwargs
        )
        self.assertEqual(out, batched[0], atol=0, rtol=0)
        self.check_backward(x1, x2, off, 2, kwargs, dtype)

    @dtypes(torch.float64, torch.float32)
    def test_input2_sizes(self, device, dtype):
        # input2 smaller (down to one pixel) and larger (a finer pyramid
        # level) than input1, with offsets that reach all over it.
        x1 = make_input((2, 3, 5, 6), dtype, device, seed=0)
        kwargs = dict(kernel_size=3, padding=1, scale=1 / 3)
        for size2 in ((1, 1), (1, 6), (5, 1), (2, 3), (5, 6), (10, 12), (17, 4)):
            with self.subTest(size2=size2):
                x2 = make_input((2, 3, *size2), dtype, device, seed=1)
                gen = torch.Generator().manual_seed(2)
                oshape = offset_shape(x1.shape, 1, kwargs)
                # Uniform over input2's extent and a margin around it.
                span = torch.tensor([size2[1], size2[0]], dtype=torch.float64)
                off = torch.rand(oshape, generator=gen, dtype=torch.float64) * 1.4 - 0.2
                off = (off * span.view(2, 1, 1) - 2).to(device=device, dtype=dtype)
                self.check_forward(x1, x2, off, 1, kwargs, dtype)
                self.check_backward(x1, x2, off, 1, kwargs, dtype)

    @dtypes(torch.float32, torch.float64)
    def test_many_channels(self, device, dtype):
        # Long channel dot products and channel blocks of the backward.
        for c in (1, 7, 16, 17, 33):
            with self.subTest(channels=c):
                x1 = make_input((2, c, 4, 5), dtype, device, seed=c)
                x2 = make_input((2, c, 5, 4), dtype, device, seed=c + 1)
                kwargs = dict(scale=1 / c, groups=1 if c % 2 else 2)
                off = make_offset(
                    offset_shape(x1.shape, 1, kwargs), dtype, device, seed=c + 2
                )
                self.check_forward(x1, x2, off, 1, kwargs, dtype)
                self.check_backward(x1, x2, off, 1, kwargs, dtype)

    # ------------------------------------------------- integer offsets

    @dtypes(*ALL_DTYPES)
    def test_constant_integer_offset_shifts_the_range(self, device, dtype):
        # A constant integer offset (u, v) is the integer op with the
        # displacement range moved by (v, u), channel for channel; gradients
        # of the inputs too.
        cases = [
            ((2, 4, 6, 7), 1, {}),
            ((2, 4, 6, 7), 2, dict(kernel_size=3, padding=1, groups=2, scale=0.25)),
            ((1, 3, 7, 6), (1, 2), dict(stride=2, dilation=(2, 1), kernel_size=2)),
            ((2, 2, 5, 8), 4, dict(displacement_stride=(2, -2))),
            (
                (3, 6, 9),
                (0, 0),
                dict(min_displacement=(0, -4), displacement_stride=(1, -1)),
            ),
            ((1, 2, 5, 6), (2, 1), dict(min_displacement=(-1, -3), padding=(0, 2))),
        ]
        for shape, max_disp, kwargs in cases:
            for u, v in ((0, 0), (1, 0), (0, -2), (-3, 2), (7, -1), (40, 40)):
                with self.subTest(
                    shape=shape, max_displacement=max_disp, u=u, v=v, **kwargs
                ):
                    x1 = make_input(shape, dtype, device, seed=0, requires_grad=True)
                    x2 = make_input(shape, dtype, device, seed=1, requires_grad=True)
                    oshape = offset_shape(shape, max_disp, kwargs)
                    off = torch.empty(oshape, dtype=dtype, device=device)
                    off.select(-3, 0).fill_(u)
                    off.select(-3, 1).fill_(v)
                    moved_max, moved = shifted_range(max_disp, kwargs, v, u)
                    out = F.correlation(x1, x2, max_disp, offset=off, **kwargs)
                    want = F.correlation(x1, x2, moved_max, **moved)
                    expected, bound = reference_forward(x1, x2, off, max_disp, kwargs)
                    # Both within the reference's tolerance of the same value.
                    self.assertCloseToReference(out, expected, bound, dtype)
                    self.assertCloseToReference(want, expected, bound, dtype)
                    tol = 2 * ACC_RTOL[dtype] * bound + OUT_EPS[dtype] * expected.abs()
                    self.assertTrue(
                        ((out - want).abs().cpu().double() <= tol).all(),
                        msg=f"max difference {(out - want).abs().max().item()}",
                    )
                    g = make_input(out.shape, dtype, device, seed=2)
                    got = torch.autograd.grad(out, (x1, x2), g)
                    exp = torch.autograd.grad(want, (x1, x2), g)
                    (_, _, _), (b1, b2, _) = reference_backward(
                        x1, x2, off, g, max_disp, kwargs
                    )
                    for a, b, bnd in zip(got, exp, (b1, b2)):
                        tol = (
                            2 * ACC_RTOL[dtype] * bnd
                            + OUT_EPS[dtype] * b.abs().cpu().double()
                        )
                        self.assertTrue(
                            ((a - b).abs().cpu().double() <= tol).all(),
                            msg=f"max difference {(a - b).abs().max().item()}",
                        )

    @dtypes(torch.float64, torch.float32)
    def test_per_location_integer_offset(self, device, dtype):
        # A per-location integer offset picks, at each location, the integer
        # op's channels of the moved displacements: gather them from one call
        # over a range wide enough for every location (step 1, so every
        # integer displacement is there). The input gradients follow through
        # the gather, and the offset gradient at integer positions is the
        # right-sided difference: out at (v, u + 1) minus out at (v, u).
        cases = [
            ((2, 3, 6, 7), 1, {}),
            ((1, 4, 5, 6), (1, 2), dict(kernel_size=3, padding=1, groups=2)),
            ((2, 2, 6, 5), 2, dict(displacement_stride=(-2, 1), stride=2)),
            (
                (3, 5, 6),
                (0, 1),
                dict(min_displacement=(-1, -2), dilation=2, kernel_size=2),
            ),
        ]
        reach = 3  # |u|, |v| <= reach
        for shape, max_disp, kwargs in cases:
            with self.subTest(shape=shape, max_displacement=max_disp, **kwargs):
                unbatched = len(shape) == 3
                x1 = make_input(shape, dtype, device, seed=0, requires_grad=True)
                x2 = make_input(shape, dtype, device, seed=1, requires_grad=True)
                off = make_offset(
                    offset_shape(shape, max_disp, kwargs),
                    dtype,
                    device,
                    seed=2,
                    kind="integer",
                ).requires_grad_()
                out = F.correlation(x1, x2, max_disp, offset=off, **kwargs)
                dys, dxs = displacements(
                    max_disp,
                    kwargs.get("min_displacement"),
                    kwargs.get("displacement_stride", 1),
                )
                low = (min(dys) - reach, min(dxs) - reach)
                # One more on the high side for the offset gradient.
                high = (max(dys) + reach + 1, max(dxs) + reach + 1)
                wide_kwargs = dict(
                    kwargs, min_displacement=low, displacement_stride=(1, 1)
                )
                wide = F.correlation(x1, x2, high, **wide_kwargs)
                if unbatched:
                    out, wide, o = out.unsqueeze(0), wide.unsqueeze(0), off.unsqueeze(0)
                else:
                    o = off
                groups = kwargs.get("groups", 1)
                ky, kx = high[0] - low[0] + 1, high[1] - low[1] + 1
                u = o[:, 0].detach().long().unsqueeze(1).unsqueeze(1)
                v = o[:, 1].detach().long().unsqueeze(1).unsqueeze(1)
                dy = torch.tensor(dys, device=device).view(1, -1, 1, 1, 1)
                dx = torch.tensor(dxs, device=device).view(1, 1, -1, 1, 1)

                def channels(extra_u, extra_v):
                    # (N, G * D, H_out, W_out) channel indices into `wide`.
                    a = dy + v + extra_v - low[0]
                    b = dx + u + extra_u - low[1]
                    d = (a * kx + b).flatten(1, 2)
                    return torch.cat([g * ky * kx + d for g in range(groups)], 1)

                picked = wide.gather(1, channels(0, 0))
                self.assertEqual(
                    out, picked, atol=1e-12 if dtype == torch.float64 else 2e-5, rtol=0
                )
                gout = make_input(out.shape, dtype, device, seed=3)
                got = torch.autograd.grad(out, (x1, x2, off), gout)
                want = torch.autograd.grad(picked, (x1, x2), gout)
                tol = dict(atol=1e-12 if dtype == torch.float64 else 1e-4, rtol=0)
                self.assertEqual(got[0], want[0], **tol)
                self.assertEqual(got[1], want[1], **tol)
                du = wide.gather(1, channels(1, 0)) - picked
                dv = wide.gather(1, channels(0, 1)) - picked
                grad_offset = torch.stack([(gout * du).sum(1), (gout * dv).sum(1)], 1)
                if unbatched:
                    grad_offset = grad_offset[0]
                self.assertEqual(got[2], grad_offset, **tol)

    # ------------------------------------------------ borders, special values

    @dtypes(*ALL_DTYPES)
    def test_zero_padding_at_every_border(self, device, dtype):
        # input1 and input2 all ones, one channel pair, no displacement: the
        # output is the sum of the weights of the taps inside input2, which
        # factors as f(y) * f(x) with f_L(p) = clamp(min(p + 1, L - p), 0, 1)
        # for an image of L pixels (1 inside, ramps over the pixel beyond
        # each border, 0 further out); its right-sided derivative is +1 on
        # [-1, 0), -1 on [L - 1, L) and 0 elsewhere. Positions before, on and
        # past every border (samples partly and fully outside, corners
        # included), at quarter-pixel steps (exact in every dtype).
        h2, w2 = 3, 4

        def f(p, size):
            return max(0.0, min(1.0, p + 1, size - p))

        def df(p, size):
            return (1.0 if -1 <= p < 0 else 0.0) - (
                1.0 if size - 1 <= p < size else 0.0
            )

        ys = [
            -3.0,
            -1.25,
            -1.0,
            -0.75,
            -0.25,
            0.0,
            0.5,
            1.0,
            1.75,
            2.0,
            2.25,
            2.75,
            3.0,
            4.5,
        ]
        xs = [-2.0, -1.0, -0.5, 0.0, 0.25, 2.5, 3.0, 3.5, 3.75, 4.0, 6.0]
        x1 = torch.ones(1, 2, len(ys), len(xs), dtype=dtype, device=device)
        x2 = torch.ones(1, 2, h2, w2, dtype=dtype, device=device)
        oy = torch.arange(len(ys), dtype=torch.float64).view(-1, 1)
        ox = torch.arange(len(xs), dtype=torch.float64).view(1, -1)
        ty = torch.tensor(ys, dtype=torch.float64).view(-1, 1)
        tx = torch.tensor(xs, dtype=torch.float64).view(1, -1)
        # Sample (ty, tx) at location (oy, ox): (u, v) = (tx - ox, ty - oy).
        off = (
            torch.stack(torch.broadcast_tensors(tx - ox, ty - oy))
            .unsqueeze(0)
            .to(device=device, dtype=dtype)
            .requires_grad_()
        )
        x1.requires_grad_()
        x2.requires_grad_()
        out = F.correlation(x1, x2, 0, offset=off)
        expected = torch.tensor(
            [[2 * f(y, h2) * f(x, w2) for x in xs] for y in ys], dtype=torch.float64
        )
        self.assertEqual(out[0, 0].double().cpu(), expected, atol=0, rtol=0)
        (grad,) = torch.autograd.grad(out.sum(), off, retain_graph=True)
        expected = torch.tensor(
            [
                [[2 * f(y, h2) * df(x, w2) for x in xs] for y in ys],
                [[2 * df(y, h2) * f(x, w2) for x in xs] for y in ys],
            ],
            dtype=torch.float64,
        )
        self.assertEqual(grad[0].double().cpu(), expected, atol=0, rtol=0)
        # Random values at the same positions against the reference, also
        # with displacements and a kernel window reaching further out (the
        # window's centre tap samples the positions above).
        r1 = make_input(x1.shape, dtype, device, seed=0)
        r2 = make_input(x2.shape, dtype, device, seed=1)
        ro = off.detach()
        for max_disp, kwargs, o in (
            (0, {}, ro),
            (1, dict(kernel_size=3), ro[..., 1:-1, 1:-1]),
        ):
            with self.subTest(max_displacement=max_disp, **kwargs):
                self.check_forward(r1, r2, o, max_disp, kwargs, dtype)
                self.check_backward(r1, r2, o, max_disp, kwargs, dtype)

    @dtypes(*ALL_DTYPES)
    def test_huge_offsets_sample_zeros(self, device, dtype):
        # Finite offsets far outside input2 (beyond any integer conversion's
        # range) read zeros: the outputs and all gradients through those
        # locations are zero, the rest matches the reference.
        big = {
            torch.float64: [1e30, -1e30, 2.0**63, -(2.0**63), 9.3e18, 1e300],
            torch.float32: [1e30, -1e30, 2.0**63, -(2.0**63), 3e38, -3e38],
            torch.float16: [65504.0, -65504.0, 6e4, -3e4],
            torch.bfloat16: [1e30, -1e30, 2.0**63, -(2.0**63), 3e38],
        }[dtype]
        shape, max_disp, kwargs = (2, 4, 5, 6), 1, dict(kernel_size=3, padding=1)
        x1 = make_input(shape, dtype, device, seed=0)
        x2 = make_input((2, 4, 4, 7), dtype, device, seed=1)
        off = make_offset(offset_shape(shape, max_disp, kwargs), dtype, device, seed=2)
        huge = torch.zeros(off.shape, dtype=torch.bool, device=device)
        positions = [(0, 0, 0), (0, 4, 5), (1, 2, 3), (1, 0, 5), (0, 3, 1), (1, 4, 0)]
        for k, (n, y, x) in enumerate(positions):
            value = big[k % len(big)]
            # u only, v only, or both (with the other small).
            component = k % 3
            if component in (0, 2):
                off[n, 0, y, x] = value
            if component in (1, 2):
                off[n, 1, y, x] = -value if component == 2 else value
            huge[n, :, y, x] = True
        at_huge = huge[:, :1].expand(-1, 9, -1, -1)
        out = self.check_forward(x1, x2, off, max_disp, kwargs, dtype)
        self.assertTrue((out[at_huge] == 0).all())
        _, _, grad_offset = self.check_backward(x1, x2, off, max_disp, kwargs, dtype)
        self.assertTrue((grad_offset[huge] == 0).all())

    @dtypes(*ALL_DTYPES)
    def test_non_finite_offsets(self, device, dtype):
        # A NaN or infinite offset component makes all outputs of its
        # location NaN and its offset gradient NaN; it contributes nothing to
        # the input gradients (equal to those of the finite locations alone).
        shape, max_disp, kwargs = (
            (2, 4, 5, 6),
            1,
            dict(kernel_size=3, padding=1, groups=2),
        )
        x1 = make_input(shape, dtype, device, seed=0)
        x2 = make_input((2, 4, 6, 5), dtype, device, seed=1)
        off = make_offset(offset_shape(shape, max_disp, kwargs), dtype, device, seed=2)
        special = [
            (0, 0, 1, 1, math.nan),
            (0, 1, 3, 2, math.nan),
            (1, 0, 0, 0, math.inf),
            (1, 1, 4, 5, -math.inf),
            (1, 0, 2, 2, math.nan),
            (1, 1, 2, 2, math.inf),
        ]
        bad = torch.zeros(2, 1, 5, 6, dtype=torch.bool, device=device)
        for n, comp, y, x, value in special:
            off[n, comp, y, x] = value
            bad[n, 0, y, x] = True
        out = self.check_forward(x1, x2, off, max_disp, kwargs, dtype)
        self.assertEqual(out.isnan(), bad.expand_as(out))
        a1, a2, ao = (t.detach().requires_grad_() for t in (x1, x2, off))
        result = F.correlation(a1, a2, max_disp, offset=ao, **kwargs)
        g = make_input(result.shape, dtype, device, seed=3)
        grads = self.check_backward(x1, x2, off, max_disp, kwargs, dtype, grad_output=g)
        self.assertEqual(grads[2].isnan(), bad.expand(-1, 2, -1, -1))
        self.assertTrue(grads[0].isfinite().all() and grads[1].isfinite().all())
        # The same input gradients with those locations' grad_output zeroed
        # and their offset replaced by a finite value.
        finite_off = torch.where(bad, 0.0, off)
        b1, b2 = (t.detach().requires_grad_() for t in (x1, x2))
        clean = F.correlation(b1, b2, max_disp, offset=finite_off, **kwargs)
        want = torch.autograd.grad(clean, (b1, b2), torch.where(bad, 0.0, g))
        self.assertEqual(grads[0], want[0], atol=0, rtol=0)
        self.assertEqual(grads[1], want[1], atol=0, rtol=0)

    @dtypes(torch.float64, torch.float32)
    def test_empty(self, device, dtype):
        # (input1 shape, input2 shape, max_displacement, kwargs)
        cases = [
            ((0, 2, 4, 5), (0, 2, 3, 6), 1, {}),  # no batch
            ((2, 0, 4, 5), (2, 0, 3, 6), 1, {}),  # no channels: zeros
            ((2, 3, 4, 5), (2, 3, 0, 6), 1, {}),  # input2 without rows: zeros
            ((2, 3, 4, 5), (2, 3, 3, 0), 1, dict(kernel_size=2)),
            ((2, 3, 0, 5), (2, 3, 3, 6), 1, dict(padding=1)),  # padding makes an output
            ((3, 0, 4), (3, 2, 2), 1, dict(padding=(1, 0))),  # unbatched
        ]
        for shape1, shape2, max_disp, kwargs in cases:
            with self.subTest(input1=shape1, input2=shape2, **kwargs):
                x1 = make_input(shape1, dtype, device, seed=0, requires_grad=True)
                x2 = make_input(shape2, dtype, device, seed=1, requires_grad=True)
                oshape = offset_shape(shape1, max_disp, kwargs)
                off = make_offset(oshape, dtype, device, seed=2, requires_grad=True)
                out = F.correlation(x1, x2, max_disp, offset=off, **kwargs)
                out_shape = output_shape(shape1, max_disp, kwargs)
                self.assertEqual(out.shape, out_shape)
                self.assertEqual(
                    out, torch.zeros(out_shape, dtype=dtype), atol=0, rtol=0
                )
                g = make_input(out_shape, dtype, device, seed=3)
                grads = torch.autograd.grad(out, (x1, x2, off), g)
                for t, grad in zip((x1, x2, off), grads):
                    self.assertEqual(grad, torch.zeros_like(t), atol=0, rtol=0)

    @dtypes(torch.float64, torch.float32)
    def test_empty_input_with_non_finite_offset(self, device, dtype):
        # The rule for non-finite offsets holds when an input is empty: the
        # location's outputs are NaN and so is its offset gradient.
        for shape1, shape2 in (
            ((1, 0, 3, 3), (1, 0, 3, 3)),
            ((1, 2, 3, 3), (1, 2, 0, 3)),
        ):
            with self.subTest(input1=shape1, input2=shape2):
                x1 = make_input(shape1, dtype, device, seed=0, requires_grad=True)
                x2 = make_input(shape2, dtype, device, seed=1, requires_grad=True)
                off = torch.zeros(1, 2, 3, 3, dtype=dtype, device=device)
                off[0, 0, 1, 1] = math.nan
                off.requires_grad_()
                out = F.correlation(x1, x2, 1, offset=off)
                bad = torch.zeros(1, 1, 3, 3, dtype=torch.bool, device=device)
                bad[0, 0, 1, 1] = True
                self.assertEqual(out.isnan(), bad.expand_as(out))
                (grad,) = torch.autograd.grad(out, off, torch.ones_like(out))
                self.assertEqual(grad.isnan(), bad.expand(-1, 2, -1, -1))

    # ----------------------------------------------------------- autograd

    def check_small_configs(self, device, check, configs=SMALL_CONFIGS, offset=True):
        """``check(fn, inputs)`` (a gradcheck) holds for every call of
        ``configs``, fn being the call as a function of input1, input2 and,
        with ``offset``, the offset (else it is fixed). The offsets are away
        from integer positions (the output is smooth there)."""
        for shape, size2, max_disp, kwargs in configs:
            with self.subTest(
                shape=shape, size2=size2, max_displacement=max_disp, **kwargs
            ):
                x1 = make_input(
                    shape, torch.float64, device, seed=0, requires_grad=True
                )
                x2 = make_input(
                    (*shape[:-2], *size2),
                    torch.float64,
                    device,
                    seed=1,
                    requires_grad=True,
                )
                off = make_offset(
                    offset_shape(shape, max_disp, kwargs),
                    torch.float64,
                    device,
                    seed=2,
                    requires_grad=offset,
                )

                def fn(a, b, o=off, max_disp=max_disp, kwargs=kwargs):
                    return F.correlation(a, b, max_disp, offset=o, **kwargs)

                inputs = (x1, x2, off) if offset else (x1, x2)
                self.assertTrue(check(fn, inputs))

    def test_gradcheck(self, device):
        self.check_small_configs(device, torch.autograd.gradcheck)

    def test_gradgradcheck(self, device):
        # Second order through input1 and input2 (and grad_output) with a
        # fixed offset, reverse over reverse and forward over reverse (on the
        # calls with the smallest outputs, to keep it quick).
        self.check_small_configs(
            device,
            functools.partial(torch.autograd.gradgradcheck, check_fwd_over_rev=True),
            SMALL_CONFIGS[3:],
            offset=False,
        )

    def test_forward_ad(self, device):
        self.check_small_configs(device, forward_ad_gradcheck)

    def test_jvp_vs_reference(self, device):
        # d out = C(t1, x2) + C(x1, t2) + (d out/du) tu + (d out/dv) tv, with
        # the sensitivities of the reference; also at integer positions
        # ("mixed"), where the tangent's term is the right-sided derivative,
        # and for the offset's tangent alone.
        for kind in ("fraction", "mixed", "wide"):
            shape, size2, max_disp, kwargs = SMALL_CONFIGS[2]
            with self.subTest(offset=kind):
                x1, t1 = (
                    make_input(shape, torch.float64, device, seed=s) for s in (0, 1)
                )
                x2, t2 = (
                    make_input((*shape[:-2], *size2), torch.float64, device, seed=s)
                    for s in (2, 3)
                )
                oshape = offset_shape(shape, max_disp, kwargs)
                off = make_offset(oshape, torch.float64, device, seed=4, kind=kind)
                to = make_input(oshape, torch.float64, device, seed=5)

                def fn(a, b, o):
                    return F.correlation(a, b, max_disp, offset=o, **kwargs)

                out, tangent = torch.func.jvp(fn, (x1, x2, off), (t1, t2, to))
                self.assertEqual(out, fn(x1, x2, off), atol=0, rtol=0)
                ref = [t.cpu() for t in (x1, x2, off, t1, t2, to)]
                d_du, d_dv = correlation_offset_sensitivities(
                    ref[0], ref[1], max_disp, offset=ref[2], **kwargs
                )
                offset_term = d_du * ref[5][:, :1] + d_dv * ref[5][:, 1:]
                expected = (
                    correlation_offset_reference(
                        ref[3], ref[1], max_disp, offset=ref[2], **kwargs
                    )
                    + correlation_offset_reference(
                        ref[0], ref[4], max_disp, offset=ref[2], **kwargs
                    )
                    + offset_term
                )
                self.assertEqual(tangent.cpu(), expected, atol=1e-12, rtol=1e-10)
                _, tangent_o = torch.func.jvp(lambda o: fn(x1, x2, o), (off,), (to,))
                self.assertEqual(tangent_o.cpu(), offset_term, atol=1e-12, rtol=1e-10)

    def test_double_backward_vs_reference(self, device):
        # d/dx1 <grad_input2(x1, x2, g), v> with the offset fixed, through
        # both implementations.
        shape, size2, max_disp, kwargs = SMALL_CONFIGS[1]
        off = make_offset(
            offset_shape(shape, max_disp, kwargs), torch.float64, device, seed=9
        )
        results = []
        for fn in (F.correlation, correlation_offset_reference):
            x1 = make_input(shape, torch.float64, device, seed=0, requires_grad=True)
            x2 = make_input(
                (*shape[:-2], *size2), torch.float64, device, seed=1, requires_grad=True
            )
            out = fn(x1, x2, max_disp, offset=off, **kwargs)
            g = make_input(out.shape, torch.float64, device, seed=2, requires_grad=True)
            v2 = make_input(x2.shape, torch.float64, device, seed=3)
            v1 = make_input(x1.shape, torch.float64, device, seed=4)
            g1, g2 = torch.autograd.grad(out, (x1, x2), g, create_graph=True)
            results.append(
                torch.autograd.grad((g2 * v2).sum() + (g1 * v1).sum(), (x1, x2, g))
            )
        for actual, expected in zip(*results):
            self.assertEqual(actual, expected, atol=1e-12, rtol=1e-10)

    def test_double_backward_through_offset_raises(self, device):
        shape, size2, max_disp, kwargs = SMALL_CONFIGS[0]

        def inputs():
            x1 = make_input(shape, torch.float64, device, seed=0, requires_grad=True)
            x2 = make_input(
                (*shape[:-2], *size2), torch.float64, device, seed=1, requires_grad=True
            )
            off = make_offset(
                offset_shape(shape, max_disp, kwargs),
                torch.float64,
                device,
                seed=2,
                requires_grad=True,
            )
            return x1, x2, off

        # Differentiating the offset's gradient.
        x1, x2, off = inputs()
        out = F.correlation(x1, x2, max_disp, offset=off, **kwargs)
        (grad_offset,) = torch.autograd.grad(out.sum(), off, create_graph=True)
        with self.assertRaises(RuntimeError) as cm:
            torch.autograd.grad(grad_offset.sum(), x1)
        self.assertExpectedInline(
            str(cm.exception).split("\n")[0],
            """correlation(): double backward through offset is not implemented (offset's gradient must not be differentiated, and offset must not require grad when correlation's gradients are); detach offset to differentiate twice with respect to input1 and input2""",  # noqa: E501
        )
        # Differentiating the input gradients with respect to the offset.
        x1, x2, off = inputs()
        out = F.correlation(x1, x2, max_disp, offset=off, **kwargs)
        g1, g2 = torch.autograd.grad(out.sum(), (x1, x2), create_graph=True)
        with self.assertRaisesRegex(RuntimeError, "double backward through offset"):
            torch.autograd.grad((g1.sum() + g2.sum()), (x2, off))
        with self.assertRaisesRegex(RuntimeError, "detach offset"):
            (g1.sum() + g2.sum()).backward()
        # Only with respect to the inputs: the offset is a constant there, the
        # result is that of a detached offset.
        x1, x2, off = inputs()
        g1, g2 = torch.autograd.grad(
            F.correlation(x1, x2, max_disp, offset=off, **kwargs).sum(),
            (x1, x2),
            create_graph=True,
        )
        got = torch.autograd.grad(g1.square().sum() + g2.square().sum(), (x1, x2))
        h1, h2 = torch.autograd.grad(
            F.correlation(x1, x2, max_disp, offset=off.detach(), **kwargs).sum(),
            (x1, x2),
            create_graph=True,
        )
        want = torch.autograd.grad(h1.square().sum() + h2.square().sum(), (x1, x2))
        self.assertEqual(got, want, atol=0, rtol=0)
        # gradgradcheck with the offset among the inputs.
        with self.assertRaisesRegex(RuntimeError, "double backward through offset"):
            torch.autograd.gradgradcheck(
                lambda a, b, o: F.correlation(a, b, max_disp, offset=o, **kwargs),
                inputs(),
            )
        # Forward over reverse with an offset tangent.
        x1, x2, off = (t.detach() for t in inputs())
        g = torch.ones(
            output_shape(shape, max_disp, kwargs), dtype=torch.float64, device=device
        )

        def grad_input1(o):
            _, vjp = torch.func.vjp(
                lambda a: F.correlation(a, x2, max_disp, offset=o, **kwargs), x1
            )
            return vjp(g)[0]

        with self.assertRaises(RuntimeError) as cm:
            torch.func.jvp(grad_input1, (off,), (torch.ones_like(off),))
        self.assertExpectedInline(
            str(cm.exception).split("\n")[0],
            """correlation_backward(): forward-mode differentiation of correlation's gradients with respect to offset is not implemented; detach offset (its gradients with respect to input1 and input2 are supported)""",  # noqa: E501
        )

    def test_backward_op_output_mask(self, device):
        shape, size2 = (2, 4, 5, 6), (4, 7)
        kwargs = dict(kernel_size=[3, 3], padding=[1, 1], groups=2)
        x1 = make_input(shape, torch.float64, device, seed=0)
        x2 = make_input((2, 4, *size2), torch.float64, device, seed=1)
        off = make_offset(offset_shape(shape, 2, kwargs), torch.float64, device, seed=2)
        g = make_input(output_shape(shape, 2, kwargs), torch.float64, device, seed=3)
        expected, bounds = reference_backward(x1, x2, off, g, 2, kwargs)
        op = torch.ops.aten.correlation_backward
        args = (off, *backward_args(2, kwargs))
        full = op(g, x1, x2, *args, [True, True, True])
        for grad, e, b in zip(full, expected, bounds):
            self.assertCloseToReference(grad, e, b, torch.float64)
        for mask in (
            [True, False, False],
            [False, True, False],
            [False, False, True],
            [True, False, True],
            [False, True, True],
            [True, True, False],
            [False, False, False],
        ):
            with self.subTest(output_mask=mask):
                result = op(g, x1, x2, *args, mask)
                for wanted, grad, reference in zip(mask, result, full):
                    if wanted:
                        self.assertEqual(grad, reference, atol=0, rtol=0)
                    else:
                        self.assertIsNone(grad)
        # Without an offset there is no offset gradient, whatever the mask.
        same = make_input(shape, torch.float64, device, seed=1)
        result = op(g, x1, same, None, *backward_args(2, kwargs), [True, True, True])
        self.assertIsNone(result[2])

    @parametrize("requires_grad", ["input1", "input2", "offset"])
    def test_single_argument_requires_grad(self, device, requires_grad):
        shape, size2, max_disp, kwargs = SMALL_CONFIGS[2]
        x1 = make_input(shape, torch.float64, device, seed=0)
        x2 = make_input((*shape[:-2], *size2), torch.float64, device, seed=1)
        off = make_offset(
            offset_shape(shape, max_disp, kwargs), torch.float64, device, seed=2
        )
        tensors = {"input1": x1, "input2": x2, "offset": off}
        tensors[requires_grad].requires_grad_()
        out = F.correlation(x1, x2, max_disp, offset=off, **kwargs)
        self.assertTrue(out.requires_grad)
        g = make_input(out.shape, torch.float64, device, seed=3)
        out.backward(g)
        expected, bounds = reference_backward(x1, x2, off, g, max_disp, kwargs)
        for (name, t), e, b in zip(tensors.items(), expected, bounds):
            if name == requires_grad:
                self.assertCloseToReference(t.grad, e, b, torch.float64, name)
            else:
                self.assertIsNone(t.grad)

    # ------------------------------------------------------ determinism

    @dtypes(torch.float32, torch.bfloat16)
    def test_deterministic(self, device, dtype):
        shape = (2, 16, 9, 10)
        x1 = make_input(shape, dtype, device, seed=0)
        x2 = make_input((2, 16, 7, 12), dtype, device, seed=1)
        kwargs = dict(kernel_size=3, padding=1, groups=2, scale=1 / 16)
        off = make_offset(
            offset_shape(shape, 2, kwargs), dtype, device, seed=2, kind="wide"
        )

        def run():
            a, b, o = (t.detach().requires_grad_() for t in (x1, x2, off))
            out = F.correlation(a, b, 2, offset=o, **kwargs)
            g = torch.linspace(-1, 1, out.numel(), device=device, dtype=dtype).view_as(
                out
            )
            out.backward(g)
            return out, a.grad, b.grad, o.grad

        first = run()
        with DeterministicGuard(True):
            second = run()
        for a, b in zip(first, second):
            self.assertEqual(a, b, atol=0, rtol=0)

    @onlyCPU
    @dtypes(torch.float32, torch.bfloat16)
    def test_thread_count_invariance(self, device, dtype):
        # The result does not depend on how the work is split between
        # threads (within the reference's tolerance of each other).
        shape, max_disp = (3, 24, 8, 9), (2, 3)
        kwargs = dict(kernel_size=3, padding=1, groups=2, scale=1 / 24)
        x1 = make_input(shape, dtype, device, seed=0)
        x2 = make_input((3, 24, 10, 7), dtype, device, seed=1)
        off = make_offset(
            offset_shape(shape, max_disp, kwargs), dtype, device, seed=2, kind="wide"
        )
        g = make_input(output_shape(shape, max_disp, kwargs), dtype, device, seed=3)

        def run():
            a, b, o = (t.detach().requires_grad_() for t in (x1, x2, off))
            out = F.correlation(a, b, max_disp, offset=o, **kwargs)
            out.backward(g)
            return out, a.grad, b.grad, o.grad

        threads = torch.get_num_threads()
        results = []
        try:
            for n in (1, 2, 3):
                torch.set_num_threads(n)
                results.append(run())
        finally:
            torch.set_num_threads(threads)
        expected, bound = reference_forward(x1, x2, off, max_disp, kwargs)
        grads, bounds = reference_backward(x1, x2, off, g, max_disp, kwargs)
        for result in results:
            self.assertCloseToReference(result[0], expected, bound, dtype)
            for name, got, e, b in zip(
                ("input1", "input2", "offset"), result[1:], grads, bounds
            ):
                self.assertCloseToReference(got, e, b, dtype, name)
        for other in results[1:]:
            for a, b, bnd in zip(results[0], other, (bound, *bounds)):
                tol = 2 * ACC_RTOL[dtype] * bnd + 2 * OUT_EPS[dtype] * a.abs().double()
                self.assertTrue(((a - b).abs().double() <= tol).all())


instantiate_device_type_tests(
    TestCorrelationOffset, globals(), only_for=("cpu", "cuda")
)


class TestCorrelationOffsetErrors(TestCase):
    """Bad offsets and inputs raise a clear error naming the argument, the
    same on CPU and on Meta (FakeTensor, torch.compile)."""

    def message(self, exc_type, fn, *args, **kwargs):
        """The first line of the error of fn(*args, **kwargs) on CPU tensors,
        checked to be the same with every tensor moved to "meta"."""

        def on(device, value):
            if isinstance(value, torch.Tensor) and value.layout == torch.strided:
                return value.to(device)
            return value

        lines = []
        for device in ("cpu", "meta"):
            with self.assertRaises(exc_type) as cm:
                fn(
                    *(on(device, a) for a in args),
                    **{k: on(device, v) for k, v in kwargs.items()},
                )
            lines.append(str(cm.exception).split("\n")[0])
        self.assertEqual(lines[0], lines[1])
        return lines[0]

    def setUp(self):
        super().setUp()
        self.x1 = torch.randn(2, 4, 5, 6)
        self.x2 = torch.randn(2, 4, 3, 7)
        self.off = torch.randn(2, 2, 5, 6)

    def test_valid_call_on_meta(self):
        # The Meta kernel's output: the output shape, input1's memory format.
        x1 = self.x1.to("meta", memory_format=torch.channels_last)
        out = F.correlation(x1, self.x2.to("meta"), 1, offset=self.off.to("meta"))
        self.assertEqual(out.device.type, "meta")
        self.assertEqual(out.shape, (2, 9, 5, 6))
        self.assertTrue(out.is_contiguous(memory_format=torch.channels_last))
        grads = torch.ops.aten.correlation_backward(
            torch.empty(2, 9, 5, 6, device="meta"),
            x1,
            self.x2.to("meta"),
            self.off.to("meta"),
            *backward_args(1, {}),
            [True, True, True],
        )
        self.assertEqual(
            [g.shape for g in grads], [x1.shape, self.x2.shape, self.off.shape]
        )

    def test_offset_sizes(self):
        x1, x2 = self.x1, self.x2
        m = self.message(
            RuntimeError, F.correlation, x1, x2, 1, offset=torch.randn(1, 2, 5, 6)
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected offset of sizes (N, 2, H_out, W_out) = [2, 2, 5, 6] (the displacement (u, v) of input2's samples at each output location), but got offset with sizes [1, 2, 5, 6]""",  # noqa: E501
        )
        m = self.message(
            RuntimeError, F.correlation, x1, x2, 1, offset=torch.randn(2, 3, 5, 6)
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected offset of sizes (N, 2, H_out, W_out) = [2, 2, 5, 6] (the displacement (u, v) of input2's samples at each output location), but got offset with sizes [2, 3, 5, 6]""",  # noqa: E501
        )
        m = self.message(
            RuntimeError, F.correlation, x1, x2, 1, offset=torch.randn(2, 1, 5, 6)
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected offset of sizes (N, 2, H_out, W_out) = [2, 2, 5, 6] (the displacement (u, v) of input2's samples at each output location), but got offset with sizes [2, 1, 5, 6]""",  # noqa: E501
        )
        m = self.message(
            RuntimeError, F.correlation, x1, x2, 1, offset=torch.randn(2, 2, 4, 6)
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected offset of sizes (N, 2, H_out, W_out) = [2, 2, 5, 6] (the displacement (u, v) of input2's samples at each output location), but got offset with sizes [2, 2, 4, 6]""",  # noqa: E501
        )
        m = self.message(
            RuntimeError, F.correlation, x1, x2, 1, offset=torch.randn(2, 2, 5, 7)
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected offset of sizes (N, 2, H_out, W_out) = [2, 2, 5, 6] (the displacement (u, v) of input2's samples at each output location), but got offset with sizes [2, 2, 5, 7]""",  # noqa: E501
        )
        # The size follows the output (kernel, stride, padding), not input1.
        m = self.message(
            RuntimeError,
            F.correlation,
            x1,
            x2,
            1,
            offset=self.off,
            kernel_size=3,
            stride=2,
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected offset of sizes (N, 2, H_out, W_out) = [2, 2, 2, 2] (the displacement (u, v) of input2's samples at each output location), but got offset with sizes [2, 2, 5, 6]""",  # noqa: E501
        )
        # Channels last instead of first.
        m = self.message(
            RuntimeError, F.correlation, x1, x2, 1, offset=self.off.permute(0, 2, 3, 1)
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected offset of sizes (N, 2, H_out, W_out) = [2, 2, 5, 6] (the displacement (u, v) of input2's samples at each output location), but got offset with sizes [2, 5, 6, 2]""",  # noqa: E501
        )

    def test_offset_rank(self):
        x1, x2 = self.x1, self.x2
        m = self.message(RuntimeError, F.correlation, x1, x2, 1, offset=self.off[0])
        self.assertExpectedInline(
            m,
            """correlation(): expected offset of sizes (N, 2, H_out, W_out) = [2, 2, 5, 6] (the displacement (u, v) of input2's samples at each output location), but got offset with sizes [2, 5, 6]""",  # noqa: E501
        )
        m = self.message(RuntimeError, F.correlation, x1, x2, 1, offset=self.off[None])
        self.assertExpectedInline(
            m,
            """correlation(): expected offset of sizes (N, 2, H_out, W_out) = [2, 2, 5, 6] (the displacement (u, v) of input2's samples at each output location), but got offset with sizes [1, 2, 2, 5, 6]""",  # noqa: E501
        )
        m = self.message(RuntimeError, F.correlation, x1, x2, 1, offset=torch.randn(()))
        self.assertExpectedInline(
            m,
            """correlation(): expected offset of sizes (N, 2, H_out, W_out) = [2, 2, 5, 6] (the displacement (u, v) of input2's samples at each output location), but got offset with sizes []""",  # noqa: E501
        )
        # Unbatched inputs take an unbatched offset.
        m = self.message(
            RuntimeError, F.correlation, x1[0], x2[0], 1, offset=self.off[:1]
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected offset of sizes (2, H_out, W_out) = [2, 5, 6] (the displacement (u, v) of input2's samples at each output location), but got offset with sizes [1, 2, 5, 6]""",  # noqa: E501
        )
        m = self.message(
            RuntimeError, F.correlation, x1[0], x2[0], 1, offset=self.off[0, :1]
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected offset of sizes (2, H_out, W_out) = [2, 5, 6] (the displacement (u, v) of input2's samples at each output location), but got offset with sizes [1, 5, 6]""",  # noqa: E501
        )

    def test_offset_dtype(self):
        x1, x2 = self.x1, self.x2
        for dtype in (
            torch.float64,
            torch.float16,
            torch.bfloat16,
            torch.int64,
            torch.bool,
        ):
            with self.subTest(dtype=dtype):
                m = self.message(
                    RuntimeError, F.correlation, x1, x2, 1, offset=self.off.to(dtype)
                )
                self.assertIn(
                    "expected offset to have the same dtype as input1 (Float)", m
                )
        m = self.message(
            RuntimeError, F.correlation, x1, x2, 1, offset=self.off.double()
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected offset to have the same dtype as input1 (Float), but got Double""",
        )
        m = self.message(
            RuntimeError,
            F.correlation,
            x1.double(),
            x2.double(),
            1,
            offset=torch.zeros(2, 2, 5, 6, dtype=torch.complex128),
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected offset to have the same dtype as input1 (Double), but got ComplexDouble""",
        )
        # The dtype is checked before the sizes.
        m = self.message(
            RuntimeError,
            F.correlation,
            x1,
            x2,
            1,
            offset=torch.randn(2, 2, 4, 6).double(),
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected offset to have the same dtype as input1 (Float), but got Double""",
        )

    def test_offset_device(self):
        # A meta tensor stands in for a second device on CPU-only machines.
        x1, x2 = self.x1, self.x2
        with self.assertRaises(RuntimeError) as cm:
            F.correlation(x1, x2, 1, offset=self.off.to("meta"))
        self.assertExpectedInline(
            str(cm.exception).split("\n")[0],
            """correlation(): expected offset to be on the same device as input1, but offset is on meta and input1 is on cpu""",
        )
        with self.assertRaises(RuntimeError) as cm:
            F.correlation(x1.to("meta"), x2.to("meta"), 1, offset=self.off)
        self.assertExpectedInline(
            str(cm.exception).split("\n")[0],
            """correlation(): expected offset to be on the same device as input1, but offset is on cpu and input1 is on meta""",
        )

    def test_offset_layout(self):
        # Non-strided offsets are rejected by the dispatcher (its error names
        # the backend; only its first sentence is checked).
        for convert, backend in (
            (torch.Tensor.to_sparse, "SparseCPU"),
            (torch.Tensor.to_mkldnn, "MkldnnCPU"),
        ):
            with self.subTest(backend=backend):
                with self.assertRaises(NotImplementedError) as cm:
                    F.correlation(self.x1, self.x2, 1, offset=convert(self.off))
                self.assertEqual(
                    str(cm.exception).split(".")[0],
                    f"Could not run 'aten::correlation' with arguments from the '{backend}' backend",
                )
        with self.assertRaises(TypeError) as cm:
            F.correlation(self.x1, self.x2, 1, offset=[[1.0, 2.0]])
        self.assertExpectedInline(
            str(cm.exception).split("\n")[0],
            """correlation(): argument 'offset' must be Tensor, not list""",
        )

    def test_input2_mismatch_with_offset(self):
        x1, off = self.x1, self.off
        m = self.message(
            RuntimeError, F.correlation, x1, torch.randn(4, 3, 7), 1, offset=off
        )
        self.assertExpectedInline(
            m,
            """correlation(): with an offset, expected input2 to have the same number of dimensions, batch size and channels as input1 (its height and width may differ), but got input1 with sizes [2, 4, 5, 6] and input2 with sizes [4, 3, 7]""",  # noqa: E501
        )
        m = self.message(
            RuntimeError, F.correlation, x1, torch.randn(1, 4, 3, 7), 1, offset=off
        )
        self.assertExpectedInline(
            m,
            """correlation(): with an offset, expected input2 to have the same number of dimensions, batch size and channels as input1 (its height and width may differ), but got input1 with sizes [2, 4, 5, 6] and input2 with sizes [1, 4, 3, 7]""",  # noqa: E501
        )
        m = self.message(
            RuntimeError, F.correlation, x1, torch.randn(2, 3, 3, 7), 1, offset=off
        )
        self.assertExpectedInline(
            m,
            """correlation(): with an offset, expected input2 to have the same number of dimensions, batch size and channels as input1 (its height and width may differ), but got input1 with sizes [2, 4, 5, 6] and input2 with sizes [2, 3, 3, 7]""",  # noqa: E501
        )
        m = self.message(
            RuntimeError, F.correlation, x1, torch.randn(1, 2, 4, 3, 7), 1, offset=off
        )
        self.assertExpectedInline(
            m,
            """correlation(): with an offset, expected input2 to have the same number of dimensions, batch size and channels as input1 (its height and width may differ), but got input1 with sizes [2, 4, 5, 6] and input2 with sizes [1, 2, 4, 3, 7]""",  # noqa: E501
        )
        m = self.message(
            RuntimeError, F.correlation, x1, self.x2.double(), 1, offset=off
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected input1 and input2 to have the same dtype, but input1 has Float and input2 has Double""",
        )
        # Without an offset, the shapes must still be equal.
        m = self.message(RuntimeError, F.correlation, x1, self.x2, 1)
        self.assertExpectedInline(
            m,
            """correlation(): expected input1 and input2 to have the same shape, but got input1 with sizes [2, 4, 5, 6] and input2 with sizes [2, 4, 3, 7]""",  # noqa: E501
        )

    def test_backward_checks(self):
        x1, x2, off = self.x1, self.x2, self.off
        op = torch.ops.aten.correlation_backward
        g = torch.randn(2, 9, 5, 6)
        mask = [True, True, True]
        m = self.message(
            RuntimeError, op, g, x1, x2, off[:, :1], *backward_args(1, {}), mask
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected offset of sizes (N, 2, H_out, W_out) = [2, 2, 5, 6] (the displacement (u, v) of input2's samples at each output location), but got offset with sizes [2, 1, 5, 6]""",  # noqa: E501
        )
        m = self.message(
            RuntimeError, op, g, x1, x2, off.double(), *backward_args(1, {}), mask
        )
        self.assertExpectedInline(
            m,
            """correlation(): expected offset to have the same dtype as input1 (Float), but got Double""",
        )
        m = self.message(
            ValueError, op, g[:, :4], x1, x2, off, *backward_args(1, {}), mask
        )
        self.assertExpectedInline(
            m,
            """correlation_backward(): expected grad_output to have sizes [2, 9, 5, 6], but got [2, 4, 5, 6]""",
        )
        m = self.message(
            RuntimeError, op, g, x1, x2[:, :2], off, *backward_args(1, {}), mask
        )
        self.assertExpectedInline(
            m,
            """correlation(): with an offset, expected input2 to have the same number of dimensions, batch size and channels as input1 (its height and width may differ), but got input1 with sizes [2, 4, 5, 6] and input2 with sizes [2, 2, 3, 7]""",  # noqa: E501
        )


if __name__ == "__main__":
    run_tests()
