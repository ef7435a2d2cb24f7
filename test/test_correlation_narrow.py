# Owner(s): ["module: nn"]
"""Tests of the CPU kernels for kernel_size 1 at stride 1 with few channels
per group or a one-row vertical displacement range (the stereo and
per-channel cost volumes; see NOTE [ Narrow Correlation CPU Kernels ] in
``aten_native/cpu/SpatialCorrelationNarrowKernel.h``).

The calls below are the ones that path takes (kernel_size 1, stride 1, and a
one-row vertical range or at most 4 channels a group): every output and gradient is
compared with the float64 reference of ``correlation_reference.py``, with the
tolerances it derives from the sum of the magnitudes of the summed terms
(those of ``test_correlation.py``). Shapes are small; the file runs in a few seconds.
"""

import os
import sys

import torch
import torch.nn.functional as F
from torch.testing._internal.common_utils import (
    instantiate_parametrized_tests,
    parametrize,
    run_tests,
    TestCase,
)

import torch_correlation  # noqa: F401  (registers aten::correlation)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from correlation_reference import (
    abs_scale,
    ALL_DTYPES,
    correlation_reference,
    make_input,
    pair,
    ReferenceAssertions,
    relayout,
)

DTYPE_NAMES = {
    torch.float64: "float64",
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
}

# (name, shape, max_displacement, kwargs): calls the narrow kernels take.
# Shapes are (N, C, H, W) or (C, H, W); groups give 1 to 8 channels each.
CASES = [
    # GwcNet-like: groups of 8 channels, disparities in descending order
    # (disparity d in channel g * D + d, i.e. dx = -d).
    (
        "stereo_descending",
        (2, 16, 5, 37),
        (0, 0),
        dict(
            min_displacement=(0, -11),
            displacement_stride=(1, -1),
            groups=2,
            scale=1 / 8,
        ),
    ),
    # DispNetC-like: one group, a one-row range.
    (
        "one_group_row_range",
        (1, 12, 4, 21),
        (0, 0),
        dict(min_displacement=(0, -9), displacement_stride=(1, -1), scale=1 / 12),
    ),
    # Ascending one-row range, both signs, padding.
    ("row_range_padded", (2, 6, 3, 19), (0, 4), dict(groups=3, padding=(1, 2))),
    # Per-channel 2-D volume (VCN): groups == channels.
    ("per_channel_2d", (2, 4, 6, 23), 2, dict(groups=4)),
    # 2-D range with steps, descending on both axes, padding.
    (
        "two_d_steps_descending",
        (1, 6, 7, 18),
        (3, 4),
        dict(
            min_displacement=(-2, -5),
            displacement_stride=(-2, -3),
            groups=2,
            padding=(2, 1),
            scale=0.5,
        ),
    ),
    # A vertical range only (one channel a group), and one-row ranges with
    # groups of 5 and 7 channels (two-dimensional ranges take these kernels
    # up to 4 channels a group).
    ("column_range", (1, 5, 9, 17), (3, 0), dict(groups=5)),
    ("five_channels", (2, 10, 4, 33), (0, 6), dict(groups=2, scale=-2.0)),
    ("seven_channels", (1, 7, 5, 9), (0, 2), dict(min_displacement=(0, -3))),
    # Ranges larger than the image, on either side.
    ("range_beyond_image", (1, 3, 3, 5), (4, 9), dict(groups=3)),
    (
        "range_all_outside",
        (1, 2, 2, 4),
        (5, 12),
        dict(min_displacement=(3, 6), displacement_stride=(1, -2), groups=2),
    ),
    # Tiny sizes: a row narrower than one vector, a single row, one pixel.
    ("narrow_row", (2, 4, 3, 3), (1, 2), dict(groups=4)),
    ("single_row", (1, 8, 1, 40), (0, 0), dict(min_displacement=(0, -13), groups=1)),
    ("single_pixel", (1, 2, 1, 1), 1, dict(groups=2, padding=1)),
    # Unbatched input.
    ("unbatched", (6, 4, 26), (0, 5), dict(groups=2, displacement_stride=(1, -2))),
    # Many channels with a one-row range (DispNetC's 256 channels, smaller).
    ("many_channels_row_range", (1, 40, 3, 20), (0, 3), dict(scale=1 / 40)),
    # Dilation is irrelevant with a 1x1 kernel.
    ("dilation", (1, 4, 4, 12), (1, 2), dict(groups=2, dilation=(2, 3))),
]


def reference(x1, x2, max_disp, **kwargs):
    """correlation_reference, with a negative displacement_stride taken as
    the ascending range from the top of the walk, its channels reversed."""
    steps = pair(kwargs.get("displacement_stride", 1))
    if min(steps) > 0:
        return correlation_reference(x1, x2, max_disp, **kwargs)
    max_d = pair(max_disp)
    min_d = kwargs.get("min_displacement")
    if min_d is not None:
        min_d = pair(min_d)
        # The walk max, max + s, ... >= min is the ascending set from
        # max - (count - 1) * |s|.
        min_d = tuple(
            hi - (hi - lo) // abs(s) * abs(s) for hi, lo, s in zip(max_d, min_d, steps)
        )
    ascending = dict(
        kwargs, displacement_stride=tuple(abs(s) for s in steps), min_displacement=min_d
    )
    out = correlation_reference(x1, x2, max_disp, **ascending)
    groups = kwargs.get("groups", 1)
    counts = [
        (hi - lo) // abs(s) + 1 if lo is not None else 2 * (hi // abs(s)) + 1
        for hi, lo, s in zip(max_d, min_d or (None, None), steps)
    ]
    *batch, channels, h, w = out.shape
    out = out.reshape(*batch, groups, counts[0], counts[1], h, w)
    flip = [out.dim() - 4 + axis for axis in (0, 1) if steps[axis] < 0]
    return out.flip(flip).reshape(*batch, channels, h, w)


class TestCorrelationNarrow(ReferenceAssertions, TestCase):
    def check(self, shape, max_disp, kwargs, dtype, layout, grads=(True, True)):
        x1 = relayout(make_input(shape, dtype, "cpu", 1), layout)
        x2 = relayout(make_input(shape, dtype, "cpu", 2), layout)
        r1 = x1.double().requires_grad_()
        r2 = x2.double().requires_grad_()
        expected = reference(r1, r2, max_disp, **kwargs)
        a1 = r1.detach().abs().requires_grad_()
        a2 = r2.detach().abs().requires_grad_()
        bound = reference(a1, a2, max_disp, **abs_scale(kwargs))

        x1.requires_grad_(grads[0])
        x2.requires_grad_(grads[1])
        out = F.correlation(x1, x2, max_disp, **kwargs)
        self.assertCloseToReference(
            out, expected.detach(), bound.detach(), dtype, "output"
        )
        if x1.dim() == 4 and layout == "channels_last" and x1[0, 0].numel() > 1:
            # The output follows input1's memory format (a 1x1 image has
            # both).
            self.assertTrue(out.is_contiguous(memory_format=torch.channels_last))
        if not any(grads):
            return
        grad_output = relayout(make_input(out.shape, dtype, "cpu", 3), layout)
        wanted = [x for x, w in zip((x1, x2), grads) if w]
        got = torch.autograd.grad(out, wanted, grad_output)
        g = grad_output.double()
        expected_grads = torch.autograd.grad(expected, (r1, r2), g)
        bounds = torch.autograd.grad(bound, (a1, a2), g.abs())
        names = ("grad_input1", "grad_input2")
        i = 0
        for k in range(2):
            if grads[k]:
                self.assertCloseToReference(
                    got[i], expected_grads[k], bounds[k], dtype, names[k]
                )
                i += 1

    @parametrize("case", [c[0] for c in CASES])
    def test_case_all_dtypes(self, case):
        _, shape, max_disp, kwargs = next(c for c in CASES if c[0] == case)
        for dtype in ALL_DTYPES:
            with self.subTest(dtype=DTYPE_NAMES[dtype]):
                self.check(shape, max_disp, kwargs, dtype, "contiguous")

    @parametrize("layout", ["channels_last", "strided"])
    @parametrize("dtype", [torch.float32, torch.bfloat16], name_fn=DTYPE_NAMES.get)
    def test_layouts(self, layout, dtype):
        for name, shape, max_disp, kwargs in CASES:
            with self.subTest(case=name):
                self.check(shape, max_disp, kwargs, dtype, layout)

    @parametrize(
        "grads",
        [(True, False), (False, True)],
        name_fn=lambda g: "x1" if g[0] else "x2",
    )
    def test_one_gradient(self, grads):
        # autograd asks the backward for one gradient only (output_mask).
        for name, shape, max_disp, kwargs in CASES[:6]:
            for layout in ("contiguous", "channels_last"):
                with self.subTest(case=name, layout=layout):
                    self.check(
                        shape, max_disp, kwargs, torch.float32, layout, grads=grads
                    )

    def test_forward_only(self):
        for name, shape, max_disp, kwargs in CASES[:4]:
            with self.subTest(case=name):
                self.check(
                    shape, max_disp, kwargs, torch.float32, "contiguous", (False, False)
                )

    @parametrize("dtype", [torch.float32, torch.bfloat16], name_fn=DTYPE_NAMES.get)
    def test_large_output(self, dtype):
        # Outputs beyond 16 MiB are written with non-temporal stores; rows of
        # 1000 pixels start off the vector alignment, so each row has a head
        # and a tail written normally.
        shape = (1, 4, 40, 1000)
        kwargs = dict(
            min_displacement=(0, -129),
            displacement_stride=(1, -1),
            groups=2,
            scale=0.5,
        )
        self.check(shape, (0, 0), kwargs, dtype, "contiguous", (False, False))

    def test_gwcnet_loop(self):
        # GwcNet's group-wise volume, built by its loop over disparities.
        n, c, h, w, groups, d = 2, 16, 4, 30, 4, 9
        left = make_input((n, c, h, w), torch.float32, "cpu", 4)
        right = make_input((n, c, h, w), torch.float32, "cpu", 5)
        volume = left.new_zeros(n, groups, d, h, w)
        for i in range(d):
            prod = left[..., i:] * right[..., : w - i]
            volume[:, :, i, :, i:] = prod.reshape(
                n, groups, c // groups, h, w - i
            ).mean(2)
        out = F.correlation(
            left,
            right,
            (0, 0),
            min_displacement=(0, -(d - 1)),
            displacement_stride=(1, -1),
            groups=groups,
            scale=groups / c,
        )
        self.assertEqual(out.view(n, groups, d, h, w), volume, atol=1e-5, rtol=1e-5)

    def test_deterministic_across_threads(self):
        # Each gradient row is written by one thread with its sums in a fixed
        # order, so the thread count does not change any bit.
        shape, max_disp, kwargs = (2, 8, 6, 45), (2, 3), dict(groups=4)
        x1 = make_input(shape, torch.float32, "cpu", 6).requires_grad_()
        x2 = make_input(shape, torch.float32, "cpu", 7).requires_grad_()
        results = []
        threads = torch.get_num_threads()
        try:
            for t in (1, 2, 3):
                torch.set_num_threads(t)
                out = F.correlation(x1, x2, max_disp, **kwargs)
                g = torch.autograd.grad(out, (x1, x2), torch.ones_like(out))
                results.append((out, *g))
        finally:
            torch.set_num_threads(threads)
        for other in results[1:]:
            for a, b in zip(results[0], other):
                self.assertEqual(a, b, atol=0, rtol=0)


instantiate_parametrized_tests(TestCorrelationNarrow)

if __name__ == "__main__":
    run_tests()
