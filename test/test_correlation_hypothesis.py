# Owner(s): ["module: nn"]
"""Property-based tests of ``torch.nn.functional.correlation`` (hypothesis).

Random shapes and arguments (displacement strides of either sign: a
negative one orders its axis from the top down), all in float64:

* the forward equals the independent reference (``correlation_reference.py``);
* the gradients equal the reference's autograd gradients;
* symmetry: with kernel 1, stride 1, no padding and a symmetric displacement
  set, ``corr(x1, x2)`` at displacement ``d`` and pixel ``p`` equals
  ``corr(x2, x1)`` at ``-d`` and pixel ``p + d``;
* linearity in each input, and in ``scale``;
* groups: the result equals the concatenation of the per-group results;
* batch independence and unbatched == batched[0].

Examples are derandomized so that CI is reproducible.
"""

import os
import sys

import torch
import torch.nn.functional as F
from hypothesis import given, HealthCheck, settings, strategies as st
from torch.testing._internal.common_device_type import instantiate_device_type_tests
from torch.testing._internal.common_utils import run_tests, TestCase

import torch_correlation  # noqa: F401  (registers aten::correlation)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from correlation_reference import correlation_reference, displacements

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# float64 results of differently ordered sums of O(100) terms.
TOL = dict(atol=1e-11, rtol=1e-9)


@st.composite
def pairs(draw, lo, hi):
    return (draw(st.integers(lo, hi)), draw(st.integers(lo, hi)))


@st.composite
def configs(draw, simple=False):
    """(shape, max_displacement, kwargs, seed) of a valid call.

    simple: kernel 1, stride 1, no padding, dilation 1, symmetric
    displacements (for the symmetry property)."""
    kwargs = {}
    groups = draw(st.integers(1, 3))
    channels = groups * draw(st.integers(1, 4))
    if simple:
        kernel, stride, padding, dilation = (1, 1), (1, 1), (0, 0), (1, 1)
    else:
        kernel = draw(pairs(1, 3))
        stride = draw(pairs(1, 3))
        padding = draw(pairs(0, 2))
        dilation = draw(pairs(1, 2))
        kwargs.update(
            kernel_size=kernel, stride=stride, padding=padding, dilation=dilation
        )
    disp_stride = draw(pairs(1, 3))
    signs = draw(pairs(0, 1))
    kwargs["displacement_stride"] = tuple(
        -step if negative else step for step, negative in zip(disp_stride, signs)
    )
    if simple or draw(st.booleans()):
        max_disp = draw(pairs(0, 4))
    else:
        low = draw(pairs(-5, 3))
        max_disp = (low[0] + draw(st.integers(0, 5)), low[1] + draw(st.integers(0, 5)))
        kwargs["min_displacement"] = low
    sizes = []
    for k, d, p in zip(kernel, dilation, padding):
        extent = d * (k - 1) + 1
        sizes.append(max(1, extent - 2 * p) + draw(st.integers(0, 6)))
    kwargs["groups"] = groups
    kwargs["scale"] = draw(st.sampled_from([1.0, 0.5, -1.25, 1.0 / channels]))
    batch = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    return (batch, channels, *sizes), max_disp, kwargs, seed


def relayout(x, layout):
    """The same values as x with other strides."""
    if layout == "channels_last":
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


layouts = st.sampled_from(["contiguous", "channels_last", "transposed", "strided"])


def inputs(shape, seed, device, count=2):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(shape, generator=gen, dtype=torch.float64).to(device)
        for _ in range(count)
    ]


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


class TestCorrelationProperties(TestCase):
    @SETTINGS
    @given(config=configs(), layout1=layouts, layout2=layouts)
    def test_forward_matches_reference(self, device, config, layout1, layout2):
        shape, max_disp, kwargs, seed = config
        x1, x2 = inputs(shape, seed, device)
        out = F.correlation(
            relayout(x1, layout1), relayout(x2, layout2), max_disp, **kwargs
        )
        expected = correlation_reference(x1, x2, max_disp, **kwargs)
        self.assertEqual(out, expected, **TOL)

    @SETTINGS
    @given(config=configs(), layout1=layouts, layout2=layouts)
    def test_backward_matches_reference(self, device, config, layout1, layout2):
        shape, max_disp, kwargs, seed = config
        x1, x2 = inputs(shape, seed, device)
        grads = []
        for fn in (F.correlation, correlation_reference):
            a = relayout(x1.clone(), layout1).requires_grad_()
            b = relayout(x2.clone(), layout2).requires_grad_()
            out = fn(a, b, max_disp, **kwargs)
            g = torch.randn(
                out.shape,
                generator=torch.Generator().manual_seed(seed),
                dtype=torch.float64,
            ).to(device)
            grads.append(torch.autograd.grad(out, (a, b), g))
        self.assertEqual(grads[0][0], grads[1][0], **TOL)
        self.assertEqual(grads[0][1], grads[1][1], **TOL)

    @SETTINGS
    @given(config=configs(simple=True))
    def test_symmetry(self, device, config):
        # corr(x1, x2)[d](y, x) = sum_c x1[y, x] x2[y + dy, x + dx]
        #                       = corr(x2, x1)[-d](y + dy, x + dx),
        # and both sides are zero where (y + dy, x + dx) is off the image.
        shape, max_disp, kwargs, seed = config
        x1, x2 = inputs(shape, seed, device)
        dys, dxs = displacements(max_disp, None, kwargs["displacement_stride"])
        n, _, h, w = shape
        groups = kwargs["groups"]
        view = (n, groups, len(dys), len(dxs), h, w)
        out12 = F.correlation(x1, x2, max_disp, **kwargs).view(view)
        # The displacement sets are symmetric (in either order), so -d is the
        # flipped index.
        out21 = F.correlation(x2, x1, max_disp, **kwargs).view(view).flip(2, 3)
        for a, dy in enumerate(dys):
            for b, dx in enumerate(dxs):
                self.assertEqual(
                    out12[:, :, a, b], shifted(out21[:, :, a, b], dy, dx), **TOL
                )

    @SETTINGS
    @given(config=configs(), alpha=st.floats(-3, 3), beta=st.floats(-3, 3))
    def test_linear_in_each_input(self, device, config, alpha, beta):
        shape, max_disp, kwargs, seed = config
        x1, y1, x2, y2 = inputs(shape, seed, device, count=4)

        def corr(a, b):
            return F.correlation(a, b, max_disp, **kwargs)

        self.assertEqual(
            corr(alpha * x1 + beta * y1, x2),
            alpha * corr(x1, x2) + beta * corr(y1, x2),
            **TOL,
        )
        self.assertEqual(
            corr(x1, alpha * x2 + beta * y2),
            alpha * corr(x1, x2) + beta * corr(x1, y2),
            **TOL,
        )

    @SETTINGS
    @given(config=configs(), scale=st.floats(-10, 10))
    def test_linear_in_scale(self, device, config, scale):
        shape, max_disp, kwargs, seed = config
        x1, x2 = inputs(shape, seed, device)
        unit = F.correlation(x1, x2, max_disp, **dict(kwargs, scale=1.0))
        scaled = F.correlation(x1, x2, max_disp, **dict(kwargs, scale=scale))
        self.assertEqual(scaled, scale * unit, **TOL)

    @SETTINGS
    @given(config=configs())
    def test_groups_are_independent(self, device, config):
        shape, max_disp, kwargs, seed = config
        x1, x2 = inputs(shape, seed, device)
        groups = kwargs["groups"]
        per_group = shape[1] // groups
        single = dict(kwargs, groups=1)
        parts = [
            F.correlation(x1[:, sl], x2[:, sl], max_disp, **single)
            for sl in (slice(g * per_group, (g + 1) * per_group) for g in range(groups))
        ]
        self.assertEqual(
            F.correlation(x1, x2, max_disp, **kwargs), torch.cat(parts, 1), **TOL
        )

    @SETTINGS
    @given(config=configs())
    def test_batch_elements_are_independent(self, device, config):
        shape, max_disp, kwargs, seed = config
        x1, x2 = inputs(shape, seed, device)
        out = F.correlation(x1, x2, max_disp, **kwargs)
        for i in range(shape[0]):
            self.assertEqual(
                out[i], F.correlation(x1[i], x2[i], max_disp, **kwargs), **TOL
            )


instantiate_device_type_tests(
    TestCorrelationProperties, globals(), only_for=("cpu", "cuda")
)


if __name__ == "__main__":
    run_tests()
