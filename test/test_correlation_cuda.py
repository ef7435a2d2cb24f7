# Owner(s): ["module: nn"]
"""CUDA-specific tests of ``torch.nn.functional.correlation``.

The device-generic tests (test_correlation.py) already run on CUDA; these
cover what is particular to the CUDA kernels (aten_native/cuda/SpatialCorrelation.cuh):

* CPU-vs-CUDA agreement, forward and backward, over many random
  configurations chosen to hit both the tiled kernels (kernel_size 1,
  stride 1: tile and halo edges, partial displacement chunks, row phases) and
  the generic ones, in every dtype and memory layout;
* the network configurations the tiled kernels are built for (PWC-Net,
  FlowNetC, GwcNet);
* 64-bit indexing, streams, devices, determinism and device errors;
* with an ``offset`` (aten_native/cuda/SpatialCorrelationOffset.cuh): the
  output and the gradients w.r.t. input1, input2 and offset against the CPU
  op and a float64 reference, for every dtype, layout and kind of offset
  (fractional, integer, across input2's border, non-finite, huge), input2 of
  other sizes, the integer op as the special case of integer offsets, output
  masks, empty inputs and determinism; through the harness also thread
  order, the 32/64-bit switch and the bucket sort of the grad_input2 gather.

The correctness tests (CUDAKernelTests) run twice: on a GPU through the
operator (TestCorrelationCUDA, skipped without one) and, on every machine,
through tools/cuda_on_cpu.py, which runs the same kernels with the same
launch configurations on the CPU (TestCorrelationCUDAOnCPU; it adds thread
order, forced 64-bit indexing and far displacements).
``python tools/cuda_on_cpu.py --sanitize`` runs that class under
AddressSanitizer and UndefinedBehaviorSanitizer.

The expected values come from the CPU kernels and from ``correlation_reference``
(correlation_reference.py), an independent float64 implementation written
from the documented formula (zero-padded shifts and slices), which autograd
differentiates for the reference gradients; with an offset, from
``reference_correlation_offset`` below (per-sample four-tap bilinear reads,
itself checked against grid_sample).

Tolerances: float64 1e-10; float32 1e-4 (CPU and CUDA sum in different
orders); float16 and bfloat16 are compared with the float64 reference
evaluated on the same (rounded) inputs, within about one rounding of the
result (relative 1e-2) plus a small multiple of the output's magnitude.
"""

import itertools
import random
import sys
import unittest
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.testing._internal.common_utils import (
    DeterministicGuard,
    run_tests,
    TestCase,
)

import torch_correlation  # noqa: F401  (registers aten::correlation)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import cuda_on_cpu

sys.path.insert(0, str(Path(__file__).resolve().parent))
from correlation_reference import (
    ALL_DTYPES,
    backward_args,
    correlation_reference,
    displacement_set,
    output_shape,
    pair,
    parse_call,
)

TEST_CUDA = torch.cuda.is_available()
TEST_MULTIGPU = TEST_CUDA and torch.cuda.device_count() >= 2


# ---------------------------------------------------------------------------
# Independent reference with an offset.


def _bilinear_zeros(image, y, x):
    """``image`` (N, C, H, W) sampled at the float64 positions ``y``, ``x``
    (N, ...) with the four-tap bilinear rule, taps outside reading zero:
    taps (floor + t), weights from the fractions, so that at an integer
    position the derivative w.r.t. the position is the right-sided one."""
    n, c, h, w = image.shape
    y0, x0 = y.floor(), x.floor()
    fy, fx = y - y0, x - x0
    flat = image.reshape(n, c, h * w)
    out = 0
    for ty in (0, 1):
        for tx in (0, 1):
            yy, xx = y0 + ty, x0 + tx
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            index = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).long()
            values = flat.gather(
                2, index.reshape(n, 1, -1).expand(n, c, index[0].numel())
            ).reshape(n, c, *y.shape[1:])
            weight = (fy if ty else 1 - fy) * (fx if tx else 1 - fx)
            out = out + torch.where(inside, weight, 0).unsqueeze(1) * values
    return out


def reference_correlation_offset(input1, input2, max_displacement, *, offset, **kwargs):
    """``F.correlation(..., offset=offset, **kwargs)`` in float64, from the
    documented formula: every term reads input1 (zero outside) at the window
    position and input2 bilinearly at the same position plus the
    displacement plus the location's offset (:func:`_bilinear_zeros`).
    Differentiable w.r.t. all three tensors. A location with a non-finite
    offset component gets NaN outputs and contributes nothing to the
    gradients of the inputs (its offset gradient, from autograd, is zero;
    the NaN rule of the offset gradient is applied by the caller)."""
    unbatched = input1.dim() == 3
    x1 = input1.to(torch.float64)
    x2 = input2.to(torch.float64)
    off = offset.to(torch.float64)
    if unbatched:
        x1, x2, off = x1.unsqueeze(0), x2.unsqueeze(0), off.unsqueeze(0)
    n, c, h, w = x1.shape
    call = parse_call((h, w), max_displacement, **kwargs)
    (kh, kw), (sh, sw) = call.kernel_size, call.stride
    (ph, pw), (dh, dw) = call.padding, call.dilation
    out_h, out_w = call.out_size
    groups = call.groups
    assert off.shape == (n, 2, out_h, out_w), off.shape
    finite = off.isfinite().all(1)
    off = torch.where(finite.unsqueeze(1), off, 0)
    u, v = off[:, 0], off[:, 1]
    oy = torch.arange(out_h, dtype=torch.float64).view(1, -1, 1) * sh - ph
    ox = torch.arange(out_w, dtype=torch.float64).view(1, 1, -1) * sw - pw
    planes = []
    for dy in call.dys:
        for dx in call.dxs:
            acc = x1.new_zeros(n, groups, out_h, out_w)
            for i in range(kh):
                for j in range(kw):
                    y1 = (oy + i * dh).expand(n, out_h, out_w)
                    xx1 = (ox + j * dw).expand(n, out_h, out_w)
                    # Integer positions: the bilinear rule reads input1 exactly.
                    a = _bilinear_zeros(x1, y1, xx1)
                    b = _bilinear_zeros(x2, y1 + dy + v, xx1 + dx + u)
                    acc = acc + (a * b).reshape(
                        n, groups, c // groups, out_h, out_w
                    ).sum(2)
            planes.append(acc)
    out = torch.stack(planes, 2).reshape(n, -1, out_h, out_w) * call.scale
    out = out * finite.unsqueeze(1)
    return out.squeeze(0) if unbatched else out


# ---------------------------------------------------------------------------
# Configurations.


def random_config(rng):
    """A random valid call: (shape, max_displacement, kwargs).

    About two thirds use kernel_size 1 and stride 1 (the tiled CUDA
    kernels), with sizes that cross the 32-column tiles, the 4-row
    displacement groups and the 16-wide displacement chunks; the rest take
    arbitrary kernels, strides and dilations (the generic kernels). About
    half have a negative displacement stride on one axis or both (descending
    channel order there).
    """
    tiled = rng.random() < 0.65
    if tiled:
        kernel, stride, dilation = (
            (1, 1),
            (1, 1),
            (rng.choice([1, 2]), rng.choice([1, 2])),
        )
    else:
        kernel = (rng.choice([1, 2, 3]), rng.choice([1, 2, 3]))
        stride = (rng.choice([1, 2, 3]), rng.choice([1, 2]))
        dilation = (rng.choice([1, 1, 2]), rng.choice([1, 1, 2]))
    padding = (rng.choice([0, 0, 1, 3]), rng.choice([0, 0, 2, 5]))
    # Vertical steps up to the tiled kernels' limit (8) and one beyond.
    disp_stride = (rng.choice([1, 1, 2, 3, 9]), rng.choice([1, 1, 2, 3]))
    groups = rng.choice([1, 1, 2, 3])
    channels = groups * rng.choice([1, 2, 3, 5, 9])
    kwargs = {}
    if rng.random() < 0.5:
        max_disp = (rng.randint(0, 10), rng.randint(0, 22))
    else:
        # One-sided, all negative, all positive or mixed ranges.
        lows = (rng.randint(-12, 4), rng.randint(-40, 4))
        max_disp = (lows[0] + rng.randint(0, 12), lows[1] + rng.randint(0, 40))
        kwargs["min_displacement"] = lows
    sizes = []
    for k, d, p in zip(kernel, dilation, padding):
        extent = d * (k - 1) + 1
        sizes.append(max(1, extent - 2 * p))
    height = sizes[0] + rng.choice([0, 1, 3, 7, 12, 19])
    width = sizes[1] + rng.choice([0, 5, 31, 33, 40, 70])
    arguments = (
        ("kernel_size", kernel, (1, 1)),
        ("stride", stride, (1, 1)),
        ("padding", padding, (0, 0)),
        ("dilation", dilation, (1, 1)),
        ("displacement_stride", disp_stride, (1, 1)),
    )
    kwargs.update(
        {name: value for name, value, default in arguments if value != default}
    )
    if groups != 1:
        kwargs["groups"] = groups
    if rng.random() < 0.3:
        kwargs["scale"] = rng.choice([0.5, -2.0, 1.0 / channels])
    batch = rng.choice([1, 1, 2, 3])
    shape = (
        (channels, height, width)
        if rng.random() < 0.15
        else (batch, channels, height, width)
    )
    # Drawn last, so that the draws above stay those of the ascending-only
    # configurations.
    signs = (rng.choice([1, 1, 1, -1]), rng.choice([1, 1, -1]))
    if signs != (1, 1):
        kwargs["displacement_stride"] = tuple(
            sign * step for sign, step in zip(signs, disp_stride)
        )
    return shape, max_disp, kwargs


def random_offset_config(rng):
    """A random valid call with an offset: (shape, input2's (height, width),
    max_displacement, kwargs). Small: the offset kernels are generic (one
    code path for every geometry), so the draws aim at their cases instead:
    kernel windows, strides, dilations, padding, groups, ascending and
    descending displacement steps (a unit horizontal step shares taps
    between neighbouring displacements), and input2 smaller or larger than
    input1."""
    kernel = (rng.choice([1, 1, 2, 3]), rng.choice([1, 1, 2, 3]))
    stride = (rng.choice([1, 1, 2]), rng.choice([1, 1, 3]))
    dilation = (rng.choice([1, 1, 2]), rng.choice([1, 2]))
    padding = (rng.choice([0, 1, 2]), rng.choice([0, 1, 3]))
    steps = (
        rng.choice([1, 1, 2, -1, -3]),
        rng.choice([1, 1, 1, 2, 3, -1, -2]),
    )
    groups = rng.choice([1, 1, 2, 3])
    channels = groups * rng.choice([1, 2, 3, 5])
    kwargs = {}
    if rng.random() < 0.5:
        max_disp = (rng.randint(0, 3), rng.randint(0, 5))
    else:
        lows = (rng.randint(-4, 2), rng.randint(-6, 2))
        max_disp = (lows[0] + rng.randint(0, 4), lows[1] + rng.randint(0, 7))
        kwargs["min_displacement"] = lows
    sizes = [
        max(1, d * (k - 1) + 1 - 2 * p) for k, d, p in zip(kernel, dilation, padding)
    ]
    height = sizes[0] + rng.randint(0, 8)
    width = sizes[1] + rng.randint(0, 14)
    size2 = (
        rng.choice([1, max(1, height // 2), height, height + 5]),
        rng.choice([1, max(1, width // 2), width, width + 7]),
    )
    arguments = (
        ("kernel_size", kernel, (1, 1)),
        ("stride", stride, (1, 1)),
        ("padding", padding, (0, 0)),
        ("dilation", dilation, (1, 1)),
        ("displacement_stride", steps, (1, 1)),
    )
    kwargs.update(
        {name: value for name, value, default in arguments if value != default}
    )
    if groups != 1:
        kwargs["groups"] = groups
    if rng.random() < 0.3:
        kwargs["scale"] = rng.choice([0.5, -2.0])
    batch = rng.choice([1, 2, 3])
    shape = (
        (channels, height, width)
        if rng.random() < 0.15
        else (batch, channels, height, width)
    )
    return shape, size2, max_disp, kwargs


def make_layout(t, layout):
    """The same values as ``t`` in another memory layout (still a leaf)."""
    if layout == "contiguous":
        out = t.contiguous()
    elif layout == "channels_last":
        out = (
            t.contiguous(memory_format=torch.channels_last)
            if t.dim() == 4
            else t.permute(1, 2, 0).contiguous().permute(2, 0, 1)
        )
    elif layout == "strided":
        # Every other column of a wider tensor: no dimension is contiguous.
        wide = torch.empty(
            *t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device
        )
        out = wide[..., ::2]
        out.copy_(t)
    elif layout == "transposed":
        # Stored as (..., W, H) and viewed back: H is the innermost dimension.
        out = t.transpose(-1, -2).contiguous().transpose(-1, -2)
    else:
        raise AssertionError(layout)
    assert torch.equal(out.isnan(), t.isnan())
    assert torch.equal(out.nan_to_num(0.0), t.nan_to_num(0.0))
    return out.detach()


LAYOUTS = ("contiguous", "channels_last", "strided", "transposed")


def _tolerances(dtype, expected):
    scale = 1.0 + expected.abs().max().item() if expected.numel() else 1.0
    if dtype == torch.float64:
        return dict(rtol=1e-10, atol=1e-10 * scale)
    if dtype == torch.float32:
        return dict(rtol=1e-4, atol=1e-4 * scale)
    # float16 / bfloat16: one rounding of the result (2^-11 and 2^-8
    # relative), with room to spare.
    return dict(rtol=1e-2, atol=2e-3 * scale)


def autograd_forward_backward(x1, x2, grad_output, max_disp, kwargs):
    """F.correlation and its gradients through autograd, on the inputs' device."""
    x1 = x1.detach().requires_grad_()
    x2 = x2.detach().requires_grad_()
    out = F.correlation(x1, x2, max_disp, **kwargs)
    if grad_output is None:
        return out, None, None
    g1, g2 = torch.autograd.grad(out, (x1, x2), grad_output)
    return out.detach(), g1, g2


def harness_forward_backward(x1, x2, grad_output, max_disp, kwargs):
    """The CUDA kernels run on the CPU (tools/cuda_on_cpu.py), same contract."""
    out = cuda_on_cpu.correlation(x1, x2, max_disp, **kwargs)
    if grad_output is None:
        return out, None, None
    g1, g2, g_offset = cuda_on_cpu.correlation_backward(
        grad_output, x1, x2, None, *backward_args(max_disp, kwargs), (True, True, True)
    )
    assert g_offset is None
    return out, g1, g2


# ---------------------------------------------------------------------------
# With an offset.


OFFSET_KINDS = ("fractional", "integer", "border", "nonfinite", "huge")

# Finite offsets far beyond any image, per dtype.
_HUGE = {
    torch.float64: 1e200,
    torch.float32: 1e30,
    torch.float16: 3e4,
    torch.bfloat16: 1e30,
}


def make_offset(out_shape, dtype, kind, size2, generator):
    """An offset for an output of ``out_shape`` ((N, 2, H_out, W_out), or
    (2, H_out, W_out) unbatched), in ``dtype``, of one kind:

    * ``fractional``: flows of a few pixels (normal, std 2.5);
    * ``integer``: integer-valued, in [-3, 3];
    * ``border``: uniform over input2 (of ``size2``) and 3 pixels beyond it,
      so that many samples straddle its border;
    * ``nonfinite``: fractional, with NaN, +inf and -inf at a few locations
      (in one component or both);
    * ``huge``: fractional, with finite components far beyond input2 at a
      few locations (every tap outside).
    """
    shape = (*out_shape[:-3], 2, *out_shape[-2:])
    if kind == "integer":
        off = torch.randint(-3, 4, shape, generator=generator).double()
    elif kind == "border":
        extent = torch.tensor([size2[1] + 3.0, size2[0] + 3.0], dtype=torch.float64)
        off = (
            torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1
        ) * extent.view(2, 1, 1)
    else:
        off = torch.randn(shape, generator=generator, dtype=torch.float64) * 2.5
    off = off.to(dtype)
    if kind in ("nonfinite", "huge"):
        special = (
            (float("nan"), float("inf"), -float("inf"))
            if kind == "nonfinite"
            else (_HUGE[dtype], -_HUGE[dtype])
        )
        planes = off.reshape(-1, 2, out_shape[-2] * out_shape[-1])
        for k in range(3):
            n = int(torch.randint(planes.shape[0], (), generator=generator))
            loc = int(torch.randint(planes.shape[2], (), generator=generator))
            value = special[k % len(special)]
            if k == 2:
                planes[n, :, loc] = value
            else:
                planes[n, k, loc] = value
    return off


def reference_offset_forward_backward(x1, x2, offset, grad_output, max_disp, kwargs):
    """Output and gradients w.r.t. input1, input2 and offset in float64 from
    reference_correlation_offset (autograd), with the NaN rule: NaN outputs
    and offset gradients at the locations of a non-finite offset."""
    r1 = x1.detach().to(torch.float64).requires_grad_()
    r2 = x2.detach().to(torch.float64).requires_grad_()
    ro = offset.detach().to(torch.float64).requires_grad_()
    out = reference_correlation_offset(r1, r2, max_disp, offset=ro, **kwargs)
    g1, g2, go = torch.autograd.grad(
        out, (r1, r2, ro), grad_output.to(torch.float64), allow_unused=True
    )
    finite = offset.isfinite().all(-3, keepdim=True)
    nan = float("nan")
    return (
        torch.where(finite, out.detach(), nan),
        g1,
        g2,
        torch.where(finite, go, nan),
    )


def _offset_tolerances(dtype, expected):
    return _tolerances(dtype, expected.nan_to_num(0.0, 0.0, 0.0))


# The expected values of the last _check_against_cpu call, reused when only
# the layout changes.
_expected_cache = {}


class CUDAKernelTests:
    """Correctness tests of the CUDA kernels, run on a GPU (TestCorrelationCUDA)
    and on the CPU through the harness (TestCorrelationCUDAOnCPU). A subclass
    sets ``device`` (where the kernels' tensors live) and
    ``_forward_backward`` (output and both gradients)."""

    device = "cuda"

    def _inputs(self, shape, dtype, device=None, seed=0):
        g = torch.Generator().manual_seed(seed)
        x1 = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
        x2 = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
        device = self.device if device is None else device
        return x1.to(device), x2.to(device)

    def _correlation(self, x1, x2, max_disp, **kwargs):
        return self._forward_backward(x1, x2, None, max_disp, kwargs)[0]

    def _expected(self, x1, x2, max_disp, kwargs, dtype, seed):
        """grad_output, the reference output and gradients (float64 autograd
        through the reference) and, in float64 and float32, the CPU kernels'."""
        ref_out = correlation_reference(x1, x2, max_disp, **kwargs)
        g = torch.Generator().manual_seed(seed + 1)
        go = torch.randn(ref_out.shape, generator=g, dtype=torch.float64).to(dtype)
        r1 = x1.to(torch.float64).requires_grad_()
        r2 = x2.to(torch.float64).requires_grad_()
        rg1, rg2 = torch.autograd.grad(
            correlation_reference(r1, r2, max_disp, **kwargs),
            (r1, r2),
            go.to(torch.float64),
        )
        cpu = None
        if dtype in (torch.float64, torch.float32):
            cpu = autograd_forward_backward(x1, x2, go, max_disp, kwargs)
        return go, ref_out, rg1, rg2, cpu

    def _check_against_cpu(
        self, shape, max_disp, kwargs, dtype, layout="contiguous", seed=0, msg=""
    ):
        """CUDA (in ``layout``) against the CPU kernel and/or the reference."""
        x1, x2 = self._inputs(shape, dtype, device="cpu", seed=seed)
        key = (shape, repr(max_disp), repr(sorted(kwargs.items())), dtype, seed)
        if key not in _expected_cache:
            _expected_cache.clear()
            _expected_cache[key] = self._expected(x1, x2, max_disp, kwargs, dtype, seed)
        go, ref_out, rg1, rg2, cpu = _expected_cache[key]

        c1 = make_layout(x1.to(self.device), layout)
        c2 = make_layout(x2.to(self.device), layout)
        out, g1, g2 = self._forward_backward(
            c1, c2, go.to(self.device), max_disp, kwargs
        )
        self.assertEqual(out.dtype, dtype)
        self.assertEqual(out.shape, ref_out.shape)
        self.assertEqual(g1.shape, x1.shape)
        self.assertEqual(g2.shape, x2.shape)
        self.assertTrue(out.isfinite().all(), msg=msg)

        if cpu is not None:
            for name, actual, expected in zip(
                ("output", "grad_input1", "grad_input2"), (out, g1, g2), cpu
            ):
                self.assertEqual(
                    actual.cpu(),
                    expected,
                    exact_dtype=True,
                    msg=f"{name} vs CPU: {msg}",
                    **_tolerances(dtype, expected),
                )
        for name, actual, expected in (
            ("output", out, ref_out),
            ("grad_input1", g1, rg1),
            ("grad_input2", g2, rg2),
        ):
            self.assertEqual(
                actual.cpu().to(torch.float64),
                expected,
                exact_dtype=False,
                msg=f"{name} vs reference: {msg}",
                **_tolerances(dtype, expected),
            )
        return out, g1, g2

    # -- agreement -----------------------------------------------------------

    def test_reference_matches_definition(self):
        # The reference against a direct transcription of the formula.
        x1, x2 = self._inputs((2, 4, 5, 6), torch.float64, device="cpu")
        kwargs = dict(
            min_displacement=(-1, -2),
            kernel_size=(2, 3),
            stride=(2, 1),
            padding=(1, 2),
            dilation=(1, 2),
            displacement_stride=(2, 3),
            groups=2,
            scale=0.5,
        )
        out = correlation_reference(x1, x2, (1, 4), **kwargs)
        dys, dxs = [-1, 1], [-2, 1, 4]
        n, c, h, w = x1.shape
        expected = torch.zeros_like(out)

        def at(t, b, ch, y, x):
            return t[b, ch, y, x].item() if 0 <= y < h and 0 <= x < w else 0.0

        for b in range(n):
            for g in range(2):
                for a, dy in enumerate(dys):
                    for bb, dx in enumerate(dxs):
                        for oy in range(out.shape[2]):
                            for ox in range(out.shape[3]):
                                s = 0.0
                                for ch in range(g * 2, g * 2 + 2):
                                    for i in range(2):
                                        for j in range(3):
                                            y, x = oy * 2 - 1 + i, ox - 2 + 2 * j
                                            s += at(x1, b, ch, y, x) * at(
                                                x2, b, ch, y + dy, x + dx
                                            )
                                expected[b, g * 6 + a * 3 + bb, oy, ox] = 0.5 * s
        self.assertEqual(out, expected, rtol=1e-12, atol=1e-12)

    def test_random_configs(self):
        rng = random.Random(1234)
        for index in range(96):
            shape, max_disp, kwargs = random_config(rng)
            dtype = ALL_DTYPES[index % len(ALL_DTYPES)]
            layout = LAYOUTS[(index // len(ALL_DTYPES)) % len(LAYOUTS)]
            msg = f"config {index}: shape={shape} max_displacement={max_disp} {kwargs} {dtype} {layout}"
            with self.subTest(msg):
                self._check_against_cpu(
                    shape, max_disp, kwargs, dtype, layout, seed=index, msg=msg
                )

    def test_network_configs(self):
        # The configurations the tiled kernels are designed for.
        configs = [
            # PWC-Net: 9x9 displacements, features at 1/4 .. 1/64 scale.
            ("pwc", (2, 32, 24, 40), 4, {}),
            ("pwc-small", (1, 16, 3, 5), 4, {}),
            # FlowNetC: max 20 with displacement stride 2 (21x21), padded.
            ("flownetc", (1, 24, 20, 36), 20, dict(displacement_stride=2, padding=20)),
            ("flownetc-nopad", (2, 8, 17, 45), 20, dict(displacement_stride=2)),
            # GwcNet: group-wise correlation over 48 one-sided disparities.
            (
                "gwcnet",
                (1, 80, 12, 64),
                (0, 0),
                dict(min_displacement=(0, -47), groups=40),
            ),
            # DispNetC-like one-sided horizontal range with stride.
            (
                "dispnet",
                (1, 16, 9, 50),
                (0, 40),
                dict(min_displacement=(0, 0), displacement_stride=(1, 2)),
            ),
            # RAFT-like local lookup with a wide symmetric window.
            ("wide", (1, 8, 13, 33), (3, 9), {}),
            # GwcNet's and DispNetC's volumes as the networks order them:
            # disparity 0 first (descending horizontal displacement).
            (
                "gwcnet-descending",
                (1, 80, 12, 64),
                (0, 0),
                dict(min_displacement=(0, -47), displacement_stride=(1, -1), groups=40),
            ),
            (
                "dispnet-descending",
                (1, 16, 9, 50),
                (0, 0),
                dict(min_displacement=(0, -40), displacement_stride=(1, -1)),
            ),
        ]
        for name, shape, max_disp, kwargs in configs:
            for dtype in ALL_DTYPES:
                for layout in ("contiguous", "channels_last"):
                    msg = f"{name} {dtype} {layout}"
                    with self.subTest(msg):
                        self._check_against_cpu(
                            shape, max_disp, kwargs, dtype, layout, msg=msg
                        )

    def test_every_argument(self):
        base = (2, 6, 11, 37)
        cases = [
            (2, {}),
            ((3, 1), dict(min_displacement=(-5, -1))),
            ((0, 6), dict(min_displacement=(-4, 6))),  # a single vertical displacement
            ((-2, -3), dict(min_displacement=(-7, -9), displacement_stride=(2, 3))),
            (8, dict(displacement_stride=(4, 1))),
            (16, dict(displacement_stride=8)),  # largest tiled vertical step
            (18, dict(displacement_stride=9)),  # generic kernels
            (2, dict(padding=(3, 4))),
            (2, dict(groups=3)),
            (2, dict(groups=6, scale=-0.25)),
            (1, dict(kernel_size=3)),
            (1, dict(kernel_size=(3, 2), dilation=(2, 3), padding=2)),
            (1, dict(stride=(2, 3))),
            (1, dict(stride=2, kernel_size=2, padding=1)),
            # Descending orders (negative displacement_stride), tiled and
            # generic.
            (2, dict(displacement_stride=(-1, -1))),
            ((0, 0), dict(min_displacement=(0, -23), displacement_stride=(1, -1))),
            ((3, 6), dict(min_displacement=(-4, -5), displacement_stride=(-2, 3))),
            (18, dict(displacement_stride=(-9, 2))),
            (1, dict(kernel_size=3, displacement_stride=(1, -1), groups=2)),
        ]
        for max_disp, kwargs in cases:
            for dtype in (torch.float64, torch.float32):
                msg = f"{max_disp} {kwargs} {dtype}"
                with self.subTest(msg):
                    self._check_against_cpu(base, max_disp, kwargs, dtype, msg=msg)

    def test_descending_order(self):
        # A negative displacement_stride reverses the output channels along
        # its axis. Every kernel (tiled and generic, forward and both
        # gradients) walks the displacements in ascending order whatever the
        # channel order, so the values are bit for bit those of the
        # ascending call over the same set with the channels reversed, and
        # the gradients those of the ascending call with grad_output reversed
        # alike. Ranges that are not a multiple of the step descend from the
        # top: (-4, 3) by -2 is {3, 1, -1, -3}, not {2, 0, -2, -4}.
        cases = [
            # Tiled: symmetric 2-D, both axes descending.
            ((2, 6, 11, 37), 2, dict(displacement_stride=(-1, -1))),
            # Tiled: GwcNet's one-sided disparities, in groups.
            (
                (2, 6, 9, 40),
                (0, 0),
                dict(min_displacement=(0, -23), displacement_stride=(1, -1), groups=3),
            ),
            # Tiled, two row phases: vertical range not a multiple of the step.
            (
                (1, 4, 13, 35),
                (3, 6),
                dict(min_displacement=(-4, -5), displacement_stride=(-2, 3)),
            ),
            # Tiled, three row phases: horizontal range not a multiple.
            (
                (1, 4, 10, 37),
                (5, 7),
                dict(
                    min_displacement=(-6, -6),
                    displacement_stride=(3, -4),
                    padding=(1, 2),
                ),
            ),
            # Generic: a vertical step beyond the tiled kernels' row phases.
            ((1, 3, 9, 40), 18, dict(displacement_stride=(-9, -5))),
            # Generic: kernel, stride and dilation; unbatched.
            (
                (4, 8, 11),
                (1, 2),
                dict(
                    kernel_size=3,
                    stride=2,
                    dilation=(1, 2),
                    displacement_stride=(-1, -2),
                    groups=2,
                ),
            ),
        ]
        for shape, max_disp, kwargs in cases:
            steps = kwargs["displacement_stride"]
            mins = kwargs.get("min_displacement", (None, None))
            dys, dxs = (
                displacement_set(top, low, step)
                for top, low, step in zip(pair(max_disp), mins, steps)
            )
            # The same displacements, ascending.
            ascending = dict(
                kwargs,
                min_displacement=(min(dys), min(dxs)),
                displacement_stride=tuple(abs(step) for step in steps),
            )
            ascending_max = (max(dys), max(dxs))
            flip = [dim for dim, step in zip((-4, -3), steps) if step < 0]

            def reverse(t):
                # Channels g*D + a*Kx + b with descending axes reversed.
                v = t.unflatten(-3, (-1, len(dys), len(dxs)))
                return v.flip(flip).flatten(-5, -3)

            for dtype in ALL_DTYPES:
                for layout in ("contiguous", "channels_last"):
                    msg = f"{shape} {max_disp} {kwargs} {dtype} {layout}"
                    with self.subTest(msg):
                        self._check_against_cpu(
                            shape, max_disp, kwargs, dtype, layout, msg=msg
                        )
                        x1, x2 = (
                            make_layout(t, layout)
                            for t in self._inputs(shape, dtype, seed=1)
                        )
                        go = torch.randn_like(
                            self._correlation(x1, x2, max_disp, **kwargs)
                        )
                        got = self._forward_backward(x1, x2, go, max_disp, kwargs)
                        out, g1, g2 = self._forward_backward(
                            x1, x2, reverse(go), ascending_max, ascending
                        )
                        for name, a, b in zip(
                            ("output", "grad_input1", "grad_input2"),
                            got,
                            (reverse(out), g1, g2),
                        ):
                            self.assertEqual(a, b, atol=0, rtol=0, msg=f"{name}: {msg}")

    def test_many_channels(self):
        # More channels than one staged chunk or one block of channel warps.
        for dtype in (torch.float32, torch.float16):
            self._check_against_cpu((1, 197, 9, 20), 3, {}, dtype, msg=str(dtype))
            self._check_against_cpu(
                (1, 130, 7, 9), 2, dict(groups=2, kernel_size=2), dtype, msg=str(dtype)
            )

    def test_unbatched(self):
        for dtype in (torch.float64, torch.float16):
            self._check_against_cpu(
                (5, 9, 35), 3, dict(padding=1), dtype, msg=str(dtype)
            )
            self._check_against_cpu(
                (5, 9, 35), 1, dict(kernel_size=3, stride=2), dtype, msg=str(dtype)
            )

    def test_layouts(self):
        # Every layout gives the same bits: the kernels sum in an order that
        # does not depend on the strides.
        shape = (2, 6, 13, 41)
        for max_disp, kwargs in ((3, {}), (2, dict(kernel_size=2, stride=2))):
            for dtype in ALL_DTYPES:
                x1, x2 = self._inputs(shape, dtype)
                go = torch.randn_like(self._correlation(x1, x2, max_disp, **kwargs))
                expected = self._forward_backward(x1, x2, go, max_disp, kwargs)
                for layout in LAYOUTS[1:]:
                    for which in ("both", "input1", "input2"):
                        c1 = make_layout(x1, layout) if which != "input2" else x1
                        c2 = make_layout(x2, layout) if which != "input1" else x2
                        got = self._forward_backward(c1, c2, go, max_disp, kwargs)
                        for a, b in zip(got, expected):
                            self.assertEqual(
                                a,
                                b,
                                atol=0,
                                rtol=0,
                                msg=f"{layout} {which} {dtype} {kwargs}",
                            )
                # grad_output in another layout too.
                got = self._forward_backward(
                    x1, x2, make_layout(go, "strided"), max_disp, kwargs
                )
                for a, b in zip(got, expected):
                    self.assertEqual(a, b, atol=0, rtol=0)
                # An expanded (stride 0) grad_output, as sum() produces.
                ones = torch.ones((), dtype=dtype, device=self.device).expand(go.shape)
                got = self._forward_backward(x1, x2, ones, max_disp, kwargs)
                dense = self._forward_backward(
                    x1, x2, ones.contiguous(), max_disp, kwargs
                )
                for a, b in zip(got, dense):
                    self.assertEqual(a, b, atol=0, rtol=0)

    def test_memory_format_follows_inputs(self):
        x1, x2 = self._inputs((2, 4, 6, 7), torch.float32)
        cl1 = x1.contiguous(memory_format=torch.channels_last)
        go = torch.randn_like(self._correlation(cl1, x2, 1))
        out, g1, g2 = self._forward_backward(cl1, x2, go, 1, {})
        self.assertTrue(out.is_contiguous(memory_format=torch.channels_last))
        self.assertTrue(g1.is_contiguous(memory_format=torch.channels_last))
        self.assertTrue(g2.is_contiguous())

    def test_empty(self):
        for dtype in (torch.float32, torch.float16):
            # N == 0.
            x1, x2 = self._inputs((0, 3, 5, 6), dtype)
            out, g1, g2 = self._forward_backward(
                x1, x2, torch.empty(0, 9, 5, 6, dtype=dtype, device=self.device), 1, {}
            )
            self.assertEqual(out.shape, (0, 9, 5, 6))
            self.assertEqual(g1.shape, x1.shape)
            self.assertEqual(g2.shape, x2.shape)
            # C == 0: every output element is an empty sum.
            x1, x2 = self._inputs((2, 0, 5, 37), dtype)
            for kwargs in ({}, dict(kernel_size=2)):
                out = self._correlation(x1, x2, 2, **kwargs)
                self.assertEqual(out, torch.zeros_like(out), atol=0, rtol=0)
                go = torch.randn_like(out)
                _, g1, g2 = self._forward_backward(x1, x2, go, 2, kwargs)
                self.assertEqual(g1.shape, x1.shape)
                self.assertEqual(g2.shape, x2.shape)

    def test_every_element_written(self):
        # Outputs are allocated with torch.empty; poison the caching allocator
        # with NaNs first so that an element the kernels skip shows up (the
        # harness allocates its outputs filled with NaN).
        for kwargs, max_disp in (
            ({}, 5),
            (dict(kernel_size=2, stride=2), 2),
            (dict(min_displacement=(0, -47), groups=4), (0, 0)),
        ):
            x1, x2 = self._inputs((2, 8, 19, 45), torch.float32)
            out_shape = self._correlation(x1, x2, max_disp, **kwargs).shape
            if self.device == "cuda":
                torch.cuda.synchronize()
                for _ in range(4):
                    poison = torch.full(
                        (4 * out_shape.numel(),), float("nan"), device="cuda"
                    )
                    del poison
            out, g1, g2 = self._forward_backward(
                x1, x2, torch.randn(out_shape, device=self.device), max_disp, kwargs
            )
            for t in (out, g1, g2):
                self.assertTrue(t.isfinite().all(), msg=str(kwargs))

    # -- determinism ---------------------------------------------------------

    def test_deterministic(self):
        configs = (
            (4, {}),
            (20, dict(displacement_stride=2, padding=4)),
            ((0, 0), dict(min_displacement=(0, -47), groups=8)),
            (2, dict(kernel_size=3, stride=2, dilation=2)),
        )
        for max_disp, kwargs in configs:
            for dtype in (torch.float32, torch.float16):
                x1, x2 = self._inputs((2, 16, 21, 50), dtype)
                go = torch.randn_like(self._correlation(x1, x2, max_disp, **kwargs))
                first = self._forward_backward(x1, x2, go, max_disp, kwargs)
                second = self._forward_backward(x1, x2, go, max_disp, kwargs)
                for a, b in zip(first, second):
                    self.assertTrue(torch.equal(a, b), msg=f"{kwargs} {dtype}")
                # Deterministic mode: no error and no warning (the backward
                # is a gather, not atomics).
                with DeterministicGuard(True), warnings.catch_warnings():
                    warnings.simplefilter("error")
                    third = self._forward_backward(x1, x2, go, max_disp, kwargs)
                for a, b in zip(first, third):
                    self.assertTrue(torch.equal(a, b))

    # -- with an offset --------------------------------------------------------

    def _offset_run(
        self, x1, x2, offset, grad_output, max_disp, kwargs, mask=(True, True, True)
    ):
        """The output and (grad_input1, grad_input2, grad_offset) of the op
        under test, through its two entry points (a gradient is None where
        ``mask`` does not ask for it)."""
        out = self._op_correlation(x1, x2, max_disp, offset=offset, **kwargs)
        if grad_output is None:
            return out, None, None, None
        grads = self._op_correlation_backward(
            grad_output, x1, x2, offset, *backward_args(max_disp, kwargs), list(mask)
        )
        return (out, *grads)

    def _offset_case(self, shape, size2, max_disp, kwargs, dtype, kind, seed):
        """CPU inputs of a call with an offset: input1 of ``shape``, input2 of
        height and width ``size2``, an offset of ``kind`` (make_offset) and a
        grad_output, all in ``dtype``."""
        g = torch.Generator().manual_seed(seed)
        x1 = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
        x2 = torch.randn((*shape[:-2], *size2), generator=g, dtype=torch.float64).to(
            dtype
        )
        out_shape = output_shape(shape, max_disp, kwargs)
        offset = make_offset(out_shape, dtype, kind, size2, g)
        go = torch.randn(out_shape, generator=g, dtype=torch.float64).to(dtype)
        return x1, x2, offset, go

    def _check_offset(
        self,
        shape,
        size2,
        max_disp,
        kwargs,
        dtype,
        kind="fractional",
        layout="contiguous",
        seed=0,
        msg="",
    ):
        """The kernels (every tensor in ``layout``) against the CPU op and the
        float64 reference: output and the three gradients."""
        x1, x2, off, go = self._offset_case(
            shape, size2, max_disp, kwargs, dtype, kind, seed
        )
        ref = reference_offset_forward_backward(x1, x2, off, go, max_disp, kwargs)
        cpu_out = F.correlation(x1, x2, max_disp, offset=off, **kwargs)
        cpu = (cpu_out,) + tuple(
            torch.ops.aten.correlation_backward(
                go, x1, x2, off, *backward_args(max_disp, kwargs), [True, True, True]
            )
        )

        def on_device(t):
            return make_layout(t.to(self.device), layout)

        got = self._offset_run(
            on_device(x1),
            on_device(x2),
            on_device(off),
            on_device(go),
            max_disp,
            kwargs,
        )
        names = ("output", "grad_input1", "grad_input2", "grad_offset")
        for name, actual, expected in zip(names, got, ref):
            self.assertEqual(actual.dtype, dtype, msg=f"{name}: {msg}")
            self.assertEqual(actual.shape, expected.shape, msg=f"{name}: {msg}")
        for name, actual, expected in zip(names, got, cpu):
            self.assertEqual(
                actual.cpu(),
                expected,
                exact_dtype=True,
                equal_nan=True,
                msg=f"{name} vs CPU: {msg}",
                **_offset_tolerances(dtype, expected.double()),
            )
        for name, actual, expected in zip(names, got, ref):
            self.assertEqual(
                actual.cpu().to(torch.float64),
                expected,
                exact_dtype=False,
                equal_nan=True,
                msg=f"{name} vs reference: {msg}",
                **_offset_tolerances(dtype, expected),
            )
        return got

    def test_offset_reference_matches_grid_sample(self):
        # The offset reference against grid_sample (bilinear, zeros,
        # align_corners=True; input2 padded by a zero pixel so that a size of
        # 1 normalizes) at non-integer positions, with a kernel window,
        # dilation, stride, padding, groups and displacement steps.
        g = torch.Generator().manual_seed(0)
        x1 = torch.randn(2, 4, 5, 7, generator=g, dtype=torch.float64)
        x2 = torch.randn(2, 4, 6, 1, generator=g, dtype=torch.float64)
        kwargs = dict(
            min_displacement=(-1, -2),
            kernel_size=(2, 1),
            stride=(1, 2),
            padding=1,
            dilation=(2, 1),
            displacement_stride=(2, -3),
            groups=2,
            scale=0.5,
        )
        max_disp = (1, 2)
        n, c, oh, ow = output_shape(x1.shape, max_disp, kwargs)
        off = torch.randn(n, 2, oh, ow, generator=g, dtype=torch.float64) * 2 + 0.37
        out = reference_correlation_offset(x1, x2, max_disp, offset=off, **kwargs)

        def sample(image, y, x):
            padded = F.pad(image, (1, 1, 1, 1))
            h, w = padded.shape[-2:]
            grid = torch.stack(
                [(x + 1) / (w - 1) * 2 - 1, (y + 1) / (h - 1) * 2 - 1], -1
            )
            return F.grid_sample(
                padded, grid, mode="bilinear", padding_mode="zeros", align_corners=True
            )

        expected = []
        oy = torch.arange(oh, dtype=torch.float64).view(1, -1, 1) - 1
        ox = torch.arange(ow, dtype=torch.float64).view(1, 1, -1) * 2 - 1
        for dy in displacement_set(1, -1, 2):
            for dx in displacement_set(2, -2, -3):
                acc = 0
                for i in range(2):
                    y = (oy + 2 * i).expand(n, oh, ow)
                    x = ox.expand(n, oh, ow)
                    prod = sample(x1, y, x) * sample(
                        x2, y + dy + off[:, 1], x + dx + off[:, 0]
                    )
                    acc = acc + prod.reshape(n, 2, 2, oh, ow).sum(2)
                expected.append(acc)
        expected = torch.stack(expected, 2).reshape(n, -1, oh, ow) * 0.5
        self.assertEqual(out, expected, atol=1e-12, rtol=1e-12)

    def test_offset_random_configs(self):
        # Every dtype in every layout with every kind of offset, over random
        # geometries and input2 sizes.
        rng = random.Random(2468)
        for index in range(40):
            shape, size2, max_disp, kwargs = random_offset_config(rng)
            dtype = ALL_DTYPES[index % len(ALL_DTYPES)]
            layout = LAYOUTS[(index // len(ALL_DTYPES)) % len(LAYOUTS)]
            kind = OFFSET_KINDS[index % len(OFFSET_KINDS)]
            msg = (
                f"config {index}: shape={shape} input2 {size2} max_displacement={max_disp} "
                f"{kwargs} {dtype} {layout} {kind}"
            )
            with self.subTest(msg):
                self._check_offset(
                    shape, size2, max_disp, kwargs, dtype, kind, layout, index, msg
                )

    def test_offset_network_configs(self):
        # RAFT's lookup (a 9x9 window around the flow on a coarser level of
        # input2) and warp-free PWC-Net (9x9 around the upsampled flow).
        configs = [
            ("raft", (1, 8, 12, 16), (6, 8), 4, dict(scale=0.25)),
            ("pwc", (2, 16, 8, 11), (8, 11), 4, {}),
        ]
        for name, shape, size2, max_disp, kwargs in configs:
            for dtype in ALL_DTYPES:
                msg = f"{name} {dtype}"
                with self.subTest(msg):
                    self._check_offset(
                        shape,
                        size2,
                        max_disp,
                        kwargs,
                        dtype,
                        "fractional",
                        "channels_last",
                        msg=msg,
                    )

    def test_offset_integer_equals_shifted(self):
        # A constant integer offset (u, v) is the integer op with the
        # displacement range shifted by (v, u), output and input gradients.
        cases = [
            ((2, 6, 9, 37), 2, {}),
            ((1, 4, 8, 11), 1, dict(kernel_size=3, stride=2, dilation=2, padding=2)),
            (
                (1, 6, 7, 33),
                (3, 6),
                dict(min_displacement=(-4, -5), displacement_stride=(-2, 3), groups=2),
            ),
        ]
        for shape, max_disp, kwargs in cases:
            top = pair(max_disp)
            steps = pair(kwargs.get("displacement_stride", 1))
            low = kwargs.get("min_displacement")
            if low is None:
                # The symmetric range as an explicit one.
                low = tuple(-(m // abs(s)) * abs(s) for m, s in zip(top, steps))
                top = tuple(-l for l in low)
            for u, v in ((0, 0), (2, -1), (-3, 4)):
                shifted = dict(
                    kwargs,
                    min_displacement=(low[0] + v, low[1] + u),
                )
                shifted_max = (top[0] + v, top[1] + u)
                for dtype in (torch.float64, torch.float32, torch.bfloat16):
                    msg = f"{shape} {max_disp} {kwargs} ({u}, {v}) {dtype}"
                    x1, x2 = self._inputs(shape, dtype)
                    out_shape = output_shape(shape, max_disp, kwargs)
                    off = torch.empty(
                        (out_shape[0], 2, *out_shape[2:]),
                        dtype=dtype,
                        device=self.device,
                    )
                    off[:, 0], off[:, 1] = u, v
                    go = (
                        torch.randn(out_shape, dtype=torch.float64)
                        .to(dtype)
                        .to(self.device)
                    )
                    got = self._offset_run(x1, x2, off, go, max_disp, kwargs)
                    expected = self._forward_backward(x1, x2, go, shifted_max, shifted)
                    for name, a, b in zip(
                        ("output", "grad_input1", "grad_input2"), got, expected
                    ):
                        self.assertEqual(
                            a, b, msg=f"{name}: {msg}", **_tolerances(dtype, b.double())
                        )

    def test_offset_input2_sizes(self):
        # input2 smaller, larger, a single row, column or pixel.
        shape = (2, 3, 6, 9)
        for size2 in ((1, 1), (1, 9), (6, 1), (3, 4), (15, 20)):
            for dtype in (torch.float64, torch.bfloat16):
                for kind in ("fractional", "border"):
                    msg = f"input2 {size2} {dtype} {kind}"
                    with self.subTest(msg):
                        self._check_offset(
                            shape, size2, 2, dict(padding=1), dtype, kind, msg=msg
                        )

    def test_offset_nonfinite_and_huge(self):
        # A location whose offset has a NaN or infinite component: all its
        # outputs and its offset gradient are NaN, and it contributes nothing
        # to the input gradients; one whose offset is finite but far outside
        # input2 samples zeros. Both are the call in which that location has
        # a zero grad_output, everywhere else.
        shape, max_disp, kwargs = (2, 4, 5, 11), 1, dict(kernel_size=2, padding=1)
        out_shape = output_shape(shape, max_disp, kwargs)
        for dtype in ALL_DTYPES:
            x1, x2 = self._inputs(shape, dtype)
            g = torch.Generator().manual_seed(3)
            base = (torch.randn((2, 2, *out_shape[2:]), generator=g) * 2).to(dtype)
            go = torch.randn(out_shape, generator=g).to(dtype)
            locations = ((0, 0, 0), (1, 2, 3), (1, out_shape[2] - 1, out_shape[3] - 1))
            huge = _HUGE[dtype]
            for values in (
                (float("nan"), 0.5),
                (0.5, float("inf")),
                (-float("inf"), -float("inf")),
                (huge, 0.5),
                (-huge, huge),
            ):
                msg = f"{values} {dtype}"
                off = base.clone()
                masked_go = go.clone()
                for n, oy, ox in locations:
                    off[n, :, oy, ox] = torch.tensor(values, dtype=dtype)
                    masked_go[n, :, oy, ox] = 0
                got = self._offset_run(
                    x1, x2, off.to(self.device), go.to(self.device), max_disp, kwargs
                )
                masked = self._offset_run(
                    x1,
                    x2,
                    base.to(self.device),
                    masked_go.to(self.device),
                    max_disp,
                    kwargs,
                )
                finite = bool(
                    torch.tensor(values, dtype=torch.float64).isfinite().all()
                )
                where = torch.zeros(out_shape[0], 1, *out_shape[2:], dtype=torch.bool)
                for n, oy, ox in locations:
                    where[n, 0, oy, ox] = True
                out, g1, g2, goff = (t.cpu() for t in got)
                if finite:
                    self.assertTrue((out.masked_select(where) == 0).all(), msg=msg)
                    self.assertTrue((goff.masked_select(where) == 0).all(), msg=msg)
                else:
                    self.assertTrue(out.masked_select(where).isnan().all(), msg=msg)
                    self.assertTrue(goff.masked_select(where).isnan().all(), msg=msg)
                self.assertTrue(out.masked_select(~where).isfinite().all(), msg=msg)
                self.assertTrue(goff.masked_select(~where).isfinite().all(), msg=msg)
                # The other locations' values are those of the masked call
                # (same terms, same order): bit for bit.
                self.assertEqual(
                    out.masked_select(~where),
                    masked[0].cpu().masked_select(~where),
                    atol=0,
                    rtol=0,
                    msg=msg,
                )
                self.assertEqual(
                    goff.masked_select(~where),
                    masked[3].cpu().masked_select(~where),
                    atol=0,
                    rtol=0,
                    msg=msg,
                )
                self.assertEqual(g1, masked[1].cpu(), atol=0, rtol=0, msg=msg)
                self.assertEqual(g2, masked[2].cpu(), atol=0, rtol=0, msg=msg)

    def test_offset_layouts(self):
        # Every layout of every tensor gives the same bits.
        shape, size2 = (2, 6, 7, 13), (5, 9)
        for max_disp, kwargs in ((2, {}), (1, dict(kernel_size=2, stride=2, groups=2))):
            for dtype in ALL_DTYPES:
                tensors = self._offset_case(
                    shape, size2, max_disp, kwargs, dtype, "border", seed=5
                )
                tensors = [t.to(self.device) for t in tensors]
                expected = self._offset_run(*tensors, max_disp, kwargs)
                for layout in LAYOUTS[1:]:
                    for which in range(4):
                        args = list(tensors)
                        args[which] = make_layout(args[which], layout)
                        got = self._offset_run(*args, max_disp, kwargs)
                        for a, b in zip(got, expected):
                            self.assertEqual(
                                a,
                                b,
                                atol=0,
                                rtol=0,
                                msg=f"{layout} tensor {which} {dtype} {kwargs}",
                            )

    def test_offset_output_mask(self):
        # Each gradient alone is the same as with the others.
        shape, size2, max_disp, kwargs = (2, 4, 6, 9), (7, 5), 1, dict(groups=2)
        x1, x2, off, go = (
            t.to(self.device)
            for t in self._offset_case(
                shape, size2, max_disp, kwargs, torch.float32, "fractional", 1
            )
        )
        full = self._offset_run(x1, x2, off, go, max_disp, kwargs)
        for mask in itertools.product((False, True), repeat=3):
            got = self._offset_run(x1, x2, off, go, max_disp, kwargs, mask)
            for wanted, a, b in zip(mask, got[1:], full[1:]):
                if wanted:
                    self.assertEqual(a, b, atol=0, rtol=0, msg=str(mask))
                else:
                    self.assertIsNone(a, msg=str(mask))

    def test_offset_empty(self):
        for dtype in (torch.float32, torch.float16):
            # N == 0.
            x1, x2, off, go = (
                t.to(self.device)
                for t in self._offset_case(
                    (0, 3, 5, 6), (4, 4), 1, {}, dtype, "fractional", 0
                )
            )
            out, g1, g2, goff = self._offset_run(x1, x2, off, go, 1, {})
            self.assertEqual(out.shape, (0, 9, 5, 6))
            self.assertEqual(
                (g1.shape, g2.shape, goff.shape), (x1.shape, x2.shape, off.shape)
            )
            # C == 0: empty sums, except at a non-finite offset (NaN); the
            # gradients are zero (as the entry fills them for an empty input).
            x1, x2, off, go = (
                t.to(self.device)
                for t in self._offset_case(
                    (2, 0, 5, 6), (3, 8), 1, {}, dtype, "nonfinite", 0
                )
            )
            out, g1, g2, goff = self._offset_run(x1, x2, off, go, 1, {})
            nan = ~off.isfinite().all(1, keepdim=True).expand_as(out)
            self.assertTrue(out[nan].isnan().all())
            self.assertEqual(out[~nan], torch.zeros_like(out[~nan]), atol=0, rtol=0)
            self.assertEqual(goff, torch.zeros_like(goff), atol=0, rtol=0)
            self.assertEqual((g1.shape, g2.shape), (x1.shape, x2.shape))
            # An empty input2: every sample reads zeros.
            x1, x2, off, go = (
                t.to(self.device)
                for t in self._offset_case(
                    (2, 3, 5, 6), (0, 4), 1, {}, dtype, "fractional", 0
                )
            )
            out, g1, g2, goff = self._offset_run(x1, x2, off, go, 1, {})
            self.assertEqual(out, torch.zeros_like(out), atol=0, rtol=0)
            self.assertEqual(g1, torch.zeros_like(g1), atol=0, rtol=0)
            self.assertEqual(goff, torch.zeros_like(goff), atol=0, rtol=0)

    def test_offset_deterministic(self):
        for dtype in (torch.float32, torch.float16):
            x1, x2, off, go = (
                t.to(self.device)
                for t in self._offset_case(
                    (2, 8, 16, 21), (9, 11), 3, dict(groups=2), dtype, "border", 7
                )
            )
            first = self._offset_run(x1, x2, off, go, 3, dict(groups=2))
            with DeterministicGuard(True), warnings.catch_warnings():
                warnings.simplefilter("error")
                second = self._offset_run(x1, x2, off, go, 3, dict(groups=2))
            for a, b in zip(first, second):
                self.assertTrue(torch.equal(a.isnan(), b.isnan()))
                self.assertTrue(torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0)))


@unittest.skipIf(not TEST_CUDA, "CUDA not available")
class TestCorrelationCUDA(CUDAKernelTests, TestCase):
    """On a GPU, through the operator: the tests above, plus autograd checks,
    autocast, 64-bit offsets in real sizes, streams, devices and errors."""

    def _forward_backward(self, x1, x2, grad_output, max_disp, kwargs):
        return autograd_forward_backward(x1, x2, grad_output, max_disp, kwargs)

    def _op_correlation(self, *args, **kwargs):
        return F.correlation(*args, **kwargs)

    def _op_correlation_backward(self, *args):
        return torch.ops.aten.correlation_backward(*args)

    def test_offset_autograd(self):
        # Autograd's gradients are the backward op's.
        shape, size2, max_disp, kwargs = (2, 6, 9, 13), (5, 7), 2, dict(groups=2)
        x1, x2, off, go = (
            t.to("cuda")
            for t in self._offset_case(
                shape, size2, max_disp, kwargs, torch.float32, "fractional", 0
            )
        )
        leaves = [t.clone().requires_grad_() for t in (x1, x2, off)]
        out = F.correlation(leaves[0], leaves[1], max_disp, offset=leaves[2], **kwargs)
        grads = torch.autograd.grad(out, leaves, go)
        expected = self._offset_run(x1, x2, off, go, max_disp, kwargs)
        for a, b in zip((out.detach(), *grads), expected):
            self.assertEqual(a, b, atol=0, rtol=0)

    def test_offset_gradcheck(self):
        g = torch.Generator().manual_seed(0)
        for max_disp, kwargs in (
            (1, {}),
            ((1, 2), dict(min_displacement=(0, -1), displacement_stride=(1, -3))),
            (1, dict(kernel_size=2, stride=2, padding=1, groups=2)),
        ):
            x1 = torch.randn(1, 2, 4, 5, generator=g, dtype=torch.float64)
            x2 = torch.randn(1, 2, 3, 6, generator=g, dtype=torch.float64)
            out_shape = output_shape(x1.shape, max_disp, kwargs)
            # Fractions away from integers: the samples' derivative jumps
            # there.
            off = torch.randint(-2, 2, (1, 2, *out_shape[2:]), generator=g) + (
                0.2 + 0.6 * torch.rand(1, 2, *out_shape[2:], generator=g)
            )
            args = [
                t.to(dtype=torch.float64, device="cuda").requires_grad_()
                for t in (x1, x2, off)
            ]
            self.assertTrue(
                torch.autograd.gradcheck(
                    lambda a, b, o: F.correlation(a, b, max_disp, offset=o, **kwargs),
                    args,
                )
            )

    def test_offset_every_element_written(self):
        # As test_every_element_written, with an offset.
        shape, size2, max_disp, kwargs = (2, 8, 19, 45), (11, 23), 3, {}
        x1, x2, off, go = (
            t.to("cuda")
            for t in self._offset_case(
                shape, size2, max_disp, kwargs, torch.float32, "border", 0
            )
        )
        torch.cuda.synchronize()
        for _ in range(4):
            poison = torch.full((4 * go.numel(),), float("nan"), device="cuda")
            del poison
        for t in self._offset_run(x1, x2, off, go, max_disp, kwargs):
            self.assertTrue(t.isfinite().all())

    def test_offset_64bit_input2(self):
        # input2 alone beyond 32-bit offsets (2 * 32768 * 32769 elements):
        # the offset sends every sample to its bottom-right corner, which
        # must read (and in the backward write) what a crop of that corner
        # gives with the offset moved accordingly.
        size2 = (32768, 32769)
        numel = 2 * size2[0] * size2[1]
        self.assertGreater(numel, 2**31)
        # input2 and grad_input2 (float32: its offsets keep their fractions
        # near 32768) and the grad_input2 gather's bucket starts (one int64
        # per pixel).
        self._require_free_memory(4 * 2 * numel + 8 * numel // 2 + 2**31)
        g = torch.Generator(device="cuda").manual_seed(0)
        x1 = torch.randn(1, 2, 8, 8, generator=g, device="cuda")
        x2 = torch.randn(1, 2, *size2, generator=g, device="cuda")
        k = 16
        corner = torch.tensor(
            [size2[1] - k, size2[0] - k], device="cuda", dtype=torch.float32
        ).view(1, 2, 1, 1)
        # Taps 1 to 17 pixels right of and below the corner: the crop's
        # right and bottom edges are input2's, so both read the same zeros.
        off = torch.rand(1, 2, 8, 8, generator=g, device="cuda") * 6 + 2 + corner
        local = off - corner
        go = torch.randn(1, 9, 8, 8, generator=g, device="cuda")
        out, g1, g2, goff = self._offset_run(x1, x2, off, go, 1, {})
        c2 = x2[:, :, -k:, -k:].clone()
        eout, eg1, eg2, egoff = self._offset_run(x1, c2, local, go, 1, {})
        self.assertEqual(out, eout, atol=0, rtol=0)
        self.assertEqual(g1, eg1, atol=0, rtol=0)
        self.assertEqual(goff, egoff, atol=0, rtol=0)
        self.assertEqual(g2[:, :, -k:, -k:], eg2, atol=0, rtol=0)
        self.assertEqual(g2[:, :, :-k].abs().max().item(), 0)
        self.assertEqual(g2[:, :, -k:, :-k].abs().max().item(), 0)

    def test_gradcheck(self):
        for max_disp, kwargs in (
            (1, {}),
            ((2, 1), dict(min_displacement=(0, -2), displacement_stride=(2, 1))),
            (1, dict(kernel_size=2, stride=2, padding=1, groups=2)),
        ):
            x1, x2 = self._inputs((1, 2, 4, 5), torch.float64)
            x1.requires_grad_()
            x2.requires_grad_()
            self.assertTrue(
                torch.autograd.gradcheck(
                    lambda a, b: F.correlation(a, b, max_disp, **kwargs), (x1, x2)
                )
            )

    def test_gradgradcheck(self):
        x1, x2 = self._inputs((1, 2, 4, 5), torch.float64)
        x1.requires_grad_()
        x2.requires_grad_()
        self.assertTrue(
            torch.autograd.gradgradcheck(
                lambda a, b: F.correlation(a, b, 1, groups=2), (x1, x2)
            )
        )

    def test_autocast(self):
        x1, x2 = self._inputs((1, 8, 9, 35), torch.float32)
        expected = correlation_reference(x1, x2, 2)
        with torch.autocast("cuda", dtype=torch.float16):
            out = F.correlation(x1, x2, 2)
        self.assertIn(out.dtype, (torch.float16, torch.float32))
        self.assertEqual(
            out.double(),
            expected,
            exact_dtype=False,
            rtol=1e-2,
            atol=2e-2 * (1 + expected.abs().max().item()),
        )

    # -- 64-bit indexing -----------------------------------------------------

    def _require_free_memory(self, nbytes):
        free, _ = torch.cuda.mem_get_info()
        if free < nbytes:
            self.skipTest(
                f"needs {nbytes / 2**30:.1f} GiB of free GPU memory, {free / 2**30:.1f} GiB free"
            )

    def test_64bit_output(self):
        # 65*65 displacements of a 1024x1024 image: the output has 4.4e9
        # elements, beyond 32-bit offsets; the inputs are small.
        shape, max_disp = (1, 1, 1024, 1024), 32
        numel_out = 65 * 65 * 1024 * 1024
        self.assertGreater(numel_out, 2**31)
        self._require_free_memory(2 * 2 * numel_out + 2**30)
        x1, x2 = self._inputs(shape, torch.float16)
        x1.requires_grad_()
        x2.requires_grad_()
        out = F.correlation(x1, x2, max_disp)
        self.assertEqual(out.shape, (1, 65 * 65, 1024, 1024))
        # Each channel (a, b) is the single-displacement correlation; check
        # the first, the middle and the last ones (the last start beyond 2^31).
        channels = (0, 65 * 32 + 32, 65 * 65 - 66, 65 * 65 - 1)
        for ch in channels:
            dy, dx = ch // 65 - 32, ch % 65 - 32
            single = F.correlation(x1, x2, (dy, dx), min_displacement=(dy, dx))
            self.assertEqual(
                out[:, ch : ch + 1], single, atol=0, rtol=0, msg=f"channel {ch}"
            )
        # Backward with grad_output nonzero in those channels only.
        go = torch.zeros_like(out)
        g = torch.Generator(device="cuda").manual_seed(0)
        for ch in channels:
            go[:, ch] = torch.randn(
                1024, 1024, generator=g, device="cuda", dtype=torch.float16
            )
        g1, g2 = torch.autograd.grad(out, (x1, x2), go)
        del out
        e1 = torch.zeros(shape, dtype=torch.float64, device="cuda")
        e2 = torch.zeros(shape, dtype=torch.float64, device="cuda")
        a1 = x1.detach().double().requires_grad_()
        a2 = x2.detach().double().requires_grad_()
        for ch in channels:
            dy, dx = ch // 65 - 32, ch % 65 - 32
            single = F.correlation(a1, a2, (dy, dx), min_displacement=(dy, dx))
            s1, s2 = torch.autograd.grad(single, (a1, a2), go[:, ch : ch + 1].double())
            e1 += s1
            e2 += s2
        del go
        self.assertEqual(g1.double(), e1, rtol=1e-2, atol=1e-2)
        self.assertEqual(g2.double(), e2, rtol=1e-2, atol=1e-2)

    def test_64bit_input(self):
        # 2 * 32768 * 32769 > 2^31 elements per input.
        shape = (1, 2, 32768, 32769)
        numel = 2 * 32768 * 32769
        self.assertGreater(numel, 2**31)
        self._require_free_memory(8 * 2 * numel + 2**31)
        g = torch.Generator(device="cuda").manual_seed(0)
        x1 = torch.randn(
            shape, generator=g, device="cuda", dtype=torch.float16
        ).requires_grad_()
        x2 = torch.randn(
            shape, generator=g, device="cuda", dtype=torch.float16
        ).requires_grad_()
        max_disp, kwargs = (0, 1), {}
        out = F.correlation(x1, x2, max_disp, **kwargs)
        g1, g2 = torch.autograd.grad(
            out,
            (x1, x2),
            torch.ones((), device="cuda", dtype=torch.float16).expand(out.shape),
        )
        # The bottom-right corner (the last elements in memory) against the
        # same computation on a crop; the crop's left column differs (its
        # left neighbour is missing), so it is excluded.
        k = 48
        c1 = x1.detach()[:, :, -k:, -k:].clone().requires_grad_()
        c2 = x2.detach()[:, :, -k:, -k:].clone().requires_grad_()
        cout = F.correlation(c1, c2, max_disp, **kwargs)
        cg1, cg2 = torch.autograd.grad(cout, (c1, c2), torch.ones_like(cout))
        self.assertEqual(out[:, :, -k:, -k + 1 :], cout[:, :, :, 1:])
        self.assertEqual(g1[:, :, -k:, -k + 1 :], cg1[:, :, :, 1:])
        self.assertEqual(g2[:, :, -k:, -k + 1 :], cg2[:, :, :, 1:])
        # And the top-left corner.
        c1 = x1.detach()[:, :, :k, :k].clone().requires_grad_()
        c2 = x2.detach()[:, :, :k, :k].clone().requires_grad_()
        cout = F.correlation(c1, c2, max_disp, **kwargs)
        cg1, cg2 = torch.autograd.grad(cout, (c1, c2), torch.ones_like(cout))
        self.assertEqual(out[:, :, :k, : k - 1], cout[:, :, :, :-1])
        self.assertEqual(g1[:, :, :k, : k - 1], cg1[:, :, :, :-1])
        self.assertEqual(g2[:, :, :k, : k - 1], cg2[:, :, :, :-1])

    # -- streams and devices -------------------------------------------------

    def test_current_stream(self):
        # Work queued on a side stream before the op (a sleep, then in-place
        # updates of the inputs and of grad_output) must be seen by the
        # kernels: they run on the current stream, not the default one.
        for max_disp, kwargs in ((4, {}), (1, dict(kernel_size=3, stride=2))):
            x1, x2 = self._inputs((2, 8, 16, 40), torch.float32)
            go = torch.randn_like(F.correlation(x1, x2, max_disp, **kwargs))
            expected = self._forward_backward(2 * x1, x2, 3 * go, max_disp, kwargs)
            torch.cuda.synchronize()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                torch.cuda._sleep(50_000_000)
                x1.mul_(2)
                go.mul_(3)
                got = self._forward_backward(x1, x2, go, max_disp, kwargs)
            torch.cuda.current_stream().wait_stream(side)
            torch.cuda.synchronize()
            for a, b in zip(got, expected):
                self.assertEqual(a, b, atol=0, rtol=0, msg=str(kwargs))

    @unittest.skipIf(not TEST_MULTIGPU, "needs at least two CUDA devices")
    def test_second_device(self):
        for max_disp, kwargs in ((4, {}), (1, dict(kernel_size=3, stride=2))):
            x1, x2 = self._inputs((2, 8, 16, 40), torch.float32, device="cuda:0")
            go = torch.randn_like(F.correlation(x1, x2, max_disp, **kwargs))
            expected = self._forward_backward(x1, x2, go, max_disp, kwargs)
            with torch.cuda.device(0):
                got = self._forward_backward(
                    x1.to("cuda:1"), x2.to("cuda:1"), go.to("cuda:1"), max_disp, kwargs
                )
                self.assertEqual(torch.cuda.current_device(), 0)
            for a, b in zip(got, expected):
                self.assertEqual(a.device, torch.device("cuda:1"))
                self.assertEqual(a.cpu(), b.cpu(), atol=0, rtol=0)

    # -- errors ----------------------------------------------------------------

    def test_inputs_on_different_devices(self):
        x1, x2 = self._inputs((1, 2, 5, 6), torch.float32)
        with self.assertRaisesRegex(RuntimeError, "device"):
            F.correlation(x1, x2.cpu(), 1)
        with self.assertRaisesRegex(RuntimeError, "device"):
            F.correlation(x1.cpu(), x2, 1)
        if TEST_MULTIGPU:
            with self.assertRaisesRegex(RuntimeError, "device"):
                F.correlation(x1, x2.to("cuda:1"), 1)

    def test_backward_errors(self):
        backward = getattr(torch.ops.aten, "correlation_backward", None)
        if backward is None:
            self.skipTest("aten::correlation_backward is not registered")
        x1, x2 = self._inputs((1, 2, 5, 6), torch.float32)
        go = torch.randn(1, 9, 5, 6, device="cuda")
        # (offset, max_displacement, ...) up to output_mask: the schema has
        # no defaults.
        args = (None, [1, 1], None, [1, 1], [1, 1], [0, 0], [1, 1], [1, 1], 1, 1.0)
        g1, g2, g3 = backward(go, x1, x2, *args, output_mask=[True, True, True])
        self.assertEqual(g1.shape, x1.shape)
        self.assertIsNone(g3)  # no offset, no offset gradient
        with self.assertRaisesRegex(RuntimeError, "device"):
            backward(go.cpu(), x1, x2, *args, output_mask=[True, True, False])
        with self.assertRaisesRegex(ValueError, "grad_output"):
            backward(go[:, :8], x1, x2, *args, output_mask=[True, True, False])
        # Only one gradient requested: the others are undefined (None).
        g1, g2, _ = backward(go, x1, x2, *args, output_mask=[True, False, False])
        self.assertIsNone(g2)
        self.assertEqual(g1.shape, x1.shape)
        g1, g2, _ = backward(go, x1, x2, *args, output_mask=[False, True, False])
        self.assertIsNone(g1)
        self.assertEqual(g2.shape, x2.shape)
        # With an offset on another device.
        offset = torch.zeros(1, 2, 5, 6)
        with self.assertRaisesRegex(RuntimeError, "device"):
            backward(go, x1, x2, offset, *args[1:], output_mask=[True, True, True])

    def test_dtype_mismatch(self):
        x1, x2 = self._inputs((1, 2, 5, 6), torch.float32)
        with self.assertRaisesRegex(RuntimeError, "dtype"):
            F.correlation(x1, x2.half(), 1)


class TestCorrelationCUDAOnCPU(CUDAKernelTests, TestCase):
    """The CUDA kernels run on the CPU by tools/cuda_on_cpu.py: the tests of
    CUDAKernelTests, plus what only the harness can show (the result does not
    depend on the order in which a block's threads run between barriers; the
    64-bit kernels, forced by a lowered 32-bit limit, give the 32-bit bits)."""

    device = "cpu"

    def _forward_backward(self, x1, x2, grad_output, max_disp, kwargs):
        return harness_forward_backward(x1, x2, grad_output, max_disp, kwargs)

    def _op_correlation(self, *args, **kwargs):
        return cuda_on_cpu.correlation(*args, **kwargs)

    def _op_correlation_backward(self, *args):
        return cuda_on_cpu.correlation_backward(*args)

    def _configs(self, count, seed):
        rng = random.Random(seed)
        return [random_config(rng) for _ in range(count)]

    def test_thread_order(self):
        # Between two barriers the threads of a block run in launch order,
        # reversed, or shuffled: a result that changes is a race on shared
        # memory or a missing barrier.
        configs = self._configs(24, 4321) + [
            ((1, 8, 9, 40), 4, {}),
            ((1, 6, 7, 35), 6, dict(displacement_stride=2, padding=6)),
            ((1, 8, 5, 37), (0, 0), dict(min_displacement=(0, -19), groups=4)),
            (
                (1, 8, 5, 37),
                (0, 0),
                dict(min_displacement=(0, -19), displacement_stride=(1, -1), groups=4),
            ),
            ((1, 6, 9, 35), 3, dict(displacement_stride=(-2, -1))),
        ]
        for index, (shape, max_disp, kwargs) in enumerate(configs):
            dtype = ALL_DTYPES[index % len(ALL_DTYPES)]
            layout = LAYOUTS[index % len(LAYOUTS)]
            x1, x2 = (
                make_layout(t, layout) for t in self._inputs(shape, dtype, seed=index)
            )
            go = torch.randn_like(self._correlation(x1, x2, max_disp, **kwargs))
            expected = self._forward_backward(x1, x2, go, max_disp, kwargs)
            for order, seed in (
                ("reversed", 0),
                ("shuffled", index),
                ("shuffled", index + 1000),
            ):
                with cuda_on_cpu.schedule(order, seed):
                    got = self._forward_backward(x1, x2, go, max_disp, kwargs)
                for name, a, b in zip(
                    ("output", "grad_input1", "grad_input2"), got, expected
                ):
                    self.assertEqual(
                        a,
                        b,
                        atol=0,
                        rtol=0,
                        equal_nan=True,
                        msg=f"{name}, {order} {seed}: {shape} {max_disp} {kwargs} {dtype}",
                    )

    def test_64bit_indexing(self):
        # With the 32-bit limit lowered below every tensor's size, the 64-bit
        # kernels run; they sum in the same order, so the bits are equal.
        configs = self._configs(20, 8765) + [
            ((2, 8, 9, 40), 4, {}),
            ((1, 4, 8, 11), 1, dict(kernel_size=3, stride=2)),
            # Descending: generic (in float16) and tiled (in bfloat16).
            ((1, 4, 8, 11), 1, dict(kernel_size=3, stride=2, displacement_stride=-1)),
            ((1, 6, 9, 40), 4, dict(displacement_stride=(-1, -2), groups=2)),
        ]
        for index, (shape, max_disp, kwargs) in enumerate(configs):
            dtype = ALL_DTYPES[index % len(ALL_DTYPES)]
            x1, x2 = self._inputs(shape, dtype, seed=index)
            go = torch.randn_like(self._correlation(x1, x2, max_disp, **kwargs))
            expected = self._forward_backward(x1, x2, go, max_disp, kwargs)
            with cuda_on_cpu.index_limit(0):
                got = self._forward_backward(x1, x2, go, max_disp, kwargs)
            for a, b in zip(got, expected):
                self.assertEqual(
                    a, b, atol=0, rtol=0, msg=f"{shape} {max_disp} {kwargs} {dtype}"
                )
        # And against the reference in every dtype, 64-bit throughout.
        with cuda_on_cpu.index_limit(0):
            for index, dtype in enumerate(ALL_DTYPES):
                shape, max_disp, kwargs = configs[index]
                self._check_against_cpu(
                    shape, max_disp, kwargs, dtype, "channels_last", seed=index
                )

    def test_far_displacements(self):
        # Displacements larger than the image: every displaced read is
        # outside it, so the output and the gradients are zeros (and the
        # staged halos are all padding).
        for max_disp, kwargs in (
            ((-40, 45), dict(min_displacement=(-40, 45))),
            ((30, 50), dict(min_displacement=(30, 41), displacement_stride=(1, 3))),
            ((-9, -41), dict(min_displacement=(-30, -60), kernel_size=2)),
        ):
            for dtype in (torch.float32, torch.bfloat16):
                self._check_against_cpu(
                    (1, 3, 9, 40), max_disp, kwargs, dtype, msg=str(kwargs)
                )

    def _assert_same_bits(self, got, expected, msg):
        for a, b in zip(got, expected):
            if a is None or b is None:
                self.assertIs(a, b, msg=msg)
                continue
            self.assertTrue(torch.equal(a.isnan(), b.isnan()), msg=msg)
            self.assertEqual(
                a.nan_to_num(0.0), b.nan_to_num(0.0), atol=0, rtol=0, msg=msg
            )

    def test_offset_thread_order(self):
        # Of the offset kernels only the bucket sort's shared-memory stages
        # have barriers; their result (unique keys), and every output, must
        # not depend on the thread order. 640 and 1300 locations: the sort
        # also runs global stages.
        cases = [
            ((2, 3, 16, 20), (9, 12), 2, {}, "border"),
            (
                (1, 2, 26, 50),
                (26, 50),
                1,
                dict(displacement_stride=(1, -1)),
                "fractional",
            ),
            (
                (3, 4, 7, 11),
                (5, 5),
                1,
                dict(kernel_size=2, stride=2, groups=2),
                "nonfinite",
            ),
        ]
        for index, (shape, size2, max_disp, kwargs, kind) in enumerate(cases):
            dtype = ALL_DTYPES[index % len(ALL_DTYPES)]
            tensors = self._offset_case(
                shape, size2, max_disp, kwargs, dtype, kind, index
            )
            expected = self._offset_run(*tensors, max_disp, kwargs)
            for order, seed in (
                ("reversed", 0),
                ("shuffled", index),
                ("shuffled", index + 1000),
            ):
                with cuda_on_cpu.schedule(order, seed):
                    got = self._offset_run(*tensors, max_disp, kwargs)
                self._assert_same_bits(
                    got, expected, f"{order} {seed}: {shape} {size2} {kwargs} {dtype}"
                )

    def test_offset_64bit_indexing(self):
        # The 64-bit offset kernels, forced by a lowered 32-bit limit, sum in
        # the same order: the same bits; and against the reference in every
        # dtype, 64-bit throughout.
        rng = random.Random(97531)
        configs = [random_offset_config(rng) for _ in range(8)]
        for index, (shape, size2, max_disp, kwargs) in enumerate(configs):
            dtype = ALL_DTYPES[index % len(ALL_DTYPES)]
            kind = OFFSET_KINDS[index % len(OFFSET_KINDS)]
            tensors = self._offset_case(
                shape, size2, max_disp, kwargs, dtype, kind, index
            )
            expected = self._offset_run(*tensors, max_disp, kwargs)
            with cuda_on_cpu.index_limit(0):
                got = self._offset_run(*tensors, max_disp, kwargs)
            self._assert_same_bits(
                got, expected, f"{shape} {size2} {max_disp} {kwargs} {dtype}"
            )
        with cuda_on_cpu.index_limit(0):
            for index, dtype in enumerate(ALL_DTYPES):
                self._check_offset(
                    (2, 4, 6, 9),
                    (5, 11),
                    1,
                    dict(groups=2),
                    dtype,
                    "border",
                    "channels_last",
                    seed=index,
                    msg=str(dtype),
                )

    def test_offset_sort(self):
        # 2880 locations (a sort of 4096 keys: global stages for j = 512,
        # 1024 and 2048), offsets that gather many locations into a few
        # origin buckets (whole rows and columns of locations sample the same
        # place), and culled ones (non-finite, outside input2).
        shape, size2, max_disp, kwargs = (3, 2, 24, 40), (10, 13), 1, {}
        out_shape = output_shape(shape, max_disp, kwargs)
        for dtype in (torch.float64, torch.float16):
            x1, x2, _, go = self._offset_case(
                shape, size2, max_disp, kwargs, dtype, "fractional", 11
            )
            g = torch.Generator().manual_seed(12)
            oy = torch.arange(out_shape[2], dtype=torch.float64).view(-1, 1)
            ox = torch.arange(out_shape[3], dtype=torch.float64).view(1, -1)
            # Location (oy, ox) samples around (oy % 3 + fy, ox % 4 + fx).
            frac = torch.rand(out_shape[0], 2, 1, 1, generator=g, dtype=torch.float64)
            off = (
                torch.stack(
                    [(ox % 4 - ox).expand(24, 40), (oy % 3 - oy).expand(24, 40)]
                ).unsqueeze(0)
                + frac
            )
            off[0, :, 5:7, 3:9] = float("nan")
            off[1, 0, 10:12] = 1e4
            off[2, 1, :, 20:] = -1e4
            off = off.to(dtype)
            ref = reference_offset_forward_backward(x1, x2, off, go, max_disp, kwargs)
            got = self._offset_run(x1, x2, off, go, max_disp, kwargs)
            for name, a, b in zip(
                ("output", "grad_input1", "grad_input2", "grad_offset"), got, ref
            ):
                self.assertEqual(
                    a.double(),
                    b,
                    equal_nan=True,
                    msg=f"{name} {dtype}",
                    **_offset_tolerances(dtype, b),
                )

    def test_harness_finds_defects(self):
        # The harness itself: a barrier that some threads of a block never
        # reach is an error, not a hang, and a missing barrier changes the
        # result with the thread order.
        module = cuda_on_cpu._load()
        with self.assertRaisesRegex(
            RuntimeError, r"wait at __syncthreads\(\) number 1"
        ):
            module.run_defective_kernel("early_return", 64)
        results = []
        for order in ("forward", "reversed"):
            with cuda_on_cpu.schedule(order):
                results.append(module.run_defective_kernel("missing_barrier", 64))
        self.assertNotEqual(results[0], results[1], equal_nan=True)
        # Out-of-bounds and overflow defects: `python tools/cuda_on_cpu.py
        # --sanitize` checks that its sanitizers report them.


if __name__ == "__main__":
    run_tests()
