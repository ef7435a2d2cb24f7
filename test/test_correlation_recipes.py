# Owner(s): ["module: nn"]
"""The docstring's recipes for peer layers, checked against those layers.

Each peer is transcribed literally from its own index arithmetic (plain loops,
float64, small sizes), not from ``F.correlation``'s formula, and the recipe of
the docstring of ``torch.nn.functional.correlation`` is compared with it:

* spatial-correlation-sampler (ClementPinard/Pytorch-Correlation-extension
  0.5.0, also the base of mmcv's ``Correlation``). Its CPU kernel
  (``correlation.cpp``) and its CUDA backward shift patch index ``p`` by
  ``(p - (P - 1) // 2) * t``; its CUDA forward (``correlation_cuda_kernel.cu``)
  by ``p * t - (t * (P - 1)) // 2``. The two differ for an even ``patch_size
  P`` with ``dilation_patch t >= 2``; the recipe follows the CPU kernel, and
  the docstring gives the CUDA forward's window too.
* the FlowNet correlation layer: Caffe's (lmb-freiburg/flownet2,
  ``correlation_layer.cu``) starts its kernel window at
  ``o * stride1 + max_displacement`` of the padded map; flownet2-pytorch's
  (``correlation_cuda_kernel.cu``) centres the window there, so the two agree
  only for ``kernel_size=1``. Both read a zero-padded NHWC copy through flat
  offsets; the transcriptions keep those offsets, so a read that leaves an
  image's padded copy is visible (NaN where it leaves the allocation).

* the stereo cost volumes of GwcNet (``build_gwc_volume``: group-wise,
  disparity ``d`` in slot ``d``) and DispNetC (its 1-D correlation: the same
  with one group), which PyTorch ports build in Python: a zero volume filled
  by a loop over disparities with the channel mean of a product of slices.
  Their recipes take the disparities in the networks' order (a negative
  ``displacement_stride``), so they need no flip, forward or backward.

When the real spatial-correlation-sampler is importable
(``benchmarks/install_sampler.sh`` builds its CPU kernel), its output is also
compared with both the transcription and the recipe. About 7 s of CPU time.
"""

import itertools
import math

import torch
import torch.nn.functional as F
from torch.testing._internal.common_utils import (
    instantiate_parametrized_tests,
    parametrize,
    run_tests,
    TestCase,
)

import torch_correlation  # noqa: F401  (registers aten::correlation)

try:
    from spatial_correlation_sampler import spatial_correlation_sample
except ImportError:
    spatial_correlation_sample = None


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def _c_div(a, b):
    """C integer division (truncates toward zero), as the peers' ``int`` code."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


# ---------------------------------------------------------------------------
# spatial-correlation-sampler, transcribed


def sampler_forward(
    input1,
    input2,
    kernel_size,
    patch_size,
    stride,
    padding,
    dilation,
    dilation_patch,
    kernel,
):
    """``correlation_cpp_forward`` (``kernel="cpu"``) or the CUDA forward kernel
    (``kernel="cuda"``) of spatial-correlation-sampler 0.5.0: output
    ``(N, patchH, patchW, oH, oW)``, no normalization."""
    kH, kW = _pair(kernel_size)
    patchH, patchW = _pair(patch_size)
    dH, dW = _pair(stride)
    padH, padW = _pair(padding)
    dilationH, dilationW = _pair(dilation)
    dilation_patchH, dilation_patchW = _pair(dilation_patch)
    N, C, iH, iW = input1.shape
    oH = _c_div(iH + 2 * padH - ((kH - 1) * dilationH + 1), dH) + 1
    oW = _c_div(iW + 2 * padW - ((kW - 1) * dilationW + 1), dW) + 1
    a, b = input1.tolist(), input2.tolist()
    out = [
        [
            [[[0.0] * oW for _ in range(oH)] for _ in range(patchW)]
            for _ in range(patchH)
        ]
        for _ in range(N)
    ]
    for n, ph, pw, h, w in itertools.product(
        range(N), range(patchH), range(patchW), range(oH), range(oW)
    ):
        if kernel == "cpu":
            shiftU = (ph - _c_div(patchH - 1, 2)) * dilation_patchH
            shiftV = (pw - _c_div(patchW - 1, 2)) * dilation_patchW
        else:
            shiftU = ph * dilation_patchH - _c_div(dilation_patchH * (patchH - 1), 2)
            shiftV = pw * dilation_patchW - _c_div(dilation_patchW * (patchW - 1), 2)
        u, v = -padH + h * dH, -padW + w * dW
        acc = 0.0
        for c, i, j in itertools.product(range(C), range(kH), range(kW)):
            i1 = u + i * dilationH
            i2 = i1 + shiftU
            j1 = v + j * dilationW
            j2 = j1 + shiftV
            if 0 <= i1 < iH and 0 <= i2 < iH and 0 <= j1 < iW and 0 <= j2 < iW:
                acc += a[n][c][i1][j1] * b[n][c][i2][j2]
        out[n][ph][pw][h][w] = acc
    return torch.tensor(out, dtype=torch.float64)


def sampler_cuda_backward_input1(
    grad_output,
    input2,
    kernel_size,
    patch_size,
    stride,
    padding,
    dilation,
    dilation_patch,
):
    """``correlation_cuda_backward_kernel_input1`` of spatial-correlation-sampler 0.5.0."""
    kH, kW = _pair(kernel_size)
    patchH, patchW = _pair(patch_size)
    dH, dW = _pair(stride)
    padH, padW = _pair(padding)
    dilationH, dilationW = _pair(dilation)
    dilation_patchH, dilation_patchW = _pair(dilation_patch)
    N, C, iH, iW = input2.shape
    H, W = grad_output.shape[3:]
    patchRadH, patchRadW = _c_div(patchH - 1, 2), _c_div(patchW - 1, 2)
    g, b = grad_output.tolist(), input2.tolist()
    grad = torch.zeros(N, C, iH, iW, dtype=torch.float64)
    for n, c, h, w in itertools.product(range(N), range(C), range(iH), range(iW)):
        h_2, w_2 = h + padH, w + padW
        min_h, min_w = h_2 - kH * dilationH, w_2 - kW * dilationW
        acc = 0.0
        for ph, pw in itertools.product(range(patchH), range(patchW)):
            i1 = h + dilation_patchH * (ph - patchRadH)
            j1 = w + dilation_patchW * (pw - patchRadW)
            if not (0 <= i1 < iH and 0 <= j1 < iW):
                continue
            val = b[n][c][i1][j1]
            for h_3 in range(h_2, min_h, -dilationH):
                i2 = _c_div(h_3, dH)
                if i2 * dH != h_3:
                    continue
                for w_3 in range(w_2, min_w, -dilationW):
                    j2 = _c_div(w_3, dW)
                    if j2 * dW != w_3:
                        continue
                    if 0 <= i2 < H and 0 <= j2 < W:
                        acc += g[n][ph][pw][i2][j2] * val
        grad[n, c, h, w] = acc
    return grad


def sampler_recipe(
    f1,
    f2,
    kernel_size,
    patch_size,
    stride,
    padding,
    dilation,
    dilation_patch,
    kernel="cpu",
):
    """The docstring's recipe: the CPU kernel's window, or the CUDA forward's."""
    P, t = _pair(patch_size), _pair(dilation_patch)
    if kernel == "cpu":
        high = tuple((p // 2) * s for p, s in zip(P, t))
        low = tuple(-((p - 1) // 2) * s for p, s in zip(P, t))
    else:
        low = tuple(-((s * (p - 1)) // 2) for p, s in zip(P, t))
        high = tuple(lo + (p - 1) * s for lo, p, s in zip(low, P, t))
    out = F.correlation(
        f1,
        f2,
        high,
        min_displacement=low,
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        displacement_stride=dilation_patch,
    )
    return out.view(f1.shape[0], P[0], P[1], *out.shape[-2:])


# (patch_size, dilation_patch, kernel_size, stride, padding, dilation, shape)
SAMPLER_CASES = [
    (3, 1, 1, 1, 0, 1, (1, 2, 5, 6)),
    (5, 2, 1, 1, 0, 1, (2, 2, 6, 7)),
    (4, 1, 1, 1, 0, 1, (1, 2, 5, 5)),
    (4, 2, 1, 1, 0, 1, (1, 2, 7, 6)),
    (4, 3, 2, 1, 1, 1, (1, 2, 6, 7)),
    ((2, 4), (3, 2), (2, 1), (2, 1), (1, 0), (1, 2), (2, 2, 6, 7)),
    (6, 2, 3, 2, 1, 2, (1, 1, 9, 8)),
]


# ---------------------------------------------------------------------------
# The FlowNet layer (Caffe, flownet2-pytorch), transcribed


def _padded_nhwc(x, pad):
    """The layers' rearranged input: zero-padded, NHWC, as one flat list."""
    return F.pad(x, (pad,) * 4).permute(0, 2, 3, 1).reshape(-1).tolist()


def flownet_forward(
    input1, input2, pad_size, kernel_size, max_displacement, stride1, stride2, layer
):
    """``CorrelateData`` of Caffe (``layer="caffe"``) or ``correlation_forward`` of
    flownet2-pytorch (``layer="flownet2-pytorch"``). A read outside the flat
    padded buffer (C would read other memory) gives NaN."""
    N, C, H, W = input1.shape
    kernel_rad = (kernel_size - 1) // 2
    border = kernel_rad + max_displacement
    pH, pW = H + 2 * pad_size, W + 2 * pad_size
    oH = math.ceil((pH - 2 * border) / stride1)
    oW = math.ceil((pW - 2 * border) / stride1)
    grid_rad = max_displacement // stride2
    grid_width = 2 * grid_rad + 1
    r1, r2 = _padded_nhwc(input1, pad_size), _padded_nhwc(input2, pad_size)

    def at(buf, item, y, x, ch):
        idx = ((item * pH + y) * pW + x) * C + ch
        return buf[idx] if 0 <= idx < len(buf) else math.nan

    if layer == "caffe":
        window = range(kernel_size)
    else:
        window = range(-kernel_rad, kernel_rad + 1)
    out = torch.zeros(N, grid_width * grid_width, oH, oW, dtype=torch.float64)
    for n, tc, oy, ox in itertools.product(
        range(N), range(grid_width**2), range(oH), range(oW)
    ):
        s2o = (tc % grid_width - grid_rad) * stride2
        s2p = (tc // grid_width - grid_rad) * stride2
        x1, y1 = ox * stride1 + max_displacement, oy * stride1 + max_displacement
        x2, y2 = x1 + s2o, y1 + s2p
        acc = 0.0
        for j, i, ch in itertools.product(window, window, range(C)):
            acc += at(r1, n, y1 + j, x1 + i, ch) * at(r2, n, y2 + j, x2 + i, ch)
        out[n, tc, oy, ox] = acc / (kernel_size * kernel_size * C)
    return out


def flownet_reads_inside(
    shape, pad_size, kernel_size, max_displacement, stride1, stride2
):
    """Per output location of flownet2-pytorch's layer: whether every read stays
    inside the image's padded copy (and does not wrap to another row or image)."""
    N, C, H, W = shape
    kernel_rad = (kernel_size - 1) // 2
    pH, pW = H + 2 * pad_size, W + 2 * pad_size
    oH = math.ceil((pH - 2 * (kernel_rad + max_displacement)) / stride1)
    oW = math.ceil((pW - 2 * (kernel_rad + max_displacement)) / stride1)
    grid_rad = max_displacement // stride2
    inside = torch.ones(N, (2 * grid_rad + 1) ** 2, oH, oW, dtype=torch.bool)
    for tc, oy, ox in itertools.product(range(inside.shape[1]), range(oH), range(oW)):
        s2o = (tc % (2 * grid_rad + 1) - grid_rad) * stride2
        s2p = (tc // (2 * grid_rad + 1) - grid_rad) * stride2
        y1, x1 = oy * stride1 + max_displacement, ox * stride1 + max_displacement
        ys = [
            y1 - kernel_rad,
            y1 + kernel_rad,
            y1 + s2p - kernel_rad,
            y1 + s2p + kernel_rad,
        ]
        xs = [
            x1 - kernel_rad,
            x1 + kernel_rad,
            x1 + s2o - kernel_rad,
            x1 + s2o + kernel_rad,
        ]
        inside[:, tc, oy, ox] = all(0 <= y < pH for y in ys) and all(
            0 <= x < pW for x in xs
        )
    return inside


def caffe_recipe(f1, f2, pad_size, kernel_size, max_displacement, stride1, stride2):
    C = f1.shape[1]
    return F.correlation(
        f1,
        f2,
        max_displacement,
        kernel_size=kernel_size,
        stride=stride1,
        padding=pad_size - max_displacement,
        displacement_stride=stride2,
        scale=1 / (kernel_size * kernel_size * C),
    )


def flownet2_pytorch_recipe(
    f1, f2, pad_size, kernel_size, max_displacement, stride1, stride2
):
    N, C, H, W = f1.shape
    r = (kernel_size - 1) // 2
    out = F.correlation(
        f1,
        f2,
        max_displacement,
        kernel_size=kernel_size,
        stride=stride1,
        padding=pad_size - max_displacement + r,
        displacement_stride=stride2,
        scale=1 / (kernel_size * kernel_size * C),
    )
    h_out = math.ceil((H + 2 * pad_size - 2 * max_displacement - 2 * r) / stride1)
    w_out = math.ceil((W + 2 * pad_size - 2 * max_displacement - 2 * r) / stride1)
    return out[..., :h_out, :w_out]


# (pad_size, kernel_size, max_displacement, stride1, stride2, shape)
FLOWNET_CASES = [
    (2, 1, 2, 1, 1, (2, 3, 5, 6)),  # PWC-Net-like
    (4, 1, 4, 1, 2, (1, 2, 6, 7)),  # FlowNetC-like
    (3, 1, 2, 2, 1, (1, 2, 7, 8)),
    (3, 1, 3, 1, 2, (1, 2, 5, 6)),  # max_displacement not a multiple of stride2
    (3, 3, 2, 1, 1, (2, 2, 6, 7)),
    (4, 3, 3, 2, 2, (2, 2, 8, 7)),
    (1, 3, 1, 1, 1, (2, 2, 5, 6)),  # pad_size < max_displacement + kernel radius
    (5, 5, 3, 2, 1, (1, 2, 7, 8)),
]


# ---------------------------------------------------------------------------
# Stereo cost volumes (GwcNet, DispNetC), as their Python builds them


def gwcnet_build_gwc_volume(left, right, max_disparity, num_groups):
    """GwcNet's ``build_gwc_volume``: ``(B, num_groups, max_disparity, H, W)``,
    slot ``d`` the group-wise mean of ``left[..., x] * right[..., x - d]``, left
    at zero for ``x < d``."""
    B, C, H, W = left.shape
    volume = left.new_zeros(B, num_groups, max_disparity, H, W)
    for d in range(max_disparity):
        if d == 0:
            prod = left * right
        else:
            prod = left[..., d:] * right[..., :-d]
        # The group-wise correlation: mean over each group's channels.
        cost = prod.view(B, num_groups, C // num_groups, H, prod.shape[-1]).mean(2)
        volume[:, :, d, :, d:] = cost
    return volume.contiguous()


def dispnetc_correlation(left, right, max_disparity):
    """DispNetC's 1-D correlation: ``(B, max_disparity, H, W)``, channel ``d``
    the channel mean of ``left[..., x] * right[..., x - d]``, zero for ``x < d``."""
    B, C, H, W = left.shape
    volume = left.new_zeros(B, max_disparity, H, W)
    for d in range(max_disparity):
        if d == 0:
            volume[:, d] = (left * right).mean(1)
        else:
            volume[:, d, :, d:] = (left[..., d:] * right[..., :-d]).mean(1)
    return volume.contiguous()


def gwcnet_recipe(left, right, max_disparity, num_groups):
    """The docstring's recipe: disparity d = -(horizontal displacement), taken
    from 0 down to 1 - max_disparity."""
    B, C, H, W = left.shape
    return F.correlation(
        left,
        right,
        (0, 0),
        min_displacement=(0, 1 - max_disparity),
        displacement_stride=(1, -1),
        groups=num_groups,
        scale=num_groups / C,
    ).view(B, num_groups, max_disparity, H, W)


def dispnetc_recipe(left, right, max_disparity):
    return F.correlation(
        left,
        right,
        (0, 0),
        min_displacement=(0, 1 - max_disparity),
        displacement_stride=(1, -1),
        scale=1 / left.shape[1],
    )


# (max_disparity, num_groups, shape); the last reaches past the image width.
STEREO_CASES = [
    (1, 1, (1, 2, 3, 4)),
    (4, 2, (2, 4, 3, 7)),
    (6, 3, (1, 6, 4, 9)),
    (5, 4, (1, 8, 2, 16)),
    (9, 2, (1, 4, 3, 6)),
]


class TestCorrelationRecipes(TestCase):
    @parametrize("case", SAMPLER_CASES)
    def test_sampler_cpu_recipe(self, case):
        P, t, k, s, p, d, shape = case
        f1, f2 = torch.randn(2, *shape, dtype=torch.float64).unbind(0)
        expected = sampler_forward(f1, f2, k, P, s, p, d, t, kernel="cpu")
        self.assertEqual(
            sampler_recipe(f1, f2, k, P, s, p, d, t), expected, atol=1e-12, rtol=0
        )

    @parametrize("case", SAMPLER_CASES)
    def test_sampler_cuda_forward_recipe(self, case):
        P, t, k, s, p, d, shape = case
        f1, f2 = torch.randn(2, *shape, dtype=torch.float64).unbind(0)
        expected = sampler_forward(f1, f2, k, P, s, p, d, t, kernel="cuda")
        actual = sampler_recipe(f1, f2, k, P, s, p, d, t, kernel="cuda")
        self.assertEqual(actual, expected, atol=1e-12, rtol=0)
        # The two windows differ exactly for an even patch size with dilation_patch >= 2.
        differs = any(q % 2 == 0 and u >= 2 for q, u in zip(_pair(P), _pair(t)))
        cpu = sampler_forward(f1, f2, k, P, s, p, d, t, kernel="cpu")
        self.assertEqual(not torch.equal(cpu, expected), differs)

    @parametrize("case", SAMPLER_CASES)
    def test_sampler_cuda_backward_follows_cpu_window(self, case):
        # The CUDA backward of the sampler is the gradient of the CPU window, so
        # the recipe's gradient (F.correlation's backward) matches it.
        P, t, k, s, p, d, shape = case
        f1, f2 = torch.randn(2, *shape, dtype=torch.float64).unbind(0)
        f1.requires_grad_(True)
        out = sampler_recipe(f1, f2, k, P, s, p, d, t)
        grad_output = torch.randn_like(out)
        (grad1,) = torch.autograd.grad(out, f1, grad_output)
        expected = sampler_cuda_backward_input1(grad_output, f2, k, P, s, p, d, t)
        self.assertEqual(grad1, expected, atol=1e-12, rtol=0)

    @parametrize("case", SAMPLER_CASES)
    def test_sampler_package(self, case):
        if spatial_correlation_sample is None:
            self.skipTest(
                "spatial_correlation_sampler is not installed "
                "(benchmarks/install_sampler.sh builds it)"
            )
        P, t, k, s, p, d, shape = case
        f1, f2 = torch.randn(2, *shape, dtype=torch.float64).unbind(0)
        actual = spatial_correlation_sample(
            f1,
            f2,
            kernel_size=k,
            patch_size=P,
            stride=s,
            padding=p,
            dilation=d,
            dilation_patch=t,
        )
        self.assertEqual(
            actual,
            sampler_forward(f1, f2, k, P, s, p, d, t, kernel="cpu"),
            atol=1e-12,
            rtol=0,
        )
        self.assertEqual(
            actual, sampler_recipe(f1, f2, k, P, s, p, d, t), atol=1e-12, rtol=0
        )

    @parametrize("case", FLOWNET_CASES)
    def test_caffe_recipe(self, case):
        pad, k, m, s1, s2, shape = case
        if pad < m:
            self.skipTest("the Caffe recipe needs pad_size >= max_displacement")
        f1, f2 = torch.randn(2, *shape, dtype=torch.float64).unbind(0)
        expected = flownet_forward(f1, f2, pad, k, m, s1, s2, layer="caffe")
        self.assertFalse(expected.isnan().any())  # Caffe's reads never leave its buffer
        self.assertEqual(
            caffe_recipe(f1, f2, pad, k, m, s1, s2), expected, atol=1e-12, rtol=0
        )

    @parametrize("case", FLOWNET_CASES)
    def test_flownet2_pytorch_recipe(self, case):
        pad, k, m, s1, s2, shape = case
        f1, f2 = torch.randn(2, *shape, dtype=torch.float64).unbind(0)
        expected = flownet_forward(f1, f2, pad, k, m, s1, s2, layer="flownet2-pytorch")
        inside = flownet_reads_inside(shape, pad, k, m, s1, s2)
        actual = flownet2_pytorch_recipe(f1, f2, pad, k, m, s1, s2)
        self.assertEqual(actual.shape, expected.shape)
        self.assertEqual(actual[inside], expected[inside], atol=1e-12, rtol=0)
        if k == 1:
            # Same layer as Caffe's; every read stays inside the padded copy.
            self.assertTrue(inside.all())
            if pad >= m:
                self.assertEqual(
                    actual, caffe_recipe(f1, f2, pad, k, m, s1, s2), atol=0, rtol=0
                )
        else:
            # Its centred window starts (k - 1) // 2 before Caffe's, so it leaves
            # the padded copy at the top-left border when the most negative
            # displacement reaches past max_displacement - (k - 1) // 2.
            reaches_out = (m // s2) * s2 + (k - 1) // 2 > m
            self.assertEqual(not inside.all(), reaches_out)
            if pad >= m:
                caffe = flownet_forward(f1, f2, pad, k, m, s1, s2, layer="caffe")
                self.assertNotEqual(caffe[inside], expected[inside])

    def _check_stereo(self, recipe, peer, shape):
        # Forward and both gradients, the recipe against the peer's loop.
        left, right = torch.randn(2, *shape, dtype=torch.float64).unbind(0)
        results = []
        for fn in (recipe, peer):
            a = left.clone().requires_grad_()
            b = right.clone().requires_grad_()
            out = fn(a, b)
            grad_output = torch.randn(
                out.shape, generator=torch.Generator().manual_seed(0), dtype=out.dtype
            )
            results.append((out, *torch.autograd.grad(out, (a, b), grad_output)))
        for name, actual, expected in zip(
            ("volume", "grad left", "grad right"), *results
        ):
            self.assertEqual(actual, expected, atol=1e-12, rtol=0, msg=name)

    @parametrize("case", STEREO_CASES)
    def test_gwcnet_recipe(self, case):
        D, G, shape = case
        self._check_stereo(
            lambda a, b: gwcnet_recipe(a, b, D, G),
            lambda a, b: gwcnet_build_gwc_volume(a, b, D, G),
            shape,
        )

    @parametrize("case", STEREO_CASES)
    def test_dispnetc_recipe(self, case):
        D, _, shape = case
        self._check_stereo(
            lambda a, b: dispnetc_recipe(a, b, D),
            lambda a, b: dispnetc_correlation(a, b, D),
            shape,
        )


instantiate_parametrized_tests(TestCorrelationRecipes)


if __name__ == "__main__":
    run_tests()
